//! Expanded command-line words ([`Arg`]) and the purely textual parts of
//! shell expansion: brace expansion, ANSI-C quote decoding, and helpers for
//! reading option clusters.

/// Marks a statically unknown part of an expanded word (a variable we do
/// not know, a command substitution, …). Real shell words cannot contain NUL.
pub(crate) const DYN: char = '\u{0}';

/// One word after the guard's static expansion.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Arg {
    /// The expanded text; unknown parts are replaced by [`DYN`].
    pub text: String,
    /// Some part is unknown.
    pub dynamic: bool,
    /// The word starts with an unknown part (so it could be an option).
    pub leading_dynamic: bool,
    /// An unknown part is unquoted (word splitting could make several words).
    pub unquoted_dynamic: bool,
    /// Contains unquoted glob characters.
    pub glob: bool,
    /// Part of the word is the output of a download (curl/wget …).
    pub from_download: bool,
    /// Reads a variable whose name looks like a credential (`$GITHUB_TOKEN`).
    pub secret_var: Option<String>,
}

impl Arg {
    /// A fully known word.
    pub(crate) fn lit(s: &str) -> Self {
        Arg {
            text: s.to_owned(),
            ..Arg::default()
        }
    }

    /// A wholly unknown word.
    pub(crate) fn unknown(unquoted: bool, from_download: bool) -> Self {
        Arg {
            text: DYN.to_string(),
            dynamic: true,
            leading_dynamic: true,
            unquoted_dynamic: unquoted,
            glob: false,
            from_download,
            secret_var: None,
        }
    }

    /// The text when fully known.
    pub(crate) fn known(&self) -> Option<&str> {
        if self.dynamic {
            None
        } else {
            Some(&self.text)
        }
    }
}

/// Builds an [`Arg`] piece by piece during expansion.
#[derive(Default)]
pub(crate) struct ArgBuilder {
    arg: Arg,
}

impl ArgBuilder {
    pub(crate) fn push_lit(&mut self, s: &str, quoted: bool) {
        if !quoted
            && (s.contains(['*', '?', '['])
                || s.contains("@(")
                || s.contains("!(")
                || s.contains("+("))
        {
            self.arg.glob = true;
        }
        // A NUL inside a shell string ends it (bash truncates at NUL).
        self.arg.text.push_str(s.split('\0').next().unwrap_or(""));
    }

    pub(crate) fn mark_secret(&mut self, name: &str) {
        self.arg.secret_var = Some(name.to_owned());
    }

    pub(crate) fn push_dyn(&mut self, quoted: bool, from_download: bool) {
        if self.arg.text.is_empty() {
            self.arg.leading_dynamic = true;
        }
        if !quoted {
            self.arg.unquoted_dynamic = true;
        }
        self.arg.dynamic = true;
        self.arg.from_download |= from_download;
        self.arg.text.push(DYN);
    }

    pub(crate) fn finish(self) -> Arg {
        self.arg
    }
}

/// Maximum number of words one brace expansion may produce before the guard
/// gives up and treats the word as unknown.
const MAX_BRACE_WORDS: usize = 256;

/// Bash brace expansion on a raw (still quoted) word: `a{b,c}d` →
/// `abd acd`, `x{1..3}` → `x1 x2 x3`. Quoted braces and `${…}` are left
/// alone. Returns `None` when the expansion is too large.
pub(crate) fn brace_expand(raw: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    expand_into(raw, &mut out, 0)?;
    Some(out)
}

fn expand_into(raw: &str, out: &mut Vec<String>, depth: usize) -> Option<()> {
    if depth > 16 || out.len() > MAX_BRACE_WORDS {
        return None;
    }
    let Some((open, close, alts)) = find_brace(raw) else {
        out.push(raw.to_owned());
        return Some(());
    };
    let prefix = &raw[..open];
    let suffix = &raw[close + 1..];
    for alt in alts {
        expand_into(&format!("{prefix}{alt}{suffix}"), out, depth + 1)?;
        if out.len() > MAX_BRACE_WORDS {
            return None;
        }
    }
    Some(())
}

/// Find the first expandable `{…}` in a raw word: unquoted, not `${`,
/// with a top-level comma or a `x..y` sequence. Returns byte offsets of the
/// braces and the alternatives.
fn find_brace(raw: &str) -> Option<(usize, usize, Vec<String>)> {
    let b = raw.as_bytes();
    let mut i = 0;
    let (mut sq, mut dq) = (false, false);
    let mut nest = 0usize; // inside $( … ) / ${ … } / backticks
    let mut in_bt = false;
    while i < b.len() {
        let c = b[i];
        if sq {
            if c == b'\'' {
                sq = false;
            }
            i += 1;
            continue;
        }
        match c {
            b'\\' => {
                i += 2;
                continue;
            }
            b'\'' if !dq => sq = true,
            b'"' => dq = !dq,
            b'`' => in_bt = !in_bt,
            b'$' if matches!(b.get(i + 1), Some(b'(') | Some(b'{')) => {
                nest += 1;
                i += 2;
                continue;
            }
            b'(' if nest > 0 => nest += 1,
            b')' | b'}' if nest > 0 => nest -= 1,
            b'{' if !dq && nest == 0 && !in_bt => {
                if let Some(found) = brace_at(raw, i) {
                    return Some(found);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Try to read a brace expression starting at `open`.
fn brace_at(raw: &str, open: usize) -> Option<(usize, usize, Vec<String>)> {
    let b = raw.as_bytes();
    let mut depth = 0usize;
    let mut i = open;
    let mut commas = Vec::new();
    let (mut sq, mut dq) = (false, false);
    while i < b.len() {
        let c = b[i];
        if sq {
            if c == b'\'' {
                sq = false;
            }
            i += 1;
            continue;
        }
        match c {
            b'\\' => {
                i += 2;
                continue;
            }
            b'\'' if !dq => sq = true,
            b'"' => dq = !dq,
            b'{' if !dq => depth += 1,
            b'}' if !dq => {
                depth -= 1;
                if depth == 0 {
                    let inner = &raw[open + 1..i];
                    if !commas.is_empty() {
                        let mut alts = Vec::new();
                        let mut start = open + 1;
                        for &c in &commas {
                            alts.push(raw[start..c].to_owned());
                            start = c + 1;
                        }
                        alts.push(raw[start..i].to_owned());
                        return Some((open, i, alts));
                    }
                    return sequence(inner).map(|alts| (open, i, alts));
                }
            }
            b',' if !dq && depth == 1 => commas.push(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// `{1..5}`, `{a..e}`, `{10..1..2}`.
fn sequence(inner: &str) -> Option<Vec<String>> {
    let parts: Vec<&str> = inner.split("..").collect();
    if parts.len() != 2 && parts.len() != 3 {
        return None;
    }
    let step: i64 = match parts.get(2) {
        Some(s) => s.parse::<i64>().ok()?.abs().max(1),
        None => 1,
    };
    if let (Ok(a), Ok(b)) = (parts[0].parse::<i64>(), parts[1].parse::<i64>()) {
        let count = (a - b).unsigned_abs() / step.unsigned_abs() + 1;
        if count > MAX_BRACE_WORDS as u64 {
            return Some(vec![DYN.to_string()]);
        }
        let mut out = Vec::new();
        let mut v = a;
        for _ in 0..count {
            out.push(v.to_string());
            v += if a <= b { step } else { -step };
        }
        return Some(out);
    }
    let (ca, cb) = (single_char(parts[0])?, single_char(parts[1])?);
    let (lo, hi) = if ca <= cb { (ca, cb) } else { (cb, ca) };
    let mut out: Vec<String> = (lo..=hi).map(|c| c.to_string()).collect();
    if ca > cb {
        out.reverse();
    }
    Some(out)
}

fn single_char(s: &str) -> Option<char> {
    let mut it = s.chars();
    let c = it.next()?;
    if it.next().is_none() && c.is_ascii_alphabetic() {
        Some(c)
    } else {
        None
    }
}

/// Does a raw word possibly contain a brace expansion?
pub(crate) fn may_brace_expand(raw: &str) -> bool {
    raw.contains('{') && raw.contains('}') && (raw.contains(',') || raw.contains(".."))
}

/// Decode the body of `$'…'` (ANSI-C quoting).
pub(crate) fn decode_ansi_c(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '\\' || i + 1 >= chars.len() {
            out.push(c);
            i += 1;
            continue;
        }
        let e = chars[i + 1];
        i += 2;
        match e {
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'e' | 'E' => out.push('\u{1b}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\u{b}'),
            '\\' | '\'' | '"' | '?' => out.push(e),
            'x' => {
                let (v, used) = read_radix(&chars[i..], 16, 2);
                if used == 0 {
                    out.push('\\');
                    out.push('x');
                } else {
                    out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                }
                i += used;
            }
            'u' | 'U' => {
                let max = if e == 'u' { 4 } else { 8 };
                let (v, used) = read_radix(&chars[i..], 16, max);
                if used == 0 {
                    out.push('\\');
                    out.push(e);
                } else {
                    out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                }
                i += used;
            }
            'c' if i < chars.len() => {
                let ctl = (chars[i] as u32) & 0x1f;
                out.push(char::from_u32(ctl).unwrap_or('\u{fffd}'));
                i += 1;
            }
            '0'..='7' => {
                let (v, used) = read_radix(&chars[i - 1..], 8, 3);
                out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                i += used - 1;
            }
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    out
}

fn read_radix(chars: &[char], radix: u32, max: usize) -> (u32, usize) {
    let mut v = 0u32;
    let mut used = 0;
    for c in chars.iter().take(max) {
        match c.to_digit(radix) {
            Some(d) => {
                v = v.saturating_mul(radix).saturating_add(d);
                used += 1;
            }
            None => break,
        }
    }
    (v, used)
}

/// Undo the backslash escapes that backticks apply to their body
/// (`\\`, `` \` ``, `\$`, and `\"` when the backticks are inside double quotes).
pub(crate) fn unescape_backticks(s: &str, in_double_quotes: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\\' {
            if let Some(&n) = it.peek() {
                if matches!(n, '\\' | '`' | '$') || (in_double_quotes && n == '"') {
                    out.push(n);
                    it.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

/// Quote a word for re-parsing as shell text.
pub(crate) fn shell_quote(a: &Arg) -> String {
    if a.dynamic {
        // An unknown word: re-parses as an unknown variable.
        return if a.unquoted_dynamic {
            "$__ERRAND_GUARD_UNKNOWN".to_owned()
        } else {
            "\"$__ERRAND_GUARD_UNKNOWN\"".to_owned()
        };
    }
    if !a.text.is_empty()
        && a.text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c))
    {
        return a.text.clone();
    }
    format!("'{}'", a.text.replace('\'', "'\\''"))
}

/// Resolve a long option (`--forc`, `--force=x`) against the options a
/// command knows. Returns every known option it could mean: the exact
/// match alone, otherwise all options it is a prefix of (git and GNU tools
/// accept unique abbreviations; an ambiguous one is reported as all of its
/// candidates, so callers treat it as the most dangerous).
pub(crate) fn long_candidates<'a>(arg: &str, known: &[&'a str]) -> Vec<&'a str> {
    let name = arg.split('=').next().unwrap_or(arg);
    if let Some(exact) = known.iter().find(|k| **k == name) {
        return vec![*exact];
    }
    if name.len() < 3 {
        return Vec::new();
    }
    known
        .iter()
        .copied()
        .filter(|k| k.starts_with(name))
        .collect()
}

/// The value of a `--name=value` option, if attached.
pub(crate) fn attached_value(arg: &str) -> Option<&str> {
    arg.split_once('=').map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces() {
        assert_eq!(brace_expand("{a,/}").unwrap(), vec!["a", "/"]);
        assert_eq!(brace_expand("x{1..3}").unwrap(), vec!["x1", "x2", "x3"]);
        assert_eq!(brace_expand("'{a,b}'").unwrap(), vec!["'{a,b}'"]);
        assert_eq!(brace_expand("${a,b}").unwrap(), vec!["${a,b}"]);
        assert_eq!(brace_expand("{}").unwrap(), vec!["{}"]);
        assert_eq!(
            brace_expand("a{b,c{d,e}}").unwrap(),
            vec!["ab", "acd", "ace"]
        );
        assert_eq!(brace_expand("{a..c}").unwrap(), vec!["a", "b", "c"]);
    }

    #[test]
    fn ansi_c() {
        assert_eq!(decode_ansi_c("\\x67it"), "git");
        assert_eq!(decode_ansi_c("\\147it"), "git");
        assert_eq!(decode_ansi_c("\\u0067it"), "git");
        assert_eq!(decode_ansi_c("a\\nb"), "a\nb");
    }

    #[test]
    fn long_options() {
        let known = [
            "--force",
            "--force-with-lease",
            "--follow-tags",
            "--dry-run",
        ];
        assert_eq!(long_candidates("--force", &known), vec!["--force"]);
        assert_eq!(long_candidates("--forc", &known).len(), 2);
        assert_eq!(long_candidates("--fo", &known).len(), 3);
        assert_eq!(
            long_candidates("--force-with-lease=main:abc", &known),
            vec!["--force-with-lease"]
        );
        assert!(long_candidates("--x", &known).is_empty());
    }
}
