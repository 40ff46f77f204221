//! The piece server other peers download from (HTTP/1.1, keep-alive):
//!
//! - `GET /pieces/<task id>/<piece number>`: the piece's bytes, only if this peer holds it;
//! - `GET /tasks/<task id>/bitmap?have=N&pieces=P&wait_ms=W`: the piece bitmap, held open up to
//!   W ms until this peer holds more than N pieces or learns a layout other than P pieces, so
//!   children follow a parent that is itself still downloading.
//!
//! No part of a request path reaches the filesystem: the task id must parse as a task id and be
//! a task this peer knows, the piece number must parse and be held. Uploads are throttled by a
//! daemon-wide and a per-connection rate limit.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use df_core::ids::TaskId;
use futures_util::StreamExt as _;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use df_core::tls::ClusterAcceptor;

use crate::accept::ConnectionSpawner;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::storage::PieceStore;

/// What the piece server needs: the cache it reads, its limits, and the counters it moves.
pub(crate) struct Uploads {
    pub(crate) store: Arc<PieceStore>,
    /// A seed sends each piece once while it has unsent ones ([`crate::superseed`]).
    pub(crate) seed: bool,
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

const READ_CHUNK: u64 = 256 * 1024;
const MAX_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Serialize, Deserialize)]
pub struct BitmapReply {
    pub piece_count: u32,
    /// Hex of the packed bitmap.
    pub bitmap: String,
    pub complete: bool,
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

/// Serves uploads on `listener` until `shutdown`; open connections are cut at shutdown. Each
/// connection first passes `tls` (the cluster identity's handshake, bounded in time).
pub(crate) async fn run(
    listener: TcpListener,
    ctx: Arc<Uploads>,
    connections: ConnectionSpawner,
    tls: ClusterAcceptor,
) {
    crate::accept::serve(listener, "upload", connections, move |tcp| {
        let ctx = ctx.clone();
        let per_conn = Arc::new(RateLimiter::new(ctx.per_connection_rate));
        let service = hyper::service::service_fn(move |req| {
            let ctx = ctx.clone();
            let per_conn = per_conn.clone();
            async move { Ok::<_, Infallible>(route(ctx, per_conn, req).await) }
        });
        let tls = tls.clone();
        async move {
            let stream = tls.accept(tcp).await.map_err(ConnectionError::Tls)?.stream;
            hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await
                .map_err(ConnectionError::Http)
        }
    })
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

async fn route(
    ctx: Arc<Uploads>,
    per_conn: Arc<RateLimiter>,
    req: Request<Incoming>,
) -> Response<Body> {
    if req.method() != http::Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["pieces", task, number] => piece(&ctx, per_conn, task, number).await,
        ["tasks", task, "bitmap"] => bitmap(&ctx, task, &query).await,
        ["healthz"] => text(StatusCode::OK, "ok"),
        _ => text(StatusCode::NOT_FOUND, "no such route\n"),
    }
}

async fn piece(
    ctx: &Arc<Uploads>,
    per_conn: Arc<RateLimiter>,
    task: &str,
    number: &str,
) -> Response<Body> {
    let (Ok(id), Ok(n)) = (task.parse::<TaskId>(), number.parse::<u32>()) else {
        return text(StatusCode::BAD_REQUEST, "bad task id or piece number\n");
    };
    let Some(task) = ctx.store.get(&id) else {
        return text(StatusCode::NOT_FOUND, "unknown task\n");
    };
    let range = {
        let mut st = task.state();
        let layout = st.layout.filter(|_| st.bitmap.get(n));
        match layout {
            Some(l) if served_now(ctx.seed, &mut st, n) => l.range(n),
            _ => None,
        }
    };
    let Some((offset, len)) = range else {
        // Also a seed's answer for a piece it already sent (super-seeding): the child asks
        // another neighbour, or the seed for another piece.
        return text(StatusCode::NOT_FOUND, "piece not held\n");
    };
    task.touch();
    let hold = task.hold();
    let active = ActiveUpload::start(ctx.clone());
    let ctx = ctx.clone();
    let body = futures_util::stream::unfold(0u64, move |sent| {
        let (task, ctx, per_conn) = (task.clone(), ctx.clone(), per_conn.clone());
        // Referenced so the closure owns them: the task stays unevictable and the upload
        // counted until the body is dropped.
        let _keep = (&hold, &active);
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
                    }
                    Some((Ok(Frame::data(bytes)), sent + chunk))
                }
                Err(e) => Some((Err(std::io::Error::other(e)), len)),
            }
        }
    });
    let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(body.boxed())));
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    resp
}

/// Whether piece `n` (held) is sent now; a seed sends each piece once while it has unsent
/// ones ([`crate::superseed`]) and records what it sent.
fn served_now(seed: bool, st: &mut crate::storage::TaskState, n: u32) -> bool {
    if !seed {
        return true;
    }
    if st.sent.len() != st.bitmap.len() {
        st.sent = df_core::piece::Bitmap::new(st.bitmap.len());
    }
    let serves = crate::superseed::serves(&st.bitmap, &st.sent, n);
    if serves {
        st.sent.set(n);
    }
    serves
}

/// Counts an upload in progress for heartbeats and metrics while alive.
struct ActiveUpload(Arc<Uploads>);

impl ActiveUpload {
    fn start(ctx: Arc<Uploads>) -> Self {
        ctx.counters.active.fetch_add(1, Ordering::AcqRel);
        ctx.metrics.active_uploads.inc();
        Self(ctx)
    }
}

impl Drop for ActiveUpload {
    fn drop(&mut self) {
        self.0.counters.active.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.active_uploads.dec();
    }
}

#[derive(Deserialize, Default)]
struct BitmapQuery {
    #[serde(default)]
    have: u32,
    #[serde(default)]
    pieces: u32,
    #[serde(default)]
    wait_ms: u64,
}

async fn bitmap(ctx: &Arc<Uploads>, task: &str, query: &str) -> Response<Body> {
    let Ok(id) = task.parse::<TaskId>() else {
        return text(StatusCode::BAD_REQUEST, "bad task id\n");
    };
    let Some(task) = ctx.store.get(&id) else {
        return text(StatusCode::NOT_FOUND, "unknown task\n");
    };
    let q: BitmapQuery = parse_bitmap_query(query);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(q.wait_ms).min(MAX_WAIT);
    let mut changes = task.subscribe();
    let mut woken = false;
    let reply = loop {
        changes.borrow_and_update();
        let (reply, news) = {
            let st = task.state();
            let count = st.layout.map_or(0, |l| l.piece_count());
            // A seed shows what it will send (super-seeding); that set also shrinks, so any
            // change is news to its neighbours, not only a larger count.
            let (shown, any_change) = if ctx.seed {
                (crate::superseed::offer(&st.bitmap, &st.sent), woken)
            } else {
                (st.bitmap.clone(), false)
            };
            // Complete as far as a neighbour can tell only once it is shown everything: it stops
            // watching then.
            let complete = st.complete && shown.count() == st.bitmap.count();
            let news = shown.count() > q.have
                || any_change
                || count != q.pieces
                || complete
                || (!st.downloading && st.failure.is_some());
            (
                BitmapReply {
                    piece_count: count,
                    bitmap: shown.to_hex(),
                    complete,
                },
                news,
            )
        };
        if news {
            break reply;
        }
        woken = true;
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break reply },
            _ = tokio::time::sleep_until(deadline) => break reply,
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

/// The three integer parameters of the bitmap query; unknown or malformed ones are ignored.
fn parse_bitmap_query(query: &str) -> BitmapQuery {
    let mut q = BitmapQuery::default();
    for pair in query.split('&') {
        let Some((k, v)) = pair.split_once('=') else {
            continue;
        };
        match k {
            "have" => q.have = v.parse().unwrap_or(0),
            "pieces" => q.pieces = v.parse().unwrap_or(0),
            "wait_ms" => q.wait_ms = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    q
}
