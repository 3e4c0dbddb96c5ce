//! errand's own reads and writes in directories the agent can write (its
//! HOME, for example): the agent may have put a symlink, a FIFO, a device
//! link or a directory where errand expects its file.
//!
//! Every path is walked one component at a time from a directory handle
//! errand opened, with `O_NOFOLLOW` at each step, so no symlink is followed;
//! files are opened `O_NONBLOCK`, so a FIFO cannot hang errand, and must be
//! regular files; reads are capped. Writes go to a fresh file made with
//! `O_EXCL` and renamed over the target, so a planted link is replaced, never
//! written through, and a hard link to another file is left alone. These are
//! blocking system calls: async callers run them on the blocking pool.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

/// A directory handle, opened without following a symlink.
struct Dir(OwnedFd);

fn cstr(name: &std::ffi::OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

const DIR_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

impl Dir {
    /// The root errand made itself (its own path is errand's, not the agent's).
    fn open(path: &Path) -> io::Result<Dir> {
        let c = cstr(path.as_os_str())?;
        // SAFETY: a plain system call on a valid C string.
        let fd = check(unsafe { libc::open(c.as_ptr(), DIR_FLAGS) })?;
        // SAFETY: `fd` was just opened and is owned by nobody else.
        Ok(Dir(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// The subdirectory `name`, made first when `create`; a symlink is an error.
    fn sub(&self, name: &std::ffi::OsStr, create: bool) -> io::Result<Dir> {
        let c = cstr(name)?;
        if create {
            // SAFETY: plain system calls on a valid fd and C string.
            let r = unsafe { libc::mkdirat(self.0.as_raw_fd(), c.as_ptr(), 0o755) };
            if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: as above.
        let fd = check(unsafe { libc::openat(self.0.as_raw_fd(), c.as_ptr(), DIR_FLAGS) })
            .map_err(|e| refine(e, name))?;
        // SAFETY: `fd` was just opened and is owned by nobody else.
        Ok(Dir(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
}

fn refine(e: io::Error, name: &std::ffi::OsStr) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not a plain directory (a symlink or a file): errand does not follow it",
                name.to_string_lossy()
            ),
        ),
        _ => e,
    }
}

/// The directories and the file name of a relative path with plain components only.
fn split(rel: &Path) -> io::Result<(Vec<&std::ffi::OsStr>, &std::ffi::OsStr)> {
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a plain relative path", rel.display()),
                ))
            }
        }
    }
    let file = parts
        .pop()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "an empty path"))?;
    Ok((parts, file))
}

/// Writes `contents` to `root/rel`, making the directories on the way, never
/// through a symlink; what was at `rel` (a link, a FIFO, a file) is replaced.
pub fn write_beneath(root: &Path, rel: &Path, contents: &[u8]) -> io::Result<()> {
    let (dirs, file) = split(rel)?;
    let mut dir = Dir::open(root)?;
    for d in dirs {
        dir = dir.sub(d, true)?;
    }
    let tmp_name = format!(
        ".errand-{}-{:x}.tmp",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let tmp = cstr(std::ffi::OsStr::new(&tmp_name))?;
    // SAFETY: plain system calls on a valid fd and C strings.
    let fd = check(unsafe {
        libc::openat(
            dir.0.as_raw_fd(),
            tmp.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o644,
        )
    })?;
    // SAFETY: `fd` was just opened and is owned by nobody else.
    let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let written = std::io::Write::write_all(&mut f, contents);
    drop(f);
    let target = cstr(file)?;
    let renamed = written.and_then(|()| {
        // SAFETY: as above.
        check(unsafe {
            libc::renameat(
                dir.0.as_raw_fd(),
                tmp.as_ptr(),
                dir.0.as_raw_fd(),
                target.as_ptr(),
            )
        })
        .map(|_| ())
    });
    if renamed.is_err() {
        // SAFETY: as above.
        unsafe { libc::unlinkat(dir.0.as_raw_fd(), tmp.as_ptr(), 0) };
    }
    renamed
}

/// Reads at most `cap` bytes of `root/rel` from `offset`, never through a
/// symlink and only from a regular file. `Ok(None)`: there is no such file.
pub fn read_beneath(
    root: &Path,
    rel: &Path,
    offset: u64,
    cap: usize,
) -> io::Result<Option<Vec<u8>>> {
    use std::io::{Read, Seek, SeekFrom};
    let (dirs, file) = split(rel)?;
    let missing = |e: io::Error| -> io::Result<Option<Vec<u8>>> {
        if e.kind() == io::ErrorKind::NotFound {
            Ok(None)
        } else {
            Err(e)
        }
    };
    let mut dir = match Dir::open(root) {
        Ok(d) => d,
        Err(e) => return missing(e),
    };
    for d in dirs {
        dir = match dir.sub(d, false) {
            Ok(d) => d,
            Err(e) => return missing(e),
        };
    }
    let name = cstr(file)?;
    // SAFETY: plain system call on a valid fd and C string.
    let fd = match check(unsafe {
        libc::openat(
            dir.0.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    }) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is a symlink: errand does not follow it", rel.display()),
            ))
        }
        Err(e) => return missing(e),
    };
    // SAFETY: `fd` was just opened and is owned by nobody else.
    let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    if !f.metadata()?.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a regular file", rel.display()),
        ));
    }
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.take(cap as u64).read_to_end(&mut buf)?;
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn writes_replace_planted_links_and_never_follow_them() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("home");
        std::fs::create_dir(&root).unwrap();
        let canary = d.path().join("canary");
        std::fs::write(&canary, "host file").unwrap();
        // A link where the file goes.
        std::fs::create_dir(root.join(".codex")).unwrap();
        symlink(&canary, root.join(".codex/config.toml")).unwrap();
        write_beneath(&root, Path::new(".codex/config.toml"), b"errand's").unwrap();
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), "host file");
        assert_eq!(
            std::fs::read_to_string(root.join(".codex/config.toml")).unwrap(),
            "errand's"
        );
        // A link where a directory goes.
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        symlink(&outside, root.join(".gemini")).unwrap();
        let err = write_beneath(&root, Path::new(".gemini/settings.json"), b"x").unwrap_err();
        assert!(err.to_string().contains("not a plain directory"), "{err}");
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
        // A hard link to a host file is replaced, not written.
        std::fs::hard_link(&canary, root.join("hard")).unwrap();
        write_beneath(&root, Path::new("hard"), b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), "host file");
        // A FIFO is replaced without blocking.
        let fifo = CString::new(root.join("fifo").as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        write_beneath(&root, Path::new("fifo"), b"plain").unwrap();
        assert_eq!(std::fs::read_to_string(root.join("fifo")).unwrap(), "plain");
        for bad in ["../x", "/etc/passwd", ""] {
            assert!(write_beneath(&root, Path::new(bad), b"x").is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_refuse_links_fifos_and_devices_and_stop_at_the_cap() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("home");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/log"), "0123456789").unwrap();
        assert_eq!(
            read_beneath(&root, Path::new("sub/log"), 2, 4).unwrap(),
            Some(b"2345".to_vec())
        );
        assert_eq!(
            read_beneath(&root, Path::new("sub/none"), 0, 4).unwrap(),
            None
        );
        assert_eq!(
            read_beneath(&root, Path::new("nodir/x"), 0, 4).unwrap(),
            None
        );
        let canary = d.path().join("canary");
        std::fs::write(&canary, "secret").unwrap();
        symlink(&canary, root.join("link")).unwrap();
        assert!(read_beneath(&root, Path::new("link"), 0, 100).is_err());
        symlink(d.path(), root.join("dirlink")).unwrap();
        assert!(read_beneath(&root, Path::new("dirlink/canary"), 0, 100).is_err());
        symlink("/dev/zero", root.join("zero")).unwrap();
        assert!(read_beneath(&root, Path::new("zero"), 0, 100).is_err());
        let fifo = CString::new(root.join("fifo").as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        // Returns at once (no writer would ever come), refused as not a file.
        let err = read_beneath(&root, Path::new("fifo"), 0, 100).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}
