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
//! those it read and has neither sent nor received stay below `download.concurrent_pieces`.
//! A killed helper then takes with it fewer than that many pieces it read, besides the first
//! copies it was sending (at most its `upload.slots`), whatever the object's size. A piece
//! counts as sent once a request for it is admitted; a delivery that fails takes that back.
//! The seed reads ahead as before: super-seeding already makes its uplink
//! send each new piece first, and the swarm cannot outlive it anyway (it is the task's
//! authority).

use std::ops::Range;

use df_core::piece::Bitmap;

use crate::superseed::Record;

/// Pieces of `range` this host holds and has neither sent nor fetched from another daemon:
/// read from the origin here, and still here only.
pub fn only_here(held: &Bitmap, r: Record<'_>, range: Range<u32>) -> usize {
    range
        .filter(|&n| held.get(n) && !r.sent.get(n) && !r.received.get(n))
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
    fn only_pieces_read_here_and_never_sent_count() {
        let held = bits(10, &[0, 1, 2, 3, 4, 8]);
        let sent = bits(10, &[0, 3]);
        let received = bits(10, &[1]);
        let r = Record {
            sent: &sent,
            received: &received,
        };
        // 2 and 4 were read here and never sent; 8 is outside the range.
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
