//! The conductor drives one download of one task on this peer to completion.
//!
//! 1. Register with the scheduler that owns the task (failing over along the ring). If none
//!    answers within `schedule_timeout`, fetch from the origin directly: P2P failing must never
//!    fail the download.
//! 2. Follow the scheduler (`p2p.rs`, a thin driver of the pure [`super::picker::Picker`]):
//!    take the layout and authoritative piece digests it relays and the neighbours it links
//!    this peer to, and keep `concurrent_pieces` pieces in flight across them as the picker
//!    decides. Every peer piece is checked against the scheduler's digest before its bit is
//!    set; a neighbour that sends a bad piece is dropped and reported, and the piece is
//!    fetched elsewhere.
//! 3. When told to go back to source, when the stream is lost with nothing to go on, or when no
//!    progress happens for too long, fetch the missing pieces from the origin by ranged GETs,
//!    reporting each piece's digest so others can verify it.
//! 4. With a whole-object digest (registry blob URLs name one), verify the file before the task
//!    is marked complete; a mismatch deletes it.

use std::sync::Arc;
use std::time::Duration;

use df_core::api::ByteSource;
use df_core::ids::{PeerId, PieceDigest};
use df_core::piece::PieceLayout;
use df_proto::scheduler::v1 as pb;
use pb::peer_request::Request as PeerMsg;
use pb::peer_response::Response as PeerReply;
use sha2::Digest as _;
use tokio::time::Instant;

use super::DownloadRequest;
pub(super) use super::link::Link;
use super::origin::{FirstResponse, Origin};
use super::p2p::P2pEnd;
use super::piece_io::{BodyReader, PieceError};
use crate::download::Engine;
use crate::storage::{StorageError, StoredTask, TaskFailure};

/// Tries of one piece from the origin: with [`origin_backoff`] between them, a piece rides
/// out about 8.5 s of origin errors (a registry's brief 503s, a restarting backend) before
/// the download fails.
const ORIGIN_ATTEMPTS: u32 = 10;

/// The wait before try `attempt` (1-based) of a piece from the origin, before jitter: none
/// before the first, 0.5 s before the second, then 1 s. Not doubling: an origin back from an
/// outage is found within a second (doubling to 4 s found it up to 2.5 s late, the tail of
/// `df-bench chaos`), and one request a second per piece in flight does not hammer it.
fn origin_backoff(attempt: u32) -> Duration {
    match attempt {
        0 | 1 => Duration::ZERO,
        2 => Duration::from_millis(500),
        _ => Duration::from_secs(1),
    }
}

/// [`origin_backoff`] spread by ±25 %, so the pieces that failed together do not retry
/// together.
fn jittered(wait: Duration) -> Duration {
    wait.mul_f64(0.75 + fastrand::f64() / 2.0)
}

pub struct Conductor {
    pub ctx: Arc<Engine>,
    pub task: Arc<StoredTask>,
    pub req: DownloadRequest,
    pub peer_id: PeerId,
}

/// The client's request headers a registration carries, and whether credentials were kept
/// back. Credentials go to the scheduler (which hands them to the seed it asks, for that one
/// fetch) only over the cluster identity's mutual TLS; on the plaintext opt-out they stay on
/// this node and the registration says so, and the scheduler then has a peer with them fetch
/// from the origin rather than a seed.
fn registration_headers(headers: &[(String, String)], plaintext: bool) -> (Vec<pb::Header>, bool) {
    let mut withheld = false;
    let kept = headers
        .iter()
        .filter(|(k, _)| super::origin::forwardable(k))
        .filter(|(k, _)| {
            let keep_back = plaintext && df_core::relayed::is_credential(k);
            withheld |= keep_back;
            !keep_back
        })
        .map(|(k, v)| pb::Header {
            name: k.clone(),
            value: v.clone(),
        })
        .collect();
    (kept, withheld)
}

impl Conductor {
    pub async fn run(self) -> Result<(), TaskFailure> {
        if self.task.is_complete() {
            return Ok(());
        }
        let ctx = self.ctx.clone();
        if ctx.schedulers.is_empty() {
            return self
                .fetch_from_origin(&mut Link::none(), "no scheduler configured")
                .await;
        }
        let (headers, credentials_withheld) =
            registration_headers(&self.req.headers, ctx.config.tls.is_plaintext());
        let register = pb::RegisterPeer {
            task_id: self.task.id.to_string(),
            peer_id: self.peer_id.to_string(),
            host_id: ctx.host_info.host_id.clone(),
            url: self.req.url.clone(),
            headers,
            piece_length: self.req.piece_length.unwrap_or(0),
            digest: self
                .req
                .digest
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            content_path: self.task.data_path.display().to_string(),
            credentials_withheld,
            awaits_fetcher: self.req.awaits_fetcher,
            seed: self.req.seed,
            host: Some(ctx.host_info.clone()),
            resume: None,
        };
        let opened = tokio::time::timeout(
            ctx.config.schedule_timeout,
            ctx.schedulers
                .open_peer_stream(&self.task.id, register.clone()),
        )
        .await;
        match opened {
            Ok(Some(stream)) => {
                tracing::debug!(scheduler = %stream.scheduler, "registered with scheduler");
                let mut link =
                    Link::new(stream, ctx.schedulers.clone(), self.task.clone(), register);
                match self.p2p(&mut link, Vec::new()).await? {
                    P2pEnd::Complete => self.complete(&mut link).await,
                    P2pEnd::Origin(reason) => self.fetch_from_origin(&mut link, &reason).await,
                }
            }
            _ => {
                tracing::warn!("no scheduler answered; fetching from the origin");
                self.fetch_from_origin(&mut Link::none(), "scheduler unreachable")
                    .await
            }
        }
    }

    /// Records where the bytes come from (for `X-Dragonfly-Source`): seeds when every
    /// neighbour is a seed, peers otherwise; the origin once it was used.
    pub(super) fn note_source(&self, only_seeds: bool) {
        let source = if only_seeds {
            ByteSource::Seed
        } else {
            ByteSource::Peer
        };
        let mut st = self.task.state();
        if st.source != Some(ByteSource::Origin) {
            st.source = Some(source);
        }
    }

    pub(super) async fn set_layout(
        &self,
        layout: PieceLayout,
        headers: Vec<(String, String)>,
        link: &Link,
    ) -> Result<(), TaskFailure> {
        // A layout from the origin or the scheduler that this peer will not hold: the client is
        // served straight from the origin instead (as for an object that does not fit).
        if let Err(e) = PieceLayout::bounded(
            layout.content_length,
            Some(layout.piece_length),
            self.ctx.config.max_content_length,
        ) {
            let msg = format!("not cached: {e} (download.max_content_length)");
            link.send(PeerMsg::Failed(pb::DownloadFailed {
                message: msg.clone(),
                origin_status: 0,
            }));
            return Err(TaskFailure::NoSpace(msg));
        }
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
        link.set_from_origin();
        tracing::info!(reason, "fetching from the origin");
        ctx.metrics.went_back_to_source(reason_label(reason));
        self.task.state().source = Some(ByteSource::Origin);
        let origin = self.origin();
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
            // The origin answered with the object: the client's credentials (if any) are
            // cleared, and the object is private, before any client can see the layout.
            crate::access::fetched_with(&self.task, &self.req.headers);
            self.set_layout(layout, headers.clone(), link).await?;
            link.send_metadata(pb::TaskMetadata {
                content_length: layout.content_length,
                piece_length: layout.piece_length,
                headers: headers
                    .into_iter()
                    .map(|(name, value)| pb::Header { name, value })
                    .collect(),
                private: self.task.state().private,
                ranged: !whole,
            });
            // Keep the pieces the first body carries: all of them for a 200, the whole pieces
            // in its range for a 206.
            let mut reader = BodyReader::new(body.bytes_stream());
            let mut offset = 0;
            for n in 0..layout.piece_count() {
                let Some((_, len)) = layout.range(n) else {
                    break;
                };
                if offset + len > first_len {
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
        let kept = self
            .remaining_from_origin(link, &origin, Sharing::Allowed)
            .await?;
        if !self.task.layout().is_some_and(|l| self.holds_all(l)) {
            // The scheduler gave this reader a share and other readers the rest: take it from
            // the peers, or from the origin after all if they do not deliver it.
            if let P2pEnd::Origin(reason) = self.p2p(link, kept).await? {
                tracing::info!(reason, "the rest of the object from the origin");
                self.remaining_from_origin(link, &origin, Sharing::Off)
                    .await?;
            }
        }
        crate::access::fetched_with(&self.task, &self.req.headers);
        self.complete(link).await
    }

    pub(super) fn origin(&self) -> Origin<'_> {
        Origin {
            client: self.ctx.origin.fetch(&self.req.url),
            url: &self.req.url,
            headers: &self.req.headers,
        }
    }

    /// Try `attempt` of piece `n` from the origin, after that try's backoff: the piece stored
    /// and its digest, or why not.
    pub(super) async fn origin_piece(
        &self,
        origin: &Origin<'_>,
        layout: PieceLayout,
        n: u32,
        attempt: u32,
    ) -> OriginPiece {
        tokio::time::sleep(jittered(origin_backoff(attempt))).await;
        let started = Instant::now();
        let Some((offset, len)) = layout.range(n) else {
            let e = PieceError::Transfer(format!("piece {n} is outside the layout"));
            return OriginPiece {
                n,
                attempt,
                len: 0,
                cost: Duration::ZERO,
                result: Err(e),
            };
        };
        let result = async {
            let resp = origin.piece(offset, len).await?;
            BodyReader::new(resp.bytes_stream())
                .write_piece(
                    &self.task,
                    offset,
                    len,
                    &self.ctx.download_limiter,
                    self.ctx.config.piece_timeout,
                )
                .await
        }
        .await;
        OriginPiece {
            n,
            attempt,
            len,
            cost: started.elapsed(),
            result,
        }
    }

    /// What to do with a piece that failed from the origin: try again later, or give up
    /// (reported to the scheduler) once it failed [`ORIGIN_ATTEMPTS`] times.
    pub(super) fn origin_retry(
        &self,
        link: &Link,
        n: u32,
        attempt: u32,
        error: PieceError,
    ) -> Result<(u32, u32), TaskFailure> {
        match error {
            PieceError::Storage(e) => Err(storage_failure(e)),
            e if attempt < ORIGIN_ATTEMPTS => {
                tracing::warn!(piece = n, attempt, error = %e, "origin piece failed; retrying");
                Ok((n, attempt + 1))
            }
            e => {
                let msg = format!("piece {n} from the origin failed {ORIGIN_ATTEMPTS} times: {e}");
                link.send(PeerMsg::Failed(pb::DownloadFailed {
                    message: msg.clone(),
                    origin_status: 0,
                }));
                Err(TaskFailure::Other(msg))
            }
        }
    }

    /// Fetches the missing pieces from the origin, `concurrent_pieces` at a time, in order.
    /// With [`Sharing::Allowed`] only those of the share the scheduler gives this reader (all
    /// of them until it gives one). Returns what the scheduler said meanwhile that the P2P
    /// phase needs for the rest: neighbours, digests, the share.
    async fn remaining_from_origin(
        &self,
        link: &mut Link,
        origin: &Origin<'_>,
        sharing: Sharing,
    ) -> Result<Vec<PeerReply>, TaskFailure> {
        let Some(layout) = self.task.layout() else {
            return Err(TaskFailure::Other(
                "no layout after the first origin request".into(),
            ));
        };
        let mut kept = KeptReplies::default();
        let missing: Vec<u32> = self.task.state().bitmap.missing().collect();
        let mut queue = missing.into_iter();
        let mut retry: Vec<(u32, u32)> = Vec::new();
        let mut running = futures_util::stream::FuturesUnordered::new();
        loop {
            while running.len() < self.ctx.config.concurrent_pieces {
                let next = retry.pop().or_else(|| {
                    queue
                        .by_ref()
                        .find(|n| kept.share.as_ref().is_none_or(|s| s.contains(n)))
                        .map(|n| (n, 1))
                });
                let Some((n, attempt)) = next else {
                    break;
                };
                running.push(self.origin_piece(origin, layout, n, attempt));
            }
            use futures_util::StreamExt as _;
            let next = tokio::select! {
                next = running.next() => next,
                reply = link.next() => {
                    if sharing == Sharing::Allowed {
                        kept.keep(reply);
                    }
                    continue;
                }
            };
            let Some(done) = next else {
                break;
            };
            match done.result {
                Ok(digest) => {
                    self.origin_piece_done(link, done.n, digest, done.len, done.cost)
                        .await?;
                }
                Err(e) => retry.push(self.origin_retry(link, done.n, done.attempt, e)?),
            }
        }
        Ok(kept.into_replies())
    }

    pub(super) async fn origin_piece_done(
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
    async fn complete(&self, link: &mut Link) -> Result<(), TaskFailure> {
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
        link.finish(PeerMsg::Finished(pb::DownloadFinished {}));
        Ok(())
    }
}

/// One try of one piece from the origin.
pub(super) struct OriginPiece {
    pub n: u32,
    pub attempt: u32,
    pub len: u64,
    pub cost: Duration,
    pub result: Result<PieceDigest, PieceError>,
}

/// Whether an origin fetch keeps to the share the scheduler gives (the first pass of the
/// reader it appointed) or takes every missing piece (the fallback when peers did not deliver).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sharing {
    Allowed,
    Off,
}

/// What the scheduler says while a reader fetches its share, merged so it stays bounded: the
/// neighbours by peer (the scheduler bounds a task's peers), the digests by piece, the
/// latest share.
#[derive(Default)]
struct KeptReplies {
    parents: std::collections::HashMap<String, pb::Parent>,
    digests: std::collections::BTreeMap<u32, Vec<u8>>,
    share: Option<std::ops::Range<u32>>,
}

impl KeptReplies {
    fn keep(&mut self, reply: Option<PeerReply>) {
        match reply {
            Some(PeerReply::Parents(p)) => {
                for parent in p.parents {
                    self.parents.insert(parent.peer_id.clone(), parent);
                }
            }
            Some(PeerReply::Digests(d)) => {
                for p in d.pieces {
                    if p.number < df_core::piece::MAX_PIECE_COUNT {
                        self.digests.insert(p.number, p.digest);
                    }
                }
            }
            Some(PeerReply::OriginShare(s)) => self.share = Some(s.first..s.end),
            _ => {}
        }
    }

    fn into_replies(self) -> Vec<PeerReply> {
        let mut out = vec![
            PeerReply::Parents(pb::Parents {
                parents: self.parents.into_values().collect(),
            }),
            PeerReply::Digests(pb::PieceDigests {
                pieces: self
                    .digests
                    .into_iter()
                    .map(|(number, digest)| pb::PieceDigest { number, digest })
                    .collect(),
            }),
        ];
        if let Some(s) = self.share {
            out.push(PeerReply::OriginShare(pb::OriginShare {
                first: s.start,
                end: s.end,
            }));
        }
        out
    }
}

pub(super) fn storage_failure(e: StorageError) -> TaskFailure {
    match e {
        StorageError::Stopping => TaskFailure::Stopping,
        e => TaskFailure::Other(format!("storage: {e}")),
    }
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

pub(super) fn join_host_port(ip: &str, port: u32) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_reach_the_scheduler_only_over_mutual_tls() {
        let headers = vec![
            ("Authorization".to_owned(), "Bearer t".to_owned()),
            ("Cookie".to_owned(), "c=1".to_owned()),
            ("Accept".to_owned(), "*/*".to_owned()),
            ("Host".to_owned(), "x".to_owned()),
        ];
        let names = |h: &[pb::Header]| h.iter().map(|h| h.name.clone()).collect::<Vec<_>>();
        let (tls, withheld) = registration_headers(&headers, false);
        assert_eq!(names(&tls), ["Authorization", "Cookie", "Accept"]);
        assert!(!withheld);
        let (plain, withheld) = registration_headers(&headers, true);
        assert_eq!(names(&plain), ["Accept"]);
        assert!(withheld);
    }

    #[test]
    fn origin_retries_back_off_long_enough_to_ride_out_a_short_outage() {
        assert_eq!(origin_backoff(1), Duration::ZERO);
        assert_eq!(origin_backoff(2), Duration::from_millis(500));
        assert_eq!(origin_backoff(5), Duration::from_secs(1));
        // The shortest jitter still outlasts `df-bench chaos`'s 5 s outage.
        let total: Duration = (1..=ORIGIN_ATTEMPTS).map(origin_backoff).sum();
        assert!(total.mul_f64(0.75) >= Duration::from_secs(6), "{total:?}");
        // Found within about a second of coming back.
        assert!(origin_backoff(u32::MAX) <= Duration::from_secs(1));
        for _ in 0..100 {
            let j = jittered(Duration::from_secs(1));
            assert!((Duration::from_millis(750)..=Duration::from_millis(1250)).contains(&j));
        }
    }
}
