//! `errand db backup|migrate-to`: an online backup of the SQLite database, and
//! a move of it into PostgreSQL (`errand_store::backup_sqlite`,
//! `errand_store::copy_to_postgres`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use errand_runner::Paths;
use errand_store::{PgStore, SqliteStore};

use crate::args::DbCmd;
use crate::config;

pub async fn run(paths: &Paths, cmd: DbCmd) -> Result<ExitCode> {
    match cmd {
        DbCmd::Backup {
            file,
            force,
            database_url,
        } => {
            let src = open_sqlite(paths, database_url.as_deref(), "back up").await?;
            errand_store::backup_sqlite(&src, &file, force)
                .await
                .with_context(|| format!("backing up to {}", file.display()))?;
            src.close().await;
            eprintln!("backed up to {}", file.display());
        }
        DbCmd::MigrateTo {
            target,
            database_url,
            replace,
            json,
        } => {
            let target = target_url(&target)?;
            let shown = errand_git::redact_url(&target);
            let src = open_sqlite(paths, database_url.as_deref(), "move").await?;
            let dst = PgStore::connect(&target)
                .await
                .with_context(|| format!("opening the target database {shown}"))?;
            let counts = errand_store::copy_to_postgres(&src, &dst, replace)
                .await
                .with_context(|| format!("copying into {shown}"))?;
            dst.close().await;
            src.close().await;
            if json {
                let out = serde_json::json!({ "target": shown, "tables": counts });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("{:<20} {:>10} {:>10}", "TABLE", "SOURCE", "TARGET");
                for c in &counts {
                    println!("{:<20} {:>10} {:>10}", c.table, c.source, c.target);
                }
                eprintln!(
                    "copied into {shown}; every table's count matches. Set database.url to it \
                     (and the same secret key on every node) before starting errand again."
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The PostgreSQL URL given, or read from stdin for `-`.
fn target_url(arg: &str) -> Result<String> {
    let url = if arg == "-" {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the target URL from stdin")?;
        line.trim().to_string()
    } else {
        arg.trim().to_string()
    };
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("postgres://") || lower.starts_with("postgresql://")) {
        bail!("the target must be a postgres:// or postgresql:// URL");
    }
    Ok(url)
}

/// The SQLite store `--database-url`, else `database.url`, else the default
/// file names; an existing file only (a mistyped path must not make an empty one).
async fn open_sqlite(paths: &Paths, url: Option<&str>, what: &str) -> Result<SqliteStore> {
    let url = match url {
        Some(u) => u.to_string(),
        None => config::load(paths)?.database_url(paths),
    };
    let Some(path): Option<PathBuf> = errand_store::sqlite_path(&url) else {
        bail!(
            "the database {} is not an SQLite file: to {what} PostgreSQL use its own tools \
             (pg_dump, pg_restore)",
            errand_git::redact_url(&url)
        );
    };
    if !path.is_file() {
        bail!("no SQLite database at {}", path.display());
    }
    SqliteStore::open(&path)
        .await
        .with_context(|| format!("opening {}", path.display()))
}
