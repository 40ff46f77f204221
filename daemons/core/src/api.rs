//! JSON bodies of the admin HTTP APIs, shared by the daemons that serve them and `dfctl`, which
//! reads them. Field names are the stable contract; add fields, never rename them.
//!
//! Scheduler admin (default port 8080):
//! - `GET /healthz` -> `ok`
//! - `GET /metrics` -> Prometheus text
//! - `GET /api/v1/info` -> [`SchedulerInfo`]
//! - `GET /api/v1/hosts` -> `Vec<HostView>`
//! - `GET /api/v1/tasks` -> `Vec<TaskSummary>`
//! - `GET /api/v1/tasks/{task_id}` -> [`TaskDetail`] (404 when unknown)
//! - `GET /healthy` -> `ok` (the health path Harbor's Dragonfly provider checks)
//! - `POST /oapi/v1/jobs` with [`CreateJob`] -> [`JobView`] (Harbor-compatible preheat; an
//!   identical job still running is returned instead of a new one)
//! - `GET /oapi/v1/jobs` -> `Vec<JobView>`, newest first; `GET /oapi/v1/jobs/{id}` -> [`JobView`]
//!   (the jobs routes need `Authorization: Bearer <jobs.token>`: 401 otherwise; a body that
//!   does not parse is a 400 `{"errors": "..."}`)
//! - `GET /api/v1/watch[?task=ID]` -> newline-delimited [`WatchEvent`] JSON, for `dfctl top`:
//!   a snapshot at once, then a new snapshot only when something changed (at most every
//!   [`WATCH_INTERVAL_MS`]), and a heartbeat after [`WATCH_HEARTBEAT_MS`] of silence, so a
//!   client that hears nothing for a few heartbeats knows the scheduler is gone
//!
//! Peer admin (default port 4002):
//! - `GET /healthz` -> `ok`
//! - `GET /metrics` -> Prometheus text
//! - `GET /api/v1/info` -> [`PeerInfo`]
//! - `GET /api/v1/tasks` -> `Vec<LocalTask>`; `GET /api/v1/tasks/{task_id}` -> [`LocalTask`]
//! - `GET /api/v1/download?url=URL[&digest=sha256:..][&piece_length=BYTES]` -> the object's
//!   bytes, streamed, with `X-Dragonfly-Task-ID` and `X-Dragonfly-Source`; request headers
//!   other than hop-by-hop ones are forwarded to the origin when the peer goes back to source;
//!   an explicit piece length (64 KiB to 64 MiB) is part of the task ID
//! - `GET /api/v1/logs[?follow=true][&task=ID][&tail=N]` -> newline-delimited
//!   [`crate::telemetry::LogRecord`] JSON (same route on the scheduler)

use serde::{Deserialize, Serialize};

/// Where the bytes of a download came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ByteSource {
    /// Already complete in this peer's cache.
    Local,
    /// From other peers, at least one of them a normal peer.
    Peer,
    /// From seed peers only.
    Seed,
    /// From the origin, by this peer itself.
    Origin,
}

impl ByteSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Peer => "peer",
            Self::Seed => "seed",
            Self::Origin => "origin",
        }
    }
}

impl std::fmt::Display for ByteSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchedulerInfo {
    pub version: String,
    pub uptime_secs: u64,
    pub grpc_addr: String,
    pub hosts: usize,
    pub tasks: usize,
    pub peers: usize,
    /// Settings that weaken security (`dfctl status` shows them).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Its gRPC is plaintext (`tls.plaintext: true`): any host can announce anything.
    #[serde(default)]
    pub plaintext: bool,
    /// The identity in its certificate (`dragonfly://scheduler/<name>`), when TLS is on.
    #[serde(default)]
    pub identity: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostView {
    pub host_id: String,
    pub hostname: String,
    pub ip: String,
    pub upload_port: u16,
    pub admin_port: u16,
    pub proxy_port: u16,
    /// `normal` or `seed`.
    pub host_type: String,
    pub idc: String,
    pub location: String,
    pub upload_slots: u32,
    pub active_uploads: u32,
    pub uploaded_bytes: u64,
    pub disk_used: u64,
    pub disk_capacity: u64,
    /// Disk use (percent of capacity) above which the peer evicts; 0 from older peers.
    #[serde(default)]
    pub high_watermark_percent: u8,
    pub disabled: bool,
    pub connected: bool,
    pub last_seen_secs_ago: u64,
    pub version: String,
    /// Host-stream reconnects of the peer (to any scheduler) since it started.
    #[serde(default)]
    pub reconnects: u64,
    /// Seconds since its last reconnect; `None`: never.
    #[serde(default)]
    pub last_reconnect_secs_ago: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskSummary {
    pub task_id: String,
    pub url: String,
    pub content_length: Option<u64>,
    pub piece_length: Option<u64>,
    pub piece_count: Option<u32>,
    pub peers_total: usize,
    pub peers_running: usize,
    pub peers_succeeded: usize,
    pub peers_failed: usize,
    pub bytes_from_origin: u64,
    pub bytes_from_peers: u64,
    pub created_secs_ago: u64,
    pub updated_secs_ago: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerView {
    pub peer_id: String,
    pub host_id: String,
    pub ip: String,
    pub admin_port: u16,
    pub is_seed: bool,
    /// `pending`, `running`, `back_to_source`, `succeeded`, `failed` or `left`.
    pub state: String,
    pub finished_pieces: u32,
    /// Hex of the packed piece bitmap (see `piece::Bitmap`).
    pub bitmap: String,
    pub content_path: String,
    pub bytes_from_origin: u64,
    pub bytes_from_peers: u64,
    pub updated_secs_ago: u64,
    /// The pieces the scheduler has it read from the origin (`start..end`), if any.
    #[serde(default)]
    pub origin_share: Option<std::ops::Range<u32>>,
    /// Its origin share was taken back: it showed no work on it for
    /// `scheduler.reader_deadline`.
    #[serde(default)]
    pub share_withdrawn: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EdgeView {
    pub parent: String,
    pub child: String,
    pub bytes: u64,
    pub pieces: u32,
    pub failures: u32,
    /// False once the child finished or dropped the parent; kept for history.
    pub active: bool,
    pub blocklisted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskDetail {
    #[serde(flatten)]
    pub summary: TaskSummary,
    pub peers: Vec<PeerView>,
    pub edges: Vec<EdgeView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchedulerConnection {
    pub addr: String,
    pub connected: bool,
    /// Times the host stream came back after being lost (a scheduler restart, a network blip).
    #[serde(default)]
    pub reconnects: u64,
    /// Unix seconds of the last reconnect.
    #[serde(default)]
    pub last_reconnect_unix: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerInfo {
    pub version: String,
    pub host_id: String,
    pub hostname: String,
    pub ip: String,
    pub seed: bool,
    pub upload_port: u16,
    pub admin_port: u16,
    pub proxy_port: u16,
    pub data_dir: String,
    pub disk_used: u64,
    pub disk_capacity: u64,
    pub tasks: usize,
    pub uptime_secs: u64,
    pub schedulers: Vec<SchedulerConnection>,
    pub uploaded_bytes: u64,
    /// Piece requests this peer's upload server answered in full.
    #[serde(default)]
    pub pieces_served: u64,
    /// GC starts evicting above `disk_high_watermark` bytes and stops below the low one.
    #[serde(default)]
    pub disk_high_watermark: u64,
    #[serde(default)]
    pub disk_low_watermark: u64,
    /// Bytes by source over the last few minutes.
    #[serde(default)]
    pub recent: RecentBytes,
    /// The soft switch (`dfctl disable --soft`, `PUT /api/v1/p2p`).
    #[serde(default)]
    pub p2p: P2pState,
    /// Expiry (Unix seconds) of the CA that signs intercepted hosts' leaves, when configured.
    #[serde(default)]
    pub ca_not_after: Option<i64>,
    #[serde(default)]
    pub high_watermark_percent: u8,
    /// Idle tasks are collected after this long without access.
    #[serde(default)]
    pub task_ttl_secs: u64,
    /// Settings that weaken security (`dfctl status` shows them).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Its links to schedulers and peers are plaintext (`tls.plaintext: true`).
    #[serde(default)]
    pub plaintext: bool,
    /// The identity in its certificate (`dragonfly://<seed|peer>/<hostname>`), when TLS is on.
    #[serde(default)]
    pub identity: Option<String>,
}

/// Bytes a peer moved in the last `window_secs` seconds, by where they came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentBytes {
    pub window_secs: u64,
    pub origin: u64,
    pub peer: u64,
    pub seed: u64,
    /// Cache hits served to clients.
    pub local: u64,
    pub uploaded: u64,
}

/// Whether a peer does P2P, and if not, since when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct P2pState {
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Unix seconds when it was switched off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_since: Option<u64>,
}

impl Default for P2pState {
    fn default() -> Self {
        Self {
            enabled: true,
            reason: None,
            disabled_since: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalTask {
    pub task_id: String,
    pub url: String,
    pub content_length: Option<u64>,
    pub piece_length: Option<u64>,
    pub piece_count: u32,
    pub finished_pieces: u32,
    pub complete: bool,
    /// Absolute path of the task's content file on this node.
    pub content_path: String,
    pub bytes_from_origin: u64,
    pub bytes_from_peers: u64,
    pub bytes_from_seeds: u64,
    pub uploaded_bytes: u64,
    /// Where this node got the bytes, once known.
    pub source: Option<ByteSource>,
    pub last_access_secs_ago: u64,
    /// Seconds until the GC collects the task for being idle (its TTL); `None` while it is
    /// being downloaded or read, which the GC never collects.
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
    /// Whether LRU eviction may take the task earlier when disk use passes the high watermark.
    #[serde(default)]
    pub evictable: bool,
}

/// Snapshot period of `GET /api/v1/watch`: the fastest a client sees changes.
pub const WATCH_INTERVAL_MS: u64 = 250;
/// Silence after which the watch stream sends a heartbeat.
pub const WATCH_HEARTBEAT_MS: u64 = 2000;

/// One line of the scheduler's watch stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WatchEvent {
    /// The scheduler's whole view; replaces the previous snapshot.
    Snapshot(Box<WatchSnapshot>),
    /// Nothing changed; the scheduler is alive.
    Heartbeat { seq: u64 },
}

/// What `dfctl top` shows from one scheduler.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WatchSnapshot {
    /// Increases with every change the scheduler publishes.
    pub seq: u64,
    pub tasks: Vec<TaskSummary>,
    pub hosts: Vec<HostView>,
    /// The task named by `?task=`, with its peers (piece bitmaps) and DAG edges; `None` when
    /// none was asked for or this scheduler does not know it.
    #[serde(default)]
    pub task: Option<TaskDetail>,
}

/// Body of `POST /oapi/v1/jobs`, as Harbor's Dragonfly provider and upstream's manager open
/// API send it. Unknown fields are ignored (upstream has more knobs than we honour).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateJob {
    /// Only `preheat`.
    #[serde(rename = "type")]
    pub job_type: String,
    pub args: PreheatArgs,
    /// Accepted for compatibility and ignored: a scheduler is its own (single) cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_cluster_ids: Option<Vec<u64>>,
}

/// `args` of a preheat job. Harbor sends `type`, `url`, `headers`, `scope` (and zero values
/// for `tag`, `filtered_query_params`, `concurrent_count`, `timeout`); upstream's open API
/// adds `username`/`password`, `platform`, `ips`; `host_ids` is ours (dfctl `--peers`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PreheatArgs {
    /// `image` (url is a manifest URL `<scheme>://<registry>/v2/<repo>/manifests/<ref>`) or
    /// `file` (url and urls are the objects themselves).
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Sent with every registry request and every blob download (`Authorization` from
    /// Harbor is a pull token). Values are redacted in job views.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    /// Registry credentials for the token (or Basic) flow; never shown in job views.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// `os/arch[/variant]` picked from an image index (default `linux/amd64`), or `all`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub platform: String,
    /// `single_seed_peer` (default; Harbor's `single_peer` too), `all_seed_peers`, `all_peers`.
    #[serde(default)]
    pub scope: String,
    /// Only these hosts (by IP), within the scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ips: Option<Vec<String>>,
    /// Only these hosts (by host ID), within the scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ids: Option<Vec<String>>,
    /// Task ID inputs, as for any download: must match what the clients' pulls use.
    #[serde(default)]
    pub tag: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub application: String,
    /// `&`-joined query parameters left out of task IDs; empty: the default list.
    #[serde(default)]
    pub filtered_query_params: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub piece_length: Option<u64>,
    /// Nanoseconds (a Go `time.Duration`, as Harbor sends it); 0 or absent: `jobs.timeout`.
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Accepted for compatibility; every chosen peer starts at once.
    #[serde(default)]
    pub concurrent_count: Option<i64>,
}

/// A job as the jobs API shows it. `id`, `state` (`PENDING`, `SUCCESS`, `FAILURE`: the only
/// three Harbor understands), `created_at`/`updated_at` (RFC 3339) and `result.job_states[]`
/// (`error`, `results[].success_tasks` / `failure_tasks`) are what Harbor reads; `blobs` is
/// the per-blob, per-peer progress dfctl shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobView {
    pub id: u64,
    #[serde(rename = "type")]
    pub job_type: String,
    pub state: String,
    pub created_at: String,
    pub updated_at: String,
    pub args: PreheatArgs,
    pub result: JobResult,
    /// Why the job failed as a whole (resolving the image, no peer to send it to, timeout);
    /// empty otherwise. Also in `result.job_states[0].error`.
    pub error: String,
    /// Seconds from creation to the end (or to now while running).
    pub elapsed_secs: f64,
    pub blobs: Vec<BlobView>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobResult {
    pub state: String,
    pub job_states: Vec<JobStateView>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobStateView {
    pub state: String,
    pub error: String,
    pub results: Vec<ClusterResult>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterResult {
    pub success_tasks: Vec<HostTask>,
    pub failure_tasks: Vec<HostTask>,
    pub scheduler_cluster_id: u64,
}

/// One blob on one host, as upstream's results list it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostTask {
    pub url: String,
    pub hostname: String,
    pub ip: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// One object of a job (an image's config or layer, or a file).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobView {
    pub url: String,
    pub task_id: String,
    /// `sha256:...` for image blobs; empty for files.
    pub digest: String,
    /// From the manifest; `None` for files until a peer reports it.
    pub size: Option<u64>,
    pub media_type: String,
    /// `os/arch` of the manifest it came from, when the image is an index.
    pub platform: String,
    pub peers: Vec<BlobPeerView>,
}

/// One blob's progress on one chosen host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobPeerView {
    pub host_id: String,
    pub hostname: String,
    pub ip: String,
    /// `pending` (command sent), `running`, `succeeded` or `failed`.
    pub state: String,
    pub completed_length: u64,
    pub content_length: u64,
    /// `local` (already cached), `peer`, `seed` or `origin`, once it succeeded.
    pub source: String,
    pub error: String,
    pub cost_millis: u64,
}
