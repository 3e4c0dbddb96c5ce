//! One simple command: its assignments, words and redirections (stdin
//! sources, device and secret targets), the environment variables that
//! hold code, and the files it writes for a later `sh f` in the same line.

use brush_parser::ast;

use super::{Checker, Effects, Stdin, CODE_VARS, MAX_DEPTH};
use crate::words::{Arg, ArgBuilder};
use crate::Denial;

impl Checker<'_> {
    /// A simple command: its assignments, words and redirections, then its argv.
    pub(super) fn check_simple(&mut self, sc: &ast::SimpleCommand) -> Result<Effects, Denial> {
        let mut assignments: Vec<(String, Option<String>, bool)> = Vec::new();
        let mut argv: Vec<Arg> = Vec::new();
        let mut redirects: Vec<&ast::IoRedirect> = Vec::new();

        if let Some(prefix) = &sc.prefix {
            for item in &prefix.0 {
                match item {
                    ast::CommandPrefixOrSuffixItem::AssignmentWord(a, _) => {
                        let name = match &a.name {
                            ast::AssignmentName::VariableName(n) => n.clone(),
                            ast::AssignmentName::ArrayElementName(n, _) => n.clone(),
                        };
                        let mut download = false;
                        let value = match &a.value {
                            ast::AssignmentValue::Scalar(w) => {
                                let args = self.expand_word_raw(&w.value)?;
                                download = args.iter().any(|a| a.from_download);
                                match args.as_slice() {
                                    [one] => one.known().map(str::to_owned),
                                    _ => None,
                                }
                            }
                            ast::AssignmentValue::Array(items) => {
                                for (k, v) in items {
                                    if let Some(k) = k {
                                        self.expand_word(&k.value)?;
                                    }
                                    self.expand_word(&v.value)?;
                                }
                                None
                            }
                        };
                        assignments.push((name, value, download));
                    }
                    ast::CommandPrefixOrSuffixItem::Word(w) => {
                        argv.extend(self.expand_word(&w.value)?)
                    }
                    ast::CommandPrefixOrSuffixItem::IoRedirect(r) => redirects.push(r),
                    ast::CommandPrefixOrSuffixItem::ProcessSubstitution(_, s) => {
                        argv.push(self.process_substitution(s)?);
                    }
                }
            }
        }
        if let Some(w) = &sc.word_or_name {
            argv.extend(self.expand_word(&w.value)?);
        }
        if let Some(suffix) = &sc.suffix {
            for item in &suffix.0 {
                match item {
                    ast::CommandPrefixOrSuffixItem::Word(w)
                    | ast::CommandPrefixOrSuffixItem::AssignmentWord(_, w) => {
                        argv.extend(self.expand_word(&w.value)?);
                    }
                    ast::CommandPrefixOrSuffixItem::IoRedirect(r) => redirects.push(r),
                    ast::CommandPrefixOrSuffixItem::ProcessSubstitution(_, s) => {
                        argv.push(self.process_substitution(s)?);
                    }
                }
            }
        }

        let mut stdin = Stdin::Inherited;
        for r in &redirects {
            self.check_redirect(r, &mut stdin)?;
        }
        for (name, value, download) in &assignments {
            if *download && CODE_VARS.contains(&name.as_str()) {
                return Err(Denial::new(
                    "pipe-to-shell",
                    format!("{name} (run as a command) is set from a download"),
                ));
            }
            self.check_code_env(name, value.as_deref())?;
        }
        if argv.is_empty() {
            // Plain assignments persist in the shell.
            for (name, value, download) in assignments {
                self.set_var(name, value, download);
            }
            return Ok(Effects::default());
        }
        let eff = self.check_argv(&argv, &stdin)?;
        self.record_written(&argv, &stdin, &redirects, eff)?;
        Ok(eff)
    }

    /// Remember files written by `echo … > f`, `printf … > f`, `cat > f <<EOF`
    /// so a later `sh f` / `python f` / `./f` in the same line is checked.
    fn record_written(
        &mut self,
        argv: &[Arg],
        stdin: &Stdin,
        redirects: &[&ast::IoRedirect],
        eff: Effects,
    ) -> Result<(), Denial> {
        use ast::IoFileRedirectKind as K;
        let mut targets: Vec<(String, bool)> = Vec::new();
        for r in redirects {
            if let ast::IoRedirect::File(fd, kind, ast::IoFileRedirectTarget::Filename(w)) = r {
                if matches!(fd, None | Some(1)) && matches!(kind, K::Write | K::Append | K::Clobber)
                {
                    let a = self.expand_single(&w.value)?;
                    if let Some(k) = a.known().and_then(|t| self.written_key(t)) {
                        targets.push((k, matches!(kind, K::Append)));
                    }
                }
            }
        }
        let name = argv
            .first()
            .map(|a| crate::commands::command_name(&a.text))
            .unwrap_or("");
        // Downloads saved to a file: `curl -o x.sh …`, `wget -O x.sh …`.
        if matches!(name, "curl" | "wget") {
            let mut it = argv.iter().skip(1);
            while let Some(a) = it.next() {
                let t = a.text.as_str();
                let takes_value = matches!(t, "-o" | "--output" | "--output-document")
                    || (name == "wget" && t == "-O")
                    || (t.starts_with('-')
                        && !t.starts_with("--")
                        && (t.ends_with('o') || (name == "wget" && t.ends_with('O'))));
                let v = if takes_value {
                    it.next().and_then(|v| v.known())
                } else {
                    t.strip_prefix("--output=")
                        .or_else(|| t.strip_prefix("--output-document="))
                };
                if let Some(k) = v.and_then(|v| self.written_key(v)) {
                    self.state.written.insert(k, None);
                }
            }
        }
        if name == "tee" {
            for a in argv.iter().skip(1).filter(|a| !a.text.starts_with('-')) {
                if let Some(k) = a.known().and_then(|t| self.written_key(t)) {
                    targets.push((k, argv.iter().any(|a| a.text == "-a")));
                }
            }
        }
        if targets.is_empty() {
            return Ok(());
        }
        let known = argv.iter().all(|a| !a.dynamic);
        let content: Option<String> = if eff.decodes || !known {
            None
        } else {
            match name {
                "echo" => {
                    let words: Vec<&str> = argv[1..]
                        .iter()
                        .map(|a| a.text.as_str())
                        .skip_while(|t| matches!(*t, "-n" | "-e" | "-E" | "-ne" | "-en"))
                        .collect();
                    Some(format!("{}\n", words.join(" ")).replace("\\n", "\n"))
                }
                "printf" => Some(
                    argv[1..]
                        .iter()
                        .map(|a| {
                            a.text
                                .replace("\\n", "\n")
                                .replace("%s", " ")
                                .replace("%b", " ")
                        })
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
                "cat" | "tee" => match stdin {
                    Stdin::Doc {
                        text,
                        from_download: false,
                    } if argv.len() == 1 || name == "tee" => text.clone(),
                    _ => None,
                },
                _ => None,
            }
        };
        for (k, append) in targets {
            let c = match (append, self.state.written.get(&k)) {
                (true, Some(Some(old))) => content.as_ref().map(|c| format!("{old}{c}")),
                (true, Some(None)) => None,
                _ => content.clone(),
            };
            self.state.written.insert(k, c);
        }
        Ok(())
    }

    /// The normalised path of a file for [`super::State::written`].
    pub(crate) fn written_key(&self, text: &str) -> Option<String> {
        crate::paths::resolve(self.state.cwd.as_deref(), text)
    }

    /// Environment variables whose value is executed as shell code by git,
    /// bash or pagers.
    pub(crate) fn check_code_env(&mut self, name: &str, value: Option<&str>) -> Result<(), Denial> {
        if !CODE_VARS.contains(&name) {
            return Ok(());
        }
        match value {
            Some(code) => self.check_nested(code, true).map(|_| ()),
            None => Err(Denial::new(
                "dynamic-code",
                format!("{name} (run as a command) is set from a value known only at run time"),
            )),
        }
    }

    /// `<(…)`/`>(…)`: the code runs in a subshell; the word is a file of unknown content.
    fn process_substitution(&mut self, s: &ast::SubshellCommand) -> Result<Arg, Denial> {
        if self.depth >= MAX_DEPTH {
            return Err(Denial::new(
                "too-complex",
                "process substitutions nested too deep",
            ));
        }
        let saved = self.state.clone();
        self.depth += 1;
        let r = self.check_list(&s.list);
        self.depth -= 1;
        self.state = saved;
        let eff = r?;
        // `<(…)` becomes a /dev/fd path: a file whose content is unknown.
        // Decoded text read as a script is as unreadable as a download
        // (`bash <(base64 -d <<< …)`).
        Ok(Arg::unknown(false, eff.downloads || eff.decodes))
    }

    /// One redirection: what it reads (secret files, stdin sources) and writes
    /// (devices, `.git`); here-documents become the command's stdin.
    pub(super) fn check_redirect(
        &mut self,
        r: &ast::IoRedirect,
        stdin: &mut Stdin,
    ) -> Result<(), Denial> {
        use ast::IoFileRedirectKind as K;
        let is_stdin = |fd: &Option<i32>| fd.is_none() || *fd == Some(0);
        match r {
            ast::IoRedirect::File(fd, kind, target) => {
                let arg = match target {
                    ast::IoFileRedirectTarget::Filename(w) => self.expand_single(&w.value)?,
                    ast::IoFileRedirectTarget::ProcessSubstitution(_, s) => {
                        self.process_substitution(s)?
                    }
                    ast::IoFileRedirectTarget::Duplicate(w) => {
                        let a = self.expand_single(&w.value)?;
                        if a.text.chars().all(|c| c.is_ascii_digit() || c == '-') {
                            return Ok(());
                        }
                        a
                    }
                    ast::IoFileRedirectTarget::Fd(_) => return Ok(()),
                };
                match kind {
                    K::Read | K::ReadAndWrite | K::DuplicateInput => {
                        self.check_secret_path(&arg, false, "<")?;
                        if matches!(kind, K::ReadAndWrite) {
                            self.check_device_target(&arg, "redirection `<>`")?;
                        }
                        if is_stdin(fd) {
                            *stdin = Stdin::File {
                                from_download: arg.from_download,
                            };
                        }
                    }
                    K::Write | K::Append | K::Clobber | K::DuplicateOutput => {
                        self.check_device_target(&arg, "output redirection `>`")?;
                    }
                }
            }
            ast::IoRedirect::OutputAndError(w, _) => {
                let arg = self.expand_single(&w.value)?;
                self.check_device_target(&arg, "output redirection `&>`")?;
            }
            ast::IoRedirect::HereDocument(fd, doc) => {
                let (text, dl) = if doc.requires_expansion {
                    let pieces = self.parse_word(&doc.doc.value, true)?;
                    let mut b = ArgBuilder::default();
                    self.expand_pieces(&pieces, true, &mut b)?;
                    let a = b.finish();
                    (a.known().map(str::to_owned), a.from_download)
                } else {
                    (Some(doc.doc.value.clone()), false)
                };
                if is_stdin(fd) {
                    *stdin = Stdin::Doc {
                        text,
                        from_download: dl,
                    };
                }
            }
            ast::IoRedirect::HereString(fd, w) => {
                let a = self.expand_single(&w.value)?;
                if is_stdin(fd) {
                    *stdin = Stdin::Doc {
                        text: a.known().map(|t| format!("{t}\n")),
                        from_download: a.from_download,
                    };
                }
            }
        }
        Ok(())
    }
}
