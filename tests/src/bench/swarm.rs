//! The swarm benchmark: one capped origin, one scheduler, one seed and N peers, each a separate
//! process with the daemons' own bandwidth limits; all N peers asked for the same object at the
//! same moment (the thundering herd). Then, in the same run, the baseline: N clients pulling the
//! same size directly from the same capped origin.
//!
//! What a run reports, and how it is measured:
//! - per peer: seconds until its client read the last byte through the peer's download API,
//!   bytes it uploaded to other peers, where its bytes came from, its peak RSS (VmHWM) and the
//!   CPU time it spent during the herd; the same for the seed and the scheduler;
//! - makespan (the slowest peer), origin bytes served (the origin's own counter), and the lower
//!   bound physics sets on the makespan, [`LowerBound`]: T* = max(S/U0, S/D, (N+1)·S/(U0+ΣU))
//!   with ΣU the upload caps of all N+1 nodes that must receive the object (seed and peers);
//! - the direct baseline's makespan and the speedup of P2P over it;
//! - optionally (`verify`), the SHA-256 of every peer's stored file against the origin's, after
//!   the timings are taken so hashing does not compete with the run.
//!
//! Each run gets a fresh cluster in its own temp dir and a fresh object (random blob seed), so
//! no run sees another's cache.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use df_core::api::{HostView, LocalTask, PeerInfo, TaskDetail};
use df_core::config::tls::TlsSetting;
use df_core::identity::Role;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::chaos::{self, ChaosOutcome, ChaosPlan};
use super::netns::{self, Lab};
use super::pull::{self, sha256_file};
use super::{
    MIB, MachineInfo, ProcUsage, ProcessSet, SchedulerSpec, binary, free_ports, get_json,
    http_client, proc_usage, reset_origin, round3, start_origin, write_file,
};
use crate::origin::{StatsSnapshot, blob_digests};

/// What to run. Rates are bytes per second; 0 is unlimited.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwarmConfig {
    /// Names the case in tables (e.g. `n8`).
    pub label: String,
    /// Object size S in bytes.
    pub size: u64,
    /// Normal peers N (the seed comes on top).
    pub peers: u32,
    /// Origin egress cap U0.
    pub origin_rate: u64,
    /// Upload cap U of every peer and the seed (`upload.rate_limit`).
    pub peer_upload: u64,
    /// Download cap D of every peer and the seed (`download.rate_limit`).
    pub peer_download: u64,
    /// `download.concurrent_pieces` of every daemon; `None` keeps the daemon's default.
    pub concurrent_pieces: Option<usize>,
    /// `upload.slots` of every daemon; `None` keeps the daemon's default.
    pub upload_slots: Option<u32>,
    /// `scheduler.candidate_parents`; `None` keeps the scheduler's default.
    #[serde(default)]
    pub candidate_parents: Option<usize>,
    /// `scheduler.origin_readers`; `None` keeps the scheduler's default.
    #[serde(default)]
    pub origin_readers: Option<usize>,
    /// Explicit piece length of the download (part of the task ID); `None` keeps the default
    /// (S/1000 rounded up to a power of two, at least 256 KiB). More pieces shorten the tail: a
    /// piece is forwarded only once whole, so each hop costs one piece-time.
    #[serde(default)]
    pub piece_length: Option<u64>,
    pub runs: u32,
    /// Every process on its own network-namespace host, caps by `tc` (see `netns.rs`).
    #[serde(default)]
    pub netns: bool,
    /// Under `netns`, keep the daemons' own limiters on as well (at the same caps): they pace
    /// what each daemon sends, where without them TCP bursts into the `tbf` queue and loses.
    #[serde(default)]
    pub netns_limiters: bool,
    /// Under `netns`, the hosts' TCP congestion control (`--netns-cc`); `None` keeps the
    /// machine's default. It moves the result: see README "Where `--netns` loses, tried".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns_cc: Option<String>,
    /// Fraction of the peers killed mid-swarm (`--churn`, see `churn.rs`); 0: none.
    #[serde(default)]
    pub churn: f64,
    /// Which peers churn kills (`--churn-readers`: origin readers).
    #[serde(default)]
    pub churn_victims: super::churn::Victims,
    /// Chaos during the herd (`df-bench chaos`, see `chaos.rs`); `None`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos: Option<ChaosPlan>,
    /// Daemon links plaintext (`tls.plaintext: true`) instead of mutual TLS with a cluster CA
    /// made for the run (`--plaintext`).
    #[serde(default)]
    pub plaintext: bool,
    /// Also run the direct baseline.
    pub baseline: bool,
    /// SHA-256 every peer's stored file against the origin's after the run.
    pub verify: bool,
    /// A run (herd plus baseline) that takes longer fails.
    pub timeout_s: u64,
    /// Where `dfscheduler`, `dfdaemon` and `df-testorigin` are.
    #[serde(skip)]
    pub bin_dir: PathBuf,
    /// Parent of the run's temp dir; the system temp dir when `None`.
    #[serde(skip)]
    pub work_dir: Option<PathBuf>,
    /// Keep the run's temp dir (`--keep`) instead of deleting it.
    #[serde(skip)]
    pub keep: bool,
}

/// The physical lower bound of the makespan and its three terms, seconds. A term whose rate is
/// unlimited is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LowerBound {
    /// S/U0: the origin must send the object at least once.
    pub origin_s: f64,
    /// S/D: every peer must receive the whole object.
    pub download_s: f64,
    /// (N+1)·S/(U0+ΣU): N+1 copies must leave the origin and the uploaders together.
    pub swarm_s: f64,
    /// T*, the largest term.
    pub t_star_s: f64,
}

impl LowerBound {
    pub fn new(size: u64, peers: u32, origin_rate: u64, upload: u64, download: u64) -> Self {
        let s = size as f64;
        let per = |rate: u64| if rate == 0 { 0.0 } else { s / rate as f64 };
        let receivers = f64::from(peers) + 1.0;
        let swarm_s = if origin_rate == 0 || upload == 0 {
            0.0
        } else {
            receivers * s / (origin_rate as f64 + receivers * upload as f64)
        };
        let (origin_s, download_s) = (per(origin_rate), per(download));
        Self {
            origin_s: round3(origin_s),
            download_s: round3(download_s),
            swarm_s: round3(swarm_s),
            t_star_s: round3(origin_s.max(download_s).max(swarm_s)),
        }
    }
}

/// One peer's (or the seed's) part of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeResult {
    pub name: String,
    /// Its client read the whole object (always false for the seed, which has no client).
    pub completed: bool,
    /// Why not, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seconds from the herd's start to the client's last byte.
    pub seconds: f64,
    pub first_byte_s: f64,
    pub bytes_received: u64,
    /// `X-Dragonfly-Source` of the response.
    pub source: String,
    pub from_origin: u64,
    pub from_seeds: u64,
    pub from_peers: u64,
    pub uploaded_bytes: u64,
    pub peak_rss_kib: u64,
    /// CPU seconds spent between the herd's start and the end of the herd.
    pub cpu_s: f64,
    /// SHA-256 of the stored file equals the origin's (`None`: not checked).
    pub sha256_ok: Option<bool>,
    /// Killed by `--churn`, this many seconds after the herd started (excluded from the
    /// makespan and the checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killed_at_s: Option<f64>,
    /// Killed while it read from the origin (`None`: not killed, or not known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killed_origin_reader: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BaselineResult {
    /// Slowest direct client, seconds.
    pub makespan_s: f64,
    pub per_client_s: Vec<f64>,
    pub origin_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SwarmRun {
    pub makespan_s: f64,
    pub makespan_over_t_star: f64,
    pub origin_bytes: u64,
    pub origin_bytes_over_size: f64,
    pub origin_requests: u64,
    pub peers: Vec<NodeResult>,
    pub seed: NodeResult,
    pub scheduler: ProcUsage,
    /// Parent -> child edges that carried bytes, from the scheduler's task DAG.
    pub dag_edges: usize,
    /// Normal peers that read any byte from the origin: helpers the scheduler gave an origin
    /// share, and peers that fell back to it.
    pub peers_from_origin: usize,
    /// Helpers whose origin share the scheduler took back for want of progress
    /// (`scheduler.reader_deadline`).
    #[serde(default)]
    pub shares_taken_back: usize,
    pub baseline: Option<BaselineResult>,
    pub speedup: Option<f64>,
    /// What the chaos did and what the clients saw (`df-bench chaos` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos: Option<ChaosOutcome>,
    /// Under `--netns`: what the links carried, and the bound at the payload rate they allow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire: Option<netns::WireUse>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SwarmSummary {
    /// Median over runs.
    pub makespan_s: f64,
    pub makespan_over_t_star: f64,
    /// Median direct makespan over runs.
    pub direct_s: Option<f64>,
    /// Median direct makespan over median P2P makespan.
    pub speedup: Option<f64>,
    /// Worst run.
    pub origin_bytes_over_size: f64,
    /// Highest over runs and peers (seed excluded; it has its own figure).
    pub peer_peak_rss_mib: f64,
    pub seed_peak_rss_mib: f64,
    pub scheduler_peak_rss_mib: f64,
    /// Mean over peers and runs.
    pub peer_cpu_s: f64,
    pub seed_cpu_s: f64,
    pub scheduler_cpu_s: f64,
    pub all_completed: bool,
    /// `None` when not verified.
    pub all_verified: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwarmReport {
    pub config: SwarmConfig,
    pub machine: MachineInfo,
    pub bound: LowerBound,
    /// max(N·S/U0, S/D): the best the direct baseline can do.
    pub direct_bound_s: f64,
    pub summary: SwarmSummary,
    pub runs: Vec<SwarmRun>,
}

/// Runs the benchmark `config.runs` times and summarises.
pub async fn run(config: SwarmConfig) -> anyhow::Result<SwarmReport> {
    anyhow::ensure!(config.peers > 0, "--peers must be at least 1");
    anyhow::ensure!(config.size > 0, "--size must be at least 1 byte");
    anyhow::ensure!(config.runs > 0, "--runs must be at least 1");
    for name in ["dfscheduler", "dfdaemon", "df-testorigin"] {
        binary(&config.bin_dir, name)?;
    }
    let mut machine = MachineInfo::now();
    let bound = LowerBound::new(
        config.size,
        config.peers,
        config.origin_rate,
        config.peer_upload,
        config.peer_download,
    );
    let http = http_client()?;
    let mut runs = Vec::new();
    for k in 0..config.runs {
        let run = tokio::time::timeout(
            Duration::from_secs(config.timeout_s),
            one_run(&config, &bound, &http),
        )
        .await
        .with_context(|| format!("run {} took longer than {}s", k + 1, config.timeout_s))?
        .with_context(|| format!("run {}", k + 1))?;
        runs.push(run);
    }
    machine.finish();
    let direct_bound_s = {
        let n = f64::from(config.peers);
        let s = config.size as f64;
        let origin = if config.origin_rate == 0 {
            0.0
        } else {
            n * s / config.origin_rate as f64
        };
        round3(origin.max(bound.download_s))
    };
    let summary = summarise(&runs, &bound);
    Ok(SwarmReport {
        config,
        machine,
        bound,
        direct_bound_s,
        summary,
        runs,
    })
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    super::quantile(&values.collect::<Vec<_>>(), 0.5)
}

fn summarise(runs: &[SwarmRun], bound: &LowerBound) -> SwarmSummary {
    let mib = |kib: u64| round3(kib as f64 / 1024.0);
    let makespan = median(runs.iter().map(|r| r.makespan_s));
    let direct = runs.iter().all(|r| r.baseline.is_some()).then(|| {
        median(
            runs.iter()
                .filter_map(|r| r.baseline.as_ref().map(|b| b.makespan_s)),
        )
    });
    let peers: Vec<&NodeResult> = runs
        .iter()
        .flat_map(|r| &r.peers)
        .filter(|p| p.killed_at_s.is_none())
        .collect();
    let mean = |xs: &[f64]| {
        if xs.is_empty() {
            0.0
        } else {
            xs.iter().sum::<f64>() / xs.len() as f64
        }
    };
    let verified: Vec<Option<bool>> = peers.iter().map(|p| p.sha256_ok).collect();
    SwarmSummary {
        makespan_s: round3(makespan),
        makespan_over_t_star: if bound.t_star_s > 0.0 {
            round3(makespan / bound.t_star_s)
        } else {
            0.0
        },
        direct_s: direct.map(round3),
        speedup: direct
            .filter(|_| makespan > 0.0)
            .map(|d| round3(d / makespan)),
        origin_bytes_over_size: runs
            .iter()
            .map(|r| r.origin_bytes_over_size)
            .fold(0.0, f64::max),
        peer_peak_rss_mib: mib(peers.iter().map(|p| p.peak_rss_kib).max().unwrap_or(0)),
        seed_peak_rss_mib: mib(runs.iter().map(|r| r.seed.peak_rss_kib).max().unwrap_or(0)),
        scheduler_peak_rss_mib: mib(runs
            .iter()
            .map(|r| r.scheduler.peak_rss_kib)
            .max()
            .unwrap_or(0)),
        peer_cpu_s: round3(mean(&peers.iter().map(|p| p.cpu_s).collect::<Vec<_>>())),
        seed_cpu_s: round3(mean(&runs.iter().map(|r| r.seed.cpu_s).collect::<Vec<_>>())),
        scheduler_cpu_s: round3(mean(
            &runs.iter().map(|r| r.scheduler.cpu_s).collect::<Vec<_>>(),
        )),
        all_completed: peers.iter().all(|p| p.completed),
        all_verified: if verified.iter().any(Option::is_none) {
            None
        } else {
            Some(verified.iter().all(|v| *v == Some(true)))
        },
    }
}

/// Addresses of one dfdaemon.
#[derive(Debug, Clone)]
struct DaemonAddrs {
    name: String,
    admin: String,
    /// Its host number under `--netns`.
    host: usize,
}

async fn one_run(
    cfg: &SwarmConfig,
    bound: &LowerBound,
    http: &reqwest::Client,
) -> anyhow::Result<SwarmRun> {
    let parent = cfg.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("df-bench-swarm-")
        .tempdir_in(&parent)
        .with_context(|| format!("cannot create a temp dir in {}", parent.display()))?;
    // Declared before the processes: the namespaces outlive the daemons inside them.
    let lab = if cfg.netns {
        let lab = Lab::create(netns::FIRST_DAEMON_HOST + cfg.peers as usize)?;
        if let Some(cc) = &cfg.netns_cc {
            lab.congestion_control(cc)?;
        }
        Some(lab)
    } else {
        None
    };
    let mut procs = ProcessSet::default();
    let result = run_cluster(cfg, bound, (http, lab.as_ref()), dir.path(), &mut procs).await;
    procs.stop_all(Duration::from_secs(5)).await;
    if cfg.keep {
        eprintln!("  kept {}", dir.keep().display());
    }
    result
}

async fn run_cluster(
    cfg: &SwarmConfig,
    bound: &LowerBound,
    (http, lab): (&reqwest::Client, Option<&Lab>),
    dir: &Path,
    procs: &mut ProcessSet,
) -> anyhow::Result<SwarmRun> {
    // Under --netns the kernel enforces the caps and the daemons' own limiters are off,
    // unless asked for too (`netns_limiters`).
    let limit = |rate: u64| {
        if lab.is_some() && !cfg.netns_limiters {
            0
        } else {
            rate
        }
    };
    if let Some(lab) = lab {
        lab.shape(netns::ORIGIN_HOST, cfg.origin_rate, 0)?;
    }
    let origin = start_origin(
        procs,
        (
            &netns::place(lab, netns::ORIGIN_HOST).0,
            netns::place(lab, netns::ORIGIN_HOST).1,
        ),
        &cfg.bin_dir,
        dir,
        limit(cfg.origin_rate),
    )
    .await?;
    let n = cfg.peers as usize;
    let ports = free_ports(2 + 3 * (n + 1)).await?;
    let pki = if cfg.plaintext {
        None
    } else {
        Some(crate::pki::ClusterPki::new("df-bench")?)
    };
    let tls = |home: &Path, role: Role, name: &str, ips: &[IpAddr]| match &pki {
        Some(pki) => pki.setting(&home.join("tls"), role, name, ips),
        None => Ok(TlsSetting::Plaintext),
    };
    let (sched_launch, sched_ip) = netns::place(lab, netns::SCHEDULER_HOST);
    let (grpc, sched_http) = (
        format!("{sched_ip}:{}", ports[0]),
        format!("{sched_ip}:{}", ports[1]),
    );
    let sched = SchedulerSpec {
        launch: sched_launch,
        bin_dir: cfg.bin_dir.clone(),
        dir: dir.to_owned(),
        grpc: grpc.clone(),
        http: sched_http.clone(),
        keys: super::SchedulerKeys {
            candidate_parents: cfg.candidate_parents,
            origin_readers: cfg.origin_readers,
        },
        tls: tls(&dir.join("scheduler"), Role::Scheduler, "scheduler", &[])?,
    };
    sched.start(procs, http).await?;

    let mut nodes = Vec::with_capacity(n + 1);
    for i in 0..=n {
        let name = if i == 0 {
            "seed-0".to_owned()
        } else {
            format!("peer-{}", i - 1)
        };
        let p = &ports[2 + 3 * i..5 + 3 * i];
        let home = dir.join(&name);
        std::fs::create_dir_all(&home)
            .with_context(|| format!("cannot create {}", home.display()))?;
        let host = netns::FIRST_DAEMON_HOST + i;
        let (launch, ip) = netns::place(lab, host);
        if let Some(lab) = lab {
            lab.shape(host, cfg.peer_upload, cfg.peer_download)?;
        }
        let limits = (limit(cfg.peer_upload), limit(cfg.peer_download));
        let config_path = home.join("dfdaemon.yaml");
        super::write_token(&home.join("admin-token"))?;
        let role = Role::of_peer(i == 0);
        let tls = tls(&home, role, &name, &[IpAddr::V4(ip)])?;
        write_file(
            &config_path,
            &format!(
                "{}{}",
                peer_yaml(cfg, (&name, ip, limits), i == 0, &grpc, p, &home),
                super::tls_yaml(&tls)
            ),
        )?;
        let path_arg = config_path.display().to_string();
        procs
            .spawn_in(
                &launch,
                &name,
                &cfg.bin_dir.join("dfdaemon"),
                &["--config", &path_arg],
                &home.join("stderr.log"),
            )
            .await?;
        nodes.push(DaemonAddrs {
            name,
            admin: format!("{ip}:{}", p[2]),
            host,
        });
    }
    for node in &nodes {
        procs.wait_healthy(&node.name, &node.admin, http).await?;
    }
    wait_hosts_connected(http, &sched_http, n + 1).await?;

    let blob_seed = fastrand::u64(..);
    let url = format!("{origin}/blob/{}/{blob_seed}", cfg.size);
    reset_origin(http, &origin).await?;
    let pids: Vec<(String, u32)> = ["scheduler".to_owned()]
        .into_iter()
        .chain(nodes.iter().map(|d| d.name.clone()))
        .filter_map(|name| procs.get(&name).map(|d| (name, d.pid)))
        .collect();
    let cpu_before: Vec<f64> = pids
        .iter()
        .map(|(_, pid)| proc_usage(*pid).map_or(0.0, |u| u.cpu_s))
        .collect();

    let admins: Vec<(String, String)> = nodes[1..]
        .iter()
        .map(|p| (p.name.clone(), p.admin.clone()))
        .collect();
    let wire_before = lab.map(Lab::wire_counters).transpose()?;
    let (pulls, killed, chaos) = match (&cfg.chaos, lab) {
        (Some(plan), _) => {
            let env = chaos::Env {
                http,
                origin: &origin,
                sched: &sched,
                t_star_s: bound.t_star_s,
                peers: pids.get(2..).unwrap_or_default(),
                admins: &admins,
                url: &url,
                piece_length: cfg.piece_length,
                size: cfg.size,
                blob_seed,
            };
            let (pulls, killed, outcome) = chaos::herd(plan, &env, procs).await?;
            (pulls, killed, Some(outcome))
        }
        (None, lab) => {
            let candidates =
                super::churn::Candidate::join(pids.get(2..).unwrap_or_default(), &admins);
            let probe = super::churn::ReaderProbe {
                http: http.clone(),
                scheduler: sched_http.clone(),
                victims: cfg.churn_victims,
            };
            let killer =
                super::churn::Killer::start(cfg.churn, bound.t_star_s, &candidates, Some(probe));
            let pulls = match lab {
                Some(lab) => {
                    let admins: Vec<(usize, String)> = nodes[1..]
                        .iter()
                        .map(|p| (p.host, p.admin.clone()))
                        .collect();
                    netns::herd(lab, &admins, &url, cfg.piece_length).await
                }
                None => {
                    let admins: Vec<String> = admins.into_iter().map(|(_, a)| a).collect();
                    pull::herd(http, &admins, &url, cfg.piece_length, false).await
                }
            };
            (pulls, killer.finish().await, None)
        }
    };

    let wire_after = lab.map(Lab::wire_counters).transpose()?;
    let usage_after: Vec<ProcUsage> = pids
        .iter()
        .map(|(_, pid)| proc_usage(*pid).unwrap_or_default())
        .collect();
    let usage = |i: usize| {
        let mut u = usage_after[i];
        u.cpu_s = round3(u.cpu_s - cpu_before[i]);
        u
    };
    let stats: StatsSnapshot = get_json(http, &format!("{origin}/_stats")).await?;
    let task_id = pulls.iter().find_map(|p| p.task_id.clone());

    let mut results = Vec::with_capacity(n + 1);
    for (i, node) in nodes.iter().enumerate() {
        if let Some(kill) = killed.iter().find(|k| k.name == node.name) {
            let r = NodeResult {
                name: node.name.clone(),
                killed_at_s: Some(kill.at_s),
                killed_origin_reader: kill.origin_reader,
                ..NodeResult::default()
            };
            results.push((None, r));
            continue;
        }
        let u = usage(i + 1);
        let info: PeerInfo = get_json(http, &format!("http://{}/api/v1/info", node.admin)).await?;
        let local = match &task_id {
            Some(id) => {
                get_json::<LocalTask>(http, &format!("http://{}/api/v1/tasks/{id}", node.admin))
                    .await
                    .ok()
            }
            None => None,
        };
        let pull = (i > 0).then(|| &pulls[i - 1]);
        results.push((
            local.as_ref().map(|t| t.content_path.clone()),
            NodeResult {
                name: node.name.clone(),
                completed: pull.is_some_and(|p| p.error.is_none() && p.bytes == cfg.size),
                error: pull.and_then(|p| p.error.clone()),
                seconds: pull.map_or(0.0, |p| round3(p.seconds)),
                first_byte_s: pull.map_or(0.0, |p| round3(p.first_byte_s)),
                bytes_received: pull.map_or(0, |p| p.bytes),
                source: pull.map(|p| p.source.clone()).unwrap_or_default(),
                from_origin: local.as_ref().map_or(0, |t| t.bytes_from_origin),
                from_seeds: local.as_ref().map_or(0, |t| t.bytes_from_seeds),
                from_peers: local.as_ref().map_or(0, |t| t.bytes_from_peers),
                uploaded_bytes: info.uploaded_bytes,
                peak_rss_kib: u.peak_rss_kib,
                cpu_s: u.cpu_s,
                sha256_ok: None,
                killed_at_s: None,
                killed_origin_reader: None,
            },
        ));
    }
    let dag = match &task_id {
        Some(id) => get_json::<TaskDetail>(http, &format!("http://{sched_http}/api/v1/tasks/{id}"))
            .await
            .ok(),
        None => None,
    };
    let dag_edges = dag
        .as_ref()
        .map_or(0, |t| t.edges.iter().filter(|e| e.bytes > 0).count());
    let shares_taken_back = dag
        .as_ref()
        .map_or(0, |t| t.peers.iter().filter(|p| p.share_withdrawn).count());

    let baseline = if cfg.baseline {
        Some(pull::direct(http, &origin, cfg.size, blob_seed ^ 1, n).await?)
    } else {
        None
    };

    if cfg.verify {
        let (size, seed) = (cfg.size, blob_seed);
        let want = tokio::task::spawn_blocking(move || blob_digests(size, seed).sha256)
            .await
            .context("hashing the origin's object")?;
        for ((path, node), pull) in results.iter_mut().skip(1).zip(&pulls) {
            if node.killed_at_s.is_some() {
                continue;
            }
            // The bytes the client read, when hashed (a peer that could not cache the object
            // has no file; it streamed them).
            let body_ok = pull
                .sha256
                .as_ref()
                .filter(|_| pull.error.is_none() && pull.bytes == cfg.size)
                .map(|h| *h == want);
            node.sha256_ok = Some(match path.clone() {
                Some(path) => {
                    let got = tokio::task::spawn_blocking(move || sha256_file(Path::new(&path)))
                        .await
                        .context("hashing a peer's file")?;
                    got.is_ok_and(|g| g == want) && body_ok.unwrap_or(true)
                }
                None => body_ok.unwrap_or(false),
            });
        }
    }

    let mut results = results.into_iter().map(|(_, r)| r);
    let seed = results.next().unwrap_or_default();
    let peers: Vec<NodeResult> = results.collect();
    let makespan = peers
        .iter()
        .filter(|p| p.killed_at_s.is_none())
        .map(|p| p.seconds)
        .fold(0.0, f64::max);
    let speedup = baseline
        .as_ref()
        .filter(|_| makespan > 0.0)
        .map(|b| round3(b.makespan_s / makespan));
    let wire = wire_before.zip(wire_after).and_then(|(before, after)| {
        let links = nodes.iter().zip(std::iter::once(&seed).chain(&peers));
        let carried = links
            .filter(|(_, r)| r.killed_at_s.is_none())
            .map(|(node, r)| {
                let link = after.since(&before, node.host);
                // What came over the link, not what the client read from its own node (the
                // seed has no client).
                let fetched = r.from_origin + r.from_peers + r.from_seeds;
                (link, fetched, r.uploaded_bytes)
            });
        netns::WireUse::new(carried, bound, makespan)
    });
    Ok(SwarmRun {
        makespan_s: round3(makespan),
        makespan_over_t_star: if bound.t_star_s > 0.0 {
            round3(makespan / bound.t_star_s)
        } else {
            0.0
        },
        origin_bytes: stats.bytes_served,
        origin_bytes_over_size: round3(stats.bytes_served as f64 / cfg.size as f64),
        origin_requests: stats.requests,
        peers_from_origin: peers.iter().filter(|p| p.from_origin > 0).count(),
        peers,
        seed,
        scheduler: usage(0),
        dag_edges,
        shares_taken_back,
        baseline,
        speedup,
        chaos,
        wire,
    })
}

fn peer_yaml(
    cfg: &SwarmConfig,
    (name, ip, (upload, download)): (&str, Ipv4Addr, (u64, u64)),
    seed: bool,
    scheduler: &str,
    ports: &[u16],
    home: &Path,
) -> String {
    let concurrent = cfg
        .concurrent_pieces
        .map(|c| format!("  concurrent_pieces: {c}\n"))
        .unwrap_or_default();
    let slots = cfg
        .upload_slots
        .map(|n| format!("  slots: {n}\n"))
        .unwrap_or_default();
    // Chaos: one peer whose disk cannot hold the object (see `chaos.rs`).
    let capacity = cfg
        .chaos
        .as_ref()
        .filter(|c| c.full_disk_peer.as_deref() == Some(name))
        .map(|c| format!("  capacity: {}\n", c.full_disk_capacity))
        .unwrap_or_default();
    format!(
        "seed: {seed}\n\
         host:\n  hostname: \"{name}\"\n  ip: {ip}\n\
         schedulers: [\"{scheduler}\"]\n\
         server:\n  upload_addr: \"{ip}:{}\"\n  proxy_addr: \"{ip}:{}\"\n  admin_addr: \"{ip}:{}\"\n\
         upload:\n  rate_limit: {}\n{slots}\
         download:\n  rate_limit: {}\n{concurrent}\
         storage:\n  dir: \"{}\"\n{capacity}\
         proxy:\n  enabled: false\n  allow_private_destinations: true\n  destination_ports: []\n\
         admin:\n  token_file: \"{}\"\n\
         log:\n  dir: \"{}\"\n  level: info\n  stderr: \"off\"\n",
        ports[0],
        ports[1],
        ports[2],
        upload,
        download,
        home.join("data").display(),
        home.join("admin-token").display(),
        home.join("log").display(),
    )
}

/// Waits until the scheduler lists `want` connected hosts, so the seed is known before the
/// herd (a peer registering first would otherwise fetch from the origin itself).
async fn wait_hosts_connected(
    http: &reqwest::Client,
    scheduler: &str,
    want: usize,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let url = format!("http://{scheduler}/api/v1/hosts");
    loop {
        let hosts: Vec<HostView> = get_json(http, &url).await?;
        let connected = hosts.iter().filter(|h| h.connected).count();
        if connected >= want {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {connected} of {want} daemons connected to the scheduler within 20s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A markdown table of several reports, one row per case, for the README.
pub fn markdown_table(reports: &[SwarmReport]) -> String {
    let rate = |r: u64| {
        if r == 0 {
            "-".to_owned()
        } else {
            format!("{}", r / MIB)
        }
    };
    let mut out = String::from(
        "| case | N | S MiB | U0 / U / D MiB/s | T* s | makespan s | makespan / T* | origin bytes / S | direct s | speedup | peer RSS MiB | scheduler RSS MiB | CPU s per peer |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in reports {
        let c = &r.config;
        let s = &r.summary;
        let opt =
            |v: Option<f64>, unit: &str| v.map_or("-".to_owned(), |v| format!("{v:.2}{unit}"));
        out.push_str(&format!(
            "| {} | {} | {} | {} / {} / {} | {:.2} | {:.2} | {:.2} | {:.3} | {} | {} | {:.0} | {:.0} | {:.2} |\n",
            c.label,
            c.peers,
            c.size / MIB,
            rate(c.origin_rate),
            rate(c.peer_upload),
            rate(c.peer_download),
            r.bound.t_star_s,
            s.makespan_s,
            s.makespan_over_t_star,
            s.origin_bytes_over_size,
            opt(s.direct_s, ""),
            opt(s.speedup, "x"),
            s.peer_peak_rss_mib.max(s.seed_peak_rss_mib),
            s.scheduler_peak_rss_mib,
            s.peer_cpu_s,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_its_largest_term() {
        // 8 peers + seed, 256 MiB, all caps 32 MiB/s: the origin and the downlink bind at 8 s;
        // the swarm term is 9·256/(32+9·32) = 7.2 s.
        let b = LowerBound::new(256 * MIB, 8, 32 * MIB, 32 * MIB, 32 * MIB);
        assert_eq!(b.origin_s, 8.0);
        assert_eq!(b.download_s, 8.0);
        assert_eq!(b.swarm_s, 7.2);
        assert_eq!(b.t_star_s, 8.0);
        // Uploads at a quarter of the downlink: the swarm's upload capacity binds.
        let b = LowerBound::new(256 * MIB, 8, 64 * MIB, 16 * MIB, 64 * MIB);
        assert_eq!(b.swarm_s, round3(9.0 * 256.0 / (64.0 + 9.0 * 16.0)));
        assert_eq!(b.t_star_s, b.swarm_s);
        // Unlimited rates contribute nothing.
        assert_eq!(LowerBound::new(MIB, 2, 0, 0, 0).t_star_s, 0.0);
    }
}
