//! The scheduler's in-memory model: hosts, tasks, the peers of each task, and the parent ->
//! child edges between them. No database: a restarted scheduler rebuilds this from hosts
//! re-announcing what they hold.
//!
//! Invariants kept by [`crate::scheduling`]:
//! - an edge's endpoints are peers of the same task; an edge is directed (bytes flow from the
//!   first to the second), and the two ends of a mesh link each have an active edge to the
//!   other: neighbours exchange pieces both ways (see [`crate::topology`]);
//! - the task's [`Mesh`] knows exactly the peers that can serve or still download the task;
//! - a task's `digests` are the ones computed by peers that fetched from the origin, and never
//!   change once set.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use df_core::ids::{HostId, PeerId, PieceDigest, TaskId};
use df_core::piece::{Bitmap, PieceLayout};
use df_proto::scheduler::v1 as pb;

use crate::authority::Appointment;
use crate::outbox::Outbox;
use crate::topology::{Mesh, MeshConfig};

pub type PeerSender = Outbox<pb::PeerResponse>;
pub type HostSender = Outbox<pb::HostResponse>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostType {
    Normal,
    Seed,
}

#[derive(Debug)]
pub struct Host {
    pub id: HostId,
    pub info: pb::HostInfo,
    pub host_type: HostType,
    pub connected: bool,
    /// Distinguishes streams so that an old stream closing does not disconnect a new one.
    pub stream_generation: u64,
    pub commands: Option<HostSender>,
    pub last_seen: Instant,
    pub heartbeat: pb::HostHeartbeat,
    pub upload_successes: u64,
    pub upload_failures: u64,
}

impl Host {
    pub fn from_info(info: pb::HostInfo, now: Instant) -> Self {
        let host_type = if info.host_type == pb::HostType::Seed as i32 {
            HostType::Seed
        } else {
            HostType::Normal
        };
        Self {
            id: HostId::from(info.host_id.clone()),
            info,
            host_type,
            connected: false,
            stream_generation: 0,
            commands: None,
            last_seen: now,
            heartbeat: pb::HostHeartbeat::default(),
            upload_successes: 0,
            upload_failures: 0,
        }
    }

    pub fn usable_as_parent(&self) -> bool {
        self.connected && !self.heartbeat.disabled
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Registered, waiting for a parent (usually a seed being started).
    Pending,
    /// Downloading from parents.
    Running,
    /// Downloading from the origin itself.
    BackToSource,
    Succeeded,
    Failed,
    /// Stream closed before finishing.
    Left,
}

impl PeerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::BackToSource => "back_to_source",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Left => "left",
        }
    }

    pub fn is_downloading(self) -> bool {
        matches!(self, Self::Pending | Self::Running | Self::BackToSource)
    }
}

#[derive(Debug)]
pub struct Peer {
    pub id: PeerId,
    pub host_id: HostId,
    pub state: PeerState,
    pub is_seed: bool,
    pub bitmap: Bitmap,
    pub content_path: String,
    /// `None` for a peer known only from a host re-announce, or once its stream closed.
    pub tx: Option<PeerSender>,
    pub stream_generation: u64,
    /// Parents this peer must not be given again (failed or served a bad piece).
    pub blocklist: HashSet<PeerId>,
    pub reschedules: u32,
    /// A peer that served a piece whose digest did not match: no child gets it again
    /// (decided by [`crate::authority::corruption_report`]).
    pub corrupt: bool,
    /// Hosts whose children reported a corrupt piece from this peer (bounded by the quorum).
    pub corruption_reporters: Vec<HostId>,
    /// Whether its reports set the task's layout and digests ([`crate::authority`]).
    pub appointment: Appointment,
    /// The pieces it reads from the origin ([`crate::origin_share`]); its digests of those
    /// speak for the task.
    pub origin_share: Option<std::ops::Range<u32>>,
    /// When it last read its share: given it, or reported a digest of it
    /// ([`crate::origin_share::stalled`]).
    pub share_read_at: Instant,
    /// When a peer last reported a piece (any) delivered by it, while it had a share: the
    /// other sign of work, as its share reads wait on its uplink.
    pub share_delivered_at: Instant,
    /// Its share was taken back for want of progress: it is never a helper again.
    pub share_withdrawn: bool,
    /// It lacks the origin's credentials, which another host has (a preheat job's fetcher):
    /// never sent to the origin, never the reason to ask a seed.
    pub awaits_fetcher: bool,
    pub bytes_from_origin: u64,
    pub bytes_from_peers: u64,
    pub registered_at: Instant,
    pub updated_at: Instant,
}

impl Peer {
    /// A peer just registered (or learnt from a re-announce), with nothing known yet.
    pub fn pending(id: PeerId, host_id: HostId) -> Self {
        let now = Instant::now();
        Self {
            id,
            host_id,
            state: PeerState::Pending,
            is_seed: false,
            bitmap: Bitmap::default(),
            content_path: String::new(),
            tx: None,
            stream_generation: 0,
            blocklist: HashSet::new(),
            reschedules: 0,
            corrupt: false,
            corruption_reporters: Vec::new(),
            appointment: Appointment::None,
            origin_share: None,
            share_read_at: now,
            share_delivered_at: now,
            share_withdrawn: false,
            awaits_fetcher: false,
            bytes_from_origin: 0,
            bytes_from_peers: 0,
            registered_at: now,
            updated_at: now,
        }
    }
}

#[derive(Debug, Default)]
pub struct Edge {
    pub bytes: u64,
    pub pieces: u32,
    pub failures: u32,
    pub active: bool,
    pub blocklisted: bool,
}

#[derive(Debug)]
pub struct Task {
    pub id: TaskId,
    pub url: String,
    /// Headers the first requester sent, forwarded to the seed for origin authentication.
    /// Never shown by the admin API.
    /// Request headers for the seed this scheduler asks to fetch the task (the client's
    /// credentials among them, when they came over mutual TLS); moved into that request.
    pub origin_headers: Vec<pb::Header>,
    /// A registrant withheld its client's credentials: the origin is read by a peer that has
    /// them, never by a seed (which would need them).
    pub credentials_withheld: bool,
    pub requested_piece_length: u64,
    pub object_digest: String,
    pub layout: Option<PieceLayout>,
    pub response_headers: Vec<pb::Header>,
    /// The authority fetched the object with a client's credentials; relayed with the layout so
    /// every peer checks a local client's access with the origin before serving it.
    pub private: bool,
    /// The authority's origin answered a range request with a range, so origin shares work
    /// ([`crate::origin_share`]).
    pub origin_ranged: bool,
    /// No share can be split any more (it has as many readers as allowed, or every share is
    /// too far read): registrations stop looking ([`crate::origin_share`]).
    pub origin_shares_settled: bool,
    /// Shares taken back from stalled helpers; at most `scheduler.origin_readers`.
    pub shares_withdrawn: u32,
    /// Parts of shares whose reader left or stalled when nobody could take them; the next
    /// downloader that registers, or a reader done with its own share, takes one. At most
    /// [`df_core::piece::MAX_ORIGIN_READERS`].
    pub unclaimed: Vec<std::ops::Range<u32>>,
    pub digests: Vec<Option<PieceDigest>>,
    pub peers: HashMap<PeerId, Peer>,
    pub edges: HashMap<(PeerId, PeerId), Edge>,
    /// Who exchanges pieces with whom (pure decision code; this model only stores it).
    pub mesh: Mesh,
    /// When a seed was last asked to fetch this task; avoids asking again while it starts.
    pub seed_requested_at: Option<Instant>,
    pub created_at: Instant,
    pub updated_at: Instant,
    /// Complete copies re-announced by hosts that do not speak for the task, waiting for an
    /// authority to state its layout ([`crate::authority`]); at most `limits.max_peers_per_task`.
    pub pending_holders: Vec<PendingHolder>,
    /// Origin readers the resumed authority named that have not registered here again yet
    /// ([`crate::restart`]); at most [`df_core::piece::MAX_ORIGIN_READERS`].
    pub awaited_readers: Vec<AwaitedReader>,
}

/// An origin reader another scheduler appointed, named by the task's authority after a
/// restart: its share is kept for it until it registers again or `seed_wait` passes.
#[derive(Debug, Clone)]
pub struct AwaitedReader {
    pub peer: PeerId,
    pub host: HostId,
    pub share: std::ops::Range<u32>,
    pub since: Instant,
}

/// A complete copy held by a host whose word does not set the task's layout.
#[derive(Debug, Clone)]
pub struct PendingHolder {
    pub peer: PeerId,
    pub host: HostId,
    /// The layout it claims; it becomes a holder only if the authority's is the same.
    pub layout: PieceLayout,
    pub content_path: String,
}

impl Task {
    /// A task whose mesh uses `mesh` sizes and random choices from `rng_seed`.
    pub fn new(id: TaskId, url: String, now: Instant, mesh: MeshConfig, rng_seed: u64) -> Self {
        Self {
            id,
            url,
            origin_headers: Vec::new(),
            credentials_withheld: false,
            requested_piece_length: 0,
            object_digest: String::new(),
            layout: None,
            response_headers: Vec::new(),
            private: false,
            origin_ranged: false,
            origin_shares_settled: false,
            shares_withdrawn: 0,
            unclaimed: Vec::new(),
            digests: Vec::new(),
            peers: HashMap::new(),
            edges: HashMap::new(),
            mesh: Mesh::new(mesh, rng_seed),
            seed_requested_at: None,
            created_at: now,
            updated_at: now,
            pending_holders: Vec::new(),
            awaited_readers: Vec::new(),
        }
    }

    pub fn set_layout(&mut self, layout: PieceLayout) {
        if self.layout.is_none() {
            self.layout = Some(layout);
            self.digests = vec![None; layout.piece_count() as usize];
        }
    }

    pub fn piece_count(&self) -> u32 {
        self.layout.map_or(0, |l| l.piece_count())
    }

    pub fn deactivate_edges_into(&mut self, child: &PeerId) {
        for ((_, c), edge) in &mut self.edges {
            if c == child {
                edge.active = false;
            }
        }
    }

    pub fn deactivate_edges_of(&mut self, peer: &PeerId) {
        for ((p, c), edge) in &mut self.edges {
            if p == peer || c == peer {
                edge.active = false;
            }
        }
    }

    /// Someone is fetching this task from the origin right now (or was just asked to).
    pub fn has_origin_fetcher(&self) -> bool {
        self.peers
            .values()
            .any(|p| p.state == PeerState::BackToSource && p.tx.is_some())
    }

    /// Whether every other peer of the task is a download waiting for a fetcher and nobody
    /// fetches yet: `peer` must then fetch (or have a seed fetch), whatever neighbours it has.
    pub fn awaits_its_fetcher(&self, peer: &PeerId) -> bool {
        let mut others = self.peers.values().filter(|p| p.id != *peer).peekable();
        others.peek().is_some()
            && !self.has_origin_fetcher()
            && others.all(|p| p.awaits_fetcher && p.state != PeerState::Succeeded)
    }

    pub fn send_to_downloaders(&self, except: Option<&PeerId>, msg: &pb::PeerResponse) {
        for peer in self.peers.values() {
            if Some(&peer.id) == except || !peer.state.is_downloading() {
                continue;
            }
            if let Some(tx) = &peer.tx {
                tx.send(msg.clone());
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct State {
    pub hosts: HashMap<HostId, Host>,
    pub tasks: HashMap<TaskId, Task>,
    pub next_generation: u64,
    /// Peers of all tasks: recounted at each gc, counted up as registrations add peers, so
    /// an upper bound between gcs (removals are not subtracted), which `limits.max_peers`
    /// admission is checked against.
    pub peer_count: usize,
}

impl State {
    pub fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }
}

/// A host this scheduler can send commands to right now.
#[derive(Debug, Clone)]
pub struct ConnectedHost {
    pub id: HostId,
    pub hostname: String,
    pub ip: String,
    pub is_seed: bool,
    pub commands: HostSender,
}
