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
//!
//! Also [`estimate_cost_usd`] ([`pricing`]): a cost estimate from token usage
//! for harnesses that report none.

pub mod claude;
pub mod codex;
pub mod diff;
pub mod pricing;
mod summary;

pub use claude::{ClaudeOutcome, ClaudeStreamParser};
pub use codex::{CodexOutcome, CodexStreamParser};
pub use pricing::estimate_cost_usd;
pub use summary::summarize_tool_call;
