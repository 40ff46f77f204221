//! Logging for the daemons. Every event becomes one [`LogRecord`] that goes to three places: a
//! rotated JSON-lines file, a bounded in-memory ring of recent records, and a broadcast channel
//! that the admin APIs stream (`?follow=true`, filtered by task) to `dfctl logs` and `dfctl top`.
//! `task_id` and `peer_id` are lifted from the event or any enclosing span, so filtering by task
//! works for every line logged inside a download.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

/// Recent records kept for clients that connect after the fact.
const RECENT_RECORDS: usize = 4096;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogRecord {
    /// RFC 3339, UTC, milliseconds.
    pub ts: String,
    pub level: String,
    pub component: String,
    pub target: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, serde_json::Value>,
}

/// Handle to the log stream of one process. Cheap to clone.
#[derive(Clone)]
pub struct LogHub {
    inner: Arc<HubInner>,
}

impl std::fmt::Debug for LogHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogHub")
            .field("component", &self.inner.component)
            .finish()
    }
}

struct HubInner {
    component: String,
    recent: Mutex<VecDeque<Arc<LogRecord>>>,
    tx: broadcast::Sender<Arc<LogRecord>>,
    file: Option<Mutex<tracing_appender::non_blocking::NonBlocking>>,
}

impl LogHub {
    /// A hub that keeps records in memory only (tests, or a daemon without a log directory).
    pub fn in_memory(component: &str) -> Self {
        Self::build(component, None)
    }

    fn build(component: &str, file: Option<tracing_appender::non_blocking::NonBlocking>) -> Self {
        let (tx, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(HubInner {
                component: component.to_owned(),
                recent: Mutex::new(VecDeque::with_capacity(RECENT_RECORDS)),
                tx,
                file: file.map(Mutex::new),
            }),
        }
    }

    pub fn push(&self, record: LogRecord) {
        let record = Arc::new(record);
        if let Some(file) = &self.inner.file
            && let Ok(mut w) = file.lock()
            && let Ok(mut line) = serde_json::to_vec(&*record)
        {
            line.push(b'\n');
            // A full non-blocking queue drops the line rather than stalling the data path.
            let _ = w.write_all(&line);
        }
        if let Ok(mut recent) = self.inner.recent.lock() {
            if recent.len() == RECENT_RECORDS {
                recent.pop_front();
            }
            recent.push_back(record.clone());
        }
        let _ = self.inner.tx.send(record);
    }

    /// Recent records, oldest first, and a receiver for what comes after them.
    pub fn subscribe(&self) -> (Vec<Arc<LogRecord>>, broadcast::Receiver<Arc<LogRecord>>) {
        // Subscribe while holding the ring lock so no record falls between the two.
        match self.inner.recent.lock() {
            Ok(recent) => (recent.iter().cloned().collect(), self.inner.tx.subscribe()),
            Err(_) => (Vec::new(), self.inner.tx.subscribe()),
        }
    }

    pub fn component(&self) -> &str {
        &self.inner.component
    }
}

/// What a log-stream client asked for (`GET /api/v1/logs?follow=..&task=..&tail=..&since=..`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    pub follow: bool,
    #[serde(default)]
    pub task: Option<String>,
    /// Recent records to send first; default 200.
    #[serde(default)]
    pub tail: Option<usize>,
    /// Only records from the last `since` seconds (the backlog; live ones are always new).
    #[serde(default)]
    pub since: Option<u64>,
}

impl LogQuery {
    /// `cutoff`: the oldest timestamp wanted. Timestamps are fixed-width RFC 3339 UTC, so
    /// string order is time order.
    pub fn wants(&self, record: &LogRecord, cutoff: Option<&str>) -> bool {
        let task_ok = match &self.task {
            Some(task) => record.task_id.as_deref() == Some(task.as_str()),
            None => true,
        };
        task_ok && cutoff.is_none_or(|c| record.ts.as_str() >= c)
    }

    /// The timestamp `since` seconds ago, when `since` is set.
    pub fn cutoff(&self) -> Option<String> {
        self.since.map(rfc3339_secs_ago)
    }
}

/// Newline-delimited JSON records for `query`: the recent tail, then (with `follow`) live ones.
/// A client that falls behind the broadcast buffer skips what it missed rather than stalling
/// the daemon.
pub fn ndjson_stream(
    hub: &LogHub,
    query: LogQuery,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::convert::Infallible>> + Send + 'static
{
    let (recent, rx) = hub.subscribe();
    let tail = query.tail.unwrap_or(200);
    let cutoff = query.cutoff();
    let mut backlog: Vec<Arc<LogRecord>> = recent
        .into_iter()
        .filter(|r| query.wants(r, cutoff.as_deref()))
        .collect();
    let skip = backlog.len().saturating_sub(tail);
    backlog.drain(..skip);
    let backlog = backlog.into_iter();
    let follow = query.follow.then_some(rx);
    futures_util::stream::unfold(
        (backlog, follow, query),
        |(mut backlog, mut follow, query)| async move {
            let record = match backlog.next() {
                Some(r) => r,
                None => loop {
                    let rx = follow.as_mut()?;
                    match rx.recv().await {
                        Ok(r) if query.wants(&r, None) => break r,
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                },
            };
            let mut line = serde_json::to_vec(&*record).unwrap_or_default();
            line.push(b'\n');
            Some((Ok(bytes::Bytes::from(line)), (backlog, follow, query)))
        },
    )
}

/// Keeps the file writer flushing; hold it for the life of the process.
pub struct TelemetryGuard {
    _file: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// Where stderr logs go. Read by `config::yaml11` (which also takes the booleans YAML 1.1
/// tools write for `off`), written as the lower-case word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StderrFormat {
    #[default]
    Human,
    Json,
    Off,
}

/// Creates `dir` if needed and makes it, and every file directly in it, owner-only (0700 and
/// 0600), whatever an older version or a package left behind.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// Installs the global subscriber: the hub (file + stream) and, unless off, stderr.
/// `filter` is an `EnvFilter` directive such as `info` or `df_peer=debug`.
pub fn init(
    component: &str,
    log_dir: Option<&Path>,
    filter: &str,
    stderr: StderrFormat,
) -> Result<(LogHub, TelemetryGuard), std::io::Error> {
    let (hub, guard) = match log_dir {
        Some(dir) => {
            // Logs name URLs, hosts and tasks: owner-only, like the cache. The umask covers the
            // files the appender creates later (rotation); this is the daemon's process.
            rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
            private_dir(dir)?;
            let appender = tracing_appender::rolling::Builder::new()
                .rotation(tracing_appender::rolling::Rotation::DAILY)
                .filename_prefix(component)
                .filename_suffix("log")
                .max_log_files(7)
                .latest_symlink(format!("{component}.log"))
                .build(dir)
                .map_err(std::io::Error::other)?;
            let (writer, guard) = tracing_appender::non_blocking(appender);
            (LogHub::build(component, Some(writer)), Some(guard))
        }
        None => (LogHub::in_memory(component), None),
    };
    let env_filter = || EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let hub_layer = HubLayer { hub: hub.clone() }.with_filter(env_filter());
    let stderr_layer = match stderr {
        StderrFormat::Human => Some(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(env_filter())
                .boxed(),
        ),
        StderrFormat::Json => Some(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stderr)
                .with_filter(env_filter())
                .boxed(),
        ),
        StderrFormat::Off => None,
    };
    // A second init in one process (tests) keeps the first subscriber; the hub still works.
    let _ = tracing_subscriber::registry()
        .with(hub_layer)
        .with(stderr_layer)
        .try_init();
    Ok((hub, TelemetryGuard { _file: guard }))
}

/// The layer that feeds a [`LogHub`]. Public so in-process tests can attach a hub.
pub struct HubLayer {
    pub hub: LogHub,
}

#[derive(Default)]
struct FieldMap(BTreeMap<String, serde_json::Value>);

impl Visit for FieldMap {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for HubLayer {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = FieldMap::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<FieldMap>()
        {
            values.record(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = FieldMap::default();
        event.record(&mut fields);
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if let Some(span_fields) = span.extensions().get::<FieldMap>() {
                    for (k, v) in &span_fields.0 {
                        fields.0.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
        }
        let mut map = fields.0;
        let take_str = |map: &mut BTreeMap<String, serde_json::Value>, key: &str| {
            map.remove(key).map(|v| match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            })
        };
        let message = take_str(&mut map, "message").unwrap_or_default();
        let task_id = take_str(&mut map, "task_id");
        let peer_id = take_str(&mut map, "peer_id");
        let meta = event.metadata();
        self.hub.push(LogRecord {
            ts: rfc3339_now(),
            level: meta.level().as_str().to_owned(),
            component: self.hub.component().to_owned(),
            target: meta.target().to_owned(),
            message,
            task_id,
            peer_id,
            fields: map,
        });
    }
}

/// Now as RFC 3339 UTC with milliseconds, without pulling in a date crate.
pub fn rfc3339_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs(), now.subsec_millis())
}

/// The RFC 3339 timestamp (as in [`LogRecord::ts`]) of `secs` seconds ago.
pub fn rfc3339_secs_ago(secs: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs().saturating_sub(secs), now.subsec_millis())
}

fn rfc3339(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(1_795_305_600, 999), "2026-11-22T00:00:00.999Z");
    }

    #[test]
    fn since_and_task_filter_records() {
        let record = |ts: String, task: Option<&str>| LogRecord {
            ts,
            level: "INFO".into(),
            component: "test".into(),
            target: "t".into(),
            message: "m".into(),
            task_id: task.map(str::to_owned),
            peer_id: None,
            fields: BTreeMap::new(),
        };
        let q = LogQuery {
            since: Some(60),
            task: Some("abc".into()),
            ..LogQuery::default()
        };
        let cutoff = q.cutoff();
        assert!(q.wants(&record(rfc3339_now(), Some("abc")), cutoff.as_deref()));
        assert!(!q.wants(&record(rfc3339_now(), Some("other")), cutoff.as_deref()));
        assert!(!q.wants(
            &record(rfc3339_secs_ago(120), Some("abc")),
            cutoff.as_deref()
        ));
        assert!(LogQuery::default().wants(&record(rfc3339(0, 0), None), None));
    }

    #[test]
    fn hub_lifts_task_id_from_spans_and_streams() {
        let hub = LogHub::in_memory("test");
        let subscriber = tracing_subscriber::registry().with(HubLayer { hub: hub.clone() });
        let (_, mut rx) = hub.subscribe();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("download", task_id = "abc");
            let _g = span.enter();
            tracing::info!(bytes = 5u64, "piece done");
        });
        let rec = rx.try_recv().expect("one record");
        assert_eq!(rec.message, "piece done");
        assert_eq!(rec.task_id.as_deref(), Some("abc"));
        assert_eq!(rec.fields.get("bytes"), Some(&serde_json::json!(5)));
        let (recent, _) = hub.subscribe();
        assert_eq!(recent.len(), 1);
    }
}
