//! The daemon config contract: the raw serde shape of both daemons' YAML files ([`peer`],
//! [`scheduler`]), reading them and writing them. Validation into typed configs belongs to
//! each daemon; this module guarantees that every error names the file and, where the parser
//! knows it, the line, column and key, and that what [`to_yaml`] writes reads back unchanged.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub mod peer;
pub mod scheduler;
pub mod tls;
pub mod yaml11;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cannot write {what} as YAML: {message}")]
    Encode { what: String, message: String },
    #[error("{path}: key '{key}': {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl ConfigError {
    pub fn invalid(path: &Path, key: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// A `host:port` socket address at `key`, or an error naming the file, key and value.
pub fn socket_addr(
    path: &Path,
    key: &str,
    value: &str,
) -> Result<std::net::SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        ConfigError::invalid(
            path,
            key,
            format!("'{value}' is not an address like 0.0.0.0:8080"),
        )
    })
}

/// `0.0.0.0:port`, the listen address of a default config.
fn any_addr(port: u16) -> String {
    std::net::SocketAddr::from(([0, 0, 0, 0], port)).to_string()
}

/// `127.0.0.1:port`: where an admin API listens unless configured otherwise.
fn loopback_addr(port: u16) -> String {
    std::net::SocketAddr::from(([127, 0, 0, 1], port)).to_string()
}

/// The `admin:` section both daemons have: who may use their HTTP admin API.
#[derive(Debug, Clone, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    /// File holding the bearer token (one line, mode 0600) that every admin endpoint which
    /// changes state or returns data requires (`Authorization: Bearer <token>`); `dfctl init`
    /// and `dfctl up` generate it. Unset: those endpoints answer local clients only (loopback,
    /// or a client on this host's own address), and
    /// the daemon warns at start and in `dfctl status`.
    pub token_file: Option<std::path::PathBuf>,
    /// Serve `/metrics` without the token (Prometheus scrapers); `/healthz` is always open.
    pub open_metrics: bool,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            token_file: None,
            open_metrics: true,
        }
    }
}

/// `config` as YAML under `header` (comment lines, each ending in a newline). `what` names the
/// file in errors.
pub fn to_yaml<T: Serialize>(header: &str, config: &T, what: &str) -> Result<String, ConfigError> {
    let body = yaml_serde::to_string(config).map_err(|e| ConfigError::Encode {
        what: what.to_owned(),
        message: e.to_string(),
    })?;
    Ok(format!("{header}{body}"))
}

/// Reads `path` as YAML into `T`. An empty file gives `T::default()`.
pub fn load_yaml<T: DeserializeOwned + Default>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_yaml(path, &text)
}

/// Parses YAML `text` that was read from `path` (used in errors only).
pub fn parse_yaml<T: DeserializeOwned + Default>(
    path: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    yaml_serde::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().replace('\n', " "),
    })
}

/// The `log:` section every daemon config has.
#[derive(Debug, Clone, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// Directory for rotated JSON-lines log files; none logs to stderr only.
    pub dir: Option<std::path::PathBuf>,
    /// `EnvFilter` directive: `info`, `debug`, `df_peer=debug,info`, `off`, ...
    #[serde(deserialize_with = "yaml11::log_level")]
    pub level: String,
    /// stderr format: `human`, `json` or `off` (`false` and `no` also mean off: YAML 1.1 tools
    /// such as PyYAML and Helm rewrite `off` as `false`).
    pub stderr: crate::telemetry::StderrFormat,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            dir: None,
            level: "info".into(),
            stderr: crate::telemetry::StderrFormat::Human,
        }
    }
}

/// `shutdown_grace`, the same key in both daemon configs: how long a daemon may take to stop
/// after SIGTERM. The scheduler tells its peers to reconnect elsewhere and exits; a peer stops
/// accepting, lets in-flight pieces and responses finish, saves its task metadata and exits.
/// Whatever is still running when it runs out is cut. Kubernetes waits 30 s and systemd 90 s
/// before SIGKILL, so the default leaves room for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(transparent)]
pub struct ShutdownGrace(#[serde(with = "humantime_serde")] pub std::time::Duration);

impl Default for ShutdownGrace {
    fn default() -> Self {
        Self(std::time::Duration::from_secs(10))
    }
}

/// A byte count written as a number or with a unit: `0`, `4096`, `64KiB`, `100MiB`, `1GB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("'{s}' is not a size like 512, 64KiB, 100MiB or 1GB"))?;
        let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" | "ki" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" | "mi" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" | "gi" => 1 << 30,
            "t" | "tb" => 1_000_000_000_000,
            "tib" | "ti" => 1 << 40,
            other => {
                return Err(format!(
                    "'{s}': unknown unit '{other}' (use B, KiB, MiB, GiB, KB, MB, GB)"
                ));
            }
        };
        let bytes = (value * scale as f64).round();
        if bytes >= u64::MAX as f64 {
            return Err(format!("'{s}' is too large (the limit is 16 EiB)"));
        }
        Ok(Self(bytes as u64))
    }
}

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut v = self.0 as f64;
        let mut i = 0;
        while v >= 1024.0 && i < UNITS.len() - 1 {
            v /= 1024.0;
            i += 1;
        }
        if i == 0 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{v:.1} {}", UNITS[i])
        }
    }
}

impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Self(n)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl serde::Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_parse_with_units() {
        assert_eq!("0".parse::<ByteSize>(), Ok(ByteSize(0)));
        assert_eq!("64KiB".parse::<ByteSize>(), Ok(ByteSize(65_536)));
        assert_eq!("100MB".parse::<ByteSize>(), Ok(ByteSize(100_000_000)));
        assert_eq!("1.5GiB".parse::<ByteSize>(), Ok(ByteSize(1_610_612_736)));
        assert!("ten".parse::<ByteSize>().is_err());
        assert!(
            "99999999999TiB"
                .parse::<ByteSize>()
                .expect_err("overflow")
                .contains("too large")
        );
        assert!(
            "5 parsecs"
                .parse::<ByteSize>()
                .expect_err("bad unit")
                .contains("parsecs")
        );
        assert_eq!(ByteSize(256 << 20).to_string(), "256.0 MiB");
    }

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        port: u16,
    }

    #[test]
    fn unknown_keys_are_named_with_the_file_and_line() {
        let err = parse_yaml::<Sample>(Path::new("/etc/x.yaml"), "port: 1\nprot: 2\n")
            .expect_err("unknown key");
        let text = err.to_string();
        assert!(text.starts_with("/etc/x.yaml: "), "{text}");
        assert!(text.contains("prot"), "{text}");
        assert!(text.contains("line 2"), "{text}");
        assert!(!text.contains('\n'));
    }

    #[test]
    fn empty_file_is_the_default() {
        let s: Sample = parse_yaml(Path::new("x"), "\n").expect("empty is fine");
        assert_eq!(s.port, 0);
    }
}
