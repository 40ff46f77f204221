//! The adapter between the simulator's engine and the decision logic it drives.
//!
//! The engine knows nodes, links and transfers; it knows nothing of schedulers, neighbours or
//! piece picking. A [`Protocol`] gets the events a real cluster's async code would see
//! (a download starts, a piece arrived, a transfer was cut, a host died, a timer fired) with the
//! simulated time, and answers with [`Command`]s: move this piece from there to here, wake me
//! at that time. The production binding (`driver/`) feeds those events to the scheduler's and
//! the peer's pure state machines; the engine's unit tests use small protocols of their own.

use super::engine::SimTime;
use super::network::NodeIx;

/// The origin is always node 0; hosts (seeds, then peers) follow.
pub const ORIGIN: NodeIx = 0;

/// What a protocol asks the engine to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Move piece `piece` of task `task` from `from` (the origin or a host that holds it) to
    /// host `to`. The engine checks that `from` holds the piece.
    Fetch {
        task: u32,
        piece: u32,
        from: NodeIx,
        to: NodeIx,
    },
    /// Call [`Protocol::wake`] with `token` at `at` (timers: scheduler ticks, timeouts).
    Wake { at: SimTime, token: u64 },
}

/// The decision logic under simulation.
pub trait Protocol {
    /// Host `host` starts downloading `task` (a client asked it for the object).
    fn download_started(&mut self, now: SimTime, host: NodeIx, task: u32, out: &mut Vec<Command>);

    /// Piece `piece` of `task` arrived at `to` from `from` and is stored there.
    fn piece_received(
        &mut self,
        now: SimTime,
        from: NodeIx,
        to: NodeIx,
        task: u32,
        piece: u32,
        out: &mut Vec<Command>,
    );

    /// A transfer was cut before it finished because `from` or `to` died.
    fn transfer_failed(
        &mut self,
        now: SimTime,
        from: NodeIx,
        to: NodeIx,
        task: u32,
        piece: u32,
        out: &mut Vec<Command>,
    );

    /// Host `host` died (churn): it will never send or receive again.
    fn host_died(&mut self, now: SimTime, host: NodeIx, out: &mut Vec<Command>);

    /// A timer asked for with [`Command::Wake`] fired.
    fn wake(&mut self, now: SimTime, token: u64, out: &mut Vec<Command>);
}
