//! How a run is reported: the outcome block (`run`, `show`), the JSON object
//! (`run --json`, `ls --json`, `show --json`) and a fan-out's comparison table.

use std::io::Write;

use errand_core::{RunRecord, RunState};

use super::run::Member;
use crate::render;

/// The side-by-side table printed after a fan-out.
pub fn print_comparison(members: &[Member], records: &[RunRecord]) {
    println!();
    println!(
        "{:<24}  {:<10}  {:>5}  {:>9}  {:>9}  {:>8}  {:>8}  {:<6}  CHANGES",
        "HARNESS", "STATE", "TURNS", "IN", "OUT", "COST", "DURATION", "TESTS"
    );
    for (m, r) in members.iter().zip(records) {
        let s = &r.summary;
        let dur = r
            .duration()
            .map(|d| format!("{:.1}s", d.num_milliseconds() as f64 / 1000.0))
            .unwrap_or_else(|| "-".into());
        let opt = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
        println!(
            "{:<24}  {:<10}  {:>5}  {:>9}  {:>9}  {:>8}  {:>8}  {:<6}  {}",
            m.label,
            r.state.as_str(),
            s.turns.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
            opt(s.input_tokens),
            opt(s.output_tokens),
            s.cost_usd
                .map(|c| format!("${c:.4}"))
                .unwrap_or_else(|| "-".into()),
            dur,
            match s.tests_passed {
                Some(true) => "pass",
                Some(false) => "FAIL",
                None => "-",
            },
            s.diffstat.as_deref().filter(|d| !d.is_empty()).unwrap_or(
                if r.state == RunState::Succeeded {
                    "none"
                } else {
                    "-"
                }
            )
        );
    }
}

pub fn run_json(rec: &RunRecord, events: Option<usize>) -> serde_json::Value {
    let s = &rec.summary;
    serde_json::json!({
        "id": rec.id.to_string(),
        "short_id": rec.id.short(),
        "state": rec.state,
        "repo": rec.spec.repo.as_ref().map(|r| r.to_string()),
        "harness": rec.spec.harness,
        "model": rec.spec.model,
        "prompt": rec.spec.prompt,
        "branch": s.branch,
        "commit": s.commit,
        "diffstat": s.diffstat,
        "pushed": s.pushed,
        "turns": s.turns,
        "input_tokens": s.input_tokens,
        "output_tokens": s.output_tokens,
        "cost_usd": s.cost_usd,
        "cache_read_tokens": s.cache_read_tokens,
        "cache_write_tokens": s.cache_write_tokens,
        "metered": s.metered,
        "model_requests": s.model_requests,
        "harness_usage": s.harness_usage,
        "max_cost_usd": rec.spec.max_cost_usd,
        "max_tokens": rec.spec.max_tokens,
        "result": s.result_text,
        "tests_passed": s.tests_passed,
        "group": rec.spec.group,
        "picked": s.picked,
        "pr_url": s.pr_url,
        "events": events,
        "error": if rec.state == RunState::Succeeded { None } else { rec.reason.clone() },
        "created_at": rec.created_at,
        "started_at": rec.started_at,
        "finished_at": rec.finished_at,
        "duration_secs": rec.duration().map(|d| d.num_milliseconds() as f64 / 1000.0),
        "workspace_pruned_at": rec.workspace_pruned_at,
        "logs_pruned_at": rec.logs_pruned_at,
    })
}

pub fn print_outcome(rec: &RunRecord) {
    let s = &rec.summary;
    let out = std::io::stdout();
    let mut o = out.lock();
    let dur = rec
        .duration()
        .map(|d| format!("{:.1}s", d.num_milliseconds() as f64 / 1000.0))
        .unwrap_or_default();
    let _ = writeln!(o, "{} {} in {dur}", rec.id.short(), rec.state);
    if let Some(reason) = &rec.reason {
        if rec.state != RunState::Succeeded {
            let _ = writeln!(o, "  reason:  {reason}");
        }
    }
    if let Some(b) = &s.branch {
        let _ = writeln!(
            o,
            "  branch:  {b}{}",
            if s.pushed { " (pushed)" } else { "" }
        );
    }
    if let Some(c) = &s.commit {
        let _ = writeln!(o, "  commit:  {}", c.get(..12).unwrap_or(c));
    }
    if let Some(u) = &s.pr_url {
        let _ = writeln!(o, "  pr:      {u}");
    }
    if let (Some(g), Some(p)) = (&rec.spec.group, s.picked) {
        let _ = writeln!(
            o,
            "  picked:  {} (fan-out {g})",
            if p { "yes, the group's result" } else { "no" }
        );
    }
    if let Some(d) = &s.diffstat {
        let _ = writeln!(o, "  changes: {}", if d.is_empty() { "none" } else { d });
    }
    if s.turns.is_some() || s.cost_usd.is_some() {
        let _ = writeln!(
            o,
            "  agent:   {} turns, {} in / {} out tokens, ${:.4}",
            s.turns.unwrap_or(0),
            s.input_tokens.unwrap_or(0),
            s.output_tokens.unwrap_or(0),
            s.cost_usd.unwrap_or(0.0)
        );
    }
    if s.metered {
        let _ = writeln!(
            o,
            "  metered: {} model request(s) through errand's gateway; the figures above are the provider's{}",
            s.model_requests.unwrap_or(0),
            match &s.harness_usage {
                Some(h) if h.cost_usd.is_some_and(|c| (c - s.cost_usd.unwrap_or(0.0)).abs() > 0.00005) => {
                    format!(" (the harness reported ${:.4})", h.cost_usd.unwrap_or(0.0))
                }
                _ => String::new(),
            }
        );
    }
    if let Some(t) = &s.result_text {
        let _ = writeln!(o, "  summary: {}", render::first_line(t, 200));
    }
    let _ = writeln!(o, "  trace:   errand logs {}", rec.id.short());
}
