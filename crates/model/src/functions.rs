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
