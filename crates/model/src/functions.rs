//! The function tools a request offers, with their parameter schemas, for
//! the protocols that declare tools as JSON-schema functions (OpenAI Chat
//! Completions, Gemini). The neutral steps use it to pick a tool the harness
//! really offers and the argument names its schema declares, so a harness
//! version that renames a parameter (Gemini's `read_file` took
//! `absolute_path`, 0.61.0 takes `file_path`) still gets a valid call.

use serde_json::{Map, Value};

/// Offered function tools: name and the `properties` of its parameter schema.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Functions {
    list: Vec<(String, Map<String, Value>)>,
}

impl Functions {
    /// From `(name, parameters schema)` pairs; entries without a name are skipped.
    fn from_pairs<'a>(pairs: impl Iterator<Item = (Option<&'a str>, Option<&'a Value>)>) -> Self {
        let list = pairs
            .filter_map(|(name, schema)| {
                let props = schema
                    .and_then(|s| s.get("properties"))
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                Some((name?.to_owned(), props))
            })
            .collect();
        Functions { list }
    }

    /// OpenAI Chat Completions: `tools[].function.{name, parameters}`.
    pub fn from_chat_request(body: &Value) -> Self {
        let tools = body
            .get("tools")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        Self::from_pairs(tools.iter().map(|t| {
            let f = t.get("function").unwrap_or(t);
            (f.get("name").and_then(Value::as_str), f.get("parameters"))
        }))
    }

    /// Gemini: `tools[].functionDeclarations[].{name, parametersJsonSchema | parameters}`.
    pub fn from_gemini_request(body: &Value) -> Self {
        let tools = body
            .get("tools")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        Self::from_pairs(
            tools
                .iter()
                .filter_map(|t| t.get("functionDeclarations").and_then(Value::as_array))
                .flatten()
                .map(|f| {
                    (
                        f.get("name").and_then(Value::as_str),
                        f.get("parametersJsonSchema")
                            .or_else(|| f.get("parameters")),
                    )
                }),
        )
    }

    /// Whether no function is offered.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether the function `name` is offered.
    pub fn has(&self, name: &str) -> bool {
        self.list.iter().any(|(n, _)| n == name)
    }

    /// Whether `name` is offered and its schema declares the parameter `param`.
    pub fn has_param(&self, name: &str, param: &str) -> bool {
        self.list
            .iter()
            .any(|(n, props)| n == name && props.contains_key(param))
    }

    /// The first of `candidates` that the schema of `name` declares; the
    /// first candidate when none is declared (or `name` is not offered).
    pub fn param<'a>(&self, name: &str, candidates: &[&'a str]) -> &'a str {
        candidates
            .iter()
            .copied()
            .find(|c| self.has_param(name, c))
            .or_else(|| candidates.first().copied())
            .unwrap_or("")
    }
}

/// One harness's shell and file tools, as a wire protocol names them.
pub struct ToolNames {
    /// The tool that runs a shell command (a `shell` step).
    pub shell: &'static str,
    /// The tool that reads a file (a `read` step).
    pub read: &'static str,
    /// The tool that writes a file (a `write` step).
    pub write: &'static str,
    /// Spellings of the path parameter, most likely first.
    pub path_params: &'static [&'static str],
    /// Describe shell calls even when the request declares no shell tool.
    pub describe_undeclared_shell: bool,
}

/// A scenario step that names a tool call (`shell`, `read`, `write`, `tool`)
/// as `(function name, arguments)`, in the tools the request declares: a file
/// tool when declared (or when no shell is either), else the shell doing the
/// same. `None` for steps that are not calls (text, errors).
pub fn call_for(
    step: &crate::scenario::Step,
    tools: &Functions,
    names: &ToolNames,
    cwd: &str,
) -> Option<(String, Value)> {
    use crate::openai::{shell_quote, write_script};
    use crate::scenario::{resolve_path, Step};
    use serde_json::json;
    let shell = |command: &str| {
        let mut args = json!({ "command": command });
        if tools.has_param(names.shell, "description")
            || (names.describe_undeclared_shell && !tools.has(names.shell))
        {
            args["description"] = json!(crate::anthropic::SHELL_DESCRIPTION);
        }
        (names.shell.to_string(), args)
    };
    let use_file_tool = |name: &str| tools.has(name) || !tools.has(names.shell);
    Some(match step {
        Step::Shell { command } => shell(command),
        Step::Read { path } => {
            let path = resolve_path(cwd, path);
            if use_file_tool(names.read) {
                let key = tools.param(names.read, names.path_params);
                (names.read.to_string(), json!({ key: path }))
            } else {
                shell(&format!("cat {}", shell_quote(&path)))
            }
        }
        Step::Write { path, content } => {
            let path = resolve_path(cwd, path);
            if use_file_tool(names.write) {
                let key = tools.param(names.write, names.path_params);
                (
                    names.write.to_string(),
                    json!({ key: path, "content": content }),
                )
            } else {
                shell(&write_script(&path, content))
            }
        }
        Step::Tool { name, input } => (name.clone(), input.clone()),
        Step::Text { .. } | Step::Error { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_chat_and_gemini_declarations() {
        let chat = Functions::from_chat_request(&json!({"tools": [
            {"type": "function", "function": {"name": "read", "parameters": {"type": "object", "properties": {"filePath": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "bash"}},
            {"type": "function", "function": {"parameters": {}}},
            7
        ]}));
        assert!(chat.has("read") && chat.has("bash") && !chat.has("write"));
        assert!(chat.has_param("read", "filePath"));
        assert!(!chat.has_param("bash", "description"));
        assert_eq!(chat.param("read", &["file_path", "filePath"]), "filePath");
        assert_eq!(chat.param("write", &["filePath", "file_path"]), "filePath");

        let gemini = Functions::from_gemini_request(&json!({"tools": [
            {"functionDeclarations": [
                {"name": "read_file", "parametersJsonSchema": {"properties": {"absolute_path": {}}}},
                {"name": "write_file", "parameters": {"properties": {"file_path": {}}}}
            ]},
            {"googleSearch": {}}
        ]}));
        assert_eq!(
            gemini.param("read_file", &["file_path", "absolute_path"]),
            "absolute_path"
        );
        assert!(gemini.has_param("write_file", "file_path"));
        assert!(
            Functions::from_gemini_request(&json!({"tools": [{"googleSearch": {}}]})).is_empty()
        );
        assert!(Functions::from_chat_request(&json!({"tools": "x"})).is_empty());
    }
}
