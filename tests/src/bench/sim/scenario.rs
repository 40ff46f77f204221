//! The workload of `df-bench sim`: which nodes exist, their caps, the objects (layers) pulled,
//! and when each peer asks for them.
//!
//! Node layout (fixed, so every role can be found without a lookup): node 0 is the origin
//! (egress cap U0, nothing to download), nodes `1..=seeds` are seed hosts, the N peers follow.
//! Seeds and peers share the caps U (up) and D (down). Every peer asks for every layer at its
//! start time: all at t = 0 (a thundering herd) unless `start_spread_ms` spreads the starts
//! uniformly (deterministically from `rng_seed`).

use df_core::piece::PieceLayout;
use serde::{Deserialize, Serialize};

use super::engine::SimTime;
use super::network::{Network, NodeIx};

/// What to simulate. Rates are bytes per second; 0 is unlimited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    /// Names the case in tables.
    pub label: String,
    /// Normal peers N.
    pub peers: u32,
    /// Seed hosts (the scheduler's first downloaders; they read the origin).
    pub seeds: u32,
    /// Total size S of the image, split evenly over `layers` objects.
    pub size: u64,
    pub layers: u32,
    /// Piece length; `None` takes the daemons' rule (`df_core::piece::piece_length_for`).
    pub piece_length: Option<u64>,
    pub origin_rate: u64,
    pub peer_upload: u64,
    pub peer_download: u64,
    /// Peers start uniformly over this many milliseconds (0: all at once).
    pub start_spread_ms: u64,
    /// Seeds the protocol's random choices and the start times.
    pub rng_seed: u64,
    /// Give up at this simulated time, seconds.
    pub limit_s: f64,
}

/// A built scenario: the network and who is who.
#[derive(Debug)]
pub struct Scenario {
    pub network: Network,
    pub layouts: Vec<PieceLayout>,
    pub seeds: Vec<NodeIx>,
    pub peers: Vec<NodeIx>,
    /// `(at, peer)`: when each peer asks for every layer.
    pub starts: Vec<(SimTime, NodeIx)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScenarioError {
    #[error("--peers must be at least 1")]
    NoPeers,
    #[error("--seeds must be at least 1 (the scheduler's seeds read the origin)")]
    NoSeeds,
    #[error("--size {size} is smaller than --layers {layers}: every layer needs a byte")]
    TooSmall { size: u64, layers: u32 },
    #[error("--layers must be at least 1")]
    NoLayers,
}

impl SimConfig {
    /// The layers' sizes: S split evenly, the remainder on the last.
    pub fn layer_sizes(&self) -> Vec<u64> {
        let k = u64::from(self.layers.max(1));
        let each = self.size / k;
        let mut sizes = vec![each; k as usize];
        if let Some(last) = sizes.last_mut() {
            *last += self.size - each * k;
        }
        sizes
    }

    pub fn build(&self) -> Result<Scenario, ScenarioError> {
        if self.peers == 0 {
            return Err(ScenarioError::NoPeers);
        }
        if self.seeds == 0 {
            return Err(ScenarioError::NoSeeds);
        }
        if self.layers == 0 {
            return Err(ScenarioError::NoLayers);
        }
        if self.size < u64::from(self.layers) {
            return Err(ScenarioError::TooSmall {
                size: self.size,
                layers: self.layers,
            });
        }
        let mut network = Network::default();
        network.add_node(self.origin_rate, 0);
        let seeds: Vec<NodeIx> = (0..self.seeds)
            .map(|_| network.add_node(self.peer_upload, self.peer_download))
            .collect();
        let peers: Vec<NodeIx> = (0..self.peers)
            .map(|_| network.add_node(self.peer_upload, self.peer_download))
            .collect();
        let layouts = self
            .layer_sizes()
            .into_iter()
            .map(|s| PieceLayout::new(s, self.piece_length))
            .collect();
        let mut rng = fastrand::Rng::with_seed(self.rng_seed);
        let starts = peers
            .iter()
            .map(|&p| {
                let ms = if self.start_spread_ms == 0 {
                    0
                } else {
                    rng.u64(0..self.start_spread_ms)
                };
                (SimTime::from_millis(ms), p)
            })
            .collect();
        Ok(Scenario {
            network,
            layouts,
            seeds,
            peers,
            starts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::MIB;

    fn config() -> SimConfig {
        SimConfig {
            label: "t".into(),
            peers: 3,
            seeds: 1,
            size: 3_000_000_000,
            layers: 2,
            piece_length: None,
            origin_rate: 300_000_000,
            peer_upload: 300_000_000,
            peer_download: 300_000_000,
            start_spread_ms: 0,
            rng_seed: 1,
            limit_s: 600.0,
        }
    }

    #[test]
    fn nodes_are_origin_then_seeds_then_peers_and_layers_split_the_size() {
        let s = config().build().expect("valid");
        assert_eq!(s.seeds, vec![1]);
        assert_eq!(s.peers, vec![2, 3, 4]);
        assert_eq!(s.network.node_count(), 5);
        assert_eq!(s.layouts.len(), 2);
        assert_eq!(s.layouts[0].content_length, 1_500_000_000);
        // 1.5 GB / 1000 = 1.5 MB -> the next power of two, 2 MiB.
        assert_eq!(s.layouts[0].piece_length, 2 * MIB);
        assert!(s.starts.iter().all(|(t, _)| *t == SimTime::ZERO));
        let mut odd = config();
        odd.size = 7;
        assert_eq!(odd.layer_sizes(), vec![3, 4]);
    }

    #[test]
    fn bad_configs_are_refused_with_the_flag_named() {
        let mut c = config();
        c.peers = 0;
        assert_eq!(c.build().err(), Some(ScenarioError::NoPeers));
        let mut c = config();
        c.size = 1;
        assert!(
            c.build()
                .err()
                .is_some_and(|e| e.to_string().contains("--size 1"))
        );
    }
}
