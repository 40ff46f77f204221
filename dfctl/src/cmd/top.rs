//! `dfctl top`: the live terminal UI (see [`crate::tui`]), or with `--once` one view of the
//! same data for scripts: every scheduler's first watch snapshot, merged exactly as the UI
//! merges them. A single sample has no rates, so `--once` reports rates as 0.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::admin::AdminClient;
use crate::cli::OutputArg;
use crate::cmd::task::{SchedulerArgs, task_id_of};
use crate::render::{self, OutputFormat, Table, or_dash};
use crate::tui;
use crate::tui::model::{ClusterModel, Link, TopView};

const ONCE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub schedulers: SchedulerArgs,
    /// Print the current view once and exit, instead of the live screen.
    #[arg(long)]
    pub once: bool,
    /// Select this task at start (id or URL): its DAG and piece bitmaps are fetched (and, with
    /// --once, included as `task`).
    #[arg(long, value_name = "TASK_ID|URL")]
    pub task: Option<String>,
    #[command(flatten)]
    pub output: OutputArg,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let task = args
        .task
        .as_deref()
        .map(task_id_of)
        .transpose()?
        .map(|id| id.to_string());
    let targets = args.schedulers.targets().await?;
    if args.once {
        return once(&targets, task, args.output.output).await;
    }
    anyhow::ensure!(
        std::io::stdout().is_terminal(),
        "dfctl top needs a terminal; for scripts use `dfctl top --once -o json`"
    );
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    tui::run(targets, task, no_color).await?;
    Ok(ExitCode::SUCCESS)
}

/// Every scheduler's first snapshot, merged; exit 1 when a scheduler did not answer.
async fn once(
    targets: &[crate::cluster::Target],
    task: Option<String>,
    format: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let client = AdminClient::streaming(ONCE_TIMEOUT, ONCE_TIMEOUT)?;
    let answers = join_all(
        targets
            .iter()
            .map(|t| tui::feed::first_snapshot(&client, &t.addr, task.as_deref())),
    )
    .await;
    let now = Instant::now();
    let mut model = ClusterModel::new(targets.iter().map(|t| t.addr.clone()));
    let mut failed = 0;
    for (i, answer) in answers.into_iter().enumerate() {
        match answer {
            Ok(snapshot) => model.apply_snapshot(i, snapshot, now),
            Err(error) => {
                failed += 1;
                model.set_link(
                    i,
                    Link::Down {
                        error,
                        retry_at: now,
                    },
                );
            }
        }
    }
    let view = model.view(now);
    match format {
        OutputFormat::Json => render::print_json(&view)?,
        OutputFormat::Table => render::write_stdout(&once_text(&view))?,
    }
    anyhow::ensure!(failed < targets.len(), "no scheduler answered");
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn once_text(view: &TopView) -> String {
    let mut text = String::new();
    for s in &view.schedulers {
        match &s.error {
            None => text.push_str(&format!("scheduler {}: up\n", s.addr)),
            Some(e) => text.push_str(&format!("scheduler {}: disconnected: {e}\n", s.addr)),
        }
    }
    text.push('\n');
    if view.tasks.is_empty() {
        text.push_str("no tasks\n");
    } else {
        let mut table = Table::new([
            "TASK ID", "SIZE", "DONE", "RUNNING", "FAILED", "PROGRESS", "P2P", "URL",
        ]);
        for t in &view.tasks {
            table.row([
                t.task_id.clone(),
                or_dash(t.content_length.map(render::bytes)),
                t.peers_done.to_string(),
                t.peers_running.to_string(),
                t.peers_failed.to_string(),
                format!("{:.0}%", t.progress_percent.floor()),
                format!("{:.0}%", t.p2p_percent),
                t.url.clone(),
            ]);
        }
        text.push_str(&table.render(render::Palette::stdout()));
    }
    text.push('\n');
    let mut hosts = Table::new(["HOST", "TYPE", "UPLOADS", "DISK USED", "CAPACITY", "STATE"]);
    for h in &view.hosts {
        hosts.row([
            h.hostname.clone(),
            h.host_type.clone(),
            format!("{}/{}", h.active_uploads, h.upload_slots),
            render::bytes(h.disk_used),
            render::bytes(h.disk_capacity),
            render::host_state(h.connected, h.disabled, h.last_reconnect_secs_ago),
        ]);
    }
    text.push_str(&hosts.render(render::Palette::stdout()));
    text
}
