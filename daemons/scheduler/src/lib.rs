//! dfscheduler: the tracker. It knows which peer holds which pieces of which task, links each
//! task's peers into a mesh of neighbours that exchange pieces both ways, asks seed peers to
//! fetch from the origin first, and sends peers back to the origin when P2P cannot serve them.
//! All state is in memory except preheat jobs, which are also journaled under
//! `jobs.state_dir` so they outlive a restart.
//!
//! [`run`] takes already-bound listeners and a shutdown token, so tests boot schedulers on
//! port 0 inside one process.

pub(crate) mod admin;
pub(crate) mod admission;
pub(crate) mod authority;
pub mod config;
pub(crate) mod link;
pub(crate) mod metrics;
pub(crate) mod model;
pub mod origin_share;
pub mod outbox;
pub(crate) mod preheat;
pub(crate) mod restart;
pub(crate) mod scheduling;
pub(crate) mod selector;
pub(crate) mod service;
pub mod topology;
pub(crate) mod watch;

/// How often the scheduler tops up every peer's neighbours (the simulator ticks the mesh at
/// the same period).
pub use scheduling::TICK;

use std::sync::Arc;

use df_core::config::tls::TlsSetting;
use df_core::identity::Role;
use df_core::telemetry::LogHub;
use df_core::tls::{ClusterAcceptor, ClusterTls};
use df_proto::scheduler::v1::scheduler_server::SchedulerServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;
pub use scheduling::Scheduler;

impl preheat::HostDirectory for Scheduler {
    fn connected_hosts(&self) -> Vec<model::ConnectedHost> {
        Scheduler::connected_hosts(self)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("gRPC server on {addr}: {source}")]
    Grpc {
        addr: String,
        source: tonic::transport::Error,
    },
    #[error(transparent)]
    Tls(#[from] df_core::tls::TlsError),
    #[error(transparent)]
    Jobs(#[from] preheat::journal::JournalError),
}

/// Serves gRPC on `grpc` and the admin API on `http` until `shutdown` is cancelled.
pub async fn run(
    grpc: TcpListener,
    http: TcpListener,
    config: Config,
    hub: LogHub,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let grpc_addr = grpc.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let http_addr = http.local_addr().map(|a| a.to_string()).unwrap_or_default();
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let limits = config.server_limits;
    let max_streams = config.max_streams_per_connection;
    let admin_auth = config.admin.clone();
    // Every task the scheduler spawns is tracked, so shutdown can wait for them (bounded).
    let tracker = TaskTracker::new();
    let (acceptor, identity) = grpc_acceptor(&config.tls, &tracker, &shutdown)?;
    let identity_required = acceptor.is_tls();
    // Loaded before anything is served, so a job ID asked for is known or was never issued.
    let jobs = Arc::new(preheat::JobStore::open(&config.jobs).await?);
    let scheduler = Arc::new(Scheduler::new(config));
    // Preheat jobs see the scheduler only as a directory of connected hosts; the job store is
    // shared between them and the host streams (reports, departures).
    let preheat = preheat::Preheat::new(
        scheduler.clone(),
        jobs.clone(),
        scheduler.config().jobs.clone(),
        scheduler.metrics.preheat_jobs.clone(),
        tracker.clone(),
    );

    {
        let scheduler = scheduler.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(scheduling::TICK);
            let gc_every = scheduler.config().gc_interval;
            let mut last_gc = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {
                        scheduler.tick();
                        if last_gc.elapsed() >= gc_every {
                            scheduler.gc();
                            last_gc = tokio::time::Instant::now();
                        }
                    }
                }
            }
        });
    }

    let feed = watch::WatchFeed::new(scheduler.clone());
    tracker.spawn(feed.clone().run(shutdown.clone()));
    let admin = admin::router(admin::AdminState {
        scheduler: scheduler.clone(),
        preheat,
        feed,
        hub,
        grpc_addr: grpc_addr.clone(),
        identity,
    });
    let admin = df_core::admin_auth::protect(admin, admin_auth);
    tracing::debug!(addr = %http_addr, "admin HTTP server");
    // The jobs API and the admin token check read the client address (ConnectInfo) that
    // serve_router attaches.
    // Its connections are cut at shutdown, not drained: they are short requests or watch and
    // log streams that would otherwise hold a restart for the whole grace period.
    let http_stopping = df_core::serve::Stopping::immediate(shutdown.clone());
    let http_task = async move {
        df_core::serve::serve_router(http, "scheduler-http", admin, limits, http_stopping).await;
        Ok::<(), RunError>(())
    };

    let grace = scheduler.config().shutdown_grace;
    // At SIGTERM every peer is told to reconnect before the server stops accepting: their
    // streams would otherwise keep this process alive and the peers attached to it.
    let grpc_shutdown = {
        let (scheduler, shutdown) = (scheduler.clone(), shutdown.clone());
        async move {
            shutdown.cancelled().await;
            let (hosts, downloads) = scheduler.drain_streams("scheduler shutting down");
            tracing::info!(
                hosts,
                downloads,
                ?grace,
                "stopping: told every peer to reconnect"
            );
        }
    };
    let service_tracker = tracker.clone();
    let journal = jobs.clone();
    let admission = link::Admission {
        acceptor,
        limit: df_core::serve::ConnectionLimit::new("scheduler-grpc", limits.max_connections),
        idle: limits.header_read_timeout,
    };
    let incoming = link::incoming(grpc, admission, &tracker, shutdown.clone());
    let stopping = shutdown.clone();
    let grpc_task = async move {
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(link::keepalive(limits.header_read_timeout)))
            .max_concurrent_streams(Some(max_streams))
            .add_service(SchedulerServer::new(service::SchedulerService {
                scheduler: scheduler.clone(),
                jobs,
                tracker: service_tracker,
                stopping,
                identity_required,
            }))
            .serve_with_incoming_shutdown(incoming, grpc_shutdown)
            .await
            .map_err(|source| RunError::Grpc {
                addr: grpc_addr,
                source,
            })
    };
    tracing::info!(version = df_core::VERSION, "scheduler started");
    let servers = async { tokio::try_join!(grpc_task, http_task).map(|_| ()) };
    // One bound for everything: servers, then the tracked tasks (readers, preheat jobs).
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::pin!(deadline);
    let result = tokio::select! {
        r = servers => r,
        () = &mut deadline => {
            tracing::warn!(?grace, "connections still open after shutdown_grace; exiting without them");
            Ok(())
        }
    };
    tracker.close();
    tokio::select! {
        () = tracker.wait() => {}
        () = &mut deadline => tracing::warn!(
            tasks = tracker.len(),
            ?grace,
            "tasks still running after shutdown_grace; exiting without them"
        ),
    }
    // Whatever the jobs did until now is on disk before the process goes.
    journal.flush().await;
    tracing::info!("scheduler stopped");
    result
}

/// The gRPC listener's TLS (certificate checked against the scheduler role, reloaded on a
/// tracked task) and the identity it presents, or the logged plaintext opt-out.
fn grpc_acceptor(
    setting: &TlsSetting,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<(ClusterAcceptor, Option<String>), RunError> {
    let TlsSetting::Mutual(paths) = setting else {
        tracing::warn!(
            "tls.plaintext: gRPC is unauthenticated; any host can announce any host ID or claim to be a seed"
        );
        return Ok((ClusterAcceptor::plaintext(), None));
    };
    let tls = ClusterTls::load(paths)?;
    tls.expect(Role::Scheduler, None, &paths.cert)?;
    let acceptor = tls.acceptor(df_core::tls::PEER_ROLES, df_core::tls::ALPN_GRPC)?;
    tracker.spawn(tls.keys().watch(shutdown.clone()));
    tracing::info!(identity = %tls.identity(), "gRPC is mutual TLS");
    Ok((acceptor, Some(tls.identity().uri())))
}
