//! `cargo +nightly fuzz run slack` (from the repository root): see
//! `fuzz/src/slack.rs` for what is fed and which invariants are checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| errand_fuzz::slack::run(data));
