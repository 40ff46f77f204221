//! Chaos for `df-bench chaos`: during one swarm herd, four faults at planned moments, and
//! clients that retry like real ones. The same case also runs once without chaos (the
//! reference), each on a fresh cluster.
//!
//! The faults, at fractions of T* after the herd starts:
//! - kill -9 a random quarter of the peers (never the seed nor the full-disk peer), each at its
//!   own moment in [0.3, 0.7]·T* ([`super::churn::Killer`]);
//! - at 0.35·T*, SIGTERM the scheduler and start a new one on the same addresses; the daemons
//!   reconnect by themselves (figures: exit time, time to healthy, time until every daemon
//!   still alive is connected again);
//! - one peer's disk is too small for the object from the start: its `storage.capacity` is
//!   below S, so the peer's cache refuses the task (the same `NoSpace` a full disk with
//!   nothing evictable gives) and the peer streams the object to its client from the origin.
//!   A real full filesystem would need root (a loop mount or a quota); the capacity is the
//!   limit the daemon itself enforces, so this is the daemon's real no-room path;
//! - at 0.5·T*, the origin answers 503 to every new object request for `outage_ms`
//!   (`POST /_outage` of the test origin); bodies already flowing continue.
//!
//! Clients: every peer's client pulls once (the herd). A pull that fails (HTTP error, closed
//! connection) is retried after a backoff (0.5 s, doubling, at most [`MAX_RETRIES`] times)
//! through its own peer if that peer still answers `/healthz`, else through the next live
//! peer. Every client's bytes are SHA-256-checked as read; a killed peer's client counts as
//! served once a retry delivered verified bytes.
//!
//! Invariant: events are recorded with the moment they happened (seconds after the herd
//! started), not the moment planned; a busy machine delays them and the report says so.

use std::time::Duration;

use anyhow::Context as _;
use df_core::api::HostView;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::churn::{Candidate, Kill, Killer};
use super::pull::{self, Pull};
use super::swarm::{self, SwarmConfig, SwarmReport};
use super::{ProcessSet, SchedulerSpec, get_json, post_origin, round3};
use crate::origin::blob_digests;

/// When the scheduler is restarted, as a fraction of T* after the herd starts.
const RESTART_AT: f64 = 0.35;
/// When the origin outage starts, as a fraction of T*.
const OUTAGE_AT: f64 = 0.5;
/// Retries per client after its first pull failed: 0.5 s doubling, 15.5 s of waiting in all,
/// which outlasts the default 5 s outage (kubelet's image-pull backoff retries for minutes).
pub const MAX_RETRIES: u32 = 5;
/// First retry backoff; doubles per retry.
const RETRY_BACKOFF: Duration = Duration::from_millis(500);
/// How long the daemons get to reconnect to the new scheduler before the figure is "not yet".
const RECONNECT_WAIT: Duration = Duration::from_secs(20);

/// What chaos to cause.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChaosPlan {
    /// Share of the normal peers killed with SIGKILL.
    pub kill_fraction: f64,
    /// How long the origin answers 503, milliseconds.
    pub outage_ms: u64,
    /// The peer whose disk cannot hold the object (`None`: every disk is large enough).
    pub full_disk_peer: Option<String>,
    /// That peer's `storage.capacity`, bytes (below S).
    pub full_disk_capacity: u64,
}

/// One fault as it happened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChaosEvent {
    pub event: String,
    /// Seconds after the herd started.
    pub at_s: f64,
    /// How long it lasted (the restart until healthy, the outage), seconds.
    pub duration_s: f64,
    pub detail: String,
}

/// One retry of a client whose previous pull failed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Retry {
    /// The client's own peer.
    pub client: String,
    /// The peer the retry went through.
    pub via: String,
    /// 1 for the first retry.
    pub attempt: u32,
    /// Seconds after the herd started.
    pub started_at_s: f64,
    pub seconds: f64,
    pub bytes: u64,
    /// Read all S bytes and their SHA-256 matched the origin's.
    pub verified: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An error a client saw (a first pull or a retry).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientError {
    pub client: String,
    pub via: String,
    /// Seconds after the herd started, when the pull ended with the error.
    pub at_s: f64,
    pub error: String,
}

/// What the chaos did and what the clients saw, in one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChaosOutcome {
    pub events: Vec<ChaosEvent>,
    pub retries: Vec<Retry>,
    pub client_errors: Vec<ClientError>,
    pub full_disk_peer: Option<String>,
    /// `X-Dragonfly-Source` of the full-disk peer's answer to its client.
    pub full_disk_source: String,
    /// Object requests the origin refused during the outage.
    pub origin_refused_requests: u64,
    /// Seconds until the last surviving peer's client held verified bytes (retries included).
    pub survivors_makespan_s: f64,
    /// Seconds until every client, the killed peers' ones too, held verified bytes.
    pub all_clients_s: f64,
    /// Every client ended with verified bytes, by its first pull or a retry.
    pub all_clients_served: bool,
}

/// What [`herd`] needs from the run.
pub(crate) struct Env<'a> {
    pub(crate) http: &'a reqwest::Client,
    pub(crate) origin: &'a str,
    pub(crate) sched: &'a SchedulerSpec,
    pub(crate) t_star_s: f64,
    /// The normal peers' (name, pid).
    pub(crate) peers: &'a [(String, u32)],
    /// The normal peers' (name, admin address), in herd order.
    pub(crate) admins: &'a [(String, String)],
    pub(crate) url: &'a str,
    pub(crate) piece_length: Option<u64>,
    pub(crate) size: u64,
    pub(crate) blob_seed: u64,
}

/// The herd with chaos: every client's first pull (for the swarm's per-peer results), the
/// peers killed and when, and the outcome.
pub(crate) async fn herd(
    plan: &ChaosPlan,
    env: &Env<'_>,
    procs: &mut ProcessSet,
) -> anyhow::Result<(Vec<Pull>, Vec<Kill>, ChaosOutcome)> {
    let (size, seed) = (env.size, env.blob_seed);
    let want = tokio::task::spawn_blocking(move || blob_digests(size, seed).sha256)
        .await
        .context("hashing the origin's object")?;
    let victims: Vec<Candidate> = Candidate::join(env.peers, env.admins)
        .into_iter()
        .filter(|c| Some(&c.name) != plan.full_disk_peer.as_ref())
        .collect();
    // A quarter of all peers, taken from those that may die.
    let fraction = plan.kill_fraction * env.peers.len() as f64 / victims.len().max(1) as f64;
    let t0 = Instant::now();
    let killer = Killer::start(fraction.min(1.0), env.t_star_s, &victims, None);
    let alive_after = env.peers.len() + 1 - killer.planned();
    let clients =
        futures_util::future::join_all((0..env.admins.len()).map(|i| client(env, i, t0, &want)));
    let (clients, events) = tokio::join!(clients, events(plan, env, procs, t0, alive_after));
    let killed = killer.finish().await;
    let mut events = events?;
    for kill in &killed {
        events.push(ChaosEvent {
            event: "kill -9".into(),
            at_s: kill.at_s,
            duration_s: 0.0,
            detail: kill.name.clone(),
        });
    }
    events.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    let stats: crate::origin::StatsSnapshot =
        get_json(env.http, &format!("{}/_stats", env.origin)).await?;
    let mut outcome = ChaosOutcome {
        events,
        full_disk_peer: plan.full_disk_peer.clone(),
        origin_refused_requests: stats.refused_requests,
        all_clients_served: true,
        ..ChaosOutcome::default()
    };
    let mut firsts = Vec::with_capacity(clients.len());
    for (i, c) in clients.into_iter().enumerate() {
        let name = &env.admins[i].0;
        let survivor = !killed.iter().any(|k| k.name == *name);
        if plan.full_disk_peer.as_ref() == Some(name) {
            outcome.full_disk_source = c.first.source.clone();
        }
        match c.done_at_s {
            Some(t) if survivor => {
                outcome.survivors_makespan_s = outcome.survivors_makespan_s.max(t);
            }
            Some(_) => {}
            None => outcome.all_clients_served = false,
        }
        outcome.all_clients_s = outcome.all_clients_s.max(c.done_at_s.unwrap_or(0.0));
        outcome.retries.extend(c.retries);
        outcome.client_errors.extend(c.errors);
        firsts.push(c.first);
    }
    Ok((firsts, killed, outcome))
}

/// One client's history: its first pull, its retries, its errors, when it held good bytes.
struct Client {
    first: Pull,
    retries: Vec<Retry>,
    errors: Vec<ClientError>,
    done_at_s: Option<f64>,
}

/// Pulls through peer `i`, retrying on failure as described in the module doc.
async fn client(env: &Env<'_>, i: usize, t0: Instant, want: &str) -> Client {
    let name = &env.admins[i].0;
    let ok =
        |p: &Pull| p.error.is_none() && p.bytes == env.size && p.sha256.as_deref() == Some(want);
    let first = pull::pull_one(env.http, &env.admins[i].1, env.url, env.piece_length, true).await;
    let at = |t: Instant| round3(t.duration_since(t0).as_secs_f64());
    let mut c = Client {
        done_at_s: ok(&first).then(|| at(Instant::now())),
        first,
        retries: Vec::new(),
        errors: Vec::new(),
    };
    let mut last = c.first.clone();
    let mut via = name.clone();
    for attempt in 1..=MAX_RETRIES {
        if ok(&last) {
            break;
        }
        c.errors.push(ClientError {
            client: name.clone(),
            via: via.clone(),
            at_s: at(Instant::now()),
            error: last.error.clone().unwrap_or_else(|| {
                format!("{} of {} bytes or a wrong digest", last.bytes, env.size)
            }),
        });
        tokio::time::sleep(RETRY_BACKOFF * 2u32.pow(attempt - 1)).await;
        let Some((peer, admin)) = live_peer(env, i).await else {
            break;
        };
        let started = Instant::now();
        last = pull::pull_one(env.http, &admin, env.url, env.piece_length, true).await;
        via = peer;
        let verified = ok(&last);
        if verified {
            c.done_at_s = Some(at(Instant::now()));
        }
        c.retries.push(Retry {
            client: name.clone(),
            via: via.clone(),
            attempt,
            started_at_s: at(started),
            seconds: round3(last.seconds),
            bytes: last.bytes,
            verified,
            error: last.error.clone(),
        });
    }
    c
}

/// Peer `i` if it answers `/healthz`, else the next peer that does (in herd order).
async fn live_peer(env: &Env<'_>, i: usize) -> Option<(String, String)> {
    let n = env.admins.len();
    for k in 0..n {
        let (name, admin) = &env.admins[(i + k) % n];
        let alive = env
            .http
            .get(format!("http://{admin}/healthz"))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if alive {
            return Some((name.clone(), admin.clone()));
        }
    }
    None
}

/// The scheduler restart and the origin outage, on schedule.
async fn events(
    plan: &ChaosPlan,
    env: &Env<'_>,
    procs: &mut ProcessSet,
    t0: Instant,
    alive_after: usize,
) -> anyhow::Result<Vec<ChaosEvent>> {
    let at = |fraction: f64| t0 + Duration::from_secs_f64(fraction * env.t_star_s);
    let since = |t: Instant| round3(t.duration_since(t0).as_secs_f64());
    tokio::time::sleep_until(at(RESTART_AT)).await;
    let stop_at = Instant::now();
    let exited = procs.stop("scheduler", Duration::from_secs(5)).await?;
    env.sched.start(procs, env.http).await?;
    let healthy_at = Instant::now();
    let outage = async {
        tokio::time::sleep_until(at(OUTAGE_AT)).await;
        let start = Instant::now();
        post_origin(
            env.http,
            env.origin,
            &format!("/_outage?ms={}", plan.outage_ms),
        )
        .await?;
        Ok::<_, anyhow::Error>(ChaosEvent {
            event: "origin 503".into(),
            at_s: since(start),
            duration_s: round3(plan.outage_ms as f64 / 1000.0),
            detail: "new object requests answered 503".into(),
        })
    };
    let (reconnected, outage) = tokio::join!(reconnect(env, alive_after), outage);
    let detail = match reconnected {
        Some(t) => format!(
            "old exited in {:.2}s; {alive_after} daemons connected again {:.2}s after the new one was healthy",
            exited.as_secs_f64(),
            t.duration_since(healthy_at).as_secs_f64()
        ),
        None => format!(
            "old exited in {:.2}s; fewer than {alive_after} daemons connected within {}s",
            exited.as_secs_f64(),
            RECONNECT_WAIT.as_secs()
        ),
    };
    let restart = ChaosEvent {
        event: "scheduler restart".into(),
        at_s: since(stop_at),
        duration_s: round3(healthy_at.duration_since(stop_at).as_secs_f64()),
        detail,
    };
    Ok(vec![restart, outage?])
}

/// When at least `want` daemons were connected to the scheduler again; `None` if not within
/// [`RECONNECT_WAIT`].
async fn reconnect(env: &Env<'_>, want: usize) -> Option<Instant> {
    let deadline = Instant::now() + RECONNECT_WAIT;
    let url = format!("http://{}/api/v1/hosts", env.sched.http);
    while Instant::now() < deadline {
        if let Ok(hosts) = get_json::<Vec<HostView>>(env.http, &url).await
            && hosts.iter().filter(|h| h.connected).count() >= want
        {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The chaos case: the reference run, the run with chaos, and the headline figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChaosReport {
    pub plan: ChaosPlan,
    pub reference: SwarmReport,
    pub chaotic: SwarmReport,
    pub outcome: ChaosOutcome,
    pub killed: usize,
    pub t_star_s: f64,
    pub reference_makespan_s: f64,
    pub survivors_makespan_s: f64,
    pub over_reference: f64,
    pub over_t_star: f64,
    /// Origin egress of the chaotic run (full-disk peer's stream and retries included) over S.
    pub origin_bytes_over_size: f64,
    pub retries: usize,
    pub retries_verified: usize,
    /// Every survivor's stored file (or streamed bytes) matched the origin's SHA-256.
    pub survivors_verified: bool,
    /// Every client, the killed peers' ones too, ended with verified bytes.
    pub all_clients_served: bool,
}

/// Runs `config` without chaos and then with `plan`.
pub async fn run(config: SwarmConfig, mut plan: ChaosPlan) -> anyhow::Result<ChaosReport> {
    anyhow::ensure!(!config.netns, "chaos runs on 127.0.0.1 only (no --netns)");
    anyhow::ensure!(config.peers >= 2, "chaos needs at least 2 peers");
    anyhow::ensure!(
        config.origin_rate > 0 && (config.peer_upload > 0 || config.peer_download > 0),
        "chaos needs capped rates (T* > 0) so its events land mid-swarm"
    );
    anyhow::ensure!(config.runs == 1, "chaos makes one run");
    if plan.full_disk_peer.is_some() {
        anyhow::ensure!(
            plan.full_disk_capacity < config.size,
            "the full disk's capacity must be below the object size"
        );
    }
    plan.kill_fraction = plan.kill_fraction.clamp(0.0, 1.0);
    let mut plain = config.clone();
    plain.chaos = None;
    plain.label = format!("{}-reference", config.label);
    let reference = swarm::run(plain).await?;
    let mut chaotic_cfg = config;
    chaotic_cfg.chaos = Some(plan.clone());
    chaotic_cfg.verify = true;
    let chaotic = swarm::run(chaotic_cfg).await?;
    let run = chaotic
        .runs
        .first()
        .context("internal error: the chaotic run left no result")?;
    let outcome = run.chaos.clone().unwrap_or_default();
    let survivors: Vec<_> = run
        .peers
        .iter()
        .filter(|p| p.killed_at_s.is_none())
        .collect();
    let ratio = |a: f64, b: f64| if b > 0.0 { round3(a / b) } else { 0.0 };
    Ok(ChaosReport {
        killed: run.peers.len() - survivors.len(),
        t_star_s: chaotic.bound.t_star_s,
        reference_makespan_s: reference.summary.makespan_s,
        survivors_makespan_s: outcome.survivors_makespan_s,
        over_reference: ratio(outcome.survivors_makespan_s, reference.summary.makespan_s),
        over_t_star: ratio(outcome.survivors_makespan_s, chaotic.bound.t_star_s),
        origin_bytes_over_size: run.origin_bytes_over_size,
        retries: outcome.retries.len(),
        retries_verified: outcome.retries.iter().filter(|r| r.verified).count(),
        survivors_verified: survivors.iter().all(|p| p.sha256_ok == Some(true)),
        all_clients_served: outcome.all_clients_served,
        outcome,
        plan,
        reference,
        chaotic,
    })
}

/// The report for people: the headline, the events, the retries, the errors clients saw.
pub fn text(r: &ChaosReport) -> String {
    let o = &r.outcome;
    let c = &r.chaotic.config;
    let mut out = format!(
        "chaos {}: N={} S={} MiB; T* = {:.2}s; reference makespan {:.2}s\n\
         survivors' makespan {:.2}s = {:.2}x the reference, {:.2}x T*; origin {:.3}x S \
         ({} requests refused during the outage); {} killed; full-disk peer {} served from {}\n\
         survivors verified: {}; retries {} ({} verified); every client served: {}\n",
        c.label,
        c.peers,
        c.size / super::MIB,
        r.t_star_s,
        r.reference_makespan_s,
        r.survivors_makespan_s,
        r.over_reference,
        r.over_t_star,
        r.origin_bytes_over_size,
        o.origin_refused_requests,
        r.killed,
        o.full_disk_peer.as_deref().unwrap_or("-"),
        if o.full_disk_source.is_empty() {
            "-"
        } else {
            &o.full_disk_source
        },
        r.survivors_verified,
        r.retries,
        r.retries_verified,
        r.all_clients_served,
    );
    out.push_str("  at s     event               lasted s  detail\n");
    for e in &o.events {
        out.push_str(&format!(
            "  {:>7.2}  {:<18}  {:>8.2}  {}\n",
            e.at_s, e.event, e.duration_s, e.detail
        ));
    }
    out.push_str("  retries: client -> via, attempt, started at s, took s, verified\n");
    for t in &o.retries {
        out.push_str(&format!(
            "  {} -> {}  #{}  {:.2}  {:.2}  {}{}\n",
            t.client,
            t.via,
            t.attempt,
            t.started_at_s,
            t.seconds,
            t.verified,
            t.error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
    }
    out.push_str("  errors seen by clients: client via peer at s: error\n");
    for e in &o.client_errors {
        out.push_str(&format!(
            "  {} via {} at {:.2}: {}\n",
            e.client, e.via, e.at_s, e.error
        ));
    }
    out
}
