//! [`Scheduler`]: everything the scheduler decides, behind one lock over the [`State`].
//!
//! The gRPC service turns stream messages into calls here; nothing in this module awaits while
//! holding the lock (replies go out through bounded [`crate::outbox`] queues that never wait:
//! a reader too far behind loses its stream), so one slow peer never stalls the
//! others.
//!
//! The life of a task: every peer that registers joins the task's mesh
//! ([`crate::topology::Mesh`], pure decision code this module drives) and is linked to a few
//! neighbours; both ends of a link are told of each other, and neighbours exchange pieces in
//! both directions. The first peer finds nobody. If a seed host is connected, the scheduler
//! asks it (over its host stream) to fetch the task from the origin and keeps the peer pending;
//! when the seed registers it is sent back to source and linked to a few downloading peers at
//! once, so pieces flow while the seed is still downloading. Without a seed, the first peer
//! itself goes back to source. The peer that fetches from the origin reports each piece's
//! BLAKE3 digest; the scheduler forwards those digests to every downloader, which verifies each
//! piece it gets from another peer.
//!
//! The read-only views of this state that the admin API serves live in `admin/views.rs`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use df_core::ids::{HostId, PeerId, PieceDigest, TaskId};
use df_core::piece::{Bitmap, PieceLayout};
use df_core::ring::HashRing;
use df_proto::scheduler::v1 as pb;
use pb::peer_request::Request as PeerMsg;
use pb::peer_response::Response as PeerReply;

use crate::admission::{self, Refused};
use crate::authority::{self, Appointment, Verdict};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::model::{
    ConnectedHost, Edge, Host, HostSender, HostType, Peer, PeerSender, PeerState, State, Task,
};
use crate::topology::{Member, MeshConfig, MeshDecision, MeshEvent, Role};

mod hosts;
mod pieces;
mod shares;
mod upkeep;

pub(crate) use shares::{give, tell_authority};

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("task id '{0}' is not valid")]
    TaskId(String),
    #[error("registration for task {0} names no host")]
    NoHost(String),
    #[error("scheduler state lock poisoned")]
    Poisoned,
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("registration for task {task}: {source}")]
    Layout {
        task: String,
        source: df_core::piece::LayoutError,
    },
}

impl From<RegisterError> for tonic::Status {
    fn from(e: RegisterError) -> Self {
        match e {
            RegisterError::Poisoned => tonic::Status::internal(e.to_string()),
            RegisterError::Refused(_) => tonic::Status::resource_exhausted(e.to_string()),
            _ => tonic::Status::invalid_argument(e.to_string()),
        }
    }
}

pub struct Scheduler {
    state: Mutex<State>,
    config: Config,
    mesh: MeshConfig,
    pub metrics: Metrics,
    pub(crate) started: Instant,
}

impl Scheduler {
    pub fn new(config: Config) -> Self {
        Self {
            mesh: MeshConfig::with_degree(config.candidate_parents),
            config,
            state: Mutex::new(State::default()),
            metrics: Metrics::new(),
            started: Instant::now(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves the model as it was at the panic; continuing is
        // better for a tracker than refusing every peer.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- peer stream -------------------------------------------------------------------

    /// First message of a peer stream. Returns the peer's task, id and stream generation.
    pub fn peer_register(
        &self,
        reg: pb::RegisterPeer,
        tx: PeerSender,
    ) -> Result<(TaskId, PeerId, u64), RegisterError> {
        let (task_id, host_info) = self.checked_registration(&reg)?;
        let now = Instant::now();
        let peer_id = PeerId::from(reg.peer_id.clone());
        let host_id = HostId::from(host_info.host_id.clone());
        let mut guard = self.lock();
        let state = &mut *guard;
        admission::admit_peer(state, &self.config.limits, &host_id, &task_id, &peer_id)?;
        let generation = state.generation();
        // A host seen first through a peer registration (failover scheduler) is usable until
        // its host stream arrives.
        let host = state.hosts.entry(host_id.clone()).or_insert_with(|| {
            let mut h = Host::from_info(host_info, now);
            h.connected = true;
            h
        });
        let is_seed = host.host_type == HostType::Seed;
        let host_info_idc = (host.info.idc.clone(), host.info.location.clone());
        let task = state
            .tasks
            .entry(task_id.clone())
            .or_insert_with(|| new_task(task_id.clone(), reg.url.clone(), now, self.mesh));
        note_request(task, &reg, now);
        let bitmap = Bitmap::new(task.piece_count());
        let replaced = task.peers.insert(
            peer_id.clone(),
            Peer {
                is_seed,
                bitmap,
                content_path: reg.content_path.clone(),
                tx: Some(tx.clone()),
                stream_generation: generation,
                awaits_fetcher: reg.awaits_fetcher,
                ..Peer::pending(peer_id.clone(), host_id.clone())
            },
        );
        match replaced {
            None => state.peer_count += 1,
            // The same download registering again (its stream broke): it still reads its
            // share, and its digests of it still speak for the task.
            Some(old) => {
                if let Some(p) = task.peers.get_mut(&peer_id) {
                    p.origin_share = old.origin_share;
                    p.share_read_at = old.share_read_at;
                    p.share_delivered_at = old.share_delivered_at;
                    p.share_withdrawn = old.share_withdrawn;
                }
            }
        }
        let resumed = crate::restart::resume(
            task,
            (&peer_id, &host_id),
            reg.resume.as_ref(),
            is_seed,
            &self.config.limits,
            now,
        );
        let promoted = hosts::promote_pending(task, now);
        self.metrics.peer_registrations.inc();
        tracing::info!(task_id = %task_id, peer_id = %peer_id, seed = reg.seed, resumed = reg.resume.is_some(), "peer registered");

        if let Some(layout) = task.layout {
            send(&tx, metadata_reply(layout, task));
            let known: Vec<pb::PieceDigest> = known_digests(task);
            if !known.is_empty() {
                send(&tx, PeerReply::Digests(pb::PieceDigests { pieces: known }));
            }
        }
        let seed_answer = self.seed_answer(task, &reg, is_seed, &peer_id);
        let member = Member {
            host: host_id,
            role: if is_seed { Role::Seed } else { Role::Normal },
            idc: host_info_idc.0,
            location: host_info_idc.1,
        };
        // The seed is a source from its first byte: joining links it to downloading peers.
        let decisions = task.mesh.handle(MeshEvent::Joined {
            peer: peer_id.clone(),
            member,
            complete: false,
        });
        self.apply(state, &task_id, decisions, now);
        self.join_holders(state, promoted, now);
        if !seed_answer && !resumed {
            self.schedule(state, &task_id, &peer_id, now);
        }
        self.appoint_readers(state, &task_id, now);
        if let Some(task) = state.tasks.get_mut(&task_id) {
            self.claim_unclaimed(task, now);
        }
        Ok((task_id, peer_id, generation))
    }

    /// Whether the registration answers a seed request: only a seed host's does; anyone else
    /// claiming to is scheduled like any peer (under the cluster identity the service refused
    /// it already). The seed is sent to the origin, unless it registers again mid-fetch: it
    /// then carries on where it is (sent again, it would read every missing piece itself, its
    /// helpers' shares included).
    fn seed_answer(
        &self,
        task: &mut Task,
        reg: &pb::RegisterPeer,
        is_seed: bool,
        peer_id: &PeerId,
    ) -> bool {
        if reg.seed && !is_seed {
            tracing::warn!(task_id = %task.id, peer_id = %peer_id, "a registration from a non-seed host claims to be a seed; scheduled as a peer");
        }
        if !(reg.seed && is_seed) {
            return false;
        }
        if !reg.resume.as_ref().is_some_and(|r| r.from_origin) {
            self.back_to_source(task, peer_id, "seed peer fetches from the origin");
        }
        task.seed_requested_at = None;
        true
    }

    /// The registration's task ID and host, and its piece length checked against the limits.
    fn checked_registration(
        &self,
        reg: &pb::RegisterPeer,
    ) -> Result<(TaskId, pb::HostInfo), RegisterError> {
        let task_id: TaskId = reg
            .task_id
            .parse()
            .map_err(|_| RegisterError::TaskId(reg.task_id.clone()))?;
        let host_info = reg
            .host
            .clone()
            .ok_or_else(|| RegisterError::NoHost(reg.task_id.clone()))?;
        if reg.piece_length != 0 {
            admission::layout(&self.config.limits, 0, reg.piece_length).map_err(|source| {
                RegisterError::Layout {
                    task: reg.task_id.clone(),
                    source,
                }
            })?;
        }
        Ok((task_id, host_info))
    }

    pub fn peer_message(&self, task_id: &TaskId, peer_id: &PeerId, msg: PeerMsg) {
        let now = Instant::now();
        let mut guard = self.lock();
        let state = &mut *guard;
        match msg {
            PeerMsg::Register(_) => {
                tracing::warn!(task_id = %task_id, peer_id = %peer_id, "second registration on one stream ignored");
            }
            PeerMsg::Metadata(meta) => {
                let Some(task) = state.tasks.get_mut(task_id) else {
                    return;
                };
                let appointed = task
                    .peers
                    .get(peer_id)
                    .is_some_and(|p| p.appointment.speaks_for_task());
                if !appointed {
                    tracing::warn!(task_id = %task_id, peer_id = %peer_id, "ignoring metadata from a peer not appointed to fetch from the origin");
                    return;
                }
                if task.layout.is_none() {
                    let layout = match admission::layout(
                        &self.config.limits,
                        meta.content_length,
                        meta.piece_length,
                    ) {
                        Ok(l) => l,
                        Err(error) => {
                            tracing::warn!(task_id = %task_id, peer_id = %peer_id, %error, "ignoring metadata");
                            return;
                        }
                    };
                    task.set_layout(layout);
                    task.response_headers = relayed_headers(meta.headers);
                    task.private = meta.private;
                    task.origin_ranged = meta.ranged;
                    for peer in task.peers.values_mut() {
                        if peer.bitmap.len() != layout.piece_count() {
                            peer.bitmap = Bitmap::new(layout.piece_count());
                        }
                    }
                    let reply = pb::PeerResponse {
                        response: Some(metadata_reply(layout, task)),
                    };
                    task.send_to_downloaders(Some(peer_id), &reply);
                    let promoted = hosts::promote_pending(task, now);
                    self.join_holders(state, promoted, now);
                    self.first_reader(state, task_id, peer_id, now);
                }
            }
            PeerMsg::PieceFinished(pf) => self.piece_finished(state, task_id, peer_id, pf, now),
            PeerMsg::PieceFailed(pf) => self.piece_failed(state, task_id, peer_id, pf),
            PeerMsg::Reschedule(req) => {
                let Some(task) = state.tasks.get_mut(task_id) else {
                    return;
                };
                let Some(peer) = task.peers.get_mut(peer_id) else {
                    return;
                };
                let mut failed_links = Vec::new();
                for failed in req.failed_parent_ids {
                    let failed = PeerId::from(failed);
                    admission::blocklist(
                        &mut peer.blocklist,
                        failed.clone(),
                        self.config.limits.max_blocklist,
                    );
                    failed_links.push(failed);
                }
                peer.reschedules += 1;
                let exhausted = peer.reschedules > self.config.retry_limit;
                for failed in failed_links {
                    unlink_edges(task, peer_id, &failed);
                    task.mesh.handle(MeshEvent::LinkFailed {
                        peer: peer_id.clone(),
                        neighbour: failed,
                    });
                }
                if exhausted {
                    self.back_to_source(task, peer_id, "reschedule limit reached");
                } else {
                    let decisions = task.mesh.handle(MeshEvent::Tick);
                    self.apply(state, task_id, decisions, now);
                    self.schedule(state, task_id, peer_id, now);
                }
            }
            PeerMsg::Finished(_) => {
                let Some(task) = state.tasks.get_mut(task_id) else {
                    return;
                };
                if let Some(peer) = task.peers.get_mut(peer_id) {
                    peer.state = PeerState::Succeeded;
                    peer.updated_at = now;
                    for n in 0..peer.bitmap.len() {
                        peer.bitmap.set(n);
                    }
                }
                task.deactivate_edges_into(peer_id);
                task.updated_at = now;
                task.mesh.handle(MeshEvent::Completed {
                    peer: peer_id.clone(),
                });
                self.metrics
                    .downloads
                    .get_or_create(&vec![("outcome", "succeeded")])
                    .inc();
                tracing::info!(task_id = %task_id, peer_id = %peer_id, "peer finished");
            }
            PeerMsg::Failed(f) => {
                let Some(task) = state.tasks.get_mut(task_id) else {
                    return;
                };
                let was_origin_fetcher = task
                    .peers
                    .get(peer_id)
                    .is_some_and(|p| p.state == PeerState::BackToSource);
                if let Some(peer) = task.peers.get_mut(peer_id) {
                    peer.state = PeerState::Failed;
                    peer.updated_at = now;
                }
                self.reader_gone(task, peer_id, now);
                task.deactivate_edges_of(peer_id);
                task.mesh.handle(MeshEvent::Left {
                    peer: peer_id.clone(),
                });
                self.metrics
                    .downloads
                    .get_or_create(&vec![("outcome", "failed")])
                    .inc();
                tracing::warn!(task_id = %task_id, peer_id = %peer_id, origin_status = f.origin_status, error = %f.message, "peer failed");
                if was_origin_fetcher && !task.has_origin_fetcher() {
                    // Whoever waited on this fetcher would otherwise sit out their timeout and
                    // trigger the seed again. Send them to the origin now: each gets the
                    // origin's own answer (a 404 passes through) or succeeds where it failed.
                    task.seed_requested_at = None;
                    let stranded: Vec<PeerId> = task
                        .peers
                        .values()
                        .filter(|p| matches!(p.state, PeerState::Pending | PeerState::Running))
                        .filter(|p| p.bitmap.count() == 0 && !has_usable_parent(task, &p.id))
                        .map(|p| p.id.clone())
                        .collect();
                    let reason = format!("the peer fetching from the origin failed: {}", f.message);
                    for p in stranded {
                        self.back_to_source(task, &p, &reason);
                    }
                }
            }
            PeerMsg::BackToSourceStarted(b) => {
                let Some(task) = state.tasks.get_mut(task_id) else {
                    return;
                };
                if let Some(peer) = task.peers.get_mut(peer_id) {
                    peer.state = PeerState::BackToSource;
                    peer.updated_at = now;
                }
                task.deactivate_edges_into(peer_id);
                self.metrics.back_to_source.inc();
                tracing::info!(task_id = %task_id, peer_id = %peer_id, reason = %b.reason, "peer went back to source on its own");
            }
        }
    }

    pub fn peer_stream_closed(&self, task_id: &TaskId, peer_id: &PeerId, generation: u64) {
        let mut state = self.lock();
        let Some(task) = state.tasks.get_mut(task_id) else {
            return;
        };
        let Some(peer) = task.peers.get_mut(peer_id) else {
            return;
        };
        if peer.stream_generation != generation {
            return;
        }
        let now = Instant::now();
        peer.tx = None;
        peer.updated_at = now;
        if peer.state.is_downloading() {
            peer.state = PeerState::Left;
            task.deactivate_edges_of(peer_id);
            task.mesh.handle(MeshEvent::Left {
                peer: peer_id.clone(),
            });
            tracing::info!(task_id = %task_id, peer_id = %peer_id, "peer left before finishing");
            self.reader_gone(task, peer_id, now);
        }
    }

    /// For a peer the mesh found no neighbour for: waits, triggers a seed, or goes to the origin.
    fn schedule(&self, state: &mut State, task_id: &TaskId, peer_id: &PeerId, now: Instant) {
        let Some(task) = state.tasks.get(task_id) else {
            return;
        };
        if task.mesh.neighbours(peer_id).next().is_some() && !task.awaits_its_fetcher(peer_id) {
            return;
        }
        if task.peers.get(peer_id).is_some_and(|p| p.awaits_fetcher) {
            // Its preheat job gave the origin's credentials to another host; it joins that
            // host's swarm when the host registers, and asking the origin or a seed for it
            // would go without credentials.
            self.metrics.decision("wait");
            return;
        }
        // A task behind credentials is read by a peer that has them: a seed has none.
        let private = state
            .tasks
            .get(task_id)
            .is_some_and(|t| t.credentials_withheld);
        let seed_host = if private {
            None
        } else {
            self.pick_seed(state, task_id, peer_id)
        };
        let Some(task) = state.tasks.get_mut(task_id) else {
            return;
        };
        let waiting_on_seed = task
            .seed_requested_at
            .is_some_and(|t| now.duration_since(t) < self.config.seed_wait);
        if task.has_origin_fetcher() || waiting_on_seed {
            self.metrics.decision("wait");
            return;
        }
        match seed_host {
            Some(commands) => {
                let seed_task = pb::SeedTask {
                    task_id: task.id.to_string(),
                    url: task.url.clone(),
                    // Handed over, not kept: the next registrant's refill a later request.
                    headers: std::mem::take(&mut task.origin_headers),
                    piece_length: task.requested_piece_length,
                    digest: task.object_digest.clone(),
                };
                let sent = commands.send(pb::HostResponse {
                    response: Some(pb::host_response::Response::SeedTask(seed_task)),
                });
                if sent {
                    task.seed_requested_at = Some(now);
                    self.metrics.decision("seed_triggered");
                    tracing::info!(task_id = %task_id, peer_id = %peer_id, "asked a seed peer to fetch the task");
                } else {
                    self.back_to_source(task, peer_id, "seed peer unreachable");
                }
            }
            None if private => self.back_to_source(
                task,
                peer_id,
                "no parent; the origin needs the client's credentials",
            ),
            None => self.back_to_source(task, peer_id, "no parent and no seed peer"),
        }
    }

    /// The seed host that should fetch `task_id`: consistent hashing over connected seeds, so
    /// repeated triggers for one task land on the same seed.
    fn pick_seed(&self, state: &State, task_id: &TaskId, child: &PeerId) -> Option<HostSender> {
        let child_host = state
            .tasks
            .get(task_id)
            .and_then(|t| t.peers.get(child))
            .map(|p| p.host_id.clone());
        let seeds: HashMap<String, &Host> = state
            .hosts
            .values()
            .filter(|h| {
                h.host_type == HostType::Seed && h.usable_as_parent() && h.commands.is_some()
            })
            .filter(|h| Some(&h.id) != child_host.as_ref())
            .map(|h| (h.id.to_string(), h))
            .collect();
        let ring = HashRing::new(seeds.keys().cloned());
        let owner = ring.owner(task_id.as_str())?;
        seeds.get(owner).and_then(|h| h.commands.clone())
    }

    /// Carries out the mesh's decisions: each end of a new link that is still downloading is
    /// told of the other, and both directed edges are marked active.
    fn apply(
        &self,
        state: &mut State,
        task_id: &TaskId,
        decisions: Vec<MeshDecision>,
        now: Instant,
    ) {
        for MeshDecision::Link { a, b } in decisions {
            self.tell(state, task_id, &a, &b, now);
            self.tell(state, task_id, &b, &a, now);
        }
    }

    /// Sends `to` the neighbour `about` (as a `Parents` message) if `to` is downloading from
    /// peers, or reads a share of the task from the origin and the rest from peers, and marks
    /// the edge `about -> to` active.
    fn tell(&self, state: &mut State, task_id: &TaskId, to: &PeerId, about: &PeerId, now: Instant) {
        let Some(task) = state.tasks.get_mut(task_id) else {
            return;
        };
        let Some(wire) = task
            .peers
            .get(about)
            .and_then(|p| state.hosts.get(&p.host_id))
            .map(|host| pb::Parent {
                peer_id: about.to_string(),
                host_id: host.id.to_string(),
                ip: host.info.ip.clone(),
                upload_port: host.info.upload_port,
                host_type: host.info.host_type,
            })
        else {
            return;
        };
        let Some(peer) = task.peers.get_mut(to) else {
            return;
        };
        let reader = peer.state == PeerState::BackToSource && peer.origin_share.is_some();
        if !matches!(peer.state, PeerState::Pending | PeerState::Running) && !reader {
            return;
        }
        if !reader {
            peer.state = PeerState::Running;
        }
        peer.updated_at = now;
        if let Some(tx) = &peer.tx {
            send(
                tx,
                PeerReply::Parents(pb::Parents {
                    parents: vec![wire],
                }),
            );
        }
        task.edges
            .entry((about.clone(), to.clone()))
            .or_default()
            .active = true;
        self.metrics.decision("parents");
    }

    fn back_to_source(&self, task: &mut Task, peer_id: &PeerId, reason: &str) {
        if let Some(peer) = task.peers.get_mut(peer_id) {
            peer.state = PeerState::BackToSource;
            peer.appointment = Appointment::Appointed;
            peer.updated_at = Instant::now();
            if let Some(tx) = &peer.tx {
                send(
                    tx,
                    PeerReply::BackToSource(pb::BackToSource {
                        reason: reason.to_owned(),
                    }),
                );
            }
        }
        task.deactivate_edges_into(peer_id);
        self.metrics.decision("back_to_source");
        self.metrics.back_to_source.inc();
        tracing::info!(task_id = %task.id, peer_id = %peer_id, reason, "peer sent back to source");
    }
}

/// Whether `child` has an active parent that still has, or is getting, the task.
fn has_usable_parent(task: &Task, child: &PeerId) -> bool {
    task.edges.iter().any(|((p, c), e)| {
        c == child
            && e.active
            && task.peers.get(p).is_some_and(|p| {
                !p.corrupt
                    && matches!(
                        p.state,
                        PeerState::Running | PeerState::BackToSource | PeerState::Succeeded
                    )
            })
    })
}

fn remove_peer(task: &mut Task, peer: &PeerId) {
    task.mesh.handle(MeshEvent::Left { peer: peer.clone() });
    task.peers.remove(peer);
    task.edges.retain(|(p, c), _| p != peer && c != peer);
}

fn known_digests(task: &Task) -> Vec<pb::PieceDigest> {
    task.digests
        .iter()
        .enumerate()
        .filter_map(|(n, d)| {
            d.map(|d| pb::PieceDigest {
                number: u32::try_from(n).unwrap_or(u32::MAX),
                digest: d.as_bytes().to_vec(),
            })
        })
        .collect()
}

/// The headers of an authority's report that may reach clients ([`df_core::relayed`]).
pub(crate) fn relayed_headers(headers: Vec<pb::Header>) -> Vec<pb::Header> {
    df_core::relayed::filter(headers, |h| (h.name.as_str(), h.value.as_str()))
}

fn metadata_reply(layout: PieceLayout, task: &Task) -> PeerReply {
    PeerReply::Metadata(pb::TaskMetadata {
        content_length: layout.content_length,
        piece_length: layout.piece_length,
        headers: task.response_headers.clone(),
        private: task.private,
        ranged: false,
    })
}

fn send(tx: &PeerSender, reply: PeerReply) {
    tx.send(pb::PeerResponse {
        response: Some(reply),
    });
}

fn new_task(id: TaskId, url: String, now: Instant, mesh: MeshConfig) -> Task {
    Task::new(id, url, now, mesh, fastrand::u64(..))
}

/// The mesh's view of a peer.
fn member_of(state: &State, peer: &Peer) -> Member {
    let host = state.hosts.get(&peer.host_id);
    Member {
        host: peer.host_id.clone(),
        role: if peer.is_seed {
            Role::Seed
        } else {
            Role::Normal
        },
        idc: host.map(|h| h.info.idc.clone()).unwrap_or_default(),
        location: host.map(|h| h.info.location.clone()).unwrap_or_default(),
    }
}

/// Every peer of `host` leaves its task's mesh (host gone or P2P switched off there).
fn leave_mesh(state: &mut State, host: &HostId) {
    for task in state.tasks.values_mut() {
        let gone: Vec<PeerId> = task
            .peers
            .values()
            .filter(|p| &p.host_id == host)
            .map(|p| p.id.clone())
            .collect();
        for peer in gone {
            task.deactivate_edges_of(&peer);
            task.mesh.handle(MeshEvent::Left { peer });
        }
    }
}

/// Both directed edges between two peers stop being active.
fn unlink_edges(task: &mut Task, a: &PeerId, b: &PeerId) {
    for key in [(a.clone(), b.clone()), (b.clone(), a.clone())] {
        if let Some(edge) = task.edges.get_mut(&key) {
            edge.active = false;
        }
    }
}

/// Period of [`Scheduler::tick`].
pub const TICK: Duration = Duration::from_millis(250);

/// What the task keeps of a registration's request: the first requester's origin headers,
/// piece length and object digest, and whether anyone withheld credentials.
fn note_request(task: &mut Task, reg: &pb::RegisterPeer, now: Instant) {
    if task.origin_headers.is_empty() {
        // May hold the client's credentials (they came over mutual TLS): kept only until
        // the seed request that needs them, never logged.
        task.origin_headers = reg.headers.clone();
    }
    task.credentials_withheld |= reg.credentials_withheld;
    if task.requested_piece_length == 0 {
        task.requested_piece_length = reg.piece_length;
    }
    if task.object_digest.is_empty() {
        task.object_digest = reg.digest.clone();
    }
    task.updated_at = now;
}

#[cfg(test)]
mod share_tests;
#[cfg(test)]
pub(crate) mod tests;
