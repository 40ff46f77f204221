//! The state of the `dfctl top` screen and what keys do to it. Pure: keys and data go in,
//! [`Command`]s for the feeds come out, so every key binding is tested without a terminal.
//!
//! Keys (k9s/btop style): `?` help, `q`/Ctrl-C quit, `Esc` back, `/` filter, `j`/`k`/arrows
//! move, `g`/`G` top/bottom, PgUp/PgDn page, `Tab`/`Shift-Tab` or `1`-`6` panes, `Enter` drill
//! down (a task opens its DAG; a DAG node collapses or expands), `s` sort tasks; in Logs `f`
//! follow/pause, `w` wrap, `t` only the selected task.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::location::Location;
use crate::tui::feed::{Event, LogLine, WatchUpdate};
use crate::tui::model::{ClusterModel, Link, TaskRow, TopView};

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
    pub collapsed: HashSet<String>,
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
            collapsed: HashSet::new(),
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
        let tasks = self.visible_tasks().len();
        self.task_cursor = self.task_cursor.min(tasks.saturating_sub(1));
        let hosts = self.visible_hosts().len();
        self.host_cursor = self.host_cursor.min(hosts.saturating_sub(1));
    }

    fn push_log(&mut self, line: LogLine) {
        if self.logs.len() == LOG_LINES {
            self.logs.pop_front();
        }
        self.logs.push_back(line);
        if !self.follow {
            // Paused: the lines on screen stay put while new ones arrive below.
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
            KeyCode::Tab => self.pane = Pane::ALL[(self.pane.index() + 1) % Pane::ALL.len()],
            KeyCode::BackTab => {
                self.pane = Pane::ALL[(self.pane.index() + Pane::ALL.len() - 1) % Pane::ALL.len()];
            }
            KeyCode::Char(c @ '1'..='6') => {
                let n = c as usize - '1' as usize;
                self.pane = Pane::ALL[n];
                if self.pane == Pane::Locate {
                    self.input = Some(Input::Locate);
                }
            }
            KeyCode::Down | KeyCode::Char('j') => self.move_cursor(1),
            KeyCode::Up | KeyCode::Char('k') => self.move_cursor(-1),
            KeyCode::PageDown => self.move_cursor(20),
            KeyCode::PageUp => self.move_cursor(-20),
            KeyCode::Char('g') | KeyCode::Home => self.move_cursor(isize::MIN / 2),
            KeyCode::Char('G') | KeyCode::End => self.move_cursor(isize::MAX / 2),
            KeyCode::Char('s') if self.pane == Pane::Tasks => self.sort = self.sort.next(),
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
                let len = self
                    .view
                    .task
                    .as_ref()
                    .map_or(0, |t| crate::tui::draw::dag_lines(t, &self.collapsed).len());
                self.dag_cursor = step(self.dag_cursor, len);
            }
            Pane::Pieces => {
                let len = self.view.task.as_ref().map_or(0, |t| t.peers.len());
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
            Pane::Tasks => {
                let Some(task) = self
                    .visible_tasks()
                    .get(self.task_cursor)
                    .map(|t| t.task_id.clone())
                else {
                    return Vec::new();
                };
                self.pane = Pane::Dag;
                self.dag_cursor = 0;
                self.pieces_cursor = 0;
                if self.selected_task.as_deref() == Some(task.as_str()) {
                    return Vec::new();
                }
                self.selected_task = Some(task.clone());
                self.collapsed.clear();
                self.model.clear_edge_rates();
                vec![Command::Select(Some(task))]
            }
            Pane::Dag => {
                if let Some(task) = &self.view.task {
                    let lines = crate::tui::draw::dag_lines(task, &self.collapsed);
                    if let Some(line) = lines.get(self.dag_cursor)
                        && line.children > 0
                    {
                        let id = task.peers[line.peer].peer_id.clone();
                        if !self.collapsed.remove(&id) {
                            self.collapsed.insert(id);
                        }
                    }
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
        assert_eq!(app.input, Some(Input::Locate));
        for c in "http://o/x".chars() {
            press(&mut app, KeyCode::Char(c));
        }
        let cmds = press(&mut app, KeyCode::Enter);
        assert_eq!(cmds, vec![Command::Locate("http://o/x".into())]);
        assert!(matches!(app.locate, LocateState::Running(ref q) if q == "http://o/x"));
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
