//! `dfctl top`, the live terminal UI: what the P2P network is doing right now.
//!
//! One loop owns the [`app::App`] and draws it; everything else feeds it [`feed::Event`]s
//! over one channel: an input thread (keys, resizes), one watch stream per scheduler
//! (`GET /api/v1/watch`), log streams of the schedulers and of a bounded set of peers
//! (`GET /api/v1/logs?follow=true`), cache-location lookups, and a one-second tick.
//!
//! - [`model`]: merged scheduler state, rates, and the [`model::TopView`] document (also what
//!   `--once -o json` prints);
//! - [`app`]: screen state and keys; [`draw`]: the panes; [`feed`]: the streams;
//! - [`synthetic`]: deterministic cluster states for the rendering tests and the benchmark.
//!
//! Invariants: the terminal is restored on every exit, error or panic (ratatui's init installs
//! a panic hook that restores it; [`TerminalGuard`] restores on return); the loop never
//! blocks on the network; a failed feed shows as such and retries, it never ends the program.

pub mod app;
pub mod draw;
pub mod feed;
pub mod model;
pub mod synthetic;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use df_core::ids::TaskId;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::AdminClient;
use crate::cluster::Target;
use crate::cmd::task::task_id_of;
use crate::location::locate_task;
use app::{App, Command};
use feed::Event;
use model::{ClusterModel, TopView};

/// Peers whose logs are followed at most (the schedulers' always are).
const MAX_PEER_LOGS: usize = 16;

/// Raw mode and the alternate screen while alive; the normal terminal again when dropped.
pub struct TerminalGuard {
    pub terminal: ratatui::DefaultTerminal,
}

impl TerminalGuard {
    pub fn enter() -> anyhow::Result<Self> {
        let terminal =
            ratatui::try_init().map_err(|e| anyhow::anyhow!("cannot set up the terminal: {e}"))?;
        Ok(Self { terminal })
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Runs the live UI against `schedulers` until the user quits.
pub async fn run(
    schedulers: Vec<Target>,
    initial_task: Option<String>,
    no_color: bool,
) -> anyhow::Result<()> {
    let mut guard = TerminalGuard::enter()?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let _stop_feeds = shutdown.clone().drop_guard();
    spawn_input_thread(tx.clone(), shutdown.clone());
    let (select_tx, select_rx) = watch::channel(initial_task.clone());
    for (i, target) in schedulers.iter().enumerate() {
        tokio::spawn(feed::watch_scheduler(
            i,
            target.addr.clone(),
            select_rx.clone(),
            tx.clone(),
            shutdown.clone(),
        ));
    }
    {
        let tx = tx.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => if tx.send(Event::Tick).is_err() { break },
                }
            }
        });
    }
    let model = ClusterModel::new(schedulers.iter().map(|t| t.addr.clone()));
    let mut app = App::new(model, no_color);
    if initial_task.is_some() {
        // A preselected task opens on its DAG (the Tasks cursor follows it there).
        app.pane = app::Pane::Dag;
    }
    app.selected_task = initial_task;
    let mut logs = LogFollowers::default();
    let client = AdminClient::with_timeout(Duration::from_secs(5))?;
    loop {
        logs.sync(&app, &schedulers, &tx, &shutdown);
        guard
            .terminal
            .draw(|frame| draw::draw(frame, &app))
            .map_err(|e| anyhow::anyhow!("cannot draw: {e}"))?;
        let Some(first) = rx.recv().await else { break };
        let mut commands = app.handle(first, Instant::now());
        // Everything already queued is applied before the next frame: one draw per batch.
        while let Ok(event) = rx.try_recv() {
            commands.extend(app.handle(event, Instant::now()));
            if app.quit {
                break;
            }
        }
        if app.quit {
            break;
        }
        for command in commands {
            match command {
                Command::Select(task) => {
                    let _ = select_tx.send(task);
                }
                Command::Locate(query) => {
                    let id = resolve_query(&query, &app.view);
                    let (client, targets, tx) = (client.clone(), schedulers.clone(), tx.clone());
                    tokio::spawn(async move {
                        let result = match id {
                            Ok(id) => locate_task(&client, &targets, &id)
                                .await
                                .map(|(loc, _)| Box::new(loc))
                                .map_err(|e| format!("{e:#}")),
                            Err(e) => Err(e),
                        };
                        let _ = tx.send(Event::Located(result));
                    });
                }
            }
        }
    }
    drop(guard);
    Ok(())
}

/// Reads terminal events on a thread of its own (crossterm's reads block) until shutdown.
fn spawn_input_thread(tx: mpsc::UnboundedSender<Event>, shutdown: CancellationToken) {
    use ratatui::crossterm::event::{self, Event as TermEvent, KeyEventKind};
    std::thread::spawn(move || {
        while !shutdown.is_cancelled() {
            match event::poll(Duration::from_millis(100)) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(_) => break,
            }
            let sent = match event::read() {
                Ok(TermEvent::Key(key)) if key.kind != KeyEventKind::Release => {
                    tx.send(Event::Key(key))
                }
                Ok(TermEvent::Resize(..)) => tx.send(Event::Resize),
                Ok(_) => Ok(()),
                Err(_) => break,
            };
            if sent.is_err() {
                break;
            }
        }
    });
}

/// What the Locate pane's input names: a task id, a URL (hashed as the peers hash it), or a
/// fragment of a known task's URL, such as a layer digest or an image name.
pub fn resolve_query(query: &str, view: &TopView) -> Result<TaskId, String> {
    let is_id = query.len() == 64 && query.bytes().all(|b| b.is_ascii_hexdigit());
    if is_id || query.contains("://") {
        return task_id_of(query).map_err(|e| format!("{e:#}"));
    }
    let needle = query.to_ascii_lowercase();
    let matches: Vec<&str> = view
        .tasks
        .iter()
        .filter(|t| t.url.to_ascii_lowercase().contains(&needle) || t.task_id.starts_with(&needle))
        .map(|t| t.task_id.as_str())
        .collect();
    match matches.as_slice() {
        [] => Err(format!(
            "no known task's URL or id contains '{query}'; give a task id or the full URL"
        )),
        [one] => one.parse::<TaskId>().map_err(|e| format!("{e}")),
        [first, rest @ ..] if rest.iter().all(|t| t == first) => {
            first.parse::<TaskId>().map_err(|e| format!("{e}"))
        }
        many => Err(format!(
            "'{query}' matches {} tasks; type more of it",
            many.len()
        )),
    }
}

/// The log streams being followed, by admin address.
#[derive(Default)]
struct LogFollowers {
    running: HashMap<String, JoinHandle<()>>,
}

impl LogFollowers {
    /// Follows the schedulers and, of the peers, every one in a small cluster, else those of
    /// the selected task (at most [`MAX_PEER_LOGS`]); stops following the rest.
    fn sync(
        &mut self,
        app: &App,
        schedulers: &[Target],
        tx: &mpsc::UnboundedSender<Event>,
        shutdown: &CancellationToken,
    ) {
        let mut wanted: Vec<String> = schedulers.iter().map(|t| t.addr.clone()).collect();
        let peers: Vec<String> = if app.view.hosts.len() <= MAX_PEER_LOGS {
            app.view
                .hosts
                .iter()
                .filter(|h| h.connected && h.admin_port != 0)
                .map(|h| format!("{}:{}", h.ip, h.admin_port))
                .collect()
        } else {
            app.view
                .task
                .iter()
                .flat_map(|t| t.peers.iter().map(|p| p.admin_addr.clone()))
                .take(MAX_PEER_LOGS)
                .collect()
        };
        wanted.extend(peers);
        self.running.retain(|addr, handle| {
            let keep = wanted.contains(addr);
            if !keep {
                handle.abort();
            }
            keep
        });
        for addr in wanted {
            self.running.entry(addr.clone()).or_insert_with(|| {
                tokio::spawn(feed::follow_logs(addr, tx.clone(), shutdown.clone()))
            });
        }
    }
}

#[cfg(test)]
mod tests;
