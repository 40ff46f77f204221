//! The discrete-event engine of `df-bench sim`: simulated time, the event queue, and the loop
//! that moves pieces over the [`Network`] as a [`Protocol`] commands.
//!
//! Invariants:
//! - simulated time never goes backwards; events due at the same instant run in the order they
//!   were scheduled (a sequence number breaks ties), so a run is deterministic for a given
//!   protocol and seed;
//! - a piece is only ever sent by the origin or by a live host that holds it (a command that
//!   breaks this is a protocol bug and stops the run with [`SimError::NotHeld`]);
//! - a host's completion time is the instant its last missing piece of its last task landed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use df_core::piece::PieceLayout;

use super::network::{FlowId, FlowTag, Network, NodeIx, Reschedule};
use super::protocol::{Command, ORIGIN, Protocol};

/// Simulated time in nanoseconds since the start of a run. Integer, so runs are exactly
/// reproducible and tests can compare times exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SimTime(pub u64);

const NANOS: f64 = 1e9;

impl SimTime {
    pub const ZERO: Self = Self(0);
    pub const MAX: Self = Self(u64::MAX);

    pub const fn from_millis(ms: u64) -> Self {
        Self(ms * 1_000_000)
    }

    pub fn from_secs_f64(s: f64) -> Self {
        Self((s * NANOS).ceil() as u64)
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / NANOS
    }

    /// `self + secs`, rounded up to the next nanosecond (a transfer is never early).
    pub fn after_secs(self, secs: f64) -> Self {
        Self(self.0.saturating_add((secs * NANOS).ceil() as u64))
    }

    pub fn saturating_sub(self, other: Self) -> Self {
        Self(self.0.saturating_sub(other.0))
    }

    pub fn plus(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SimError {
    #[error(
        "the protocol asked node {from} for piece {piece} of task {task}, which it does not hold"
    )]
    NotHeld { from: NodeIx, task: u32, piece: u32 },
    #[error("the protocol named piece {piece} of task {task}, which does not exist")]
    NoSuchPiece { task: u32, piece: u32 },
    #[error("the protocol named node {0}, which does not exist")]
    NoSuchNode(NodeIx),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Download { host: NodeIx, task: u32 },
    FlowDone { id: FlowId, version: u32 },
    Wake { token: u64 },
    Kill { host: NodeIx },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scheduled {
    at: SimTime,
    seq: u64,
    event: Event,
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A min-queue of events ordered by (time, insertion order).
#[derive(Debug, Default)]
struct EventQueue {
    heap: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
}

impl EventQueue {
    fn push(&mut self, at: SimTime, event: Event) {
        self.seq += 1;
        self.heap.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            event,
        }));
    }

    fn pop(&mut self) -> Option<Scheduled> {
        self.heap.pop().map(|Reverse(s)| s)
    }
}

/// What a host holds of one task: a bitset and a count.
#[derive(Debug, Clone, Default)]
struct Holding {
    bits: Vec<u64>,
    count: u32,
}

impl Holding {
    fn has(&self, piece: u32) -> bool {
        self.bits
            .get(piece as usize / 64)
            .is_some_and(|w| w & (1 << (piece % 64)) != 0)
    }

    /// Sets the bit; false if it was already set.
    fn set(&mut self, piece: u32) -> bool {
        let word = piece as usize / 64;
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        let mask = 1 << (piece % 64);
        let fresh = self.bits[word] & mask == 0;
        self.bits[word] |= mask;
        self.count += u32::from(fresh);
        fresh
    }
}

/// Per-host bookkeeping.
#[derive(Debug, Clone, Default)]
struct HostState {
    alive: bool,
    /// Tasks asked for and not yet complete.
    pending: u32,
    asked: bool,
    finished_at: Option<SimTime>,
    died_at: Option<SimTime>,
}

/// The result of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Per node: when it completed every task it was asked for (`None`: never asked, died, or
    /// the run ended first).
    pub finished_at: Vec<Option<SimTime>>,
    /// Per node: whether it was asked to download anything.
    pub asked: Vec<bool>,
    pub died: Vec<bool>,
    /// Per node: bytes it sent.
    pub sent: Vec<u64>,
    /// Bytes delivered to a host that already held the piece (endgame duplicates).
    pub duplicate_bytes: u64,
    /// Transfers cut by a death.
    pub cut_transfers: u64,
    pub events: u64,
    /// Simulated time of the last event.
    pub end: SimTime,
    /// The queue ran dry while some live host still missed pieces.
    pub stalled: bool,
}

pub struct Engine<P> {
    pub now: SimTime,
    queue: EventQueue,
    net: Network,
    tasks: Vec<PieceLayout>,
    hosts: Vec<HostState>,
    /// `holdings[node * tasks + task]`.
    holdings: Vec<Holding>,
    protocol: P,
    commands: Vec<Command>,
    reschedules: Vec<Reschedule>,
    outcome: Outcome,
}

impl<P: Protocol> Engine<P> {
    /// An engine over `net` (node 0 is the origin, which holds every piece of every task).
    pub fn new(net: Network, tasks: Vec<PieceLayout>, protocol: P) -> Self {
        let n = net.node_count();
        let mut hosts = vec![
            HostState {
                alive: true,
                ..HostState::default()
            };
            n
        ];
        hosts[ORIGIN as usize].alive = true;
        Self {
            now: SimTime::ZERO,
            queue: EventQueue::default(),
            holdings: vec![Holding::default(); n * tasks.len()],
            tasks,
            hosts,
            net,
            protocol,
            commands: Vec::new(),
            reschedules: Vec::new(),
            outcome: Outcome::default(),
        }
    }

    pub fn protocol(&self) -> &P {
        &self.protocol
    }

    pub fn into_protocol(self) -> P {
        self.protocol
    }

    pub fn network(&self) -> &Network {
        &self.net
    }

    /// Host `host` will be asked for `task` at `at`.
    pub fn schedule_download(&mut self, at: SimTime, host: NodeIx, task: u32) {
        self.queue.push(at, Event::Download { host, task });
    }

    /// Host `host` will die (kill -9) at `at`.
    pub fn schedule_kill(&mut self, at: SimTime, host: NodeIx) {
        self.queue.push(at, Event::Kill { host });
    }

    /// Whether node `node` holds piece `piece` of `task` (the origin holds everything).
    pub fn holds(&self, node: NodeIx, task: u32, piece: u32) -> bool {
        node == ORIGIN || self.holding(node, task).is_some_and(|h| h.has(piece))
    }

    fn holding(&self, node: NodeIx, task: u32) -> Option<&Holding> {
        self.holdings
            .get(node as usize * self.tasks.len() + task as usize)
    }

    /// Runs until every asked live host is complete, the queue is empty, or `until`.
    pub fn run(&mut self, until: SimTime) -> Result<Outcome, SimError> {
        while let Some(next) = self.queue.pop() {
            if next.at > until {
                break;
            }
            debug_assert!(next.at >= self.now, "time went backwards");
            self.now = next.at;
            self.outcome.events += 1;
            self.step(next.event)?;
            self.apply()?;
            if self.all_done() {
                break;
            }
        }
        let n = self.net.node_count();
        let mut out = std::mem::take(&mut self.outcome);
        out.end = self.now;
        out.finished_at = self.hosts.iter().map(|h| h.finished_at).collect();
        out.asked = self.hosts.iter().map(|h| h.asked).collect();
        out.died = self.hosts.iter().map(|h| h.died_at.is_some()).collect();
        out.sent = (0..n)
            .map(|i| self.net.sent(NodeIx::try_from(i).unwrap_or(NodeIx::MAX)))
            .collect();
        out.stalled = !self.all_done() && self.queue.heap.is_empty();
        Ok(out)
    }

    fn all_done(&self) -> bool {
        self.hosts.iter().all(|h| !h.alive || h.pending == 0) && self.hosts.iter().any(|h| h.asked)
    }

    fn step(&mut self, event: Event) -> Result<(), SimError> {
        let now = self.now;
        match event {
            Event::Download { host, task } => {
                let state = self
                    .hosts
                    .get_mut(host as usize)
                    .ok_or(SimError::NoSuchNode(host))?;
                if !state.alive {
                    return Ok(());
                }
                state.asked = true;
                state.pending += 1;
                self.protocol
                    .download_started(now, host, task, &mut self.commands);
            }
            Event::FlowDone { id, version } => {
                if !self.net.is_current(id, version) {
                    return Ok(());
                }
                let Some(d) = self.net.finish(now, id, true, &mut self.reschedules) else {
                    return Ok(());
                };
                self.land(d.to, d.tag, d.bytes);
                self.protocol.piece_received(
                    now,
                    d.from,
                    d.to,
                    d.tag.task,
                    d.tag.piece,
                    &mut self.commands,
                );
            }
            Event::Wake { token } => self.protocol.wake(now, token, &mut self.commands),
            Event::Kill { host } => self.kill(host)?,
        }
        Ok(())
    }

    /// Stores a delivered piece and records the host's completion.
    fn land(&mut self, to: NodeIx, tag: FlowTag, bytes: u64) {
        let count = self.tasks[tag.task as usize].piece_count();
        let idx = to as usize * self.tasks.len() + tag.task as usize;
        if !self.holdings[idx].set(tag.piece) {
            self.outcome.duplicate_bytes += bytes;
            return;
        }
        if self.holdings[idx].count == count {
            let host = &mut self.hosts[to as usize];
            host.pending = host.pending.saturating_sub(1);
            if host.pending == 0 && host.asked {
                host.finished_at = Some(self.now);
            }
        }
    }

    fn kill(&mut self, host: NodeIx) -> Result<(), SimError> {
        let now = self.now;
        let state = self
            .hosts
            .get_mut(host as usize)
            .ok_or(SimError::NoSuchNode(host))?;
        if !state.alive || host == ORIGIN {
            return Ok(());
        }
        state.alive = false;
        state.died_at = Some(now);
        self.protocol.host_died(now, host, &mut self.commands);
        for id in self.net.flows_of(host) {
            if let Some(d) = self.net.finish(now, id, false, &mut self.reschedules) {
                self.outcome.cut_transfers += 1;
                self.protocol.transfer_failed(
                    now,
                    d.from,
                    d.to,
                    d.tag.task,
                    d.tag.piece,
                    &mut self.commands,
                );
            }
        }
        Ok(())
    }

    /// Carries out the protocol's commands and schedules the completions they changed. Commands
    /// may produce more commands (a fetch from a dead host fails at once).
    fn apply(&mut self) -> Result<(), SimError> {
        while !self.commands.is_empty() || !self.reschedules.is_empty() {
            for r in self.reschedules.drain(..) {
                self.queue.push(
                    r.at,
                    Event::FlowDone {
                        id: r.id,
                        version: r.version,
                    },
                );
            }
            let commands = std::mem::take(&mut self.commands);
            for c in &commands {
                self.command(*c)?;
            }
        }
        Ok(())
    }

    fn command(&mut self, c: Command) -> Result<(), SimError> {
        let now = self.now;
        match c {
            Command::Wake { at, token } => self.queue.push(at.max(now), Event::Wake { token }),
            Command::Fetch {
                task,
                piece,
                from,
                to,
            } => {
                let (_, bytes) = self
                    .tasks
                    .get(task as usize)
                    .and_then(|t| t.range(piece))
                    .ok_or(SimError::NoSuchPiece { task, piece })?;
                for node in [from, to] {
                    if node as usize >= self.hosts.len() {
                        return Err(SimError::NoSuchNode(node));
                    }
                }
                if !self.hosts[from as usize].alive || !self.hosts[to as usize].alive {
                    // Connection refused: the protocol hears at once, as a real peer would.
                    self.protocol
                        .transfer_failed(now, from, to, task, piece, &mut self.commands);
                    return Ok(());
                }
                if !self.holds(from, task, piece) {
                    return Err(SimError::NotHeld { from, task, piece });
                }
                self.net.start(
                    now,
                    from,
                    to,
                    FlowTag { task, piece },
                    bytes,
                    &mut self.reschedules,
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::MIB;

    /// Downloads every piece of task 0 from one fixed source, `window` pieces at a time, in
    /// order. Enough to check the engine; the real decision logic is bound in `driver/`.
    struct FromOne {
        source: NodeIx,
        window: u32,
        pieces: u32,
        next: Vec<u32>,
        log: Vec<(SimTime, NodeIx, u32)>,
    }

    impl FromOne {
        fn new(source: NodeIx, window: u32, pieces: u32, nodes: usize) -> Self {
            Self {
                source,
                window,
                pieces,
                next: vec![0; nodes],
                log: Vec::new(),
            }
        }

        fn ask(&mut self, to: NodeIx, out: &mut Vec<Command>) {
            let next = &mut self.next[to as usize];
            if *next < self.pieces {
                out.push(Command::Fetch {
                    task: 0,
                    piece: *next,
                    from: self.source,
                    to,
                });
                *next += 1;
            }
        }
    }

    impl Protocol for FromOne {
        fn download_started(&mut self, _: SimTime, host: NodeIx, _: u32, out: &mut Vec<Command>) {
            for _ in 0..self.window {
                self.ask(host, out);
            }
        }
        fn piece_received(
            &mut self,
            now: SimTime,
            _: NodeIx,
            to: NodeIx,
            _: u32,
            piece: u32,
            out: &mut Vec<Command>,
        ) {
            self.log.push((now, to, piece));
            self.ask(to, out);
        }
        fn transfer_failed(
            &mut self,
            _: SimTime,
            _: NodeIx,
            _: NodeIx,
            _: u32,
            _: u32,
            _: &mut Vec<Command>,
        ) {
        }
        fn host_died(&mut self, _: SimTime, _: NodeIx, _: &mut Vec<Command>) {}
        fn wake(&mut self, now: SimTime, token: u64, _: &mut Vec<Command>) {
            self.log.push((now, 0, u32::try_from(token).unwrap_or(0)));
        }
    }

    fn spec(size: u64) -> PieceLayout {
        PieceLayout::new(size, Some(4 * MIB))
    }

    #[test]
    fn a_two_host_transfer_takes_size_over_the_smaller_cap() {
        for (up, down, window) in [(32, 16, 1), (16, 32, 1), (32, 32, 8), (64, 16, 3)] {
            let mut net = Network::default();
            net.add_node(0, 0); // the origin, unused
            let a = net.add_node(up * MIB, 0);
            let b = net.add_node(0, down * MIB);
            let mut e = Engine::new(net, vec![spec(256 * MIB)], FromOne::new(a, window, 64, 3));
            // `a` holds everything; it never asks for anything itself.
            for p in 0..64 {
                e.holdings[a as usize].set(p);
            }
            e.schedule_download(SimTime::ZERO, b, 0);
            let out = e.run(SimTime::MAX).expect("run");
            let want = SimTime::from_secs_f64(256.0 / up.min(down) as f64);
            assert_eq!(out.finished_at[b as usize], Some(want), "U {up} D {down}");
            assert_eq!(out.sent[a as usize], 256 * MIB);
            assert!(!out.stalled);
        }
    }

    #[test]
    fn receivers_of_one_sender_share_its_uplink_fairly() {
        // Origin at 32 MiB/s feeding 4 hosts with 64 MiB/s downlinks: each gets 8 MiB/s, so
        // 64 MiB takes 8 s for all of them, whatever their request windows.
        let mut net = Network::default();
        let origin = net.add_node(32 * MIB, 0);
        let hosts: Vec<NodeIx> = (0..4).map(|_| net.add_node(0, 64 * MIB)).collect();
        let mut e = Engine::new(net, vec![spec(64 * MIB)], FromOne::new(origin, 2, 16, 5));
        for &h in &hosts {
            e.schedule_download(SimTime::ZERO, h, 0);
        }
        let out = e.run(SimTime::MAX).expect("run");
        for &h in &hosts {
            assert_eq!(
                out.finished_at[h as usize],
                Some(SimTime::from_millis(8_000))
            );
        }
        assert_eq!(out.sent[0], 4 * 64 * MIB);
    }

    #[test]
    fn a_slow_receiver_does_not_slow_the_others_beyond_their_share() {
        // Uplink 32 MiB/s split two ways (16 each); one receiver can take only 4 MiB/s, so its
        // flow runs at 4 and the other at 16 (equal split, not max-min: the model's rule).
        let mut net = Network::default();
        let origin = net.add_node(32 * MIB, 0);
        let fast = net.add_node(0, 0);
        let slow = net.add_node(0, 4 * MIB);
        let mut e = Engine::new(net, vec![spec(16 * MIB)], FromOne::new(origin, 1, 4, 3));
        e.schedule_download(SimTime::ZERO, fast, 0);
        e.schedule_download(SimTime::ZERO, slow, 0);
        let out = e.run(SimTime::MAX).expect("run");
        // fast: 4 pieces of 4 MiB at 16 MiB/s while slow is active = 1 s.
        assert_eq!(
            out.finished_at[fast as usize],
            Some(SimTime::from_millis(1_000))
        );
        assert_eq!(
            out.finished_at[slow as usize],
            Some(SimTime::from_millis(4_000))
        );
    }

    #[test]
    fn events_at_one_instant_run_in_the_order_they_were_scheduled() {
        let mut q = EventQueue::default();
        for token in [5, 1, 4] {
            q.push(SimTime::from_millis(10), Event::Wake { token });
        }
        q.push(SimTime::from_millis(5), Event::Wake { token: 9 });
        let order: Vec<(u64, u64)> = std::iter::from_fn(|| q.pop())
            .map(|s| match s.event {
                Event::Wake { token } => (s.at.0, token),
                _ => (0, 0),
            })
            .collect();
        assert_eq!(
            order,
            vec![
                (5_000_000, 9),
                (10_000_000, 5),
                (10_000_000, 1),
                (10_000_000, 4)
            ]
        );
    }

    #[test]
    fn time_never_goes_backwards_and_every_piece_lands_once() {
        let mut net = Network::default();
        let origin = net.add_node(48 * MIB, 0);
        let hosts: Vec<NodeIx> = (0..5).map(|i| net.add_node(0, (8 + 4 * i) * MIB)).collect();
        let mut e = Engine::new(net, vec![spec(30 * MIB)], FromOne::new(origin, 3, 8, 6));
        for (i, &h) in hosts.iter().enumerate() {
            e.schedule_download(SimTime::from_millis(100 * i as u64), h, 0);
        }
        let out = e.run(SimTime::MAX).expect("run");
        let log = &e.protocol().log;
        assert!(
            log.windows(2).all(|w| w[0].0 <= w[1].0),
            "time went backwards"
        );
        assert_eq!(log.len(), 5 * 8);
        for &h in &hosts {
            let mut got: Vec<u32> = log.iter().filter(|l| l.1 == h).map(|l| l.2).collect();
            got.sort_unstable();
            assert_eq!(got, (0..8).collect::<Vec<_>>());
        }
        assert_eq!(out.duplicate_bytes, 0);
        // The last piece of a 30 MiB task is 2 MiB.
        assert_eq!(out.sent[0], 5 * 30 * MIB);
    }

    #[test]
    fn fetching_a_piece_the_sender_lacks_is_a_protocol_error() {
        let mut net = Network::default();
        net.add_node(0, 0);
        let a = net.add_node(0, 0);
        let b = net.add_node(0, 0);
        let mut e = Engine::new(net, vec![spec(8 * MIB)], FromOne::new(a, 1, 2, 3));
        e.schedule_download(SimTime::ZERO, b, 0);
        assert_eq!(
            e.run(SimTime::MAX),
            Err(SimError::NotHeld {
                from: a,
                task: 0,
                piece: 0
            })
        );
    }

    #[test]
    fn a_killed_sender_cuts_its_transfers_and_the_run_reports_a_stall() {
        let mut net = Network::default();
        net.add_node(0, 0);
        let a = net.add_node(MIB, 0);
        let b = net.add_node(0, 0);
        let mut e = Engine::new(net, vec![spec(8 * MIB)], FromOne::new(a, 1, 2, 3));
        for p in 0..2 {
            e.holdings[a as usize].set(p);
        }
        e.schedule_download(SimTime::ZERO, b, 0);
        e.schedule_kill(SimTime::from_millis(500), a);
        let out = e.run(SimTime::MAX).expect("run");
        assert_eq!(out.cut_transfers, 1);
        assert!(out.stalled);
        assert_eq!(out.finished_at[b as usize], None);
        assert!(out.died[a as usize]);
    }
}
