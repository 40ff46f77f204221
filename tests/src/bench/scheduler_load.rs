//! The scheduler load benchmark: one real `dfscheduler` process and thousands of simulated
//! peers speaking its real gRPC API (the `df-proto` client), without any data moving.
//!
//! The simulation: H hosts announce themselves on `AnnounceHost` streams and stay connected.
//! P peers, spread over T tasks so that each host downloads several different tasks (as a node
//! pulling an image's layers does), register on `AnnouncePeer` streams in random order with up
//! to C registrations in flight. The latency of a registration is from sending `RegisterPeer` to
//! the first `Parents` or `BackToSource` answer. The first peer of each task is sent back to
//! source (there is no seed host); it reports the layout and every piece with its digest, the
//! others report every piece as received from their first parent; all then report `Finished`.
//! Every answer stream is drained, so the scheduler never buffers replies nobody reads.
//!
//! Reported: host announces/s, registrations/s, latency quantiles, piece reports/s (until the
//! scheduler's own task view shows every peer finished), the scheduler's peak RSS and CPU time.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use df_core::api::TaskSummary;
use df_core::ids::{TaskId, TaskIdParams};
use df_proto::scheduler::v1 as pb;
use futures_util::{StreamExt as _, TryStreamExt as _};
use pb::peer_request::Request as PeerMsg;
use pb::peer_response::Response as PeerReply;
use pb::scheduler_client::SchedulerClient;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Channel, Endpoint};

use super::{
    MIB, MachineInfo, ProcUsage, ProcessSet, binary, free_ports, get_json, http_client, proc_usage,
    quantile, round3, start_scheduler,
};

/// Piece length the simulated tasks report.
const PIECE_LENGTH: u64 = 4 * MIB;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadConfig {
    pub peers: u32,
    pub tasks: u32,
    pub hosts: u32,
    /// Pieces per task.
    pub pieces: u32,
    /// HTTP/2 connections the simulated peers share.
    pub connections: u32,
    /// Registrations (and host announces) in flight at once.
    pub concurrency: u32,
    pub timeout_s: u64,
    #[serde(skip)]
    pub bin_dir: PathBuf,
    #[serde(skip)]
    pub work_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyMs {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadReport {
    pub config: LoadConfig,
    pub machine: MachineInfo,
    pub host_announce_s: f64,
    pub host_announces_per_s: f64,
    pub register_s: f64,
    pub registrations_per_s: f64,
    /// RegisterPeer sent -> first Parents or BackToSource received.
    pub register_latency_ms: LatencyMs,
    pub answered_parents: u32,
    pub answered_back_to_source: u32,
    pub piece_reports: u64,
    /// From the first piece report sent until the scheduler shows every peer finished.
    pub report_s: f64,
    pub piece_reports_per_s: f64,
    pub scheduler: ProcUsage,
    pub scheduler_peak_rss_mib: f64,
}

/// A simulated host's open announce stream; dropping it closes the stream.
struct HostLink {
    _tx: mpsc::UnboundedSender<pb::HostRequest>,
}

/// A simulated peer after its first answer.
struct SimPeer {
    tx: mpsc::UnboundedSender<pb::PeerRequest>,
    task_id: String,
    latency: Duration,
    /// `None`: sent back to source.
    parent: Option<String>,
}

pub async fn run(config: LoadConfig) -> anyhow::Result<LoadReport> {
    anyhow::ensure!(
        config.tasks > 0 && config.hosts > 0 && config.peers > 0,
        "--peers, --tasks and --hosts must be at least 1"
    );
    anyhow::ensure!(
        config.peers.div_ceil(config.hosts) <= config.tasks,
        "{} peers on {} hosts puts two peers of one host on one task; use more hosts or tasks",
        config.peers,
        config.hosts
    );
    anyhow::ensure!(
        config.connections > 0 && config.concurrency > 0 && config.pieces > 0,
        "--connections, --concurrency and --pieces must be at least 1"
    );
    binary(&config.bin_dir, "dfscheduler")?;
    let parent = config.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("df-bench-scheduler-")
        .tempdir_in(&parent)
        .with_context(|| format!("cannot create a temp dir in {}", parent.display()))?;
    let mut procs = ProcessSet::default();
    let result = tokio::time::timeout(
        Duration::from_secs(config.timeout_s),
        load(&config, dir.path(), &mut procs),
    )
    .await
    .with_context(|| format!("the load test took longer than {}s", config.timeout_s))
    .and_then(|r| r);
    procs.stop_all(Duration::from_secs(5)).await;
    result
}

async fn load(
    cfg: &LoadConfig,
    dir: &std::path::Path,
    procs: &mut ProcessSet,
) -> anyhow::Result<LoadReport> {
    let mut machine = MachineInfo::now();
    let http = http_client()?;
    let ports = free_ports(2).await?;
    let (grpc, admin) = (
        format!("127.0.0.1:{}", ports[0]),
        format!("127.0.0.1:{}", ports[1]),
    );
    start_scheduler(
        procs,
        &super::Launch::default(),
        &cfg.bin_dir,
        dir,
        (&grpc, &admin),
        // The simulated hosts are raw gRPC clients, many per process; they measure the
        // scheduler's logic, not TLS, so this one scheduler runs on the opt-out.
        (
            &super::SchedulerKeys::default(),
            &df_core::config::tls::TlsSetting::Plaintext,
        ),
        &http,
    )
    .await?;
    let pid = procs
        .get("scheduler")
        .map(|d| d.pid)
        .context("internal error: scheduler not in the process set")?;

    let mut channels = Vec::with_capacity(cfg.connections as usize);
    for _ in 0..cfg.connections {
        let channel = Endpoint::from_shared(format!("http://{grpc}"))
            .context("scheduler address")?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("cannot connect to the scheduler at {grpc}"))?;
        channels.push(channel);
    }
    let channel = |i: u32| channels[(i % cfg.connections) as usize].clone();
    let task_ids: Vec<(String, String)> = (0..cfg.tasks)
        .map(|t| {
            let url = format!("http://origin.bench/blob/{t}");
            TaskId::from_url(&url, &TaskIdParams::default())
                .map(|id| (id.to_string(), url))
                .context("building a task id")
        })
        .collect::<anyhow::Result<_>>()?;

    let started = Instant::now();
    let hosts: Vec<HostLink> = futures_util::stream::iter(0..cfg.hosts)
        .map(|h| announce_host(channel(h), h))
        .buffer_unordered(cfg.concurrency as usize)
        .try_collect()
        .await?;
    let host_announce_s = started.elapsed().as_secs_f64();

    // Host h downloads tasks h, h+1, ...: each host a few different tasks, each task as many
    // hosts; registrations then arrive in random order, as a rollout's do.
    let per_host = cfg.peers.div_ceil(cfg.hosts);
    let mut order: Vec<(u32, u32)> = (0..per_host)
        .flat_map(|k| (0..cfg.hosts).map(move |h| (h, (h + k) % cfg.tasks)))
        .take(cfg.peers as usize)
        .collect();
    fastrand::shuffle(&mut order);
    let started = Instant::now();
    let sims: Vec<SimPeer> = futures_util::stream::iter(order.into_iter().enumerate())
        .map(|(i, (h, t))| {
            let (task_id, url) = task_ids[t as usize].clone();
            register(channel(i as u32), h, i, task_id, url)
        })
        .buffer_unordered(cfg.concurrency as usize)
        .try_collect()
        .await?;
    let register_s = started.elapsed().as_secs_f64();

    let latencies: Vec<f64> = sims
        .iter()
        .map(|s| s.latency.as_secs_f64() * 1000.0)
        .collect();
    let back_to_source = sims.iter().filter(|s| s.parent.is_none()).count();

    let started = Instant::now();
    let mut piece_reports = 0u64;
    for sim in &sims {
        piece_reports += report_pieces(sim, cfg.pieces);
    }
    wait_all_finished(&http, &admin, sims.len(), cfg.timeout_s).await?;
    let report_s = started.elapsed().as_secs_f64();
    let scheduler = proc_usage(pid).context("the scheduler exited during the load test")?;
    drop(sims);
    drop(hosts);
    machine.finish();

    let per_s = |n: f64, s: f64| if s > 0.0 { round3(n / s) } else { 0.0 };
    Ok(LoadReport {
        config: cfg.clone(),
        machine,
        host_announce_s: round3(host_announce_s),
        host_announces_per_s: per_s(f64::from(cfg.hosts), host_announce_s),
        register_s: round3(register_s),
        registrations_per_s: per_s(latencies.len() as f64, register_s),
        register_latency_ms: LatencyMs {
            p50: round3(quantile(&latencies, 0.5)),
            p90: round3(quantile(&latencies, 0.9)),
            p99: round3(quantile(&latencies, 0.99)),
            max: round3(quantile(&latencies, 1.0)),
        },
        answered_parents: u32::try_from(latencies.len() - back_to_source).unwrap_or(u32::MAX),
        answered_back_to_source: u32::try_from(back_to_source).unwrap_or(u32::MAX),
        piece_reports,
        report_s: round3(report_s),
        piece_reports_per_s: per_s(piece_reports as f64, report_s),
        scheduler_peak_rss_mib: round3(scheduler.peak_rss_kib as f64 / 1024.0),
        scheduler,
    })
}

fn host_id(h: u32) -> (String, String, String) {
    let ip = format!("10.{}.{}.{}", (h >> 16) & 0xff, (h >> 8) & 0xff, h & 0xff);
    let hostname = format!("sim-{h}");
    (format!("{ip}-{hostname}"), hostname, ip)
}

fn host_info(h: u32) -> pb::HostInfo {
    let (host_id, hostname, ip) = host_id(h);
    pb::HostInfo {
        host_id,
        hostname,
        ip,
        upload_port: 4000,
        admin_port: 4002,
        proxy_port: 4001,
        host_type: pb::HostType::Normal as i32,
        upload_slots: 32,
        version: df_core::VERSION.to_owned(),
        ..pb::HostInfo::default()
    }
}

async fn announce_host(channel: Channel, h: u32) -> anyhow::Result<HostLink> {
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(pb::HostRequest {
        request: Some(pb::host_request::Request::Register(host_info(h))),
    })
    .context("internal error: host stream closed")?;
    let mut inbound = SchedulerClient::new(channel)
        .announce_host(UnboundedReceiverStream::new(rx))
        .await
        .with_context(|| format!("host {h}: AnnounceHost refused"))?
        .into_inner();
    tokio::spawn(async move { while let Ok(Some(_)) = inbound.message().await {} });
    Ok(HostLink { _tx: tx })
}

async fn register(
    channel: Channel,
    h: u32,
    i: usize,
    task_id: String,
    url: String,
) -> anyhow::Result<SimPeer> {
    let (host_id, _, _) = host_id(h);
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(pb::PeerRequest {
        request: Some(PeerMsg::Register(pb::RegisterPeer {
            task_id: task_id.clone(),
            peer_id: format!("{host_id}-sim{i}"),
            host_id,
            url,
            host: Some(host_info(h)),
            ..pb::RegisterPeer::default()
        })),
    })
    .context("internal error: peer stream closed")?;
    let sent = Instant::now();
    let mut inbound = SchedulerClient::new(channel)
        .announce_peer(UnboundedReceiverStream::new(rx))
        .await
        .with_context(|| format!("peer {i}: AnnouncePeer refused"))?
        .into_inner();
    let parent = loop {
        let msg = inbound
            .message()
            .await
            .with_context(|| format!("peer {i}: stream failed"))?
            .with_context(|| format!("peer {i}: stream closed before an answer"))?;
        match msg.response {
            Some(PeerReply::Parents(p)) => {
                break Some(
                    p.parents
                        .first()
                        .map(|p| p.peer_id.clone())
                        .with_context(|| format!("peer {i}: empty parent list"))?,
                );
            }
            Some(PeerReply::BackToSource(_)) => break None,
            _ => {}
        }
    };
    let latency = sent.elapsed();
    tokio::spawn(async move { while let Ok(Some(_)) = inbound.message().await {} });
    Ok(SimPeer {
        tx,
        task_id,
        latency,
        parent,
    })
}

/// Queues every piece report and `Finished` for one simulated peer; returns the piece count.
fn report_pieces(sim: &SimPeer, pieces: u32) -> u64 {
    let send = |msg: PeerMsg| {
        // A closed stream shows up as the scheduler never seeing this peer finish.
        let _ = sim.tx.send(pb::PeerRequest { request: Some(msg) });
    };
    if sim.parent.is_none() {
        send(PeerMsg::Metadata(pb::TaskMetadata {
            content_length: u64::from(pieces) * PIECE_LENGTH,
            piece_length: PIECE_LENGTH,
            headers: Vec::new(),
            private: false,
            ranged: false,
        }));
    }
    for n in 0..pieces {
        let digest = blake3::hash(format!("{}/{n}", sim.task_id).as_bytes());
        send(PeerMsg::PieceFinished(pb::PieceFinished {
            number: n,
            digest: digest.as_bytes().to_vec(),
            source: if sim.parent.is_some() {
                pb::PieceSource::Peer as i32
            } else {
                pb::PieceSource::Origin as i32
            },
            parent_peer_id: sim.parent.clone().unwrap_or_default(),
            length: PIECE_LENGTH,
            cost_micros: 1000,
        }));
    }
    send(PeerMsg::Finished(pb::DownloadFinished {}));
    u64::from(pieces)
}

async fn wait_all_finished(
    http: &reqwest::Client,
    admin: &str,
    want: usize,
    timeout_s: u64,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(timeout_s);
    let url = format!("http://{admin}/api/v1/tasks");
    loop {
        let tasks: Vec<TaskSummary> = get_json(http, &url).await?;
        let done: usize = tasks.iter().map(|t| t.peers_succeeded).sum();
        if done >= want {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the scheduler shows {done} of {want} peers finished after {timeout_s}s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
