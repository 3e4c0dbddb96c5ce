//! Append-only JSONL logs, one pair per run: `events.jsonl` (normalized
//! [`Event`]s, numbered from 1 without gaps) and `raw.jsonl` (the harness's own
//! stdout lines, as they came).
//!
//! Crash safety: every line is handed to the kernel in one `write` on an
//! `O_APPEND` file, so concurrent readers see whole lines or nothing of them.
//! If the machine dies mid-write and a partial last line is left, readers ignore
//! text after the last newline, and reopening a log for writing cuts it off
//! before appending, so a torn line never breaks reading.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::Utc;
use errand_core::{Event, EventKind, EventSource};

use crate::{Result, StoreError};

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Opens `path` for appending after cutting any torn tail; returns the file and
/// the complete lines already in it.
fn open_append(path: &Path) -> Result<(File, Vec<String>)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(path))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(io_err(path))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io_err(path))?;
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if complete < bytes.len() {
        file.set_len(complete as u64).map_err(io_err(path))?;
        file.seek(SeekFrom::End(0)).map_err(io_err(path))?;
    }
    let lines = split_complete(&bytes[..complete]);
    Ok((file, lines))
}

fn split_complete(bytes: &[u8]) -> Vec<String> {
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    bytes[..complete]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect()
}

fn write_line(file: &mut File, path: &Path, line: &str) -> Result<()> {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    file.write_all(&buf).map_err(io_err(path))
}

/// The writer of a run's normalized event log.
pub struct EventLog {
    file: File,
    path: PathBuf,
    next_seq: u64,
}

impl EventLog {
    /// Opens or creates the log; sequence numbers continue after the last complete event.
    pub fn open(path: &Path) -> Result<Self> {
        let (file, lines) = open_append(path)?;
        let last = lines
            .iter()
            .rev()
            .find_map(|l| serde_json::from_str::<Event>(l).ok())
            .map_or(0, |e| e.seq);
        Ok(EventLog {
            file,
            path: path.to_path_buf(),
            next_seq: last + 1,
        })
    }

    /// The log's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Numbers the next event after `seq` if that is further on: a run that
    /// an earlier attempt on another node (given back to the queue when that
    /// node drained) left events of in the store continues after them.
    pub fn continue_after(&mut self, seq: u64) {
        self.next_seq = self.next_seq.max(seq.saturating_add(1));
    }

    /// Appends one event and returns it as written.
    pub fn append(
        &mut self,
        source: EventSource,
        raw_line: Option<u64>,
        kind: EventKind,
    ) -> Result<Event> {
        let event = Event {
            seq: self.next_seq,
            ts: Utc::now(),
            source,
            raw_line,
            kind,
        };
        let line = serde_json::to_string(&event)
            .map_err(|e| StoreError::Corrupt(format!("event does not serialize: {e}")))?;
        write_line(&mut self.file, &self.path, &line)?;
        self.next_seq += 1;
        Ok(event)
    }
}

/// The writer of a run's raw harness output (`--raw`).
pub struct RawLog {
    file: File,
    path: PathBuf,
    lines: u64,
}

impl RawLog {
    /// Opens (creating it and its directory) the raw log at `path` for appending.
    pub fn open(path: &Path) -> Result<Self> {
        let (file, lines) = open_append(path)?;
        Ok(RawLog {
            file,
            path: path.to_path_buf(),
            lines: lines.len() as u64,
        })
    }

    /// How many lines the log has (the last line's number).
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Numbers the next line after `line_no` if that is further on: a run
    /// that an earlier attempt on another node left raw lines of in the
    /// store continues after them.
    pub fn continue_after(&mut self, line_no: u64) {
        self.lines = self.lines.max(line_no);
    }

    /// Appends one line (newlines inside it are replaced so a line stays a line);
    /// returns its line number, from 1.
    pub fn append(&mut self, line: &str) -> Result<u64> {
        let clean;
        let line = if line.contains('\n') || line.contains('\r') {
            clean = line.replace(['\n', '\r'], " ");
            clean.as_str()
        } else {
            line
        };
        write_line(&mut self.file, &self.path, line)?;
        self.lines += 1;
        Ok(self.lines)
    }
}

/// Reads every complete event of a log. A missing file is an empty log. Lines
/// that do not parse (which errand never writes) are skipped.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    Ok(read_raw_lines(path)?
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// Reads every complete line of a log file. A missing file has no lines.
pub fn read_raw_lines(path: &Path) -> Result<Vec<String>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(split_complete(&bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Follows a log that another process is writing: each [`LogTail::poll`]
/// returns the complete lines added since the last one.
pub struct LogTail {
    path: PathBuf,
    offset: u64,
}

impl LogTail {
    /// Follows `path` from its start; the file need not exist yet.
    pub fn new(path: &Path) -> Self {
        LogTail {
            path: path.to_path_buf(),
            offset: 0,
        }
    }

    /// The complete lines added since the last poll (none while the file
    /// does not exist); a line still being written waits for the next poll.
    pub fn poll(&mut self) -> Result<Vec<String>> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.path)(e)),
        };
        file.seek(SeekFrom::Start(self.offset))
            .map_err(io_err(&self.path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err(&self.path))?;
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        self.offset += complete as u64;
        Ok(split_complete(&bytes[..complete]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(m: &str) -> EventKind {
        EventKind::Notice { message: m.into() }
    }

    #[test]
    fn sequence_numbers_continue_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run/events.jsonl");
        let mut log = EventLog::open(&p).unwrap();
        assert_eq!(
            log.append(EventSource::Errand, None, notice("a"))
                .unwrap()
                .seq,
            1
        );
        assert_eq!(
            log.append(EventSource::Errand, None, notice("b"))
                .unwrap()
                .seq,
            2
        );
        drop(log);
        let mut log = EventLog::open(&p).unwrap();
        assert_eq!(
            log.append(EventSource::Harness, Some(7), notice("c"))
                .unwrap()
                .seq,
            3
        );
        let evs = read_events(&p).unwrap();
        assert_eq!(evs.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(evs[2].raw_line, Some(7));
    }

    #[test]
    fn raw_lines_continue_after_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run/raw.jsonl");
        let mut raw = RawLog::open(&p).unwrap();
        assert_eq!(raw.append("a").unwrap(), 1);
        raw.continue_after(4);
        assert_eq!((raw.lines(), raw.append("b").unwrap()), (4, 5));
        raw.continue_after(2);
        assert_eq!(raw.append("c").unwrap(), 6);
    }

    #[test]
    fn continue_after_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run/events.jsonl");
        let mut log = EventLog::open(&p).unwrap();
        log.continue_after(5);
        let seq = |log: &mut EventLog| {
            log.append(EventSource::Errand, None, notice("x"))
                .unwrap()
                .seq
        };
        assert_eq!(seq(&mut log), 6);
        log.continue_after(2);
        assert_eq!(seq(&mut log), 7);
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("events.jsonl");
        let mut log = EventLog::open(&p).unwrap();
        log.append(EventSource::Errand, None, notice("whole"))
            .unwrap();
        drop(log);
        // Simulate a crash in the middle of writing the second line.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(br#"{"seq":2,"ts":"2026-11-26T07:00:00Z","sou"#)
            .unwrap();
        drop(f);
        assert_eq!(
            read_events(&p).unwrap().len(),
            1,
            "reader skips the torn tail"
        );
        let mut log = EventLog::open(&p).unwrap();
        assert_eq!(
            log.append(EventSource::Errand, None, notice("next"))
                .unwrap()
                .seq,
            2
        );
        let evs = read_events(&p).unwrap();
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[1].kind, notice("next"));
    }

    #[test]
    fn tail_returns_only_complete_new_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("raw.jsonl");
        let mut tail = LogTail::new(&p);
        assert!(tail.poll().unwrap().is_empty(), "missing file");
        let mut raw = RawLog::open(&p).unwrap();
        assert_eq!(raw.append("{\"a\":1}").unwrap(), 1);
        assert_eq!(raw.append("not json\nat all").unwrap(), 2);
        assert_eq!(tail.poll().unwrap(), ["{\"a\":1}", "not json at all"]);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"half").unwrap();
        assert!(tail.poll().unwrap().is_empty());
        f.write_all(b"\":2}\n").unwrap();
        assert_eq!(tail.poll().unwrap(), ["{\"half\":2}"]);
        drop(raw);
        assert_eq!(RawLog::open(&p).unwrap().append("x").unwrap(), 4);
    }
}
