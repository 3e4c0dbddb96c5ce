//! errand's Slack integration.
//!
//! A person types `/agent owner/repo fix the flaky test` in Slack; the server
//! uses this crate to
//!
//! 1. check the request really came from Slack ([`verify`]),
//! 2. decode the slash command and the text after `/agent` ([`command`]),
//!    de-duplicating retries with a [`ReplayGuard`],
//! 3. decode button clicks ([`interaction`]) and Events API callbacks
//!    ([`events`]),
//! 4. render a run as a Block Kit message ([`blocks`]) and post/update it with
//!    the Web API ([`client`]).
//!
//! With the `fake` feature, [`fake`] provides an in-process fake Slack (Web
//! API, `response_url`, and builders for signed requests) for tests.
//!
//! Invariants:
//! - Parsers never panic on external input; every malformed input is a typed
//!   error ([`PayloadError`], [`UsageError`], [`VerifyError`]).
//! - The bot token never appears in `Debug` output or in errors.
//! - Everything user-controlled that ends up in a message is escaped with
//!   [`blocks::escape`] (Slack's `&`, `<`, `>` rule).
//! - This crate depends on no other errand crate.

#![warn(missing_docs)]
#![deny(missing_docs)]

pub mod blocks;
pub mod client;
pub mod command;
pub mod events;
#[cfg(feature = "fake")]
pub mod fake;
pub mod interaction;
pub mod replay;
pub mod text;
pub mod verify;

mod error;

pub use blocks::{run_message, RunCard, CANCEL_ACTION_ID};
pub use client::{Message, Posted, SlackClient, SlackError, DEFAULT_API_BASE};
pub use command::{
    parse_agent_text, usage, AgentCommand, RunRequest, SlashCommand, ThreadUrl, UsageError,
};
pub use error::PayloadError;
pub use events::{EventEnvelope, InnerEvent, ThreadReply};
pub use interaction::{Action, Interaction};
pub use replay::ReplayGuard;
pub use verify::{sign, verify_request, VerifyError};

/// The current time as Unix seconds (the `now_unix` argument of
/// [`verify_request`] and [`ReplayGuard::first_time`]).
pub fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}
