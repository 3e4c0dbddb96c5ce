//! Scenario files: the script the scripted model replays.
//!
//! A scenario is protocol-neutral JSON:
//!
//! ```json
//! {"steps": [
//!   {"shell": "grep -n foo src/lib.rs"},
//!   {"read": "src/lib.rs"},
//!   {"write": {"path": "notes.txt", "content": "hi\n"}},
//!   {"tool": "Edit", "input": {"file_path": "/workspace/src/lib.rs", "old_string": "a", "new_string": "b"}},
//!   {"text": "Done."},
//!   {"error": {"status": 400, "message": "bad request"}}
//! ]}
//! ```
//!
//! `shell`, `read`, `write` and `text` are neutral: each wire-protocol module
//! maps them onto the harness's own tool names. `tool` is passed through
//! unchanged. `error` answers the request with that HTTP status (an optional
//! `"type"` overrides the provider error type). Any step may carry a
//! `"comment"`; any other key in a step is an error, so typos are caught.
//! Unknown top-level keys are ignored.
//!
//! Step selection ([`Scenario::select`]) is stateless: a request is answered
//! with step `k`, where `k` is the number of assistant turns already in the
//! request's conversation. This module does no I/O except [`Scenario::load`].

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Working directory assumed when a request does not reveal the agent's cwd.
pub const DEFAULT_CWD: &str = "/workspace";

/// The step kinds a scenario may use, in the order they are documented.
pub const STEP_KINDS: [&str; 6] = ["shell", "read", "write", "tool", "text", "error"];

/// A parsed scenario: the ordered steps the model replays.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scenario {
    /// Steps, answered in order: the `k`-th model turn of a conversation gets `steps[k]`.
    pub steps: Vec<Step>,
}

/// One scripted model turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Run a shell command with the harness's shell tool (Claude Code: `Bash`;
    /// Codex: `exec_command`; OpenCode: `bash`; Gemini CLI: `run_shell_command`).
    Shell {
        /// The command line.
        command: String,
    },
    /// Read a file with the harness's read tool (Claude Code: `Read`; Codex:
    /// `cat` through its shell tool; OpenCode: `read`; Gemini CLI: `read_file`).
    /// Relative paths are resolved against the agent's working directory.
    Read {
        /// File path, absolute or relative to the agent's cwd.
        path: String,
    },
    /// Write a whole file with the harness's write tool (Claude Code: `Write`;
    /// Codex: `apply_patch` when offered, else a heredoc through its shell tool;
    /// OpenCode: `write`; Gemini CLI: `write_file`).
    /// Relative paths are resolved against the agent's working directory.
    Write {
        /// File path, absolute or relative to the agent's cwd.
        path: String,
        /// The complete new file content.
        content: String,
    },
    /// A harness-specific tool call, passed through unchanged.
    Tool {
        /// The tool's name as the harness knows it, e.g. `Edit`.
        name: String,
        /// The tool input object (`{}` when the scenario gives none).
        input: Value,
    },
    /// A final assistant answer that ends the turn.
    Text {
        /// The answer text (never empty).
        text: String,
    },
    /// Answer the request with an HTTP error instead of a message.
    Error {
        /// HTTP status, 400..=599.
        status: u16,
        /// Error message placed in the provider's error body.
        message: String,
        /// Provider error type; `None` means the protocol's default
        /// (Anthropic: `invalid_request_error`; OpenAI: `invalid_request_error`
        /// for 4xx, `server_error` for 5xx).
        error_type: Option<String>,
    },
}

impl Step {
    /// The scenario keyword of this step's kind (`"shell"`, `"read"`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Shell { .. } => "shell",
            Step::Read { .. } => "read",
            Step::Write { .. } => "write",
            Step::Tool { .. } => "tool",
            Step::Text { .. } => "text",
            Step::Error { .. } => "error",
        }
    }
}

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The scenario file could not be read.
    #[error("cannot read scenario file {}: {source}", path.display())]
    Io {
        /// The file that was asked for.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not JSON at all.
    #[error("scenario is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The JSON does not have the scenario's top-level shape.
    #[error("scenario: {0}")]
    Shape(String),
    /// One step is malformed.
    #[error("scenario step {index}: {message}")]
    Step {
        /// Zero-based index of the bad step in `steps`.
        index: usize,
        /// What is wrong with it and what was expected.
        message: String,
    },
    /// A scenario file parsed with an error; names the file.
    #[error("{}: {source}", path.display())]
    InFile {
        /// The scenario file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: Box<ScenarioError>,
    },
}

/// Which answer a request gets; the result of [`Scenario::select`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Selection<'a> {
    /// A side call (no tools offered, e.g. title generation): a short plain
    /// text answer that consumes no step.
    Side,
    /// Step `index` of the scenario.
    Step {
        /// Zero-based step index (= assistant turns already in the conversation).
        index: usize,
        /// The step to answer with.
        step: &'a Step,
    },
    /// The conversation is past the last step: answer a final "Done.".
    Exhausted {
        /// The step index that would have been served.
        index: usize,
    },
}

impl Scenario {
    /// Parse a scenario from JSON text. Errors name the bad step's index.
    pub fn from_json(s: &str) -> Result<Scenario, ScenarioError> {
        let value: Value = serde_json::from_str(s)?;
        let Value::Object(top) = value else {
            return Err(ScenarioError::Shape(format!(
                "expected a JSON object with a \"steps\" array, found {}",
                type_name(&value)
            )));
        };
        let steps = match top.get("steps") {
            Some(Value::Array(steps)) => steps,
            Some(other) => {
                return Err(ScenarioError::Shape(format!(
                    "\"steps\" must be an array, found {}",
                    type_name(other)
                )))
            }
            None => {
                return Err(ScenarioError::Shape(
                    "missing \"steps\": expected {\"steps\": [ ... ]}".to_string(),
                ))
            }
        };
        let steps = steps
            .iter()
            .enumerate()
            .map(|(index, v)| {
                parse_step(v).map_err(|message| ScenarioError::Step { index, message })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Scenario { steps })
    }

    /// Read and parse a scenario file. Errors name the file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Scenario::from_json(&text).map_err(|e| ScenarioError::InFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Choose the answer for a request.
    ///
    /// `offers_tools`: whether the request offers any tools (requests without
    /// tools are side calls). `assistant_turns`: how many assistant messages
    /// the request's conversation already holds.
    pub fn select(&self, offers_tools: bool, assistant_turns: usize) -> Selection<'_> {
        if !offers_tools {
            return Selection::Side;
        }
        match self.steps.get(assistant_turns) {
            Some(step) => Selection::Step {
                index: assistant_turns,
                step,
            },
            None => Selection::Exhausted {
                index: assistant_turns,
            },
        }
    }
}

/// Make `path` absolute against the agent's working directory `cwd`.
/// Absolute paths are returned unchanged; a leading `./` is dropped.
pub fn resolve_path(cwd: &str, path: &str) -> String {
    if path.starts_with('/') {
        return path.to_string();
    }
    let mut rel = path;
    while let Some(rest) = rel.strip_prefix("./") {
        rel = rest.trim_start_matches('/');
    }
    let base = cwd.trim_end_matches('/');
    match rel {
        "" | "." => {
            if base.is_empty() {
                "/".to_string()
            } else {
                base.to_string()
            }
        }
        _ => format!("{base}/{rel}"),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn expected_kinds() -> String {
    STEP_KINDS.join(", ")
}

/// Parse one step; the error message is completed with the index by the caller.
fn parse_step(v: &Value) -> Result<Step, String> {
    let Value::Object(obj) = v else {
        return Err(format!(
            "expected an object such as {{\"shell\": \"ls\"}}, found {}",
            type_name(v)
        ));
    };
    let kind = step_kind(obj)?;
    let allowed: &[&str] = if kind == "tool" {
        &["tool", "input", "comment"]
    } else {
        &[kind, "comment"]
    };
    reject_unknown_keys(obj, allowed, &format!("a {kind} step"))?;
    if let Some(c) = obj.get("comment") {
        if !c.is_string() {
            return Err(format!(
                "\"comment\" must be a string, found {}",
                type_name(c)
            ));
        }
    }
    let Some(field) = obj.get(kind) else {
        return Err(format!("missing {kind:?}"));
    };
    match kind {
        "shell" => Ok(Step::Shell {
            command: non_empty_string(field, "shell", "the command to run")?,
        }),
        "read" => Ok(Step::Read {
            path: non_empty_string(field, "read", "the file path to read")?,
        }),
        "write" => parse_write(field),
        "tool" => parse_tool(field, obj.get("input")),
        "text" => Ok(Step::Text {
            text: non_empty_string(field, "text", "the final answer text")?,
        }),
        "error" => parse_error(field),
        _ => Err(format!(
            "unknown step kind; expected one of: {}",
            expected_kinds()
        )),
    }
}

/// The one step kind among the keys of a step (`shell`, `read`, …).
fn step_kind(obj: &Map<String, Value>) -> Result<&'static str, String> {
    let kinds: Vec<&'static str> = STEP_KINDS
        .iter()
        .copied()
        .filter(|k| obj.contains_key(*k))
        .collect();
    match kinds.as_slice() {
        [kind] => Ok(*kind),
        [] => {
            let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
            Err(format!(
                "no step kind found (keys: {}); expected exactly one of: {}",
                if keys.is_empty() {
                    "none".to_string()
                } else {
                    keys.join(", ")
                },
                expected_kinds()
            ))
        }
        several => Err(format!(
            "has several step kinds ({}); a step must have exactly one",
            several.join(", ")
        )),
    }
}

/// `{"write": {"path": …, "content": …}}`.
fn parse_write(field: &Value) -> Result<Step, String> {
    let Value::Object(w) = field else {
        return Err(format!(
            "\"write\" must be an object {{\"path\": ..., \"content\": ...}}, found {}",
            type_name(field)
        ));
    };
    reject_unknown_keys(w, &["path", "content"], "\"write\"")?;
    let path = match w.get("path") {
        Some(p) => non_empty_string(p, "write.path", "the file path to write")?,
        None => return Err("\"write\" is missing \"path\"".to_string()),
    };
    let content = match w.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(format!(
                "\"write.content\" must be a string, found {}",
                type_name(other)
            ))
        }
        None => return Err("\"write\" is missing \"content\"".to_string()),
    };
    Ok(Step::Write { path, content })
}

/// `{"tool": NAME, "input": {…}}` (`input` defaults to `{}`).
fn parse_tool(field: &Value, input: Option<&Value>) -> Result<Step, String> {
    let name = non_empty_string(field, "tool", "the harness's tool name")?;
    let input = match input {
        None => Value::Object(Map::new()),
        Some(i @ Value::Object(_)) => i.clone(),
        Some(other) => {
            return Err(format!(
                "\"input\" of tool {name:?} must be an object, found {}",
                type_name(other)
            ))
        }
    };
    Ok(Step::Tool { name, input })
}

/// `{"error": {"status": 400..=599, "message": …, "type": …}}`.
fn parse_error(field: &Value) -> Result<Step, String> {
    let Value::Object(e) = field else {
        return Err(format!(
            "\"error\" must be an object {{\"status\": 400, \"message\": ...}}, found {}",
            type_name(field)
        ));
    };
    reject_unknown_keys(e, &["status", "message", "type"], "\"error\"")?;
    let status = match e.get("status") {
        Some(Value::Number(n)) => match n.as_u64() {
            Some(s @ 400..=599) => s as u16,
            _ => {
                return Err(format!(
                    "\"error.status\" must be an HTTP error status 400..=599, found {n}"
                ))
            }
        },
        Some(other) => {
            return Err(format!(
                "\"error.status\" must be a number, found {}",
                type_name(other)
            ))
        }
        None => return Err("\"error\" is missing \"status\"".to_string()),
    };
    let message = match e.get("message") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(format!(
                "\"error.message\" must be a string, found {}",
                type_name(other)
            ))
        }
        None => return Err("\"error\" is missing \"message\"".to_string()),
    };
    let error_type = match e.get("type") {
        None => None,
        Some(t) => Some(non_empty_string(
            t,
            "error.type",
            "the provider error type",
        )?),
    };
    Ok(Step::Error {
        status,
        message,
        error_type,
    })
}

fn reject_unknown_keys(
    obj: &Map<String, Value>,
    allowed: &[&str],
    what: &str,
) -> Result<(), String> {
    let unknown: Vec<&str> = obj
        .keys()
        .map(String::as_str)
        .filter(|k| !allowed.contains(k))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "unknown key{} {} in {what}; allowed: {}",
            if unknown.len() > 1 { "s" } else { "" },
            unknown
                .iter()
                .map(|k| format!("{k:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            allowed.join(", ")
        ))
    }
}

fn non_empty_string(v: &Value, name: &str, meaning: &str) -> Result<String, String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
        Value::String(_) => Err(format!("\"{name}\" must not be empty (it is {meaning})")),
        other => Err(format!(
            "\"{name}\" must be a string ({meaning}), found {}",
            type_name(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        match Scenario::from_json(json) {
            Ok(s) => panic!("expected an error for {json}, got {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_every_step_kind() -> Result<(), ScenarioError> {
        let s = Scenario::from_json(
            r#"{"name":"ignored","steps":[
                {"shell":"grep -n foo src/lib.rs"},
                {"read":"src/lib.rs","comment":"look first"},
                {"write":{"path":"notes.txt","content":"hi\n"}},
                {"tool":"Edit","input":{"file_path":"/workspace/src/lib.rs","old_string":"a","new_string":"b"}},
                {"tool":"TaskList"},
                {"text":"Done."},
                {"error":{"status":400,"message":"bad request"}},
                {"error":{"status":529,"message":"busy","type":"overloaded_error"}}
            ]}"#,
        )?;
        assert_eq!(
            s.steps,
            vec![
                Step::Shell {
                    command: "grep -n foo src/lib.rs".into()
                },
                Step::Read {
                    path: "src/lib.rs".into()
                },
                Step::Write {
                    path: "notes.txt".into(),
                    content: "hi\n".into()
                },
                Step::Tool {
                    name: "Edit".into(),
                    input: serde_json::json!({"file_path":"/workspace/src/lib.rs","old_string":"a","new_string":"b"})
                },
                Step::Tool {
                    name: "TaskList".into(),
                    input: serde_json::json!({})
                },
                Step::Text {
                    text: "Done.".into()
                },
                Step::Error {
                    status: 400,
                    message: "bad request".into(),
                    error_type: None
                },
                Step::Error {
                    status: 529,
                    message: "busy".into(),
                    error_type: Some("overloaded_error".into())
                },
            ]
        );
        let kinds: Vec<&str> = s.steps.iter().map(Step::kind).collect();
        assert_eq!(
            kinds,
            ["shell", "read", "write", "tool", "tool", "text", "error", "error"]
        );
        Ok(())
    }

    #[test]
    fn empty_steps_is_a_valid_scenario() -> Result<(), ScenarioError> {
        assert!(Scenario::from_json(r#"{"steps":[]}"#)?.steps.is_empty());
        Ok(())
    }

    #[test]
    fn bad_top_level_shapes() {
        assert!(err("not json").starts_with("scenario is not valid JSON"));
        assert_eq!(
            err("[1]"),
            "scenario: expected a JSON object with a \"steps\" array, found an array"
        );
        assert_eq!(
            err("{}"),
            "scenario: missing \"steps\": expected {\"steps\": [ ... ]}"
        );
        assert_eq!(
            err(r#"{"steps":{"shell":"ls"}}"#),
            "scenario: \"steps\" must be an array, found an object"
        );
    }

    #[test]
    fn bad_steps_name_their_index() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"steps":[{"text":"ok"},"ls"]}"#,
                "scenario step 1: expected an object such as {\"shell\": \"ls\"}, found a string",
            ),
            (
                r#"{"steps":[{"bash":"ls"}]}"#,
                "scenario step 0: no step kind found (keys: bash); expected exactly one of: shell, read, write, tool, text, error",
            ),
            (
                r#"{"steps":[{}]}"#,
                "scenario step 0: no step kind found (keys: none); expected exactly one of: shell, read, write, tool, text, error",
            ),
            (
                r#"{"steps":[{"text":"a"},{"text":"b"},{"shell":"ls","read":"x"}]}"#,
                "scenario step 2: has several step kinds (shell, read); a step must have exactly one",
            ),
            (
                r#"{"steps":[{"shell":"ls","descripton":"typo"}]}"#,
                "scenario step 0: unknown key \"descripton\" in a shell step; allowed: shell, comment",
            ),
            (
                r#"{"steps":[{"shell":42}]}"#,
                "scenario step 0: \"shell\" must be a string (the command to run), found a number",
            ),
            (
                r#"{"steps":[{"read":"  "}]}"#,
                "scenario step 0: \"read\" must not be empty (it is the file path to read)",
            ),
            (
                r#"{"steps":[{"write":{"path":"a.txt"}}]}"#,
                "scenario step 0: \"write\" is missing \"content\"",
            ),
            (
                r#"{"steps":[{"write":{"content":"x"}}]}"#,
                "scenario step 0: \"write\" is missing \"path\"",
            ),
            (
                r#"{"steps":[{"write":"a.txt"}]}"#,
                "scenario step 0: \"write\" must be an object {\"path\": ..., \"content\": ...}, found a string",
            ),
            (
                r#"{"steps":[{"write":{"path":"a","content":"b","mode":"x"}}]}"#,
                "scenario step 0: unknown key \"mode\" in \"write\"; allowed: path, content",
            ),
            (
                r#"{"steps":[{"tool":"Edit","input":[1]}]}"#,
                "scenario step 0: \"input\" of tool \"Edit\" must be an object, found an array",
            ),
            (
                r#"{"steps":[{"text":""}]}"#,
                "scenario step 0: \"text\" must not be empty (it is the final answer text)",
            ),
            (
                r#"{"steps":[{"error":{"status":200,"message":"x"}}]}"#,
                "scenario step 0: \"error.status\" must be an HTTP error status 400..=599, found 200",
            ),
            (
                r#"{"steps":[{"error":{"status":"400","message":"x"}}]}"#,
                "scenario step 0: \"error.status\" must be a number, found a string",
            ),
            (
                r#"{"steps":[{"error":{"status":400}}]}"#,
                "scenario step 0: \"error\" is missing \"message\"",
            ),
            (
                r#"{"steps":[{"text":"x","comment":5}]}"#,
                "scenario step 0: \"comment\" must be a string, found a number",
            ),
        ];
        for (json, want) in cases {
            assert_eq!(&err(json), want, "for {json}");
        }
    }

    #[test]
    fn load_names_the_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir =
            std::env::temp_dir().join(format!("errand-model-scenario-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let good = dir.join("good.json");
        std::fs::write(&good, r#"{"steps":[{"text":"hi"}]}"#)?;
        assert_eq!(Scenario::load(&good)?.steps.len(), 1);

        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"{"steps":[{"nope":1}]}"#)?;
        let msg = match Scenario::load(&bad) {
            Ok(_) => panic!("bad scenario loaded"),
            Err(e) => e.to_string(),
        };
        assert!(
            msg.starts_with(&format!("{}: scenario step 0:", bad.display())),
            "{msg}"
        );

        let missing = dir.join("missing.json");
        let msg = match Scenario::load(&missing) {
            Ok(_) => panic!("missing scenario loaded"),
            Err(e) => e.to_string(),
        };
        assert!(
            msg.starts_with(&format!("cannot read scenario file {}", missing.display())),
            "{msg}"
        );
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn selection_counts_assistant_turns() -> Result<(), ScenarioError> {
        let s = Scenario::from_json(r#"{"steps":[{"shell":"ls"},{"text":"bye"}]}"#)?;
        assert_eq!(s.select(false, 0), Selection::Side);
        assert_eq!(s.select(false, 5), Selection::Side);
        assert_eq!(
            s.select(true, 0),
            Selection::Step {
                index: 0,
                step: &s.steps[0]
            }
        );
        assert_eq!(
            s.select(true, 1),
            Selection::Step {
                index: 1,
                step: &s.steps[1]
            }
        );
        assert_eq!(s.select(true, 2), Selection::Exhausted { index: 2 });
        assert_eq!(s.select(true, 9), Selection::Exhausted { index: 9 });
        assert_eq!(
            Scenario::default().select(true, 0),
            Selection::Exhausted { index: 0 }
        );
        Ok(())
    }

    #[test]
    fn relative_paths_resolve_against_cwd() {
        assert_eq!(resolve_path("/work/ws", "notes.txt"), "/work/ws/notes.txt");
        assert_eq!(
            resolve_path("/work/ws/", "./src/lib.rs"),
            "/work/ws/src/lib.rs"
        );
        assert_eq!(resolve_path("/work/ws", "/etc/hosts"), "/etc/hosts");
        assert_eq!(resolve_path("/work/ws", "."), "/work/ws");
        assert_eq!(resolve_path("/", "a"), "/a");
        assert_eq!(resolve_path(DEFAULT_CWD, "a/b"), "/workspace/a/b");
    }
}
