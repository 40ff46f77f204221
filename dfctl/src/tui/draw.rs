//! Drawing `dfctl top`: a header with the schedulers' links, a tab bar, the current pane and a
//! key-hint footer (or the text being typed). Everything is drawn from [`App`] alone.
//!
//! Invariants:
//! - Only what fits on screen is built (rows are windowed around the cursor), so a frame costs
//!   the same with 1000 tasks as with 20.
//! - Colours only mark meaning that the text also says (state words, `✗`), and with
//!   `NO_COLOR` no colour is emitted at all; selection uses reverse video, which is not colour.
//! - At 80x24 every pane shows its key columns.

use std::collections::{HashMap, HashSet};

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use crate::render;
use crate::tui::app::{App, Input, LocateState, Pane};
use crate::tui::model::{TaskView, TopView, natural_key};

/// Styles, or none of them under `NO_COLOR`.
#[derive(Debug, Clone, Copy)]
struct Theme {
    color: bool,
}

impl Theme {
    fn fg(self, c: Color) -> Style {
        if self.color {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    }
    fn good(self) -> Style {
        self.fg(Color::Green)
    }
    fn bad(self) -> Style {
        self.fg(Color::Red)
    }
    fn warn(self) -> Style {
        self.fg(Color::Yellow)
    }
    fn dim(self) -> Style {
        self.fg(Color::DarkGray)
    }
    fn title(self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }
    fn selected(self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }
}

pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let theme = Theme {
        color: !app.no_color,
    };
    let down = app.view.schedulers.iter().filter(|s| !s.connected).count();
    let [header, warning, tabs, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(u16::from(down > 0)),
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_header(frame, header, app, theme);
    if down > 0 {
        draw_warning(frame, warning, &app.view, theme);
    }
    draw_tabs(frame, tabs, app, theme);
    match app.pane {
        Pane::Tasks => draw_tasks(frame, body, app, theme),
        Pane::Dag => draw_dag(frame, body, app, theme),
        Pane::Pieces => draw_pieces(frame, body, app, theme),
        Pane::Hosts => draw_hosts(frame, body, app, theme),
        Pane::Locate => draw_locate(frame, body, app, theme),
        Pane::Logs => draw_logs(frame, body, app, theme),
    }
    draw_footer(frame, footer, app, theme);
    if app.help {
        draw_help(frame, body, theme);
    }
}

fn draw_header(frame: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
    let v = &app.view;
    let up = v.schedulers.iter().filter(|s| s.connected).count();
    let link_style = if up == v.schedulers.len() {
        theme.good()
    } else {
        theme.bad()
    };
    let mut spans = vec![
        Span::styled("dfctl top", theme.title()),
        Span::raw("  schedulers "),
        Span::styled(format!("{up}/{} up", v.schedulers.len()), link_style),
        Span::raw(format!(
            "  tasks {}  hosts {}",
            v.tasks.len(),
            v.hosts.len()
        )),
    ];
    if !app.filter.is_empty() {
        spans.push(Span::styled(format!("  /{}", app.filter), theme.warn()));
    }
    frame.render_widget(Line::from(spans), area);
}

fn draw_warning(frame: &mut Frame<'_>, area: Rect, view: &TopView, theme: Theme) {
    let down: Vec<_> = view.schedulers.iter().filter(|s| !s.connected).collect();
    let Some(first) = down.first() else { return };
    let state = match (&first.error, first.retry_in_secs) {
        (Some(e), Some(r)) => format!("disconnected, retry in {r}s: {e}"),
        (Some(e), None) => format!("disconnected: {e}"),
        _ => "connecting".to_owned(),
    };
    let more = if down.len() > 1 {
        format!(" (+{} more)", down.len() - 1)
    } else {
        String::new()
    };
    let text = format!("✗ scheduler {} {state}{more}", first.addr);
    frame.render_widget(Line::styled(text, theme.bad()), area);
}

fn draw_tabs(frame: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
    let mut spans = Vec::new();
    for (i, pane) in Pane::ALL.iter().enumerate() {
        let label = format!(" {} {} ", i + 1, pane.title());
        if *pane == app.pane {
            spans.push(Span::styled(label, theme.selected()));
        } else {
            spans.push(Span::raw(label));
        }
    }
    frame.render_widget(Line::from(spans), area);
}

fn draw_footer(frame: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
    let line = match app.input {
        Some(Input::Filter) => Line::from(vec![
            Span::styled("/", theme.warn()),
            Span::raw(format!("{}█", app.filter_draft)),
            Span::styled("  Enter apply  Esc cancel", theme.dim()),
        ]),
        Some(Input::Locate) => Line::styled(
            "type a task id, URL or layer digest  Enter look up  Esc leave",
            theme.dim(),
        ),
        None => {
            let extra = match app.pane {
                Pane::Tasks => format!("  s sort:{}", app.sort.label()),
                Pane::Logs => format!(
                    "  f {}  w wrap{}  t task{}",
                    if app.follow { "pause" } else { "follow" },
                    if app.wrap { ":on" } else { "" },
                    if app.logs_of_task { ":on" } else { "" }
                ),
                Pane::Dag => "  Enter collapse".to_owned(),
                _ => String::new(),
            };
            Line::styled(
                format!("? help  q quit  Tab/1-6 panes  / filter  Enter open{extra}"),
                theme.dim(),
            )
        }
    };
    frame.render_widget(line, area);
}

fn draw_help(frame: &mut Frame<'_>, body: Rect, theme: Theme) {
    let lines = [
        "?          this help (Esc closes)",
        "q, Ctrl-C  quit",
        "Tab, 1-6   Tasks DAG Pieces Hosts Locate Logs",
        "j/k, ↑/↓   move; PgUp/PgDn, g/G page, top, end",
        "Enter      task: open its DAG; DAG: collapse",
        "           node; host: its logs",
        "/          filter the list (Esc clears)",
        "s          Tasks: sort newest/size/peers/",
        "           progress/rate",
        "f w t      Logs: follow/pause, wrap, only",
        "           the selected task",
        "Esc        back to Tasks",
    ];
    let width = 52.min(body.width);
    let height = (lines.len() as u16 + 2).min(body.height);
    let area = Rect {
        x: body.x + (body.width - width) / 2,
        y: body.y + (body.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, area);
    let text: Vec<Line<'_>> = lines.iter().map(|l| Line::raw(*l)).collect();
    frame.render_widget(
        Paragraph::new(text).block(
            Block::default()
                .borders(Borders::ALL)
                .title(Span::styled(" keys ", theme.title())),
        ),
        area,
    );
}

/// The first row to show so that `cursor` is on screen in `height` rows.
fn window(cursor: usize, height: usize) -> usize {
    if height == 0 {
        0
    } else {
        cursor.saturating_sub(height - 1)
    }
}

/// `s` cut to `width` characters, keeping the end (URLs differ at the end).
fn keep_end(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return format!("{s:<width$}");
    }
    if width == 0 {
        return String::new();
    }
    let tail: String = s.chars().skip(n - width + 1).collect();
    format!("…{tail}")
}

/// `s` cut to `width` characters, keeping the start.
fn keep_start(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return format!("{s:<width$}");
    }
    if width == 0 {
        return String::new();
    }
    let head: String = s.chars().take(width - 1).collect();
    format!("{head}…")
}

fn rate(bytes_per_sec: f64) -> String {
    if bytes_per_sec < 1.0 {
        "-".to_owned()
    } else {
        format!("{}/s", render::bytes(bytes_per_sec as u64))
    }
}

fn draw_tasks(frame: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
    let tasks = app.visible_tasks();
    let width = usize::from(area.width);
    // TASK SIZE PEERS PROG RATE P2P, then the URL takes what is left.
    let fixed = 9 + 10 + 12 + 5 + 12 + 5;
    let url_w = width.saturating_sub(fixed).max(8);
    let header = format!(
        "{:<8} {:<9} {:<11} {:>4} {:>11} {:>4} {}",
        "TASK", "SIZE", "PEERS d/r/f", "PROG", "RATE", "P2P", "URL"
    );
    let mut lines = vec![Line::styled(keep_start(&header, width), theme.title())];
    if tasks.is_empty() {
        let text = if app.view.tasks.is_empty() {
            "no tasks yet: downloads through a peer appear here"
        } else {
            "no task matches the filter"
        };
        lines.push(Line::styled(text, theme.dim()));
    }
    let rows = usize::from(area.height).saturating_sub(1);
    let first = window(app.task_cursor, rows);
    for (i, t) in tasks.iter().enumerate().skip(first).take(rows) {
        let peers = format!("{}/{}/{}", t.peers_done, t.peers_running, t.peers_failed);
        let text = format!(
            "{:<8} {:<9} {:<11} {:>3.0}% {:>11} {:>3.0}% {}",
            &t.task_id[..t.task_id.len().min(8)],
            t.content_length.map_or("-".to_owned(), render::bytes),
            peers,
            t.progress_percent.floor(),
            rate(t.rate_bytes_per_sec),
            t.p2p_percent,
            keep_end(&t.url, url_w)
        );
        let style = if i == app.task_cursor {
            theme.selected()
        } else if t.peers_failed > 0 {
            theme.bad()
        } else if t.progress_percent >= 100.0 {
            theme.good()
        } else {
            Style::default()
        };
        lines.push(Line::styled(keep_start(&text, width), style));
    }
    frame.render_widget(Paragraph::new(lines), area);
}

/// One line of the DAG tree.
#[derive(Debug, Clone)]
pub struct DagLine {
    /// Index into `TaskView::peers`.
    pub peer: usize,
    /// Tree-drawing prefix (`│  ├─ `).
    pub prefix: String,
    /// Index into `TaskView::edges` of the edge from the parent this line hangs under.
    pub edge: Option<usize>,
    /// Children in the tree (shown or collapsed).
    pub children: usize,
    pub collapsed: bool,
    /// Hosts of other parents this peer pulled from, and of blocklisted ones.
    pub other_parents: Vec<String>,
    pub blocked: Vec<String>,
}

/// The DAG as a tree: each peer hangs under the parent that gave it most bytes (blocklisted
/// parents excluded); its other and blocklisted parents are listed on its line. Peers with no
/// usable parent (the seed, back-to-source peers) are roots, seeds first. Children of a
/// collapsed peer are hidden.
pub fn dag_lines(task: &TaskView, collapsed: &HashSet<String>) -> Vec<DagLine> {
    let index: HashMap<&str, usize> = task
        .peers
        .iter()
        .enumerate()
        .map(|(i, p)| (p.peer_id.as_str(), i))
        .collect();
    let n = task.peers.len();
    let mut primary: Vec<Option<usize>> = vec![None; n];
    for (ei, e) in task.edges.iter().enumerate() {
        let (Some(&c), Some(_)) = (index.get(e.child.as_str()), index.get(e.parent.as_str()))
        else {
            continue;
        };
        if e.blocklisted || e.parent == e.child {
            continue;
        }
        if primary[c].is_none_or(|best| e.bytes > task.edges[best].bytes) {
            primary[c] = Some(ei);
        }
    }
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut roots = Vec::new();
    for (c, edge) in primary.iter().enumerate() {
        match edge.and_then(|ei| index.get(task.edges[ei].parent.as_str())) {
            Some(&p) => children[p].push(c),
            None => roots.push(c),
        }
    }
    let order = |v: &mut Vec<usize>| {
        v.sort_by(|a, b| {
            let (pa, pb) = (&task.peers[*a], &task.peers[*b]);
            pb.is_seed
                .cmp(&pa.is_seed)
                .then_with(|| natural_key(&pa.host).cmp(&natural_key(&pb.host)))
        });
    };
    order(&mut roots);
    for c in &mut children {
        order(c);
    }
    let mut lines = Vec::with_capacity(n);
    let mut seen = vec![false; n];
    let emit = |root: usize, seen: &mut Vec<bool>, lines: &mut Vec<DagLine>| {
        // (peer, prefix for its line, prefix for its children)
        let mut stack = vec![(root, String::new(), String::new())];
        while let Some((p, prefix, child_prefix)) = stack.pop() {
            if std::mem::replace(&mut seen[p], true) {
                continue;
            }
            let id = &task.peers[p].peer_id;
            let is_collapsed = collapsed.contains(id) && !children[p].is_empty();
            let mut other_parents = Vec::new();
            let mut blocked = Vec::new();
            for (ei, e) in task.edges.iter().enumerate() {
                if &e.child != id || Some(ei) == primary[p] {
                    continue;
                }
                let host = index
                    .get(e.parent.as_str())
                    .map_or_else(|| e.parent.clone(), |&i| task.peers[i].host.clone());
                if e.blocklisted {
                    blocked.push(host);
                } else {
                    other_parents.push(host);
                }
            }
            lines.push(DagLine {
                peer: p,
                prefix,
                edge: primary[p],
                children: children[p].len(),
                collapsed: is_collapsed,
                other_parents,
                blocked,
            });
            if is_collapsed {
                // Hidden descendants must not show up later as roots.
                let mut hide = children[p].clone();
                while let Some(h) = hide.pop() {
                    if !std::mem::replace(&mut seen[h], true) {
                        hide.extend(children[h].iter().copied());
                    }
                }
                continue;
            }
            let kids = &children[p];
            for (k, &c) in kids.iter().enumerate().rev() {
                let last = k + 1 == kids.len();
                let (branch, cont) = if last {
                    ("└─ ", "   ")
                } else {
                    ("├─ ", "│  ")
                };
                stack.push((
                    c,
                    format!("{child_prefix}{branch}"),
                    format!("{child_prefix}{cont}"),
                ));
            }
        }
    };
    for &r in &roots {
        emit(r, &mut seen, &mut lines);
    }
    // Peers only reachable through a cycle of old edges: shown as roots rather than lost.
    for p in 0..n {
        if !seen[p] {
            emit(p, &mut seen, &mut lines);
        }
    }
    lines
}

fn no_task(frame: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
    let text = match &app.selected_task {
        None => "select a task in Tasks (1) and press Enter",
        Some(_) => "waiting for the task's detail from the schedulers…",
    };
    frame.render_widget(Line::styled(text, theme.dim()), area);
}

fn percent(have: u32, of: Option<u32>) -> String {
    match of {
        Some(0) => "100%".to_owned(),
        Some(total) => format!("{:.0}%", f64::from(have) * 100.0 / f64::from(total)),
        None => "-".to_owned(),
    }
}

fn draw_dag(frame: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
    let Some(task) = &app.view.task else {
        return no_task(frame, area, app, theme);
    };
    let width = usize::from(area.width);
    let lines_all = dag_lines(task, &app.collapsed);
    let title = format!(
        "{}  {} peers  {} pieces  {}",
        &task.task_id[..task.task_id.len().min(8)],
        task.peers.len(),
        task.piece_count.map_or("?".to_owned(), |c| c.to_string()),
        task.url
    );
    let origin: u64 = task.peers.iter().map(|p| p.bytes_from_origin).sum();
    let peers: u64 = task.peers.iter().map(|p| p.bytes_from_peers).sum();
    let p2p = if origin + peers == 0 {
        0.0
    } else {
        peers as f64 * 100.0 / (origin + peers) as f64
    };
    let bytes = format!(
        "bytes from the origin {}, from peers {} (P2P {p2p:.0}%)",
        render::bytes(origin),
        render::bytes(peers)
    );
    let mut out = vec![
        Line::styled(keep_start(&title, width), theme.title()),
        Line::styled(keep_start(&bytes, width), theme.dim()),
    ];
    let rows = usize::from(area.height).saturating_sub(2);
    let first = window(app.dag_cursor, rows);
    for (i, l) in lines_all.iter().enumerate().skip(first).take(rows) {
        let p = &task.peers[l.peer];
        let marker = if l.collapsed {
            format!("▸(+{}) ", l.children)
        } else if l.children > 0 {
            "▾ ".to_owned()
        } else {
            String::new()
        };
        let mut spans = vec![
            Span::raw(format!("{}{marker}", l.prefix)),
            Span::styled(
                p.host.clone(),
                if p.is_seed {
                    theme.title()
                } else {
                    Style::default()
                },
            ),
        ];
        if p.is_seed {
            spans.push(Span::raw(" [seed]"));
        }
        let state_style = match p.state.as_str() {
            "succeeded" => theme.good(),
            "failed" | "left" => theme.bad(),
            _ => Style::default(),
        };
        spans.push(Span::styled(
            format!(
                " {} {}",
                p.state,
                percent(p.finished_pieces, task.piece_count)
            ),
            state_style,
        ));
        match l.edge.map(|e| &task.edges[e]) {
            Some(e) => spans.push(Span::raw(format!(
                " ← {} {}",
                render::bytes(e.bytes),
                rate(e.rate_bytes_per_sec)
            ))),
            None if p.bytes_from_origin > 0 => spans.push(Span::raw(format!(
                " ← origin {}",
                render::bytes(p.bytes_from_origin)
            ))),
            None => {}
        }
        if !l.other_parents.is_empty() {
            spans.push(Span::styled(
                format!(" +{}", l.other_parents.join(",")),
                theme.dim(),
            ));
        }
        if !l.blocked.is_empty() {
            spans.push(Span::styled(
                format!(" ✗blocklisted:{}", l.blocked.join(",")),
                theme.bad(),
            ));
        }
        let mut line = Line::from(spans);
        if i == app.dag_cursor {
            line = line.style(theme.selected());
        }
        out.push(line);
    }
    frame.render_widget(Paragraph::new(out), area);
}

/// A bitmap of `count` pieces drawn in `width` cells: `█` all pieces of the cell held, `▓`
/// at least half, `░` some, `·` none.
pub fn piece_bar(hex: &str, count: u32, width: usize) -> String {
    let bitmap = df_core::piece::Bitmap::from_hex(count, hex);
    let has = |n: u32| bitmap.as_ref().is_some_and(|b| b.get(n));
    if count == 0 || width == 0 {
        return String::new();
    }
    let cells = width.min(count as usize);
    (0..cells)
        .map(|c| {
            let start = (c as u64 * u64::from(count) / cells as u64) as u32;
            let end = (((c + 1) as u64 * u64::from(count)) / cells as u64) as u32;
            let total = end.saturating_sub(start).max(1);
            let held = (start..end).filter(|n| has(*n)).count() as u32;
            if held == total {
                '█'
            } else if held * 2 >= total && held > 0 {
                '▓'
            } else if held > 0 {
                '░'
            } else {
                '·'
            }
        })
        .collect()
}

fn draw_pieces(frame: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
    let Some(task) = &app.view.task else {
        return no_task(frame, area, app, theme);
    };
    let width = usize::from(area.width);
    let count = task.piece_count.unwrap_or(0);
    let title = format!(
        "piece bitmaps: {} peers × {} pieces  (█ held ▓ most ░ some · none)",
        task.peers.len(),
        count
    );
    let mut out = vec![Line::styled(keep_start(&title, width), theme.title())];
    let rows = usize::from(area.height).saturating_sub(1);
    let first = window(app.pieces_cursor, rows);
    let bar_w = width.saturating_sub(12 + 5 + 2);
    for (i, p) in task.peers.iter().enumerate().skip(first).take(rows) {
        let pct = percent(p.finished_pieces, task.piece_count);
        let style = if i == app.pieces_cursor {
            theme.selected()
        } else if p.finished_pieces == count && count > 0 {
            theme.good()
        } else {
            Style::default()
        };
        let text = format!(
            "{} {pct:>4} {}",
            keep_start(&p.host, 12),
            piece_bar(&p.bitmap, count, bar_w)
        );
        out.push(Line::styled(text, style));
    }
    frame.render_widget(Paragraph::new(out), area);
}

fn draw_hosts(frame: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
    let hosts = app.visible_hosts();
    let width = usize::from(area.width);
    let header = format!(
        "{:<14} {:<6} {:>7} {:>10} {:>19} {:>3} {}",
        "HOST", "TYPE", "UPLOADS", "UP RATE", "DISK USED/CAP", "WM", "STATE"
    );
    let mut out = vec![Line::styled(keep_start(&header, width), theme.title())];
    if hosts.is_empty() {
        out.push(Line::styled("no hosts have announced", theme.dim()));
    }
    let rows = usize::from(area.height).saturating_sub(1);
    let first = window(app.host_cursor, rows);
    for (i, h) in hosts.iter().enumerate().skip(first).take(rows) {
        let disk_pct = if h.disk_capacity > 0 {
            h.disk_used as f64 * 100.0 / h.disk_capacity as f64
        } else {
            0.0
        };
        let over = h.high_watermark_percent > 0 && disk_pct >= f64::from(h.high_watermark_percent);
        let state = if !h.connected {
            "gone"
        } else if h.disabled {
            "disabled"
        } else if over {
            "evicting"
        } else {
            "ok"
        };
        let disk = format!(
            "{}/{} {:>3.0}%",
            render::bytes(h.disk_used),
            render::bytes(h.disk_capacity),
            disk_pct
        );
        let text = format!(
            "{} {:<6} {:>7} {:>10} {:>19} {:>3} {state}",
            keep_start(&h.hostname, 14),
            h.host_type,
            format!("{}/{}", h.active_uploads, h.upload_slots),
            rate(h.upload_rate_bytes_per_sec),
            disk,
            if h.high_watermark_percent > 0 {
                h.high_watermark_percent.to_string()
            } else {
                "-".to_owned()
            },
        );
        let style = if i == app.host_cursor {
            theme.selected()
        } else if state == "ok" {
            Style::default()
        } else if state == "disabled" || state == "evicting" {
            theme.warn()
        } else {
            theme.bad()
        };
        out.push(Line::styled(keep_start(&text, width), style));
    }
    frame.render_widget(Paragraph::new(out), area);
}

fn draw_locate(frame: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
    let width = usize::from(area.width);
    let cursor = if app.input == Some(Input::Locate) {
        "█"
    } else {
        ""
    };
    let mut out = vec![
        Line::styled(
            "where is it cached? task id, URL or layer digest:",
            theme.title(),
        ),
        Line::raw(format!("> {}{cursor}", app.locate_query)),
        Line::raw(""),
    ];
    match &app.locate {
        LocateState::Idle => out.push(Line::styled(
            "press Enter to type, Enter again to look up",
            theme.dim(),
        )),
        LocateState::Running(q) => out.push(Line::raw(format!("looking up {q}…"))),
        LocateState::Failed(e) => out.push(Line::styled(e.clone(), theme.bad())),
        LocateState::Found(loc) => {
            out.push(Line::raw(keep_start(
                &format!("task {}", loc.task_id),
                width,
            )));
            out.push(Line::raw(keep_start(&format!("url  {}", loc.url), width)));
            out.push(Line::raw(format!(
                "size {}  pieces {}  peers {}  schedulers {}",
                loc.content_length.map_or("-".to_owned(), render::bytes),
                loc.piece_count.map_or("-".to_owned(), |c| c.to_string()),
                loc.peers.len(),
                loc.schedulers.join(",")
            )));
            out.push(Line::styled(
                keep_start(
                    &format!(
                        "{:<14} {:>6} {:<20} {}",
                        "HOST", "DONE", "COLLECTED", "PATH ON NODE"
                    ),
                    width,
                ),
                theme.title(),
            ));
            let path_w = width.saturating_sub(14 + 1 + 6 + 1 + 20 + 1).max(10);
            for c in &loc.copies {
                let host = c
                    .host_id
                    .split_once('-')
                    .map_or(c.host_id.as_str(), |(_, h)| h);
                let (done, path) = match &c.local {
                    Some(l) => (
                        percent(l.finished_pieces, Some(l.piece_count)),
                        l.content_path.clone(),
                    ),
                    None => ("-".to_owned(), c.error.clone().unwrap_or_default()),
                };
                let style = if c.local.as_ref().is_some_and(|l| l.complete) {
                    theme.good()
                } else if c.local.is_none() {
                    theme.bad()
                } else {
                    Style::default()
                };
                out.push(Line::styled(
                    format!(
                        "{} {done:>6} {} {}",
                        keep_start(host, 14),
                        keep_start(&c.collection(), 20),
                        keep_end(&path, path_w)
                    ),
                    style,
                ));
            }
            if loc.copies.is_empty() {
                out.push(Line::styled("no peer holds a copy", theme.dim()));
            }
        }
    }
    frame.render_widget(Paragraph::new(out), area);
}

fn draw_logs(frame: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
    let logs = app.visible_logs();
    let rows = usize::from(area.height);
    if logs.is_empty() {
        let text = if app.logs_of_task && app.selected_task.is_some() {
            "no log lines for the selected task"
        } else {
            "no log lines yet"
        };
        frame.render_widget(Line::styled(text, theme.dim()), area);
        return;
    }
    let end = logs.len().saturating_sub(app.logs_offset);
    let start = end.saturating_sub(rows);
    let lines: Vec<Line<'_>> = logs[start..end]
        .iter()
        .map(|l| {
            let r = &l.record;
            let time = r.ts.get(11..19).unwrap_or(&r.ts);
            let level_style = match r.level.as_str() {
                "ERROR" => theme.bad(),
                "WARN" => theme.warn(),
                _ => theme.dim(),
            };
            let mut spans = vec![
                Span::styled(format!("{time} "), theme.dim()),
                Span::styled(format!("{:<5} ", r.level), level_style),
                Span::raw(format!("{} ", app.source_name(l))),
                Span::raw(r.message.clone()),
            ];
            if let Some(task) = &r.task_id {
                spans.push(Span::styled(
                    format!(" task={}", &task[..task.len().min(8)]),
                    theme.dim(),
                ));
            }
            Line::from(spans)
        })
        .collect();
    let mut para = Paragraph::new(lines);
    if app.wrap {
        para = para.wrap(Wrap { trim: false });
        // Wrapped lines take more rows: show the newest ones at the bottom.
        let needed: usize = logs[start..end]
            .iter()
            .map(|l| {
                let len = l.record.message.chars().count() + app.source_name(l).len() + 16;
                len.div_ceil(usize::from(area.width.max(1)))
            })
            .sum();
        let scroll = needed.saturating_sub(rows);
        para = para.scroll((u16::try_from(scroll).unwrap_or(u16::MAX), 0));
    }
    frame.render_widget(para, area);
}
