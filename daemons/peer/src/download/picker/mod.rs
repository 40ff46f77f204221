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
//!   full) keeps its pieces but is not asked again until it advertises a free slot, or until
//!   the driver says [`BUSY_RETRY`] has passed (`BusyLapsed`): a slot-free notice can be
//!   lost to a race (it overtakes the busy answer on another connection, or the slot is
//!   taken again before the feed looks), and a complete parent sends no other;
//! - seeds are the last resort: while normal sources exist, a piece is taken from a seed only
//!   when no normal source holds it, and at most `seed_requests` fetches are at seeds (a seed
//!   serves each piece about once; the swarm spreads it);
//! - a source that failed (unreachable, bad digest) is never used again; one that lacked a
//!   piece it advertised keeps serving the rest;
//! - pipelining: once a fetch is *streaming* (the driver says so when the last quarter of
//!   its piece is arriving, `super::parent::QUEUE_AT_DIVISOR`), one more fetch from the same
//!   source is queued behind it, for the best-ranked wanted piece that source holds (at a
//!   seed, while normal sources exist, only one no normal source holds). The source holds it
//!   and hands it the slot when the current piece ends (`crate::admission`), so the slot
//!   streams back to back instead of idling the round trip a request takes to cross queued
//!   links. A queued fetch does not count against `concurrent` or the source's share until
//!   its predecessor ends and it takes its place;
//! - pipelining does not pin: no fetch is queued at a source while another normal source
//!   with a free slot, holding one of the best-ranked wanted pieces, carries at least two
//!   uploads fewer; the slot is let go and the next fetch is chosen afresh.
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
    /// This peer reads `piece` from the origin itself (its origin share): not to be fetched
    /// from a source while `reserved`, so no two fetches ever write the same piece.
    Reserved { piece: u32, reserved: bool },
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
    /// The fetch of `piece` from `source` holds an upload slot and its last bytes are
    /// arriving: a fetch may be queued behind it.
    Streaming { piece: u32, source: PeerId },
    /// `source` refused the fetch because its upload slots are full. It still holds the
    /// piece and stays a source, but is not asked until it advertises a free slot.
    Busy { piece: u32, source: PeerId },
    /// [`BUSY_RETRY`] passed since `source` answered busy: it may be asked again.
    BusyLapsed { source: PeerId },
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

impl Source {
    /// Uploads it carries as far as this peer knows: what it advertised, and at least our
    /// fetches there (an advertisement may predate them).
    fn uploads(&self) -> u32 {
        self.load
            .max(u32::try_from(self.inflight).unwrap_or(u32::MAX))
    }
}

/// Wanted pieces, best-ranked first, looked at for a holder with room before a fetch is
/// queued behind a streaming one.
const ROOMY_WALK: usize = 64;

/// How long after a *busy* answer a source is asked again without a slot-free notice. A
/// lost notice then costs a second, not the `download.piece_timeout` stall and origin
/// fallback it cost before; a busy source costs one refused request per second.
pub const BUSY_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Rank of a wanted piece; the smallest is fetched first: pieces some normal source holds,
/// then fewer holders, then nearer the head (window), then a per-piece random draw.
type Rank = (bool, u32, u32, u64, u32);

#[derive(Debug)]
pub struct Picker {
    config: PickerConfig,
    have: Bitmap,
    /// Pieces with a known digest.
    verifiable: Bitmap,
    /// Pieces this peer reads from the origin itself.
    reserved: Bitmap,
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
            reserved: Bitmap::default(),
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
            PickEvent::Reserved { piece, reserved } => self.touch(piece, |p| {
                if reserved {
                    p.reserved.set(piece);
                } else {
                    p.reserved.clear(piece);
                }
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
            PickEvent::BusyLapsed { source } => {
                if let Some(s) = self.sources.get_mut(&source) {
                    s.busy = false;
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
        if ahead.is_empty() {
            return Vec::new();
        }
        // Queueing keeps a source's slot for us. Not when another holder with room carries
        // two uploads fewer: the slot is let go, and the next fetch is chosen afresh, least
        // loaded holder first. Otherwise the sources a child streams from early stay its
        // sources to the end, and neighbours with idle uplinks are never asked (README
        // "Pipelining without pinning").
        let ahead: Vec<(u32, PeerId)> = {
            let roomy = self.roomy_holders();
            ahead
                .into_iter()
                .filter(|(_, source)| {
                    self.sources.get(source).is_some_and(|s| {
                        s.seed
                            || !roomy
                                .iter()
                                .any(|(id, u)| *id != source && u.saturating_add(1) < s.uploads())
                    })
                })
                .collect()
        };
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

    /// Normal sources with a free upload slot that hold one of the best-ranked wanted
    /// pieces, with the uploads they carry.
    ///
    /// Why only the best-ranked [`ROOMY_WALK`] pieces: this runs on every decision while a
    /// fetch streams, and the pieces a source with room could serve that matter are the
    /// rare ones the next fetch would take.
    fn roomy_holders(&self) -> Vec<(&PeerId, u32)> {
        self.sources
            .iter()
            .filter(|(_, s)| !s.seed && !s.busy)
            .filter(|(_, s)| {
                self.wanted
                    .iter()
                    .take(ROOMY_WALK)
                    .any(|r| s.bitmap.get(r.4))
            })
            .map(|(id, s)| (id, s.uploads()))
            .collect()
    }

    /// Whether `piece` is a fetch still queued behind another.
    fn is_queued(&self, piece: u32) -> bool {
        self.queued.values().any(|&q| q == piece)
    }

    /// A fetch of `piece` is under way (or queued) from some source.
    pub fn is_in_flight(&self, piece: u32) -> bool {
        self.inflight.contains_key(&piece)
    }

    /// Some source shows `piece` in its bitmap.
    pub fn is_shown(&self, piece: u32) -> bool {
        let i = piece as usize;
        self.normal.get(i).copied().unwrap_or(0) + self.seeds.get(i).copied().unwrap_or(0) > 0
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
        self.reserved = Bitmap::new(pieces);
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
            && !self.reserved.get(n)
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
mod tests;
