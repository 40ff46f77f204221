//! Origin shares through the scheduler's API: split among helpers, handed on when a reader
//! fails, and taken back from a helper that shows no work on its share.

use super::tests::{Rx, register, relayed_digests, replies, task_id};
use super::*;

pub(super) fn shares(replies: &[PeerReply]) -> Vec<(u32, u32)> {
    replies
        .iter()
        .filter_map(|r| match r {
            PeerReply::OriginShare(s) => Some((s.first, s.end)),
            _ => None,
        })
        .collect()
}

pub(super) fn layout_of(pieces: u64, ranged: bool) -> PeerMsg {
    PeerMsg::Metadata(pb::TaskMetadata {
        content_length: pieces << 22,
        piece_length: 4 << 20,
        ranged,
        ..Default::default()
    })
}

pub(super) fn origin_piece(number: u32, digest: u8) -> PeerMsg {
    PeerMsg::PieceFinished(pb::PieceFinished {
        number,
        length: 4 << 20,
        source: pb::PieceSource::Origin as i32,
        digest: vec![digest; 32],
        ..Default::default()
    })
}

#[test]
fn helpers_read_disjoint_shares_and_speak_only_for_their_own() {
    let s = Scheduler::new(Config::default());
    let t = task_id();
    let (fetcher, mut r0) = register(&s, &t, "h0", false);
    let (h1, mut r1) = register(&s, &t, "h1", false);
    let (h2, mut r2) = register(&s, &t, "h2", false);
    let (_, mut r3) = register(&s, &t, "h3", false);
    let (_, mut r4) = register(&s, &t, "h4", false);
    for r in [&mut r0, &mut r1, &mut r2, &mut r3, &mut r4] {
        replies(r);
    }
    s.peer_message(&t, &fetcher, layout_of(64, true));
    // The fetcher keeps the front; three helpers (the default 4 readers) take the rest, in
    // registration order, and the fifth peer reads nothing.
    let mut all: Vec<(u32, u32)> = Vec::new();
    let to_fetcher = replies(&mut r0);
    let fetcher_share = shares(&to_fetcher);
    assert_eq!(fetcher_share.first().map(|s| s.0), Some(0));
    all.extend(fetcher_share.last());
    // The fetcher, the task's authority, is told every reader to name after a restart.
    let mut named: Vec<(u32, u32)> = to_fetcher
        .iter()
        .rev()
        .find_map(|r| match r {
            PeerReply::OriginReaders(o) => {
                Some(o.readers.iter().map(|r| (r.first, r.end)).collect())
            }
            _ => None,
        })
        .expect("the authority is told the readers");
    let told = |got: &[PeerReply]| got.iter().any(|r| matches!(r, PeerReply::OriginReaders(_)));
    for r in [&mut r1, &mut r2, &mut r3] {
        let got = replies(r);
        assert!(!told(&got), "only the authority is told the readers");
        let got = shares(&got);
        assert!(!got.is_empty(), "each of the first three is a helper");
        all.extend(got.last());
    }
    let got = replies(&mut r4);
    assert!(shares(&got).is_empty() && !told(&got));
    all.sort_unstable();
    let mut next = 0;
    for (first, end) in &all {
        assert_eq!(
            *first, next,
            "shares are disjoint and cover the task: {all:?}"
        );
        next = *end;
    }
    assert_eq!(next, 64);
    named.sort_unstable();
    assert_eq!(named, all);
    // A helper's digest counts for its own share and is relayed; outside it, it does not.
    let (own, other) = s.with_state(|st| {
        let share = st.tasks[&t].peers[&h1].origin_share.clone().expect("share");
        (share.start, if share.start == 0 { share.end } else { 0 })
    });
    s.peer_message(&t, &h1, origin_piece(own, 0x21));
    s.peer_message(&t, &h1, origin_piece(other, 0x22));
    s.with_state(|st| {
        let d = &st.tasks[&t].digests;
        assert_eq!(d[own as usize].map(|d| d.as_bytes()[0]), Some(0x21));
        assert_eq!(d[other as usize], None);
    });
    assert!(relayed_digests(&replies(&mut r4)).contains(&own));
    // A helper that fails hands what it did not report to the peer that reads nothing yet.
    s.peer_message(
        &t,
        &h2,
        PeerMsg::Failed(pb::DownloadFailed {
            message: "disk".into(),
            origin_status: 0,
        }),
    );
    let gone = s.with_state(|st| st.tasks[&t].peers[&h2].origin_share.clone());
    assert_eq!(gone, None);
    let handed = shares(&replies(&mut r4));
    assert_eq!(
        handed.len(),
        1,
        "the late peer takes the failed helper's share"
    );
}

#[test]
fn no_shares_from_an_origin_that_ignores_ranges() {
    let s = Scheduler::new(Config::default());
    let t = task_id();
    let (fetcher, _r0) = register(&s, &t, "h0", false);
    let (_, mut r1) = register(&s, &t, "h1", false);
    s.peer_message(&t, &fetcher, layout_of(64, false));
    assert!(shares(&replies(&mut r1)).is_empty());
}

/// Moves `peer`'s last sign of work on its share, and its last read of it, `ago` into the
/// past.
fn quiet_for(s: &Scheduler, t: &TaskId, peer: &PeerId, ago: Duration) {
    s.with_state(|st| {
        if let Some(p) = st.tasks.get_mut(t).and_then(|t| t.peers.get_mut(peer)) {
            p.share_read_at = Instant::now() - ago;
            p.share_delivered_at = Instant::now() - ago;
        }
    });
}

/// `child` reports piece `number` from `parent`.
fn delivered(s: &Scheduler, t: &TaskId, child: &PeerId, parent: &PeerId, number: u32) {
    s.peer_message(
        t,
        child,
        PeerMsg::PieceFinished(pb::PieceFinished {
            number,
            length: 4 << 20,
            source: pb::PieceSource::Peer as i32,
            parent_peer_id: parent.to_string(),
            ..Default::default()
        }),
    );
}

fn share_of(s: &Scheduler, t: &TaskId, peer: &PeerId) -> Option<std::ops::Range<u32>> {
    s.with_state(|st| st.tasks[t].peers[peer].origin_share.clone())
}

/// A scheduler that lets a task have 2 origin readers.
fn two_readers_allowed() -> Scheduler {
    Scheduler::new(Config {
        origin_readers: 2,
        ..Config::default()
    })
}

/// A fetcher and one helper (2 readers) over 64 pieces, and a third downloader reading
/// nothing; the fetcher reported its whole share.
fn two_readers_and_a_downloader(s: &Scheduler) -> [(PeerId, Rx); 3] {
    let t = task_id();
    let (fetcher, r0) = register(s, &t, "h0", false);
    let helper = register(s, &t, "h1", false);
    let late = register(s, &t, "h2", false);
    s.peer_message(&t, &fetcher, layout_of(64, true));
    let own = share_of(s, &t, &fetcher).expect("the fetcher reads");
    for n in own {
        s.peer_message(&t, &fetcher, origin_piece(n, 0x10));
    }
    [(fetcher, r0), helper, late]
}

#[test]
fn a_helper_that_shows_no_work_on_its_share_loses_it_to_the_next_downloader() {
    let s = two_readers_allowed();
    let t = task_id();
    let [(fetcher, mut r0), (helper, mut r1), (late, mut r2)] = two_readers_and_a_downloader(&s);
    let taken = share_of(&s, &t, &helper).expect("the second registrant helps");
    assert!(share_of(&s, &t, &late).is_none());
    for r in [&mut r0, &mut r1, &mut r2] {
        replies(r);
    }
    // Quiet, but not for the deadline yet.
    quiet_for(&s, &t, &helper, s.config.reader_deadline / 2);
    s.tick();
    assert_eq!(share_of(&s, &t, &helper), Some(taken.clone()));
    quiet_for(&s, &t, &helper, s.config.reader_deadline);
    s.tick();
    assert_eq!(share_of(&s, &t, &helper), None);
    assert_eq!(
        shares(&replies(&mut r1)),
        vec![(0, 0)],
        "told to read nothing"
    );
    assert_eq!(
        shares(&replies(&mut r2)),
        vec![(taken.start, taken.end)],
        "the downloader that read nothing takes it whole"
    );
    let metrics = s.metrics.render();
    assert!(
        metrics.contains(r#"dfscheduler_origin_shares_total{why="reader_stalled"} 1"#),
        "{metrics}"
    );
    let named = replies(&mut r0).into_iter().any(|r| {
        matches!(r, PeerReply::OriginReaders(o) if o.readers.iter().all(|r| r.peer_id != helper.as_str()))
    });
    assert!(named, "the authority is told the readers without it");
    // Its late digests no longer speak for the task.
    s.peer_message(&t, &helper, origin_piece(taken.start, 0x66));
    s.with_state(|st| assert_eq!(st.tasks[&t].digests[taken.start as usize], None));
    // Quiet in turn: nobody is free, so the fetcher, done with its own share, reads it. That
    // spends the budget (2 readers, 2 shares taken back): nothing more is taken.
    quiet_for(&s, &t, &late, s.config.reader_deadline);
    s.tick();
    assert_eq!(shares(&replies(&mut r0)), vec![(taken.start, taken.end)]);
    assert_eq!(s.with_state(|st| st.tasks[&t].shares_withdrawn), 2);
    let _ = fetcher;
}

#[test]
fn a_helper_reading_its_share_or_serving_peers_keeps_it() {
    let s = two_readers_allowed();
    let t = task_id();
    let [_, (helper, _r1), (late, _r2)] = two_readers_and_a_downloader(&s);
    let share = share_of(&s, &t, &helper).expect("helps");
    // A digest of its share, after a long quiet.
    quiet_for(&s, &t, &helper, s.config.reader_deadline * 2);
    s.peer_message(&t, &helper, origin_piece(share.start, 0x21));
    s.tick();
    assert_eq!(share_of(&s, &t, &helper), Some(share.clone()));
    // A piece (not of its share) delivered to a peer: its neighbours may want other pieces
    // first, and its reads wait for them (`read_ahead` on the peer).
    quiet_for(&s, &t, &helper, s.config.reader_deadline * 2);
    delivered(&s, &t, &late, &helper, 0);
    s.tick();
    assert_eq!(share_of(&s, &t, &helper), Some(share.clone()));
    // A digest outside its share is no sign of work on it.
    quiet_for(&s, &t, &helper, s.config.reader_deadline * 2);
    s.peer_message(&t, &helper, origin_piece(0, 0x10));
    s.tick();
    assert_eq!(share_of(&s, &t, &helper), None);
}

#[test]
fn a_helper_that_serves_others_but_withholds_its_share_loses_it_once_a_downloader_waits_on_it() {
    let s = two_readers_allowed();
    let t = task_id();
    let (fetcher, _r0) = register(&s, &t, "h0", false);
    let (helper, _r1) = register(&s, &t, "h1", false);
    let (late, mut r2) = register(&s, &t, "h2", false);
    s.peer_message(&t, &fetcher, layout_of(64, true));
    // The fetcher is still reading the last piece of its own share, so it waits on nobody.
    let own = share_of(&s, &t, &fetcher).expect("the fetcher reads");
    for n in own.start..own.end - 1 {
        s.peer_message(&t, &fetcher, origin_piece(n, 0x10));
    }
    let share = share_of(&s, &t, &helper).expect("helps");
    let others: Vec<u32> = (0..64).filter(|n| !share.contains(n)).collect();
    // It read nothing of its share for twice the deadline and has just delivered a piece (a
    // colluding registrant's report looks the same). The downloader still lacks pieces
    // others hold: it does not wait on the helper, which may be paced by its uplink.
    quiet_for(&s, &t, &helper, s.config.reader_deadline * 2);
    delivered(&s, &t, &late, &helper, others[0]);
    s.tick();
    assert_eq!(share_of(&s, &t, &helper), Some(share.clone()));
    // Now the downloader holds everything but the helper's share, which nobody has read.
    for &n in &others[1..] {
        delivered(&s, &t, &late, &fetcher, n);
    }
    replies(&mut r2);
    s.tick();
    assert_eq!(share_of(&s, &t, &helper), None);
    assert_eq!(
        shares(&replies(&mut r2)).last(),
        Some(&(share.start, share.end)),
        "the waiting downloader reads it"
    );
}

#[test]
fn the_authority_keeps_its_share_however_slow() {
    let s = two_readers_allowed();
    let t = task_id();
    let (fetcher, _r0) = register(&s, &t, "h0", false);
    s.peer_message(&t, &fetcher, layout_of(64, true));
    quiet_for(&s, &t, &fetcher, s.config.reader_deadline * 10);
    s.tick();
    assert_eq!(share_of(&s, &t, &fetcher), Some(0..64));
}

fn fail(s: &Scheduler, t: &TaskId, peer: &PeerId) {
    s.peer_message(
        t,
        peer,
        PeerMsg::Failed(pb::DownloadFailed {
            message: "disk".into(),
            origin_status: 0,
        }),
    );
}

#[test]
fn a_share_nobody_could_take_goes_to_the_next_downloader_or_a_reader_done_with_its_own() {
    // The helper leaves before anyone else registered, while the fetcher still reads its own:
    // nobody can take its share then. The next downloader to register takes it.
    let s = two_readers_allowed();
    let t = task_id();
    let (fetcher, _r0) = register(&s, &t, "h0", false);
    let (helper, _r1) = register(&s, &t, "h1", false);
    s.peer_message(&t, &fetcher, layout_of(64, true));
    let taken = share_of(&s, &t, &helper).expect("helps");
    fail(&s, &t, &helper);
    s.with_state(|st| assert_eq!(st.tasks[&t].unclaimed, vec![taken.clone()]));
    let (late, mut r2) = register(&s, &t, "h2", false);
    assert_eq!(
        shares(&replies(&mut r2)).last(),
        Some(&(taken.start, taken.end))
    );
    assert_eq!(share_of(&s, &t, &late), Some(taken.clone()));
    s.with_state(|st| assert!(st.tasks[&t].unclaimed.is_empty()));

    // Nobody registers: the fetcher takes it once it has read its own share.
    let s = two_readers_allowed();
    let (fetcher, mut r0) = register(&s, &t, "h0", false);
    let (helper, _r1) = register(&s, &t, "h1", false);
    s.peer_message(&t, &fetcher, layout_of(64, true));
    let taken = share_of(&s, &t, &helper).expect("helps");
    fail(&s, &t, &helper);
    s.tick();
    replies(&mut r0);
    for n in share_of(&s, &t, &fetcher).expect("reads") {
        s.peer_message(&t, &fetcher, origin_piece(n, 0x10));
    }
    s.tick();
    assert_eq!(
        shares(&replies(&mut r0)).last(),
        Some(&(taken.start, taken.end))
    );
}
