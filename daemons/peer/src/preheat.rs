//! Preheat on this peer: a scheduler's `PreheatTask` becomes an ordinary download of the task
//! (through [`TaskManager::start`], so it shares the cache, the task ID and the P2P path with
//! client pulls), and its progress goes back as `PreheatReport`s on the host stream of the
//! scheduler that sent the command.
//!
//! Invariants: every command gets exactly one final report (SUCCEEDED or FAILED) unless the
//! peer shuts down or that scheduler's stream stays down for [`FINAL_REPORT_PATIENCE`] (a
//! final report waits for the stream to reconnect; otherwise the job times out for this host);
//! RUNNING reports are throttled to one per [`REPORT_EVERY`], so a big layer does not flood
//! the stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use df_core::api::ByteSource;
use df_proto::scheduler::v1 as pb;
use pb::host_request::Request as HostMsg;
use tokio_util::task::TaskTracker;

use crate::announcer::SchedulerClient;
use crate::download::{DownloadRequest, TaskManager};

/// Least time between two RUNNING reports of one task.
pub const REPORT_EVERY: Duration = Duration::from_millis(500);
/// How long a final report waits for the scheduler's stream to come back.
pub const FINAL_REPORT_PATIENCE: Duration = Duration::from_secs(30);

/// Sends one command's reports to the scheduler that sent it.
struct Reporter {
    schedulers: Arc<SchedulerClient>,
    scheduler: String,
    job_id: u64,
    task_id: String,
    started: Instant,
}

impl Reporter {
    async fn send(
        &self,
        state: pb::PreheatState,
        done: u64,
        total: u64,
        source: &str,
        error: &str,
    ) {
        let msg = pb::PreheatReport {
            job_id: self.job_id,
            task_id: self.task_id.clone(),
            state: state as i32,
            completed_length: done,
            content_length: total,
            source: source.to_owned(),
            error: error.to_owned(),
            cost_millis: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        let is_final = state != pb::PreheatState::Running;
        let give_up = Instant::now() + FINAL_REPORT_PATIENCE;
        while !self
            .schedulers
            .send_host(&self.scheduler, HostMsg::PreheatReport(msg.clone()))
        {
            if !is_final || Instant::now() >= give_up {
                tracing::warn!(job_id = self.job_id, task_id = %self.task_id, scheduler = %self.scheduler, "cannot report preheat progress: scheduler stream down");
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Starts the download `cmd` asks for and reports on it until it ends.
///
/// `seed_host` says whether this peer is a seed; only a seed honours the command's seed flag.
pub(crate) fn spawn(
    tracker: &TaskTracker,
    seed_host: bool,
    tasks: Arc<TaskManager>,
    scheduler: String,
    cmd: pb::PreheatTask,
) {
    tracker.spawn(async move {
        let reporter = Reporter {
            schedulers: tasks.schedulers().clone(),
            scheduler,
            job_id: cmd.job_id,
            task_id: cmd.task_id.clone(),
            started: Instant::now(),
        };
        let task_id = match cmd.task_id.parse() {
            Ok(id) => id,
            Err(e) => {
                reporter
                    .send(pb::PreheatState::Failed, 0, 0, "", &format!("{e}"))
                    .await;
                return;
            }
        };
        let was_complete = tasks.store().get(&task_id).is_some_and(|t| t.is_complete());
        let req = DownloadRequest {
            url: cmd.url.clone(),
            headers: cmd
                .headers
                .iter()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
            piece_length: (cmd.piece_length > 0).then_some(cmd.piece_length),
            digest: df_core::ids::ObjectDigest::try_from(cmd.digest.clone()).ok(),
            seed: cmd.seed && seed_host,
            task_id: Some(task_id),
            awaits_fetcher: cmd.awaits_fetcher,
        };
        tracing::info!(job_id = cmd.job_id, task_id = %cmd.task_id, url = %cmd.url, seed = req.seed, "preheating");
        let task = match tasks.start(req) {
            Ok(t) => t,
            Err(e) => {
                reporter
                    .send(pb::PreheatState::Failed, 0, 0, "", &e.to_string())
                    .await;
                return;
            }
        };
        let _hold = task.hold();
        let mut changes = task.subscribe();
        let mut last_report: Option<Instant> = None;
        loop {
            changes.borrow_and_update();
            let (done, total, complete, failure, source, downloading) = {
                let st = task.state();
                let total = st.layout.map_or(0, |l| l.content_length);
                let done = st.layout.map_or(0, |l| {
                    st.bitmap
                        .ones()
                        .filter_map(|n| l.range(n).map(|(_, len)| len))
                        .sum()
                });
                (
                    done,
                    total,
                    st.complete,
                    st.failure.clone(),
                    st.source,
                    st.downloading,
                )
            };
            let source = if was_complete {
                ByteSource::Local
            } else {
                source.unwrap_or(ByteSource::Peer)
            };
            if complete {
                reporter
                    .send(
                        pb::PreheatState::Succeeded,
                        total,
                        total,
                        source.as_str(),
                        "",
                    )
                    .await;
                return;
            }
            if let Some(f) = failure.filter(|_| !downloading) {
                if matches!(f, crate::storage::TaskFailure::Stopping) {
                    // The peer shuts down: no final report (the module's invariant); its
                    // scheduler ends this host's part when the host leaves.
                    return;
                }
                let error = match &f {
                    crate::storage::TaskFailure::Origin { status, body, .. } => {
                        let text = String::from_utf8_lossy(body);
                        let line = text.lines().next().unwrap_or_default().trim();
                        if line.is_empty() {
                            format!("origin answered {status}")
                        } else {
                            format!("origin answered {status}: {line}")
                        }
                    }
                    other => other.to_string(),
                };
                reporter
                    .send(pb::PreheatState::Failed, done, total, "", &error)
                    .await;
                return;
            }
            if last_report.is_none_or(|t| t.elapsed() >= REPORT_EVERY) {
                reporter
                    .send(pb::PreheatState::Running, done, total, "", "")
                    .await;
                last_report = Some(Instant::now());
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() {
                    reporter.send(pb::PreheatState::Failed, done, total, "", "download ended unexpectedly").await;
                    return;
                },
                // Progress is also reported when pieces land faster than the throttle lets us
                // notice them (no further change would wake us).
                _ = tokio::time::sleep(REPORT_EVERY) => {}
            }
        }
    });
}
