//! Egress control for the local and Docker backends: an HTTP proxy on the host
//! for each sandboxed process, and a bridge to it inside.
//!
//! With [`NetworkPolicy::Isolated`] the process gets a network namespace of its
//! own with nothing but loopback (bubblewrap `--unshare-net`, Docker network
//! `none`): it can reach no address directly and no name resolves. Its one way
//! out is a Unix socket mounted at [`SOCKET`], served on the host by an
//! [`EgressProxy`] speaking HTTP/1.1 proxy protocol: `CONNECT host:port`
//! (tunnels, for HTTPS) and absolute-form `http://host:port/…` requests
//! (forwarded, one per connection). The proxy resolves names itself and
//! connects only where the allowlist ([`Policy`]) says.
//!
//! Inside, the process is started by the bridge ([`bridge`]: `errand sandbox
//! bridge`, mounted at [`BRIDGE`]). It listens on the sandbox's own loopback,
//! pipes every connection to the socket, starts the command as its child with
//! `HTTP_PROXY`/`HTTPS_PROXY` (and the lowercase forms) pointing there, and exits
//! with the child's status. An allowlisted loopback destination with a port
//! (a model on the host's 127.0.0.1) is also listened for at the same address
//! inside and tunnelled with `CONNECT`, so clients that skip proxies for
//! loopback reach it too.
//!
//! # What is refused
//!
//! - Every destination not on the allowlist, before any name is resolved (so
//!   the host's resolver cannot carry data out either).
//! - Whatever an allowed destination resolves to among: link-local and cloud
//!   metadata addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254, fd00:ec2::23,
//!   100.100.100.200), `0.0.0.0/8` and `::`, broadcast and multicast, and
//!   errand's own listen addresses ([`Egress::protected`]), unless the entry
//!   names that address and port exactly; `metadata.google.internal` and
//!   `metadata.goog` unless named exactly.
//! - Through a wildcard entry (`*`, `*.suffix`): loopback, every address of
//!   this machine's interfaces (Docker's `docker0` and `br-*` bridges
//!   included, listed anew for each connection), and private, shared (CGNAT),
//!   unique-local and reserved ranges ([`INTERNAL`]). Only an entry naming the
//!   address (`10.0.0.5:5432`, `127.0.0.1:8087`) opens one of these.
//! - Through an exact name entry: loopback (unless the name is `localhost`)
//!   and this machine's own addresses; internal ranges are where the operator
//!   said the name is. See [`Policy::check_address`].
//!
//! Names are resolved once, every address is checked, and the proxy connects
//! to exactly the addresses it checked: a name cannot resolve one way for the
//! check and another for the connection. IPv6 forms that carry an IPv4
//! address (mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`,
//! compatible `::a.b.c.d`) are judged by that address too. Spellings that the
//! C library reads as IPv4 (`2130706433`, `0x7f.1`, `127.1`, `0177.0.0.1`) are
//! that address to the proxy, never names. Names are lowercased and lose a
//! trailing dot before anything else.
//!
//! Refusals are answered `403 Forbidden` with the reason, logged, and kept
//! ([`EgressProxy::refused`]) for the run's trace.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::socket::{self, SocketService};
use crate::{CommandLine, SandboxError, SandboxSpec};

/// Where the proxy's socket is mounted inside.
pub const SOCKET: &str = crate::paths::EGRESS_SOCKET;
/// Where the bridge program is mounted inside.
pub const BRIDGE: &str = crate::paths::EGRESS_BRIDGE;

/// The longest request head the proxy reads.
const MAX_HEAD: usize = 16 * 1024;
/// Connections one proxy serves at once.
const MAX_CONNECTIONS: usize = 256;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long resolving and connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Distinct refused destinations kept per proxy.
const MAX_REFUSALS: usize = 100;

/// How a sandboxed process may reach the network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NetworkPolicy {
    /// The backend's own network: the host's for the local backend,
    /// `sandbox.docker_network` for the Docker one, the namespace's (and its
    /// NetworkPolicy) for Kubernetes.
    #[default]
    Open,
    /// No network but loopback, and an HTTP proxy to the allowlisted
    /// destinations (local and Docker backends); on Kubernetes, the pod's
    /// NetworkPolicy allows the allowlisted destinations by address.
    Isolated(Egress),
}

/// The allowlist of an isolated sandbox, and how its bridge is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Egress {
    /// `host`, `*.suffix` (subdomains), `*` (any destination), or an address,
    /// each with an optional `:port` (any port without one).
    pub allow: Vec<String>,
    /// errand's own listen addresses, refused unless allowlisted by exact
    /// address and port. An unspecified address (`0.0.0.0:8080`) stands for
    /// every address of this machine.
    pub protected: Vec<SocketAddr>,
    pub bridge: Bridge,
}

/// The program that runs the bridge inside (mounted read-only at [`BRIDGE`]),
/// and the arguments that select it (`["sandbox", "bridge"]` for errand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    pub exe: PathBuf,
    pub args: Vec<String>,
}

/// A destination as a client names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// Lowercase, without a trailing dot.
    Name(String),
    Ip(IpAddr),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pattern {
    Any,
    /// `.example.com`: strict subdomains of example.com.
    Suffix(String),
    Exact(String),
    Ip(IpAddr),
}

/// One allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEntry {
    pattern: Pattern,
    port: Option<u16>,
}

impl AllowEntry {
    /// Parses `host`, `*.suffix`, `*`, `1.2.3.4`, `::1`, `[::1]`, each with an optional `:port`.
    pub fn parse(entry: &str) -> Result<AllowEntry, String> {
        let bad = || {
            format!(
                "egress entry '{entry}' is not a host, *.suffix, * or an address, with an optional :port"
            )
        };
        let s = entry.trim();
        if s.is_empty() || s.contains("://") || s.contains('/') {
            return Err(bad());
        }
        // A bare IPv6 address has several colons and no brackets.
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(AllowEntry {
                pattern: Pattern::Ip(canonical(ip)),
                port: None,
            });
        }
        let (host, port) = split_port(s).ok_or_else(bad)?;
        let pattern = if host == "*" {
            Pattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            Pattern::Suffix(format!(".{}", valid_name(suffix).ok_or_else(bad)?))
        } else {
            match parse_host(host).ok_or_else(bad)? {
                Host::Ip(ip) => Pattern::Ip(ip),
                Host::Name(n) => Pattern::Exact(n),
            }
        };
        Ok(AllowEntry { pattern, port })
    }

    /// What the entry names (for the Kubernetes backend's NetworkPolicy).
    pub(crate) fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// The entry's port; `None` for any.
    pub(crate) fn port(&self) -> Option<u16> {
        self.port
    }

    fn matches(&self, host: &Host, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match (&self.pattern, host) {
            (Pattern::Any, _) => true,
            (Pattern::Suffix(s), Host::Name(n)) => n.len() > s.len() && n.ends_with(s.as_str()),
            (Pattern::Exact(e), Host::Name(n)) => e == n,
            (Pattern::Ip(a), Host::Ip(b)) => *a == canonical(*b),
            _ => false,
        }
    }

    /// More specific entries decide first: an address over a name over a
    /// suffix over `*`, and with a port over without.
    fn rank(&self) -> u8 {
        let base = match self.pattern {
            Pattern::Ip(_) => 3,
            Pattern::Exact(_) => 2,
            Pattern::Suffix(_) => 1,
            Pattern::Any => 0,
        };
        base * 2 + u8::from(self.port.is_some())
    }

    /// `address:port` for an allowlisted loopback destination with a port,
    /// which the bridge also listens for inside.
    fn loopback_forward(&self) -> Option<String> {
        let port = self.port?;
        match &self.pattern {
            Pattern::Ip(ip) if ip.is_loopback() => Some(format!("{}:{port}", Host::Ip(*ip))),
            Pattern::Exact(n) if n == "localhost" => Some(format!("localhost:{port}")),
            _ => None,
        }
    }
}

/// Splits `host[:port]`, `[v6][:port]`.
fn split_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(parse_port(p.strip_prefix(':')?)?),
        };
        // Keep the brackets out: the caller parses the address.
        return Some((inside, port));
    }
    match s.split_once(':') {
        None => Some((s, None)),
        Some((h, p)) if !p.contains(':') => Some((h, Some(parse_port(p)?))),
        Some(_) => None,
    }
}

fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok().filter(|p| *p != 0)
}

/// A host name or address as a client wrote it (no port, no brackets).
fn parse_host(h: &str) -> Option<Host> {
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Some(Host::Ip(canonical(ip)));
    }
    let name = valid_name(h)?;
    // What the C library reads as an address is one, judged as such, and
    // never sent to a DNS server.
    Some(match legacy_ipv4(&name) {
        Some(v4) => Host::Ip(IpAddr::V4(v4)),
        None => Host::Name(name),
    })
}

/// The IPv4 address inet_aton(3) makes of `s`: one to four parts, each
/// decimal, octal (`0177`) or hexadecimal (`0x7f`), the last filling the bytes
/// left: `127.1`, `0x7f.1`, `2130706433`, `0177.0.0.1`. `None` for anything
/// else (which the resolver then gets, and its answer is checked).
fn legacy_ipv4(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(parts.len());
    for p in &parts {
        let (digits, radix) = if let Some(hex) = p.strip_prefix("0x") {
            (hex, 16)
        } else if p.len() > 1 && p.starts_with('0') {
            (&p[1..], 8)
        } else {
            (*p, 10)
        };
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return None;
        }
        nums.push(u32::from_str_radix(digits, radix).ok()?);
    }
    let (last, first) = nums.split_last()?;
    if first.iter().any(|n| *n > 255) {
        return None;
    }
    let last_bits = 32 - 8 * u32::try_from(first.len()).ok()?;
    if last_bits < 32 && *last >> last_bits != 0 {
        return None;
    }
    let high = first
        .iter()
        .enumerate()
        .fold(0u32, |acc, (i, n)| acc | (n << (24 - 8 * i)));
    Some(Ipv4Addr::from(high | last))
}

/// A DNS name, lowercased and without its trailing dot.
fn valid_name(n: &str) -> Option<String> {
    let n = n.strip_suffix('.').unwrap_or(n).to_ascii_lowercase();
    let ok = !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then_some(n)
}

/// Parses a request's authority (`host:port`, `[v6]:port`); `default_port` when it has none.
pub fn parse_authority(s: &str, default_port: Option<u16>) -> Option<(Host, u16)> {
    let (host, port) = split_port(s)?;
    let port = port.or(default_port)?;
    Some((parse_host(host)?, port))
}

/// The destination (`host:port`) a URL points at: `https://h/…` → `h:443`,
/// `http://h:8087/v1` → `h:8087`, `ssh://git@h/…` and `git@h:owner/repo` →
/// `h:22`. `None` for local paths, `file://` and what does not parse.
pub fn url_destination(url: &str) -> Option<String> {
    let url = url.trim();
    let (default_port, rest) = match url.split_once("://") {
        Some((scheme, rest)) => {
            let port = match scheme.to_ascii_lowercase().as_str() {
                "https" | "wss" => 443,
                "http" | "ws" => 80,
                "ssh" | "git+ssh" | "ssh+git" => 22,
                "git" => 9418,
                _ => return None,
            };
            (port, rest)
        }
        // scp-like `user@host:path`
        None => {
            let (user_host, _) = url.split_once(':')?;
            let (_, host) = user_host.split_once('@')?;
            let (host, port) = parse_authority(host, Some(22))?;
            return Some(format!("{host}:{port}"));
        }
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = parse_authority(authority, Some(default_port))?;
    Some(format!("{host}:{port}"))
}

/// IPv4-mapped IPv6 addresses as the IPv4 address they are.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// The IPv4 address an IPv6 address carries and leads to: NAT64
/// (`64:ff9b::/96`, through the network's translator), 6to4 (`2002:V4::/48`,
/// through a relay) and IPv4-compatible (`::a.b.c.d`, deprecated; `::` and
/// `::1` are themselves). IPv4-mapped ones are IPv4 already ([`canonical`]).
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let (s, o) = (v6.segments(), v6.octets());
    let last = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    let compatible = s[..6] == [0; 6] && !v6.is_unspecified() && !v6.is_loopback();
    if nat64 || compatible {
        Some(last)
    } else if s[0] == 0x2002 {
        Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]))
    } else {
        None
    }
}

/// Cloud metadata and credential endpoints that are not link-local.
const METADATA_V4: &[Ipv4Addr] = &[Ipv4Addr::new(100, 100, 100, 200)];
const METADATA_V6: &[Ipv6Addr] = &[
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23),
];
/// Names of cloud metadata services, refused unless allowlisted exactly.
const METADATA_NAMES: &[&str] = &["metadata.google.internal", "metadata.goog"];

fn v4_refusal(v4: Ipv4Addr) -> Option<&'static str> {
    if v4.octets()[0] == 0 {
        Some("an unspecified address (0.0.0.0/8 reaches this machine)")
    } else if v4.is_link_local() {
        Some("a link-local address (169.254.0.0/16: cloud metadata)")
    } else if METADATA_V4.contains(&v4) {
        Some("a cloud metadata address")
    } else if v4.is_broadcast() || v4.is_multicast() {
        Some("a broadcast or multicast address")
    } else {
        None
    }
}

/// Why `ip` is never reached unless allowlisted by address and port exactly,
/// or `None`. Loopback, internal and this machine's own addresses are judged
/// by [`Policy`].
pub fn refused_address(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => v4_refusal(v4),
        IpAddr::V6(v6) => {
            if let Some(r) = embedded_v4(v6).and_then(v4_refusal) {
                Some(r)
            } else if v6.is_unspecified() {
                Some("an unspecified address (:: reaches this machine)")
            } else if v6.segments()[0] & 0xffc0 == 0xfe80 {
                Some("a link-local address (fe80::/10)")
            } else if METADATA_V6.contains(&v6) {
                Some("a cloud metadata address")
            } else if v6.is_multicast() {
                Some("a multicast address")
            } else {
                None
            }
        }
    }
}

/// 127.0.0.0/8 and `::1`, however spelled.
pub(crate) fn is_loopback(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V6(v6) => v6.is_loopback() || embedded_v4(v6).is_some_and(|v4| v4.is_loopback()),
        v4 => v4.is_loopback(),
    }
}

/// A block of addresses, `net/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub net: IpAddr,
    pub len: u8,
    /// What it is, for refusals.
    pub what: &'static str,
}

impl Block {
    const fn v4(o: [u8; 4], len: u8, what: &'static str) -> Block {
        Block {
            net: IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3])),
            len,
            what,
        }
    }

    const fn v6(s: [u16; 8], len: u8, what: &'static str) -> Block {
        Block {
            net: IpAddr::V6(Ipv6Addr::new(
                s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7],
            )),
            len,
            what,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.len)
    }
}

/// Addresses inside some network rather than on the internet: private,
/// shared (CGNAT), unique-local, and reserved or special-purpose ranges. A
/// wildcard entry never reaches them; an address entry or a name entry
/// without a wildcard does. (Loopback, link-local and metadata addresses, and
/// this machine's own, are judged first, more strictly.) IPv6 forms that carry
/// an IPv4 address (mapped, NAT64, 6to4, compatible) are judged by it as well.
pub const INTERNAL: &[Block] = &[
    Block::v4([10, 0, 0, 0], 8, "a private address (10.0.0.0/8)"),
    Block::v4([172, 16, 0, 0], 12, "a private address (172.16.0.0/12)"),
    Block::v4([192, 168, 0, 0], 16, "a private address (192.168.0.0/16)"),
    Block::v4(
        [100, 64, 0, 0],
        10,
        "a shared (CGNAT) address (100.64.0.0/10)",
    ),
    Block::v4([192, 0, 0, 0], 24, "a reserved address (192.0.0.0/24)"),
    Block::v4([192, 0, 2, 0], 24, "a documentation address (192.0.2.0/24)"),
    Block::v4(
        [198, 51, 100, 0],
        24,
        "a documentation address (198.51.100.0/24)",
    ),
    Block::v4(
        [203, 0, 113, 0],
        24,
        "a documentation address (203.0.113.0/24)",
    ),
    Block::v4(
        [198, 18, 0, 0],
        15,
        "a benchmarking address (198.18.0.0/15)",
    ),
    Block::v4(
        [192, 88, 99, 0],
        24,
        "a 6to4 relay address (192.88.99.0/24)",
    ),
    Block::v4([240, 0, 0, 0], 4, "a reserved address (240.0.0.0/4)"),
    Block::v6(
        [0xfc00, 0, 0, 0, 0, 0, 0, 0],
        7,
        "a unique local address (fc00::/7)",
    ),
    Block::v6(
        [0xfec0, 0, 0, 0, 0, 0, 0, 0],
        10,
        "a site-local address (fec0::/10)",
    ),
    Block::v6([0; 8], 96, "an IPv4-compatible address (::/96)"),
    Block::v6(
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "a local-use NAT64 address (64:ff9b:1::/48)",
    ),
    Block::v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        32,
        "a Teredo address (2001::/32)",
    ),
    Block::v6(
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        "a documentation address (2001:db8::/32)",
    ),
    Block::v6(
        [0x3fff, 0, 0, 0, 0, 0, 0, 0],
        20,
        "a documentation address (3fff::/20)",
    ),
    Block::v6(
        [0x100, 0, 0, 0, 0, 0, 0, 0],
        64,
        "a discard address (100::/64)",
    ),
    Block::v6(
        [0x5f00, 0, 0, 0, 0, 0, 0, 0],
        16,
        "an SRv6 segment address (5f00::/16)",
    ),
];

/// What an address is to the egress rules ([`Policy::check_address`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// On the internet.
    Public,
    /// [`refused_address`]: only an exact `address:port` entry reaches it.
    Refused(&'static str),
    /// 127.0.0.0/8, `::1`.
    Loopback,
    /// An address of one of this machine's interfaces (Docker's bridges too).
    Own,
    /// In [`INTERNAL`].
    Internal(&'static str),
}

impl Class {
    fn of(ip: IpAddr, own: &OwnAddresses) -> Class {
        let ip = canonical(ip);
        if let Some(why) = refused_address(ip) {
            return Class::Refused(why);
        }
        if is_loopback(ip) {
            return Class::Loopback;
        }
        if let Some(v4) = match ip {
            IpAddr::V6(v6) => embedded_v4(v6),
            IpAddr::V4(_) => None,
        } {
            let inner = Class::of(IpAddr::V4(v4), own);
            if inner != Class::Public {
                return inner;
            }
        }
        if own.contains(ip) {
            return Class::Own;
        }
        match INTERNAL.iter().find(|b| b.contains(ip)) {
            Some(b) => Class::Internal(b.what),
            None => Class::Public,
        }
    }
}

/// Every address of every network interface of this machine (getifaddrs(3)):
/// loopback, Ethernet, Docker's `docker0` and `br-*` bridges, VPNs.
pub fn interface_addresses() -> std::io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list freed below, once.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        let addr = ifa.ifa_addr;
        if !addr.is_null() {
            // SAFETY: a non-null ifa_addr points at a sockaddr whose family
            // says which struct it is; each is read as that struct.
            match i32::from(unsafe { (*addr).sa_family }) {
                libc::AF_INET => {
                    let sin = unsafe { &*(addr as *const libc::sockaddr_in) };
                    out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                        sin.sin_addr.s_addr,
                    ))));
                }
                libc::AF_INET6 => {
                    let sin6 = unsafe { &*(addr as *const libc::sockaddr_in6) };
                    out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                }
                _ => {}
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and nothing points into it any more.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// This machine's own addresses, read anew for each connection the proxy
/// judges (interfaces come and go: Docker adds a `br-*` for every network).
#[derive(Debug, Default)]
struct OwnAddresses(Vec<IpAddr>);

impl OwnAddresses {
    fn now(extra: &[IpAddr]) -> OwnAddresses {
        let mut list = interface_addresses().unwrap_or_else(|e| {
            // The bind test in `contains` still finds them.
            tracing::warn!("egress: cannot list this machine's interfaces: {e}");
            Vec::new()
        });
        list.extend_from_slice(extra);
        OwnAddresses(list.into_iter().map(canonical).collect())
    }

    /// On an interface, or bindable (an address the kernel routes as local,
    /// such as an AnyIP route, is one too).
    fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.contains(&ip) || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
    }
}

/// An allowlist, with errand's own addresses.
#[derive(Debug, Clone)]
pub struct Policy {
    entries: Vec<AllowEntry>,
    protected: Vec<SocketAddr>,
    /// Addresses taken as this machine's besides its interfaces' (tests).
    extra_own: Vec<IpAddr>,
    /// Internal hosts served by errand itself on a Unix socket (the run's git
    /// proxy): plain-HTTP requests to them go to the socket and the name is
    /// never resolved. From allow entries `host=unix:/path`.
    routes: Vec<(String, PathBuf)>,
}

/// The prefix of an allow entry routing a host to one of errand's own sockets:
/// `<host>=unix:<socket path>`.
pub const ROUTE_MARK: &str = "=unix:";

/// An allow entry that sends plain-HTTP requests for `host` (port 80) to the
/// Unix socket at `socket`, never resolving `host`.
pub fn route_entry(host: &str, socket: &Path) -> String {
    format!("{host}{ROUTE_MARK}{}", socket.display())
}

impl Policy {
    /// Fails with every entry that does not parse.
    pub fn new(allow: &[String], protected: &[SocketAddr]) -> Result<Policy, Vec<String>> {
        let mut entries = Vec::new();
        let mut bad = Vec::new();
        let mut routes = Vec::new();
        for a in allow {
            if let Some((host, socket)) = a.split_once(ROUTE_MARK) {
                match valid_name(host) {
                    Some(h) if socket.starts_with('/') => routes.push((h, PathBuf::from(socket))),
                    _ => bad.push(format!("{a}: not host=unix:/socket")),
                }
                continue;
            }
            match AllowEntry::parse(a) {
                Ok(e) => entries.push(e),
                Err(e) => bad.push(e),
            }
        }
        if !bad.is_empty() {
            return Err(bad);
        }
        Ok(Policy {
            entries,
            protected: protected.to_vec(),
            extra_own: Vec::new(),
            routes,
        })
    }

    /// The socket errand serves `host:port` on itself, if any.
    fn route(&self, host: &Host, port: u16) -> Option<&Path> {
        let Host::Name(n) = host else { return None };
        (port == 80)
            .then(|| self.routes.iter().find(|(h, _)| h == n))
            .flatten()
            .map(|(_, p)| p.as_path())
    }

    /// The entry that lets `host:port` through, before anything is resolved.
    pub fn admit(&self, host: &Host, port: u16) -> Result<&AllowEntry, &'static str> {
        let entry = self
            .entries
            .iter()
            .filter(|e| e.matches(host, port))
            .max_by_key(|e| e.rank())
            .ok_or("not on the allowlist")?;
        if let Host::Name(n) = host {
            if METADATA_NAMES.contains(&n.as_str()) && entry.pattern != Pattern::Exact(n.clone()) {
                return Err("a cloud metadata service");
            }
        }
        Ok(entry)
    }

    /// Whether `ip:port`, which `entry` let through, may be connected to;
    /// the reason when not. By what the address is and which entry led there:
    ///
    /// - An `address:port` entry opens exactly that, whatever it is (errand's
    ///   own API included), to a client that asks for that address: a name
    ///   that resolves there, through another entry, is judged as below.
    /// - [`refused_address`] (metadata, link-local, unspecified, broadcast,
    ///   multicast) and errand's own API addresses: nothing else opens them.
    /// - Public addresses: any entry.
    /// - Loopback, this machine's own addresses, [`INTERNAL`]: an address
    ///   entry (any port when it has none) opens the address it names; a
    ///   wildcard (`*`, `*.suffix`) never, since the client picks the name and
    ///   anyone's DNS can point a name anywhere. An exact name entry is
    ///   trusted to resolve where the operator meant for internal ranges (an
    ///   internal git server at `git.corp`), but not for loopback or this
    ///   machine's own addresses (DNS rebinding onto the host's services, the
    ///   Docker engine or a database on 0.0.0.0): those take an address entry,
    ///   except loopback through the name `localhost`.
    ///
    /// Reads this machine's addresses; [`Policy::resolve`] reads them once
    /// for all the addresses of a name.
    pub fn check_address(&self, entry: &AllowEntry, ip: IpAddr, port: u16) -> Result<(), String> {
        self.judge(entry, ip, port, &OwnAddresses::now(&self.extra_own))
    }

    /// [`Policy::check_address`] with this machine's addresses read already.
    fn judge(
        &self,
        entry: &AllowEntry,
        ip: IpAddr,
        port: u16,
        own: &OwnAddresses,
    ) -> Result<(), String> {
        let ip = canonical(ip);
        if entry.pattern == Pattern::Ip(ip) && entry.port == Some(port) {
            return Ok(());
        }
        let class = Class::of(ip, own);
        if let Class::Refused(why) = class {
            return Err(why.to_string());
        }
        if self.is_protected(ip, port, own) {
            return Err("errand's own API address".into());
        }
        let exact = Host::Ip(ip);
        match (class, &entry.pattern) {
            (Class::Public, _) | (_, Pattern::Ip(_)) => Ok(()),
            (Class::Loopback, Pattern::Exact(n)) if n == "localhost" => Ok(()),
            (Class::Internal(_), Pattern::Exact(_)) => Ok(()),
            (Class::Loopback, Pattern::Exact(_)) => Err(format!(
                "a loopback address ({exact}) reached through a name: allowlist it as {exact}:{port}"
            )),
            (Class::Own, Pattern::Exact(_)) => Err(format!(
                "an address of this machine ({exact}) reached through a name: allowlist it as \
                 {exact}:{port}"
            )),
            (Class::Loopback, _) => Err(format!(
                "a loopback address ({exact}) through a wildcard entry: only {exact}:{port} \
                 allowlisted opens it"
            )),
            (Class::Own, _) => Err(format!(
                "an address of this machine ({exact}) through a wildcard entry: only \
                 {exact}:{port} allowlisted opens it"
            )),
            (Class::Internal(what), _) => Err(format!(
                "{what} through a wildcard entry: only {exact}:{port} (or its name) allowlisted \
                 opens it"
            )),
            (Class::Refused(why), _) => Err(why.to_string()),
        }
    }

    fn is_protected(&self, ip: IpAddr, port: u16, own: &OwnAddresses) -> bool {
        self.protected.iter().any(|p| {
            p.port() == port
                && (canonical(p.ip()) == ip
                    || (p.ip().is_unspecified() && (is_loopback(ip) || own.contains(ip))))
        })
    }

    /// The addresses `host:port` may be reached at: resolved on this machine,
    /// each checked. Fails with the reason (a refusal) or a resolution error.
    pub async fn resolve(&self, host: &Host, port: u16) -> Result<Vec<SocketAddr>, Denied> {
        let entry = self
            .admit(host, port)
            .map_err(|r| Denied::Refused(r.into()))?;
        let addrs: Vec<SocketAddr> = match host {
            Host::Ip(ip) => vec![SocketAddr::new(*ip, port)],
            Host::Name(n) => {
                match tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    tokio::net::lookup_host((n.as_str(), port)),
                )
                .await
                {
                    Ok(Ok(a)) => a.collect(),
                    Ok(Err(e)) => return Err(Denied::Unreachable(format!("cannot resolve: {e}"))),
                    Err(_) => return Err(Denied::Unreachable("resolving timed out".into())),
                }
            }
        };
        // The proxy connects to exactly these, as checked here: nothing is
        // resolved again between the check and the connection.
        let own = OwnAddresses::now(&self.extra_own);
        let mut ok = Vec::new();
        let mut first_refusal = None;
        for a in addrs {
            match self.judge(entry, a.ip(), port, &own) {
                Ok(()) => ok.push(a),
                Err(why) => {
                    first_refusal.get_or_insert(why);
                }
            }
        }
        match (ok.is_empty(), first_refusal) {
            (false, _) => Ok(ok),
            (true, Some(why)) => Err(Denied::Refused(why)),
            (true, None) => Err(Denied::Unreachable("the name has no address".into())),
        }
    }

    /// The allowlisted loopback destinations the bridge listens for inside.
    pub fn loopback_forwards(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .entries
            .iter()
            .filter_map(AllowEntry::loopback_forward)
            .collect();
        out.dedup();
        out
    }
}

/// Why the proxy did not connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The policy refuses it (403).
    Refused(String),
    /// Allowed, but it cannot be reached (502).
    Unreachable(String),
}

/// One destination the proxy refused, and how often.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Refusal {
    /// `host:port` as the sandbox asked for it.
    pub destination: String,
    pub reason: String,
    pub count: u64,
}

/// A bounded tally of what a host-side service refused a sandbox (the egress
/// proxy; the runner's git credential server), for the run's trace.
#[derive(Debug, Default)]
pub struct RefusalLog {
    list: Vec<Refusal>,
    dropped: u64,
}

impl RefusalLog {
    /// Everything refused so far, in order of first refusal; past the bound,
    /// one `(others)` entry counts the rest.
    pub fn snapshot(&self) -> Vec<Refusal> {
        let mut out = self.list.clone();
        if self.dropped > 0 {
            out.push(Refusal {
                destination: "(others)".into(),
                reason: "more refusals than errand keeps".into(),
                count: self.dropped,
            });
        }
        out
    }

    /// Records a refusal; whether it is the first for this destination.
    pub fn add(&mut self, destination: &str, reason: &str) -> bool {
        if let Some(r) = self.list.iter_mut().find(|r| r.destination == destination) {
            r.count += 1;
            return false;
        }
        if self.list.len() >= MAX_REFUSALS {
            self.dropped += 1;
            return false;
        }
        self.list.push(Refusal {
            destination: destination.to_string(),
            reason: reason.to_string(),
            count: 1,
        });
        true
    }
}

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

/// Reads a request or response head: the bytes read and the head's length.
async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Option<(Vec<u8>, usize)>> {
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

async fn respond<S: AsyncWrite + Unpin>(s: &mut S, status: &str, body: &str) {
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
    let (buf, head_len) = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut client)).await {
        Ok(Ok(Some(h))) => h,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            respond(
                &mut client,
                "400 Bad Request",
                &format!("errand egress: {e}\n"),
            )
            .await;
            return;
        }
        Err(_) => {
            respond(
                &mut client,
                "408 Request Timeout",
                "errand egress: no request\n",
            )
            .await;
            return;
        }
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
    // CONNECT host:port, or METHOD http://host[:port]/path.
    let (authority, origin_path) = if method.eq_ignore_ascii_case("CONNECT") {
        (target, None)
    } else {
        let lower = target.get(..7).map(str::to_ascii_lowercase);
        let Some(rest) = (lower.as_deref() == Some("http://"))
            .then(|| target.get(7..))
            .flatten()
        else {
            let why = if target.to_ascii_lowercase().starts_with("https://") {
                "use CONNECT for https:// destinations"
            } else {
                "only CONNECT and absolute http:// requests are proxied"
            };
            respond(
                &mut client,
                "400 Bad Request",
                &format!("errand egress: {why}\n"),
            )
            .await;
            return;
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let path = match &rest[end..] {
            "" => "/".to_string(),
            p if p.starts_with('/') => p.to_string(),
            p => format!("/{p}"),
        };
        (&rest[..end], Some(path))
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
        match UnixStream::connect(socket).await {
            Ok(upstream) => {
                relay(
                    client,
                    upstream,
                    method,
                    &path,
                    authority,
                    &req,
                    &buf[head_len..],
                )
                .await
            }
            Err(e) => {
                respond(
                    &mut client,
                    "502 Bad Gateway",
                    &format!("errand egress: {destination} is not being served: {e}\n"),
                )
                .await
            }
        }
        return;
    }
    let addrs = match policy.resolve(&host, port).await {
        Ok(a) => a,
        Err(Denied::Refused(why)) => {
            let first = log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .add(&destination, &why);
            if first {
                tracing::info!("egress refused: {destination}: {why}");
            }
            respond(
                &mut client,
                "403 Forbidden",
                &format!("errand egress: {destination} refused: {why}\n"),
            )
            .await;
            return;
        }
        Err(Denied::Unreachable(why)) => {
            respond(
                &mut client,
                "502 Bad Gateway",
                &format!("errand egress: {destination}: {why}\n"),
            )
            .await;
            return;
        }
    };
    let mut upstream = None;
    let mut last_err = String::from("no address");
    for a in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(a)).await {
            Ok(Ok(s)) => {
                upstream = Some(s);
                break;
            }
            Ok(Err(e)) => last_err = e.to_string(),
            Err(_) => last_err = "connecting timed out".into(),
        }
    }
    let Some(mut upstream) = upstream else {
        respond(
            &mut client,
            "502 Bad Gateway",
            &format!("errand egress: cannot connect to {destination}: {last_err}\n"),
        )
        .await;
        return;
    };
    let _ = upstream.set_nodelay(true);
    let rest = &buf[head_len..];
    match origin_path {
        None => {
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
        Some(path) => relay(client, upstream, method, &path, authority, &req, rest).await,
    }
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

// ---------------------------------------------------------------------------
// The bridge, inside the sandbox.

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

    let mut cmd = tokio::process::Command::new(&opts.command[0]);
    cmd.args(&opts.command[1..]);
    for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        cmd.env(k, &proxy);
    }
    for k in ["NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"] {
        cmd.env_remove(k);
    }
    cmd.env("NO_PROXY", "").env("no_proxy", "");
    // Node.js 24+: its own fetch and http honour the variables too.
    cmd.env("NODE_USE_ENV_PROXY", "1");
    let mut child = cmd.spawn().map_err(|e| {
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

    fn policy(allow: &[&str]) -> Policy {
        Policy::new(
            &allow.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            &["127.0.0.1:8080".parse().expect("addr")],
        )
        .expect("policy")
    }

    fn name(n: &str) -> Host {
        Host::Name(n.into())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn entries_parse_and_bad_ones_are_named() {
        for ok in [
            "api.anthropic.com",
            "API.Anthropic.com.",
            "*.github.com",
            "*",
            "*:443",
            "127.0.0.1:8087",
            "::1",
            "[::1]:80",
            "localhost:3000",
            "10.0.0.1",
        ] {
            assert!(AllowEntry::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "https://api.anthropic.com",
            "a..b",
            "host:0",
            "host:99999",
            "host:x",
            "*.",
            "a b",
            "10.0.0.0/8",
            "[::1",
        ] {
            assert!(AllowEntry::parse(bad).is_err(), "{bad}");
        }
        let err = Policy::new(&["ok.com".into(), "bad host".into()], &[]).expect_err("bad");
        assert_eq!(err.len(), 1);
        assert!(err[0].contains("bad host"), "{err:?}");
    }

    #[test]
    fn the_allowlist_matches_hosts_suffixes_and_ports() {
        let p = policy(&[
            "api.anthropic.com:443",
            "*.github.com",
            "127.0.0.1:8087",
            "EXAMPLE.org",
        ]);
        assert!(p.admit(&name("api.anthropic.com"), 443).is_ok());
        assert!(p.admit(&name("api.anthropic.com"), 80).is_err(), "port");
        assert!(p.admit(&name("evil-api.anthropic.com"), 443).is_err());
        assert!(p.admit(&name("anthropic.com"), 443).is_err());
        assert!(p.admit(&name("api.github.com"), 443).is_ok());
        assert!(p.admit(&name("a.b.github.com"), 22).is_ok());
        assert!(p.admit(&name("github.com"), 443).is_err(), "apex");
        assert!(p.admit(&name("evilgithub.com"), 443).is_err());
        assert!(p.admit(&name("example.org"), 1234).is_ok(), "any port");
        assert!(p.admit(&Host::Ip(ip("127.0.0.1")), 8087).is_ok());
        assert!(p.admit(&Host::Ip(ip("::ffff:127.0.0.1")), 8087).is_ok());
        assert!(p.admit(&Host::Ip(ip("127.0.0.1")), 8088).is_err());
        assert!(p.admit(&name("localhost"), 8087).is_err(), "names differ");
        assert_eq!(
            p.admit(&name("anything.net"), 443),
            Err("not on the allowlist")
        );
    }

    #[test]
    fn urls_name_their_destination() {
        for (url, want) in [
            ("https://api.anthropic.com", Some("api.anthropic.com:443")),
            ("http://127.0.0.1:8087/v1", Some("127.0.0.1:8087")),
            ("https://User:pw@GitHub.com/o/r.git", Some("github.com:443")),
            ("http://[::1]:9/x", Some("[::1]:9")),
            (
                "ssh://git@gitlab.example:2222/o/r",
                Some("gitlab.example:2222"),
            ),
            ("git@github.com:o/r.git", Some("github.com:22")),
            ("file:///srv/repo.git", None),
            ("/srv/repo", None),
            ("https://", None),
        ] {
            assert_eq!(url_destination(url).as_deref(), want, "{url}");
        }
    }

    #[test]
    fn authorities_parse() {
        assert_eq!(
            parse_authority("Example.COM:443", None),
            Some((name("example.com"), 443))
        );
        assert_eq!(
            parse_authority("[::1]:80", None),
            Some((Host::Ip(ip("::1")), 80))
        );
        assert_eq!(
            parse_authority("[::ffff:169.254.169.254]:80", None),
            Some((Host::Ip(ip("169.254.169.254")), 80))
        );
        assert_eq!(parse_authority("host", Some(80)), Some((name("host"), 80)));
        assert_eq!(parse_authority("host", None), None);
        assert_eq!(parse_authority("a:b:c", None), None);
        assert_eq!(parse_authority("bad host:1", None), None);
    }

    #[test]
    fn metadata_link_local_and_unspecified_addresses_are_always_refused() {
        for a in [
            "169.254.169.254",
            "169.254.170.2",
            "169.254.0.1",
            "100.100.100.200",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "fd00:ec2::254",
            "fd00:ec2::23",
            "fe80::1",
            "febf::1",
            "::",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "::a9fe:a9fe",
            "ff02::1",
        ] {
            assert!(refused_address(ip(a)).is_some(), "{a} must be refused");
        }
        for a in [
            "1.1.1.1",
            "10.0.0.1",
            "127.0.0.1",
            "::1",
            "2606:4700::1111",
            "fd00:ec3::254",
            "fec0::1",
            "::ffff:1.1.1.1",
            "64:ff9b::101:101",
        ] {
            assert!(
                refused_address(ip(a)).is_none(),
                "{a} is not always refused"
            );
        }
    }

    #[test]
    fn resolved_addresses_are_checked_whatever_name_led_there() {
        let p = policy(&[
            "*",
            "127.0.0.1:8087",
            "localhost:9000",
            "169.254.169.254:80",
        ]);
        let any = p.admit(&name("x.example"), 443).expect("any");
        // A public name resolving to metadata, loopback or 0.0.0.0: refused.
        for a in [
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "fd00:ec2::254",
            "127.0.0.1",
            "::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
        ] {
            assert!(p.check_address(any, ip(a), 80).is_err(), "{a}");
        }
        assert!(p.check_address(any, ip("93.184.215.14"), 443).is_ok());
        // Loopback allowlisted by address (or as localhost) is fine.
        let lo = p
            .admit(&Host::Ip(ip("127.0.0.1")), 8087)
            .expect("allowlisted");
        assert!(p.check_address(lo, ip("127.0.0.1"), 8087).is_ok());
        let local = p.admit(&name("localhost"), 9000).expect("localhost");
        assert!(p.check_address(local, ip("::1"), 9000).is_ok());
        // Metadata named exactly, by address and port, is the one way through.
        let md = p
            .admit(&Host::Ip(ip("169.254.169.254")), 80)
            .expect("entry");
        assert!(p.check_address(md, ip("169.254.169.254"), 80).is_ok());
        let md_any = p
            .admit(&Host::Ip(ip("169.254.169.254")), 81)
            .expect("only *");
        assert!(p.check_address(md_any, ip("169.254.169.254"), 81).is_err());
        // Metadata names need an exact entry, even under *.
        assert_eq!(
            p.admit(&name("metadata.google.internal"), 80).err(),
            Some("a cloud metadata service")
        );
        let named = policy(&["metadata.google.internal"]);
        assert!(named.admit(&name("metadata.google.internal"), 80).is_ok());
    }

    #[test]
    fn errands_own_addresses_need_an_exact_entry() {
        let p = Policy::new(
            &["127.0.0.1".into(), "*".into()],
            &[
                "127.0.0.1:8080".parse().expect("addr"),
                "0.0.0.0:9090".parse().expect("addr"),
            ],
        )
        .expect("policy");
        let lo = p.admit(&Host::Ip(ip("127.0.0.1")), 8080).expect("entry");
        assert_eq!(
            p.check_address(lo, ip("127.0.0.1"), 8080),
            Err("errand's own API address".to_string())
        );
        assert!(p.check_address(lo, ip("127.0.0.1"), 8081).is_ok());
        // Listening on 0.0.0.0 covers loopback and this machine's addresses.
        let lo = p.admit(&Host::Ip(ip("127.0.0.1")), 9090).expect("entry");
        assert!(p.check_address(lo, ip("127.0.0.1"), 9090).is_err());
        assert!(p.check_address(lo, ip("::ffff:127.0.0.1"), 9090).is_err());
        let exact = Policy::new(
            &["127.0.0.1:8080".into()],
            &["127.0.0.1:8080".parse().expect("addr")],
        )
        .expect("policy");
        let e = exact
            .admit(&Host::Ip(ip("127.0.0.1")), 8080)
            .expect("entry");
        assert!(exact.check_address(e, ip("127.0.0.1"), 8080).is_ok());
    }

    /// Resolves `authority` as the proxy does (literal forms are not looked
    /// up), against `p`.
    async fn reach(p: &Policy, authority: &str) -> Result<Vec<SocketAddr>, Denied> {
        let (host, port) = parse_authority(authority, None).expect("authority");
        p.resolve(&host, port).await
    }

    fn refused(r: Result<Vec<SocketAddr>, Denied>) -> String {
        match r {
            Err(Denied::Refused(why)) => why,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn numeric_spellings_are_the_addresses_they_spell() {
        for (spelling, want) in [
            ("127.1", "127.0.0.1"),
            ("0x7f.1", "127.0.0.1"),
            ("0X7F.0.0.1", "127.0.0.1"),
            ("2130706433", "127.0.0.1"),
            ("0x7f000001", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("127.0.1", "127.0.0.1"),
            ("127.0.0.1.", "127.0.0.1"),
            ("10.1", "10.0.0.1"),
            ("0xa.0.0.5", "10.0.0.5"),
            ("167772165", "10.0.0.5"),
            ("0", "0.0.0.0"),
            ("0xa9fea9fe", "169.254.169.254"),
            ("::ffff:7f00:1", "127.0.0.1"),
        ] {
            assert_eq!(parse_host(spelling), Some(Host::Ip(ip(want))), "{spelling}");
        }
        for name in [
            "1.2.3.4.5",
            "256.1.1.1",
            "1.256.1.1",
            "1.2.65536",
            "4294967296",
            "08.1.1.1",
            "0x.1",
            "0x7g.1",
            "1e2",
            "deadbeef",
            "127.0.0.1.example",
        ] {
            assert!(
                matches!(parse_host(name), Some(Host::Name(_))),
                "{name}: {:?}",
                parse_host(name)
            );
        }
        // The bound of the last part: 24 bits after one part, 16 after two.
        assert_eq!(
            parse_host("1.16777215"),
            Some(Host::Ip(ip("1.255.255.255")))
        );
        assert!(matches!(parse_host("1.16777216"), Some(Host::Name(_))));
        assert_eq!(parse_host("1.2.65535"), Some(Host::Ip(ip("1.2.255.255"))));
    }

    #[test]
    fn blocks_hold_their_bounds() {
        let b = |s: &str| INTERNAL.iter().find(|b| b.to_string() == s).expect(s);
        let rfc1918 = b("172.16.0.0/12");
        assert!(rfc1918.contains(ip("172.16.0.0")));
        assert!(rfc1918.contains(ip("172.31.255.255")));
        assert!(rfc1918.contains(ip("::ffff:172.20.0.1")));
        assert!(!rfc1918.contains(ip("172.15.255.255")));
        assert!(!rfc1918.contains(ip("172.32.0.0")));
        let cgnat = b("100.64.0.0/10");
        assert!(cgnat.contains(ip("100.127.255.255")));
        assert!(!cgnat.contains(ip("100.128.0.0")));
        assert!(!cgnat.contains(ip("100.63.255.255")));
        let ula = b("fc00::/7");
        assert!(ula.contains(ip("fdff:ffff::1")));
        assert!(!ula.contains(ip("fe00::1")));
        assert!(!ula.contains(ip("fbff::1")));
        let every = Block::v4([0, 0, 0, 0], 0, "all");
        assert!(every.contains(ip("255.1.2.3")));
        assert!(!every.contains(ip("::2")));
    }

    #[tokio::test]
    async fn wildcards_reach_no_private_shared_or_reserved_address() {
        let internal = [
            "10.0.0.1",
            "10.255.255.254",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "192.0.0.8",
            "198.18.0.1",
            "240.0.0.1",
            "[fc00::1]",
            "[fd12:3456::1]",
            "[fec0::1]",
            "[2001:db8::1]",
            "[2001::1]",
            "[64:ff9b:1::a]",
            // The same behind IPv6 forms that carry them.
            "[::ffff:10.0.0.1]",
            "[::ffff:c0a8:101]",
            "[64:ff9b::a00:1]",
            "[2002:a00:1::1]",
            "[::a00:1]",
            "[::c0a8:101]",
            // And in C-library spellings.
            "10.1",
            "0xa.0.0.1",
            "167772161",
            "0300.0250.1.1",
        ];
        for allow in ["*", "*:5432", "*.example.com"] {
            let p = policy(&[allow]);
            for a in internal {
                let dest = format!("{a}:5432");
                if allow.starts_with("*.") {
                    // A literal address never matches a suffix; the name does.
                    assert!(reach(&p, &dest).await.is_err(), "{allow}: {dest}");
                    continue;
                }
                let why = refused(reach(&p, &dest).await);
                assert!(why.contains("only"), "{allow}: {dest}: {why}");
            }
            // Public addresses and their IPv6 forms stay reachable (as far as
            // the policy goes: nothing is connected to here).
            let any = p.admit(&Host::Ip(ip("8.8.8.8")), 5432);
            if let Ok(any) = any {
                for a in [
                    "8.8.8.8",
                    "11.0.0.1",
                    "172.32.0.1",
                    "100.128.0.1",
                    "192.169.0.1",
                    "2606:4700::1111",
                    "::ffff:8.8.8.8",
                    "64:ff9b::808:808",
                    "2002:808:808::1",
                ] {
                    assert_eq!(p.check_address(any, ip(a), 5432), Ok(()), "{allow}: {a}");
                }
            }
        }
        // Through a suffix, by name: the resolved address is what counts.
        let p = policy(&["*.example.com"]);
        let entry = p.admit(&name("db.example.com"), 5432).expect("entry");
        for a in [
            "10.0.0.1",
            "fd00::1",
            "::ffff:192.168.0.1",
            "64:ff9b::ac10:1",
        ] {
            let why = p.check_address(entry, ip(a), 5432).expect_err(a);
            assert!(why.contains("wildcard"), "{a}: {why}");
        }
        assert_eq!(p.check_address(entry, ip("93.184.215.14"), 5432), Ok(()));
    }

    #[tokio::test]
    async fn wildcards_reach_no_loopback_however_spelled() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        for allow in ["*", "*.localhost"] {
            let p = policy(&[allow]);
            for a in [
                "127.0.0.1",
                "127.0.0.2",
                "127.255.255.254",
                "127.1",
                "0x7f.1",
                "0X7F.1",
                "2130706433",
                "0x7f000001",
                "017700000001",
                "0177.0.0.1",
                "127.0.0.1.",
                "[::1]",
                "[0:0:0:0:0:0:0:1]",
                "[::ffff:127.0.0.1]",
                "[::ffff:7f00:1]",
                "[::127.0.0.1]",
                "[64:ff9b::7f00:1]",
                "[2002:7f00:1::]",
                "localhost",
                "LOCALHOST",
                "localhost.",
                "LocalHost.",
            ] {
                let dest = format!("{a}:{port}");
                let r = reach(&p, &dest).await;
                if allow == "*" {
                    let why = refused(r);
                    assert!(why.contains("loopback"), "{dest}: {why}");
                } else {
                    assert!(r.is_err(), "{allow}: {dest}");
                }
            }
        }
        // Named by address and port, it is reachable (the scripted model).
        let p = policy(&["*", &format!("127.0.0.1:{port}")]);
        assert!(reach(&p, &format!("127.0.0.1:{port}")).await.is_ok());
        assert!(reach(&p, &format!("0x7f.1:{port}")).await.is_ok());
        assert!(reach(&p, &format!("[::ffff:127.0.0.1]:{port}"))
            .await
            .is_ok());
        // Not through a name that resolves there, and nothing beside it.
        assert!(reach(&p, &format!("localhost:{port}")).await.is_err());
        assert!(reach(&p, &format!("127.0.0.2:{port}")).await.is_err());
        assert!(reach(&p, &format!("127.0.0.1:{}", port ^ 1)).await.is_err());
    }

    #[test]
    fn this_machines_interfaces_are_listed() {
        let own = interface_addresses().expect("getifaddrs");
        assert!(own.contains(&ip("127.0.0.1")), "{own:?}");
        // The source address of the default route, found another way, is one.
        let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
        if s.connect("192.0.2.1:9").is_ok() {
            let src = s.local_addr().expect("addr").ip();
            if !src.is_unspecified() {
                assert!(own.contains(&src), "{src} not in {own:?}");
            }
        }
    }

    #[test]
    fn this_machines_own_addresses_need_an_address_entry() {
        // A public address on one of this machine's interfaces (as a VM with a
        // public IP has); the real ones follow.
        let mut p = policy(&[
            "*",
            "*.example.com",
            "api.example.com",
            "localhost",
            "1.2.3.4:5432",
        ]);
        p.extra_own = vec![ip("1.2.3.4"), ip("2001:4860:4860::8888")];
        let any = p.admit(&name("x.example"), 22).expect("any");
        let suffix = p.admit(&name("db.example.com"), 22).expect("suffix");
        let named = p.admit(&name("api.example.com"), 22).expect("named");
        let local = p.admit(&name("localhost"), 22).expect("localhost");
        for a in [
            "1.2.3.4",
            "::ffff:1.2.3.4",
            "64:ff9b::102:304",
            "2001:4860:4860::8888",
        ] {
            for entry in [any, suffix, named, local] {
                let why = p.check_address(entry, ip(a), 22).expect_err(a);
                assert!(why.contains("this machine"), "{a}: {why}");
            }
        }
        // The same address, not this machine's: public.
        let stranger = policy(&["*"]);
        let s_any = stranger.admit(&name("x.example"), 22).expect("any");
        assert_eq!(stranger.check_address(s_any, ip("1.2.3.4"), 22), Ok(()));
        // Only an address entry opens it.
        let lit = p.admit(&Host::Ip(ip("1.2.3.4")), 5432).expect("entry");
        assert_eq!(p.check_address(lit, ip("1.2.3.4"), 5432), Ok(()));
        assert!(
            p.check_address(any, ip("1.2.3.4"), 5432).is_err(),
            "by name"
        );
        assert!(p.check_address(any, ip("1.2.3.4"), 5433).is_err());
        // Every address of every real interface (docker0 and br-* among
        // them): refused through `*` and through a name.
        let p = policy(&["*", "api.example.com"]);
        let any = p.admit(&name("x.example"), 2375).expect("any");
        let named = p.admit(&name("api.example.com"), 2375).expect("named");
        let own = interface_addresses().expect("getifaddrs");
        for a in &own {
            assert!(p.check_address(any, *a, 2375).is_err(), "{a}");
            assert!(p.check_address(named, *a, 2375).is_err(), "{a}");
            if refused_address(*a).is_none() && !is_loopback(*a) {
                let why = p.check_address(any, *a, 2375).expect_err("own");
                assert!(why.contains("this machine"), "{a}: {why}");
            }
        }
    }

    #[test]
    fn exact_names_reach_internal_ranges_but_not_loopback_or_this_machine() {
        let mut p = policy(&["git.corp:443", "localhost:9000", "*"]);
        p.extra_own = vec![ip("10.9.9.9")];
        let git = p.admit(&name("git.corp"), 443).expect("entry");
        for a in [
            "10.1.2.3",
            "172.20.0.5",
            "192.168.7.7",
            "100.64.1.1",
            "fd00::5",
        ] {
            assert_eq!(p.check_address(git, ip(a), 443), Ok(()), "{a}");
        }
        for a in ["127.0.0.1", "::1", "::ffff:127.0.0.1", "10.9.9.9"] {
            assert!(p.check_address(git, ip(a), 443).is_err(), "{a}");
        }
        for a in ["169.254.169.254", "fd00:ec2::254", "0.0.0.0"] {
            assert!(p.check_address(git, ip(a), 443).is_err(), "{a}");
        }
        let local = p.admit(&name("localhost"), 9000).expect("entry");
        assert_eq!(p.check_address(local, ip("127.0.0.1"), 9000), Ok(()));
        assert_eq!(p.check_address(local, ip("::1"), 9000), Ok(()));
        assert!(p.check_address(local, ip("10.9.9.9"), 9000).is_err());
    }

    #[test]
    fn address_entries_open_internal_addresses_beside_a_wildcard() {
        let mut p = policy(&["*", "10.0.0.5:5432", "192.168.1.1", "[fd00::5]:22"]);
        p.extra_own = vec![ip("192.168.1.1")];
        let db = p.admit(&Host::Ip(ip("10.0.0.5")), 5432).expect("entry");
        assert_eq!(p.check_address(db, ip("10.0.0.5"), 5432), Ok(()));
        let other_port = p.admit(&Host::Ip(ip("10.0.0.5")), 5433).expect("*");
        assert!(p.check_address(other_port, ip("10.0.0.5"), 5433).is_err());
        // An address without a port: that address, any port.
        let gw = p.admit(&Host::Ip(ip("192.168.1.1")), 8080).expect("entry");
        assert_eq!(p.check_address(gw, ip("192.168.1.1"), 8080), Ok(()));
        let v6 = p.admit(&Host::Ip(ip("fd00::5")), 22).expect("entry");
        assert_eq!(p.check_address(v6, ip("fd00::5"), 22), Ok(()));
        // Metadata still needs its port too.
        let p = policy(&["169.254.169.254"]);
        let md = p
            .admit(&Host::Ip(ip("169.254.169.254")), 80)
            .expect("entry");
        assert!(p.check_address(md, ip("169.254.169.254"), 80).is_err());
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
    async fn names_off_the_allowlist_are_refused_before_resolving() {
        let p = policy(&["allowed.invalid"]);
        assert_eq!(
            p.resolve(&name("exfiltrate-data.attacker.example"), 443)
                .await,
            Err(Denied::Refused("not on the allowlist".into()))
        );
        assert!(matches!(
            p.resolve(&name("allowed.invalid"), 443).await,
            Err(Denied::Unreachable(_))
        ));
    }

    #[test]
    fn loopback_entries_with_ports_are_forwarded() {
        let p = policy(&[
            "127.0.0.1:8087",
            "[::1]:9",
            "localhost:3000",
            "127.0.0.1",
            "api.anthropic.com:443",
        ]);
        assert_eq!(
            p.loopback_forwards(),
            ["127.0.0.1:8087", "[::1]:9", "localhost:3000"]
        );
    }

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

    #[test]
    fn refusals_are_counted_per_destination() {
        let mut log = RefusalLog::default();
        assert!(log.add("a:1", "r"));
        assert!(!log.add("a:1", "r"));
        assert!(log.add("b:1", "r"));
        assert_eq!(log.list[0].count, 2);
        for i in 0..MAX_REFUSALS + 5 {
            log.add(&format!("h{i}:1"), "r");
        }
        assert_eq!(log.list.len(), MAX_REFUSALS);
        assert!(log.dropped > 0);
    }
}
