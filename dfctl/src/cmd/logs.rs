//! `dfctl logs`: the daemons' logs, through their admin APIs (`GET /api/v1/logs`, NDJSON, so
//! it works for remote nodes) or, for a local cluster whose daemon no longer answers, from the
//! JSON-lines files in its log directory.
//!
//! Without `-f`, the records of every selected daemon are merged and printed in time order;
//! with `-f`, each daemon's backlog and then its live records are printed as they arrive, each
//! line naming its daemon, until Ctrl-C. Filters (`--task`, `--since`, `--tail`) are applied by
//! the daemons, so a busy node sends only what was asked for.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use df_core::telemetry::{LogQuery, LogRecord};
use futures_util::StreamExt as _;
use serde::Serialize;
use tokio::io::AsyncBufReadExt as _;

use crate::admin::AdminClient;
use crate::cli::DaemonsArg;
use crate::cluster::{Role, Target};
use crate::render::{OutputFormat, Palette};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Component {
    Scheduler,
    Peer,
    Seed,
    /// Every daemon.
    All,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Whose logs.
    #[arg(value_enum)]
    pub component: Component,
    /// Only this daemon: its name in the local cluster (`peer-0`), its admin address, or its
    /// IP.
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Keep printing new records until interrupted.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only records about this task.
    #[arg(long, value_name = "TASK_ID")]
    pub task: Option<String>,
    /// Only records from this recent period (`30s`, `10m`, `2h`).
    #[arg(long, value_name = "DURATION", value_parser = parse_since)]
    pub since: Option<Duration>,
    /// Recent records to show per daemon before following.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub tail: usize,
    /// Read the local cluster's log files instead of asking the daemons.
    #[arg(long, conflicts_with = "follow")]
    pub local: bool,
    #[command(flatten)]
    pub daemons: DaemonsArg,
    /// `table` prints one readable line per record; `json` the records as NDJSON, each with
    /// its daemon under `node`.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

fn parse_since(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a duration like 30s, 10m, 2h: {e}"))
}

/// One daemon whose logs are wanted.
#[derive(Debug, Clone)]
struct Source {
    /// How lines name it: the cluster name, else the admin address.
    label: String,
    role: Option<Role>,
    admin: String,
    /// The log directory, when the cluster file says.
    log_dir: Option<PathBuf>,
}

/// A record with its daemon, as `-o json` prints it.
#[derive(Debug, Serialize)]
struct Line<'a> {
    node: &'a str,
    #[serde(flatten)]
    record: &'a LogRecord,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let sources = select(&args).await?;
    let query = LogQuery {
        follow: args.follow,
        task: args.task.clone(),
        tail: Some(args.tail),
        since: args.since.map(|d| d.as_secs()),
    };
    let printer = Printer {
        format: args.output,
        palette: Palette::stdout(),
    };
    if args.follow {
        follow(&sources, &query, &printer).await
    } else {
        snapshot(&sources, &query, args.local, &printer).await
    }
}

/// The daemons matching the component and `--node`, from flags or the cluster file.
async fn select(args: &Args) -> anyhow::Result<Vec<Source>> {
    let client = AdminClient::with_timeout(CONNECT_TIMEOUT)?;
    let targets = args
        .daemons
        .resolve(&client, args.component != Component::Scheduler)
        .await?;
    let from_flags = args.daemons.from_flags();
    let source = |t: &Target, fallback: Option<Role>| Source {
        label: t.name().map_or_else(|| t.addr.clone(), str::to_owned),
        role: t.record.as_ref().map(|r| r.role).or(fallback),
        admin: t.addr.clone(),
        log_dir: t.record.as_ref().map(|r| r.log_dir.clone()),
    };
    let all = targets
        .schedulers
        .iter()
        .map(|t| source(t, Some(Role::Scheduler)))
        .chain(targets.peers.iter().map(|t| source(t, None)));
    let wanted: Vec<Source> = all
        .filter(|s| match (args.component, s.role) {
            (Component::All, _) => true,
            (Component::Scheduler, role) => role == Some(Role::Scheduler),
            // Peers named by flag or discovered may be seeds or not; the flag user asked for
            // these daemons, so they are all peers here.
            (Component::Peer, None) | (Component::Seed, None) => from_flags,
            (Component::Peer, Some(role)) => role == Role::Peer,
            (Component::Seed, Some(role)) => role == Role::Seed,
        })
        .filter(|s| match &args.node {
            Some(node) => {
                s.label == *node || s.admin == *node || s.admin.split(':').next() == Some(node)
            }
            None => true,
        })
        .collect();
    if wanted.is_empty() {
        let what = match args.component {
            Component::Scheduler => "scheduler",
            Component::Peer => "peer",
            Component::Seed => "seed",
            Component::All => "daemon",
        };
        match &args.node {
            Some(node) => {
                anyhow::bail!("no {what} named '{node}' (give a name, admin address or IP)")
            }
            None => anyhow::bail!("no {what} to read logs from"),
        }
    }
    Ok(wanted)
}

struct Printer {
    format: OutputFormat,
    palette: Palette,
}

impl Printer {
    fn line(&self, node: &str, record: &LogRecord) -> String {
        match self.format {
            OutputFormat::Json => {
                let mut s = serde_json::to_string(&Line { node, record }).unwrap_or_default();
                s.push('\n');
                s
            }
            OutputFormat::Table => {
                let level = match record.level.as_str() {
                    "ERROR" => self.palette.red("ERROR"),
                    "WARN" => self.palette.yellow("WARN "),
                    other => format!("{other:<5}"),
                };
                let mut s = format!("{} {level} {node}  {}", record.ts, record.message);
                if let Some(task) = &record.task_id {
                    s.push_str(&format!(" task={task}"));
                }
                if let Some(peer) = &record.peer_id {
                    s.push_str(&format!(" peer={peer}"));
                }
                for (k, v) in &record.fields {
                    match v {
                        serde_json::Value::String(text) => s.push_str(&format!(" {k}={text}")),
                        other => s.push_str(&format!(" {k}={other}")),
                    }
                }
                s.push('\n');
                s
            }
        }
    }
}

/// Every daemon's records (API, or files for `--local` or a local daemon that is down),
/// merged in time order.
async fn snapshot(
    sources: &[Source],
    query: &LogQuery,
    local: bool,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let client = &AdminClient::with_timeout(Duration::from_secs(30))?;
    let fetched = futures_util::future::join_all(sources.iter().map(|s| async move {
        let records = if local {
            read_files(s, query).await
        } else {
            match fetch(client, s, query).await {
                Ok(r) => Ok(r),
                // A local daemon that is down still has its files: the logs explaining why
                // it went down are the ones wanted most.
                Err(e) if s.log_dir.is_some() => {
                    eprintln!("dfctl: {}: {e:#}; reading its log files", s.label);
                    read_files(s, query).await
                }
                Err(e) => Err(e),
            }
        };
        (s, records)
    }))
    .await;
    let mut all = Vec::new();
    let mut failed = false;
    for (source, records) in fetched {
        match records {
            Ok(records) => all.extend(records.into_iter().map(|r| (source.label.as_str(), r))),
            Err(e) => {
                eprintln!("dfctl: {}: {e:#}", source.label);
                failed = true;
            }
        }
    }
    all.sort_by(|a, b| a.1.ts.cmp(&b.1.ts));
    let mut out = String::new();
    for (node, record) in &all {
        out.push_str(&printer.line(node, record));
    }
    crate::render::write_stdout(&out)?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `/api/v1/logs?follow=..&tail=..&task=..&since=..`, the task escaped.
fn logs_path(query: &LogQuery) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("follow", if query.follow { "true" } else { "false" });
    if let Some(tail) = query.tail {
        q.append_pair("tail", &tail.to_string());
    }
    if let Some(task) = &query.task {
        q.append_pair("task", task);
    }
    if let Some(since) = query.since {
        q.append_pair("since", &since.to_string());
    }
    format!("{}?{}", df_core::routes::LOGS, q.finish())
}

async fn fetch(
    client: &AdminClient,
    source: &Source,
    query: &LogQuery,
) -> anyhow::Result<Vec<LogRecord>> {
    let Some((url, resp)) = client.get(&source.admin, &logs_path(query)).await? else {
        anyhow::bail!("{} has no log API (404)", source.admin);
    };
    let body = resp.text().await.with_context(|| format!("GET {url}"))?;
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).with_context(|| format!("GET {url}: not a log record: {l}"))
        })
        .collect()
}

/// The records in a local daemon's JSON-lines log files, filtered like the API filters.
async fn read_files(source: &Source, query: &LogQuery) -> anyhow::Result<Vec<LogRecord>> {
    let Some(dir) = &source.log_dir else {
        anyhow::bail!(
            "no log directory known for {} (only a local cluster's are)",
            source.label
        );
    };
    let files = log_files(dir).await?;
    let cutoff = query.cutoff();
    let mut records = Vec::new();
    for file in files {
        let f = tokio::fs::File::open(&file)
            .await
            .with_context(|| format!("cannot open {}", file.display()))?;
        let mut lines = tokio::io::BufReader::new(f).lines();
        while let Some(line) = lines
            .next_line()
            .await
            .with_context(|| format!("cannot read {}", file.display()))?
        {
            // A line cut by a crash mid-write is skipped, not fatal.
            if let Ok(record) = serde_json::from_str::<LogRecord>(&line)
                && query.wants(&record, cutoff.as_deref())
            {
                records.push(record);
            }
        }
    }
    records.sort_by(|a, b| a.ts.cmp(&b.ts));
    let skip = records
        .len()
        .saturating_sub(query.tail.unwrap_or(usize::MAX));
    records.drain(..skip);
    Ok(records)
}

/// `*.log` files in `dir`, oldest name first (daily rotation names sort by date).
async fn log_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut entries = tokio::fs::read_dir(dir)
        .await
        .with_context(|| format!("cannot read log directory {}", dir.display()))?;
    let mut files = Vec::new();
    while let Some(e) = entries
        .next_entry()
        .await
        .with_context(|| format!("cannot read log directory {}", dir.display()))?
    {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "log") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Streams every source's records as they arrive until all streams end or Ctrl-C. A daemon
/// that cannot be reached is reported once and the others keep streaming.
async fn follow(
    sources: &[Source],
    query: &LogQuery,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let client = AdminClient::streaming(CONNECT_TIMEOUT, Duration::from_secs(24 * 3600))?;
    let path = logs_path(query);
    let streams = futures_util::future::join_all(sources.iter().map(|s| {
        let (client, path) = (client.clone(), path.clone());
        async move {
            match client.get(&s.admin, &path).await {
                Ok(Some((_, resp))) => Ok((s.label.clone(), resp)),
                Ok(None) => Err(format!("{}: no log API (404)", s.label)),
                Err(e) => Err(format!("{}: {e:#}", s.label)),
            }
        }
    }))
    .await;
    let mut failed = false;
    let mut merged = futures_util::stream::SelectAll::new();
    for s in streams {
        match s {
            Ok((label, resp)) => merged.push(record_lines(label, resp).boxed()),
            Err(e) => {
                eprintln!("dfctl: {e}");
                failed = true;
            }
        }
    }
    if merged.is_empty() {
        anyhow::bail!("no daemon's log stream could be opened");
    }
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            next = merged.next() => match next {
                None => break,
                Some(Ok((label, record))) => {
                    let line = printer.line(&label, &record);
                    let mut out = std::io::stdout().lock();
                    // A closed pipe (`| head`) ends the command quietly.
                    if out.write_all(line.as_bytes()).and_then(|()| out.flush()).is_err() {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                Some(Err(e)) => {
                    eprintln!("dfctl: {e}");
                    failed = true;
                }
            },
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The records of one NDJSON response, each with its daemon's label.
fn record_lines(
    label: String,
    resp: reqwest::Response,
) -> impl futures_util::Stream<Item = Result<(String, LogRecord), String>> {
    let state = (resp.bytes_stream(), Vec::<u8>::new(), label, false);
    futures_util::stream::unfold(state, |(mut body, mut buf, label, done)| async move {
        loop {
            if let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let item = serde_json::from_slice::<LogRecord>(&line)
                    .map(|r| (label.clone(), r))
                    .map_err(|e| format!("{label}: not a log record: {e}"));
                return Some((item, (body, buf, label, done)));
            }
            if done {
                return None;
            }
            match body.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    let err = format!("{label}: stream ended: {}", crate::admin::describe(&e));
                    return Some((Err(err), (body, Vec::new(), label, true)));
                }
                None => {
                    // The daemon closed the stream (it stopped): say so once.
                    let err = format!("{label}: log stream closed by the daemon");
                    return Some((Err(err), (body, Vec::new(), label, true)));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_human_durations_and_names_bad_ones() {
        assert_eq!(parse_since("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_since("1h 30m"), Ok(Duration::from_secs(5400)));
        let err = parse_since("ten").expect_err("not a duration");
        assert!(err.starts_with("'ten' is not a duration"), "{err}");
    }

    #[test]
    fn the_query_carries_every_filter() {
        let q = LogQuery {
            follow: true,
            task: Some("a b".into()),
            tail: Some(5),
            since: Some(600),
        };
        assert_eq!(
            logs_path(&q),
            "/api/v1/logs?follow=true&tail=5&task=a+b&since=600"
        );
    }

    #[test]
    fn text_lines_name_the_daemon_and_the_task() {
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("bytes".to_owned(), serde_json::json!(5));
        let record = LogRecord {
            ts: "2026-11-22T08:00:00.000Z".into(),
            level: "INFO".into(),
            component: "dfdaemon".into(),
            target: "df_peer".into(),
            message: "piece done".into(),
            task_id: Some("abc".into()),
            peer_id: None,
            fields,
        };
        let printer = Printer {
            format: OutputFormat::Table,
            palette: Palette::plain(),
        };
        assert_eq!(
            printer.line("peer-0", &record),
            "2026-11-22T08:00:00.000Z INFO  peer-0  piece done task=abc bytes=5\n"
        );
        let json = Printer {
            format: OutputFormat::Json,
            palette: Palette::plain(),
        };
        let v: serde_json::Value =
            serde_json::from_str(&json.line("peer-0", &record)).expect("json line");
        assert_eq!(v["node"], "peer-0");
        assert_eq!(v["task_id"], "abc");
    }
}
