//! A child's view of one parent: a long-poll watcher that keeps the parent's piece bitmap and
//! upload load current (pieces are shared while still in flight, so a child follows a parent
//! that is itself downloading), and fetching one piece from it. While the parent's last reply
//! said its slots were full, or after it answered *busy* once it is complete (its bitmap no
//! longer changes), the watcher polls with `full=1`, so the parent also answers as soon as a
//! slot frees.

use std::time::{Duration, Instant};

use df_core::ids::{PeerId, PieceDigest, TaskId};
use df_core::piece::{Bitmap, PieceLayout};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use super::origin::error_chain;
use super::piece_io::{BodyReader, PieceError};
use crate::download::Engine;
use crate::storage::StoredTask;
use crate::upload::BitmapReply;

/// How long the parent may hold a bitmap long-poll open.
const LONG_POLL: Duration = Duration::from_secs(5);

pub enum ParentEvent {
    Bitmap {
        parent: PeerId,
        bitmap: Bitmap,
        /// The parent's uploads in progress and whether every slot is taken.
        uploads: u32,
        full: bool,
    },
    Gone {
        parent: PeerId,
        error: String,
    },
    /// A fetch of `piece` got an upload slot at `parent`, named `slot`: its response headers
    /// arrived and the bytes follow.
    Slot {
        parent: PeerId,
        piece: u32,
        slot: String,
    },
}

pub struct ParentLink {
    pub base: String,
    pub is_seed: bool,
    /// Pieces its last bitmap showed; a larger count is progress.
    pub held: u32,
    /// Tells the watcher the parent answered busy (poll for a free slot).
    busy: watch::Sender<u64>,
    watcher: AbortHandle,
}

impl Drop for ParentLink {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl ParentLink {
    pub fn spawn(
        client: reqwest::Client,
        task: TaskId,
        id: PeerId,
        base: String,
        is_seed: bool,
        events: mpsc::UnboundedSender<ParentEvent>,
    ) -> Self {
        let (busy, busy_rx) = watch::channel(0);
        let watcher = tokio::spawn(watch_parent(
            client,
            task,
            id,
            base.clone(),
            events,
            busy_rx,
        ))
        .abort_handle();
        Self {
            base,
            is_seed,
            held: 0,
            busy,
            watcher,
        }
    }

    /// The parent answered busy: the watcher's next poll waits for a free slot.
    pub fn saw_busy(&self) {
        self.busy.send_modify(|n| *n += 1);
    }
}

async fn watch_parent(
    client: reqwest::Client,
    task: TaskId,
    parent: PeerId,
    base: String,
    events: mpsc::UnboundedSender<ParentEvent>,
    mut busy: watch::Receiver<u64>,
) {
    let (mut have, mut pieces) = (0u32, 0u32);
    let mut full = false;
    let mut failures = 0;
    loop {
        let url = format!(
            "{base}/tasks/{task}/bitmap?have={have}&pieces={pieces}&wait_ms={}&full={}",
            LONG_POLL.as_millis(),
            u8::from(full)
        );
        let poll = async {
            let resp = client
                .get(&url)
                .timeout(LONG_POLL * 3)
                .send()
                .await?
                .error_for_status()?;
            resp.json::<BitmapReply>().await
        };
        // A poll in flight is not cut when the parent answers busy (cutting an HTTP/1.1
        // request costs its connection): its reply carries the parent's load anyway, and
        // the next poll asks for a free slot if the parent is still full.
        match poll.await {
            Ok(r) => {
                failures = 0;
                let Some(bitmap) = Bitmap::from_hex(r.piece_count, &r.bitmap) else {
                    let _ = events.send(ParentEvent::Gone {
                        parent,
                        error: "sent a malformed bitmap".into(),
                    });
                    return;
                };
                (have, pieces, full) = (bitmap.count(), r.piece_count, r.full);
                busy.borrow_and_update();
                let complete = r.complete;
                if events
                    .send(ParentEvent::Bitmap {
                        parent: parent.clone(),
                        bitmap,
                        uploads: r.uploads,
                        full: r.full,
                    })
                    .is_err()
                {
                    return;
                }
                // A complete parent's bitmap never changes: poll again only to learn that a
                // slot freed after it answered busy.
                if complete && !full && busy.changed().await.is_err() {
                    return;
                }
                full |= complete;
            }
            Err(e) => {
                failures += 1;
                if failures >= 2 {
                    let _ = events.send(ParentEvent::Gone {
                        parent,
                        error: error_chain(&e),
                    });
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Where one piece fetch goes: the parent, and the upload slot it queues behind (if any).
pub struct PieceRequest<'a> {
    pub base: &'a str,
    pub parent: &'a PeerId,
    /// The slot of a fetch from this parent still streaming ([`df_core::HEADER_UPLOAD_SLOT`]).
    pub behind: Option<&'a str>,
    /// Told the slot this fetch gets, so a fetch can be queued behind it.
    pub events: &'a mpsc::UnboundedSender<ParentEvent>,
}

/// Fetches piece `n` from the parent of `req` into the task file and checks it against the
/// scheduler's digest. Returns the bytes written and how long it took.
pub async fn fetch_piece(
    ctx: &Engine,
    task: &StoredTask,
    layout: PieceLayout,
    n: u32,
    req: PieceRequest<'_>,
    expected: PieceDigest,
) -> Result<(u64, Duration), PieceError> {
    let started = Instant::now();
    let Some((offset, len)) = layout.range(n) else {
        return Err(PieceError::NotFound);
    };
    let url = format!("{}/pieces/{}/{n}", req.base, task.id);
    let mut get = ctx.peers.get(&url);
    if let Some(slot) = req.behind {
        get = get.header(df_core::HEADER_UPLOAD_SLOT, slot);
    }
    let resp = get.send().await.map_err(|e| {
        if e.is_timeout() {
            PieceError::Timeout(ctx.config.piece_timeout)
        } else {
            PieceError::Unreachable(error_chain(&e))
        }
    })?;
    match resp.status().as_u16() {
        200 => {}
        404 => return Err(PieceError::NotFound),
        503 if resp.headers().contains_key(df_core::HEADER_UPLOAD_BUSY) => {
            return Err(PieceError::Busy);
        }
        s => return Err(PieceError::Status(s)),
    }
    if let Some(slot) = resp
        .headers()
        .get(df_core::HEADER_UPLOAD_SLOT)
        .and_then(|v| v.to_str().ok())
    {
        // Ignored if the download has ended (the receiver is gone).
        let _ = req.events.send(ParentEvent::Slot {
            parent: req.parent.clone(),
            piece: n,
            slot: slot.to_owned(),
        });
    }
    let mut body = BodyReader::new(resp.bytes_stream());
    let got = body
        .write_piece(
            task,
            offset,
            len,
            &ctx.download_limiter,
            ctx.config.piece_timeout,
        )
        .await?;
    if got != expected {
        return Err(PieceError::DigestMismatch { expected, got });
    }
    Ok((len, started.elapsed()))
}
