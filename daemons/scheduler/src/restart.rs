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

use df_core::ids::{PeerId, PieceDigest};
use df_core::piece::Bitmap;
use df_proto::scheduler::v1 as pb;
use pb::peer_response::Response as PeerReply;

use crate::admission;
use crate::authority::{self, Appointment};
use crate::config::Limits;
use crate::model::{PeerState, Task};
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
/// One that fetches from the origin is marked so.
pub(crate) fn resume(
    task: &mut Task,
    peer: &PeerId,
    resume: Option<&pb::ResumedDownload>,
    seed_host: bool,
    limits: &Limits,
) -> bool {
    let Some(resume) = resume else {
        return false;
    };
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
    true
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
        let (tx, rx) = crate::outbox::outbox(crate::outbox::DOWNLOAD_BOUND);
        let host_type = if name == "seed" {
            pb::HostType::Seed
        } else {
            pb::HostType::Normal
        };
        s.peer_register(
            pb::RegisterPeer {
                task_id: task_id().to_string(),
                peer_id: format!("peer-{name}"),
                url: "http://o/x".into(),
                host: Some(pb::HostInfo {
                    host_id: format!("127.0.0.1-{name}"),
                    hostname: name.into(),
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
        }
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
