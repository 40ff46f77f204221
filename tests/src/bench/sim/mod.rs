//! `df-bench sim`: a discrete-event, flow-level simulator of a swarm, for the sizes one machine
//! cannot run as processes (2,600 or 10,000 hosts). It drives the real decision modules, the
//! scheduler's mesh (`df_scheduler::topology`) and the peer's piece picker
//! (`df_peer::download::picker`), not a re-implementation of them.
//!
//! Roles, one file each: [`engine`] (simulated time, the event queue, the loop), [`network`]
//! (caps and fair sharing of each link), [`protocol`] (the adapter trait between the engine and
//! the decision logic), [`driver`] (that trait bound to the real modules), [`scenario`] (the
//! workload), [`report`] (figures and tables), [`heap`] (the scheduler state's heap).
//!
//! Simulated time is an integer count of nanoseconds, so a run is deterministic for a given
//! `rng_seed` and its figures are exact; only the wall-time cost figures vary.

pub mod driver;
pub mod engine;
pub mod heap;
pub mod network;
pub mod protocol;
pub mod report;
pub mod scenario;

use std::time::Instant;

use anyhow::Context as _;

use self::driver::{Driver, DriverConfig};
use self::engine::{Engine, SimTime};
use self::report::SimReport;
use self::scenario::{Scenario, SimConfig};
use super::MachineInfo;

/// Simulates `config` with the modules configured by `driver` and reports.
pub fn run(config: SimConfig, driver: DriverConfig) -> anyhow::Result<SimReport> {
    let mut machine = MachineInfo::now();
    let wall = Instant::now();
    let Scenario {
        network,
        layouts,
        seeds,
        peers,
        starts,
    } = config.build()?;
    let protocol = Driver::new(driver, network.node_count(), layouts.clone(), seeds);
    let mut engine = Engine::new(network, layouts.clone(), protocol);
    for &(at, peer) in &starts {
        for task in 0..layouts.len() {
            engine.schedule_download(at, peer, u32::try_from(task).unwrap_or(u32::MAX));
        }
    }
    let outcome = engine
        .run(SimTime::from_secs_f64(config.limit_s))
        .with_context(|| format!("simulating {}", config.label))?;
    let cost = engine.into_protocol().finish();
    machine.finish();
    Ok(SimReport::new(
        config,
        machine,
        &peers,
        &outcome,
        cost,
        wall.elapsed().as_secs_f64(),
    ))
}
