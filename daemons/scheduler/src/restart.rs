//! Restarts without a stranded fleet: how this scheduler goes away, and how a download that
//! lost another scheduler carries on here.
//!
//! Going away ([`Scheduler::drain_streams`], at SIGTERM): every host stream and every download
//! stream gets a `Reconnect` message and this side lets go of it, so each peer reconnects at
//! once (to this address when the scheduler comes back, or the next on the ring) instead of
//! waiting on a stream that a dying process would keep open. The gRPC service refuses new
//! streams from then on.
//!
//! Coming back ([`resume`]): a download registering again says what it already holds. Its
//! pieces become its bitmap here. When it fetches from the origin it may be the task's
//! authority again ([`crate::authority::resumed_fetcher_speaks_for_task`]): its layout and
//! piece digests are taken, as its `PieceFinished` reports from the origin would have been,
//! and relayed to the task's other downloaders, so they keep verifying pieces. A download
//! fetching from the peers never speaks for the task.
//!
//! Origin shares outlive the scheduler through the authority: it is told every reader and
//! share as they change (`OriginReaders`) and names them when it registers again. Each named
//! reader gets its share back here, on its own host only, when it registers (before or after
//! the authority), and is told it again, which makes it report what it read of it; until then
//! its share is kept for it ([`crate::model::AwaitedReader`]), and after `seed_wait` without
//! it the share goes to a new helper. The authority's word is enough: it already defines the
//! task's layout and every digest. Without the names (a crash, an authority that is gone) the
//! helpers' digests are not taken and the pieces they read are read again.

use std::time::Instant;

use df_core::ids::{HostId, PeerId, PieceDigest};
use df_core::piece::{Bitmap, MAX_ORIGIN_READERS};
use df_proto::scheduler::v1 as pb;
use pb::peer_response::Response as PeerReply;

use crate::admission;
use crate::authority::{self, Appointment};
use crate::config::Limits;
use crate::model::{AwaitedReader, PeerState, Task};
use crate::scheduling::Scheduler;

impl Scheduler {
    /// Tells every connected host and download to reconnect elsewhere and drops this side of
    /// their streams. Returns (hosts, downloads) told.
    pub(crate) fn drain_streams(&self, reason: &str) -> (usize, usize) {
        let mut state = self.lock();
        let mut hosts = 0;
        for host in state.hosts.values_mut() {
            if let Some(tx) = host.commands.take() {
                let msg = pb::HostResponse {
                    response: Some(pb::host_response::Response::Reconnect(pb::Reconnect {
                        reason: reason.to_owned(),
                    })),
                };
                hosts += usize::from(tx.send(msg));
            }
            host.connected = false;
        }
        let mut downloads = 0;
        for task in state.tasks.values_mut() {
            for peer in task.peers.values_mut() {
                if let Some(tx) = peer.tx.take() {
                    let msg = pb::PeerResponse {
                        response: Some(PeerReply::Reconnect(pb::Reconnect {
                            reason: reason.to_owned(),
                        })),
                    };
                    downloads += usize::from(tx.send(msg));
                }
            }
        }
        (hosts, downloads)
    }
}

/// Applies what a re-registering download (`peer`, already in `task.peers`) holds. Returns
/// whether it is such a download: it is then not scheduled at once. The neighbours it had
/// are re-registering too (and the seed's host stream reconnecting), so it waits for the
/// tick to link it; only after `seed_wait` with nobody does the tick send it to the origin.
/// One that fetches from the origin is marked so; a reader the authority named gets its
/// share back.
pub(crate) fn resume(
    task: &mut Task,
    (peer, host): (&PeerId, &HostId),
    resume: Option<&pb::ResumedDownload>,
    seed_host: bool,
    limits: &Limits,
    now: Instant,
) -> bool {
    let Some(resume) = resume else {
        return false;
    };
    if awaited_reader_back(task, peer, host, now) {
        crate::scheduling::tell_authority(task);
    }
    let task_has_authority = task.peers.values().any(|p| p.appointment.speaks_for_task())
        || task.digests.iter().any(Option::is_some);
    let authority = resume.from_origin
        && authority::resumed_fetcher_speaks_for_task(seed_host, task_has_authority);
    if authority {
        learn_from_origin_fetcher(task, peer, resume, limits);
    }
    let count = task.piece_count();
    if let Some(p) = task.peers.get_mut(peer) {
        let mut bitmap = Bitmap::new(count);
        for piece in &resume.pieces {
            if piece.number < count {
                bitmap.set(piece.number);
            }
        }
        p.bitmap = bitmap;
        if resume.from_origin {
            p.state = PeerState::BackToSource;
        }
        if authority {
            p.appointment = Appointment::Appointed;
        }
    }
    if authority {
        name_readers(task, peer, &resume.readers, now);
    }
    true
}

/// The readers the authority (`authority`) named: each already registered here is given its
/// share again, the others are awaited. Ignored when this scheduler shares the task out
/// itself already, or when the names do not fit the layout.
fn name_readers(task: &mut Task, authority: &PeerId, named: &[pb::OriginReader], now: Instant) {
    let count = task.piece_count();
    let own_shares = task
        .peers
        .values()
        .any(|p| p.id != *authority && p.origin_share.is_some());
    if named.is_empty() || count == 0 || own_shares || !task.awaited_readers.is_empty() {
        return;
    }
    let mut readers: Vec<&pb::OriginReader> = named
        .iter()
        .filter(|r| r.first < r.end && r.end <= count && !r.peer_id.is_empty())
        .take(MAX_ORIGIN_READERS)
        .collect();
    readers.sort_by_key(|r| r.first);
    // Shares never overlap; an entry that would is dropped rather than read twice.
    let mut covered = 0;
    readers.retain(|r| {
        let fits = r.first >= covered;
        covered = covered.max(r.end);
        fits
    });
    // The origin served ranges, or there would have been no shares.
    task.origin_ranged = true;
    for r in readers {
        let (id, host) = (
            PeerId::from(r.peer_id.clone()),
            HostId::from(r.host_id.clone()),
        );
        let share = r.first..r.end;
        let back = task
            .peers
            .get(&id)
            .is_some_and(|p| p.host_id == host && p.state.is_downloading());
        if back {
            crate::scheduling::give(task, &id, share, now);
        } else {
            // Not here yet, or its ID taken by another host: kept for it, and handed on
            // after `seed_wait` if it does not come.
            task.awaited_readers.push(AwaitedReader {
                peer: id,
                host,
                share,
                since: now,
            });
        }
    }
    tracing::info!(task_id = %task.id, %authority, awaited = task.awaited_readers.len(), "origin shares named by the resumed authority");
    crate::scheduling::tell_authority(task);
}

/// `peer` (on `host`) registered again: the share kept for it, if the authority named it.
/// It is told the share, and so reports what it read of it.
fn awaited_reader_back(task: &mut Task, peer: &PeerId, host: &HostId, now: Instant) -> bool {
    let Some(i) = task
        .awaited_readers
        .iter()
        .position(|a| a.peer == *peer && a.host == *host)
    else {
        return false;
    };
    let awaited = task.awaited_readers.swap_remove(i);
    tracing::info!(task_id = %task.id, peer_id = %peer, first = awaited.share.start, end = awaited.share.end, "origin share kept for a reader given back");
    crate::scheduling::give(task, peer, awaited.share, now);
    true
}

/// The awaited readers that did not come back within `wait`, taken off the task.
pub(crate) fn overdue_readers(
    task: &mut Task,
    wait: std::time::Duration,
    now: Instant,
) -> Vec<AwaitedReader> {
    let (overdue, kept) = std::mem::take(&mut task.awaited_readers)
        .into_iter()
        .partition(|a| now.duration_since(a.since) >= wait);
    task.awaited_readers = kept;
    overdue
}

/// Layout and digests from a download that fetches from the origin, relayed to the others.
fn learn_from_origin_fetcher(
    task: &mut Task,
    peer: &PeerId,
    resume: &pb::ResumedDownload,
    limits: &Limits,
) {
    if task.layout.is_none()
        && let Some(m) = resume.metadata.as_ref().filter(|m| m.content_length > 0)
        && let Ok(layout) = admission::layout(limits, m.content_length, m.piece_length)
    {
        task.set_layout(layout);
        task.response_headers = crate::scheduling::relayed_headers(m.headers.clone());
        task.private = m.private;
        let m = pb::TaskMetadata {
            headers: task.response_headers.clone(),
            ..m.clone()
        };
        for p in task.peers.values_mut() {
            if p.bitmap.len() != layout.piece_count() {
                p.bitmap = Bitmap::new(layout.piece_count());
            }
        }
        let reply = pb::PeerResponse {
            response: Some(PeerReply::Metadata(m)),
        };
        task.send_to_downloaders(Some(peer), &reply);
    }
    let mut learned = Vec::new();
    for p in &resume.pieces {
        if let (Some(slot @ None), Some(d)) = (
            task.digests.get_mut(p.number as usize),
            PieceDigest::from_slice(&p.digest),
        ) {
            *slot = Some(d);
            learned.push(p.clone());
        }
    }
    if !learned.is_empty() {
        let reply = pb::PeerResponse {
            response: Some(PeerReply::Digests(pb::PieceDigests { pieces: learned })),
        };
        task.send_to_downloaders(Some(peer), &reply);
    }
}

#[cfg(test)]
mod tests {
    use df_core::ids::TaskId;

    use super::*;
    use crate::config::Config;

    type Rx = crate::outbox::Inbox<pb::PeerResponse>;

    fn task_id() -> TaskId {
        TaskId::from_url("http://o/x", &Default::default()).expect("id")
    }

    /// Registers `name`'s download; a host named "seed" is a seed host.
    fn register(s: &Scheduler, name: &str, resume: Option<pb::ResumedDownload>) -> Rx {
        register_on(s, name, name, resume)
    }

    /// Registers `name`'s download from the host named `host`.
    fn register_on(
        s: &Scheduler,
        name: &str,
        host: &str,
        resume: Option<pb::ResumedDownload>,
    ) -> Rx {
        let (tx, rx) = crate::outbox::outbox(crate::outbox::DOWNLOAD_BOUND);
        let host_type = if host == "seed" {
            pb::HostType::Seed
        } else {
            pb::HostType::Normal
        };
        s.peer_register(
            pb::RegisterPeer {
                task_id: task_id().to_string(),
                peer_id: format!("peer-{name}"),
                url: "http://o/x".into(),
                seed: host == "seed",
                host: Some(pb::HostInfo {
                    host_id: format!("127.0.0.1-{host}"),
                    hostname: host.into(),
                    ip: "127.0.0.1".into(),
                    upload_port: 1,
                    upload_slots: 8,
                    host_type: host_type as i32,
                    ..Default::default()
                }),
                resume,
                ..Default::default()
            },
            tx,
        )
        .expect("registers");
        rx
    }

    fn replies(rx: &mut Rx) -> Vec<PeerReply> {
        let mut out = Vec::new();
        while let Ok(Ok(r)) = rx.try_recv() {
            out.extend(r.response);
        }
        out
    }

    fn resume(pieces: &[u32], from_origin: bool) -> pb::ResumedDownload {
        pb::ResumedDownload {
            metadata: Some(pb::TaskMetadata {
                content_length: 3 << 22,
                piece_length: 1 << 22,
                headers: vec![],
                private: true,
                ranged: false,
            }),
            pieces: pieces
                .iter()
                .map(|&n| pb::PieceDigest {
                    number: n,
                    digest: vec![n as u8; 32],
                })
                .collect(),
            from_origin,
            readers: vec![],
        }
    }

    /// What a seed that read pieces `held` names: itself for piece 0, the others as given.
    fn seed_naming(held: &[u32], readers: &[(&str, &str, u32, u32)]) -> pb::ResumedDownload {
        let mut r = resume(held, true);
        if let Some(m) = r.metadata.as_mut() {
            m.ranged = true;
        }
        r.readers = std::iter::once(("seed", "seed", 0, 1))
            .chain(readers.iter().copied())
            .map(|(peer, host, first, end)| pb::OriginReader {
                peer_id: format!("peer-{peer}"),
                host_id: format!("127.0.0.1-{host}"),
                first,
                end,
            })
            .collect();
        r
    }

    fn shares(got: &[PeerReply]) -> Vec<(u32, u32)> {
        got.iter()
            .filter_map(|r| match r {
                PeerReply::OriginShare(s) => Some((s.first, s.end)),
                _ => None,
            })
            .collect()
    }

    fn origin_piece(s: &Scheduler, name: &str, number: u32) {
        s.peer_message(
            &task_id(),
            &PeerId::from(format!("peer-{name}")),
            pb::peer_request::Request::PieceFinished(pb::PieceFinished {
                number,
                length: 1 << 22,
                source: pb::PieceSource::Origin as i32,
                digest: vec![0x40 + number as u8; 32],
                ..Default::default()
            }),
        );
    }

    #[test]
    fn a_resumed_seed_carries_on_and_the_helpers_it_names_keep_their_shares() {
        let s = Scheduler::new(Config::default());
        // A helper back before the seed: its report of a piece of its share is not taken,
        // nobody here appointed it.
        let mut early = register(&s, "a", Some(resume(&[], false)));
        let mut other = register(&s, "b", Some(resume(&[], false)));
        origin_piece(&s, "a", 1);
        assert!(crate::scheduling::tests::relayed_digests(&replies(&mut other)).is_empty());
        // The seed comes back fetching: it is not sent to the origin again (it would read
        // every missing piece, the helpers' shares too), and its names count.
        let mut seed = register(
            &s,
            "seed",
            Some(seed_naming(&[0], &[("a", "a", 1, 2), ("c", "c", 2, 3)])),
        );
        let to_seed = replies(&mut seed);
        replies(&mut other);
        assert!(
            !to_seed
                .iter()
                .any(|r| matches!(r, PeerReply::BackToSource(_))),
            "{to_seed:?}"
        );
        assert_eq!(
            shares(&replies(&mut early)),
            [(1, 2)],
            "told again, so it reports"
        );
        origin_piece(&s, "a", 1);
        assert_eq!(
            crate::scheduling::tests::relayed_digests(&replies(&mut other)),
            [1]
        );
        // A helper back after the seed gets its share at once; its digests count.
        let mut late = register(&s, "c", Some(resume(&[], false)));
        assert_eq!(shares(&replies(&mut late)), [(2, 3)]);
        origin_piece(&s, "c", 2);
        assert_eq!(
            crate::scheduling::tests::relayed_digests(&replies(&mut other)),
            [2]
        );
        s.with_state(|st| assert!(st.tasks[&task_id()].awaited_readers.is_empty()));
    }

    #[test]
    fn a_named_reader_counts_only_from_its_own_host() {
        let s = Scheduler::new(Config::default());
        let _seed = register(&s, "seed", Some(seed_naming(&[0], &[("a", "a", 1, 3)])));
        // Another host using the named reader's peer ID gets nothing, and its digests of
        // the share are not taken.
        let mut impostor = register_on(&s, "a", "mallory", Some(resume(&[], false)));
        let mut other = register(&s, "b", Some(resume(&[], false)));
        assert!(shares(&replies(&mut impostor)).is_empty());
        replies(&mut other);
        origin_piece(&s, "a", 1);
        assert!(crate::scheduling::tests::relayed_digests(&replies(&mut other)).is_empty());
        // The names are the authority's alone: a resumed peer naming readers is not heard.
        let mut named = resume(&[], false);
        named.readers = seed_naming(&[], &[("b", "b", 1, 3)]).readers;
        let _d = register(&s, "d", Some(named));
        assert!(shares(&replies(&mut other)).is_empty());
        // The share was kept for the named reader, which gets it from its own host.
        let mut real = register(&s, "a", Some(resume(&[], false)));
        assert_eq!(shares(&replies(&mut real)), [(1, 3)]);
    }

    #[test]
    fn a_named_reader_that_never_comes_back_hands_its_share_on() {
        let config = Config {
            seed_wait: std::time::Duration::ZERO,
            ..Config::default()
        };
        let s = Scheduler::new(config);
        let _seed = register(
            &s,
            "seed",
            Some(seed_naming(&[0], &[("gone", "gone", 1, 3)])),
        );
        let mut b = register(&s, "b", Some(resume(&[], false)));
        assert!(
            shares(&replies(&mut b)).is_empty(),
            "kept for the named reader"
        );
        s.tick();
        assert_eq!(shares(&replies(&mut b)), [(1, 3)]);
        s.with_state(|st| assert!(st.tasks[&task_id()].awaited_readers.is_empty()));
    }

    #[test]
    fn a_resumed_peer_waits_for_neighbours_instead_of_going_to_the_origin() {
        let s = Scheduler::new(Config::default());
        // No seed, nobody else: a new download would be sent to the origin at once.
        let mut rx = register(&s, "a", Some(resume(&[0], false)));
        let got = replies(&mut rx);
        assert!(
            !got.iter().any(|r| matches!(r, PeerReply::BackToSource(_))),
            "{got:?}"
        );
        // A peer fetching from the peers is not trusted for layout or digests.
        s.with_state(|st| {
            let task = st.tasks.get(&task_id()).expect("task");
            assert!(task.layout.is_none());
        });
    }

    #[test]
    fn a_resumed_origin_fetcher_on_a_normal_host_speaks_only_while_nobody_does() {
        let s = Scheduler::new(Config::default());
        let mut waiting = register(&s, "a", Some(resume(&[], false)));
        // The seed host speaks for the task first; a normal host claiming to fetch from the
        // origin afterwards (a rogue, or a peer another scheduler sent there) does not.
        let _seed = register(&s, "seed", Some(resume(&[0], true)));
        replies(&mut waiting);
        let _other = register(&s, "b", Some(resume(&[0, 1, 2], true)));
        let got = replies(&mut waiting);
        assert!(
            !got.iter().any(|r| matches!(r, PeerReply::Digests(_))),
            "{got:?}"
        );
        s.with_state(|st| {
            let task = st.tasks.get(&task_id()).expect("task");
            assert!(task.digests[0].is_some());
            assert!(task.digests[1].is_none(), "not taken from the normal host");
        });
    }

    #[test]
    fn the_origin_fetchers_layout_and_digests_reach_the_others() {
        let s = Scheduler::new(Config::default());
        let mut waiting = register(&s, "a", Some(resume(&[], false)));
        let mut fetcher = register(&s, "seed", Some(resume(&[0, 2], true)));
        let got = replies(&mut waiting);
        assert!(got.iter().any(
            |r| matches!(r, PeerReply::Metadata(m) if m.content_length == 3 << 22 && m.private)
        ));
        assert_eq!(crate::scheduling::tests::relayed_digests(&got), [0, 2]);
        assert!(
            !replies(&mut fetcher)
                .iter()
                .any(|r| matches!(r, PeerReply::BackToSource(_)))
        );
        s.with_state(|st| {
            let task = st.tasks.get(&task_id()).expect("task");
            let fetcher = task
                .peers
                .get(&PeerId::from("peer-seed".to_owned()))
                .expect("peer");
            assert_eq!(fetcher.state, PeerState::BackToSource);
            assert_eq!(fetcher.bitmap.count(), 2);
            assert!(task.has_origin_fetcher());
        });
    }

    #[test]
    fn draining_tells_every_stream_to_reconnect() {
        let s = Scheduler::new(Config::default());
        let mut rx = register(&s, "a", None);
        let _ = replies(&mut rx);
        let (hosts, downloads) = s.drain_streams("test");
        assert_eq!((hosts, downloads), (0, 1));
        assert!(
            replies(&mut rx)
                .iter()
                .any(|r| matches!(r, PeerReply::Reconnect(_)))
        );
        // This side let go: the stream ends once the peer closes its half.
        assert!(rx.try_recv().is_err());
    }
}
