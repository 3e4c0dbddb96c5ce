//! Target `pktline`: the input is the body of a `git push` (a
//! `git-receive-pack` request: ref-update commands in pkt-lines, a flush,
//! push options, the pack) as a sandboxed agent's git sends it to the run's
//! git proxy, or the body of a remote's `info/refs?service=git-receive-pack`
//! advertisement. Both parsers of `errand_git::pktline` read every input.
//!
//! - [`read_pkt`] at the start of the input, and on [`pkt`] of the input,
//!   of a prefix of it and of the input repeated to the largest data a
//!   pkt-line holds.
//! - [`parse_commands`] on the input, with `more` false and true; when it
//!   parses, on the section alone, on the section with other bytes after it
//!   (the pack), with enough after it to pass [`MAX_COMMANDS`], and on
//!   proper prefixes of it; and on the commands written again with [`pkt`].
//! - [`parse_advertisement`] on the input, and on its refs written again.
//!
//! Invariants checked: nothing panics; a packet read is the bytes its length
//! says, never more than given; `read_pkt(pkt(x))` is `x` for every `x` of at
//! most `MAX_PKT_LEN - 4` bytes; a command section is never said to take more
//! bytes than given (or than `MAX_COMMANDS`), ends with a flush, and parses the
//! same alone or followed by anything, while every proper prefix of it is
//! `Truncated` (`TooLarge` when the body goes on); `more` changes only
//! `Truncated` into `TooLarge`; every update has two object ids (40 or 64
//! lowercase hex digits) and a non-empty ref name without space or NUL; the
//! capabilities are non-empty words; the commands written again parse to the
//! same commands; every advertised ref has an object id and is not
//! `capabilities^{}`, and the refs written again parse to the same refs.

use errand_git::pktline::{
    parse_advertisement, parse_commands, pkt, read_pkt, Commands, Pkt, PktError, MAX_COMMANDS,
    MAX_PKT_LEN,
};

/// The largest data of one pkt-line.
const MAX_DATA: usize = MAX_PKT_LEN - 4;

pub fn run(data: &[u8]) {
    packets(data);
    commands(data);
    advertisement(data);
}

fn packets(data: &[u8]) {
    match read_pkt(data) {
        Ok((Pkt::Data(d), n)) => {
            assert!(n <= data.len() && n <= MAX_PKT_LEN, "read past the packet");
            assert_eq!(n, d.len() + 4, "a packet's size is not its data plus 4");
            assert_eq!(&data[4..n], d, "the data is not the bytes after the length");
            let len = std::str::from_utf8(&data[..4]).expect("a length that is not ASCII");
            assert_eq!(
                usize::from_str_radix(len, 16),
                Ok(n),
                "the length is not the size"
            );
        }
        Ok((_, n)) => {
            assert_eq!(n, 4, "a special packet is not 4 bytes");
            assert!(matches!(&data[..4], b"0000" | b"0001" | b"0002"));
        }
        Err(PktError::Truncated | PktError::BadLength(_)) => {}
        Err(e) => panic!("read_pkt gave {e:?}"),
    }
    round_trip(&data[..data.len().min(MAX_DATA)]);
    round_trip(&data[..data.len() / 2]);
    if !data.is_empty() {
        let mut full = Vec::with_capacity(MAX_DATA + data.len());
        while full.len() < MAX_DATA {
            full.extend_from_slice(data);
        }
        full.truncate(MAX_DATA);
        round_trip(&full);
    }
}

/// `read_pkt(pkt(x))` is `x`, whatever follows it.
fn round_trip(x: &[u8]) {
    let mut buf = pkt(x);
    assert_eq!(buf.len(), x.len() + 4);
    assert_eq!(read_pkt(&buf), Ok((Pkt::Data(x), x.len() + 4)));
    buf.extend_from_slice(b"0000PACK");
    assert_eq!(read_pkt(&buf), Ok((Pkt::Data(x), x.len() + 4)));
    assert_eq!(read_pkt(&buf[x.len() + 4..]), Ok((Pkt::Flush, 4)));
}

fn commands(data: &[u8]) {
    let got = parse_commands(data, false);
    let more = parse_commands(data, true);
    match &got {
        Err(PktError::Truncated) => assert_eq!(more, Err(PktError::TooLarge)),
        other => assert_eq!(&more, other, "`more` changed more than Truncated"),
    }
    if data.len() > MAX_COMMANDS {
        assert_ne!(got, Err(PktError::Truncated), "Truncated past MAX_COMMANDS");
    }
    let Ok(c) = got else {
        return;
    };
    check(&c);
    let n = c.consumed;
    assert!(
        n <= data.len() && n <= MAX_COMMANDS,
        "consumed {n} of {}",
        data.len()
    );
    assert_eq!(
        &data[n - 4..n],
        b"0000",
        "the section does not end with a flush"
    );
    let section = &data[..n];
    assert_eq!(parse_commands(section, false).as_ref(), Ok(&c), "alone");
    let mut with_pack = section.to_vec();
    with_pack.extend_from_slice(b"PACK\0\0\0\x02\0\0\0\x01\xff");
    assert_eq!(
        parse_commands(&with_pack, true).as_ref(),
        Ok(&c),
        "with a pack"
    );
    with_pack.resize(MAX_COMMANDS + 1, b'0');
    assert_eq!(
        parse_commands(&with_pack, false).as_ref(),
        Ok(&c),
        "past the cap"
    );
    for cut in [0, n / 2, n - 1] {
        assert_eq!(
            parse_commands(&section[..cut], false),
            Err(PktError::Truncated)
        );
        assert_eq!(
            parse_commands(&section[..cut], true),
            Err(PktError::TooLarge)
        );
    }
    // Written again: caps on the first command only, a newline (git's
    // receive-pack, like the parser, strips one, so a name or capability
    // that ends in one keeps it), a flush; the push options are just their
    // flush.
    let mut again = Vec::new();
    for (i, u) in c.updates.iter().enumerate() {
        let mut line = format!("{} {} {}", u.old, u.new, u.name).into_bytes();
        if i == 0 && !c.capabilities.is_empty() {
            line.push(0);
            line.extend_from_slice(c.capabilities.join(" ").as_bytes());
        }
        line.push(b'\n');
        if line.len() > MAX_DATA {
            // The original line had no newline and filled its packet.
            return;
        }
        again.extend(pkt(&line));
    }
    again.extend_from_slice(b"0000");
    if c.has("push-options") {
        again.extend_from_slice(b"0000");
    }
    assert!(
        again.len() <= n + c.updates.len(),
        "the commands written again are longer than the section"
    );
    if again.len() > MAX_COMMANDS {
        return;
    }
    let parsed = parse_commands(&again, false).expect("the commands written again");
    assert_eq!(parsed.updates, c.updates);
    assert_eq!(parsed.capabilities, c.capabilities);
    assert_eq!(parsed.consumed, again.len());
}

fn check(c: &Commands) {
    assert!(!c.updates.is_empty(), "commands without an update");
    for u in &c.updates {
        assert!(oid(&u.old) && oid(&u.new), "not object ids: {u:?}");
        assert!(!u.name.is_empty(), "an empty ref name");
        assert!(
            !u.name.contains([' ', '\0']),
            "a ref name with a space or NUL"
        );
        assert_eq!(u.is_delete(), u.new.bytes().all(|b| b == b'0'));
    }
    for cap in &c.capabilities {
        assert!(!cap.is_empty() && !cap.contains(' '), "capability {cap:?}");
    }
}

/// An object id, checked here without the parser's own `is_oid`.
fn oid(s: &str) -> bool {
    matches!(s.len(), 40 | 64)
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn advertisement(data: &[u8]) {
    let Ok(refs) = parse_advertisement(data) else {
        return;
    };
    let mut again = pkt(b"# service=git-receive-pack\n");
    again.extend_from_slice(b"0000");
    for (name, id) in &refs {
        assert!(oid(id), "an advertised ref without an object id: {id:?}");
        assert_ne!(name, "capabilities^{}");
        assert!(!name.contains('\0'), "a ref name with NUL");
        let line = format!("{id} {name}\n");
        if line.len() > MAX_DATA {
            // Invalid UTF-8 in a name grows when replaced by U+FFFD.
            return;
        }
        again.extend(pkt(line.as_bytes()));
    }
    again.extend_from_slice(b"0000");
    assert_eq!(
        parse_advertisement(&again),
        Ok(refs),
        "the refs written again"
    );
}
