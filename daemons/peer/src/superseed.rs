//! Super-seeding, as pure code: what a seed offers its neighbours and which piece requests it
//! answers. A seed's uplink is where new pieces enter the swarm, so every piece it sends twice
//! is one piece-time of new data lost for everyone; the swarm spreads a piece faster than the
//! seed can send it again.
//!
//! The rule: until the seed holds the whole object and has sent every piece at least once, it
//! offers (in its bitmap) only pieces it never sent and refuses (as "not held") a piece it
//! already sent. Its intake from the origin is no faster than its uplink, so it is often
//! caught up with nothing unsent; a duplicate sent then would still be on the wire, sharing
//! the uplink, when the next new piece lands (measured: the seed uploaded 1.19·S at N = 16 when
//! duplicates were allowed whenever nothing was unsent). Once complete and all
//! sent, it offers and serves everything, so a piece whose only receiver died is still
//! available as a last resort. Normal peers do not use this: their duplicates are the swarm's
//! fan-out.
//!
//! A piece the seed fetched from a peer (another origin reader's share) counts as sent: the
//! swarm had it first. Otherwise a seed fed by helpers would hold pieces it never sends, never
//! open, and withhold for good a piece it had sent only to a peer that then died (the
//! simulator's survivors stalled on it; the daemons' would go to the origin for it).

use df_core::piece::Bitmap;

/// Pieces held that were never sent, or `None` when there are none.
fn fresh(held: &Bitmap, sent: &Bitmap) -> Option<Bitmap> {
    let mut out = Bitmap::new(held.len());
    for n in held.ones().filter(|n| !sent.get(*n)) {
        out.set(n);
    }
    (out.count() > 0).then_some(out)
}

/// Whether the seed is past super-seeding: it holds everything and sent everything once.
fn open(held: &Bitmap, sent: &Bitmap) -> bool {
    held.is_full() && fresh(held, sent).is_none()
}

/// The bitmap a seed shows: the never-sent pieces until it is open, then all it holds.
pub fn offer(held: &Bitmap, sent: &Bitmap) -> Bitmap {
    if open(held, sent) {
        return held.clone();
    }
    fresh(held, sent).unwrap_or_else(|| Bitmap::new(held.len()))
}

/// Whether a seed sends piece `n` now (the caller has checked that it holds it).
pub fn serves(held: &Bitmap, sent: &Bitmap, n: u32) -> bool {
    !sent.get(n) || open(held, sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bitmap(len: u32, ones: &[u32]) -> Bitmap {
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
        assert_eq!(offer(&held, &sent), bitmap(8, &[2, 3]));
        assert!(!serves(&held, &sent, 0));
        assert!(serves(&held, &sent, 2));
    }

    #[test]
    fn caught_up_while_downloading_it_offers_nothing_and_sends_no_duplicate() {
        let held = bitmap(8, &[0, 1, 2]);
        let sent = bitmap(8, &[0, 1, 2]);
        assert_eq!(offer(&held, &sent).count(), 0);
        assert!(!serves(&held, &sent, 1));
    }

    #[test]
    fn complete_and_all_sent_everything_is_served_again() {
        let all: Vec<u32> = (0..8).collect();
        let (held, sent) = (bitmap(8, &all), bitmap(8, &all));
        assert_eq!(offer(&held, &sent), held);
        assert!(serves(&held, &sent, 1));
    }

    #[test]
    fn a_seed_with_nothing_offers_nothing() {
        let held = Bitmap::new(4);
        assert_eq!(offer(&held, &Bitmap::new(4)).count(), 0);
    }
}
