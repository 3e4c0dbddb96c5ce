//! Checks on the raw text before brush-parser sees it: inputs on which the
//! parser recurses too deep, backtracks exponentially, loops or panics are
//! refused (found by cargo-fuzz).

use super::{MAX_DEPTH, MAX_LEN};
use crate::Denial;

/// Open `(` at once when the code contains `((` or `( (`: brush's grammar
/// backtracks exponentially on unbalanced parentheses in an arithmetic
/// command, doubling per level (found by cargo-fuzz).
const MAX_PARENS: usize = 14;

/// Refuse text the parser must not see: longer than [`MAX_LEN`], a NUL
/// byte, command substitutions nested deeper than [`MAX_DEPTH`], many open
/// parentheses after `((`, here-document tags the parser loops on, and fd
/// numbers that overflow.
pub(super) fn refuse_before_parsing(script: &str) -> Result<(), Denial> {
    if script.len() > MAX_LEN {
        return Err(Denial::new(
            "too-complex",
            format!(
                "command is {} bytes, more than the {MAX_LEN}-byte limit",
                script.len()
            ),
        ));
    }
    if script.contains('\0') {
        return Err(Denial::new(
            "parse-error",
            "could not parse: NUL byte in command",
        ));
    }
    let (_depth, parens, substs) = nesting(script);
    if substs > MAX_DEPTH {
        return Err(Denial::new(
            "too-complex",
            format!("command substitutions nested more than {MAX_DEPTH} deep"),
        ));
    }
    if parens > MAX_PARENS && has_double_paren(script) {
        return Err(Denial::new(
            "too-complex",
            format!("more than {MAX_PARENS} nested parentheses after `((`"),
        ));
    }
    if heredoc_tag_with_arith(script) {
        // brush-parser 0.4 loops forever on `<<'' `, `<<$(( )`,
        // `<<"$(  `, `<<$[  ` … at end of input: an empty end tag always
        // "matches" (found by cargo-fuzz).
        return Err(Denial::new(
            "parse-error",
            "could not parse: empty here-document delimiter or an expansion in one",
        ));
    }
    if oversized_fd(script) {
        // brush-parser 0.4 panics on an fd number that overflows i32.
        return Err(Denial::new(
            "parse-error",
            "could not parse: file descriptor number too large",
        ));
    }
    Ok(())
}

/// Deepest nesting of brackets and compound-command keywords (`if`,
/// `while`, `for`, `case`, `{`, `(` …) in raw text, skipping quoted text.
/// Rough (an over-estimate is fine): it only has to bound the parser's
/// recursion before the parser runs.
fn nesting(s: &str) -> (usize, usize, usize) {
    const OPEN: &[&str] = &[
        "if", "elif", "while", "until", "for", "select", "case", "function", "coproc",
    ];
    const CLOSE: &[&str] = &["fi", "done", "esac"];
    // Separate counters: a `)` after a case pattern must not cancel `case`.
    let (mut kw, mut paren, mut brace, mut bracket, mut tick) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let (mut max, mut max_paren) = (0usize, 0usize);
    // Which open `(` are `$(` (command substitutions).
    let mut parens: Vec<bool> = Vec::new();
    let (mut subst, mut max_subst) = (0usize, 0usize);
    let mut prev = ' ';
    let mut word = String::new();
    let (mut sq, mut dq) = (false, false);
    let mut chars = s.chars().peekable();
    let end_word = |word: &mut String, kw: &mut usize| {
        if OPEN.contains(&word.as_str()) {
            *kw += 1;
        } else if CLOSE.contains(&word.as_str()) {
            *kw = kw.saturating_sub(1);
        }
        word.clear();
    };
    while let Some(c) = chars.next() {
        if sq {
            sq = c != '\'';
            continue;
        }
        match c {
            '\\' => {
                chars.next();
                word.push('x');
            }
            '\'' if !dq => sq = true,
            '"' => dq = !dq,
            '(' | '{' | '[' | '`' | ')' | '}' | ']' => {
                end_word(&mut word, &mut kw);
                match c {
                    '(' => {
                        paren += 1;
                        parens.push(prev == '$');
                        if prev == '$' {
                            subst += 1;
                            max_subst = max_subst.max(subst);
                        }
                    }
                    '{' => brace += 1,
                    '[' => bracket += 1,
                    '`' => tick = 1 - tick.min(1),
                    ')' => {
                        paren = paren.saturating_sub(1);
                        if parens.pop() == Some(true) {
                            subst -= 1;
                        }
                    }
                    '}' => brace = brace.saturating_sub(1),
                    _ => bracket = bracket.saturating_sub(1),
                }
            }
            c if !dq && (c.is_whitespace() || ";|&<>".contains(c)) => end_word(&mut word, &mut kw),
            c => {
                if !dq {
                    word.push(c);
                }
            }
        }
        max = max.max(kw + paren + brace + bracket + tick);
        max_paren = max_paren.max(paren);
        prev = c;
    }
    end_word(&mut word, &mut kw);
    (
        max.max(kw + paren + brace + bracket + tick),
        max_paren,
        max_subst,
    )
}

/// A run of 10+ digits right before `<` or `>` (an fd number that does not
/// fit in an i32).
fn oversized_fd(s: &str) -> bool {
    let b = s.as_bytes();
    let mut run = 0usize;
    for &c in b {
        if c.is_ascii_digit() {
            run += 1;
        } else {
            if run >= 10 && (c == b'<' || c == b'>') {
                return true;
            }
            run = 0;
        }
    }
    false
}

/// `((` or `( (`: where brush tries an arithmetic command.
fn has_double_paren(s: &str) -> bool {
    let mut after_paren = false;
    for c in s.chars() {
        match c {
            '(' if after_paren => return true,
            '(' => after_paren = true,
            c if c.is_whitespace() => {}
            _ => after_paren = false,
        }
    }
    false
}

/// `~`, `~+` or `~-` followed by 10+ digits.
pub(super) fn long_tilde_number(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter()
        .enumerate()
        .filter(|(_, c)| **c == b'~')
        .any(|(i, _)| {
            let mut j = i + 1;
            if matches!(b.get(j), Some(b'+') | Some(b'-')) {
                j += 1;
            }
            b[j.min(b.len())..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count()
                >= 10
        })
}

/// `<<` (not `<<<`), optional `-` and blanks, then a word that is empty
/// after quote removal (`''`, `""`) or contains `$(`, `$[`, `${` or a
/// backtick.
fn heredoc_tag_with_arith(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'<' && b[i + 1] == b'<' {
            if b.get(i + 2) == Some(&b'<') {
                i += 3;
                continue;
            }
            let mut j = i + 2;
            if b.get(j) == Some(&b'-') {
                j += 1;
            }
            while matches!(b.get(j), Some(b' ') | Some(b'\t')) {
                j += 1;
            }
            let start = j;
            // A word ends at the shell's metacharacters only: a form feed or
            // a vertical tab is part of it (and of the tag).
            while j < b.len() && !b" \t\n;|&<>()".contains(&b[j]) {
                j += 1;
            }
            let tag = s.get(start..j).unwrap_or("");
            let unquoted_empty =
                !tag.is_empty() && tag.chars().all(|c| matches!(c, '\'' | '"' | '\\' | '$'));
            // brush-parser also loops on a tag holding a control character
            // (`<<\x0c<<`, found by cargo-fuzz): no real delimiter has one.
            let control = tag.bytes().any(|c| c.is_ascii_control());
            // The tag ran into a parenthesis: `E$(( )`, `E(`: an expansion or
            // a syntax error inside the word, never a real delimiter
            // (brush-parser allocates without bound on `<<-E$(( )\\`).
            let into_paren = !tag.is_empty() && b.get(j) == Some(&b'(');
            if unquoted_empty
                || control
                || into_paren
                || ["$(", "$[", "${", "`"].iter().any(|m| tag.contains(m))
            {
                return true;
            }
            i = j.max(i + 2);
        } else {
            i += 1;
        }
    }
    false
}
