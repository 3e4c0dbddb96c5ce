//! Retention: what of finished runs, and of the git mirrors, errand removes
//! to keep its disk from growing without limit.
//!
//! * A finished run's **workspace** (the agent's `workspace/`, `home/`,
//!   `tmp/` and errand's scratch beside them) goes `workspaces` after the run
//!   ended, never sooner than `follow_up_window`. A follow-up after that
//!   re-creates it from the run's branch ([`errand_git::restore`]).
//! * Its **logs** (`events.jsonl`, `raw.jsonl`, `stderr.log`, and the events
//!   and raw lines in the store) go `logs` after it ended.
//! * Its **outbox** goes with the workspace once the branch was pushed (the
//!   remote has it), else with the logs: until then it is what a follow-up
//!   re-creates the workspace from.
//! * With a **disk budget** for `runs/`, more goes, oldest-ended first:
//!   workspaces, then logs, never a run within `follow_up_window` of its end
//!   and never a run that is not over.
//! * A **mirror** goes when no run used it for `mirrors`.
//!
//! [`plan`] decides from what is on disk, the policy and a `now` passed in (so
//! tests control the clock); [`gc`] measures, plans and removes. Removal never
//! follows a symlink and makes read-only directories writable first (the
//! agent could leave either), and a run being executed is never touched: the
//! runner holds its run's lock ([`RunLock`]) and `gc` skips a run it cannot lock.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use errand_core::{RunId, RunRecord};
use errand_store::{Pruned, RunFilter, Store, StoreError};
use serde::Serialize;

use crate::Paths;

/// How long errand keeps what (`[retention]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// How long after a run ends its workspace is kept.
    pub workspaces: Duration,
    /// How long after a run ends a follow-up is expected: the workspace is
    /// kept at least this long, even over the disk budget.
    pub follow_up_window: Duration,
    /// How long after a run ends its event and raw logs are kept.
    pub logs: Duration,
    /// The most `runs/` may hold, in bytes; `None`: no budget.
    pub max_disk: Option<u64>,
    /// How long a git mirror no run used is kept.
    pub mirrors: Duration,
}

const DAY: Duration = Duration::from_secs(86_400);

impl Default for Policy {
    fn default() -> Self {
        Policy {
            workspaces: 7 * DAY,
            follow_up_window: DAY,
            logs: 90 * DAY,
            max_disk: None,
            mirrors: 30 * DAY,
        }
    }
}

/// One run as retention sees it: when it ended and what of it is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDisk {
    /// The run.
    pub id: RunId,
    /// When it ended; `None` while it is not over (queued for a follow-up
    /// included): such a run is never touched.
    pub ended: Option<DateTime<Utc>>,
    /// Whether errand pushed its branch (the remote has it).
    pub pushed: bool,
    /// The workspace's bytes; `None`: already gone.
    pub workspace: Option<u64>,
    /// The logs' bytes on disk; `None`: already gone.
    pub logs: Option<u64>,
    /// The outbox's bytes; `None`: no outbox.
    pub outbox: Option<u64>,
}

/// Why something is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Why {
    /// Its time under the policy is over.
    Age,
    /// `runs/` is over its disk budget.
    Budget,
}

/// One thing [`plan`] removes from one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// The run (its id as errand prints it).
    #[serde(serialize_with = "as_text")]
    pub run: RunId,
    /// What of it.
    pub what: Pruned,
    /// Whether the run's outbox goes with it.
    pub with_outbox: bool,
    /// Bytes freed (measured before; the outbox's included).
    pub bytes: u64,
    /// Why.
    pub why: Why,
}

fn as_text<S: serde::Serializer>(id: &RunId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

/// What is left of each run while planning.
struct Left<'a> {
    run: &'a RunDisk,
    workspace: bool,
    logs: bool,
    outbox: bool,
}

impl Left<'_> {
    fn bytes(&self) -> u64 {
        let r = self.run;
        [
            (self.workspace, r.workspace),
            (self.logs, r.logs),
            (self.outbox, r.outbox),
        ]
        .iter()
        .filter(|(left, _)| *left)
        .map(|(_, b)| b.unwrap_or(0))
        .sum()
    }

    /// Takes `what` (still there) and the outbox once nothing needs it.
    fn take(&mut self, what: Pruned, why: Why) -> Item {
        let mut bytes = match what {
            Pruned::Workspace => {
                self.workspace = false;
                self.run.workspace.unwrap_or(0)
            }
            Pruned::Logs => {
                self.logs = false;
                self.run.logs.unwrap_or(0)
            }
        };
        let with_outbox = self.outbox && !self.workspace && (self.run.pushed || !self.logs);
        if with_outbox {
            self.outbox = false;
            bytes += self.run.outbox.unwrap_or(0);
        }
        Item {
            run: self.run.id,
            what,
            with_outbox,
            bytes,
            why,
        }
    }

    fn has(&self, what: Pruned) -> bool {
        match what {
            Pruned::Workspace => self.workspace,
            Pruned::Logs => self.logs,
        }
    }
}

/// What to remove from `runs` under `policy` at `now`: first what is past its
/// time, then, while `runs/` is over the budget, oldest-ended first, the
/// workspaces and then the logs of runs past their follow-up window.
pub fn plan(runs: &[RunDisk], policy: &Policy, now: DateTime<Utc>) -> Vec<Item> {
    let age = |r: &RunDisk| {
        r.ended
            .map(|t| (now - t).to_std().unwrap_or(Duration::ZERO))
    };
    let mut left: Vec<Left> = runs
        .iter()
        .map(|run| Left {
            run,
            workspace: run.workspace.is_some(),
            logs: run.logs.is_some(),
            outbox: run.outbox.is_some(),
        })
        .collect();
    let mut items = Vec::new();
    let keep_workspace = policy.workspaces.max(policy.follow_up_window);
    for l in &mut left {
        let Some(a) = age(l.run) else { continue };
        if l.workspace && a >= keep_workspace {
            items.push(l.take(Pruned::Workspace, Why::Age));
        }
        if l.logs && a >= policy.logs {
            items.push(l.take(Pruned::Logs, Why::Age));
        }
    }
    let Some(budget) = policy.max_disk else {
        return items;
    };
    let mut used: u64 = left.iter().map(Left::bytes).sum();
    let mut order: Vec<usize> = (0..left.len())
        .filter(|&i| age(left[i].run).is_some_and(|a| a >= policy.follow_up_window))
        .collect();
    order.sort_by_key(|&i| (left[i].run.ended, left[i].run.id));
    for what in [Pruned::Workspace, Pruned::Logs] {
        for &i in &order {
            if used <= budget {
                return items;
            }
            if left[i].has(what) {
                let item = left[i].take(what, Why::Budget);
                used = used.saturating_sub(item.bytes);
                items.push(item);
            }
        }
    }
    items
}

/// The mirrors not used since `now - keep`.
pub fn plan_mirrors(
    mirrors: &[errand_git::MirrorUse],
    keep: Duration,
    now: SystemTime,
) -> Vec<PathBuf> {
    let cutoff = now.checked_sub(keep).unwrap_or(SystemTime::UNIX_EPOCH);
    mirrors
        .iter()
        .filter(|m| m.last_used < cutoff)
        .map(|m| m.path.clone())
        .collect()
}

/// What a run's workspace is made of, under its run directory.
const WORKSPACE_PARTS: &[&str] = &[
    "workspace",
    "workspace.work",
    "workspace.view",
    "home",
    "tmp",
    "no-harness-dir",
    "shims",
    "git-proxy",
    "export.bundle",
];
/// What a run's logs are made of, under its run directory.
const LOG_PARTS: &[&str] = &["events.jsonl", "raw.jsonl", "stderr.log"];
const OUTBOX: &str = "outbox.git";

/// Held while a run executes (shared) or while retention removes from it
/// (exclusive): `runs/ID/.lock`, a file lock.
pub struct RunLock {
    _held: std::fs::File,
}

impl RunLock {
    fn open(run_dir: &Path) -> std::io::Result<std::fs::File> {
        std::fs::create_dir_all(run_dir)?;
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(run_dir.join(".lock"))
    }

    /// Waits for retention to finish with the run, then keeps it off until dropped.
    pub async fn executing(run_dir: &Path) -> std::io::Result<RunLock> {
        let file = Self::open(run_dir)?;
        tokio::task::spawn_blocking(move || file.lock_shared().map(|()| RunLock { _held: file }))
            .await
            .map_err(std::io::Error::other)?
    }

    /// The run for retention alone; `None` while it executes.
    fn exclusive(run_dir: &Path) -> std::io::Result<Option<RunLock>> {
        let file = Self::open(run_dir)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(RunLock { _held: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// Bytes `path` takes on disk (allocated blocks), its links not followed; 0
/// when it is missing. Unreadable parts count as nothing.
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    walkdir::WalkDir::new(path)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

fn parts_usage(run_dir: &Path, parts: &[&str]) -> Option<u64> {
    let present: Vec<PathBuf> = parts
        .iter()
        .map(|p| run_dir.join(p))
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .collect();
    (!present.is_empty()).then(|| present.iter().map(|p| disk_usage(p)).sum())
}

/// The run as retention sees it, measured on disk (blocking).
pub fn measure(rec: &RunRecord, run_dir: &Path) -> RunDisk {
    let ended = rec.state.is_terminal().then_some(rec.finished_at).flatten();
    let workspace = if rec.workspace_pruned_at.is_some() {
        None
    } else {
        parts_usage(run_dir, WORKSPACE_PARTS)
    };
    // Logs in the store count even when this machine has no file of them.
    let logs = match (rec.logs_pruned_at, parts_usage(run_dir, LOG_PARTS)) {
        (Some(_), _) => None,
        (None, bytes) => Some(bytes.unwrap_or(0)),
    };
    RunDisk {
        id: rec.id,
        ended,
        pushed: rec.summary.pushed,
        workspace,
        logs,
        outbox: parts_usage(run_dir, &[OUTBOX]),
    }
}

/// What one `gc` removed (or, dry, would remove).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Nothing was removed: this is what would be.
    pub dry_run: bool,
    /// `runs/` before, in bytes.
    pub runs_bytes_before: u64,
    /// Every run item removed.
    pub items: Vec<Item>,
    /// Every mirror and shared checkout removed, with its bytes.
    pub mirrors: Vec<(PathBuf, u64)>,
    /// Bytes freed in all.
    pub freed_bytes: u64,
    /// Runs something was removed from.
    pub runs: usize,
    /// What could not be removed, and why (left for the next time).
    pub errors: Vec<String>,
}

/// Every run the store knows, paged.
async fn all_runs(store: &dyn Store) -> Result<Vec<RunRecord>, StoreError> {
    const PAGE: u32 = 500;
    let mut out = Vec::new();
    loop {
        let page = store
            .list_runs(&RunFilter {
                limit: PAGE,
                offset: u32::try_from(out.len()).unwrap_or(u32::MAX),
                ..Default::default()
            })
            .await?;
        let n = page.len();
        out.extend(page);
        if n < PAGE as usize {
            return Ok(out);
        }
    }
}

/// Measures every run and mirror, plans under `policy` at `now`, and (unless
/// `dry_run`) removes what the plan says, recording it in the store.
pub async fn gc(
    store: &dyn Store,
    paths: &Paths,
    policy: &Policy,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<Report, StoreError> {
    let records = all_runs(store).await?;
    let dirs: Vec<(RunRecord, PathBuf)> = records
        .into_iter()
        .map(|r| {
            let d = paths.run_dir(r.id);
            (r, d)
        })
        .collect();
    let measured = tokio::task::spawn_blocking(move || {
        let disks: Vec<RunDisk> = dirs.iter().map(|(r, d)| measure(r, d)).collect();
        (dirs, disks)
    })
    .await
    .map_err(|e| StoreError::Corrupt(format!("measuring runs failed: {e}")))?;
    let (dirs, disks) = measured;
    let mut report = Report {
        dry_run,
        runs_bytes_before: disks
            .iter()
            .map(|d| d.workspace.unwrap_or(0) + d.logs.unwrap_or(0) + d.outbox.unwrap_or(0))
            .sum(),
        ..Default::default()
    };
    let items = plan(&disks, policy, now);
    let records: HashMap<RunId, &RunRecord> = dirs.iter().map(|(r, _)| (r.id, r)).collect();
    for item in items {
        if dry_run {
            report.items.push(item);
            continue;
        }
        let Some(rec) = records.get(&item.run) else {
            continue;
        };
        match remove_item(store, paths, rec, &item, now).await {
            Ok(true) => report.items.push(item),
            Ok(false) => {}
            Err(e) => report.errors.push(format!("run {}: {e}", item.run.short())),
        }
    }
    mirrors(paths, policy, dry_run, &mut report).await;
    report.freed_bytes = report.items.iter().map(|i| i.bytes).sum::<u64>()
        + report.mirrors.iter().map(|(_, b)| b).sum::<u64>();
    let mut runs: Vec<RunId> = report.items.iter().map(|i| i.run).collect();
    runs.sort();
    runs.dedup();
    report.runs = runs.len();
    Ok(report)
}

/// Removes one planned item under the run's lock, if the run is still as
/// planned (over, and ended when it was); `false` when it was left alone.
async fn remove_item(
    store: &dyn Store,
    paths: &Paths,
    planned: &RunRecord,
    item: &Item,
    now: DateTime<Utc>,
) -> Result<bool, String> {
    let run_dir = paths.run_dir(item.run);
    // A run with nothing on this machine (its logs only in the store) needs no lock.
    let lock = if std::fs::symlink_metadata(&run_dir).is_ok() {
        match RunLock::exclusive(&run_dir).map_err(|e| e.to_string())? {
            Some(lock) => Some(lock),
            None => return Ok(false),
        }
    } else {
        None
    };
    let current = store.get_run(item.run).await.map_err(|e| e.to_string())?;
    if !current.state.is_terminal() || current.finished_at != planned.finished_at {
        return Ok(false);
    }
    let mut parts: Vec<&str> = match item.what {
        Pruned::Workspace => WORKSPACE_PARTS.to_vec(),
        Pruned::Logs => LOG_PARTS.to_vec(),
    };
    if item.with_outbox {
        parts.push(OUTBOX);
    }
    let dir = run_dir.clone();
    let removed = tokio::task::spawn_blocking(move || {
        let errors: Vec<String> = parts
            .iter()
            .filter_map(|p| {
                remove_tree(&dir, OsStr::new(p))
                    .err()
                    .map(|e| format!("{p}: {e}"))
            })
            .collect();
        errors
    })
    .await
    .map_err(|e| e.to_string())?;
    if !removed.is_empty() {
        return Err(removed.join("; "));
    }
    if item.what == Pruned::Logs {
        store
            .delete_logs(item.run)
            .await
            .map_err(|e| e.to_string())?;
    }
    store
        .set_pruned(item.run, item.what, Some(now))
        .await
        .map_err(|e| e.to_string())?;
    drop(lock);
    Ok(true)
}

async fn mirrors(paths: &Paths, policy: &Policy, dry_run: bool, report: &mut Report) {
    let m = errand_git::Mirrors::new(paths.cache.join("mirrors"));
    let keep = policy.mirrors;
    let checkouts_root = paths.cache.join("checkouts");
    let keep_checkouts = policy.workspaces.max(policy.follow_up_window) + DAY;
    let done = tokio::task::spawn_blocking(move || {
        let mut removed = Vec::new();
        let mut errors = Vec::new();
        let listed = match m.list() {
            Ok(l) => l,
            Err(e) => return (removed, vec![format!("mirrors: {e}")]),
        };
        let now = SystemTime::now();
        let cutoff = now.checked_sub(keep).unwrap_or(SystemTime::UNIX_EPOCH);
        for path in plan_mirrors(&listed, keep, now) {
            let bytes = disk_usage(&path);
            if dry_run {
                removed.push((path, bytes));
                continue;
            }
            match m.remove_unused(&path, cutoff) {
                Ok(true) => removed.push((path, bytes)),
                Ok(false) => {}
                Err(e) => errors.push(format!("mirror {}: {e}", path.display())),
            }
        }
        // The shared checkouts under runs' workspaces: kept while a kept
        // workspace may still be layered on one (a day's margin for the run
        // itself); one removed all the same is re-created as a clone.
        let c = errand_git::Checkouts::new(checkouts_root, errand_git::LayerMode::Overlay);
        let cutoff = now
            .checked_sub(keep_checkouts)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        match c.list() {
            Ok(listed) => {
                for (path, _) in listed.into_iter().filter(|(_, used)| *used < cutoff) {
                    let bytes = disk_usage(&path);
                    if dry_run {
                        removed.push((path, bytes));
                        continue;
                    }
                    match c.remove_unused(&path, cutoff) {
                        Ok(true) => removed.push((path, bytes)),
                        Ok(false) => {}
                        Err(e) => errors.push(format!("checkout {}: {e}", path.display())),
                    }
                }
            }
            Err(e) => errors.push(format!("checkouts: {e}")),
        }
        (removed, errors)
    })
    .await;
    match done {
        Ok((removed, errors)) => {
            report.mirrors = removed;
            report.errors.extend(errors);
        }
        Err(e) => report.errors.push(format!("mirrors: {e}")),
    }
}

/// Directories deeper than this are moved up to the top of the tree being
/// removed, so neither the stack nor the open descriptors grow with the
/// agent's nesting.
const MAX_DEPTH: usize = 64;

fn dir_flags() -> rustix::fs::OFlags {
    use rustix::fs::OFlags;
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Removes `name` in the host directory `parent` and everything under it,
/// never following a symlink (a link is removed, not what it points at), and
/// making directories the agent left read-only writable first. Missing is fine.
pub fn remove_tree(parent: &Path, name: &OsStr) -> std::io::Result<()> {
    use rustix::fs::{openat, statat, unlinkat, AtFlags, FileType, Mode};
    let pdir = openat(rustix::fs::CWD, parent, dir_flags(), Mode::empty())?;
    let st = match statat(&pdir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Ok(unlinkat(&pdir, name, AtFlags::empty())?);
    }
    let root = open_writable(&pdir, name, st.st_mode)?;
    let mut remover = Remover { moved: 0 };
    // Directories moved up from deep down are emptied on the next pass.
    loop {
        let before = remover.moved;
        remover.clear(&root, &root, 0)?;
        if remover.moved == before {
            break;
        }
    }
    Ok(unlinkat(&pdir, name, AtFlags::REMOVEDIR)?)
}

/// Opens the directory `name` in `dir` (not a link), giving its owner full
/// access first when the agent took it away.
fn open_writable(dir: &OwnedFd, name: &OsStr, mode: u32) -> std::io::Result<OwnedFd> {
    use rustix::fs::{chmodat, openat, AtFlags, Mode};
    if mode & 0o700 != 0o700 {
        // The run is over and its sandbox gone: nothing swaps this
        // directory for a link between the check and here, and the open
        // below refuses a link anyway.
        chmodat(
            dir,
            name,
            Mode::from_raw_mode((mode & 0o7777) | 0o700),
            AtFlags::empty(),
        )?;
    }
    Ok(openat(dir, name, dir_flags(), Mode::empty())?)
}

struct Remover {
    moved: u64,
}

impl Remover {
    /// Removes everything in `dir`, `depth` below `root`.
    fn clear(&mut self, root: &OwnedFd, dir: &OwnedFd, depth: usize) -> std::io::Result<()> {
        use rustix::fs::{renameat, statat, unlinkat, AtFlags, FileType};
        let names: Vec<CString> = rustix::fs::Dir::read_from(dir.as_fd())?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_owned())
            .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
            .collect();
        for name in names {
            let name = OsStr::from_bytes(name.as_bytes());
            let st = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
            if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                unlinkat(dir, name, AtFlags::empty())?;
                continue;
            }
            if depth >= MAX_DEPTH {
                // Under a name of its own at the top (the agent may have
                // taken some: try the next).
                loop {
                    self.moved += 1;
                    let up = format!(".errand-gc-{}", self.moved);
                    match renameat(dir, name, root, up.as_str()) {
                        Ok(()) => break,
                        Err(rustix::io::Errno::EXIST | rustix::io::Errno::NOTEMPTY) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                continue;
            }
            let sub = open_writable(dir, name, st.st_mode)?;
            self.clear(root, &sub, depth + 1)?;
            drop(sub);
            unlinkat(dir, name, AtFlags::REMOVEDIR)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
