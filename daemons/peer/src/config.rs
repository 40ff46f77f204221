//! dfdaemon configuration: the raw YAML shape ([`RawConfig`], defined with its defaults in
//! `df_core::config::peer`, the one place a key is added), validated here into [`Config`].

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use df_core::admin_auth::AdminAuth;
use df_core::config::tls::{RawTls, TlsSetting};
use df_core::config::{ConfigError, load_yaml, socket_addr};
use df_core::ids::HostId;
use df_core::serve::ServerLimits;
use df_core::telemetry::StderrFormat;
use regex::Regex;

pub use df_core::config::peer::DEFAULT_PATH as DEFAULT_CONFIG_PATH;
pub use df_core::config::peer::RawConfig;
use df_core::config::peer::{RawAccessCheck, RawHostCert, RawOrigin, RawProxy, RawStorage};

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub seed: bool,
    pub hostname: String,
    /// `None`: derive from the bound upload address.
    pub ip: Option<IpAddr>,
    pub idc: String,
    pub location: String,
    pub schedulers: Vec<String>,
    pub upload_addr: SocketAddr,
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub upload_rate: u64,
    pub upload_rate_per_connection: u64,
    pub upload_slots: u32,
    pub concurrent_pieces: usize,
    pub download_rate: u64,
    pub schedule_timeout: Duration,
    pub piece_timeout: Duration,
    pub origin_connect_timeout: Duration,
    pub data_dir: PathBuf,
    pub capacity: u64,
    pub high_watermark_percent: u8,
    pub low_watermark_percent: u8,
    pub task_ttl: Duration,
    pub gc_interval: Duration,
    pub log_dir: Option<PathBuf>,
    pub log_level: String,
    pub log_stderr: StderrFormat,
    /// `shutdown_grace`: the bound on a graceful stop.
    pub shutdown_grace: Duration,
    pub proxy: ProxyConfig,
    pub origin: OriginConfig,
    /// Bounds of each server (connections, header-read timeout).
    pub server_limits: ServerLimits,
    /// A CONNECT tunnel idle this long is closed.
    pub idle_timeout: Duration,
    /// Largest object cached and shared.
    pub max_content_length: u64,
    /// Who may read a private cached object (`download.access_check`).
    pub access_check: AccessCheckConfig,
    pub admin: AdminAuth,
    /// Mutual TLS on scheduler links and piece transfer, or the explicit plaintext opt-out.
    pub tls: TlsSetting,
}

/// Validated `proxy:` section.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub enabled: bool,
    pub rules: Vec<Regex>,
    pub mirror_default: url::Url,
    pub hijack_hosts: Vec<Regex>,
    /// PEM text of the CA certificate and key, read at load time so a bad path fails early.
    pub hijack_ca: Option<(String, String)>,
    /// Fixed certificates per intercepted host, read at load time.
    pub hijack_certs: Vec<HostCert>,
    pub connect_ports: Vec<u16>,
    /// Client networks served; empty: loopback and this node's own addresses.
    pub allow: Vec<ipnet::IpNet>,
    pub allow_private_destinations: bool,
    /// Ports forward, mirror and download requests may reach (with `connect_ports` and the
    /// mirror's port); empty: any.
    pub destination_ports: Vec<u16>,
}

/// One `proxy.hijack.certs` entry: PEM text of the chain and key for `host` (lower case).
#[derive(Debug, Clone)]
pub struct HostCert {
    pub host: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl ProxyConfig {
    /// Whether a CONNECT to `host` is intercepted: a host with a fixed certificate, or one on
    /// the hijack list when a CA can mint its leaf.
    pub fn intercepts(&self, host: &str) -> bool {
        self.hijack_certs
            .iter()
            .any(|c| c.host.eq_ignore_ascii_case(host))
            || (self.hijack_ca.is_some() && self.hijack_hosts.iter().any(|re| re.is_match(host)))
    }
}

/// Validated `origin:` section.
#[derive(Debug, Clone, Default)]
pub struct OriginConfig {
    /// PEM text of each extra CA bundle.
    pub ca_pems: Vec<(PathBuf, Vec<u8>)>,
    pub insecure_hosts: Vec<Regex>,
}

/// Validated `download.access_check`.
#[derive(Debug, Clone, Default)]
pub struct AccessCheckConfig {
    pub enabled: bool,
    pub skip_hosts: Vec<Regex>,
}

impl AccessCheckConfig {
    fn validate(path: &Path, raw: RawAccessCheck) -> Result<Self, ConfigError> {
        let skip_hosts = raw
            .skip_hosts
            .iter()
            .enumerate()
            .map(|(i, h)| host_regex(path, &format!("download.access_check.skip_hosts[{i}]"), h))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            enabled: raw.enabled,
            skip_hosts,
        })
    }

    /// Whether a private object from `url` is served only after the origin confirms access.
    pub fn applies_to(&self, url: &str) -> bool {
        if !self.enabled {
            return false;
        }
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        !self.skip_hosts.iter().any(|re| re.is_match(&host))
    }
}

/// A regex that must match the whole host name.
fn host_regex(path: &Path, key: &str, re: &str) -> Result<Regex, ConfigError> {
    Regex::new(&format!("^(?:{re})$"))
        .map_err(|e| ConfigError::invalid(path, key, format!("'{re}' is not a regex: {e}")))
}

fn read_file(path: &Path, key: &str, file: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(file).map_err(|e| {
        ConfigError::invalid(path, key, format!("cannot read {}: {e}", file.display()))
    })
}

fn read_pem(path: &Path, key: &str, file: &Path) -> Result<String, ConfigError> {
    String::from_utf8(read_file(path, key, file)?)
        .map_err(|_| ConfigError::invalid(path, key, "not PEM text"))
}

fn host_certs(path: &Path, raw: &[RawHostCert]) -> Result<Vec<HostCert>, ConfigError> {
    let mut certs: Vec<HostCert> = Vec::with_capacity(raw.len());
    for (i, c) in raw.iter().enumerate() {
        let key = format!("proxy.hijack.certs[{i}]");
        let host = c.host.trim().to_ascii_lowercase();
        if host.is_empty() || host.contains([':', '/', ' ']) {
            return Err(ConfigError::invalid(
                path,
                &format!("{key}.host"),
                format!("'{}' is not a host name (no port, no scheme)", c.host),
            ));
        }
        if certs.iter().any(|o| o.host == host) {
            return Err(ConfigError::invalid(
                path,
                &format!("{key}.host"),
                format!("'{host}' is listed twice"),
            ));
        }
        certs.push(HostCert {
            cert_pem: read_pem(path, &format!("{key}.cert"), &c.cert)?,
            key_pem: read_pem(path, &format!("{key}.key"), &c.key)?,
            host,
        });
    }
    Ok(certs)
}

impl ProxyConfig {
    fn validate(path: &Path, raw: RawProxy) -> Result<Self, ConfigError> {
        let rules = raw
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Regex::new(&r.regex).map_err(|e| {
                    ConfigError::invalid(
                        path,
                        &format!("proxy.rules[{i}].regex"),
                        format!("'{}' is not a regex: {e}", r.regex),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let mirror_default = df_core::ids::validate_http_url(&raw.registry_mirror.addr)
            .map_err(|e| ConfigError::invalid(path, "proxy.registry_mirror.addr", e.to_string()))?;
        let hijack_hosts = raw
            .hijack
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| host_regex(path, &format!("proxy.hijack.hosts[{i}]"), h))
            .collect::<Result<Vec<_>, _>>()?;
        let hijack_ca = match (&raw.hijack.ca_cert, &raw.hijack.ca_key) {
            (Some(c), Some(k)) => Some((
                read_pem(path, "proxy.hijack.ca_cert", c)?,
                read_pem(path, "proxy.hijack.ca_key", k)?,
            )),
            (None, None) => None,
            _ => {
                return Err(ConfigError::invalid(
                    path,
                    "proxy.hijack",
                    "ca_cert and ca_key go together",
                ));
            }
        };
        if !hijack_hosts.is_empty() && hijack_ca.is_none() {
            return Err(ConfigError::invalid(
                path,
                "proxy.hijack.hosts",
                "intercepting hosts needs proxy.hijack.ca_cert and ca_key",
            ));
        }
        let allow = raw
            .allow
            .iter()
            .enumerate()
            .map(|(i, a)| {
                a.parse::<ipnet::IpNet>()
                    .or_else(|_| a.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        ConfigError::invalid(
                            path,
                            &format!("proxy.allow[{i}]"),
                            format!("'{a}' is not an IP address or CIDR like 10.0.0.0/8"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        let mut destination_ports = raw.destination_ports;
        if !destination_ports.is_empty() {
            destination_ports.extend(&raw.connect_ports);
            destination_ports.extend(mirror_default.port_or_known_default());
            destination_ports.sort_unstable();
            destination_ports.dedup();
        }
        Ok(Self {
            enabled: raw.enabled,
            allow,
            allow_private_destinations: raw.allow_private_destinations,
            destination_ports,
            rules,
            mirror_default,
            hijack_hosts,
            hijack_ca,
            hijack_certs: host_certs(path, &raw.hijack.certs)?,
            connect_ports: raw.connect_ports,
        })
    }
}

impl OriginConfig {
    fn validate(path: &Path, raw: RawOrigin) -> Result<Self, ConfigError> {
        let ca_pems = raw
            .ca_certs
            .iter()
            .enumerate()
            .map(|(i, f)| {
                Ok((
                    f.clone(),
                    read_file(path, &format!("origin.ca_certs[{i}]"), f)?,
                ))
            })
            .collect::<Result<_, ConfigError>>()?;
        let insecure_hosts = raw
            .insecure_hosts
            .iter()
            .enumerate()
            .map(|(i, h)| host_regex(path, &format!("origin.insecure_hosts[{i}]"), h))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            ca_pems,
            insecure_hosts,
        })
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::validate(path, load_yaml(path)?)
    }

    /// A config for tests and embedding: defaults, data under `data_dir`, loopback addresses,
    /// and the plaintext opt-out (TLS needs files only the caller has; set `tls` for it). A
    /// YAML file without a `tls:` section is refused instead.
    pub fn for_dir(data_dir: &Path) -> Self {
        let raw = RawConfig {
            tls: RawTls {
                plaintext: true,
                ..RawTls::default()
            },
            storage: RawStorage {
                dir: data_dir.to_owned(),
                ..RawStorage::default()
            },
            ..RawConfig::default()
        };
        Self::validate(Path::new("<defaults>"), raw)
            .unwrap_or_else(|_| unreachable!("default peer config is valid"))
    }

    pub fn validate(path: &Path, raw: RawConfig) -> Result<Self, ConfigError> {
        let addr = |key: &str, value: &str| socket_addr(path, key, value);
        for (i, s) in raw.schedulers.iter().enumerate() {
            if s.parse::<SocketAddr>().is_err() && !s.contains(':') {
                return Err(ConfigError::invalid(
                    path,
                    &format!("schedulers[{i}]"),
                    format!("'{s}' is not host:port"),
                ));
            }
        }
        let ip = if raw.host.ip.is_empty() {
            None
        } else {
            Some(raw.host.ip.parse::<IpAddr>().map_err(|_| {
                ConfigError::invalid(
                    path,
                    "host.ip",
                    format!("'{}' is not an IP address", raw.host.ip),
                )
            })?)
        };
        if raw.download.piece_timeout <= df_core::PEER_WAIT {
            return Err(ConfigError::invalid(
                path,
                "download.piece_timeout",
                format!(
                    "must be longer than {}s: a parent may hold a queued piece request, and its \
                     bitmap feed may be quiet, that long",
                    df_core::PEER_WAIT.as_secs()
                ),
            ));
        }
        if raw.download.concurrent_pieces == 0 {
            return Err(ConfigError::invalid(
                path,
                "download.concurrent_pieces",
                "must be at least 1",
            ));
        }
        let (low, high) = (
            raw.storage.low_watermark_percent,
            raw.storage.high_watermark_percent,
        );
        if high == 0 || high > 100 || low >= high {
            return Err(ConfigError::invalid(
                path,
                "storage.high_watermark_percent",
                format!("need 0 <= low ({low}) < high ({high}) <= 100"),
            ));
        }
        if raw.storage.dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                path,
                "storage.dir",
                "must not be empty",
            ));
        }
        if raw.server.max_connections == 0 || raw.server.header_read_timeout.is_zero() {
            return Err(ConfigError::invalid(
                path,
                "server.max_connections",
                "max_connections must be at least 1 and header_read_timeout more than 0s",
            ));
        }
        let hostname = if raw.host.hostname.is_empty() {
            system_hostname()
        } else {
            raw.host.hostname
        };
        Ok(Self {
            seed: raw.seed,
            hostname,
            ip,
            idc: raw.host.idc,
            location: raw.host.location,
            schedulers: raw.schedulers,
            upload_addr: addr("server.upload_addr", &raw.server.upload_addr)?,
            proxy_addr: addr("server.proxy_addr", &raw.server.proxy_addr)?,
            admin_addr: addr("server.admin_addr", &raw.server.admin_addr)?,
            upload_rate: raw.upload.rate_limit.0,
            upload_rate_per_connection: raw.upload.per_connection_rate_limit.0,
            upload_slots: raw.upload.slots.max(1),
            concurrent_pieces: raw.download.concurrent_pieces,
            download_rate: raw.download.rate_limit.0,
            schedule_timeout: raw.download.schedule_timeout,
            piece_timeout: raw.download.piece_timeout,
            origin_connect_timeout: raw.download.origin_connect_timeout,
            data_dir: raw.storage.dir,
            capacity: raw.storage.capacity.0,
            high_watermark_percent: high,
            low_watermark_percent: low,
            task_ttl: raw.storage.task_ttl,
            gc_interval: raw.storage.gc_interval,
            proxy: ProxyConfig::validate(path, raw.proxy)?,
            origin: OriginConfig::validate(path, raw.origin)?,
            server_limits: ServerLimits {
                max_connections: raw.server.max_connections,
                header_read_timeout: raw.server.header_read_timeout,
            },
            idle_timeout: raw.server.idle_timeout,
            max_content_length: raw.download.max_content_length.0,
            access_check: AccessCheckConfig::validate(path, raw.download.access_check)?,
            admin: AdminAuth::load(path, &raw.admin)?,
            tls: raw.tls.validate(path)?,
            log_dir: raw.log.dir,
            log_level: raw.log.level,
            log_stderr: raw.log.stderr,
            shutdown_grace: raw.shutdown_grace.0,
        })
    }

    /// Settings that weaken security, logged at start and shown by `dfctl status`.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self.admin.warning().into_iter().collect();
        if self.proxy.allow_private_destinations {
            out.push(
                "proxy.allow_private_destinations: the proxy and download API may reach loopback, link-local and this node's own addresses".to_owned(),
            );
        }
        if !self.access_check.enabled {
            out.push("download.access_check.enabled: false: any client of this node reads any private object cached here".to_owned());
        } else if !self.access_check.skip_hosts.is_empty() {
            let hosts: Vec<&str> = self
                .access_check
                .skip_hosts
                .iter()
                .map(Regex::as_str)
                .collect();
            out.push(format!(
                "download.access_check.skip_hosts: private objects from {} are served to any client of this node",
                hosts.join(", ")
            ));
        }
        if self.proxy.enabled && self.proxy.allow.iter().any(|n| n.prefix_len() == 0) {
            out.push("proxy.allow admits every client address".to_owned());
        }
        out
    }

    pub fn host_id(&self, ip: &IpAddr) -> HostId {
        HostId::new(&ip.to_string(), &self.hostname, self.seed)
    }
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use df_core::config::parse_yaml;

    #[test]
    fn unknown_key_is_refused_with_its_name() {
        let err = parse_yaml::<RawConfig>(Path::new("d.yaml"), "storage:\n  dri: /x\n")
            .expect_err("typo");
        assert!(err.to_string().contains("dri"), "{err}");
    }

    #[test]
    fn sizes_and_watermarks_validate() {
        let raw: RawConfig = parse_yaml(
            Path::new("d.yaml"),
            "storage:\n  dir: /x\n  capacity: 1GiB\n  low_watermark_percent: 95\ntls:\n  plaintext: true\n",
        )
        .expect("parses");
        let err = Config::validate(Path::new("d.yaml"), raw).expect_err("low above high");
        assert!(
            err.to_string().contains("storage.high_watermark_percent"),
            "{err}"
        );
        let raw: RawConfig = parse_yaml(
            Path::new("d.yaml"),
            "upload:\n  rate_limit: 10MiB\ntls:\n  plaintext: true\n",
        )
        .expect("parses");
        let cfg = Config::validate(Path::new("d.yaml"), raw).expect("valid");
        assert_eq!(cfg.upload_rate, 10 << 20);
    }

    #[test]
    fn a_piece_timeout_a_waiting_parent_would_trip_is_refused() {
        let raw: RawConfig = parse_yaml(
            Path::new("d.yaml"),
            "download:\n  piece_timeout: 5s\ntls:\n  plaintext: true\n",
        )
        .expect("parses");
        let err = Config::validate(Path::new("d.yaml"), raw).expect_err("too short");
        assert!(err.to_string().contains("download.piece_timeout"), "{err}");
        let raw: RawConfig = parse_yaml(
            Path::new("d.yaml"),
            "download:\n  piece_timeout: 6s\ntls:\n  plaintext: true\n",
        )
        .expect("parses");
        Config::validate(Path::new("d.yaml"), raw).expect("valid");
    }

    #[test]
    fn tls_paths_are_read_and_a_missing_section_is_named() {
        let raw: RawConfig = parse_yaml(
            Path::new("d.yaml"),
            "tls:\n  ca: /t/ca.crt\n  cert: /t/tls.crt\n  key: /t/tls.key\n",
        )
        .expect("parses");
        let cfg = Config::validate(Path::new("d.yaml"), raw).expect("valid");
        assert!(matches!(cfg.tls, TlsSetting::Mutual(ref p) if p.key == Path::new("/t/tls.key")));
        let raw: RawConfig =
            parse_yaml(Path::new("d.yaml"), "tls:\n  ca: /t/ca.crt\n").expect("parses");
        let err = Config::validate(Path::new("d.yaml"), raw).expect_err("no cert");
        assert!(
            err.to_string()
                .starts_with("d.yaml: key 'tls.cert': missing"),
            "{err}"
        );
    }

    #[test]
    fn fixed_host_certs_are_intercepted_without_a_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("r.crt"), dir.path().join("r.key"));
        std::fs::write(&cert, "PEM").expect("cert");
        std::fs::write(&key, "PEM").expect("key");
        let yaml = |host: &str| {
            format!(
                "tls:\n  plaintext: true\nproxy:\n  hijack:\n    certs:\n      - host: {host}\n        cert: {}\n        key: {}\n",
                cert.display(),
                key.display()
            )
        };
        let path = Path::new("d.yaml");
        let raw: RawConfig = parse_yaml(path, &yaml("Registry.Test")).expect("parses");
        let cfg = Config::validate(path, raw).expect("valid without a CA");
        assert!(cfg.proxy.intercepts("registry.test"));
        assert!(cfg.proxy.intercepts("REGISTRY.test"));
        assert!(!cfg.proxy.intercepts("other.test"));
        let raw: RawConfig = parse_yaml(path, &yaml("registry.test:5443")).expect("parses");
        let err = Config::validate(path, raw).expect_err("a port is not a host");
        assert!(
            err.to_string().contains("proxy.hijack.certs[0].host"),
            "{err}"
        );
        let missing = yaml("r.test").replace("r.key", "missing.key");
        let raw: RawConfig = parse_yaml(path, &missing).expect("parses");
        let err = Config::validate(path, raw).expect_err("missing key file");
        assert!(
            err.to_string().contains("proxy.hijack.certs[0].key"),
            "{err}"
        );
    }
}
