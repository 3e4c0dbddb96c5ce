//! `errand config show|check`.

use anyhow::Result;
use errand_runner::Paths;

use crate::config::{load_full, Source, ARRAYS};

/// `errand config show [--json]`: the effective configuration, secrets masked,
/// with where each value came from.
pub fn show(paths: &Paths, json: bool) -> Result<std::process::ExitCode> {
    let loaded = load_full(paths)?;
    for w in &loaded.warnings {
        eprintln!("{}: warning: {w}", loaded.path.display());
    }
    let source_json = |key: &str| match loaded.source(key) {
        Source::File => serde_json::json!({"source": "file"}),
        Source::Env(v) => serde_json::json!({"source": "environment", "variable": v}),
        Source::Default => serde_json::json!({"source": "default"}),
    };
    if json {
        let mut values = serde_json::Map::new();
        for (key, v) in loaded.effective() {
            let Some(v) = v else { continue };
            let mut entry = source_json(key);
            entry["value"] = v;
            values.insert(key.to_string(), entry);
        }
        let out = serde_json::json!({
            "file": loaded.path,
            "file_exists": loaded.path.is_file(),
            "values": values,
            "harness": loaded.entries("harness"),
            "access": loaded.entries("access"),
            "warnings": loaded.warnings,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let exists = if loaded.path.is_file() {
            ""
        } else {
            " (not found: defaults and environment only)"
        };
        println!("# {}{exists}", loaded.path.display());
        let mut skipped = std::collections::BTreeSet::new();
        for (key, v) in loaded.effective() {
            let Some(v) = v else {
                skipped.insert(key.split('.').next().unwrap_or(key));
                continue;
            };
            let shown = match &v {
                serde_json::Value::Null => "(unset)".to_string(),
                v => v.to_string(),
            };
            println!("{key} = {shown}  # {}", loaded.source(key));
        }
        for s in skipped {
            println!("# [{s}] is not configured");
        }
        for name in ARRAYS {
            if let serde_json::Value::Array(a) = loaded.entries(name) {
                for e in a {
                    println!("[[{name}]] {e}  # file");
                }
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `errand config check`: every problem, unknown keys included (exit 1 if any).
pub fn check(paths: &Paths) -> Result<std::process::ExitCode> {
    let loaded = load_full(paths)?;
    let mut problems = loaded.warnings.clone();
    problems.extend(loaded.config.problems());
    let p = loaded.path.display();
    if problems.is_empty() {
        println!("{p}: ok");
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        for problem in &problems {
            eprintln!("{p}: {problem}");
        }
        Ok(std::process::ExitCode::FAILURE)
    }
}
