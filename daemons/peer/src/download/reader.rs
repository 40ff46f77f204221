//! Streams a task's bytes to a client in order, as pieces land. A piece is read only once its
//! bit is set (verified); when the whole-object digest is known, the last piece is held back
//! until the object verified, so a client never receives the end of an object that failed.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;

use crate::storage::{StoredTask, TaskUse};

/// Bytes read from disk per chunk sent.
const READ_CHUNK: u64 = 1024 * 1024;

/// The bytes `start..end` of the task.
pub fn object_stream(
    task: Arc<StoredTask>,
    hold: TaskUse,
    start: u64,
    end: u64,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let changes = task.subscribe();
    futures_util::stream::unfold(
        (task, hold, changes, start, false),
        move |(task, hold, mut changes, offset, failed)| async move {
            if offset >= end || failed {
                return None;
            }
            loop {
                changes.borrow_and_update();
                let ready = {
                    let st = task.state();
                    match st.layout {
                        None => Err(std::io::Error::other("task lost its layout")),
                        Some(layout) => {
                            let n = layout.piece_of(offset);
                            let held_back = st.object_digest.is_some()
                                && n + 1 == layout.piece_count()
                                && !st.complete;
                            if st.bitmap.get(n) && !held_back {
                                let piece_end = layout.range(n).map_or(end, |(o, l)| o + l);
                                Ok(Some(piece_end.min(end).min(offset + READ_CHUNK) - offset))
                            } else if let Some(f) = &st.failure {
                                Err(std::io::Error::other(format!("download failed: {f}")))
                            } else if !st.downloading && !st.complete {
                                Err(std::io::Error::other("download stopped"))
                            } else {
                                Ok(None)
                            }
                        }
                    }
                };
                match ready {
                    Ok(Some(len)) => {
                        let chunk = task
                            .read_at(offset, len as usize)
                            .await
                            .map_err(std::io::Error::other);
                        let failed = chunk.is_err();
                        return Some((chunk, (task, hold, changes, offset + len, failed)));
                    }
                    Ok(None) => {
                        if changes.changed().await.is_err() {
                            return Some((
                                Err(std::io::Error::other("task closed")),
                                (task, hold, changes, offset, true),
                            ));
                        }
                    }
                    Err(e) => return Some((Err(e), (task, hold, changes, offset, true))),
                }
            }
        },
    )
}
