//! `df-bench`: the benchmarks of `df_tests::bench` on the command line. It starts the release
//! binaries it finds next to itself (or in `--bin-dir`), prints a summary, writes JSON, and
//! asserts nothing: figures are reported, not checked. `scripts/bench-swarm` runs the matrix.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use df_core::config::ByteSize;
use df_tests::bench::chaos::{self, ChaosPlan};
use df_tests::bench::churn;
use df_tests::bench::scheduler_load::{self, LoadConfig};
use df_tests::bench::sim::{self, driver::DriverConfig, report::SimReport, scenario::SimConfig};
use df_tests::bench::swarm::{self, SwarmConfig, SwarmReport};
use df_tests::bench::{MIB, write_json};

/// Benchmarks of dragonfly-lite on one machine, with real daemon processes on 127.0.0.1.
#[derive(Debug, Parser)]
#[command(version, max_term_width = 100)]
struct Cli {
    /// Where dfscheduler, dfdaemon and df-testorigin are [default: this binary's directory].
    #[arg(long, global = true, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Parent directory for the runs' temp dirs (daemon data, logs) [default: the system's].
    #[arg(long, global = true, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Keep each swarm run's temp dir (daemon configs, logs, data) instead of deleting it; its
    /// path is printed. For reading the daemons' logs after a run.
    #[arg(long, global = true)]
    keep: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A thundering herd of N peers through a seed and a capped origin, against the physical
    /// lower bound and against N clients pulling directly from the origin.
    Swarm(SwarmArgs),
    /// One swarm run with chaos (a quarter of the peers killed, the scheduler restarted, one
    /// peer's disk too small, the origin answering 503 for a while) against the same run
    /// without; clients retry like real ones and every byte they read is SHA-256-checked.
    Chaos(ChaosArgs),
    /// Thousands of simulated peers registering and reporting pieces on one real scheduler.
    SchedulerLoad(LoadArgs),
    /// Merges `swarm` results into one JSON file and prints them as a markdown table.
    Table(TableArgs),
    /// A discrete-event, flow-level simulation of N hosts driving the real scheduler mesh and
    /// piece picker modules (thousands of hosts in seconds; nothing is started).
    Sim(SimArgs),
    /// Merges `sim` results into one JSON file and prints them as a markdown table, and the
    /// simulated makespans next to measured ones (`--real`).
    SimTable(SimTableArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
struct SimArgs {
    /// Case name in tables.
    #[arg(long, default_value = "sim")]
    label: String,
    /// Normal peers N.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    peers: u32,
    /// Seed hosts (one per task at most is used, chosen by task number).
    #[arg(long, value_name = "N", default_value_t = 1)]
    seeds: u32,
    /// Total size S, split evenly over --layers objects (e.g. 1GiB, 3000000000).
    #[arg(long, value_name = "BYTES", default_value = "1GiB")]
    size: ByteSize,
    #[arg(long, value_name = "K", default_value_t = 1)]
    layers: u32,
    /// Piece length [default: the daemons' rule, next power of two of size/500, 256 KiB..64 MiB].
    #[arg(long, value_name = "BYTES")]
    piece_length: Option<ByteSize>,
    /// Origin egress cap U0, bytes per second; 0 = unlimited.
    #[arg(long, value_name = "BYTES", default_value = "64MiB")]
    origin_rate: ByteSize,
    /// Upload cap U of every host; 0 = unlimited.
    #[arg(long, value_name = "BYTES", default_value = "16MiB")]
    peer_upload: ByteSize,
    /// Download cap D of every host; 0 = unlimited.
    #[arg(long, value_name = "BYTES", default_value = "16MiB")]
    peer_download: ByteSize,
    /// Neighbours per peer [default: the scheduler's scheduler.candidate_parents].
    #[arg(long, value_name = "N")]
    degree: Option<usize>,
    /// Fetches in flight per peer [default: the daemon's download.concurrent_pieces].
    #[arg(long, value_name = "N")]
    concurrent_pieces: Option<usize>,
    /// Uploads at once per host before it answers busy [default: the daemon's upload.slots];
    /// 0: no cap.
    #[arg(long, value_name = "N")]
    upload_slots: Option<u32>,
    /// Hosts do not advertise their upload load with their bitmaps.
    #[arg(long)]
    no_load_advert: bool,
    /// Hosts that read disjoint shares of a task from the origin, the seed included
    /// [default: the scheduler's scheduler.origin_readers]; 1: the seed alone.
    #[arg(long, value_name = "N")]
    origin_readers: Option<usize>,
    /// Spread the peers' starts uniformly over this many milliseconds (0: all at once).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    start_spread_ms: u64,
    #[arg(long, value_name = "SEED", default_value_t = 1)]
    rng_seed: u64,
    /// Stop at this simulated time, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3600.0)]
    limit: f64,
    /// What to print: a summary for people or the JSON result.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    output: Output,
    /// Also write the JSON result to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct SwarmArgs {
    /// Case name in tables.
    #[arg(long, default_value = "swarm")]
    label: String,
    /// Object size S (e.g. 256MiB).
    #[arg(long, value_name = "BYTES", default_value = "256MiB")]
    size: ByteSize,
    /// Normal peers N; a seed comes on top.
    #[arg(long, value_name = "N", default_value_t = 8)]
    peers: u32,
    /// Origin egress cap U0, bytes per second; 0 = unlimited.
    #[arg(long, value_name = "BYTES", default_value = "32MiB")]
    origin_rate: ByteSize,
    /// Upload cap U of every peer and the seed; 0 = unlimited.
    #[arg(long, value_name = "BYTES", default_value = "32MiB")]
    peer_upload: ByteSize,
    /// Download cap D of every peer and the seed; 0 = unlimited.
    #[arg(long, value_name = "BYTES", default_value = "32MiB")]
    peer_download: ByteSize,
    /// `download.concurrent_pieces` of every daemon [default: the daemon's].
    #[arg(long, value_name = "N")]
    concurrent_pieces: Option<usize>,
    /// `upload.slots` (uploads of one task at once) of every daemon [default: the daemon's].
    #[arg(long, value_name = "N")]
    upload_slots: Option<u32>,
    /// `scheduler.candidate_parents` (mesh neighbours per peer) [default: the scheduler's].
    #[arg(long, value_name = "N")]
    candidate_parents: Option<usize>,
    /// `scheduler.origin_readers` (hosts that read distinct parts of the object from the
    /// origin, the seed included) [default: the scheduler's].
    #[arg(long, value_name = "N")]
    origin_readers: Option<usize>,
    /// Explicit piece length of the download (part of the task ID) [default: the daemons' rule,
    /// S/1000 rounded up to a power of two, >= 256 KiB].
    #[arg(long, value_name = "BYTES")]
    piece_length: Option<ByteSize>,
    #[arg(long, value_name = "K", default_value_t = 1)]
    runs: u32,
    /// Kill this fraction of the peers (SIGKILL) at random moments mid-swarm; the case then
    /// runs twice, without and with churn, and reports the survivors' cost.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0)]
    churn: f64,
    /// With --churn: kill peers that read from the origin at that moment (helpers), to
    /// measure what losing a reader costs the origin.
    #[arg(long, requires = "churn")]
    churn_readers: bool,
    /// Put every process on its own network-namespace host with the caps enforced by the
    /// kernel (tc tbf) and the daemons' limiters off; needs root.
    #[arg(long)]
    netns: bool,
    /// With --netns: keep the daemons' own rate limiters on too, at the same caps (they pace
    /// each daemon's sending under the kernel's caps).
    #[arg(long, requires = "netns")]
    netns_limiters: bool,
    /// With --netns: the hosts' TCP congestion control (e.g. cubic, bbr) [default: the
    /// machine's]; it must be in net.ipv4.tcp_allowed_congestion_control.
    #[arg(long, requires = "netns", value_name = "ALGORITHM")]
    netns_cc: Option<String>,
    /// Skip the direct baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Daemon links in plaintext (`tls.plaintext: true`) instead of mutual TLS with a
    /// cluster CA made for the run, to measure what TLS costs.
    #[arg(long)]
    plaintext: bool,
    /// Skip the SHA-256 check of every peer's file after the run.
    #[arg(long)]
    no_verify: bool,
    /// Fail a run (herd and baseline) that takes longer, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    timeout: u64,
    /// Result file.
    #[arg(long, value_name = "FILE", default_value = "target/bench/swarm.json")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ChaosArgs {
    /// Case name in tables.
    #[arg(long, default_value = "chaos")]
    label: String,
    /// Object size S.
    #[arg(long, value_name = "BYTES", default_value = "64MiB")]
    size: ByteSize,
    /// Normal peers N; a seed comes on top.
    #[arg(long, value_name = "N", default_value_t = 16)]
    peers: u32,
    /// Origin egress cap U0, bytes per second (must be capped: events are placed by T*).
    #[arg(long, value_name = "BYTES", default_value = "16MiB")]
    origin_rate: ByteSize,
    /// Upload cap U of every peer and the seed.
    #[arg(long, value_name = "BYTES", default_value = "16MiB")]
    peer_upload: ByteSize,
    /// Download cap D of every peer and the seed.
    #[arg(long, value_name = "BYTES", default_value = "16MiB")]
    peer_download: ByteSize,
    /// Explicit piece length of the download [default: the daemons' rule, S/1000 rounded up to
    /// a power of two, >= 256 KiB].
    #[arg(long, value_name = "BYTES")]
    piece_length: Option<ByteSize>,
    /// Share of the peers killed with SIGKILL mid-swarm.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.25)]
    kill: f64,
    /// How long the origin answers 503, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    outage_ms: u64,
    /// `storage.capacity` of the peer whose disk cannot hold the object (below S).
    #[arg(long, value_name = "BYTES", default_value = "1MiB")]
    full_disk_capacity: ByteSize,
    /// Daemon links in plaintext instead of mutual TLS.
    #[arg(long)]
    plaintext: bool,
    /// Fail a run that takes longer, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    timeout: u64,
    /// What to print: a summary for people or the JSON result.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    output: Output,
    /// Result file.
    #[arg(long, value_name = "FILE", default_value = "target/bench/chaos.json")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct LoadArgs {
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    peers: u32,
    #[arg(long, value_name = "N", default_value_t = 100)]
    tasks: u32,
    /// Hosts the peers run on; each host downloads peers/hosts different tasks.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    hosts: u32,
    /// Pieces per task each peer reports.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pieces: u32,
    /// HTTP/2 connections to the scheduler, shared by the simulated hosts and peers.
    #[arg(long, value_name = "N", default_value_t = 100)]
    connections: u32,
    /// Registrations in flight at once.
    #[arg(long, value_name = "N", default_value_t = 256)]
    concurrency: u32,
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    timeout: u64,
    #[arg(
        long,
        value_name = "FILE",
        default_value = "target/bench/scheduler-load.json"
    )]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct SimTableArgs {
    /// `sim` result files, in table order.
    #[arg(required = true, value_name = "FILE")]
    inputs: Vec<PathBuf>,
    /// `swarm` result files to compare with the `sim` cases of the same label, N and S.
    #[arg(long, value_name = "FILE")]
    real: Vec<PathBuf>,
    /// Merged result file (`{"cases": [...]}`).
    #[arg(long, value_name = "FILE", default_value = "target/bench/sim.json")]
    out: PathBuf,
}

/// Reads a JSON result written by `df-bench <kind>`.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path, kind: &str) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a df-bench {kind} result", path.display()))
}

#[derive(Debug, clap::Args)]
struct TableArgs {
    /// `swarm` result files, in table order.
    #[arg(required = true, value_name = "FILE")]
    inputs: Vec<PathBuf>,
    /// Merged result file (`{"cases": [...]}`).
    #[arg(long, value_name = "FILE", default_value = "target/bench/swarm.json")]
    out: PathBuf,
}

/// Counts live heap bytes for `df-bench sim`'s scheduler memory figure (see
/// `df_tests::bench::sim::heap`); every call goes straight to the system allocator.
struct CountingAlloc;

// GlobalAlloc is an unsafe trait; this implementation only forwards to `System` with the same
// arguments (so it upholds exactly System's contract) and adds to a counter.
#[allow(unsafe_code)]
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        sim::heap::record(layout.size() as i64);
        // SAFETY: forwarded unchanged; the caller upholds GlobalAlloc::alloc's contract.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        sim::heap::record(-(layout.size() as i64));
        // SAFETY: forwarded unchanged; `ptr` came from `alloc` above, i.e. from System.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        sim::heap::record(new as i64 - layout.size() as i64);
        // SAFETY: forwarded unchanged; the caller upholds GlobalAlloc::realloc's contract.
        unsafe { std::alloc::System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[tokio::main]
async fn main() -> ExitCode {
    sim::heap::mark_installed();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("df-bench: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn default_bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this binary's path")?;
    exe.parent()
        .map(Path::to_owned)
        .context("this binary has no parent directory")
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let bin_dir = match cli.bin_dir {
        Some(dir) => dir,
        None => default_bin_dir()?,
    };
    match cli.command {
        Command::Swarm(a) => {
            let out = a.out.clone();
            let churn = a.churn;
            let config = SwarmConfig {
                label: a.label,
                size: a.size.0,
                peers: a.peers,
                origin_rate: a.origin_rate.0,
                peer_upload: a.peer_upload.0,
                peer_download: a.peer_download.0,
                concurrent_pieces: a.concurrent_pieces,
                upload_slots: a.upload_slots,
                candidate_parents: a.candidate_parents,
                origin_readers: a.origin_readers,
                piece_length: a.piece_length.map(|b| b.0),
                runs: a.runs,
                churn: 0.0,
                churn_victims: if a.churn_readers {
                    churn::Victims::OriginReaders
                } else {
                    churn::Victims::Any
                },
                chaos: None,
                netns: a.netns,
                netns_limiters: a.netns_limiters,
                netns_cc: a.netns_cc.clone(),
                plaintext: a.plaintext,
                baseline: !a.no_baseline,
                verify: !a.no_verify,
                timeout_s: a.timeout,
                bin_dir,
                work_dir: cli.work_dir,
                keep: cli.keep,
            };
            if churn > 0.0 {
                let report = churn::run(config, churn).await?;
                print_swarm(&report.reference);
                print_swarm(&report.churned);
                println!(
                    "  churn {:.0}%: {} peers killed ({} of them origin readers); survivors' \
                     makespan {:.2}s = {:.2}x the run without churn, {:.2}x T*; survivors all \
                     completed: {}, verified: {}",
                    churn * 100.0,
                    report.killed,
                    report.killed_origin_readers,
                    report.survivors_makespan_s,
                    report.over_reference,
                    report.over_t_star,
                    report.survivors_completed,
                    report
                        .survivors_verified
                        .map_or("not checked".to_owned(), |v| v.to_string()),
                );
                write_json(&out, &report)?;
            } else {
                let report = swarm::run(config).await?;
                print_swarm(&report);
                write_json(&out, &report)?;
            }
            println!("wrote {}", out.display());
        }
        Command::Chaos(a) => run_chaos(a, bin_dir, (cli.work_dir, cli.keep)).await?,
        Command::SchedulerLoad(a) => {
            let out = a.out.clone();
            let report = scheduler_load::run(LoadConfig {
                peers: a.peers,
                tasks: a.tasks,
                hosts: a.hosts,
                pieces: a.pieces,
                connections: a.connections,
                concurrency: a.concurrency,
                timeout_s: a.timeout,
                bin_dir,
                work_dir: cli.work_dir,
            })
            .await?;
            let l = &report.register_latency_ms;
            println!(
                "{} hosts announced in {:.2}s ({:.0}/s); {} peers on {} tasks registered in {:.2}s \
                 ({:.0}/s); first answer p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms \
                 ({} parents, {} back to source)",
                report.config.hosts,
                report.host_announce_s,
                report.host_announces_per_s,
                report.config.peers,
                report.config.tasks,
                report.register_s,
                report.registrations_per_s,
                l.p50,
                l.p99,
                l.max,
                report.answered_parents,
                report.answered_back_to_source,
            );
            println!(
                "{} piece reports processed in {:.2}s ({:.0}/s); scheduler peak RSS {:.1} MiB, \
                 CPU {:.2}s; load average {:?} -> {:?} on {} CPUs",
                report.piece_reports,
                report.report_s,
                report.piece_reports_per_s,
                report.scheduler_peak_rss_mib,
                report.scheduler.cpu_s,
                report.machine.loadavg_start,
                report.machine.loadavg_end,
                report.machine.nproc,
            );
            write_json(&out, &report)?;
            println!("wrote {}", out.display());
        }
        Command::Sim(a) => {
            let mut driver = DriverConfig::daemon_defaults(a.rng_seed);
            driver.degree = a.degree.unwrap_or(driver.degree);
            driver.concurrent = a.concurrent_pieces.unwrap_or(driver.concurrent);
            driver.upload_slots = a.upload_slots.unwrap_or(driver.upload_slots);
            driver.advertise_load = !a.no_load_advert;
            if a.origin_readers == Some(0) {
                anyhow::bail!("--origin-readers 0: at least the seed reads the origin (1)");
            }
            driver.origin_readers = a.origin_readers.unwrap_or(driver.origin_readers);
            let report = sim::run(
                SimConfig {
                    label: a.label,
                    peers: a.peers,
                    seeds: a.seeds,
                    size: a.size.0,
                    layers: a.layers,
                    piece_length: a.piece_length.map(|b| b.0),
                    origin_rate: a.origin_rate.0,
                    peer_upload: a.peer_upload.0,
                    peer_download: a.peer_download.0,
                    start_spread_ms: a.start_spread_ms,
                    rng_seed: a.rng_seed,
                    limit_s: a.limit,
                },
                driver,
            )?;
            match a.output {
                Output::Table => print!("{}", report.text()),
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&report).context("cannot encode the result")?
                ),
            }
            if let Some(out) = &a.out {
                write_json(out, &report)?;
            }
        }
        Command::SimTable(a) => {
            let cases: Vec<SimReport> = a
                .inputs
                .iter()
                .map(|p| read_json(p, "sim"))
                .collect::<anyhow::Result<_>>()?;
            let mut real = Vec::with_capacity(a.real.len());
            for path in &a.real {
                let r: SwarmReport = read_json(path, "swarm")?;
                real.push((
                    r.config.label,
                    r.config.peers,
                    r.config.size,
                    r.summary.makespan_s,
                ));
            }
            print!("{}", sim::report::markdown_table(&cases));
            if !real.is_empty() {
                println!();
                print!("{}", sim::report::validation_table(&cases, &real));
            }
            write_json(&a.out, &serde_json::json!({ "cases": cases }))?;
            println!("wrote {}", a.out.display());
        }
        Command::Table(a) => {
            let cases: Vec<SwarmReport> = a
                .inputs
                .iter()
                .map(|p| read_json(p, "swarm"))
                .collect::<anyhow::Result<_>>()?;
            print!("{}", swarm::markdown_table(&cases));
            write_json(&a.out, &serde_json::json!({ "cases": cases }))?;
            println!("wrote {}", a.out.display());
        }
    }
    Ok(())
}

async fn run_chaos(
    a: ChaosArgs,
    bin_dir: PathBuf,
    (work_dir, keep): (Option<PathBuf>, bool),
) -> anyhow::Result<()> {
    let config = SwarmConfig {
        label: a.label,
        size: a.size.0,
        peers: a.peers,
        origin_rate: a.origin_rate.0,
        peer_upload: a.peer_upload.0,
        peer_download: a.peer_download.0,
        concurrent_pieces: None,
        upload_slots: None,
        candidate_parents: None,
        origin_readers: None,
        piece_length: a.piece_length.map(|b| b.0),
        runs: 1,
        churn: 0.0,
        churn_victims: churn::Victims::Any,
        chaos: None,
        netns: false,
        netns_limiters: false,
        netns_cc: None,
        plaintext: a.plaintext,
        baseline: false,
        verify: true,
        timeout_s: a.timeout,
        bin_dir,
        work_dir,
        keep,
    };
    // The last peer has the small disk; the victims are drawn from the others.
    let plan = ChaosPlan {
        kill_fraction: a.kill,
        outage_ms: a.outage_ms,
        full_disk_peer: Some(format!("peer-{}", a.peers.saturating_sub(1))),
        full_disk_capacity: a.full_disk_capacity.0,
    };
    let report = chaos::run(config, plan).await?;
    match a.output {
        Output::Table => {
            print_swarm(&report.reference);
            print_swarm(&report.chaotic);
            print!("{}", chaos::text(&report));
        }
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).context("cannot encode the result")?
        ),
    }
    write_json(&a.out, &report)?;
    if a.output == Output::Table {
        println!("wrote {}", a.out.display());
    }
    Ok(())
}

fn print_swarm(r: &SwarmReport) {
    let c = &r.config;
    let s = &r.summary;
    println!(
        "{}: N={} S={} MiB, U0={} U={} D={} MiB/s; T* = {:.2}s (origin {:.2}, download {:.2}, swarm {:.2})",
        c.label,
        c.peers,
        c.size / MIB,
        c.origin_rate / MIB,
        c.peer_upload / MIB,
        c.peer_download / MIB,
        r.bound.t_star_s,
        r.bound.origin_s,
        r.bound.download_s,
        r.bound.swarm_s,
    );
    for (k, run) in r.runs.iter().enumerate() {
        let times: Vec<String> = run
            .peers
            .iter()
            .map(|p| match p.killed_at_s {
                Some(at) => format!("killed@{at:.2}"),
                None => format!("{:.2}", p.seconds),
            })
            .collect();
        println!(
            "  run {}: makespan {:.2}s ({:.2}x T*), origin {:.3}x S in {} requests, direct {}, \
             peers {}s, {} DAG edges, {} peers went to the origin, {} origin shares taken back",
            k + 1,
            run.makespan_s,
            run.makespan_over_t_star,
            run.origin_bytes_over_size,
            run.origin_requests,
            run.baseline
                .as_ref()
                .map_or("-".to_owned(), |b| format!("{:.2}s", b.makespan_s)),
            times.join(" "),
            run.dag_edges,
            run.peers_from_origin,
            run.shares_taken_back,
        );
        if let Some(w) = &run.wire {
            println!(
                "    links: {:.3} frame bytes per payload byte down, {:.3} up (TCP/IP framing \
                 alone: {:.3}); T* at the payload rate that framing leaves {:.2}s; makespan \
                 {:.3}x that",
                w.down_per_payload,
                w.up_per_payload,
                df_tests::bench::netns::TCP_FRAMING,
                w.t_star_s,
                w.makespan_over_t_star,
            );
        }
    }
    println!(
        "  median makespan {:.2}s = {:.2}x T*; speedup over direct {}; origin egress {:.3}x S; \
         peak RSS peer {:.1} / seed {:.1} / scheduler {:.1} MiB; CPU s peer {:.2} / seed {:.2} / \
         scheduler {:.2}; all completed: {}; verified: {}",
        s.makespan_s,
        s.makespan_over_t_star,
        s.speedup.map_or("-".to_owned(), |v| format!("{v:.2}x")),
        s.origin_bytes_over_size,
        s.peer_peak_rss_mib,
        s.seed_peak_rss_mib,
        s.scheduler_peak_rss_mib,
        s.peer_cpu_s,
        s.seed_cpu_s,
        s.scheduler_cpu_s,
        s.all_completed,
        s.all_verified
            .map_or("not checked".to_owned(), |v| v.to_string()),
    );
    println!(
        "  load average {:?} -> {:?} on {} CPUs",
        r.machine.loadavg_start, r.machine.loadavg_end, r.machine.nproc
    );
}
