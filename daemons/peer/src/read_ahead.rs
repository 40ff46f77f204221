//! How far a helper (an origin reader other than the seed) may read its share of the object
//! ahead of sending it, as pure code.
//!
//! A piece a helper read from the origin is, until it sends it, held by nobody else. Its
//! neighbours want it (it is the rarest piece they see), but the helper's uplink serves its
//! other pieces too, and its intake from the origin is as fast as its downlink allows: in an
//! n32 run at 1 MiB/s a helper had read 18 pieces that nobody else held when it was killed,
//! and the next helper read all of them again (the origin served 1.19-1.22·S with three
//! helpers killed). Reading further ahead than the uplink sends helps nobody: a piece only
//! this host holds reaches the swarm no sooner for having been read early.
//!
//! The rule: a helper starts another origin read only while the pieces it is reading plus
//! those it read and has neither delivered whole to a peer nor received stay below
//! `download.concurrent_pieces`. A killed helper then takes with it fewer than that many
//! pieces it read, whatever the object's size. A piece counts only once its last byte went
//! out: counted from the admission of its first request, a helper whose uplink was sending
//! first copies to four children at a quarter of its rate each read on, and the pieces it was
//! still sending when killed were read again. In n32 runs with every churn victim a reader,
//! the origin served 1.047-1.109·S counted from admission (5 runs), 1.047-1.070·S counted
//! from delivery (4 runs): a killed helper took 2 or 3 pieces with it, the one it was reading
//! and those still on their way out, where its uplink shares them with what it serves
//! anyway.
//! The seed reads ahead as before: super-seeding already makes its uplink
//! send each new piece first, and the swarm cannot outlive it anyway (it is the task's
//! authority).

use std::ops::Range;

use df_core::piece::Bitmap;

/// What a host knows of its pieces beyond holding them.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// Pieces whose last byte it handed to a peer at least once.
    pub delivered: &'a Bitmap,
    /// Pieces it fetched from another daemon.
    pub received: &'a Bitmap,
}

/// Pieces of `range` this host holds and has neither delivered nor fetched from another
/// daemon: read from the origin here, and still here only.
pub fn only_here(held: &Bitmap, r: Record<'_>, range: Range<u32>) -> usize {
    range
        .filter(|&n| held.get(n) && !r.delivered.get(n) && !r.received.get(n))
        .count()
}

/// Whether a helper may start one more origin read: `only_here` pieces waiting to be sent,
/// `reading` reads under way, at most `limit` of both.
pub fn may_read(only_here: usize, reading: usize, limit: usize) -> bool {
    only_here + reading < limit.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::superseed::tests::bitmap as bits;

    #[test]
    fn only_pieces_read_here_and_never_delivered_count() {
        let held = bits(10, &[0, 1, 2, 3, 4, 8]);
        let delivered = bits(10, &[0, 3]);
        let received = bits(10, &[1]);
        let r = Record {
            delivered: &delivered,
            received: &received,
        };
        // 2 and 4 were read here and never delivered; 8 is outside the range.
        assert_eq!(only_here(&held, r, 0..6), 2);
        assert_eq!(only_here(&held, r, 0..10), 3);
        assert_eq!(only_here(&held, r, 5..8), 0);
    }

    #[test]
    fn reads_stop_once_unsent_and_reading_pieces_reach_the_limit() {
        assert!(may_read(0, 0, 3));
        assert!(may_read(1, 1, 3));
        assert!(!may_read(2, 1, 3));
        assert!(!may_read(3, 0, 3));
        assert!(!may_read(0, 3, 3));
        // A limit of 0 still lets one read through: a helper never stops for good.
        assert!(may_read(0, 0, 0));
    }
}
