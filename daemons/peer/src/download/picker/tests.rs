//! Unit tests of the picker: its rules one by one, and its kept ranking against a recount
//! under random events.

use std::collections::HashMap;

use super::*;

fn id(s: &str) -> PeerId {
    PeerId::from(s.to_owned())
}

fn bitmap(len: u32, ones: impl IntoIterator<Item = u32>) -> Bitmap {
    let mut b = Bitmap::new(len);
    for n in ones {
        b.set(n);
    }
    b
}

/// A picker over `pieces` pieces, every digest known.
fn picker(pieces: u32, concurrent: usize) -> Picker {
    let mut p = Picker::new(PickerConfig::new(concurrent), 42);
    p.handle(PickEvent::Layout { pieces });
    for n in 0..pieces {
        p.handle(PickEvent::Digest { piece: n });
    }
    p
}

fn add(p: &mut Picker, name: &str, seed: bool, ones: impl IntoIterator<Item = u32>) {
    let len = p.have.len();
    p.handle(PickEvent::SourceAdded {
        source: id(name),
        seed,
    });
    p.handle(PickEvent::SourceBitmap {
        source: id(name),
        bitmap: bitmap(len, ones),
    });
}

#[test]
fn rarest_first_after_the_first_piece() {
    let mut p = picker(8, 1);
    p.handle(PickEvent::Held { piece: 0 });
    add(&mut p, "a", false, 1..8);
    add(&mut p, "b", false, 1..7);
    add(&mut p, "c", false, [1, 2, 3]);
    // Piece 7 is held by one source only.
    assert_eq!(
        p.decide(),
        vec![Fetch {
            piece: 7,
            source: id("a"),
            behind: None,
        }]
    );
}

#[test]
fn the_first_piece_is_random_not_the_rarest() {
    let firsts: HashSet<u32> = (0..20)
        .map(|seed| {
            let mut p = Picker::new(PickerConfig::new(1), seed);
            p.handle(PickEvent::Layout { pieces: 16 });
            for n in 0..16 {
                p.handle(PickEvent::Digest { piece: n });
            }
            add(&mut p, "a", false, 0..16);
            add(&mut p, "b", false, 0..8);
            p.decide()[0].piece
        })
        .collect();
    assert!(firsts.iter().any(|&n| n < 8), "{firsts:?}");
    assert!(firsts.len() > 4, "{firsts:?}");
}

#[test]
fn no_digest_no_fetch_and_nothing_twice() {
    let mut p = Picker::new(PickerConfig::new(8), 1);
    p.handle(PickEvent::Layout { pieces: 4 });
    add(&mut p, "a", false, 0..4);
    assert!(p.decide().is_empty());
    p.handle(PickEvent::Digest { piece: 2 });
    let got = p.decide();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].piece, 2);
    assert!(p.decide().is_empty(), "in flight already");
}

#[test]
fn a_piece_this_peer_reads_from_the_origin_is_never_fetched_from_a_source() {
    let mut p = picker(4, 8);
    for piece in [1, 2] {
        p.handle(PickEvent::Reserved {
            piece,
            reserved: true,
        });
    }
    add(&mut p, "a", false, 0..3);
    assert!(p.is_shown(2) && !p.is_shown(3));
    let mut got: Vec<u32> = p.decide().iter().map(|f| f.piece).collect();
    got.sort_unstable();
    assert_eq!(got, [0]);
    assert!(p.is_in_flight(0) && !p.is_in_flight(2));
    // Released (the origin fetch gave up: the share moved to another reader): fetched from
    // the source after all.
    p.handle(PickEvent::Reserved {
        piece: 2,
        reserved: false,
    });
    let again: Vec<u32> = p.decide().iter().map(|f| f.piece).collect();
    assert_eq!(again, [2]);
}

#[test]
fn requests_are_spread_over_sources() {
    let mut p = picker(64, 8);
    p.handle(PickEvent::Held { piece: 63 });
    for s in ["a", "b", "c", "d"] {
        add(&mut p, s, false, 0..64);
    }
    let got = p.decide();
    assert_eq!(got.len(), 8);
    let mut per: HashMap<PeerId, usize> = HashMap::new();
    for f in &got {
        *per.entry(f.source.clone()).or_default() += 1;
    }
    assert!(per.values().all(|&k| k == 2), "{per:?}");
}

#[test]
fn seeds_serve_only_what_no_normal_source_has_one_at_a_time() {
    let mut p = picker(16, 8);
    p.handle(PickEvent::Held { piece: 0 });
    add(&mut p, "seed", true, 0..16);
    add(&mut p, "a", false, 0..4);
    let got = p.decide();
    let at_seed: Vec<&Fetch> = got.iter().filter(|f| f.source == id("seed")).collect();
    assert_eq!(at_seed.len(), 1, "{got:?}");
    assert!(at_seed[0].piece >= 4, "{got:?}");
    for f in got.iter().filter(|f| f.source == id("a")) {
        assert!(f.piece < 4);
    }
}

#[test]
fn with_only_a_seed_every_slot_is_used() {
    let mut p = picker(16, 8);
    add(&mut p, "seed", true, 0..16);
    assert_eq!(p.decide().len(), 8);
}

#[test]
fn a_failed_source_is_dropped_and_a_missing_piece_is_asked_elsewhere() {
    let mut p = picker(4, 1);
    p.handle(PickEvent::Held { piece: 0 });
    add(&mut p, "a", false, [1]);
    let f = p.decide().remove(0);
    assert_eq!(f.piece, 1);
    p.handle(PickEvent::FetchFailed {
        piece: 1,
        source: id("a"),
        missing: true,
    });
    assert!(p.has_source(&id("a")));
    assert!(p.decide().is_empty(), "a no longer advertises piece 1");
    add(&mut p, "b", false, [1, 2]);
    let f = p.decide().remove(0);
    p.handle(PickEvent::FetchFailed {
        piece: f.piece,
        source: id("b"),
        missing: false,
    });
    assert!(p.is_lost(&id("b")));
    p.handle(PickEvent::SourceAdded {
        source: id("b"),
        seed: false,
    });
    assert!(!p.has_source(&id("b")), "a lost source is not taken back");
}

#[test]
fn complete_when_every_piece_is_held() {
    let mut p = picker(2, 2);
    assert!(!p.is_complete());
    add(&mut p, "a", false, 0..2);
    for f in p.decide() {
        p.handle(PickEvent::Fetched {
            piece: f.piece,
            source: f.source,
        });
    }
    assert!(p.is_complete());
    assert_eq!(p.in_flight(), 0);
}

#[test]
fn a_busy_source_is_skipped_until_it_advertises_a_free_slot() {
    let mut p = picker(8, 1);
    p.handle(PickEvent::Held { piece: 0 });
    add(&mut p, "a", false, [7]);
    add(&mut p, "b", false, 1..7);
    add(&mut p, "c", false, 1..7);
    let f = p.decide().remove(0);
    assert_eq!((f.piece, &f.source), (7, &id("a")), "rarest first");
    p.handle(PickEvent::Busy {
        piece: 7,
        source: id("a"),
    });
    assert!(p.is_busy(&id("a")) && p.has_source(&id("a")));
    let f = p.decide().remove(0);
    assert_ne!(f.source, id("a"), "another holder's piece instead");
    p.handle(PickEvent::Fetched {
        piece: f.piece,
        source: f.source,
    });
    p.handle(PickEvent::SourceLoad {
        source: id("a"),
        uploads: 3,
        full: false,
    });
    assert_eq!(p.decide()[0].piece, 7, "a takes requests again");
}

#[test]
fn a_busy_source_is_asked_again_once_its_busy_answer_lapses_without_a_notice() {
    let mut p = picker(8, 1);
    p.handle(PickEvent::Held { piece: 0 });
    add(&mut p, "a", false, 1..8);
    let f = p.decide().remove(0);
    p.handle(PickEvent::Busy {
        piece: f.piece,
        source: id("a"),
    });
    assert!(p.decide().is_empty(), "the only source is busy");
    p.handle(PickEvent::BusyLapsed { source: id("a") });
    assert!(!p.is_busy(&id("a")));
    assert_eq!(p.decide()[0].source, id("a"), "asked again");
}

#[test]
fn the_least_loaded_holder_is_asked() {
    let mut p = picker(8, 1);
    p.handle(PickEvent::Held { piece: 0 });
    add(&mut p, "a", false, 1..8);
    add(&mut p, "b", false, 1..8);
    p.handle(PickEvent::SourceLoad {
        source: id("a"),
        uploads: 5,
        full: false,
    });
    p.handle(PickEvent::SourceLoad {
        source: id("b"),
        uploads: 1,
        full: false,
    });
    assert_eq!(p.decide()[0].source, id("b"));
}

#[test]
fn a_piece_is_asked_of_one_holder_at_a_time() {
    let mut p = picker(2, 4);
    p.handle(PickEvent::Held { piece: 0 });
    add(&mut p, "a", false, [1]);
    add(&mut p, "b", false, [1]);
    assert_eq!(p.decide().len(), 1);
    assert!(p.decide().is_empty());
}

/// The incrementally kept ranking equals a recount from scratch after any events.
#[test]
fn the_kept_ranking_matches_a_recount() {
    let mut rng = fastrand::Rng::with_seed(9);
    for round in 0..40 {
        let pieces = rng.u32(1..40);
        let mut p = Picker::new(PickerConfig::new(rng.usize(1..6)), round);
        p.handle(PickEvent::Layout { pieces });
        let names = ["a", "b", "c", "s"];
        for _ in 0..200 {
            let name = names[rng.usize(..names.len())];
            let n = rng.u32(..pieces);
            match rng.u8(..8) {
                0 => p.handle(PickEvent::Digest { piece: n }),
                1 => p.handle(PickEvent::SourceAdded {
                    source: id(name),
                    seed: name == "s",
                }),
                2 | 3 => {
                    let ones: Vec<u32> = (0..pieces).filter(|_| rng.bool()).collect();
                    p.handle(PickEvent::SourceBitmap {
                        source: id(name),
                        bitmap: bitmap(pieces, ones),
                    });
                }
                4 => {
                    for f in p.decide() {
                        match rng.u8(..3) {
                            0 => p.handle(PickEvent::Fetched {
                                piece: f.piece,
                                source: f.source,
                            }),
                            1 => p.handle(PickEvent::Busy {
                                piece: f.piece,
                                source: f.source,
                            }),
                            _ => p.handle(PickEvent::FetchFailed {
                                piece: f.piece,
                                source: f.source,
                                missing: rng.bool(),
                            }),
                        }
                    }
                }
                5 => p.handle(PickEvent::SourceLoad {
                    source: id(name),
                    uploads: rng.u32(..4),
                    full: false,
                }),
                6 if rng.u8(..10) == 0 => p.handle(PickEvent::SourceLost { source: id(name) }),
                6 => {
                    let flying: Vec<(u32, PeerId)> =
                        p.inflight.iter().map(|(n, s)| (*n, s.clone())).collect();
                    for (piece, source) in flying {
                        p.handle(PickEvent::Streaming { piece, source });
                    }
                }
                _ => p.handle(PickEvent::Held { piece: n }),
            }
            for n in 0..pieces {
                let holders = p.sources.values().filter(|s| s.bitmap.get(n));
                let (normal, seeds) =
                    holders.fold(
                        (0, 0),
                        |(a, b), s| {
                            if s.seed { (a, b + 1) } else { (a + 1, b) }
                        },
                    );
                assert_eq!((p.normal[n as usize], p.seeds[n as usize]), (normal, seeds));
                let wanted = !p.have.get(n)
                    && p.verifiable.get(n)
                    && !p.inflight.contains_key(&n)
                    && normal + seeds > 0;
                assert_eq!(p.wanted.contains(&p.rank(n)), wanted, "piece {n}");
            }
            assert_eq!(
                p.wanted.len(),
                (0..pieces).filter(|&n| p.is_wanted(n)).count()
            );
            assert_eq!(p.fetches, p.inflight.len());
            assert!(p.active() <= p.config.concurrent);
            assert!(p.queued.len() <= p.streaming.len());
        }
    }
}

#[test]
fn one_fetch_is_queued_behind_each_streaming_one_and_takes_its_place() {
    let mut p = picker(16, 2);
    p.handle(PickEvent::Held { piece: 0 });
    add(&mut p, "a", false, 1..16);
    add(&mut p, "b", false, 1..16);
    let first = p.decide();
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|f| f.behind.is_none()));
    assert!(
        p.decide().is_empty(),
        "nothing queued before a slot is streaming"
    );
    let f = first[0].clone();
    p.handle(PickEvent::Streaming {
        piece: f.piece,
        source: f.source.clone(),
    });
    let queued = p.decide();
    assert_eq!(queued.len(), 1, "{queued:?}");
    let q = queued[0].clone();
    assert_eq!((&q.source, q.behind), (&f.source, Some(f.piece)));
    assert_ne!(q.piece, first[1].piece);
    assert!(p.decide().is_empty(), "one queued fetch per slot");
    assert_eq!(
        p.active(),
        2,
        "the queued fetch is not counted against concurrent"
    );
    // The piece ahead lands: the queued one is active now, at the same source's share,
    // and no new fetch is started in its place.
    p.handle(PickEvent::Fetched {
        piece: f.piece,
        source: f.source.clone(),
    });
    assert_eq!(p.active(), 2);
    assert!(p.decide().is_empty());
    assert_eq!(p.sources[&f.source].inflight, 1);
    // Once it streams, another is queued behind it.
    p.handle(PickEvent::Streaming {
        piece: q.piece,
        source: q.source.clone(),
    });
    let next = p.decide();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].behind, Some(q.piece));
}

#[test]
fn a_queued_fetch_that_fails_first_frees_only_itself() {
    let mut p = picker(16, 1);
    p.handle(PickEvent::Held { piece: 0 });
    add(&mut p, "a", false, 1..16);
    let f = p.decide().remove(0);
    p.handle(PickEvent::Streaming {
        piece: f.piece,
        source: f.source.clone(),
    });
    let q = p.decide().remove(0);
    p.handle(PickEvent::Busy {
        piece: q.piece,
        source: q.source.clone(),
    });
    assert_eq!(p.active(), 1);
    assert_eq!(
        p.sources[&f.source].inflight, 1,
        "the streaming fetch still counts"
    );
    assert!(p.decide().is_empty(), "a busy source is not asked again");
    p.handle(PickEvent::Fetched {
        piece: f.piece,
        source: f.source,
    });
    assert_eq!(p.in_flight(), 0);
    assert_eq!(p.sources[&id("a")].inflight, 0);
}

#[test]
fn at_a_seed_only_what_no_normal_source_holds_is_queued() {
    let mut p = picker(16, 4);
    p.handle(PickEvent::Held { piece: 0 });
    add(&mut p, "seed", true, 0..16);
    add(&mut p, "a", false, 1..8);
    let at_seed = p
        .decide()
        .into_iter()
        .find(|f| f.source == id("seed"))
        .expect("one fetch at the seed");
    p.handle(PickEvent::Streaming {
        piece: at_seed.piece,
        source: id("seed"),
    });
    let queued = p.decide();
    assert_eq!(queued.len(), 1);
    assert!(queued[0].piece >= 8, "{queued:?}");
}

/// A picker streaming piece `ahead` from `a` (full: 3 uploads, ours among them), with a
/// second source `b` holding `b_holds` at `b_load` uploads.
fn streaming_at_a_full_source(b_holds: &[u32], b_load: u32) -> (Picker, u32) {
    let mut p = picker(16, 1);
    p.handle(PickEvent::Held { piece: 0 });
    add(&mut p, "a", false, 1..16);
    let first = p.decide();
    assert_eq!(first.len(), 1);
    let ahead = first[0].piece;
    p.handle(PickEvent::SourceLoad {
        source: id("a"),
        uploads: 3,
        full: true,
    });
    add(&mut p, "b", false, b_holds.iter().copied());
    p.handle(PickEvent::SourceLoad {
        source: id("b"),
        uploads: b_load,
        full: false,
    });
    p.handle(PickEvent::Streaming {
        piece: ahead,
        source: id("a"),
    });
    (p, ahead)
}

#[test]
fn no_fetch_is_pinned_to_a_loaded_source_while_one_with_room_holds_a_wanted_piece() {
    let wanted: Vec<u32> = (1..16).collect();
    let (mut p, _) = streaming_at_a_full_source(&wanted, 1);
    assert!(
        p.decide().is_empty(),
        "b has room and what we want: a's slot is let go"
    );
    // Within one upload of a, b is no better: queueing at a keeps its slot streaming.
    let (mut p, ahead) = streaming_at_a_full_source(&wanted, 2);
    let q = p.decide();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!((&q[0].source, q[0].behind), (&id("a"), Some(ahead)));
    // A neighbour advertising an absurd load (network input) is no better, and no overflow.
    let (mut p, ahead) = streaming_at_a_full_source(&wanted, u32::MAX);
    let q = p.decide();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!((&q[0].source, q[0].behind), (&id("a"), Some(ahead)));
    // An idle source holding only what we have is no reason to let a's slot go.
    let (mut p, ahead) = streaming_at_a_full_source(&[0], 0);
    let q = p.decide();
    assert_eq!(
        (q.len(), q.first().and_then(|f| f.behind)),
        (1, Some(ahead))
    );
}
