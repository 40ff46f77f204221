//! A task's piece bitmap as its neighbours see it, served by the piece server at
//! `GET /tasks/<task id>/bitmap`, in two forms:
//!
//! - the **feed** (`stream=1`): one response held open for the whole download, a line of JSON
//!   ([`BitmapUpdate`]) each time what the neighbour is shown changes, and an empty line after
//!   [`HEARTBEAT`] of quiet. The first line carries the whole bitmap; later lines only the
//!   pieces added, unless the shown set shrank (a seed's super-seeding offer) or the whole
//!   bitmap is shorter;
//! - the **long-poll** (without `stream=1`, what daemons before the feed asked): one
//!   [`BitmapReply`], held open up to `wait_ms` until there is news for the asker.
//!
//! Why a feed: with one request per change, every new piece at a parent cost each of its
//! children a whole HTTP exchange (URL, request, head parsing, timers, a reply), and at 64
//! daemons sharing two cores these exchanges were the largest part of a peer's CPU after the
//! piece bytes themselves. A feed line costs one small TLS record each way.
//!
//! Invariants: the feed ends when the task fails or is removed, or the daemon stops; a reader
//! rejects a line longer than [`MAX_LINE`], a delta before a whole bitmap, and a piece number
//! outside the layout.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use df_core::ids::PeerId;
use df_core::piece::{Bitmap, MAX_PIECE_COUNT};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::admission;
use crate::storage::{StoredTask, TaskState};

/// The feed's content type; a parent that answers anything else served the long-poll.
pub const FEED_CONTENT_TYPE: &str = "application/x-ndjson";

/// The longest quiet on a feed: an empty line follows, so a reader can tell a live parent from a
/// dead one by its read timeout.
pub const HEARTBEAT: Duration = df_core::PEER_WAIT;

/// The longest feed line: a whole bitmap of the most pieces a task may have, in hex, plus the
/// other fields. A delta is only sent when shorter than the whole bitmap.
pub const MAX_LINE: usize = (MAX_PIECE_COUNT as usize).div_ceil(8) * 2 + 256;

/// The long-poll's one reply.
#[derive(Debug, Serialize, Deserialize)]
pub struct BitmapReply {
    pub piece_count: u32,
    /// Hex of the packed bitmap.
    pub bitmap: String,
    pub complete: bool,
    /// Uploads of this task in progress on this peer.
    #[serde(default)]
    pub uploads: u32,
    /// Every upload slot is taken: piece requests are answered busy.
    #[serde(default)]
    pub full: bool,
}

/// One line of the feed.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BitmapUpdate {
    pub piece_count: u32,
    /// Hex of the whole packed bitmap; `None` when `added` says what changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitmap: Option<String>,
    /// Pieces shown since the previous line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<u32>,
    pub complete: bool,
    pub uploads: u32,
    pub full: bool,
}

/// What a neighbour is shown of a task at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Shown {
    pub(crate) bitmap: Bitmap,
    pub(crate) piece_count: u32,
    /// Complete as far as a neighbour can tell: it is shown everything.
    pub(crate) complete: bool,
    pub(crate) uploads: u32,
    pub(crate) full: bool,
    /// The task failed and is no longer being downloaded.
    pub(crate) failed: bool,
}

impl Shown {
    /// `task` now; a seed shows what it will send (super-seeding), a set that also shrinks.
    pub(crate) fn of(task: &StoredTask, seed: bool, slots: u32) -> Self {
        Self::of_state(&task.state(), seed, slots)
    }

    /// [`Self::of`] from a task's state the caller holds locked.
    fn of_state(st: &TaskState, seed: bool, slots: u32) -> Self {
        let bitmap = if seed {
            crate::superseed::offer(&st.bitmap, st.superseed_record())
        } else {
            st.bitmap.clone()
        };
        Self {
            complete: st.complete && bitmap.count() == st.bitmap.count(),
            piece_count: st.layout.map_or(0, |l| l.piece_count()),
            uploads: st.uploads,
            full: admission::is_full(st.uploads, slots),
            failed: !st.downloading && st.failure.is_some(),
            bitmap,
        }
    }

    pub(crate) fn reply(&self) -> BitmapReply {
        BitmapReply {
            piece_count: self.piece_count,
            bitmap: self.bitmap.to_hex(),
            complete: self.complete,
            uploads: self.uploads,
            full: self.full,
        }
    }

    /// [`Self::update_for`] a reader that holds nothing (the tests' shorthand).
    #[cfg(test)]
    pub(crate) fn update_since(&self, last: Option<&Shown>) -> Option<BitmapUpdate> {
        self.update_for(last, |_| false)
    }

    /// The feed line telling a reader who was last sent `last`, and holds the pieces `held`
    /// picks, what changed; `None` when nothing it acts on did (the upload count alone is not
    /// news, nor a piece it holds). A delta leaves held pieces out; a whole bitmap, sent for
    /// other news, still shows everything.
    pub(crate) fn update_for(
        &self,
        last: Option<&Shown>,
        held: impl Fn(u32) -> bool,
    ) -> Option<BitmapUpdate> {
        let mut update = BitmapUpdate {
            piece_count: self.piece_count,
            bitmap: None,
            added: Vec::new(),
            complete: self.complete,
            uploads: self.uploads,
            full: self.full,
        };
        let Some(last) = last.filter(|l| l.piece_count == self.piece_count) else {
            update.bitmap = Some(self.bitmap.to_hex());
            return Some(update);
        };
        // A piece added that the reader holds is no news to it, whichever form the line takes.
        let changed: Vec<u32> = self
            .bitmap
            .differing(&last.bitmap)
            .filter(|&n| !(self.bitmap.get(n) && held(n)))
            .collect();
        let only_added = changed.iter().all(|&n| self.bitmap.get(n));
        // A piece number is up to 7 bytes of JSON; the whole bitmap is 2 hex digits per 8.
        let whole_len = (self.piece_count as usize).div_ceil(8) * 2;
        if !only_added || changed.len() * 7 > whole_len {
            update.bitmap = Some(self.bitmap.to_hex());
        } else {
            update.added = changed;
        }
        let news = update.bitmap.is_some()
            || !update.added.is_empty()
            || self.full != last.full
            || self.complete != last.complete;
        news.then_some(update)
    }
}

/// A feed being served to one neighbour.
pub(crate) struct Feed {
    task: Arc<StoredTask>,
    changes: watch::Receiver<u64>,
    last: Option<Shown>,
    seed: bool,
    slots: u32,
    /// The reader's peer ID, as it says: pieces its own feed showed are not announced to it
    /// ([`crate::neighbour_views`]). A reader that names another peer only hears less.
    reader: Option<PeerId>,
    stop: CancellationToken,
}

impl Feed {
    pub(crate) fn new(
        task: Arc<StoredTask>,
        seed: bool,
        slots: u32,
        reader: Option<PeerId>,
        stop: CancellationToken,
    ) -> Self {
        Self {
            changes: task.subscribe(),
            task,
            last: None,
            seed,
            slots,
            // A seed's offer is not its bitmap: it shows everything it offers.
            reader: reader.filter(|_| !seed),
            stop,
        }
    }

    /// The next line to write, waiting for news; `None` ends the feed.
    pub(crate) async fn next_line(&mut self) -> Option<Bytes> {
        let quiet_until = tokio::time::Instant::now() + HEARTBEAT;
        loop {
            self.changes.borrow_and_update();
            // One lock per wake: what is shown and what the reader holds, together.
            let (now, update) = {
                let st = self.task.state();
                let now = Shown::of_state(&st, self.seed, self.slots);
                let view = self.reader.as_ref().and_then(|r| st.views.of(r));
                let update = now.update_for(self.last.as_ref(), |n| view.is_some_and(|v| v.get(n)));
                (now, update)
            };
            if now.failed {
                return None;
            }
            if let Some(update) = update {
                self.last = Some(now);
                let mut line = serde_json::to_vec(&update).ok()?;
                line.push(b'\n');
                return Some(Bytes::from(line));
            }
            tokio::select! {
                changed = self.changes.changed() => if changed.is_err() { return None },
                () = tokio::time::sleep_until(quiet_until) => return Some(Bytes::from_static(b"\n")),
                // Shutting down: the feed ends so the connection can close.
                () = self.stop.cancelled() => return None,
            }
        }
    }
}

/// Why a feed line was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FeedError {
    #[error("a bitmap feed line is longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("malformed bitmap feed line: {0}")]
    Malformed(String),
    #[error("the bitmap feed sent added pieces before a whole bitmap")]
    DeltaFirst,
    #[error("the bitmap feed named piece {piece} of a task with {count} pieces")]
    PieceOutOfRange { piece: u32, count: u32 },
}

/// The reading end of a feed: splits the byte stream into lines and keeps the parent's bitmap.
#[derive(Debug, Default)]
pub struct FeedReader {
    pending: Vec<u8>,
    bitmap: Option<Bitmap>,
}

impl FeedReader {
    /// Takes the bytes of one body chunk; returns each update it completes, with the parent's
    /// bitmap after it.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<(Bitmap, BitmapUpdate)>, FeedError> {
        let mut out = Vec::new();
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let mut joined = std::mem::take(&mut self.pending);
            let line: &[u8] = if joined.is_empty() {
                &rest[..end]
            } else {
                joined.extend_from_slice(&rest[..end]);
                &joined
            };
            if line.len() > MAX_LINE {
                return Err(FeedError::LineTooLong);
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                let update: BitmapUpdate = serde_json::from_slice(line)
                    .map_err(|e| FeedError::Malformed(e.to_string()))?;
                let bitmap = self.apply(&update)?;
                out.push((bitmap, update));
            }
            rest = &rest[end + 1..];
        }
        if self.pending.len() + rest.len() > MAX_LINE {
            return Err(FeedError::LineTooLong);
        }
        self.pending.extend_from_slice(rest);
        Ok(out)
    }

    fn apply(&mut self, update: &BitmapUpdate) -> Result<Bitmap, FeedError> {
        let count = update.piece_count;
        if let Some(hex) = &update.bitmap {
            let whole = Bitmap::from_hex(count, hex)
                .ok_or_else(|| FeedError::Malformed("bitmap does not match piece_count".into()))?;
            self.bitmap = Some(whole);
        }
        let bitmap = match self.bitmap.as_mut() {
            Some(b) if b.len() == count => b,
            _ => return Err(FeedError::DeltaFirst),
        };
        for &piece in &update.added {
            if piece >= count {
                return Err(FeedError::PieceOutOfRange { piece, count });
            }
            bitmap.set(piece);
        }
        Ok(bitmap.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(len: u32, ones: &[u32], full: bool) -> Shown {
        let mut bitmap = Bitmap::new(len);
        for &n in ones {
            bitmap.set(n);
        }
        Shown {
            complete: bitmap.is_full(),
            piece_count: len,
            uploads: 0,
            full,
            failed: false,
            bitmap,
        }
    }

    fn line(update: &BitmapUpdate) -> Vec<u8> {
        let mut l = serde_json::to_vec(update).expect("serialise");
        l.push(b'\n');
        l
    }

    #[test]
    fn the_first_line_is_whole_then_only_added_pieces_follow() {
        let first = shown(256, &[1, 2], false);
        let u = first.update_since(None).expect("a first line");
        assert_eq!(u.bitmap, Some(first.bitmap.to_hex()));
        let second = shown(256, &[1, 2, 9], false);
        let u = second.update_since(Some(&first)).expect("a line");
        assert_eq!((u.bitmap, u.added), (None, vec![9]));
    }

    #[test]
    fn a_reader_is_not_told_of_pieces_it_holds() {
        let first = shown(256, &[1], false);
        let holds = |n: u32| n == 9 || n == 1;
        // The first line is whole: it shows everything, held or not.
        let u = first.update_for(None, holds).expect("a first line");
        assert_eq!(u.bitmap, Some(first.bitmap.to_hex()));
        // Only a held piece new: no line at all.
        let second = shown(256, &[1, 9], false);
        assert_eq!(second.update_for(Some(&first), holds), None);
        // A held and a new piece: only the new one; a slot freeing is still news.
        let third = shown(256, &[1, 9, 12], false);
        let u = third.update_for(Some(&first), holds).expect("a line");
        assert_eq!(u.added, vec![12]);
        let busy = shown(256, &[1, 9], true);
        let u = busy.update_for(Some(&first), holds).expect("a line");
        assert!(u.full && u.added.is_empty());
    }

    /// A feed to a reader this daemon views: a piece the reader showed is not announced, the
    /// next one is. Through the task's own views, as a parent serving a neighbour it watches.
    #[tokio::test]
    async fn a_feed_leaves_out_what_its_named_reader_showed() {
        use crate::storage::scratch_task;
        use df_core::api::ByteSource;
        let dir = tempfile::tempdir().expect("tempdir");
        let (_store, task) =
            scratch_task(dir.path(), df_core::piece::PieceLayout::new(8, Some(1))).await;
        let reader = PeerId::from("reader".to_owned());
        let mut showed = Bitmap::new(8);
        showed.set(1);
        task.state().views.note(&reader, &showed);
        let mut feed = Feed::new(
            task.clone(),
            false,
            3,
            Some(reader),
            CancellationToken::new(),
        );
        let mut seen = FeedReader::default();
        let first = feed.next_line().await.expect("the whole bitmap first");
        assert_eq!(seen.push(&first).expect("a line").len(), 1);
        let digest = df_core::ids::PieceDigest::from_slice(&[7; 32]).expect("digest");
        task.commit_piece(1, digest, ByteSource::Peer, 1);
        // 8 pieces: any line would be a whole bitmap; none is sent.
        let quiet = tokio::time::timeout(Duration::from_millis(300), feed.next_line()).await;
        assert!(
            quiet.is_err(),
            "announced a piece the reader showed: {quiet:?}"
        );
        task.commit_piece(2, digest, ByteSource::Peer, 1);
        let line = feed.next_line().await.expect("a line");
        let (bitmap, _) = seen.push(&line).expect("a line").pop().expect("an update");
        assert_eq!(
            bitmap.ones().collect::<Vec<_>>(),
            [1, 2],
            "whole, it shows all"
        );
    }

    #[test]
    fn nothing_new_is_no_line_but_a_slot_freeing_or_completion_is() {
        let a = shown(16, &[1], true);
        let mut same_but_busier = a.clone();
        same_but_busier.uploads = 3;
        assert_eq!(same_but_busier.update_since(Some(&a)), None);
        let freed = shown(16, &[1], false);
        assert!(!freed.update_since(Some(&a)).expect("a line").full);
        let mut done = a.clone();
        done.complete = true;
        assert!(done.update_since(Some(&a)).expect("a line").complete);
    }

    #[test]
    fn a_shrinking_or_relaid_set_is_sent_whole() {
        let a = shown(16, &[1, 2], false);
        let shrunk = shown(16, &[2, 3], false);
        assert_eq!(
            shrunk.update_since(Some(&a)).expect("a line").bitmap,
            Some(shrunk.bitmap.to_hex())
        );
        let relaid = shown(32, &[1, 2], false);
        assert!(
            relaid
                .update_since(Some(&a))
                .expect("a line")
                .bitmap
                .is_some()
        );
        // Many added pieces cost more than the whole bitmap.
        let many = shown(16, &(0..16).collect::<Vec<_>>(), false);
        assert!(
            many.update_since(Some(&a))
                .expect("a line")
                .bitmap
                .is_some()
        );
    }

    #[test]
    fn a_reader_follows_lines_split_anywhere_and_skips_heartbeats() {
        let a = shown(256, &[1, 2], false);
        let b = shown(256, &[1, 2, 7], true);
        let mut bytes = line(&a.update_since(None).expect("a first line"));
        bytes.extend_from_slice(b"\n");
        bytes.extend(line(&b.update_since(Some(&a)).expect("a line")));
        for cut in 0..bytes.len() {
            let mut reader = FeedReader::default();
            let mut got = reader.push(&bytes[..cut]).expect("a line");
            got.extend(reader.push(&bytes[cut..]).expect("a line"));
            assert_eq!(got.len(), 2, "cut at {cut}");
            assert_eq!(got[0].0, a.bitmap);
            assert_eq!(got[1].0, b.bitmap);
            assert!(got[1].1.full);
        }
    }

    #[test]
    fn a_reader_refuses_hostile_lines() {
        let delta = BitmapUpdate {
            piece_count: 8,
            bitmap: None,
            added: vec![3],
            complete: false,
            uploads: 0,
            full: false,
        };
        assert_eq!(
            FeedReader::default().push(&line(&delta)),
            Err(FeedError::DeltaFirst)
        );
        let mut reader = FeedReader::default();
        let whole = shown(8, &[], false)
            .update_since(None)
            .expect("a first line");
        reader.push(&line(&whole)).expect("a line");
        let out_of_range = BitmapUpdate {
            added: vec![8],
            ..delta
        };
        assert_eq!(
            reader.push(&line(&out_of_range)),
            Err(FeedError::PieceOutOfRange { piece: 8, count: 8 })
        );
        assert!(matches!(
            FeedReader::default().push(b"{not json\n"),
            Err(FeedError::Malformed(_))
        ));
        let endless = vec![b'a'; MAX_LINE + 1];
        assert_eq!(
            FeedReader::default().push(&endless),
            Err(FeedError::LineTooLong)
        );
    }
}
