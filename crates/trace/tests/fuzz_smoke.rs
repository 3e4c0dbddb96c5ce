//! The `trace` fuzz target's body (`fuzz/src/trace.rs`) on the stable toolchain:
//! its seeds in `fuzz/seeds/trace/`, then a fixed set of inputs mutated from
//! them. So `cargo test` keeps the target compiling and its invariants
//! holding; the coverage-guided runs are `cargo +nightly fuzz run trace`
//! (`fuzz/README.md`).

#[path = "../../../fuzz/src/smoke.rs"]
mod smoke;
#[path = "../../../fuzz/src/trace.rs"]
mod target;

const MUTATIONS: usize = 300;

#[test]
fn fuzz_target_trace_holds_on_its_seeds_and_their_mutations() {
    let seeds = smoke::run("trace", target::run, MUTATIONS);
    eprintln!("trace: {seeds} seeds and {MUTATIONS} mutations");
}
