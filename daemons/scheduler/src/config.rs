//! dfscheduler configuration: the raw YAML shape ([`RawConfig`], defined with its defaults in
//! `df_core::config::scheduler`, the one place a key is added), validated here into the
//! [`Config`] the rest of the crate uses.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use df_core::admin_auth::AdminAuth;
use df_core::config::scheduler::{RawJobs, RawLimits};
use df_core::config::tls::TlsSetting;
use df_core::config::{ConfigError, load_yaml, socket_addr};
use df_core::serve::ServerLimits;
use df_core::telemetry::StderrFormat;

pub use df_core::config::scheduler::DEFAULT_PATH as DEFAULT_CONFIG_PATH;
pub use df_core::config::scheduler::RawConfig;

/// Validated `jobs` section.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// `None`: loopback clients only.
    pub token: Option<String>,
    /// PEM text of each extra registry CA bundle, with the file it came from.
    pub registry_ca_pems: Vec<(PathBuf, Vec<u8>)>,
    pub registry_timeout: Duration,
    pub timeout: Duration,
    pub keep_finished: usize,
    pub host_grace: Duration,
    /// The job journal's directory (`jobs.state_dir`).
    pub state_dir: PathBuf,
}

impl JobsConfig {
    fn validate(path: &Path, raw: RawJobs) -> Result<Self, ConfigError> {
        if raw.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(ConfigError::invalid(
                path,
                "jobs.token",
                "must not be empty (leave it out for a loopback-only jobs API)",
            ));
        }
        let registry_ca_pems = raw
            .registry_ca_certs
            .iter()
            .enumerate()
            .map(|(i, f)| {
                std::fs::read(f).map(|pem| (f.clone(), pem)).map_err(|e| {
                    ConfigError::invalid(
                        path,
                        &format!("jobs.registry_ca_certs[{i}]"),
                        format!("cannot read {}: {e}", f.display()),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        for (key, d) in [
            ("jobs.registry_timeout", raw.registry_timeout),
            ("jobs.timeout", raw.timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::invalid(path, key, "must be more than 0s"));
            }
        }
        if raw.state_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                path,
                "jobs.state_dir",
                "must not be empty (the directory that keeps jobs across restarts)",
            ));
        }
        Ok(Self {
            token: raw.token,
            registry_ca_pems,
            registry_timeout: raw.registry_timeout,
            timeout: raw.timeout,
            keep_finished: raw.keep_finished,
            host_grace: raw.host_grace,
            state_dir: raw.state_dir,
        })
    }
}

/// Validated `limits` section: what peers can make the scheduler hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_hosts: usize,
    pub max_tasks: usize,
    pub max_peers_per_task: usize,
    pub max_peers: usize,
    pub max_blocklist: usize,
    pub max_content_length: u64,
}

impl Limits {
    fn validate(path: &Path, raw: &RawLimits) -> Result<Self, ConfigError> {
        for (key, v) in [
            ("limits.max_hosts", raw.max_hosts),
            ("limits.max_tasks", raw.max_tasks),
            ("limits.max_peers_per_task", raw.max_peers_per_task),
            ("limits.max_peers", raw.max_peers),
        ] {
            if v == 0 {
                return Err(ConfigError::invalid(path, key, "must be at least 1"));
            }
        }
        Ok(Self {
            max_hosts: raw.max_hosts,
            max_tasks: raw.max_tasks,
            max_peers_per_task: raw.max_peers_per_task,
            max_peers: raw.max_peers,
            max_blocklist: raw.max_blocklist,
            max_content_length: raw.max_content_length.0,
        })
    }
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Bounds of each server (connections, header-read timeout).
    pub server_limits: ServerLimits,
    pub max_streams_per_connection: u32,
    pub limits: Limits,
    pub admin: AdminAuth,
    pub candidate_parents: usize,
    pub retry_limit: u32,
    pub seed_wait: Duration,
    pub origin_readers: usize,
    pub reader_deadline: Duration,
    pub gc_interval: Duration,
    pub host_ttl: Duration,
    pub peer_ttl: Duration,
    pub task_ttl: Duration,
    pub jobs: JobsConfig,
    /// Mutual TLS on gRPC with the cluster identity, or the explicit plaintext opt-out.
    pub tls: TlsSetting,
    pub log_dir: Option<PathBuf>,
    pub log_level: String,
    pub log_stderr: StderrFormat,
    /// `shutdown_grace`: the bound on a graceful stop.
    pub shutdown_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        // For tests and embedding: the defaults with the plaintext opt-out, because TLS needs
        // files only the caller has. A YAML file without a `tls:` section is refused instead.
        let mut raw = RawConfig::default();
        raw.tls.plaintext = true;
        Self::validate(Path::new("<defaults>"), raw)
            .unwrap_or_else(|_| unreachable!("default scheduler config is valid"))
    }
}

impl Config {
    /// Settings that weaken security, logged at start and shown by `dfctl status`.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self.admin.warning().into_iter().collect();
        if !self.http_addr.ip().is_loopback() && !self.admin.has_token() {
            out.push(format!(
                "admin API on {} without admin.token_file: only local clients are served",
                self.http_addr
            ));
        }
        out
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::validate(path, load_yaml(path)?)
    }

    pub fn validate(path: &Path, raw: RawConfig) -> Result<Self, ConfigError> {
        let addr = |key: &str, value: &str| socket_addr(path, key, value);
        if raw.scheduler.candidate_parents == 0 {
            return Err(ConfigError::invalid(
                path,
                "scheduler.candidate_parents",
                "must be at least 1",
            ));
        }
        if raw.scheduler.origin_readers == 0
            || raw.scheduler.origin_readers > df_core::piece::MAX_ORIGIN_READERS
        {
            return Err(ConfigError::invalid(
                path,
                "scheduler.origin_readers",
                format!(
                    "must be 1 to {} (1: only the seed reads the origin)",
                    df_core::piece::MAX_ORIGIN_READERS
                ),
            ));
        }
        if raw.scheduler.reader_deadline.is_zero() {
            return Err(ConfigError::invalid(
                path,
                "scheduler.reader_deadline",
                "must be more than 0s",
            ));
        }
        if raw.gc.interval.is_zero() {
            return Err(ConfigError::invalid(
                path,
                "gc.interval",
                "must be more than 0s",
            ));
        }
        if raw.server.max_connections == 0 || raw.server.max_streams_per_connection == 0 {
            return Err(ConfigError::invalid(
                path,
                "server.max_connections",
                "max_connections and max_streams_per_connection must be at least 1",
            ));
        }
        if raw.server.header_read_timeout.is_zero() {
            return Err(ConfigError::invalid(
                path,
                "server.header_read_timeout",
                "must be more than 0s",
            ));
        }
        Ok(Self {
            grpc_addr: addr("server.grpc_addr", &raw.server.grpc_addr)?,
            http_addr: addr("server.http_addr", &raw.server.http_addr)?,
            server_limits: ServerLimits {
                max_connections: raw.server.max_connections,
                header_read_timeout: raw.server.header_read_timeout,
            },
            max_streams_per_connection: raw.server.max_streams_per_connection,
            limits: Limits::validate(path, &raw.limits)?,
            admin: AdminAuth::load(path, &raw.admin)?,
            candidate_parents: raw.scheduler.candidate_parents,
            retry_limit: raw.scheduler.retry_limit,
            seed_wait: raw.scheduler.seed_wait,
            origin_readers: raw.scheduler.origin_readers,
            reader_deadline: raw.scheduler.reader_deadline,
            gc_interval: raw.gc.interval,
            host_ttl: raw.gc.host_ttl,
            peer_ttl: raw.gc.peer_ttl,
            task_ttl: raw.gc.task_ttl,
            jobs: JobsConfig::validate(path, raw.jobs)?,
            tls: raw.tls.validate(path)?,
            log_dir: raw.log.dir,
            log_level: raw.log.level,
            log_stderr: raw.log.stderr,
            shutdown_grace: raw.shutdown_grace.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use df_core::config::parse_yaml;

    #[test]
    fn origin_readers_are_bounded() {
        for readers in [0, df_core::piece::MAX_ORIGIN_READERS + 1] {
            let yaml =
                format!("scheduler:\n  origin_readers: {readers}\ntls:\n  plaintext: true\n");
            let raw: RawConfig = parse_yaml(Path::new("s.yaml"), &yaml).expect("parses");
            let err = Config::validate(Path::new("s.yaml"), raw).expect_err("invalid");
            assert!(
                err.to_string().contains("scheduler.origin_readers"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_zero_reader_deadline_is_refused() {
        let yaml = "scheduler:\n  reader_deadline: 0s\ntls:\n  plaintext: true\n";
        let raw: RawConfig = parse_yaml(Path::new("s.yaml"), yaml).expect("parses");
        let err = Config::validate(Path::new("s.yaml"), raw).expect_err("invalid");
        assert!(
            err.to_string().contains("scheduler.reader_deadline"),
            "{err}"
        );
        assert_eq!(Config::default().reader_deadline, Duration::from_secs(10));
    }

    #[test]
    fn bad_address_names_the_key_and_value() {
        let raw: RawConfig =
            parse_yaml(Path::new("s.yaml"), "server:\n  grpc_addr: nowhere\n").expect("parses");
        let err = Config::validate(Path::new("s.yaml"), raw).expect_err("invalid");
        let text = err.to_string();
        assert!(
            text.contains("s.yaml")
                && text.contains("server.grpc_addr")
                && text.contains("nowhere"),
            "{text}"
        );
    }

    #[test]
    fn jobs_section_validates() {
        let ok: RawConfig = parse_yaml(
            Path::new("s.yaml"),
            "jobs:\n  token: s3cret\n  timeout: 5m\ntls:\n  plaintext: true\n",
        )
        .expect("parses");
        let cfg = Config::validate(Path::new("s.yaml"), ok).expect("valid");
        assert_eq!(cfg.jobs.token.as_deref(), Some("s3cret"));
        assert_eq!(cfg.jobs.timeout, Duration::from_secs(300));
        assert!(Config::default().jobs.token.is_none());
        assert_eq!(
            Config::default().jobs.state_dir,
            Path::new("/var/lib/dragonfly/scheduler")
        );
        for (yaml, key) in [
            ("jobs:\n  token: ''\n", "jobs.token"),
            ("jobs:\n  state_dir: ''\n", "jobs.state_dir"),
            (
                "jobs:\n  registry_ca_certs: [/nonexistent/ca.pem]\n",
                "jobs.registry_ca_certs[0]",
            ),
        ] {
            let raw: RawConfig = parse_yaml(Path::new("s.yaml"), yaml).expect("parses");
            let err = Config::validate(Path::new("s.yaml"), raw).expect_err("invalid");
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn durations_are_human() {
        let raw: RawConfig = parse_yaml(
            Path::new("s.yaml"),
            "gc:\n  host_ttl: 90s\ntls:\n  plaintext: true\n",
        )
        .expect("parses");
        let cfg = Config::validate(Path::new("s.yaml"), raw).expect("valid");
        assert_eq!(cfg.host_ttl, Duration::from_secs(90));
    }

    #[test]
    fn a_config_without_tls_is_refused_and_the_opt_out_is_recorded() {
        let raw: RawConfig =
            parse_yaml(Path::new("s.yaml"), "gc:\n  host_ttl: 90s\n").expect("parses");
        let err = Config::validate(Path::new("s.yaml"), raw).expect_err("secure by default");
        assert_eq!(
            err.to_string().lines().count(),
            1,
            "one line naming the key: {err}"
        );
        assert!(err.to_string().contains("key 'tls.ca': missing"), "{err}");
        assert!(Config::default().tls.is_plaintext());
    }
}
