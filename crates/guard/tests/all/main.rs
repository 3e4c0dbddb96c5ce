//! The integration tests of errand-guard, one test binary (linking the crate once).

#![allow(clippy::disallowed_methods)] // tests start their own fixtures

mod api;
mod cli;
mod corpus;
mod fuzz_smoke;
mod hook;
mod props;
mod settings;
