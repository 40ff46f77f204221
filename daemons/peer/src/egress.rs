//! Where this peer may connect on a client's behalf (forward proxy, CONNECT, mirror, download
//! API, seed and preheat fetches), and which clients its proxy serves.
//!
//! Invariants:
//! - Unless `proxy.allow_private_destinations` is set, no origin connection goes to a loopback,
//!   link-local, unspecified, multicast or broadcast address, or to one of this node's own
//!   addresses. Names are checked after resolution, on the addresses actually connected to
//!   ([`GuardedResolver`]), so a name that resolves to 127.0.0.1 (DNS rebinding) is refused
//!   like the literal; literal IPs are checked before the request ([`EgressPolicy::check_url`])
//!   and on every redirect.
//! - Only allowed ports are reached (`proxy.destination_ports`, `proxy.connect_ports`, the
//!   mirror's port; an empty `destination_ports` allows any).
//! - The proxy serves only clients in `proxy.allow` (default: loopback and this node's own
//!   addresses).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error(
        "destination {host} ({ip}) is a loopback, link-local or own address of this node; refused (proxy.allow_private_destinations)"
    )]
    Private { host: String, ip: IpAddr },
    #[error("destination port {0} is not allowed (proxy.destination_ports)")]
    Port(u16),
    #[error("'{0}' names no host")]
    NoHost(String),
}

/// The destination rules, fixed at start.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    allow_private: bool,
    /// `None`: any port.
    ports: Option<Vec<u16>>,
    own: Vec<IpAddr>,
}

impl EgressPolicy {
    /// `ports` empty allows any port; `own` are this node's addresses.
    pub fn new(allow_private: bool, ports: Vec<u16>, own: Vec<IpAddr>) -> Self {
        Self {
            allow_private,
            ports: (!ports.is_empty()).then_some(ports),
            own,
        }
    }

    /// Whether a connection to `ip` is allowed.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), EgressError> {
        if self.allow_private {
            return Ok(());
        }
        let ip = canonical(ip);
        if is_special(ip) || self.own.iter().any(|o| canonical(*o) == ip) {
            return Err(EgressError::Private {
                host: host.to_owned(),
                ip,
            });
        }
        Ok(())
    }

    pub fn check_port(&self, port: u16) -> Result<(), EgressError> {
        match &self.ports {
            Some(ports) if !ports.contains(&port) => Err(EgressError::Port(port)),
            _ => Ok(()),
        }
    }

    /// The port, and the host when it is an IP literal (names are checked when resolved).
    pub fn check_url(&self, url: &url::Url) -> Result<(), EgressError> {
        let host = url
            .host()
            .ok_or_else(|| EgressError::NoHost(url.to_string()))?;
        match host {
            url::Host::Ipv4(ip) => self.check_ip(&ip.to_string(), IpAddr::V4(ip))?,
            url::Host::Ipv6(ip) => self.check_ip(&ip.to_string(), IpAddr::V6(ip))?,
            url::Host::Domain(_) => {}
        }
        match url.port_or_known_default() {
            Some(port) => self.check_port(port),
            None => Ok(()),
        }
    }

    /// Resolves `host:port` and keeps the addresses a connection may go to; an error when
    /// none is left (naming the first refused address).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| ResolveError::Lookup(host.to_owned(), e.to_string()))?
            .collect();
        let mut refused = None;
        let allowed: Vec<SocketAddr> = found
            .into_iter()
            .filter(|a| match self.check_ip(host, a.ip()) {
                Ok(()) => true,
                Err(e) => {
                    refused.get_or_insert(e);
                    false
                }
            })
            .collect();
        match (allowed.is_empty(), refused) {
            (true, Some(e)) => Err(ResolveError::Refused(e)),
            (true, None) => Err(ResolveError::Lookup(host.to_owned(), "no address".into())),
            (false, _) => Ok(allowed),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot resolve {0}: {1}")]
    Lookup(String, String),
    #[error(transparent)]
    Refused(#[from] EgressError),
}

/// IPv4-mapped IPv6 addresses are their IPv4 address (`::ffff:127.0.0.1` is loopback).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Addresses no request from outside should make this node connect to.
fn is_special(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.octets()[0] == 0
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unicast_link_local()
        }
    }
}

/// The resolver of the origin clients: system resolution, then [`EgressPolicy::check_ip`].
pub struct GuardedResolver(pub Arc<EgressPolicy>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            // The port is filled in by the connector.
            let addrs = policy.resolve(name.as_str(), 0).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Which clients the proxy serves.
#[derive(Debug, Clone, Default)]
pub struct ClientAllow {
    /// Empty: loopback and `own`.
    nets: Vec<IpNet>,
    own: Vec<IpAddr>,
}

impl ClientAllow {
    pub fn new(nets: Vec<IpNet>, own: Vec<IpAddr>) -> Self {
        Self { nets, own }
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if self.nets.is_empty() {
            return ip.is_loopback() || self.own.iter().any(|o| canonical(*o) == ip);
        }
        self.nets.iter().any(|n| n.contains(&ip))
    }
}

/// This node's addresses: the configured and listening ones plus every local address the
/// kernel routes to this host (`/proc/net/fib_trie` "host LOCAL" entries, `/proc/net/if_inet6`).
pub fn own_addresses(known: &[IpAddr]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = known
        .iter()
        .copied()
        .filter(|ip| !ip.is_unspecified())
        .collect();
    if let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") {
        out.extend(local_v4_from_fib_trie(&trie));
    }
    if let Ok(text) = std::fs::read_to_string("/proc/net/if_inet6") {
        out.extend(text.lines().filter_map(|l| {
            let hex = l.split_whitespace().next()?;
            let n = u128::from_str_radix(hex, 16).ok()?;
            Some(IpAddr::V6(std::net::Ipv6Addr::from(n)))
        }));
    }
    out.sort();
    out.dedup();
    out
}

/// The addresses followed by a `/32 host LOCAL` line in `/proc/net/fib_trie`.
fn local_v4_from_fib_trie(trie: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut last: Option<IpAddr> = None;
    for line in trie.lines() {
        let t = line.trim_start_matches([' ', '|', '+', '-', '`']).trim();
        if let Ok(ip) = t.parse::<IpAddr>() {
            last = Some(ip);
        } else if t.starts_with("/32 host LOCAL")
            && let Some(ip) = last
        {
            out.push(ip);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn private_and_own_destinations_are_refused_unless_allowed() {
        let own = vec![ip("10.0.0.5")];
        let p = EgressPolicy::new(false, vec![80, 443], own.clone());
        for bad in [
            "127.0.0.1",
            "127.9.9.9",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "10.0.0.5",
            "224.0.0.1",
        ] {
            assert!(p.check_ip("h", ip(bad)).is_err(), "{bad}");
        }
        assert_eq!(p.check_ip("h", ip("10.0.0.6")), Ok(()));
        assert_eq!(p.check_ip("h", ip("93.184.216.34")), Ok(()));
        let open = EgressPolicy::new(true, vec![], own);
        assert_eq!(open.check_ip("h", ip("127.0.0.1")), Ok(()));
    }

    #[test]
    fn urls_are_checked_for_literal_hosts_and_ports() {
        let p = EgressPolicy::new(false, vec![80, 443], vec![]);
        let url = |s: &str| url::Url::parse(s).expect("url");
        assert!(matches!(
            p.check_url(&url("http://127.0.0.1/x")),
            Err(EgressError::Private { .. })
        ));
        assert!(matches!(
            p.check_url(&url("http://[::1]:80/x")),
            Err(EgressError::Private { .. })
        ));
        assert_eq!(
            p.check_url(&url("http://example.com:6379/")),
            Err(EgressError::Port(6379))
        );
        assert_eq!(p.check_url(&url("https://example.com/v2/")), Ok(()));
        let any_port = EgressPolicy::new(false, vec![], vec![]);
        assert_eq!(any_port.check_url(&url("http://example.com:6379/")), Ok(()));
    }

    #[tokio::test]
    async fn names_are_checked_on_what_they_resolve_to() {
        let p = EgressPolicy::new(false, vec![], vec![]);
        let err = p.resolve("localhost", 80).await.expect_err("loopback");
        assert!(matches!(err, ResolveError::Refused(_)), "{err}");
        let open = EgressPolicy::new(true, vec![], vec![]);
        assert!(
            !open
                .resolve("localhost", 80)
                .await
                .expect("allowed")
                .is_empty()
        );
    }

    #[test]
    fn proxy_clients_default_to_loopback_and_own_addresses() {
        let allow = ClientAllow::new(vec![], vec![ip("10.0.0.5")]);
        assert!(allow.allows(ip("127.0.0.1")));
        assert!(allow.allows(ip("10.0.0.5")));
        assert!(!allow.allows(ip("10.0.0.6")));
        let nets = ClientAllow::new(vec!["10.0.0.0/8".parse().expect("net")], vec![]);
        assert!(nets.allows(ip("10.1.2.3")));
        assert!(!nets.allows(ip("127.0.0.1")));
    }

    #[test]
    fn local_addresses_come_from_the_fib_trie() {
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.0.0.5\n        /32 host LOCAL\n     |-- 10.0.0.255\n        /32 link BROADCAST\n";
        assert_eq!(local_v4_from_fib_trie(trie), vec![ip("10.0.0.5")]);
    }
}
