//! dfdaemon: the peer on every node. It stores tasks as pieces ([`storage`]), serves pieces to
//! other peers ([`upload`]), downloads from parents or the origin as its scheduler directs
//! ([`download`], [`announcer`]), and in seed mode fetches from the origin first when a
//! scheduler asks. Clients reach it through the admin API (and, later, the proxy and mirror).
//!
//! [`run`] takes already-bound listeners and a shutdown token, so tests boot whole clusters in
//! one process.

pub(crate) mod access;
pub(crate) mod admin;
pub mod admission;
pub(crate) mod announcer;
pub mod bitmap_feed;
mod commands;
pub mod config;
pub mod download;
pub mod egress;
mod gc;
pub(crate) mod links;
pub(crate) mod metrics;
pub mod neighbour_views;
pub(crate) mod preheat;
pub mod proxy;
pub(crate) mod ratelimit;
pub mod read_ahead;
pub mod reconnect;
pub(crate) mod send_queue;
pub(crate) mod storage;
pub mod superseed;
pub(crate) mod switch;
pub(crate) mod traffic;
pub(crate) mod upload;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use df_core::serve::Stopping;
use df_core::telemetry::LogHub;
use df_proto::scheduler::v1 as pb;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;

use crate::announcer::{HostCommand, SchedulerClient};
use crate::download::origin::{OriginClientError, OriginClients};
use crate::download::{Engine, TaskManager};
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::storage::{PieceStore, StoreOptions};
use crate::switch::P2pSwitch;
use crate::upload::{UploadCounters, Uploads};

/// The sockets a peer serves on, bound by the caller.
pub struct Listeners {
    pub upload: TcpListener,
    pub admin: TcpListener,
    /// `None` when `proxy.enabled` is false.
    pub proxy: Option<TcpListener>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot read a bound address: {0}")]
    Address(std::io::Error),
    #[error("storage: {0}")]
    Storage(#[from] storage::StorageError),
    #[error(transparent)]
    Schedulers(#[from] announcer::AnnouncerError),
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error(transparent)]
    Origin(#[from] OriginClientError),
    #[error(transparent)]
    Proxy(#[from] proxy::leaf_certs::MintError),
    #[error(transparent)]
    Tls(#[from] df_core::tls::TlsError),
}

/// The IP other peers should use: configured, else the upload listener's, else the address
/// this host would use to reach its first scheduler (no packet is sent), else loopback.
fn advertised_ip(config: &Config, upload: SocketAddr) -> IpAddr {
    if let Some(ip) = config.ip {
        return ip;
    }
    if !upload.ip().is_unspecified() {
        return upload.ip();
    }
    let probe = config.schedulers.first().and_then(|s| {
        use std::net::ToSocketAddrs as _;
        let target = s.to_socket_addrs().ok()?.next()?;
        let sock = std::net::UdpSocket::bind(("0.0.0.0", 0)).ok()?;
        sock.connect(target).ok()?;
        sock.local_addr().ok().map(|a| a.ip())
    });
    probe.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Serves until `shutdown` is cancelled.
pub async fn run(
    listeners: Listeners,
    config: Config,
    hub: LogHub,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let upload_addr = listeners.upload.local_addr().map_err(RunError::Address)?;
    let admin_addr = listeners.admin.local_addr().map_err(RunError::Address)?;
    let proxy_addr = match &listeners.proxy {
        Some(l) => Some(l.local_addr().map_err(RunError::Address)?),
        None => None,
    };
    let ip = advertised_ip(&config, upload_addr);
    let host_info = pb::HostInfo {
        host_id: config.host_id(&ip).to_string(),
        hostname: config.hostname.clone(),
        ip: ip.to_string(),
        upload_port: u32::from(upload_addr.port()),
        admin_port: u32::from(admin_addr.port()),
        proxy_port: proxy_addr.map_or(0, |a| u32::from(a.port())),
        host_type: if config.seed {
            pb::HostType::Seed as i32
        } else {
            pb::HostType::Normal as i32
        },
        idc: config.idc.clone(),
        location: config.location.clone(),
        upload_slots: config.upload_slots,
        upload_rate: config.upload_rate,
        version: df_core::VERSION.to_owned(),
    };
    // Every long-lived task is spawned here, so shutdown can wait for them (bounded).
    let tracker = TaskTracker::new();
    let links = links::setup(&config, &tracker, &shutdown)?;
    let store = PieceStore::open(StoreOptions {
        dir: config.data_dir.clone(),
        capacity: config.capacity,
        high_watermark_percent: config.high_watermark_percent,
        low_watermark_percent: config.low_watermark_percent,
    })
    .await?;
    let schedulers = Arc::new(SchedulerClient::new(
        &config.schedulers,
        host_info.clone(),
        Duration::from_secs(1),
        links.scheduler.clone(),
    )?);
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let mut known = vec![ip, upload_addr.ip(), admin_addr.ip()];
    known.extend(proxy_addr.map(|a| a.ip()));
    let own = egress::own_addresses(&known);
    let clients = egress::ClientAllow::new(config.proxy.allow.clone(), own.clone());
    let policy = egress::EgressPolicy::new(
        config.proxy.allow_private_destinations,
        config.proxy.destination_ports.clone(),
        own,
    );
    let origin = OriginClients::new(
        &config.origin,
        config.origin_connect_timeout,
        config.piece_timeout,
        Arc::new(policy),
    )?;
    let mut peers = reqwest::Client::builder();
    if let Some(tls) = links.parents.clone() {
        peers = peers.tls_backend_preconfigured(tls);
    }
    let peers = peers
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .read_timeout(config.piece_timeout)
        .pool_max_idle_per_host(16)
        // Parents close keep-alive connections idle for their header-read timeout; dropping
        // ours first avoids sending a piece request on a connection being closed.
        .pool_idle_timeout(config.server_limits.header_read_timeout / 2)
        .tcp_nodelay(true)
        .build()?;
    // The shared pieces, each handed only to the components that need it.
    let metrics = Arc::new(Metrics::new());
    let p2p = Arc::new(P2pSwitch::default());
    let counters = Arc::new(UploadCounters::default());
    let origin = Arc::new(origin);

    let engine = Arc::new(Engine {
        download_limiter: RateLimiter::new(config.download_rate),
        host_info: host_info.clone(),
        store: store.clone(),
        schedulers: schedulers.clone(),
        origin: origin.clone(),
        peers,
        metrics: metrics.clone(),
        p2p: p2p.clone(),
        config: config.clone(),
    });
    let manager = Arc::new(TaskManager::new(engine, tracker.clone()));
    let (commands_tx, commands_rx) = mpsc::unbounded_channel::<HostCommand>();
    tracker.spawn(commands::dispatch(
        commands_rx,
        config.seed,
        manager.clone(),
        tracker.clone(),
    ));
    schedulers.spawn_links(
        &tracker,
        store.clone(),
        heartbeat(
            store.clone(),
            counters.clone(),
            p2p.clone(),
            Arc::downgrade(&schedulers),
        ),
        commands_tx,
        shutdown.clone(),
    );
    tracker.spawn(gc::run(
        store.clone(),
        schedulers.clone(),
        config.gc_interval,
        config.task_ttl,
        shutdown.clone(),
    ));

    // Stopping: `shutdown` ends accepting and lets in-flight responses finish; `cut`, the
    // grace period later, drops what is left.
    let grace = config.shutdown_grace;
    let stopping = Stopping::with_grace(shutdown.clone(), grace);
    let uploads = Uploads {
        store: store.clone(),
        seed: config.seed,
        slots: config.upload_slots,
        limits: config.server_limits,
        per_connection_rate: config.upload_rate_per_connection,
        limiter: RateLimiter::new(config.upload_rate),
        counters: counters.clone(),
        metrics: metrics.clone(),
    };
    tracker.spawn(upload::run(
        listeners.upload,
        Arc::new(uploads),
        stopping.clone(),
        links.upload,
    ));
    if let Some(listener) = listeners.proxy {
        let proxy = Arc::new(proxy::Proxy::new(
            proxy::ProxyHandle {
                config: config.proxy.clone(),
                origin: origin.clone(),
                p2p: p2p.clone(),
                metrics: metrics.clone(),
                tasks: manager.clone(),
                clients,
                limits: config.server_limits,
                idle_timeout: config.idle_timeout,
            },
            stopping.clone(),
        )?);
        tracker.spawn(proxy.run(listener));
    }
    tracing::info!(
        host_id = %host_info.host_id,
        upload = %upload_addr,
        admin = %admin_addr,
        proxy = ?proxy_addr,
        seed = config.seed,
        "peer started"
    );
    let admin = admin::router(admin::AdminState {
        tasks: manager,
        store: store.clone(),
        schedulers,
        host_info,
        metrics,
        p2p,
        uploads: counters,
        hub,
        started: Instant::now(),
        seed: config.seed,
        task_ttl: config.task_ttl,
        warnings: config.warnings(),
        ca_not_after: config
            .proxy
            .hijack_ca
            .as_ref()
            .and_then(|(cert, _)| proxy::leaf_certs::not_after(cert)),
        identity: links.identity,
    });
    // Client downloads through the admin API are responses in flight too: they get the grace.
    let admin = df_core::admin_auth::protect(admin, config.admin.clone());
    df_core::serve::serve_router(
        listeners.admin,
        "admin",
        admin,
        config.server_limits,
        stopping.clone(),
    )
    .await;
    tracing::info!(
        ?grace,
        "stopping: no new connections; finishing responses in flight"
    );
    tracker.close();
    stopping.connections.close();
    let drained = async {
        tracker.wait().await;
        stopping.connections.wait().await;
    };
    tokio::select! {
        () = drained => {}
        () = stopping.cut.cancelled() => tracing::warn!(
            tasks = tracker.len(),
            connections = stopping.connections.len(),
            "still running after shutdown_grace; stopping without them"
        ),
    }
    // Record what is stored so a restart resumes from these pieces.
    let tasks = store.all();
    for task in &tasks {
        if let Err(e) = task.save().await {
            tracing::warn!(task_id = %task.id, error = %e, "cannot save task metadata");
        }
    }
    tracing::info!(tasks = tasks.len(), "peer stopped; task metadata saved");
    Ok(())
}

/// What each heartbeat tells the schedulers about this host's load and disk.
fn heartbeat(
    store: Arc<PieceStore>,
    uploads: Arc<UploadCounters>,
    p2p: Arc<P2pSwitch>,
    schedulers: std::sync::Weak<SchedulerClient>,
) -> Arc<dyn Fn() -> pb::HostHeartbeat + Send + Sync> {
    // Weak: the scheduler client holds this closure.
    Arc::new(move || {
        let links = schedulers
            .upgrade()
            .map(|s| s.connections())
            .unwrap_or_default();
        pb::HostHeartbeat {
            active_uploads: uploads.active(),
            disk_used: store.used(),
            disk_capacity: store.capacity(),
            disabled: p2p.is_disabled(),
            uploaded_bytes: uploads.bytes(),
            high_watermark_percent: u32::from(store.high_watermark_percent()),
            reconnects: links.iter().map(|l| l.reconnects).sum(),
            last_reconnect_unix: links
                .iter()
                .filter_map(|l| l.last_reconnect)
                .max()
                .unwrap_or(0),
        }
    })
}
