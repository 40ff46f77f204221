//! dfdaemon: the peer on every node. It stores tasks as pieces ([`storage`]), serves pieces to
//! other peers ([`upload`]), downloads from parents or the origin as its scheduler directs
//! ([`download`], [`announcer`]), and in seed mode fetches from the origin first when a
//! scheduler asks. Clients reach it through the admin API (and, later, the proxy and mirror).
//!
//! [`run`] takes already-bound listeners and a shutdown token, so tests boot whole clusters in
//! one process.

pub(crate) mod accept;
pub(crate) mod admin;
pub(crate) mod announcer;
mod commands;
pub mod config;
pub mod download;
pub mod egress;
mod gc;
pub(crate) mod metrics;
pub(crate) mod preheat;
pub mod proxy;
pub(crate) mod ratelimit;
pub(crate) mod storage;
pub mod superseed;
pub(crate) mod switch;
pub(crate) mod traffic;
pub(crate) mod upload;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use df_core::telemetry::LogHub;
use df_proto::scheduler::v1 as pb;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;

use crate::announcer::{HostCommand, SchedulerClient};
use crate::download::TaskManager;
use crate::download::origin::{OriginClientError, OriginClients};
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::storage::{PieceStore, StoreOptions};

/// Everything the peer's components share. One per daemon.
pub struct Context {
    pub config: Config,
    pub host_info: pb::HostInfo,
    pub store: Arc<PieceStore>,
    pub schedulers: Arc<SchedulerClient>,
    pub origin: OriginClients,
    /// Client for other peers' upload servers.
    pub peers: reqwest::Client,
    pub download_limiter: RateLimiter,
    pub upload_limiter: RateLimiter,
    pub metrics: Metrics,
    pub hub: LogHub,
    pub started: Instant,
    pub active_uploads: AtomicU32,
    pub uploaded_bytes: AtomicU64,
    pub p2p: switch::P2pSwitch,
}

/// How long shutdown waits for the tracked tasks (servers, links, GC, preheats) to end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

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
    let peers = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .read_timeout(config.piece_timeout)
        .pool_max_idle_per_host(16)
        // Parents close keep-alive connections idle for their header-read timeout; dropping
        // ours first avoids sending a piece request on a connection being closed.
        .pool_idle_timeout(config.server_limits.header_read_timeout / 2)
        .tcp_nodelay(true)
        .build()?;
    let ctx = Arc::new(Context {
        download_limiter: RateLimiter::new(config.download_rate),
        upload_limiter: RateLimiter::new(config.upload_rate),
        config,
        host_info,
        store: store.clone(),
        schedulers: schedulers.clone(),
        origin,
        peers,
        metrics: Metrics::new(),
        hub,
        started: Instant::now(),
        active_uploads: AtomicU32::new(0),
        uploaded_bytes: AtomicU64::new(0),
        p2p: switch::P2pSwitch::default(),
    });
    let manager = Arc::new(TaskManager::new(ctx.clone()));

    // Every long-lived task is spawned here, so shutdown can wait for them (bounded).
    let tracker = TaskTracker::new();
    let (commands_tx, commands_rx) = mpsc::unbounded_channel::<HostCommand>();
    tracker.spawn(commands::dispatch(
        commands_rx,
        ctx.clone(),
        manager.clone(),
        tracker.clone(),
    ));
    let heartbeat = {
        let ctx = ctx.clone();
        Arc::new(move || pb::HostHeartbeat {
            active_uploads: ctx.active_uploads.load(Ordering::Relaxed),
            disk_used: ctx.store.used(),
            disk_capacity: ctx.store.capacity(),
            disabled: ctx.p2p.is_disabled(),
            uploaded_bytes: ctx.uploaded_bytes.load(Ordering::Relaxed),
            high_watermark_percent: u32::from(ctx.store.high_watermark_percent()),
        }) as Arc<dyn Fn() -> pb::HostHeartbeat + Send + Sync>
    };
    schedulers.spawn_links(
        &tracker,
        store.clone(),
        heartbeat,
        commands_tx,
        shutdown.clone(),
    );

    tracker.spawn(gc::run(
        store.clone(),
        schedulers.clone(),
        ctx.config.gc_interval,
        ctx.config.task_ttl,
        shutdown.clone(),
    ));

    tracker.spawn(upload::run(listeners.upload, ctx.clone(), shutdown.clone()));
    if let Some(listener) = listeners.proxy {
        let proxy = Arc::new(proxy::Proxy::new(ctx.clone(), manager.clone(), clients)?);
        tracker.spawn(proxy.run(listener, shutdown.clone()));
    }
    tracing::info!(
        host_id = %ctx.host_info.host_id,
        upload = %upload_addr,
        admin = %admin_addr,
        proxy = ?proxy_addr,
        seed = ctx.config.seed,
        "peer started"
    );
    let admin = admin::router(admin::AdminState {
        ctx: ctx.clone(),
        tasks: manager,
    });
    let admin = df_core::admin_auth::protect(admin, ctx.config.admin.clone());
    df_core::serve::serve_router(
        listeners.admin,
        "admin",
        admin,
        ctx.config.server_limits,
        shutdown.clone(),
    )
    .await;
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            running = tracker.len(),
            "tasks still running after {SHUTDOWN_GRACE:?}; stopping without them"
        );
    }
    // Record what is cached so a restart resumes from here.
    for task in ctx.store.all() {
        let _ = task.save().await;
    }
    Ok(())
}
