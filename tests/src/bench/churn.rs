//! Churn for `df-bench swarm --churn F`: a fraction F of the peers is killed with SIGKILL at
//! random moments mid-swarm, and the survivors must still finish with verified files.
//!
//! - Victims: `round(F·N)` peers (at least one when F > 0) chosen at random; never the seed.
//! - When: each victim at its own uniformly random moment in [0.3, 0.7]·T* after the herd
//!   starts, so peers die while pieces are flowing to and from them.
//! - [`run`] measures the cost: the same case once without churn (the reference) and once
//!   with it, each on a fresh cluster; the survivors' makespan is compared with the
//!   reference's and with T*.
//!
//! A killed peer is our own child and is not reaped until the run's [`super::ProcessSet`] stops
//! it, so its pid cannot be reused by another process before the SIGKILL lands.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::round3;
use super::swarm::{self, SwarmConfig, SwarmReport};

/// Moments of death, as fractions of T* after the herd starts.
const KILL_WINDOW: (f64, f64) = (0.3, 0.7);

/// Kills the chosen peers on schedule; started just before the herd.
pub struct Killer {
    task: Option<JoinHandle<Vec<(String, f64)>>>,
    planned: usize,
}

impl Killer {
    /// Plans and starts the kills. `peers` are the normal peers' (name, pid); nothing happens
    /// when `fraction` is 0.
    pub fn start(fraction: f64, t_star_s: f64, peers: &[(String, u32)]) -> Self {
        if fraction <= 0.0 || peers.is_empty() {
            return Self {
                task: None,
                planned: 0,
            };
        }
        let count = ((fraction * peers.len() as f64).round() as usize).clamp(1, peers.len());
        let mut rng = fastrand::Rng::new();
        let mut order: Vec<usize> = (0..peers.len()).collect();
        rng.shuffle(&mut order);
        let mut plan: Vec<(f64, String, u32)> = order[..count]
            .iter()
            .map(|&i| {
                let at = KILL_WINDOW.0 + rng.f64() * (KILL_WINDOW.1 - KILL_WINDOW.0);
                (at * t_star_s, peers[i].0.clone(), peers[i].1)
            })
            .collect();
        plan.sort_by(|a, b| a.0.total_cmp(&b.0));
        let t0 = Instant::now();
        let task = tokio::spawn(async move {
            let mut killed = Vec::with_capacity(plan.len());
            for (at, name, pid) in plan {
                tokio::time::sleep_until(t0 + Duration::from_secs_f64(at)).await;
                if let Some(pid) = i32::try_from(pid)
                    .ok()
                    .and_then(rustix::process::Pid::from_raw)
                    && rustix::process::kill_process(pid, rustix::process::Signal::KILL).is_ok()
                {
                    killed.push((name, round3(t0.elapsed().as_secs_f64())));
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
    pub async fn finish(self) -> Vec<(String, f64)> {
        let Some(task) = self.task else {
            return Vec::new();
        };
        if !task.is_finished() {
            task.abort();
        }
        task.await.unwrap_or_default()
    }
}

/// The churn case: the reference run, the run with churn, and the cost.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChurnReport {
    pub fraction: f64,
    pub reference: SwarmReport,
    pub churned: SwarmReport,
    /// Peers killed (median run).
    pub killed: usize,
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
    let ratio = |a: f64, b: f64| if b > 0.0 { round3(a / b) } else { 0.0 };
    Ok(ChurnReport {
        fraction,
        killed,
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
        let k = Killer::start(0.0, 1.0, &[("peer-0".into(), u32::MAX)]);
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
        let k = Killer::start(0.1, 0.2, &[("peer-0".into(), pid)]);
        let status = child.wait().await.expect("waits");
        let killed = k.finish().await;
        assert_eq!(killed.len(), 1);
        assert_eq!(killed[0].0, "peer-0");
        assert!(!status.success());
        // Never before 0.3·T*; no upper bound asserted (wall time on a busy machine).
        assert!(killed[0].1 >= 0.06, "{killed:?}");
    }
}
