//! Piece maths: how an object is cut into pieces, and the bitmap of which pieces a peer holds.
//!
//! Invariants: pieces are contiguous, cover the object exactly, all but the last have the piece
//! length, and the last is non-empty. An empty object has zero pieces.

use serde::{Deserialize, Serialize};

/// Smallest automatic piece length.
///
/// Upstream's is 4 MiB. A piece is forwarded only once it is whole and verified, so each hop
/// of the swarm's depth (about log2 N) costs a piece at a share of a link, and an object of
/// k pieces pulled by N peers ends about log2 N · 3/k of the transfer after the bound (3
/// pieces in flight; README "How the makespan scales with N"). With 4 MiB pieces a 48 MiB
/// layer has 12: 64 peers took 2.75 times the bound in the simulator, against 1.09 with 256
/// KiB pieces, and an object under 16 pieces is read from the origin by the seed alone. The
/// automatic length is not part of the task ID, and the first origin reader's layout is the
/// task's, so daemons with either rule share one swarm.
pub const MIN_PIECE_LENGTH: u64 = 256 * 1024;
pub const MAX_PIECE_LENGTH: u64 = 64 * 1024 * 1024;
/// Smallest piece length a request or a peer may set explicitly (the automatic length is never
/// below [`MIN_PIECE_LENGTH`]).
pub const MIN_EXPLICIT_PIECE_LENGTH: u64 = 64 * 1024;
/// Most pieces one task may have: bounds every bitmap (16 KiB), digest list (4 MiB) and the
/// per-piece messages a task costs, whatever a peer or an origin claims.
pub const MAX_PIECE_COUNT: u32 = 1 << 17;
/// Most origin readers one task may have (`scheduler.origin_readers`): bounds the reader list a
/// task's authority keeps and names again after a scheduler restart.
pub const MAX_ORIGIN_READERS: usize = 64;
/// What a task's first origin request reads when the piece length is automatic (unknown
/// before the object's length is): every automatic length up to it divides it, so each whole
/// piece it carries is kept, and from 2000 MiB objects up (4 MiB pieces) it is piece 0.
pub const FIRST_READ: u64 = 4 * 1024 * 1024;
/// The automatic piece length aims for at most this many pieces.
///
/// Twice upstream's 500 for the hop cost of [`MIN_PIECE_LENGTH`]: a 1.5 GB layer gets 2 MiB
/// pieces instead of 4, and Kraken's benchmark case (2,600 hosts, 3 GB in two layers) finishes
/// at a median 1.045 × S/cap in the simulator instead of 1.08. Per-byte work (TLS, hashing,
/// disk) dominates a piece's CPU at these lengths: 256 MiB pulled in 4, 2 or 1 MiB pieces cost
/// a peer the same 0.6-0.8 CPU-s (README "1,000 pieces").
const TARGET_PIECE_COUNT: u64 = 1000;

/// Next power of two of `content_length / 1000`, clamped to 256 KiB..=64 MiB: 256 KiB up to
/// 250 MiB, 2 MiB for 1-2 GB layers, 64 MiB from 64 GB up (upstream: `/ 500`, 4 MiB floor).
pub fn piece_length_for(content_length: u64) -> u64 {
    let raw = (content_length / TARGET_PIECE_COUNT).max(1);
    raw.checked_next_power_of_two()
        .unwrap_or(MAX_PIECE_LENGTH)
        .clamp(MIN_PIECE_LENGTH, MAX_PIECE_LENGTH)
}

/// A layout read from the network that must not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("piece_length {0} is outside {MIN_EXPLICIT_PIECE_LENGTH}..={MAX_PIECE_LENGTH}")]
    PieceLength(u64),
    #[error("content_length {content_length} is above the maximum {max}")]
    ContentLength { content_length: u64, max: u64 },
    #[error(
        "{content_length} bytes in pieces of {piece_length} make more than {MAX_PIECE_COUNT} pieces"
    )]
    PieceCount {
        content_length: u64,
        piece_length: u64,
    },
}

/// How an object of a known length is divided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceLayout {
    pub content_length: u64,
    pub piece_length: u64,
}

impl PieceLayout {
    /// `piece_length` of `None` picks [`piece_length_for`].
    pub fn new(content_length: u64, piece_length: Option<u64>) -> Self {
        Self {
            content_length,
            piece_length: piece_length
                .filter(|&l| l > 0)
                .unwrap_or_else(|| piece_length_for(content_length)),
        }
    }

    /// [`PieceLayout::new`] for lengths that came from the network: an explicit piece length
    /// outside [`MIN_EXPLICIT_PIECE_LENGTH`]..=[`MAX_PIECE_LENGTH`], a content length above
    /// `max_content_length`, or more than [`MAX_PIECE_COUNT`] pieces are refused, so that no
    /// claim makes anyone allocate per-piece state beyond those bounds.
    pub fn bounded(
        content_length: u64,
        piece_length: Option<u64>,
        max_content_length: u64,
    ) -> Result<Self, LayoutError> {
        if let Some(len) = piece_length.filter(|&l| l > 0)
            && !(MIN_EXPLICIT_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&len)
        {
            return Err(LayoutError::PieceLength(len));
        }
        if content_length > max_content_length {
            return Err(LayoutError::ContentLength {
                content_length,
                max: max_content_length,
            });
        }
        let layout = Self::new(content_length, piece_length);
        layout.check_count()?;
        Ok(layout)
    }

    /// Refuses a layout of more than [`MAX_PIECE_COUNT`] pieces (or of zero-length pieces).
    pub fn check_count(&self) -> Result<(), LayoutError> {
        let too_many = self.piece_length == 0
            || self.content_length.div_ceil(self.piece_length) > u64::from(MAX_PIECE_COUNT);
        if too_many {
            return Err(LayoutError::PieceCount {
                content_length: self.content_length,
                piece_length: self.piece_length,
            });
        }
        Ok(())
    }

    pub fn piece_count(&self) -> u32 {
        u32::try_from(self.content_length.div_ceil(self.piece_length)).unwrap_or(u32::MAX)
    }

    /// Byte offset and length of piece `number`; `None` past the end.
    pub fn range(&self, number: u32) -> Option<(u64, u64)> {
        let offset = u64::from(number).checked_mul(self.piece_length)?;
        if offset >= self.content_length {
            return None;
        }
        Some((offset, self.piece_length.min(self.content_length - offset)))
    }

    /// The piece that holds byte `offset`.
    pub fn piece_of(&self, offset: u64) -> u32 {
        u32::try_from(offset / self.piece_length).unwrap_or(u32::MAX)
    }
}

/// Which pieces are held. Serialised as hex of the packed bits (bit `n % 8` of byte `n / 8`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bitmap {
    bits: Vec<u8>,
    len: u32,
    ones: u32,
}

impl Bitmap {
    pub fn new(len: u32) -> Self {
        Self {
            bits: vec![0; (len as usize).div_ceil(8)],
            len,
            ones: 0,
        }
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn count(&self) -> u32 {
        self.ones
    }

    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }

    pub fn get(&self, n: u32) -> bool {
        n < self.len && self.bits[(n / 8) as usize] & (1 << (n % 8)) != 0
    }

    /// Sets bit `n`; returns whether it was newly set. Out-of-range bits are ignored.
    pub fn set(&mut self, n: u32) -> bool {
        if n >= self.len || self.get(n) {
            return false;
        }
        self.bits[(n / 8) as usize] |= 1 << (n % 8);
        self.ones += 1;
        true
    }

    pub fn clear(&mut self, n: u32) {
        if self.get(n) {
            self.bits[(n / 8) as usize] &= !(1 << (n % 8));
            self.ones -= 1;
        }
    }

    pub fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&n| self.get(n))
    }

    pub fn missing(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&n| !self.get(n))
    }

    /// Bits set in exactly one of `self` and `other` (every bit of the longer one past the
    /// shorter's end counts as differing when set). Skips equal bytes, so comparing two
    /// bitmaps of a mostly unchanged neighbour costs a byte compare per 8 pieces.
    pub fn differing<'a>(&'a self, other: &'a Bitmap) -> impl Iterator<Item = u32> + 'a {
        let bytes = self.bits.len().max(other.bits.len());
        (0..bytes).flat_map(move |i| {
            let x =
                self.bits.get(i).copied().unwrap_or(0) ^ other.bits.get(i).copied().unwrap_or(0);
            (0..8u32)
                .filter(move |b| x & (1 << b) != 0)
                .map(move |b| u32::try_from(i).unwrap_or(u32::MAX).saturating_mul(8) + b)
        })
    }

    pub fn to_hex(&self) -> String {
        hex::encode(&self.bits)
    }

    pub fn from_hex(len: u32, s: &str) -> Option<Self> {
        let bits = hex::decode(s).ok()?;
        if bits.len() != (len as usize).div_ceil(8) {
            return None;
        }
        let mut map = Self::new(len);
        for n in 0..len {
            if bits[(n / 8) as usize] & (1 << (n % 8)) != 0 {
                map.set(n);
            }
        }
        Some(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;

    #[test]
    fn hostile_layouts_are_refused_before_anything_is_allocated() {
        const TIB: u64 = 1 << 40;
        // The crash of issue 15: one byte per piece of a 141 GB object.
        assert_eq!(
            PieceLayout::bounded(141_000_000_000, Some(1), TIB),
            Err(LayoutError::PieceLength(1))
        );
        assert_eq!(
            PieceLayout::bounded(2 * TIB, None, TIB),
            Err(LayoutError::ContentLength {
                content_length: 2 * TIB,
                max: TIB
            })
        );
        // Smallest explicit pieces over a large object: too many of them.
        assert!(matches!(
            PieceLayout::bounded(TIB, Some(MIN_EXPLICIT_PIECE_LENGTH), TIB),
            Err(LayoutError::PieceCount { .. })
        ));
        // The automatic length keeps any allowed object within the piece count.
        let auto = PieceLayout::bounded(TIB, None, TIB).expect("automatic layout");
        assert!(auto.piece_count() <= MAX_PIECE_COUNT);
        let explicit = PieceLayout::bounded(8 * MIB, Some(MIB), TIB).expect("1 MiB pieces");
        assert_eq!(explicit.piece_count(), 8);
        assert!(PieceLayout::new(10, Some(0)).check_count().is_ok());
    }

    #[test]
    fn piece_length_table_aims_at_a_thousand_pieces() {
        assert_eq!(piece_length_for(0), 256 * KIB);
        assert_eq!(piece_length_for(48 * MIB), 256 * KIB);
        assert_eq!(piece_length_for(250 * MIB), 256 * KIB);
        assert_eq!(piece_length_for(400 * MIB), 512 * KIB);
        assert_eq!(piece_length_for(1000 * MIB), MIB);
        assert_eq!(piece_length_for(1024 * MIB), 2 * MIB);
        assert_eq!(piece_length_for(1_500_000_000), 2 * MIB);
        assert_eq!(piece_length_for(2000 * MIB), 2 * MIB);
        assert_eq!(piece_length_for(3000 * MIB), 4 * MIB);
        assert_eq!(piece_length_for(6000 * MIB), 8 * MIB);
        assert_eq!(piece_length_for(100_000 * MIB), 64 * MIB);
    }

    #[test]
    fn empty_object_has_no_pieces() {
        let layout = PieceLayout::new(0, None);
        assert_eq!(layout.piece_count(), 0);
        assert_eq!(layout.range(0), None);
    }

    proptest! {
        #[test]
        fn piece_length_is_a_clamped_power_of_two(len in 0u64..(1u64 << 45)) {
            let p = piece_length_for(len);
            prop_assert!(p.is_power_of_two());
            prop_assert!((MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&p));
            // Never more than 1,000 pieces unless the 64 MiB cap forces it.
            let count = len.div_ceil(p);
            prop_assert!(count <= TARGET_PIECE_COUNT || p == MAX_PIECE_LENGTH);
        }

        #[test]
        fn pieces_tile_the_object_exactly(len in 0u64..(1u64 << 36), explicit in proptest::option::of(1u64..(1u64 << 27))) {
            let layout = PieceLayout::new(len, explicit);
            let mut next = 0u64;
            for n in 0..layout.piece_count() {
                let (offset, size) = layout.range(n).expect("in range");
                prop_assert_eq!(offset, next);
                prop_assert!(size > 0 && size <= layout.piece_length);
                prop_assert_eq!(layout.piece_of(offset), n);
                prop_assert_eq!(layout.piece_of(offset + size - 1), n);
                next = offset + size;
            }
            prop_assert_eq!(next, len);
            prop_assert_eq!(layout.range(layout.piece_count()), None);
        }

        #[test]
        fn bitmap_round_trips_and_counts(len in 0u32..2000, picks in proptest::collection::vec(0u32..2100, 0..300)) {
            let mut map = Bitmap::new(len);
            let mut expected = std::collections::BTreeSet::new();
            for p in picks {
                let newly = map.set(p);
                prop_assert_eq!(newly, p < len && expected.insert(p));
            }
            prop_assert_eq!(map.count() as usize, expected.len());
            prop_assert_eq!(map.ones().collect::<Vec<_>>(), expected.iter().copied().collect::<Vec<_>>());
            let back = Bitmap::from_hex(len, &map.to_hex()).expect("round trip");
            prop_assert_eq!(back, map);
        }

        #[test]
        fn differing_is_the_symmetric_difference(len in 0u32..300, a in proptest::collection::vec(0u32..300, 0..100), b in proptest::collection::vec(0u32..300, 0..100)) {
            let (mut x, mut y) = (Bitmap::new(len), Bitmap::new(len));
            a.iter().for_each(|&n| { x.set(n); });
            b.iter().for_each(|&n| { y.set(n); });
            let want: Vec<u32> = (0..len).filter(|&n| x.get(n) != y.get(n)).collect();
            prop_assert_eq!(x.differing(&y).collect::<Vec<_>>(), want);
        }
    }
}
