//! Usage extraction from provider answers, per protocol.
//!
//! A [`UsageParser`] is fed the answer's bytes chunk by chunk as they pass
//! through the gateway (SSE framing may be split anywhere, even inside a
//! `\r\n`) and, at the end, tells what the provider reported: token counts,
//! the model and an error message. Nothing is buffered for the client: the
//! parser keeps only the current SSE line and event (each bounded by
//! [`MAX_LINE_BYTES`]; an over-long event is skipped) or, for a JSON answer,
//! the body up to [`MAX_JSON_BYTES`].
//!
//! Where the figures come from:
//! - Anthropic: SSE `message_start` (`message.usage`) then `message_delta`
//!   (`usage`, cumulative; a field present there replaces the earlier one);
//!   a JSON answer's `usage`.
//! - OpenAI Responses: `response.completed` (also `.incomplete`, `.failed`)
//!   `response.usage`: `input_tokens` includes
//!   `input_tokens_details.cached_tokens`, which become cache reads.
//!   Chat Completions: any chunk's (or the JSON answer's) `usage`:
//!   `prompt_tokens` includes `prompt_tokens_details.cached_tokens`.
//! - Gemini: `usageMetadata` of every chunk or answer, the last one wins:
//!   `promptTokenCount` includes `cachedContentTokenCount`; output is
//!   `candidatesTokenCount + thoughtsTokenCount`.
//!
//! The result follows `errand_core::Usage`: input tokens exclude cache reads
//! and writes. Cost is not set here (the caller prices the model).

use serde_json::Value;

use crate::{Protocol, Usage};

/// Longest SSE line or event data kept for parsing.
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// Longest JSON answer kept for parsing.
pub const MAX_JSON_BYTES: usize = 32 * 1024 * 1024;

/// What an answer reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extracted {
    /// Token counts (cost unset).
    pub usage: Usage,
    /// Whether the answer carried any usage figures at all.
    pub reported: bool,
    /// The model the answer named.
    pub model: Option<String>,
    /// The provider's error message, for an error answer or error event.
    pub error: Option<String>,
}

/// Incremental SSE decoding: complete lines, then events at blank lines.
#[derive(Default)]
struct Sse {
    line: Vec<u8>,
    line_too_long: bool,
    data: String,
    data_too_long: bool,
}

enum Mode {
    Sse(Sse),
    Json { body: Vec<u8>, too_long: bool },
}

/// Reads usage out of an answer as it streams past.
pub struct UsageParser {
    protocol: Protocol,
    mode: Mode,
    found: Extracted,
}

impl UsageParser {
    /// A parser for an answer in `protocol`; `sse` when the answer is
    /// `text/event-stream`, else the body is read as JSON (an object, or an
    /// array of objects as Gemini's non-SSE `streamGenerateContent` sends).
    pub fn new(protocol: Protocol, sse: bool) -> UsageParser {
        let mode = if sse {
            Mode::Sse(Sse::default())
        } else {
            Mode::Json {
                body: Vec::new(),
                too_long: false,
            }
        };
        UsageParser {
            protocol,
            mode,
            found: Extracted::default(),
        }
    }

    /// Take the next piece of the answer.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        match &mut self.mode {
            Mode::Json { body, too_long } => {
                if body.len() + chunk.len() > MAX_JSON_BYTES {
                    *too_long = true;
                    body.clear();
                }
                if !*too_long {
                    body.extend_from_slice(chunk);
                }
            }
            Mode::Sse(sse) => {
                while let Some(end) = chunk.iter().position(|&b| b == b'\n') {
                    if let Some(data) = sse.push_line(&chunk[..end]) {
                        apply_data(self.protocol, &mut self.found, &data);
                    }
                    chunk = &chunk[end + 1..];
                }
                sse.push_partial(chunk);
            }
        }
    }

    /// What the whole answer reported.
    pub fn finish(mut self) -> Extracted {
        match &mut self.mode {
            Mode::Json { body, too_long } => {
                if !*too_long {
                    if let Ok(v) = serde_json::from_slice::<Value>(body) {
                        match v {
                            Value::Array(items) => {
                                for item in &items {
                                    apply(self.protocol, &mut self.found, item);
                                }
                            }
                            v => apply(self.protocol, &mut self.found, &v),
                        }
                    }
                }
            }
            Mode::Sse(sse) => {
                // An answer may end without the final newline or blank line.
                let rest = std::mem::take(&mut sse.line);
                let mut pending = if rest.is_empty() {
                    None
                } else {
                    sse.push_line(&rest)
                };
                if pending.is_none() {
                    pending = sse.push_line(b"");
                }
                if let Some(data) = pending {
                    apply_data(self.protocol, &mut self.found, &data);
                }
            }
        }
        self.found
    }
}

impl Sse {
    fn push_partial(&mut self, bytes: &[u8]) {
        if self.line_too_long {
            return;
        }
        if self.line.len() + bytes.len() > MAX_LINE_BYTES {
            self.line_too_long = true;
            self.line.clear();
        } else {
            self.line.extend_from_slice(bytes);
        }
    }

    /// The line ends with `tail` (the bytes before its `\n`); the data of a
    /// completed event, if this line was the blank line ending one.
    fn push_line(&mut self, tail: &[u8]) -> Option<String> {
        self.push_partial(tail);
        let too_long = std::mem::take(&mut self.line_too_long);
        let mut line = std::mem::take(&mut self.line);
        if too_long {
            // The event lost a line: it cannot be read reliably.
            self.data_too_long = true;
            return None;
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.is_empty() {
            let data = std::mem::take(&mut self.data);
            let skipped = std::mem::take(&mut self.data_too_long);
            return (!skipped && !data.is_empty()).then_some(data);
        }
        let Some(value) = line.strip_prefix(b"data:") else {
            return None; // event:, id:, retry: and comments carry no usage
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if self.data.len() + value.len() + 1 > MAX_LINE_BYTES {
            self.data_too_long = true;
            return None;
        }
        if !self.data.is_empty() {
            self.data.push('\n');
        }
        self.data.push_str(&String::from_utf8_lossy(value));
        None
    }
}

/// One SSE event's data. Only events that can carry usage, a model on a
/// usage event, or an error are parsed (the cheap test skips the many text
/// deltas; a delta whose text mentions "usage" is merely parsed in vain).
fn apply_data(protocol: Protocol, found: &mut Extracted, data: &str) {
    if !(data.contains("usage") || data.contains("error")) {
        return;
    }
    if let Ok(v) = serde_json::from_str::<Value>(data) {
        apply(protocol, found, &v);
    }
}

fn apply(protocol: Protocol, found: &mut Extracted, v: &Value) {
    match protocol {
        Protocol::Anthropic => apply_anthropic(found, v),
        Protocol::OpenAi => apply_openai(found, v),
        Protocol::Gemini => apply_gemini(found, v),
    }
}

fn count(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

fn set_model(found: &mut Extracted, model: Option<&Value>) {
    if let Some(m) = model.and_then(Value::as_str).filter(|m| !m.is_empty()) {
        found.model = Some(m.to_owned());
    }
}

fn set_error(found: &mut Extracted, message: Option<&Value>) {
    if let Some(m) = message.and_then(Value::as_str) {
        found.error = Some(m.to_owned());
    }
}

fn apply_anthropic(found: &mut Extracted, v: &Value) {
    let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
    if kind == "error" {
        set_error(found, v.pointer("/error/message"));
        return;
    }
    let m = if kind == "message_start" {
        v.get("message").unwrap_or(&Value::Null)
    } else {
        v
    };
    set_model(found, m.get("model"));
    let Some(u) = m.get("usage").filter(|u| u.is_object()) else {
        return;
    };
    found.reported = true;
    let usage = &mut found.usage;
    if let Some(n) = count(u, "input_tokens") {
        usage.input_tokens = n;
    }
    if let Some(n) = count(u, "output_tokens") {
        usage.output_tokens = n;
    }
    if let Some(n) = count(u, "cache_read_input_tokens") {
        usage.cache_read_tokens = n;
    }
    if let Some(n) = count(u, "cache_creation_input_tokens") {
        usage.cache_write_tokens = n;
    }
}

fn apply_openai(found: &mut Extracted, v: &Value) {
    let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
    if kind == "error" {
        set_error(found, v.get("message").or(v.pointer("/error/message")));
        return;
    }
    let r = match v.get("response") {
        Some(r) if kind.starts_with("response.") && r.is_object() => r,
        _ => v,
    };
    set_model(found, r.get("model"));
    set_error(found, r.pointer("/error/message"));
    let Some(u) = r.get("usage").filter(|u| u.is_object()) else {
        return;
    };
    // Responses (`input_tokens`) or Chat Completions (`prompt_tokens`).
    let (input, cached, output) = if u.get("input_tokens").is_some() {
        (
            count(u, "input_tokens"),
            u.pointer("/input_tokens_details/cached_tokens"),
            count(u, "output_tokens"),
        )
    } else {
        (
            count(u, "prompt_tokens"),
            u.pointer("/prompt_tokens_details/cached_tokens"),
            count(u, "completion_tokens"),
        )
    };
    let cached = cached.and_then(Value::as_u64).unwrap_or(0);
    found.reported = true;
    found.usage.input_tokens = input.unwrap_or(0).saturating_sub(cached);
    found.usage.cache_read_tokens = cached;
    found.usage.cache_write_tokens = 0;
    found.usage.output_tokens = output.unwrap_or(0);
}

fn apply_gemini(found: &mut Extracted, v: &Value) {
    set_error(found, v.pointer("/error/message"));
    set_model(found, v.get("modelVersion"));
    let Some(u) = v.get("usageMetadata").filter(|u| u.is_object()) else {
        return;
    };
    let prompt = count(u, "promptTokenCount").unwrap_or(0);
    let cached = count(u, "cachedContentTokenCount").unwrap_or(0);
    let output =
        count(u, "candidatesTokenCount").unwrap_or(0) + count(u, "thoughtsTokenCount").unwrap_or(0);
    found.reported = true;
    found.usage.input_tokens = prompt.saturating_sub(cached);
    found.usage.cache_read_tokens = cached;
    found.usage.cache_write_tokens = 0;
    found.usage.output_tokens = output;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_split(protocol: Protocol, sse: bool, body: &str, at: &[usize]) -> Extracted {
        let mut p = UsageParser::new(protocol, sse);
        let bytes = body.as_bytes();
        let mut from = 0;
        for &cut in at {
            p.feed(&bytes[from..cut]);
            from = cut;
        }
        p.feed(&bytes[from..]);
        p.finish()
    }

    /// Whole, then split once at every byte, then split at every byte.
    fn check_all_splits(protocol: Protocol, body: &str, want: &Extracted) {
        assert_eq!(&parse_split(protocol, true, body, &[]), want, "whole");
        for cut in 0..=body.len() {
            let got = parse_split(protocol, true, body, &[cut]);
            assert_eq!(&got, want, "split at byte {cut}");
        }
        let every: Vec<usize> = (1..body.len()).collect();
        assert_eq!(&parse_split(protocol, true, body, &every), want, "bytewise");
    }

    fn usage(input: u64, output: u64, read: u64, write: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: read,
            cache_write_tokens: write,
            cost_usd: None,
        }
    }

    const ANTHROPIC_SSE: &str = "event: message_start\r\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":12,\"cache_creation_input_tokens\":300,\"cache_read_input_tokens\":4000,\"output_tokens\":1}}}\r\n\
\r\n\
event: content_block_delta\r\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\r\n\
\r\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":57}}\n\
\n\
event: message_stop\n\
data: {\"type\":\"message_stop\"}\n\n";

    #[test]
    fn anthropic_sse_at_every_split() {
        let want = Extracted {
            usage: usage(12, 57, 4000, 300),
            reported: true,
            model: Some("claude-sonnet-4-5".into()),
            error: None,
        };
        check_all_splits(Protocol::Anthropic, ANTHROPIC_SSE, &want);
    }

    #[test]
    fn anthropic_message_delta_may_restate_input_and_cache() {
        let body = "data: {\"type\":\"message_start\",\"message\":{\"model\":\"m\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n\
data: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":7,\"cache_read_input_tokens\":9,\"output_tokens\":3}}\n\n";
        let got = parse_split(Protocol::Anthropic, true, body, &[]);
        assert_eq!(got.usage, usage(7, 3, 9, 0));
    }

    #[test]
    fn anthropic_json_and_error_answers() {
        let body = r#"{"type":"message","model":"claude-haiku-4-5","usage":{"input_tokens":3,"output_tokens":4,"cache_read_input_tokens":5,"cache_creation_input_tokens":6}}"#;
        let got = parse_split(Protocol::Anthropic, false, body, &[10, 20]);
        assert_eq!(got.usage, usage(3, 4, 5, 6));
        assert_eq!(got.model.as_deref(), Some("claude-haiku-4-5"));
        let err = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let got = parse_split(Protocol::Anthropic, false, err, &[]);
        assert_eq!(got.error.as_deref(), Some("Overloaded"));
        assert!(!got.reported);
    }

    const RESPONSES_SSE: &str = "event: response.created\n\
data: {\"type\":\"response.created\",\"response\":{\"model\":\"gpt-5\",\"usage\":null}}\n\n\
event: response.output_text.delta\n\
data: {\"type\":\"response.output_text.delta\",\"delta\":\"x\"}\n\n\
event: response.completed\n\
data: {\"type\":\"response.completed\",\"response\":{\"model\":\"gpt-5-codex\",\"usage\":{\"input_tokens\":1000,\"input_tokens_details\":{\"cached_tokens\":600},\"output_tokens\":42,\"output_tokens_details\":{\"reasoning_tokens\":10},\"total_tokens\":1042}}}\n\n";

    #[test]
    fn openai_responses_sse_at_every_split() {
        let want = Extracted {
            usage: usage(400, 42, 600, 0),
            reported: true,
            model: Some("gpt-5-codex".into()),
            error: None,
        };
        check_all_splits(Protocol::OpenAi, RESPONSES_SSE, &want);
    }

    const CHAT_SSE: &str = "data: {\"id\":\"c\",\"model\":\"gpt-5-mini\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"model\":\"gpt-5-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":80,\"prompt_tokens_details\":{\"cached_tokens\":64},\"completion_tokens\":9,\"total_tokens\":89}}\n\n\
data: [DONE]\n\n";

    #[test]
    fn openai_chat_sse_at_every_split() {
        let want = Extracted {
            usage: usage(16, 9, 64, 0),
            reported: true,
            model: Some("gpt-5-mini".into()),
            error: None,
        };
        check_all_splits(Protocol::OpenAi, CHAT_SSE, &want);
    }

    #[test]
    fn openai_json_answers_of_both_apis() {
        let chat = r#"{"model":"gpt-5","usage":{"prompt_tokens":10,"completion_tokens":2}}"#;
        let got = parse_split(Protocol::OpenAi, false, chat, &[3]);
        assert_eq!(got.usage, usage(10, 2, 0, 0));
        let responses = r#"{"object":"response","model":"gpt-5","usage":{"input_tokens":10,"input_tokens_details":{"cached_tokens":4},"output_tokens":2}}"#;
        let got = parse_split(Protocol::OpenAi, false, responses, &[]);
        assert_eq!(got.usage, usage(6, 2, 4, 0));
        let err =
            r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}"#;
        let got = parse_split(Protocol::OpenAi, false, err, &[]);
        assert_eq!(got.error.as_deref(), Some("Incorrect API key provided"));
    }

    const GEMINI_SSE: &str = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}],\"usageMetadata\":{\"promptTokenCount\":100,\"candidatesTokenCount\":1},\"modelVersion\":\"gemini-2.5-pro\"}\r\n\r\n\
data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"b\"}]}}],\"usageMetadata\":{\"promptTokenCount\":100,\"cachedContentTokenCount\":30,\"candidatesTokenCount\":20,\"thoughtsTokenCount\":5,\"totalTokenCount\":125},\"modelVersion\":\"gemini-2.5-pro\"}\r\n\r\n";

    #[test]
    fn gemini_sse_at_every_split_last_usage_wins() {
        let want = Extracted {
            usage: usage(70, 25, 30, 0),
            reported: true,
            model: Some("gemini-2.5-pro".into()),
            error: None,
        };
        check_all_splits(Protocol::Gemini, GEMINI_SSE, &want);
    }

    #[test]
    fn gemini_json_array_answer() {
        let body = r#"[{"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":1}},{"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":8}}]"#;
        let got = parse_split(Protocol::Gemini, false, body, &[7]);
        assert_eq!(got.usage, usage(5, 8, 0, 0));
    }

    #[test]
    fn multi_line_data_and_missing_final_blank_line() {
        let body = "data: {\"type\":\"message_delta\",\ndata: \"usage\":{\"output_tokens\":4}}";
        let got = parse_split(Protocol::Anthropic, true, body, &[]);
        assert_eq!(got.usage, usage(0, 4, 0, 0));
    }

    #[test]
    fn an_over_long_event_is_skipped_and_later_ones_still_count() {
        let mut p = UsageParser::new(Protocol::Anthropic, true);
        p.feed(b"data: {\"usage\":{\"output_tokens\":1,\"pad\":\"");
        let pad = vec![b'x'; 1024 * 1024];
        for _ in 0..5 {
            p.feed(&pad);
        }
        p.feed(b"\"}}\n\n");
        p.feed(b"data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":2}}\n\n");
        let got = p.finish();
        assert_eq!(got.usage, usage(0, 2, 0, 0));
    }

    #[test]
    fn no_usage_in_an_answer_is_not_reported() {
        let got = parse_split(Protocol::OpenAi, true, "data: [DONE]\n\n", &[]);
        assert!(!got.reported);
        assert_eq!(got.usage, Usage::default());
    }
}
