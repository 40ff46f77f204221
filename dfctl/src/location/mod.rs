//! Where a task is: what every scheduler knows of it (peers, piece counts, the edges of who
//! sent bytes to whom), merged, plus what each holding peer says about its own copy. The
//! lookup behind `dfctl task locate` and the Locate and DAG panes of `dfctl top`.
//!
//! - [`Location`]: the merged document (`task locate -o json`), built by [`Location::merge`]
//!   from the schedulers' [`TaskDetail`]s and completed by [`Location::fetch_copies`];
//! - [`flow`]: the edges folded into one row per node (who fed whom, bytes each way).
//!
//! Invariants: merging never invents data (a peer seen by two schedulers keeps its freshest
//! view, an edge its larger byte count); a peer that does not answer is a copy with an error,
//! never a failed lookup.

pub mod flow;

use std::collections::BTreeMap;
use std::time::Duration;

use df_core::api::{EdgeView, LocalTask, PeerView, TaskDetail};
use df_core::ids::TaskId;
use futures_util::future::join_all;
use serde::Serialize;

use crate::admin::AdminClient;
use crate::cluster::Target;
use crate::render;

/// The host name in a host id (`10.0.0.3-peer-0` is `peer-0`); the whole id when it has none.
pub fn host_name(host_id: &str) -> &str {
    host_id.split_once('-').map_or(host_id, |(_, name)| name)
}

/// The JSON document of `task locate -o json`.
#[derive(Debug, Clone, Serialize)]
pub struct Location {
    pub task_id: String,
    pub url: String,
    pub content_length: Option<u64>,
    pub piece_count: Option<u32>,
    /// Admin addresses of the schedulers that know the task.
    pub schedulers: Vec<String>,
    pub peers: Vec<PeerView>,
    /// The task's DAG: who fed whom, with bytes moved on each edge.
    pub edges: Vec<EdgeView>,
    /// What each peer's own admin API says about its copy, in the order of `peers`.
    #[serde(default)]
    pub copies: Vec<NodeCopy>,
}

/// One peer's copy of a task, as that peer reports it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeCopy {
    pub peer_id: String,
    pub host_id: String,
    /// The peer's admin address that was asked.
    pub admin_addr: String,
    /// `None` when the peer did not answer or no longer holds the task (see `error`).
    pub local: Option<LocalTask>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl NodeCopy {
    /// When the GC will collect the copy, for people: `TTL 23h59m` (idle limit), `or LRU`
    /// when disk pressure may evict it sooner, `kept: in use` while read or downloaded.
    pub fn collection(&self) -> String {
        match &self.local {
            None => "-".to_owned(),
            Some(l) => match (l.expires_in_secs, l.evictable) {
                (Some(secs), lru) => format!(
                    "TTL {}{}",
                    render::duration(Duration::from_secs(secs)),
                    if lru { ", or LRU" } else { "" }
                ),
                (None, _) => "kept: in use".to_owned(),
            },
        }
    }
}

impl Location {
    /// Merges the views of several schedulers; a peer seen twice keeps its freshest view.
    pub fn merge(task_id: &TaskId, found: Vec<(String, TaskDetail)>) -> Option<Self> {
        let first = found.first()?.1.summary.clone();
        let mut peers: BTreeMap<String, PeerView> = BTreeMap::new();
        let mut edges: BTreeMap<(String, String), EdgeView> = BTreeMap::new();
        for (_, detail) in &found {
            for edge in &detail.edges {
                let key = (edge.parent.clone(), edge.child.clone());
                // After a failover two schedulers may each have seen part of an edge's traffic;
                // the larger count is the later view.
                if edges.get(&key).is_none_or(|known| edge.bytes > known.bytes) {
                    edges.insert(key, edge.clone());
                }
            }
            for peer in &detail.peers {
                let fresher = peers
                    .get(&peer.peer_id)
                    .is_none_or(|known| peer.updated_secs_ago < known.updated_secs_ago);
                if fresher {
                    peers.insert(peer.peer_id.clone(), peer.clone());
                }
            }
        }
        Some(Self {
            task_id: task_id.to_string(),
            url: first.url,
            content_length: found.iter().find_map(|(_, d)| d.summary.content_length),
            piece_count: found.iter().find_map(|(_, d)| d.summary.piece_count),
            schedulers: found.into_iter().map(|(addr, _)| addr).collect(),
            peers: peers.into_values().collect(),
            edges: edges.into_values().collect(),
            copies: Vec::new(),
        })
    }

    /// Asks every peer that the schedulers place the task on (and that has not left) for its
    /// own view of its copy, concurrently.
    pub async fn fetch_copies(&mut self, client: &AdminClient) {
        let task_id = self.task_id.clone();
        let asked: Vec<&PeerView> = self
            .peers
            .iter()
            .filter(|p| p.state != "left" && p.admin_port != 0 && !p.ip.is_empty())
            .collect();
        let answers = join_all(asked.iter().map(|p| {
            let addr = format!("{}:{}", p.ip, p.admin_port);
            let task_id = &task_id;
            async move {
                let answer = client.peer_task(&addr, task_id).await;
                (addr, answer)
            }
        }))
        .await;
        self.copies = asked
            .iter()
            .zip(answers)
            .map(|(p, (admin_addr, answer))| {
                let (local, error) = match answer {
                    Ok(Some(local)) => (Some(local), None),
                    Ok(None) => (None, Some("not on this peer any more".to_owned())),
                    Err(e) => (None, Some(format!("{e:#}"))),
                };
                NodeCopy {
                    peer_id: p.peer_id.clone(),
                    host_id: p.host_id.clone(),
                    admin_addr,
                    local,
                    error,
                }
            })
            .collect();
    }
}

/// Finds a task on `schedulers` and asks its peers about their copies: the lookup behind
/// `dfctl task locate` and the cache-location pane of `dfctl top`. Schedulers that failed are
/// returned as warnings when another one answered.
pub async fn locate_task(
    client: &AdminClient,
    schedulers: &[Target],
    task_id: &TaskId,
) -> anyhow::Result<(Location, Vec<String>)> {
    let task_id_text = task_id.to_string();
    let answers = join_all(
        schedulers
            .iter()
            .map(|t| client.scheduler_task(&t.addr, &task_id_text)),
    )
    .await;
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for (target, answer) in schedulers.iter().zip(answers) {
        match answer {
            Ok(Some(detail)) => found.push((target.addr.clone(), detail)),
            Ok(None) => {}
            Err(e) => failures.push(format!("{}: {e:#}", target.label())),
        }
    }
    let asked: Vec<String> = schedulers.iter().map(Target::label).collect();
    let Some(mut location) = Location::merge(task_id, found) else {
        if failures.len() == schedulers.len() {
            anyhow::bail!(
                "no scheduler answered for task {task_id} (asked: {})",
                asked.join(", ")
            );
        }
        anyhow::bail!(
            "task {task_id} is not known to any scheduler (asked: {})",
            asked.join(", ")
        );
    };
    location.fetch_copies(client).await;
    Ok((location, failures))
}
