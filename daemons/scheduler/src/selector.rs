//! [`ParentSelector`]: which peers a child should download a task from.
//!
//! Candidates are peers of the same task that are downloading or done, on a connected and
//! enabled host other than the child's, not blocklisted by the child, not known to serve corrupt
//! pieces, and not descendants of the child (so the new edge cannot close a cycle). They are
//! ranked by a weighted score and the best few are returned; the child spreads its piece
//! requests over them.

use df_core::ids::PeerId;

use crate::model::{HostType, PeerState, State, Task};

/// Score weights; they sum to 1 so a score reads as a fraction of a perfect parent.
const WEIGHT_PIECES: f64 = 0.35;
const WEIGHT_FREE_SLOTS: f64 = 0.30;
const WEIGHT_SUCCESS: f64 = 0.15;
const WEIGHT_IDC: f64 = 0.10;
const WEIGHT_LOCATION: f64 = 0.05;
/// Normal peers get a small edge over seeds at equal merit, to spare the seeds' uplinks.
const WEIGHT_NORMAL_HOST: f64 = 0.05;

#[derive(Debug, Clone, Copy)]
pub struct ParentSelector {
    pub limit: usize,
}

impl ParentSelector {
    /// The best parents for `child`, best first. Empty when no peer qualifies.
    pub fn select(&self, state: &State, task: &Task, child: &PeerId) -> Vec<PeerId> {
        let Some(child_peer) = task.peers.get(child) else {
            return Vec::new();
        };
        let child_host = state.hosts.get(&child_peer.host_id);
        let descendants = task.descendants(child);
        let children_of = task.active_child_counts();
        let piece_count = task.piece_count();
        let mut scored: Vec<(f64, &PeerId)> = task
            .peers
            .values()
            .filter(|p| !descendants.contains(&p.id))
            .filter(|p| p.host_id != child_peer.host_id)
            .filter(|p| !child_peer.blocklist.contains(&p.id) && !p.corrupt)
            .filter(|p| {
                matches!(
                    p.state,
                    PeerState::Running | PeerState::BackToSource | PeerState::Succeeded
                )
            })
            // A parent that is still downloading must still be reporting, or its pieces stall.
            .filter(|p| p.state == PeerState::Succeeded || p.tx.is_some())
            .filter_map(|p| {
                let host = state.hosts.get(&p.host_id)?;
                if !host.usable_as_parent() {
                    return None;
                }
                let pieces = if p.state == PeerState::Succeeded {
                    1.0
                } else if piece_count == 0 {
                    0.0
                } else {
                    f64::from(p.bitmap.count()) / f64::from(piece_count)
                };
                let slots = host.info.upload_slots.max(1) as f64;
                let busy = children_of.get(&p.id).copied().unwrap_or(0) as f64;
                let free = ((slots - busy) / slots).clamp(0.0, 1.0);
                let (same_idc, same_location) = match child_host {
                    Some(c) => (
                        !c.info.idc.is_empty() && c.info.idc == host.info.idc,
                        !c.info.location.is_empty() && c.info.location == host.info.location,
                    ),
                    None => (false, false),
                };
                let score = WEIGHT_PIECES * pieces
                    + WEIGHT_FREE_SLOTS * free
                    + WEIGHT_SUCCESS * host.success_rate()
                    + if same_idc { WEIGHT_IDC } else { 0.0 }
                    + if same_location { WEIGHT_LOCATION } else { 0.0 }
                    + if host.host_type == HostType::Normal {
                        WEIGHT_NORMAL_HOST
                    } else {
                        0.0
                    };
                Some((score, &p.id))
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        scored
            .into_iter()
            .take(self.limit)
            .map(|(_, id)| id.clone())
            .collect()
    }
}
