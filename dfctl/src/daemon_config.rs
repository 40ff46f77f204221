//! The YAML config files `dfctl up` writes for `dfscheduler` and `dfdaemon`.
//!
//! Invariant: the daemons parse their configs with `deny_unknown_fields`, so these structs hold
//! exactly the keys the daemons know and nothing else; a key added here must exist there first.
//! Everything not written falls back to the daemons' own defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use serde::Serialize;

/// Where a daemon's logs go: files in `dir`, and on stderr in `stderr` format.
#[derive(Debug, Clone, Serialize)]
pub struct LogSection {
    pub dir: PathBuf,
    pub level: String,
    /// `human`, `json` or `off`. A local cluster logs to files only: its stderr is a file too.
    pub stderr: String,
}

impl LogSection {
    pub fn files_only(dir: PathBuf) -> Self {
        Self {
            dir,
            level: "info".to_owned(),
            stderr: "off".to_owned(),
        }
    }
}

/// `dfscheduler.yaml`.
#[derive(Debug, Clone, Serialize)]
pub struct SchedulerConfig {
    pub server: SchedulerServer,
    pub log: LogSection,
}

#[derive(Debug, Clone, Serialize)]
pub struct SchedulerServer {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
}

/// `dfdaemon.yaml`.
#[derive(Debug, Clone, Serialize)]
pub struct PeerConfig {
    pub seed: bool,
    pub host: PeerHost,
    /// The schedulers' gRPC addresses.
    pub schedulers: Vec<SocketAddr>,
    pub server: PeerServer,
    pub upload: PeerUpload,
    pub storage: PeerStorage,
    /// Interception and the mirror default (`dfctl up --intercept/--mirror`); absent: defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<PeerProxy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<PeerOrigin>,
    pub log: LogSection,
}

/// `proxy:`, only the keys `dfctl up` sets.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PeerProxy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_mirror: Option<PeerMirror>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hijack: Option<PeerHijack>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_ports: Option<Vec<u16>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerMirror {
    /// The registry for `/v2/` requests that name none.
    pub addr: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerHijack {
    /// `proxy.hijack.certs`: a fixed certificate per intercepted host.
    pub certs: Vec<HostCert>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostCert {
    pub host: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `origin:`: extra CAs the peers trust for origins.
#[derive(Debug, Clone, Serialize)]
pub struct PeerOrigin {
    pub ca_certs: Vec<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerHost {
    /// The daemon's name, so hosts on one machine are told apart.
    pub hostname: String,
    pub ip: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerServer {
    pub upload_addr: SocketAddr,
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerUpload {
    /// Bytes per second; 0 = unlimited.
    pub rate_limit: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerStorage {
    pub dir: PathBuf,
    /// Bytes; 0 = the filesystem's size.
    pub capacity: u64,
}

/// Renders a config as YAML under a comment saying who wrote it.
pub fn to_yaml<T: Serialize>(config: &T, name: &str) -> anyhow::Result<String> {
    let body = yaml_serde::to_string(config)
        .with_context(|| format!("cannot encode the config of {name} as YAML"))?;
    Ok(format!(
        "# Written by `dfctl up` for {name}; `dfctl up` rewrites it on every start.\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn scheduler_config_has_exactly_the_daemon_keys() {
        let config = SchedulerConfig {
            server: SchedulerServer {
                grpc_addr: addr(8002),
                http_addr: addr(8080),
            },
            log: LogSection::files_only("/c/scheduler-0/log".into()),
        };
        let yaml = to_yaml(&config, "scheduler-0").expect("yaml");
        let value: yaml_serde::Value = yaml_serde::from_str(&yaml).expect("valid yaml");
        assert_eq!(
            value["server"]["grpc_addr"].as_str(),
            Some("127.0.0.1:8002")
        );
        assert_eq!(
            value["server"]["http_addr"].as_str(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(value["log"]["dir"].as_str(), Some("/c/scheduler-0/log"));
        assert_eq!(value["log"]["level"].as_str(), Some("info"));
        // `off` must stay a string; YAML 1.1 readers would take a bare off as false.
        assert_eq!(value["log"]["stderr"].as_str(), Some("off"));
        assert_eq!(keys(&value), ["log", "server"]);
    }

    #[test]
    fn peer_config_has_exactly_the_daemon_keys() {
        let config = PeerConfig {
            seed: true,
            host: PeerHost {
                hostname: "seed-0".into(),
                ip: "127.0.0.1".into(),
            },
            schedulers: vec![addr(8002), addr(8003)],
            server: PeerServer {
                upload_addr: addr(4000),
                proxy_addr: addr(4001),
                admin_addr: addr(4002),
            },
            upload: PeerUpload { rate_limit: 0 },
            storage: PeerStorage {
                dir: "/c/seed-0/data".into(),
                capacity: 1 << 30,
            },
            proxy: None,
            origin: None,
            log: LogSection::files_only("/c/seed-0/log".into()),
        };
        let yaml = to_yaml(&config, "seed-0").expect("yaml");
        let value: yaml_serde::Value = yaml_serde::from_str(&yaml).expect("valid yaml");
        assert_eq!(
            keys(&value),
            [
                "host",
                "log",
                "schedulers",
                "seed",
                "server",
                "storage",
                "upload"
            ]
        );
        assert_eq!(value["seed"].as_bool(), Some(true));
        assert_eq!(value["host"]["hostname"].as_str(), Some("seed-0"));
        assert_eq!(value["schedulers"][1].as_str(), Some("127.0.0.1:8003"));
        assert_eq!(
            value["server"]["admin_addr"].as_str(),
            Some("127.0.0.1:4002")
        );
        assert_eq!(value["upload"]["rate_limit"].as_u64(), Some(0));
        assert_eq!(value["storage"]["capacity"].as_u64(), Some(1 << 30));
        assert_eq!(
            keys(&value["server"]),
            ["admin_addr", "proxy_addr", "upload_addr"]
        );
    }

    fn keys(value: &yaml_serde::Value) -> Vec<String> {
        let mut keys: Vec<String> = value
            .as_mapping()
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        keys.sort();
        keys
    }
}
