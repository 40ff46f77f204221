//! The scheduler's admin HTTP API (see `df_core::api` for the routes and bodies): health,
//! Prometheus metrics, hosts, tasks with their DAG, the watch stream of `dfctl top`, the log
//! stream, and the Harbor-compatible preheat jobs API (`/healthy`, `/oapi/v1/jobs`).
//!
//! The jobs routes need `Authorization: Bearer <jobs.token>` (401 otherwise). Without a
//! configured token they answer loopback clients only (403 for others), so a local `dfctl up`
//! cluster works out of the box and a scheduler on a real network never takes unauthenticated
//! preheats. The other routes are read-only and open, as before.

mod views;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use df_core::ids::TaskId;
use df_core::routes;
use df_core::telemetry::{LogHub, LogQuery, ndjson_stream};

use crate::scheduling::Scheduler;
use crate::watch::{WatchFeed, WatchQuery};

#[derive(Clone)]
pub struct AdminState {
    pub scheduler: Arc<Scheduler>,
    pub preheat: crate::preheat::Preheat,
    pub feed: Arc<WatchFeed>,
    pub hub: LogHub,
    pub grpc_addr: String,
    /// The identity its gRPC certificate carries; `None` under the plaintext opt-out.
    pub identity: Option<String>,
}

pub fn router(state: AdminState) -> axum::Router {
    axum::Router::new()
        .route(routes::HEALTHZ, get(|| async { "ok" }))
        .route(routes::METRICS, get(metrics))
        .route(routes::INFO, get(info))
        .route(routes::HOSTS, get(hosts))
        .route(routes::TASKS, get(tasks))
        .route(routes::TASK, get(task))
        .route(routes::WATCH, get(watch))
        .route(routes::LOGS, get(logs))
        .route(routes::HEALTHY, get(|| async { "ok" }))
        .route(routes::JOBS, get(list_jobs).post(create_job))
        .route(routes::JOB, get(get_job))
        .with_state(state)
}

async fn metrics(State(s): State<AdminState>) -> Response {
    let (hosts, tasks, peers) = s.scheduler.counts();
    let m = &s.scheduler.metrics;
    m.hosts.set(i64::try_from(hosts).unwrap_or(i64::MAX));
    m.tasks.set(i64::try_from(tasks).unwrap_or(i64::MAX));
    m.peers.set(i64::try_from(peers).unwrap_or(i64::MAX));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}

async fn info(State(s): State<AdminState>) -> Response {
    Json(s.scheduler.info(&s.grpc_addr, s.identity.clone())).into_response()
}

async fn hosts(State(s): State<AdminState>) -> Response {
    Json(s.scheduler.hosts()).into_response()
}

async fn tasks(State(s): State<AdminState>) -> Response {
    Json(s.scheduler.tasks()).into_response()
}

async fn task(State(s): State<AdminState>, Path(task_id): Path<String>) -> Response {
    let Ok(id) = task_id.parse::<TaskId>() else {
        return (
            StatusCode::BAD_REQUEST,
            format!("'{task_id}' is not a task id\n"),
        )
            .into_response();
    };
    match s.scheduler.task(&id) {
        Some(detail) => Json(detail).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("task {id} is not known here\n"),
        )
            .into_response(),
    }
}

async fn watch(State(s): State<AdminState>, Query(q): Query<WatchQuery>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(s.feed.stream(q)),
    )
        .into_response()
}

async fn logs(State(s): State<AdminState>, Query(q): Query<LogQuery>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(ndjson_stream(&s.hub, q)),
    )
        .into_response()
}

/// Upstream's error body shape (`{"errors": "..."}`), which Harbor logs as is.
fn job_error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(serde_json::json!({ "errors": message.into() })),
    )
        .into_response()
}

/// The answer refusing a request the jobs API must not serve (see the module doc); `None`
/// when it may go on.
fn refusal(s: &AdminState, headers: &HeaderMap, client: SocketAddr) -> Option<Response> {
    let Some(token) = &s.scheduler.config().jobs.token else {
        return (!client.ip().is_loopback()).then(|| {
            job_error(
                StatusCode::FORBIDDEN,
                "the jobs API takes requests from loopback only: set jobs.token in the scheduler config",
            )
        });
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    match given {
        Some(t) if constant_time_eq(t.as_bytes(), token.as_bytes()) => None,
        Some(_) => Some(job_error(StatusCode::UNAUTHORIZED, "invalid bearer token")),
        None => Some(job_error(
            StatusCode::UNAUTHORIZED,
            "missing 'Authorization: Bearer <token>'",
        )),
    }
}

/// Compares without an early exit, so timing does not reveal how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn create_job(
    State(s): State<AdminState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = refusal(&s, &headers, client) {
        return refused;
    }
    let req: df_core::api::CreateJob = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return job_error(StatusCode::BAD_REQUEST, format!("malformed job: {e}")),
    };
    match crate::preheat::create(&s.preheat, &req) {
        Ok(view) => Json(view).into_response(),
        Err(e) => job_error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn list_jobs(
    State(s): State<AdminState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refusal(&s, &headers, client) {
        return refused;
    }
    Json(s.preheat.jobs().list()).into_response()
}

async fn get_job(
    State(s): State<AdminState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = refusal(&s, &headers, client) {
        return refused;
    }
    let Ok(id) = id.parse::<u64>() else {
        return job_error(StatusCode::BAD_REQUEST, format!("'{id}' is not a job id"));
    };
    match s.preheat.jobs().get(id) {
        Some(view) => Json(view).into_response(),
        None => job_error(StatusCode::NOT_FOUND, format!("job {id} is not known here")),
    }
}
