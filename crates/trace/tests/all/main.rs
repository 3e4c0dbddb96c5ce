//! The integration tests of errand-trace, one test binary (linking the crate once).

mod amp;
mod claude;
mod claude_transcript;
mod codex;
mod codex_rollout;
mod detect;
mod every_fixture;
mod file;
mod gemini;
mod gemini_chat;
mod opencode;
