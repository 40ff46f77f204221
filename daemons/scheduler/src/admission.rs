//! What the scheduler agrees to hold (pure: the model and the limits in, a decision out).
//!
//! Every table a peer can grow over gRPC is bounded by `limits.*`: hosts, tasks, peers per
//! task, each peer's blocklist, and every layout (piece length, content length, piece count)
//! is checked before per-piece state is allocated for it. A refused registration makes the
//! peer fetch from the origin itself, so a flood costs P2P its sharing, never a download.

use std::collections::HashSet;

use df_core::ids::{HostId, PeerId, TaskId};
use df_core::piece::{LayoutError, PieceLayout};

use crate::config::Limits;
use crate::model::State;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the scheduler holds {0} hosts, its limit (limits.max_hosts)")]
    Hosts(usize),
    #[error("the scheduler holds {0} tasks, its limit (limits.max_tasks)")]
    Tasks(usize),
    #[error("task {task} has {count} peers, the limit (limits.max_peers_per_task)")]
    Peers { task: TaskId, count: usize },
    #[error("the scheduler holds {0} peers, its limit (limits.max_peers)")]
    AllPeers(usize),
}

/// A host announcing itself: known hosts always, new ones while below `max_hosts`.
pub(crate) fn admit_host(state: &State, limits: &Limits, host: &HostId) -> Result<(), Refused> {
    if !state.hosts.contains_key(host) && state.hosts.len() >= limits.max_hosts {
        return Err(Refused::Hosts(state.hosts.len()));
    }
    Ok(())
}

/// A task some host holds or asks for: known tasks always, new ones while below `max_tasks`.
pub(crate) fn admit_task(state: &State, limits: &Limits, task: &TaskId) -> Result<(), Refused> {
    if !state.tasks.contains_key(task) && state.tasks.len() >= limits.max_tasks {
        return Err(Refused::Tasks(state.tasks.len()));
    }
    Ok(())
}

/// A peer registering for `task` from `host`: its host, its task, and a place among the task's
/// peers (a peer re-registering keeps its place).
pub(crate) fn admit_peer(
    state: &State,
    limits: &Limits,
    host: &HostId,
    task: &TaskId,
    peer: &PeerId,
) -> Result<(), Refused> {
    admit_host(state, limits, host)?;
    admit_task(state, limits, task)?;
    let known = state.tasks.get(task);
    if known.is_some_and(|t| t.peers.contains_key(peer)) {
        return Ok(());
    }
    if let Some(t) = known.filter(|t| t.peers.len() >= limits.max_peers_per_task) {
        return Err(Refused::Peers {
            task: task.clone(),
            count: t.peers.len(),
        });
    }
    if state.peer_count >= limits.max_peers {
        return Err(Refused::AllPeers(state.peer_count));
    }
    Ok(())
}

/// A layout claimed over the network (`Metadata`, `HeldTasks`, an explicit piece length).
pub(crate) fn layout(
    limits: &Limits,
    content_length: u64,
    piece_length: u64,
) -> Result<PieceLayout, LayoutError> {
    PieceLayout::bounded(
        content_length,
        Some(piece_length),
        limits.max_content_length,
    )
}

/// Adds `parent` to a blocklist unless it is full; returns whether it is listed now.
pub(crate) fn blocklist(list: &mut HashSet<PeerId>, parent: PeerId, max: usize) -> bool {
    if list.contains(&parent) {
        return true;
    }
    if list.len() >= max {
        return false;
    }
    list.insert(parent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Task;
    use crate::topology::MeshConfig;
    use std::time::Instant;

    fn limits() -> Limits {
        Limits {
            max_hosts: 2,
            max_tasks: 1,
            max_peers_per_task: 1,
            max_peers: 2,
            max_blocklist: 1,
            max_content_length: 1 << 30,
        }
    }

    fn tid(c: char) -> TaskId {
        c.to_string().repeat(64).parse().expect("task id")
    }

    #[test]
    fn tables_stop_growing_at_their_limits_but_known_entries_pass() {
        let mut state = State::default();
        let l = limits();
        let (a, b) = (tid('a'), tid('b'));
        assert_eq!(admit_task(&state, &l, &a), Ok(()));
        let mut task = Task::new(
            a.clone(),
            "http://o/x".into(),
            Instant::now(),
            MeshConfig::with_degree(4),
            1,
        );
        let host = HostId::from("h1".to_owned());
        assert_eq!(
            admit_peer(&state, &l, &host, &a, &PeerId::from("p1".to_owned())),
            Ok(())
        );
        task.peers.insert(
            PeerId::from("p1".to_owned()),
            crate::model::Peer::pending(PeerId::from("p1".to_owned()), host.clone()),
        );
        state.tasks.insert(a.clone(), task);
        assert_eq!(admit_task(&state, &l, &b), Err(Refused::Tasks(1)));
        assert_eq!(admit_task(&state, &l, &a), Ok(()));
        assert!(matches!(
            admit_peer(&state, &l, &host, &a, &PeerId::from("p2".to_owned())),
            Err(Refused::Peers { count: 1, .. })
        ));
        // The same peer registering again keeps its place.
        assert_eq!(
            admit_peer(&state, &l, &host, &a, &PeerId::from("p1".to_owned())),
            Ok(())
        );
        // All tasks' peers together: a new peer on a task with room is refused at the cap,
        // a known one still passes.
        let roomy = Limits {
            max_tasks: 10,
            max_peers_per_task: 10,
            ..l
        };
        state.peer_count = roomy.max_peers;
        assert_eq!(
            admit_peer(&state, &roomy, &host, &b, &PeerId::from("p3".to_owned())),
            Err(Refused::AllPeers(2))
        );
        assert_eq!(
            admit_peer(&state, &roomy, &host, &a, &PeerId::from("p1".to_owned())),
            Ok(())
        );
    }

    #[test]
    fn hostile_layouts_and_blocklists_are_bounded() {
        let l = limits();
        assert_eq!(
            layout(&l, 141_000_000_000, 1),
            Err(LayoutError::PieceLength(1))
        );
        assert!(matches!(
            layout(&l, 2 << 30, 4 << 20),
            Err(LayoutError::ContentLength { .. })
        ));
        assert_eq!(layout(&l, 8 << 20, 4 << 20).map(|x| x.piece_count()), Ok(2));
        let mut list = HashSet::new();
        assert!(blocklist(&mut list, PeerId::from("x".to_owned()), 1));
        assert!(!blocklist(&mut list, PeerId::from("y".to_owned()), 1));
        assert!(blocklist(&mut list, PeerId::from("x".to_owned()), 1));
        assert_eq!(list.len(), 1);
    }
}
