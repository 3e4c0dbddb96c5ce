//! The bodies of the fuzz targets, one module per target.
//!
//! Each module is plain Rust over its parser crate (no libFuzzer), so the
//! same file also runs on the stable toolchain: `crates/trace/tests/fuzz_smoke.rs`,
//! `crates/slack/tests/fuzz_smoke.rs`, `crates/github/tests/fuzz_smoke.rs` and
//! `crates/git/tests/fuzz_smoke.rs` (target `pktline`) include it with
//! `#[path]` and run it over `fuzz/seeds/<target>/` as part of
//! `cargo test --workspace`, so a target cannot stop compiling or start
//! failing on its own seeds unnoticed.
//!
//! Every check is an `assert!`: a violated invariant is a crash, and
//! libFuzzer keeps the input under `fuzz/artifacts/<target>/`.

pub mod github;
pub mod pktline;
pub mod slack;
pub mod trace;
