//! Backing up and moving a store: an online backup of an SQLite database
//! ([`backup_sqlite`], `VACUUM INTO`: one consistent snapshot, writers keep
//! going), and a copy of every table of an SQLite store into an empty
//! PostgreSQL one ([`copy_to_postgres`]), with the rows of each table counted
//! on both sides.
//!
//! The copy knows no table by name: it takes the tables the migrations made
//! (SQLite's schema, in the order they were created, so a table comes after
//! the ones it references) and each column's type from PostgreSQL's, so a
//! table or column a later migration adds is copied too, and one that exists
//! on only one side stops the copy before anything is written.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sqlx::{Row, Sqlite};

use crate::{PgStore, Result, SqliteStore, StoreError};

/// Rows read and written per statement.
const BATCH: i64 = 500;

/// One table of a copy: how many rows it had in the source and has in the
/// target (the copy fails unless they are equal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableCount {
    /// The table's name.
    pub table: String,
    /// Rows in the source (one snapshot).
    pub source: u64,
    /// Rows in the target after the copy.
    pub target: u64,
}

/// The SQLite file a database URL names (as [`crate::open_url`] reads it),
/// `None` for PostgreSQL and in-memory URLs.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        return None;
    }
    if lower == "sqlite::memory:" || lower == "sqlite://:memory:" {
        return None;
    }
    let rest = if lower.starts_with("sqlite://") {
        &url["sqlite://".len()..]
    } else if lower.starts_with("sqlite:") {
        &url["sqlite:".len()..]
    } else if url.contains("://") {
        return None;
    } else {
        url
    };
    let path = rest.split_once('?').map_or(rest, |(p, _)| p);
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// Writes a consistent copy of the SQLite database to `dest`, while other
/// connections and processes keep writing. `dest` must not exist unless
/// `overwrite`; the copy is written beside it with mode 0600 (it holds token
/// hashes and sealed secrets) and renamed into place, so `dest` is never
/// half written.
pub async fn backup_sqlite(src: &SqliteStore, dest: &Path, overwrite: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| StoreError::Io { path, source }
    };
    if !overwrite && dest.symlink_metadata().is_ok() {
        return Err(StoreError::Conflict(format!(
            "{} exists; give another file or --force",
            dest.display()
        )));
    }
    let name = dest
        .file_name()
        .ok_or_else(|| StoreError::Invalid(format!("{} names no file", dest.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.partial", uuid::Uuid::new_v4().simple()));
    let tmp = dest.with_file_name(tmp_name);
    let written = sqlx::query("VACUUM INTO ?1")
        .bind(tmp.to_string_lossy().into_owned())
        .execute(src.pool())
        .await;
    let placed = match written {
        Err(e) => Err(StoreError::from(e)),
        Ok(_) => std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .map_err(io(&tmp))
            .and_then(|()| {
                if overwrite {
                    std::fs::rename(&tmp, dest).map_err(io(dest))
                } else {
                    // A link fails if `dest` appeared meanwhile: never replaced.
                    std::fs::hard_link(&tmp, dest).map_err(io(dest))
                }
            }),
    };
    let _ = std::fs::remove_file(&tmp);
    placed
}

/// Copies every row of every table of `src` into `dst` in one transaction on
/// `dst`, reading `src` as one snapshot, and checks each table's count on
/// both sides before committing. `dst` must have no rows unless `replace`,
/// which empties its tables first (in the same transaction). Both stores
/// must be at the same migration.
pub async fn copy_to_postgres(
    src: &SqliteStore,
    dst: &PgStore,
    replace: bool,
) -> Result<Vec<TableCount>> {
    let mut read = src.pool().begin().await?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY rowid",
    )
    .fetch_all(&mut *read)
    .await?;
    let mut write = dst.pool().begin().await?;
    same_schema(&mut read, &mut write, &tables).await?;
    let mut filled = Vec::new();
    for t in &tables {
        let any: bool = sqlx::query_scalar(&format!("SELECT EXISTS (SELECT 1 FROM {})", quote(t)))
            .fetch_one(&mut *write)
            .await?;
        if any {
            filled.push(t.as_str());
        }
    }
    if !filled.is_empty() {
        if !replace {
            return Err(StoreError::Conflict(format!(
                "the target database already has rows in {}; give an empty database, or --replace to empty it first",
                filled.join(", ")
            )));
        }
        let all: Vec<String> = tables.iter().map(|t| quote(t)).collect();
        sqlx::query(&format!("TRUNCATE {}", all.join(", ")))
            .execute(&mut *write)
            .await?;
    }
    let mut counts = Vec::new();
    for t in &tables {
        let copied = copy_table(&mut read, &mut write, t).await?;
        let count = |n: i64| crate::common::to_u64(n, "row count");
        let sql = format!("SELECT COUNT(*) FROM {}", quote(t));
        let source = count(sqlx::query_scalar(&sql).fetch_one(&mut *read).await?)?;
        let target = count(sqlx::query_scalar(&sql).fetch_one(&mut *write).await?)?;
        if source != copied || target != source {
            return Err(StoreError::Corrupt(format!(
                "table {t}: {source} rows in the source, {copied} copied, {target} in the target; nothing was committed"
            )));
        }
        counts.push(TableCount {
            table: t.clone(),
            source,
            target,
        });
    }
    write.commit().await?;
    read.rollback().await?;
    Ok(counts)
}

type SqliteTx<'a> = sqlx::Transaction<'a, Sqlite>;
type PgTx<'a> = sqlx::Transaction<'a, sqlx::Postgres>;

/// Refuses a copy between stores at different migrations or with different tables.
async fn same_schema(
    read: &mut SqliteTx<'_>,
    write: &mut PgTx<'_>,
    tables: &[String],
) -> Result<()> {
    let versions = "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version";
    let from: Vec<i64> = sqlx::query_scalar(versions).fetch_all(&mut **read).await?;
    let to: Vec<i64> = sqlx::query_scalar(versions).fetch_all(&mut **write).await?;
    if from != to {
        return Err(StoreError::Invalid(format!(
            "the databases are at different migrations (source {:?}, target {:?}); open both with this errand first",
            from.last(),
            to.last()
        )));
    }
    let target: BTreeSet<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
         AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut **write)
    .await?
    .into_iter()
    .collect();
    let source: BTreeSet<String> = tables.iter().cloned().collect();
    if source != target {
        return Err(StoreError::Invalid(format!(
            "the databases have different tables: only in the source {:?}, only in the target {:?}",
            source.difference(&target).collect::<Vec<_>>(),
            target.difference(&source).collect::<Vec<_>>()
        )));
    }
    Ok(())
}

/// One value, typed by the target column.
enum Value {
    Int(Option<i64>),
    Bool(Option<bool>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

/// Copies table `t` in batches (by rowid, so each read is an index range);
/// returns how many rows were written.
async fn copy_table(read: &mut SqliteTx<'_>, write: &mut PgTx<'_>, t: &str) -> Result<u64> {
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(t)
    .fetch_all(&mut **write)
    .await?;
    let source: BTreeSet<String> = sqlx::query(&format!("PRAGMA table_info({})", quote(t)))
        .fetch_all(&mut **read)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("name"))
        .collect::<std::result::Result<_, _>>()?;
    let target: BTreeSet<String> = columns.iter().map(|(c, _)| c.clone()).collect();
    if source != target {
        return Err(StoreError::Invalid(format!(
            "table {t} has columns {source:?} in the source and {target:?} in the target"
        )));
    }
    let names: Vec<String> = columns.iter().map(|(c, _)| quote(c)).collect();
    let select = format!(
        "SELECT rowid AS errand_rowid, {} FROM {} WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
        names.join(", "),
        quote(t)
    );
    let insert = format!("INSERT INTO {} ({}) ", quote(t), names.join(", "));
    let (mut after, mut copied) = (i64::MIN, 0u64);
    loop {
        let rows = sqlx::query(&select)
            .bind(after)
            .bind(BATCH)
            .fetch_all(&mut **read)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(copied);
        };
        after = last.try_get("errand_rowid")?;
        let mut values = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut one = Vec::with_capacity(columns.len());
            for (name, ty) in &columns {
                one.push(value(row, t, name, ty)?);
            }
            values.push(one);
        }
        let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(&insert);
        q.push_values(values, |mut b, row| {
            for v in row {
                match v {
                    Value::Int(v) => b.push_bind(v),
                    Value::Bool(v) => b.push_bind(v),
                    Value::Text(v) => b.push_bind(v),
                    Value::Bytes(v) => b.push_bind(v),
                };
            }
        });
        let done = q.build().execute(&mut **write).await?;
        copied += done.rows_affected();
    }
}

/// Column `name` of `row`, read as the type the target column `ty` has.
fn value(row: &sqlx::sqlite::SqliteRow, t: &str, name: &str, ty: &str) -> Result<Value> {
    Ok(match ty {
        "bigint" | "integer" | "smallint" => Value::Int(row.try_get(name)?),
        "boolean" => Value::Bool(row.try_get(name)?),
        "text" | "character varying" => Value::Text(row.try_get(name)?),
        "bytea" => Value::Bytes(row.try_get(name)?),
        other => {
            return Err(StoreError::Invalid(format!(
                "column {t}.{name} has type {other}, which the copy does not know"
            )))
        }
    })
}

/// `name` as an SQL identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::sqlite_path;
    use std::path::PathBuf;

    #[test]
    fn sqlite_paths_are_read_as_open_url_reads_them() {
        let p = |s: &str| sqlite_path(s);
        assert_eq!(p("/data/errand.db"), Some(PathBuf::from("/data/errand.db")));
        assert_eq!(
            p("sqlite:///data/e.db?mode=rwc"),
            Some(PathBuf::from("/data/e.db"))
        );
        assert_eq!(p("sqlite:e.db"), Some(PathBuf::from("e.db")));
        assert_eq!(p("postgres://u:p@h/db"), None);
        assert_eq!(p("sqlite::memory:"), None);
        assert_eq!(p("mysql://h/db"), None);
        assert_eq!(p("sqlite:"), None);
    }
}
