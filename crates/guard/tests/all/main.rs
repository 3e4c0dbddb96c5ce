//! The integration tests of errand-guard, one test binary (linking the crate once).

mod api;
mod cli;
mod corpus;
mod fuzz_smoke;
mod hook;
mod props;
mod settings;
