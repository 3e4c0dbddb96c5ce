//! Pure parsers that turn each harness's output into errand's normalized
//! [`errand_core::EventKind`]s.
//!
//! Invariants:
//! - this crate does no I/O: callers feed it lines, it hands back events;
//! - no input makes a parser panic;
//! - nothing is dropped: whatever a parser does not understand comes back as
//!   [`errand_core::EventKind::Raw`] with the line exactly as it was fed.
//!
//! Parsers:
//! - [`ClaudeStreamParser`]: Claude Code's `--output-format stream-json --verbose`.
//! - [`CodexStreamParser`]: Codex's `codex exec --json`.
//! - [`GeminiStreamParser`]: Gemini CLI's `gemini -p --output-format stream-json`.
//! - [`OpenCodeStreamParser`]: OpenCode's `opencode run --format json` (no
//!   final event: the runner calls [`OpenCodeStreamParser::finish`] at exit).
//! - [`AmpStreamParser`]: Amp's Claude Code-compatible `--stream-json`, a thin
//!   wrapper around [`ClaudeStreamParser`].
//!
//! [`detect_format`] tells which of these formats (or a Claude / Codex
//! session file) a file holds from its first lines.
//!
//! Also [`estimate_cost_usd`] ([`pricing`]): a cost estimate from token usage
//! for harnesses that report none.

pub mod amp;
pub mod claude;
pub mod codex;
pub mod detect;
pub mod diff;
pub mod gemini;
pub mod opencode;
pub mod pricing;
mod summary;

pub use amp::AmpStreamParser;
pub use claude::{ClaudeOutcome, ClaudeStreamParser};
pub use codex::{CodexOutcome, CodexStreamParser};
pub use detect::{detect_format, TraceFormat};
pub use gemini::{GeminiOutcome, GeminiStreamParser};
pub use opencode::{OpenCodeOutcome, OpenCodeStreamParser};
pub use pricing::estimate_cost_usd;
pub use summary::summarize_tool_call;
