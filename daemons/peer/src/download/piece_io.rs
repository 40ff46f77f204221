//! Moving one piece from an HTTP body into the task's file: hashed while it streams, written in
//! large blocks off the runtime, rate limited, with a stall timeout. The caller decides what the
//! digest means (recorded for origin pieces, compared for peer pieces) and only then sets the
//! piece's bit, so a piece that fails its check is never served even though its bytes landed.

use std::time::Duration;

use bytes::Bytes;
use df_core::ids::PieceDigest;
use futures_util::{Stream, StreamExt as _};

use crate::ratelimit::RateLimiter;
use crate::storage::{StorageError, StoredTask};

/// Bytes gathered before one write to disk; large enough that the blocking-pool hop is cheap.
const WRITE_BLOCK: usize = 512 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PieceError {
    #[error("cannot connect: {0}")]
    Unreachable(String),
    #[error("no data for {0:?}")]
    Timeout(Duration),
    #[error("transfer failed: {0}")]
    Transfer(String),
    #[error("body ended after {got} of {want} bytes")]
    Short { got: u64, want: u64 },
    #[error("parent does not have the piece")]
    NotFound,
    #[error("parent's upload slots are all taken")]
    Busy,
    #[error("HTTP {0}")]
    Status(u16),
    #[error("digest mismatch: expected {expected:?}, got {got:?}")]
    DigestMismatch {
        expected: PieceDigest,
        got: PieceDigest,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A response body read in chunks no longer than the caller asks for, keeping the rest for
/// the next call; lets one streamed body be cut into consecutive pieces.
pub struct BodyReader<S> {
    stream: S,
    leftover: Option<Bytes>,
}

impl<S, E> BodyReader<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            leftover: None,
        }
    }

    async fn next_chunk(
        &mut self,
        max: usize,
        stall: Duration,
    ) -> Result<Option<Bytes>, PieceError> {
        let mut chunk = match self.leftover.take() {
            Some(b) => b,
            None => match tokio::time::timeout(stall, self.stream.next()).await {
                Err(_) => return Err(PieceError::Timeout(stall)),
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => return Err(PieceError::Transfer(e.to_string())),
                Ok(Some(Ok(b))) => b,
            },
        };
        if chunk.len() > max {
            self.leftover = Some(chunk.split_off(max));
        }
        Ok(Some(chunk))
    }

    /// Reads exactly `len` bytes into the task file at `offset`; returns their digest.
    pub async fn write_piece(
        &mut self,
        task: &StoredTask,
        offset: u64,
        len: u64,
        limiter: &RateLimiter,
        stall: Duration,
    ) -> Result<PieceDigest, PieceError> {
        self.write_piece_marked(task, (offset, len), limiter, stall, (len, || {}))
            .await
    }

    /// [`Self::write_piece`] of the piece at `(offset, len)`, calling `at_mark.1` once
    /// `at_mark.0` bytes of it have arrived.
    pub async fn write_piece_marked(
        &mut self,
        task: &StoredTask,
        (offset, len): (u64, u64),
        limiter: &RateLimiter,
        stall: Duration,
        at_mark: (u64, impl FnOnce()),
    ) -> Result<PieceDigest, PieceError> {
        let (mark, at_mark) = at_mark;
        let mut at_mark = Some(at_mark);
        let mut hasher = blake3::Hasher::new();
        let mut pending: Vec<Bytes> = Vec::new();
        let mut pending_len = 0usize;
        let mut received = 0u64;
        let mut flushed = 0u64;
        while received < len {
            let want = usize::try_from(len - received).unwrap_or(usize::MAX);
            let Some(chunk) = self.next_chunk(want, stall).await? else {
                return Err(PieceError::Short {
                    got: received,
                    want: len,
                });
            };
            limiter.acquire(chunk.len()).await;
            hasher.update(&chunk);
            received += chunk.len() as u64;
            if received >= mark
                && let Some(f) = at_mark.take()
            {
                f();
            }
            pending_len += chunk.len();
            pending.push(chunk);
            if pending_len >= WRITE_BLOCK {
                task.write_chunks_at(offset + flushed, std::mem::take(&mut pending))
                    .await?;
                flushed += pending_len as u64;
                pending_len = 0;
            }
        }
        if !pending.is_empty() {
            task.write_chunks_at(offset + flushed, pending).await?;
        }
        Ok(PieceDigest::from_hasher(&hasher))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use df_core::piece::PieceLayout;

    use super::*;
    use crate::storage::scratch_task;

    #[tokio::test]
    async fn the_mark_fires_once_when_its_byte_arrives_and_the_piece_is_whole() {
        let dir = tempfile::tempdir().expect("tmp");
        let (_store, task) = scratch_task(dir.path(), PieceLayout::new(32, Some(32))).await;
        // Four chunks of 8 bytes; `yielded` counts those handed out so far.
        let yielded = Arc::new(AtomicUsize::new(0));
        let counter = yielded.clone();
        let chunks = futures_util::stream::iter((0u8..4).map(move |i| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(Bytes::from(vec![i; 8]))
        }));
        let mut fired_after = Vec::new();
        let digest = BodyReader::new(chunks)
            .write_piece_marked(
                &task,
                (0, 32),
                &RateLimiter::unlimited(),
                Duration::from_secs(5),
                (24, || fired_after.push(yielded.load(Ordering::SeqCst))),
            )
            .await
            .expect("piece");
        assert_eq!(
            fired_after,
            vec![3],
            "once, on the chunk that reaches byte 24"
        );
        let whole: Vec<u8> = (0u8..4).flat_map(|i| [i; 8]).collect();
        assert_eq!(digest, PieceDigest::of(&whole));
    }
}
