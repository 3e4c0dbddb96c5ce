//! How much of what the agent prints errand takes. The harness's output is the
//! agent's to shape: one endless line, a flood of events or a gigabyte of
//! stderr must not grow errand's memory or a run's trace without bound. Past
//! each cap errand keeps reading (so the harness never blocks on a full pipe),
//! drops the excess and records one warning in the trace.

use errand_core::EventKind;
use tokio::io::{AsyncBufRead, AsyncReadExt};

/// The longest stdout line errand keeps; the rest of a longer line is dropped.
pub const MAX_LINE_BYTES: usize = 8 << 20;
/// The most events a run's harness may add to its trace.
pub const MAX_EVENTS: u64 = 100_000;
/// The most raw-output bytes stored for a run (`errand logs --raw`).
pub const MAX_RAW_BYTES: u64 = 256 << 20;
/// The longest string kept in one harness event (a tool's output, a message).
pub const MAX_EVENT_STRING: usize = 256 << 10;
/// The most stderr kept for a run (`stderr.log`).
pub const MAX_STDERR_BYTES: u64 = 4 << 20;
/// The most output kept of a step after the agent (commit, tests): its end.
pub const MAX_STEP_OUTPUT: usize = 256 << 10;
/// Bytes queued for the store above which errand stops reading the harness.
pub const MAX_BACKLOG: usize = 32 << 20;
/// The most refusals taken from the guard's log.
pub const MAX_DENIALS: u64 = 10_000;

/// Whether the trace takes one more harness event.
pub enum Take {
    Yes,
    /// No, and this is the first refusal: record this warning.
    LastOne(EventKind),
    No,
}

/// What the trace may still take from the harness.
#[derive(Debug, Default)]
pub struct TraceBudget {
    events: u64,
    raw_bytes: u64,
    raw_full: bool,
}

impl TraceBudget {
    pub fn take_event(&mut self) -> Take {
        self.events += 1;
        if self.events <= MAX_EVENTS {
            Take::Yes
        } else if self.events == MAX_EVENTS + 1 {
            Take::LastOne(EventKind::Warning {
                message: format!(
                    "trace truncated: the harness produced more than {MAX_EVENTS} events; \
                     errand keeps running the agent but records no more of its events"
                ),
            })
        } else {
            Take::No
        }
    }

    /// Whether a raw line of `len` bytes is still stored; the first refusal
    /// returns the warning to record.
    pub fn take_raw(&mut self, len: usize) -> Result<(), Option<EventKind>> {
        if self.raw_full {
            return Err(None);
        }
        self.raw_bytes += len as u64;
        if self.raw_bytes <= MAX_RAW_BYTES {
            Ok(())
        } else {
            self.raw_full = true;
            Err(Some(EventKind::Warning {
                message: format!(
                    "raw output truncated: the harness printed more than {} MiB; errand stores no \
                     more of it (events are still parsed)",
                    MAX_RAW_BYTES >> 20
                ),
            }))
        }
    }
}

/// About how many bytes an event holds (its strings).
pub fn approx_size(kind: &EventKind) -> usize {
    fn walk(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::String(s) => s.len() + 8,
            serde_json::Value::Array(a) => a.iter().map(walk).sum::<usize>() + 8,
            serde_json::Value::Object(o) => o.iter().map(|(k, v)| k.len() + walk(v)).sum(),
            _ => 8,
        }
    }
    serde_json::to_value(kind).map_or(64, |v| walk(&v)) + 64
}

/// `kind` with every string longer than `max` bytes cut to `max`, saying so.
pub fn cap_strings(kind: EventKind, max: usize) -> EventKind {
    fn too_long(v: &serde_json::Value, max: usize) -> bool {
        match v {
            serde_json::Value::String(s) => s.len() > max,
            serde_json::Value::Array(a) => a.iter().any(|v| too_long(v, max)),
            serde_json::Value::Object(o) => o.values().any(|v| too_long(v, max)),
            _ => false,
        }
    }
    fn cut(v: &mut serde_json::Value, max: usize) {
        match v {
            serde_json::Value::String(s) if s.len() > max => {
                let dropped = s.len() - max;
                let mut at = max;
                while !s.is_char_boundary(at) {
                    at -= 1;
                }
                s.truncate(at);
                s.push_str(&format!("\n[… {dropped} more bytes cut by errand]"));
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|v| cut(v, max)),
            serde_json::Value::Object(o) => o.values_mut().for_each(|v| cut(v, max)),
            _ => {}
        }
    }
    let Ok(mut v) = serde_json::to_value(&kind) else {
        return kind;
    };
    if !too_long(&v, max) {
        return kind;
    }
    cut(&mut v, max);
    serde_json::from_value(v).unwrap_or(EventKind::Warning {
        message: "[event withheld: it was too large]".into(),
    })
}

/// Reads one line (up to and without its `\n`) into `buf`, keeping at most
/// `max` bytes of it; the rest of a longer line is read and dropped. Returns
/// `None` at the end of the stream, else how many bytes were dropped.
/// Cancel-safe: an interrupted call leaves its progress in `self`, and the
/// next call goes on from there.
#[derive(Debug, Default)]
pub struct LineReader {
    buf: Vec<u8>,
    dropped: usize,
}

impl LineReader {
    pub async fn next<R: AsyncBufRead + Unpin>(
        &mut self,
        reader: &mut R,
        max: usize,
    ) -> std::io::Result<Option<(Vec<u8>, usize)>> {
        use tokio::io::AsyncBufReadExt;
        loop {
            let avail = reader.fill_buf().await?;
            if avail.is_empty() {
                if self.buf.is_empty() && self.dropped == 0 {
                    return Ok(None);
                }
                return Ok(Some(self.finish()));
            }
            let (chunk, end) = match avail.iter().position(|b| *b == b'\n') {
                Some(i) => (&avail[..i], Some(i + 1)),
                None => (avail, None),
            };
            let room = max.saturating_sub(self.buf.len());
            let keep = chunk.len().min(room);
            self.buf.extend_from_slice(&chunk[..keep]);
            self.dropped += chunk.len() - keep;
            let used = end.unwrap_or(avail.len());
            reader.consume(used);
            if end.is_some() {
                return Ok(Some(self.finish()));
            }
        }
    }

    /// The line read so far when the stream will not be read to its end (the
    /// run stopped mid-line): what `next` would have returned at the end of
    /// the stream, if anything was read.
    pub fn pending(&mut self) -> Option<(Vec<u8>, usize)> {
        (!self.buf.is_empty() || self.dropped > 0).then(|| self.finish())
    }

    fn finish(&mut self) -> (Vec<u8>, usize) {
        let line = std::mem::take(&mut self.buf);
        let dropped = std::mem::take(&mut self.dropped);
        (line, dropped)
    }
}

/// A line of the harness's output as text: invalid UTF-8 and NUL (which
/// PostgreSQL text cannot hold) become U+FFFD, in the line and in its raw
/// log alike, and the text stops at `max` bytes on a char boundary. Each bad
/// byte takes three, so an endless line of them would otherwise triple on
/// its way to the store. Returns the text and how many input bytes it left
/// out; a clean line under the cap is borrowed, not copied.
pub fn decode_line(bytes: &[u8], max: usize) -> (std::borrow::Cow<'_, str>, usize) {
    const BAD: &str = "\u{FFFD}";
    if bytes.len() <= max && !bytes.contains(&0) {
        if let Ok(s) = std::str::from_utf8(bytes) {
            return (std::borrow::Cow::Borrowed(s), 0);
        }
    }
    let mut out = String::with_capacity(bytes.len().min(max));
    let mut used = 0;
    'chunks: for chunk in bytes.utf8_chunks() {
        for part in chunk.valid().split_inclusive('\0') {
            let (text, nul) = match part.strip_suffix('\0') {
                Some(t) => (t, true),
                None => (part, false),
            };
            let room = max - out.len();
            if text.len() > room {
                let mut at = room;
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                out.push_str(&text[..at]);
                used += at;
                break 'chunks;
            }
            out.push_str(text);
            used += text.len();
            if nul {
                if max - out.len() < BAD.len() {
                    break 'chunks;
                }
                out.push_str(BAD);
                used += 1;
            }
        }
        if !chunk.invalid().is_empty() {
            if max - out.len() < BAD.len() {
                break;
            }
            out.push_str(BAD);
            used += chunk.invalid().len();
        }
    }
    (std::borrow::Cow::Owned(out), bytes.len() - used)
}

/// The last `max` bytes of a stream (read to its end), as text.
pub async fn read_tail(stream: Option<errand_sandbox::OutputStream>, max: usize) -> String {
    let Some(mut s) = stream else {
        return String::new();
    };
    let mut kept: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    let mut cut = false;
    loop {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&chunk[..n]);
                if kept.len() > 2 * max {
                    kept.drain(..kept.len() - max);
                    cut = true;
                }
            }
        }
    }
    if kept.len() > max {
        kept.drain(..kept.len() - max);
        cut = true;
    }
    let text = String::from_utf8_lossy(&kept).into_owned();
    if cut {
        format!("[… earlier output cut by errand]\n{text}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_cut_and_the_rest_is_dropped() {
        let mut input: Vec<u8> = Vec::new();
        input.extend_from_slice(b"short\n");
        input.extend(std::iter::repeat_n(b'x', 100_000));
        input.extend_from_slice(b"\nafter\nno newline");
        let mut r = tokio::io::BufReader::with_capacity(1024, &input[..]);
        let mut lines = LineReader::default();
        assert_eq!(
            lines.next(&mut r, 10).await.unwrap(),
            Some((b"short".to_vec(), 0))
        );
        assert_eq!(
            lines.next(&mut r, 10).await.unwrap(),
            Some((b"xxxxxxxxxx".to_vec(), 99_990))
        );
        assert_eq!(
            lines.next(&mut r, 10).await.unwrap(),
            Some((b"after".to_vec(), 0))
        );
        assert_eq!(
            lines.next(&mut r, 10).await.unwrap(),
            Some((b"no newline".to_vec(), 0))
        );
        assert_eq!(lines.next(&mut r, 10).await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_endless_line_never_grows_memory_past_the_cap() {
        // /dev/zero is an endless line with no newline.
        let f = tokio::fs::File::open("/dev/zero").await.unwrap();
        let mut r = tokio::io::BufReader::new(f.take(64 << 20));
        let mut lines = LineReader::default();
        let (line, dropped) = lines.next(&mut r, 1 << 20).await.unwrap().unwrap();
        assert_eq!(line.len(), 1 << 20);
        assert_eq!(dropped, (64 << 20) - (1 << 20));
    }

    #[tokio::test]
    async fn a_line_cut_off_by_a_stop_is_still_handed_over() {
        // A stream that never ends: the read is abandoned mid-line, as when
        // the run times out while the harness prints.
        let (mut tx, rx) = tokio::io::duplex(1 << 16);
        let mut r = tokio::io::BufReader::new(rx);
        let mut lines = LineReader::default();
        assert_eq!(lines.pending(), None);
        tokio::io::AsyncWriteExt::write_all(&mut tx, &[b'y'; 5000])
            .await
            .unwrap();
        let read = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            lines.next(&mut r, 1000),
        )
        .await;
        assert!(read.is_err(), "no newline yet");
        assert_eq!(lines.pending(), Some((vec![b'y'; 1000], 4000)));
        assert_eq!(lines.pending(), None, "handed over once");
    }

    #[test]
    fn events_past_the_budget_become_one_warning() {
        let mut b = TraceBudget::default();
        for _ in 0..MAX_EVENTS {
            assert!(matches!(b.take_event(), Take::Yes));
        }
        assert!(matches!(
            b.take_event(),
            Take::LastOne(EventKind::Warning { .. })
        ));
        assert!(matches!(b.take_event(), Take::No));
        let mut b = TraceBudget::default();
        assert!(b.take_raw(MAX_RAW_BYTES as usize).is_ok());
        assert!(matches!(b.take_raw(1), Err(Some(_))));
        assert!(matches!(b.take_raw(1), Err(None)));
    }

    #[test]
    fn big_strings_in_events_are_cut_on_a_char_boundary() {
        let k = EventKind::ToolResult {
            id: "t".into(),
            output: "é".repeat(1000),
            is_error: false,
            exit_code: Some(0),
        };
        match cap_strings(k, 101) {
            EventKind::ToolResult { output, id, .. } => {
                assert_eq!(id, "t");
                assert!(output.starts_with(&"é".repeat(50)), "{output}");
                assert!(output.ends_with("more bytes cut by errand]"), "{output}");
                assert!(output.len() < 200);
            }
            other => panic!("{other:?}"),
        }
        let small = EventKind::Notice {
            message: "ok".into(),
        };
        assert!(matches!(cap_strings(small, 10), EventKind::Notice { message } if message == "ok"));
    }

    #[tokio::test]
    async fn tails_keep_the_end() {
        let data: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 10).to_string().into_bytes())
            .collect();
        let stream: errand_sandbox::OutputStream = Box::new(std::io::Cursor::new(data.clone()));
        let t = read_tail(Some(stream), 1000).await;
        assert!(t.starts_with("[… earlier output cut by errand]\n"));
        assert!(t.ends_with(std::str::from_utf8(&data[data.len() - 1000..]).unwrap()));
    }

    #[test]
    fn lines_decode_within_their_cap() {
        // Clean and short: borrowed as it is.
        let (t, d) = decode_line(b"{\"a\":1}", 100);
        assert!(matches!(t, std::borrow::Cow::Borrowed(_)));
        assert_eq!((t.as_ref(), d), ("{\"a\":1}", 0));
        // NUL and invalid bytes become U+FFFD, one per bad sequence.
        let (t, d) = decode_line(b"a\0b\xffc\xe2\x82", 100);
        assert_eq!((t.as_ref(), d), ("a\u{FFFD}b\u{FFFD}c\u{FFFD}", 0));
        // A line of bad bytes stops at the cap instead of tripling.
        let zeros = vec![0u8; 1000];
        let (t, d) = decode_line(&zeros, 100);
        assert!(t.len() <= 100 && t.len() > 96, "{}", t.len());
        assert_eq!(t.chars().count() + d, 1000);
        let ff = vec![0xffu8; 1000];
        let (t, d) = decode_line(&ff, 100);
        assert!(t.len() <= 100);
        assert_eq!(t.chars().count() + d, 1000);
        // A multibyte char is never split at the cap.
        let (t, d) = decode_line("ééé".as_bytes(), 5);
        assert_eq!((t.as_ref(), d), ("éé", 2));
        let (t, d) = decode_line("aé\0".as_bytes(), 4);
        assert_eq!((t.as_ref(), d), ("aé", 1));
        // Over the cap but clean: cut, counted.
        let (t, d) = decode_line(b"abcdef", 4);
        assert_eq!((t.as_ref(), d), ("abcd", 2));
    }
}
