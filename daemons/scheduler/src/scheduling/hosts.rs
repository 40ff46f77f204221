//! The host stream's side of [`Scheduler`]: hosts connect, beat, report what they hold and
//! what they evicted, and leave.

use super::*;

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

    /// A host re-announced the tasks it holds (after connecting): rebuild holders from it.
    pub fn host_held(&self, host_id: &HostId, held_tasks: pb::HeldTasks) {
        let now = Instant::now();
        let mut state = self.lock();
        let mut held = Vec::new();
        for item in held_tasks.tasks {
            if !item.complete {
                continue;
            }
            let Ok(task_id) = item.task_id.parse::<TaskId>() else {
                tracing::warn!(host_id = %host_id, task = %item.task_id, "ignoring held task with an invalid id");
                continue;
            };
            let layout = match admission::layout(
                &self.config.limits,
                item.content_length,
                item.piece_length,
            )
            .map_err(|e| e.to_string())
            .and_then(|l| {
                admission::admit_task(&state, &self.config.limits, &task_id)
                    .map(|()| l)
                    .map_err(|e| e.to_string())
            }) {
                Ok(l) => l,
                Err(error) => {
                    tracing::warn!(host_id = %host_id, task_id = %task_id, %error, "ignoring held task");
                    continue;
                }
            };
            let task = state
                .tasks
                .entry(task_id.clone())
                .or_insert_with(|| new_task(task_id.clone(), item.url.clone(), now, self.mesh));
            if task.peers.len() >= self.config.limits.max_peers_per_task {
                continue;
            }
            task.set_layout(layout);
            for p in &item.pieces {
                if let (Some(slot), Some(d)) = (
                    task.digests.get_mut(p.number as usize),
                    PieceDigest::from_slice(&p.digest),
                ) && slot.is_none()
                {
                    *slot = Some(d);
                }
            }
            let mut bitmap = Bitmap::new(task.piece_count());
            for n in 0..bitmap.len() {
                bitmap.set(n);
            }
            let peer_id = PeerId::from(item.peer_id.clone());
            let peer = task
                .peers
                .entry(peer_id.clone())
                .or_insert_with(|| Peer::pending(peer_id.clone(), host_id.clone()));
            peer.state = PeerState::Succeeded;
            peer.bitmap = bitmap;
            peer.content_path = item.content_path;
            peer.updated_at = now;
            task.updated_at = now;
            held.push((task_id, peer_id));
        }
        let is_seed = state
            .hosts
            .get(host_id)
            .is_some_and(|h| h.host_type == HostType::Seed);
        for task in state.tasks.values_mut() {
            for peer in task.peers.values_mut() {
                if &peer.host_id == host_id {
                    peer.is_seed = is_seed;
                }
            }
        }
        // Complete copies are sources; the decisions are links for peers still downloading.
        for (task_id, peer_id) in held {
            let Some(member) = state
                .tasks
                .get(&task_id)
                .and_then(|t| t.peers.get(&peer_id))
                .map(|p| member_of(&state, p))
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
            self.apply(&mut state, &task_id, decisions, now);
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
