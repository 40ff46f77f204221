//! Cluster identity: who a daemon is, as its certificate from the cluster identity CA says,
//! and what that lets it claim on the wire. Pure code (certificate bytes and announced fields
//! in, a decision out); [`crate::tls`] drives it from the TLS handshakes.
//!
//! A daemon certificate carries exactly one URI SAN `dragonfly://<role>/<name>`, `role` one
//! of `scheduler`, `seed`, `peer` and `name` the host's hostname. Host IDs are
//! `<ip>-<hostname>[-seed]` ([`HostId::new`]), so the name and role fix every host ID a
//! certificate may use: one per IP, and the `-seed` form only for a seed certificate. When the
//! certificate also names IP addresses, the announced IP must be one of them.
//!
//! Invariants: a certificate without the URI SAN, or with two, has no identity; a scheduler
//! certificate announces no host; a seed host needs a seed certificate and a seed certificate
//! announces only a seed host.

use std::fmt;
use std::net::IpAddr;

use crate::ids::HostId;

/// The URI SAN prefix of a daemon identity.
pub const URI_PREFIX: &str = "dragonfly://";

/// What a daemon is allowed to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Scheduler,
    Seed,
    Peer,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Scheduler, Role::Seed, Role::Peer];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduler => "scheduler",
            Self::Seed => "seed",
            Self::Peer => "peer",
        }
    }

    /// The role a peer daemon has: seed mode or not.
    pub fn of_peer(seed: bool) -> Self {
        if seed { Self::Seed } else { Self::Peer }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| IdentityError::Role(s.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("'{0}' is not a daemon role (scheduler, seed, peer)")]
    Role(String),
    #[error("'{0}' is not a daemon name (letters, digits, '-', '_', '.', at most 253)")]
    Name(String),
    #[error("'{0}' is not a daemon identity URI like dragonfly://peer/node-1")]
    Uri(String),
    #[error("not an X.509 certificate: {0}")]
    Certificate(String),
    #[error("the certificate has no dragonfly:// URI SAN, so no cluster identity")]
    Missing,
    #[error("the certificate has {0} dragonfly:// URI SANs; a daemon has one identity")]
    Several(usize),
}

/// A daemon's identity: its role and name, and the IP addresses its certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub role: Role,
    pub name: String,
    /// IP SANs; empty when the certificate names none (the IP is then not bound).
    pub ips: Vec<IpAddr>,
}

/// `dragonfly://<role>/<name>`.
pub fn uri(role: Role, name: &str) -> String {
    format!("{URI_PREFIX}{role}/{name}")
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Checks that `name` can be a daemon name (it becomes part of a URI and of host IDs).
pub fn check_name(name: &str) -> Result<(), IdentityError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(IdentityError::Name(name.to_owned()))
    }
}

/// Parses `dragonfly://<role>/<name>`.
pub fn parse_uri(s: &str) -> Result<(Role, String), IdentityError> {
    let rest = s
        .strip_prefix(URI_PREFIX)
        .ok_or_else(|| IdentityError::Uri(s.to_owned()))?;
    let (role, name) = rest
        .split_once('/')
        .ok_or_else(|| IdentityError::Uri(s.to_owned()))?;
    let role = role.parse::<Role>()?;
    check_name(name)?;
    Ok((role, name.to_owned()))
}

impl Identity {
    /// The identity in a DER certificate (the leaf of a verified chain).
    pub fn from_der(der: &[u8]) -> Result<Self, IdentityError> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        let mut found = Vec::new();
        let mut ips = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(u) if u.starts_with(URI_PREFIX) => found.push(parse_uri(u)?),
                    GeneralName::IPAddress(b) => {
                        if let Ok(v4) = <[u8; 4]>::try_from(*b) {
                            ips.push(IpAddr::from(v4));
                        } else if let Ok(v6) = <[u8; 16]>::try_from(*b) {
                            ips.push(IpAddr::from(v6));
                        }
                    }
                    _ => {}
                }
            }
        }
        match found.len() {
            0 => Err(IdentityError::Missing),
            1 => {
                let (role, name) = found.remove(0);
                Ok(Self { role, name, ips })
            }
            n => Err(IdentityError::Several(n)),
        }
    }

    pub fn uri(&self) -> String {
        uri(self.role, &self.name)
    }

    /// Whether this identity may use `host_id`: `<ip>-<name>` for a peer, `<ip>-<name>-seed`
    /// for a seed, with `ip` among the certificate's IPs when it names any.
    pub fn may_use_host_id(&self, host_id: &str) -> bool {
        let suffix = match self.role {
            Role::Scheduler => return false,
            Role::Seed => format!("-{}-seed", self.name),
            Role::Peer => format!("-{}", self.name),
        };
        let Some(ip) = host_id.strip_suffix(&suffix) else {
            return false;
        };
        match ip.parse::<IpAddr>() {
            Ok(ip) => self.ips.is_empty() || self.ips.contains(&ip),
            Err(_) => false,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

/// What a host announces about itself (a `HostInfo`).
#[derive(Debug, Clone, Copy)]
pub struct HostClaim<'a> {
    pub host_id: &'a str,
    pub hostname: &'a str,
    pub ip: &'a str,
    pub seed: bool,
}

/// Why an announcement is refused; the message goes back to the caller as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("certificate {identity}: {reason}")]
pub struct Denied {
    pub identity: String,
    pub reason: String,
}

fn deny(id: &Identity, reason: impl Into<String>) -> Denied {
    Denied {
        identity: id.uri(),
        reason: reason.into(),
    }
}

/// Whether a host with certificate identity `id` may announce `claim`.
pub fn check_host(id: &Identity, claim: &HostClaim<'_>) -> Result<(), Denied> {
    match (id.role, claim.seed) {
        (Role::Scheduler, _) => return Err(deny(id, "a scheduler certificate announces no host")),
        (Role::Peer, true) => return Err(deny(id, "host type SEED needs a seed certificate")),
        (Role::Seed, false) => {
            return Err(deny(id, "a seed certificate announces host type SEED only"));
        }
        _ => {}
    }
    if claim.hostname != id.name {
        return Err(deny(
            id,
            format!(
                "hostname '{}' is not the certificate's name '{}'",
                claim.hostname, id.name
            ),
        ));
    }
    let ip: IpAddr = claim
        .ip
        .parse()
        .map_err(|_| deny(id, format!("ip '{}' is not an IP address", claim.ip)))?;
    if !id.ips.is_empty() && !id.ips.contains(&ip) {
        return Err(deny(
            id,
            format!("ip {ip} is not among the certificate's IP addresses"),
        ));
    }
    let expected = HostId::new(claim.ip, &id.name, claim.seed);
    if claim.host_id != expected.to_string() {
        return Err(deny(
            id,
            format!(
                "host_id '{}' is not this certificate's ('{expected}')",
                claim.host_id
            ),
        ));
    }
    Ok(())
}

/// Whether a download stream registered as `peer_id` of `host_id` (seed download or not) may
/// come from `id`: the host ID must be one the certificate may use and the peer ID one of
/// that host's.
pub fn check_peer(id: &Identity, host_id: &str, peer_id: &str, seed: bool) -> Result<(), Denied> {
    if seed && id.role != Role::Seed {
        return Err(deny(id, "only a seed certificate fetches for a seed task"));
    }
    if !id.may_use_host_id(host_id) {
        return Err(deny(
            id,
            format!("host_id '{host_id}' does not belong to this certificate"),
        ));
    }
    match peer_id.strip_prefix(host_id) {
        Some(rest) if rest.starts_with('-') && rest.len() > 1 => Ok(()),
        _ => Err(deny(
            id,
            format!("peer_id '{peer_id}' is not a peer of host '{host_id}'"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(role: Role, name: &str, ips: &[&str]) -> Identity {
        Identity {
            role,
            name: name.into(),
            ips: ips.iter().map(|i| i.parse().expect("ip")).collect(),
        }
    }

    fn claim<'a>(host_id: &'a str, hostname: &'a str, seed: bool) -> HostClaim<'a> {
        HostClaim {
            host_id,
            hostname,
            ip: "10.0.0.5",
            seed,
        }
    }

    #[test]
    fn uris_round_trip_and_bad_ones_are_named() {
        assert_eq!(uri(Role::Seed, "node-1"), "dragonfly://seed/node-1");
        assert_eq!(
            parse_uri("dragonfly://peer/node-1.example"),
            Ok((Role::Peer, "node-1.example".into()))
        );
        assert_eq!(
            parse_uri("dragonfly://admin/x"),
            Err(IdentityError::Role("admin".into()))
        );
        assert_eq!(
            parse_uri("dragonfly://peer/a/b"),
            Err(IdentityError::Name("a/b".into()))
        );
        assert!(matches!(
            parse_uri("https://peer/x"),
            Err(IdentityError::Uri(_))
        ));
        assert!(matches!(
            parse_uri("dragonfly://peer"),
            Err(IdentityError::Uri(_))
        ));
    }

    #[test]
    fn an_honest_host_passes() {
        let peer = id(Role::Peer, "node-1", &[]);
        assert_eq!(
            check_host(&peer, &claim("10.0.0.5-node-1", "node-1", false)),
            Ok(())
        );
        let seed = id(Role::Seed, "seed-1", &["10.0.0.5"]);
        assert_eq!(
            check_host(&seed, &claim("10.0.0.5-seed-1-seed", "seed-1", true)),
            Ok(())
        );
    }

    #[test]
    fn a_peer_certificate_cannot_announce_a_seed() {
        let peer = id(Role::Peer, "node-1", &[]);
        let err = check_host(&peer, &claim("10.0.0.5-node-1-seed", "node-1", true))
            .expect_err("seed claim");
        assert!(
            err.to_string().contains("SEED needs a seed certificate"),
            "{err}"
        );
        assert!(err.to_string().contains("dragonfly://peer/node-1"), "{err}");
    }

    #[test]
    fn roles_bind_both_ways_and_schedulers_announce_nothing() {
        let seed = id(Role::Seed, "s", &[]);
        assert!(check_host(&seed, &claim("10.0.0.5-s", "s", false)).is_err());
        let sched = id(Role::Scheduler, "s", &[]);
        assert!(check_host(&sched, &claim("10.0.0.5-s", "s", false)).is_err());
        assert!(!sched.may_use_host_id("10.0.0.5-s"));
    }

    #[test]
    fn another_hosts_id_or_name_is_refused() {
        let peer = id(Role::Peer, "node-1", &[]);
        let err =
            check_host(&peer, &claim("10.0.0.9-node-2", "node-1", false)).expect_err("replayed id");
        assert!(
            err.to_string().contains("host_id '10.0.0.9-node-2'"),
            "{err}"
        );
        let err =
            check_host(&peer, &claim("10.0.0.5-node-2", "node-2", false)).expect_err("other name");
        assert!(err.to_string().contains("hostname 'node-2'"), "{err}");
    }

    #[test]
    fn ip_sans_bind_the_announced_ip() {
        let peer = id(Role::Peer, "node-1", &["10.0.0.7"]);
        let err = check_host(&peer, &claim("10.0.0.5-node-1", "node-1", false))
            .expect_err("ip not in SANs");
        assert!(err.to_string().contains("10.0.0.5"), "{err}");
        assert!(peer.may_use_host_id("10.0.0.7-node-1"));
        assert!(!peer.may_use_host_id("10.0.0.5-node-1"));
    }

    #[test]
    fn host_ids_a_certificate_may_use() {
        let peer = id(Role::Peer, "n", &[]);
        assert!(peer.may_use_host_id("10.0.0.1-n"));
        assert!(peer.may_use_host_id("::1-n"));
        assert!(!peer.may_use_host_id("10.0.0.1-n-seed"));
        assert!(!peer.may_use_host_id("10.0.0.1-xn"));
        assert!(!peer.may_use_host_id("evil-n"));
        let seed = id(Role::Seed, "n", &[]);
        assert!(seed.may_use_host_id("10.0.0.1-n-seed"));
        assert!(!seed.may_use_host_id("10.0.0.1-n"));
    }

    #[test]
    fn download_streams_are_bound_to_the_host() {
        let peer = id(Role::Peer, "n", &[]);
        assert_eq!(
            check_peer(&peer, "10.0.0.1-n", "10.0.0.1-n-abc", false),
            Ok(())
        );
        assert!(check_peer(&peer, "10.0.0.1-n", "10.0.0.1-n-abc", true).is_err());
        assert!(check_peer(&peer, "10.0.0.1-m", "10.0.0.1-m-abc", false).is_err());
        assert!(check_peer(&peer, "10.0.0.1-n", "10.0.0.1-m-abc", false).is_err());
        assert!(check_peer(&peer, "10.0.0.1-n", "10.0.0.1-n", false).is_err());
    }
}
