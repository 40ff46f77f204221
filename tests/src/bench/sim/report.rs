//! What `df-bench sim` reports: completion-time quantiles against S/cap and T*, origin egress,
//! and what the scheduler module cost (CPU time measured around its calls inside the sim, its
//! heap measured by the counting allocator of `df-bench`), as JSON and as text tables.

use serde::{Deserialize, Serialize};

use super::engine::Outcome;
use super::network::NodeIx;
use super::scenario::SimConfig;
use crate::bench::swarm::LowerBound;
use crate::bench::{MIB, MachineInfo, quantile, round3};

/// p50, p99, p99.9 and max of a set of values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Quantiles {
    pub fn of(values: &[f64]) -> Self {
        Self {
            p50: round3(quantile(values, 0.5)),
            p99: round3(quantile(values, 0.99)),
            p999: round3(quantile(values, 0.999)),
            max: round3(values.iter().copied().fold(0.0, f64::max)),
        }
    }

    /// Every figure divided by `d` (0 when `d` is 0).
    pub fn over(&self, d: f64) -> Self {
        let f = |v: f64| if d > 0.0 { round3(v / d) } else { 0.0 };
        Self {
            p50: f(self.p50),
            p99: f(self.p99),
            p999: f(self.p999),
            max: f(self.max),
        }
    }
}

/// What the driver measured of the decision modules it drove.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ModuleCost {
    /// Wall time spent inside the scheduler module's calls, seconds (single-threaded, so this is
    /// its CPU time plus whatever the machine's other load stole).
    pub scheduler_s: f64,
    pub scheduler_calls: u64,
    /// Heap bytes the scheduler module's state held at the end of the run (all peers done),
    /// measured by the counting global allocator; `None` when no counting allocator is
    /// installed (the library's tests).
    pub scheduler_heap_bytes: Option<u64>,
    /// Wall time inside the peers' piece pickers, seconds, all peers together.
    pub picker_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimReport {
    pub config: SimConfig,
    pub machine: MachineInfo,
    pub bound: LowerBound,
    /// S / min(U, D): a peer cannot finish sooner than this.
    pub size_over_cap_s: f64,
    /// Completion times of the peers that finished, seconds from t = 0.
    pub completion_s: Quantiles,
    pub completion_over_size_over_cap: Quantiles,
    pub completion_over_t_star: Quantiles,
    pub peers_completed: u32,
    /// The engine's queue ran dry with peers still missing pieces (a protocol that stalls).
    pub stalled: bool,
    pub origin_bytes_over_size: f64,
    /// Bytes delivered twice to the same peer, over S·N.
    pub duplicate_fraction: f64,
    pub cost: ModuleCost,
    pub scheduler_ms_per_1000_hosts: f64,
    pub scheduler_kib_per_1000_hosts: Option<f64>,
    pub events: u64,
    /// Wall time of the whole simulation, seconds.
    pub wall_s: f64,
}

impl SimReport {
    pub fn new(
        config: SimConfig,
        machine: MachineInfo,
        peers: &[NodeIx],
        outcome: &Outcome,
        cost: ModuleCost,
        wall_s: f64,
    ) -> Self {
        let bound = LowerBound::new(
            config.size,
            config.peers + config.seeds - 1,
            config.origin_rate,
            config.peer_upload,
            config.peer_download,
        );
        let cap = match (config.peer_upload, config.peer_download) {
            (0, 0) => 0,
            (0, d) => d,
            (u, 0) => u,
            (u, d) => u.min(d),
        };
        let size_over_cap_s = if cap == 0 {
            0.0
        } else {
            config.size as f64 / cap as f64
        };
        let done: Vec<f64> = peers
            .iter()
            .filter_map(|&p| outcome.finished_at.get(p as usize).copied().flatten())
            .map(|t| t.as_secs_f64())
            .collect();
        let completion_s = Quantiles::of(&done);
        let hosts_k = f64::from(config.peers + config.seeds) / 1000.0;
        let total = config.size as f64 * f64::from(config.peers);
        Self {
            size_over_cap_s: round3(size_over_cap_s),
            completion_over_size_over_cap: completion_s.over(size_over_cap_s),
            completion_over_t_star: completion_s.over(bound.t_star_s),
            completion_s,
            peers_completed: u32::try_from(done.len()).unwrap_or(u32::MAX),
            stalled: outcome.stalled,
            origin_bytes_over_size: round3(
                outcome.sent.first().copied().unwrap_or(0) as f64 / config.size as f64,
            ),
            duplicate_fraction: if total > 0.0 {
                round3(outcome.duplicate_bytes as f64 / total)
            } else {
                0.0
            },
            scheduler_ms_per_1000_hosts: round3(cost.scheduler_s * 1000.0 / hosts_k),
            scheduler_kib_per_1000_hosts: cost
                .scheduler_heap_bytes
                .map(|b| round3(b as f64 / 1024.0 / hosts_k)),
            cost,
            events: outcome.events,
            wall_s: round3(wall_s),
            bound,
            machine,
            config,
        }
    }

    /// A few lines for a person.
    pub fn text(&self) -> String {
        let c = &self.config;
        let q = &self.completion_s;
        let a = &self.completion_over_size_over_cap;
        let t = &self.completion_over_t_star;
        format!(
            "{}: N={} seeds={} S={:.0} MiB in {} layer(s), U0={} U={} D={} MiB/s; S/cap {:.2}s, \
             T* {:.2}s\n  completion s   p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  \
             ({} of {} peers{})\n  x S/cap        p50 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}\n  \
             x T*           p50 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}\n  origin egress {:.3}x \
             S; duplicates {:.3}; scheduler {:.1} ms CPU per 1,000 hosts ({} calls), heap {} per \
             1,000 hosts; pickers {:.2}s; {} events in {:.1}s wall; load {:?} -> {:?} on {} CPUs\n",
            c.label,
            c.peers,
            c.seeds,
            c.size as f64 / MIB as f64,
            c.layers,
            rate(c.origin_rate),
            rate(c.peer_upload),
            rate(c.peer_download),
            self.size_over_cap_s,
            self.bound.t_star_s,
            q.p50,
            q.p99,
            q.p999,
            q.max,
            self.peers_completed,
            c.peers,
            if self.stalled { ", STALLED" } else { "" },
            a.p50,
            a.p99,
            a.p999,
            a.max,
            t.p50,
            t.p99,
            t.p999,
            t.max,
            self.origin_bytes_over_size,
            self.duplicate_fraction,
            self.scheduler_ms_per_1000_hosts,
            self.cost.scheduler_calls,
            self.scheduler_kib_per_1000_hosts
                .map_or("not measured".to_owned(), |k| format!("{k:.0} KiB")),
            self.cost.picker_s,
            self.events,
            self.wall_s,
            self.machine.loadavg_start,
            self.machine.loadavg_end,
            self.machine.nproc,
        )
    }
}

fn rate(r: u64) -> String {
    if r == 0 {
        "-".to_owned()
    } else {
        format!("{:.0}", r as f64 / MIB as f64)
    }
}

/// The README's table: one row per case.
pub fn markdown_table(reports: &[SimReport]) -> String {
    let mut out = String::from(
        "| case | N | S | U0 / U / D MiB/s | S/cap s | T* s | p50 s | p99 s | p99.9 s | max s | p50 / p99 / p99.9 x S/cap | max / T* | origin / S | scheduler ms per 1k hosts | scheduler KiB per 1k hosts |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in reports {
        let c = &r.config;
        let q = &r.completion_s;
        let a = &r.completion_over_size_over_cap;
        out.push_str(&format!(
            "| {} | {} | {} | {} / {} / {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} / {:.2} / {:.2} | {:.3} | {:.3} | {:.1} | {} |\n",
            c.label,
            c.peers,
            human_size(c.size, c.layers),
            rate(c.origin_rate),
            rate(c.peer_upload),
            rate(c.peer_download),
            r.size_over_cap_s,
            r.bound.t_star_s,
            q.p50,
            q.p99,
            q.p999,
            q.max,
            a.p50,
            a.p99,
            a.p999,
            r.completion_over_t_star.max,
            r.origin_bytes_over_size,
            r.scheduler_ms_per_1000_hosts,
            r.scheduler_kib_per_1000_hosts
                .map_or("-".to_owned(), |k| format!("{k:.0}")),
        ));
    }
    out
}

/// Simulated against measured makespans, for the cases both have (matched by label).
/// `real`: (label, N, S, measured makespan seconds).
pub fn validation_table(sims: &[SimReport], real: &[(String, u32, u64, f64)]) -> String {
    let mut out = String::from(
        "| case | N | S MiB | real makespan s | simulated makespan s | simulated / real |\n\
         | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in sims {
        let c = &r.config;
        let Some((_, _, _, measured)) = real
            .iter()
            .find(|(label, n, size, _)| *label == c.label && *n == c.peers && *size == c.size)
        else {
            continue;
        };
        let ratio = if *measured > 0.0 {
            round3(r.completion_s.max / measured)
        } else {
            0.0
        };
        out.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} |\n",
            c.label,
            c.peers,
            c.size / MIB,
            measured,
            r.completion_s.max,
            ratio
        ));
    }
    out
}

fn human_size(size: u64, layers: u32) -> String {
    let s = if size.is_multiple_of(1024 * MIB) {
        format!("{} GiB", size / (1024 * MIB))
    } else if size.is_multiple_of(MIB) {
        format!("{} MiB", size / MIB)
    } else {
        format!("{:.1} GB", size as f64 / 1e9)
    };
    if layers > 1 {
        format!("{s} ({layers} layers)")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_divide_and_sizes_read_well() {
        let q = Quantiles::of(&[10.0, 12.0, 30.0]);
        assert_eq!(q.p50, 12.0);
        assert_eq!(q.max, 30.0);
        assert_eq!(q.over(10.0).max, 3.0);
        assert_eq!(q.over(0.0).max, 0.0);
        assert_eq!(human_size(3_000_000_000, 2), "3.0 GB (2 layers)");
        assert_eq!(human_size(1024 * MIB, 1), "1 GiB");
        assert_eq!(human_size(256 * MIB, 1), "256 MiB");
    }
}
