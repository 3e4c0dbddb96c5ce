//! `cargo +nightly fuzz run pktline` (from `fuzz/`): see
//! `fuzz/src/pktline.rs` for what is fed and which invariants are checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| errand_fuzz::pktline::run(data));
