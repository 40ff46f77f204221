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
}
