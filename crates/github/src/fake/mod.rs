//! A local fake GitHub for end-to-end tests (feature `fake`).
//!
//! [`FakeGithub::start`] serves, on `127.0.0.1` with a random port and its own
//! thread and runtime (so callers may block, e.g. run `git` synchronously):
//!
//! - the REST API under [`FakeGithub::api_url`] = `http://127.0.0.1:PORT/api/v3`
//!   (GitHub Enterprise style): installation lookup, token minting and revocation,
//!   pull requests, issue comments — checking App JWTs and installation tokens
//!   the way GitHub does;
//! - git smart HTTP under [`FakeGithub::git_base`] = `http://127.0.0.1:PORT`
//!   (`{git_base}/{owner}/{repo}.git`), backed by `git http-backend` over bare
//!   repositories made with [`FakeGithub::create_repo`]. Clone needs `contents`
//!   read, push needs `contents` write, pushes touching `.github/workflows/`
//!   need `workflows: write` (as on GitHub).
//!
//! Everything is recorded for assertions ([`FakeGithub::tokens`], [`FakeGithub::pulls`],
//! [`FakeGithub::comments`], [`FakeGithub::requests`]). Needs `git` (and `openssl`
//! for [`test_keypair`]) on `PATH`.

mod api;
mod git;
mod threads;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use errand_proc::Cmd;
use jsonwebtoken::DecodingKey;
use tokio::sync::oneshot;

/// The permissions the fake App is granted unless configured otherwise, those
/// errand's manifest asks for: `contents: write`, `pull_requests: write`,
/// `issues: write`, `checks: read`, `actions: read`, `metadata: read`.
pub fn default_permissions() -> BTreeMap<String, String> {
    [
        ("contents", "write"),
        ("pull_requests", "write"),
        ("issues", "write"),
        ("checks", "read"),
        ("actions", "read"),
        ("metadata", "read"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The shape of minted tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenStyle {
    /// `ghs_` + 36 alphanumerics (40 characters).
    #[default]
    Classic,
    /// `ghs_{app_id}_…` with two dots, about 520 characters (GitHub's stateless format).
    Stateless,
}

/// How the fake App is set up.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// The App id the JWT `iss` must equal.
    pub app_id: String,
    /// The App's RSA public key (PEM) that JWTs are verified against.
    pub public_key_pem: String,
    /// What the App was granted; minted tokens can never exceed it.
    pub permissions: BTreeMap<String, String>,
    /// Installation id → repositories (`owner/repo`) it covers.
    pub installations: BTreeMap<u64, Vec<String>>,
    /// Token shape; a request header `X-GitHub-Stateless-S2S-Token: enabled|disabled` overrides it.
    pub token_style: TokenStyle,
    /// A manifest-flow code the fake converts (once) into this App, handing out
    /// the given private key and webhook secret.
    pub manifest: Option<(String, String, String)>,
    /// How long minted tokens live (GitHub: one hour).
    pub token_lifetime: chrono::Duration,
}

impl FakeConfig {
    /// An App with [`default_permissions`] and no installations.
    pub fn new(app_id: impl Into<String>, public_key_pem: impl Into<String>) -> Self {
        Self {
            app_id: app_id.into(),
            public_key_pem: public_key_pem.into(),
            permissions: default_permissions(),
            installations: BTreeMap::new(),
            token_style: TokenStyle::default(),
            manifest: None,
            token_lifetime: chrono::Duration::hours(1),
        }
    }

    /// Lets `code` be exchanged once for this App's id, `private_pem` and `webhook_secret`.
    pub fn manifest_code(mut self, code: &str, private_pem: &str, webhook_secret: &str) -> Self {
        self.manifest = Some((code.into(), private_pem.into(), webhook_secret.into()));
        self
    }

    /// Adds `full_name` (`owner/repo`) to installation `id`.
    pub fn install(mut self, id: u64, full_name: &str) -> Self {
        self.installations
            .entry(id)
            .or_default()
            .push(full_name.to_string());
        self
    }

    /// Replaces the App's granted permissions.
    pub fn permissions(mut self, permissions: &[(&str, &str)]) -> Self {
        self.permissions = permissions
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self
    }

    /// Makes minted tokens expire after `lifetime` (to test runs that outlive their token).
    pub fn token_lifetime(mut self, lifetime: std::time::Duration) -> Self {
        self.token_lifetime =
            chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::hours(1));
        self
    }

    /// Sets the token shape.
    pub fn token_style(mut self, style: TokenStyle) -> Self {
        self.token_style = style;
        self
    }
}

/// A token the fake minted, and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The token string.
    pub token: String,
    /// The installation it belongs to.
    pub installation: u64,
    /// Repositories it covers, as `owner/repo`.
    pub repositories: Vec<String>,
    /// Its permissions.
    pub permissions: BTreeMap<String, String>,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// Whether `DELETE /installation/token` revoked it.
    pub revoked: bool,
    /// Authenticated requests (API calls and git HTTP requests) made with it.
    pub uses: u32,
}

/// A pull request opened on the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedPull {
    /// Owner.
    pub owner: String,
    /// Repository.
    pub repo: String,
    /// Number (shared sequence with issues, as on GitHub).
    pub number: u64,
    /// Title.
    pub title: String,
    /// Head branch (without an `owner:` prefix).
    pub head: String,
    /// Base branch.
    pub base: String,
    /// Description.
    pub body: String,
    /// Draft flag.
    pub draft: bool,
    /// `owner/repo` the head branch lives in (a fork's, when not this one).
    pub head_repo: String,
    /// Who opened it.
    pub author: String,
    /// Closed (`PATCH … state: closed`).
    pub closed: bool,
}

/// An issue or pull request comment posted on the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedComment {
    /// Owner.
    pub owner: String,
    /// Repository.
    pub repo: String,
    /// Issue or pull request number.
    pub issue_number: u64,
    /// Comment id.
    pub id: u64,
    /// Text.
    pub body: String,
    /// Web URL returned to the client.
    pub html_url: String,
    /// Who wrote it (`errand[bot]` for what the App posted).
    pub author: String,
    /// When it was posted.
    pub created_at: DateTime<Utc>,
    /// How many times it was edited (`PATCH`).
    pub edits: u32,
}

/// An issue (or a pull request's issue side) on the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedIssue {
    /// Its number.
    pub number: u64,
    /// Whether it is a pull request.
    pub is_pull: bool,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Who opened it.
    pub author: String,
    /// Labels.
    pub labels: Vec<String>,
}

/// A review comment on the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedReviewComment {
    /// Owner.
    pub owner: String,
    /// Repository.
    pub repo: String,
    /// The pull request.
    pub pull: u64,
    /// Its id.
    pub id: u64,
    /// Who wrote it.
    pub author: String,
    /// Text.
    pub body: String,
    /// The file.
    pub path: String,
    /// The first line of a multi-line comment.
    pub start_line: Option<u64>,
    /// The (last) line.
    pub line: u64,
    /// The diff around it.
    pub diff_hunk: String,
    /// The commit it was made on.
    pub commit_id: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A failed (or passed) check on the fake: an Actions job, its check run, its
/// suite and its workflow run share the ids below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCheck {
    /// Owner.
    pub owner: String,
    /// Repository.
    pub repo: String,
    /// The check run's (and job's) id.
    pub id: u64,
    /// The check suite's id.
    pub suite_id: u64,
    /// The workflow run's id.
    pub workflow_run_id: u64,
    /// The job's name.
    pub name: String,
    /// The commit checked.
    pub head_sha: String,
    /// The branch checked.
    pub head_branch: String,
    /// `success`, `failure`, …
    pub conclusion: String,
    /// Steps: name and conclusion.
    pub steps: Vec<(String, String)>,
    /// The job's log.
    pub log: String,
}

#[derive(Default)]
struct State {
    installations: BTreeMap<u64, Vec<String>>,
    tokens: Vec<IssuedToken>,
    pulls: Vec<RecordedPull>,
    comments: Vec<RecordedComment>,
    requests: Vec<String>,
    /// Lowercased `owner/repo` → one entry per number.
    issues: BTreeMap<String, Vec<RecordedIssue>>,
    next_comment_id: u64,
    review_comments: Vec<RecordedReviewComment>,
    checks: Vec<FakeCheck>,
    next_check_id: u64,
    /// (lowercased `owner/repo`, lowercased login) → permission.
    collaborators: BTreeMap<(String, String), String>,
    /// One-time log download codes → the job's log.
    log_links: BTreeMap<String, String>,
}

impl State {
    fn next_number(&mut self, full_name: &str, is_pull: bool) -> u64 {
        self.add_issue(full_name, is_pull, "", "", "octocat", &[])
    }

    fn add_issue(
        &mut self,
        full_name: &str,
        is_pull: bool,
        title: &str,
        body: &str,
        author: &str,
        labels: &[&str],
    ) -> u64 {
        let list = self
            .issues
            .entry(full_name.to_ascii_lowercase())
            .or_default();
        let number = list.len() as u64 + 1;
        list.push(RecordedIssue {
            number,
            is_pull,
            title: title.to_string(),
            body: body.to_string(),
            author: author.to_string(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
        });
        number
    }

    fn issue(&self, full_name: &str, number: u64) -> Option<&RecordedIssue> {
        let list = self.issues.get(&full_name.to_ascii_lowercase())?;
        list.get(usize::try_from(number).ok()?.checked_sub(1)?)
    }

    fn issue_exists(&self, full_name: &str, number: u64) -> bool {
        self.issue(full_name, number).is_some()
    }

    fn push_comment(
        &mut self,
        owner: &str,
        repo: &str,
        number: u64,
        author: &str,
        body: &str,
        base_url: &str,
    ) -> RecordedComment {
        self.next_comment_id += 1;
        let id = self.next_comment_id;
        let c = RecordedComment {
            owner: owner.to_string(),
            repo: repo.to_string(),
            issue_number: number,
            id,
            body: body.to_string(),
            html_url: format!("{base_url}/{owner}/{repo}/issues/{number}#issuecomment-{id}"),
            author: author.to_string(),
            created_at: Utc::now(),
            edits: 0,
        };
        self.comments.push(c.clone());
        c
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Denied {
    /// Unknown, revoked or expired: 401.
    Unauthorized,
    /// Does not cover the repository: 404 on the API (GitHub hides it), 403 on git.
    NotCovered,
    /// Lacks the permission: 403.
    Forbidden,
}

struct Shared {
    state: Mutex<State>,
    key: DecodingKey,
    app_id: String,
    granted: BTreeMap<String, String>,
    token_style: TokenStyle,
    token_lifetime: chrono::Duration,
    manifest: Mutex<Option<(String, String, String)>>,
    repos_root: PathBuf,
    base_url: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn repo_dir(&self, owner: &str, repo: &str) -> Option<PathBuf> {
        crate::check_name(owner).ok()?;
        crate::check_name(repo).ok()?;
        Some(self.repos_root.join(owner).join(format!("{repo}.git")))
    }

    /// Checks `token` for `full_name` (`owner/repo`) and counts the use; returns its permissions.
    fn authorize(
        &self,
        token: &str,
        full_name: &str,
        allowed: impl Fn(&BTreeMap<String, String>) -> bool,
    ) -> Result<BTreeMap<String, String>, Denied> {
        let now = Utc::now();
        let mut st = self.lock();
        let t = st
            .tokens
            .iter_mut()
            .find(|t| t.token == token && !t.revoked && t.expires_at > now)
            .ok_or(Denied::Unauthorized)?;
        t.uses += 1;
        if !t
            .repositories
            .iter()
            .any(|r| r.eq_ignore_ascii_case(full_name))
        {
            return Err(Denied::NotCovered);
        }
        if !allowed(&t.permissions) {
            return Err(Denied::Forbidden);
        }
        Ok(t.permissions.clone())
    }
}

/// Rank of a permission level: read < write < admin; unknown levels are `None`.
fn rank(level: &str) -> Option<u8> {
    match level {
        "read" => Some(1),
        "write" => Some(2),
        "admin" => Some(3),
        _ => None,
    }
}

/// Whether `perms` grants `name` at `level` or above.
fn has(perms: &BTreeMap<String, String>, name: &str, level: &str) -> bool {
    match (perms.get(name).and_then(|l| rank(l)), rank(level)) {
        (Some(got), Some(need)) => got >= need,
        _ => false,
    }
}

/// A running fake GitHub. Dropping it stops the server and deletes its repositories.
pub struct FakeGithub {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for FakeGithub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGithub")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl FakeGithub {
    /// Starts the fake on `127.0.0.1:0` in a background thread. Callable from sync or async code.
    pub fn start(config: FakeConfig) -> io::Result<Self> {
        let key = DecodingKey::from_rsa_pem(config.public_key_pem.as_bytes()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad App public key: {e}"),
            )
        })?;
        let dir = tempfile::Builder::new().prefix("fake-github-").tempdir()?;
        let repos_root = dir.path().join("repos");
        std::fs::create_dir_all(&repos_root)?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                installations: config.installations,
                ..State::default()
            }),
            key,
            app_id: config.app_id,
            granted: config.permissions,
            token_style: config.token_style,
            token_lifetime: config.token_lifetime,
            manifest: Mutex::new(config.manifest),
            repos_root,
            base_url: format!("http://{addr}"),
        });
        let app = api::router(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<()>>();
        std::thread::Builder::new()
            .name("fake-github".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    tokio::select! {
                        res = axum::serve(listener, app) => {
                            if let Err(e) = res {
                                tracing::error!(error = %e, "fake GitHub server stopped");
                            }
                        }
                        _ = rx => {}
                    }
                });
            })?;
        ready_rx
            .recv()
            .map_err(|_| io::Error::other("fake GitHub thread exited before starting"))??;
        Ok(Self {
            addr,
            shared,
            shutdown: Some(tx),
            _dir: dir,
        })
    }

    /// The socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The REST API base for [`crate::GithubClient::new`]: `http://127.0.0.1:PORT/api/v3`.
    pub fn api_url(&self) -> String {
        format!("{}/api/v3", self.shared.base_url)
    }

    /// The git base for [`crate::git_url`]: `http://127.0.0.1:PORT`.
    pub fn git_base(&self) -> String {
        self.shared.base_url.clone()
    }

    /// `{git_base}/{owner}/{repo}.git`.
    pub fn clone_url(&self, owner: &str, repo: &str) -> String {
        crate::git_url(&self.shared.base_url, owner, repo)
    }

    /// Where the bare repository for `owner/repo` lives (whether or not it exists).
    pub fn repo_path(&self, owner: &str, repo: &str) -> PathBuf {
        self.shared
            .repos_root
            .join(owner)
            .join(format!("{repo}.git"))
    }

    /// Creates a bare repository with one commit (a `README.md`) on `default_branch`,
    /// `http.receivepack` enabled and GitHub's workflow-permission check as a
    /// `pre-receive` hook. Returns its path.
    pub fn create_repo(
        &self,
        owner: &str,
        repo: &str,
        default_branch: &str,
    ) -> io::Result<PathBuf> {
        let dir = self.shared.repo_dir(owner, repo).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad repository name {owner}/{repo}"),
            )
        })?;
        git::create_bare_repo(&dir, owner, repo, default_branch)?;
        Ok(dir)
    }

    /// Adds `full_name` (`owner/repo`) to installation `id` at run time.
    pub fn install(&self, id: u64, full_name: &str) {
        self.shared
            .lock()
            .installations
            .entry(id)
            .or_default()
            .push(full_name.to_string());
    }

    /// Opens an issue on `owner/repo` (so it can be commented on); returns its number.
    pub fn create_issue(&self, owner: &str, repo: &str) -> u64 {
        self.shared
            .lock()
            .next_number(&format!("{owner}/{repo}"), false)
    }

    /// Opens an issue with a title, body, author and labels; returns its number.
    pub fn open_issue(
        &self,
        owner: &str,
        repo: &str,
        author: &str,
        title: &str,
        body: &str,
        labels: &[&str],
    ) -> u64 {
        self.shared.lock().add_issue(
            &format!("{owner}/{repo}"),
            false,
            title,
            body,
            author,
            labels,
        )
    }

    /// Someone comments on issue or pull request `number`; returns the comment's id.
    pub fn add_comment(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
        author: &str,
        body: &str,
    ) -> u64 {
        let base = self.shared.base_url.clone();
        self.shared
            .lock()
            .push_comment(owner, repo, number, author, body, &base)
            .id
    }

    /// Opens a pull request by `author` from `head` (a branch of `head_repo`,
    /// `owner/repo` itself when `None`: then the branch must exist) into `base`; returns its number.
    #[allow(clippy::too_many_arguments)]
    pub fn open_pull(
        &self,
        owner: &str,
        repo: &str,
        author: &str,
        head: &str,
        base: &str,
        title: &str,
        head_repo: Option<&str>,
    ) -> u64 {
        let full = format!("{owner}/{repo}");
        let mut st = self.shared.lock();
        let number = st.add_issue(&full, true, title, "", author, &[]);
        st.pulls.push(RecordedPull {
            owner: owner.into(),
            repo: repo.into(),
            number,
            title: title.into(),
            head: head.into(),
            base: base.into(),
            body: String::new(),
            draft: false,
            head_repo: head_repo.unwrap_or(&full).to_string(),
            author: author.into(),
            closed: false,
        });
        number
    }

    /// A review comment by `author` on `line` (from `start_line`) of `path` in pull request `pull`.
    #[allow(clippy::too_many_arguments)]
    pub fn add_review_comment(
        &self,
        owner: &str,
        repo: &str,
        pull: u64,
        author: &str,
        body: &str,
        path: &str,
        start_line: Option<u64>,
        line: u64,
        diff_hunk: &str,
    ) -> RecordedReviewComment {
        let mut st = self.shared.lock();
        st.next_comment_id += 1;
        let c = RecordedReviewComment {
            owner: owner.into(),
            repo: repo.into(),
            pull,
            id: st.next_comment_id,
            author: author.into(),
            body: body.into(),
            path: path.into(),
            start_line,
            line,
            diff_hunk: diff_hunk.into(),
            commit_id: String::new(),
            created_at: Utc::now(),
        };
        st.review_comments.push(c.clone());
        c
    }

    /// An Actions job that ran on `head_sha` of `head_branch`, with its check
    /// run, suite and workflow run; `steps` are (name, conclusion).
    #[allow(clippy::too_many_arguments)]
    pub fn add_check(
        &self,
        owner: &str,
        repo: &str,
        head_branch: &str,
        head_sha: &str,
        name: &str,
        conclusion: &str,
        steps: &[(&str, &str)],
        log: &str,
    ) -> FakeCheck {
        let mut st = self.shared.lock();
        st.next_check_id += 1;
        let id = 9_000_000 + st.next_check_id;
        let c = FakeCheck {
            owner: owner.into(),
            repo: repo.into(),
            id,
            suite_id: id + 100_000,
            workflow_run_id: id + 200_000,
            name: name.into(),
            head_sha: head_sha.into(),
            head_branch: head_branch.into(),
            conclusion: conclusion.into(),
            steps: steps
                .iter()
                .map(|(n, c)| (n.to_string(), c.to_string()))
                .collect(),
            log: log.into(),
        };
        st.checks.push(c.clone());
        c
    }

    /// What `login` may do in `owner/repo` (`admin`, `write`, `read`, …); others have `none`.
    pub fn set_permission(&self, owner: &str, repo: &str, login: &str, level: &str) {
        self.shared.lock().collaborators.insert(
            (
                format!("{owner}/{repo}").to_ascii_lowercase(),
                login.to_ascii_lowercase(),
            ),
            level.to_string(),
        );
    }

    /// Every review comment so far.
    pub fn review_comments(&self) -> Vec<RecordedReviewComment> {
        self.shared.lock().review_comments.clone()
    }

    /// Makes `token` expired; returns whether it was known.
    pub fn expire_token(&self, token: &str) -> bool {
        let mut st = self.shared.lock();
        match st.tokens.iter_mut().find(|t| t.token == token) {
            Some(t) => {
                t.expires_at = Utc::now() - chrono::Duration::seconds(1);
                true
            }
            None => false,
        }
    }

    /// Every token minted so far.
    pub fn tokens(&self) -> Vec<IssuedToken> {
        self.shared.lock().tokens.clone()
    }

    /// Every pull request opened so far.
    pub fn pulls(&self) -> Vec<RecordedPull> {
        self.shared.lock().pulls.clone()
    }

    /// Every comment posted so far.
    pub fn comments(&self) -> Vec<RecordedComment> {
        self.shared.lock().comments.clone()
    }

    /// Every request received, as `METHOD /path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().requests.clone()
    }
}

/// A fresh RSA 2048 key pair `(private_pem, public_pem)` for tests, made with the
/// `openssl` CLI (`genpkey`, then `pkey -traditional` for the PKCS#1 form GitHub
/// issues when supported, and `pkey -pubout`). Nothing is written to disk.
///
/// # Panics
/// If `openssl` is missing or fails: this is a test helper.
pub fn test_keypair() -> (String, String) {
    let pkcs8 = openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ],
        None,
    )
    .expect("openssl genpkey (is the openssl CLI installed?)");
    let private = openssl(&["pkey", "-traditional"], Some(&pkcs8)).unwrap_or(pkcs8);
    let public = openssl(&["pkey", "-pubout"], Some(&private)).expect("openssl pkey -pubout");
    (private, public)
}

fn openssl(args: &[&str], stdin: Option<&str>) -> io::Result<String> {
    run(
        Cmd::new("openssl").args(args).inherit_env(FAKE_ENV),
        stdin.map(str::as_bytes),
    )
}

/// What the fake's `openssl` and `git` keep of the test's environment: where
/// programs are, and the basics; the fake's own variables are set per command.
const FAKE_ENV: &[&str] = &["PATH", "HOME", "TMPDIR", "LANG", "LC_*"];

/// Runs `cmd`, feeding `stdin`; returns stdout, or an error with stderr on failure.
fn run(cmd: &mut Cmd, stdin: Option<&[u8]>) -> io::Result<String> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write as _;
        pipe.write_all(input)?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    String::from_utf8(out.stdout).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Runs git with the user's and system config ignored.
fn git_command(git_dir: Option<&Path>) -> Cmd {
    let mut cmd = Cmd::new("git");
    cmd.inherit_env(FAKE_ENV)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    if let Some(dir) = git_dir {
        cmd.arg("--git-dir").arg(dir);
    }
    cmd
}
