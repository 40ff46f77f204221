//! The scheduler's admin HTTP API (see `df_core::api` for the routes and bodies): health,
//! Prometheus metrics, hosts, tasks with their DAG, the watch stream of `dfctl top`, and the log
//! stream.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use df_core::ids::TaskId;
use df_core::telemetry::{LogHub, LogQuery, ndjson_stream};

use crate::scheduling::Scheduler;
use crate::watch::{WatchFeed, WatchQuery};

#[derive(Clone)]
pub struct AdminState {
    pub scheduler: Arc<Scheduler>,
    pub feed: Arc<WatchFeed>,
    pub hub: LogHub,
    pub grpc_addr: String,
}

pub fn router(state: AdminState) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/api/v1/info", get(info))
        .route("/api/v1/hosts", get(hosts))
        .route("/api/v1/tasks", get(tasks))
        .route("/api/v1/tasks/{task_id}", get(task))
        .route("/api/v1/watch", get(watch))
        .route("/api/v1/logs", get(logs))
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
    Json(s.scheduler.info(&s.grpc_addr)).into_response()
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
