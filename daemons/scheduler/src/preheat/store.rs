//! The job store: every job this scheduler knows, in memory for the API and the running jobs,
//! and mirrored to the [`journal`](super::journal) so it outlives the process.
//!
//! Invariants: IDs only grow, across restarts too (the journal keeps the last one issued);
//! every change the journal needs (creation, dispatch, the end) is put to it under the store's
//! lock, so it sees them in the order the store made them; progress reports are kept in
//! memory only.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use df_core::api;
use df_core::ids::HostId;
use df_proto::scheduler::v1 as pb;

use super::job::{Job, JobBlob, JobState, TargetState, beyond_keep};
use super::journal::{self, Journal, JournalError, Writer};
use crate::config::JobsConfig;

/// Every job this scheduler took (and, after a restart, the ones it took before).
pub struct JobStore {
    inner: Mutex<Inner>,
    /// Woken on every report and host departure, so running jobs re-check their state.
    pub(super) changed: tokio::sync::Notify,
    journal: Writer,
}

#[derive(Default)]
struct Inner {
    /// The last ID issued.
    next_id: u64,
    jobs: BTreeMap<u64, Job>,
}

/// What [`JobStore::create`] did.
pub(super) enum Created {
    New(u64),
    /// The same preheat was still running: that job.
    Running(Box<api::JobView>),
}

impl JobStore {
    /// Loads the jobs journaled in `config.state_dir` (creating it if needed) and starts
    /// journaling. Jobs that were PENDING are failed (see [`Job::interrupted`]).
    pub async fn open(config: &JobsConfig) -> Result<Self, JournalError> {
        let dir = config.state_dir.clone();
        let keep = config.keep_finished;
        let opened = tokio::task::spawn_blocking(move || load(dir, keep)).await;
        let (journal, inner) = opened.map_err(|e| JournalError::Task {
            path: config.state_dir.clone(),
            reason: e.to_string(),
        })??;
        Ok(Self {
            inner: Mutex::new(inner),
            changed: tokio::sync::Notify::new(),
            journal: Writer::spawn(journal),
        })
    }

    /// Returns once every change so far is on disk (at shutdown).
    pub async fn flush(&self) {
        self.journal.flush().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, id: u64) -> Option<api::JobView> {
        self.lock().jobs.get(&id).map(Job::view)
    }

    /// Newest first.
    pub fn list(&self) -> Vec<api::JobView> {
        self.lock().jobs.values().rev().map(Job::view).collect()
    }

    /// A new PENDING job under the next ID, or the running job with the same `key`; the oldest
    /// finished jobs beyond `keep_finished` are forgotten first.
    pub(super) fn create(
        &self,
        args: &api::PreheatArgs,
        key: String,
        keep_finished: usize,
    ) -> Created {
        let mut inner = self.lock();
        if let Some(running) = inner
            .jobs
            .values()
            .find(|j| j.state == JobState::Pending && j.key == key)
        {
            return Created::Running(Box::new(running.view()));
        }
        let finished = inner
            .jobs
            .values()
            .map(|j| (j.id, j.state != JobState::Pending));
        for id in beyond_keep(finished, keep_finished) {
            inner.jobs.remove(&id);
        }
        inner.next_id += 1;
        let id = inner.next_id;
        let job = Job::new(id, args, key);
        self.journal.put(&job);
        inner.jobs.insert(id, job);
        Created::New(id)
    }

    /// The job's blobs and the hosts chosen for them, as the commands go out.
    pub(super) fn dispatched(&self, id: u64, blobs: Vec<JobBlob>) {
        self.with_job(id, |j| {
            j.blobs = blobs;
            j.updated = SystemTime::now();
            self.journal.put(j);
        });
    }

    /// Ends the job (a finished job never changes again).
    pub(super) fn finish(&self, id: u64, state: JobState, error: String) {
        self.with_job(id, |j| {
            j.finish(state, error);
            self.journal.put(j);
        });
    }

    /// A host's progress report for one blob of one job.
    pub fn report(&self, host: &HostId, r: pb::PreheatReport) {
        let mut inner = self.lock();
        let Some(job) = inner.jobs.get_mut(&r.job_id) else {
            return;
        };
        if job.state != JobState::Pending {
            return;
        }
        let Some(target) = job
            .blobs
            .iter_mut()
            .filter(|b| b.task_id.as_str() == r.task_id)
            .flat_map(|b| b.targets.iter_mut())
            .find(|t| &t.host_id == host)
        else {
            return;
        };
        if target.state.is_final() {
            return;
        }
        target.state = match pb::PreheatState::try_from(r.state) {
            Ok(pb::PreheatState::Succeeded) => TargetState::Succeeded,
            Ok(pb::PreheatState::Failed) => TargetState::Failed,
            _ => TargetState::Running,
        };
        target.completed_length = r.completed_length;
        target.content_length = r.content_length;
        target.source = r.source;
        target.error = r.error;
        target.cost_millis = r.cost_millis;
        job.updated = SystemTime::now();
        drop(inner);
        self.changed.notify_waiters();
    }

    /// A host left: the jobs waiting on it re-check whether its grace has begun.
    pub fn host_departed(&self) {
        self.changed.notify_waiters();
    }

    pub(super) fn with_job<R>(&self, id: u64, f: impl FnOnce(&mut Job) -> R) -> Option<R> {
        self.lock().jobs.get_mut(&id).map(f)
    }
}

/// Reads the journal, fails the jobs that were running, forgets finished ones beyond `keep`
/// and writes the result back as a fresh journal (blocking: run on the blocking pool).
fn load(dir: PathBuf, keep: usize) -> Result<(Journal, Inner), JournalError> {
    let journal::Loaded {
        next_id,
        mut jobs,
        skipped,
    } = journal::load(&dir)?;
    let mut interrupted = 0;
    for job in jobs.values_mut() {
        if job.state == JobState::Pending {
            job.interrupted();
            interrupted += 1;
        }
    }
    let finished = jobs.values().map(|j| (j.id, j.state != JobState::Pending));
    for id in beyond_keep(finished, keep) {
        jobs.remove(&id);
    }
    let journal = Journal::create(&dir, keep, next_id, jobs.values())?;
    tracing::info!(
        dir = %dir.display(),
        jobs = jobs.len(),
        interrupted,
        skipped,
        next_id = next_id + 1,
        "preheat jobs loaded"
    );
    Ok((journal, Inner { next_id, jobs }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preheat::job::RESTARTED;

    fn config(dir: &std::path::Path, keep: usize) -> JobsConfig {
        let mut c = crate::Config::default().jobs;
        c.state_dir = dir.to_owned();
        c.keep_finished = keep;
        c
    }

    fn args(n: u64) -> api::PreheatArgs {
        api::PreheatArgs {
            kind: "file".into(),
            url: format!("https://origin.test/{n}"),
            ..api::PreheatArgs::default()
        }
    }

    fn new_id(store: &JobStore, n: u64, keep: usize) -> u64 {
        match store.create(&args(n), format!("key {n}"), keep) {
            Created::New(id) => id,
            Created::Running(v) => panic!("job {} still running", v.id),
        }
    }

    #[tokio::test]
    async fn a_reopened_store_fails_running_jobs_keeps_finished_ones_and_continues_ids() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let keep = 2;
        let store = JobStore::open(&config(tmp.path(), keep))
            .await
            .expect("opens");
        for n in 1..=4 {
            let id = new_id(&store, n, keep);
            store.finish(id, JobState::Success, String::new());
        }
        let running = new_id(&store, 5, keep);
        let before = store.get(4).expect("kept");
        store.flush().await;
        drop(store);

        let store = JobStore::open(&config(tmp.path(), keep))
            .await
            .expect("reopens");
        let ids: Vec<u64> = store.list().iter().map(|v| v.id).collect();
        // Job 3 is forgotten now: the failed job 5 is finished too, and only 2 are kept.
        assert_eq!(ids, [5, 4], "newest first");
        assert_eq!(
            serde_json::to_value(store.get(4)).expect("json"),
            serde_json::to_value(&before).expect("json"),
            "a finished job shows what it showed"
        );
        let failed = store.get(running).expect("known");
        assert_eq!(
            (failed.state.as_str(), failed.error.as_str()),
            ("FAILURE", RESTARTED)
        );
        assert!(store.get(99).is_none(), "never issued");
        assert_eq!(new_id(&store, 6, keep), 6, "IDs are not reused");
    }
}
