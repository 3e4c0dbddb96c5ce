//! What the server benchmarks (`load`, `pipeline`) share: clocks, memory,
//! percentiles and a fresh database.

#![allow(dead_code)] // each bench uses its own part

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

const PG_DEFAULT: &str = "postgres://errand:errand@127.0.0.1:5432/errand_test";

/// Wall-clock nanoseconds, comparable across processes (emission → arrival).
pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A process's resident memory, in KiB (0 when it cannot be read).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The `p` quantile (0..=1) of `v` (sorted in place); NaN when empty.
pub fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// A database URL for `db` ("postgres": a fresh database `name` on
/// ERRAND_TEST_DATABASE_URL's server, or the scripts/setup default;
/// otherwise an SQLite file in `dir`).
pub fn database_url(db: &str, name: &str, dir: &std::path::Path) -> Result<String, String> {
    if db != "postgres" {
        return Ok(dir.join("errand.db").to_string_lossy().into_owned());
    }
    let base = std::env::var("ERRAND_TEST_DATABASE_URL").unwrap_or_else(|_| PG_DEFAULT.into());
    let ok = Command::new("psql")
        .args([
            base.as_str(),
            "-qAtX",
            "-c",
            &format!("DROP DATABASE IF EXISTS {name}"),
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        return Err(format!("PostgreSQL not reachable at {base}"));
    }
    Ok(format!(
        "{}/{name}",
        base.rsplit_once('/').map(|x| x.0).unwrap_or(&base)
    ))
}
