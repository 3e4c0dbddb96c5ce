//! The egress of a Pod as a NetworkPolicy: the allowlist and
//! `sandbox.kubernetes_egress` resolved to address blocks, never the metadata
//! endpoints.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{KubernetesSandbox, METADATA};
use crate::egress::{canonical, is_loopback, refused_address, AllowEntry, Pattern};
use crate::SandboxError;

impl KubernetesSandbox {
    /// The NetworkPolicy of Pod `name`, allowing egress to `allowed` (and DNS):
    /// one rule per port (all ports first), never [`METADATA`]; with the
    /// notices for entries it dropped.
    pub fn network_policy(
        &self,
        run: &str,
        name: &str,
        allowed: &[Allowed],
    ) -> (NetworkPolicy, Vec<String>) {
        let mut by_port: BTreeMap<Option<u16>, Vec<Cidr>> = BTreeMap::new();
        for a in allowed {
            let cidrs = by_port.entry(a.port).or_default();
            if !cidrs.contains(&a.cidr) {
                cidrs.push(a.cidr);
            }
        }
        let mut egress = vec![NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(LabelSelector::default()),
                pod_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        "k8s-app".to_string(),
                        "kube-dns".to_string(),
                    )])),
                    ..Default::default()
                }),
                ip_block: None,
            }]),
            ports: Some(
                ["UDP", "TCP"]
                    .iter()
                    .map(|p| NetworkPolicyPort {
                        port: Some(IntOrString::Int(53)),
                        protocol: Some((*p).into()),
                        end_port: None,
                    })
                    .collect(),
            ),
        }];
        let mut notices: Vec<String> = Vec::new();
        for (port, cidrs) in by_port {
            let (blocks, dropped) = egress_blocks(&cidrs);
            for n in dropped {
                if !notices.contains(&n) {
                    notices.push(n);
                }
            }
            if blocks.is_empty() {
                continue;
            }
            egress.push(NetworkPolicyEgressRule {
                to: Some(
                    blocks
                        .into_iter()
                        .map(|ip_block| NetworkPolicyPeer {
                            ip_block: Some(ip_block),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ports: port.map(|p| {
                    vec![NetworkPolicyPort {
                        port: Some(IntOrString::Int(i32::from(p))),
                        protocol: Some("TCP".into()),
                        end_port: None,
                    }]
                }),
            });
        }
        let policy = NetworkPolicy {
            metadata: self.metadata(run, name),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        "errand.pod".to_string(),
                        name.to_string(),
                    )])),
                    ..Default::default()
                }),
                policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
                ingress: None,
                egress: Some(egress),
            }),
        };
        (policy, notices)
    }

    /// `egress` as CIDRs, host names resolved now.
    pub(super) async fn resolve_egress(&self) -> Result<Vec<Cidr>, SandboxError> {
        let mut out = Vec::new();
        for entry in &self.config.egress {
            match parse_destination(entry) {
                Some(Destination::Cidr(c)) => out.push(c),
                Some(Destination::Host(h)) => {
                    let addrs = tokio::net::lookup_host((h.as_str(), 443))
                        .await
                        .map_err(|e| {
                            SandboxError::Setup(format!(
                                "cannot resolve the egress host {h} (sandbox.kubernetes_egress): {e}"
                            ))
                        })?;
                    for a in addrs {
                        let c = Cidr::host(a.ip());
                        if !out.contains(&c) {
                            out.push(c);
                        }
                    }
                }
                None => {
                    return Err(SandboxError::Setup(format!(
                        "sandbox.kubernetes_egress entry '{entry}' is not a CIDR, an address or a host name"
                    )))
                }
            }
        }
        Ok(out)
    }
}

/// An address block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The block's address, host bits cleared by [`Cidr::parse`].
    pub addr: IpAddr,
    /// The prefix length, in bits.
    pub prefix: u8,
}

impl Cidr {
    /// The block of the one address `addr` (/32 or /128).
    pub fn host(addr: IpAddr) -> Cidr {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Cidr { addr, prefix }
    }

    /// `a.b.c.d/n`, `x::y/n` or a bare address; host bits are cleared.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return None;
        }
        Some(Cidr {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// Whether every address of `other` is in `self`.
    pub fn contains(&self, other: &Cidr) -> bool {
        self.addr.is_ipv4() == other.addr.is_ipv4()
            && self.prefix <= other.prefix
            && mask(other.addr, self.prefix) == self.addr
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

pub(super) enum Destination {
    Cidr(Cidr),
    Host(String),
}

pub(super) fn parse_destination(s: &str) -> Option<Destination> {
    let s = s.trim();
    if let Some(c) = Cidr::parse(s) {
        return Some(Destination::Cidr(c));
    }
    let host_like = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && !s.chars().all(|c| c.is_ascii_digit() || c == '.');
    host_like.then(|| Destination::Host(s.to_ascii_lowercase()))
}

/// A destination a Pod may reach: an address block, on one TCP port or on any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    /// The addresses.
    pub cidr: Cidr,
    /// `None`: every port and protocol.
    pub port: Option<u16>,
}

/// How long resolving one allowlisted name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(15);

/// The run's egress allowlist ([`crate::Egress::allow`], parsed as the egress
/// proxy parses it) as destinations a NetworkPolicy can allow, with a notice
/// for each entry or address skipped. A host name is resolved now, to /32 and
/// /128 blocks; an address is its block; `*` is `0.0.0.0/0` and `::/0`
/// (less loopback, link-local and [`crate::egress::INTERNAL`], see [`egress_blocks`]); an
/// entry's `:port` limits it to that TCP port. Skipped: `*.suffix` (a
/// NetworkPolicy has no names), loopback (in a pod, the pod itself), and what
/// the proxy refuses too (link-local, metadata: a name's addresses always, an
/// address unless allowlisted with its port; [`egress_blocks`] drops
/// [`METADATA`] in any case). A name that does not resolve, or an entry that
/// does not parse, is a [`SandboxError::Setup`].
pub async fn allowlist_destinations(
    allow: &[String],
) -> Result<(Vec<Allowed>, Vec<String>), SandboxError> {
    fn add(out: &mut Vec<Allowed>, cidr: Cidr, port: Option<u16>) {
        let a = Allowed { cidr, port };
        if !out.contains(&a) {
            out.push(a);
        }
    }
    let loopback = |entry: &str, what: &str| {
        format!(
            "the egress allowlist entry '{entry}' was skipped: {what} is a loopback address, which \
             in a pod is the pod itself (give the pod an address the cluster can reach)"
        )
    };
    let mut out = Vec::new();
    let mut notices = Vec::new();
    for entry in allow {
        let e = AllowEntry::parse(entry)
            .map_err(|why| SandboxError::Setup(format!("{why} (the run's egress allowlist)")))?;
        let port = e.port();
        match e.pattern() {
            Pattern::Any => {
                for any in ["0.0.0.0/0", "::/0"] {
                    if let Some(c) = Cidr::parse(any) {
                        add(&mut out, c, port);
                    }
                }
            }
            Pattern::Suffix(suffix) => notices.push(format!(
                "the egress allowlist entry '{entry}' was skipped: a NetworkPolicy allows \
                 addresses, not names, so the subdomains of {} cannot be allowed (allowlist each \
                 host, or add their addresses to sandbox.kubernetes_egress)",
                suffix.trim_start_matches('.')
            )),
            Pattern::Ip(ip) => {
                if is_loopback(*ip) {
                    notices.push(loopback(entry, &ip.to_string()));
                } else if let (Some(why), None) = (refused_address(*ip), port) {
                    notices.push(format!(
                        "the egress allowlist entry '{entry}' was skipped: {why}"
                    ));
                } else {
                    add(&mut out, Cidr::host(*ip), port);
                }
            }
            Pattern::Exact(host) => {
                let unresolved = |e: &dyn std::fmt::Display| {
                    SandboxError::Setup(format!(
                        "cannot resolve the egress host {host} (the run's egress allowlist entry \
                         '{entry}'): {e}"
                    ))
                };
                let addrs = tokio::time::timeout(
                    RESOLVE_TIMEOUT,
                    tokio::net::lookup_host((host.as_str(), port.unwrap_or(443))),
                )
                .await
                .map_err(|_| unresolved(&"resolving timed out"))?
                .map_err(|e| unresolved(&e))?;
                let mut loopbacks: Vec<String> = Vec::new();
                for a in addrs {
                    let ip = canonical(a.ip());
                    if is_loopback(ip) {
                        if !loopbacks.contains(&ip.to_string()) {
                            loopbacks.push(ip.to_string());
                        }
                    } else if let Some(why) = refused_address(ip) {
                        notices.push(format!(
                            "the address {ip} of the egress allowlist entry '{entry}' was \
                             skipped: {why}"
                        ));
                    } else {
                        add(&mut out, Cidr::host(ip), port);
                    }
                }
                if !loopbacks.is_empty() {
                    notices.push(loopback(entry, &loopbacks.join(", ")));
                }
            }
        }
    }
    Ok((out, notices))
}

/// The `ipBlock`s allowing `allowed`, never [`METADATA`]; with notices for the
/// entries dropped because they lie inside it.
pub fn egress_blocks(allowed: &[Cidr]) -> (Vec<IPBlock>, Vec<String>) {
    let forbidden: Vec<Cidr> = METADATA.iter().filter_map(|s| Cidr::parse(s)).collect();
    let mut blocks = Vec::new();
    let mut notices = Vec::new();
    for c in allowed {
        if let Some(f) = forbidden.iter().find(|f| f.contains(c)) {
            notices.push(format!(
                "the egress entry {c} was dropped: {f} (cloud metadata or credentials) is never reachable from a sandbox"
            ));
            continue;
        }
        let mut except: Vec<String> = forbidden
            .iter()
            .filter(|f| c.contains(f))
            .map(|f| f.to_string())
            .collect();
        // A wildcard (`*`, the whole address space) leaves out what the egress
        // proxy refuses to wildcards: loopback, link-local, private, CGNAT and
        // reserved ranges. Only an entry naming an address (its own block) opens one.
        if c.prefix == 0 {
            let wild_off = crate::egress::INTERNAL
                .iter()
                .map(|b| Cidr::parse(&format!("{}/{}", b.net, b.len)))
                .chain(
                    ["127.0.0.0/8", "169.254.0.0/16", "::1/128", "fe80::/10"]
                        .iter()
                        .map(|s| Cidr::parse(s)),
                )
                .flatten()
                .filter(|b| c.contains(b))
                .map(|b| b.to_string());
            // The metadata blocks stay listed first, by name, even where a
            // range below covers them too.
            for b in wild_off {
                if !except.contains(&b) {
                    except.push(b);
                }
            }
        }
        blocks.push(IPBlock {
            cidr: c.to_string(),
            except: (!except.is_empty()).then_some(except),
        });
    }
    (blocks, notices)
}

/// Variables that point at this machine's loopback, which a Pod cannot reach.
pub(super) fn loopback_urls(env: &[(String, String)]) -> Vec<String> {
    env.iter()
        .filter(|(_, v)| {
            ["://127.", "://localhost", "://[::1]"]
                .iter()
                .any(|l| v.contains(l))
        })
        .map(|(k, _)| k.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubernetes::testing::sandbox;

    #[test]
    fn the_metadata_endpoints_are_never_allowed() {
        let meta = Cidr::parse("169.254.169.254/32").expect("cidr");
        for entry in [
            "0.0.0.0/0",
            "169.254.0.0/16",
            "169.254.169.0/24",
            "169.254.169.254",
            "169.254.169.254/32",
            "10.0.0.0/8",
            "::/0",
            "fd00:ec2::/64",
        ] {
            let c = Cidr::parse(entry).expect("cidr");
            let (blocks, _) = egress_blocks(&[c]);
            for b in &blocks {
                let cidr = Cidr::parse(&b.cidr).expect("cidr");
                let except: Vec<Cidr> = b
                    .except
                    .iter()
                    .flatten()
                    .map(|e| Cidr::parse(e).expect("except"))
                    .collect();
                for f in METADATA {
                    let f = Cidr::parse(f).expect("cidr");
                    if cidr.contains(&f) {
                        assert!(
                            except.iter().any(|e| e.contains(&f)),
                            "{entry}: {f} allowed by {b:?}"
                        );
                    }
                    // Every except lies strictly inside its block (else Kubernetes refuses it).
                    for e in &except {
                        assert!(cidr.contains(e) && cidr != *e, "{entry}: bad except {e}");
                    }
                }
                assert!(!(cidr.contains(&meta) && except.is_empty()));
            }
        }
        let (blocks, notices) = egress_blocks(&[Cidr::parse("169.254.169.254").expect("cidr")]);
        assert!(blocks.is_empty());
        assert_eq!(notices.len(), 1);
        let (blocks, _) = egress_blocks(&[Cidr::parse("0.0.0.0/0").expect("cidr")]);
        let except = blocks[0].except.clone().unwrap_or_default();
        // The metadata addresses first, then what a wildcard never reaches.
        assert_eq!(
            except[..3],
            [
                "169.254.169.254/32",
                "169.254.170.2/32",
                "169.254.170.23/32"
            ]
        );
        for wild_off in [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",
            "127.0.0.0/8",
            "169.254.0.0/16",
        ] {
            assert!(
                except.iter().any(|e| e == wild_off),
                "{wild_off}: {except:?}"
            );
        }
        let (blocks, _) = egress_blocks(&[Cidr::parse("::/0").expect("cidr")]);
        let except = blocks[0].except.clone().unwrap_or_default();
        for wild_off in ["fc00::/7", "fe80::/10", "::1/128"] {
            assert!(
                except.iter().any(|e| e == wild_off),
                "{wild_off}: {except:?}"
            );
        }
        // An address entry is its own block, with nothing excepted: it stays reachable.
        let (blocks, _) = egress_blocks(&[Cidr::parse("10.1.2.3").expect("cidr")]);
        assert_eq!(
            (blocks[0].cidr.as_str(), &blocks[0].except),
            ("10.1.2.3/32", &None)
        );

        // And the whole policy: DNS only to the cluster DNS, nothing else but the blocks.
        let sb = sandbox();
        let (policy, _) = sb.network_policy(
            "r1",
            "errand-r1-00000000",
            &[Allowed {
                cidr: Cidr::parse("0.0.0.0/0").expect("cidr"),
                port: None,
            }],
        );
        let json = serde_json::to_value(&policy).expect("json");
        let egress = json["spec"]["egress"].as_array().expect("egress");
        assert!(egress[0]["to"][0]["podSelector"]["matchLabels"]["k8s-app"] == "kube-dns");
        assert_eq!(
            egress[1]["to"][0]["ipBlock"]["except"][0],
            "169.254.169.254/32"
        );
        assert_eq!(
            json["spec"]["policyTypes"],
            serde_json::json!(["Ingress", "Egress"])
        );
    }

    #[tokio::test]
    async fn the_allowlist_maps_to_address_rules() {
        let cidr = |s: &str| Cidr::parse(s).expect("cidr");
        let allow: Vec<String> = [
            "127.0.0.1:9",
            "203.0.113.7:443",
            "*.example.com",
            "localhost",
            "[2001:db8::1]:8443",
            "198.51.100.9",
            "169.254.169.254",
            "169.254.169.254:80",
            "*:22",
            "203.0.113.7:443",
        ]
        .map(String::from)
        .to_vec();
        let (allowed, notices) = allowlist_destinations(&allow).await.expect("mapped");
        let a = |c: &str, port| Allowed {
            cidr: cidr(c),
            port,
        };
        assert_eq!(
            allowed,
            vec![
                a("203.0.113.7/32", Some(443)),
                a("2001:db8::1/128", Some(8443)),
                a("198.51.100.9/32", None),
                a("169.254.169.254/32", Some(80)),
                a("0.0.0.0/0", Some(22)),
                a("::/0", Some(22)),
            ]
        );
        assert_eq!(notices.len(), 4, "{notices:?}");
        for (entry, why) in [
            ("127.0.0.1:9", "loopback"),
            ("*.example.com", "example.com cannot be allowed"),
            ("localhost", "127.0.0.1 is a loopback"),
            ("169.254.169.254", "link-local"),
        ] {
            assert!(
                notices
                    .iter()
                    .any(|n| n.contains(&format!("'{entry}' was skipped")) && n.contains(why)),
                "{entry}: {notices:?}"
            );
        }

        // Into the policy, with a configured block: one rule per port, all ports first.
        let mut all = vec![a("10.0.0.0/8", None)];
        all.extend(allowed);
        let (policy, dropped) = sandbox().network_policy("r1", "errand-r1-00000000", &all);
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        assert!(dropped[0].contains("169.254.169.254/32"), "{dropped:?}");
        let json = serde_json::to_value(&policy).expect("json");
        let egress = json["spec"]["egress"].as_array().expect("egress");
        assert_eq!(egress.len(), 5, "{json}");
        assert_eq!(egress[0]["ports"][0]["port"], 53);
        assert!(egress[1]["ports"].is_null());
        assert_eq!(
            egress[1]["to"],
            serde_json::json!([{"ipBlock": {"cidr": "10.0.0.0/8"}}, {"ipBlock": {"cidr": "198.51.100.9/32"}}])
        );
        for (rule, port, cidrs) in [
            (2, 22, &["0.0.0.0/0", "::/0"][..]),
            (3, 443, &["203.0.113.7/32"][..]),
            (4, 8443, &["2001:db8::1/128"][..]),
        ] {
            assert_eq!(
                egress[rule]["ports"],
                serde_json::json!([{"port": port, "protocol": "TCP"}])
            );
            let got: Vec<&str> = egress[rule]["to"]
                .as_array()
                .expect("to")
                .iter()
                .map(|p| p["ipBlock"]["cidr"].as_str().expect("cidr"))
                .collect();
            assert_eq!(got, cidrs);
        }
        assert_eq!(
            egress[2]["to"][0]["ipBlock"]["except"][0],
            "169.254.169.254/32"
        );

        // A name that does not resolve, or an entry that does not parse, fails.
        for bad in ["no-such-host.invalid", "https://x.example"] {
            let err = allowlist_destinations(&[bad.to_string()])
                .await
                .expect_err(bad);
            assert!(matches!(err, SandboxError::Setup(_)), "{err}");
            assert!(
                err.to_string().contains("the run's egress allowlist"),
                "{err}"
            );
        }
    }

    #[test]
    fn cidrs_parse_and_nest() {
        let c = Cidr::parse("10.1.2.3/8").expect("cidr");
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!(c.contains(&Cidr::parse("10.9.9.9").expect("cidr")));
        assert!(!c.contains(&Cidr::parse("11.0.0.1").expect("cidr")));
        assert!(!c.contains(&Cidr::parse("::1").expect("cidr")));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nope").is_none());
        assert!(matches!(
            parse_destination("api.anthropic.com"),
            Some(Destination::Host(_))
        ));
        assert!(parse_destination("1.2.3").is_none());
        assert!(parse_destination("http://x").is_none());
    }
}
