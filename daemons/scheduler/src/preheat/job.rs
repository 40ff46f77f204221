//! One preheat job as the scheduler holds it, shows it (`/oapi/v1/jobs`) and journals it.
//!
//! Invariants: a job holds no secrets (its request is redacted when the job is made), so it
//! can be shown and written to the journal as it is; once it leaves PENDING it never changes
//! again, so its view after a restart is the view before.

use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use df_core::api;
use df_core::ids::{HostId, TaskId};

use super::registry::ResolvedBlob;

/// What a job that was PENDING when its scheduler stopped says after the restart.
pub(super) const RESTARTED: &str = "the scheduler restarted while this job ran; run it again \
     (the peers keep what they already fetched, so a rerun reads it from their caches)";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(super) enum JobState {
    Pending,
    Success,
    Failure,
}

impl JobState {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Success => "SUCCESS",
            Self::Failure => "FAILURE",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum TargetState {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl TargetState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub(super) fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// One host's part of one blob.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Target {
    pub(super) host_id: HostId,
    pub(super) hostname: String,
    pub(super) ip: String,
    pub(super) state: TargetState,
    pub(super) completed_length: u64,
    pub(super) content_length: u64,
    pub(super) source: String,
    pub(super) error: String,
    pub(super) cost_millis: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct JobBlob {
    pub(super) resolved: ResolvedBlob,
    pub(super) task_id: TaskId,
    pub(super) targets: Vec<Target>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Job {
    pub(super) id: u64,
    /// As requested, redacted (see [`redacted`]): the credentials live only in the running
    /// job's plan, never here, so never on disk.
    pub(super) args: api::PreheatArgs,
    /// The dedup key (see `Plan::dedup_key`): no credentials either.
    pub(super) key: String,
    pub(super) state: JobState,
    pub(super) error: String,
    pub(super) created: SystemTime,
    pub(super) updated: SystemTime,
    /// Creation to the end, once finished.
    pub(super) elapsed: Option<Duration>,
    pub(super) blobs: Vec<JobBlob>,
    /// Monotonic creation time, for `elapsed` while running (meaningless after a restart,
    /// where every job is finished).
    #[serde(skip, default = "Instant::now")]
    pub(super) created_at: Instant,
}

impl Job {
    /// A new PENDING job; `args` are redacted here.
    pub(super) fn new(id: u64, args: &api::PreheatArgs, key: String) -> Self {
        let now = SystemTime::now();
        Self {
            id,
            args: redacted(args),
            key,
            state: JobState::Pending,
            error: String::new(),
            created: now,
            updated: now,
            elapsed: None,
            blobs: Vec::new(),
            created_at: Instant::now(),
        }
    }

    /// Ends the job (once: a finished job never changes).
    pub(super) fn finish(&mut self, state: JobState, error: String) {
        if self.state != JobState::Pending {
            return;
        }
        self.state = state;
        self.error = error;
        self.updated = SystemTime::now();
        self.elapsed = Some(self.created_at.elapsed());
    }

    /// A job loaded PENDING from the journal: the process that sent its commands and would
    /// have collected its reports is gone, so it fails with [`RESTARTED`], as do the parts
    /// still waiting for a report. (Why not resume it: see `docs/architecture.md`.)
    pub(super) fn interrupted(&mut self) {
        if self.state != JobState::Pending {
            return;
        }
        for t in self.blobs.iter_mut().flat_map(|b| &mut b.targets) {
            if !t.state.is_final() {
                t.state = TargetState::Failed;
                t.error = "the scheduler restarted before this host reported".into();
            }
        }
        self.state = JobState::Failure;
        self.error = RESTARTED.into();
        self.updated = SystemTime::now();
        self.elapsed = Some(
            self.updated
                .duration_since(self.created)
                .unwrap_or_default(),
        );
    }

    pub(super) fn view(&self) -> api::JobView {
        let rfc3339 = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
        let mut success = Vec::new();
        let mut failure = Vec::new();
        let blobs = self
            .blobs
            .iter()
            .map(|b| {
                for t in &b.targets {
                    let task = api::HostTask {
                        url: b.resolved.url.clone(),
                        hostname: t.hostname.clone(),
                        ip: t.ip.clone(),
                        description: t.error.clone(),
                    };
                    match t.state {
                        TargetState::Succeeded => success.push(task),
                        TargetState::Failed => failure.push(task),
                        _ => {}
                    }
                }
                blob_view(b)
            })
            .collect();
        let elapsed = self.elapsed.unwrap_or_else(|| self.created_at.elapsed());
        api::JobView {
            id: self.id,
            job_type: "preheat".into(),
            state: self.state.as_str().into(),
            created_at: rfc3339(self.created),
            updated_at: rfc3339(self.updated),
            args: self.args.clone(),
            result: api::JobResult {
                state: self.state.as_str().into(),
                job_states: vec![api::JobStateView {
                    state: self.state.as_str().into(),
                    error: self.error.clone(),
                    results: vec![api::ClusterResult {
                        success_tasks: success,
                        failure_tasks: failure,
                        scheduler_cluster_id: 0,
                    }],
                }],
            },
            error: self.error.clone(),
            elapsed_secs: elapsed.as_secs_f64(),
            blobs,
        }
    }
}

fn blob_view(b: &JobBlob) -> api::BlobView {
    api::BlobView {
        url: b.resolved.url.clone(),
        task_id: b.task_id.to_string(),
        digest: b.resolved.digest.clone(),
        size: b
            .resolved
            .size
            .or_else(|| b.targets.iter().map(|t| t.content_length).find(|l| *l > 0)),
        media_type: b.resolved.media_type.clone(),
        platform: b.resolved.platform.clone(),
        peers: b
            .targets
            .iter()
            .map(|t| api::BlobPeerView {
                host_id: t.host_id.to_string(),
                hostname: t.hostname.clone(),
                ip: t.ip.clone(),
                state: t.state.as_str().to_owned(),
                completed_length: t.completed_length,
                content_length: t.content_length,
                source: t.source.clone(),
                error: t.error.clone(),
                cost_millis: t.cost_millis,
            })
            .collect(),
    }
}

/// The request as shown back: no password, header values hidden (they are credentials).
pub(super) fn redacted(args: &api::PreheatArgs) -> api::PreheatArgs {
    let mut out = args.clone();
    out.password = String::new();
    if let Some(h) = &mut out.headers {
        for v in h.values_mut() {
            *v = "<redacted>".into();
        }
    }
    out
}

/// The IDs of the oldest finished jobs beyond `keep`, given every job's (ID, finished) in ID
/// order. The store and the journal both forget by this rule, so they hold the same jobs.
pub(super) fn beyond_keep(jobs: impl Iterator<Item = (u64, bool)>, keep: usize) -> Vec<u64> {
    let finished: Vec<u64> = jobs.filter(|(_, f)| *f).map(|(id, _)| id).collect();
    let excess = finished.len().saturating_sub(keep);
    finished[..excess].to_vec()
}

/// The job's state once every target has reported a final state; `None` while some have not.
pub(super) fn settled(j: &Job) -> Option<(JobState, String)> {
    let targets: Vec<&Target> = j.blobs.iter().flat_map(|b| &b.targets).collect();
    if !targets.iter().all(|t| t.state.is_final()) {
        return None;
    }
    let failed: Vec<&&Target> = targets
        .iter()
        .filter(|t| t.state == TargetState::Failed)
        .collect();
    Some(match failed.first() {
        None => (JobState::Success, String::new()),
        Some(first) => (
            JobState::Failure,
            format!(
                "{} of {} downloads failed; first: {} on {}",
                failed.len(),
                targets.len(),
                first.error,
                first.hostname
            ),
        ),
    })
}
