//! The piece reports of a download stream: a piece finished (from the origin: its digest, if
//! the reporter speaks for the task; from a parent: the link's bytes) or failed (a corrupt
//! piece, an unreachable or slow parent), applied under the scheduler's lock.

use super::*;

impl Scheduler {
    pub(super) fn piece_finished(
        &self,
        state: &mut State,
        task_id: &TaskId,
        peer_id: &PeerId,
        pf: pb::PieceFinished,
        now: Instant,
    ) {
        let Some(task) = state.tasks.get_mut(task_id) else {
            return;
        };
        task.updated_at = now;
        let from_origin = pf.source == pb::PieceSource::Origin as i32;
        // A piece reported again (a reader telling a new scheduler what it read of its share)
        // gives its digest and is not counted twice. Only the task's authority's digests
        // describe the task for others; anyone else fetched for itself and is only counted.
        let (repeated, authority) = task.peers.get(peer_id).map_or((false, false), |p| {
            let n = pf.number;
            (
                p.bitmap.get(n),
                authority::speaks_for_piece(p.appointment, p.origin_share.as_ref(), n),
            )
        });
        if from_origin {
            if (authority && !record_origin_digest(task, peer_id, &pf)) || repeated {
                return;
            }
            self.metrics
                .piece_bytes
                .get_or_create(&vec![("source", "origin")])
                .inc_by(pf.length);
        } else if repeated {
            return;
        } else {
            let parent = PeerId::from(pf.parent_peer_id.clone());
            let edge = task
                .edges
                .entry((parent.clone(), peer_id.clone()))
                .or_insert_with(|| Edge {
                    active: true,
                    ..Edge::default()
                });
            edge.bytes += pf.length;
            edge.pieces += 1;
            let parent_host = task.peers.get_mut(&parent).map(|p| {
                // A helper that delivers works, even while its uplink keeps it from reading its
                // share further (`read_ahead` on the peer; `origin_share::stalled`).
                if p.origin_share.is_some() {
                    p.share_delivered_at = now;
                }
                p.host_id.clone()
            });
            if let Some(h) = parent_host.and_then(|host| state.hosts.get_mut(&host)) {
                h.upload_successes += 1;
            }
            self.metrics
                .piece_bytes
                .get_or_create(&vec![("source", "peer")])
                .inc_by(pf.length);
        }
        if let Some(peer) = task.peers.get_mut(peer_id) {
            peer.bitmap.set(pf.number);
            task.mesh.handle(MeshEvent::Progress {
                peer: peer_id.clone(),
                pieces: peer.bitmap.count(),
            });
            peer.updated_at = now;
            if from_origin {
                if peer
                    .origin_share
                    .as_ref()
                    .is_some_and(|s| s.contains(&pf.number))
                {
                    peer.share_read_at = now;
                }
                peer.bytes_from_origin += pf.length;
            } else {
                peer.bytes_from_peers += pf.length;
            }
        }
    }

    pub(super) fn piece_failed(
        &self,
        state: &mut State,
        task_id: &TaskId,
        peer_id: &PeerId,
        pf: pb::PieceFailed,
    ) {
        let Some(task) = state.tasks.get_mut(task_id) else {
            return;
        };
        let parent = PeerId::from(pf.parent_peer_id.clone());
        let reason = pb::PieceFailure::try_from(pf.reason).unwrap_or(pb::PieceFailure::Unreachable);
        self.metrics
            .piece_failures
            .get_or_create(&vec![("reason", reason.as_str_name())])
            .inc();
        let edge = task
            .edges
            .entry((parent.clone(), peer_id.clone()))
            .or_default();
        edge.failures += 1;
        if let Some(parent_host) = task.peers.get(&parent).map(|p| p.host_id.clone())
            && let Some(h) = state.hosts.get_mut(&parent_host)
        {
            h.upload_failures += 1;
        }
        match reason {
            pb::PieceFailure::DigestMismatch => {
                edge.active = false;
                edge.blocklisted = true;
                // A report counts only from a child this scheduler knows (its host is the vote).
                let reporter = task
                    .peers
                    .get(peer_id)
                    .map(|c| (c.host_id.clone(), c.appointment.speaks_for_task()));
                let verdict = reporter.and_then(|(host, by_authority)| {
                    let p = task.peers.get_mut(&parent)?;
                    let v = authority::corruption_report(
                        &mut p.corruption_reporters,
                        &host,
                        by_authority,
                    );
                    p.corrupt |= v == Verdict::ForEveryone;
                    Some(v)
                });
                if let Some(child) = task.peers.get_mut(peer_id) {
                    admission::blocklist(
                        &mut child.blocklist,
                        parent.clone(),
                        self.config.limits.max_blocklist,
                    );
                }
                if verdict == Some(Verdict::ForEveryone) {
                    task.mesh.handle(MeshEvent::Corrupt {
                        peer: parent.clone(),
                    });
                    tracing::warn!(task_id = %task_id, peer_id = %peer_id, parent = %parent, piece = pf.number, "parent served a corrupt piece; reported from enough hosts, shunned for this task");
                } else {
                    task.mesh.handle(MeshEvent::LinkFailed {
                        peer: peer_id.clone(),
                        neighbour: parent.clone(),
                    });
                    tracing::warn!(task_id = %task_id, peer_id = %peer_id, parent = %parent, piece = pf.number, "parent served a corrupt piece; blocklisted for this child");
                }
            }
            pb::PieceFailure::Unreachable | pb::PieceFailure::Timeout => {
                edge.active = false;
                if let Some(child) = task.peers.get_mut(peer_id) {
                    admission::blocklist(
                        &mut child.blocklist,
                        parent.clone(),
                        self.config.limits.max_blocklist,
                    );
                }
                task.mesh.handle(MeshEvent::LinkFailed {
                    peer: peer_id.clone(),
                    neighbour: parent.clone(),
                });
                tracing::info!(task_id = %task_id, peer_id = %peer_id, parent = %parent, piece = pf.number, error = %pf.message, "parent failed a piece");
            }
            pb::PieceFailure::NotFound => {}
        }
    }
}

/// The authority's digest of an origin piece: kept if it is the first, and relayed to the
/// downloaders. `false` when the report carries none (the report is then dropped).
fn record_origin_digest(task: &mut Task, peer_id: &PeerId, pf: &pb::PieceFinished) -> bool {
    let Some(digest) = PieceDigest::from_slice(&pf.digest) else {
        tracing::warn!(task_id = %task.id, peer_id = %peer_id, piece = pf.number, "origin piece reported without a digest");
        return false;
    };
    match task.digests.get_mut(pf.number as usize) {
        Some(slot @ None) => {
            *slot = Some(digest);
            let reply = pb::PeerResponse {
                response: Some(PeerReply::Digests(pb::PieceDigests {
                    pieces: vec![pb::PieceDigest {
                        number: pf.number,
                        digest: digest.as_bytes().to_vec(),
                    }],
                })),
            };
            task.send_to_downloaders(Some(peer_id), &reply);
        }
        Some(Some(known)) if *known != digest => {
            tracing::warn!(task_id = %task.id, peer_id = %peer_id, piece = pf.number, "origin returned different bytes for a piece than before; keeping the first digest");
        }
        _ => {}
    }
    true
}
