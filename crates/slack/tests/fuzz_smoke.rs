//! The `slack` fuzz target's body (`fuzz/src/slack.rs`) on the stable toolchain:
//! its seeds in `fuzz/seeds/slack/`, then a fixed set of inputs mutated from
//! them. So `cargo test` keeps the target compiling and its invariants
//! holding; the coverage-guided runs are `cargo +nightly fuzz run slack`
//! (`fuzz/README.md`).

#[path = "../../../fuzz/src/smoke.rs"]
mod smoke;
#[path = "../../../fuzz/src/slack.rs"]
mod target;

const MUTATIONS: usize = 2000;

#[test]
fn fuzz_target_slack_holds_on_its_seeds_and_their_mutations() {
    let seeds = smoke::run("slack", target::run, MUTATIONS);
    eprintln!("slack: {seeds} seeds and {MUTATIONS} mutations");
}
