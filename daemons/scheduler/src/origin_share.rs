//! Which pieces of a task each origin reader reads, as pure code. With one reader (the seed)
//! every byte enters the swarm through that one uplink, and the makespan cannot beat S over
//! it. The scheduler therefore has up to `scheduler.origin_readers` hosts read disjoint
//! ranges of pieces from the origin, each once: the first reader (the seed, or the peer sent
//! to the origin) and downloading peers it appoints as helpers.
//!
//! Invariants:
//! - Shares are disjoint contiguous ranges; a reader reads its own in order, from the start.
//! - A new reader takes the back half of the unstarted part of the largest share, so shares
//!   stay about equal whatever order the readers come in, and no reader loses a piece it may
//!   have started: [`LEAD`] pieces past what it reported stay with it.
//! - A reader that leaves hands its share, from the first piece no live peer holds, to one
//!   new reader, whole (pieces in it that a neighbour shows come from the peers).
//! - A helper that neither reads a piece of its share nor delivers any piece to a peer for the
//!   reader deadline loses its share as if it had left ([`stalled`]); a task takes at most as
//!   many shares back as it may have readers, so an origin slow for everyone cannot make its
//!   shares go round the swarm, each move costing a few pieces read twice.
//!
//! Public for `df-bench sim`, which drives it as the scheduler does.

use std::ops::Range;
use std::time::Duration;

/// Pieces a reader may have started beyond those it reported when a smaller share reaches it
/// (its `concurrent_pieces`, 3 by default, and the reports still on their way).
pub const LEAD: u32 = 8;

/// The lead for pieces of `piece_length`: [`LEAD`], or more when the first reader's first
/// origin answer carries more pieces ([`df_core::piece::FIRST_READ`]), which it reads
/// whatever share it is told meanwhile.
pub fn lead(piece_length: u64) -> u32 {
    let first_read = df_core::piece::FIRST_READ.div_ceil(piece_length.max(1));
    LEAD.max(u32::try_from(first_read).unwrap_or(u32::MAX))
}

/// A share is not split below this many pieces: a reader costs the origin a connection, and
/// a few pieces more through one uplink cost less than a reader more.
pub const MIN_SHARE: u32 = 4;

/// One reader's share and how far it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reader<Id> {
    pub id: Id,
    pub share: Range<u32>,
    /// Pieces of the share whose digest it reported.
    pub reported: u32,
}

impl<Id> Reader<Id> {
    /// The part of the share the reader cannot have started yet.
    fn unstarted(&self, lead: u32) -> Range<u32> {
        let from = self
            .share
            .start
            .saturating_add(self.reported)
            .saturating_add(lead)
            .min(self.share.end);
        from..self.share.end
    }
}

/// A new reader's share, taken from another reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split<Id> {
    /// The reader that gives up part of its share, and what it keeps.
    pub from: Id,
    pub keeps: Range<u32>,
    /// The new reader's share.
    pub takes: Range<u32>,
}

/// The share a new reader takes: the back half of the largest unstarted part, or `None` when
/// no share has `2 * MIN_SHARE` unstarted pieces left. `lead`: see [`lead`].
pub fn split<Id: Clone>(readers: &[Reader<Id>], lead: u32) -> Option<Split<Id>> {
    let largest = readers
        .iter()
        .max_by_key(|r| (r.unstarted(lead).len(), std::cmp::Reverse(r.share.start)))?;
    let unstarted = largest.unstarted(lead);
    let len = u32::try_from(unstarted.len()).ok()?;
    if len < 2 * MIN_SHARE {
        return None;
    }
    let cut = unstarted.end - len / 2;
    Some(Split {
        from: largest.id.clone(),
        keeps: largest.share.start..cut,
        takes: cut..largest.share.end,
    })
}

/// The part of a departed reader's share for a new reader: from its first piece that no live
/// peer holds (one it read and reported but nobody fetched yet is lost with it) to the end of
/// its share; `None` if live peers hold it all.
pub fn orphaned(share: Range<u32>, held_alive: impl Fn(u32) -> bool) -> Option<Range<u32>> {
    let first = share.clone().find(|&n| !held_alive(n))?;
    Some(first..share.end)
}

/// What the scheduler knows of one helper's work on its share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress<Id> {
    pub id: Id,
    /// Pieces of its share whose digest it has not reported.
    pub unreported: u32,
    /// Since it was given its share, reported a digest of it or delivered a piece (any) to a
    /// peer, whichever came last.
    pub quiet: Duration,
    /// Since it was given its share or reported a digest of it (deliveries do not count).
    pub unread: Duration,
    /// Some downloader of the task lacks only pieces of this share that nobody has read: it
    /// waits for this helper alone.
    pub blocks: bool,
}

/// The helpers whose shares are taken back: those with pieces left that were quiet for
/// `deadline`, the quietest first, at most `may_take` of them (what the task's budget has
/// left). A helper paced by its uplink (it reads only as far ahead as it sends) is not quiet
/// while it delivers anything: its neighbours may rank other pieces it holds above its share's
/// (equally rare to them, nearer their head), and its reads wait for them; n32 runs showed
/// honest helpers with no share digest for 6-15 s, and taking the share from one made the
/// swarm slower (1.09·T* against 1.04), its successor being paced the same way. A helper
/// that serves others but withholds its share (or whose deliveries a colluding registrant
/// reports, which the scheduler cannot check) is caught by the second test: it read nothing
/// of its share for `deadline` while a downloader waits for that share alone. An honest
/// helper with a downloader waiting on it sends to it and so reads on, a piece per piece
/// sent. The task's authority is not passed in: it reads whatever nobody else does, so
/// taking its share would move the work, not get it done.
pub fn stalled<Id: Clone>(helpers: &[Progress<Id>], deadline: Duration, may_take: u32) -> Vec<Id> {
    let mut quiet: Vec<&Progress<Id>> = helpers
        .iter()
        .filter(|h| h.unreported > 0 && (h.quiet >= deadline || (h.blocks && h.unread >= deadline)))
        .collect();
    quiet.sort_by_key(|h| std::cmp::Reverse(h.unread));
    quiet
        .into_iter()
        .take(usize::try_from(may_take).unwrap_or(usize::MAX))
        .map(|h| h.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(id: u32, share: Range<u32>, reported: u32) -> Reader<u32> {
        Reader {
            id,
            share,
            reported,
        }
    }

    /// Splits until nothing is left to split, from one reader holding `pieces`.
    fn readers_after(pieces: u32, joins: usize) -> Vec<Reader<u32>> {
        let mut readers = vec![reader(0, 0..pieces, 0)];
        for id in 1..=joins {
            let Some(s) = split(&readers, LEAD) else {
                break;
            };
            if let Some(r) = readers.iter_mut().find(|r| r.id == s.from) {
                r.share = s.keeps;
            }
            readers.push(reader(u32::try_from(id).unwrap_or(u32::MAX), s.takes, 0));
        }
        readers
    }

    #[test]
    fn readers_that_join_together_get_about_equal_disjoint_shares_covering_the_task() {
        let mut readers = readers_after(128, 3);
        assert_eq!(readers.len(), 4);
        readers.sort_by_key(|r| r.share.start);
        let mut next = 0;
        for r in &readers {
            assert_eq!(r.share.start, next, "{readers:?}");
            next = r.share.end;
            assert!((26..=38).contains(&r.share.len()), "{readers:?}");
        }
        assert_eq!(next, 128);
    }

    #[test]
    fn a_reader_keeps_what_it_may_have_started() {
        // Reported 10: pieces up to 10 + LEAD may be under way; the cut comes after them.
        // Unstarted: 18..100, 82 pieces; the new reader takes the back 41.
        let s = split(&[reader(7, 0..100, 10)], LEAD).expect("split");
        assert_eq!(LEAD, 8);
        assert_eq!(s.from, 7);
        assert_eq!(s.keeps, 0..59);
        assert_eq!(s.takes, 59..100);
    }

    #[test]
    fn small_tasks_and_shares_nearly_read_are_not_split() {
        assert!(split(&[reader(0, 0..(LEAD + 2 * MIN_SHARE - 1), 0)], LEAD).is_none());
        assert!(split(&[reader(0, 0..100, 100 - LEAD - 2)], LEAD).is_none());
        assert!(split::<u32>(&[], LEAD).is_none());
        // Ever more joiners stop at shares of about 2 * MIN_SHARE + LEAD.
        let readers = readers_after(128, 1_000);
        assert!(readers.len() < 32, "{}", readers.len());
        assert!(split(&readers, LEAD).is_none());
    }

    #[test]
    fn small_pieces_keep_the_first_answer_with_its_reader() {
        const KIB: u64 = 1024;
        assert_eq!(lead(256 * KIB), 16, "4 MiB of 256 KiB pieces");
        assert_eq!(lead(4096 * KIB), LEAD);
        // 32 pieces split until nothing is left: with LEAD a share would start inside the 16
        // pieces the first answer carries, and they would be read twice.
        let starts = |lead: u32| {
            let mut readers = vec![reader(0, 0..32, 0)];
            while let Some(s) = split(&readers, lead) {
                if let Some(r) = readers.iter_mut().find(|r| r.id == s.from) {
                    r.share = s.keeps;
                }
                readers.push(reader(99, s.takes, 0));
            }
            readers
                .iter()
                .map(|r| r.share.start)
                .filter(|&s| s > 0)
                .min()
        };
        assert!(starts(LEAD).is_some_and(|s| s < 16));
        assert!(starts(lead(256 * KIB)).is_some_and(|s| s >= 16));
    }

    #[test]
    fn the_rest_of_a_departed_reader_goes_on_whole_from_the_first_piece_nobody_holds() {
        let held = [40, 41, 43];
        assert_eq!(
            orphaned(40..50, |n| held.contains(&n)),
            Some(42..50),
            "from the first gap: pieces after it may not have arrived"
        );
        assert_eq!(orphaned(40..42, |n| held.contains(&n)), None);
    }

    #[test]
    fn only_helpers_quiet_past_the_deadline_with_pieces_left_lose_their_share() {
        let secs = Duration::from_secs;
        let helper = |id: u32, unreported: u32, quiet: u64| Progress {
            id,
            unreported,
            quiet: secs(quiet),
            unread: secs(quiet),
            blocks: false,
        };
        let helpers = [
            helper(1, 8, 12),
            helper(2, 8, 9),
            helper(3, 0, 60),
            helper(4, 3, 30),
        ];
        // 2 is not quiet long enough; 3 read its whole share and has nothing to hand on.
        assert_eq!(stalled(&helpers, secs(10), 4), vec![4, 1]);
        assert_eq!(
            stalled(&helpers, secs(10), 1),
            vec![4],
            "the quietest first"
        );
        assert!(
            stalled(&helpers, secs(10), 0).is_empty(),
            "the budget is spent"
        );
        assert!(stalled::<u32>(&[], secs(10), 4).is_empty());
    }

    #[test]
    fn a_helper_that_delivers_but_reads_nothing_loses_its_share_only_when_someone_waits_on_it() {
        let secs = Duration::from_secs;
        let helper = |id: u32, unread: u64, blocks: bool| Progress {
            id,
            unreported: 8,
            quiet: secs(1),
            unread: secs(unread),
            blocks,
        };
        let helpers = [
            // Delivers, has read nothing for 60 s, nobody waits for its share: paced, kept.
            helper(1, 60, false),
            // A downloader waits on it, but it read a piece 5 s ago: kept.
            helper(2, 5, true),
            // Delivers, a downloader waits on its share, nothing read for 12 s: withholding.
            helper(3, 12, true),
            helper(4, 30, true),
        ];
        assert_eq!(stalled(&helpers, secs(10), 4), vec![4, 3]);
        assert_eq!(
            stalled(&helpers, secs(10), 1),
            vec![4],
            "the longest unread first"
        );
        let read_all = Progress {
            unreported: 0,
            ..helper(5, 60, true)
        };
        assert!(stalled(&[read_all], secs(10), 4).is_empty());
    }
}
