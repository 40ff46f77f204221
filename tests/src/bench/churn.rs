//! Churn for `df-bench swarm --churn F`: a fraction F of the peers is killed with SIGKILL at
//! random moments mid-swarm, and the survivors must still finish with verified files.
//!
//! - Victims: `round(F·N)` peers (at least one when F > 0) chosen at random; never the seed.
//!   With [`Victims::OriginReaders`] (`--churn-readers`) each is instead the first peer, in
//!   that random order, that reads from the origin at its moment of death (a helper), so the
//!   origin's cost of losing a reader is measured, not left to the draw; a moment when no
//!   live peer reads falls back to the random order.
//! - When: each victim at its own uniformly random moment in [0.3, 0.7]·T* after the herd
//!   starts, so peers die while pieces are flowing to and from them.
//! - Each kill records whether the victim was an origin reader then: the scheduler's view of
//!   the task (`GET /api/v1/tasks/{id}`) shows it with origin bytes and not finished.
//! - [`run`] measures the cost: the same case once without churn (the reference) and once
//!   with it, each on a fresh cluster; the survivors' makespan is compared with the
//!   reference's and with T*.
//!
//! A killed peer is our own child and is not reaped until the run's [`super::ProcessSet`] stops
//! it, so its pid cannot be reused by another process before the SIGKILL lands.

use std::collections::HashSet;
use std::time::Duration;

use df_core::api::{TaskDetail, TaskSummary};
use df_core::routes;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::swarm::{self, SwarmConfig, SwarmReport};
use super::{get_json, round3};

/// Moments of death, as fractions of T* after the herd starts.
const KILL_WINDOW: (f64, f64) = (0.3, 0.7);

/// Which peers `--churn` kills.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Victims {
    /// Peers drawn at random.
    #[default]
    Any,
    /// Peers reading from the origin at their moment of death, drawn at random among them.
    OriginReaders,
}

/// One peer killed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kill {
    pub name: String,
    /// Seconds after the herd started.
    pub at_s: f64,
    /// It read from the origin when it died (`None`: the scheduler could not be asked).
    pub origin_reader: Option<bool>,
}

/// How the killer sees which peers read from the origin: the scheduler's admin API.
#[derive(Debug, Clone)]
pub struct ReaderProbe {
    pub http: reqwest::Client,
    /// The scheduler's admin `host:port`.
    pub scheduler: String,
    pub victims: Victims,
}

impl ReaderProbe {
    /// Admin `ip:port` of every peer the scheduler shows reading from the origin now: origin
    /// bytes reported, not the seed, not finished, failed or gone.
    async fn readers(&self) -> anyhow::Result<HashSet<String>> {
        let base = format!("http://{}", self.scheduler);
        let tasks: Vec<TaskSummary> =
            get_json(&self.http, &format!("{base}{}", routes::TASKS)).await?;
        let mut readers = HashSet::new();
        for t in tasks {
            let url = format!("{base}{}/{}", routes::TASKS, t.task_id);
            let detail: TaskDetail = get_json(&self.http, &url).await?;
            readers.extend(
                detail
                    .peers
                    .into_iter()
                    .filter(|p| p.bytes_from_origin > 0 && !p.is_seed)
                    .filter(|p| {
                        matches!(p.state.as_str(), "pending" | "running" | "back_to_source")
                    })
                    .map(|p| format!("{}:{}", p.ip, p.admin_port)),
            );
        }
        Ok(readers)
    }
}

/// A peer that may be killed.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    pub pid: u32,
    /// Its admin `ip:port`, as the scheduler shows it.
    pub admin: String,
}

impl Candidate {
    /// The peers of `pids` (name, pid) that have an admin address in `admins` (name,
    /// `ip:port`).
    pub fn join(pids: &[(String, u32)], admins: &[(String, String)]) -> Vec<Self> {
        pids.iter()
            .filter_map(|(name, pid)| {
                let (_, admin) = admins.iter().find(|(n, _)| n == name)?;
                Some(Self {
                    name: name.clone(),
                    pid: *pid,
                    admin: admin.clone(),
                })
            })
            .collect()
    }
}

/// Kills the chosen peers on schedule; started just before the herd.
pub struct Killer {
    task: Option<JoinHandle<Vec<Kill>>>,
    planned: usize,
}

impl Killer {
    /// Plans and starts the kills. `peers` are the normal peers; nothing happens when
    /// `fraction` is 0. With a `probe`, the scheduler is asked before each kill which peers
    /// read from the origin (up to its 10 s answer timeout, which delays that kill).
    pub fn start(
        fraction: f64,
        t_star_s: f64,
        peers: &[Candidate],
        probe: Option<ReaderProbe>,
    ) -> Self {
        if fraction <= 0.0 || peers.is_empty() {
            return Self {
                task: None,
                planned: 0,
            };
        }
        let count = ((fraction * peers.len() as f64).round() as usize).clamp(1, peers.len());
        let mut rng = fastrand::Rng::new();
        let mut order: Vec<Candidate> = peers.to_vec();
        rng.shuffle(&mut order);
        let mut moments: Vec<f64> = (0..count)
            .map(|_| (KILL_WINDOW.0 + rng.f64() * (KILL_WINDOW.1 - KILL_WINDOW.0)) * t_star_s)
            .collect();
        moments.sort_by(f64::total_cmp);
        let only_readers = probe
            .as_ref()
            .is_some_and(|p| p.victims == Victims::OriginReaders);
        let t0 = Instant::now();
        let task = tokio::spawn(async move {
            let mut killed = Vec::with_capacity(moments.len());
            for at in moments {
                tokio::time::sleep_until(t0 + Duration::from_secs_f64(at)).await;
                let readers = match &probe {
                    Some(p) => p.readers().await.ok(),
                    None => None,
                };
                let Some(i) = choose(&order, readers.as_ref(), only_readers) else {
                    break;
                };
                let victim = order.remove(i);
                if let Some(pid) = i32::try_from(victim.pid)
                    .ok()
                    .and_then(rustix::process::Pid::from_raw)
                    && rustix::process::kill_process(pid, rustix::process::Signal::KILL).is_ok()
                {
                    killed.push(Kill {
                        origin_reader: readers.as_ref().map(|r| r.contains(&victim.admin)),
                        name: victim.name,
                        at_s: round3(t0.elapsed().as_secs_f64()),
                    });
                }
            }
            killed
        });
        Self {
            task: Some(task),
            planned: count,
        }
    }

    /// How many peers are to be killed.
    pub fn planned(&self) -> usize {
        self.planned
    }

    /// The peers killed so far and when (seconds after the start); stops the kills still
    /// pending (a herd that finished early does not lose peers afterwards).
    pub async fn finish(self) -> Vec<Kill> {
        let Some(task) = self.task else {
            return Vec::new();
        };
        if !task.is_finished() {
            task.abort();
        }
        task.await.unwrap_or_default()
    }
}

/// Index in `order` (the peers still alive, in random order) of the next victim: the first
/// origin reader when `only_readers` and some live peer reads, else the first.
fn choose(
    order: &[Candidate],
    readers: Option<&HashSet<String>>,
    only_readers: bool,
) -> Option<usize> {
    if order.is_empty() {
        return None;
    }
    let reader = readers
        .filter(|_| only_readers)
        .and_then(|r| order.iter().position(|c| r.contains(&c.admin)));
    Some(reader.unwrap_or(0))
}

/// The churn case: the reference run, the run with churn, and the cost.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChurnReport {
    pub fraction: f64,
    pub reference: SwarmReport,
    pub churned: SwarmReport,
    /// Peers killed (the run with the most).
    pub killed: usize,
    /// Of those, the ones that read from the origin when they died.
    #[serde(default)]
    pub killed_origin_readers: usize,
    /// Slowest survivor, median over runs.
    pub survivors_makespan_s: f64,
    pub over_reference: f64,
    pub over_t_star: f64,
    /// Every survivor completed and its file's SHA-256 matched (`None`: not verified).
    pub survivors_verified: Option<bool>,
    pub survivors_completed: bool,
}

/// Runs `config` without churn and then with `fraction` of the peers killed.
pub async fn run(config: SwarmConfig, fraction: f64) -> anyhow::Result<ChurnReport> {
    anyhow::ensure!(
        (0.0..1.0).contains(&fraction) && fraction > 0.0,
        "--churn {fraction} must be above 0 and below 1"
    );
    let mut plain = config.clone();
    plain.churn = 0.0;
    plain.label = format!("{}-reference", config.label);
    let reference = swarm::run(plain).await?;
    let mut churned_cfg = config;
    churned_cfg.churn = fraction;
    let churned = swarm::run(churned_cfg).await?;
    let s = &churned.summary;
    let killed = churned
        .runs
        .iter()
        .map(|r| r.peers.iter().filter(|p| p.killed_at_s.is_some()).count())
        .max()
        .unwrap_or(0);
    let killed_origin_readers = churned
        .runs
        .iter()
        .map(|r| {
            r.peers
                .iter()
                .filter(|p| p.killed_origin_reader == Some(true))
                .count()
        })
        .max()
        .unwrap_or(0);
    let ratio = |a: f64, b: f64| if b > 0.0 { round3(a / b) } else { 0.0 };
    Ok(ChurnReport {
        fraction,
        killed,
        killed_origin_readers,
        survivors_makespan_s: s.makespan_s,
        over_reference: ratio(s.makespan_s, reference.summary.makespan_s),
        over_t_star: s.makespan_over_t_star,
        survivors_verified: s.all_verified,
        survivors_completed: s.all_completed,
        reference,
        churned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_churn_kills_nobody() {
        let k = Killer::start(0.0, 1.0, &[candidate("peer-0", u32::MAX)], None);
        assert!(k.finish().await.is_empty());
    }

    #[tokio::test]
    async fn a_victim_is_killed_within_the_window() {
        let mut child = tokio::process::Command::new("sleep")
            .arg("30")
            .kill_on_drop(true)
            .spawn()
            .expect("sleep runs");
        let pid = child.id().expect("pid");
        // T* of 0.2 s: the kill is planned between 60 and 140 ms.
        let k = Killer::start(0.1, 0.2, &[candidate("peer-0", pid)], None);
        let status = child.wait().await.expect("waits");
        let killed = k.finish().await;
        assert_eq!(killed.len(), 1);
        assert_eq!(killed[0].name, "peer-0");
        assert_eq!(killed[0].origin_reader, None, "nobody was asked");
        assert!(!status.success());
        // Never before 0.3·T*; no upper bound asserted (wall time on a busy machine).
        assert!(killed[0].at_s >= 0.06, "{killed:?}");
    }

    fn candidate(name: &str, pid: u32) -> Candidate {
        Candidate {
            name: name.into(),
            pid,
            admin: format!("127.0.0.1:{}", 9000 + name.len()),
        }
    }

    #[test]
    fn candidates_are_the_peers_with_an_admin_address() {
        let pids = [("peer-0".to_owned(), 7), ("peer-1".to_owned(), 8)];
        let admins = [("peer-1".to_owned(), "10.0.0.2:65001".to_owned())];
        let c = Candidate::join(&pids, &admins);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].name.as_str(), c[0].pid), ("peer-1", 8));
        assert_eq!(c[0].admin, "10.0.0.2:65001");
    }

    #[test]
    fn a_reader_is_chosen_only_when_readers_are_asked_for() {
        let order = vec![
            Candidate {
                admin: "10.0.0.1:1".into(),
                ..candidate("a", 1)
            },
            Candidate {
                admin: "10.0.0.2:1".into(),
                ..candidate("b", 2)
            },
            Candidate {
                admin: "10.0.0.3:1".into(),
                ..candidate("c", 3)
            },
        ];
        let readers: HashSet<String> = ["10.0.0.3:1".to_owned()].into();
        assert_eq!(choose(&order, Some(&readers), true), Some(2));
        assert_eq!(choose(&order, Some(&readers), false), Some(0));
        // Nobody reads (or the scheduler did not answer): the random order decides.
        assert_eq!(choose(&order, Some(&HashSet::new()), true), Some(0));
        assert_eq!(choose(&order, None, true), Some(0));
        assert_eq!(choose(&[], Some(&readers), true), None);
    }
}
