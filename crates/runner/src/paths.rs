//! Where errand keeps its data.
//!
//! ```text
//! $ERRAND_HOME/                 (default: $XDG_DATA_HOME/errand, e.g. ~/.local/share/errand)
//!   errand.db                   SQLite: runs and their transitions
//!   cache/harnesses/NAME/VER/   installed harness CLIs ($ERRAND_CACHE_DIR overrides cache/)
//!   runs/ID/
//!     events.jsonl              normalized events (append-only)
//!     raw.jsonl                 the harness's own stdout lines
//!     stderr.log                the harness's stderr
//!     outbox.git/               host-only bare repo errand fetches into and pushes from
//!     workspace/  home/  tmp/   what the sandbox sees as /workspace, HOME and /tmp
//!     prepared.json             the branch and base a follow-up (or a re-created workspace) needs
//!     .lock                     held while the run executes, so retention leaves it alone
//!   cache/mirrors/HASH.git      bare mirrors of network remotes; HASH.used stamps their last use
//! ```
//!
//! `[retention]` prunes finished runs' workspaces, logs and outboxes and
//! unused mirrors ([`crate::retention`]).

use std::path::{Path, PathBuf};

use errand_core::RunId;

/// Where errand's data lives (see the module's map).
#[derive(Debug, Clone)]
pub struct Paths {
    /// `$ERRAND_HOME`: the database, runs and the secret key.
    pub home: PathBuf,
    /// Installed harnesses and git mirrors, which can be rebuilt.
    pub cache: PathBuf,
}

impl Paths {
    /// From `$ERRAND_HOME` / `$ERRAND_CACHE_DIR`, else the XDG data directory.
    pub fn from_env() -> Paths {
        let home = std::env::var_os("ERRAND_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| dirs::data_dir().map(|d| d.join("errand")))
            .unwrap_or_else(|| PathBuf::from(".errand"));
        let cache = std::env::var_os("ERRAND_CACHE_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("cache"));
        Paths { home, cache }
    }

    /// Everything under `home`, the cache in `home/cache`.
    pub fn at(home: &Path) -> Paths {
        Paths {
            home: home.to_path_buf(),
            cache: home.join("cache"),
        }
    }

    /// The SQLite database.
    pub fn db(&self) -> PathBuf {
        self.home.join("errand.db")
    }
    /// Run `id`'s directory.
    pub fn run_dir(&self, id: RunId) -> PathBuf {
        self.home.join("runs").join(id.to_string())
    }
    /// Run `id`'s normalized events.
    pub fn events(&self, id: RunId) -> PathBuf {
        self.run_dir(id).join("events.jsonl")
    }
    /// Run `id`'s harness stdout, as it printed it.
    pub fn raw(&self, id: RunId) -> PathBuf {
        self.run_dir(id).join("raw.jsonl")
    }
    /// Run `id`'s harness stderr.
    pub fn stderr(&self, id: RunId) -> PathBuf {
        self.run_dir(id).join("stderr.log")
    }
}
