//! `dfscheduler.yaml`: the raw shape every writer and reader of a scheduler config shares. The
//! scheduler validates it into its own typed config; `dfctl` (`up`, `init`, `gen-config
//! daemons`) writes it by serializing these types. Adding a key means adding a field here
//! (with its default and doc text), then reading it in the scheduler's validation.
//!
//! Invariant: unknown keys are refused (`deny_unknown_fields`), and every struct serializes
//! to YAML that reads back to the same value.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::tls::RawTls;
use super::{ByteSize, LogSection, RawAdmin, ShutdownGrace, any_addr, loopback_addr};
use crate::ports;

/// Where the scheduler looks for its config unless told otherwise.
pub const DEFAULT_PATH: &str = "/etc/dragonfly/dfscheduler.yaml";

/// `jobs.state_dir` unless configured: beside the peer's cache under the directory the
/// packages and the systemd unit (`StateDirectory=dragonfly`) make writable.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/dragonfly/scheduler";

/// The comment block at the top of every `dfscheduler.yaml` dfctl writes.
pub const HEADER: &str = "\
# dfscheduler.yaml: the dragonfly-lite scheduler. dfscheduler loads it with
# `dfscheduler --config /etc/dragonfly/dfscheduler.yaml`. Unknown keys are refused, so a
# typo stops the daemon with the file, key and line instead of being ignored.
# Durations are human (200ms, 30s, 5m, 24h).
# Every key is described where it is defined: daemons/core/src/config/scheduler.rs.
";

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub scheduler: RawScheduling,
    pub gc: RawGc,
    pub jobs: RawJobs,
    pub limits: RawLimits,
    pub admin: RawAdmin,
    /// Mutual TLS with the cluster identity (required unless `plaintext: true`).
    pub tls: RawTls,
    pub log: LogSection,
    /// After SIGTERM: tell every connected peer to reconnect, stop accepting, and exit within
    /// this long (see `ShutdownGrace`).
    pub shutdown_grace: ShutdownGrace,
}

/// Bounds on what peers can make the scheduler hold. A registration or announce beyond one is
/// refused (gRPC `RESOURCE_EXHAUSTED`); the peer then fetches from the origin itself.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Hosts known at once (connected, or remembered until `gc.host_ttl`).
    pub max_hosts: usize,
    /// Tasks known at once (a task without peers is forgotten after `gc.task_ttl`).
    pub max_tasks: usize,
    /// Peers of one task.
    pub max_peers_per_task: usize,
    /// Peers of all tasks together (about 10 KiB each: 100,000 peers on 10,000 hosts took
    /// 1,056 MiB). Counted exactly at each gc and upwards in between.
    pub max_peers: usize,
    /// Parents one peer can have blocklisted; reports beyond are ignored.
    pub max_blocklist: usize,
    /// Largest object a task may describe; larger layouts are refused.
    pub max_content_length: ByteSize,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_hosts: 10_000,
            max_tasks: 100_000,
            max_peers_per_task: 10_000,
            max_peers: 1_000_000,
            max_blocklist: 256,
            max_content_length: ByteSize(1 << 40),
        }
    }
}

/// Preheat jobs (`/oapi/v1/jobs`, Harbor-compatible).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawJobs {
    /// Bearer token the jobs API requires (`Authorization: Bearer <token>`). Unset: the API
    /// answers only clients on loopback (a local `dfctl up` cluster) and refuses others (403).
    pub token: Option<String>,
    /// Extra PEM CA bundles trusted for registries, besides the system store.
    pub registry_ca_certs: Vec<PathBuf>,
    /// Bound on one registry request (manifest, token) while resolving an image.
    #[serde(with = "humantime_serde")]
    pub registry_timeout: Duration,
    /// A job whose peers have not all reported by then ends in FAILURE (Harbor may send its own).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Finished jobs kept for inspection; the oldest finished ones are forgotten beyond this
    /// (in memory and in `state_dir`).
    pub keep_finished: usize,
    /// A chosen host whose host stream stays down this long fails its part of a job (instead
    /// of the job waiting for `timeout`).
    #[serde(with = "humantime_serde")]
    pub host_grace: Duration,
    /// Where the job journal lives (created 0700; `jobs.journal` in it is 0600), so jobs and
    /// their IDs survive a restart. One directory per scheduler: two sharing it would
    /// overwrite each other's jobs.
    pub state_dir: PathBuf,
}

impl Default for RawJobs {
    fn default() -> Self {
        Self {
            token: None,
            registry_ca_certs: Vec::new(),
            registry_timeout: Duration::from_secs(60),
            timeout: Duration::from_secs(30 * 60),
            keep_finished: 1000,
            host_grace: Duration::from_secs(60),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// gRPC for peers (announce, schedule).
    pub grpc_addr: String,
    /// Health, metrics, the REST API dfctl uses and the jobs API. Loopback unless configured
    /// otherwise (set `admin.token_file` when exposing it).
    pub http_addr: String,
    /// Connections each server (gRPC, HTTP) holds at most; more are closed at accept.
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams (downloads plus the host stream) on one gRPC connection.
    pub max_streams_per_connection: u32,
    /// An HTTP client that has not sent a whole request head this long after connecting, or
    /// after its previous request, is disconnected (slowloris, idle keep-alive).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            grpc_addr: any_addr(ports::SCHEDULER_GRPC),
            http_addr: loopback_addr(ports::SCHEDULER_HTTP),
            max_connections: 16_384,
            max_streams_per_connection: 1024,
            header_read_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawScheduling {
    /// Neighbours each downloading peer is linked to in the task's mesh (it exchanges pieces
    /// with them in both directions; no peer gets more than three times this, a seed feeds this
    /// many). See the scheduler's `topology` module and README "Benchmarks" for how it was chosen.
    pub candidate_parents: usize,
    /// Reschedules a peer gets before it is told to go back to source.
    pub retry_limit: u32,
    /// How long a peer may wait for a seed to appear before it is sent to the origin.
    #[serde(with = "humantime_serde")]
    pub seed_wait: Duration,
    /// Hosts that read disjoint parts of one task from the origin, the seed included, so new
    /// pieces enter the swarm through that many uplinks (the origin still serves each piece
    /// once). 1: only the seed reads the origin. See the scheduler's `origin_share` module.
    /// About the origin's bandwidth over a node's downlink: more readers fill a swarm sooner
    /// when the origin is much faster than the nodes' links, and split it when it is not
    /// (README "Where `--netns` loses, tried": 4 -> 16 readers, 1.17 -> 1.14·T* with a fast
    /// origin, 1.10 -> 1.13 with a slow one). Only readers appointed as peers register help,
    /// before any origin rate is known, so the scheduler does not pick it itself.
    pub origin_readers: usize,
    /// A helper (an origin reader other than the seed) that neither reads a piece of its share
    /// nor delivers any piece to a peer for this long loses its share to another reader, as if
    /// it had left. Keep it below the peers' `download.piece_timeout`, after which every
    /// downloader that misses those pieces reads them from the origin itself.
    #[serde(with = "humantime_serde")]
    pub reader_deadline: Duration,
}

impl Default for RawScheduling {
    fn default() -> Self {
        Self {
            candidate_parents: 8,
            retry_limit: 5,
            seed_wait: Duration::from_secs(5),
            origin_readers: 4,
            reader_deadline: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawGc {
    /// How often expired hosts, peers and tasks are collected.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A host that has been disconnected (or silent) this long is forgotten with its peers.
    #[serde(with = "humantime_serde")]
    pub host_ttl: Duration,
    /// Failed or departed peers are kept this long for inspection.
    #[serde(with = "humantime_serde")]
    pub peer_ttl: Duration,
    /// A task with no peers left is forgotten after this long.
    #[serde(with = "humantime_serde")]
    pub task_ttl: Duration,
}

impl Default for RawGc {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            host_ttl: Duration::from_secs(300),
            peer_ttl: Duration::from_secs(600),
            task_ttl: Duration::from_secs(600),
        }
    }
}
