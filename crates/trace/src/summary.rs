//! One-line human summaries of tool calls, for terminal views.

use serde_json::Value;

/// The longest summary [`summarize_tool_call`] returns, in characters.
const MAX_CHARS: usize = 80;

/// A one-line human summary of a tool call, at most 80 characters.
///
/// - `Bash`: the command (its first line, `…` when there is more);
/// - `Read` / `Write` / `Edit` / `MultiEdit` / `NotebookEdit`: the file path;
/// - `Grep` / `Glob`: the pattern;
/// - `TodoWrite`: `N items`;
/// - `Task` / `Agent`: the description;
/// - `WebFetch`: the URL; `WebSearch`: the query;
/// - Codex: `apply_patch`: the first changed path (`+N more`); `web_search`:
///   the query (or the action's); `update_plan`: `N items`; `spawn_agent` /
///   `send_input`: the prompt;
/// - OpenCode: `read` / `write` / `edit`: the `filePath`; `glob` / `grep`:
///   the pattern; `webfetch`: the URL; `task`: the description;
///   `todowrite`: `N items`;
/// - Gemini CLI: `read_file` / `write_file` / `replace`: the `file_path`;
///   `list_directory`: the directory; `grep_search`: the pattern;
///   `google_web_search`: the query; `web_fetch`: the prompt; `write_todos`:
///   `N items`;
/// - Amp: `create_file` / `edit_file`: the `path`;
/// - anything else, or a known tool whose input lacks the field: the input as
///   compact JSON.
///
/// Longer summaries are cut and end with `…`.
pub fn summarize_tool_call(name: &str, input: &Value) -> String {
    let field = |key: &str| input.get(key).and_then(Value::as_str);
    let summary = match name {
        "Bash" => field("command").map(first_line),
        "Read" | "Write" | "Edit" | "MultiEdit" => field("file_path").map(str::to_owned),
        "NotebookEdit" => field("notebook_path")
            .or_else(|| field("file_path"))
            .map(str::to_owned),
        "Grep" | "Glob" => field("pattern").map(str::to_owned),
        "TodoWrite" => input
            .get("todos")
            .and_then(Value::as_array)
            .map(|todos| count(todos.len())),
        "Task" | "Agent" => field("description").map(str::to_owned),
        "WebFetch" => field("url").map(str::to_owned),
        "WebSearch" => field("query").map(str::to_owned),
        "apply_patch" => input
            .get("changes")
            .and_then(Value::as_array)
            .and_then(|changes| {
                let first = changes.first()?.get("path")?.as_str()?;
                Some(match changes.len() {
                    1 => first.to_owned(),
                    n => format!("{first} (+{} more)", n - 1),
                })
            }),
        "web_search" => field("query")
            .filter(|q| !q.is_empty())
            .or_else(|| input.get("action")?.get("query")?.as_str())
            .map(str::to_owned),
        "update_plan" => input
            .get("items")
            .or_else(|| input.get("plan"))
            .and_then(Value::as_array)
            .map(|items| count(items.len())),
        "spawn_agent" | "send_input" => field("prompt").map(str::to_owned),
        "read" | "write" | "edit" => field("filePath").map(str::to_owned),
        "glob" | "grep" | "grep_search" => field("pattern").map(str::to_owned),
        "webfetch" => field("url").map(str::to_owned),
        "task" => field("description").map(str::to_owned),
        "todowrite" | "write_todos" => input
            .get("todos")
            .and_then(Value::as_array)
            .map(|todos| count(todos.len())),
        "read_file" | "write_file" | "replace" => field("file_path")
            .or_else(|| field("absolute_path"))
            .map(str::to_owned),
        "list_directory" => field("dir_path")
            .or_else(|| field("path"))
            .map(str::to_owned),
        "google_web_search" => field("query").map(str::to_owned),
        "web_fetch" => field("prompt").map(str::to_owned),
        "create_file" | "edit_file" => field("path").map(str::to_owned),
        _ => None,
    };
    let summary = summary.unwrap_or_else(|| serde_json::to_string(input).unwrap_or_default());
    truncate(&one_line(&summary), MAX_CHARS)
}

/// `1 item`, `N items`.
fn count(n: usize) -> String {
    match n {
        1 => "1 item".to_owned(),
        n => format!("{n} items"),
    }
}

/// The first non-blank line of `text`, with `…` appended when more follows.
fn first_line(text: &str) -> String {
    let mut lines = text
        .lines()
        .map(str::trim_end)
        .skip_while(|l| l.trim().is_empty());
    let first = lines.next().unwrap_or("").to_owned();
    if lines.any(|l| !l.trim().is_empty()) {
        format!("{first} …")
    } else {
        first
    }
}

/// Control characters (newlines, tabs) replaced by spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `text` cut to at most `max` characters, ending with `…` when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bash_shows_the_first_line_of_the_command() {
        assert_eq!(
            summarize_tool_call(
                "Bash",
                &json!({"command": "touch bypass.txt", "description": "mock command"})
            ),
            "touch bypass.txt"
        );
        assert_eq!(
            summarize_tool_call("Bash", &json!({"command": "cd x\nmake test"})),
            "cd x …"
        );
    }

    #[test]
    fn long_commands_are_cut_to_80_chars() {
        let long = "echo ".to_owned() + &"é".repeat(200);
        let s = summarize_tool_call("Bash", &json!({ "command": long }));
        assert_eq!(s.chars().count(), 80);
        assert!(s.ends_with('…'));
        assert!(s.starts_with("echo éé"));
    }

    #[test]
    fn file_tools_show_the_path() {
        for tool in ["Read", "Write", "Edit", "MultiEdit"] {
            assert_eq!(
                summarize_tool_call(
                    tool,
                    &json!({"file_path": "/w/src/main.rs", "content": "x"})
                ),
                "/w/src/main.rs"
            );
        }
        assert_eq!(
            summarize_tool_call("NotebookEdit", &json!({"notebook_path": "/w/a.ipynb"})),
            "/w/a.ipynb"
        );
    }

    #[test]
    fn search_tools_show_the_pattern() {
        assert_eq!(
            summarize_tool_call("Grep", &json!({"pattern": "fn main", "path": "src"})),
            "fn main"
        );
        assert_eq!(
            summarize_tool_call("Glob", &json!({"pattern": "**/*.rs"})),
            "**/*.rs"
        );
    }

    #[test]
    fn todo_write_counts_items_and_task_shows_description() {
        assert_eq!(
            summarize_tool_call("TodoWrite", &json!({"todos": [{}, {}, {}]})),
            "3 items"
        );
        assert_eq!(
            summarize_tool_call("TodoWrite", &json!({"todos": [{}]})),
            "1 item"
        );
        assert_eq!(
            summarize_tool_call(
                "Task",
                &json!({"description": "Find callers", "prompt": "long…"})
            ),
            "Find callers"
        );
    }

    #[test]
    fn codex_tools() {
        assert_eq!(
            summarize_tool_call(
                "apply_patch",
                &json!({"changes": [{"path": "/w/a.rs", "kind": "add"}]})
            ),
            "/w/a.rs"
        );
        assert_eq!(
            summarize_tool_call(
                "apply_patch",
                &json!({"changes": [{"path": "a", "kind": "add"}, {"path": "b", "kind": "update"}, {"path": "c"}]})
            ),
            "a (+2 more)"
        );
        assert_eq!(
            summarize_tool_call("apply_patch", &json!({"changes": []})),
            r#"{"changes":[]}"#
        );
        assert_eq!(
            summarize_tool_call(
                "web_search",
                &json!({"query": "mock query", "action": {"type": "search"}})
            ),
            "mock query"
        );
        assert_eq!(
            summarize_tool_call(
                "web_search",
                &json!({"query": "", "action": {"type": "search", "query": "q2"}})
            ),
            "q2"
        );
        assert_eq!(
            summarize_tool_call(
                "update_plan",
                &json!({"items": [{"text": "a", "completed": false}]})
            ),
            "1 item"
        );
        assert_eq!(
            summarize_tool_call(
                "spawn_agent",
                &json!({"prompt": "look around\nthen report"})
            ),
            "look around then report"
        );
    }

    #[test]
    fn opencode_gemini_and_amp_tools() {
        let cases = [
            ("read", json!({"filePath": "/w/a.rs"}), "/w/a.rs"),
            ("write", json!({"filePath": "/w/b", "content": "x"}), "/w/b"),
            (
                "edit",
                json!({"filePath": "n.txt", "oldString": "a"}),
                "n.txt",
            ),
            ("glob", json!({"pattern": "**/*.ts"}), "**/*.ts"),
            ("grep", json!({"pattern": "TODO"}), "TODO"),
            ("webfetch", json!({"url": "https://x.dev"}), "https://x.dev"),
            (
                "task",
                json!({"description": "Explore", "prompt": "…"}),
                "Explore",
            ),
            ("todowrite", json!({"todos": [{}, {}]}), "2 items"),
            ("read_file", json!({"file_path": "/w/c"}), "/w/c"),
            ("read_file", json!({"absolute_path": "/w/old"}), "/w/old"),
            (
                "write_file",
                json!({"file_path": "/w/d", "content": "x"}),
                "/w/d",
            ),
            (
                "replace",
                json!({"file_path": "e.txt", "old_string": "a"}),
                "e.txt",
            ),
            ("list_directory", json!({"dir_path": "/w"}), "/w"),
            ("grep_search", json!({"pattern": "fn "}), "fn "),
            ("google_web_search", json!({"query": "rust"}), "rust"),
            (
                "web_fetch",
                json!({"prompt": "Summarize https://x"}),
                "Summarize https://x",
            ),
            ("write_todos", json!({"todos": [{}]}), "1 item"),
            (
                "create_file",
                json!({"path": "/w/f", "content": "x"}),
                "/w/f",
            ),
            ("edit_file", json!({"path": "/w/g", "old_str": "a"}), "/w/g"),
        ];
        for (name, input, want) in cases {
            assert_eq!(summarize_tool_call(name, &input), want, "{name}");
        }
    }

    #[test]
    fn others_and_odd_inputs_fall_back_to_compact_json() {
        assert_eq!(
            summarize_tool_call("Mystery", &json!({"a": 1})),
            r#"{"a":1}"#
        );
        assert_eq!(
            summarize_tool_call("Bash", &json!({"cmd": "ls"})),
            r#"{"cmd":"ls"}"#
        );
        assert_eq!(summarize_tool_call("Read", &json!(42)), "42");
        assert_eq!(summarize_tool_call("Edit", &Value::Null), "null");
        let big = summarize_tool_call("Mystery", &json!({"text": "a\nb".repeat(100)}));
        assert_eq!(big.chars().count(), 80);
        assert!(!big.contains('\n'));
    }
}
