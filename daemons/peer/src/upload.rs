//! The piece server other peers download from (HTTP/1.1, keep-alive):
//!
//! - `GET /pieces/<task id>/<piece number>`: the piece's bytes, only if this peer holds it;
//!   `503` with [`df_core::HEADER_UPLOAD_BUSY`] when every upload slot of the task
//!   (`upload.slots`) is taken (the rules are `crate::admission`). The response names its slot
//!   ([`df_core::HEADER_UPLOAD_SLOT`]); a request naming a slot still sending waits (at most
//!   [`QUEUE_WAIT`], one per slot) and takes that slot over when its piece ends;
//! - `GET /tasks/<task id>/bitmap?stream=1`: the feed of the piece bitmap and this daemon's
//!   upload load, one line per change for as long as the child downloads
//!   ([`crate::bitmap_feed`]);
//! - `GET /tasks/<task id>/bitmap?have=N&pieces=P&wait_ms=W[&full=1]` (daemons before the
//!   feed): the same as one reply, held open up to W ms until this peer holds more than N
//!   pieces or learns a layout other than P pieces (so children follow a parent that is itself
//!   still downloading), or, with `full=1` (the child was told busy), until a slot is free.
//!
//! No part of a request path reaches the filesystem: the task id must parse as a task id and be
//! a task this peer knows, the piece number must parse and be held. Uploads are throttled by a
//! daemon-wide and a per-connection rate limit.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use df_core::ids::{PeerId, TaskId};
use futures_util::StreamExt as _;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::admission::{self, Answer, Follows};
use crate::bitmap_feed::{self, Feed, Shown};
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::send_queue::SendQueue;
use crate::storage::{PieceStore, StoredTask};
use df_core::serve::{ConnectionLimit, DrainsItself, Stopping};
use df_core::tls::ClusterAcceptor;

/// What the piece server needs: the cache it reads, its limits, and the counters it moves.
pub(crate) struct Uploads {
    pub(crate) store: Arc<PieceStore>,
    /// A seed sends each piece once while it has unsent ones ([`crate::superseed`]).
    pub(crate) seed: bool,
    /// Uploads each task sends at once (`upload.slots`); more are answered busy.
    pub(crate) slots: u32,
    /// Connection cap and header timeout. Each connection sends one piece at a time, so the
    /// cap also bounds uploads across all tasks.
    pub(crate) limits: df_core::serve::ServerLimits,
    /// Bytes per second per connection; 0 is unlimited.
    pub(crate) per_connection_rate: u64,
    /// The daemon-wide upload limit.
    pub(crate) limiter: RateLimiter,
    pub(crate) counters: Arc<UploadCounters>,
    pub(crate) metrics: Arc<Metrics>,
}

/// Upload activity: moved by the piece server, read by heartbeats and the status API.
#[derive(Debug, Default)]
pub(crate) struct UploadCounters {
    active: AtomicU32,
    bytes: AtomicU64,
}

impl UploadCounters {
    /// Piece bodies being sent right now.
    pub(crate) fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    /// Bytes sent to other peers since start.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// Bytes read from the task file and handed to the connection at once; small, so a slot
/// tracks what has left rather than what was queued (with [`WRITE_BUFFER`], [`UNSENT_LOWAT`]).
const READ_CHUNK: u64 = 64 * 1024;
/// hyper's buffer per upload connection (its floor is 8 KiB; request headers fit easily).
const WRITE_BUFFER: usize = 64 * 1024;
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Unsent bytes an upload connection may hold in the kernel (`TCP_NOTSENT_LOWAT`): a body
/// write waits while more are queued, so the body ends at most this much (plus what is in
/// flight) before its piece has left; the slot then waits for delivery
/// ([`Delivery::release`]).
const UNSENT_LOWAT: u32 = 64 * 1024;
/// How long a request queued behind a slot waits for the slot's current piece to end before it
/// is answered busy. A piece normally ends well within this (256 KiB at a third of 4 MiB/s is
/// 0.2 s, 4 MiB at a third of 16 MiB/s 0.75 s); only a stalled transfer makes it wait this long,
/// and then the child is better told busy and asks elsewhere.
const QUEUE_WAIT: Duration = df_core::PEER_WAIT;

/// One task's upload slots still sending, by token, each with the request (if any) waiting to
/// take it over. At most one entry per slot taken (`TaskState::uploads`), so bounded by
/// `upload.slots`. Beside them, the starved child a queued request gives way to
/// ([`admission::Starved`]).
#[derive(Default)]
pub struct SlotTable(
    HashMap<u128, Option<oneshot::Sender<ActiveUpload>>>,
    admission::Starved,
);

impl std::fmt::Debug for SlotTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queued = self.0.values().filter(|w| w.is_some()).count();
        write!(f, "{} slots sending, {queued} queued", self.0.len())
    }
}

impl SlotTable {
    /// What the slot `token` names is doing, for [`admission::answer`].
    fn follows(&self, token: Option<u128>) -> Follows {
        match token.and_then(|t| self.0.get(&t)) {
            None => Follows::Nothing,
            Some(Some(waiter)) if !waiter.is_closed() => Follows::SlotQueued,
            Some(_) => Follows::Slot,
        }
    }
}

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

fn full(bytes: Bytes) -> Body {
    BodyExt::boxed_unsync(Full::new(bytes).map_err(|never: Infallible| match never {}))
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from(msg.into())));
    *resp.status_mut() = status;
    resp
}

/// Serves uploads on `listener` until told to stop; a piece being sent when it is told is
/// finished (bounded by `shutdown_grace`), and held-open bitmap polls answer at once. Each
/// connection first passes `tls` (the cluster identity's handshake, bounded in time).
pub(crate) async fn run(
    listener: TcpListener,
    ctx: Arc<Uploads>,
    stopping: Stopping,
    tls: ClusterAcceptor,
) {
    let stop = stopping.stop.clone();
    let stopping_for_waits = stopping.clone();
    let limits = ctx.limits;
    df_core::serve::accept_loop(
        listener,
        ConnectionLimit::new("upload", limits.max_connections),
        stopping,
        move |tcp, _| {
            // An upload slot lasts until its piece is delivered (`Delivery::release`),
            // and the body must not finish long before its bytes leave either: without
            // this the kernel takes a whole piece into the send buffer at once (it grows to
            // MiBs) and the cap on uploads at once means nothing on a real link (measured
            // under `df-bench swarm --netns`: no slot ever stayed taken). Only unsent bytes
            // are limited, not bytes in flight, so a connection's rate is not.
            if let Err(e) = socket2::SockRef::from(&tcp).set_tcp_notsent_lowat(UNSENT_LOWAT) {
                tracing::debug!(error = %e, "cannot set TCP_NOTSENT_LOWAT on an upload connection");
            }
            let ctx = ctx.clone();
            let stop = stop.clone();
            let conn = Connection {
                limiter: Arc::new(RateLimiter::new(ctx.per_connection_rate)),
                send_queue: SendQueue::of(&tcp).map(Arc::new),
                stopping: stopping_for_waits.clone(),
            };
            let service = hyper::service::service_fn({
                let stop = stop.clone();
                move |req| {
                    let ctx = ctx.clone();
                    let conn = conn.clone();
                    let stop = stop.clone();
                    async move { Ok::<_, Infallible>(route(ctx, conn, &stop, req).await) }
                }
            });
            let tls = tls.clone();
            DrainsItself::new(async move {
                let stream = tls.accept(tcp).await.map_err(ConnectionError::Tls)?.stream;
                // Few buffered bytes above the socket too, for the same reason as
                // UNSENT_LOWAT: hyper would otherwise queue a whole piece (up to ~400 KiB).
                let connection = df_core::serve::http1(limits.header_read_timeout)
                    .max_buf_size(WRITE_BUFFER)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                df_core::serve::drained(connection, &stop)
                    .await
                    .map_err(ConnectionError::Http)
            })
        },
    )
    .await;
}

/// Why an upload connection ended early.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error(transparent)]
    Tls(df_core::tls::AcceptError),
    #[error(transparent)]
    Http(hyper::Error),
}

/// What one upload connection's requests share.
#[derive(Clone)]
struct Connection {
    /// `upload.per_connection_rate`.
    limiter: Arc<RateLimiter>,
    /// Read once hyper has a piece's last chunk: its slot ends when the child has it.
    send_queue: Option<Arc<SendQueue>>,
    /// Tracks the waits for delivery with the connections.
    stopping: Stopping,
}

async fn route(
    ctx: Arc<Uploads>,
    conn: Connection,
    stop: &CancellationToken,
    req: Request<Incoming>,
) -> Response<Body> {
    if req.method() != http::Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["pieces", task, number] => {
            // A malformed token is no token: the request is admitted as a new one.
            let follows = req
                .headers()
                .get(df_core::HEADER_UPLOAD_SLOT)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| u128::from_str_radix(v, 16).ok());
            let asker = asker(req.headers());
            piece(&ctx, conn, task, number, (follows, asker), stop).await
        }
        ["tasks", task, "bitmap"] => bitmap(&ctx, task, &query, stop).await,
        ["healthz"] => text(StatusCode::OK, "ok"),
        _ => text(StatusCode::NOT_FOUND, "no such route\n"),
    }
}

/// Who asks, from [`df_core::HEADER_PEER`] and [`df_core::HEADER_IN_FLIGHT`]: both or neither,
/// as a count without a name cannot be told from the record's child.
fn asker(headers: &http::HeaderMap) -> Option<admission::Asker<'_>> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let in_flight = header(df_core::HEADER_IN_FLIGHT)?.parse::<u32>().ok()?;
    let peer = header(df_core::HEADER_PEER)?;
    Some(admission::Asker { peer, in_flight })
}

async fn piece(
    ctx: &Arc<Uploads>,
    conn: Connection,
    task: &str,
    number: &str,
    follows_and_asker: (Option<u128>, Option<admission::Asker<'_>>),
    stop: &CancellationToken,
) -> Response<Body> {
    let (Ok(id), Ok(n)) = (task.parse::<TaskId>(), number.parse::<u32>()) else {
        return text(StatusCode::BAD_REQUEST, "bad task id or piece number\n");
    };
    let Some(task) = ctx.store.get(&id) else {
        return text(StatusCode::NOT_FOUND, "unknown task\n");
    };
    let admission = {
        let mut st = task.state();
        admit(ctx, &task, &mut st, n, follows_and_asker)
    };
    let (admitted, promise) = match admission {
        Ok(Admission {
            admitted,
            promise,
            shown_changed,
        }) => {
            if shown_changed {
                // After the lock: the feeds it wakes read the task's state.
                task.notify();
            }
            (admitted, promise)
        }
        Err(Answer::Busy) => return busy(ctx),
        // Also a seed's answer for a piece it already sent (super-seeding): the child asks
        // another neighbour, or the seed for another piece.
        Err(_) => return text(StatusCode::NOT_FOUND, "piece not held\n"),
    };
    let (offset, len, active) = match admitted {
        Admitted::Now(offset, len, active) => (offset, len, active),
        // A promise dropped here (busy) offers the piece again.
        Admitted::Queued(offset, len, waiting) => match take_over(waiting, stop).await {
            Some(active) => (offset, len, active),
            None => return busy(ctx),
        },
    };
    let token = active.token;
    task.touch();
    let hold = task.hold();
    let ctx = ctx.clone();
    let per_conn = conn.limiter;
    // The state carries the slot so that an early end (the child went away) frees it at once,
    // and the last chunk releases it on delivery.
    let delivery = Delivery {
        slot: active,
        send_queue: conn.send_queue,
        stopping: conn.stopping,
    };
    let state = (0u64, promise, Some(delivery));
    let body = futures_util::stream::unfold(state, move |(sent, mut promise, mut delivery)| {
        let (task, ctx, per_conn) = (task.clone(), ctx.clone(), per_conn.clone());
        // Referenced so the closure owns it: the task stays unevictable until the body is
        // dropped.
        let _keep = &hold;
        async move {
            if sent >= len {
                return None;
            }
            let chunk = READ_CHUNK.min(len - sent);
            ctx.limiter.acquire(chunk as usize).await;
            per_conn.acquire(chunk as usize).await;
            match task.read_at(offset + sent, chunk as usize).await {
                Ok(bytes) => {
                    ctx.counters.bytes.fetch_add(chunk, Ordering::Relaxed);
                    ctx.metrics.uploaded(chunk);
                    task.add_uploaded(chunk);
                    if sent + chunk >= len {
                        ctx.metrics.pieces_served.inc();
                        // The last byte is handed over: with the length known, hyper may
                        // never poll the body again, so this is where the piece counts as sent.
                        if let Some(p) = promise.as_mut() {
                            p.keep();
                        }
                        if let Some(d) = delivery.take() {
                            d.release();
                        }
                    }
                    Some((Ok(Frame::data(bytes)), (sent + chunk, promise, delivery)))
                }
                Err(e) => Some((Err(std::io::Error::other(e)), (len, None, None))),
            }
        }
    });
    let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(body.boxed())));
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    if let Ok(v) = http::HeaderValue::from_str(&format!("{token:032x}")) {
        resp.headers_mut().insert(df_core::HEADER_UPLOAD_SLOT, v);
    }
    resp
}

/// A piece's upload slot and what ending it on delivery needs; moved into the body once, so
/// no chunk clones it.
struct Delivery {
    slot: ActiveUpload,
    send_queue: Option<Arc<SendQueue>>,
    stopping: Stopping,
}

impl Delivery {
    /// Ends the slot of a piece whose last chunk hyper has just taken once the child has
    /// (nearly) all of it ([`SendQueue::drained`], at most [`crate::send_queue::MAX_HOLD`]), so
    /// the slot counts an uplink busy with the piece and a request queued behind it still finds
    /// it (see `crate::send_queue`). The wait is its own task because hyper drops a body of
    /// known length after its last byte; there is at most one per slot taken, so they are
    /// bounded by `upload.slots` per task. It is tracked with the connections and dropped (the
    /// slot freed) when the grace period ends.
    fn release(self) {
        let Some(queue) = self.send_queue else {
            return;
        };
        let slot = self.slot;
        self.stopping.spawn(async move {
            queue.drained().await;
            drop(slot);
        });
    }
}

/// The first sending of a piece, promised to one child: [`admit`] marks it sent at once, so a
/// super-seeding seed offers it to no other neighbour meanwhile. Once its last byte is handed
/// over it is delivered, and no longer counts as read ahead of a helper's uplink
/// ([`crate::read_ahead`]). Unless the body ends with the
/// piece's last byte, dropping the promise takes the mark back: a child whose queued request
/// timed out, or that went away mid-piece, would otherwise keep a seed's piece from everyone
/// until super-seeding ends.
struct FirstSend {
    task: Arc<StoredTask>,
    piece: u32,
    kept: bool,
    /// The piece is back on offer: the feeds must be told (a seed's offer only).
    seed: bool,
}

impl FirstSend {
    /// The piece's last byte is handed over: the mark stays, and the piece is delivered.
    fn keep(&mut self) {
        self.kept = true;
        self.task.state().delivered.set(self.piece);
        self.task.first_delivered();
    }
}

impl Drop for FirstSend {
    fn drop(&mut self) {
        if !self.kept {
            self.task.state().sent.clear(self.piece);
            if self.seed {
                self.task.notify();
            }
        }
    }
}

fn busy(ctx: &Uploads) -> Response<Body> {
    ctx.metrics.piece("upload", "busy");
    let mut resp = text(
        StatusCode::SERVICE_UNAVAILABLE,
        "every upload slot is taken\n",
    );
    resp.headers_mut().insert(
        df_core::HEADER_UPLOAD_BUSY,
        http::HeaderValue::from_static("1"),
    );
    resp
}

/// Waits for the slot a queued request is behind; `None` (answer busy) if it is still sending
/// after [`QUEUE_WAIT`], the slot went away, or the server is stopping.
async fn take_over(
    mut waiting: oneshot::Receiver<ActiveUpload>,
    stop: &CancellationToken,
) -> Option<ActiveUpload> {
    tokio::select! {
        handed = &mut waiting => return handed.ok(),
        _ = tokio::time::sleep(QUEUE_WAIT) => {}
        _ = stop.cancelled() => {}
    }
    // Closed first so the slot cannot be handed over any more; one handed over just before
    // is taken (dropping it would free the slot, which is also fine, but it is ours to use).
    waiting.close();
    waiting.try_recv().ok()
}

/// A request [`admit`] let through: sent now on a new slot, or queued behind the slot it named.
enum Admitted {
    Now(u64, u64, ActiveUpload),
    Queued(u64, u64, oneshot::Receiver<ActiveUpload>),
}

/// What [`admit`] decided and changed.
struct Admission {
    admitted: Admitted,
    /// The piece's first sending, if this is it.
    promise: Option<FirstSend>,
    /// What neighbours are shown changed (a piece left a seed's offer, or the last free slot
    /// was taken): the caller wakes the task's feeds once the lock is released. A feed that
    /// never showed *full* could not show a slot freeing either, and a child told busy by a
    /// complete parent (whose bitmap no longer changes) would never ask it again.
    shown_changed: bool,
}

/// Whether piece `n` is sent now or after the slot `follows` names ([`crate::admission`]):
/// held, not already sent by a super-seeding seed, and one of the task's upload slots free, or
/// the named slot still sending with nobody waiting behind it. On yes the slot is taken (or the
/// request registered as its successor) and the piece is recorded as sent (so a seed offers
/// it to no other neighbour meanwhile); returns the piece's range and the slot or the wait.
fn admit(
    ctx: &Arc<Uploads>,
    task: &Arc<StoredTask>,
    st: &mut crate::storage::TaskState,
    n: u32,
    (follows, asker): (Option<u128>, Option<admission::Asker<'_>>),
) -> Result<Admission, Answer> {
    let Some((offset, len)) = st.layout.and_then(|l| l.range(n)) else {
        return Err(Answer::NotHeld);
    };
    let slots = ctx.slots;
    let now = Instant::now();
    let answer = admission::answer(admission::Request {
        held: &st.bitmap,
        seed: ctx.seed.then(|| st.superseed_record()),
        piece: n,
        uploads: st.uploads,
        slots,
        follows: st.upload_slots.follows(follows),
        asker,
        starved: st.upload_slots.1.live(now),
    });
    st.upload_slots.1.note(answer, asker, now);
    match answer {
        Answer::Busy => Err(Answer::Busy),
        Answer::Send => {
            st.uploads += 1;
            let promise = promise(ctx, task, st, n);
            // Unguessable (OS randomness), so only the child that was sent the slot's header
            // can queue behind it.
            let token = uuid::Uuid::new_v4().as_u128();
            st.upload_slots.0.insert(token, None);
            let active = ActiveUpload::start(ctx.clone(), task.clone(), token);
            Ok(Admission {
                admitted: Admitted::Now(offset, len, active),
                shown_changed: (ctx.seed && promise.is_some())
                    || admission::is_full(st.uploads, slots),
                promise,
            })
        }
        Answer::Queue => {
            let (tx, rx) = oneshot::channel();
            let slot = follows.and_then(|t| st.upload_slots.0.get_mut(&t));
            let Some(slot) = slot else {
                // Cannot happen (the answer was Queue because the slot is there).
                return Err(Answer::Busy);
            };
            *slot = Some(tx);
            let promise = promise(ctx, task, st, n);
            Ok(Admission {
                admitted: Admitted::Queued(offset, len, rx),
                shown_changed: ctx.seed && promise.is_some(),
                promise,
            })
        }
        other => Err(other),
    }
}

/// Piece `n` is recorded as sent; its first sending is a promise ([`FirstSend`]). An open
/// seed (every piece sent once) serves pieces already sent: a failed delivery of one of those
/// must not put the seed back into super-seeding, so it is no promise.
fn promise(
    ctx: &Uploads,
    task: &Arc<StoredTask>,
    st: &mut crate::storage::TaskState,
    n: u32,
) -> Option<FirstSend> {
    st.sent.set(n).then(|| FirstSend {
        task: task.clone(),
        piece: n,
        kept: false,
        seed: ctx.seed,
    })
}

/// An upload in progress, holding one of its task's `upload.slots` (named `token` in
/// [`SlotTable`]); counted daemon-wide for heartbeats and metrics. Dropped when its piece has
/// been delivered ([`Delivery::release`]), or when the body ends early: the slot then
/// passes to the request queued behind it, if any, else it is freed.
pub struct ActiveUpload {
    ctx: Arc<Uploads>,
    task: Arc<StoredTask>,
    token: u128,
}

impl ActiveUpload {
    /// Counts an upload whose slot the caller took (`TaskState::uploads`, `upload_slots`).
    fn start(ctx: Arc<Uploads>, task: Arc<StoredTask>, token: u128) -> Self {
        ctx.counters.active.fetch_add(1, Ordering::AcqRel);
        ctx.metrics.active_uploads.inc();
        Self { ctx, task, token }
    }
}

impl Drop for ActiveUpload {
    fn drop(&mut self) {
        // One lock for both outcomes, so no request can queue behind a slot being freed.
        let (waiter, was_full) = {
            let mut st = self.task.state();
            let waiter = st
                .upload_slots
                .0
                .get_mut(&self.token)
                .and_then(Option::take)
                .filter(|w| !w.is_closed());
            if waiter.is_some() {
                (waiter, false)
            } else {
                st.upload_slots.0.remove(&self.token);
                let before = st.uploads;
                st.uploads = before.saturating_sub(1);
                (None, admission::is_full(before, self.ctx.slots))
            }
        };
        if let Some(waiter) = waiter {
            // The slot, still counted, goes to the queued request. If that request gave up
            // in between, the slot comes back and dropping it frees it (outside the lock).
            let next = ActiveUpload {
                ctx: self.ctx.clone(),
                task: self.task.clone(),
                token: self.token,
            };
            drop(waiter.send(next));
            return;
        }
        self.ctx.counters.active.fetch_sub(1, Ordering::AcqRel);
        self.ctx.metrics.active_uploads.dec();
        // Neighbours told busy wait on the task's bitmap long-poll with `full=1`.
        if was_full {
            self.task.notify();
        }
    }
}

#[derive(Default)]
struct BitmapQuery {
    have: u32,
    pieces: u32,
    wait_ms: u64,
    /// The requester was told busy: a free slot is news.
    full: bool,
    /// The requester reads the feed ([`crate::bitmap_feed`]), not one reply.
    stream: bool,
    /// The requester's peer ID, for the feed ([`crate::neighbour_views`]).
    peer: Option<PeerId>,
}

async fn bitmap(
    ctx: &Arc<Uploads>,
    task: &str,
    query: &str,
    stop: &CancellationToken,
) -> Response<Body> {
    let Ok(id) = task.parse::<TaskId>() else {
        return text(StatusCode::BAD_REQUEST, "bad task id\n");
    };
    let Some(task) = ctx.store.get(&id) else {
        return text(StatusCode::NOT_FOUND, "unknown task\n");
    };
    let q: BitmapQuery = parse_bitmap_query(query);
    if q.stream {
        let feed = Feed::new(task, ctx.seed, ctx.slots, q.peer, stop.clone());
        let lines = futures_util::stream::unfold(feed, |mut feed| async move {
            let line = feed.next_line().await?;
            Some((Ok(Frame::data(line)), feed))
        });
        let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(lines)));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(bitmap_feed::FEED_CONTENT_TYPE),
        );
        return resp;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(q.wait_ms).min(MAX_WAIT);
    let mut changes = task.subscribe();
    let mut woken = false;
    let reply = loop {
        changes.borrow_and_update();
        let shown = Shown::of(&task, ctx.seed, ctx.slots);
        // A seed's shown set also shrinks, so any change is news to its neighbours.
        let news = shown.bitmap.count() > q.have
            || (q.full && !shown.full)
            || (ctx.seed && woken)
            || shown.piece_count != q.pieces
            || (shown.complete && !q.full)
            || shown.failed;
        if news {
            break shown.reply();
        }
        woken = true;
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break shown.reply() },
            _ = tokio::time::sleep_until(deadline) => break shown.reply(),
            // Shutting down: answer now, so the connection can close.
            _ = stop.cancelled() => break shown.reply(),
        }
    };
    match serde_json::to_vec(&reply) {
        Ok(body) => {
            let mut resp = text(StatusCode::OK, String::new());
            *resp.body_mut() = full(Bytes::from(body));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The longest peer ID a bitmap query may name: a host ID and a UUID fit many times.
const MAX_PEER_ID: usize = 512;

/// The bitmap query's parameters; unknown or malformed ones are ignored.
fn parse_bitmap_query(query: &str) -> BitmapQuery {
    let mut q = BitmapQuery::default();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "have" => q.have = v.parse().unwrap_or(0),
            "pieces" => q.pieces = v.parse().unwrap_or(0),
            "wait_ms" => q.wait_ms = v.parse().unwrap_or(0),
            "full" => q.full = v == "1",
            "stream" => q.stream = v == "1",
            "peer" if !v.is_empty() && v.len() <= MAX_PEER_ID => {
                q.peer = Some(PeerId::from(v.into_owned()));
            }
            _ => {}
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_piece_request_names_its_asker_only_with_both_headers() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = http::HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, http::HeaderValue::from_static(v));
            }
            h
        };
        let both = headers(&[
            (df_core::HEADER_PEER, "p-1"),
            (df_core::HEADER_IN_FLIGHT, "2"),
        ]);
        assert_eq!(
            asker(&both),
            Some(admission::Asker {
                peer: "p-1",
                in_flight: 2
            })
        );
        for partial in [
            headers(&[(df_core::HEADER_PEER, "p-1")]),
            headers(&[(df_core::HEADER_IN_FLIGHT, "2")]),
            headers(&[
                (df_core::HEADER_PEER, "p-1"),
                (df_core::HEADER_IN_FLIGHT, "many"),
            ]),
        ] {
            assert_eq!(asker(&partial), None, "{partial:?}");
        }
    }

    #[tokio::test]
    async fn a_first_sending_counts_as_delivered_only_once_its_last_byte_is_out() {
        let dir = tempfile::tempdir().expect("tmp");
        let layout = df_core::piece::PieceLayout::new(12, Some(4));
        let (_store, task) = crate::storage::scratch_task(dir.path(), layout).await;
        let sends = task.subscribe_sends();
        let first = |n: u32| {
            task.state().sent.set(n);
            FirstSend {
                task: task.clone(),
                piece: n,
                kept: false,
                seed: false,
            }
        };
        // A child that went away mid-piece: neither sent nor delivered any more.
        drop(first(0));
        // A piece whose last byte went out: both, and a helper waiting to read on is woken.
        let mut whole = first(1);
        assert!(!task.state().delivered.get(1), "not before the last byte");
        assert!(!sends.has_changed().expect("open"));
        whole.keep();
        drop(whole);
        assert!(sends.has_changed().expect("open"));
        let st = task.state();
        assert_eq!(st.sent.ones().collect::<Vec<_>>(), vec![1]);
        assert_eq!(st.delivered.ones().collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn a_childs_bitmap_query_reads_back_whole() {
        // A host ID may hold what a query must escape (an IPv6 address, a hostname).
        let child = PeerId::from("fd00::1-node a&b=c-1234".to_owned());
        let query = crate::download::parent::bitmap_query(&child, 5, 8, true);
        let q = parse_bitmap_query(&query);
        assert_eq!(q.peer, Some(child));
        assert!(q.stream && q.full);
        assert_eq!((q.have, q.pieces, q.wait_ms), (5, 8, 5000));
    }

    #[test]
    fn an_oversized_peer_id_is_not_taken() {
        let long = "p".repeat(MAX_PEER_ID + 1);
        assert_eq!(
            parse_bitmap_query(&format!("stream=1&peer={long}")).peer,
            None
        );
    }
}
