//! The allowlist as a policy ([`Policy`]): which destinations a sandbox may
//! reach, at which addresses, and the tally of what it was refused.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use super::address::{canonical, is_loopback, Class, OwnAddresses, METADATA_NAMES};
use super::allow::{valid_name, AllowEntry, Host, Pattern};
use super::CONNECT_TIMEOUT;

/// Distinct refused destinations kept per proxy.
const MAX_REFUSALS: usize = 100;

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
    pub(super) fn route(&self, host: &Host, port: u16) -> Option<&Path> {
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
    /// - [`refused_address`](super::refused_address) (metadata, link-local, unspecified, broadcast,
    ///   multicast) and errand's own API addresses: nothing else opens them.
    /// - Public addresses: any entry.
    /// - Loopback, this machine's own addresses, [`INTERNAL`](super::INTERNAL): an address
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
    /// Why it was refused (the first time).
    pub reason: String,
    /// How many times it was refused.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::allow::parse_host;
    use crate::egress::testing::{ip, name, policy};
    use crate::egress::*;

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
