//! The read-only views of the scheduler's model that the admin API and the watch stream serve
//! (`df_core::api` types), built under the model's lock and sorted for stable output. Nothing
//! here changes the model.

use std::time::Instant;

use df_core::api;
use df_core::ids::TaskId;

use crate::model::{HostType, PeerState, Task};
use crate::scheduling::Scheduler;

fn secs_since(t: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(t).as_secs()
}

impl Scheduler {
    pub fn info(&self, grpc_addr: &str, identity: Option<String>) -> api::SchedulerInfo {
        let state = self.lock();
        api::SchedulerInfo {
            version: df_core::VERSION.to_owned(),
            uptime_secs: self.started.elapsed().as_secs(),
            grpc_addr: grpc_addr.to_owned(),
            hosts: state.hosts.len(),
            tasks: state.tasks.len(),
            peers: state.tasks.values().map(|t| t.peers.len()).sum(),
            warnings: self.config().warnings(),
            plaintext: self.config().tls.is_plaintext(),
            identity,
        }
    }

    pub fn counts(&self) -> (usize, usize, usize) {
        let state = self.lock();
        (
            state.hosts.len(),
            state.tasks.len(),
            state.tasks.values().map(|t| t.peers.len()).sum(),
        )
    }

    pub fn hosts(&self) -> Vec<api::HostView> {
        let now = Instant::now();
        let state = self.lock();
        let mut out: Vec<api::HostView> = state
            .hosts
            .values()
            .map(|h| api::HostView {
                host_id: h.id.to_string(),
                hostname: h.info.hostname.clone(),
                ip: h.info.ip.clone(),
                upload_port: port(h.info.upload_port),
                admin_port: port(h.info.admin_port),
                proxy_port: port(h.info.proxy_port),
                host_type: match h.host_type {
                    HostType::Seed => "seed".into(),
                    HostType::Normal => "normal".into(),
                },
                idc: h.info.idc.clone(),
                location: h.info.location.clone(),
                upload_slots: h.info.upload_slots,
                active_uploads: h.heartbeat.active_uploads,
                uploaded_bytes: h.heartbeat.uploaded_bytes,
                disk_used: h.heartbeat.disk_used,
                disk_capacity: h.heartbeat.disk_capacity,
                high_watermark_percent: u8::try_from(h.heartbeat.high_watermark_percent)
                    .unwrap_or(100),
                disabled: h.heartbeat.disabled,
                connected: h.connected,
                last_seen_secs_ago: secs_since(h.last_seen, now),
                version: h.info.version.clone(),
                reconnects: h.heartbeat.reconnects,
                last_reconnect_secs_ago: (h.heartbeat.last_reconnect_unix > 0)
                    .then(|| unix_now().saturating_sub(h.heartbeat.last_reconnect_unix)),
            })
            .collect();
        out.sort_by(|a, b| a.host_id.cmp(&b.host_id));
        out
    }

    pub fn tasks(&self) -> Vec<api::TaskSummary> {
        let now = Instant::now();
        let state = self.lock();
        let mut out: Vec<api::TaskSummary> =
            state.tasks.values().map(|t| summary(t, now)).collect();
        out.sort_by(|a, b| {
            a.created_secs_ago
                .cmp(&b.created_secs_ago)
                .then(a.task_id.cmp(&b.task_id))
        });
        out
    }

    pub fn task(&self, id: &TaskId) -> Option<api::TaskDetail> {
        let now = Instant::now();
        let state = self.lock();
        let task = state.tasks.get(id)?;
        let mut peers: Vec<api::PeerView> = task
            .peers
            .values()
            .map(|p| {
                let host = state.hosts.get(&p.host_id);
                api::PeerView {
                    peer_id: p.id.to_string(),
                    host_id: p.host_id.to_string(),
                    ip: host.map(|h| h.info.ip.clone()).unwrap_or_default(),
                    admin_port: host.map(|h| port(h.info.admin_port)).unwrap_or_default(),
                    is_seed: p.is_seed,
                    state: p.state.as_str().to_owned(),
                    finished_pieces: p.bitmap.count(),
                    bitmap: p.bitmap.to_hex(),
                    content_path: p.content_path.clone(),
                    bytes_from_origin: p.bytes_from_origin,
                    bytes_from_peers: p.bytes_from_peers,
                    updated_secs_ago: secs_since(p.updated_at, now),
                    origin_share: p.origin_share.clone(),
                    share_withdrawn: p.share_withdrawn,
                }
            })
            .collect();
        peers.sort_by(|a, b| b.is_seed.cmp(&a.is_seed).then(a.peer_id.cmp(&b.peer_id)));
        let mut edges: Vec<api::EdgeView> = task
            .edges
            .iter()
            .map(|((p, c), e)| api::EdgeView {
                parent: p.to_string(),
                child: c.to_string(),
                bytes: e.bytes,
                pieces: e.pieces,
                failures: e.failures,
                active: e.active,
                blocklisted: e.blocklisted,
            })
            .collect();
        edges.sort_by(|a, b| a.parent.cmp(&b.parent).then(a.child.cmp(&b.child)));
        Some(api::TaskDetail {
            summary: summary(task, now),
            peers,
            edges,
        })
    }
}

fn port(p: u32) -> u16 {
    u16::try_from(p).unwrap_or_default()
}

fn summary(t: &Task, now: Instant) -> api::TaskSummary {
    let count = |s: &[PeerState]| t.peers.values().filter(|p| s.contains(&p.state)).count();
    api::TaskSummary {
        task_id: t.id.to_string(),
        url: t.url.clone(),
        content_length: t.layout.map(|l| l.content_length),
        piece_length: t.layout.map(|l| l.piece_length),
        piece_count: t.layout.map(|l| l.piece_count()),
        peers_total: t.peers.len(),
        peers_running: count(&[
            PeerState::Pending,
            PeerState::Running,
            PeerState::BackToSource,
        ]),
        peers_succeeded: count(&[PeerState::Succeeded]),
        peers_failed: count(&[PeerState::Failed, PeerState::Left]),
        bytes_from_origin: t.peers.values().map(|p| p.bytes_from_origin).sum(),
        bytes_from_peers: t.peers.values().map(|p| p.bytes_from_peers).sum(),
        created_secs_ago: secs_since(t.created_at, now),
        updated_secs_ago: secs_since(t.updated_at, now),
    }
}

/// Seconds since the Unix epoch (peers report their reconnect times so).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
