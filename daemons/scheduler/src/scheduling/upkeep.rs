//! [`Scheduler`]'s periodic upkeep (the mesh top-up tick, garbage collection) and the list
//! of usable hosts that preheat and the admin API read.

use super::*;

impl Scheduler {
    /// Periodic pass (sub-second): the mesh tops up every peer below its degree (neighbours
    /// left, failed or finished); a peer still pending after `seed_wait` with no neighbour goes
    /// to the origin; an origin share kept after a restart for a reader that is not back
    /// after `seed_wait` goes to another, and so does a helper's that shows no work on it for
    /// `scheduler.reader_deadline`.
    pub fn tick(&self) {
        let now = Instant::now();
        let mut guard = self.lock();
        let state = &mut *guard;
        // Only tasks whose mesh may link someone now, or with a peer waiting for a parent:
        // the rest would cost a pass over their peers for nothing, under the one lock.
        let task_ids: Vec<TaskId> = state
            .tasks
            .values()
            .filter(|t| {
                t.mesh.needs_tick()
                    || !t.awaited_readers.is_empty()
                    || !t.unclaimed.is_empty()
                    || self.has_helpers(t)
                    || t.peers.values().any(|p| p.state == PeerState::Pending)
            })
            .map(|t| t.id.clone())
            .collect();
        for task_id in task_ids {
            let Some(task) = state.tasks.get_mut(&task_id) else {
                continue;
            };
            let decisions = task.mesh.handle(MeshEvent::Tick);
            self.apply(state, &task_id, decisions, now);
            let Some(task) = state.tasks.get_mut(&task_id) else {
                continue;
            };
            let overdue: Vec<PeerId> = task
                .peers
                .values()
                .filter(|p| p.state == PeerState::Pending)
                .filter(|p| now.duration_since(p.registered_at) >= self.config.seed_wait)
                .filter(|p| task.mesh.neighbours(&p.id).next().is_none())
                .map(|p| p.id.clone())
                .collect();
            for peer_id in overdue {
                self.back_to_source(task, &peer_id, "no parent appeared in time");
            }
            // A reader the resumed authority named that never came back: its share is read
            // by someone else, as a departed reader's is.
            for gone in crate::restart::overdue_readers(task, self.config.seed_wait, now) {
                tracing::info!(task_id = %task_id, peer_id = %gone.peer, "a named origin reader did not register again");
                self.share_orphaned(task, (&gone.peer, "reader_not_back"), gone.share, now);
            }
            self.withdraw_stalled(task, now);
            self.claim_unclaimed(task, now);
        }
    }

    /// Forgets hosts that stopped announcing, peers that failed or left long ago, and idle
    /// tasks nobody holds.
    pub fn gc(&self) {
        let now = Instant::now();
        let cfg = &self.config;
        let mut state = self.lock();
        let silent: Vec<HostId> = state
            .hosts
            .values()
            .filter(|h| now.duration_since(h.last_seen) > cfg.host_ttl)
            .map(|h| h.id.clone())
            .collect();
        for id in &silent {
            state.hosts.remove(id);
            tracing::info!(host_id = %id, "forgot a silent host");
        }
        let mut removed_peers = 0usize;
        for task in state.tasks.values_mut() {
            let gone: Vec<PeerId> = task
                .peers
                .values()
                .filter(|p| {
                    silent.contains(&p.host_id)
                        || (matches!(p.state, PeerState::Failed | PeerState::Left)
                            && now.duration_since(p.updated_at) > cfg.peer_ttl)
                })
                .map(|p| p.id.clone())
                .collect();
            removed_peers += gone.len();
            for p in gone {
                remove_peer(task, &p);
            }
        }
        let before = state.tasks.len();
        state
            .tasks
            .retain(|_, t| !t.peers.is_empty() || now.duration_since(t.updated_at) <= cfg.task_ttl);
        let removed_tasks = before - state.tasks.len();
        state.peer_count = state.tasks.values().map(|t| t.peers.len()).sum();
        if removed_peers + removed_tasks + silent.len() > 0 {
            tracing::info!(
                hosts = silent.len(),
                peers = removed_peers,
                tasks = removed_tasks,
                "gc"
            );
        }
    }

    /// Hosts with a live host stream that are not switched off, by host ID.
    pub fn connected_hosts(&self) -> Vec<ConnectedHost> {
        let state = self.lock();
        let mut out: Vec<ConnectedHost> = state
            .hosts
            .values()
            .filter(|h| h.usable_as_parent())
            .filter_map(|h| {
                Some(ConnectedHost {
                    id: h.id.clone(),
                    hostname: h.info.hostname.clone(),
                    ip: h.info.ip.clone(),
                    is_seed: h.host_type == HostType::Seed,
                    commands: h.commands.clone()?,
                })
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    #[cfg(test)]
    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.lock())
    }
}
