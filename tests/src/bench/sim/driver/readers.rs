//! Origin readers in the simulation: the scheduler's shares ([`origin_share`], applied as the
//! scheduler's `scheduling/shares.rs` applies it) and each reader's reads of its share (as the
//! peer's `download/p2p.rs` and the seed's back-to-source path make them).
//!
//! What stands in for what:
//! - the task's seed is its first reader, with the whole task as its share;
//! - a registration appoints a helper (the earliest registered downloader that reads nothing
//!   yet) while fewer than `origin_readers` readers are still downloading and a share can be
//!   split; the old and the new reader are told their shares at once;
//! - a reader keeps `concurrent` origin reads in flight, beside its fetches from peers, in
//!   the order of its share, passing over pieces it holds or fetches from a neighbour and
//!   those a neighbour shows with a relayed digest; its picker keeps off a piece while it is
//!   read (`PickEvent::Reserved`);
//! - a piece read from the origin is a digest the scheduler relays to every downloader, if
//!   its reader speaks for it (the seed for any piece, a helper for its own share);
//! - the seed, once its share is read, takes the rest from its neighbours with a picker of its
//!   own, as the daemon's seed does;
//! - a reader that dies hands its share, from the first piece no live host holds, to the next
//!   helper.
//!
//! The daemon's seed also reads from the origin, last, whatever its neighbours did not deliver
//! in `download.piece_timeout`; the simulator has no timeouts, so a run that needs that stalls
//! and says so.

use std::ops::Range;

use df_core::piece::Bitmap;
use df_peer::download::picker::PickEvent;
use df_peer::read_ahead;
use df_scheduler::origin_share::{self, Reader};

use super::{Command, Driver, NodeIx, ORIGIN};

/// One reader of a task: its share as the scheduler gave it, and its reads.
pub(super) struct OriginReader {
    node: NodeIx,
    share: Range<u32>,
    /// Pieces before it are stored here (the walk starts there, as the peer's does).
    next: u32,
    /// Origin reads in flight.
    running: Vec<u32>,
    /// Reads that failed and are asked again.
    retry: Vec<u32>,
    /// Pieces it delivered at least once and fetched from neighbours: what it read ahead of
    /// its uplink (`df_peer::read_ahead`).
    delivered: Bitmap,
    received: Bitmap,
}

impl OriginReader {
    fn new(node: NodeIx, share: Range<u32>, count: u32) -> Self {
        Self {
            node,
            next: share.start,
            share,
            running: Vec::new(),
            retry: Vec::new(),
            delivered: Bitmap::new(count),
            received: Bitmap::new(count),
        }
    }
}

/// What one round of appointing decided.
enum Appointment {
    /// The old reader keeps a part and the helper takes the rest.
    Split {
        from: NodeIx,
        keeps: Range<u32>,
        helper: NodeIx,
        takes: Range<u32>,
    },
    /// Enough readers, or no share left to split: never look again.
    Settled,
    /// Nobody to appoint now.
    Wait,
}

impl Driver {
    /// The task's seed holds the whole task as its share and starts reading.
    pub(super) fn first_reader(&mut self, task: u32, out: &mut Vec<Command>) {
        let count = self.layouts[task as usize].piece_count();
        let Some(state) = self.tasks[task as usize].as_mut() else {
            return;
        };
        let seed = state.seed;
        state.readers.push(OriginReader::new(seed, 0..count, count));
        self.read_origin(task, seed, out);
    }

    /// Appoints helpers, as the scheduler does on a registration.
    pub(super) fn appoint_readers(&mut self, task: u32, out: &mut Vec<Command>) {
        if self.config.origin_readers <= 1 {
            return;
        }
        loop {
            match self.next_appointment(task) {
                Appointment::Wait => return,
                Appointment::Settled => {
                    if let Some(state) = self.tasks[task as usize].as_mut() {
                        state.shares_settled = true;
                    }
                    return;
                }
                Appointment::Split {
                    from,
                    keeps,
                    helper,
                    takes,
                } => {
                    self.give(task, from, keeps, out);
                    self.give(task, helper, takes, out);
                }
            }
        }
    }

    fn next_appointment(&self, task: u32) -> Appointment {
        let Some(state) = self.tasks[task as usize].as_ref() else {
            return Appointment::Wait;
        };
        if state.shares_settled {
            return Appointment::Wait;
        }
        let readers: Vec<Reader<NodeIx>> = state
            .readers
            .iter()
            .filter(|r| self.is_downloading(r.node, task))
            .map(|r| Reader {
                id: r.node,
                share: r.share.clone(),
                reported: u32::try_from(r.share.clone().filter(|&n| state.reported.get(n)).count())
                    .unwrap_or(u32::MAX),
            })
            .collect();
        if readers.len() >= self.config.origin_readers {
            return Appointment::Settled;
        }
        let Some(helper) = self.candidate(task).filter(|_| !readers.is_empty()) else {
            return Appointment::Wait;
        };
        let lead = origin_share::lead(self.layouts[task as usize].piece_length);
        match origin_share::split(&readers, lead) {
            Some(split) => Appointment::Split {
                from: split.from,
                keeps: split.keeps,
                helper,
                takes: split.takes,
            },
            None => Appointment::Settled,
        }
    }

    /// The next helper: the earliest registered downloader that reads nothing yet.
    fn candidate(&self, task: u32) -> Option<NodeIx> {
        let state = self.tasks[task as usize].as_ref()?;
        state.downloaders.iter().copied().find(|&n| {
            !self.is_seed[n as usize]
                && self.is_downloading(n, task)
                && !state.readers.iter().any(|r| r.node == n)
        })
    }

    /// Alive and not yet holding the whole task: the scheduler's "still downloading".
    fn is_downloading(&self, node: NodeIx, task: u32) -> bool {
        self.alive[node as usize] && !self.held[self.slot(node, task)].is_full()
    }

    /// `node`'s share is now `share` (reads under way outside it finish); it reads on.
    fn give(&mut self, task: u32, node: NodeIx, share: Range<u32>, out: &mut Vec<Command>) {
        let count = self.layouts[task as usize].piece_count();
        let Some(state) = self.tasks[task as usize].as_mut() else {
            return;
        };
        match state.readers.iter_mut().find(|r| r.node == node) {
            Some(r) => {
                r.next = share.start;
                r.share = share;
            }
            None => state.readers.push(OriginReader::new(node, share, count)),
        }
        self.read_origin(task, node, out);
    }

    /// Keeps `concurrent` origin reads of `node`'s share in flight; a seed with nothing left to
    /// read turns to its neighbours for the rest.
    pub(super) fn read_origin(&mut self, task: u32, node: NodeIx, out: &mut Vec<Command>) {
        let concurrent = self.config.concurrent;
        loop {
            let Some(ix) = self.reader_ix(task, node) else {
                return;
            };
            let Some(state) = self.tasks[task as usize].as_mut() else {
                return;
            };
            if state.readers[ix].running.len() >= concurrent {
                return;
            }
            let next = match state.readers[ix].retry.pop() {
                Some(again) => Some(again),
                None if self.read_far_enough(task, ix) => return,
                None => self.next_share_piece(task, ix),
            };
            let Some(piece) = next else {
                break;
            };
            let Some(r) = self.tasks[task as usize]
                .as_mut()
                .and_then(|t| t.readers.get_mut(ix))
            else {
                return;
            };
            if !r.running.contains(&piece) {
                r.running.push(piece);
                self.pick(
                    node,
                    task,
                    PickEvent::Reserved {
                        piece,
                        reserved: true,
                    },
                );
            }
            out.push(Command::Fetch {
                task,
                piece,
                from: ORIGIN,
                to: node,
            });
        }
        self.seed_to_peers(task, node);
    }

    /// A helper with neighbours whose pieces read ahead of its uplink plus its reads under way
    /// have reached `concurrent` (`df_peer::read_ahead`, as the peer's P2P loop applies it).
    fn read_far_enough(&self, task: u32, ix: usize) -> bool {
        let Some(state) = self.tasks[task as usize].as_ref() else {
            return false;
        };
        let Some(r) = state.readers.get(ix) else {
            return false;
        };
        let lonely = || {
            state
                .mesh
                .neighbours(&self.ids[r.node as usize])
                .next()
                .is_none()
        };
        if r.node == state.seed || r.next >= r.share.end || lonely() {
            return false;
        }
        let record = read_ahead::Record {
            delivered: &r.delivered,
            received: &r.received,
        };
        let waiting =
            read_ahead::only_here(&self.held[self.slot(r.node, task)], record, r.share.clone());
        !read_ahead::may_read(waiting, r.running.len(), self.config.concurrent)
    }

    /// A reader `node` delivered `piece` (it may read on) or was sent it by a neighbour.
    pub(super) fn reader_moved(&mut self, task: u32, node: NodeIx, piece: u32, delivered: bool) {
        let Some(r) = self.tasks[task as usize]
            .as_mut()
            .and_then(|t| t.readers.iter_mut().find(|r| r.node == node))
        else {
            return;
        };
        if delivered {
            if r.delivered.set(piece) {
                self.dirty.push((node, task));
            }
        } else {
            r.received.set(piece);
        }
    }

    fn reader_ix(&self, task: u32, node: NodeIx) -> Option<usize> {
        self.tasks[task as usize]
            .as_ref()?
            .readers
            .iter()
            .position(|r| r.node == node)
    }

    /// The next piece of reader `ix`'s share to read: not stored, not under way from the
    /// origin or a neighbour, and not shown by a neighbour with a relayed digest.
    fn next_share_piece(&mut self, task: u32, ix: usize) -> Option<u32> {
        let count = self.layouts[task as usize].piece_count();
        let state = self.tasks[task as usize].as_ref()?;
        let r = state.readers.get(ix)?;
        let slot = self.slot(r.node, task);
        let held = &self.held[slot];
        let picker = self.pickers[slot].as_ref();
        let end = r.share.end.min(count);
        let mut next = r.next;
        while next < end && held.get(next) {
            next += 1;
        }
        let taken = |n: u32| r.running.contains(&n) || picker.is_some_and(|p| p.is_in_flight(n));
        let from_peers = |n: u32| state.reported.get(n) && picker.is_some_and(|p| p.is_shown(n));
        let found = (next..end).find(|&n| !held.get(n) && !taken(n) && !from_peers(n));
        if let Some(r) = self.tasks[task as usize]
            .as_mut()
            .and_then(|t| t.readers.get_mut(ix))
        {
            r.next = next;
        }
        found
    }

    /// Piece `piece` read from the origin landed at `node`: its digest is relayed if `node`
    /// speaks for it, its picker hears it is held, and it reads on.
    pub(super) fn piece_from_origin(
        &mut self,
        task: u32,
        node: NodeIx,
        piece: u32,
        out: &mut Vec<Command>,
    ) {
        let Some(state) = self.tasks[task as usize].as_mut() else {
            return;
        };
        let mut speaks = state.seed == node;
        if let Some(r) = state.readers.iter_mut().find(|r| r.node == node) {
            r.running.retain(|&n| n != piece);
            speaks |= r.share.contains(&piece);
        }
        if speaks && !state.reported.get(piece) {
            state.reported.set(piece);
            let relay: Vec<NodeIx> = state
                .downloaders
                .iter()
                .copied()
                .chain(std::iter::once(state.seed))
                .collect();
            for d in relay {
                self.pick(d, task, PickEvent::Digest { piece });
            }
        }
        self.unreserve(node, task, piece);
        self.pick(node, task, PickEvent::Held { piece });
        self.read_origin(task, node, out);
    }

    /// `node`'s picker may fetch `piece` from its neighbours again.
    fn unreserve(&mut self, node: NodeIx, task: u32, piece: u32) {
        let reserved = false;
        self.pick(node, task, PickEvent::Reserved { piece, reserved });
    }

    /// An origin read of `node`'s failed: asked again if the piece is still in its share.
    pub(super) fn origin_failed(
        &mut self,
        task: u32,
        node: NodeIx,
        piece: u32,
        out: &mut Vec<Command>,
    ) {
        let Some(r) = self.tasks[task as usize]
            .as_mut()
            .and_then(|t| t.readers.iter_mut().find(|r| r.node == node))
        else {
            return;
        };
        if r.share.contains(&piece) {
            r.retry.push(piece);
        } else {
            r.running.retain(|&n| n != piece);
            self.unreserve(node, task, piece);
        }
        self.read_origin(task, node, out);
    }

    /// The task's seed read all its share and lacks pieces: it downloads the rest from its
    /// neighbours, with every digest relayed so far.
    fn seed_to_peers(&mut self, task: u32, node: NodeIx) {
        let slot = self.slot(node, task);
        let Some(state) = self.tasks[task as usize].as_ref() else {
            return;
        };
        let reading = state
            .readers
            .iter()
            .any(|r| r.node == node && !r.running.is_empty());
        if state.seed != node
            || reading
            || self.pickers[slot].is_some()
            || self.held[slot].is_full()
        {
            return;
        }
        self.start_picker(node, task);
        for n in self.neighbours(node, task) {
            self.introduce(task, node, n);
        }
    }

    /// `host` died: its share, from the first piece no live host holds, goes to the next
    /// helper, as the scheduler hands on a departed reader's share.
    pub(super) fn reader_gone(&mut self, task: u32, host: NodeIx, out: &mut Vec<Command>) {
        let Some(state) = self.tasks[task as usize].as_mut() else {
            return;
        };
        let Some(ix) = state.readers.iter().position(|r| r.node == host) else {
            return;
        };
        let gone = state.readers.remove(ix);
        let nodes = self.alive.len();
        let held_alive = |n: u32| {
            (1..nodes).any(|h| {
                let h = NodeIx::try_from(h).unwrap_or(NodeIx::MAX);
                self.alive[h as usize] && self.held[self.slot(h, task)].get(n)
            })
        };
        let Some(rest) = origin_share::orphaned(gone.share, held_alive) else {
            return;
        };
        if let Some(helper) = self
            .candidate(task)
            .filter(|_| self.config.origin_readers > 1)
        {
            self.give(task, helper, rest, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Driver, DriverConfig};
    use crate::bench::MIB;
    use crate::bench::sim::engine::{Engine, Outcome, SimTime};
    use crate::bench::sim::network::NodeIx;
    use crate::bench::sim::protocol::ORIGIN;
    use crate::bench::sim::scenario::SimConfig;

    const PIECES: u32 = 64;

    /// 12 peers pull 64 MiB in 1 MiB pieces at once; `kill_first_helper` kills the first one
    /// appointed (the first to register) at `at_s`.
    fn run(readers: usize, kill_first_helper: Option<f64>) -> (Outcome, Driver, Vec<NodeIx>) {
        run_with(readers, kill_first_helper, 8 * MIB)
    }

    fn run_with(
        readers: usize,
        kill_first_helper: Option<f64>,
        peer_upload: u64,
    ) -> (Outcome, Driver, Vec<NodeIx>) {
        let scenario = SimConfig {
            label: "t".into(),
            peers: 12,
            seeds: 1,
            size: u64::from(PIECES) * MIB,
            layers: 1,
            piece_length: Some(MIB),
            origin_rate: 32 * MIB,
            peer_upload,
            peer_download: 16 * MIB,
            start_spread_ms: 0,
            rng_seed: 5,
            limit_s: 600.0,
        }
        .build()
        .expect("scenario");
        let mut config = DriverConfig::daemon_defaults(5);
        config.origin_readers = readers;
        let driver = Driver::new(
            config,
            scenario.network.node_count(),
            scenario.layouts.clone(),
            scenario.seeds,
        );
        let mut engine = Engine::new(scenario.network, scenario.layouts, driver);
        for &(at, peer) in &scenario.starts {
            engine.schedule_download(at, peer, 0);
        }
        let first = scenario.starts[0].1;
        if let Some(at) = kill_first_helper {
            engine.schedule_kill(SimTime::from_secs_f64(at), first);
        }
        let outcome = engine.run(SimTime::from_secs_f64(600.0)).expect("runs");
        (outcome, engine.into_protocol(), scenario.peers)
    }

    fn shares(driver: &Driver) -> Vec<std::ops::Range<u32>> {
        let task = driver.tasks[0].as_ref().expect("task");
        let mut shares: Vec<_> = task.readers.iter().map(|r| r.share.clone()).collect();
        shares.sort_by_key(|s| s.start);
        shares
    }

    #[test]
    fn readers_share_the_task_and_the_origin_still_serves_each_piece_once() {
        let (out, driver, peers) = run(4, None);
        assert!(!out.stalled);
        assert!(peers.iter().all(|&p| out.finished_at[p as usize].is_some()));
        assert_eq!(out.sent[ORIGIN as usize], u64::from(PIECES) * MIB);
        assert_eq!(out.duplicate_bytes, 0);
        let task = driver.tasks[0].as_ref().expect("task");
        assert_eq!(task.readers.len(), 4, "the seed and three helpers");
        assert_eq!(task.readers[0].node, task.seed);
        let shares = shares(&driver);
        let mut next = 0;
        for s in &shares {
            assert_eq!(s.start, next, "disjoint and contiguous: {shares:?}");
            assert!(s.len() >= 8, "{shares:?}");
            next = s.end;
        }
        assert_eq!(next, PIECES);
    }

    #[test]
    fn one_reader_is_the_seed_alone() {
        let (out, driver, _) = run(1, None);
        assert!(!out.stalled);
        assert_eq!(out.sent[ORIGIN as usize], u64::from(PIECES) * MIB);
        assert_eq!(shares(&driver), vec![0..PIECES]);
    }

    #[test]
    fn a_dead_helpers_share_goes_to_another_and_the_survivors_finish() {
        // Killed at 1 s: the origin has sent about half the object, some of it to this helper.
        let (out, driver, peers) = run(4, Some(1.0));
        assert!(!out.stalled);
        let dead: Vec<_> = peers.iter().filter(|&&p| out.died[p as usize]).collect();
        assert_eq!(dead.len(), 1);
        for &p in peers.iter().filter(|&&p| !out.died[p as usize]) {
            assert!(out.finished_at[p as usize].is_some(), "peer {p}");
        }
        let task = driver.tasks[0].as_ref().expect("task");
        assert!(task.readers.iter().all(|r| r.node != *dead[0]));
        // What it was reading and had read and not delivered whole (at most `concurrent`, 3,
        // together: `df_peer::read_ahead`) are read again.
        let origin = out.sent[ORIGIN as usize];
        assert!(origin >= u64::from(PIECES) * MIB, "{origin}");
        assert!(origin <= u64::from(PIECES + 3) * MIB, "{}", origin / MIB);
        let shares = shares(&driver);
        assert_eq!(shares.last().map(|s| s.end), Some(PIECES), "{shares:?}");
    }

    #[test]
    fn a_helper_reads_no_further_ahead_than_it_sends() {
        // Uplinks at 2 MiB/s against downlinks at 16: read as fast as its downlink allowed, the
        // helper killed at 3 s had cost the origin 81 MiB for the 64; paced as sent, 68; as
        // delivered, 67.
        let (out, _, peers) = run_with(4, Some(3.0), 2 * MIB);
        assert!(!out.stalled);
        for &p in peers.iter().filter(|&&p| !out.died[p as usize]) {
            assert!(out.finished_at[p as usize].is_some(), "peer {p}");
        }
        let origin = out.sent[ORIGIN as usize];
        assert!(origin <= u64::from(PIECES + 3) * MIB, "{}", origin / MIB);
    }
}
