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

pub mod claude;
pub mod diff;
mod summary;

pub use claude::{ClaudeOutcome, ClaudeStreamParser};
pub use summary::summarize_tool_call;
