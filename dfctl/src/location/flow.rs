//! Who fed whom: a task's directed transfer edges (`parent -> child`, bytes) folded into one
//! row per node, so a swarm reads at a glance at any size. The origin is a node of its own
//! (it fed every peer that has `bytes_from_origin`); every other node is a peer.
//!
//! Each row carries what the node received and sent in total, and one [`FlowLink`] per node it
//! exchanged bytes with, holding both directions: in a mesh `a -> b` and `b -> a` are two
//! edges with their own counts, and they meet on one link. Rows are ordered origin first, then
//! seeds, then by hops from the origin (the depth a piece travelled to get there), then by
//! name, so the roots are on top whatever the topology.
//!
//! Invariants: every byte of every edge is counted once on each side (the sender's `sent`, the
//! receiver's `received`); self-edges are ignored; an edge to a peer the schedulers no longer
//! list still counts, under a node named by its peer id. Pure: no I/O, no clock.

use std::collections::{HashMap, VecDeque};

use df_core::api::{EdgeView, PeerView};
use serde::Serialize;

use crate::render::natural_key;

/// The name of the origin's row.
pub const ORIGIN: &str = "origin";

/// A task's flow graph, one row per node.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Flows {
    /// Origin first, then seeds, then by hops and name.
    pub nodes: Vec<FlowNode>,
    /// Bytes the peers read from the origin.
    pub from_origin: u64,
    /// Bytes moved between peers (the sum of the edges).
    pub between_peers: u64,
    /// The most hops any fed peer is from the origin.
    pub depth: u32,
}

/// One node: the origin or a peer.
#[derive(Debug, Clone, Serialize)]
pub struct FlowNode {
    /// `None` for the origin.
    pub peer_id: Option<String>,
    pub name: String,
    pub is_seed: bool,
    /// The peer's state as the scheduler reports it (empty for the origin).
    pub state: String,
    pub finished_pieces: u32,
    /// Hops from the origin along links that carried bytes: 0 for the origin, `None` for a
    /// peer nobody fed yet.
    pub hops: Option<u32>,
    pub received: u64,
    pub sent: u64,
    /// Every node this one exchanged bytes with, or holds a blocklisted edge with; most bytes
    /// (both directions) first.
    pub links: Vec<FlowLink>,
}

/// Both directions between a node and one other.
#[derive(Debug, Clone, Serialize)]
pub struct FlowLink {
    /// Index of the other node in [`Flows::nodes`].
    pub node: usize,
    pub name: String,
    /// Bytes the other node sent this one.
    pub received: u64,
    /// Bytes this one sent the other.
    pub sent: u64,
    /// One of the two edges is blocklisted (its parent failed the child).
    pub blocklisted: bool,
    /// One of the two edges is still transferring.
    pub active: bool,
    /// Pieces moved and failed transfers, both directions.
    pub pieces: u32,
    pub failures: u32,
}

impl FlowNode {
    /// The nodes that sent this one bytes, most first.
    pub fn fed_by(&self) -> impl Iterator<Item = &FlowLink> {
        let mut links: Vec<&FlowLink> = self.links.iter().filter(|l| l.received > 0).collect();
        links.sort_by_key(|l| std::cmp::Reverse(l.received));
        links.into_iter()
    }

    /// The nodes this one sent bytes to, most first.
    pub fn fed_to(&self) -> impl Iterator<Item = &FlowLink> {
        let mut links: Vec<&FlowLink> = self.links.iter().filter(|l| l.sent > 0).collect();
        links.sort_by_key(|l| std::cmp::Reverse(l.sent));
        links.into_iter()
    }
}

/// Per-pair totals while folding, keyed by (this node, other node) in build order.
#[derive(Default, Clone, Copy)]
struct Pair {
    received: u64,
    sent: u64,
    blocklisted: bool,
    active: bool,
    pieces: u32,
    failures: u32,
}

impl Flows {
    /// Folds `edges` over `peers`; `name` labels a peer (a host name, say).
    pub fn of<'a>(
        peers: &'a [PeerView],
        edges: &'a [EdgeView],
        name: impl Fn(&PeerView) -> String,
    ) -> Self {
        let mut nodes = vec![FlowNode::origin()];
        let mut index: HashMap<&'a str, usize> = HashMap::new();
        for p in peers {
            if index.contains_key(p.peer_id.as_str()) {
                continue;
            }
            index.insert(&p.peer_id, nodes.len());
            nodes.push(FlowNode::peer(p, name(p)));
        }
        let mut pairs: HashMap<(usize, usize), Pair> = HashMap::new();
        let mut from_origin = 0;
        for p in peers {
            if p.bytes_from_origin > 0 {
                let i = index[p.peer_id.as_str()];
                from_origin += p.bytes_from_origin;
                let pair = Pair {
                    sent: p.bytes_from_origin,
                    ..Pair::default()
                };
                add(&mut pairs, 0, i, pair);
            }
        }
        let mut between_peers = 0;
        for e in edges.iter().filter(|e| e.parent != e.child) {
            let from = node_index(&mut index, &mut nodes, &e.parent);
            let to = node_index(&mut index, &mut nodes, &e.child);
            between_peers += e.bytes;
            let pair = Pair {
                sent: e.bytes,
                received: 0,
                blocklisted: e.blocklisted,
                active: e.active,
                pieces: e.pieces,
                failures: e.failures,
            };
            add(&mut pairs, from, to, pair);
        }
        for (&(a, b), pair) in &pairs {
            nodes[a].received += pair.received;
            nodes[a].sent += pair.sent;
            nodes[a].links.push(FlowLink {
                node: b,
                name: String::new(),
                received: pair.received,
                sent: pair.sent,
                blocklisted: pair.blocklisted,
                active: pair.active,
                pieces: pair.pieces,
                failures: pair.failures,
            });
        }
        let depth = set_hops(&mut nodes);
        let nodes = ordered(nodes);
        Self {
            nodes,
            from_origin,
            between_peers,
            depth,
        }
    }
}

/// The row of peer `id`, added as an unlisted peer when the schedulers no longer list it.
fn node_index<'a>(
    index: &mut HashMap<&'a str, usize>,
    nodes: &mut Vec<FlowNode>,
    id: &'a str,
) -> usize {
    *index.entry(id).or_insert_with(|| {
        nodes.push(FlowNode::unlisted(id));
        nodes.len() - 1
    })
}

/// Records one edge (`edge.sent` bytes from `from` to `to`) on both ends of the pair.
fn add(pairs: &mut HashMap<(usize, usize), Pair>, from: usize, to: usize, edge: Pair) {
    for (key, sent, received) in [((from, to), edge.sent, 0), ((to, from), 0, edge.sent)] {
        let pair = pairs.entry(key).or_default();
        pair.sent += sent;
        pair.received += received;
        pair.blocklisted |= edge.blocklisted;
        pair.active |= edge.active;
        pair.pieces += edge.pieces;
        pair.failures += edge.failures;
    }
}

/// Breadth-first from the origin over links that carried bytes; returns the deepest hop.
fn set_hops(nodes: &mut [FlowNode]) -> u32 {
    nodes[0].hops = Some(0);
    let mut queue = VecDeque::from([0usize]);
    let mut depth = 0;
    while let Some(n) = queue.pop_front() {
        let hops = nodes[n].hops.unwrap_or(0) + 1;
        let next: Vec<usize> = nodes[n]
            .links
            .iter()
            .filter(|l| l.sent > 0)
            .map(|l| l.node)
            .collect();
        for m in next {
            if nodes[m].hops.is_none() {
                nodes[m].hops = Some(hops);
                depth = depth.max(hops);
                queue.push_back(m);
            }
        }
    }
    depth
}

/// Sorts the rows (origin, seeds, hops, name), renumbers the links and names them, and
/// orders each node's links by bytes moved.
fn ordered(nodes: Vec<FlowNode>) -> Vec<FlowNode> {
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&nodes[a], &nodes[b]);
        (a != 0)
            .cmp(&(b != 0))
            .then_with(|| y.is_seed.cmp(&x.is_seed))
            .then_with(|| x.hops.unwrap_or(u32::MAX).cmp(&y.hops.unwrap_or(u32::MAX)))
            .then_with(|| natural_key(&x.name).cmp(&natural_key(&y.name)))
            .then_with(|| x.peer_id.cmp(&y.peer_id))
    });
    let mut new_index = vec![0; nodes.len()];
    for (new, &old) in order.iter().enumerate() {
        new_index[old] = new;
    }
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let mut slots: Vec<Option<FlowNode>> = nodes.into_iter().map(Some).collect();
    order
        .iter()
        .filter_map(|&old| slots[old].take())
        .map(|mut node| {
            for link in &mut node.links {
                link.name = names[link.node].clone();
                link.node = new_index[link.node];
            }
            node.links.sort_by(|a, b| {
                (b.received + b.sent)
                    .cmp(&(a.received + a.sent))
                    .then_with(|| natural_key(&a.name).cmp(&natural_key(&b.name)))
            });
            node
        })
        .collect()
}

impl FlowNode {
    fn origin() -> Self {
        Self {
            peer_id: None,
            name: ORIGIN.to_owned(),
            is_seed: false,
            state: String::new(),
            finished_pieces: 0,
            hops: None,
            received: 0,
            sent: 0,
            links: Vec::new(),
        }
    }

    fn peer(p: &PeerView, name: String) -> Self {
        Self {
            peer_id: Some(p.peer_id.clone()),
            name,
            is_seed: p.is_seed,
            state: p.state.clone(),
            finished_pieces: p.finished_pieces,
            ..Self::origin()
        }
    }

    /// A peer an edge names that the schedulers no longer list (it left and was forgotten).
    fn unlisted(peer_id: &str) -> Self {
        Self {
            peer_id: Some(peer_id.to_owned()),
            name: peer_id.chars().take(12).collect(),
            state: "gone".to_owned(),
            ..Self::origin()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: &str, seed: bool, from_origin: u64) -> PeerView {
        PeerView {
            peer_id: id.into(),
            host_id: format!("10.0.0.1-{id}"),
            ip: "10.0.0.1".into(),
            admin_port: 4002,
            is_seed: seed,
            state: "running".into(),
            finished_pieces: 1,
            bitmap: String::new(),
            content_path: String::new(),
            bytes_from_origin: from_origin,
            bytes_from_peers: 0,
            updated_secs_ago: 0,
            origin_share: None,
            share_withdrawn: false,
        }
    }

    fn edge(parent: &str, child: &str, bytes: u64, blocklisted: bool) -> EdgeView {
        EdgeView {
            parent: parent.into(),
            child: child.into(),
            bytes,
            pieces: 1,
            failures: u32::from(blocklisted),
            active: false,
            blocklisted,
        }
    }

    fn flows() -> Flows {
        // The seed reads 100 from the origin; a and b each get some from it, then swap pieces
        // both ways; a peer the schedulers forgot sent b a little; c has been fed by nobody.
        let peers = [
            peer("b", false, 0),
            peer("c", false, 0),
            peer("a", false, 0),
            peer("s", true, 100),
        ];
        let edges = [
            edge("s", "a", 60, false),
            edge("s", "b", 40, false),
            edge("a", "b", 30, false),
            edge("b", "a", 20, false),
            edge("gone-peer", "b", 5, true),
            edge("a", "a", 999, false),
        ];
        Flows::of(&peers, &edges, |p| p.peer_id.to_uppercase())
    }

    #[test]
    fn both_directions_of_a_pair_meet_on_one_link_with_their_own_bytes() {
        let flows = flows();
        let names: Vec<&str> = flows.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["origin", "S", "A", "B", "C", "gone-peer"]);
        let a = &flows.nodes[2];
        assert_eq!((a.received, a.sent), (80, 30), "self-edges are ignored");
        let ab = a.links.iter().find(|l| l.name == "B").expect("a-b link");
        assert_eq!((ab.received, ab.sent), (20, 30));
        let b = &flows.nodes[3];
        let ba = b.links.iter().find(|l| l.name == "A").expect("b-a link");
        assert_eq!((ba.received, ba.sent), (30, 20));
        assert_eq!(b.received, 40 + 30 + 5);
        let fed_by: Vec<&str> = b.fed_by().map(|l| l.name.as_str()).collect();
        assert_eq!(fed_by, ["S", "A", "gone-peer"], "most bytes first");
        assert!(
            b.links
                .iter()
                .any(|l| l.blocklisted && l.name == "gone-peer")
        );
        assert_eq!(flows.nodes[5].state, "gone");
    }

    #[test]
    fn the_origin_and_seeds_are_the_roots_and_hops_count_the_depth() {
        let flows = flows();
        let origin = &flows.nodes[0];
        assert_eq!((origin.hops, origin.sent), (Some(0), 100));
        let hops: Vec<Option<u32>> = flows.nodes.iter().map(|n| n.hops).collect();
        assert_eq!(hops, [Some(0), Some(1), Some(2), Some(2), None, None]);
        assert_eq!(flows.depth, 2);
        assert_eq!(flows.from_origin, 100);
        assert_eq!(flows.between_peers, 60 + 40 + 30 + 20 + 5);
        // Every byte is counted once on each side.
        let sent: u64 = flows.nodes.iter().map(|n| n.sent).sum();
        let received: u64 = flows.nodes.iter().map(|n| n.received).sum();
        assert_eq!(sent, received);
        assert_eq!(sent, flows.from_origin + flows.between_peers);
        // Links point at the right rows after sorting.
        for n in &flows.nodes {
            for l in &n.links {
                assert_eq!(flows.nodes[l.node].name, l.name);
            }
        }
    }
}
