//! The paths of the daemons' HTTP APIs, written once: the daemons' routers mount these and
//! dfctl's client calls them. A path with a `{name}` segment is an axum route pattern; the
//! function of the same name fills it in.

/// Both daemons: liveness (`ok`).
pub const HEALTHZ: &str = "/healthz";
/// Both daemons: Prometheus text.
pub const METRICS: &str = "/metrics";
/// Both daemons: `PeerInfo` or `SchedulerInfo`.
pub const INFO: &str = "/api/v1/info";
/// Both daemons: the task list.
pub const TASKS: &str = "/api/v1/tasks";
/// Both daemons: one task.
pub const TASK: &str = "/api/v1/tasks/{task_id}";
/// Both daemons: the log stream (`?follow=true&tail=N&task=..&since=..`).
pub const LOGS: &str = "/api/v1/logs";
/// Scheduler: the hosts it knows.
pub const HOSTS: &str = "/api/v1/hosts";
/// Scheduler: the event stream `dfctl top` draws.
pub const WATCH: &str = "/api/v1/watch";
/// Scheduler: Harbor's liveness probe of a preheat provider.
pub const HEALTHY: &str = "/healthy";
/// Scheduler: preheat jobs (Harbor-compatible).
pub const JOBS: &str = "/oapi/v1/jobs";
/// Scheduler: one preheat job.
pub const JOB: &str = "/oapi/v1/jobs/{id}";
/// Peer: download an object through the P2P network (`?url=..&digest=..`).
pub const DOWNLOAD: &str = "/api/v1/download";
/// Peer: P2P on/off (`dfctl disable` / `enable`).
pub const P2P: &str = "/api/v1/p2p";

/// [`TASK`] for `task_id`.
pub fn task(task_id: &str) -> String {
    format!("{TASKS}/{task_id}")
}

/// [`WATCH`], narrowed to one task when `task` is given.
pub fn watch(task: Option<&str>) -> String {
    match task {
        Some(id) => format!("{WATCH}?task={id}"),
        None => WATCH.to_owned(),
    }
}

/// [`JOB`] for job `id`.
pub fn job(id: u64) -> String {
    format!("{JOBS}/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_paths_match_their_patterns() {
        assert_eq!(TASK.replace("{task_id}", "abc"), task("abc"));
        assert_eq!(JOB.replace("{id}", "7"), job(7));
        assert_eq!(watch(None), WATCH);
        assert_eq!(watch(Some("ab")), "/api/v1/watch?task=ab");
    }
}
