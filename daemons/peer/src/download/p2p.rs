//! The P2P phase of a download: a thin driver around [`Picker`]. It turns what arrives (the
//! scheduler's layout, digests and neighbours; neighbours' bitmaps from their long-polls; the
//! end of each piece fetch) into picker events, starts the fetches the picker decides, and
//! reports each piece to the scheduler. The only decisions made here are about failure and
//! time: a scheduler that sends the peer to the origin, a stream lost with nothing to go on,
//! or no progress for too long (`schedule_timeout` before the first neighbour or layout,
//! `piece_timeout` after) end the P2P phase, and the caller fetches the rest from the origin.

use std::collections::HashMap;
use std::time::Duration;

use df_core::api::ByteSource;
use df_core::ids::{PeerId, PieceDigest};
use df_core::piece::PieceLayout;
use df_proto::scheduler::v1 as pb;
use pb::peer_request::Request as PeerMsg;
use pb::peer_response::Response as PeerReply;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::busy_retry::BusyRetries;
use super::conductor::{Conductor, Link, OriginPiece, storage_failure};
use super::parent::{ParentEvent, ParentLink, PieceClient, PieceRequest, fetch_piece};
use super::picker::{Fetch, PickEvent, Picker, PickerConfig};
use super::piece_io::PieceError;
use crate::storage::TaskFailure;

type PieceResult = (u32, PeerId, Result<(u64, Duration), PieceError>);

/// How the P2P phase ended.
pub(super) enum P2pEnd {
    /// Every piece is stored.
    Complete,
    /// Fetch the rest from the origin, for this reason.
    Origin(String),
}

/// Origin fetches of this peer's share in flight; they borrow the conductor.
type OriginFetches<'a> = futures_util::stream::FuturesUnordered<
    std::pin::Pin<Box<dyn std::future::Future<Output = OriginPiece> + Send + 'a>>,
>;

/// The pieces the scheduler has this peer read from the origin itself, and their progress.
#[derive(Default)]
struct OriginShare {
    range: std::ops::Range<u32>,
    /// Taken by this peer's origin fetches: under way or waiting to be tried again. The picker
    /// keeps off them until they are stored or given up.
    running: std::collections::BTreeSet<u32>,
    /// Failed, to be tried again: (piece, next attempt).
    retry: Vec<(u32, u32)>,
    /// Every piece of the range before this one is stored.
    next: u32,
}

/// The driver's state: the picker decides, the rest is plumbing.
struct Swarm {
    picker: Picker,
    expected: HashMap<u32, PieceDigest>,
    sources: HashMap<PeerId, ParentLink>,
    fetches: JoinSet<PieceResult>,
    /// The upload slot each streaming fetch holds at its source, by piece, for the fetch the
    /// picker queues behind it.
    slots: HashMap<u32, String>,
    events_tx: mpsc::UnboundedSender<ParentEvent>,
    last_progress: Instant,
    share: OriginShare,
    /// Sources told busy, and when each may be asked again without a slot-free notice.
    busy: BusyRetries,
    /// This peer's ID for the task, as the piece requests' [`df_core::HEADER_PEER`]: made once,
    /// each request clones a reference to it. `None` if the ID is no valid header value.
    child: Option<http::HeaderValue>,
}

impl Conductor {
    /// Downloads from the neighbours the scheduler gives until every piece is in, or says why
    /// the origin must take over. `replay`: what the scheduler said before this phase (an
    /// origin reader that read its share first), handled as if it came now.
    pub(super) async fn p2p(
        &self,
        link: &mut Link,
        replay: Vec<PeerReply>,
    ) -> Result<P2pEnd, TaskFailure> {
        let cfg = &self.ctx.config;
        let origin = self.origin();
        let mut origin_fetches: OriginFetches<'_> = futures_util::stream::FuturesUnordered::new();
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let mut swarm = Swarm {
            picker: Picker::new(PickerConfig::new(cfg.concurrent_pieces), fastrand::u64(..)),
            expected: HashMap::new(),
            sources: HashMap::new(),
            fetches: JoinSet::new(),
            slots: HashMap::new(),
            events_tx,
            last_progress: Instant::now(),
            share: OriginShare::default(),
            busy: BusyRetries::default(),
            child: http::HeaderValue::from_str(self.peer_id.as_str()).ok(),
        };
        if let Some(layout) = self.task.layout() {
            self.picker_layout(&mut swarm, layout);
        }
        for reply in replay {
            if let Some(end) = self.on_reply(&mut swarm, link, Some(reply)).await? {
                return Ok(end);
            }
        }
        let mut sends = self.task.subscribe_sends();
        loop {
            let layout = self.task.layout();
            if swarm.picker.is_complete() || layout.is_some_and(|l| self.holds_all(l)) {
                return Ok(P2pEnd::Complete);
            }
            // Seen before the share is looked at, so a piece delivered after the look wakes it.
            sends.borrow_and_update();
            let mut paced = false;
            if let Some(l) = layout {
                for fetch in swarm.picker.decide() {
                    self.start_fetch(&mut swarm, l, fetch);
                }
                paced = self.start_origin(&mut swarm, &mut origin_fetches, &origin, l);
            }
            let stall_limit = if swarm.sources.is_empty() || layout.is_none() {
                cfg.schedule_timeout
            } else {
                cfg.piece_timeout
            };
            let busy_lapse = swarm.busy.next();
            tokio::select! {
                reply = link.next() => {
                    if let Some(end) = self.on_reply(&mut swarm, link, reply).await? {
                        return Ok(end);
                    }
                }
                Some(ev) = events.recv() => on_source_event(&mut swarm, link, ev),
                Some(joined) = swarm.fetches.join_next(), if !swarm.fetches.is_empty() => {
                    if let Ok((n, source, result)) = joined {
                        self.on_fetched(&mut swarm, link, n, source, result).await?;
                    }
                }
                Some(done) = futures_util::StreamExt::next(&mut origin_fetches), if !origin_fetches.is_empty() => {
                    self.on_origin_piece(&mut swarm, link, done).await?;
                }
                // Reading paused until a piece read ahead is delivered (crate::read_ahead).
                Ok(()) = sends.changed(), if paced => {}
                () = sleep_until_some(busy_lapse), if busy_lapse.is_some() => {
                    for source in swarm.busy.lapsed(Instant::now()) {
                        swarm.picker.handle(PickEvent::BusyLapsed { source });
                    }
                }
                _ = tokio::time::sleep_until(swarm.last_progress + stall_limit) => {
                    if swarm.fetches.is_empty() && origin_fetches.is_empty() {
                        let reason = if layout.is_none() { "no task metadata in time" } else { "no progress from parents" };
                        link.send(PeerMsg::BackToSourceStarted(pb::BackToSourceStarted { reason: reason.into() }));
                        return Ok(P2pEnd::Origin(reason.into()));
                    }
                    swarm.last_progress = Instant::now();
                }
            }
        }
    }

    pub(super) fn holds_all(&self, layout: PieceLayout) -> bool {
        self.task.state().bitmap.count() == layout.piece_count()
    }

    /// Tells the picker the layout, the pieces already stored and those this peer reads from
    /// the origin.
    fn picker_layout(&self, swarm: &mut Swarm, layout: PieceLayout) {
        swarm.picker.handle(PickEvent::Layout {
            pieces: layout.piece_count(),
        });
        let held: Vec<u32> = self.task.state().bitmap.ones().collect();
        for piece in held {
            swarm.picker.handle(PickEvent::Held { piece });
        }
    }

    /// The scheduler's share for this peer replaces the one before. Pieces that left it (given
    /// to another reader) and are under way here finish here.
    fn set_share(&self, swarm: &mut Swarm, share: pb::OriginShare) {
        let count = self.task.layout().map_or(0, |l| l.piece_count());
        let end = if count == 0 {
            share.end
        } else {
            share.end.min(count)
        };
        let range = share.first.min(end)..end;
        tracing::info!(
            first = range.start,
            end = range.end,
            "origin share from the scheduler"
        );
        swarm.share.next = range.start;
        swarm.share.range = range;
        swarm.last_progress = Instant::now();
    }

    /// Starts origin fetches of the share's missing pieces, in order, up to
    /// `concurrent_pieces` at once. A piece of the share that a neighbour shows with a known
    /// digest (its reader reported it before it left) comes from the peers instead; one whose
    /// fetch from a neighbour is under way is left to it. The picker keeps off a piece while
    /// it is read from the origin, so no two fetches ever write one piece. A helper reads no
    /// further ahead of its uplink than [`crate::read_ahead`] allows; returns true when that
    /// is what stopped it.
    fn start_origin<'a>(
        &'a self,
        swarm: &mut Swarm,
        running: &mut OriginFetches<'a>,
        origin: &'a super::origin::Origin<'a>,
        layout: PieceLayout,
    ) -> bool {
        let limit = self.ctx.config.concurrent_pieces;
        while running.len() < limit {
            let next = match swarm.share.retry.pop() {
                Some(again) => Some(again),
                None if self.read_far_enough(swarm, running.len(), limit) => return true,
                None => self.next_share_piece(swarm, layout).map(|n| (n, 1)),
            };
            let Some((n, attempt)) = next else {
                return false;
            };
            if swarm.share.running.insert(n) {
                swarm.picker.handle(PickEvent::Reserved {
                    piece: n,
                    reserved: true,
                });
            }
            running.push(Box::pin(self.origin_piece(origin, layout, n, attempt)));
        }
        false
    }

    /// A helper with neighbours to send to, whose pieces read ahead of its uplink plus its
    /// reads under way have reached `limit`. The seed, and a helper nobody can fetch from,
    /// read on.
    fn read_far_enough(&self, swarm: &Swarm, reading: usize, limit: usize) -> bool {
        let share = &swarm.share;
        if self.req.seed || share.next >= share.range.end || swarm.sources.is_empty() {
            return false;
        }
        let st = self.task.state();
        let record = crate::read_ahead::Record {
            delivered: &st.delivered,
            received: &st.received,
        };
        let waiting = crate::read_ahead::only_here(&st.bitmap, record, share.range.clone());
        !crate::read_ahead::may_read(waiting, reading, limit)
    }

    /// The next piece of the share to read from the origin. Runs on every turn of the P2P loop,
    /// so a peer without a share (most of them) returns before touching the task's lock, and
    /// the walk starts past the share's pieces already stored.
    fn next_share_piece(&self, swarm: &mut Swarm, layout: PieceLayout) -> Option<u32> {
        let end = swarm.share.range.end.min(layout.piece_count());
        if swarm.share.next >= end {
            return None;
        }
        let bitmap = &self.task.state().bitmap;
        while swarm.share.next < end && bitmap.get(swarm.share.next) {
            swarm.share.next += 1;
        }
        let share = &swarm.share;
        let taken = |n: u32| share.running.contains(&n) || swarm.picker.is_in_flight(n);
        let from_peers = |n: u32| swarm.expected.contains_key(&n) && swarm.picker.is_shown(n);
        (share.next..end).find(|&n| !bitmap.get(n) && !taken(n) && !from_peers(n))
    }

    /// The end of one origin fetch of the share: stored and reported with its digest (which
    /// the scheduler relays: this peer speaks for its share), or tried again.
    async fn on_origin_piece(
        &self,
        swarm: &mut Swarm,
        link: &Link,
        done: OriginPiece,
    ) -> Result<(), TaskFailure> {
        match done.result {
            Ok(digest) => {
                swarm.share.running.remove(&done.n);
                swarm.picker.handle(PickEvent::Reserved {
                    piece: done.n,
                    reserved: false,
                });
                self.origin_piece_done(link, done.n, digest, done.len, done.cost)
                    .await?;
                swarm.picker.handle(PickEvent::Held { piece: done.n });
                swarm.last_progress = Instant::now();
            }
            Err(e) => {
                let again = self.origin_retry(link, done.n, done.attempt, e)?;
                if swarm.share.range.contains(&done.n) {
                    swarm.share.retry.push(again);
                } else {
                    // No longer this peer's to read: another reader has it now.
                    swarm.share.running.remove(&done.n);
                    swarm.picker.handle(PickEvent::Reserved {
                        piece: done.n,
                        reserved: false,
                    });
                }
            }
        }
        Ok(())
    }

    /// One message from the scheduler; `Some` ends the P2P phase.
    async fn on_reply(
        &self,
        swarm: &mut Swarm,
        link: &Link,
        reply: Option<PeerReply>,
    ) -> Result<Option<P2pEnd>, TaskFailure> {
        match reply {
            Some(PeerReply::Metadata(m)) => {
                // Filtered on receipt: the clients of this peer see only what describes the
                // bytes, whatever the report said (`df_core::relayed`).
                let headers = df_core::relayed::filter(
                    m.headers.into_iter().map(|h| (h.name, h.value)),
                    |h| (h.0.as_str(), h.1.as_str()),
                );
                let layout = PieceLayout::new(m.content_length, Some(m.piece_length));
                if m.private {
                    // Before the layout, which is what lets clients at the bytes.
                    self.task.state().private = true;
                }
                self.set_layout(layout, headers, link).await?;
                self.picker_layout(swarm, layout);
                swarm.last_progress = Instant::now();
            }
            Some(PeerReply::Digests(d)) => {
                // Only pieces the layout has (or, before it, no more than any layout has).
                let count = self
                    .task
                    .layout()
                    .map_or(df_core::piece::MAX_PIECE_COUNT, |l| l.piece_count());
                for p in d.pieces.into_iter().filter(|p| p.number < count) {
                    if let Some(digest) = PieceDigest::from_slice(&p.digest) {
                        swarm.expected.insert(p.number, digest);
                        swarm.picker.handle(PickEvent::Digest { piece: p.number });
                    }
                }
            }
            Some(PeerReply::Parents(p)) => {
                for parent in p.parents {
                    self.add_source(swarm, parent);
                }
                self.note_source(swarm.picker.only_seeds());
                swarm.last_progress = Instant::now();
            }
            // The link registers again by itself, and keeps the readers for it (it never
            // passes them on); nothing changes here.
            Some(PeerReply::Reconnect(_) | PeerReply::OriginReaders(_)) => {}
            Some(PeerReply::OriginShare(share)) => self.set_share(swarm, share),
            Some(PeerReply::BackToSource(b)) => {
                return Ok(Some(P2pEnd::Origin(format!("scheduler: {}", b.reason))));
            }
            None if swarm.sources.is_empty() || self.task.layout().is_none() => {
                return Ok(Some(P2pEnd::Origin("scheduler stream lost".into())));
            }
            None => tracing::warn!("scheduler stream lost; finishing from current parents"),
        }
        Ok(None)
    }

    fn add_source(&self, swarm: &mut Swarm, parent: pb::Parent) {
        let id = PeerId::from(parent.peer_id);
        if id == self.peer_id || swarm.picker.is_lost(&id) || swarm.sources.contains_key(&id) {
            return;
        }
        let base = format!(
            "{}://{}",
            crate::links::scheme(&self.ctx.config.tls),
            super::conductor::join_host_port(&parent.ip, parent.upload_port)
        );
        let seed = parent.host_type == pb::HostType::Seed as i32;
        tracing::debug!(parent = %id, %base, seed, "new neighbour");
        swarm.picker.handle(PickEvent::SourceAdded {
            source: id.clone(),
            seed,
        });
        let watcher = ParentLink::spawn(
            super::parent::Watch {
                client: self.ctx.peers.clone(),
                task: self.task.clone(),
                child: self.peer_id.clone(),
                parent: id.clone(),
            },
            base,
            seed,
            swarm.events_tx.clone(),
        );
        swarm.sources.insert(id, watcher);
    }

    fn start_fetch(&self, swarm: &mut Swarm, layout: PieceLayout, fetch: Fetch) {
        let Fetch {
            piece,
            source,
            behind,
        } = fetch;
        let (Some(&digest), Some(link)) = (swarm.expected.get(&piece), swarm.sources.get(&source))
        else {
            // Cannot happen (the picker only picks verifiable pieces from known sources); if
            // it did, tell the picker so the piece is picked again.
            swarm.picker.handle(PickEvent::FetchFailed {
                piece,
                source,
                missing: true,
            });
            return;
        };
        let (ctx, task, base) = (self.ctx.clone(), self.task.clone(), link.base.clone());
        // The slot may be gone already (the piece ahead just ended): the fetch then goes as a
        // new request, answered busy if every slot is taken.
        let behind = behind.and_then(|b| swarm.slots.get(&b).cloned());
        let events = swarm.events_tx.clone();
        let child = swarm.child.clone();
        let in_flight = u32::try_from(swarm.fetches.len() + 1).unwrap_or(u32::MAX);
        swarm.fetches.spawn(async move {
            let req = PieceRequest {
                base: &base,
                parent: &source,
                behind: behind.as_deref(),
                events: &events,
                child: child.as_ref(),
                in_flight,
            };
            let client = PieceClient {
                http: &ctx.peers,
                limiter: &ctx.download_limiter,
                stall: ctx.config.piece_timeout,
            };
            let r = fetch_piece(client, &task, layout, piece, req, digest).await;
            (piece, source, r)
        });
    }

    /// The end of one fetch: stored and reported, or the failure reported and the source
    /// dropped unless it merely lacked the piece.
    async fn on_fetched(
        &self,
        swarm: &mut Swarm,
        link: &Link,
        n: u32,
        source: PeerId,
        result: Result<(u64, Duration), PieceError>,
    ) -> Result<(), TaskFailure> {
        let ctx = &self.ctx;
        swarm.slots.remove(&n);
        match result {
            Ok((len, cost)) => {
                let seed = swarm.sources.get(&source).is_some_and(|p| p.is_seed);
                let from = if seed {
                    ByteSource::Seed
                } else {
                    ByteSource::Peer
                };
                let Some(digest) = swarm.expected.get(&n).copied() else {
                    return Ok(());
                };
                self.task.commit_piece(n, digest, from, len);
                ctx.metrics.downloaded(from.as_str(), len);
                ctx.metrics.piece(from.as_str(), "ok");
                link.send(PeerMsg::PieceFinished(pb::PieceFinished {
                    number: n,
                    digest: digest.as_bytes().to_vec(),
                    source: pb::PieceSource::Peer as i32,
                    parent_peer_id: source.to_string(),
                    length: len,
                    cost_micros: u64::try_from(cost.as_micros()).unwrap_or(u64::MAX),
                }));
                swarm.picker.handle(PickEvent::Fetched { piece: n, source });
                swarm.last_progress = Instant::now();
                self.task.save_if_due().await.map_err(storage_failure)
            }
            Err(PieceError::Storage(e)) => Err(storage_failure(e)),
            Err(PieceError::Busy) => {
                // Not a failure: the parent keeps the piece and is asked again once its
                // bitmap long-poll says a slot is free.
                ctx.metrics.piece("peer", "busy");
                if let Some(parent) = swarm.sources.get(&source) {
                    parent.saw_busy();
                }
                swarm.busy.told_busy(&source, Instant::now());
                swarm.picker.handle(PickEvent::Busy { piece: n, source });
                Ok(())
            }
            Err(e) => {
                let reason = match &e {
                    PieceError::DigestMismatch { .. } => pb::PieceFailure::DigestMismatch,
                    PieceError::NotFound => pb::PieceFailure::NotFound,
                    PieceError::Timeout(_) => pb::PieceFailure::Timeout,
                    _ => pb::PieceFailure::Unreachable,
                };
                tracing::warn!(parent = %source, piece = n, error = %e, "piece from parent failed");
                let label = if reason == pb::PieceFailure::DigestMismatch {
                    "digest_mismatch"
                } else {
                    "failed"
                };
                ctx.metrics.piece("peer", label);
                link.send(PeerMsg::PieceFailed(pb::PieceFailed {
                    number: n,
                    parent_peer_id: source.to_string(),
                    reason: reason as i32,
                    message: e.to_string(),
                }));
                let missing = reason == pb::PieceFailure::NotFound;
                swarm.picker.handle(PickEvent::FetchFailed {
                    piece: n,
                    source: source.clone(),
                    missing,
                });
                if !missing {
                    drop_source(swarm, link, &source);
                }
                Ok(())
            }
        }
    }
}

/// A neighbour's bitmap changed, or its long-poll gave up.
fn on_source_event(swarm: &mut Swarm, link: &Link, ev: ParentEvent) {
    match ev {
        ParentEvent::Bitmap {
            parent,
            bitmap,
            uploads,
            full,
        } => {
            if let Some(source) = swarm.sources.get_mut(&parent) {
                if bitmap.count() > source.held {
                    source.held = bitmap.count();
                    swarm.last_progress = Instant::now();
                }
                swarm.picker.handle(PickEvent::SourceBitmap {
                    source: parent.clone(),
                    bitmap,
                });
                swarm.picker.handle(PickEvent::SourceLoad {
                    source: parent,
                    uploads,
                    full,
                });
            }
        }
        ParentEvent::Slot {
            parent,
            piece,
            slot,
        } => {
            // Only while the fetch is in flight: its end removes the slot.
            if swarm.picker.in_flight_from(piece, &parent) {
                swarm.slots.insert(piece, slot);
                swarm.picker.handle(PickEvent::Streaming {
                    piece,
                    source: parent,
                });
            }
        }
        ParentEvent::Gone { parent, error } => {
            if swarm.sources.contains_key(&parent) {
                tracing::info!(%parent, %error, "parent unreachable");
                link.send(PeerMsg::PieceFailed(pb::PieceFailed {
                    number: 0,
                    parent_peer_id: parent.to_string(),
                    reason: pb::PieceFailure::Unreachable as i32,
                    message: error,
                }));
                swarm.picker.handle(PickEvent::SourceLost {
                    source: parent.clone(),
                });
                drop_source(swarm, link, &parent);
            }
        }
    }
}

/// Stops watching a source; with none left, asks the scheduler for others.
fn drop_source(swarm: &mut Swarm, link: &Link, source: &PeerId) {
    swarm.sources.remove(source);
    if swarm.sources.is_empty() {
        link.send(PeerMsg::Reschedule(pb::RescheduleRequest {
            failed_parent_ids: vec![source.to_string()],
        }));
    }
}

/// Sleeps until `at`, or forever without one (the `select!` arm is off then anyway).
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
