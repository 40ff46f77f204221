//! A child's view of one parent: a watcher that reads the parent's bitmap feed
//! ([`crate::bitmap_feed`]) and keeps its piece bitmap and upload load current (pieces are
//! shared while still in flight, so a child follows a parent that is itself downloading), and
//! fetching one piece from it. A parent from before the feed answers the same request with one
//! long-poll reply; then the watcher polls, with `full=1` while the parent's last reply said its
//! slots were full or after it answered *busy* once it is complete (its bitmap no longer
//! changes), so the parent also answers as soon as a slot frees. Two failed tries in a row, or a
//! line no honest parent sends, and the parent is gone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use df_core::ids::{PeerId, PieceDigest};
use df_core::piece::{Bitmap, PieceLayout};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use super::origin::error_chain;
use super::piece_io::{BodyReader, PieceError};
use crate::bitmap_feed::{self, BitmapReply, FeedReader};
use crate::ratelimit::RateLimiter;
use crate::storage::StoredTask;

/// How long the parent may hold a bitmap long-poll open.
const LONG_POLL: Duration = Duration::from_secs(5);

#[derive(Debug)]
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
    /// A fetch of `piece` holds an upload slot at `parent`, named `slot`, and the last
    /// 1/`QUEUE_AT_DIVISOR` of its bytes are arriving: a fetch may be queued behind it.
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

/// Who watches which parent for which task.
pub struct Watch {
    pub client: reqwest::Client,
    pub task: Arc<StoredTask>,
    /// This download's peer ID, named to the parent so that its feed leaves out what this
    /// download holds ([`crate::neighbour_views`]).
    pub child: PeerId,
    pub parent: PeerId,
}

impl ParentLink {
    pub fn spawn(
        watch: Watch,
        base: String,
        is_seed: bool,
        events: mpsc::UnboundedSender<ParentEvent>,
    ) -> Self {
        let (busy, busy_rx) = watch::channel(0);
        let watcher =
            tokio::spawn(watch_parent(watch, base.clone(), events, busy_rx)).abort_handle();
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

/// The parent's view in the task ([`crate::neighbour_views`]), kept while it is watched.
struct Viewing<'a> {
    task: &'a StoredTask,
    parent: &'a PeerId,
}

impl Viewing<'_> {
    fn note(&self, bitmap: &Bitmap) {
        self.task.state().views.note(self.parent, bitmap);
    }
}

impl Drop for Viewing<'_> {
    fn drop(&mut self) {
        self.task.state().views.forget(self.parent);
    }
}

async fn watch_parent(
    watch: Watch,
    base: String,
    events: mpsc::UnboundedSender<ParentEvent>,
    mut busy: watch::Receiver<u64>,
) {
    let Watch {
        client,
        task,
        child,
        parent,
    } = watch;
    let viewing = Viewing {
        task: &task,
        parent: &parent,
    };
    let (mut have, mut pieces) = (0u32, 0u32);
    let mut full = false;
    let mut failures = 0;
    loop {
        // `stream=1` asks for the feed; a parent from before the feed ignores it and answers
        // the long-poll this URL also describes.
        let url = format!(
            "{base}/tasks/{}/bitmap?{}",
            task.id,
            bitmap_query(&child, have, pieces, full)
        );
        let answer = match tokio::time::timeout(LONG_POLL * 3, client.get(&url).send()).await {
            Ok(Ok(resp)) => resp.error_for_status().map_err(|e| error_chain(&e)),
            Ok(Err(e)) => Err(error_chain(&e)),
            Err(_) => Err("the bitmap request timed out".to_owned()),
        };
        let outcome = match answer {
            Ok(resp) if is_feed(&resp) => follow_feed(resp, &viewing, &events, &mut failures).await,
            Ok(resp) => match long_poll_reply(resp).await {
                Ok(r) => {
                    failures = 0;
                    let Some(bitmap) = Bitmap::from_hex(r.piece_count, &r.bitmap) else {
                        let _ = events.send(ParentEvent::Gone {
                            parent: parent.clone(),
                            error: "sent a malformed bitmap".into(),
                        });
                        return;
                    };
                    (have, pieces, full) = (bitmap.count(), r.piece_count, r.full);
                    busy.borrow_and_update();
                    viewing.note(&bitmap);
                    let complete = r.complete;
                    if !send_bitmap(&events, &parent, bitmap, r.uploads, r.full) {
                        return;
                    }
                    // A complete parent's bitmap never changes: poll again only to learn that a
                    // slot freed after it answered busy.
                    if complete && !full && busy.changed().await.is_err() {
                        return;
                    }
                    full |= complete;
                    continue;
                }
                Err(e) => Err(FeedEnd::Failed(e)),
            },
            Err(e) => Err(FeedEnd::Failed(e)),
        };
        let error = match outcome {
            // The parent stopping, or a restart: ask again.
            Ok(()) => "the parent ended its bitmap feed".to_owned(),
            Err(FeedEnd::Failed(error)) => error,
            Err(FeedEnd::Refused(error)) => {
                let _ = events.send(ParentEvent::Gone {
                    parent: parent.clone(),
                    error,
                });
                return;
            }
            Err(FeedEnd::ChildGone) => return,
        };
        failures += 1;
        if failures >= 2 {
            let _ = events.send(ParentEvent::Gone {
                parent: parent.clone(),
                error,
            });
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The bitmap request's query: the feed, for `child`, or the long-poll of a parent from
/// before the feed (`have` pieces of `pieces` seen, waiting for a free slot when `full`).
pub(crate) fn bitmap_query(child: &PeerId, have: u32, pieces: u32, full: bool) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("stream", "1")
        .append_pair("peer", child.as_str())
        .append_pair("have", &have.to_string())
        .append_pair("pieces", &pieces.to_string())
        .append_pair("wait_ms", &LONG_POLL.as_millis().to_string())
        .append_pair("full", if full { "1" } else { "0" })
        .finish()
}

/// Why watching a parent stopped for now.
enum FeedEnd {
    /// Worth one more try.
    Failed(String),
    /// The parent sent something no honest parent sends: it is dropped at once.
    Refused(String),
    /// The download ended; nobody reads the events.
    ChildGone,
}

fn is_feed(resp: &reqwest::Response) -> bool {
    resp.headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == bitmap_feed::FEED_CONTENT_TYPE.as_bytes())
}

async fn long_poll_reply(resp: reqwest::Response) -> Result<BitmapReply, String> {
    match tokio::time::timeout(LONG_POLL, resp.json::<BitmapReply>()).await {
        Ok(r) => r.map_err(|e| error_chain(&e)),
        Err(_) => Err("the bitmap reply timed out".to_owned()),
    }
}

/// Reads a parent's feed until it ends. Each line read resets `failures`: a feed that ran is
/// not a failed try.
async fn follow_feed(
    mut resp: reqwest::Response,
    viewing: &Viewing<'_>,
    events: &mpsc::UnboundedSender<ParentEvent>,
    failures: &mut u32,
) -> Result<(), FeedEnd> {
    let parent = viewing.parent;
    let mut reader = FeedReader::default();
    loop {
        let chunk = match tokio::time::timeout(bitmap_feed::HEARTBEAT * 3, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => return Err(FeedEnd::Failed(error_chain(&e))),
            Err(_) => return Err(FeedEnd::Failed("the bitmap feed went quiet".into())),
        };
        let updates = reader
            .push(&chunk)
            .map_err(|e| FeedEnd::Refused(e.to_string()))?;
        for (bitmap, update) in updates {
            *failures = 0;
            viewing.note(&bitmap);
            if !send_bitmap(events, parent, bitmap, update.uploads, update.full) {
                return Err(FeedEnd::ChildGone);
            }
        }
    }
}

/// Hands a parent's bitmap to the download; `false` once the download has ended.
fn send_bitmap(
    events: &mpsc::UnboundedSender<ParentEvent>,
    parent: &PeerId,
    bitmap: Bitmap,
    uploads: u32,
    full: bool,
) -> bool {
    events
        .send(ParentEvent::Bitmap {
            parent: parent.clone(),
            bitmap,
            uploads,
            full,
        })
        .is_ok()
}

/// Where one piece fetch goes: the parent, and the upload slot it queues behind (if any).
pub struct PieceRequest<'a> {
    pub base: &'a str,
    pub parent: &'a PeerId,
    /// The slot of a fetch from this parent still streaming ([`df_core::HEADER_UPLOAD_SLOT`]).
    pub behind: Option<&'a str>,
    /// Told the slot this fetch holds, near its end, so a fetch can be queued behind it.
    pub events: &'a mpsc::UnboundedSender<ParentEvent>,
    /// This peer's ID for the task ([`df_core::HEADER_PEER`]), made into a header value once
    /// per download, and the pieces of the task it is fetching, this one included
    /// ([`df_core::HEADER_IN_FLIGHT`]). Without the ID neither is sent.
    pub child: Option<&'a http::HeaderValue>,
    pub in_flight: u32,
}

/// A fetch's upload slot is announced (and a fetch may be queued behind it) once all but
/// 1/`QUEUE_AT_DIVISOR` of its piece has arrived, not when the slot is given.
///
/// Why late: a queued fetch commits this peer's next piece to this parent. Committed at the
/// start of a piece, it was chosen a whole piece-time before its bytes could flow, on the
/// holders of that moment: children stayed with the parents they streamed from first, and
/// neighbours that got the same pieces a little later, with idle uplinks, were never asked.
/// With 32 peers whose uploads bind, 7 of them served 34-100 pieces against a capacity of
/// about 144 (README "Pipelining without pinning").
///
/// Why not later than the last quarter (64 KiB of a 256 KiB piece): the request must reach the
/// parent before the slot ends. When the parent freed the slot at its last write, up to 64 KiB
/// (`TCP_NOTSENT_LOWAT`) before this peer read it, a request announced at the last tenth mostly
/// found the slot gone and was answered busy: 15,902 busy answers in that run, against 2,647
/// before and 2,114-2,334 at the last quarter. (The slot now lasts until the piece is
/// delivered, `crate::send_queue`, which leaves the request more time on a slow link.)
pub(crate) const QUEUE_AT_DIVISOR: u64 = 4;

/// What a piece fetch uses of the download engine.
pub(crate) struct PieceClient<'a> {
    /// The client for other peers' upload servers.
    pub http: &'a reqwest::Client,
    /// The daemon's download limit.
    pub limiter: &'a RateLimiter,
    /// `download.piece_timeout`: the longest a fetch may go without data.
    pub stall: Duration,
}

/// Fetches piece `n` from the parent of `req` into the task file and checks it against the
/// scheduler's digest. Returns the bytes written and how long it took.
pub(crate) async fn fetch_piece(
    ctx: PieceClient<'_>,
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
    let mut get = ctx.http.get(&url);
    if let Some(child) = req.child {
        get = get
            .header(df_core::HEADER_PEER, child.clone())
            .header(df_core::HEADER_IN_FLIGHT, req.in_flight);
    }
    if let Some(slot) = req.behind {
        get = get.header(df_core::HEADER_UPLOAD_SLOT, slot);
    }
    let resp = get.send().await.map_err(|e| {
        if e.is_timeout() {
            PieceError::Timeout(ctx.stall)
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
    let slot = resp
        .headers()
        .get(df_core::HEADER_UPLOAD_SLOT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mark = len - len / QUEUE_AT_DIVISOR;
    let announce = || {
        if let Some(slot) = slot {
            // Ignored if the download has ended (the receiver is gone).
            let _ = req.events.send(ParentEvent::Slot {
                parent: req.parent.clone(),
                piece: n,
                slot,
            });
        }
    };
    let mut body = BodyReader::new(resp.bytes_stream());
    let got = body
        .write_piece_marked(
            task,
            (offset, len),
            ctx.limiter,
            ctx.stall,
            (mark, announce),
        )
        .await?;
    if got != expected {
        return Err(PieceError::DigestMismatch { expected, got });
    }
    Ok((len, started.elapsed()))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::{Full, StreamBody};
    use hyper::body::Frame;

    use super::*;
    use crate::storage::scratch_task;

    /// Serves every request on a loopback port with `body` and `content_type`.
    async fn fake_parent(content_type: &'static str, body: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let service = hyper::service::service_fn(move |_req| async move {
                    let mut resp =
                        http::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                    resp.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static(content_type),
                    );
                    Ok::<_, Infallible>(resp)
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service),
                );
            }
        });
        format!("http://{addr}")
    }

    /// Watches the parent at `base` for a scratch task; the task is the second value.
    async fn watch_task(
        base: String,
    ) -> (
        mpsc::UnboundedReceiver<ParentEvent>,
        Arc<StoredTask>,
        tempfile::TempDir,
    ) {
        let (events, rx) = mpsc::unbounded_channel();
        let (_busy, busy_rx) = watch::channel(0);
        let dir = tempfile::tempdir().expect("tempdir");
        let (_store, task) = scratch_task(dir.path(), PieceLayout::new(8, Some(1))).await;
        let watch = Watch {
            client: reqwest::Client::new(),
            task: task.clone(),
            child: PeerId::from("child".to_owned()),
            parent: PeerId::from("parent".to_owned()),
        };
        tokio::spawn(watch_parent(watch, base, events, busy_rx));
        (rx, task, dir)
    }

    async fn watch(base: String) -> mpsc::UnboundedReceiver<ParentEvent> {
        let (rx, _task, dir) = watch_task(base).await;
        // The watcher outlives this helper; so does the task's directory.
        std::mem::forget(dir);
        rx
    }

    #[tokio::test]
    async fn a_parent_from_before_the_feed_is_long_polled() {
        let base = fake_parent(
            "application/json",
            r#"{"piece_count":8,"bitmap":"05","complete":true,"uploads":1,"full":false}"#,
        )
        .await;
        let mut events = watch(base).await;
        match events.recv().await {
            Some(ParentEvent::Bitmap {
                bitmap, uploads, ..
            }) => {
                assert_eq!(
                    (bitmap.ones().collect::<Vec<_>>(), uploads),
                    (vec![0, 2], 1)
                );
            }
            _ => panic!("expected the parent's bitmap"),
        }
    }

    #[tokio::test]
    async fn a_feed_is_followed_line_by_line() {
        let base = fake_parent(
            bitmap_feed::FEED_CONTENT_TYPE,
            "{\"piece_count\":8,\"bitmap\":\"01\",\"complete\":false,\"uploads\":0,\"full\":false}\n\n\
             {\"piece_count\":8,\"added\":[3],\"complete\":false,\"uploads\":2,\"full\":true}\n",
        )
        .await;
        let (mut events, task, _dir) = watch_task(base).await;
        let mut seen = Vec::new();
        while seen.len() < 2 {
            match events.recv().await {
                Some(ParentEvent::Bitmap { bitmap, full, .. }) => {
                    seen.push((bitmap.ones().collect::<Vec<_>>(), full));
                }
                _ => panic!("expected the parent's bitmaps"),
            }
        }
        assert_eq!(seen, [(vec![0], false), (vec![0, 3], true)]);
        // What the parent showed is its view in the task, for the feed served back to it.
        let parent = PeerId::from("parent".to_owned());
        let view: Vec<bool> = (0..8)
            .map(|n| task.state().views.holds(&parent, n))
            .collect();
        assert_eq!(view, [true, false, false, true, false, false, false, false]);
    }

    #[tokio::test]
    async fn a_parent_lying_in_its_feed_is_gone_at_once() {
        let base = fake_parent(
            bitmap_feed::FEED_CONTENT_TYPE,
            "{\"piece_count\":8,\"added\":[9],\"complete\":false,\"uploads\":0,\"full\":false}\n",
        )
        .await;
        let mut events = watch(base).await;
        match events.recv().await {
            Some(ParentEvent::Gone { error, .. }) => {
                assert!(error.contains("before a whole bitmap"), "{error}");
            }
            _ => panic!("expected the parent to be gone"),
        }
    }

    /// A parent that answers one piece request with a slot header and sends the body's
    /// chunks as the test hands them over; the request's headers go to `asked`.
    async fn parent_sending(
        chunks: mpsc::UnboundedReceiver<Bytes>,
        len: u64,
        asked: mpsc::UnboundedSender<http::HeaderMap>,
    ) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let chunks = std::sync::Mutex::new(Some(chunks));
            let service = hyper::service::service_fn(move |req: http::Request<_>| {
                let _ = asked.send(req.headers().clone());
                let rx = chunks.lock().expect("lock").take().expect("one request");
                async move {
                    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
                        let chunk = rx.recv().await?;
                        Some((Ok::<_, Infallible>(Frame::data(chunk)), rx))
                    });
                    let mut resp = http::Response::new(StreamBody::new(frames));
                    let headers = resp.headers_mut();
                    headers.insert(http::header::CONTENT_LENGTH, len.into());
                    headers.insert(
                        df_core::HEADER_UPLOAD_SLOT,
                        http::HeaderValue::from_static("slot-1"),
                    );
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await;
        });
        format!("http://{addr}")
    }

    async fn next_within(
        rx: &mut mpsc::UnboundedReceiver<ParentEvent>,
    ) -> Result<Option<ParentEvent>, tokio::time::error::Elapsed> {
        tokio::time::timeout(Duration::from_millis(300), rx.recv()).await
    }

    #[tokio::test]
    async fn the_slot_is_announced_once_the_last_quarter_of_the_piece_arrives() {
        let dir = tempfile::tempdir().expect("tmp");
        let (_store, task) = scratch_task(dir.path(), PieceLayout::new(64, Some(64))).await;
        let whole: Vec<u8> = (0u8..64).collect();
        let (chunks, rx) = mpsc::unbounded_channel();
        let (asked, mut request_headers) = mpsc::unbounded_channel();
        let base = parent_sending(rx, 64, asked).await;
        let (events, mut announced) = mpsc::unbounded_channel();
        let fetch = tokio::spawn({
            let task = task.clone();
            async move {
                let http = reqwest::Client::new();
                let limiter = RateLimiter::new(0);
                let client = PieceClient {
                    http: &http,
                    limiter: &limiter,
                    stall: Duration::from_secs(10),
                };
                let req = PieceRequest {
                    base: &base,
                    parent: &PeerId::from("parent".to_owned()),
                    behind: None,
                    events: &events,
                    child: Some(&http::HeaderValue::from_static("child")),
                    in_flight: 2,
                };
                let layout = PieceLayout::new(64, Some(64));
                fetch_piece(client, &task, layout, 0, req, PieceDigest::of(&whole)).await
            }
        });
        let send = |from: usize, to: usize| {
            chunks
                .send(Bytes::from((from as u8..to as u8).collect::<Vec<u8>>()))
                .expect("parent alive");
        };
        // Headers and half the piece: no announcement yet.
        send(0, 32);
        assert!(
            next_within(&mut announced).await.is_err(),
            "announced before the last quarter"
        );
        // Three quarters: the slot is announced, before the rest is sent.
        send(32, 48);
        let event = next_within(&mut announced)
            .await
            .expect("announced at three quarters");
        assert!(
            matches!(&event, Some(ParentEvent::Slot { piece: 0, slot, .. }) if slot == "slot-1"),
            "{event:?}"
        );
        send(48, 64);
        let (len, _) = fetch.await.expect("join").expect("the piece");
        assert_eq!(len, 64);
        assert!(announced.try_recv().is_err(), "announced once");
        // The request named its child and its fetches in flight, which the parent's
        // starved-child rule reads (`crate::admission`).
        let headers = request_headers.try_recv().expect("the request's headers");
        assert_eq!(
            headers.get(df_core::HEADER_PEER).map(|v| v.as_bytes()),
            Some(&b"child"[..])
        );
        assert_eq!(
            headers.get(df_core::HEADER_IN_FLIGHT).map(|v| v.as_bytes()),
            Some(&b"2"[..])
        );
    }
}
