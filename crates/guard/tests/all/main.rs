//! The integration tests of errand-guard, one test binary (linking the crate once).

#![allow(clippy::disallowed_methods)] // tests start their own fixtures

/// As in errand's binaries: decisions run under a memory budget.
#[global_allocator]
static ALLOC: errand_guard::budget::Budgeted = errand_guard::budget::Budgeted;

mod api;
mod budget;
mod cli;
mod corpus;
mod fuzz_smoke;
mod hook;
mod props;
mod settings;
