//! Addresses to the egress rules: canonical forms, the always-refused ones,
//! internal ranges ([`INTERNAL`]) and this machine's own addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

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
pub(super) const METADATA_NAMES: &[&str] = &["metadata.google.internal", "metadata.goog"];

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
/// by [`Policy`](super::Policy).
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
    /// The block's first address.
    pub net: IpAddr,
    /// The prefix length, in bits.
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

    /// Whether `ip` (an IPv4-mapped address as its IPv4 address) is in the block.
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
pub(super) enum Class {
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
    pub(super) fn of(ip: IpAddr, own: &OwnAddresses) -> Class {
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
pub(super) struct OwnAddresses(Vec<IpAddr>);

impl OwnAddresses {
    pub(super) fn now(extra: &[IpAddr]) -> OwnAddresses {
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
    pub(super) fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.contains(&ip) || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::testing::ip;

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
}
