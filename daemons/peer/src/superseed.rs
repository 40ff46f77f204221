//! Super-seeding, as pure code: what a seed offers its neighbours and which piece requests it
//! answers. A seed's uplink is where new pieces enter the swarm, so every piece it sends twice
//! is one piece-time of new data lost for everyone; the swarm spreads a piece faster than the
//! seed can send it again.
//!
//! The rule: while some piece the seed holds has not been sent to anybody, the seed offers
//! (in its bitmap) only such pieces and refuses (as "not held") a piece it already sent. Once
//! every piece it holds went out at least once, it offers and serves everything, so a piece
//! whose only receiver died is still available as a last resort. Normal peers do not use this:
//! their duplicates are the swarm's fan-out.

use df_core::piece::Bitmap;

/// Pieces held that were never sent, or `None` when there are none.
fn fresh(held: &Bitmap, sent: &Bitmap) -> Option<Bitmap> {
    let mut out = Bitmap::new(held.len());
    for n in held.ones().filter(|n| !sent.get(*n)) {
        out.set(n);
    }
    (out.count() > 0).then_some(out)
}

/// The bitmap a seed shows: the never-sent pieces while there are any, else all it holds.
pub fn offer(held: &Bitmap, sent: &Bitmap) -> Bitmap {
    fresh(held, sent).unwrap_or_else(|| held.clone())
}

/// Whether a seed sends piece `n` now (the caller has checked that it holds it).
pub fn serves(held: &Bitmap, sent: &Bitmap, n: u32) -> bool {
    !sent.get(n) || fresh(held, sent).is_none()
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
    fn once_everything_went_out_everything_is_served_again() {
        let held = bitmap(8, &[0, 1, 2]);
        let sent = bitmap(8, &[0, 1, 2]);
        assert_eq!(offer(&held, &sent), held);
        assert!(serves(&held, &sent, 1));
    }

    #[test]
    fn a_seed_with_nothing_offers_nothing() {
        let held = Bitmap::new(4);
        assert_eq!(offer(&held, &Bitmap::new(4)).count(), 0);
    }
}
