//! The integration tests of errand-trace, one test binary (linking the crate once).

mod amp;
mod claude;
mod claude_transcript;
mod codex;
mod codex_rollout;
mod detect;
mod file;
mod gemini;
mod opencode;
