//! The host side: [`EgressProxy`], an HTTP/1.1 proxy on a Unix socket for one
//! sandboxed process (`CONNECT` tunnels and absolute `http://` requests).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::allow::{parse_authority, Host};
use super::policy::{Denied, Policy, Refusal, RefusalLog};
use super::Egress;
use super::CONNECT_TIMEOUT;
use crate::socket::{self, SocketService};
use crate::{SandboxError, SandboxSpec};

/// The longest request head the proxy reads.
const MAX_HEAD: usize = 16 * 1024;
/// Connections one proxy serves at once.
const MAX_CONNECTIONS: usize = 256;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The host side: a proxy on a Unix socket, for one sandboxed process. It
/// stops, and its socket is removed, when this is dropped.
#[derive(Debug)]
pub struct EgressProxy {
    service: SocketService,
    log: Arc<Mutex<RefusalLog>>,
}

impl EgressProxy {
    /// Listens on `path` (replacing a stale socket) and serves in the
    /// background. Must be called inside a tokio runtime.
    pub fn start(path: &Path, policy: Policy) -> std::io::Result<EgressProxy> {
        let log = Arc::new(Mutex::new(RefusalLog::default()));
        let (policy, refusals) = (Arc::new(policy), log.clone());
        let service = SocketService::start(path, "egress proxy", MAX_CONNECTIONS, move |stream| {
            let (policy, log) = (policy.clone(), refusals.clone());
            async move { serve(stream, &policy, &log).await }
        })?;
        Ok(EgressProxy { service, log })
    }

    /// Where it listens.
    pub fn path(&self) -> &Path {
        self.service.path()
    }

    /// The destinations refused so far, in order of first refusal.
    pub fn refused(&self) -> Vec<Refusal> {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .snapshot()
    }
}

/// Starts the proxy for one spawn of `spec`: its socket is in errand's
/// private runtime directory ([`crate::socket::path_in`]: mode 0700, the
/// socket 0600, one peer uid), never in a directory the sandbox can write.
pub fn start_for(spec: &SandboxSpec, egress: &Egress) -> Result<EgressProxy, SandboxError> {
    let policy = Policy::new(&egress.allow, &egress.protected)
        .map_err(|bad| SandboxError::Setup(bad.join("; ")))?;
    let dir = spec
        .tmp
        .parent()
        .unwrap_or(&spec.tmp)
        .join(".errand-egress");
    let path = socket::path_in(&dir, "egress").map_err(|e| SandboxError::Setup(e.to_string()))?;
    EgressProxy::start(&path, policy).map_err(|e| {
        SandboxError::Setup(format!(
            "cannot start the egress proxy on {}: {e}",
            path.display()
        ))
    })
}

/// Reads a request or response head: the bytes read and the head's length.
pub(super) async fn read_head<S: AsyncRead + Unpin>(
    s: &mut S,
) -> std::io::Result<Option<(Vec<u8>, usize)>> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some((buf, from + i + 4)));
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::Error::other("the request head is too long"));
        }
    }
}

pub(super) async fn respond<S: AsyncWrite + Unpin>(s: &mut S, status: &str, body: &str) {
    let text = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\nX-Errand-Egress: {}\r\n\r\n{body}",
        body.len(),
        if status.starts_with("403") {
            "refused"
        } else {
            "error"
        }
    );
    let _ = s.write_all(text.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// Hop-by-hop headers the proxy does not forward.
const HOP_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
];

/// One client connection: one CONNECT tunnel or one forwarded request.
async fn serve(mut client: UnixStream, policy: &Policy, log: &Mutex<RefusalLog>) {
    let Some((buf, head_len)) = read_request(&mut client).await else {
        return;
    };
    let mut headers = [httparse::EMPTY_HEADER; 96];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&buf[..head_len]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => {
            respond(
                &mut client,
                "400 Bad Request",
                "errand egress: not an HTTP/1.1 proxy request\n",
            )
            .await;
            return;
        }
    }
    let method = req.method.unwrap_or("");
    let target = req.path.unwrap_or("");
    let (authority, origin_path) = match request_target(method, target) {
        Ok(t) => t,
        Err(why) => {
            respond(
                &mut client,
                "400 Bad Request",
                &format!("errand egress: {why}\n"),
            )
            .await;
            return;
        }
    };
    let default_port = origin_path.is_some().then_some(80);
    let Some((host, port)) = parse_authority(authority, default_port) else {
        respond(
            &mut client,
            "400 Bad Request",
            &format!("errand egress: '{authority}' is not host:port\n"),
        )
        .await;
        return;
    };
    let destination = format!("{host}:{port}");
    let rest = &buf[head_len..];
    if let Some(socket) = policy.route(&host, port) {
        let Some(path) = origin_path else {
            respond(
                &mut client,
                "403 Forbidden",
                &format!("errand egress: {destination} is served by errand over plain http://\n"),
            )
            .await;
            return;
        };
        if let Some(upstream) = connect_routed(&mut client, socket, &destination).await {
            relay(client, upstream, method, &path, authority, &req, rest).await;
        }
        return;
    }
    let Some(upstream) = connect_allowed(&mut client, policy, log, &host, port, &destination).await
    else {
        return;
    };
    match origin_path {
        None => tunnel(client, upstream, rest).await,
        Some(path) => relay(client, upstream, method, &path, authority, &req, rest).await,
    }
}

/// Reads the client's request head within [`HEAD_TIMEOUT`]: the bytes read and
/// the head's length. `None` (answered, when there is someone to answer) when
/// there is none.
async fn read_request(client: &mut UnixStream) -> Option<(Vec<u8>, usize)> {
    match tokio::time::timeout(HEAD_TIMEOUT, read_head(client)).await {
        Ok(Ok(Some(h))) => Some(h),
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            respond(client, "400 Bad Request", &format!("errand egress: {e}\n")).await;
            None
        }
        Err(_) => {
            respond(client, "408 Request Timeout", "errand egress: no request\n").await;
            None
        }
    }
}

/// The authority a request asks for, and for a forwarded request the path to
/// send on: `CONNECT host:port`, or `METHOD http://host[:port]/path`. The
/// error says why the request is not proxied.
fn request_target<'a>(
    method: &str,
    target: &'a str,
) -> Result<(&'a str, Option<String>), &'static str> {
    if method.eq_ignore_ascii_case("CONNECT") {
        return Ok((target, None));
    }
    let lower = target.get(..7).map(str::to_ascii_lowercase);
    let Some(rest) = (lower.as_deref() == Some("http://"))
        .then(|| target.get(7..))
        .flatten()
    else {
        return Err(if target.to_ascii_lowercase().starts_with("https://") {
            "use CONNECT for https:// destinations"
        } else {
            "only CONNECT and absolute http:// requests are proxied"
        });
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let path = match &rest[end..] {
        "" => "/".to_string(),
        p if p.starts_with('/') => p.to_string(),
        p => format!("/{p}"),
    };
    Ok((&rest[..end], Some(path)))
}

/// Connects to the socket of one of errand's own services a host is routed
/// to; `None`, answered 502, when it is not served.
async fn connect_routed(
    client: &mut UnixStream,
    socket: &Path,
    destination: &str,
) -> Option<UnixStream> {
    match UnixStream::connect(socket).await {
        Ok(upstream) => Some(upstream),
        Err(e) => {
            respond(
                client,
                "502 Bad Gateway",
                &format!("errand egress: {destination} is not being served: {e}\n"),
            )
            .await;
            None
        }
    }
}

/// Resolves and connects to `host:port` as the policy allows, to the first
/// checked address that answers. `None` when refused (answered 403 and kept
/// in `log`) or unreachable (answered 502).
async fn connect_allowed(
    client: &mut UnixStream,
    policy: &Policy,
    log: &Mutex<RefusalLog>,
    host: &Host,
    port: u16,
    destination: &str,
) -> Option<TcpStream> {
    let addrs = match policy.resolve(host, port).await {
        Ok(a) => a,
        Err(Denied::Refused(why)) => {
            let first = log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .add(destination, &why);
            if first {
                tracing::info!("egress refused: {destination}: {why}");
            }
            respond(
                client,
                "403 Forbidden",
                &format!("errand egress: {destination} refused: {why}\n"),
            )
            .await;
            return None;
        }
        Err(Denied::Unreachable(why)) => {
            respond(
                client,
                "502 Bad Gateway",
                &format!("errand egress: {destination}: {why}\n"),
            )
            .await;
            return None;
        }
    };
    let mut last_err = String::from("no address");
    for a in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(a)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Some(s);
            }
            Ok(Err(e)) => last_err = e.to_string(),
            Err(_) => last_err = "connecting timed out".into(),
        }
    }
    respond(
        client,
        "502 Bad Gateway",
        &format!("errand egress: cannot connect to {destination}: {last_err}\n"),
    )
    .await;
    None
}

/// A CONNECT tunnel: answers 200, sends what the client already sent past its
/// head, then copies both ways.
async fn tunnel(mut client: UnixStream, mut upstream: TcpStream, rest: &[u8]) {
    if client
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    if !rest.is_empty() && upstream.write_all(rest).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// Sends the request, in origin form and alone on this connection, to
/// `upstream`, then copies both ways.
async fn relay<U: AsyncRead + AsyncWrite + Unpin>(
    mut client: UnixStream,
    mut upstream: U,
    method: &str,
    path: &str,
    authority: &str,
    req: &httparse::Request<'_, '_>,
    rest: &[u8],
) {
    let mut head = format!("{method} {path} HTTP/1.1\r\n").into_bytes();
    let mut has_host = false;
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        if HOP_HEADERS.contains(&name.as_str()) {
            continue;
        }
        has_host |= name == "host";
        head.extend_from_slice(h.name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(h.value);
        head.extend_from_slice(b"\r\n");
    }
    if !has_host {
        head.extend_from_slice(format!("Host: {authority}\r\n").as_bytes());
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    if upstream.write_all(&head).await.is_err() {
        return;
    }
    if !rest.is_empty() && upstream.write_all(rest).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::*;

    /// A proxy on a socket, against a policy, answering one request.
    async fn ask(policy: Policy, request: &str) -> (String, Vec<Refusal>) {
        let dir = tempfile::tempdir().expect("tmp");
        let proxy = EgressProxy::start(&dir.path().join("p.sock"), policy).expect("start");
        let mut s = UnixStream::connect(proxy.path()).await.expect("connect");
        s.write_all(request.as_bytes()).await.expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        (out, proxy.refused())
    }

    #[tokio::test]
    async fn the_proxy_never_connects_to_what_a_wildcard_may_not_reach() {
        use tokio::net::TcpListener;
        let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = upstream.local_addr().expect("addr").port();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = upstream.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
            }
        });
        let wildcard = || Policy::new(&["*".into()], &[]).expect("policy");
        for target in [
            format!("127.0.0.1:{port}"),
            format!("0x7f.1:{port}"),
            format!("2130706433:{port}"),
            format!("[::ffff:127.0.0.1]:{port}"),
            format!("localhost.:{port}"),
            format!("10.1:{port}"),
        ] {
            let (out, refused) = ask(
                wildcard(),
                &format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"),
            )
            .await;
            assert!(out.starts_with("HTTP/1.1 403"), "{target}: {out}");
            assert_eq!(refused.len(), 1, "{target}: {refused:?}");
        }
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
        let listed = Policy::new(&["*".into(), format!("127.0.0.1:{port}")], &[]).expect("p");
        let (out, _) = ask(
            listed,
            &format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n"),
        )
        .await;
        assert!(
            out.starts_with("HTTP/1.1 200 Connection Established"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn routed_hosts_go_to_errands_socket_and_are_never_resolved() {
        let dir = tempfile::tempdir().expect("tmp");
        let sock = dir.path().join("git.sock");
        let listener = tokio::net::UnixListener::bind(&sock).expect("bind");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let Ok(Some((buf, n))) = read_head(&mut s).await else {
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let first = head.lines().next().unwrap_or("").to_string();
                let body = format!("served [{first}]");
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            }
        });
        let entry = route_entry("git.errand.internal", &sock);
        let p = || Policy::new(std::slice::from_ref(&entry), &[]).expect("policy");
        let (out, refused) = ask(
            p(),
            "GET http://git.errand.internal/acme/w.git/info/refs?service=git-upload-pack HTTP/1.1\r\n\r\n",
        )
        .await;
        assert!(
            out.contains("served [GET /acme/w.git/info/refs?service=git-upload-pack HTTP/1.1]"),
            "{out}"
        );
        assert!(refused.is_empty());
        // Not over CONNECT, not on another port; other hosts are not allowed by it.
        let (out, _) = ask(p(), "CONNECT git.errand.internal:443 HTTP/1.1\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 403"), "{out}");
        let (out, _) = ask(p(), "CONNECT git.errand.internal:80 HTTP/1.1\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 403"), "{out}");
        let (out, _) = ask(p(), "GET http://git.errand.internal:8080/ HTTP/1.1\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 403"), "{out}");
        let (out, _) = ask(p(), "GET http://example.com/ HTTP/1.1\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 403"), "{out}");
        assert!(Policy::new(&["bad host=unix:/x".into()], &[]).is_err());
        assert!(Policy::new(&["h=unix:relative".into()], &[]).is_err());
    }

    #[tokio::test]
    async fn the_proxy_tunnels_forwards_and_refuses() {
        use tokio::net::TcpListener;
        let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = upstream.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = upstream.accept().await {
                tokio::spawn(async move {
                    let Ok(Some((buf, n))) = read_head(&mut s).await else {
                        return;
                    };
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    let first = head.lines().next().unwrap_or("").to_string();
                    let close = head.to_ascii_lowercase().contains("connection: close");
                    let body = format!("saw [{first}] close={close}");
                    let _ = s
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .await;
                });
            }
        });
        let allowed = || Policy::new(&[format!("127.0.0.1:{port}")], &[]).expect("policy");
        // Absolute form: forwarded in origin form, alone on its connection.
        let (out, refused) = ask(
            allowed(),
            &format!(
                "GET http://127.0.0.1:{port}/v1/messages?x=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nProxy-Connection: keep-alive\r\n\r\n"
            ),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(
            out.contains("saw [GET /v1/messages?x=1 HTTP/1.1] close=true"),
            "{out}"
        );
        assert!(refused.is_empty());
        // CONNECT: a tunnel, then whatever the client says.
        let (out, _) = ask(
            allowed(),
            &format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\nGET /t HTTP/1.1\r\nHost: x\r\n\r\n"),
        )
        .await;
        assert!(
            out.starts_with("HTTP/1.1 200 Connection Established\r\n\r\nHTTP/1.1 200 OK"),
            "{out}"
        );
        assert!(out.contains("saw [GET /t HTTP/1.1]"), "{out}");
        // Another port, metadata, garbage.
        let (out, refused) = ask(
            allowed(),
            &format!(
                "CONNECT 127.0.0.1:{} HTTP/1.1\r\n\r\n",
                port.wrapping_add(1)
            ),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 403 Forbidden"), "{out}");
        assert!(out.contains("not on the allowlist"), "{out}");
        assert_eq!(refused.len(), 1);
        let (out, refused) = ask(
            Policy::new(&["*".into()], &[]).expect("policy"),
            "GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n",
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 403"), "{out}");
        assert_eq!(refused[0].destination, "169.254.169.254:80");
        assert!(refused[0].reason.contains("link-local"), "{refused:?}");
        let (out, _) = ask(allowed(), "\x16\x03\x01garbage\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        let (out, _) = ask(allowed(), "GET /direct HTTP/1.1\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    }
}
