//! Downloads: [`TaskManager`] starts at most one [`conductor::Conductor`] per task on this peer
//! and turns a client's request into a [`Delivery`]: bytes streamed from the cache as pieces
//! land (the client does not wait for the whole object), the origin's own refusal, or, when the
//! object cannot be cached here, a straight pass-through from the origin. Every client-facing
//! server (admin download API, proxy, mirror) goes through [`TaskManager::deliver`].

mod busy_retry;
pub(crate) mod conductor;
mod link;
pub(crate) mod origin;
mod p2p;
pub(crate) mod parent;
pub mod picker;
pub(crate) mod piece_io;
pub(crate) mod reader;

use std::sync::Arc;

use bytes::Bytes;
use df_core::api::ByteSource;
use df_core::ids::{ObjectDigest, PeerId, TaskId, TaskIdParams, validate_http_url};
use futures_util::stream::BoxStream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::announcer::SchedulerClient;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::storage::{PieceStore, StoredTask, TaskFailure};
use crate::switch::P2pSwitch;
use origin::OriginClients;

/// What the download engine (conductors, parent links, piece fetches) works with: the cache,
/// the schedulers, the origin and peer clients, the download limit. One per daemon; servers
/// never see it, they go through [`TaskManager`].
pub(crate) struct Engine {
    pub(crate) config: crate::Config,
    pub(crate) host_info: df_proto::scheduler::v1::HostInfo,
    pub(crate) store: Arc<PieceStore>,
    pub(crate) schedulers: Arc<SchedulerClient>,
    pub(crate) origin: Arc<OriginClients>,
    /// Client for other peers' upload servers.
    pub(crate) peers: reqwest::Client,
    pub(crate) download_limiter: RateLimiter,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) p2p: Arc<P2pSwitch>,
}

/// What a client asked for.
#[derive(Debug, Clone, Default)]
pub struct DownloadRequest {
    pub url: String,
    /// Forwarded to the origin when this peer fetches from it (hop-by-hop ones are dropped).
    pub headers: Vec<(String, String)>,
    pub piece_length: Option<u64>,
    /// Whole-object digest; taken from a registry blob URL when not given.
    pub digest: Option<ObjectDigest>,
    /// This download answers a scheduler's seed request.
    pub seed: bool,
    /// Set for seed requests, which name the task; otherwise derived from the URL.
    pub task_id: Option<TaskId>,
    /// Another host reads the origin for this task (a preheat job gave it the credentials):
    /// the scheduler has this download wait for it.
    pub awaits_fetcher: bool,
}

/// Parses a single-range `Range` header value (`bytes=a-b`, `bytes=a-`, `bytes=-n`) against an
/// object of `total` bytes into `start..end` (end exclusive); `None` when unsatisfiable.
pub fn parse_range(value: &str, total: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (total.saturating_sub(n), total)
        }
        (a, "") => (a.parse().ok()?, total),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.saturating_add(1).min(total),
        ),
    };
    (start < end && start < total).then_some((start, end))
}

/// Body type of every response a client-facing server of the peer sends.
pub type ResponseBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// The response a client gets.
pub struct Delivery {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: BoxStream<'static, std::io::Result<Bytes>>,
    pub task_id: Option<TaskId>,
    pub source: ByteSource,
}

impl Delivery {
    /// As an HTTP response, with the task and source headers that tell an operator whether
    /// the bytes came through P2P.
    pub fn into_response(self) -> http::Response<ResponseBody> {
        use http_body_util::BodyExt as _;
        let mut builder = http::Response::builder().status(self.status);
        for (k, v) in &self.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        if let Some(id) = &self.task_id {
            builder = builder.header(df_core::HEADER_TASK_ID, id.as_str());
        }
        builder = builder.header(df_core::HEADER_SOURCE, self.source.as_str());
        let body = http_body_util::StreamBody::new(self.body.map_ok(hyper::body::Frame::data))
            .boxed_unsync();
        builder.body(body).unwrap_or_else(|e| {
            let mut resp = http::Response::new(
                http_body_util::Full::new(Bytes::from(format!("bad response header: {e}\n")))
                    .map_err(|never: std::convert::Infallible| match never {})
                    .boxed_unsync(),
            );
            *resp.status_mut() = http::StatusCode::BAD_GATEWAY;
            resp
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Upstream(String),
    /// The destination is not allowed (`proxy.allow_private_destinations`, ports).
    #[error("{0}")]
    Forbidden(String),
}

pub struct TaskManager {
    ctx: Arc<Engine>,
    /// Downloads run here, so shutdown waits for them (within its bound).
    tracker: TaskTracker,
}

impl TaskManager {
    pub(crate) fn new(ctx: Arc<Engine>, tracker: TaskTracker) -> Self {
        Self { ctx, tracker }
    }

    /// The cache the downloads fill.
    pub(crate) fn store(&self) -> &Arc<PieceStore> {
        &self.ctx.store
    }

    /// The links to the schedulers (preheat reports go back on them).
    pub(crate) fn schedulers(&self) -> &Arc<SchedulerClient> {
        &self.ctx.schedulers
    }

    /// The request's task: the ID its URL gives. An ID the request names (a scheduler's seed
    /// or preheat command) must be that one: what this peer stores under an ID is what other
    /// peers verify against, so a command pairing a popular ID with another URL is refused.
    pub fn task_id(req: &DownloadRequest) -> Result<TaskId, DeliveryError> {
        let id = TaskId::from_url(
            &req.url,
            &TaskIdParams {
                piece_length: req.piece_length,
                ..TaskIdParams::default()
            },
        )
        .map_err(|e| DeliveryError::BadRequest(e.to_string()))?;
        match &req.task_id {
            Some(named) if *named != id => Err(DeliveryError::BadRequest(format!(
                "task ID {named} is not the one {} gives ({id})",
                req.url
            ))),
            _ => Ok(id),
        }
    }

    /// Makes sure a download of the task runs (or has finished) on this peer.
    pub fn start(&self, mut req: DownloadRequest) -> Result<Arc<StoredTask>, DeliveryError> {
        validate_http_url(&req.url).map_err(|e| DeliveryError::BadRequest(e.to_string()))?;
        self.ctx
            .origin
            .check(&req.url)
            .map_err(DeliveryError::Forbidden)?;
        if req.digest.is_none() {
            req.digest = ObjectDigest::from_blob_url(&req.url);
        }
        let id = Self::task_id(&req)?;
        let peer_id = PeerId::new(
            &df_core::ids::HostId::from(self.ctx.host_info.host_id.clone()),
            &uuid::Uuid::new_v4().to_string(),
        );
        let task = self.ctx.store.get_or_create(&id, &req.url, &peer_id);
        {
            let mut st = task.state();
            if st.complete || st.downloading {
                drop(st);
                return Ok(task);
            }
            st.downloading = true;
            st.failure = None;
            st.peer_id = peer_id.clone();
            if req.digest.is_some() {
                st.object_digest = req.digest.clone();
            }
        }
        let ctx = self.ctx.clone();
        let span = tracing::info_span!("download", task_id = %id, peer_id = %peer_id);
        let runner = task.clone();
        self.tracker.spawn(
            async move {
                let _use = runner.hold();
                let started = std::time::Instant::now();
                let result = conductor::Conductor {
                    ctx: ctx.clone(),
                    task: runner.clone(),
                    req,
                    peer_id,
                }
                .run()
                .await;
                match &result {
                    Ok(()) => {
                        let st = runner.state();
                        tracing::info!(
                            secs = started.elapsed().as_secs_f64(),
                            bytes = st.layout.map_or(0, |l| l.content_length),
                            from_origin = st.bytes_from_origin,
                            from_seeds = st.bytes_from_seeds,
                            from_peers = st.bytes_from_peers,
                            "download finished"
                        );
                        ctx.metrics.task("succeeded");
                    }
                    Err(TaskFailure::NoSpace(m)) => {
                        tracing::warn!(reason = %m, "cannot cache the object; clients are served from the origin");
                        ctx.metrics.task("no_space");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "download failed");
                        ctx.metrics.task("failed");
                    }
                }
                runner.finish(result);
                // Nothing worth keeping from a download that never got a layout.
                if runner.layout().is_none() {
                    ctx.store.remove(&runner.id).await;
                }
            }
            .instrument(span),
        );
        Ok(task)
    }

    /// Serves `req` to a client: from the cache or the running download, else the origin.
    pub async fn deliver(
        &self,
        req: DownloadRequest,
        range: Option<&str>,
    ) -> Result<Delivery, DeliveryError> {
        if self.ctx.p2p.is_disabled() {
            validate_http_url(&req.url).map_err(|e| DeliveryError::BadRequest(e.to_string()))?;
            self.ctx
                .origin
                .check(&req.url)
                .map_err(DeliveryError::Forbidden)?;
            return self.pass_through(req, range, None).await;
        }
        let was_complete = Self::task_id(&req)
            .ok()
            .and_then(|id| self.ctx.store.get(&id))
            .is_some_and(|t| t.is_complete());
        let task = self.start(req.clone())?;
        let hold = task.hold();
        let mut changes = task.subscribe();
        loop {
            changes.borrow_and_update();
            let (layout, failure, source) = {
                let st = task.state();
                (st.layout, st.failure.clone(), st.source)
            };
            if let Some(f) = failure {
                return self.on_failure(&task, f, req, range).await;
            }
            if let Some(layout) = layout {
                if let Some(refusal) = self.refusal(&task, &req).await? {
                    return self.on_failure(&task, refusal, req, range).await;
                }
                let source = if was_complete {
                    ByteSource::Local
                } else {
                    source.unwrap_or(ByteSource::Peer)
                };
                task.touch();
                return Ok(self.serve_from_cache(
                    task.clone(),
                    hold,
                    layout.content_length,
                    range,
                    source,
                ));
            }
            if changes.changed().await.is_err() {
                return Err(DeliveryError::Upstream(
                    "download ended unexpectedly".into(),
                ));
            }
        }
    }

    /// The origin's refusal when `task` is private and the client's credentials are not
    /// cleared for it ([`crate::access`]); `None`: serve it.
    async fn refusal(
        &self,
        task: &StoredTask,
        req: &DownloadRequest,
    ) -> Result<Option<TaskFailure>, DeliveryError> {
        if !self.ctx.config.access_check.applies_to(&req.url) {
            return Ok(None);
        }
        let verdict = crate::access::check(&self.ctx.origin, task, &req.url, &req.headers).await;
        let outcome = match &verdict {
            Ok(crate::access::Verdict::Serve) => None,
            Ok(crate::access::Verdict::Confirmed) => Some("confirmed"),
            Ok(crate::access::Verdict::Refused(_)) => Some("refused"),
            Err(_) => Some("error"),
        };
        if let Some(outcome) = outcome {
            self.ctx.metrics.access_check(outcome);
        }
        Ok(match verdict? {
            crate::access::Verdict::Serve | crate::access::Verdict::Confirmed => None,
            crate::access::Verdict::Refused(failure) => Some(failure),
        })
    }

    fn serve_from_cache(
        &self,
        task: Arc<StoredTask>,
        hold: crate::storage::TaskUse,
        total: u64,
        range: Option<&str>,
        source: ByteSource,
    ) -> Delivery {
        let mut headers: Vec<(String, String)> = task.state().response_headers.clone();
        let (status, start, end) = match range.map(|r| parse_range(r, total)) {
            Some(Some((start, end))) => {
                headers.push((
                    "content-range".into(),
                    format!("bytes {start}-{}/{total}", end - 1),
                ));
                (206, start, end)
            }
            Some(None) => {
                headers.push(("content-range".into(), format!("bytes */{total}")));
                (416, 0, 0)
            }
            None => (200, 0, total),
        };
        headers.push(("content-length".into(), (end - start).to_string()));
        if source == ByteSource::Local {
            // Counted as asked for: a range of a cached blob is that many bytes, not the blob.
            self.ctx.metrics.downloaded("local", end - start);
        }
        headers.push(("accept-ranges".into(), "bytes".into()));
        Delivery {
            status,
            headers,
            body: reader::object_stream(task.clone(), hold, start, end).boxed(),
            task_id: Some(task.id.clone()),
            source,
        }
    }

    async fn on_failure(
        &self,
        task: &Arc<StoredTask>,
        failure: TaskFailure,
        req: DownloadRequest,
        range: Option<&str>,
    ) -> Result<Delivery, DeliveryError> {
        match failure {
            TaskFailure::Origin {
                status,
                headers,
                body,
            } => Ok(Delivery {
                status,
                headers,
                body: futures_util::stream::once(async move { Ok(body) }).boxed(),
                task_id: Some(task.id.clone()),
                source: ByteSource::Origin,
            }),
            TaskFailure::NoSpace(_) | TaskFailure::NoLength => {
                self.pass_through(req, range, Some(task.id.clone())).await
            }
            TaskFailure::Other(m) => Err(DeliveryError::Upstream(m)),
            f @ TaskFailure::Stopping => Err(DeliveryError::Upstream(f.to_string())),
        }
    }

    /// Streams the object straight from the origin without caching it.
    pub async fn pass_through(
        &self,
        req: DownloadRequest,
        range: Option<&str>,
        task_id: Option<TaskId>,
    ) -> Result<Delivery, DeliveryError> {
        let mut rb = self.ctx.origin.fetch(&req.url).get(&req.url);
        for (k, v) in &req.headers {
            if origin::forwardable(k) {
                rb = rb.header(k.as_str(), v.as_str());
            }
        }
        if let Some(r) = range {
            rb = rb.header(http::header::RANGE, r);
        }
        let resp = rb.send().await.map_err(|e| {
            DeliveryError::Upstream(format!(
                "cannot reach origin {}: {}",
                req.url,
                origin::error_chain(&e)
            ))
        })?;
        let status = resp.status().as_u16();
        let headers = origin::end_to_end_headers(resp.headers(), &[]);
        let metrics = self.ctx.clone();
        let body = resp
            .bytes_stream()
            .inspect_ok(move |b| metrics.metrics.downloaded("origin", b.len() as u64))
            .map_err(std::io::Error::other)
            .boxed();
        Ok(Delivery {
            status,
            headers,
            body,
            task_id,
            source: ByteSource::Origin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_clamp() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 10)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=95-200", 100), Some((95, 100)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
