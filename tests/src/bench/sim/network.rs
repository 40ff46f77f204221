//! The flow-level network model of `df-bench sim`: nodes with an uplink and a downlink cap, and
//! piece-sized transfers (flows) between them.
//!
//! Sharing rule: a flow's rate is the smaller of its sender's uplink share and its receiver's
//! downlink share, each cap split equally among the flows on that side of the node
//! (`up_cap / flows up`, `down_cap / flows down`). A flow's rate therefore depends only on the
//! flow counts of its two ends, so when a flow starts or ends only the flows leaving its sender
//! and entering its receiver change rate; [`Network::start`] and [`Network::finish`] recompute
//! exactly those, which keeps a step O(flows at two nodes) whatever N is.
//!
//! Invariants:
//! - the rates of the flows leaving a node sum to at most its uplink cap, those entering it to
//!   at most its downlink cap;
//! - a flow's `remaining` bytes are settled (progress up to `settled_at` subtracted) before its
//!   rate changes, so progress is integrated exactly piecewise;
//! - every rate change bumps the flow's `version`; a completion predicted for an older version
//!   is stale and must be ignored (the engine's events carry the version). A slot's versions
//!   keep counting across the flows that reuse it, so a stale completion of an earlier flow
//!   never matches a later one (it did, until a transfer was seen to run at 1.8x its
//!   receiver's downlink).

use super::engine::SimTime;

/// A node of the simulated network: the origin is node 0, hosts follow.
pub type NodeIx = u32;

/// Opaque payload the engine attaches to a flow (which task and piece it carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowTag {
    pub task: u32,
    pub piece: u32,
}

/// A slot in the flow table; slots are reused after a flow ends.
pub type FlowId = u32;

#[derive(Debug, Clone)]
struct Flow {
    from: NodeIx,
    to: NodeIx,
    tag: FlowTag,
    /// Bytes still to send as of `settled_at`.
    remaining: f64,
    /// Bytes per second; may be infinite when both ends are uncapped.
    rate: f64,
    settled_at: SimTime,
    version: u32,
}

/// A flow whose completion time changed: the engine schedules `FlowDone(id, version)` at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reschedule {
    pub id: FlowId,
    pub version: u32,
    pub at: SimTime,
}

/// A finished flow, as [`Network::finish`] returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub from: NodeIx,
    pub to: NodeIx,
    pub tag: FlowTag,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// Bytes per second; `f64::INFINITY` when uncapped.
    up_cap: f64,
    down_cap: f64,
    up: Vec<FlowId>,
    down: Vec<FlowId>,
    sent: u64,
}

#[derive(Debug, Default)]
pub struct Network {
    nodes: Vec<Node>,
    flows: Vec<Option<Flow>>,
    free: Vec<FlowId>,
    /// Flow sizes, kept apart from `remaining` so byte counts stay exact integers.
    sizes: Vec<u64>,
    /// Per slot, the last version of the flow that ended there: the next one counts on.
    ended_versions: Vec<u32>,
    live: usize,
}

/// A cap in bytes per second as the model uses it: 0 means unlimited.
pub fn cap(rate: u64) -> f64 {
    if rate == 0 {
        f64::INFINITY
    } else {
        rate as f64
    }
}

impl Network {
    /// Adds a node with caps in bytes per second (0 = unlimited) and returns its index.
    pub fn add_node(&mut self, up: u64, down: u64) -> NodeIx {
        self.nodes.push(Node {
            up_cap: cap(up),
            down_cap: cap(down),
            ..Node::default()
        });
        NodeIx::try_from(self.nodes.len() - 1).unwrap_or(NodeIx::MAX)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Flows in progress.
    pub fn live_flows(&self) -> usize {
        self.live
    }

    /// Bytes a node has finished sending.
    pub fn sent(&self, node: NodeIx) -> u64 {
        self.nodes[node as usize].sent
    }

    /// Flows in progress into `node`.
    pub fn inbound(&self, node: NodeIx) -> usize {
        self.nodes[node as usize].down.len()
    }

    /// The current rate of a live flow, bytes per second.
    pub fn rate(&self, id: FlowId) -> Option<f64> {
        self.flows
            .get(id as usize)
            .and_then(Option::as_ref)
            .map(|f| f.rate)
    }

    /// Starts a flow of `bytes` from `from` to `to` at `now` and returns every flow whose
    /// completion time changed (the new one included).
    pub fn start(
        &mut self,
        now: SimTime,
        from: NodeIx,
        to: NodeIx,
        tag: FlowTag,
        bytes: u64,
        out: &mut Vec<Reschedule>,
    ) -> FlowId {
        let flow = Flow {
            from,
            to,
            tag,
            remaining: bytes as f64,
            rate: 0.0,
            settled_at: now,
            version: 0,
        };
        let id = match self.free.pop() {
            Some(id) => {
                let version = self.ended_versions[id as usize];
                self.flows[id as usize] = Some(Flow { version, ..flow });
                self.sizes[id as usize] = bytes;
                id
            }
            None => {
                self.flows.push(Some(flow));
                self.sizes.push(bytes);
                self.ended_versions.push(0);
                FlowId::try_from(self.flows.len() - 1).unwrap_or(FlowId::MAX)
            }
        };
        self.live += 1;
        self.nodes[from as usize].up.push(id);
        self.nodes[to as usize].down.push(id);
        self.recompute(now, from, to, out);
        id
    }

    /// Whether `version` is the current version of live flow `id`.
    pub fn is_current(&self, id: FlowId, version: u32) -> bool {
        self.flows
            .get(id as usize)
            .and_then(Option::as_ref)
            .is_some_and(|f| f.version == version)
    }

    /// Ends flow `id` at `now` (delivered, or cut when an end died) and reschedules the flows
    /// that share its ends. `None` if there is no such flow.
    pub fn finish(
        &mut self,
        now: SimTime,
        id: FlowId,
        delivered: bool,
        out: &mut Vec<Reschedule>,
    ) -> Option<Delivered> {
        let flow = self.flows.get_mut(id as usize)?.take()?;
        self.ended_versions[id as usize] = flow.version;
        self.free.push(id);
        self.live -= 1;
        let bytes = self.sizes[id as usize];
        let detach = |list: &mut Vec<FlowId>| {
            if let Some(pos) = list.iter().position(|&f| f == id) {
                list.swap_remove(pos);
            }
        };
        detach(&mut self.nodes[flow.from as usize].up);
        detach(&mut self.nodes[flow.to as usize].down);
        if delivered {
            self.nodes[flow.from as usize].sent += bytes;
        }
        self.recompute(now, flow.from, flow.to, out);
        Some(Delivered {
            from: flow.from,
            to: flow.to,
            tag: flow.tag,
            bytes,
        })
    }

    /// Every live flow leaving or entering `node` (to cut them when the node dies).
    pub fn flows_of(&self, node: NodeIx) -> Vec<FlowId> {
        let n = &self.nodes[node as usize];
        n.up.iter().chain(&n.down).copied().collect()
    }

    /// New rates for the flows leaving `from` and entering `to`: the only ones whose shares
    /// changed.
    fn recompute(&mut self, now: SimTime, from: NodeIx, to: NodeIx, out: &mut Vec<Reschedule>) {
        let (up, down) = {
            let (a, b) = (&self.nodes[from as usize], &self.nodes[to as usize]);
            (a.up.clone(), b.down.clone())
        };
        for id in up.into_iter().chain(down) {
            if let Some(r) = self.rerate(now, id) {
                out.push(r);
            }
        }
    }

    fn rerate(&mut self, now: SimTime, id: FlowId) -> Option<Reschedule> {
        let (from, to) = {
            let f = self.flows[id as usize].as_ref()?;
            (f.from as usize, f.to as usize)
        };
        let up = &self.nodes[from];
        let down = &self.nodes[to];
        let rate = (up.up_cap / up.up.len() as f64).min(down.down_cap / down.down.len() as f64);
        let f = self.flows[id as usize].as_mut()?;
        if f.rate == rate && f.version > 0 {
            // Already scheduled at this rate: the prediction made then still holds.
            return None;
        }
        let elapsed = now.saturating_sub(f.settled_at).as_secs_f64();
        if f.rate.is_finite() {
            f.remaining = (f.remaining - f.rate * elapsed).max(0.0);
        }
        f.settled_at = now;
        f.rate = rate;
        f.version = f.version.wrapping_add(1);
        let at = if rate.is_infinite() || f.remaining == 0.0 {
            now
        } else {
            now.after_secs(f.remaining / rate)
        };
        Some(Reschedule {
            id,
            version: f.version,
            at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::MIB;

    const TAG: FlowTag = FlowTag { task: 0, piece: 0 };

    #[test]
    fn a_flow_runs_at_the_smaller_of_the_two_caps() {
        let mut net = Network::default();
        let a = net.add_node(32 * MIB, 0);
        let b = net.add_node(0, 16 * MIB);
        let mut out = Vec::new();
        let id = net.start(SimTime::ZERO, a, b, TAG, 4 * MIB, &mut out);
        assert_eq!(net.rate(id), Some((16 * MIB) as f64));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].at, SimTime::from_millis(250));
    }

    #[test]
    fn flows_share_a_link_equally_and_speed_up_when_one_ends() {
        let mut net = Network::default();
        let seed = net.add_node(32 * MIB, 0);
        let x = net.add_node(0, 0);
        let y = net.add_node(0, 0);
        let mut out = Vec::new();
        let fx = net.start(SimTime::ZERO, seed, x, TAG, 4 * MIB, &mut out);
        out.clear();
        let fy = net.start(SimTime::ZERO, seed, y, TAG, 8 * MIB, &mut out);
        // Both flows leave `seed`: both are rescheduled at 16 MiB/s.
        assert_eq!(out.len(), 2);
        assert_eq!(net.rate(fx), Some((16 * MIB) as f64));
        let at_x = out.iter().find(|r| r.id == fx).map(|r| r.at);
        assert_eq!(at_x, Some(SimTime::from_millis(250)));
        out.clear();
        let done = net.finish(SimTime::from_millis(250), fx, true, &mut out);
        assert_eq!(done.map(|d| d.bytes), Some(4 * MIB));
        // y sent 4 MiB in 0.25 s; the other 4 MiB at the whole 32 MiB/s take 0.125 s more.
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].id, fy);
        assert_eq!(out[0].at, SimTime::from_millis(375));
        assert_eq!(net.sent(seed), 4 * MIB);
        assert!(!net.is_current(fx, 1));
    }

    #[test]
    fn a_flow_only_touches_the_flows_at_its_two_ends() {
        let mut net = Network::default();
        let nodes: Vec<NodeIx> = (0..4).map(|_| net.add_node(8 * MIB, 8 * MIB)).collect();
        let mut out = Vec::new();
        net.start(SimTime::ZERO, nodes[0], nodes[1], TAG, MIB, &mut out);
        out.clear();
        // 2 -> 3 shares no node with 0 -> 1.
        net.start(SimTime::ZERO, nodes[2], nodes[3], TAG, MIB, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_stale_completion_of_a_slots_earlier_flow_does_not_end_the_next_one() {
        let mut net = Network::default();
        let a = net.add_node(8 * MIB, 0);
        let b = net.add_node(0, 0);
        let c = net.add_node(0, 0);
        let mut out = Vec::new();
        let first = net.start(SimTime::ZERO, a, b, TAG, 8 * MIB, &mut out);
        let stale = out[0];
        // A second flow halves the first one's rate: its first completion is stale now.
        out.clear();
        let other = net.start(SimTime::ZERO, a, c, TAG, 8 * MIB, &mut out);
        assert!(!net.is_current(first, stale.version));
        out.clear();
        net.finish(SimTime::from_millis(500), first, false, &mut out);
        // The slot is reused by a new flow; the old prediction must not match it.
        out.clear();
        let next = net.start(SimTime::from_millis(500), a, b, TAG, 8 * MIB, &mut out);
        assert_eq!(next, first, "the slot is reused");
        assert!(!net.is_current(next, stale.version));
        let new = out.iter().find(|r| r.id == next).map(|r| r.version);
        assert!(new.is_some_and(|v| net.is_current(next, v)));
        assert!(net.rate(other).is_some());
    }
}
