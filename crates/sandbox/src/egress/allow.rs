//! Allowlist entries and destinations as clients name them: hosts, `host:port`
//! authorities, URLs.

use std::net::{IpAddr, Ipv4Addr};

use super::address::canonical;

/// A destination as a client names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// Lowercase, without a trailing dot.
    Name(String),
    /// An address, however the client spelled it.
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
    pub(super) pattern: Pattern,
    pub(super) port: Option<u16>,
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

    pub(super) fn matches(&self, host: &Host, port: u16) -> bool {
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
    pub(super) fn rank(&self) -> u8 {
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
    pub(super) fn loopback_forward(&self) -> Option<String> {
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
pub(super) fn parse_host(h: &str) -> Option<Host> {
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
pub(super) fn valid_name(n: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::testing::{ip, name};
    use crate::egress::*;

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
}
