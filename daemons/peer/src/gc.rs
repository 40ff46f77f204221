//! The storage GC loop: every `interval`, evict what the store's watermarks and the task TTL
//! say must go, and tell each task's scheduler that this peer no longer holds it.
//!
//! Invariant: the first pass runs one `interval` after start (a restart does not evict before
//! the schedulers have heard what is held), and the loop ends at shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::announcer::SchedulerClient;
use crate::storage::PieceStore;

/// Runs GC passes until `shutdown`.
pub(crate) async fn run(
    store: Arc<PieceStore>,
    schedulers: Arc<SchedulerClient>,
    interval: Duration,
    task_ttl: Duration,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(interval);
    every.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {
                for (task, peer) in store.gc(task_ttl).await {
                    schedulers.report_evicted(&task, &peer);
                }
            }
        }
    }
}
