//! The conductor drives one download of one task on this peer to completion.
//!
//! 1. Register with the scheduler that owns the task (failing over along the ring). If none
//!    answers within `schedule_timeout`, fetch from the origin directly: P2P failing must never
//!    fail the download.
//! 2. Follow the scheduler: take the layout and authoritative piece digests it relays, watch the
//!    parents it assigns, and keep `concurrent_pieces` pieces in flight across them, rarest
//!    first with random tie-breaks (so children of one seed fetch different pieces and can trade
//!    them). Every peer piece is checked against the scheduler's digest before its bit is set; a
//!    parent that sends a bad piece is dropped and reported, and the piece is fetched elsewhere.
//! 3. When told to go back to source, when the stream is lost with nothing to go on, or when no
//!    progress happens for too long, fetch the missing pieces from the origin by ranged GETs,
//!    reporting each piece's digest so others can verify it.
//! 4. With a whole-object digest (registry blob URLs name one), verify the file before the task
//!    is marked complete; a mismatch deletes it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use df_core::api::ByteSource;
use df_core::ids::{PeerId, PieceDigest};
use df_core::piece::PieceLayout;
use df_proto::scheduler::v1 as pb;
use pb::peer_request::Request as PeerMsg;
use pb::peer_response::Response as PeerReply;
use sha2::Digest as _;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::DownloadRequest;
use super::origin::{FirstResponse, Origin};
use super::parent::{ParentEvent, ParentLink, fetch_piece};
use super::piece_io::{BodyReader, PieceError};
use crate::Context;
use crate::announcer::PeerStream;
use crate::storage::{StorageError, StoredTask, TaskFailure};

/// Attempts per piece against the origin before the download fails.
const ORIGIN_ATTEMPTS: u32 = 3;

/// Requests a child with normal parents keeps at seeds: enough that a seed's spare uplink
/// still brings new pieces into the swarm, few enough that the child that has only the seed
/// gets most of it (see [`Conductor::dispatch`]).
const SEED_REQUESTS_WITH_PEERS: usize = 1;

type PieceResult = (u32, PeerId, Result<(u64, Duration), PieceError>);

pub struct Conductor {
    pub ctx: Arc<Context>,
    pub task: Arc<StoredTask>,
    pub req: DownloadRequest,
    pub peer_id: PeerId,
}

/// The scheduler stream, if there still is one.
struct Link(Option<PeerStream>);

impl Link {
    fn send(&self, msg: PeerMsg) {
        if let Some(s) = &self.0 {
            s.send(msg);
        }
    }

    async fn next(&mut self) -> Option<PeerReply> {
        match &mut self.0 {
            Some(s) => {
                let r = s.next().await;
                if r.is_none() {
                    self.0 = None;
                }
                r
            }
            None => std::future::pending().await,
        }
    }
}

impl Conductor {
    pub async fn run(self) -> Result<(), TaskFailure> {
        if self.task.is_complete() {
            return Ok(());
        }
        let ctx = self.ctx.clone();
        if ctx.schedulers.is_empty() {
            return self
                .fetch_from_origin(&mut Link(None), "no scheduler configured")
                .await;
        }
        let register = pb::RegisterPeer {
            task_id: self.task.id.to_string(),
            peer_id: self.peer_id.to_string(),
            host_id: ctx.host_info.host_id.clone(),
            url: self.req.url.clone(),
            headers: self
                .req
                .headers
                .iter()
                .filter(|(k, _)| super::origin::forwardable(k))
                .map(|(k, v)| pb::Header {
                    name: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            piece_length: self.req.piece_length.unwrap_or(0),
            digest: self
                .req
                .digest
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            content_path: self.task.data_path.display().to_string(),
            seed: self.req.seed,
            host: Some(ctx.host_info.clone()),
        };
        let opened = tokio::time::timeout(
            ctx.config.schedule_timeout,
            ctx.schedulers.open_peer_stream(&self.task.id, register),
        )
        .await;
        match opened {
            Ok(Some(stream)) => {
                tracing::debug!(scheduler = %stream.scheduler, "registered with scheduler");
                self.p2p(Link(Some(stream))).await
            }
            _ => {
                tracing::warn!("no scheduler answered; fetching from the origin");
                self.fetch_from_origin(&mut Link(None), "scheduler unreachable")
                    .await
            }
        }
    }

    async fn p2p(self, mut link: Link) -> Result<(), TaskFailure> {
        let ctx = self.ctx.clone();
        let cfg = &ctx.config;
        let mut expected: HashMap<u32, PieceDigest> = HashMap::new();
        let mut parents: HashMap<PeerId, ParentLink> = HashMap::new();
        let mut blocked: HashSet<PeerId> = HashSet::new();
        let mut inflight: HashSet<u32> = HashSet::new();
        let mut pieces: JoinSet<PieceResult> = JoinSet::new();
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let mut last_progress = Instant::now();

        loop {
            let layout = self.task.layout();
            if let Some(l) = layout
                && self.task.state().bitmap.count() == l.piece_count()
            {
                break;
            }
            if let Some(l) = layout {
                self.dispatch(l, &expected, &mut parents, &mut inflight, &mut pieces);
            }
            let stall_limit = if parents.is_empty() || layout.is_none() {
                cfg.schedule_timeout
            } else {
                cfg.piece_timeout
            };
            tokio::select! {
                reply = link.next() => match reply {
                    Some(PeerReply::Metadata(m)) => {
                        let headers = m.headers.into_iter().map(|h| (h.name, h.value)).collect();
                        self.set_layout(PieceLayout::new(m.content_length, Some(m.piece_length)), headers, &link).await?;
                        last_progress = Instant::now();
                    }
                    Some(PeerReply::Digests(d)) => {
                        for p in d.pieces {
                            if let Some(digest) = PieceDigest::from_slice(&p.digest) {
                                expected.insert(p.number, digest);
                            }
                        }
                    }
                    Some(PeerReply::Parents(p)) => {
                        for parent in p.parents {
                            let id = PeerId::from(parent.peer_id);
                            if blocked.contains(&id) || parents.contains_key(&id) || id == self.peer_id {
                                continue;
                            }
                            let base = format!("http://{}", join_host_port(&parent.ip, parent.upload_port));
                            let is_seed = parent.host_type == pb::HostType::Seed as i32;
                            tracing::debug!(parent = %id, %base, is_seed, "new parent");
                            parents.insert(id.clone(), ParentLink::spawn(ctx.peers.clone(), self.task.id.clone(), id, base, is_seed, events_tx.clone()));
                        }
                        self.note_source(&parents);
                        last_progress = Instant::now();
                    }
                    Some(PeerReply::BackToSource(b)) => {
                        drop(pieces);
                        return self.fetch_from_origin(&mut link, &format!("scheduler: {}", b.reason)).await;
                    }
                    None => {
                        if parents.is_empty() || layout.is_none() {
                            drop(pieces);
                            return self.fetch_from_origin(&mut link, "scheduler stream lost").await;
                        }
                        tracing::warn!("scheduler stream lost; finishing from current parents");
                    }
                },
                Some(ev) = events.recv() => match ev {
                    ParentEvent::Bitmap { parent, bitmap } => {
                        if let Some(p) = parents.get_mut(&parent) {
                            if bitmap.count() > p.bitmap.count() {
                                last_progress = Instant::now();
                            }
                            p.bitmap = bitmap;
                        }
                    }
                    ParentEvent::Gone { parent, error } => {
                        if parents.remove(&parent).is_some() {
                            tracing::info!(%parent, %error, "parent unreachable");
                            blocked.insert(parent.clone());
                            link.send(PeerMsg::PieceFailed(pb::PieceFailed {
                                number: 0,
                                parent_peer_id: parent.to_string(),
                                reason: pb::PieceFailure::Unreachable as i32,
                                message: error,
                            }));
                            if parents.is_empty() {
                                link.send(PeerMsg::Reschedule(pb::RescheduleRequest { failed_parent_ids: vec![parent.to_string()] }));
                            }
                        }
                    }
                },
                Some(joined) = pieces.join_next(), if !pieces.is_empty() => {
                    let Ok((n, parent, result)) = joined else { continue };
                    inflight.remove(&n);
                    if let Some(p) = parents.get_mut(&parent) {
                        p.inflight = p.inflight.saturating_sub(1);
                    }
                    match result {
                        Ok((len, cost)) => {
                            let is_seed = parents.get(&parent).is_some_and(|p| p.is_seed);
                            let source = if is_seed { ByteSource::Seed } else { ByteSource::Peer };
                            let Some(digest) = expected.get(&n).copied() else { continue };
                            self.task.commit_piece(n, digest, source, len);
                            ctx.metrics.downloaded(source.as_str(), len);
                            ctx.metrics.piece(source.as_str(), "ok");
                            link.send(PeerMsg::PieceFinished(pb::PieceFinished {
                                number: n,
                                digest: digest.as_bytes().to_vec(),
                                source: pb::PieceSource::Peer as i32,
                                parent_peer_id: parent.to_string(),
                                length: len,
                                cost_micros: u64::try_from(cost.as_micros()).unwrap_or(u64::MAX),
                            }));
                            last_progress = Instant::now();
                            self.task.save_if_due().await.map_err(storage_failure)?;
                        }
                        Err(PieceError::Storage(e)) => return Err(storage_failure(e)),
                        Err(e) => {
                            let reason = match &e {
                                PieceError::DigestMismatch { .. } => pb::PieceFailure::DigestMismatch,
                                PieceError::NotFound => pb::PieceFailure::NotFound,
                                PieceError::Timeout(_) => pb::PieceFailure::Timeout,
                                _ => pb::PieceFailure::Unreachable,
                            };
                            tracing::warn!(%parent, piece = n, error = %e, "piece from parent failed");
                            ctx.metrics.piece("peer", if reason == pb::PieceFailure::DigestMismatch { "digest_mismatch" } else { "failed" });
                            link.send(PeerMsg::PieceFailed(pb::PieceFailed {
                                number: n,
                                parent_peer_id: parent.to_string(),
                                reason: reason as i32,
                                message: e.to_string(),
                            }));
                            if reason == pb::PieceFailure::NotFound {
                                if let Some(p) = parents.get_mut(&parent) {
                                    p.bitmap.clear(n);
                                }
                            } else {
                                parents.remove(&parent);
                                blocked.insert(parent.clone());
                                if parents.is_empty() {
                                    link.send(PeerMsg::Reschedule(pb::RescheduleRequest { failed_parent_ids: vec![parent.to_string()] }));
                                }
                            }
                        }
                    }
                },
                _ = tokio::time::sleep_until(last_progress + stall_limit) => {
                    if pieces.is_empty() {
                        let reason = if layout.is_none() { "no task metadata in time" } else { "no progress from parents" };
                        link.send(PeerMsg::BackToSourceStarted(pb::BackToSourceStarted { reason: reason.into() }));
                        return self.fetch_from_origin(&mut link, reason).await;
                    }
                    last_progress = Instant::now();
                }
            }
        }
        self.complete(&link).await
    }

    /// Starts fetches until `concurrent_pieces` are in flight: rarest piece among the parents
    /// first, then nearest the head, random within a window; from the parent holding it with the
    /// fewest of our requests.
    ///
    /// Seeds are the source of last resort for a child that has normal parents: such a child
    /// takes a piece from a normal parent whenever one holds it, orders pieces only seeds hold
    /// after the others, and keeps at most [`SEED_REQUESTS_WITH_PEERS`] requests at seeds. A
    /// seed holds every piece first, so rarity counted over all parents sent every child to the
    /// seed for the newest pieces: the seed uploaded the object about once per child it had
    /// (3.7x S at N = 8 and N = 16 in `df-bench swarm`) and its uplink set the makespan. A child
    /// whose only parents are seeds is not limited. For the same reason no parent gets more
    /// than an equal share of the `concurrent_pieces` requests.
    fn dispatch(
        &self,
        layout: PieceLayout,
        expected: &HashMap<u32, PieceDigest>,
        parents: &mut HashMap<PeerId, ParentLink>,
        inflight: &mut HashSet<u32>,
        pieces: &mut JoinSet<PieceResult>,
    ) {
        let limit = self.ctx.config.concurrent_pieces;
        if pieces.len() >= limit || parents.is_empty() {
            return;
        }
        let have = self.task.state().bitmap.clone();
        let seed_cap = if parents.values().any(|p| !p.is_seed) {
            SEED_REQUESTS_WITH_PEERS
        } else {
            limit
        };
        // No parent gets more than its share of our requests: the parent furthest ahead holds
        // the rarest pieces, and rarest-first alone would queue every request at it while the
        // other parents' uplinks idle.
        let per_parent = limit.div_ceil(parents.len()).max(1);
        let mut at_seeds: usize = parents
            .values()
            .filter(|p| p.is_seed)
            .map(|p| p.inflight)
            .sum();
        // Among equally rare pieces, those in a window near the first missing one go first, so
        // a client reading in order is not starved; within the window the order is random, so
        // siblings still fetch different pieces and can trade them.
        let window = u32::try_from(limit * 2).unwrap_or(u32::MAX).max(1);
        let mut candidates: Vec<(bool, usize, u32, u64, u32)> = have
            .missing()
            .filter(|n| !inflight.contains(n) && expected.contains_key(n))
            .filter_map(|n| {
                let holders = parents.values().filter(|p| p.bitmap.get(n));
                let (peers, seeds) = holders.fold((0, 0), |(peers, seeds), p| {
                    if p.is_seed {
                        (peers, seeds + 1)
                    } else {
                        (peers + 1, seeds)
                    }
                });
                (peers + seeds > 0).then(|| (peers == 0, peers, n / window, fastrand::u64(..), n))
            })
            .collect();
        candidates.sort_unstable();
        for (_, _, _, _, n) in candidates {
            if pieces.len() >= limit {
                break;
            }
            let Some(parent) = parents
                .values_mut()
                .filter(|p| p.bitmap.get(n) && p.inflight < per_parent)
                .filter(|p| !p.is_seed || at_seeds < seed_cap)
                .min_by_key(|p| (p.is_seed, p.inflight, fastrand::u32(..)))
            else {
                continue;
            };
            if parent.is_seed {
                at_seeds += 1;
            }
            let Some(&digest) = expected.get(&n) else {
                continue;
            };
            parent.inflight += 1;
            inflight.insert(n);
            let (ctx, task, base, id) = (
                self.ctx.clone(),
                self.task.clone(),
                parent.base.clone(),
                parent.id.clone(),
            );
            pieces.spawn(async move {
                let r = fetch_piece(&ctx, &task, layout, n, &base, digest).await;
                (n, id, r)
            });
        }
    }

    fn note_source(&self, parents: &HashMap<PeerId, ParentLink>) {
        let source = if parents.values().all(|p| p.is_seed) {
            ByteSource::Seed
        } else {
            ByteSource::Peer
        };
        let mut st = self.task.state();
        if st.source != Some(ByteSource::Origin) {
            st.source = Some(source);
        }
    }

    async fn set_layout(
        &self,
        layout: PieceLayout,
        headers: Vec<(String, String)>,
        link: &Link,
    ) -> Result<(), TaskFailure> {
        match self.ctx.store.set_layout(&self.task, layout, headers).await {
            Ok(evicted) => {
                for (task, peer) in evicted {
                    self.ctx.schedulers.report_evicted(&task, &peer);
                }
                Ok(())
            }
            Err(StorageError::NoSpace {
                needed,
                used,
                capacity,
                ..
            }) => {
                let msg = format!(
                    "object of {needed} bytes does not fit ({used} of {capacity} bytes used)"
                );
                link.send(PeerMsg::Failed(pb::DownloadFailed {
                    message: msg.clone(),
                    origin_status: 0,
                }));
                Err(TaskFailure::NoSpace(msg))
            }
            Err(e) => Err(storage_failure(e)),
        }
    }

    /// Fetches every missing piece from the origin, reporting each with its digest.
    async fn fetch_from_origin(&self, link: &mut Link, reason: &str) -> Result<(), TaskFailure> {
        let ctx = self.ctx.clone();
        tracing::info!(reason, "fetching from the origin");
        ctx.metrics.went_back_to_source(reason_label(reason));
        self.task.state().source = Some(ByteSource::Origin);
        let origin = Origin {
            client: ctx.origin.fetch(&self.req.url),
            url: &self.req.url,
            headers: &self.req.headers,
        };
        if self.task.layout().is_none() {
            let first = match origin.first(self.req.piece_length).await {
                Ok(f) => f,
                Err(failure) => {
                    let origin_status = match &failure {
                        TaskFailure::Origin { status, .. } => u32::from(*status),
                        _ => 0,
                    };
                    link.send(PeerMsg::Failed(pb::DownloadFailed {
                        message: failure.to_string(),
                        origin_status,
                    }));
                    return Err(failure);
                }
            };
            let (layout, headers, body, first_len, whole) = match first {
                FirstResponse::Ranged {
                    layout,
                    first_len,
                    headers,
                    body,
                } => (layout, headers, body, first_len, false),
                FirstResponse::Whole {
                    layout,
                    headers,
                    body,
                } => (layout, headers, body, layout.content_length, true),
            };
            self.set_layout(layout, headers.clone(), link).await?;
            link.send(PeerMsg::Metadata(pb::TaskMetadata {
                content_length: layout.content_length,
                piece_length: layout.piece_length,
                headers: headers
                    .into_iter()
                    .map(|(name, value)| pb::Header { name, value })
                    .collect(),
            }));
            // Keep the pieces the first body carries: all of them for a 200, piece 0 for a 206
            // whose range matches the piece length.
            let mut reader = BodyReader::new(body.bytes_stream());
            let mut offset = 0;
            for n in 0..layout.piece_count() {
                let Some((_, len)) = layout.range(n) else {
                    break;
                };
                if !whole && (n > 0 || len != first_len) {
                    break;
                }
                let started = Instant::now();
                let digest = reader
                    .write_piece(
                        &self.task,
                        offset,
                        len,
                        &ctx.download_limiter,
                        ctx.config.piece_timeout,
                    )
                    .await
                    .map_err(|e| TaskFailure::Other(format!("origin body for piece {n}: {e}")))?;
                self.origin_piece_done(link, n, digest, len, started.elapsed())
                    .await?;
                offset += len;
            }
        }
        self.remaining_from_origin(link, &origin).await?;
        self.complete(link).await
    }

    async fn remaining_from_origin(
        &self,
        link: &mut Link,
        origin: &Origin<'_>,
    ) -> Result<(), TaskFailure> {
        let ctx = &self.ctx;
        let Some(layout) = self.task.layout() else {
            return Err(TaskFailure::Other(
                "no layout after the first origin request".into(),
            ));
        };
        let missing: Vec<u32> = self.task.state().bitmap.missing().collect();
        let mut queue = missing.into_iter().map(|n| (n, 1u32));
        let mut retry: Vec<(u32, u32)> = Vec::new();
        let mut running = futures_util::stream::FuturesUnordered::new();
        loop {
            while running.len() < ctx.config.concurrent_pieces {
                let Some((n, attempt)) = retry.pop().or_else(|| queue.next()) else {
                    break;
                };
                let Some((offset, len)) = layout.range(n) else {
                    continue;
                };
                let task = self.task.clone();
                running.push(async move {
                    let started = Instant::now();
                    let result = async {
                        let resp = origin.piece(offset, len).await?;
                        BodyReader::new(resp.bytes_stream())
                            .write_piece(
                                &task,
                                offset,
                                len,
                                &ctx.download_limiter,
                                ctx.config.piece_timeout,
                            )
                            .await
                    }
                    .await;
                    (n, attempt, len, started.elapsed(), result)
                });
            }
            use futures_util::StreamExt as _;
            let next = tokio::select! {
                next = running.next() => next,
                // Drain scheduler messages so its stream never backs up; nothing there changes
                // what an origin fetch does.
                _ = link.next() => continue,
            };
            let Some((n, attempt, len, cost, result)) = next else {
                break;
            };
            match result {
                Ok(digest) => self.origin_piece_done(link, n, digest, len, cost).await?,
                Err(PieceError::Storage(e)) => return Err(storage_failure(e)),
                Err(e) if attempt < ORIGIN_ATTEMPTS => {
                    tracing::warn!(piece = n, attempt, error = %e, "origin piece failed; retrying");
                    retry.push((n, attempt + 1));
                }
                Err(e) => {
                    let msg =
                        format!("piece {n} from the origin failed {ORIGIN_ATTEMPTS} times: {e}");
                    link.send(PeerMsg::Failed(pb::DownloadFailed {
                        message: msg.clone(),
                        origin_status: 0,
                    }));
                    return Err(TaskFailure::Other(msg));
                }
            }
        }
        Ok(())
    }

    async fn origin_piece_done(
        &self,
        link: &Link,
        n: u32,
        digest: PieceDigest,
        len: u64,
        cost: Duration,
    ) -> Result<(), TaskFailure> {
        self.task.commit_piece(n, digest, ByteSource::Origin, len);
        self.ctx.metrics.downloaded("origin", len);
        self.ctx.metrics.piece("origin", "ok");
        link.send(PeerMsg::PieceFinished(pb::PieceFinished {
            number: n,
            digest: digest.as_bytes().to_vec(),
            source: pb::PieceSource::Origin as i32,
            parent_peer_id: String::new(),
            length: len,
            cost_micros: u64::try_from(cost.as_micros()).unwrap_or(u64::MAX),
        }));
        self.task.save_if_due().await.map_err(storage_failure)
    }

    /// All pieces are in: verify the whole object when its digest is known, then report.
    async fn complete(&self, link: &Link) -> Result<(), TaskFailure> {
        let digest = self.task.state().object_digest.clone();
        if let Some(want) = digest {
            let path = self.task.data_path.clone();
            let got = tokio::task::spawn_blocking(move || sha256_file(&path))
                .await
                .map_err(|e| TaskFailure::Other(e.to_string()))?
                .map_err(|e| TaskFailure::Other(format!("cannot read back the object: {e}")))?;
            if got != want.sha256_hex() {
                let msg = format!("object digest mismatch: expected {want}, got sha256:{got}");
                tracing::error!(%msg, "deleting the task");
                link.send(PeerMsg::Failed(pb::DownloadFailed {
                    message: msg.clone(),
                    origin_status: 0,
                }));
                self.ctx.store.remove(&self.task.id).await;
                return Err(TaskFailure::Other(msg));
            }
        }
        // The sidecar must say complete before anyone is told so; if it cannot be written, the
        // task is not complete anywhere, in memory included.
        self.task.state().complete = true;
        if let Err(e) = self.task.save().await {
            self.task.state().complete = false;
            return Err(storage_failure(e));
        }
        link.send(PeerMsg::Finished(pb::DownloadFinished {}));
        Ok(())
    }
}

fn storage_failure(e: StorageError) -> TaskFailure {
    TaskFailure::Other(format!("storage: {e}"))
}

/// Low-cardinality label for the back-to-source metric.
fn reason_label(reason: &str) -> &'static str {
    if reason.starts_with("scheduler:") {
        "scheduled"
    } else if reason.contains("unreachable") || reason.contains("lost") {
        "scheduler_unavailable"
    } else if reason.contains("no scheduler") {
        "no_scheduler"
    } else {
        "stalled"
    }
}

fn join_host_port(ip: &str, port: u32) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
