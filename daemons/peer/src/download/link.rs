//! A download's link to its scheduler, kept up across a scheduler restart.
//!
//! When the stream ends (the scheduler said `Reconnect`, or it failed), the link registers
//! the download again in the background, with what the peer already holds
//! (`RegisterPeer.resume`: layout, held pieces and their digests, whether it fetches from the
//! origin), first at the same address and then along the ring ([`SchedulerClient`]). The
//! conductor keeps working meanwhile: reports sent while no stream is up are dropped, and
//! once a stream is back the origin pieces that landed in between are reported on it, so the
//! new scheduler has every digest. Only when no scheduler takes the download within
//! [`REJOIN_FOR`] does `next` say the stream is gone, as it did before. A download that ends
//! while the link registers again still reaches the new scheduler ([`Link::finish`]).
//!
//! Invariant: `next` is cancel-safe (the re-registration runs in its own task, polled through
//! its handle), so the conductor may race it against piece fetches in `select!`.

use std::sync::Arc;
use std::time::Duration;

use df_core::piece::{Bitmap, MAX_ORIGIN_READERS};
use df_proto::scheduler::v1 as pb;
use futures_util::FutureExt as _;
use pb::peer_request::Request as PeerMsg;
use pb::peer_response::Response as PeerReply;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::announcer::{PeerStream, SchedulerClient};
use crate::reconnect::jittered;
use crate::storage::StoredTask;

/// How long a download keeps trying to register again before it carries on without one.
pub(crate) const REJOIN_FOR: Duration = Duration::from_secs(30);

/// What it takes to register the download again.
struct Rejoin {
    schedulers: Arc<SchedulerClient>,
    task: Arc<StoredTask>,
    register: pb::RegisterPeer,
}

/// The scheduler stream, if there still is one.
pub(crate) struct Link {
    stream: Option<PeerStream>,
    rejoin: Option<Arc<Rejoin>>,
    reopening: Option<JoinHandle<Option<(PeerStream, Bitmap)>>>,
    /// What the scheduler appointed this download to, named when it registers again.
    role: OriginRole,
    /// Registered again, and told no share since: the next share may be one the new
    /// scheduler restored, which has none of the share's digests yet. Once told one, the
    /// scheduler takes this reader's digests as they come.
    rejoined: bool,
}

/// What this download reads from the origin for the swarm, as its schedulers told it.
#[derive(Debug, Clone, Default)]
struct OriginRole {
    /// It fetches from the origin (set when it goes back to source).
    from_origin: bool,
    /// Its origin answered a range request with a range (said in its `Metadata`).
    ranged: bool,
    /// Its origin share, the latest `OriginShare`.
    share: Option<std::ops::Range<u32>>,
    /// The task's origin readers, the latest `OriginReaders` (the authority's alone).
    readers: Vec<pb::OriginReader>,
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(h) = self.reopening.take() {
            h.abort();
        }
    }
}

impl Link {
    /// No scheduler: every report goes nowhere and `next` never returns.
    pub(crate) fn none() -> Self {
        Self {
            stream: None,
            rejoin: None,
            reopening: None,
            role: OriginRole::default(),
            rejoined: false,
        }
    }

    /// `stream`, re-registered with `register` (plus what the task holds by then) if it ends.
    pub(crate) fn new(
        stream: PeerStream,
        schedulers: Arc<SchedulerClient>,
        task: Arc<StoredTask>,
        register: pb::RegisterPeer,
    ) -> Self {
        Self {
            stream: Some(stream),
            rejoin: Some(Arc::new(Rejoin {
                schedulers,
                task,
                register,
            })),
            reopening: None,
            role: OriginRole::default(),
            rejoined: false,
        }
    }

    /// From now on this download fetches from the origin itself.
    pub(crate) fn set_from_origin(&mut self) {
        self.role.from_origin = true;
    }

    pub(crate) fn send(&self, msg: PeerMsg) {
        if let Some(s) = &self.stream {
            s.send(msg);
        }
    }

    /// Sends the layout this download learned from the origin, kept for a registration again.
    pub(crate) fn send_metadata(&mut self, metadata: pb::TaskMetadata) {
        self.role.ranged = metadata.ranged;
        self.send(PeerMsg::Metadata(metadata));
    }

    /// The next instruction. `None` once, when the stream is gone for good.
    pub(crate) async fn next(&mut self) -> Option<PeerReply> {
        loop {
            if let Some(s) = &mut self.stream {
                match s.next().await {
                    Some(PeerReply::Reconnect(r)) => {
                        tracing::info!(scheduler = %s.scheduler, reason = %r.reason, "scheduler is going away; registering the download again");
                        let lost = s.scheduler.clone();
                        self.stream = None;
                        self.start_rejoin(lost);
                    }
                    // Kept for the next registration; nothing else reads it.
                    Some(PeerReply::OriginReaders(r)) => {
                        self.role.readers = r.readers;
                        self.role.readers.truncate(MAX_ORIGIN_READERS);
                    }
                    Some(PeerReply::OriginShare(share)) => {
                        self.role.share = Some(share.first..share.end);
                        if std::mem::take(&mut self.rejoined) {
                            self.report_share();
                        }
                        return Some(PeerReply::OriginShare(share));
                    }
                    Some(reply) => return Some(reply),
                    None => {
                        let lost = s.scheduler.clone();
                        self.stream = None;
                        if !self.start_rejoin(lost) {
                            return None;
                        }
                    }
                }
            } else if self.reopening.is_some() {
                if !self.reopened().await {
                    return None;
                }
            } else {
                return std::future::pending().await;
            }
        }
    }

    /// Waits for the registration in flight; true once a stream is up again, with the origin
    /// pieces that landed meanwhile reported on it. Cancel-safe, as `next`.
    async fn reopened(&mut self) -> bool {
        let Some(handle) = &mut self.reopening else {
            return self.stream.is_some();
        };
        let reopened = handle.await;
        self.reopening = None;
        match reopened {
            Ok(Some((stream, reported))) => {
                tracing::info!(scheduler = %stream.scheduler, "download registered again");
                self.stream = Some(stream);
                self.rejoined = true;
                self.report_since(&reported);
                true
            }
            _ => {
                tracing::warn!("no scheduler took the download again; carrying on without one");
                self.rejoin = None;
                false
            }
        }
    }

    /// Sends the download's last report (`Finished`). When the link is registering again
    /// right now, the registration is seen through in the background (bounded by
    /// [`REJOIN_FOR`]) and `last` follows the origin pieces that landed meanwhile: dropping
    /// the link with the download would abort it, and the new scheduler would never get the
    /// digests of the last origin pieces (an origin fetcher finishing during a scheduler
    /// restart left the whole swarm without them, and every peer stalled into the origin).
    pub(crate) fn finish(&mut self, last: PeerMsg) {
        // A `Reconnect` (or the stream's end) may be waiting unread: the loop that polled
        // `next` has ended. Seeing it starts the registration again.
        while let Some(Some(_)) = self.next().now_or_never() {}
        if self.reopening.is_none() {
            self.send(last);
            return;
        }
        let mut rest = Self {
            stream: None,
            rejoin: self.rejoin.take(),
            reopening: self.reopening.take(),
            role: std::mem::take(&mut self.role),
            rejoined: false,
        };
        tokio::spawn(
            async move {
                if rest.reopened().await {
                    rest.send(last);
                }
            }
            .in_current_span(),
        );
    }

    /// Starts registering again in the background; false when this link cannot.
    fn start_rejoin(&mut self, lost: String) -> bool {
        let Some(rejoin) = self.rejoin.clone() else {
            return false;
        };
        let role = self.role.clone();
        self.reopening = Some(tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + REJOIN_FOR;
            let mut attempt = 0u32;
            loop {
                tokio::time::sleep(jittered(attempt)).await;
                let (register, reported) = resumed(&rejoin, &role);
                if let Some(stream) = rejoin
                    .schedulers
                    .reopen_peer_stream(&rejoin.task.id, register, &lost, attempt)
                    .await
                {
                    return Some((stream, reported));
                }
                if tokio::time::Instant::now() >= deadline {
                    return None;
                }
                attempt = attempt.saturating_add(1);
            }
        }));
        true
    }

    /// Reports the origin pieces that landed after `reported` was taken: the new scheduler
    /// needs their digests to relay. Pieces from peers need no digest, and the scheduler's
    /// copy of this peer's bitmap catches up with the next piece.
    fn report_since(&self, reported: &Bitmap) {
        if self.role.from_origin {
            self.report_held(|n| !reported.get(n));
        }
    }

    /// Reports every held piece of the share: a scheduler that restored the share after a
    /// restart (from the authority's word) takes their digests only from now on, and the
    /// pieces this helper read before went unheard. Once per rejoin, for its first share.
    fn report_share(&self) {
        if let Some(share) = self.role.share.clone() {
            self.report_held(|n| share.contains(&n));
        }
    }

    /// Reports the held pieces that `wanted` picks as finished from the origin, with digests.
    fn report_held(&self, wanted: impl Fn(u32) -> bool) {
        let Some(rejoin) = &self.rejoin else {
            return;
        };
        let st = rejoin.task.state();
        let layout = st.layout;
        for n in st.bitmap.ones().filter(|&n| wanted(n)) {
            let (Some(Some(digest)), Some((_, len))) =
                (st.digests.get(n as usize), layout.and_then(|l| l.range(n)))
            else {
                continue;
            };
            self.send(PeerMsg::PieceFinished(pb::PieceFinished {
                number: n,
                digest: digest.as_bytes().to_vec(),
                source: pb::PieceSource::Origin as i32,
                parent_peer_id: String::new(),
                length: len,
                cost_micros: 0,
            }));
        }
    }
}

/// The registration with what the task holds now, and the pieces it names.
fn resumed(rejoin: &Rejoin, role: &OriginRole) -> (pb::RegisterPeer, Bitmap) {
    let st = rejoin.task.state();
    let metadata = st.layout.map(|l| pb::TaskMetadata {
        content_length: l.content_length,
        piece_length: l.piece_length,
        headers: st
            .response_headers
            .iter()
            .map(|(name, value)| pb::Header {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        private: st.private,
        ranged: role.ranged,
    });
    let pieces = st
        .bitmap
        .ones()
        .filter_map(|n| {
            st.digests
                .get(n as usize)
                .copied()
                .flatten()
                .map(|d| pb::PieceDigest {
                    number: n,
                    digest: d.as_bytes().to_vec(),
                })
        })
        .collect();
    let register = pb::RegisterPeer {
        resume: Some(pb::ResumedDownload {
            metadata,
            pieces,
            from_origin: role.from_origin,
            readers: role.readers.clone(),
        }),
        ..rejoin.register.clone()
    };
    (register, st.bitmap.clone())
}
