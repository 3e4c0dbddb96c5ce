//! `cargo +nightly fuzz run trace` (from the repository root): see
//! `fuzz/src/trace.rs` for what is fed and which invariants are checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| errand_fuzz::trace::run(data));
