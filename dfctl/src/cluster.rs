//! The local cluster's state file, `DIR/cluster.json`: which daemons `dfctl up` started, with
//! the pid *and* process start time of each, their addresses and their files.
//!
//! Invariants:
//! - The file is replaced atomically (write a temp file in DIR, then rename), so a reader sees
//!   the old or the new state, never half of one.
//! - A record names a live daemon only while `/proc/<pid>/stat` shows the same start time;
//!   pids are reused, and `dfctl down` must never signal a stranger (see [`crate::process`]).
//! - `DIR/.dfctl-cluster` marks a directory `dfctl up` created; `--purge` removes only such.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

pub const STATE_FILE: &str = "cluster.json";
pub const MARKER_FILE: &str = ".dfctl-cluster";
/// The bearer token every daemon of the cluster requires on its admin API (0600).
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// Bumped when the state file changes incompatibly; older dfctl refuse newer files.
pub const STATE_FORMAT: u32 = 1;

/// What a daemon of the cluster is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Scheduler,
    Seed,
    Peer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduler => "scheduler",
            Self::Seed => "seed",
            Self::Peer => "peer",
        }
    }

    /// The binary that plays this role.
    pub fn binary(self) -> &'static str {
        match self {
            Self::Scheduler => "dfscheduler",
            Self::Seed | Self::Peer => "dfdaemon",
        }
    }

    /// True for dfdaemon roles (seed and normal peers).
    pub fn is_daemon(self) -> bool {
        !matches!(self, Self::Scheduler)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One daemon started by `dfctl up`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// `scheduler-N`, `seed-N` or `peer-N`; also the daemon's hostname.
    pub name: String,
    pub role: Role,
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks after boot) when the process was spawned.
    pub start_time: u64,
    /// Scheduler: the gRPC address peers announce to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_addr: Option<SocketAddr>,
    /// Scheduler: the admin HTTP address (`/healthz`, `/api/v1/...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<SocketAddr>,
    /// Peer: the piece server other peers download from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_addr: Option<SocketAddr>,
    /// Peer: the HTTP(S) proxy and registry mirror clients use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_addr: Option<SocketAddr>,
    /// Peer: the admin HTTP address (`/healthz`, `/api/v1/...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_addr: Option<SocketAddr>,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    pub log_dir: PathBuf,
    /// The daemon's stdout and stderr (panics and start-up errors land here).
    pub stderr_log: PathBuf,
}

impl ProcessRecord {
    /// The address whose `/healthz` tells whether the daemon is up.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        match self.role {
            Role::Scheduler => self.http_addr,
            Role::Seed | Role::Peer => self.admin_addr,
        }
    }
}

/// The content of `cluster.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub format: u32,
    pub dir: PathBuf,
    /// Seconds since the Unix epoch when `dfctl up` started the cluster.
    pub created_unix_secs: u64,
    /// In start order: schedulers, then seeds, then peers.
    pub processes: Vec<ProcessRecord>,
}

impl ClusterState {
    pub fn new(dir: PathBuf) -> Self {
        let created_unix_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            format: STATE_FORMAT,
            dir,
            created_unix_secs,
            processes: Vec::new(),
        }
    }

    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    /// Reads `DIR/cluster.json`; `None` when there is none.
    pub async fn load(dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = Self::path(dir);
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Self::parse(&path, &text).map(Some)
    }

    /// Parses state-file text read from `path` (named in errors).
    pub fn parse(path: &Path, text: &str) -> anyhow::Result<Self> {
        let state: Self = serde_json::from_str(text)
            .with_context(|| format!("{} is not a dfctl cluster state file", path.display()))?;
        anyhow::ensure!(
            state.format <= STATE_FORMAT,
            "{} has format {} but this dfctl reads up to {STATE_FORMAT}; use a newer dfctl",
            path.display(),
            state.format
        );
        Ok(state)
    }

    /// Replaces `DIR/cluster.json` atomically.
    pub async fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let path = Self::path(dir);
        let mut text =
            serde_json::to_string_pretty(self).context("cannot encode the cluster state")?;
        text.push('\n');
        write_atomically(&path, text.as_bytes()).await
    }

    /// Removes `DIR/cluster.json`; absent is fine.
    pub async fn remove(dir: &Path) -> anyhow::Result<()> {
        let path = Self::path(dir);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }

    pub fn with_role(&self, role: Role) -> impl Iterator<Item = &ProcessRecord> {
        self.processes.iter().filter(move |p| p.role == role)
    }
}

/// Writes `bytes` to `path` through [`crate::destination`] (atomically for a file: temp file in
/// the target's directory, sync, rename), on a blocking thread.
pub async fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let (path, bytes) = (path.to_owned(), bytes.to_vec());
    tokio::task::spawn_blocking(move || {
        crate::destination::write(&path, None, &bytes, crate::destination::Mode::New(0o644))
    })
    .await
    .context("writer thread failed")??;
    Ok(())
}

/// Daemons to talk to, from flags or, without flags, from the cluster state file.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    pub schedulers: Vec<Target>,
    pub peers: Vec<Target>,
}

/// One daemon's admin address, with what the cluster file knows about it.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: String,
    /// The record from `cluster.json`, when the target came from there.
    pub record: Option<ProcessRecord>,
}

impl Target {
    pub fn from_flag(addr: &str) -> Self {
        Self {
            addr: addr.to_owned(),
            record: None,
        }
    }

    pub fn name(&self) -> Option<&str> {
        self.record.as_ref().map(|r| r.name.as_str())
    }

    /// `name (addr)` or just `addr`, for messages.
    pub fn label(&self) -> String {
        match self.name() {
            Some(name) => format!("{name} ({})", self.addr),
            None => self.addr.clone(),
        }
    }
}

impl Targets {
    /// The admin addresses of the cluster's daemons.
    pub fn from_state(state: &ClusterState) -> Self {
        let target = |p: &ProcessRecord| {
            p.health_addr().map(|addr| Target {
                addr: addr.to_string(),
                record: Some(p.clone()),
            })
        };
        Self {
            schedulers: state
                .with_role(Role::Scheduler)
                .filter_map(target)
                .collect(),
            peers: state
                .processes
                .iter()
                .filter(|p| p.role.is_daemon())
                .filter_map(target)
                .collect(),
        }
    }

    /// Flags win; without any, the cluster in `dir`; with neither, an error that says both ways.
    pub async fn resolve(
        dir: &crate::cli::ClusterDirArg,
        schedulers: &[String],
        peers: &[String],
    ) -> anyhow::Result<Self> {
        if !schedulers.is_empty() || !peers.is_empty() {
            return Ok(Self {
                schedulers: schedulers.iter().map(|a| Target::from_flag(a)).collect(),
                peers: peers.iter().map(|a| Target::from_flag(a)).collect(),
            });
        }
        let dir = dir.resolve()?;
        match ClusterState::load(&dir).await? {
            Some(state) => Ok(Self::from_state(&state)),
            None => anyhow::bail!(
                "no local cluster in {} (no {STATE_FILE}); start one with `dfctl up` or name daemons with --scheduler/--peer",
                dir.display()
            ),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_state(dir: &Path) -> ClusterState {
        let addr = |port: u16| Some(SocketAddr::from(([127, 0, 0, 1], port)));
        let mut state = ClusterState::new(dir.to_owned());
        state.processes.push(ProcessRecord {
            name: "scheduler-0".into(),
            role: Role::Scheduler,
            pid: 100,
            start_time: 5000,
            grpc_addr: addr(8002),
            http_addr: addr(8080),
            upload_addr: None,
            proxy_addr: None,
            admin_addr: None,
            config_path: dir.join("scheduler-0/dfscheduler.yaml"),
            data_dir: dir.join("scheduler-0/data"),
            log_dir: dir.join("scheduler-0/log"),
            stderr_log: dir.join("scheduler-0/stderr.log"),
        });
        state.processes.push(ProcessRecord {
            name: "peer-0".into(),
            role: Role::Peer,
            pid: 101,
            start_time: 5001,
            grpc_addr: None,
            http_addr: None,
            upload_addr: addr(4000),
            proxy_addr: addr(4001),
            admin_addr: addr(4002),
            config_path: dir.join("peer-0/dfdaemon.yaml"),
            data_dir: dir.join("peer-0/data"),
            log_dir: dir.join("peer-0/log"),
            stderr_log: dir.join("peer-0/stderr.log"),
        });
        state
    }

    #[tokio::test]
    async fn state_round_trips_through_the_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert_eq!(ClusterState::load(tmp.path()).await.expect("load"), None);
        let state = sample_state(tmp.path());
        state.save(tmp.path()).await.expect("save");
        let loaded = ClusterState::load(tmp.path()).await.expect("load");
        assert_eq!(loaded.as_ref(), Some(&state));
        // Only the state file is left behind, no temp file.
        let mut names = Vec::new();
        let mut entries = tokio::fs::read_dir(tmp.path()).await.expect("read_dir");
        while let Some(e) = entries.next_entry().await.expect("entry") {
            names.push(e.file_name());
        }
        assert_eq!(names, [STATE_FILE]);
        ClusterState::remove(tmp.path()).await.expect("remove");
        ClusterState::remove(tmp.path())
            .await
            .expect("remove twice is fine");
        assert_eq!(ClusterState::load(tmp.path()).await.expect("load"), None);
    }

    #[test]
    fn state_file_uses_stable_field_names() {
        let state = sample_state(Path::new("/c"));
        let json: serde_json::Value = serde_json::to_value(&state).expect("json");
        let peer = &json["processes"][1];
        assert_eq!(peer["role"], "peer");
        assert_eq!(peer["admin_addr"], "127.0.0.1:4002");
        assert_eq!(peer["start_time"], 5001);
        assert!(peer.get("grpc_addr").is_none());
        assert_eq!(json["processes"][0]["grpc_addr"], "127.0.0.1:8002");
    }

    #[test]
    fn broken_or_newer_files_are_named_in_the_error() {
        let err = ClusterState::parse(Path::new("/c/cluster.json"), "{").expect_err("broken");
        assert!(
            format!("{err:#}").starts_with("/c/cluster.json is not"),
            "{err:#}"
        );
        let mut state = sample_state(Path::new("/c"));
        state.format = STATE_FORMAT + 1;
        let text = serde_json::to_string(&state).expect("json");
        let err = ClusterState::parse(Path::new("/c/cluster.json"), &text).expect_err("newer");
        assert!(err.to_string().contains("newer dfctl"), "{err}");
    }

    #[test]
    fn targets_come_from_the_state() {
        let targets = Targets::from_state(&sample_state(Path::new("/c")));
        assert_eq!(targets.schedulers.len(), 1);
        assert_eq!(targets.schedulers[0].addr, "127.0.0.1:8080");
        assert_eq!(targets.peers[0].addr, "127.0.0.1:4002");
        assert_eq!(targets.peers[0].label(), "peer-0 (127.0.0.1:4002)");
    }
}
