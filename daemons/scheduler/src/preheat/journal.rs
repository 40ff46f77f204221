//! The job journal: how preheat jobs and their IDs outlive the scheduler process.
//!
//! `jobs.journal` in `jobs.state_dir` is JSON lines, appended and fsync'd: `{"next_id":N}`
//! (the last job ID issued) and `{"job":{..}}` (a job as it stood; the last line of an ID
//! wins). A job is written when it is created, when its commands go out and when it
//! finishes; progress reports are not (after a restart a PENDING job is failed, not resumed,
//! so its progress would never be read).
//!
//! Invariants:
//! - The journal holds the jobs the store holds: both forget by [`super::job::beyond_keep`]
//!   when a job is created, and loading forgets beyond `jobs.keep_finished` again.
//! - The file stays bounded: once it has more than `2 × live jobs + COMPACT_SLACK` lines it is
//!   rewritten (a new file renamed over the old one, so a crash leaves one or the other),
//!   and it is rewritten at every start, which also drops a torn last line.
//! - A line that does not parse (a crash mid-append) is skipped with a warning; it never stops
//!   the scheduler from starting. An unusable directory does, naming `jobs.state_dir`.
//! - The directory is 0700 and the files 0600; no secret is in them anyway (jobs are
//!   redacted when made).
//! - File I/O runs on the blocking pool: the [`Writer`] task batches what the store sends.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::job::{Job, JobState, beyond_keep};

/// The journal's file name in `jobs.state_dir`.
pub const FILE: &str = "jobs.journal";
/// Lines beyond twice the live jobs the file may grow by before it is rewritten.
const COMPACT_SLACK: usize = 64;
/// Entries written in one go at most (a burst is written in several appends).
const MAX_BATCH: usize = 256;

/// Why the journal cannot be used at start; each message names the key and the path.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("jobs.state_dir {}: cannot create or use the directory: {source}", path.display())]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("jobs.state_dir: cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("jobs.state_dir: cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("jobs.state_dir {}: loading the job journal stopped: {reason}", path.display())]
    Task { path: PathBuf, reason: String },
}

/// One line of the journal.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Record {
    NextId(u64),
    Job(Box<Job>),
}

/// What the journal held at start.
#[derive(Debug, Default)]
pub(super) struct Loaded {
    /// The last job ID issued (0: none yet).
    pub(super) next_id: u64,
    pub(super) jobs: BTreeMap<u64, Job>,
    /// Lines that did not parse and were skipped.
    pub(super) skipped: usize,
}

/// Creates `dir` owner-only if needed and reads its journal (none yet: nothing loaded).
pub(super) fn load(dir: &Path) -> Result<Loaded, JournalError> {
    df_core::telemetry::private_dir(dir).map_err(|source| JournalError::Dir {
        path: dir.to_owned(),
        source,
    })?;
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => return Err(JournalError::Read { path, source }),
    };
    let mut loaded = Loaded::default();
    for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Record>(line) {
            Ok(Record::NextId(id)) => loaded.next_id = loaded.next_id.max(id),
            Ok(Record::Job(job)) => {
                loaded.next_id = loaded.next_id.max(job.id);
                loaded.jobs.insert(job.id, *job);
            }
            Err(e) => {
                // A crash mid-append leaves a torn last line; the jobs before it are intact.
                tracing::warn!(file = %path.display(), line = n + 1, error = %e, "skipping an unreadable job journal line");
                loaded.skipped += 1;
            }
        }
    }
    Ok(loaded)
}

/// The latest line of one job, as the journal mirrors the store.
#[derive(Debug)]
pub(super) struct Entry {
    id: u64,
    finished: bool,
    line: String,
}

impl Entry {
    pub(super) fn of(job: &Job) -> serde_json::Result<Self> {
        #[derive(Serialize)]
        #[serde(rename_all = "snake_case")]
        enum Out<'a> {
            Job(&'a Job),
        }
        Ok(Self {
            id: job.id,
            finished: job.state != JobState::Pending,
            line: serde_json::to_string(&Out::Job(job))?,
        })
    }
}

/// The open journal and the latest entry of every job in it (what a rewrite writes).
#[derive(Debug)]
pub(super) struct Journal {
    dir: PathBuf,
    file: File,
    /// Lines in the file.
    lines: usize,
    /// A write failed part-way: the next write rewrites the file instead of appending.
    dirty: bool,
    keep_finished: usize,
    next_id: u64,
    entries: BTreeMap<u64, Entry>,
}

impl Journal {
    /// Writes `jobs` as a fresh journal in `dir` (replacing the old one) and opens it.
    pub(super) fn create<'a>(
        dir: &Path,
        keep_finished: usize,
        next_id: u64,
        jobs: impl Iterator<Item = &'a Job>,
    ) -> Result<Self, JournalError> {
        let path = dir.join(FILE);
        let entries = jobs
            .map(|j| Entry::of(j).map(|e| (e.id, e)))
            .collect::<serde_json::Result<BTreeMap<u64, Entry>>>()
            .map_err(|e| JournalError::Write {
                path: path.clone(),
                source: e.into(),
            })?;
        let file = rewrite(dir, next_id, &entries)
            .map_err(|source| JournalError::Write { path, source })?;
        Ok(Self {
            dir: dir.to_owned(),
            file,
            lines: entries.len() + 1,
            dirty: false,
            keep_finished,
            next_id,
            entries,
        })
    }

    /// Takes `batch` into the mirror, then appends it, or rewrites the file when it has grown
    /// past its bound (or a previous write failed).
    pub(super) fn write(&mut self, batch: Vec<Entry>) -> std::io::Result<()> {
        let mut text = String::new();
        for entry in batch {
            if !self.entries.contains_key(&entry.id) {
                // A new job: forget as the store did when it created it.
                let finished = self.entries.values().map(|e| (e.id, e.finished));
                for id in beyond_keep(finished, self.keep_finished) {
                    self.entries.remove(&id);
                }
            }
            self.next_id = self.next_id.max(entry.id);
            text.push_str(&entry.line);
            text.push('\n');
            self.lines += 1;
            self.entries.insert(entry.id, entry);
        }
        if self.dirty || self.lines > 2 * self.entries.len() + COMPACT_SLACK {
            return self.compact();
        }
        let written = self
            .file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_data());
        self.dirty = written.is_err();
        written
    }

    fn compact(&mut self) -> std::io::Result<()> {
        self.dirty = true;
        self.file = rewrite(&self.dir, self.next_id, &self.entries)?;
        self.lines = self.entries.len() + 1;
        self.dirty = false;
        Ok(())
    }
}

/// Writes a whole journal beside the old one, renames it over it (so a crash leaves one of
/// the two whole) and returns the new file open for appending.
fn rewrite(dir: &Path, next_id: u64, entries: &BTreeMap<u64, Entry>) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut text = format!("{{\"next_id\":{next_id}}}\n");
    for e in entries.values() {
        text.push_str(&e.line);
        text.push('\n');
    }
    // A leftover from a crash may have other permissions: start from nothing.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    out.write_all(text.as_bytes())?;
    out.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    // The rename itself is durable only once the directory is synced.
    File::open(dir)?.sync_all()?;
    OpenOptions::new().append(true).open(&path)
}

enum Msg {
    Put(Entry),
    Flush(oneshot::Sender<()>),
}

/// The store's handle on the journal: entries go to a task that writes them in batches on the
/// blocking pool, in the order they were put.
#[derive(Debug)]
pub(super) struct Writer {
    tx: mpsc::UnboundedSender<Msg>,
}

impl Writer {
    /// Starts the writing task (on the current runtime).
    pub(super) fn spawn(journal: Journal) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(journal, rx));
        Self { tx }
    }

    /// Journals `job` as it stands now.
    pub(super) fn put(&self, job: &Job) {
        match Entry::of(job) {
            // A closed channel means the writer stopped, which it already logged.
            Ok(entry) => _ = self.tx.send(Msg::Put(entry)),
            Err(e) => tracing::warn!(job_id = job.id, error = %e, "cannot journal a preheat job"),
        }
    }

    /// Returns once everything put before is written (or failed to be, which is logged).
    pub(super) async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            _ = rx.await;
        }
    }
}

async fn write_loop(mut journal: Journal, mut rx: mpsc::UnboundedReceiver<Msg>) {
    while let Some(first) = rx.recv().await {
        let mut batch = Vec::new();
        let mut acks = Vec::new();
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Put(e) => batch.push(e),
                Msg::Flush(ack) => acks.push(ack),
            }
            next = (batch.len() < MAX_BATCH)
                .then(|| rx.try_recv().ok())
                .flatten();
        }
        if !batch.is_empty() {
            let dir = journal.dir.clone();
            let written = tokio::task::spawn_blocking(move || {
                let r = journal.write(batch);
                (journal, r)
            })
            .await;
            match written {
                Ok((j, r)) => {
                    journal = j;
                    if let Err(e) = r {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot write the job journal (jobs.state_dir); jobs since are kept in memory only until a write succeeds");
                    }
                }
                Err(e) => {
                    tracing::error!(dir = %dir.display(), error = %e, "the job journal writer stopped; jobs are kept in memory only");
                    return;
                }
            }
        }
        for ack in acks {
            _ = ack.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preheat::job::{JobBlob, Target, TargetState};
    use crate::preheat::registry::ResolvedBlob;
    use df_core::api::PreheatArgs;
    use df_core::ids::{HostId, TaskId, TaskIdParams};
    use std::os::unix::fs::PermissionsExt as _;

    fn job(id: u64, state: JobState) -> Job {
        let args = PreheatArgs {
            kind: "file".into(),
            url: format!("https://origin.test/{id}"),
            password: "s3cret".into(),
            ..PreheatArgs::default()
        };
        let mut j = Job::new(id, &args, format!("key {id}"));
        let url = args.url.clone();
        j.blobs = vec![JobBlob {
            task_id: TaskId::from_url(&url, &TaskIdParams::default()).expect("id"),
            resolved: ResolvedBlob {
                url,
                digest: String::new(),
                size: Some(42),
                media_type: String::new(),
                platform: String::new(),
            },
            targets: vec![Target {
                host_id: HostId::new("10.0.0.1", "seed-0", true),
                hostname: "seed-0".into(),
                ip: "10.0.0.1".into(),
                state: TargetState::Pending,
                completed_length: 0,
                content_length: 42,
                source: String::new(),
                error: String::new(),
                cost_millis: 0,
            }],
        }];
        if state != JobState::Pending {
            j.finish(state, "done".into());
        }
        j
    }

    fn open(dir: &Path, keep: usize) -> (Journal, Loaded) {
        let loaded = load(dir).expect("loads");
        let journal =
            Journal::create(dir, keep, loaded.next_id, loaded.jobs.values()).expect("creates");
        (journal, loaded)
    }

    fn put(journal: &mut Journal, jobs: &[&Job]) {
        let batch = jobs.iter().map(|j| Entry::of(j).expect("entry")).collect();
        journal.write(batch).expect("writes");
    }

    fn lines(dir: &Path) -> usize {
        std::fs::read_to_string(dir.join(FILE))
            .expect("journal")
            .lines()
            .count()
    }

    #[test]
    fn jobs_are_written_and_reload_as_they_were_shown() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("state");
        let (mut journal, loaded) = open(&dir, 10);
        assert_eq!((loaded.next_id, loaded.jobs.len()), (0, 0));
        let (a, b) = (job(1, JobState::Pending), job(2, JobState::Success));
        put(&mut journal, &[&a, &b]);
        let mut a_done = a.clone();
        a_done.finish(JobState::Failure, "1 of 1 downloads failed".into());
        put(&mut journal, &[&a_done]);
        drop(journal);

        let loaded = load(&dir).expect("reloads");
        assert_eq!(loaded.next_id, 2);
        assert_eq!(loaded.skipped, 0);
        let views: Vec<_> = loaded.jobs.values().map(Job::view).collect();
        let want = [a_done.view(), b.view()];
        assert_eq!(
            serde_json::to_value(&views).expect("json"),
            serde_json::to_value(want).expect("json"),
            "the last line of each job wins, and it shows the same"
        );
        let text = std::fs::read_to_string(dir.join(FILE)).expect("journal");
        assert!(!text.contains("s3cret"), "no credentials on disk: {text}");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(FILE)), 0o600);
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_the_next_start_drops_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let (mut journal, _) = open(dir, 10);
        put(
            &mut journal,
            &[&job(1, JobState::Success), &job(2, JobState::Success)],
        );
        drop(journal);
        // A crash mid-append: half a line, no newline, invalid UTF-8 for good measure.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join(FILE))
            .expect("open");
        f.write_all(b"{\"job\":{\"id\":3,\"args\":{\"ty\xff")
            .expect("write");
        drop(f);

        let (mut journal, loaded) = open(dir, 10);
        assert_eq!(loaded.skipped, 1);
        assert_eq!(loaded.jobs.keys().copied().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(loaded.next_id, 2, "the torn job was never acknowledged");
        // Appending after the rewrite does not glue onto the torn bytes.
        put(&mut journal, &[&job(3, JobState::Pending)]);
        drop(journal);
        let loaded = load(dir).expect("reloads");
        assert_eq!(loaded.skipped, 0);
        assert_eq!(loaded.jobs.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn the_file_stays_bounded_and_keeps_the_newest_finished_jobs_and_the_next_id() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let keep = 3;
        let (mut journal, _) = open(dir, keep);
        let mut most = 0;
        for id in 1..=500 {
            let pending = job(id, JobState::Pending);
            put(&mut journal, &[&pending]);
            let mut done = pending.clone();
            done.finish(JobState::Success, String::new());
            put(&mut journal, &[&done]);
            most = most.max(lines(dir));
        }
        // At most `keep` finished plus the one being created, twice, plus the slack.
        assert!(most <= 2 * (keep + 1) + COMPACT_SLACK + 1, "{most} lines");
        drop(journal);
        let loaded = load(dir).expect("reloads");
        // Lines not yet compacted away still name forgotten jobs (the store forgets them again
        // at start); the file is bounded all the same.
        assert!(
            loaded.jobs.len() <= 2 * (keep + 1) + COMPACT_SLACK,
            "{:?}",
            loaded.jobs.keys()
        );
        assert_eq!(loaded.jobs.keys().last(), Some(&500));
        assert_eq!(loaded.next_id, 500);

        // Forgetting every finished job still remembers the IDs issued.
        let journal = Journal::create(dir, 0, 500, std::iter::empty()).expect("creates");
        drop(journal);
        assert_eq!(load(dir).expect("reloads").next_id, 500);
    }

    #[test]
    fn an_unusable_directory_names_the_key_and_path() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("not-a-dir");
        std::fs::write(&file, b"x").expect("write");
        let err = load(&file.join("state")).expect_err("under a file");
        let text = err.to_string();
        assert!(
            text.starts_with("jobs.state_dir ") && text.contains("not-a-dir/state"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    #[tokio::test]
    async fn the_writer_batches_in_order_and_flush_waits_for_the_disk() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_owned();
        let (journal, _) = open(&dir, 100);
        let writer = Writer::spawn(journal);
        let mut j = job(7, JobState::Pending);
        writer.put(&j);
        j.finish(JobState::Success, String::new());
        writer.put(&j);
        writer.flush().await;
        let loaded = load(&dir).expect("reloads");
        assert_eq!(loaded.jobs[&7].state, JobState::Success);
        assert_eq!(loaded.next_id, 7);
    }
}
