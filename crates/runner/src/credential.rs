//! The agent's git credentials for `--agent-git` runs: a credential server on
//! a Unix socket, one per run, speaking git's credential-helper protocol.
//!
//! The socket is mounted read-only into the sandbox at [`SOCKET`]; git there is
//! configured (through `GIT_CONFIG_*` variables, see [`git_env`]) to run
//! `errand git-credential --socket SOCKET get` as its credential helper, which
//! forwards git's request here ([`client`]). The server answers one request
//! only: `get` for the run's own repository (`protocol`, `host` and `path` of
//! its clone URL; `credential.useHttpPath` makes git send the path), with
//! `username=x-access-token` and the run's token. Anything else gets an empty
//! answer, so git fails ("could not read Username"), and is counted for the
//! run's trace. `store` and `erase` are ignored. The socket is in errand's
//! private runtime directory (mode 0700, never in a shared `/tmp`), is mode
//! 0600, and answers one peer uid only, checked with `SO_PEERCRED` on every
//! connection (see [`errand_sandbox::socket`]): errand's own (the local
//! sandbox maps the agent's uid to errand's), or the Docker container's user,
//! to which the Docker backend gives the socket when it mounts it. No other
//! local user can ask it for the token. The token travels over the
//! socket into git's memory only: it is not in the sandbox's environment, in
//! `.git/config`, or in any file.
//!
//! What this does not do: the agent can ask the helper for the token itself
//! (any process in the sandbox can), so the token is the agent's for the run.
//! GitHub limits it to the one repository and the run's permissions, errand's
//! egress allowlist to the git host, errand's guard keeps pushes to the run's
//! branch (a seatbelt inside the sandbox), and errand revokes it when the run
//! ends. The server stops answering when the agent's process ends.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Where the credential server's socket is mounted inside the sandbox.
pub const SOCKET: &str = "/opt/errand/git-credential.sock";

/// The credential helper git runs (errand's own binary, mounted by the guard).
pub fn helper_command() -> String {
    format!(
        "!{}/errand git-credential --socket {SOCKET}",
        errand_sandbox::paths::TOOLS
    )
}

/// The longest request a client may send.
const MAX_REQUEST: usize = 64 * 1024;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("the run's clone URL {0} is not an http(s) URL the credential helper can serve")]
    Url(String),
    #[error("cannot start the git credential server on {path}: {source}")]
    Start {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What the server hands out, and for which repository.
pub struct Scope {
    /// `https` (or `http` for a test server).
    protocol: String,
    /// `host[:port]`, lowercase, as git sends it.
    host: String,
    /// The repository's path without `.git`, lowercase (`owner/repo`).
    path: String,
    /// The run's token at the time of asking: it is renewed during long runs.
    password: Password,
}

/// Where the server reads the token from, each time git asks.
pub type Password = Arc<dyn Fn() -> String + Send + Sync>;

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("protocol", &self.protocol)
            .field("host", &self.host)
            .field("path", &self.path)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Scope {
    /// The credential for the repository at `url` (`https://host[:port]/owner/repo.git`).
    pub fn new(url: &str, password: Password) -> Result<Scope, CredentialError> {
        let bad = || CredentialError::Url(errand_git::redact_url(url));
        let (protocol, rest) = url.split_once("://").ok_or_else(bad)?;
        let protocol = protocol.to_ascii_lowercase();
        if protocol != "https" && protocol != "http" {
            return Err(bad());
        }
        let (host, path) = rest.split_once('/').ok_or_else(bad)?;
        if host.is_empty() || host.contains('@') || path.is_empty() {
            return Err(bad());
        }
        Ok(Scope {
            protocol,
            host: host.to_ascii_lowercase(),
            path: repo_path(path),
            password,
        })
    }

    /// The repository this scope covers, for messages.
    pub fn describe(&self) -> String {
        format!("{}://{}/{}", self.protocol, self.host, self.path)
    }

    fn matches(&self, req: &Request) -> bool {
        req.protocol.as_deref() == Some(self.protocol.as_str())
            && req.host.as_deref().map(str::to_ascii_lowercase).as_deref()
                == Some(self.host.as_str())
            && req.path.as_deref().map(repo_path).as_deref() == Some(self.path.as_str())
    }
}

/// `owner/repo` from `owner/repo.git`, `/owner/repo/`, any case.
fn repo_path(p: &str) -> String {
    let p = p.trim_matches('/');
    p.strip_suffix(".git")
        .unwrap_or(p)
        .trim_end_matches('/')
        .to_ascii_lowercase()
}

/// One request as git's credential protocol states it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Request {
    operation: String,
    protocol: Option<String>,
    host: Option<String>,
    path: Option<String>,
}

impl Request {
    /// The first line is the operation (`get`, `store`, `erase`); then
    /// `key=value` lines up to a blank line. Unknown keys are ignored.
    fn parse(text: &str) -> Request {
        let mut lines = text.lines();
        let mut req = Request {
            operation: lines.next().unwrap_or_default().trim().to_string(),
            ..Default::default()
        };
        for line in lines {
            if line.is_empty() {
                break;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k {
                "protocol" => req.protocol = Some(v.to_string()),
                "host" => req.host = Some(v.to_string()),
                "path" => req.path = Some(v.to_string()),
                _ => {}
            }
        }
        req
    }

    /// How a refused request is shown: what it asked for, never a secret.
    fn describe(&self) -> String {
        let mut s = format!(
            "{}://{}",
            self.protocol.as_deref().unwrap_or("?"),
            self.host.as_deref().unwrap_or("?")
        );
        match self.path.as_deref() {
            Some(p) => {
                s.push('/');
                s.push_str(p);
            }
            None => s.push_str(" (no path)"),
        }
        s
    }
}

/// A request the server did not answer (its `destination` is the repository
/// asked for), and how often.
pub use errand_sandbox::egress::Refusal;
use errand_sandbox::egress::RefusalLog as Log;
use errand_sandbox::socket::{self, SocketService};

/// Why a credential request gets no answer.
const NOT_THIS_REPO: &str = "not this run's repository";

/// The most requests served at once (git asks once per command).
const MAX_CONNECTIONS: usize = 64;

/// The host side: serves one run's credential until dropped (its socket is
/// then removed and it answers no more).
#[derive(Debug)]
pub struct CredentialServer {
    service: SocketService,
    log: Arc<Mutex<Log>>,
    answered: Arc<AtomicU64>,
}

impl CredentialServer {
    /// Listens on `path` (replacing a stale socket). Must be called inside a tokio runtime.
    pub fn start(path: &Path, scope: Scope) -> Result<CredentialServer, CredentialError> {
        let log = Arc::new(Mutex::new(Log::default()));
        let answered = Arc::new(AtomicU64::new(0));
        let (scope, refusals, count) = (Arc::new(scope), log.clone(), answered.clone());
        let service = SocketService::start(
            path,
            "git credential server",
            MAX_CONNECTIONS,
            move |stream| {
                let (scope, log, answered) = (scope.clone(), refusals.clone(), count.clone());
                async move {
                    let _ = tokio::time::timeout(
                        REQUEST_TIMEOUT,
                        serve(stream, &scope, &log, &answered),
                    )
                    .await;
                }
            },
        )
        .map_err(|source| CredentialError::Start {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(CredentialServer {
            service,
            log,
            answered,
        })
    }

    /// Starts the server for the run in `run_dir`: its socket is in errand's
    /// private runtime directory ([`socket::runtime_dir`]), whatever the
    /// length of `run_dir`.
    pub fn start_for(run_dir: &Path, scope: Scope) -> Result<CredentialServer, CredentialError> {
        let path =
            socket::private_path("git-credential").map_err(|source| CredentialError::Start {
                path: run_dir.to_path_buf(),
                source,
            })?;
        Self::start(&path, scope)
    }

    /// Where it listens (the host side of the mount).
    pub fn path(&self) -> &Path {
        self.service.path()
    }

    /// How many requests were answered with the credential.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// The requests refused so far, in order of first refusal.
    pub fn refused(&self) -> Vec<Refusal> {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .snapshot()
    }
}

/// Reads one request (up to a blank line or the end), answers it, closes.
async fn serve(stream: UnixStream, scope: &Scope, log: &Mutex<Log>, answered: &AtomicU64) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut text = String::new();
    let mut line = String::new();
    let mut first = true;
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        text.push_str(&line);
        if (!first && line.trim_end_matches(['\r', '\n']).is_empty()) || text.len() > MAX_REQUEST {
            break;
        }
        first = false;
    }
    let req = Request::parse(&text);
    let answer = match req.operation.as_str() {
        "get" if scope.matches(&req) => {
            answered.fetch_add(1, Ordering::Relaxed);
            format!(
                "protocol={}\nhost={}\nusername=x-access-token\npassword={}\n\n",
                scope.protocol,
                scope.host,
                (scope.password)()
            )
        }
        "get" => {
            let what = req.describe();
            tracing::info!("git credential server: refused a credential for {what}");
            log.lock()
                .unwrap_or_else(|e| e.into_inner())
                .add(&what, NOT_THIS_REPO);
            "\n".to_string()
        }
        // git tells helpers about credentials that worked (store) or failed
        // (erase); errand keeps nothing, so there is nothing to do.
        _ => "\n".to_string(),
    };
    let _ = write.write_all(answer.as_bytes()).await;
    let _ = write.shutdown().await;
}

/// The environment that makes git in the sandbox use the helper: appended to
/// any `GIT_CONFIG_*` entries already in `env`. Configuration only, no secret.
pub fn git_env(env: &mut Vec<(String, String)>) {
    let count = env
        .iter()
        .rev()
        .find(|(k, _)| k == "GIT_CONFIG_COUNT")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    env.retain(|(k, _)| k != "GIT_CONFIG_COUNT");
    let entries = [
        // An empty value first clears helpers configured elsewhere.
        ("credential.helper", String::new()),
        ("credential.helper", helper_command()),
        ("credential.useHttpPath", "true".to_string()),
    ];
    for (i, (k, v)) in entries.iter().enumerate() {
        env.push((format!("GIT_CONFIG_KEY_{}", count + i), k.to_string()));
        env.push((format!("GIT_CONFIG_VALUE_{}", count + i), v.clone()));
    }
    env.push((
        "GIT_CONFIG_COUNT".to_string(),
        (count + entries.len()).to_string(),
    ));
    // Refused means refused: no prompt for a username instead.
    env.push(("GIT_TERMINAL_PROMPT".to_string(), "0".to_string()));
}

/// `errand git-credential --socket S <get|store|erase>`: git's credential
/// helper inside the sandbox. Forwards the operation and git's request on
/// stdin to the socket and prints the answer. Exits 0 whatever the answer
/// (an empty one is git's "no credential").
pub fn client(args: &[String]) -> std::process::ExitCode {
    use std::io::{Read, Write};
    let usage = || {
        eprintln!("usage: errand git-credential --socket PATH <get|store|erase>");
        std::process::ExitCode::from(2)
    };
    let mut socket = None;
    let mut operation = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--socket" => match it.next() {
                Some(s) => socket = Some(PathBuf::from(s)),
                None => return usage(),
            },
            op if operation.is_none() && !op.starts_with('-') => operation = Some(op.to_string()),
            _ => return usage(),
        }
    }
    let (Some(socket), Some(operation)) = (socket, operation) else {
        return usage();
    };
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin()
        .take(MAX_REQUEST as u64)
        .read_to_end(&mut input)
    {
        eprintln!("errand git-credential: cannot read the request: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let mut stream = match std::os::unix::net::UnixStream::connect(&socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "errand git-credential: errand's credential server at {} is not answering ({e}): \
                 the run is over or it has no git access",
                socket.display()
            );
            // git goes on without a credential.
            return std::process::ExitCode::SUCCESS;
        }
    };
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
    let mut request = format!("{operation}\n").into_bytes();
    request.extend_from_slice(&input);
    if !request.ends_with(b"\n") {
        request.push(b'\n');
    }
    request.push(b'\n');
    let mut answer = Vec::new();
    let sent = stream
        .write_all(&request)
        .and_then(|()| stream.shutdown(std::net::Shutdown::Write))
        .and_then(|()| stream.read_to_end(&mut answer));
    if let Err(e) = sent {
        eprintln!("errand git-credential: {e}");
        return std::process::ExitCode::SUCCESS;
    }
    if operation == "get" {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&answer);
        let _ = out.flush();
    }
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(token: &str) -> Password {
        let token = token.to_string();
        Arc::new(move || token.clone())
    }

    fn scope() -> Scope {
        Scope::new("https://github.com/Acme/widgets.git", fixed("ghs_secret")).unwrap()
    }

    #[test]
    fn requests_parse_and_only_the_runs_repository_matches() {
        let s = scope();
        let req = |t: &str| Request::parse(t);
        assert!(s.matches(&req(
            "get\nprotocol=https\nhost=github.com\npath=acme/widgets.git\n\n"
        )));
        assert!(s.matches(&req(
            "get\ncapability[]=authtype\nprotocol=https\nhost=GitHub.com\npath=acme/widgets\nwwwauth[]=Basic realm=x\n"
        )));
        for other in [
            "get\nprotocol=https\nhost=github.com\npath=acme/other.git\n",
            "get\nprotocol=https\nhost=github.com\n",
            "get\nprotocol=http\nhost=github.com\npath=acme/widgets.git\n",
            "get\nprotocol=https\nhost=evil.example\npath=acme/widgets.git\n",
            "get\nprotocol=https\nhost=github.com:8443\npath=acme/widgets.git\n",
            "get\nprotocol=https\nhost=github.com\npath=acme/widgets.git/../other.git\n",
        ] {
            assert!(!s.matches(&req(other)), "{other}");
        }
        // Values after the blank line are not part of the request.
        assert!(!s.matches(&req(
            "get\nprotocol=https\n\nhost=github.com\npath=acme/widgets.git\n"
        )));
        assert!(format!("{s:?}").contains("<redacted>") && !format!("{s:?}").contains("ghs_"));
    }

    #[test]
    fn only_http_urls_without_credentials_make_a_scope() {
        assert!(Scope::new("http://127.0.0.1:9/a/b.git", fixed("t")).is_ok());
        for bad in [
            "/tmp/repo",
            "git@github.com:a/b.git",
            "ssh://github.com/a/b",
            "https://x:y@github.com/a/b.git",
            "https://github.com",
        ] {
            assert!(Scope::new(bad, fixed("t")).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_environment_names_the_helper_and_keeps_other_entries() {
        let mut env = vec![
            ("GIT_CONFIG_COUNT".to_string(), "1".to_string()),
            ("GIT_CONFIG_KEY_0".to_string(), "core.pager".to_string()),
            ("GIT_CONFIG_VALUE_0".to_string(), "cat".to_string()),
        ];
        git_env(&mut env);
        let get = |k: &str| env.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
        assert_eq!(get("GIT_CONFIG_COUNT"), Some("4"));
        assert_eq!(get("GIT_CONFIG_KEY_0"), Some("core.pager"));
        assert_eq!(get("GIT_CONFIG_KEY_1"), Some("credential.helper"));
        assert_eq!(get("GIT_CONFIG_VALUE_1"), Some(""));
        assert_eq!(
            get("GIT_CONFIG_VALUE_2"),
            Some("!/opt/errand/bin/errand git-credential --socket /opt/errand/git-credential.sock")
        );
        assert_eq!(get("GIT_CONFIG_KEY_3"), Some("credential.useHttpPath"));
        assert_eq!(get("GIT_TERMINAL_PROMPT"), Some("0"));
        assert_eq!(
            env.iter().filter(|(k, _)| k == "GIT_CONFIG_COUNT").count(),
            1
        );
    }

    async fn ask(path: &Path, request: &str) -> String {
        use tokio::io::AsyncReadExt;
        let mut s = UnixStream::connect(path).await.unwrap();
        // A refused peer's connection is closed unread: writes may fail.
        let _ = s.write_all(request.as_bytes()).await;
        let _ = s.shutdown().await;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        out
    }

    #[tokio::test]
    async fn each_answer_carries_the_token_current_at_the_time() {
        let dir = tempfile::tempdir().unwrap();
        let current = Arc::new(Mutex::new("ghs_first".to_string()));
        let read = current.clone();
        let password: Password = Arc::new(move || read.lock().unwrap().clone());
        let scope = Scope::new("https://github.com/acme/widgets.git", password).unwrap();
        let server = CredentialServer::start_for(dir.path(), scope).unwrap();
        let req = "get\nprotocol=https\nhost=github.com\npath=acme/widgets.git\n\n";
        assert!(ask(server.path(), req)
            .await
            .contains("password=ghs_first\n"));
        *current.lock().unwrap() = "ghs_renewed".to_string();
        assert!(ask(server.path(), req)
            .await
            .contains("password=ghs_renewed\n"));
        assert_eq!(server.answered(), 2);
    }

    #[tokio::test]
    async fn the_socket_is_private_and_answers_only_its_peer_uid() {
        use std::os::unix::fs::MetadataExt;
        // A run directory far too long for a socket path.
        let dir = tempfile::tempdir().unwrap();
        let long = dir.path().join("h".repeat(150));
        let server = CredentialServer::start_for(&long, scope()).unwrap();
        let path = server.path().to_path_buf();
        assert!(path.as_os_str().len() <= 100, "{}", path.display());
        let parent = std::fs::symlink_metadata(path.parent().unwrap()).unwrap();
        // SAFETY: plain system call.
        let me = unsafe { libc::geteuid() };
        assert_eq!((parent.uid(), parent.mode() & 0o777), (me, 0o700));
        let sock = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(sock.mode() & 0o777, 0o600, "never world-writable");
        let req = "get\nprotocol=https\nhost=github.com\npath=acme/widgets.git\n\n";
        assert!(ask(&path, req).await.contains("password=ghs_secret"));
        if me == 0 {
            // Given to a container's uid, errand's own uid is a stranger:
            // SO_PEERCRED refuses it before a byte is read.
            socket::give_to(&path, 4242).unwrap();
            assert_eq!(ask(&path, req).await, "");
            assert_eq!(server.answered(), 1);
        }
    }

    #[tokio::test]
    async fn the_server_answers_its_repository_refuses_the_rest_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let server = CredentialServer::start_for(dir.path(), scope()).unwrap();
        let path = server.path().to_path_buf();
        let ok = ask(
            &path,
            "get\nprotocol=https\nhost=github.com\npath=acme/widgets.git\n\n",
        )
        .await;
        assert_eq!(
            ok,
            "protocol=https\nhost=github.com\nusername=x-access-token\npassword=ghs_secret\n\n"
        );
        let no = ask(
            &path,
            "get\nprotocol=https\nhost=github.com\npath=acme/other.git\n\n",
        )
        .await;
        assert_eq!(no.trim(), "");
        let _ = ask(
            &path,
            "get\nprotocol=https\nhost=github.com\npath=acme/other.git\n\n",
        )
        .await;
        assert_eq!(
            ask(
                &path,
                "store\nprotocol=https\nhost=github.com\npassword=x\n\n"
            )
            .await
            .trim(),
            ""
        );
        assert_eq!(server.answered(), 1);
        assert_eq!(
            server.refused(),
            [Refusal {
                destination: "https://github.com/acme/other.git".into(),
                reason: NOT_THIS_REPO.into(),
                count: 2
            }]
        );
        drop(server);
        assert!(!path.exists(), "the socket is removed");
        assert!(UnixStream::connect(&path).await.is_err());
    }
}
