//! `cargo +nightly fuzz run github` (from the repository root): see
//! `fuzz/src/github.rs` for what is fed and which invariants are checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| errand_fuzz::github::run(data));
