//! The watch stream behind `GET /api/v1/watch` (`dfctl top`): one producer, many subscribers.
//!
//! Invariants:
//! - The cluster-wide part of a snapshot (tasks and hosts) is computed and serialised once per
//!   [`WATCH_INTERVAL_MS`] by [`WatchFeed::publish`], never per subscriber, and only while
//!   someone watches; subscribers share it through a `tokio::sync::watch` channel as bytes.
//! - A new snapshot is published only when something other than an age (`*_secs_ago`)
//!   changed, so an idle cluster costs subscribers nothing but heartbeats; ages in a snapshot
//!   are as of the last change.
//! - The only per-subscriber work is the one task a subscriber selected (`?task=`), recomputed
//!   when the shared part changes: bounded by what that operator looks at.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use df_core::api::{WATCH_HEARTBEAT_MS, WATCH_INTERVAL_MS};
use df_core::ids::TaskId;
use serde::Deserialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::scheduling::Scheduler;

/// The shared part of one snapshot: `"tasks":[..],"hosts":[..]` already serialised.
#[derive(Debug, Default)]
struct SharedPart {
    seq: u64,
    body: Bytes,
    /// Hash of the content without ages: what decides whether anything changed.
    fingerprint: u64,
}

/// Feeds serialised JSON into a hasher without keeping it.
struct HashWriter(std::collections::hash_map::DefaultHasher);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::hash::Hasher::write(&mut self.0, buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Produces the shared part of the watch snapshots and hands it to subscribers.
pub struct WatchFeed {
    scheduler: Arc<Scheduler>,
    tx: watch::Sender<Arc<SharedPart>>,
    seq: AtomicU64,
}

/// `GET /api/v1/watch?task=ID`.
#[derive(Debug, Default, Deserialize)]
pub struct WatchQuery {
    #[serde(default)]
    pub task: Option<String>,
}

impl WatchFeed {
    pub fn new(scheduler: Arc<Scheduler>) -> Arc<Self> {
        let (tx, _) = watch::channel(Arc::new(SharedPart::default()));
        Arc::new(Self {
            scheduler,
            tx,
            seq: AtomicU64::new(0),
        })
    }

    /// Recomputes the shared part and publishes it when it changed.
    pub fn publish(&self) {
        let mut tasks = self.scheduler.tasks();
        let mut hosts = self.scheduler.hosts();
        let mut body = Vec::with_capacity(256 + tasks.len() * 400 + hosts.len() * 300);
        body.extend_from_slice(b"\"tasks\":");
        // Serialising plain derived structs into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut body, &tasks);
        body.extend_from_slice(b",\"hosts\":");
        let _ = serde_json::to_writer(&mut body, &hosts);
        for t in &mut tasks {
            t.created_secs_ago = 0;
            t.updated_secs_ago = 0;
        }
        for h in &mut hosts {
            h.last_seen_secs_ago = 0;
        }
        let mut hasher = HashWriter(std::collections::hash_map::DefaultHasher::new());
        let _ = serde_json::to_writer(&mut hasher, &(&tasks, &hosts));
        let fingerprint = std::hash::Hasher::finish(&hasher.0);
        self.tx.send_if_modified(|current| {
            if current.seq > 0 && current.fingerprint == fingerprint {
                return false;
            }
            let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
            *current = Arc::new(SharedPart {
                seq,
                body: Bytes::from(body),
                fingerprint,
            });
            true
        });
    }

    /// Publishes every [`WATCH_INTERVAL_MS`] while anyone watches, until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(WATCH_INTERVAL_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    if self.tx.receiver_count() > 0 {
                        self.publish();
                    }
                }
            }
        }
    }

    /// The NDJSON stream of one subscriber.
    pub fn stream(
        self: &Arc<Self>,
        query: WatchQuery,
    ) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static
    {
        // The last published part may be old (nobody watched); the first line must be current.
        self.publish();
        let mut rx = self.tx.subscribe();
        rx.mark_changed();
        let task = query.task.and_then(|t| t.parse::<TaskId>().ok());
        let feed = self.clone();
        futures_util::stream::unfold(
            (feed, rx, task, 0u64),
            |(feed, mut rx, task, mut seq)| async move {
                let heartbeat = Duration::from_millis(WATCH_HEARTBEAT_MS);
                let line = tokio::select! {
                    changed = rx.changed() => {
                        changed.ok()?;
                        let part = rx.borrow_and_update().clone();
                        seq = part.seq;
                        feed.snapshot_line(&part, task.as_ref())
                    }
                    _ = tokio::time::sleep(heartbeat) => {
                        Bytes::from(format!("{{\"type\":\"heartbeat\",\"seq\":{seq}}}\n"))
                    }
                };
                Some((Ok(line), (feed, rx, task, seq)))
            },
        )
    }

    /// `{"type":"snapshot","seq":N,<shared part>,"task":<detail or null>}` and a newline.
    fn snapshot_line(&self, part: &SharedPart, task: Option<&TaskId>) -> Bytes {
        let detail = task.and_then(|id| self.scheduler.task(id));
        let mut line = Vec::with_capacity(part.body.len() + 64);
        line.extend_from_slice(format!("{{\"type\":\"snapshot\",\"seq\":{},", part.seq).as_bytes());
        if part.body.is_empty() {
            line.extend_from_slice(b"\"tasks\":[],\"hosts\":[]");
        } else {
            line.extend_from_slice(&part.body);
        }
        line.extend_from_slice(b",\"task\":");
        let _ = serde_json::to_writer(&mut line, &detail);
        line.extend_from_slice(b"}\n");
        Bytes::from(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use df_core::api::WatchEvent;
    use futures_util::StreamExt as _;

    #[tokio::test]
    async fn the_first_line_is_a_snapshot_and_an_unchanged_cluster_only_heartbeats() {
        let scheduler = Arc::new(Scheduler::new(crate::Config::default()));
        let feed = WatchFeed::new(scheduler);
        let mut stream = Box::pin(feed.stream(WatchQuery {
            task: Some("a".repeat(64)),
        }));
        let first = stream.next().await.expect("line").expect("infallible");
        let event: WatchEvent = serde_json::from_slice(&first).expect("valid JSON line");
        let WatchEvent::Snapshot(snap) = event else {
            panic!("expected a snapshot first");
        };
        assert!(snap.tasks.is_empty() && snap.hosts.is_empty());
        assert!(snap.task.is_none(), "an unknown task has no detail");
        // Nothing changes: publishing again sends nothing, so the next line is a heartbeat.
        feed.publish();
        let next = stream.next().await.expect("line").expect("infallible");
        let event: WatchEvent = serde_json::from_slice(&next).expect("valid JSON line");
        assert!(
            matches!(event, WatchEvent::Heartbeat { seq } if seq == snap.seq),
            "{event:?}"
        );
        // A host joins: the next line is a new snapshot that shows it.
        let (tx, _rx) = crate::outbox::outbox(crate::outbox::HOST_BOUND);
        let info = df_proto::scheduler::v1::HostInfo {
            host_id: "127.0.0.1-peer-0".into(),
            hostname: "peer-0".into(),
            ip: "127.0.0.1".into(),
            ..Default::default()
        };
        feed.scheduler.host_connected(info, tx).expect("admitted");
        feed.publish();
        let next = stream.next().await.expect("line").expect("infallible");
        let event: WatchEvent = serde_json::from_slice(&next).expect("valid JSON line");
        let WatchEvent::Snapshot(changed) = event else {
            panic!("expected a snapshot after a change, got {event:?}");
        };
        assert!(changed.seq > snap.seq);
        assert_eq!(changed.hosts.len(), 1);
        assert_eq!(changed.hosts[0].hostname, "peer-0");
    }
}
