//! The host stream's side of [`Scheduler`]: hosts connect, beat, report what they hold and
//! what they evicted, and leave.

use super::*;
use crate::model::PendingHolder;

impl Scheduler {
    // ---- host stream -------------------------------------------------------------------

    /// A host (re)connected its announce stream. Returns the stream generation; a new host
    /// beyond `limits.max_hosts` is refused.
    pub fn host_connected(
        &self,
        info: pb::HostInfo,
        commands: HostSender,
    ) -> Result<(HostId, u64), Refused> {
        let now = Instant::now();
        let mut state = self.lock();
        let id = HostId::from(info.host_id.clone());
        admission::admit_host(&state, &self.config.limits, &id)?;
        let generation = state.generation();
        let host = state
            .hosts
            .entry(id.clone())
            .or_insert_with(|| Host::from_info(info.clone(), now));
        *host = Host {
            upload_successes: host.upload_successes,
            upload_failures: host.upload_failures,
            heartbeat: host.heartbeat,
            ..Host::from_info(info, now)
        };
        host.connected = true;
        host.stream_generation = generation;
        host.commands = Some(commands);
        self.metrics.host_announces.inc();
        tracing::info!(host_id = %id, seed = host.host_type == HostType::Seed, "host connected");
        Ok((id, generation))
    }

    pub fn host_heartbeat(&self, host: &HostId, heartbeat: pb::HostHeartbeat) {
        let mut state = self.lock();
        if let Some(h) = state.hosts.get_mut(host) {
            h.last_seen = Instant::now();
            let switched_off = heartbeat.disabled && !h.heartbeat.disabled;
            h.heartbeat = heartbeat;
            if switched_off {
                // P2P switched off on that node: nobody downloads from it any more.
                leave_mesh(&mut state, host);
            }
        }
    }

    /// A host re-announced the tasks it holds (after connecting): rebuild holders from it. Only
    /// a seed host's copies set a task's layout and digests ([`crate::authority`]); another
    /// host's copy joins once an authority stated the same layout (until then it waits in
    /// `Task::pending_holders`).
    pub fn host_held(&self, host_id: &HostId, held_tasks: pb::HeldTasks) {
        let now = Instant::now();
        let mut state = self.lock();
        let is_seed = state
            .hosts
            .get(host_id)
            .is_some_and(|h| h.host_type == HostType::Seed);
        let speaks = authority::held_copy_speaks_for_task(is_seed);
        let mut held = Vec::new();
        for item in held_tasks.tasks.into_iter().filter(|t| t.complete) {
            if let Some(entry) = self.take_held(&mut state, host_id, item, speaks, now) {
                held.push(entry);
            }
        }
        for task in state.tasks.values_mut() {
            for peer in task.peers.values_mut() {
                if &peer.host_id == host_id {
                    peer.is_seed = is_seed;
                }
            }
        }
        if speaks {
            let mut promoted = Vec::new();
            for (task_id, _) in &held {
                if let Some(task) = state.tasks.get_mut(task_id) {
                    promoted.extend(promote_pending(task, now));
                }
            }
            held.extend(promoted);
        }
        self.join_holders(&mut state, held, now);
    }

    /// One re-announced complete copy: a holder now (returned), a pending one, or ignored.
    fn take_held(
        &self,
        state: &mut State,
        host_id: &HostId,
        item: pb::HeldTask,
        speaks: bool,
        now: Instant,
    ) -> Option<(TaskId, PeerId)> {
        let Ok(task_id) = item.task_id.parse::<TaskId>() else {
            tracing::warn!(host_id = %host_id, task = %item.task_id, "ignoring held task with an invalid id");
            return None;
        };
        let layout = admission::layout(&self.config.limits, item.content_length, item.piece_length)
            .map_err(|e| e.to_string())
            .and_then(|l| {
                admission::admit_task(state, &self.config.limits, &task_id)
                    .map(|()| l)
                    .map_err(|e| e.to_string())
            });
        let layout = match layout {
            Ok(l) => l,
            Err(error) => {
                tracing::warn!(host_id = %host_id, task_id = %task_id, %error, "ignoring held task");
                return None;
            }
        };
        let max_peers = self.config.limits.max_peers_per_task;
        let task = state
            .tasks
            .entry(task_id.clone())
            .or_insert_with(|| new_task(task_id.clone(), item.url.clone(), now, self.mesh));
        if task.peers.len() + task.pending_holders.len() >= max_peers {
            return None;
        }
        let peer_id = PeerId::from(item.peer_id.clone());
        if !speaks {
            match task.layout {
                Some(known) if known == layout => {}
                Some(_) => {
                    tracing::warn!(host_id = %host_id, task_id = %task_id, "held copy's layout is not the task's; ignored");
                    return None;
                }
                None => {
                    task.pending_holders.retain(|h| h.peer != peer_id);
                    task.pending_holders.push(PendingHolder {
                        peer: peer_id,
                        host: host_id.clone(),
                        layout,
                        content_path: item.content_path,
                    });
                    return None;
                }
            }
        } else {
            task.set_layout(layout);
            let mut learned = Vec::new();
            for p in &item.pieces {
                if let (Some(slot @ None), Some(d)) = (
                    task.digests.get_mut(p.number as usize),
                    PieceDigest::from_slice(&p.digest),
                ) {
                    *slot = Some(d);
                    learned.push(p.clone());
                }
            }
            // Downloads that registered again before this copy was re-announced (a rolling
            // restart) have a layout but wait for these digests; nobody else will send them.
            if !learned.is_empty() {
                let reply = pb::PeerResponse {
                    response: Some(PeerReply::Digests(pb::PieceDigests { pieces: learned })),
                };
                task.send_to_downloaders(Some(&peer_id), &reply);
            }
        }
        add_holder(task, &peer_id, host_id, item.content_path, now);
        Some((task_id, peer_id))
    }

    /// Complete copies are sources; the decisions are links for peers still downloading.
    pub(super) fn join_holders(
        &self,
        state: &mut State,
        held: Vec<(TaskId, PeerId)>,
        now: Instant,
    ) {
        for (task_id, peer_id) in held {
            let Some(member) = state
                .tasks
                .get(&task_id)
                .and_then(|t| t.peers.get(&peer_id))
                .map(|p| member_of(state, p))
            else {
                continue;
            };
            let Some(task) = state.tasks.get_mut(&task_id) else {
                continue;
            };
            let decisions = task.mesh.handle(MeshEvent::Joined {
                peer: peer_id,
                member,
                complete: true,
            });
            self.apply(state, &task_id, decisions, now);
        }
    }

    pub fn host_evicted(&self, host_id: &HostId, evicted: pb::TaskEvicted) {
        let Ok(task_id) = evicted.task_id.parse::<TaskId>() else {
            return;
        };
        let peer_id = PeerId::from(evicted.peer_id);
        let mut state = self.lock();
        if let Some(task) = state.tasks.get_mut(&task_id)
            && task
                .peers
                .get(&peer_id)
                .is_some_and(|p| &p.host_id == host_id)
        {
            remove_peer(task, &peer_id);
            tracing::info!(task_id = %task_id, peer_id = %peer_id, "peer evicted its copy");
        }
    }

    pub fn host_disconnected(&self, host_id: &HostId, generation: u64) {
        let mut state = self.lock();
        if let Some(h) = state.hosts.get_mut(host_id)
            && h.stream_generation == generation
        {
            h.connected = false;
            h.commands = None;
            h.last_seen = Instant::now();
            tracing::info!(host_id = %host_id, "host disconnected");
            leave_mesh(&mut state, host_id);
        }
    }
}

/// `peer` on `host` holds the whole task.
fn add_holder(task: &mut Task, peer: &PeerId, host: &HostId, content_path: String, now: Instant) {
    let mut bitmap = Bitmap::new(task.piece_count());
    for n in 0..bitmap.len() {
        bitmap.set(n);
    }
    let p = task
        .peers
        .entry(peer.clone())
        .or_insert_with(|| Peer::pending(peer.clone(), host.clone()));
    p.state = PeerState::Succeeded;
    p.bitmap = bitmap;
    p.content_path = content_path;
    p.updated_at = now;
    task.updated_at = now;
}

/// Once an authority stated the task's layout: the pending copies with that layout become
/// holders (returned, to join the mesh); the others are dropped.
pub(super) fn promote_pending(task: &mut Task, now: Instant) -> Vec<(TaskId, PeerId)> {
    let Some(layout) = task.layout else {
        return Vec::new();
    };
    let mut promoted = Vec::new();
    for h in std::mem::take(&mut task.pending_holders) {
        if h.layout == layout {
            add_holder(task, &h.peer, &h.host, h.content_path, now);
            promoted.push((task.id.clone(), h.peer));
        } else {
            tracing::warn!(task_id = %task.id, peer_id = %h.peer, "held copy's layout is not the authority's; dropped");
        }
    }
    promoted
}
