//! How the agent's commits cross from the sandbox to the host.
//!
//! The workspace's `.git` is the agent's: every file in it (`objects/info/alternates`,
//! `packed-refs`, symlinked refs, `commondir`, `config`…) may point anywhere on
//! the host. So the host never opens it as a repository. Instead a script runs
//! *inside* the sandbox ([`export_script`]) and prints, on stdout:
//!
//! ```text
//! errand-export <tip>\n            the run branch's commit, as the agent's git sees it
//! <base64 of a git bundle>         only when <tip> differs from the base commit:
//!                                  refs/heads/<branch>, --not <base commit>
//! ```
//!
//! The host decodes that stream into a spool file it alone controls
//! ([`receive`], bounded in size), reads the bundle's header itself, and feeds
//! the pack to `git index-pack --strict` in the outbox, which refuses malformed
//! objects and dangerous `.gitmodules` (git's fsck checks, warnings as errors).
//! The branch is moved only when the new commit descends from the base commit
//! errand cloned and every object between them is present ([`import`]). Diffs,
//! stats and pushes then read only the outbox.

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};

use crate::{git, GitError, Prepared, Result};

/// The largest bundle errand takes from a sandbox (decoded).
pub const MAX_EXPORT_BYTES: u64 = 1 << 30;

/// The first line of the export's output.
const MAGIC: &str = "errand-export ";

/// The largest bundle header errand reads (the refs and prerequisites).
const MAX_HEADER_BYTES: usize = 64 << 10;

/// `s` as one single-quoted shell word.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The script that runs inside the sandbox, in the workspace, after the agent:
/// it prints the branch's commit and, when the branch moved, a bundle of what
/// is new since the base commit (see the module's documentation).
pub fn export_script(prepared: &Prepared) -> String {
    let branch_ref = sh_quote(&format!("refs/heads/{}", prepared.branch));
    let verify = sh_quote(&format!("refs/heads/{}^{{commit}}", prepared.branch));
    let base = sh_quote(&prepared.base_commit);
    format!(
        "tip=$(git rev-parse --verify --quiet {verify}) || {{ echo \"the run's branch {branch} is not in the workspace any more\" >&2; exit 3; }}\n\
         printf '{MAGIC}%s\\n' \"$tip\"\n\
         if [ \"$tip\" != {base} ]; then git bundle create - {branch_ref} --not {base} | base64 -w 76; fi\n",
        branch = prepared.branch.replace(['"', '\\', '$', '`'], "_"),
    )
}

/// What the sandbox's export said: the branch's commit, and whether a bundle came with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The branch's tip commit, as the export named it.
    pub tip: String,
    /// The bundle's size in bytes (0: the branch did not move).
    pub bundle_bytes: u64,
}

fn bad(detail: impl Into<String>) -> GitError {
    GitError::Export(detail.into())
}

/// Whether `s` is a full hexadecimal object id (SHA-1 or SHA-256).
fn is_oid(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads the export's stdout: the tip line, then base64 lines decoded into
/// `spool` (created afresh; at most `max` bytes). Nothing of the stream is
/// kept in memory beyond one line.
pub async fn receive<R: AsyncRead + Unpin>(out: R, spool: &Path, max: u64) -> Result<Received> {
    use base64::Engine;
    let mut reader = BufReader::with_capacity(64 << 10, out);
    let mut line = Vec::new();
    read_line_capped(&mut reader, &mut line, 256).await?;
    let first = String::from_utf8_lossy(&line);
    let tip = first
        .trim_end()
        .strip_prefix(MAGIC)
        .filter(|t| is_oid(t))
        .ok_or_else(|| {
            bad(format!(
                "the sandbox's export did not start with the branch's commit (it printed {:?})",
                first.chars().take(80).collect::<String>()
            ))
        })?
        .to_ascii_lowercase();
    let _ = tokio::fs::remove_file(spool).await;
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(spool)
        .await
        .map_err(|e| bad(format!("cannot create {}: {e}", spool.display())))?;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut written: u64 = 0;
    let mut decoded = Vec::with_capacity(1024);
    loop {
        line.clear();
        if read_line_capped(&mut reader, &mut line, 4096).await? == 0 {
            break;
        }
        let text = line.trim_ascii_end();
        if text.is_empty() {
            continue;
        }
        decoded.clear();
        engine
            .decode_vec(text, &mut decoded)
            .map_err(|e| bad(format!("the sandbox's export is not base64: {e}")))?;
        written += decoded.len() as u64;
        if written > max {
            return Err(bad(format!(
                "the run's new commits are larger than errand takes from a sandbox ({} MiB)",
                max >> 20
            )));
        }
        file.write_all(&decoded)
            .await
            .map_err(|e| bad(format!("cannot write {}: {e}", spool.display())))?;
    }
    file.flush()
        .await
        .map_err(|e| bad(format!("cannot write {}: {e}", spool.display())))?;
    Ok(Received {
        tip,
        bundle_bytes: written,
    })
}

/// Reads one line into `buf` (newline included), at most `cap` bytes; a
/// longer line is an error (the export's lines are short). Returns the bytes read.
async fn read_line_capped<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    buf: &mut Vec<u8>,
    cap: usize,
) -> Result<usize> {
    let mut total = 0;
    loop {
        let avail = reader
            .fill_buf()
            .await
            .map_err(|e| bad(format!("reading the sandbox's export failed: {e}")))?;
        if avail.is_empty() {
            return Ok(total);
        }
        let (take, done) = match avail.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        if buf.len() + take > cap {
            return Err(bad(format!(
                "the sandbox's export has a line longer than {cap} bytes"
            )));
        }
        buf.extend_from_slice(&avail[..take]);
        reader.consume(take);
        total += take;
        if done {
            return Ok(total);
        }
    }
}

/// The parts of a bundle's header errand acts on.
#[derive(Debug, PartialEq, Eq)]
struct BundleHeader {
    prerequisites: Vec<String>,
    refs: Vec<(String, String)>,
    /// Where the pack starts in the file.
    pack_offset: u64,
}

/// Parses a v2 or v3 bundle header (`gitformat-bundle`): errand's own reading,
/// so nothing but the pack reaches git, and only through `index-pack --strict`.
fn parse_header(bytes: &[u8]) -> Result<BundleHeader> {
    let mut pos = 0;
    let mut next_line = || -> Result<&[u8]> {
        let rest = &bytes[pos..];
        let end = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| bad("the bundle's header is cut short or too long"))?;
        pos += end + 1;
        Ok(&rest[..end])
    };
    let sig = next_line()?;
    let v3 = match sig {
        b"# v2 git bundle" => false,
        b"# v3 git bundle" => true,
        _ => return Err(bad("not a git bundle (v2 or v3)")),
    };
    let mut h = BundleHeader {
        prerequisites: vec![],
        refs: vec![],
        pack_offset: 0,
    };
    loop {
        let line = next_line()?;
        if line.is_empty() {
            break;
        }
        let line = std::str::from_utf8(line).map_err(|_| bad("the bundle's header is not text"))?;
        if let Some(cap) = line.strip_prefix('@') {
            // Only the default object format: anything else is not what errand cloned.
            if !v3 || !(cap == "object-format=sha1" || cap == "object-format=sha256") {
                return Err(bad(format!("unsupported bundle capability @{cap}")));
            }
        } else if let Some(pre) = line.strip_prefix('-') {
            let oid = pre.split(' ').next().unwrap_or_default();
            if !is_oid(oid) {
                return Err(bad("a malformed prerequisite in the bundle's header"));
            }
            h.prerequisites.push(oid.to_ascii_lowercase());
        } else {
            let (oid, name) = line
                .split_once(' ')
                .filter(|(o, _)| is_oid(o))
                .ok_or_else(|| bad("a malformed reference in the bundle's header"))?;
            h.refs.push((oid.to_ascii_lowercase(), name.to_string()));
        }
    }
    h.pack_offset = pos as u64;
    Ok(h)
}

/// Takes what [`receive`] spooled into the outbox and moves the run's branch
/// there, after the checks in the module's documentation.
pub async fn import(prepared: &Prepared, received: &Received, spool: &Path) -> Result<()> {
    let outbox = &prepared.outbox;
    let base = prepared.base_commit.to_ascii_lowercase();
    let branch_ref = format!("refs/heads/{}", prepared.branch);
    if received.bundle_bytes == 0 {
        if received.tip != base {
            return Err(bad(format!(
                "the sandbox said the branch is at {} but sent no commits",
                short(&received.tip)
            )));
        }
        git(Some(outbox), &["update-ref", &branch_ref, &base]).await?;
        return Ok(());
    }
    let header = {
        let spool = spool.to_path_buf();
        tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
            use std::io::Read;
            let f = std::fs::File::open(&spool)
                .map_err(|e| bad(format!("cannot read {}: {e}", spool.display())))?;
            let mut head = Vec::new();
            f.take(MAX_HEADER_BYTES as u64)
                .read_to_end(&mut head)
                .map_err(|e| bad(format!("cannot read {}: {e}", spool.display())))?;
            Ok(head)
        })
        .await
        .map_err(|e| bad(format!("reading the bundle failed: {e}")))??
    };
    let h = parse_header(&header)?;
    if h.refs.len() != 1 || h.refs[0].1 != branch_ref || h.refs[0].0 != received.tip {
        return Err(bad(format!(
            "the bundle must hold exactly {branch_ref} at {}, and it holds: {}",
            short(&received.tip),
            h.refs
                .iter()
                .map(|(o, n)| format!("{n} at {}", short(o)))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    for pre in &h.prerequisites {
        // Only what errand already has (the base's history) may be assumed.
        if git(
            Some(outbox),
            &["cat-file", "-e", &format!("{pre}^{{commit}}")],
        )
        .await
        .is_err()
        {
            return Err(bad(format!(
                "the bundle builds on commit {}, which is not in the repository errand cloned",
                short(pre)
            )));
        }
    }
    index_pack(outbox, spool, h.pack_offset).await?;
    let tip = &received.tip;
    match git(Some(outbox), &["cat-file", "-t", tip]).await {
        Ok(t) if t == "commit" => {}
        _ => {
            return Err(bad(format!(
                "the branch's commit {} did not arrive as a commit",
                short(tip)
            )))
        }
    }
    if git(Some(outbox), &["merge-base", "--is-ancestor", &base, tip])
        .await
        .is_err()
    {
        return Err(bad(format!(
            "the run's branch at {} does not descend from the base commit {}: errand takes only \
             new commits on top of what it cloned",
            short(tip),
            short(&base)
        )));
    }
    // Every object between base and tip is present (not assumed from elsewhere).
    git(
        Some(outbox),
        &["rev-list", "--objects", "--quiet", tip, "--not", &base],
    )
    .await
    .map_err(|e| {
        bad(format!(
            "the branch's history is incomplete: {}",
            crate::detail(e)
        ))
    })?;
    git(Some(outbox), &["update-ref", &branch_ref, tip]).await?;
    Ok(())
}

/// `git index-pack --stdin --fix-thin --strict` in the outbox, fed the pack
/// part of the spooled bundle.
async fn index_pack(outbox: &Path, spool: &Path, offset: u64) -> Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::open(spool)
        .map_err(|e| bad(format!("cannot read {}: {e}", spool.display())))?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| bad(format!("cannot read {}: {e}", spool.display())))?;
    let mut cmd = crate::host_git();
    cmd.arg("-C")
        .arg(outbox)
        .args(["index-pack", "--stdin", "--fix-thin", "--strict"])
        .stdin(Stdio::from(file))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let out = cmd.tokio().output().await.map_err(GitError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        let why = String::from_utf8_lossy(&out.stderr);
        let why: String = why.trim().chars().take(2000).collect();
        Err(bad(format!(
            "git refused the run's commits (its object checks failed): {why}"
        )))
    }
}

fn short(sha: &str) -> &str {
    sha.get(..8).unwrap_or(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_read_strictly() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let text = format!("# v2 git bundle\n-{a} base\n{b} refs/heads/errand/x\n\nPACK");
        let h = parse_header(text.as_bytes()).unwrap();
        assert_eq!(h.prerequisites, std::slice::from_ref(&a));
        assert_eq!(h.refs, [(b.clone(), "refs/heads/errand/x".to_string())]);
        assert_eq!(&text.as_bytes()[h.pack_offset as usize..], b"PACK");
        let v3 = format!("# v3 git bundle\n@object-format=sha1\n{b} refs/heads/x\n\n");
        assert!(parse_header(v3.as_bytes()).is_ok());
        for broken in [
            "not a bundle\n\n".to_string(),
            format!("# v3 git bundle\n@filter=blob:none\n{b} refs/heads/x\n\n"),
            format!("# v2 git bundle\n@object-format=sha1\n{b} refs/heads/x\n\n"),
            format!("# v2 git bundle\n-xyz\n{b} refs/heads/x\n\n"),
            format!("# v2 git bundle\n{b}\n\n"),
            format!("# v2 git bundle\n{b} refs/heads/x\n"),
        ] {
            assert!(parse_header(broken.as_bytes()).is_err(), "{broken:?}");
        }
    }

    #[tokio::test]
    async fn the_stream_must_start_with_a_commit_and_stay_within_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("s");
        let r = receive(&b"errand-export deadbeef\n"[..], &spool, 10).await;
        assert!(r.is_err(), "a short id is refused");
        let c = "c".repeat(40);
        let ok = format!("errand-export {c}\n");
        let r = receive(ok.as_bytes(), &spool, 10).await.unwrap();
        assert_eq!(r.tip, c);
        assert_eq!(r.bundle_bytes, 0);
        // 12 bytes of payload, over a cap of 10.
        let big = format!("errand-export {c}\naGVsbG8gd29ybGQh\n");
        let err = receive(big.as_bytes(), &spool, 10).await.unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
        let endless = format!("errand-export {c}\n{}", "A".repeat(100_000));
        let err = receive(endless.as_bytes(), &spool, 1 << 20)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("longer than"), "{err}");
        let garbage = format!("errand-export {c}\n!!!!\n");
        assert!(receive(garbage.as_bytes(), &spool, 1 << 20).await.is_err());
        // A spool path that is a planted symlink is replaced, never written through.
        let canary = dir.path().join("canary");
        std::fs::write(&canary, "keep").unwrap();
        std::fs::remove_file(&spool).ok();
        std::os::unix::fs::symlink(&canary, &spool).unwrap();
        let payload = format!("errand-export {c}\naGVsbG8=\n");
        receive(payload.as_bytes(), &spool, 1 << 20).await.unwrap();
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), "keep");
    }
}
