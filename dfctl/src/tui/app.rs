//! The state of the `dfctl top` screen and what keys do to it. Pure: keys and data go in,
//! [`Command`]s for the feeds come out, so every key binding is tested without a terminal.
//!
//! Keys (k9s/btop style): `?` help, `q`/Ctrl-C quit, `Esc` back, `/` filter, `j`/`k`/arrows
//! move, `g`/`G` top/bottom, PgUp/PgDn page, `Tab`/`Shift-Tab` or `1`-`6` panes, `Enter` drill
//! down (a task opens its DAG; a DAG row jumps to the node that fed it most; Locate starts
//! typing), `s` sort (tasks; DAG rows by hops or bytes sent); in Logs `f` follow/pause, `w`
//! wrap, `t` only the selected task.
//!
//! Invariants:
//! - The DAG and Pieces panes show the task highlighted in Tasks: switching to them selects
//!   it; outside Tasks the Tasks cursor follows the selected task, so both always agree.
//! - Typed text only goes to an input the user opened (`/`, or Enter in Locate); pane keys
//!   and Tab still switch panes from Locate's input.
//! - Log lines are kept in time order (their RFC 3339 UTC stamps, fixed width, compare as
//!   text), whatever order the daemons' streams deliver them in.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::location::Location;
use crate::tui::feed::{Event, LogLine, WatchUpdate};
use crate::tui::model::{ClusterModel, Link, TaskRow, TaskView, TopView};

/// Log lines kept for the Logs pane.
pub const LOG_LINES: usize = 5000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Tasks,
    Dag,
    Pieces,
    Hosts,
    Locate,
    Logs,
}

impl Pane {
    pub const ALL: [Pane; 6] = [
        Pane::Tasks,
        Pane::Dag,
        Pane::Pieces,
        Pane::Hosts,
        Pane::Locate,
        Pane::Logs,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Self::Tasks => "Tasks",
            Self::Dag => "DAG",
            Self::Pieces => "Pieces",
            Self::Hosts => "Hosts",
            Self::Locate => "Locate",
            Self::Logs => "Logs",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskSort {
    Newest,
    Size,
    Peers,
    Progress,
    Rate,
}

impl TaskSort {
    pub fn label(self) -> &'static str {
        match self {
            Self::Newest => "newest",
            Self::Size => "size",
            Self::Peers => "peers",
            Self::Progress => "progress",
            Self::Rate => "rate",
        }
    }

    fn next(self) -> Self {
        match self {
            Self::Newest => Self::Size,
            Self::Size => Self::Peers,
            Self::Peers => Self::Progress,
            Self::Progress => Self::Rate,
            Self::Rate => Self::Newest,
        }
    }
}

/// The order of the DAG pane's rows below the origin and the seeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DagSort {
    /// Hops from the origin, then name: the order pieces travelled.
    Hops,
    /// Bytes sent, most first: who does the work.
    Sent,
}

impl DagSort {
    pub fn label(self) -> &'static str {
        match self {
            Self::Hops => "hops",
            Self::Sent => "sent",
        }
    }
}

/// Where typed characters go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Filter,
    Locate,
}

#[derive(Debug, Clone)]
pub enum LocateState {
    Idle,
    Running(String),
    Found(Box<Location>),
    Failed(String),
}

/// Side effects the run loop carries out for the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Ask the schedulers for this task's detail (DAG, bitmaps), or for none.
    Select(Option<String>),
    /// Run the cache-location lookup for this input (task id, URL or URL fragment).
    Locate(String),
}

#[derive(Debug)]
pub struct App {
    pub model: ClusterModel,
    pub view: TopView,
    pub pane: Pane,
    pub help: bool,
    pub quit: bool,
    pub input: Option<Input>,
    pub filter: String,
    pub filter_draft: String,
    pub sort: TaskSort,
    pub task_cursor: usize,
    pub host_cursor: usize,
    pub dag_cursor: usize,
    pub pieces_cursor: usize,
    /// Lines scrolled up from the newest log line (0 = following).
    pub logs_offset: usize,
    pub selected_task: Option<String>,
    pub dag_sort: DagSort,
    pub logs: VecDeque<LogLine>,
    pub follow: bool,
    pub wrap: bool,
    pub logs_of_task: bool,
    pub locate_query: String,
    pub locate: LocateState,
    pub no_color: bool,
    /// Daemon names by admin address (`scheduler-N`, host names), for log lines: every peer
    /// logs as component `dfdaemon`.
    pub names: HashMap<String, String>,
}

impl App {
    pub fn new(model: ClusterModel, no_color: bool) -> Self {
        Self {
            model,
            view: TopView::default(),
            pane: Pane::Tasks,
            help: false,
            quit: false,
            input: None,
            filter: String::new(),
            filter_draft: String::new(),
            sort: TaskSort::Newest,
            task_cursor: 0,
            host_cursor: 0,
            dag_cursor: 0,
            pieces_cursor: 0,
            logs_offset: 0,
            selected_task: None,
            dag_sort: DagSort::Hops,
            logs: VecDeque::new(),
            follow: true,
            wrap: false,
            logs_of_task: false,
            locate_query: String::new(),
            locate: LocateState::Idle,
            no_color,
            names: HashMap::new(),
        }
    }

    /// Applies one event; returns what the feeds must do. `now` is the event's time.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Command> {
        match event {
            Event::Key(key) => return self.key(key),
            Event::Watch { scheduler, update } => match update {
                WatchUpdate::Snapshot(snap) => {
                    self.model.apply_snapshot(scheduler, *snap, now);
                    self.refresh(now);
                }
                WatchUpdate::Down { error, retry_at } => {
                    self.model
                        .set_link(scheduler, Link::Down { error, retry_at });
                    self.refresh(now);
                }
            },
            Event::Log(line) => self.push_log(line),
            Event::Located(result) => {
                self.locate = match result {
                    Ok(loc) => LocateState::Found(loc),
                    Err(e) => LocateState::Failed(e),
                };
            }
            Event::Tick => self.refresh(now),
            Event::Resize => {}
        }
        Vec::new()
    }

    /// Recomputes the view from the model (after data changed, or as time passes).
    pub fn refresh(&mut self, now: Instant) {
        self.view = self.model.view(now);
        self.names.clear();
        for (i, s) in self.view.schedulers.iter().enumerate() {
            self.names.insert(s.addr.clone(), format!("scheduler-{i}"));
        }
        for h in &self.view.hosts {
            self.names
                .insert(format!("{}:{}", h.ip, h.admin_port), h.hostname.clone());
        }
        let tasks = self.visible_tasks();
        let selected = self.selected_task.as_deref();
        let follow = (self.pane != Pane::Tasks)
            .then(|| {
                tasks
                    .iter()
                    .position(|t| Some(t.task_id.as_str()) == selected)
            })
            .flatten();
        self.task_cursor = follow.unwrap_or(self.task_cursor.min(tasks.len().saturating_sub(1)));
        let hosts = self.visible_hosts().len();
        self.host_cursor = self.host_cursor.min(hosts.saturating_sub(1));
    }

    /// Inserts `line` in time order (after lines of the same instant, so one daemon's lines
    /// keep their order); past [`LOG_LINES`] the oldest line goes.
    fn push_log(&mut self, line: LogLine) {
        let mut at = self
            .logs
            .partition_point(|l| l.record.ts.as_str() <= line.record.ts.as_str());
        if self.logs.len() == LOG_LINES {
            if at == 0 {
                // Older than every line kept.
                return;
            }
            self.logs.pop_front();
            at -= 1;
        }
        let below_view = at >= self.logs.len().saturating_sub(self.logs_offset);
        self.logs.insert(at, line);
        if !self.follow && below_view {
            // Paused: the lines on screen stay put while newer ones arrive below.
            self.logs_offset = self.logs_offset.saturating_add(1);
        }
    }

    /// Tasks after the `/` filter (URL or id substring), in the chosen order.
    pub fn visible_tasks(&self) -> Vec<&TaskRow> {
        let filter = self.filter.to_ascii_lowercase();
        let mut rows: Vec<&TaskRow> = self
            .view
            .tasks
            .iter()
            .filter(|t| {
                filter.is_empty()
                    || t.url.to_ascii_lowercase().contains(&filter)
                    || t.task_id.starts_with(&filter)
            })
            .collect();
        let by_f64 = |a: f64, b: f64| b.total_cmp(&a);
        match self.sort {
            TaskSort::Newest => {}
            TaskSort::Size => rows.sort_by_key(|t| std::cmp::Reverse(t.content_length)),
            TaskSort::Peers => rows.sort_by_key(|t| std::cmp::Reverse(t.peers_total)),
            TaskSort::Progress => {
                rows.sort_by(|a, b| by_f64(a.progress_percent, b.progress_percent));
            }
            TaskSort::Rate => {
                rows.sort_by(|a, b| by_f64(a.rate_bytes_per_sec, b.rate_bytes_per_sec));
            }
        }
        rows
    }

    pub fn visible_hosts(&self) -> Vec<&crate::tui::model::HostRow> {
        let filter = self.filter.to_ascii_lowercase();
        self.view
            .hosts
            .iter()
            .filter(|h| {
                filter.is_empty()
                    || h.hostname.to_ascii_lowercase().contains(&filter)
                    || h.host_id.to_ascii_lowercase().contains(&filter)
            })
            .collect()
    }

    /// The name of the daemon a log line came from.
    pub fn source_name<'a>(&'a self, line: &'a LogLine) -> &'a str {
        self.names
            .get(&line.source)
            .map_or(line.record.component.as_str(), String::as_str)
    }

    /// Log lines after the task toggle and the `/` filter (message, daemon name, peer id).
    pub fn visible_logs(&self) -> Vec<&LogLine> {
        let filter = self.filter.to_ascii_lowercase();
        let task = if self.logs_of_task {
            self.selected_task.as_deref()
        } else {
            None
        };
        self.logs
            .iter()
            .filter(|l| task.is_none_or(|t| l.record.task_id.as_deref() == Some(t)))
            .filter(|l| {
                filter.is_empty()
                    || l.record.message.to_ascii_lowercase().contains(&filter)
                    || self.source_name(l).to_ascii_lowercase().contains(&filter)
                    || l.record
                        .peer_id
                        .as_deref()
                        .is_some_and(|p| p.to_ascii_lowercase().contains(&filter))
            })
            .collect()
    }

    fn key(&mut self, key: KeyEvent) -> Vec<Command> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && key.code == KeyCode::Char('c') {
            self.quit = true;
            return Vec::new();
        }
        if let Some(input) = self.input {
            return self.input_key(input, key);
        }
        if self.help {
            if matches!(
                key.code,
                KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q')
            ) {
                self.help = false;
            }
            return Vec::new();
        }
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') => self.help = true,
            KeyCode::Esc => {
                if !self.filter.is_empty() {
                    self.filter.clear();
                } else if self.pane != Pane::Tasks {
                    self.pane = Pane::Tasks;
                }
            }
            KeyCode::Char('/') => {
                self.input = Some(Input::Filter);
                self.filter_draft = self.filter.clone();
            }
            KeyCode::Tab | KeyCode::BackTab => return self.tab(key.code),
            KeyCode::Char(c @ '1'..='6') => {
                return self.show_pane(Pane::ALL[c as usize - '1' as usize]);
            }
            KeyCode::Down | KeyCode::Char('j') => self.move_cursor(1),
            KeyCode::Up | KeyCode::Char('k') => self.move_cursor(-1),
            KeyCode::PageDown => self.move_cursor(20),
            KeyCode::PageUp => self.move_cursor(-20),
            KeyCode::Char('g') | KeyCode::Home => self.move_cursor(isize::MIN / 2),
            KeyCode::Char('G') | KeyCode::End => self.move_cursor(isize::MAX / 2),
            KeyCode::Char('s') if self.pane == Pane::Tasks => self.sort = self.sort.next(),
            KeyCode::Char('s') if self.pane == Pane::Dag => {
                self.dag_sort = match self.dag_sort {
                    DagSort::Hops => DagSort::Sent,
                    DagSort::Sent => DagSort::Hops,
                };
            }
            KeyCode::Char('f') if self.pane == Pane::Logs => {
                self.follow = !self.follow;
                if self.follow {
                    self.logs_offset = 0;
                }
            }
            KeyCode::Char('w') if self.pane == Pane::Logs => self.wrap = !self.wrap,
            KeyCode::Char('t') if self.pane == Pane::Logs => {
                self.logs_of_task = !self.logs_of_task;
            }
            KeyCode::Enter | KeyCode::Char(' ') => return self.enter(),
            _ => {}
        }
        Vec::new()
    }

    fn input_key(&mut self, input: Input, key: KeyEvent) -> Vec<Command> {
        let text = match input {
            Input::Filter => &mut self.filter_draft,
            Input::Locate => &mut self.locate_query,
        };
        match key.code {
            // Esc leaves the text box; a second Esc goes back to Tasks.
            KeyCode::Esc => self.input = None,
            // Tab is never text: it leaves the text box for the next pane.
            KeyCode::Tab | KeyCode::BackTab => {
                self.input = None;
                return self.tab(key.code);
            }
            KeyCode::Enter => {
                self.input = None;
                match input {
                    Input::Filter => {
                        self.filter = self.filter_draft.trim().to_owned();
                        self.task_cursor = 0;
                        self.host_cursor = 0;
                    }
                    Input::Locate => {
                        let query = self.locate_query.trim().to_owned();
                        if !query.is_empty() {
                            self.locate = LocateState::Running(query.clone());
                            return vec![Command::Locate(query)];
                        }
                    }
                }
            }
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char(c) => text.push(c),
            _ => {}
        }
        Vec::new()
    }

    fn move_cursor(&mut self, delta: isize) {
        let step = |cur: usize, len: usize| -> usize {
            let max = len.saturating_sub(1) as isize;
            (cur as isize).saturating_add(delta).clamp(0, max.max(0)) as usize
        };
        match self.pane {
            Pane::Tasks => self.task_cursor = step(self.task_cursor, self.visible_tasks().len()),
            Pane::Hosts => self.host_cursor = step(self.host_cursor, self.visible_hosts().len()),
            Pane::Dag => {
                let len = self.selected_detail().map_or(0, |t| t.flows.nodes.len());
                self.dag_cursor = step(self.dag_cursor, len);
            }
            Pane::Pieces => {
                let len = self.selected_detail().map_or(0, |t| t.peers.len());
                self.pieces_cursor = step(self.pieces_cursor, len);
            }
            Pane::Logs => {
                // Down goes towards the newest line; reaching it resumes following.
                let len = self.visible_logs().len();
                let offset = (self.logs_offset as isize).saturating_sub(delta);
                self.logs_offset = offset.clamp(0, len.saturating_sub(1) as isize) as usize;
                self.follow = self.logs_offset == 0;
            }
            Pane::Locate => {}
        }
    }

    fn enter(&mut self) -> Vec<Command> {
        match self.pane {
            Pane::Tasks => self.show_pane(Pane::Dag),
            Pane::Dag => {
                // Up the flow: to the node that fed this one most (the origin ends the walk).
                let order = self.dag_order();
                let feeder = self.selected_detail().and_then(|t| {
                    let node = &t.flows.nodes[*order.get(self.dag_cursor)?];
                    node.fed_by().next().map(|l| l.node)
                });
                if let Some(pos) = feeder.and_then(|f| order.iter().position(|&n| n == f)) {
                    self.dag_cursor = pos;
                }
                Vec::new()
            }
            Pane::Locate => {
                self.input = Some(Input::Locate);
                Vec::new()
            }
            Pane::Hosts => {
                // Drill down from a host to its log lines.
                if let Some(h) = self.visible_hosts().get(self.host_cursor) {
                    self.filter = h.hostname.clone();
                    self.pane = Pane::Logs;
                }
                Vec::new()
            }
            Pane::Pieces | Pane::Logs => Vec::new(),
        }
    }

    /// Tab: the next pane; Shift-Tab: the previous one.
    fn tab(&mut self, code: KeyCode) -> Vec<Command> {
        let n = Pane::ALL.len();
        let step = if code == KeyCode::BackTab { n - 1 } else { 1 };
        self.show_pane(Pane::ALL[(self.pane.index() + step) % n])
    }

    /// Switches to `pane`; the DAG and Pieces panes select the task highlighted in Tasks.
    fn show_pane(&mut self, pane: Pane) -> Vec<Command> {
        self.pane = pane;
        if !matches!(pane, Pane::Dag | Pane::Pieces) {
            return Vec::new();
        }
        let Some(task) = self
            .visible_tasks()
            .get(self.task_cursor)
            .map(|t| t.task_id.clone())
        else {
            return Vec::new();
        };
        if self.selected_task.as_deref() == Some(task.as_str()) {
            return Vec::new();
        }
        self.selected_task = Some(task.clone());
        self.dag_cursor = 0;
        self.pieces_cursor = 0;
        self.model.clear_edge_rates();
        vec![Command::Select(Some(task))]
    }

    /// The selected task's detail, once the schedulers sent it (not a previous selection's).
    pub fn selected_detail(&self) -> Option<&TaskView> {
        self.view
            .task
            .as_ref()
            .filter(|t| self.selected_task.as_deref() == Some(t.task_id.as_str()))
    }

    /// The DAG pane's rows as indexes into the selected task's flow nodes: the origin and the
    /// seeds first, then the rest in the chosen order.
    pub fn dag_order(&self) -> Vec<usize> {
        let Some(task) = self.selected_detail() else {
            return Vec::new();
        };
        let nodes = &task.flows.nodes;
        let mut order: Vec<usize> = (0..nodes.len()).collect();
        if self.dag_sort == DagSort::Sent {
            // Stable: equal senders keep the hops order.
            order.sort_by_key(|&n| (n != 0, !nodes[n].is_seed, std::cmp::Reverse(nodes[n].sent)));
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::synthetic;

    fn press(app: &mut App, code: KeyCode) -> Vec<Command> {
        app.handle(
            Event::Key(KeyEvent::new(code, KeyModifiers::NONE)),
            synthetic::t0(),
        )
    }

    #[test]
    fn keys_move_between_panes_filter_select_and_quit() {
        let mut app = synthetic::app(synthetic::busy_cluster(3, 4, 2));
        assert_eq!(app.pane, Pane::Tasks);
        press(&mut app, KeyCode::Tab);
        assert_eq!(app.pane, Pane::Dag);
        press(&mut app, KeyCode::Char('4'));
        assert_eq!(app.pane, Pane::Hosts);
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.pane, Pane::Tasks);
        // j moves down, Enter drills into the task under the cursor.
        press(&mut app, KeyCode::Char('j'));
        let second = app.visible_tasks()[1].task_id.clone();
        let cmds = press(&mut app, KeyCode::Enter);
        assert_eq!(cmds, vec![Command::Select(Some(second.clone()))]);
        assert_eq!(app.pane, Pane::Dag);
        assert_eq!(app.selected_task.as_deref(), Some(second.as_str()));
        // `/` filters; typed keys go to the filter, not to the bindings ('q' does not quit).
        press(&mut app, KeyCode::Esc);
        press(&mut app, KeyCode::Char('/'));
        for c in "layer-2q".chars() {
            press(&mut app, KeyCode::Char(c));
        }
        press(&mut app, KeyCode::Backspace);
        assert!(!app.quit);
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.filter, "layer-2");
        assert_eq!(app.visible_tasks().len(), 1);
        press(&mut app, KeyCode::Esc);
        assert!(app.filter.is_empty(), "Esc clears the filter first");
        press(&mut app, KeyCode::Char('?'));
        assert!(app.help);
        press(&mut app, KeyCode::Esc);
        assert!(!app.help);
        press(&mut app, KeyCode::Char('q'));
        assert!(app.quit);
        let mut app = synthetic::app(synthetic::busy_cluster(1, 1, 1));
        app.handle(
            Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            synthetic::t0(),
        );
        assert!(app.quit);
    }

    #[test]
    fn locate_input_runs_the_lookup_on_enter() {
        let mut app = synthetic::app(synthetic::busy_cluster(1, 1, 1));
        press(&mut app, KeyCode::Char('5'));
        assert_eq!(app.input, None, "5 shows the pane; Enter starts typing");
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.input, Some(Input::Locate));
        for c in "http://o/x".chars() {
            press(&mut app, KeyCode::Char(c));
        }
        let cmds = press(&mut app, KeyCode::Enter);
        assert_eq!(cmds, vec![Command::Locate("http://o/x".into())]);
        assert!(matches!(app.locate, LocateState::Running(ref q) if q == "http://o/x"));
    }

    #[test]
    fn after_5_the_pane_keys_still_switch_panes() {
        let mut app = synthetic::app(synthetic::busy_cluster(1, 1, 1));
        press(&mut app, KeyCode::Char('5'));
        press(&mut app, KeyCode::Char('6'));
        assert_eq!(app.pane, Pane::Logs, "6 switched to Logs");
        assert_eq!(app.locate_query, "", "nothing was typed");
        // While typing, digits are text (task ids are hex) and Tab leaves for the next pane.
        press(&mut app, KeyCode::Char('5'));
        press(&mut app, KeyCode::Enter);
        press(&mut app, KeyCode::Char('6'));
        assert_eq!((app.pane, app.locate_query.as_str()), (Pane::Locate, "6"));
        press(&mut app, KeyCode::Tab);
        assert_eq!((app.pane, app.input), (Pane::Logs, None));
        press(&mut app, KeyCode::BackTab);
        press(&mut app, KeyCode::Char('4'));
        assert_eq!(app.pane, Pane::Hosts);
    }

    #[test]
    fn dag_and_pieces_show_the_highlighted_task_without_enter() {
        let mut app = synthetic::app(synthetic::busy_cluster(3, 4, 1));
        assert_eq!(app.selected_task, None);
        press(&mut app, KeyCode::Char('j'));
        let second = app.visible_tasks()[1].task_id.clone();
        let cmds = press(&mut app, KeyCode::Char('2'));
        assert_eq!(cmds, vec![Command::Select(Some(second.clone()))]);
        assert_eq!(app.pane, Pane::Dag);
        // Pieces shows the same task: nothing new to ask for.
        assert!(press(&mut app, KeyCode::Char('3')).is_empty());
        // Back in Tasks, another row, then Tab: the DAG follows the highlight.
        press(&mut app, KeyCode::Char('1'));
        press(&mut app, KeyCode::Char('j'));
        let third = app.visible_tasks()[2].task_id.clone();
        let cmds = press(&mut app, KeyCode::Tab);
        assert_eq!(cmds, vec![Command::Select(Some(third.clone()))]);
        assert_eq!(app.selected_task.as_deref(), Some(third.as_str()));
        // Outside Tasks, the Tasks cursor stays on the selected task as rows move.
        app.sort = TaskSort::Size;
        app.refresh(synthetic::t0());
        assert_eq!(app.visible_tasks()[app.task_cursor].task_id, third);
        // A detail of another task (the previous selection's, still in flight) is not shown.
        let mut app = synthetic::app(synthetic::dag_cluster(3));
        app.selected_task = None;
        assert!(app.selected_detail().is_none());
        press(&mut app, KeyCode::Char('3'));
        assert_eq!(app.pane, Pane::Pieces);
        assert!(
            app.selected_detail().is_some(),
            "the highlighted task's detail"
        );
    }

    fn log_at(source: &str, second: u32) -> LogLine {
        LogLine {
            source: source.into(),
            record: df_core::telemetry::LogRecord {
                ts: format!("2026-11-22T08:00:{second:02}.000Z"),
                level: "INFO".into(),
                component: "dfdaemon".into(),
                target: "df".into(),
                message: format!("{source} at {second}"),
                task_id: None,
                peer_id: None,
                fields: Default::default(),
            },
        }
    }

    #[test]
    fn logs_from_several_daemons_are_merged_in_time_order() {
        let mut app = synthetic::app(synthetic::busy_cluster(1, 1, 1));
        // One daemon streams live lines; another's backlog of older lines arrives after them.
        for (source, second) in [("a", 5), ("a", 6), ("b", 1), ("b", 5), ("b", 7), ("a", 2)] {
            app.handle(Event::Log(log_at(source, second)), synthetic::t0());
        }
        let order: Vec<&str> = app
            .visible_logs()
            .iter()
            .map(|l| l.record.message.as_str())
            .collect();
        assert_eq!(
            order,
            ["b at 1", "a at 2", "a at 5", "b at 5", "a at 6", "b at 7"],
            "same instant: arrival order"
        );
        // Full: a line older than everything kept is dropped, a newer one evicts the oldest.
        let mut app = synthetic::app(synthetic::busy_cluster(1, 1, 1));
        for _ in 0..LOG_LINES {
            app.handle(Event::Log(log_at("a", 30)), synthetic::t0());
        }
        app.handle(Event::Log(log_at("b", 10)), synthetic::t0());
        assert!(app.logs.iter().all(|l| l.source == "a"));
        app.handle(Event::Log(log_at("b", 40)), synthetic::t0());
        assert_eq!(app.logs.len(), LOG_LINES);
        assert_eq!(app.logs.back().map(|l| l.source.as_str()), Some("b"));
    }

    #[test]
    fn sorting_by_peers_puts_the_largest_swarm_first() {
        let mut app = synthetic::app(synthetic::busy_cluster(5, 6, 2));
        press(&mut app, KeyCode::Char('s'));
        press(&mut app, KeyCode::Char('s'));
        assert_eq!(app.sort, TaskSort::Peers);
        let peers: Vec<usize> = app.visible_tasks().iter().map(|t| t.peers_total).collect();
        let mut sorted = peers.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(peers, sorted);
        assert!(peers.first() > peers.last(), "{peers:?}");
    }
}
