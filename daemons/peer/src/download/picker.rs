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
//! - among the holders of a piece, the one with the fewest uploads (ours in flight plus the
//!   load it last advertised) is asked; a source that answered *busy* (its upload slots are
//!   full) keeps its pieces but is not asked again until it advertises a free slot;
//! - seeds are the last resort: while normal sources exist, a piece is taken from a seed only
//!   when no normal source holds it, and at most `seed_requests` fetches are at seeds (a seed
//!   serves each piece about once; the swarm spreads it);
//! - a source that failed (unreachable, bad digest) is never used again; one that lacked a
//!   piece it advertised keeps serving the rest;
//! - pipelining: once a fetch is *streaming* (the source gave it an upload slot), one more
//!   fetch from the same source is queued behind it, for the best-ranked wanted piece that
//!   source holds (at a seed, while normal sources exist, only one no normal source holds).
//!   The source holds it and hands it the slot when the current piece ends
//!   (`crate::admission`), so the slot streams back to back instead of idling the round trip
//!   a request takes to cross queued links. A queued fetch does not count against
//!   `concurrent` or the source's share until its predecessor ends and it takes its place.
//!
//! No endgame duplicates: asking a second holder for the last pieces made no difference in
//! the simulator (N = 64 and 256, README "Simulated swarms"), and two fetches of one piece
//! would write the same bytes of the task file, where a corrupt copy landing after the good
//! one would go unnoticed.
//!
//! Cost: the wanted pieces (missing, verifiable, not in flight, held by a source) are kept
//! ordered by rarity as bitmaps and fetches change, so [`Picker::decide`] walks them from the
//! rarest and stops at the first `concurrent` it can place; a neighbour's new bitmap costs
//! one byte compare per 8 pieces plus a re-rank per changed piece.
//!
//! Driving it: feed [`PickEvent`]s to [`Picker::handle`], call [`Picker::decide`] after each
//! batch and start the returned [`Fetch`]es; report each one's end with `Fetched`, `Busy` or
//! `FetchFailed`. [`Picker::is_complete`] says when every piece is held.

use std::collections::{BTreeMap, BTreeSet, HashSet};

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
    /// `source`'s upload load as it last advertised it: uploads in progress, and whether its
    /// upload slots are all taken (it answers *busy* until one frees).
    SourceLoad {
        source: PeerId,
        uploads: u32,
        full: bool,
    },
    /// `source` is unusable (unreachable, served a corrupt piece): dropped for good.
    SourceLost { source: PeerId },
    /// A fetch ended with the piece verified and stored.
    Fetched { piece: u32, source: PeerId },
    /// The fetch of `piece` from `source` got an upload slot and its bytes are arriving: a
    /// fetch may be queued behind it.
    Streaming { piece: u32, source: PeerId },
    /// `source` refused the fetch because its upload slots are full. It still holds the
    /// piece and stays a source, but is not asked until it advertises a free slot.
    Busy { piece: u32, source: PeerId },
    /// A fetch failed. `missing`: the source did not have the piece (it stays a source);
    /// otherwise the source is dropped for good.
    FetchFailed {
        piece: u32,
        source: PeerId,
        missing: bool,
    },
}

/// Fetch `piece` from `source`; with `behind`, queued behind that piece's streaming fetch from
/// the same source (the request names that fetch's upload slot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub piece: u32,
    pub source: PeerId,
    pub behind: Option<u32>,
}

#[derive(Debug)]
struct Source {
    seed: bool,
    bitmap: Bitmap,
    /// Our fetches in flight there.
    inflight: usize,
    /// Uploads it last advertised.
    load: u32,
    /// Said busy (or advertised full) and has not advertised a free slot since.
    busy: bool,
}

/// Rank of a wanted piece; the smallest is fetched first: pieces some normal source holds,
/// then fewer holders, then nearer the head (window), then a per-piece random draw.
type Rank = (bool, u32, u32, u64, u32);

#[derive(Debug)]
pub struct Picker {
    config: PickerConfig,
    have: Bitmap,
    /// Pieces with a known digest.
    verifiable: Bitmap,
    /// Ordered so that every walk over them, and so a run, is reproducible for a seed.
    sources: BTreeMap<PeerId, Source>,
    lost: HashSet<PeerId>,
    /// Pieces in flight and their sources, queued fetches included.
    inflight: BTreeMap<u32, PeerId>,
    fetches: usize,
    /// Fetches in flight that hold a slot at their source (`Streaming`).
    streaming: BTreeSet<u32>,
    /// Queued fetches: the piece streaming ahead -> the piece queued behind it.
    queued: BTreeMap<u32, u32>,
    /// Per piece: normal and seed sources that show it.
    normal: Vec<u32>,
    seeds: Vec<u32>,
    /// Per piece: the random tie-break, drawn once.
    tie: Vec<u64>,
    wanted: BTreeSet<Rank>,
    rng: fastrand::Rng,
}

impl Picker {
    pub fn new(config: PickerConfig, rng_seed: u64) -> Self {
        Self {
            config,
            have: Bitmap::default(),
            verifiable: Bitmap::default(),
            sources: BTreeMap::new(),
            lost: HashSet::new(),
            inflight: BTreeMap::new(),
            fetches: 0,
            streaming: BTreeSet::new(),
            queued: BTreeMap::new(),
            normal: Vec::new(),
            seeds: Vec::new(),
            tie: Vec::new(),
            wanted: BTreeSet::new(),
            rng: fastrand::Rng::with_seed(rng_seed),
        }
    }

    pub fn handle(&mut self, event: PickEvent) {
        match event {
            PickEvent::Layout { pieces } => self.layout(pieces),
            PickEvent::Digest { piece } => self.touch(piece, |p| {
                p.verifiable.set(piece);
            }),
            PickEvent::Held { piece } => self.touch(piece, |p| {
                p.have.set(piece);
            }),
            PickEvent::SourceAdded { source, seed } => {
                if !self.lost.contains(&source) && !self.sources.contains_key(&source) {
                    let source_state = Source {
                        seed,
                        bitmap: Bitmap::new(self.have.len()),
                        inflight: 0,
                        load: 0,
                        busy: false,
                    };
                    self.sources.insert(source, source_state);
                }
            }
            PickEvent::SourceBitmap { source, bitmap } => self.source_bitmap(&source, bitmap),
            PickEvent::SourceLoad {
                source,
                uploads,
                full,
            } => {
                if let Some(s) = self.sources.get_mut(&source) {
                    s.load = uploads;
                    s.busy = full;
                }
            }
            PickEvent::SourceLost { source } => self.lose(source),
            PickEvent::Fetched { piece, source } => {
                self.end_fetch(piece, &source);
                self.touch(piece, |p| {
                    p.have.set(piece);
                });
            }
            PickEvent::Streaming { piece, source } => {
                if self.inflight.get(&piece) == Some(&source) {
                    self.streaming.insert(piece);
                }
            }
            PickEvent::Busy { piece, source } => {
                self.end_fetch(piece, &source);
                if let Some(s) = self.sources.get_mut(&source) {
                    s.busy = true;
                }
            }
            PickEvent::FetchFailed {
                piece,
                source,
                missing,
            } => {
                self.end_fetch(piece, &source);
                if missing {
                    let seed = self.sources.get(&source).map(|s| s.seed);
                    if let Some(seed) = seed.filter(|_| self.shows(&source, piece)) {
                        self.touch(piece, |p| {
                            if let Some(s) = p.sources.get_mut(&source) {
                                s.bitmap.clear(piece);
                            }
                            p.count(piece, seed, -1);
                        });
                    }
                } else {
                    self.lose(source);
                }
            }
        }
    }

    /// Fetches to start now (possibly none); they count as in flight until reported.
    pub fn decide(&mut self) -> Vec<Fetch> {
        let mut out = self.decide_new();
        out.extend(self.decide_queued());
        out
    }

    /// Fetches in flight that are not queued behind another.
    fn active(&self) -> usize {
        self.fetches.saturating_sub(self.queued.len())
    }

    /// New fetches, up to `concurrent` active ones.
    fn decide_new(&mut self) -> Vec<Fetch> {
        let limit = self.config.concurrent;
        let active = self.active();
        if active >= limit || self.sources.is_empty() {
            return Vec::new();
        }
        let any_normal = self.sources.values().any(|s| !s.seed);
        let seed_cap = if any_normal {
            self.config.seed_requests
        } else {
            limit
        };
        let mut room = Room {
            per_source: limit.div_ceil(self.sources.len()).max(1),
            seed_cap,
            at_seeds: self
                .sources
                .values()
                .filter(|s| s.seed)
                .map(|s| s.inflight)
                .sum(),
        };
        let order: Vec<u32> = if self.have.count() == 0 && self.fetches == 0 {
            // The first piece: random among the available ones, not the rarest.
            let mut v: Vec<(u64, u32)> = self.wanted.iter().map(|r| (r.3, r.4)).collect();
            v.sort_unstable();
            v.into_iter().map(|(_, n)| n).collect()
        } else {
            Vec::new()
        };
        let mut out = Vec::new();
        let ranked = self.wanted.iter().map(|r| r.4);
        let walk: Box<dyn Iterator<Item = u32>> = if order.is_empty() {
            Box::new(ranked)
        } else {
            Box::new(order.into_iter())
        };
        for n in walk {
            if active + out.len() >= limit || !room.any(&self.sources) {
                break;
            }
            if let Some(source) = room.choose(&mut self.sources, &mut self.rng, n) {
                out.push(Fetch {
                    piece: n,
                    source,
                    behind: None,
                });
            }
        }
        for f in &out {
            self.touch(f.piece, |p| {
                p.inflight.insert(f.piece, f.source.clone());
            });
        }
        self.fetches += out.len();
        out
    }

    /// One fetch queued behind each streaming fetch that has none yet.
    fn decide_queued(&mut self) -> Vec<Fetch> {
        let ahead: Vec<(u32, PeerId)> = self
            .streaming
            .iter()
            .filter(|p| !self.queued.contains_key(p) && !self.is_queued(**p))
            .filter_map(|p| self.inflight.get(p).map(|s| (*p, s.clone())))
            .collect();
        let any_normal = self.sources.values().any(|s| !s.seed);
        let mut out = Vec::new();
        for (ahead, source) in ahead {
            let Some(s) = self.sources.get(&source) else {
                continue;
            };
            // Same rule as new fetches: a seed only for what no normal source holds.
            let seed_only = s.seed && any_normal;
            let piece = self
                .wanted
                .iter()
                .filter(|r| !seed_only || r.0)
                .map(|r| r.4)
                .find(|&n| s.bitmap.get(n));
            let Some(piece) = piece else {
                continue;
            };
            self.touch(piece, |p| {
                p.inflight.insert(piece, source.clone());
            });
            self.queued.insert(ahead, piece);
            self.fetches += 1;
            out.push(Fetch {
                piece,
                source,
                behind: Some(ahead),
            });
        }
        out
    }

    /// Whether `piece` is a fetch still queued behind another.
    fn is_queued(&self, piece: u32) -> bool {
        self.queued.values().any(|&q| q == piece)
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

    /// Whether `source` is marked busy (it refused a fetch and has not advertised a free slot).
    pub fn is_busy(&self, source: &PeerId) -> bool {
        self.sources.get(source).is_some_and(|s| s.busy)
    }

    /// Whether every source is a seed (the bytes then count as coming from seeds).
    pub fn only_seeds(&self) -> bool {
        self.sources.values().all(|s| s.seed)
    }

    pub fn in_flight(&self) -> usize {
        self.fetches
    }

    /// Whether a fetch of `piece` from `source` is in flight.
    pub fn in_flight_from(&self, piece: u32, source: &PeerId) -> bool {
        self.inflight.get(&piece) == Some(source)
    }

    fn layout(&mut self, pieces: u32) {
        if self.have.len() == pieces {
            return;
        }
        let len = pieces as usize;
        self.have = Bitmap::new(pieces);
        self.verifiable = Bitmap::new(pieces);
        self.normal = vec![0; len];
        self.seeds = vec![0; len];
        self.tie = (0..len).map(|_| self.rng.u64(..)).collect();
        self.wanted.clear();
        // Bitmaps that came before the layout and match it count now.
        let shown: Vec<(bool, Vec<u32>)> = self
            .sources
            .values()
            .filter(|s| s.bitmap.len() == pieces)
            .map(|s| (s.seed, s.bitmap.ones().collect()))
            .collect();
        for (seed, ones) in shown {
            for n in ones {
                self.count(n, seed, 1);
            }
        }
    }

    fn source_bitmap(&mut self, source: &PeerId, bitmap: Bitmap) {
        let len = self.have.len();
        let Some(s) = self.sources.get_mut(source) else {
            return;
        };
        let old = std::mem::replace(&mut s.bitmap, bitmap);
        let seed = s.seed;
        let new = &s.bitmap;
        let changes: Vec<(u32, i32)> = match (old.len() == len, new.len() == len) {
            (true, true) => old
                .differing(new)
                .map(|n| (n, if new.get(n) { 1 } else { -1 }))
                .collect(),
            (true, false) => old.ones().map(|n| (n, -1)).collect(),
            (false, true) => new.ones().map(|n| (n, 1)).collect(),
            (false, false) => Vec::new(),
        };
        for (n, delta) in changes {
            self.touch(n, |p| p.count(n, seed, delta));
        }
    }

    /// Whether `source`'s counted bitmap shows `piece`.
    fn shows(&self, source: &PeerId, piece: u32) -> bool {
        self.sources
            .get(source)
            .is_some_and(|s| s.bitmap.len() == self.have.len() && s.bitmap.get(piece))
    }

    fn count(&mut self, n: u32, seed: bool, delta: i32) {
        let list = if seed {
            &mut self.seeds
        } else {
            &mut self.normal
        };
        if let Some(c) = list.get_mut(n as usize) {
            *c = c.saturating_add_signed(delta);
        }
    }

    fn rank(&self, n: u32) -> Rank {
        let i = n as usize;
        let normal = self.normal.get(i).copied().unwrap_or(0);
        let window = u32::try_from(self.config.concurrent * 2)
            .unwrap_or(u32::MAX)
            .max(1);
        let tie = self.tie.get(i).copied().unwrap_or(0);
        (normal == 0, normal, n / window, tie, n)
    }

    fn is_wanted(&self, n: u32) -> bool {
        let i = n as usize;
        n < self.have.len()
            && !self.have.get(n)
            && self.verifiable.get(n)
            && !self.inflight.contains_key(&n)
            && self.normal[i] + self.seeds[i] > 0
    }

    /// Applies `change` to what piece `n`'s rank or wantedness depends on, keeping `wanted`
    /// in step.
    fn touch(&mut self, n: u32, change: impl FnOnce(&mut Self)) {
        if n >= self.have.len() {
            return;
        }
        self.wanted.remove(&self.rank(n));
        change(self);
        if self.is_wanted(n) {
            self.wanted.insert(self.rank(n));
        }
    }

    fn end_fetch(&mut self, piece: u32, source: &PeerId) {
        if self.inflight.get(&piece) != Some(source) {
            return;
        }
        self.touch(piece, |p| {
            p.inflight.remove(&piece);
        });
        self.fetches = self.fetches.saturating_sub(1);
        self.streaming.remove(&piece);
        // The fetch queued behind this one takes its place at the source (counted as this
        // one was); a queued fetch that ends first was never counted there.
        let promoted = self.queued.remove(&piece).is_some();
        let ahead = self
            .queued
            .iter()
            .find(|(_, q)| **q == piece)
            .map(|(a, _)| *a);
        if let Some(ahead) = ahead {
            // Not queued behind it again: the source refused to queue (the slot stalled or
            // already ended), and asking again would only repeat that.
            self.queued.remove(&ahead);
            self.streaming.remove(&ahead);
            return;
        }
        if !promoted && let Some(s) = self.sources.get_mut(source) {
            s.inflight = s.inflight.saturating_sub(1);
        }
    }

    fn lose(&mut self, source: PeerId) {
        let len = self.have.len();
        if let Some(s) = self.sources.remove(&source)
            && s.bitmap.len() == len
        {
            for n in s.bitmap.ones() {
                self.touch(n, |p| p.count(n, s.seed, -1));
            }
        }
        self.lost.insert(source);
    }
}

/// The per-source limits of one `decide`.
struct Room {
    per_source: usize,
    seed_cap: usize,
    at_seeds: usize,
}

impl Room {
    fn open(&self, s: &Source) -> bool {
        !s.busy && s.inflight < self.per_source && (!s.seed || self.at_seeds < self.seed_cap)
    }

    fn any(&self, sources: &BTreeMap<PeerId, Source>) -> bool {
        sources.values().any(|s| self.open(s))
    }

    /// The holder of `n` to ask: normal before seeds, then the least loaded; counts the
    /// fetch against it.
    fn choose(
        &mut self,
        sources: &mut BTreeMap<PeerId, Source>,
        rng: &mut fastrand::Rng,
        n: u32,
    ) -> Option<PeerId> {
        let id = sources
            .iter()
            .filter(|(_, s)| s.bitmap.get(n) && self.open(s))
            .map(|(id, s)| {
                let load = s.inflight as u64 + u64::from(s.load);
                ((s.seed, load, rng.u32(..)), id)
            })
            .min_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, id)| id.clone())?;
        if let Some(s) = sources.get_mut(&id) {
            s.inflight += 1;
            if s.seed {
                self.at_seeds += 1;
            }
        }
        Some(id)
    }
}

#[cfg(test)]
mod tests {
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
}
