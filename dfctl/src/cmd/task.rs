//! `dfctl task ...`: what the schedulers know about tasks.
//!
//! - `task locate <TASK_ID|URL>`: which peers hold (or are fetching) a task, merged over every
//!   scheduler, since with several schedulers a task lives on the one its id hashes to and the
//!   operator should not have to know which.
//! - `task ls`: every task on every scheduler.
//!
//! `locate` also asks each holding peer's admin API (`/api/v1/tasks/{id}`) for its own view:
//! the file path on that node, and when its GC will collect the task. The lookup itself is
//! [`crate::location`], shared with `dfctl top`; this module prints it.
//!
//! A URL becomes a task id exactly as the peers compute it (`TaskId::from_url` with default
//! parameters), so `locate` finds downloads made without a tag or application.

use std::process::ExitCode;
use std::time::Duration;

use df_core::api::TaskSummary;
use df_core::ids::{TaskId, TaskIdParams};
use futures_util::future::join_all;
use serde::Serialize;

use crate::admin::AdminClient;
use crate::cli::{ClusterDirArg, OutputArg};
use crate::cluster::{Target, Targets};
use crate::location::flow::{FlowLink, Flows};
use crate::location::{Location, host_name, locate_task};
use crate::render::{self, OutputFormat, Palette, Table, or_dash};

const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Show which peers hold a task's pieces.
    Locate(LocateArgs),
    /// List the tasks the schedulers know.
    Ls(LsArgs),
}

impl Command {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Self::Locate(args) => locate(args).await,
            Self::Ls(args) => ls(args).await,
        }
    }
}

/// Which schedulers to ask.
#[derive(Debug, Clone, clap::Args)]
pub struct SchedulerArgs {
    #[command(flatten)]
    pub dir: ClusterDirArg,
    /// A scheduler's admin HTTP address (HOST:PORT); repeatable. Replaces the cluster file.
    #[arg(long = "scheduler", value_name = "HTTP_ADDR")]
    pub schedulers: Vec<String>,
}

impl SchedulerArgs {
    pub async fn targets(&self) -> anyhow::Result<Vec<Target>> {
        let targets = Targets::resolve(&self.dir, &self.schedulers, &[]).await?;
        anyhow::ensure!(
            !targets.schedulers.is_empty(),
            "the local cluster has no schedulers; pass --scheduler HTTP_ADDR"
        );
        Ok(targets.schedulers)
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct LocateArgs {
    /// A task id (64 hex characters) or the URL of the object.
    pub task: String,
    #[command(flatten)]
    pub schedulers: SchedulerArgs,
    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub schedulers: SchedulerArgs,
    #[command(flatten)]
    pub output: OutputArg,
}

/// The task id a `locate` argument names: a URL is hashed as the peers hash it.
pub fn task_id_of(arg: &str) -> anyhow::Result<TaskId> {
    if arg.contains("://") {
        df_core::ids::validate_http_url(arg)?;
        Ok(TaskId::from_url(arg, &TaskIdParams::default())?)
    } else {
        Ok(arg.parse::<TaskId>()?)
    }
}

/// The copies as a table: where the file is on each node and when it goes.
pub fn copies_table(loc: &Location) -> Table {
    let mut table = Table::new([
        "HOST",
        "COMPLETE",
        "PATH ON NODE",
        "LAST ACCESS",
        "COLLECTED",
    ]);
    for c in &loc.copies {
        let (complete, path, access) = match &c.local {
            Some(l) => (
                format!("{}/{}", l.finished_pieces, l.piece_count),
                l.content_path.clone(),
                format!(
                    "{} ago",
                    render::duration(Duration::from_secs(l.last_access_secs_ago))
                ),
            ),
            None => (
                "-".to_owned(),
                c.error.clone().unwrap_or_default(),
                "-".to_owned(),
            ),
        };
        table.row([c.host_id.clone(), complete, path, access, c.collection()]);
    }
    table
}

/// Links listed per node in the FED BY and FED TO columns before `+N more`.
const LINKS_PER_CELL: usize = 3;

/// Who fed whom, one row per node (the origin and the seeds first, then by hops from the
/// origin): what each got and sent, and from and to whom, most bytes first.
pub fn flows_table(flows: &Flows) -> Table {
    let mut table = Table::new(["NODE", "HOPS", "STATE", "GOT", "SENT", "FED BY", "FED TO"]);
    let list = |links: Vec<(&str, u64)>| {
        let mut cell: Vec<String> = links
            .iter()
            .take(LINKS_PER_CELL)
            .map(|(name, bytes)| format!("{name} {}", render::bytes(*bytes)))
            .collect();
        if links.len() > LINKS_PER_CELL {
            cell.push(format!("+{} more", links.len() - LINKS_PER_CELL));
        }
        or_dash((!cell.is_empty()).then(|| cell.join(", ")))
    };
    for n in &flows.nodes {
        let name = if n.is_seed {
            format!("{} (seed)", n.name)
        } else {
            n.name.clone()
        };
        table.row([
            name,
            or_dash(n.hops),
            or_dash((!n.state.is_empty()).then_some(n.state.as_str())),
            render::bytes(n.received),
            render::bytes(n.sent),
            list(n.fed_by().map(|l| (l.name.as_str(), l.received)).collect()),
            list(n.fed_to().map(|l| (l.name.as_str(), l.sent)).collect()),
        ]);
    }
    table
}

/// Every pair of nodes that moved bytes, both directions on one row, most bytes first.
pub fn links_table(flows: &Flows) -> Table {
    let mut table = Table::new(["A", "B", "A->B", "B->A", "PIECES", "FAILURES", "STATE"]);
    let mut links: Vec<(&str, &FlowLink)> = flows
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| {
            n.links
                .iter()
                .filter(move |l| l.node > i)
                .map(|l| (n.name.as_str(), l))
        })
        .collect();
    links.sort_by_key(|(_, l)| std::cmp::Reverse(l.sent + l.received));
    for (a, l) in links {
        let state = if l.blocklisted {
            "blocklisted"
        } else if l.active {
            "active"
        } else {
            "done"
        };
        table.row([
            a.to_owned(),
            l.name.clone(),
            render::bytes(l.sent),
            render::bytes(l.received),
            l.pieces.to_string(),
            l.failures.to_string(),
            state.to_owned(),
        ]);
    }
    table
}

/// The peers as a table: how complete each is and where its content lives.
pub fn peers_table(loc: &Location) -> Table {
    let mut table = Table::new([
        "PEER ID",
        "HOST",
        "SEED",
        "STATE",
        "PIECES",
        "PERCENT",
        "ORIGIN SHARE",
        "CONTENT PATH",
    ]);
    for p in &loc.peers {
        let (pieces, percent) = match loc.piece_count {
            Some(total) if total > 0 => (
                format!("{}/{total}", p.finished_pieces),
                format!(
                    "{:.0}%",
                    f64::from(p.finished_pieces) * 100.0 / f64::from(total)
                ),
            ),
            Some(_) => ("0/0".to_owned(), "100%".to_owned()),
            None => (format!("{}/?", p.finished_pieces), "-".to_owned()),
        };
        table.row([
            p.peer_id.clone(),
            p.host_id.clone(),
            if p.is_seed { "yes" } else { "no" }.to_owned(),
            p.state.clone(),
            pieces,
            percent,
            origin_share(p),
            if p.content_path.is_empty() {
                "-".to_owned()
            } else {
                p.content_path.clone()
            },
        ]);
    }
    table
}

/// The pieces the scheduler has a peer read from the origin (piece numbers, end excluded), or
/// that its share was taken back for want of progress.
fn origin_share(p: &df_core::api::PeerView) -> String {
    match (&p.origin_share, p.share_withdrawn) {
        (Some(share), _) => format!("{}..{}", share.start, share.end),
        (None, true) => "taken back".to_owned(),
        (None, false) => "-".to_owned(),
    }
}

async fn locate(args: LocateArgs) -> anyhow::Result<ExitCode> {
    let task_id = task_id_of(&args.task)?;
    let schedulers = args.schedulers.targets().await?;
    let client = AdminClient::with_timeout(QUERY_TIMEOUT)?;
    let (location, failures) = locate_task(&client, &schedulers, &task_id).await?;
    for f in &failures {
        eprintln!("dfctl: warning: {f}");
    }
    match args.output.output {
        OutputFormat::Json => render::print_json(&location)?,
        OutputFormat::Table => {
            let mut text = format!(
                "task {}\nurl  {}\nsize {}  pieces {}  peers {}\n\n",
                location.task_id,
                location.url,
                or_dash(location.content_length.map(render::bytes)),
                or_dash(location.piece_count),
                location.peers.len()
            );
            if location.peers.is_empty() {
                text.push_str("no peers hold this task\n");
            } else {
                text.push_str(&peers_table(&location).render(Palette::stdout()));
            }
            let flows = Flows::of(&location.peers, &location.edges, |p| {
                host_name(&p.host_id).to_owned()
            });
            if flows.from_origin + flows.between_peers > 0 {
                text.push_str(&format!(
                    "\nwho fed whom: bytes from the origin {}, between peers {}, depth {}\n\n",
                    render::bytes(flows.from_origin),
                    render::bytes(flows.between_peers),
                    flows.depth
                ));
                text.push_str(&flows_table(&flows).render(Palette::stdout()));
                text.push('\n');
                text.push_str(&links_table(&flows).render(Palette::stdout()));
            }
            if !location.copies.is_empty() {
                text.push_str("\ncopies on the nodes\n\n");
                text.push_str(&copies_table(&location).render(Palette::stdout()));
            }
            render::write_stdout(&text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One row of `task ls`: a scheduler's summary plus which scheduler said it.
#[derive(Debug, Clone, Serialize)]
pub struct ListedTask {
    #[serde(flatten)]
    pub summary: TaskSummary,
    pub scheduler: String,
}

/// Merges the scheduler lists, newest task first; a task on several schedulers is listed once
/// per scheduler, since each holds a different part of its swarm.
pub fn merge_lists(lists: Vec<(String, Vec<TaskSummary>)>) -> Vec<ListedTask> {
    let mut tasks: Vec<ListedTask> = lists
        .into_iter()
        .flat_map(|(scheduler, summaries)| {
            summaries.into_iter().map(move |summary| ListedTask {
                summary,
                scheduler: scheduler.clone(),
            })
        })
        .collect();
    tasks.sort_by(|a, b| {
        a.summary
            .created_secs_ago
            .cmp(&b.summary.created_secs_ago)
            .then_with(|| a.summary.task_id.cmp(&b.summary.task_id))
    });
    tasks
}

pub fn list_table(tasks: &[ListedTask]) -> Table {
    let mut table = Table::new([
        "TASK ID",
        "SIZE",
        "PEERS",
        "RUNNING",
        "FAILED",
        "FROM ORIGIN",
        "FROM PEERS",
        "AGE",
        "SCHEDULER",
        "URL",
    ]);
    for t in tasks {
        let s = &t.summary;
        table.row([
            s.task_id.clone(),
            or_dash(s.content_length.map(render::bytes)),
            format!("{}/{}", s.peers_succeeded, s.peers_total),
            s.peers_running.to_string(),
            s.peers_failed.to_string(),
            render::bytes(s.bytes_from_origin),
            render::bytes(s.bytes_from_peers),
            render::duration(Duration::from_secs(s.created_secs_ago)),
            t.scheduler.clone(),
            s.url.clone(),
        ]);
    }
    table
}

async fn ls(args: LsArgs) -> anyhow::Result<ExitCode> {
    let schedulers = args.schedulers.targets().await?;
    let client = AdminClient::with_timeout(QUERY_TIMEOUT)?;
    let answers = join_all(schedulers.iter().map(|t| client.tasks(&t.addr))).await;
    let mut lists = Vec::new();
    let mut failures = 0;
    for (target, answer) in schedulers.iter().zip(answers) {
        match answer {
            Ok(list) => lists.push((target.addr.clone(), list.unwrap_or_default())),
            Err(e) => {
                failures += 1;
                eprintln!("dfctl: warning: {}: {e:#}", target.label());
            }
        }
    }
    anyhow::ensure!(failures < schedulers.len(), "no scheduler answered");
    let tasks = merge_lists(lists);
    match args.output.output {
        OutputFormat::Json => render::print_json(&tasks)?,
        OutputFormat::Table if tasks.is_empty() => render::write_stdout("no tasks\n")?,
        OutputFormat::Table => list_table(&tasks).print()?,
    }
    Ok(if failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use df_core::api::{EdgeView, PeerView, TaskDetail};

    #[test]
    fn urls_become_the_peers_task_id() {
        let id = task_id_of("https://example.com").expect("url");
        let expected =
            TaskId::from_url("https://example.com", &TaskIdParams::default()).expect("id");
        assert_eq!(id, expected);
        // Signed URLs of one object meet on one task.
        let a = task_id_of("https://s3.test/o?X-Amz-Signature=a").expect("url");
        let b = task_id_of("https://s3.test/o?X-Amz-Signature=b").expect("url");
        assert_eq!(a, b);
        let hex = "a".repeat(64);
        assert_eq!(task_id_of(&hex).expect("id").as_str(), hex);
        assert!(task_id_of("ftp://h/f").is_err());
        assert!(task_id_of("nothex").is_err());
    }

    fn summary(id: &str, created: u64) -> TaskSummary {
        TaskSummary {
            task_id: id.into(),
            url: format!("http://o/{id}"),
            content_length: Some(8 << 20),
            piece_length: Some(4 << 20),
            piece_count: Some(2),
            peers_total: 2,
            peers_running: 1,
            peers_succeeded: 1,
            peers_failed: 0,
            bytes_from_origin: 8 << 20,
            bytes_from_peers: 0,
            created_secs_ago: created,
            updated_secs_ago: 0,
        }
    }

    fn peer(id: &str, finished: u32, updated: u64) -> PeerView {
        PeerView {
            peer_id: id.into(),
            host_id: "127.0.0.1-peer-0".into(),
            ip: "127.0.0.1".into(),
            admin_port: 4002,
            is_seed: false,
            state: "running".into(),
            finished_pieces: finished,
            bitmap: String::new(),
            content_path: "/c/peer-0/data/x".into(),
            bytes_from_origin: 0,
            bytes_from_peers: 0,
            updated_secs_ago: updated,
            origin_share: None,
            share_withdrawn: false,
        }
    }

    #[test]
    fn locate_merges_schedulers_keeping_the_freshest_peer_view() {
        let id = task_id_of("http://o/x").expect("id");
        let a = TaskDetail {
            summary: summary(id.as_str(), 5),
            peers: vec![peer("p1", 1, 9), peer("p2", 2, 0)],
            edges: vec![],
        };
        let mut p2 = peer("p2", 2, 0);
        p2.share_withdrawn = true;
        let a = TaskDetail {
            peers: vec![peer("p1", 1, 9), p2],
            ..a
        };
        let b = TaskDetail {
            summary: summary(id.as_str(), 5),
            peers: vec![PeerView {
                origin_share: Some(0..2),
                ..peer("p1", 2, 1)
            }],
            edges: vec![],
        };
        let loc = Location::merge(&id, vec![("s1".into(), a), ("s2".into(), b)]).expect("found");
        assert_eq!(loc.schedulers, ["s1", "s2"]);
        assert_eq!(loc.peers.len(), 2);
        assert_eq!(loc.peers[0].finished_pieces, 2, "fresher view of p1 wins");
        let text = peers_table(&loc).render(Palette::plain());
        assert!(
            text.contains("p1       127.0.0.1-peer-0  no    running  2/2     100%     0..2"),
            "{text}"
        );
        assert!(text.contains("100%     taken back"), "{text}");
        let json = serde_json::to_value(&loc).expect("json");
        assert_eq!(json["content_length"], 8 << 20);
        assert_eq!(json["peers"][0]["peer_id"], "p1");
        assert!(Location::merge(&id, vec![]).is_none());
    }

    #[test]
    fn locate_prints_who_fed_whom_with_both_directions_of_a_pair() {
        let edge = |parent: &str, child: &str, bytes: u64| EdgeView {
            parent: parent.into(),
            child: child.into(),
            bytes,
            pieces: 2,
            failures: 0,
            active: false,
            blocklisted: false,
        };
        let mut seed = peer("s", 2, 0);
        seed.is_seed = true;
        seed.host_id = "10.0.0.1-seed-0".into();
        seed.bytes_from_origin = 8 << 20;
        let mut a = peer("a", 2, 0);
        a.host_id = "10.0.0.2-peer-0".into();
        let mut b = peer("b", 2, 0);
        b.host_id = "10.0.0.3-peer-1".into();
        let peers = [seed, a, b];
        let edges = [
            edge("s", "a", 4 << 20),
            edge("s", "b", 2 << 20),
            edge("a", "b", 3 << 20),
            edge("b", "a", 1 << 20),
        ];
        let flows = Flows::of(&peers, &edges, |p| host_name(&p.host_id).to_owned());
        let text = flows_table(&flows).render(Palette::plain());
        let rows: Vec<&str> = text.lines().collect();
        assert!(rows[1].starts_with("origin  "), "{text}");
        assert!(rows[2].starts_with("seed-0 (seed)  1"), "{text}");
        assert!(
            rows[3].contains("5.0 MiB  3.0 MiB  seed-0 4.0 MiB, peer-1 1.0 MiB  peer-1 3.0 MiB"),
            "{text}"
        );
        let links = links_table(&flows).render(Palette::plain());
        let pair = links
            .lines()
            .find(|l| l.starts_with("peer-0"))
            .expect("the a-b pair");
        assert!(
            pair.contains("peer-1  3.0 MiB  1.0 MiB  4       0         done"),
            "{links}"
        );
    }

    #[test]
    fn ls_lists_newest_first_with_the_scheduler() {
        let tasks = merge_lists(vec![
            ("s1".into(), vec![summary("old", 100)]),
            ("s2".into(), vec![summary("new", 1)]),
        ]);
        assert_eq!(tasks[0].summary.task_id, "new");
        assert_eq!(tasks[0].scheduler, "s2");
        let json = serde_json::to_value(&tasks).expect("json");
        assert_eq!(json[0]["task_id"], "new", "summary fields are flattened");
        let text = list_table(&tasks).render(Palette::plain());
        assert!(
            text.lines().nth(1).is_some_and(|l| l.starts_with("new ")),
            "{text}"
        );
    }
}
