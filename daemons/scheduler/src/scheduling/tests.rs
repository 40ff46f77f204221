use super::*;
use tokio::sync::mpsc;

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

type Rx = mpsc::UnboundedReceiver<Result<pb::PeerResponse, tonic::Status>>;

fn register(s: &Scheduler, task: &TaskId, name: &str, seed_flag: bool) -> (PeerId, Rx) {
    let (tx, rx) = mpsc::unbounded_channel();
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
    let (tx, rx) = mpsc::unbounded_channel();
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

fn replies(rx: &mut Rx) -> Vec<PeerReply> {
    let mut out = Vec::new();
    while let Ok(Ok(r)) = rx.try_recv() {
        out.extend(r.response);
    }
    out
}

fn task_id() -> TaskId {
    "a".repeat(64).parse().expect("valid")
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
    let (seed_tx, mut seed_rx) = mpsc::unbounded_channel();
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
    let (seed_tx, _seed_rx) = mpsc::unbounded_channel();
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
    let (seed_tx, _seed_rx) = mpsc::unbounded_channel();
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
