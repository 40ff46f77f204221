//! `dfctl down`: stops the local cluster recorded in `DIR/cluster.json`.
//!
//! Invariants: only recorded pids whose start time still matches are signalled (never a
//! process group, never a reused pid); SIGTERM first, SIGKILL after the grace period; the
//! command is idempotent, so running it twice, or on a crashed cluster, succeeds.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use crate::cli::ClusterDirArg;
use crate::cluster::{ClusterState, MARKER_FILE, STATE_FILE};
use crate::cmd::up::stop_waves;
use crate::process::{self, StopOutcome};
use crate::render::write_stdout;

/// How long daemons get to exit after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub dir: ClusterDirArg,
    /// Also remove DIR with all configs, data and logs.
    #[arg(long)]
    pub purge: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = args.dir.resolve()?;
    let mut out = String::new();
    let mut stuck = Vec::new();
    match ClusterState::load(&dir).await? {
        None => out.push_str(&format!(
            "no cluster in {} (no {STATE_FILE})\n",
            dir.display()
        )),
        Some(state) => {
            let waves = stop_waves(&state.processes);
            let outcomes = process::stop_in_waves(&waves, GRACE, Duration::from_secs(2)).await?;
            for (name, outcome) in &outcomes {
                let pid = state
                    .processes
                    .iter()
                    .find(|p| &p.name == name)
                    .map_or(0, |p| p.pid);
                out.push_str(&format!("{name} (pid {pid}): {}\n", outcome.describe()));
                if *outcome == StopOutcome::Stuck {
                    stuck.push(format!("{name} (pid {pid})"));
                }
            }
            // Keep the record of anything still running, so a later `down` can retry.
            if stuck.is_empty() {
                ClusterState::remove(&dir).await?;
            }
        }
    }
    write_stdout(&out)?;
    if args.purge && stuck.is_empty() && purge(&dir).await? {
        write_stdout(&format!("removed {}\n", dir.display()))?;
    }
    anyhow::ensure!(
        stuck.is_empty(),
        "still running after SIGKILL: {}; {} kept",
        stuck.join(", "),
        ClusterState::path(&dir).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Removes DIR if `dfctl up` created it (it holds the marker file); false when DIR is absent.
/// The marker check keeps a mistyped `--dir ~ --purge` from deleting a home directory.
async fn purge(dir: &Path) -> anyhow::Result<bool> {
    match tokio::fs::metadata(dir).await {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
        Ok(_) => {}
    }
    let marker = dir.join(MARKER_FILE);
    anyhow::ensure!(
        tokio::fs::try_exists(&marker).await.unwrap_or(false),
        "refusing to remove {}: it has no {MARKER_FILE} file, so `dfctl up` did not create it",
        dir.display()
    );
    tokio::fs::remove_dir_all(dir)
        .await
        .with_context(|| format!("cannot remove {}", dir.display()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn purge_removes_only_marked_directories() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let unmarked = tmp.path().join("home");
        tokio::fs::create_dir(&unmarked).await.expect("mkdir");
        let err = purge(&unmarked).await.expect_err("unmarked");
        assert!(err.to_string().contains("refusing to remove"), "{err}");
        assert!(unmarked.exists());

        let marked = tmp.path().join("cluster");
        tokio::fs::create_dir_all(marked.join("peer-0/data"))
            .await
            .expect("mkdir");
        tokio::fs::write(marked.join(MARKER_FILE), "")
            .await
            .expect("marker");
        assert!(purge(&marked).await.expect("purge"));
        assert!(!marked.exists());
        assert!(!purge(&marked).await.expect("absent is fine"));
    }

    #[tokio::test]
    async fn down_without_a_cluster_succeeds() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let args = Args {
            dir: ClusterDirArg {
                dir: Some(tmp.path().join("none")),
            },
            purge: true,
        };
        assert!(run(args).await.is_ok());
    }
}
