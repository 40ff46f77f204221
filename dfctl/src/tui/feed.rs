//! The data side of `dfctl top`: tokio tasks that stream from the daemons and turn what they
//! hear into [`Event`]s for the one loop that updates and draws (keys arrive on the same
//! channel from the input thread).
//!
//! Invariants:
//! - A feed never ends on a network error: it reports the scheduler as down with the time of
//!   its next try, waits a backoff (0.5 s doubling to 8 s), and reconnects.
//! - A watch stream that stays silent for three heartbeats counts as lost (a scheduler that
//!   froze or a cut link looks like that, not like a closed socket).
//! - Feeds stop when the event receiver is gone or `shutdown` is cancelled.

use std::time::{Duration, Instant};

use df_core::api::{WATCH_HEARTBEAT_MS, WatchEvent, WatchSnapshot};
use df_core::routes;
use df_core::telemetry::LogRecord;
use futures_util::StreamExt as _;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::admin::{AdminClient, describe, endpoint};
use crate::location::Location;
use crate::tui::model::backoff;

/// Everything the draw loop reacts to.
#[derive(Debug)]
pub enum Event {
    Key(ratatui::crossterm::event::KeyEvent),
    Resize,
    Watch {
        scheduler: usize,
        update: WatchUpdate,
    },
    Log(LogLine),
    Located(Result<Box<Location>, String>),
    /// Once a second: ages and retry countdowns move on.
    Tick,
}

#[derive(Debug)]
pub enum WatchUpdate {
    Snapshot(Box<WatchSnapshot>),
    Down { error: String, retry_at: Instant },
}

/// One log record and the daemon it came from.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// The daemon's admin address.
    pub source: String,
    pub record: LogRecord,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

fn stream_client() -> anyhow::Result<AdminClient> {
    AdminClient::streaming(
        CONNECT_TIMEOUT,
        Duration::from_millis(3 * WATCH_HEARTBEAT_MS),
    )
}

/// Streams `GET /api/v1/watch[?task=..]` from scheduler `index` until shut down; `selection`
/// names the task whose detail to ask for, and a change reconnects with the new one.
pub async fn watch_scheduler(
    index: usize,
    addr: String,
    mut selection: watch::Receiver<Option<String>>,
    events: mpsc::UnboundedSender<Event>,
    shutdown: CancellationToken,
) {
    let client = match stream_client() {
        Ok(c) => c,
        Err(e) => {
            let _ = events.send(Event::Watch {
                scheduler: index,
                update: WatchUpdate::Down {
                    error: format!("{e:#}"),
                    retry_at: Instant::now() + Duration::from_secs(3600),
                },
            });
            return;
        }
    };
    let mut failures = 0u32;
    loop {
        let task = selection.borrow_and_update().clone();
        let path = routes::watch(task.as_deref());
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = selection_changed(&mut selection) => continue,
            outcome = stream_watch(&client, &addr, &path, index, &events) => outcome,
        };
        let error = match outcome {
            StreamEnd::ReceiverGone => return,
            StreamEnd::Failed { error, heard } => {
                if heard {
                    failures = 0;
                }
                error
            }
        };
        let wait = backoff(failures);
        failures = failures.saturating_add(1);
        let update = WatchUpdate::Down {
            error,
            retry_at: Instant::now() + wait,
        };
        if events
            .send(Event::Watch {
                scheduler: index,
                update,
            })
            .is_err()
        {
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = selection_changed(&mut selection) => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Resolves when the selection changes; never, once nobody can change it any more.
async fn selection_changed(selection: &mut watch::Receiver<Option<String>>) {
    if selection.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

enum StreamEnd {
    ReceiverGone,
    /// `heard`: the stream delivered at least one line before failing.
    Failed {
        error: String,
        heard: bool,
    },
}

async fn stream_watch(
    client: &AdminClient,
    addr: &str,
    path: &str,
    index: usize,
    events: &mpsc::UnboundedSender<Event>,
) -> StreamEnd {
    let failed = |error: String, heard| StreamEnd::Failed { error, heard };
    let url = match endpoint(addr, path) {
        Ok(u) => u,
        Err(e) => return failed(format!("{e:#}"), false),
    };
    let resp = match client.http().get(url).send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => return failed(format!("watch answered {}", r.status()), false),
        Err(e) => return failed(describe(&e), false),
    };
    let mut heard = false;
    let mut lines = NdjsonLines::default();
    let mut body = resp.bytes_stream();
    loop {
        let chunk = match body.next().await {
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) if e.is_timeout() => {
                return failed(
                    "no heartbeat: the scheduler stopped answering".into(),
                    heard,
                );
            }
            Some(Err(e)) => return failed(describe(&e), heard),
            None => return failed("the scheduler closed the stream".into(), heard),
        };
        for line in lines.push(&chunk) {
            heard = true;
            match serde_json::from_slice::<WatchEvent>(&line) {
                Ok(WatchEvent::Snapshot(snapshot)) => {
                    let update = WatchUpdate::Snapshot(snapshot);
                    if events
                        .send(Event::Watch {
                            scheduler: index,
                            update,
                        })
                        .is_err()
                    {
                        return StreamEnd::ReceiverGone;
                    }
                }
                Ok(WatchEvent::Heartbeat { .. }) => {}
                Err(e) => return failed(format!("bad watch line: {e}"), heard),
            }
        }
    }
}

/// The first snapshot of scheduler `addr`'s watch stream (for `dfctl top --once`).
pub async fn first_snapshot(
    client: &AdminClient,
    addr: &str,
    task: Option<&str>,
) -> Result<WatchSnapshot, String> {
    let path = routes::watch(task);
    let url = endpoint(addr, &path).map_err(|e| format!("{e:#}"))?;
    let resp = client
        .http()
        .get(url.clone())
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", describe(&e)))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: {}", resp.status()));
    }
    let mut lines = NdjsonLines::default();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("GET {url}: {}", describe(&e)))?;
        for line in lines.push(&chunk) {
            match serde_json::from_slice::<WatchEvent>(&line) {
                Ok(WatchEvent::Snapshot(snapshot)) => return Ok(*snapshot),
                Ok(WatchEvent::Heartbeat { .. }) => {}
                Err(e) => return Err(format!("GET {url}: bad watch line: {e}")),
            }
        }
    }
    Err(format!("GET {url}: the stream ended before a snapshot"))
}

/// Splits a byte stream into lines; a line may span chunks.
#[derive(Debug, Default)]
pub struct NdjsonLines {
    partial: Vec<u8>,
}

impl NdjsonLines {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for piece in chunk.split_inclusive(|b| *b == b'\n') {
            self.partial.extend_from_slice(piece);
            if self.partial.ends_with(b"\n") {
                let mut line = std::mem::take(&mut self.partial);
                line.pop();
                if !line.iter().all(u8::is_ascii_whitespace) {
                    out.push(line);
                }
            }
        }
        out
    }
}

/// Follows `GET /api/v1/logs?follow=true` of one daemon until shut down or aborted.
pub async fn follow_logs(
    addr: String,
    events: mpsc::UnboundedSender<Event>,
    shutdown: CancellationToken,
) {
    let Ok(client) = AdminClient::streaming(CONNECT_TIMEOUT, Duration::from_secs(3600)) else {
        return;
    };
    let mut tail = 200;
    let mut failures = 0u32;
    loop {
        let path = format!("{}?follow=true&tail={tail}", routes::LOGS);
        let heard = tokio::select! {
            _ = shutdown.cancelled() => return,
            heard = stream_logs(&client, &addr, &path, &events) => heard,
        };
        match heard {
            None => return,
            Some(true) => {
                failures = 0;
                // The recent records were shown already; a reconnect asks only for new ones.
                tail = 0;
            }
            Some(false) => {}
        }
        let wait = backoff(failures);
        failures = failures.saturating_add(1);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// `None` when the receiver is gone; else whether any record arrived.
async fn stream_logs(
    client: &AdminClient,
    addr: &str,
    path: &str,
    events: &mpsc::UnboundedSender<Event>,
) -> Option<bool> {
    let Ok(url) = endpoint(addr, path) else {
        return Some(false);
    };
    let Ok(resp) = client.http().get(url).send().await else {
        return Some(false);
    };
    if !resp.status().is_success() {
        return Some(false);
    }
    let mut heard = false;
    let mut lines = NdjsonLines::default();
    let mut body = resp.bytes_stream();
    while let Some(Ok(chunk)) = body.next().await {
        for line in lines.push(&chunk) {
            let Ok(record) = serde_json::from_slice::<LogRecord>(&line) else {
                continue;
            };
            heard = true;
            let line = LogLine {
                source: addr.to_owned(),
                record,
            };
            events.send(Event::Log(line)).ok()?;
        }
    }
    Some(heard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks_are_joined() {
        let mut lines = NdjsonLines::default();
        assert!(lines.push(b"{\"a\":").is_empty());
        let out = lines.push(b"1}\n\n{\"b\":2}\n{\"c\"");
        assert_eq!(out, vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]);
        assert_eq!(lines.push(b":3}\n"), vec![b"{\"c\":3}".to_vec()]);
    }
}
