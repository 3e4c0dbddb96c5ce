//! Pure parsers that turn each harness's output into errand's normalized
//! [`errand_core::EventKind`]s.
//!
//! Invariants:
//! - this crate does no I/O: callers feed it lines (or, for
//!   [`parse_reader`], a reader they opened), it hands back events;
//! - no input makes a parser panic;
//! - nothing is dropped: whatever a parser does not understand comes back as
//!   [`errand_core::EventKind::Raw`] with the line exactly as it was fed.
//!
//! Parsers of what a harness prints:
//! - [`ClaudeStreamParser`]: Claude Code's `--output-format stream-json --verbose`.
//! - [`CodexStreamParser`]: Codex's `codex exec --json`.
//! - [`GeminiStreamParser`]: Gemini CLI's `gemini -p --output-format stream-json`.
//! - [`OpenCodeStreamParser`]: OpenCode's `opencode run --format json` (no
//!   final event: the runner calls [`OpenCodeStreamParser::finish`] at exit).
//! - [`AmpStreamParser`]: Amp's Claude Code-compatible `--stream-json`, a thin
//!   wrapper around [`ClaudeStreamParser`].
//!
//! Parsers of the session files a harness keeps:
//! - [`ClaudeTranscriptParser`]: Claude Code's transcript
//!   (`~/.claude/projects/…/SESSION.jsonl`).
//! - [`CodexRolloutParser`]: Codex's rollout
//!   (`$CODEX_HOME/sessions/…/rollout-*.jsonl`).
//! - [`GeminiChatParser`]: Gemini CLI's saved chats
//!   (`~/.gemini/tmp/…/chats/session-*.jsonl`, and the older one-document
//!   `session-*.json`).
//!
//! Images inside any of them become [`errand_core::EventKind::Image`]
//! events ([`image`]: raster types only, size-capped, never fetched).
//!
//! Every parser takes one line at a time (`push_line`), keeping what it needs
//! across lines (tool names, open calls, usage so far).
//!
//! Whole files: [`detect_format`] tells which of these formats (or errand's
//! own event log, [`TraceFormat::ErrandEvents`]) a file holds from its first
//! lines; [`parse_trace`] (text) and [`parse_reader`] (a [`std::io::BufRead`])
//! detect the format, run the right parser ([`TraceParser`]) over every line
//! and return a [`ParsedTrace`]: the events with their line and timestamp,
//! and the [`Problem`]s met (lines that are not JSON, a truncated last line,
//! an unknown format) without giving up on the readable rest.
//!
//! Also [`estimate_cost_usd`] ([`pricing`]): a cost estimate from token usage
//! for harnesses that report none.

#![warn(missing_docs)]

pub mod amp;
pub mod claude;
pub mod claude_transcript;
pub mod codex;
pub mod codex_rollout;
pub mod detect;
pub mod diff;
pub mod file;
pub mod gemini;
pub mod gemini_chat;
pub mod image;
pub mod opencode;
pub mod pricing;
mod summary;

pub use amp::AmpStreamParser;
pub use claude::{ClaudeOutcome, ClaudeStreamParser};
pub use claude_transcript::ClaudeTranscriptParser;
pub use codex::{CodexOutcome, CodexStreamParser};
pub use codex_rollout::CodexRolloutParser;
pub use detect::{detect_format, TraceFormat};
pub use file::{parse_reader, parse_trace, ParsedTrace, Problem, TraceEvent, TraceParser};
pub use gemini::{GeminiOutcome, GeminiStreamParser};
pub use gemini_chat::GeminiChatParser;
pub use opencode::{OpenCodeOutcome, OpenCodeStreamParser};
pub use pricing::estimate_cost_usd;
pub use summary::summarize_tool_call;
