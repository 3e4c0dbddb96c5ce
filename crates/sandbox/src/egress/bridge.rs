//! Inside the sandbox: the bridge ([`bridge`]) that offers the proxy's socket on
//! the sandbox's loopback and starts the command behind it ([`wrap`]).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use super::allow::{parse_authority, Host};
use super::proxy::{read_head, respond};
use super::{Egress, Policy, BRIDGE, SOCKET};
use crate::CommandLine;

/// `cmd` started by the bridge: `BRIDGE <args> --socket SOCKET [--forward a]… -- cmd…`.
pub fn wrap(cmd: &CommandLine, egress: &Egress) -> CommandLine {
    let forwards = Policy::new(&egress.allow, &egress.protected)
        .map(|p| p.loopback_forwards())
        .unwrap_or_default();
    let mut args = egress.bridge.args.clone();
    args.extend(["--socket".to_string(), SOCKET.to_string()]);
    for f in forwards {
        args.extend(["--forward".to_string(), f]);
    }
    args.push("--".into());
    args.push(cmd.program.clone());
    args.extend(cmd.args.iter().cloned());
    CommandLine {
        program: BRIDGE.into(),
        args,
        cwd: cmd.cwd.clone(),
    }
}

/// `bridge --socket PATH [--listen ADDR] [--forward HOST:PORT]… -- PROGRAM [ARG]…`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeOptions {
    /// The proxy's socket.
    pub socket: PathBuf,
    /// Where the proxy is offered inside (default `127.0.0.1:0`: any free port).
    pub listen: SocketAddr,
    /// Loopback destinations also listened for at their own address.
    pub forward: Vec<String>,
    /// The program and its arguments.
    pub command: Vec<String>,
}

impl BridgeOptions {
    /// Parses the bridge's arguments; the error says what is wrong.
    pub fn parse(args: &[String]) -> Result<BridgeOptions, String> {
        let mut socket = None;
        let mut listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let mut forward = Vec::new();
        let mut it = args.iter();
        let mut command = Vec::new();
        while let Some(a) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match a.as_str() {
                "--socket" => socket = Some(PathBuf::from(value("--socket")?)),
                "--listen" => {
                    let v = value("--listen")?;
                    listen = v
                        .parse()
                        .map_err(|_| format!("--listen '{v}' is not an address:port"))?;
                }
                "--forward" => forward.push(value("--forward")?),
                "--" => {
                    command = it.by_ref().cloned().collect();
                    break;
                }
                other => return Err(format!("unexpected argument '{other}'")),
            }
        }
        let socket = socket.ok_or("--socket is required")?;
        if command.is_empty() {
            return Err("no command after --".into());
        }
        Ok(BridgeOptions {
            socket,
            listen,
            forward,
            command,
        })
    }
}

/// Runs the bridge: listens, starts the command with the proxy variables, and
/// returns the command's exit status. Errors only when the command cannot start.
pub async fn bridge(opts: BridgeOptions) -> std::io::Result<std::process::ExitStatus> {
    let socket = Arc::new(opts.socket.clone());
    // The forwarded addresses first, so the proxy's own port cannot take one.
    for f in &opts.forward {
        let Some((host, port)) = parse_authority(f, None) else {
            eprintln!("errand bridge: --forward '{f}' is not host:port; ignored");
            continue;
        };
        let addrs: Vec<SocketAddr> = match &host {
            Host::Ip(ip) => vec![SocketAddr::new(*ip, port)],
            Host::Name(n) if n == "localhost" => vec![
                SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
            ],
            Host::Name(_) => {
                eprintln!("errand bridge: --forward '{f}' is not a loopback address; ignored");
                continue;
            }
        };
        for (i, a) in addrs.into_iter().enumerate() {
            match tokio::net::TcpListener::bind(a).await {
                Ok(l) => {
                    tokio::spawn(forward_loop(l, socket.clone(), f.clone()));
                }
                // The IPv6 loopback of `localhost` may be missing.
                Err(e) if i == 0 => eprintln!("errand bridge: cannot listen on {a}: {e}"),
                Err(_) => {}
            }
        }
    }
    let listener = tokio::net::TcpListener::bind(opts.listen).await?;
    let proxy = format!("http://{}", listener.local_addr()?);
    tokio::spawn(proxy_loop(listener, socket));

    // Inside the sandbox: the agent's command keeps the sandbox's environment.
    let mut cmd = errand_proc::Cmd::new(&opts.command[0]);
    cmd.inherit_all_env().args(&opts.command[1..]);
    for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        cmd.env(k, &proxy);
    }
    for k in ["NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"] {
        cmd.env_remove(k);
    }
    cmd.env("NO_PROXY", "").env("no_proxy", "");
    // Node.js 24+: its own fetch and http honour the variables too.
    cmd.env("NODE_USE_ENV_PROXY", "1");
    let mut child = cmd.tokio().spawn().map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot start {}: {e}", opts.command[0]))
    })?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    // Signals for the bridge are for its child.
    if let Some(pid) = pid {
        use tokio::signal::unix::{signal, SignalKind};
        for kind in [
            SignalKind::terminate(),
            SignalKind::interrupt(),
            SignalKind::hangup(),
        ] {
            if let Ok(mut s) = signal(kind) {
                tokio::spawn(async move {
                    while s.recv().await.is_some() {
                        // SAFETY: plain system call on the child's pid.
                        unsafe {
                            libc::kill(pid, kind.as_raw_value());
                        }
                    }
                });
            }
        }
    }
    child.wait().await
}

/// Ends the process the way `status` says its child ended.
pub fn exit_like(status: std::process::ExitStatus) -> ! {
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = status.signal() {
        // SAFETY: plain system calls; the default action of these signals ends the process.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
        std::process::exit(128 + sig);
    }
    std::process::exit(status.code().unwrap_or(1))
}

async fn proxy_loop(listener: tokio::net::TcpListener, socket: Arc<PathBuf>) {
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let socket = socket.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            match UnixStream::connect(socket.as_path()).await {
                Ok(mut unix) => {
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                }
                Err(e) => {
                    respond(
                        &mut tcp,
                        "502 Bad Gateway",
                        &format!("errand bridge: the egress proxy is not reachable: {e}\n"),
                    )
                    .await
                }
            }
        });
    }
}

async fn forward_loop(listener: tokio::net::TcpListener, socket: Arc<PathBuf>, target: String) {
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let (socket, target) = (socket.clone(), target.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(mut unix) = UnixStream::connect(socket.as_path()).await else {
                return;
            };
            let connect = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
            if unix.write_all(connect.as_bytes()).await.is_err() {
                return;
            }
            let Ok(Some((buf, head_len))) = read_head(&mut unix).await else {
                return;
            };
            let status_ok = buf
                .split(|b| *b == b' ')
                .nth(1)
                .is_some_and(|code| code == b"200");
            if !status_ok {
                return;
            }
            if head_len < buf.len() && tcp.write_all(&buf[head_len..]).await.is_err() {
                return;
            }
            let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::*;

    #[test]
    fn bridge_options_parse() {
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let o = BridgeOptions::parse(&args(
            "--socket /s --forward 127.0.0.1:1 -- claude -p --socket x",
        ))
        .expect("parse");
        assert_eq!(o.socket, PathBuf::from("/s"));
        assert_eq!(o.forward, ["127.0.0.1:1"]);
        assert_eq!(o.command, ["claude", "-p", "--socket", "x"]);
        assert_eq!(o.listen.port(), 0);
        assert!(BridgeOptions::parse(&args("--socket /s --")).is_err());
        assert!(BridgeOptions::parse(&args("-- x")).is_err());
        assert!(BridgeOptions::parse(&args("--socket")).is_err());
        assert!(BridgeOptions::parse(&args("--bogus -- x")).is_err());
    }

    #[test]
    fn commands_are_wrapped_by_the_bridge() {
        let e = Egress {
            allow: vec!["127.0.0.1:8087".into(), "api.anthropic.com".into()],
            protected: vec![],
            bridge: Bridge {
                exe: "/usr/bin/errand".into(),
                args: vec!["sandbox".into(), "bridge".into()],
            },
        };
        let w = wrap(&CommandLine::new("claude", ["-p", "hi"]), &e);
        assert_eq!(w.program, BRIDGE);
        assert_eq!(
            w.args.join(" "),
            format!("sandbox bridge --socket {SOCKET} --forward 127.0.0.1:8087 -- claude -p hi")
        );
    }
}
