//! The configuration files `dfctl gen-config` and `dfctl init` generate for container runtimes
//! and for the daemons, as pure functions from options (and the file currently on disk) to a
//! [`WritePlan`](crate::write_plan::WritePlan); the commands only print or apply the plan.
//!
//! - [`containerd`]: `config_path` in `config.toml` (format-preserving edit) and one
//!   `hosts.toml` per mirrored registry;
//! - [`docker`]: the systemd proxy drop-in and `registry-mirrors` in `daemon.json`;
//! - [`registries_conf`]: the CRI-O/podman `registries.conf.d` drop-in;
//! - [`daemon_yaml`]: `dfdaemon.yaml` / `dfscheduler.yaml` with every default, serialized from
//!   the daemons' raw config types in `df_core::config`.
//!
//! The text of every other generated file comes from `templates/` at the repository root,
//! embedded with `include_str!`; [`fill`] substitutes its `{{name}}` placeholders.

pub mod containerd;
pub mod daemon_yaml;
pub mod docker;
pub mod registries_conf;

use std::fmt;
use std::str::FromStr;

/// The local dfdaemon's proxy/mirror address (`--peer HOST:PORT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr {
    host: String,
    port: u16,
}

impl PeerAddr {
    /// Where runtimes reach the node's dfdaemon by default (the Helm chart's peer port).
    pub fn local_default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: df_core::ports::PEER_PROXY,
        }
    }

    /// `http://host:port`, the mirror URL runtimes use.
    pub fn url(&self) -> String {
        format!("http://{self}")
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for PeerAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{s}' is not HOST:PORT (like 127.0.0.1:4001)");
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(['/', ' ']) {
            return Err(bad());
        }
        let port = port.parse::<u16>().map_err(|_| bad())?;
        if port == 0 {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

/// A registry to mirror through the peer (`--registry HOST[:PORT]`, or `http://HOST[:PORT]` /
/// `https://HOST[:PORT]` to say how the registry itself is reached).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// `host[:port]` as in image references (`docker.io`, `registry.test:5000`).
    host: String,
    /// The scheme given on the command line, if any.
    scheme: Option<String>,
}

impl Registry {
    /// The name as in image references and containerd's `certs.d/<name>` directory.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether the operator said how the registry is reached.
    pub fn has_explicit_scheme(&self) -> bool {
        self.scheme.is_some()
    }

    /// The registry's own URL: HTTPS unless told otherwise; Docker Hub's API host for
    /// `docker.io`.
    pub fn server_url(&self) -> String {
        let scheme = self.scheme.as_deref().unwrap_or("https");
        let host = if self.host == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.host
        };
        format!("{scheme}://{host}")
    }
}

impl Registry {
    /// For a registry reached over HTTPS, its server's host (`registry-1.docker.io` for
    /// `docker.io`) and port: what a client CONNECTs to and the name its certificate needs.
    pub fn https_server(&self) -> Option<(String, u16)> {
        let url = self.server_url();
        let authority = url.strip_prefix("https://")?;
        // `[v6]:port`, `[v6]`, `host:port` or `host`.
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => match v6.split_once("]:") {
                Some((h, port)) => (h, port),
                None => (v6.trim_end_matches(']'), "443"),
            },
            None => authority.rsplit_once(':').unwrap_or((authority, "443")),
        };
        Some((host.to_owned(), port.parse().unwrap_or(443)))
    }
}

impl fmt::Display for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host)
    }
}

impl FromStr for Registry {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = match s.split_once("://") {
            Some((scheme @ ("http" | "https"), rest)) => (Some(scheme.to_owned()), rest),
            Some(_) => return Err(format!("registry '{s}': only http:// or https:// URLs")),
            None => (None, s),
        };
        let host = rest.trim_end_matches('/');
        let valid = !host.is_empty()
            && host != "_default"
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        if !valid {
            return Err(format!(
                "registry '{s}' is not HOST[:PORT] (like docker.io or registry.test:5000)"
            ));
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            scheme,
        })
    }
}

/// Replaces each `{{name}}` in `template` with its value. Placeholders without a value stay,
/// which the templates' tests catch.
pub fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in vars {
        out = out.replace(&format!("{{{{{name}}}}}"), value);
    }
    out
}

/// 1-based line of byte offset `at` in `text`.
pub fn line_of(text: &str, at: usize) -> usize {
    text.get(..at.min(text.len()))
        .map_or(1, |head| head.matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_and_registry_parse() {
        let p: PeerAddr = "127.0.0.1:65001".parse().expect("peer");
        assert_eq!(p.url(), "http://127.0.0.1:65001");
        let p: PeerAddr = "[::1]:4001".parse().expect("v6 peer");
        assert_eq!(p.url(), "http://[::1]:4001");
        for bad in ["127.0.0.1", "host:0", ":80", "http://h:1", "h:99999"] {
            assert!(bad.parse::<PeerAddr>().is_err(), "{bad}");
        }
        let r: Registry = "docker.io".parse().expect("registry");
        assert_eq!(r.server_url(), "https://registry-1.docker.io");
        let r: Registry = "http://Registry.test:5000/".parse().expect("registry");
        assert_eq!(
            (r.host(), r.server_url().as_str()),
            ("registry.test:5000", "http://registry.test:5000")
        );
        assert!(r.has_explicit_scheme());
        for bad in ["", "_default", "ftp://x", "a/b", "a b"] {
            assert!(bad.parse::<Registry>().is_err(), "{bad}");
        }
    }

    #[test]
    fn fill_and_line_of() {
        assert_eq!(fill("a {{x}} {{y}}", &[("x", "1")]), "a 1 {{y}}");
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
