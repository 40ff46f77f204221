//! The counting test origin: an HTTP server whose objects are computed rather than stored, so
//! tests and benchmarks can ask for objects of any size (up to GiBs) without disk or memory, and
//! whose counters say how many body bytes actually left the origin, the number P2P distribution
//! exists to shrink.
//!
//! Routes:
//! - `GET|HEAD /blob/{size}/{seed}`: `size` bytes of deterministic pseudo-random content
//! - `GET|HEAD /files/{*path}`: a file under [`OriginConfig::root`] (404 without a root)
//! - `GET|HEAD /status/{code}`: answers `code` with the body `origin says {code}`
//! - `GET /_stats`: [`StatsSnapshot`] as JSON; `POST /_stats/reset`: zeroes the counters
//! - `POST /_outage?ms=M`: for the next M milliseconds every new object request (blob, file,
//!   registry path) answers 503 (counted in `refused_requests`, not `requests`); bodies already
//!   flowing are not cut, as an origin whose front end restarts behind a load balancer does.
//!
//! Invariants:
//! - Blob content is a pure function of `(size, seed, offset)`: any byte range is computed
//!   without generating its prefix, so ranged and whole responses agree byte for byte, and
//!   [`fill_blob`] / [`blob_digests`] let tests check what they received.
//! - Bodies are produced one chunk at a time as the connection drains them; no response holds
//!   more than one chunk (at most [`CHUNK_SIZE`]) in memory.
//! - The counters count body bytes handed to the connection. `/_stats` itself is never counted,
//!   and HEAD requests count in `head_requests`, not `requests`.
//! - The egress cap is one token bucket shared by all connections, so it models an origin's
//!   total uplink, not a per-client limit.
//! - Cancelling the shutdown token ends in-flight bodies at the next chunk, so a test never waits
//!   for a slow, rate-limited 1 GiB response to drain before the server stops.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Component, Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Largest body chunk the origin produces at once; it bounds the memory of one response.
pub const CHUNK_SIZE: usize = 64 * 1024;

/// How the origin behaves. `Default` is an unthrottled origin without a file root.
#[derive(Debug, Clone)]
pub struct OriginConfig {
    /// Directory served under `/files/`; `None` makes every `/files/` request a 404.
    pub root: Option<PathBuf>,
    /// Total egress cap across all connections, in body bytes per second.
    pub rate_limit_bytes_per_sec: Option<u64>,
    /// Delay before the response headers (and so before the first byte) of every object request.
    pub latency: Option<Duration>,
    /// `Content-Type` sent with blobs and files; `None` sends none, as some origins do.
    pub content_type: Option<String>,
}

impl Default for OriginConfig {
    fn default() -> Self {
        Self {
            root: None,
            rate_limit_bytes_per_sec: None,
            latency: None,
            content_type: Some("application/octet-stream".to_owned()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Content

/// Mixes the object's identity into one key, so objects of different sizes with the same seed
/// differ from their first byte: a peer serving the wrong task's bytes fails a digest check.
fn blob_key(size: u64, seed: u64) -> u64 {
    const DOMAIN: u64 = 0x6466_2d6f_7269_6769; // "df-origi"
    splitmix64(splitmix64(seed ^ DOMAIN) ^ size)
}

/// SplitMix64's output function: a fast bijective mixer, good enough for test content and
/// computable at any index, which is what makes random access to the content cheap.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The 8 content bytes starting at byte `8 * index`, little-endian.
fn content_word(key: u64, index: u64) -> [u8; 8] {
    splitmix64(key.wrapping_add(index.wrapping_mul(0x9E37_79B9_7F4A_7C15))).to_le_bytes()
}

/// Fills `buf` with the content of blob `(size, seed)` starting at `offset`.
///
/// Content is defined for every offset; callers only ever serve `offset + buf.len() <= size`.
pub fn fill_blob(size: u64, seed: u64, offset: u64, buf: &mut [u8]) {
    let key = blob_key(size, seed);
    let misalign = (offset % 8) as usize;
    let lead = ((8 - misalign) % 8).min(buf.len());
    let (head, body) = buf.split_at_mut(lead);
    if !head.is_empty() {
        let word = content_word(key, offset / 8);
        head.copy_from_slice(&word[misalign..misalign + lead]);
    }
    let mut index = (offset + lead as u64) / 8;
    let mut words = body.chunks_exact_mut(8);
    for out in &mut words {
        out.copy_from_slice(&content_word(key, index));
        index += 1;
    }
    let tail = words.into_remainder();
    if !tail.is_empty() {
        let n = tail.len();
        tail.copy_from_slice(&content_word(key, index)[..n]);
    }
}

/// `len` bytes of blob `(size, seed)` from `offset`, for tests comparing small ranges.
pub fn blob_bytes(size: u64, seed: u64, offset: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    fill_blob(size, seed, offset, &mut out);
    out
}

/// Whole-object digests of a blob, as lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobDigests {
    pub sha256: String,
    pub blake3: String,
}

impl BlobDigests {
    /// The digest as registries and `dfctl get --digest` spell it.
    pub fn oci(&self) -> String {
        format!("sha256:{}", self.sha256)
    }
}

/// Digests of blob `(size, seed)`, computed in [`CHUNK_SIZE`] steps (constant memory).
///
/// CPU-bound (about a second per GiB): call it from `spawn_blocking` in async tests.
pub fn blob_digests(size: u64, seed: u64) -> BlobDigests {
    let mut sha = sha2::Sha256::new();
    let mut b3 = blake3::Hasher::new();
    let mut buf = vec![0; CHUNK_SIZE];
    let mut offset = 0;
    while offset < size {
        let n = (size - offset).min(CHUNK_SIZE as u64) as usize;
        let chunk = &mut buf[..n];
        fill_blob(size, seed, offset, chunk);
        sha.update(&*chunk);
        b3.update(chunk);
        offset += n as u64;
    }
    BlobDigests {
        sha256: hex::encode(sha.finalize()),
        blake3: b3.finalize().to_hex().to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Ranges

/// What a `Range` header asks of an object of a known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOutcome {
    /// No usable range: answer 200 with the whole object. Multi-range and malformed headers land
    /// here too; RFC 9110 §14.2 lets a server ignore them.
    Full,
    /// Answer 206 with bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// Answer 416 with `Content-Range: bytes */total`.
    Unsatisfiable,
}

impl RangeOutcome {
    /// The `(offset, length)` of the body to send for an object of `total` bytes.
    pub fn span(self, total: u64) -> Option<(u64, u64)> {
        match self {
            Self::Full => Some((0, total)),
            Self::Partial { start, end } => Some((start, end - start + 1)),
            Self::Unsatisfiable => None,
        }
    }
}

/// Resolves a `Range` header value against an object of `total` bytes.
pub fn resolve_range(header: Option<&str>, total: u64) -> RangeOutcome {
    let Some(value) = header else {
        return RangeOutcome::Full;
    };
    let value = value.trim();
    let Some((unit, spec)) = value.split_once('=') else {
        return RangeOutcome::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeOutcome::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeOutcome::Full;
    };
    let parse = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match parse(last) {
            Some(0) => RangeOutcome::Unsatisfiable,
            Some(_) if total == 0 => RangeOutcome::Unsatisfiable,
            Some(n) => RangeOutcome::Partial {
                start: total - n.min(total),
                end: total - 1,
            },
            None => RangeOutcome::Full,
        },
        // bytes=A-: from A to the end.
        (false, true) => match parse(first) {
            Some(a) if a >= total => RangeOutcome::Unsatisfiable,
            Some(a) => RangeOutcome::Partial {
                start: a,
                end: total - 1,
            },
            None => RangeOutcome::Full,
        },
        // bytes=A-B, B clamped to the last byte.
        (false, false) => match (parse(first), parse(last)) {
            (Some(a), Some(b)) if a > b => RangeOutcome::Full,
            (Some(a), Some(_)) if a >= total => RangeOutcome::Unsatisfiable,
            (Some(a), Some(b)) => RangeOutcome::Partial {
                start: a,
                end: b.min(total - 1),
            },
            _ => RangeOutcome::Full,
        },
        (true, true) => RangeOutcome::Full,
    }
}

// ---------------------------------------------------------------------------------------------
// Counters

/// What the origin has served since start or the last reset. Shared with tests in-process.
#[derive(Debug, Default)]
pub struct OriginStats {
    bytes_served: AtomicU64,
    requests: AtomicU64,
    head_requests: AtomicU64,
    refused: AtomicU64,
    paths: Mutex<BTreeMap<String, PathCounters>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct PathCounters {
    bytes: u64,
    requests: u64,
}

/// A copy of [`OriginStats`], also the JSON body of `GET /_stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Body bytes served by GET requests to object routes.
    pub bytes_served: u64,
    /// GET requests to object routes (blobs, files, status codes).
    pub requests: u64,
    /// HEAD requests to object routes.
    pub head_requests: u64,
    /// Object requests answered 503 during an outage (`POST /_outage`).
    #[serde(default)]
    pub refused_requests: u64,
    /// Body bytes per request path (without the query).
    pub paths: BTreeMap<String, u64>,
    /// GET requests per request path.
    pub path_requests: BTreeMap<String, u64>,
}

impl OriginStats {
    pub fn bytes_served(&self) -> u64 {
        self.bytes_served.load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn head_requests(&self) -> u64 {
        self.head_requests.load(Ordering::Relaxed)
    }

    /// Body bytes served for `path`, e.g. `/blob/1048576/7`.
    pub fn path_bytes(&self, path: &str) -> u64 {
        self.lock_paths().get(path).map_or(0, |c| c.bytes)
    }

    /// GET requests for `path`.
    pub fn path_requests(&self, path: &str) -> u64 {
        self.lock_paths().get(path).map_or(0, |c| c.requests)
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let paths = self.lock_paths();
        StatsSnapshot {
            bytes_served: self.bytes_served(),
            requests: self.requests(),
            head_requests: self.head_requests(),
            refused_requests: self.refused.load(Ordering::Relaxed),
            paths: paths.iter().map(|(p, c)| (p.clone(), c.bytes)).collect(),
            path_requests: paths.iter().map(|(p, c)| (p.clone(), c.requests)).collect(),
        }
    }

    /// Zeroes every counter. Bodies still in flight go on counting from zero.
    pub fn reset(&self) {
        let mut paths = self.lock_paths();
        paths.clear();
        self.bytes_served.store(0, Ordering::Relaxed);
        self.requests.store(0, Ordering::Relaxed);
        self.refused.store(0, Ordering::Relaxed);
        self.head_requests.store(0, Ordering::Relaxed);
    }

    fn count_request(&self, method: &Method, path: &str) {
        if method == Method::HEAD {
            self.head_requests.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.lock_paths()
            .entry(path.to_owned())
            .or_default()
            .requests += 1;
    }

    fn count_bytes(&self, path: &str, n: u64) {
        self.bytes_served.fetch_add(n, Ordering::Relaxed);
        // One short lock per chunk (at most 16k per GiB) keeps the per-path view consistent with
        // `reset`, which a map of per-path atomics handed out to bodies would not be.
        self.lock_paths().entry(path.to_owned()).or_default().bytes += n;
    }

    /// A panic while the lock was held cannot leave the counters half-updated in a way that
    /// matters to a test, so a poisoned lock is used as is.
    fn lock_paths(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, PathCounters>> {
        self.paths.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// ---------------------------------------------------------------------------------------------
// Egress: rate limit, cancellation and counting for every body chunk

/// A token bucket in bytes that may go into debt: a caller takes its chunk's tokens at once and
/// sleeps until the debt is repaid, so concurrent bodies share the rate fairly in arrival order.
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    /// Idle credit is capped at 50 ms worth of rate, so a benchmark gets no free burst.
    burst: f64,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(bytes_per_sec: u64) -> Self {
        let rate = bytes_per_sec.max(1) as f64;
        let burst = (rate / 20.0).max(1.0);
        Self {
            rate,
            burst,
            state: Mutex::new(BucketState {
                tokens: burst,
                last: Instant::now(),
            }),
        }
    }

    /// Takes `n` tokens and returns how long to wait before sending them.
    fn reserve(&self, n: usize) -> Duration {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let refill = now.duration_since(s.last).as_secs_f64() * self.rate;
        s.tokens = (s.tokens + refill).min(self.burst) - n as f64;
        s.last = now;
        if s.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.tokens / self.rate)
        }
    }

    /// Chunk size that keeps each wait near 50 ms, so low rates still flow smoothly.
    fn chunk_size(&self) -> usize {
        ((self.rate / 20.0) as usize).clamp(1024, CHUNK_SIZE)
    }
}

/// Everything a handler shares.
#[derive(Debug)]
struct Origin {
    config: OriginConfig,
    stats: Arc<OriginStats>,
    bucket: Option<TokenBucket>,
    shutdown: CancellationToken,
    /// New object requests answer 503 until then (`POST /_outage`).
    outage_until: Mutex<Option<Instant>>,
}

impl Origin {
    fn chunk_size(&self) -> usize {
        self.bucket
            .as_ref()
            .map_or(CHUNK_SIZE, TokenBucket::chunk_size)
    }

    /// Inside an outage window: counts the refusal and says so.
    fn refuses(&self) -> bool {
        let until = *self
            .outage_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let refused = until.is_some_and(|t| Instant::now() < t);
        if refused {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
        }
        refused
    }

    /// Waits out the configured first-byte latency; false when shutdown came first.
    async fn first_byte_delay(&self) -> bool {
        match self.config.latency {
            Some(delay) if !delay.is_zero() => tokio::select! {
                () = tokio::time::sleep(delay) => true,
                () = self.shutdown.cancelled() => false,
            },
            _ => true,
        }
    }

    /// Lets `n` body bytes of `path` leave: waits for the rate limit, then counts them.
    async fn admit(&self, path: &str, n: usize) -> io::Result<()> {
        if self.shutdown.is_cancelled() {
            return Err(shutting_down());
        }
        if let Some(bucket) = &self.bucket {
            let wait = bucket.reserve(n);
            if !wait.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = self.shutdown.cancelled() => return Err(shutting_down()),
                }
            }
        }
        self.stats.count_bytes(path, n as u64);
        Ok(())
    }
}

fn shutting_down() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "test origin is shutting down",
    )
}

/// Where a body's bytes come from.
enum Content {
    Blob { size: u64, seed: u64 },
    File(tokio::fs::File),
}

/// One response body in progress: produces the next chunk on demand.
struct BodyCursor {
    origin: Arc<Origin>,
    path: String,
    content: Content,
    offset: u64,
    remaining: u64,
}

impl BodyCursor {
    async fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        if self.remaining == 0 {
            return None;
        }
        let n = self.remaining.min(self.origin.chunk_size() as u64) as usize;
        let result = self.produce(n).await;
        match &result {
            Ok(chunk) => {
                self.offset += chunk.len() as u64;
                self.remaining -= chunk.len() as u64;
            }
            // An error ends the body: the connection is aborted and the client sees a short read.
            Err(_) => self.remaining = 0,
        }
        Some(result)
    }

    async fn produce(&mut self, n: usize) -> io::Result<Bytes> {
        self.origin.admit(&self.path, n).await?;
        let mut buf = BytesMut::zeroed(n);
        match &mut self.content {
            Content::Blob { size, seed } => fill_blob(*size, *seed, self.offset, &mut buf),
            Content::File(file) => {
                file.read_exact(&mut buf).await.map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("{}: file shrank while served: {e}", self.path),
                    )
                })?;
            }
        }
        Ok(buf.freeze())
    }

    fn into_body(self) -> Body {
        Body::from_stream(futures_util::stream::unfold(
            self,
            |mut cursor| async move { cursor.next_chunk().await.map(|item| (item, cursor)) },
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers

fn object_headers(origin: &Origin, total: u64, outcome: RangeOutcome) -> (StatusCode, HeaderMap) {
    let mut headers = HeaderMap::new();
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(ct) = &origin.config.content_type
        && let Ok(value) = HeaderValue::from_str(ct)
    {
        headers.insert(header::CONTENT_TYPE, value);
    }
    let status = match outcome {
        RangeOutcome::Full => StatusCode::OK,
        RangeOutcome::Partial { start, end } => {
            headers.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes {start}-{end}/{total}")),
            );
            StatusCode::PARTIAL_CONTENT
        }
        RangeOutcome::Unsatisfiable => {
            headers.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{total}")),
            );
            headers.remove(header::CONTENT_TYPE);
            StatusCode::RANGE_NOT_SATISFIABLE
        }
    };
    let len = outcome.span(total).map_or(0, |(_, len)| len);
    headers.insert(header::CONTENT_LENGTH, header_value(&len.to_string()));
    (status, headers)
}

/// Header values built from digits and ASCII punctuation are always valid.
fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The common shape of blob and file responses: counting, latency, range, then the body.
async fn object_response(
    origin: Arc<Origin>,
    method: Method,
    path: String,
    request_headers: &HeaderMap,
    total: u64,
    content: Content,
) -> Response {
    if origin.refuses() {
        return (StatusCode::SERVICE_UNAVAILABLE, "origin outage\n").into_response();
    }
    origin.stats.count_request(&method, &path);
    if !origin.first_byte_delay().await {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let range = request_headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    let outcome = resolve_range(range, total);
    let (status, headers) = object_headers(&origin, total, outcome);
    let body = match outcome.span(total) {
        Some((offset, len)) if method != Method::HEAD && len > 0 => {
            let mut content = content;
            if let Content::File(file) = &mut content
                && let Err(e) = file.seek(io::SeekFrom::Start(offset)).await
            {
                return (StatusCode::INTERNAL_SERVER_ERROR, format!("{path}: {e}\n"))
                    .into_response();
            }
            BodyCursor {
                origin,
                path,
                content,
                offset,
                remaining: len,
            }
            .into_body()
        }
        _ => Body::empty(),
    };
    (status, headers, body).into_response()
}

async fn blob(
    State(origin): State<Arc<Origin>>,
    Path((size, seed)): Path<(u64, u64)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let path = format!("/blob/{size}/{seed}");
    object_response(
        origin,
        method,
        path,
        &headers,
        size,
        Content::Blob { size, seed },
    )
    .await
}

async fn file(
    State(origin): State<Arc<Origin>>,
    Path(rel): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let path = format!("/files/{rel}");
    from_root(origin, rel, path, method, headers).await
}

/// `/v2/...` served from `<root>/v2/...`: enough of a registry's read path (blobs named by
/// digest) to test a registry mirror without a registry.
async fn registry_path(
    State(origin): State<Arc<Origin>>,
    Path(rest): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let path = format!("/v2/{rest}");
    from_root(origin, format!("v2/{rest}"), path, method, headers).await
}

async fn from_root(
    origin: Arc<Origin>,
    rel: String,
    path: String,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let Some(root) = &origin.config.root else {
        origin.stats.count_request(&method, &path);
        return (StatusCode::NOT_FOUND, "origin has no file root\n").into_response();
    };
    // Only plain relative components: a request can never climb out of the root.
    let rel_path = FsPath::new(&rel);
    if rel.is_empty()
        || !rel_path
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
    {
        origin.stats.count_request(&method, &path);
        return (StatusCode::BAD_REQUEST, format!("bad file path '{rel}'\n")).into_response();
    }
    let full = root.join(rel_path);
    let opened = match tokio::fs::File::open(&full).await {
        Ok(f) => f.metadata().await.map(|m| (f, m)),
        Err(e) => Err(e),
    };
    match opened {
        Ok((f, meta)) if meta.is_file() => {
            object_response(origin, method, path, &headers, meta.len(), Content::File(f)).await
        }
        Ok(_) => {
            origin.stats.count_request(&method, &path);
            (StatusCode::NOT_FOUND, format!("{path}: not a file\n")).into_response()
        }
        Err(e) => {
            origin.stats.count_request(&method, &path);
            let status = if e.kind() == io::ErrorKind::NotFound {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::FORBIDDEN
            };
            (status, format!("{path}: {e}\n")).into_response()
        }
    }
}

async fn status(
    State(origin): State<Arc<Origin>>,
    Path(code): Path<String>,
    method: Method,
) -> Response {
    let path = format!("/status/{code}");
    origin.stats.count_request(&method, &path);
    let Some(status) = code.parse().ok().and_then(|c| StatusCode::from_u16(c).ok()) else {
        return (
            StatusCode::BAD_REQUEST,
            format!("'{code}' is not an HTTP status code\n"),
        )
            .into_response();
    };
    if !origin.first_byte_delay().await {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let body = format!("origin says {}", status.as_u16());
    if method != Method::HEAD {
        origin.stats.count_bytes(&path, body.len() as u64);
    }
    (status, body).into_response()
}

async fn stats(State(origin): State<Arc<Origin>>) -> axum::Json<StatsSnapshot> {
    axum::Json(origin.stats.snapshot())
}

async fn reset(State(origin): State<Arc<Origin>>) -> StatusCode {
    origin.stats.reset();
    StatusCode::NO_CONTENT
}

#[derive(Debug, Deserialize)]
struct OutageQuery {
    ms: u64,
}

/// Starts (or, with `ms=0`, ends) an outage of the object routes.
async fn outage(
    State(origin): State<Arc<Origin>>,
    axum::extract::Query(q): axum::extract::Query<OutageQuery>,
) -> StatusCode {
    *origin
        .outage_until
        .lock()
        .unwrap_or_else(PoisonError::into_inner) =
        Some(Instant::now() + Duration::from_millis(q.ms));
    StatusCode::NO_CONTENT
}

fn router(origin: Arc<Origin>) -> Router {
    Router::new()
        .route("/blob/{size}/{seed}", get(blob))
        .route("/files/{*path}", get(file))
        .route("/v2/{*path}", get(registry_path))
        .route("/status/{code}", get(status))
        .route("/_stats", get(stats))
        .route("/_stats/reset", post(reset))
        .route("/_outage", post(outage))
        .with_state(origin)
}

// ---------------------------------------------------------------------------------------------
// Serving

/// Serves the origin on `listener` until `shutdown` is cancelled, with counters nobody else
/// reads in-process (use `/_stats`, or [`serve_with_stats`]).
pub async fn serve(
    listener: TcpListener,
    config: OriginConfig,
    shutdown: CancellationToken,
) -> io::Result<()> {
    serve_with_stats(listener, config, Arc::default(), shutdown).await
}

/// Serves the origin on `listener`, counting into `stats`, until `shutdown` is cancelled.
pub async fn serve_with_stats(
    listener: TcpListener,
    config: OriginConfig,
    stats: Arc<OriginStats>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let origin = Arc::new(Origin {
        bucket: config
            .rate_limit_bytes_per_sec
            .filter(|&r| r > 0)
            .map(TokenBucket::new),
        config,
        stats,
        shutdown: shutdown.clone(),
        outage_until: Mutex::new(None),
    });
    axum::serve(listener, router(origin))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// Starts an origin on an ephemeral 127.0.0.1 port in the current runtime.
#[derive(Debug)]
pub struct TestOrigin;

impl TestOrigin {
    /// Binds 127.0.0.1:0 and spawns the server; cancel the returned token to stop it.
    pub async fn start(
        config: OriginConfig,
    ) -> io::Result<(SocketAddr, Arc<OriginStats>, CancellationToken)> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(OriginStats::default());
        let shutdown = CancellationToken::new();
        let task = serve_with_stats(listener, config, stats.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = task.await {
                tracing::warn!(%addr, error = %e, "test origin stopped with an error");
            }
        });
        Ok((addr, stats, shutdown))
    }
}

/// A running origin that stops when dropped, so a failing test never leaks a server.
#[derive(Debug)]
pub struct OriginHandle {
    pub addr: SocketAddr,
    pub stats: Arc<OriginStats>,
    pub shutdown: CancellationToken,
}

impl OriginHandle {
    pub async fn start(config: OriginConfig) -> io::Result<Self> {
        let (addr, stats, shutdown) = TestOrigin::start(config).await?;
        Ok(Self {
            addr,
            stats,
            shutdown,
        })
    }

    /// `http://ADDR{path}`; `path` starts with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn blob_url(&self, size: u64, seed: u64) -> String {
        self.url(&format!("/blob/{size}/{seed}"))
    }
}

impl Drop for OriginHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_per_rfc_9110() {
        use RangeOutcome::*;
        let r = |h: &str, total| resolve_range(Some(h), total);
        assert_eq!(resolve_range(None, 10), Full);
        assert_eq!(r("bytes=0-4", 10), Partial { start: 0, end: 4 });
        assert_eq!(r("bytes=5-", 10), Partial { start: 5, end: 9 });
        assert_eq!(r("bytes=-3", 10), Partial { start: 7, end: 9 });
        assert_eq!(r("bytes=-30", 10), Partial { start: 0, end: 9 });
        assert_eq!(r("bytes=8-100", 10), Partial { start: 8, end: 9 });
        assert_eq!(r("BYTES = 1-1", 10), Partial { start: 1, end: 1 });
        assert_eq!(r("bytes=10-", 10), Unsatisfiable);
        assert_eq!(r("bytes=10-20", 10), Unsatisfiable);
        assert_eq!(r("bytes=-0", 10), Unsatisfiable);
        assert_eq!(r("bytes=0-", 0), Unsatisfiable);
        assert_eq!(r("bytes=-5", 0), Unsatisfiable);
        // Ignored, so the whole object is sent.
        assert_eq!(r("bytes=5-1", 10), Full);
        assert_eq!(r("bytes=0-1,3-4", 10), Full);
        assert_eq!(r("items=0-1", 10), Full);
        assert_eq!(r("bytes=a-b", 10), Full);
        assert_eq!(r("bytes=-", 10), Full);
        assert_eq!(r("bytes=+1-2", 10), Full);
    }

    #[test]
    fn spans_match_outcomes() {
        assert_eq!(RangeOutcome::Full.span(10), Some((0, 10)));
        assert_eq!(
            RangeOutcome::Partial { start: 3, end: 3 }.span(10),
            Some((3, 1))
        );
        assert_eq!(RangeOutcome::Unsatisfiable.span(10), None);
    }

    #[test]
    fn any_range_of_a_blob_equals_the_same_slice_of_the_whole() {
        let size = 1000;
        let whole = blob_bytes(size, 7, 0, size as usize);
        for (offset, len) in [(0, 1), (1, 7), (3, 16), (7, 9), (8, 8), (13, 500), (999, 1)] {
            let part = blob_bytes(size, 7, offset, len);
            assert_eq!(
                part,
                whole[offset as usize..offset as usize + len],
                "at {offset}+{len}"
            );
        }
    }

    #[test]
    fn two_ranges_concatenated_equal_the_whole() {
        let size = 3 * CHUNK_SIZE as u64 + 5;
        let whole = blob_bytes(size, 42, 0, size as usize);
        for split in [0, 1, 8, 4093, CHUNK_SIZE as u64, size - 1, size] {
            let (a, b) = (
                RangeOutcome::Partial {
                    start: 0,
                    end: split.saturating_sub(1),
                },
                resolve_range(Some(&format!("bytes={split}-")), size),
            );
            let mut joined = Vec::new();
            if split > 0 {
                let (off, len) = a.span(size).unwrap_or_default();
                joined.extend(blob_bytes(size, 42, off, len as usize));
            }
            if let Some((off, len)) = b.span(size) {
                joined.extend(blob_bytes(size, 42, off, len as usize));
            }
            assert_eq!(joined.len(), whole.len(), "split at {split}");
            assert!(joined == whole, "split at {split}");
        }
    }

    #[test]
    fn blobs_differ_by_size_and_seed_and_digests_are_stable() {
        assert_ne!(blob_bytes(100, 1, 0, 16), blob_bytes(100, 2, 0, 16));
        assert_ne!(blob_bytes(100, 1, 0, 16), blob_bytes(101, 1, 0, 16));
        let d = blob_digests(3 * CHUNK_SIZE as u64 + 1, 9);
        let whole = blob_bytes(3 * CHUNK_SIZE as u64 + 1, 9, 0, 3 * CHUNK_SIZE + 1);
        assert_eq!(d.sha256, hex::encode(sha2::Sha256::digest(&whole)));
        assert_eq!(d.blake3, blake3::hash(&whole).to_hex().to_string());
        assert_eq!(d.oci(), format!("sha256:{}", d.sha256));
    }

    #[test]
    fn token_bucket_charges_debt_at_the_configured_rate() {
        let bucket = TokenBucket::new(1000);
        // The first 50 bytes are the idle credit; the next 100 cost 0.1 s.
        assert_eq!(bucket.reserve(50), Duration::ZERO);
        let wait = bucket.reserve(100);
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        assert_eq!(bucket.chunk_size(), 1024);
        assert_eq!(TokenBucket::new(u64::MAX).chunk_size(), CHUNK_SIZE);
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client builds")
    }

    #[tokio::test]
    async fn an_outage_refuses_object_requests_until_it_ends() {
        let origin = OriginHandle::start(OriginConfig::default())
            .await
            .expect("origin starts");
        let http = client();
        let url = origin.blob_url(1000, 1);
        let start = http
            .post(origin.url("/_outage?ms=60000"))
            .send()
            .await
            .expect("outage");
        assert_eq!(start.status(), 204);
        let refused = http.get(&url).send().await.expect("get");
        assert_eq!(refused.status(), 503);
        http.post(origin.url("/_outage?ms=0"))
            .send()
            .await
            .expect("end outage");
        let served = http.get(&url).send().await.expect("get");
        assert_eq!(served.status(), 200);
        let stats: StatsSnapshot = http
            .get(origin.url("/_stats"))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats json");
        assert_eq!((stats.refused_requests, stats.requests), (1, 1));
    }

    #[tokio::test]
    async fn serves_whole_ranged_and_head_requests_and_counts_bytes() {
        let origin = OriginHandle::start(OriginConfig::default())
            .await
            .expect("origin starts");
        let size = 2 * CHUNK_SIZE as u64 + 123;
        let url = origin.blob_url(size, 5);
        let http = client();

        let whole = http.get(&url).send().await.expect("get");
        assert_eq!(whole.status(), 200);
        assert_eq!(whole.headers()["accept-ranges"], "bytes");
        assert_eq!(whole.headers()["content-type"], "application/octet-stream");
        assert_eq!(whole.content_length(), Some(size));
        let body = whole.bytes().await.expect("body");
        assert!(body == blob_bytes(size, 5, 0, size as usize));

        let part = http
            .get(&url)
            .header("range", "bytes=100-199")
            .send()
            .await
            .expect("ranged get");
        assert_eq!(part.status(), 206);
        assert_eq!(
            part.headers()["content-range"],
            format!("bytes 100-199/{size}")
        );
        assert_eq!(
            part.bytes().await.expect("body"),
            blob_bytes(size, 5, 100, 100)
        );

        let bad = http
            .get(&url)
            .header("range", format!("bytes={size}-"))
            .send()
            .await
            .expect("unsatisfiable get");
        assert_eq!(bad.status(), 416);
        assert_eq!(bad.headers()["content-range"], format!("bytes */{size}"));

        let head = http.head(&url).send().await.expect("head");
        assert_eq!(head.status(), 200);
        assert_eq!(head.headers()["content-length"], size.to_string());

        let path = format!("/blob/{size}/5");
        assert_eq!(origin.stats.bytes_served(), size + 100);
        assert_eq!(origin.stats.path_bytes(&path), size + 100);
        assert_eq!(origin.stats.requests(), 3);
        assert_eq!(origin.stats.path_requests(&path), 3);
        assert_eq!(origin.stats.head_requests(), 1);

        let snap: StatsSnapshot = http
            .get(origin.url("/_stats"))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats json");
        assert_eq!(snap, origin.stats.snapshot());
        let reset = http
            .post(origin.url("/_stats/reset"))
            .send()
            .await
            .expect("reset");
        assert!(reset.status().is_success());
        assert_eq!(origin.stats.snapshot(), StatsSnapshot::default());
    }

    #[tokio::test]
    async fn status_route_answers_the_code_asked_for() {
        let origin = OriginHandle::start(OriginConfig::default())
            .await
            .expect("origin starts");
        let resp = client()
            .get(origin.url("/status/503"))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.text().await.expect("body"), "origin says 503");
        let resp = client()
            .get(origin.url("/status/nope"))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 400);
    }

    #[tokio::test]
    async fn files_are_served_from_the_root_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        tokio::fs::create_dir(dir.path().join("sub"))
            .await
            .expect("mkdir");
        tokio::fs::write(dir.path().join("sub/a.txt"), b"hello world")
            .await
            .expect("write");
        let origin = OriginHandle::start(OriginConfig {
            root: Some(dir.path().to_owned()),
            ..OriginConfig::default()
        })
        .await
        .expect("origin starts");
        let http = client();
        let resp = http
            .get(origin.url("/files/sub/a.txt"))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.expect("body"), "hello world");
        let resp = http
            .get(origin.url("/files/sub/a.txt"))
            .header("range", "bytes=-5")
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 206);
        assert_eq!(resp.text().await.expect("body"), "world");
        let resp = http
            .get(origin.url("/files/missing"))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 404);
        let resp = http
            .get(origin.url("/files/sub/%2E%2E/%2E%2E/etc/passwd"))
            .send()
            .await;
        assert_ne!(resp.expect("get").status(), 200);
        assert_eq!(origin.stats.path_bytes("/files/sub/a.txt"), 16);
    }

    #[tokio::test]
    async fn egress_cap_is_shared_across_connections() {
        let origin = OriginHandle::start(OriginConfig {
            rate_limit_bytes_per_sec: Some(200_000),
            ..OriginConfig::default()
        })
        .await
        .expect("origin starts");
        let http = client();
        let started = std::time::Instant::now();
        // Two concurrent 50 kB bodies at 200 kB/s total take at least ~0.45 s together.
        let (a, b) = tokio::join!(
            http.get(origin.blob_url(50_000, 1)).send(),
            http.get(origin.blob_url(50_000, 2)).send()
        );
        let (a, b) = (a.expect("get a"), b.expect("get b"));
        let (a, b) = tokio::join!(a.bytes(), b.bytes());
        assert_eq!(a.expect("body a").len() + b.expect("body b").len(), 100_000);
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(400), "{took:?}");
    }

    #[tokio::test]
    async fn shutdown_ends_a_slow_body() {
        let origin = OriginHandle::start(OriginConfig {
            rate_limit_bytes_per_sec: Some(10_000),
            ..OriginConfig::default()
        })
        .await
        .expect("origin starts");
        let resp = client()
            .get(origin.blob_url(1 << 30, 1))
            .send()
            .await
            .expect("get");
        origin.shutdown.cancel();
        let body = tokio::time::timeout(Duration::from_secs(5), resp.bytes()).await;
        assert!(body.expect("ends promptly").is_err(), "body is cut short");
    }
}
