//! dfdaemon configuration: the raw YAML shape (unknown keys refused), then the validated
//! [`Config`]. Every default is here, in one place.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use df_core::config::{ByteSize, ConfigError, LogSection, load_yaml};
use df_core::ids::HostId;
use df_core::telemetry::StderrFormat;
use serde::Deserialize;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/dragonfly/dfdaemon.yaml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Seed mode: this peer fetches from the origin first when the scheduler asks it.
    pub seed: bool,
    pub host: RawHost,
    /// Scheduler gRPC addresses; tasks are spread over them by consistent hashing.
    pub schedulers: Vec<String>,
    pub server: RawServer,
    pub upload: RawUpload,
    pub download: RawDownload,
    pub storage: RawStorage,
    pub log: LogSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHost {
    /// Defaults to the system hostname.
    pub hostname: String,
    /// The address other peers reach this one at; defaults to the upload address's IP, or
    /// 127.0.0.1 when that is unspecified.
    pub ip: String,
    pub idc: String,
    pub location: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub upload_addr: String,
    pub proxy_addr: String,
    pub admin_addr: String,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            upload_addr: "0.0.0.0:4000".into(),
            proxy_addr: "0.0.0.0:4001".into(),
            admin_addr: "0.0.0.0:4002".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpload {
    /// Total upload rate of this daemon, bytes per second; 0 is unlimited.
    pub rate_limit: ByteSize,
    /// Upload rate of one connection, bytes per second; 0 is unlimited.
    pub per_connection_rate_limit: ByteSize,
    /// Concurrent uploads advertised to the scheduler, which uses it to spread children.
    pub slots: u32,
}

impl Default for RawUpload {
    fn default() -> Self {
        Self {
            rate_limit: ByteSize(0),
            per_connection_rate_limit: ByteSize(0),
            slots: 32,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDownload {
    /// Pieces of one task fetched at once (from parents or by ranged GETs from the origin).
    pub concurrent_pieces: usize,
    /// Total download rate of this daemon, bytes per second; 0 is unlimited.
    pub rate_limit: ByteSize,
    /// How long to wait for the scheduler (and for parents) before going to the origin.
    #[serde(with = "humantime_serde")]
    pub schedule_timeout: Duration,
    /// A piece that makes no progress for this long is abandoned and fetched elsewhere.
    #[serde(with = "humantime_serde")]
    pub piece_timeout: Duration,
    /// Connecting to the origin.
    #[serde(with = "humantime_serde")]
    pub origin_connect_timeout: Duration,
}

impl Default for RawDownload {
    fn default() -> Self {
        Self {
            concurrent_pieces: 8,
            rate_limit: ByteSize(0),
            schedule_timeout: Duration::from_secs(3),
            piece_timeout: Duration::from_secs(30),
            origin_connect_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStorage {
    pub dir: PathBuf,
    /// Bytes this daemon may store; 0 means the size of the filesystem holding `dir`.
    pub capacity: ByteSize,
    /// Above this share of capacity, GC evicts least-recently-used complete tasks...
    pub high_watermark_percent: u8,
    /// ...until usage is below this share.
    pub low_watermark_percent: u8,
    /// Complete tasks not read for this long are evicted.
    #[serde(with = "humantime_serde")]
    pub task_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub gc_interval: Duration,
}

impl Default for RawStorage {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/var/lib/dragonfly"),
            capacity: ByteSize(0),
            high_watermark_percent: 90,
            low_watermark_percent: 70,
            task_ttl: Duration::from_secs(24 * 3600),
            gc_interval: Duration::from_secs(60),
        }
    }
}

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
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::validate(path, load_yaml(path)?)
    }

    /// A config for tests and embedding: defaults, data under `data_dir`, loopback addresses.
    pub fn for_dir(data_dir: &Path) -> Self {
        let raw = RawConfig {
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
        let addr = |key: &str, value: &str| {
            value.parse::<SocketAddr>().map_err(|_| {
                ConfigError::invalid(
                    path,
                    key,
                    format!("'{value}' is not an address like 0.0.0.0:4000"),
                )
            })
        };
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
            log_dir: raw.log.dir,
            log_level: raw.log.level,
            log_stderr: raw.log.stderr,
        })
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
            "storage:\n  dir: /x\n  capacity: 1GiB\n  low_watermark_percent: 95\n",
        )
        .expect("parses");
        let err = Config::validate(Path::new("d.yaml"), raw).expect_err("low above high");
        assert!(
            err.to_string().contains("storage.high_watermark_percent"),
            "{err}"
        );
        let raw: RawConfig =
            parse_yaml(Path::new("d.yaml"), "upload:\n  rate_limit: 10MiB\n").expect("parses");
        let cfg = Config::validate(Path::new("d.yaml"), raw).expect("valid");
        assert_eq!(cfg.upload_rate, 10 << 20);
    }
}
