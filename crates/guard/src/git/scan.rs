//! Sorting a git subcommand's arguments into flags, option values and
//! operands, as described by one [`Spec`] per subcommand.

use crate::words::{self, Arg};
use crate::Denial;

/// Options of one git subcommand, as far as the rules need them.
pub(super) struct Spec {
    /// Short options that take a value (`-o`, `-b` …).
    pub(super) short_value: &'static str,
    /// Long options git knows for this subcommand (for abbreviations).
    pub(super) long: &'static [&'static str],
    /// Long options whose value may be the next word.
    pub(super) long_value: &'static [&'static str],
}

/// A git subcommand's arguments, sorted.
#[derive(Default)]
pub(super) struct Scanned {
    /// Short flag letters (`-fdx` → f, d, x), excluding option values.
    pub(super) shorts: Vec<char>,
    /// Values of short value options (`-b name` → ('b', "name")).
    pub(super) short_values: Vec<(char, String)>,
    /// Long options: every option each one could abbreviate, and its value.
    pub(super) longs: Vec<(Vec<&'static str>, Option<String>)>,
    /// Operands before `--`.
    pub(super) positionals: Vec<Arg>,
    /// `--` was given.
    pub(super) dashdash: bool,
    /// Operands after `--`.
    pub(super) after_dashdash: Vec<Arg>,
}

impl Scanned {
    /// The short flag `-c` was given.
    pub(super) fn short(&self, c: char) -> bool {
        self.shorts.contains(&c)
    }

    /// A long option that may be `name` (or abbreviate it) was given.
    pub(super) fn long(&self, name: &str) -> bool {
        self.longs.iter().any(|(c, _)| c.contains(&name))
    }

    /// The value of the long option `name`, when it was given unambiguously.
    pub(super) fn long_value(&self, name: &str) -> Option<&str> {
        self.longs
            .iter()
            .find(|(c, _)| c.len() == 1 && c[0] == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// The value of the short option `-c`.
    pub(super) fn short_value(&self, c: char) -> Option<&str> {
        self.short_values
            .iter()
            .find(|(k, _)| *k == c)
            .map(|(_, v)| v.as_str())
    }
}

/// Sort a subcommand's arguments. Words whose value is unknown and that
/// could be options or operands make the command uncheckable.
pub(super) fn scan(sub: &str, args: &[Arg], spec: &Spec) -> Result<Scanned, Denial> {
    let mut s = Scanned::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if s.dashdash {
            if a.unquoted_dynamic || a.leading_dynamic {
                return Err(dynamic(sub, a));
            }
            s.after_dashdash.push(a.clone());
            i += 1;
            continue;
        }
        if a.leading_dynamic || a.unquoted_dynamic {
            return Err(dynamic(sub, a));
        }
        let t = a.text.as_str();
        if t == "--" {
            s.dashdash = true;
        } else if t.starts_with("--") {
            let name = t.split('=').next().unwrap_or(t);
            let mut value = words::attached_value(t).map(str::to_owned);
            let cands = if name.starts_with("--no-") && !spec.long.contains(&name) {
                Vec::new()
            } else {
                words::long_candidates(t, spec.long)
            };
            if value.is_none() && cands.len() == 1 && spec.long_value.contains(&cands[0]) {
                if let Some(v) = args.get(i + 1) {
                    value = Some(v.text.clone());
                    i += 1;
                }
            }
            s.longs.push((cands, value));
        } else if t.starts_with('-') && t.len() > 1 {
            let letters: Vec<char> = t[1..].chars().collect();
            for (k, c) in letters.iter().enumerate() {
                if spec.short_value.contains(*c) {
                    let tail: String = letters[k + 1..].iter().collect();
                    let v = if tail.is_empty() {
                        i += 1;
                        args.get(i).map(|v| v.text.clone()).unwrap_or_default()
                    } else {
                        tail
                    };
                    s.short_values.push((*c, v));
                    break;
                }
                s.shorts.push(*c);
            }
        } else {
            s.positionals.push(a.clone());
        }
        i += 1;
    }
    Ok(s)
}

/// The denial for an argument of `git sub` whose value is known only at run time.
pub(super) fn dynamic(sub: &str, a: &Arg) -> Denial {
    Denial::new(
        "dynamic-argument",
        format!(
            "`git {sub}` gets `{}`, whose value is known only at run time",
            crate::commands::show(a)
        ),
    )
}

/// For subcommands whose rules look at operands and a few letters only.
pub(super) const LENIENT: Spec = Spec {
    short_value: "",
    long: &[],
    long_value: &[],
};
