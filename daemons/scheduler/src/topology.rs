//! [`Mesh`]: who exchanges pieces with whom in one task, as pure code (events in, decisions
//! out; no I/O, no clock, randomness from a seeded generator).
//!
//! Every peer of a task gets a bounded set of neighbours, and neighbours exchange pieces in
//! both directions: each one downloads, rarest first, what the other holds and it lacks (the
//! peer's side is `df_peer::download::picker`). A piece never flows back to a peer that holds
//! it, so each piece's flow is acyclic although the graph of links has cycles; every peer's
//! uplink works from its first piece, and a piece reaches all N peers in about log N hops of
//! the random graph instead of N hops down a chain.
//!
//! Rules, and why:
//! - a downloading normal peer is linked to up to `degree` normal peers; a peer never has more
//!   than `max_degree` links, so one popular peer cannot take every request (bounded load);
//! - candidates are ranked by [`crate::selector::rank`]: same IDC / location, then pieces
//!   held, random among equals (load is the `max_degree` cap, not a preference: see there);
//! - seeds are the last resort: a seed seeks `seed_degree` downloading peers and no more
//!   (each piece leaves the seed about once and the swarm spreads it), and a normal peer is
//!   linked to a seed only when no normal peer can take it;
//! - a link that failed (unreachable, timeout) is never made again; a peer that served a
//!   corrupt piece loses all its links and gets no new one;
//! - peers on the same host are never linked.
//!
//! Driving it: feed [`MeshEvent`]s to [`Mesh::handle`] and act on the returned
//! [`MeshDecision`]s (tell each end of a new link about the other). `Joined` links the newcomer
//! at once; `Tick` (periodic) tops up every peer below its degree, e.g. after neighbours left.
//! A peer that [`Mesh::neighbours`] reports without links after `Joined` has nobody to
//! download from: the driver decides (seed trigger, wait, or the origin).

use std::collections::{BTreeSet, HashMap, HashSet};

use df_core::ids::{HostId, PeerId};

use crate::selector::{Candidate, rank};

/// A member's part in the swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Normal,
    /// A seed host's peer: fetches from the origin, serves the swarm as the last resort.
    Seed,
}

/// What the mesh knows about a peer when it joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub host: HostId,
    pub role: Role,
    /// Data centre of the host; empty when unknown.
    pub idc: String,
    /// Free-form location of the host; empty when unknown.
    pub location: String,
}

/// Sizes of the neighbour sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeshConfig {
    /// Normal neighbours a downloading peer is given.
    pub degree: usize,
    /// Most links any peer has (chosen as a neighbour by others included).
    pub max_degree: usize,
    /// Downloading peers a seed is linked to.
    pub seed_degree: usize,
}

impl MeshConfig {
    /// The sizes for a degree: three times the degree at most per peer, a seed feeding at most
    /// `degree` peers (at least 2). Each newcomer makes `degree` links, so the mean number of
    /// links is twice the degree: a cap of twice the degree saturates everyone but the last
    /// few joiners, who then only find each other (a band, 27 hops across at N = 256); with
    /// three times, mostly the first peers saturate and the graph stays random.
    pub fn with_degree(degree: usize) -> Self {
        let degree = degree.max(1);
        Self {
            degree,
            max_degree: degree * 3,
            seed_degree: degree.max(2),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeshEvent {
    /// A peer registered (or a restarted scheduler learnt of a complete copy: `complete`).
    Joined {
        peer: PeerId,
        member: Member,
        complete: bool,
    },
    /// The peer now holds `pieces` pieces.
    Progress { peer: PeerId, pieces: u32 },
    /// The peer holds the whole task: it needs no neighbours, it stays a source.
    Completed { peer: PeerId },
    /// The peer is gone (stream closed, failed, evicted, host gone): its links are dropped.
    Left { peer: PeerId },
    /// `peer` could not use `neighbour` (unreachable, timeout): the link is dropped, never made
    /// again.
    LinkFailed { peer: PeerId, neighbour: PeerId },
    /// `peer` served a piece with a wrong digest: unlinked from everyone, never linked again.
    Corrupt { peer: PeerId },
    /// Periodic: peers below their degree get more neighbours.
    Tick,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeshDecision {
    /// `a` and `b` are now neighbours: each one that is downloading should be told of the
    /// other. `a` is the peer that asked (the newcomer, or the one below its degree).
    Link { a: PeerId, b: PeerId },
}

#[derive(Debug)]
struct Node {
    member: Member,
    pieces: u32,
    complete: bool,
    corrupt: bool,
    links: BTreeSet<PeerId>,
    /// Peers this one must never be linked to (failed links, either direction).
    blocked: HashSet<PeerId>,
}

/// Candidates examined per link decision once a task has many peers: ranking a random sample
/// keeps a join O(sample) instead of O(peers) (10,000-peer tasks in `df-bench sim`).
const SAMPLE: usize = 64;

/// One task's neighbour graph.
#[derive(Debug)]
pub struct Mesh {
    config: MeshConfig,
    nodes: HashMap<PeerId, Node>,
    /// Members in join order, for sampling and deterministic iteration.
    order: Vec<PeerId>,
    rng: fastrand::Rng,
    /// An event since the last `Tick` may have made a new link possible (a peer joined, left,
    /// completed, lost a link or turned corrupt; a completion leaves a seed feeding fewer
    /// downloaders). Otherwise a `Tick` finds what the last one found: the links a peer may
    /// make depend only on what those events change. Skipping such ticks is
    /// what keeps the periodic pass O(changed tasks) instead of O(all peers): 10,000 idle
    /// tasks of 6 peers each cost a core in hashing before (`df-bench scheduler-load`).
    stale: bool,
}

impl Mesh {
    /// An empty mesh; `rng_seed` makes its random choices reproducible.
    pub fn new(config: MeshConfig, rng_seed: u64) -> Self {
        Self {
            config,
            nodes: HashMap::new(),
            order: Vec::new(),
            rng: fastrand::Rng::with_seed(rng_seed),
            stale: false,
        }
    }

    /// Whether a `Tick` could make a link now: something changed since the last one, or the
    /// mesh is large enough that link decisions sample candidates (another sample may find
    /// what the last one missed).
    pub fn needs_tick(&self) -> bool {
        self.stale || self.order.len() > SAMPLE * 4
    }

    pub fn config(&self) -> MeshConfig {
        self.config
    }

    /// Applies one event; returns the links made because of it.
    pub fn handle(&mut self, event: MeshEvent) -> Vec<MeshDecision> {
        let mut out = Vec::new();
        if matches!(
            event,
            MeshEvent::Joined { .. }
                | MeshEvent::Completed { .. }
                | MeshEvent::Left { .. }
                | MeshEvent::LinkFailed { .. }
                | MeshEvent::Corrupt { .. }
        ) {
            self.stale = true;
        }
        match event {
            MeshEvent::Joined {
                peer,
                member,
                complete,
            } => {
                if let Some(old) = self.nodes.get(&peer) {
                    // Re-announced: keep links, learn completeness.
                    let links = old.links.clone();
                    self.nodes
                        .insert(peer.clone(), new_node(member, complete, links));
                } else {
                    self.nodes
                        .insert(peer.clone(), new_node(member, complete, BTreeSet::new()));
                    self.order.push(peer.clone());
                }
                self.fill(&peer, &mut out);
                // A newcomer is also what a seed below its seed degree is waiting for.
                self.fill_seeds(&mut out);
            }
            MeshEvent::Progress { peer, pieces } => {
                if let Some(n) = self.nodes.get_mut(&peer) {
                    n.pieces = n.pieces.max(pieces);
                }
            }
            MeshEvent::Completed { peer } => {
                if let Some(n) = self.nodes.get_mut(&peer) {
                    n.complete = true;
                }
            }
            MeshEvent::Left { peer } => self.remove(&peer),
            MeshEvent::LinkFailed { peer, neighbour } => {
                self.unlink(&peer, &neighbour);
                for (a, b) in [(&peer, &neighbour), (&neighbour, &peer)] {
                    if let Some(n) = self.nodes.get_mut(a) {
                        n.blocked.insert(b.clone());
                    }
                }
            }
            MeshEvent::Corrupt { peer } => {
                let links: Vec<PeerId> = self
                    .nodes
                    .get(&peer)
                    .map(|n| n.links.iter().cloned().collect())
                    .unwrap_or_default();
                for other in links {
                    self.unlink(&peer, &other);
                }
                if let Some(n) = self.nodes.get_mut(&peer) {
                    n.corrupt = true;
                }
            }
            MeshEvent::Tick => {
                if !self.needs_tick() {
                    return out;
                }
                self.stale = false;
                let wanting: Vec<PeerId> = self
                    .order
                    .iter()
                    .filter(|p| self.wants(p))
                    .cloned()
                    .collect();
                for peer in wanting {
                    self.fill(&peer, &mut out);
                }
                self.fill_seeds(&mut out);
            }
        }
        out
    }

    /// The peer's current neighbours, in a stable order.
    pub fn neighbours(&self, peer: &PeerId) -> impl Iterator<Item = &PeerId> {
        self.nodes
            .get(peer)
            .into_iter()
            .flat_map(|n| n.links.iter())
    }

    pub fn is_member(&self, peer: &PeerId) -> bool {
        self.nodes.contains_key(peer)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A downloading normal peer with fewer normal neighbours than the degree.
    fn wants(&self, peer: &PeerId) -> bool {
        self.nodes.get(peer).is_some_and(|n| {
            n.member.role == Role::Normal
                && !n.complete
                && !n.corrupt
                && self.normal_links(n) < self.config.degree
        })
    }

    fn normal_links(&self, node: &Node) -> usize {
        node.links
            .iter()
            .filter(|l| {
                self.nodes
                    .get(*l)
                    .is_some_and(|n| n.member.role == Role::Normal)
            })
            .count()
    }

    /// Links `peer` to normal peers up to its degree; to a seed only if it still has no link.
    fn fill(&mut self, peer: &PeerId, out: &mut Vec<MeshDecision>) {
        if !self.wants(peer) {
            return;
        }
        let Some(node) = self.nodes.get(peer) else {
            return;
        };
        let want = self.config.degree - self.normal_links(node);
        let picked = self.pick(peer, Role::Normal, want);
        for other in picked {
            self.link(peer, &other, out);
        }
        if self.nodes.get(peer).is_some_and(|n| n.links.is_empty()) {
            for seed in self.pick(peer, Role::Seed, 1) {
                self.link(peer, &seed, out);
            }
        }
    }

    /// Every seed below its seed degree (counting links to downloading peers) is linked to
    /// the downloading peers with the fewest pieces.
    fn fill_seeds(&mut self, out: &mut Vec<MeshDecision>) {
        let seeds: Vec<PeerId> = self
            .order
            .iter()
            .filter(|p| {
                self.nodes
                    .get(*p)
                    .is_some_and(|n| n.member.role == Role::Seed && !n.corrupt)
            })
            .cloned()
            .collect();
        for seed in seeds {
            let Some(node) = self.nodes.get(&seed) else {
                continue;
            };
            let feeding = node
                .links
                .iter()
                .filter(|l| self.nodes.get(*l).is_some_and(|n| !n.complete))
                .count();
            let want = self.config.seed_degree.saturating_sub(feeding);
            if want == 0 {
                continue;
            }
            let mut downloading: Vec<(u32, u64, PeerId)> = self
                .order
                .iter()
                .filter(|p| self.linkable(&seed, p, self.config.max_degree))
                .filter_map(|p| {
                    let n = self.nodes.get(p)?;
                    (n.member.role == Role::Normal && !n.complete).then(|| (n.pieces, 0, p.clone()))
                })
                .collect();
            for d in &mut downloading {
                d.1 = self.rng.u64(..);
            }
            downloading.sort_unstable();
            for (_, _, p) in downloading.into_iter().take(want) {
                self.link(&p, &seed, out);
            }
        }
    }

    /// Whether `a` and `b` may be linked, `b` having at most `cap` links.
    fn linkable(&self, a: &PeerId, b: &PeerId, cap: usize) -> bool {
        let (Some(na), Some(nb)) = (self.nodes.get(a), self.nodes.get(b)) else {
            return false;
        };
        a != b
            && na.member.host != nb.member.host
            && !nb.corrupt
            && !na.links.contains(b)
            && !na.blocked.contains(b)
            && !nb.blocked.contains(a)
            && nb.links.len() < cap
    }

    /// Up to `want` peers of `role` for `peer`, best first.
    fn pick(&mut self, peer: &PeerId, role: Role, want: usize) -> Vec<PeerId> {
        if want == 0 {
            return Vec::new();
        }
        let sample: Vec<usize> = if self.order.len() > SAMPLE * 4 {
            (0..SAMPLE)
                .map(|_| self.rng.usize(..self.order.len()))
                .collect()
        } else {
            Vec::new()
        };
        let Some(me) = self.nodes.get(peer) else {
            return Vec::new();
        };
        let pool: Vec<&PeerId> = if !sample.is_empty() {
            sample.iter().filter_map(|&i| self.order.get(i)).collect()
        } else {
            self.order.iter().collect()
        };
        let mut seen = HashSet::new();
        let candidates: Vec<Candidate> = pool
            .into_iter()
            .filter(|p| seen.insert(*p))
            .filter(|p| self.linkable(peer, p, self.config.max_degree))
            .filter_map(|p| {
                let n = self.nodes.get(p)?;
                (n.member.role == role).then(|| Candidate {
                    peer: p.clone(),
                    links: n.links.len(),
                    same_idc: !me.member.idc.is_empty() && me.member.idc == n.member.idc,
                    same_location: !me.member.location.is_empty()
                        && me.member.location == n.member.location,
                    pieces: if n.complete { u32::MAX } else { n.pieces },
                })
            })
            .collect();
        rank(candidates, &mut self.rng)
            .into_iter()
            .take(want)
            .collect()
    }

    fn link(&mut self, a: &PeerId, b: &PeerId, out: &mut Vec<MeshDecision>) {
        if let Some(n) = self.nodes.get_mut(a) {
            n.links.insert(b.clone());
        }
        if let Some(n) = self.nodes.get_mut(b) {
            n.links.insert(a.clone());
        }
        out.push(MeshDecision::Link {
            a: a.clone(),
            b: b.clone(),
        });
    }

    fn unlink(&mut self, a: &PeerId, b: &PeerId) {
        if let Some(n) = self.nodes.get_mut(a) {
            n.links.remove(b);
        }
        if let Some(n) = self.nodes.get_mut(b) {
            n.links.remove(a);
        }
    }

    fn remove(&mut self, peer: &PeerId) {
        let Some(node) = self.nodes.remove(peer) else {
            return;
        };
        for other in &node.links {
            if let Some(n) = self.nodes.get_mut(other) {
                n.links.remove(peer);
            }
        }
        self.order.retain(|p| p != peer);
    }
}

fn new_node(member: Member, complete: bool, links: BTreeSet<PeerId>) -> Node {
    Node {
        member,
        pieces: 0,
        complete,
        corrupt: false,
        links,
        blocked: HashSet::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(host: &str, role: Role) -> Member {
        Member {
            host: HostId::from(host.to_owned()),
            role,
            idc: String::new(),
            location: String::new(),
        }
    }

    fn join(mesh: &mut Mesh, name: &str, role: Role) -> Vec<MeshDecision> {
        mesh.handle(MeshEvent::Joined {
            peer: PeerId::from(name.to_owned()),
            member: member(name, role),
            complete: false,
        })
    }

    fn id(name: &str) -> PeerId {
        PeerId::from(name.to_owned())
    }

    fn degrees(mesh: &Mesh, n: usize) -> Vec<usize> {
        (0..n)
            .map(|i| mesh.neighbours(&id(&format!("p{i}"))).count())
            .collect()
    }

    #[test]
    fn every_peer_gets_its_degree_and_nobody_more_than_the_maximum() {
        let mut mesh = Mesh::new(MeshConfig::with_degree(4), 7);
        for i in 0..64 {
            join(&mut mesh, &format!("p{i}"), Role::Normal);
        }
        mesh.handle(MeshEvent::Tick);
        let d = degrees(&mesh, 64);
        assert!(d.iter().all(|&k| (4..=12).contains(&k)), "{d:?}");
        // Links are symmetric.
        for i in 0..64 {
            let me = id(&format!("p{i}"));
            for other in mesh.neighbours(&me) {
                assert!(mesh.neighbours(other).any(|x| x == &me));
            }
        }
    }

    #[test]
    fn the_graph_is_connected_with_a_small_diameter() {
        let n = 256;
        let mut mesh = Mesh::new(MeshConfig::with_degree(4), 1);
        for i in 0..n {
            join(&mut mesh, &format!("p{i}"), Role::Normal);
        }
        mesh.handle(MeshEvent::Tick);
        // Breadth-first from p0: every peer within a few hops (log base ~4 of 256 is 4).
        let mut depth = HashMap::from([(id("p0"), 0usize)]);
        let mut queue = std::collections::VecDeque::from([id("p0")]);
        while let Some(p) = queue.pop_front() {
            let d = depth[&p];
            for q in mesh.neighbours(&p) {
                if !depth.contains_key(q) {
                    depth.insert(q.clone(), d + 1);
                    queue.push_back(q.clone());
                }
            }
        }
        assert_eq!(depth.len(), n, "connected");
        let max = depth.values().max().copied().unwrap_or(0);
        assert!(max <= 7, "diameter from p0 is {max}");
    }

    #[test]
    fn a_seed_feeds_only_its_seed_degree_and_normal_peers_prefer_each_other() {
        let mut mesh = Mesh::new(MeshConfig::with_degree(3), 3);
        for i in 0..10 {
            join(&mut mesh, &format!("p{i}"), Role::Normal);
        }
        let links = join(&mut mesh, "seed", Role::Seed);
        assert_eq!(links.len(), 3, "{links:?}");
        mesh.handle(MeshEvent::Tick);
        assert_eq!(mesh.neighbours(&id("seed")).count(), 3);
        // A newcomer finds normal peers first.
        let links = join(&mut mesh, "late", Role::Normal);
        assert!(
            links
                .iter()
                .all(|MeshDecision::Link { b, .. }| b != &id("seed")),
            "{links:?}"
        );
    }

    #[test]
    fn the_first_peer_gets_the_seed_when_nobody_else_is_there() {
        let mut mesh = Mesh::new(MeshConfig::with_degree(3), 3);
        assert!(join(&mut mesh, "p0", Role::Normal).is_empty());
        let links = join(&mut mesh, "seed", Role::Seed);
        assert_eq!(
            links,
            vec![MeshDecision::Link {
                a: id("p0"),
                b: id("seed")
            }]
        );
    }

    #[test]
    fn a_seed_whose_children_finished_takes_new_ones() {
        let mut mesh = Mesh::new(MeshConfig::with_degree(2), 3);
        join(&mut mesh, "seed", Role::Seed);
        for i in 0..6 {
            join(&mut mesh, &format!("p{i}"), Role::Normal);
        }
        let fed: Vec<PeerId> = mesh.neighbours(&id("seed")).cloned().collect();
        assert_eq!(fed.len(), 2);
        // A tick with nothing to do first: the completions alone must bring the next one.
        assert!(
            mesh.handle(MeshEvent::Tick)
                .iter()
                .all(|MeshDecision::Link { a, b }| a != &id("seed") && b != &id("seed"))
        );
        for p in &fed {
            mesh.handle(MeshEvent::Completed { peer: p.clone() });
        }
        let links = mesh.handle(MeshEvent::Tick);
        let new: Vec<&PeerId> = links
            .iter()
            .filter_map(|MeshDecision::Link { a, b }| (b == &id("seed")).then_some(a))
            .collect();
        assert_eq!(new.len(), 2, "{links:?}");
        assert!(new.iter().all(|p| !fed.contains(p)));
    }

    #[test]
    fn failed_links_are_not_remade_and_corrupt_peers_are_isolated() {
        let mut mesh = Mesh::new(MeshConfig::with_degree(2), 5);
        for i in 0..4 {
            join(&mut mesh, &format!("p{i}"), Role::Normal);
        }
        let first: Vec<PeerId> = mesh.neighbours(&id("p0")).cloned().collect();
        let bad = first[0].clone();
        mesh.handle(MeshEvent::LinkFailed {
            peer: id("p0"),
            neighbour: bad.clone(),
        });
        for _ in 0..3 {
            mesh.handle(MeshEvent::Tick);
            assert!(!mesh.neighbours(&id("p0")).any(|p| p == &bad));
        }
        mesh.handle(MeshEvent::Corrupt { peer: id("p3") });
        for _ in 0..3 {
            mesh.handle(MeshEvent::Tick);
        }
        assert_eq!(mesh.neighbours(&id("p3")).count(), 0);
        for i in 0..3 {
            assert!(
                !mesh
                    .neighbours(&id(&format!("p{i}")))
                    .any(|p| p == &id("p3"))
            );
        }
    }

    #[test]
    fn peers_that_leave_are_replaced_at_the_next_tick() {
        let mut mesh = Mesh::new(MeshConfig::with_degree(3), 9);
        for i in 0..12 {
            join(&mut mesh, &format!("p{i}"), Role::Normal);
        }
        let gone: Vec<PeerId> = mesh.neighbours(&id("p0")).cloned().collect();
        for p in &gone {
            mesh.handle(MeshEvent::Left { peer: p.clone() });
        }
        assert_eq!(mesh.neighbours(&id("p0")).count(), 0);
        mesh.handle(MeshEvent::Tick);
        let now = mesh.neighbours(&id("p0")).count();
        assert!((3..=9).contains(&now), "{now}");
    }

    #[test]
    fn a_tick_after_nothing_changed_does_nothing_and_one_after_a_change_tops_up() {
        // Fewer peers than the degree: every one stays below it, so a tick that did not skip
        // would try (and fail) to link each of them, every time.
        let mut mesh = Mesh::new(MeshConfig::with_degree(8), 3);
        for i in 0..5 {
            join(&mut mesh, &format!("p{i}"), Role::Normal);
        }
        assert!(mesh.needs_tick(), "joins may let others link");
        mesh.handle(MeshEvent::Tick);
        assert!(!mesh.needs_tick(), "nothing changed since");
        mesh.handle(MeshEvent::Progress {
            peer: id("p1"),
            pieces: 3,
        });
        assert!(!mesh.needs_tick(), "progress makes no link possible");
        assert!(mesh.handle(MeshEvent::Tick).is_empty());
        // p0 loses p1 for good and p1 leaves; a newcomer arrives: the next tick links.
        mesh.handle(MeshEvent::Left { peer: id("p1") });
        assert!(mesh.needs_tick());
        join(&mut mesh, "p5", Role::Normal);
        mesh.handle(MeshEvent::Tick);
        assert!(
            (0..6)
                .filter(|i| *i != 1)
                .all(|i| mesh.neighbours(&id(&format!("p{i}"))).count() == 4),
            "everyone is linked to every other live peer"
        );
        // A large mesh samples its candidates, so it keeps ticking.
        let mut big = Mesh::new(MeshConfig::with_degree(2), 4);
        for i in 0..=(SAMPLE * 4) {
            join(&mut big, &format!("p{i}"), Role::Normal);
        }
        big.handle(MeshEvent::Tick);
        assert!(big.needs_tick());
    }

    #[test]
    fn same_host_peers_are_never_linked_and_the_same_seed_gives_the_same_mesh() {
        let build = |seed| {
            let mut mesh = Mesh::new(MeshConfig::with_degree(3), seed);
            let mut all = Vec::new();
            for i in 0..20 {
                all.extend(mesh.handle(MeshEvent::Joined {
                    peer: id(&format!("p{i}")),
                    member: member(&format!("h{}", i % 10), Role::Normal),
                    complete: false,
                }));
            }
            all
        };
        let links = build(11);
        assert_eq!(links, build(11));
        for MeshDecision::Link { a, b } in &links {
            let host = |p: &PeerId| p.as_str()[1..].parse::<usize>().map(|i| i % 10).ok();
            assert_ne!(host(a), host(b), "{a} and {b} share a host");
        }
    }
}
