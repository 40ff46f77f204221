//! The DAG pane: the selected task's peers as a tree under the parent that gave each most
//! bytes, with bytes and rate per edge, other parents and blocklisted ones.

use std::collections::{HashMap, HashSet};

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::fit::{keep_start, percent, rate, window};
use super::theme::Theme;
use crate::render;
use crate::tui::app::App;
use crate::tui::model::{TaskView, natural_key};

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

pub(super) fn draw_dag(frame: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
    let Some(task) = &app.view.task else {
        return super::no_task(frame, area, app, theme);
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
