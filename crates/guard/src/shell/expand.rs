//! Static word expansion: quotes, escapes, `$'…'`, `~`, brace expansion,
//! variables known in the line; command substitutions are checked as code
//! and leave the word unknown.

use brush_parser::word::{Parameter, ParameterExpr, TildeExpr, WordPiece, WordPieceWithSource};

use super::prescan::long_tilde_number;
use super::Checker;
use crate::words::{self, Arg, ArgBuilder};
use crate::Denial;

impl Checker<'_> {
    /// Expand one shell word into the words it becomes (brace expansion can
    /// make several).
    pub(crate) fn expand_word(&mut self, raw: &str) -> Result<Vec<Arg>, Denial> {
        if words::may_brace_expand(raw) {
            match words::brace_expand(raw) {
                Some(alts) if alts.len() > 1 => {
                    let mut out = Vec::new();
                    for alt in alts {
                        out.extend(self.expand_word_raw(&alt)?);
                    }
                    return Ok(out);
                }
                Some(_) => {}
                None => return Ok(vec![Arg::unknown(true, false)]),
            }
        }
        self.expand_word_raw(raw)
    }

    /// Expand a word that must stay one word (redirection targets).
    pub(super) fn expand_single(&mut self, raw: &str) -> Result<Arg, Denial> {
        let mut args = self.expand_word(raw)?;
        if args.len() == 1 {
            Ok(args.remove(0))
        } else {
            Ok(Arg::unknown(true, args.iter().any(|a| a.from_download)))
        }
    }

    /// Expand a word without brace expansion: always one word.
    pub(super) fn expand_word_raw(&mut self, raw: &str) -> Result<Vec<Arg>, Denial> {
        let pieces = self.parse_word(raw, false)?;
        let mut b = ArgBuilder::default();
        self.expand_pieces(&pieces, false, &mut b)?;
        Ok(vec![b.finish()])
    }

    /// brush's word parser, guarded: it panics on `~` followed by a number
    /// that overflows (brush-parser 0.4, word.rs:909; found by cargo-fuzz).
    pub(super) fn parse_word(
        &self,
        raw: &str,
        heredoc: bool,
    ) -> Result<Vec<WordPieceWithSource>, Denial> {
        if long_tilde_number(raw) {
            return Err(Denial::new(
                "parse-error",
                "could not parse: `~` followed by an oversized number",
            ));
        }
        let opts = &self.opts;
        let r = std::panic::catch_unwind(|| {
            if heredoc {
                brush_parser::word::parse_heredoc(raw, opts)
            } else {
                brush_parser::word::parse(raw, opts)
            }
        });
        match r {
            Ok(Ok(pieces)) => Ok(pieces),
            Ok(Err(e)) => Err(Denial::new("parse-error", format!("could not parse: {e}"))),
            Err(_) => Err(Denial::new(
                "parse-error",
                "could not parse: the word parser failed",
            )),
        }
    }

    /// Append the expansion of parsed word `pieces` to `b` (`quoted`: inside
    /// double quotes or a here-document).
    pub(super) fn expand_pieces(
        &mut self,
        pieces: &[WordPieceWithSource],
        quoted: bool,
        b: &mut ArgBuilder,
    ) -> Result<(), Denial> {
        for p in pieces {
            match &p.piece {
                WordPiece::Text(s) => b.push_lit(s, quoted),
                WordPiece::SingleQuotedText(s) => b.push_lit(s, true),
                WordPiece::AnsiCQuotedText(s) => b.push_lit(&words::decode_ansi_c(s), true),
                WordPiece::DoubleQuotedSequence(inner)
                | WordPiece::GettextDoubleQuotedSequence(inner) => {
                    self.expand_pieces(inner, true, b)?;
                }
                WordPiece::TildeExpansion(t) => match t {
                    TildeExpr::Home => b.push_lit(&self.home.clone(), true),
                    TildeExpr::UserHome(u) => {
                        let h = if u == "root" {
                            "/root".to_owned()
                        } else {
                            format!("/home/{u}")
                        };
                        b.push_lit(&h, true);
                    }
                    TildeExpr::WorkingDir => match self.state.cwd.clone() {
                        Some(c) => b.push_lit(&c, true),
                        None => b.push_dyn(true, false),
                    },
                    _ => b.push_dyn(true, false), // ~-, ~N: directory stack
                },
                WordPiece::ParameterExpansion(pe) => {
                    self.check_parameter_expr(pe)?;
                    if let Some(n) = secret_param(pe) {
                        b.mark_secret(n);
                    }
                    match self.parameter_value(pe) {
                        Some(v)
                            if quoted
                                || !v.chars().any(|c| c.is_whitespace() || "*?[".contains(c)) =>
                        {
                            b.push_lit(&v, true)
                        }
                        _ => b.push_dyn(quoted, self.parameter_tainted(pe)),
                    }
                }
                WordPiece::CommandSubstitution(code) => {
                    let eff = self.check_nested(code, true)?;
                    b.push_dyn(quoted, eff.downloads);
                }
                WordPiece::BackquotedCommandSubstitution(code) => {
                    let eff = self.check_nested(&words::unescape_backticks(code, quoted), true)?;
                    b.push_dyn(quoted, eff.downloads);
                }
                WordPiece::EscapeSequence(s) => {
                    let rest = s.strip_prefix('\\').unwrap_or(s);
                    if rest != "\n" {
                        b.push_lit(rest, true);
                    }
                }
                WordPiece::ArithmeticExpression(e) => {
                    self.check_arith(&e.value)?;
                    b.push_dyn(quoted, false);
                }
            }
        }
        Ok(())
    }

    /// Default/alternative values inside `${…}` may hold command substitutions.
    fn check_parameter_expr(&mut self, pe: &ParameterExpr) -> Result<(), Denial> {
        let texts: Vec<&String> = match pe {
            ParameterExpr::UseDefaultValues { default_value, .. }
            | ParameterExpr::AssignDefaultValues { default_value, .. } => {
                default_value.iter().collect()
            }
            ParameterExpr::IndicateErrorIfNullOrUnset { error_message, .. } => {
                error_message.iter().collect()
            }
            ParameterExpr::UseAlternativeValue {
                alternative_value, ..
            } => alternative_value.iter().collect(),
            ParameterExpr::Parameter { .. } => Vec::new(),
            other => {
                // Patterns, replacements, offsets …: substitutions there are
                // exotic; refuse rather than model every operator.
                let dbg = format!("{other:?}");
                if dbg.contains("$(") || dbg.contains('`') {
                    return Err(Denial::new(
                        "dynamic-code",
                        "command substitution inside a ${…} operator",
                    ));
                }
                Vec::new()
            }
        };
        for t in texts {
            if t.contains("$(") || t.contains('`') || t.contains("${") {
                self.expand_word_raw(t)?;
            }
        }
        Ok(())
    }

    /// The value of `$NAME` or `${NAME:-…}` when the variable is known.
    fn parameter_value(&self, pe: &ParameterExpr) -> Option<String> {
        match pe {
            ParameterExpr::Parameter {
                parameter: Parameter::Named(n),
                indirect: false,
            } => self.var(n),
            ParameterExpr::UseDefaultValues {
                parameter: Parameter::Named(n),
                indirect: false,
                ..
            } => self.var(n).filter(|v| !v.is_empty()),
            _ => None,
        }
    }

    /// Record a shell variable assignment.
    pub(crate) fn set_var(&mut self, name: String, value: Option<String>, download: bool) {
        if download {
            self.state.tainted.insert(name.clone());
        } else {
            self.state.tainted.remove(&name);
        }
        self.state.vars.insert(name, value);
    }

    /// Whether the variable a parameter expansion reads holds a download.
    fn parameter_tainted(&self, pe: &ParameterExpr) -> bool {
        match pe {
            ParameterExpr::Parameter {
                parameter: Parameter::Named(n),
                ..
            }
            | ParameterExpr::UseDefaultValues {
                parameter: Parameter::Named(n),
                ..
            } => self.state.tainted.contains(n),
            _ => false,
        }
    }

    /// A variable known in the line, or one the guard knows (`HOME`, `PWD`).
    fn var(&self, name: &str) -> Option<String> {
        if let Some(v) = self.state.vars.get(name) {
            return v.clone();
        }
        match name {
            "HOME" => Some(self.home.clone()),
            "PWD" => self.state.cwd.clone(),
            // errand's own config directory: treat as the secret it is.
            "ERRAND_HOME" => Some(format!("{}/.config/errand", self.home)),
            _ => None,
        }
    }
}

/// The name of a credential-looking variable a parameter expansion reads.
fn secret_param(pe: &ParameterExpr) -> Option<&str> {
    let n = match pe {
        ParameterExpr::Parameter {
            parameter: Parameter::Named(n),
            ..
        }
        | ParameterExpr::UseDefaultValues {
            parameter: Parameter::Named(n),
            ..
        }
        | ParameterExpr::UseAlternativeValue {
            parameter: Parameter::Named(n),
            ..
        } => n.as_str(),
        _ => return None,
    };
    crate::classes::is_secret_var(n).then_some(n)
}
