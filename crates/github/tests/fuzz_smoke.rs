//! The `github` fuzz target's body (`fuzz/src/github.rs`) on the stable toolchain:
//! its seeds in `fuzz/seeds/github/`, then a fixed set of inputs mutated from
//! them. So `cargo test` keeps the target compiling and its invariants
//! holding; the coverage-guided runs are `cargo +nightly fuzz run github`
//! (`fuzz/README.md`).

#[path = "../../../fuzz/src/smoke.rs"]
mod smoke;
#[path = "../../../fuzz/src/github.rs"]
mod target;

const MUTATIONS: usize = 2000;

#[test]
fn fuzz_target_github_holds_on_its_seeds_and_their_mutations() {
    let seeds = smoke::run("github", target::run, MUTATIONS);
    eprintln!("github: {seeds} seeds and {MUTATIONS} mutations");
}
