//! Super-seeding, as pure code: what a seed offers its neighbours and which piece requests it
//! answers. A seed's uplink is where new pieces enter the swarm, so every piece it sends twice
//! is one piece-time of new data lost for everyone; the swarm spreads a piece faster than the
//! seed can send it again.
//!
//! The rule: until the seed holds the whole object and has sent at least once every piece it
//! did not fetch from another daemon (it is then *open*), it offers (in its bitmap) only
//! pieces it never sent and refuses (as "not held") a piece it already sent. Its intake from
//! the origin is no faster than its uplink, so it is often caught up with nothing unsent; a
//! duplicate sent then would still be on the wire, sharing the uplink, when the next new piece
//! lands (measured: the seed uploaded 1.19·S at N = 16 when duplicates were allowed whenever
//! nothing was unsent). Once open, it offers and serves everything, so a piece whose only
//! receiver died is still available as a last resort. Normal peers do not use this: their
//! duplicates are the swarm's fan-out.
//!
//! A piece the seed fetched from a peer (another origin reader's share) is offered like its
//! own until sent, but does not hold it back from opening: the swarm had that piece first.
//! Otherwise a seed fed by helpers might never open, and would withhold for good a piece it
//! had sent only to a peer that then died (the simulator's survivors stalled on it; the
//! daemons' would read it from the origin). Counting such pieces as sent instead idled the
//! seed's uplink once its own share was out (simulated n32 1.086·T* against 1.066).

use df_core::piece::Bitmap;

/// What a seed knows of its pieces beyond holding them.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// Pieces it sent to a neighbour at least once.
    pub sent: &'a Bitmap,
    /// Pieces it fetched from another daemon (another origin reader's share).
    pub received: &'a Bitmap,
}

/// Pieces held that were never sent, or `None` when there are none.
fn fresh(held: &Bitmap, sent: &Bitmap) -> Option<Bitmap> {
    let mut out = Bitmap::new(held.len());
    for n in held.ones().filter(|n| !sent.get(*n)) {
        out.set(n);
    }
    (out.count() > 0).then_some(out)
}

/// Whether the seed is past super-seeding: it holds everything and sent once every piece the
/// swarm did not have before it.
fn open(held: &Bitmap, r: Record<'_>) -> bool {
    held.is_full() && !held.ones().any(|n| !r.sent.get(n) && !r.received.get(n))
}

/// The bitmap a seed shows: the never-sent pieces until it is open, then all it holds.
pub fn offer(held: &Bitmap, r: Record<'_>) -> Bitmap {
    if open(held, r) {
        return held.clone();
    }
    fresh(held, r.sent).unwrap_or_else(|| Bitmap::new(held.len()))
}

/// Whether a seed sends piece `n` now (the caller has checked that it holds it).
pub fn serves(held: &Bitmap, r: Record<'_>, n: u32) -> bool {
    !r.sent.get(n) || open(held, r)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    static NONE: std::sync::LazyLock<Bitmap> = std::sync::LazyLock::new(Bitmap::default);

    /// A seed that fetched nothing from peers.
    fn rec(sent: &Bitmap) -> Record<'_> {
        Record {
            sent,
            received: &NONE,
        }
    }

    /// A bitmap of `len` pieces with `ones` set.
    pub(crate) fn bitmap(len: u32, ones: &[u32]) -> Bitmap {
        let mut b = Bitmap::new(len);
        for &n in ones {
            b.set(n);
        }
        b
    }

    #[test]
    fn a_seed_offers_and_serves_each_piece_once_while_it_has_unsent_ones() {
        let held = bitmap(8, &[0, 1, 2, 3]);
        let sent = bitmap(8, &[0, 1]);
        assert_eq!(offer(&held, rec(&sent)), bitmap(8, &[2, 3]));
        assert!(!serves(&held, rec(&sent), 0));
        assert!(serves(&held, rec(&sent), 2));
    }

    #[test]
    fn caught_up_while_downloading_it_offers_nothing_and_sends_no_duplicate() {
        let held = bitmap(8, &[0, 1, 2]);
        let sent = bitmap(8, &[0, 1, 2]);
        assert_eq!(offer(&held, rec(&sent)).count(), 0);
        assert!(!serves(&held, rec(&sent), 1));
    }

    #[test]
    fn complete_and_all_sent_everything_is_served_again() {
        let all: Vec<u32> = (0..8).collect();
        let (held, sent) = (bitmap(8, &all), bitmap(8, &all));
        assert_eq!(offer(&held, rec(&sent)), held);
        assert!(serves(&held, rec(&sent), 1));
    }

    #[test]
    fn a_seed_with_nothing_offers_nothing() {
        let held = Bitmap::new(4);
        assert_eq!(offer(&held, rec(&Bitmap::new(4))).count(), 0);
    }

    #[test]
    fn pieces_fetched_from_peers_are_offered_but_do_not_keep_the_seed_from_opening() {
        // Piece 0 was read from the origin and sent; 1 came from a helper and was never sent.
        let held = bitmap(2, &[0, 1]);
        let sent = bitmap(2, &[0]);
        let received = bitmap(2, &[1]);
        let r = Record {
            sent: &sent,
            received: &received,
        };
        assert_eq!(offer(&held, r), held, "open: everything, 0 again included");
        assert!(serves(&held, r, 0));
        // Still missing a piece: not open, so only the unsent piece from the helper is shown.
        let partial = bitmap(3, &[0, 1]);
        let (sent, received) = (bitmap(3, &[0]), bitmap(3, &[1]));
        let r = Record {
            sent: &sent,
            received: &received,
        };
        assert_eq!(offer(&partial, r), bitmap(3, &[1]));
        assert!(!serves(&partial, r, 0));
    }
}
