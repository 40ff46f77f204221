//! What `dfctl top` knows: the last watch snapshot of each scheduler, the link state of each,
//! and rates derived from successive snapshots. [`ClusterModel::view`] turns it into a
//! [`TopView`], the one document both the panes draw and `dfctl top --once -o json` prints.
//!
//! Invariants:
//! - Time comes in as an argument (`now`), never from the clock here, so recorded states
//!   render the same in tests.
//! - Rates are bytes moved between two snapshots over the time between them; a counter that
//!   goes down (a restarted scheduler) restarts the rate at zero, never a negative one.
//! - A scheduler that is down keeps no tasks or hosts in the view: what it showed is stale.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use df_core::api::{PeerView, TaskDetail, WatchSnapshot};
use df_core::ids::TaskId;
use serde::Serialize;

use crate::location::Location;
use crate::location::flow::Flows;
use crate::render::natural_key;

/// The state of the watch stream to one scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Connecting,
    Up,
    /// Lost or refused; the feed retries at `retry_at`.
    Down {
        error: String,
        retry_at: Instant,
    },
}

#[derive(Debug, Clone)]
pub struct SchedulerFeed {
    pub addr: String,
    pub link: Link,
    pub snapshot: Option<WatchSnapshot>,
    pub received_at: Option<Instant>,
}

/// Bytes per second of one counter, from its last two readings.
#[derive(Debug, Clone, Copy, Default)]
struct Rate {
    bytes: u64,
    at: Option<Instant>,
    per_sec: f64,
}

impl Rate {
    fn observe(&mut self, bytes: u64, now: Instant) {
        if let Some(at) = self.at {
            let dt = now.saturating_duration_since(at).as_secs_f64();
            if bytes < self.bytes {
                self.per_sec = 0.0;
            } else if dt >= 0.05 {
                self.per_sec = (bytes - self.bytes) as f64 / dt;
            } else {
                // Two snapshots in one instant say nothing about speed.
                return;
            }
        }
        self.bytes = bytes;
        self.at = Some(now);
    }
}

/// All schedulers' state plus the rates derived from it.
#[derive(Debug, Default)]
pub struct ClusterModel {
    pub schedulers: Vec<SchedulerFeed>,
    task_rates: HashMap<String, Rate>,
    edge_rates: HashMap<(String, String), Rate>,
    host_rates: HashMap<String, Rate>,
}

/// One scheduler's line in the header.
#[derive(Debug, Clone, Serialize)]
pub struct SchedulerRow {
    pub addr: String,
    pub connected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seconds until the next reconnect attempt, when down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_in_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskRow {
    pub task_id: String,
    pub url: String,
    pub content_length: Option<u64>,
    pub peers_total: usize,
    pub peers_done: usize,
    pub peers_running: usize,
    pub peers_failed: usize,
    /// Bytes the peers hold over bytes they all want, in percent.
    pub progress_percent: f64,
    pub rate_bytes_per_sec: f64,
    pub bytes_from_origin: u64,
    pub bytes_from_peers: u64,
    /// Share of the bytes that came from other peers rather than the origin, in percent.
    pub p2p_percent: f64,
    pub created_secs_ago: u64,
    pub scheduler: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostRow {
    pub host_id: String,
    pub hostname: String,
    pub ip: String,
    pub admin_port: u16,
    pub host_type: String,
    pub active_uploads: u32,
    pub upload_slots: u32,
    pub upload_rate_bytes_per_sec: f64,
    pub disk_used: u64,
    pub disk_capacity: u64,
    pub high_watermark_percent: u8,
    pub disabled: bool,
    pub connected: bool,
    pub scheduler: String,
    /// The peer's host-stream reconnects since it started, and how long ago the last was.
    pub reconnects: u64,
    pub last_reconnect_secs_ago: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerRow {
    pub peer_id: String,
    pub host: String,
    /// The peer's admin address (`IP:PORT`), where its logs and its copy are.
    pub admin_addr: String,
    pub is_seed: bool,
    pub state: String,
    pub finished_pieces: u32,
    /// Hex of the packed piece bitmap (bit `n % 8` of byte `n / 8`).
    pub bitmap: String,
    pub bytes_from_origin: u64,
    pub bytes_from_peers: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EdgeRow {
    pub parent: String,
    pub child: String,
    pub bytes: u64,
    pub rate_bytes_per_sec: f64,
    pub pieces: u32,
    pub failures: u32,
    pub active: bool,
    pub blocklisted: bool,
}

/// The selected task: its peers with their bitmaps, the edges between them, and those edges
/// folded into who fed whom.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub task_id: String,
    pub url: String,
    pub piece_count: Option<u32>,
    pub peers: Vec<PeerRow>,
    pub edges: Vec<EdgeRow>,
    pub flows: Flows,
}

/// Everything `dfctl top` shows, merged over the schedulers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TopView {
    pub schedulers: Vec<SchedulerRow>,
    pub tasks: Vec<TaskRow>,
    pub hosts: Vec<HostRow>,
    pub task: Option<TaskView>,
}

impl ClusterModel {
    pub fn new(addrs: impl IntoIterator<Item = String>) -> Self {
        Self {
            schedulers: addrs
                .into_iter()
                .map(|addr| SchedulerFeed {
                    addr,
                    link: Link::Connecting,
                    snapshot: None,
                    received_at: None,
                })
                .collect(),
            ..Self::default()
        }
    }

    /// A snapshot arrived from scheduler `index`.
    pub fn apply_snapshot(&mut self, index: usize, snapshot: WatchSnapshot, now: Instant) {
        for t in &snapshot.tasks {
            self.task_rates
                .entry(format!("{index}/{}", t.task_id))
                .or_default()
                .observe(t.bytes_from_origin + t.bytes_from_peers, now);
        }
        for h in &snapshot.hosts {
            self.host_rates
                .entry(h.host_id.clone())
                .or_default()
                .observe(h.uploaded_bytes, now);
        }
        if let Some(detail) = &snapshot.task {
            for e in &detail.edges {
                self.edge_rates
                    .entry((e.parent.clone(), e.child.clone()))
                    .or_default()
                    .observe(e.bytes, now);
            }
        }
        if let Some(feed) = self.schedulers.get_mut(index) {
            feed.link = Link::Up;
            feed.snapshot = Some(snapshot);
            feed.received_at = Some(now);
        }
    }

    pub fn set_link(&mut self, index: usize, link: Link) {
        if let Some(feed) = self.schedulers.get_mut(index) {
            if matches!(link, Link::Down { .. }) {
                feed.snapshot = None;
            }
            feed.link = link;
        }
    }

    /// Forgets edge rates when the selection changes, so an old task's rates do not linger.
    pub fn clear_edge_rates(&mut self) {
        self.edge_rates.clear();
    }

    pub fn view(&self, now: Instant) -> TopView {
        let schedulers = self
            .schedulers
            .iter()
            .map(|s| {
                let (error, retry_in_secs) = match &s.link {
                    Link::Down { error, retry_at } => (
                        Some(error.clone()),
                        Some(retry_at.saturating_duration_since(now).as_secs()),
                    ),
                    _ => (None, None),
                };
                SchedulerRow {
                    addr: s.addr.clone(),
                    connected: s.link == Link::Up,
                    error,
                    retry_in_secs,
                }
            })
            .collect();
        let mut tasks = Vec::new();
        let mut hosts: BTreeMap<String, HostRow> = BTreeMap::new();
        let mut details: Vec<(String, TaskDetail)> = Vec::new();
        for (index, feed) in self.schedulers.iter().enumerate() {
            let Some(snap) = &feed.snapshot else { continue };
            for t in &snap.tasks {
                let rate = self
                    .task_rates
                    .get(&format!("{index}/{}", t.task_id))
                    .map_or(0.0, |r| r.per_sec);
                tasks.push(task_row(t, rate, &feed.addr));
            }
            for h in &snap.hosts {
                // Every scheduler sees every host; the connected view wins.
                if hosts.get(&h.host_id).is_some_and(|known| known.connected) {
                    continue;
                }
                hosts.insert(
                    h.host_id.clone(),
                    HostRow {
                        host_id: h.host_id.clone(),
                        hostname: h.hostname.clone(),
                        ip: h.ip.clone(),
                        admin_port: h.admin_port,
                        host_type: h.host_type.clone(),
                        active_uploads: h.active_uploads,
                        upload_slots: h.upload_slots,
                        upload_rate_bytes_per_sec: self
                            .host_rates
                            .get(&h.host_id)
                            .map_or(0.0, |r| r.per_sec),
                        disk_used: h.disk_used,
                        disk_capacity: h.disk_capacity,
                        high_watermark_percent: h.high_watermark_percent,
                        disabled: h.disabled,
                        connected: h.connected,
                        scheduler: feed.addr.clone(),
                        reconnects: h.reconnects,
                        last_reconnect_secs_ago: h.last_reconnect_secs_ago,
                    },
                );
            }
            if let Some(detail) = &snap.task {
                details.push((feed.addr.clone(), detail.clone()));
            }
        }
        tasks.sort_by(|a, b| {
            a.created_secs_ago
                .cmp(&b.created_secs_ago)
                .then_with(|| a.task_id.cmp(&b.task_id))
                .then_with(|| a.scheduler.cmp(&b.scheduler))
        });
        let mut hosts: Vec<HostRow> = hosts.into_values().collect();
        // Seeds first, then by name with numbers in numeric order (peer-2 before peer-10).
        hosts.sort_by(|a, b| {
            (b.host_type == "seed")
                .cmp(&(a.host_type == "seed"))
                .then_with(|| natural_key(&a.hostname).cmp(&natural_key(&b.hostname)))
                .then_with(|| a.host_id.cmp(&b.host_id))
        });
        let task = details
            .first()
            .and_then(|(_, d)| d.summary.task_id.parse::<TaskId>().ok())
            .and_then(|id| Location::merge(&id, details))
            .map(|loc| self.task_view(&loc, &hosts));
        TopView {
            schedulers,
            tasks,
            hosts,
            task,
        }
    }

    fn task_view(&self, loc: &Location, hosts: &[HostRow]) -> TaskView {
        let names: HashMap<&str, &str> = hosts
            .iter()
            .map(|h| (h.host_id.as_str(), h.hostname.as_str()))
            .collect();
        let host_name = |p: &PeerView| {
            names
                .get(p.host_id.as_str())
                .map_or_else(|| p.host_id.clone(), |n| (*n).to_owned())
        };
        let mut peers: Vec<PeerRow> = loc
            .peers
            .iter()
            .map(|p| PeerRow {
                peer_id: p.peer_id.clone(),
                host: host_name(p),
                admin_addr: format!("{}:{}", p.ip, p.admin_port),
                is_seed: p.is_seed,
                state: p.state.clone(),
                finished_pieces: p.finished_pieces,
                bitmap: p.bitmap.clone(),
                bytes_from_origin: p.bytes_from_origin,
                bytes_from_peers: p.bytes_from_peers,
            })
            .collect();
        peers.sort_by(|a, b| {
            b.is_seed
                .cmp(&a.is_seed)
                .then_with(|| natural_key(&a.host).cmp(&natural_key(&b.host)))
                .then_with(|| a.peer_id.cmp(&b.peer_id))
        });
        let edges = loc
            .edges
            .iter()
            .map(|e| EdgeRow {
                parent: e.parent.clone(),
                child: e.child.clone(),
                bytes: e.bytes,
                rate_bytes_per_sec: self
                    .edge_rates
                    .get(&(e.parent.clone(), e.child.clone()))
                    .map_or(0.0, |r| r.per_sec),
                pieces: e.pieces,
                failures: e.failures,
                active: e.active,
                blocklisted: e.blocklisted,
            })
            .collect();
        let flows = Flows::of(&loc.peers, &loc.edges, host_name);
        TaskView {
            task_id: loc.task_id.clone(),
            url: loc.url.clone(),
            piece_count: loc.piece_count,
            peers,
            edges,
            flows,
        }
    }
}

fn task_row(t: &df_core::api::TaskSummary, rate: f64, scheduler: &str) -> TaskRow {
    let moved = t.bytes_from_origin + t.bytes_from_peers;
    let progress_percent = if t.peers_total > 0 && t.peers_succeeded == t.peers_total {
        100.0
    } else {
        match t.content_length {
            Some(len) if len > 0 && t.peers_total > 0 => {
                (moved as f64 * 100.0 / (len as f64 * t.peers_total as f64)).min(100.0)
            }
            _ => 0.0,
        }
    };
    let p2p_percent = if moved == 0 {
        0.0
    } else {
        t.bytes_from_peers as f64 * 100.0 / moved as f64
    };
    TaskRow {
        task_id: t.task_id.clone(),
        url: t.url.clone(),
        content_length: t.content_length,
        peers_total: t.peers_total,
        peers_done: t.peers_succeeded,
        peers_running: t.peers_running,
        peers_failed: t.peers_failed,
        progress_percent,
        rate_bytes_per_sec: rate,
        bytes_from_origin: t.bytes_from_origin,
        bytes_from_peers: t.bytes_from_peers,
        p2p_percent,
        created_secs_ago: t.created_secs_ago,
        scheduler: scheduler.to_owned(),
    }
}

/// How long a feed waits before reconnecting after its `attempt`-th failure in a row:
/// 0.5 s doubling to 8 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << attempt.min(4)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use df_core::api::TaskSummary;

    fn summary(bytes_from_peers: u64, succeeded: usize) -> TaskSummary {
        TaskSummary {
            task_id: "t".repeat(64),
            url: "http://o/blob".into(),
            content_length: Some(100),
            piece_length: Some(100),
            piece_count: Some(1),
            peers_total: 3,
            peers_running: 3 - succeeded,
            peers_succeeded: succeeded,
            peers_failed: 0,
            bytes_from_origin: 100,
            bytes_from_peers,
            created_secs_ago: 1,
            updated_secs_ago: 0,
        }
    }

    #[test]
    fn rates_come_from_successive_snapshots_and_a_down_scheduler_shows_nothing() {
        let t0 = Instant::now();
        let mut model = ClusterModel::new(["s1".to_owned()]);
        let snap = |peers, done| WatchSnapshot {
            seq: 1,
            tasks: vec![summary(peers, done)],
            ..WatchSnapshot::default()
        };
        model.apply_snapshot(0, snap(0, 1), t0);
        model.apply_snapshot(0, snap(100, 2), t0 + Duration::from_secs(2));
        let view = model.view(t0 + Duration::from_secs(2));
        let row = &view.tasks[0];
        assert!((row.rate_bytes_per_sec - 50.0).abs() < 1e-9, "{row:?}");
        assert!((row.progress_percent - 200.0 / 3.0).abs() < 1e-9, "{row:?}");
        assert!((row.p2p_percent - 50.0).abs() < 1e-9, "{row:?}");
        assert!(view.schedulers[0].connected);
        // A restarted scheduler's counters go down: the rate restarts at zero.
        model.apply_snapshot(0, snap(0, 3), t0 + Duration::from_secs(3));
        let view = model.view(t0 + Duration::from_secs(3));
        assert_eq!(view.tasks[0].rate_bytes_per_sec, 0.0);
        assert_eq!(view.tasks[0].progress_percent, 100.0, "every peer done");
        model.set_link(
            0,
            Link::Down {
                error: "connection refused".into(),
                retry_at: t0 + Duration::from_secs(7),
            },
        );
        let view = model.view(t0 + Duration::from_secs(4));
        assert!(view.tasks.is_empty());
        assert!(!view.schedulers[0].connected);
        assert_eq!(view.schedulers[0].retry_in_secs, Some(3));
    }

    #[test]
    fn backoff_doubles_up_to_eight_seconds() {
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(30), Duration::from_secs(8));
    }
}
