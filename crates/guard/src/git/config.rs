//! git settings: what `-c key=value` and `git config` change (push
//! refspecs, `push.default`, mirror remotes, `clean.requireForce`), the keys
//! whose value git runs as a command, and reading credentials back out.

use super::scan::{dynamic, Scanned, Spec};
use crate::shell::Checker;
use crate::words::{self, Arg};
use crate::Denial;

/// `git config`.
pub(super) const CONFIG: Spec = Spec {
    short_value: "f",
    long: &[
        "--file",
        "--blob",
        "--type",
        "--default",
        "--comment",
        "--value",
    ],
    long_value: &[
        "--file",
        "--blob",
        "--type",
        "--default",
        "--comment",
        "--value",
    ],
};

/// `-c` settings (or `git config` writes) that change what git does.
#[derive(Default)]
pub(super) struct GitConfig {
    /// `clean.requireForce=false`: `git clean` deletes without `-f`.
    pub(super) require_force_off: bool,
    /// `remote.<name>.push` refspecs: what a push without refspecs pushes.
    pub(super) push_refspecs: Vec<Arg>,
    /// `push.default=matching`: a bare push pushes every matching branch.
    pub(super) push_matching: bool,
    /// `push.default=upstream|tracking`: a bare push goes to the upstream branch.
    pub(super) push_upstream: bool,
    /// `remote.<name>.mirror`: every push is a mirror push.
    pub(super) mirror: bool,
}

impl GitConfig {
    /// Note one `key=value` setting (key in lower case).
    pub(super) fn record(&mut self, key: &str, value: &str) {
        let falsy = matches!(
            value.to_ascii_lowercase().as_str(),
            "false" | "no" | "off" | "0"
        );
        if key == "clean.requireforce" && falsy {
            self.require_force_off = true;
        }
        if key.starts_with("remote.") && key.ends_with(".push") {
            self.push_refspecs.push(Arg::lit(value));
        }
        if key.starts_with("remote.") && key.ends_with(".mirror") && !falsy {
            self.mirror = true;
        }
        if key == "push.default" && value.eq_ignore_ascii_case("matching") {
            self.push_matching = true;
        }
        if key == "push.default"
            && (value.eq_ignore_ascii_case("upstream") || value.eq_ignore_ascii_case("tracking"))
        {
            self.push_upstream = true;
        }
    }

    /// Whether a push without refspecs would follow these settings.
    pub(super) fn touches_push(&self) -> bool {
        !self.push_refspecs.is_empty() || self.push_matching || self.push_upstream || self.mirror
    }
}

/// Config keys whose value git runs as a shell command. Returns the code.
pub(super) fn config_code<'v>(key: &str, value: &'v str) -> Option<&'v str> {
    let key = key.to_ascii_lowercase();
    let bang = value.strip_prefix('!');
    if key.starts_with("alias.")
        || key == "credential.helper"
        || key.starts_with("credential.") && key.ends_with(".helper")
    {
        return bang;
    }
    let runs = matches!(
        key.as_str(),
        "core.sshcommand"
            | "core.pager"
            | "core.editor"
            | "core.askpass"
            | "sequence.editor"
            | "diff.external"
            | "gpg.program"
            | "uploadpack.packobjectshook"
            | "core.fsmonitor"
    ) || key.starts_with("pager.")
        || (key.starts_with("filter.")
            && (key.ends_with(".clean") || key.ends_with(".smudge") || key.ends_with(".process")))
        || (key.starts_with("merge.") && key.ends_with(".driver"))
        || (key.starts_with("diff.") && (key.ends_with(".textconv") || key.ends_with(".command")))
        || (key.starts_with("gpg.") && key.ends_with(".program"));
    if !runs || (key == "core.fsmonitor" && matches!(value, "true" | "false")) {
        return None;
    }
    Some(value)
}

impl Checker<'_> {
    /// `git config`: printing credentials, and what an alias, a command-running
    /// key or a push setting it saves would do.
    pub(super) fn check_config(&mut self, s: &Scanned, rest: &[Arg]) -> Result<(), Denial> {
        let reads = rest.iter().any(|a| {
            matches!(
                a.text.as_str(),
                "--get-regexp" | "--get-all" | "--get" | "-l" | "--list" | "get"
            )
        });
        if reads
            && s.positionals.iter().any(|p| {
                let k = p.text.to_ascii_lowercase();
                k.contains("credential")
                    || k.contains("token")
                    || k.contains("extraheader")
                    || k.contains("password")
            })
        {
            return Err(Denial::new(
                "credential-dump",
                "git config prints credential settings",
            ));
        }
        if let [key, value, ..] = s.positionals.as_slice() {
            if let Some(name) = key.text.to_ascii_lowercase().strip_prefix("alias.") {
                if !value.text.starts_with('!') {
                    if value.dynamic {
                        return Err(Denial::new(
                            "dynamic-code",
                            "git config defines an alias known only at run time",
                        ));
                    }
                    // The alias persists: judge what it expands to now
                    // and remember it for the rest of the line.
                    let code = format!("git {}", value.text);
                    self.check_nested(&code, true)?;
                    self.state
                        .git_aliases
                        .insert(name.to_owned(), value.text.clone());
                }
            }
            if let Some(code) = config_code(&key.text, &value.text) {
                if value.dynamic {
                    return Err(Denial::new(
                        "dynamic-code",
                        "git config sets a command known only at run time",
                    ));
                }
                self.check_nested(code, true)?;
            }
            // Push settings persist and would apply to a later bare
            // `git push`: judge them now as if pushing.
            let mut c = GitConfig::default();
            c.record(&key.text.to_ascii_lowercase(), &value.text);
            if c.touches_push() {
                if value.dynamic {
                    return Err(dynamic("config", value));
                }
                self.check_push(&Scanned::default(), &c)?;
            }
        }
        Ok(())
    }
}

impl Checker<'_> {
    /// `git -c key=value`: code in a command-running key is checked, an
    /// alias is kept for expansion, and settings that change pushes or
    /// cleans are noted in `cfg`.
    pub(super) fn check_git_setting(
        &mut self,
        kv: &Arg,
        aliases: &mut Vec<(String, Arg)>,
        cfg: &mut GitConfig,
    ) -> Result<(), Denial> {
        let (key, value) = kv.text.split_once('=').unwrap_or((&kv.text, "true"));
        let key_l = key.to_ascii_lowercase();
        if kv.dynamic {
            if key.contains(words::DYN) || config_code(&key_l, "!x").is_some() {
                return Err(Denial::new(
                    "dynamic-code",
                    "git -c with a value known only at run time",
                ));
            }
        } else {
            if let Some(code) = config_code(&key_l, value) {
                self.check_nested(code, true)?;
            }
            if let Some(name) = key_l.strip_prefix("alias.") {
                aliases.push((name.to_owned(), Arg::lit(value)));
            }
            cfg.record(&key_l, value);
        }
        Ok(())
    }
}

/// `git credential fill`/`get` (and the helpers run directly) print stored
/// credentials.
pub(super) fn check_credential(sub: &str, rest: &[Arg]) -> Result<(), Denial> {
    if rest
        .iter()
        .any(|a| matches!(a.text.as_str(), "fill" | "get"))
    {
        return Err(Denial::new(
            "credential-dump",
            format!("git {sub} fill/get prints stored credentials"),
        ));
    }
    Ok(())
}
