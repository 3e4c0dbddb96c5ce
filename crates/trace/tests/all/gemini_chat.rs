//! Gemini CLI's saved chats, from real captures: gemini-cli 0.61.0's
//! `session-*.jsonl` and 0.20.2's one-document `session-*.json`, each run
//! against errand's scripted model (a shell command, a write and a read; and
//! a PNG given with `@pic.png`, which the model then reads).

use std::io::BufReader;

use errand_core::EventKind;
use errand_trace::{parse_reader, parse_trace, ParsedTrace, TraceFormat};

const TOOLS_061: &str = include_str!("../fixtures/gemini_chat_0.61_tools.jsonl");
const IMAGE_061: &str = include_str!("../fixtures/gemini_chat_0.61_image.jsonl");
const TOOLS_020: &str = include_str!("../fixtures/gemini_chat_0.20_tools.json");
const IMAGE_020: &str = include_str!("../fixtures/gemini_chat_0.20_image.json");

fn names(t: &ParsedTrace) -> Vec<&'static str> {
    t.kinds().map(EventKind::name).collect()
}

fn both(text: &str) -> ParsedTrace {
    let whole = parse_trace(text);
    let read = parse_reader(BufReader::new(text.as_bytes())).expect("read");
    assert_eq!(whole, read, "parse_trace and parse_reader agree");
    assert_eq!(whole.format, Some(TraceFormat::GeminiChat));
    assert!(whole.problems.is_empty(), "{:?}", whole.problems);
    assert!(
        !whole.kinds().any(|k| matches!(k, EventKind::Raw { .. })),
        "{:#?}",
        whole.events
    );
    whole
}

#[test]
fn a_jsonl_chat_reads_as_the_conversation_without_repeats() {
    let t = both(TOOLS_061);
    assert_eq!(
        names(&t),
        [
            "session_start",
            "user_message",
            "usage",
            "tool_call",
            "tool_result",
            "usage",
            "tool_call",
            "file_edit",
            "tool_result",
            "usage",
            "tool_call",
            "tool_result",
            "assistant_message",
            "usage",
        ]
    );
    let calls: Vec<_> = t
        .kinds()
        .filter_map(|k| match k {
            EventKind::ToolCall { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(calls, ["Bash", "write_file", "read_file"]);
    let edit = t
        .kinds()
        .find_map(|k| match k {
            EventKind::FileEdit {
                path,
                diff,
                added,
                removed,
            } => Some((path, diff, added, removed)),
            _ => None,
        })
        .expect("an edit");
    assert!(edit.0.ends_with("notes.txt"), "{edit:?}");
    assert!(edit.1.as_deref().is_some_and(|d| d.contains("+one\n+two")));
    assert_eq!((*edit.2, *edit.3), (2, 0));
    // Usage is counted once per message, and priced (gemini-2.5-pro is in the table).
    let (tokens, cost) = t.kinds().fold((0, 0.0), |(n, c), k| match k {
        EventKind::Usage(u) => (
            n + u.input_tokens + u.output_tokens,
            c + u.cost_usd.unwrap_or(0.0),
        ),
        _ => (n, c),
    });
    assert_eq!(tokens, 12233 + 12351 + 12459 + 12530);
    assert!(cost > 0.0);
    assert!(t.events.iter().all(|e| e.ts.is_some() || e.line == 1));
    let first_user = t.kinds().find_map(|k| match k {
        EventKind::UserMessage { text } => Some(text.as_str()),
        _ => None,
    });
    assert_eq!(
        first_user,
        Some("write notes"),
        "the session context is not the user's"
    );
}

#[test]
fn the_older_one_document_chat_reads_the_same_way() {
    let t = both(TOOLS_020);
    assert_eq!(t.lines, TOOLS_020.lines().count());
    let n = names(&t);
    assert_eq!(n.iter().filter(|k| **k == "tool_call").count(), 3, "{n:?}");
    assert_eq!(
        n.iter().filter(|k| **k == "tool_result").count(),
        3,
        "{n:?}"
    );
    assert!(
        n.contains(&"file_edit") && n.contains(&"assistant_message"),
        "{n:?}"
    );
    // Each event points at the line its message starts on, in order.
    let lines: Vec<usize> = t.events.iter().map(|e| e.line).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
    assert!(lines.last().is_some_and(|l| *l > 50), "{lines:?}");
}

#[test]
fn images_in_user_messages_and_tool_results_are_images() {
    for (name, text, in_user) in [("0.61", IMAGE_061, true), ("0.20", IMAGE_020, false)] {
        let t = both(text);
        let images: Vec<_> = t
            .kinds()
            .filter_map(|k| match k {
                EventKind::Image {
                    media_type,
                    data,
                    bytes,
                    tool_id,
                } => Some((
                    media_type.as_str(),
                    data.is_some(),
                    *bytes,
                    tool_id.is_some(),
                )),
                _ => None,
            })
            .collect();
        let mut want = vec![("image/png", true, 74, true)];
        if in_user {
            // 0.61 keeps the attached image in the user's message; 0.20 keeps a placeholder.
            want.insert(0, ("image/png", true, 74, false));
        }
        assert_eq!(images, want, "{name}");
        let user: Vec<_> = t
            .kinds()
            .filter_map(|k| match k {
                EventKind::UserMessage { text } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(user.len(), 1, "{name}: {user:?}");
        assert!(
            user[0].starts_with("what is in @pic.png ?"),
            "{name}: {user:?}"
        );
    }
}
