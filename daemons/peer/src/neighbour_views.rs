//! What this daemon last heard each neighbour hold of a task, from that neighbour's own bitmap
//! feed: the feed this daemon serves the neighbour leaves out the pieces it holds already
//! ([`crate::bitmap_feed`]). Each line costs a TLS record each way and a wake-up of the
//! neighbour's download; in a 16-peer swarm (256 pieces) 23-30 % of a peer's lines only
//! announced pieces the reader had (the one it got the piece from among them).
//!
//! Invariants:
//! - A view never claims more than the neighbour showed: it is the neighbour's last feed line,
//!   and a downloading neighbour's bitmap only grows (a seed's shown offer may shrink, but it
//!   then holds more than it shows). At worst a piece is announced that was not needed.
//! - At most [`MAX_VIEWS`] neighbours per task; beyond, a neighbour is simply not viewed and
//!   is told every piece, as before.
//! - A view lives while this daemon watches the neighbour's feed (`download::parent`).

use std::collections::HashMap;

use df_core::ids::PeerId;
use df_core::piece::Bitmap;

/// Neighbours viewed per task at most: the mesh links a peer to 24 at most.
pub const MAX_VIEWS: usize = 64;

/// The neighbours' bitmaps of one task, by the neighbour's peer ID.
#[derive(Debug, Default)]
pub struct Views(HashMap<PeerId, Bitmap>);

impl Views {
    /// `peer` now shows `bitmap`.
    pub fn note(&mut self, peer: &PeerId, bitmap: &Bitmap) {
        if let Some(view) = self.0.get_mut(peer) {
            view.clone_from(bitmap);
        } else if self.0.len() < MAX_VIEWS {
            self.0.insert(peer.clone(), bitmap.clone());
        }
    }

    pub fn forget(&mut self, peer: &PeerId) {
        self.0.remove(peer);
    }

    /// What `peer` showed last, if it is viewed.
    pub fn of(&self, peer: &PeerId) -> Option<&Bitmap> {
        self.0.get(peer)
    }

    /// Whether `peer` showed piece `n`.
    #[cfg(test)]
    pub fn holds(&self, peer: &PeerId, n: u32) -> bool {
        self.of(peer).is_some_and(|b| b.get(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u32) -> PeerId {
        PeerId::from(format!("p{n}"))
    }

    #[test]
    fn a_view_is_the_last_bitmap_and_goes_with_its_neighbour() {
        let mut views = Views::default();
        let mut b = Bitmap::new(8);
        b.set(3);
        views.note(&peer(1), &b);
        assert!(views.holds(&peer(1), 3));
        assert!(!views.holds(&peer(1), 4));
        assert!(
            !views.holds(&peer(2), 3),
            "an unknown neighbour holds nothing"
        );
        b.set(4);
        views.note(&peer(1), &b);
        assert!(views.holds(&peer(1), 4));
        views.forget(&peer(1));
        assert!(!views.holds(&peer(1), 3));
    }

    #[test]
    fn views_are_bounded() {
        let mut views = Views::default();
        let mut b = Bitmap::new(8);
        b.set(0);
        for n in 0..(MAX_VIEWS as u32 + 10) {
            views.note(&peer(n), &b);
        }
        assert_eq!(views.0.len(), MAX_VIEWS);
        assert!(!views.holds(&peer(MAX_VIEWS as u32 + 1), 0));
    }
}
