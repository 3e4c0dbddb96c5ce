//! The memory budget of a decision: the shell parser has had inputs it
//! allocates on without bound, and a guard process that aborts or is
//! OOM-killed gives no decision, which the harnesses read as "run it".

use std::time::Duration;

use errand_guard::budget;
use errand_guard::cli::within;

#[test]
fn the_test_binary_uses_the_budgeted_allocator() {
    let warm: Vec<u8> = Vec::with_capacity(16);
    drop(warm);
    assert!(budget::installed());
}

#[test]
fn a_decision_that_allocates_past_the_budget_is_answered_late() {
    // Twice the budget in 1 MiB steps: without the budget this finishes in
    // well under a second and answers "allocated"; the deadline is far away,
    // so only the budget can make the answer the late one.
    let out = within(
        Duration::from_secs(600),
        || {
            let mut held: Vec<Vec<u8>> = Vec::new();
            while held.len() < 2 * (budget::BYTES >> 20) {
                held.push(vec![1u8; 1 << 20]);
            }
            "allocated"
        },
        || "denied",
    );
    assert_eq!(out, "denied");
}

#[test]
fn one_huge_allocation_is_answered_late_too() {
    let out = within(Duration::from_secs(600), || vec![0u8; 8 << 30].len(), || 0);
    assert_eq!(out, 0);
}

#[test]
fn ordinary_decisions_fit_well_within_the_budget() {
    // Large but ordinary inputs near the guard's 128 KiB length limit: a
    // here-document, and thousands of commands with interpreter code (about
    // 12 MB at peak when measured, against a budget of 256 MiB).
    let heredoc = format!("cat > notes.txt <<'EOF'\n{}\nEOF", "word ".repeat(24_000));
    let chain = vec!["python -c \"import os; print(1)\""; 3_000].join(" && ");
    for script in [heredoc, chain] {
        let policy = errand_guard::Policy::default();
        let out = within(
            Duration::from_secs(600),
            move || errand_guard::check(&script, &policy).is_allow(),
            || false,
        );
        assert!(out);
    }
}

#[test]
fn the_budget_is_the_decisions_alone() {
    // Memory held outside a decision thread does not count against it.
    let outside = vec![1u8; budget::BYTES + (1 << 20)];
    let out = within(Duration::from_secs(600), || vec![2u8; 1 << 20].len(), || 0);
    assert_eq!(out, 1 << 20);
    assert_eq!(outside.len(), budget::BYTES + (1 << 20));
}
