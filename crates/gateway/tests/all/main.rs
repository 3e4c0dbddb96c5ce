//! The gateway's integration tests (one binary): a real gateway on TCP in
//! front of the scripted model started to require the real key, or in front
//! of small axum servers the tests control.

// Test code may unwrap: a panic there is a failing test, with the value in the message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod forwarding;
mod policy;
mod streaming;
mod support;
