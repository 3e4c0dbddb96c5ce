//! The integration tests of errand-model, one test binary (linking the crate once).

#![allow(clippy::disallowed_methods)] // tests start their own fixtures

#[path = "../support/mod.rs"]
mod support;

mod anthropic;
mod claude_code;
mod codex;
mod gemini;
mod gemini_cli;
mod openai;
mod openai_chat;
mod opencode;
