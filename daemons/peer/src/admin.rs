//! The peer's admin HTTP API (routes and bodies in `df_core::api`): health, metrics, this
//! peer's info and cached tasks, downloads through the P2P network for `dfctl get`, and the
//! log stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use df_core::ids::{ObjectDigest, TaskId};
use df_core::piece::{MAX_PIECE_LENGTH, MIN_EXPLICIT_PIECE_LENGTH};
use df_core::routes;
use df_core::telemetry::{LogQuery, ndjson_stream};
use serde::Deserialize;

use crate::announcer::SchedulerClient;
use crate::download::{Delivery, DeliveryError, DownloadRequest, TaskManager};
use crate::metrics::Metrics;
use crate::storage::PieceStore;
use crate::switch::P2pSwitch;
use crate::upload::UploadCounters;
use df_core::telemetry::LogHub;
use df_proto::scheduler::v1::HostInfo;

/// What the admin API reads and controls: the downloads, the cache, the switch, the counters
/// and the facts `info` reports. Shared by every request.
pub(crate) struct AdminState {
    pub(crate) tasks: Arc<TaskManager>,
    pub(crate) store: Arc<PieceStore>,
    pub(crate) schedulers: Arc<SchedulerClient>,
    pub(crate) host_info: HostInfo,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) p2p: Arc<P2pSwitch>,
    pub(crate) uploads: Arc<UploadCounters>,
    pub(crate) hub: LogHub,
    pub(crate) started: Instant,
    pub(crate) seed: bool,
    pub(crate) task_ttl: Duration,
    /// When the interception CA expires, if this peer intercepts with one.
    pub(crate) ca_not_after: Option<i64>,
    /// Settings that weaken the defaults (shown by `dfctl status`).
    pub(crate) warnings: Vec<String>,
    /// The cluster identity this peer's links present; `None` under `tls.plaintext`.
    pub(crate) identity: Option<String>,
}

type Shared = State<Arc<AdminState>>;

pub(crate) fn router(state: AdminState) -> axum::Router {
    axum::Router::new()
        .route(routes::HEALTHZ, get(|| async { "ok" }))
        .route(routes::METRICS, get(metrics))
        .route(routes::INFO, get(info))
        .route(routes::TASKS, get(tasks))
        .route(routes::TASK, get(task))
        .route(routes::DOWNLOAD, get(download))
        .route(routes::LOGS, get(logs))
        .route(routes::P2P, get(p2p_state).put(p2p_set))
        .with_state(Arc::new(state))
}

async fn metrics(State(s): Shared) -> Response {
    let m = &s.metrics;
    m.storage_used
        .set(i64::try_from(s.store.used()).unwrap_or(i64::MAX));
    m.storage_capacity
        .set(i64::try_from(s.store.capacity()).unwrap_or(i64::MAX));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}

async fn info(State(s): Shared) -> Response {
    let ctx = &*s;
    let h = &ctx.host_info;
    Json(df_core::api::PeerInfo {
        version: df_core::VERSION.to_owned(),
        host_id: h.host_id.clone(),
        hostname: h.hostname.clone(),
        ip: h.ip.clone(),
        seed: ctx.seed,
        upload_port: u16::try_from(h.upload_port).unwrap_or_default(),
        admin_port: u16::try_from(h.admin_port).unwrap_or_default(),
        proxy_port: u16::try_from(h.proxy_port).unwrap_or_default(),
        data_dir: ctx.store.dir().display().to_string(),
        disk_used: ctx.store.used(),
        disk_capacity: ctx.store.capacity(),
        tasks: ctx.store.all().len(),
        uptime_secs: ctx.started.elapsed().as_secs(),
        schedulers: ctx
            .schedulers
            .connections()
            .into_iter()
            .map(|l| df_core::api::SchedulerConnection {
                addr: l.addr,
                connected: l.connected,
                reconnects: l.reconnects,
                last_reconnect_unix: l.last_reconnect,
            })
            .collect(),
        uploaded_bytes: ctx.uploads.bytes(),
        pieces_served: ctx.metrics.pieces_served.get(),
        disk_high_watermark: ctx.store.high_watermark(),
        disk_low_watermark: ctx.store.low_watermark(),
        recent: ctx.metrics.recent.snapshot(),
        p2p: ctx.p2p.state(),
        ca_not_after: ctx.ca_not_after,
        high_watermark_percent: ctx.store.high_watermark_percent(),
        task_ttl_secs: ctx.task_ttl.as_secs(),
        warnings: ctx.warnings.clone(),
        plaintext: ctx.identity.is_none(),
        identity: ctx.identity.clone(),
    })
    .into_response()
}

async fn tasks(State(s): Shared) -> Response {
    let mut all: Vec<_> = s
        .store
        .all()
        .iter()
        .map(|t| t.to_local_view(s.task_ttl))
        .collect();
    all.sort_by_key(|t| t.last_access_secs_ago);
    Json(all).into_response()
}

async fn task(State(s): Shared, Path(task_id): Path<String>) -> Response {
    let Ok(id) = task_id.parse::<TaskId>() else {
        return (
            StatusCode::BAD_REQUEST,
            format!("'{task_id}' is not a task id\n"),
        )
            .into_response();
    };
    match s.store.get(&id) {
        Some(t) => Json(t.to_local_view(s.task_ttl)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("task {id} is not on this peer\n"),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct DownloadQuery {
    url: String,
    #[serde(default)]
    digest: Option<String>,
    /// Explicit piece length in bytes (part of the task ID, as upstream's `--piece-length`).
    #[serde(default)]
    piece_length: Option<u64>,
}

async fn download(
    State(s): Shared,
    Query(q): Query<DownloadQuery>,
    headers: HeaderMap,
) -> Response {
    let digest = match q.digest.map(ObjectDigest::try_from).transpose() {
        Ok(d) => d,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    if let Some(len) = q.piece_length
        && !(MIN_EXPLICIT_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&len)
    {
        let msg = format!(
            "piece_length {len} is outside {MIN_EXPLICIT_PIECE_LENGTH}..={MAX_PIECE_LENGTH}\n"
        );
        return (StatusCode::BAD_REQUEST, msg).into_response();
    }
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let req = DownloadRequest {
        url: q.url,
        headers: origin_headers(&headers),
        digest,
        piece_length: q.piece_length,
        ..DownloadRequest::default()
    };
    match s.tasks.deliver(req, range.as_deref()).await {
        Ok(d) => delivery_response(d),
        Err(DeliveryError::BadRequest(m)) => {
            (StatusCode::BAD_REQUEST, format!("{m}\n")).into_response()
        }
        Err(DeliveryError::Upstream(m)) => {
            (StatusCode::BAD_GATEWAY, format!("{m}\n")).into_response()
        }
        Err(DeliveryError::Forbidden(m)) => {
            (StatusCode::FORBIDDEN, format!("{m}\n")).into_response()
        }
    }
}

/// The download API request's headers that go to the origin: its `Authorization` is this
/// API's own credential and stays here; [`df_core::HEADER_ORIGIN_AUTHORIZATION`] becomes the
/// origin's `Authorization`.
fn origin_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| *k != header::AUTHORIZATION)
        .filter_map(|(k, v)| {
            let name = if k.as_str() == df_core::HEADER_ORIGIN_AUTHORIZATION {
                header::AUTHORIZATION.as_str()
            } else {
                k.as_str()
            };
            Some((name.to_owned(), v.to_str().ok()?.to_owned()))
        })
        .collect()
}

pub fn delivery_response(d: Delivery) -> Response {
    d.into_response().into_response()
}

/// `GET /api/v1/p2p`: whether P2P is on, and if not, why and since when.
async fn p2p_state(State(s): Shared) -> Response {
    Json(s.p2p.state()).into_response()
}

#[derive(Deserialize)]
struct P2pChange {
    enabled: bool,
    #[serde(default)]
    reason: Option<String>,
}

/// `PUT /api/v1/p2p {"enabled": false, "reason": "..."}`: the soft switch. Off, every client
/// request passes straight to the origin (no P2P, no cache) and schedulers stop choosing this
/// peer as a parent. Idempotent.
async fn p2p_set(State(s): Shared, Json(change): Json<P2pChange>) -> Response {
    if change.enabled {
        s.p2p.enable();
        tracing::warn!("P2P switched on");
    } else {
        let reason = change.reason.unwrap_or_default();
        tracing::warn!(%reason, "P2P switched off: passing every request to the origin");
        s.p2p.disable(reason);
    }
    Json(s.p2p.state()).into_response()
}

async fn logs(State(s): Shared, Query(q): Query<LogQuery>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(ndjson_stream(&s.hub, q)),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_token_never_reaches_the_origin_and_the_origin_credential_does() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            "Bearer admin-token".parse().expect("value"),
        );
        h.insert(
            df_core::HEADER_ORIGIN_AUTHORIZATION,
            "Basic b3JpZ2lu".parse().expect("value"),
        );
        h.insert(header::ACCEPT, "*/*".parse().expect("value"));
        let mut got = origin_headers(&h);
        got.sort();
        assert_eq!(
            got,
            [
                ("accept".to_owned(), "*/*".to_owned()),
                ("authorization".to_owned(), "Basic b3JpZ2lu".to_owned()),
            ]
        );
    }
}
