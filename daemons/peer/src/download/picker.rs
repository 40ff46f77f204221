//! [`Picker`]: which piece this peer fetches next, and from which neighbour, as pure code
//! (events in, fetch decisions out; no I/O, no clock, randomness from a seeded generator).
//!
//! The scheduler links peers into a mesh (`df_scheduler::topology`); a neighbour is a
//! *source* here, and this peer is one of its sources too. The rules:
//! - only pieces whose digest the scheduler relayed are fetched (every peer piece is verified);
//! - the first piece is random among those available, so a newcomer quickly holds something
//!   its neighbours lack; after that, rarest first among the sources (pieces fewer sources
//!   hold spread first), nearest the head among equally rare ones in windows of
//!   `2·concurrent` pieces (a client reading in order is not starved), random within;
//! - at most `concurrent` fetches in flight, and no source gets more than an equal share of
//!   them (rarest-first alone queues every request at the source furthest ahead while the
//!   others' uplinks idle);
//! - seeds are the last resort: while normal sources exist, a piece is taken from a seed only
//!   when no normal source holds it, and at most `seed_requests` fetches are at seeds (a seed
//!   serves each piece about once; the swarm spreads it);
//! - a source that failed (unreachable, bad digest) is never used again; one that lacked a
//!   piece it advertised keeps serving the rest.
//!
//! No endgame duplicates: two fetches of one piece would write the same bytes of the task
//! file, and a corrupt copy landing after the good one would go unnoticed. Small pieces keep
//! the tail short instead.
//!
//! Driving it: feed [`PickEvent`]s to [`Picker::handle`], call [`Picker::decide`] after each
//! batch and start the returned [`Fetch`]es; report each one's end with `Fetched` or
//! `FetchFailed`. [`Picker::is_complete`] says when every piece is held.

use std::collections::{HashMap, HashSet};

use df_core::ids::PeerId;
use df_core::piece::Bitmap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PickerConfig {
    /// Fetches in flight at once (`download.concurrent_pieces`).
    pub concurrent: usize,
    /// Fetches at seeds while normal sources exist.
    pub seed_requests: usize,
}

impl PickerConfig {
    pub fn new(concurrent: usize) -> Self {
        Self {
            concurrent: concurrent.max(1),
            seed_requests: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PickEvent {
    /// The task has `pieces` pieces (the first event that makes fetching possible).
    Layout { pieces: u32 },
    /// The scheduler relayed piece `piece`'s digest: it may be fetched from a source.
    Digest { piece: u32 },
    /// This peer holds `piece` (stored before, or fetched outside the picker).
    Held { piece: u32 },
    /// The scheduler linked this peer to `source`.
    SourceAdded { source: PeerId, seed: bool },
    /// `source`'s current bitmap.
    SourceBitmap { source: PeerId, bitmap: Bitmap },
    /// `source` is unusable (unreachable, served a corrupt piece): dropped for good.
    SourceLost { source: PeerId },
    /// A fetch ended with the piece verified and stored.
    Fetched { piece: u32, source: PeerId },
    /// A fetch failed. `missing`: the source did not have the piece (it stays a source);
    /// otherwise the source is dropped for good.
    FetchFailed {
        piece: u32,
        source: PeerId,
        missing: bool,
    },
}

/// Fetch `piece` from `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub piece: u32,
    pub source: PeerId,
}

#[derive(Debug)]
struct Source {
    seed: bool,
    bitmap: Bitmap,
    inflight: usize,
}

#[derive(Debug)]
pub struct Picker {
    config: PickerConfig,
    have: Bitmap,
    /// Pieces with a known digest.
    verifiable: Bitmap,
    sources: HashMap<PeerId, Source>,
    lost: HashSet<PeerId>,
    inflight: HashMap<u32, PeerId>,
    rng: fastrand::Rng,
}

impl Picker {
    pub fn new(config: PickerConfig, rng_seed: u64) -> Self {
        Self {
            config,
            have: Bitmap::default(),
            verifiable: Bitmap::default(),
            sources: HashMap::new(),
            lost: HashSet::new(),
            inflight: HashMap::new(),
            rng: fastrand::Rng::with_seed(rng_seed),
        }
    }

    pub fn handle(&mut self, event: PickEvent) {
        match event {
            PickEvent::Layout { pieces } => {
                if self.have.len() != pieces {
                    self.have = Bitmap::new(pieces);
                    self.verifiable = Bitmap::new(pieces);
                }
            }
            PickEvent::Digest { piece } => {
                self.verifiable.set(piece);
            }
            PickEvent::Held { piece } => {
                self.have.set(piece);
            }
            PickEvent::SourceAdded { source, seed } => {
                if !self.lost.contains(&source) && !self.sources.contains_key(&source) {
                    let bitmap = Bitmap::new(self.have.len());
                    self.sources.insert(
                        source,
                        Source {
                            seed,
                            bitmap,
                            inflight: 0,
                        },
                    );
                }
            }
            PickEvent::SourceBitmap { source, bitmap } => {
                if let Some(s) = self.sources.get_mut(&source) {
                    s.bitmap = bitmap;
                }
            }
            PickEvent::SourceLost { source } => self.lose(source),
            PickEvent::Fetched { piece, source } => {
                self.end_fetch(piece, &source);
                self.have.set(piece);
            }
            PickEvent::FetchFailed {
                piece,
                source,
                missing,
            } => {
                self.end_fetch(piece, &source);
                if missing {
                    if let Some(s) = self.sources.get_mut(&source) {
                        s.bitmap.clear(piece);
                    }
                } else {
                    self.lose(source);
                }
            }
        }
    }

    /// Fetches to start now (possibly none); they count as in flight until reported.
    pub fn decide(&mut self) -> Vec<Fetch> {
        let limit = self.config.concurrent;
        if self.inflight.len() >= limit || self.sources.is_empty() {
            return Vec::new();
        }
        let any_normal = self.sources.values().any(|s| !s.seed);
        let seed_cap = if any_normal {
            self.config.seed_requests
        } else {
            limit
        };
        let per_source = limit.div_ceil(self.sources.len()).max(1);
        let mut at_seeds: usize = self
            .sources
            .values()
            .filter(|s| s.seed)
            .map(|s| s.inflight)
            .sum();
        let first = self.have.count() == 0 && self.inflight.is_empty();
        let window = u32::try_from(limit * 2).unwrap_or(u32::MAX).max(1);
        let mut candidates: Vec<(bool, usize, u32, u64, u32)> = self
            .have
            .missing()
            .filter(|n| self.verifiable.get(*n) && !self.inflight.contains_key(n))
            .filter_map(|n| {
                let (normal, seeds) = self.sources.values().filter(|s| s.bitmap.get(n)).fold(
                    (0, 0),
                    |(p, s), src| {
                        if src.seed { (p, s + 1) } else { (p + 1, s) }
                    },
                );
                let key = if first {
                    (false, 0, 0, self.rng.u64(..), n)
                } else {
                    (normal == 0, normal, n / window, self.rng.u64(..), n)
                };
                (normal + seeds > 0).then_some(key)
            })
            .collect();
        candidates.sort_unstable();
        let mut out = Vec::new();
        for (_, _, _, _, n) in candidates {
            if self.inflight.len() >= limit {
                break;
            }
            let chosen = self
                .sources
                .iter()
                .filter(|(_, s)| s.bitmap.get(n) && s.inflight < per_source)
                .filter(|(_, s)| !s.seed || at_seeds < seed_cap)
                .map(|(id, s)| ((s.seed, s.inflight, self.rng.u32(..)), id))
                .min_by(|a, b| a.0.cmp(&b.0))
                .map(|(_, id)| id.clone());
            let Some(source) = chosen else {
                continue;
            };
            if let Some(s) = self.sources.get_mut(&source) {
                s.inflight += 1;
                if s.seed {
                    at_seeds += 1;
                }
            }
            self.inflight.insert(n, source.clone());
            out.push(Fetch { piece: n, source });
        }
        out
    }

    /// Every piece is held (false before the layout is known).
    pub fn is_complete(&self) -> bool {
        !self.have.is_empty() && self.have.is_full()
    }

    /// Sources this peer can fetch from now.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    pub fn has_source(&self, source: &PeerId) -> bool {
        self.sources.contains_key(source)
    }

    pub fn is_lost(&self, source: &PeerId) -> bool {
        self.lost.contains(source)
    }

    /// Whether every source is a seed (the bytes then count as coming from seeds).
    pub fn only_seeds(&self) -> bool {
        self.sources.values().all(|s| s.seed)
    }

    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    fn end_fetch(&mut self, piece: u32, source: &PeerId) {
        if self.inflight.get(&piece) == Some(source) {
            self.inflight.remove(&piece);
        }
        if let Some(s) = self.sources.get_mut(source) {
            s.inflight = s.inflight.saturating_sub(1);
        }
    }

    fn lose(&mut self, source: PeerId) {
        self.sources.remove(&source);
        self.lost.insert(source);
    }
}

#[cfg(test)]
mod tests {
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
                source: id("a")
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
}
