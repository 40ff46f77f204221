use super::*;

fn host(name: &str, seed: bool) -> pb::HostInfo {
    pb::HostInfo {
        host_id: format!("127.0.0.1-{name}"),
        hostname: name.into(),
        ip: "127.0.0.1".into(),
        upload_port: 1,
        host_type: if seed {
            pb::HostType::Seed as i32
        } else {
            pb::HostType::Normal as i32
        },
        upload_slots: 8,
        ..Default::default()
    }
}

pub(super) type Rx = crate::outbox::Inbox<pb::PeerResponse>;

pub(super) fn register(s: &Scheduler, task: &TaskId, name: &str, seed_flag: bool) -> (PeerId, Rx) {
    let (tx, rx) = crate::outbox::outbox(crate::outbox::DOWNLOAD_BOUND);
    let (_, peer, _) = s
        .peer_register(
            pb::RegisterPeer {
                task_id: task.to_string(),
                peer_id: format!("peer-{name}"),
                url: "http://o/x".into(),
                seed: seed_flag,
                host: Some(host(name, false)),
                ..Default::default()
            },
            tx,
        )
        .expect("registers");
    (peer, rx)
}

/// The seed answering a seed request: registers from the seed host with the seed flag.
fn register_seed(s: &Scheduler, task: &TaskId) -> (PeerId, Rx) {
    let (tx, rx) = crate::outbox::outbox(crate::outbox::DOWNLOAD_BOUND);
    let (_, peer, _) = s
        .peer_register(
            pb::RegisterPeer {
                task_id: task.to_string(),
                peer_id: "peer-seed".into(),
                url: "http://o/x".into(),
                seed: true,
                host: Some(host("seed", true)),
                ..Default::default()
            },
            tx,
        )
        .expect("registers");
    (peer, rx)
}

pub(super) fn replies(rx: &mut Rx) -> Vec<PeerReply> {
    let mut out = Vec::new();
    while let Ok(Ok(r)) = rx.try_recv() {
        out.extend(r.response);
    }
    out
}

/// The piece numbers of every `Digests` message among `replies`, in order.
pub(crate) fn relayed_digests(replies: &[PeerReply]) -> Vec<u32> {
    replies
        .iter()
        .filter_map(|r| match r {
            PeerReply::Digests(d) => Some(d.pieces.iter().map(|p| p.number)),
            _ => None,
        })
        .flatten()
        .collect()
}

pub(super) fn task_id() -> TaskId {
    "a".repeat(64).parse().expect("valid")
}

#[test]
fn a_download_awaiting_a_fetcher_is_never_sent_to_the_origin_and_joins_the_fetcher() {
    let s = Scheduler::new(Config::default());
    let t = task_id();
    // A preheat job gave the credentials to h1 only; h2's command arrives first.
    let (tx, mut waiter) = crate::outbox::outbox(crate::outbox::DOWNLOAD_BOUND);
    s.peer_register(
        pb::RegisterPeer {
            task_id: t.to_string(),
            peer_id: "peer-h2".into(),
            url: "http://o/x".into(),
            awaits_fetcher: true,
            host: Some(host("h2", false)),
            ..Default::default()
        },
        tx,
    )
    .expect("registers");
    assert!(
        !replies(&mut waiter)
            .iter()
            .any(|r| matches!(r, PeerReply::BackToSource(_))),
        "without credentials it would only get the origin's refusal"
    );
    let (_, mut fetcher) = register(&s, &t, "h1", false);
    let got = replies(&mut fetcher);
    assert!(
        got.iter().any(|r| matches!(r, PeerReply::BackToSource(_))),
        "the host with the credentials reads the origin: {got:?}"
    );
    let got = replies(&mut waiter);
    assert!(
        got.iter().any(|r| matches!(r, PeerReply::Parents(p)
            if p.parents.iter().any(|p| p.peer_id == "peer-h1"))),
        "the waiter is linked to the fetcher: {got:?}"
    );
}

#[test]
fn without_a_seed_the_first_peer_goes_to_the_origin_and_the_next_use_it() {
    let s = Scheduler::new(Config::default());
    let t = task_id();
    let (_, mut first) = register(&s, &t, "h1", false);
    assert!(matches!(
        replies(&mut first).as_slice(),
        [PeerReply::BackToSource(_)]
    ));
    let (_, mut second) = register(&s, &t, "h2", false);
    match replies(&mut second).as_slice() {
        [PeerReply::Parents(p)] => assert_eq!(p.parents[0].peer_id, "peer-h1"),
        other => panic!("expected parents, got {other:?}"),
    }
}

#[test]
fn with_a_seed_host_the_first_peer_waits_and_gets_the_seed_as_parent() {
    let s = Scheduler::new(Config::default());
    let (seed_tx, mut seed_rx) = crate::outbox::outbox(crate::outbox::DOWNLOAD_BOUND);
    s.host_connected(host("seed", true), seed_tx)
        .expect("admitted");
    let t = task_id();
    let (_, mut child) = register(&s, &t, "h1", false);
    assert!(replies(&mut child).is_empty(), "child waits for the seed");
    let cmd = seed_rx.try_recv().expect("seed asked").expect("ok");
    assert!(matches!(
        cmd.response,
        Some(pb::host_response::Response::SeedTask(_))
    ));
    // The seed answers by registering with the seed flag, from the seed host.
    let (_, mut seed_peer_rx) = register_seed(&s, &t);
    assert!(matches!(
        replies(&mut seed_peer_rx).as_slice(),
        [PeerReply::BackToSource(_)]
    ));
    match replies(&mut child).as_slice() {
        [PeerReply::Parents(p)] => assert_eq!(p.parents[0].peer_id, "peer-seed"),
        other => panic!("expected the seed as parent, got {other:?}"),
    }
}

#[test]
fn peers_are_meshed_both_ways_and_each_is_told_of_its_neighbours() {
    let s = Scheduler::new(Config::default());
    let (seed_tx, _seed_rx) = crate::outbox::outbox(crate::outbox::DOWNLOAD_BOUND);
    s.host_connected(host("seed", true), seed_tx)
        .expect("admitted");
    let t = task_id();
    let mut peers = Vec::new();
    for i in 0..12 {
        peers.push(register(&s, &t, &format!("h{i}"), false));
    }
    let (seed_peer, _seed_peer_rx) = register_seed(&s, &t);
    s.tick();
    let degree = s.config().candidate_parents;
    s.with_state(|state| {
        let task = state.tasks.get(&t).expect("task");
        for (p, _) in &peers {
            let n: Vec<&PeerId> = task.mesh.neighbours(p).collect();
            assert!(n.len() >= degree, "{p} has {n:?}");
            // Bytes may flow both ways, except into the seed, which downloads from the origin.
            for q in n {
                let key = (q.clone(), p.clone());
                assert!(task.edges.get(&key).is_some_and(|e| e.active), "{key:?}");
                if q != &seed_peer {
                    let back = (p.clone(), q.clone());
                    assert!(task.edges.get(&back).is_some_and(|e| e.active), "{back:?}");
                }
            }
        }
        assert!(task.mesh.neighbours(&seed_peer).count() <= degree.max(2));
    });
    // Every peer was told, one message per neighbour, of exactly its mesh neighbours.
    for (p, rx) in &mut peers {
        let mut told: Vec<String> = replies(rx)
            .into_iter()
            .filter_map(|r| match r {
                PeerReply::Parents(x) => Some(x.parents),
                _ => None,
            })
            .flatten()
            .map(|x| x.peer_id)
            .collect();
        told.sort();
        let mut want: Vec<String> = s.with_state(|state| {
            state.tasks[&t]
                .mesh
                .neighbours(p)
                .map(ToString::to_string)
                .collect()
        });
        want.sort();
        assert_eq!(told, want, "{p}");
    }
}

#[test]
fn a_peer_whose_neighbours_left_gets_new_ones_at_the_next_tick() {
    let s = Scheduler::new(Config::default());
    let t = task_id();
    let mut peers: Vec<(PeerId, Rx)> = (0..10)
        .map(|i| register(&s, &t, &format!("h{i}"), false))
        .collect();
    let (me, mut rx) = peers.pop().expect("ten peers");
    replies(&mut rx);
    let before: Vec<PeerId> =
        s.with_state(|state| state.tasks[&t].mesh.neighbours(&me).cloned().collect());
    for p in &before {
        s.peer_message(
            &t,
            p,
            PeerMsg::Failed(pb::DownloadFailed {
                message: "gone".into(),
                origin_status: 0,
            }),
        );
    }
    s.tick();
    let told: Vec<String> = replies(&mut rx)
        .into_iter()
        .filter_map(|r| match r {
            PeerReply::Parents(x) => Some(x.parents),
            _ => None,
        })
        .flatten()
        .map(|x| x.peer_id)
        .collect();
    assert!(!told.is_empty());
    assert!(
        told.iter().all(|x| before.iter().all(|b| b.as_str() != x)),
        "{told:?}"
    );
}

#[test]
fn when_the_seed_fails_its_waiting_children_go_to_the_origin_at_once() {
    let s = Scheduler::new(Config::default());
    let (seed_tx, _seed_rx) = crate::outbox::outbox(crate::outbox::DOWNLOAD_BOUND);
    s.host_connected(host("seed", true), seed_tx)
        .expect("admitted");
    let t = task_id();
    let (_, mut child) = register(&s, &t, "h1", false);
    let (seed_peer, _seed_peer_rx) = register_seed(&s, &t);
    replies(&mut child);
    s.peer_message(
        &t,
        &seed_peer,
        PeerMsg::Failed(pb::DownloadFailed {
            message: "origin answered 404".into(),
            origin_status: 404,
        }),
    );
    match replies(&mut child).as_slice() {
        [PeerReply::BackToSource(b)] => assert!(b.reason.contains("404"), "{}", b.reason),
        other => panic!("expected back to source, got {other:?}"),
    }
}

#[test]
fn a_corrupt_parent_is_not_offered_again() {
    let s = Scheduler::new(Config::default());
    let t = task_id();
    let (a, _ra) = register(&s, &t, "h1", false);
    let (b, _rb) = register(&s, &t, "h2", false);
    let (c, mut rc) = register(&s, &t, "h3", false);
    replies(&mut rc);
    s.peer_message(
        &t,
        &c,
        PeerMsg::PieceFailed(pb::PieceFailed {
            number: 0,
            parent_peer_id: a.to_string(),
            reason: pb::PieceFailure::DigestMismatch as i32,
            message: String::new(),
        }),
    );
    s.peer_message(
        &t,
        &c,
        PeerMsg::Reschedule(pb::RescheduleRequest::default()),
    );
    for r in replies(&mut rc) {
        if let PeerReply::Parents(p) = r {
            assert!(p.parents.iter().all(|x| x.peer_id != a.to_string()));
            assert!(p.parents.iter().any(|x| x.peer_id == b.to_string()));
        }
    }
    let detail = s.task(&t).expect("task");
    assert!(
        detail
            .edges
            .iter()
            .any(|e| e.parent == a.to_string() && e.blocklisted)
    );
}

fn corrupt(s: &Scheduler, t: &TaskId, child: &PeerId, parent: &PeerId) {
    s.peer_message(
        t,
        child,
        PeerMsg::PieceFailed(pb::PieceFailed {
            number: 0,
            parent_peer_id: parent.to_string(),
            reason: pb::PieceFailure::DigestMismatch as i32,
            message: String::new(),
        }),
    );
}

fn is_corrupt(s: &Scheduler, t: &TaskId, p: &PeerId) -> bool {
    s.with_state(|st| st.tasks[t].peers[p].corrupt)
}

#[test]
fn one_lying_child_cannot_shun_an_honest_parent_for_everyone() {
    let s = Scheduler::new(Config::default());
    let t = task_id();
    let (origin_fetcher, _r0) = register(&s, &t, "h0", false);
    let (honest, _r1) = register(&s, &t, "h1", false);
    let (liar, _r2) = register(&s, &t, "h2", false);
    let (other, _r3) = register(&s, &t, "h3", false);
    for _ in 0..5 {
        corrupt(&s, &t, &liar, &honest);
    }
    assert!(!is_corrupt(&s, &t, &honest), "one host's reports");
    // A second host's child confirms: the parent is shunned for the task.
    corrupt(&s, &t, &other, &honest);
    assert!(is_corrupt(&s, &t, &honest));
    // The appointed origin fetcher's word alone is enough: its digests define the task.
    let (suspect, _r4) = register(&s, &t, "h4", false);
    corrupt(&s, &t, &origin_fetcher, &suspect);
    assert!(is_corrupt(&s, &t, &suspect));
}

#[test]
fn only_the_appointed_origin_fetcher_sets_layout_and_digests() {
    let s = Scheduler::new(Config::default());
    let t = task_id();
    let (fetcher, _r0) = register(&s, &t, "h0", false);
    let (rogue, _r1) = register(&s, &t, "h1", false);
    let (_, mut watcher) = register(&s, &t, "h2", false);
    replies(&mut watcher);
    let metadata = |len: u64| {
        PeerMsg::Metadata(pb::TaskMetadata {
            content_length: len,
            piece_length: 4 << 20,
            headers: vec![
                pb::Header {
                    name: "Content-Type".into(),
                    value: "application/octet-stream".into(),
                },
                pb::Header {
                    name: "Set-Cookie".into(),
                    value: "session=1".into(),
                },
            ],
            private: true,
            ranged: false,
        })
    };
    let origin_piece = |digest: u8| {
        PeerMsg::PieceFinished(pb::PieceFinished {
            number: 0,
            length: 4 << 20,
            source: pb::PieceSource::Origin as i32,
            digest: vec![digest; 32],
            ..Default::default()
        })
    };
    // The rogue goes first, and says it fetched from the origin: ignored.
    s.peer_message(&t, &rogue, metadata(1 << 40));
    s.peer_message(&t, &rogue, origin_piece(0xEE));
    assert!(s.with_state(|st| st.tasks[&t].layout.is_none()));
    s.peer_message(&t, &fetcher, metadata(8 << 20));
    s.peer_message(&t, &fetcher, origin_piece(0x11));
    s.peer_message(&t, &rogue, origin_piece(0xEE));
    s.with_state(|st| {
        let task = &st.tasks[&t];
        assert_eq!(task.layout.map(|l| l.content_length), Some(8 << 20));
        assert_eq!(
            task.digests[0].map(|d| d.as_bytes()[0]),
            Some(0x11),
            "the authority's digest stands"
        );
        let names: Vec<&str> = task
            .response_headers
            .iter()
            .map(|h| h.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["Content-Type"],
            "relayed headers are filtered on receipt"
        );
    });
    let got = replies(&mut watcher);
    assert!(
        got.iter().any(
            |r| matches!(r, PeerReply::Metadata(m) if m.content_length == 8 << 20 && m.private)
        ),
        "the layout reaches the others, with the authority's word that the object is private"
    );
}

#[test]
fn a_held_copy_from_a_normal_host_sets_nothing_and_joins_once_an_authority_states_the_layout() {
    let s = Scheduler::new(Config::default());
    let t = task_id();
    let held = |peer: &str| pb::HeldTasks {
        tasks: vec![pb::HeldTask {
            task_id: t.to_string(),
            peer_id: peer.into(),
            url: "http://o/x".into(),
            content_length: 8 << 20,
            piece_length: 4 << 20,
            complete: true,
            pieces: vec![pb::PieceDigest {
                number: 0,
                digest: vec![0xEE; 32],
            }],
            ..Default::default()
        }],
    };
    let (tx, _rx) = crate::outbox::outbox(crate::outbox::DOWNLOAD_BOUND);
    let (normal, _) = s.host_connected(host("n", false), tx).expect("admitted");
    s.host_held(&normal, held("127.0.0.1-n-1"));
    s.with_state(|st| {
        let task = &st.tasks[&t];
        assert!(task.layout.is_none(), "no authority yet");
        assert!(task.peers.is_empty());
        assert_eq!(task.pending_holders.len(), 1);
    });
    // The seed host speaks for the task; the waiting copy has its layout and joins.
    let (tx, _rx) = crate::outbox::outbox(crate::outbox::DOWNLOAD_BOUND);
    let (seed, _) = s.host_connected(host("seed", true), tx).expect("admitted");
    s.host_held(&seed, held("127.0.0.1-seed-1"));
    s.with_state(|st| {
        let task = &st.tasks[&t];
        assert_eq!(task.layout.map(|l| l.content_length), Some(8 << 20));
        assert!(
            task.peers
                .contains_key(&PeerId::from("127.0.0.1-n-1".to_owned()))
        );
        assert_eq!(task.peers.len(), 2);
        assert!(task.pending_holders.is_empty());
    });
}

#[test]
fn a_seed_copy_re_announced_after_downloads_registered_again_gives_them_its_digests() {
    // A rolling restart: a download comes back with its layout and one piece; the seed
    // finished meanwhile, so its host stream re-announces a complete copy instead of a
    // download. The waiting download needs the seed's digests to fetch anything more.
    let s = Scheduler::new(Config::default());
    let t = task_id();
    let (tx, mut waiting) = crate::outbox::outbox(crate::outbox::DOWNLOAD_BOUND);
    s.peer_register(
        pb::RegisterPeer {
            task_id: t.to_string(),
            peer_id: "peer-a".into(),
            url: "http://o/x".into(),
            host: Some(host("a", false)),
            resume: Some(pb::ResumedDownload {
                metadata: Some(pb::TaskMetadata {
                    content_length: 8 << 20,
                    piece_length: 4 << 20,
                    ..Default::default()
                }),
                pieces: vec![pb::PieceDigest {
                    number: 0,
                    digest: vec![0xEE; 32],
                }],
                from_origin: false,
                readers: vec![],
            }),
            ..Default::default()
        },
        tx,
    )
    .expect("registers");
    replies(&mut waiting);
    let (tx, _rx) = crate::outbox::outbox(crate::outbox::DOWNLOAD_BOUND);
    let (seed, _) = s.host_connected(host("seed", true), tx).expect("admitted");
    s.host_held(
        &seed,
        pb::HeldTasks {
            tasks: vec![pb::HeldTask {
                task_id: t.to_string(),
                peer_id: "127.0.0.1-seed-1".into(),
                url: "http://o/x".into(),
                content_length: 8 << 20,
                piece_length: 4 << 20,
                complete: true,
                pieces: (0..2)
                    .map(|n| pb::PieceDigest {
                        number: n,
                        digest: vec![0xEE; 32],
                    })
                    .collect(),
                ..Default::default()
            }],
        },
    );
    assert_eq!(relayed_digests(&replies(&mut waiting)), [0, 1]);
}

#[test]
fn a_task_behind_withheld_credentials_is_read_by_the_peer_that_has_them_never_a_seed() {
    let s = Scheduler::new(Config::default());
    let (seed_tx, mut seed_rx) = crate::outbox::outbox(crate::outbox::DOWNLOAD_BOUND);
    s.host_connected(host("seed", true), seed_tx)
        .expect("admitted");
    let t = task_id();
    let (tx, mut rx) = crate::outbox::outbox(crate::outbox::DOWNLOAD_BOUND);
    s.peer_register(
        pb::RegisterPeer {
            task_id: t.to_string(),
            peer_id: "peer-h1".into(),
            url: "http://o/x".into(),
            host: Some(host("h1", false)),
            credentials_withheld: true,
            ..Default::default()
        },
        tx,
    )
    .expect("registers");
    assert!(matches!(
        replies(&mut rx).as_slice(),
        [PeerReply::BackToSource(b)] if b.reason.contains("credentials")
    ));
    assert!(seed_rx.try_recv().is_err(), "the seed is not asked");
}

#[test]
fn credentials_for_a_seed_are_handed_over_once_not_kept() {
    let s = Scheduler::new(Config::default());
    let (seed_tx, mut seed_rx) = crate::outbox::outbox(crate::outbox::DOWNLOAD_BOUND);
    s.host_connected(host("seed", true), seed_tx)
        .expect("admitted");
    let t = task_id();
    let (tx, _rx) = crate::outbox::outbox(crate::outbox::DOWNLOAD_BOUND);
    s.peer_register(
        pb::RegisterPeer {
            task_id: t.to_string(),
            peer_id: "peer-h1".into(),
            url: "http://o/x".into(),
            host: Some(host("h1", false)),
            headers: vec![pb::Header {
                name: "Authorization".into(),
                value: "Bearer secret".into(),
            }],
            ..Default::default()
        },
        tx,
    )
    .expect("registers");
    let cmd = seed_rx.try_recv().expect("seed asked").expect("ok");
    let Some(pb::host_response::Response::SeedTask(seed)) = cmd.response else {
        panic!("expected a seed task");
    };
    assert_eq!(seed.headers.len(), 1, "the seed gets them for its fetch");
    s.with_state(|st| assert!(st.tasks[&t].origin_headers.is_empty(), "not kept"));
}

#[test]
fn the_peer_count_grows_with_registrations_and_is_recounted_at_gc() {
    let s = Scheduler::new(Config::default());
    let t = task_id();
    let (p1, _r1) = register(&s, &t, "h1", false);
    let _second = register(&s, &t, "h2", false);
    // Registering again is not a new peer.
    let _again = register(&s, &t, "h1", false);
    assert_eq!(s.with_state(|st| st.peer_count), 2);
    s.with_state(|st| {
        if let Some(task) = st.tasks.get_mut(&t) {
            remove_peer(task, &p1);
        }
    });
    assert_eq!(
        s.with_state(|st| st.peer_count),
        2,
        "an upper bound until gc"
    );
    s.gc();
    assert_eq!(s.with_state(|st| st.peer_count), 1);
}
