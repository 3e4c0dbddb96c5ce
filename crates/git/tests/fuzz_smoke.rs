//! The `pktline` fuzz target's body (`fuzz/src/pktline.rs`) on the stable
//! toolchain: its seeds in `fuzz/seeds/pktline/` (real `git push` bodies and
//! receive-pack advertisements), then a fixed set of inputs mutated from them.
//! So `cargo test` keeps the target compiling and its invariants holding; the
//! coverage-guided runs are `cargo +nightly fuzz run pktline` (`fuzz/README.md`).

#[path = "../../../fuzz/src/smoke.rs"]
mod smoke;
#[path = "../../../fuzz/src/pktline.rs"]
mod target;

const MUTATIONS: usize = 2000;

#[test]
fn fuzz_target_pktline_holds_on_its_seeds_and_their_mutations() {
    let seeds = smoke::run("pktline", target::run, MUTATIONS);
    eprintln!("pktline: {seeds} seeds and {MUTATIONS} mutations");
}
