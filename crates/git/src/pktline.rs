//! Git's pkt-line framing and the two receive-pack messages errand reads:
//! a push's ref-update commands and a remote's ref advertisement.
//!
//! Pure parsing (no I/O), used by the runner's git proxy on the body of a
//! sandboxed agent's `git push`, so on hostile input; fuzzed by the
//! `pktline` target of `fuzz/` (see `fuzz/README.md`).
//!
//! A pkt-line is four hex digits giving its total length, then the data;
//! `0000` (flush), `0001` (delim) and `0002` (response end) are special
//! packets without data. See git's `Documentation/gitprotocol-common.txt`.

/// Largest pkt-line section of commands (plus push options) accepted before the pack.
pub const MAX_COMMANDS: usize = 64 * 1024;
/// Largest pkt-line: four length digits and at most 65516 bytes of data.
pub const MAX_PKT_LEN: usize = 65520;
/// The id of a ref that does not exist (SHA-1).
pub const ZERO_SHA1: &str = "0000000000000000000000000000000000000000";

/// Why a pkt-line section could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PktError {
    /// The input ended inside a packet or before the section's flush.
    #[error("truncated pkt-line")]
    Truncated,
    /// A length prefix that is not four hex digits of a valid length.
    #[error("bad pkt-line length {0:?}")]
    BadLength(String),
    /// The section is larger than [`MAX_COMMANDS`].
    #[error("pkt-line section larger than {MAX_COMMANDS} bytes")]
    TooLarge,
    /// A command line that is not `<old> <new> <ref>`.
    #[error("malformed command line: {0}")]
    BadCommand(String),
    /// A push that updates nothing.
    #[error("no ref-update commands")]
    Empty,
}

/// One pkt-line: data, or one of the special packets.
#[derive(Debug, PartialEq, Eq)]
pub enum Pkt<'a> {
    /// A data packet's payload.
    Data(&'a [u8]),
    /// `0000`
    Flush,
    /// `0001`
    Delim,
    /// `0002`
    ResponseEnd,
}

/// Reads one pkt-line at the start of `buf`: the packet and the bytes it took.
/// `Truncated` when `buf` ends before the packet does.
pub fn read_pkt(buf: &[u8]) -> Result<(Pkt<'_>, usize), PktError> {
    let head = buf.get(..4).ok_or(PktError::Truncated)?;
    let text = std::str::from_utf8(head)
        .map_err(|_| PktError::BadLength(String::from_utf8_lossy(head).into_owned()))?;
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(PktError::BadLength(text.to_string()));
    }
    let len = usize::from_str_radix(text, 16).map_err(|_| PktError::BadLength(text.into()))?;
    match len {
        0 => return Ok((Pkt::Flush, 4)),
        1 => return Ok((Pkt::Delim, 4)),
        2 => return Ok((Pkt::ResponseEnd, 4)),
        3 => return Err(PktError::BadLength(text.to_string())),
        _ => {}
    }
    if len > MAX_PKT_LEN {
        return Err(PktError::BadLength(text.to_string()));
    }
    let data = buf.get(4..len).ok_or(PktError::Truncated)?;
    Ok((Pkt::Data(data), len))
}

/// Writes `data` as one pkt-line; `data` must be at most
/// `MAX_PKT_LEN - 4` bytes for [`read_pkt`] to accept it.
pub fn pkt(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:04x}", data.len() + 4).into_bytes();
    out.extend_from_slice(data);
    out
}

/// One ref update of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The id the ref has now (all zeros: it is created).
    pub old: String,
    /// The id the ref is to have (all zeros: it is deleted).
    pub new: String,
    /// The ref, e.g. `refs/heads/main`.
    pub name: String,
}

impl Update {
    /// Whether the update deletes the ref.
    pub fn is_delete(&self) -> bool {
        is_zero(&self.new)
    }
}

/// Whether `oid` is all zeros (the id of a ref that does not exist).
pub fn is_zero(oid: &str) -> bool {
    oid.bytes().all(|b| b == b'0')
}

/// Whether `s` is an object id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
pub fn is_oid(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The command section of a receive-pack request.
#[derive(Debug, PartialEq, Eq)]
pub struct Commands {
    /// The ref updates, in order.
    pub updates: Vec<Update>,
    /// The capabilities the client asked for (after the first command's NUL).
    pub capabilities: Vec<String>,
    /// Bytes of the request before the pack (commands, push options, flushes).
    pub consumed: usize,
}

impl Commands {
    /// Whether the client asked for capability `cap`.
    pub fn has(&self, cap: &str) -> bool {
        self.capabilities.iter().any(|c| c == cap)
    }
}

/// Parses the commands at the start of a receive-pack body: optional `shallow`
/// lines, `<old> <new> <ref>\0<caps>`, more commands, a flush; then, with the
/// `push-options` capability, option lines and a flush. `buf` holds at most
/// [`MAX_COMMANDS`] bytes; a section that does not end within them is `TooLarge`
/// when `more` (the body goes on), else `Truncated`.
pub fn parse_commands(buf: &[u8], more: bool) -> Result<Commands, PktError> {
    let window = &buf[..buf.len().min(MAX_COMMANDS)];
    let cut = |e: PktError| match e {
        PktError::Truncated if more || buf.len() > MAX_COMMANDS => PktError::TooLarge,
        e => e,
    };
    let mut at = 0;
    let mut updates = Vec::new();
    let mut capabilities: Vec<String> = Vec::new();
    loop {
        let (p, n) = read_pkt(&window[at..]).map_err(cut)?;
        at += n;
        let data = match p {
            Pkt::Flush => break,
            Pkt::Delim | Pkt::ResponseEnd => {
                return Err(PktError::BadCommand("unexpected special packet".into()))
            }
            Pkt::Data(d) => d,
        };
        let line = data.strip_suffix(b"\n").unwrap_or(data);
        let (line, caps) = match line.iter().position(|&b| b == 0) {
            Some(i) => (&line[..i], Some(&line[i + 1..])),
            None => (line, None),
        };
        let text = std::str::from_utf8(line)
            .map_err(|_| PktError::BadCommand(String::from_utf8_lossy(line).into_owned()))?;
        if updates.is_empty() && caps.is_none() {
            if let Some(oid) = text.strip_prefix("shallow ") {
                if is_oid(oid) {
                    continue;
                }
            }
        }
        let mut parts = text.splitn(3, ' ');
        let (Some(old), Some(new), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(PktError::BadCommand(text.to_string()));
        };
        if !is_oid(old) || !is_oid(new) || name.is_empty() || name.contains(' ') {
            return Err(PktError::BadCommand(text.to_string()));
        }
        if let Some(caps) = caps {
            if !updates.is_empty() {
                return Err(PktError::BadCommand(
                    "capabilities after the first command".into(),
                ));
            }
            let caps = std::str::from_utf8(caps)
                .map_err(|_| PktError::BadCommand("capabilities are not UTF-8".into()))?;
            capabilities = caps
                .split(' ')
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect();
        }
        updates.push(Update {
            old: old.to_string(),
            new: new.to_string(),
            name: name.to_string(),
        });
    }
    if updates.is_empty() {
        return Err(PktError::Empty);
    }
    if capabilities.iter().any(|c| c == "push-options") {
        loop {
            let (p, n) = read_pkt(&window[at..]).map_err(cut)?;
            at += n;
            match p {
                Pkt::Flush => break,
                Pkt::Data(_) => {}
                Pkt::Delim | Pkt::ResponseEnd => {
                    return Err(PktError::BadCommand("unexpected special packet".into()))
                }
            }
        }
    }
    Ok(Commands {
        updates,
        capabilities,
        consumed: at,
    })
}

/// The refs of a receive-pack advertisement (`info/refs?service=git-receive-pack`).
pub fn parse_advertisement(body: &[u8]) -> Result<Vec<(String, String)>, PktError> {
    let mut at = 0;
    let mut refs = Vec::new();
    let mut flushes = 0;
    while at < body.len() {
        let (p, n) = read_pkt(&body[at..])?;
        at += n;
        match p {
            Pkt::Flush => {
                flushes += 1;
                if flushes == 2 {
                    break;
                }
            }
            Pkt::Data(d) => {
                let d = d.strip_suffix(b"\n").unwrap_or(d);
                let d = d.split(|&b| b == 0).next().unwrap_or(d);
                let text = String::from_utf8_lossy(d);
                if text.starts_with('#') || text.starts_with("version ") {
                    continue;
                }
                if let Some((oid, name)) = text.split_once(' ') {
                    if is_oid(oid) && name != "capabilities^{}" {
                        refs.push((name.to_string(), oid.to_string()));
                    }
                }
            }
            Pkt::Delim | Pkt::ResponseEnd => {}
        }
    }
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    fn cmd(old: &str, new: &str, name: &str, caps: Option<&str>) -> Vec<u8> {
        let mut line = format!("{old} {new} {name}").into_bytes();
        if let Some(c) = caps {
            line.push(0);
            line.extend_from_slice(c.as_bytes());
        }
        line.push(b'\n');
        pkt(&line)
    }

    #[test]
    fn parses_commands_and_capabilities() {
        let mut body = cmd(A, B, "refs/heads/run", Some("report-status side-band-64k"));
        body.extend(cmd(ZERO_SHA1, B, "refs/heads/main", None));
        body.extend_from_slice(b"0000PACK...");
        let c = parse_commands(&body, false).expect("parse");
        assert_eq!(c.updates.len(), 2);
        assert_eq!(c.updates[1].name, "refs/heads/main");
        assert!(c.has("report-status"));
        assert_eq!(&body[c.consumed..], b"PACK...");
        assert!(!c.updates[0].is_delete());
        let del = cmd(A, ZERO_SHA1, "refs/heads/run", Some(""));
        let mut body = del.clone();
        body.extend_from_slice(b"0000");
        assert!(parse_commands(&body, false).expect("parse").updates[0].is_delete());
    }

    #[test]
    fn push_options_and_shallow_are_skipped() {
        let mut body = pkt(format!("shallow {A}").as_bytes());
        body.extend(cmd(
            A,
            B,
            "refs/heads/run",
            Some("report-status push-options"),
        ));
        body.extend_from_slice(b"0000");
        body.extend(pkt(b"ci.skip"));
        body.extend_from_slice(b"0000PACK");
        let c = parse_commands(&body, false).expect("parse");
        assert_eq!(c.updates.len(), 1);
        assert_eq!(&body[c.consumed..], b"PACK");
    }

    #[test]
    fn malformed_inputs_are_errors() {
        assert_eq!(parse_commands(b"", false), Err(PktError::Truncated));
        assert_eq!(parse_commands(b"00", false), Err(PktError::Truncated));
        assert!(matches!(
            parse_commands(b"zzzz", false),
            Err(PktError::BadLength(_))
        ));
        assert!(matches!(
            parse_commands(b"0003", false),
            Err(PktError::BadLength(_))
        ));
        assert!(matches!(
            parse_commands(b"fff1abc", false),
            Err(PktError::BadLength(_))
        ));
        assert_eq!(parse_commands(b"0000", false), Err(PktError::Empty));
        assert!(matches!(
            parse_commands(b"0001", false),
            Err(PktError::BadCommand(_))
        ));
        // Truncated inside a line, or no flush.
        let line = cmd(A, B, "refs/heads/run", Some("report-status"));
        assert_eq!(parse_commands(&line[..20], false), Err(PktError::Truncated));
        assert_eq!(parse_commands(&line, false), Err(PktError::Truncated));
        // Bad ids, missing ref, a space in the ref, caps on a later line.
        for bad in [
            pkt(format!("{A} zz {B}").as_bytes()),
            pkt(format!("{A} {B}").as_bytes()),
            pkt(format!("{A} {B} refs/heads/a b").as_bytes()),
            pkt(format!("{} {B} refs/heads/x", &A[..39]).as_bytes()),
        ] {
            let mut body = bad;
            body.extend_from_slice(b"0000");
            assert!(
                matches!(parse_commands(&body, false), Err(PktError::BadCommand(_))),
                "{body:?}"
            );
        }
        let mut body = cmd(A, B, "refs/heads/a", Some("x"));
        body.extend(cmd(A, B, "refs/heads/b", Some("y")));
        body.extend_from_slice(b"0000");
        assert!(matches!(
            parse_commands(&body, false),
            Err(PktError::BadCommand(_))
        ));
        let mut body = pkt(&[0xff, 0xfe, b' ']);
        body.extend_from_slice(b"0000");
        assert!(matches!(
            parse_commands(&body, false),
            Err(PktError::BadCommand(_))
        ));
    }

    #[test]
    fn huge_sections_are_refused() {
        let mut body = Vec::new();
        for i in 0..2000 {
            body.extend(cmd(
                A,
                B,
                &format!("refs/heads/branch-{i:05}"),
                if i == 0 { Some("") } else { None },
            ));
        }
        assert!(body.len() > MAX_COMMANDS);
        assert_eq!(parse_commands(&body, true), Err(PktError::TooLarge));
        assert_eq!(parse_commands(&body, false), Err(PktError::TooLarge));
        // A section that fits but whose body goes on without a flush.
        let line = cmd(A, B, "refs/heads/run", Some(""));
        assert_eq!(parse_commands(&line, true), Err(PktError::TooLarge));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed: u64 = 0x9e3779b97f4a7c15;
        for n in 0..5000usize {
            let len = n % 300;
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                buf.push(if seed.is_multiple_of(3) {
                    b'0' + (seed % 10) as u8
                } else {
                    seed as u8
                });
            }
            let _ = parse_commands(&buf, n % 2 == 0);
            let _ = parse_advertisement(&buf);
        }
    }

    #[test]
    fn read_pkt_reads_what_pkt_writes() {
        for len in [0, 1, 995, MAX_PKT_LEN - 4] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut buf = pkt(&data);
            buf.extend_from_slice(b"0000");
            assert_eq!(read_pkt(&buf), Ok((Pkt::Data(&data[..]), len + 4)));
        }
        assert_eq!(read_pkt(b"0000rest"), Ok((Pkt::Flush, 4)));
        assert_eq!(read_pkt(b"0001"), Ok((Pkt::Delim, 4)));
        assert_eq!(read_pkt(b"0002"), Ok((Pkt::ResponseEnd, 4)));
        assert!(matches!(read_pkt(b"fff1"), Err(PktError::BadLength(_))));
    }

    #[test]
    fn advertisement_refs() {
        let mut body = pkt(b"# service=git-receive-pack\n");
        body.extend_from_slice(b"0000");
        body.extend(pkt(format!(
            "{A} refs/heads/main\0report-status delete-refs\n"
        )
        .as_bytes()));
        body.extend(pkt(format!("{B} refs/heads/run\n").as_bytes()));
        body.extend_from_slice(b"0000");
        let refs = parse_advertisement(&body).expect("parse");
        assert_eq!(
            refs,
            vec![
                ("refs/heads/main".into(), A.into()),
                ("refs/heads/run".into(), B.into())
            ]
        );
        let mut empty = pkt(b"# service=git-receive-pack\n");
        empty.extend_from_slice(b"0000");
        empty.extend(pkt(format!(
            "{ZERO_SHA1} capabilities^{{}}\0report-status\n"
        )
        .as_bytes()));
        empty.extend_from_slice(b"0000");
        assert_eq!(parse_advertisement(&empty).expect("parse"), vec![]);
    }
}
