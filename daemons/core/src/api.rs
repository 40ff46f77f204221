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
//! - `GET /api/v1/download?url=URL[&digest=sha256:..]` -> the object's bytes, streamed, with
//!   `X-Dragonfly-Task-ID` and `X-Dragonfly-Source`; request headers other than hop-by-hop ones
//!   are forwarded to the origin when the peer goes back to source
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
    #[serde(default)]
    pub high_watermark_percent: u8,
    /// Idle tasks are collected after this long without access.
    #[serde(default)]
    pub task_ttl_secs: u64,
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
