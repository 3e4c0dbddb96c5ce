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

mod address;
mod allow;
mod bridge;
mod policy;
mod proxy;

pub(crate) use address::is_loopback;
pub use address::{canonical, interface_addresses, refused_address, Block, INTERNAL};
pub(crate) use allow::Pattern;
pub use allow::{parse_authority, url_destination, AllowEntry, Host};
pub use bridge::{bridge, exit_like, wrap, BridgeOptions};
pub use policy::{route_entry, Denied, Policy, Refusal, RefusalLog, ROUTE_MARK};
pub use proxy::{start_for, EgressProxy};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where the proxy's socket is mounted inside.
pub const SOCKET: &str = crate::paths::EGRESS_SOCKET;
/// Where the bridge program is mounted inside.
pub const BRIDGE: &str = crate::paths::EGRESS_BRIDGE;
/// How long resolving and connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

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
    /// How the bridge is started inside.
    pub bridge: Bridge,
}

/// The program that runs the bridge inside (mounted read-only at [`BRIDGE`]),
/// and the arguments that select it (`["sandbox", "bridge"]` for errand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    /// The program on the host, bound in at [`BRIDGE`].
    pub exe: PathBuf,
    /// The arguments before the bridge's own.
    pub args: Vec<String>,
}

#[cfg(test)]
mod testing {
    use std::net::IpAddr;

    use super::{Host, Policy};

    pub(crate) fn policy(allow: &[&str]) -> Policy {
        Policy::new(
            &allow.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            &["127.0.0.1:8080".parse().expect("addr")],
        )
        .expect("policy")
    }

    pub(crate) fn name(n: &str) -> Host {
        Host::Name(n.into())
    }

    pub(crate) fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }
}
