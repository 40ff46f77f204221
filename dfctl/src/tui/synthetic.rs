//! Deterministic cluster states for `dfctl top`'s rendering tests and its load benchmark
//! (`scripts/bench-tui`): N tasks over M hosts, a task whose DAG has any number of peers, and
//! schedulers that are down. The same inputs always give the same snapshots, byte for byte.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use df_core::api::{EdgeView, HostView, PeerView, TaskDetail, TaskSummary, WatchSnapshot};
use df_core::ids::{TaskId, TaskIdParams};
use df_core::piece::Bitmap;

use crate::tui::app::App;
use crate::tui::model::{ClusterModel, Link};

/// Pieces of every synthetic task.
pub const PIECES: u32 = 64;
const PIECE_LENGTH: u64 = 4 << 20;

/// The fixed origin of synthetic time; views are computed relative to it.
pub fn t0() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

fn mix(n: u64) -> u64 {
    // splitmix64: spreads small integers over the range, deterministically.
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub fn url(n: usize) -> String {
    format!(
        "https://registry.example/v2/app/layer-{n}/blobs/sha256:{:016x}{:016x}",
        mix(n as u64),
        mix(n as u64 + 1)
    )
}

pub fn task_id(n: usize) -> String {
    TaskId::from_url(&url(n), &TaskIdParams::default())
        .map(|id| id.to_string())
        .unwrap_or_else(|_| format!("{n:064x}"))
}

pub fn host_name(i: usize) -> String {
    if i < 2 {
        format!("seed-{i}")
    } else {
        format!("peer-{}", i - 2)
    }
}

fn host_id(i: usize) -> String {
    format!("10.0.{}.{}-{}", i / 250, i % 250 + 1, host_name(i))
}

fn peer_id(i: usize) -> String {
    format!("{}-{:08x}", host_id(i), mix(i as u64) as u32)
}

/// Peers of task `n` in a cluster of `hosts`: always the seed plus a few, varying by task.
fn peers_of(n: usize, hosts: usize) -> usize {
    (2 + (mix(n as u64) % hosts.max(2) as u64) as usize).min(hosts.max(1))
}

/// Pieces peer `i` holds at step `seq` (the seed always holds everything).
fn held(i: usize, seq: u64) -> u32 {
    if i == 0 {
        return PIECES;
    }
    let base = (mix(i as u64) % 24) as u32;
    (base + (seq as u32) * 8).min(PIECES)
}

pub fn summary(n: usize, hosts: usize, seq: u64) -> TaskSummary {
    let peers = peers_of(n, hosts);
    let len = u64::from(PIECES) * PIECE_LENGTH;
    let done = (1..peers).filter(|i| held(*i, seq) == PIECES).count() + 1;
    let from_peers: u64 = (1..peers)
        .map(|i| u64::from(held(i, seq)) * PIECE_LENGTH)
        .sum();
    TaskSummary {
        task_id: task_id(n),
        url: url(n),
        content_length: Some(len),
        piece_length: Some(PIECE_LENGTH),
        piece_count: Some(PIECES),
        peers_total: peers,
        peers_running: peers - done,
        peers_succeeded: done,
        peers_failed: 0,
        bytes_from_origin: len,
        bytes_from_peers: from_peers,
        created_secs_ago: 10 + n as u64 * 7,
        updated_secs_ago: 0,
    }
}

pub fn host(i: usize, seq: u64) -> HostView {
    HostView {
        host_id: host_id(i),
        hostname: host_name(i),
        ip: format!("10.0.{}.{}", i / 250, i % 250 + 1),
        upload_port: 4000,
        admin_port: 4002,
        proxy_port: 4001,
        host_type: if i < 2 { "seed" } else { "normal" }.into(),
        idc: String::new(),
        location: String::new(),
        upload_slots: 16,
        active_uploads: (mix(i as u64 + seq) % 17) as u32,
        uploaded_bytes: seq * (mix(i as u64) % 64) * (1 << 20),
        disk_used: (mix(i as u64) % 90 + 5) * (1 << 30),
        disk_capacity: 100 << 30,
        high_watermark_percent: 90,
        disabled: i % 23 == 7,
        connected: i % 31 != 11,
        last_seen_secs_ago: 1,
        version: "0.1.0".into(),
        reconnects: u64::from(i % 13 == 4),
        last_reconnect_secs_ago: (i % 13 == 4).then_some(3),
    }
}

/// Task `n`'s detail with `peers` peers: peer 0 is the seed (it fetched from the origin),
/// peer `i` downloads from peer `(i - 1) / 3`, and every 17th peer also has a blocklisted
/// parent that failed it.
pub fn detail(n: usize, peers: usize, seq: u64) -> TaskDetail {
    let mut summary = summary(n, peers.max(2), seq);
    summary.peers_total = peers;
    let piece_views = (0..peers)
        .map(|i| {
            let have = held(i, seq);
            let mut bitmap = Bitmap::new(PIECES);
            // Pieces land spread over the object, as they do from several parents.
            for k in 0..have {
                bitmap.set((k * 37 + i as u32) % PIECES);
            }
            PeerView {
                peer_id: peer_id(i),
                host_id: host_id(i),
                ip: format!("10.0.{}.{}", i / 250, i % 250 + 1),
                admin_port: 4002,
                is_seed: i == 0,
                state: if have == PIECES {
                    "succeeded"
                } else {
                    "running"
                }
                .into(),
                finished_pieces: bitmap.count(),
                bitmap: bitmap.to_hex(),
                content_path: format!(
                    "/var/lib/dragonfly/{}/content/tasks/{}",
                    host_name(i),
                    task_id(n)
                ),
                bytes_from_origin: if i == 0 {
                    u64::from(PIECES) * PIECE_LENGTH
                } else {
                    0
                },
                bytes_from_peers: if i == 0 {
                    0
                } else {
                    u64::from(have) * PIECE_LENGTH
                },
                updated_secs_ago: 0,
                origin_share: None,
                share_withdrawn: false,
            }
        })
        .collect();
    let mut edges = Vec::new();
    for i in 1..peers {
        let have = u64::from(held(i, seq));
        edges.push(EdgeView {
            parent: peer_id((i - 1) / 3),
            child: peer_id(i),
            bytes: have * PIECE_LENGTH,
            pieces: u32::try_from(have).unwrap_or(0),
            failures: 0,
            active: have < u64::from(PIECES),
            blocklisted: false,
        });
        if i % 17 == 0 && i >= 2 {
            edges.push(EdgeView {
                parent: peer_id(i - 2),
                child: peer_id(i),
                bytes: PIECE_LENGTH,
                pieces: 1,
                failures: 3,
                active: false,
                blocklisted: true,
            });
        }
    }
    TaskDetail {
        summary,
        peers: piece_views,
        edges,
    }
}

/// Task `n`'s detail as a mesh: the edges of [`detail`], plus pairs that feed each other both
/// ways (peer `i` and its sibling `i ± 1` swap pieces; every 5th peer sends some back to its
/// parent), each direction with its own byte count.
pub fn mesh_detail(n: usize, peers: usize, seq: u64) -> TaskDetail {
    let mut detail = detail(n, peers, seq);
    let edge = |from: usize, to: usize, pieces: u64| EdgeView {
        parent: peer_id(from),
        child: peer_id(to),
        bytes: pieces * PIECE_LENGTH,
        pieces: u32::try_from(pieces).unwrap_or(0),
        failures: 0,
        active: true,
        blocklisted: false,
    };
    for i in 1..peers {
        let sibling = if i % 2 == 1 { i + 1 } else { i - 1 };
        if sibling < peers {
            detail
                .edges
                .push(edge(i, sibling, mix(i as u64 * 31 + seq) % 6 + 1));
        }
        if i % 5 == 0 {
            detail
                .edges
                .push(edge(i, (i - 1) / 3, mix(i as u64) % 3 + 1));
        }
    }
    detail
}

/// Scheduler `s` of `schedulers`' snapshot: the tasks that hash to it and every host.
pub fn snapshot(
    tasks: usize,
    hosts: usize,
    s: usize,
    schedulers: usize,
    seq: u64,
) -> WatchSnapshot {
    WatchSnapshot {
        seq,
        tasks: (0..tasks)
            .filter(|n| n % schedulers.max(1) == s)
            .map(|n| summary(n, hosts, seq))
            .collect(),
        hosts: (0..hosts).map(|i| host(i, seq)).collect(),
        task: None,
    }
}

/// A model that has seen two snapshots a second apart from each of `schedulers`, so rates
/// are set.
pub fn busy_cluster(tasks: usize, hosts: usize, schedulers: usize) -> ClusterModel {
    let mut model = ClusterModel::new((0..schedulers).map(|s| format!("10.0.9.{}:8080", s + 1)));
    for step in 1..=2u64 {
        for s in 0..schedulers {
            let snap = snapshot(tasks, hosts, s, schedulers, step);
            model.apply_snapshot(s, snap, t0() + Duration::from_secs(step));
        }
    }
    model
}

/// One scheduler, one task selected whose DAG has `peers` peers (a tree, see [`detail`]).
pub fn dag_cluster(peers: usize) -> ClusterModel {
    cluster_with_detail(peers, detail)
}

/// One scheduler, one task selected whose `peers` peers form a mesh (see [`mesh_detail`]).
pub fn mesh_cluster(peers: usize) -> ClusterModel {
    cluster_with_detail(peers, mesh_detail)
}

fn cluster_with_detail(peers: usize, detail: fn(usize, usize, u64) -> TaskDetail) -> ClusterModel {
    let mut model = ClusterModel::new(["10.0.9.1:8080".to_owned()]);
    for step in 1..=2u64 {
        let mut snap = snapshot(1, peers, 0, 1, step);
        snap.tasks[0].peers_total = peers;
        snap.task = Some(detail(0, peers, step));
        model.apply_snapshot(0, snap, t0() + Duration::from_secs(step));
    }
    model
}

/// Two schedulers: the first up with a few tasks, the second gone.
pub fn half_down_cluster() -> ClusterModel {
    let mut model = busy_cluster(4, 5, 2);
    model.set_link(
        1,
        Link::Down {
            error: "GET http://10.0.9.2:8080/api/v1/watch: connection refused".into(),
            retry_at: t0() + Duration::from_secs(6),
        },
    );
    model
}

/// One scheduler that answered with nothing.
pub fn empty_cluster() -> ClusterModel {
    let mut model = ClusterModel::new(["127.0.0.1:8080".to_owned()]);
    model.apply_snapshot(0, WatchSnapshot::default(), t0() + Duration::from_secs(1));
    model
}

/// An app over `model`, its view computed at the synthetic "now" (2 s after [`t0`]).
pub fn app(model: ClusterModel) -> App {
    let mut app = App::new(model, true);
    app.refresh(t0() + Duration::from_secs(2));
    if let Some(task) = &app.view.task {
        app.selected_task = Some(task.task_id.clone());
    }
    app
}
