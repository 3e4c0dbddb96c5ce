//! A fresh database on the test PostgreSQL, made with `psql`.

use std::process::Command;

use crate::need;

/// A fresh database named `errand_{what}_…` on the test PostgreSQL
/// (`ERRAND_TEST_DATABASE_URL`, else the one `scripts/setup` starts) and its
/// URL; `None` when PostgreSQL is not reachable outside CI (saying so, by
/// [`need`]); in CI that fails the test.
#[allow(clippy::disallowed_methods)] // tests start their own fixtures
pub fn fresh_database(what: &str) -> Option<String> {
    let base = std::env::var("ERRAND_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://errand:errand@127.0.0.1:5432/errand_test".to_string());
    let name = format!(
        "errand_{what}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let made = Command::new("psql")
        .args([
            base.as_str(),
            "-qAtX",
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .output()
        .map_err(|e| format!("psql cannot be started ({e})"))
        .and_then(|o| {
            if o.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "not reachable at {base}: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            }
        });
    if !need("PostgreSQL", made) {
        return None;
    }
    let Some((prefix, _)) = base.rsplit_once('/') else {
        panic!("ERRAND_TEST_DATABASE_URL {base} names no database");
    };
    Some(format!("{prefix}/{name}"))
}
