//! The schedulers' host commands, dispatched: `SeedTask` starts a seed download (only on a
//! seed peer), `PreheatTask` starts a preheat that reports back to the scheduler that sent it.
//!
//! Invariant: the dispatcher ends when every scheduler link has dropped its sender (they do at
//! shutdown); the work it starts is spawned on the daemon's tracker, so shutdown can wait for
//! it.

use std::sync::Arc;

use df_proto::scheduler::v1 as pb;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::announcer::HostCommand;
use crate::download::{DownloadRequest, TaskManager};
use crate::preheat;

/// Runs each command as it arrives until the links hang up.
pub(crate) async fn dispatch(
    mut commands: mpsc::UnboundedReceiver<HostCommand>,
    seed_host: bool,
    manager: Arc<TaskManager>,
    tracker: TaskTracker,
) {
    while let Some(HostCommand { scheduler, command }) = commands.recv().await {
        match command {
            pb::host_response::Response::PreheatTask(p) => {
                preheat::spawn(&tracker, seed_host, manager.clone(), scheduler, p);
            }
            pb::host_response::Response::SeedTask(s) => seed(seed_host, &manager, s),
            // Handled by the link itself (it reconnects); never forwarded.
            pb::host_response::Response::Reconnect(_) => {}
        }
    }
}

/// Starts the seed download a scheduler asked for (`TaskManager` refuses a task ID that is
/// not its URL's: a seed's copy is what the other peers verify against).
fn seed(seed_host: bool, manager: &TaskManager, s: pb::SeedTask) {
    if !seed_host {
        tracing::warn!(task_id = %s.task_id, "asked to seed a task, but this peer is not a seed");
        return;
    }
    let req = DownloadRequest {
        url: s.url,
        headers: s.headers.into_iter().map(|h| (h.name, h.value)).collect(),
        piece_length: (s.piece_length > 0).then_some(s.piece_length),
        digest: df_core::ids::ObjectDigest::try_from(s.digest).ok(),
        seed: true,
        task_id: s.task_id.parse().ok(),
        awaits_fetcher: false,
    };
    if let Err(e) = manager.start(req) {
        tracing::warn!(task_id = %s.task_id, error = %e, "cannot seed task");
    }
}

#[cfg(test)]
mod tests {
    use df_core::ids::{TaskId, TaskIdParams};

    use super::*;

    fn request(task_id: &TaskId, url: &str) -> DownloadRequest {
        DownloadRequest {
            url: url.into(),
            seed: true,
            task_id: Some(task_id.clone()),
            ..Default::default()
        }
    }

    #[test]
    fn a_commanded_download_fetches_only_the_url_its_task_id_names() {
        let url = "https://registry.example/v2/app/blobs/sha256:00";
        let id = TaskId::from_url(url, &TaskIdParams::default()).expect("id");
        assert_eq!(
            TaskManager::task_id(&request(&id, url)).expect("matches"),
            id
        );
        let err = TaskManager::task_id(&request(&id, "http://evil.example/x"))
            .expect_err("another url under that id");
        assert!(err.to_string().contains("is not the one"), "{err}");
    }
}
