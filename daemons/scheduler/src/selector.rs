//! [`rank`]: which of the candidate neighbours a peer should be linked to, best first. Pure:
//! the candidates are already filtered by [`crate::topology::Mesh`] (same task, other host,
//! not blocked, not corrupt, below the degree cap); randomness comes from the caller's seeded
//! generator.
//!
//! Order: same IDC, then same location (locality), then what the candidate holds (a complete
//! copy, then some pieces, then none: a late joiner links to peers that have data), then
//! random. Load is not a preference but a cap (`max_degree`, applied by the mesh): preferring
//! the least-linked peers links each newcomer to the previous few newcomers, so a herd joining
//! in sequence forms a band whose diameter grows like N (18 hops at N = 256, degree 4, in
//! `topology`'s diameter test); uniformly random choice below the cap keeps it about log N.

use df_core::ids::PeerId;

/// A peer that could become a neighbour, as the ranking sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub peer: PeerId,
    /// Links it has now (below the mesh's cap; shown for diagnostics and tests).
    pub links: usize,
    pub same_idc: bool,
    pub same_location: bool,
    /// Pieces it holds; `u32::MAX` for a complete copy.
    pub pieces: u32,
}

/// The candidates, best first.
pub fn rank(candidates: Vec<Candidate>, rng: &mut fastrand::Rng) -> Vec<PeerId> {
    let mut keyed: Vec<_> = candidates
        .into_iter()
        .map(|c| {
            let holds = match c.pieces {
                u32::MAX => 0,
                0 => 2,
                _ => 1,
            };
            (!c.same_idc, !c.same_location, holds, rng.u64(..), c.peer)
        })
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|k| k.4).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, links: usize, idc: bool, pieces: u32) -> Candidate {
        Candidate {
            peer: PeerId::from(name.to_owned()),
            links,
            same_idc: idc,
            same_location: false,
            pieces,
        }
    }

    #[test]
    fn locality_then_pieces_then_random() {
        let mut rng = fastrand::Rng::with_seed(1);
        let ranked = rank(
            vec![
                c("remote-some", 6, false, 3),
                c("remote-empty", 0, false, 0),
                c("local-empty", 1, true, 0),
                c("remote-full", 0, false, u32::MAX),
            ],
            &mut rng,
        );
        let names: Vec<&str> = ranked.iter().map(PeerId::as_str).collect();
        assert_eq!(
            names,
            ["local-empty", "remote-full", "remote-some", "remote-empty"]
        );
    }

    #[test]
    fn equals_are_ordered_at_random() {
        let firsts: std::collections::HashSet<PeerId> = (0..32)
            .map(|seed| {
                let mut rng = fastrand::Rng::with_seed(seed);
                let all = (0..8).map(|i| c(&format!("p{i}"), 0, false, 0)).collect();
                rank(all, &mut rng)[0].clone()
            })
            .collect();
        assert!(firsts.len() > 3, "{firsts:?}");
    }
}
