//! The DAG pane: who fed whom in the selected task, one row per node (the origin and the seeds
//! on top), with what each received and sent and whom from and to; under the rows, the node
//! at the cursor's links with bytes in each direction.
//!
//! An aggregated view rather than a tree drawing: a mesh of 64 peers, where pairs feed each
//! other both ways, stays one row per peer and fits 80x24 (rows scroll around the cursor).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::fit::{keep_start, percent, window};
use super::theme::Theme;
use crate::location::flow::{FlowLink, FlowNode, Flows};
use crate::render;
use crate::tui::app::App;
use crate::tui::model::TaskView;

/// NODE, STATE, DONE, GOT and SENT with their separators; FED BY and FED TO share the rest.
const FIXED: usize = 14 + 1 + 9 + 1 + 4 + 1 + 9 + 1 + 9 + 1;
/// Rows of the panel about the node at the cursor (a rule and its links), when there is room.
const DETAIL_ROWS: usize = 5;
/// Width of one link in that panel: `name ↓got ↑sent` plus a gap.
const LINK_CELL: usize = 12 + 1 + 1 + 9 + 2 + 9 + 2;

pub(super) fn draw_dag(frame: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
    let Some(task) = app.selected_detail() else {
        return super::no_task(frame, area, app, theme);
    };
    let flows = &task.flows;
    let width = usize::from(area.width);
    let height = usize::from(area.height);
    let mut out = summary_lines(task, width, theme);
    let order = app.dag_order();
    let detail = if height >= 12 { DETAIL_ROWS } else { 0 };
    let rows = height.saturating_sub(out.len() + detail);
    let first = window(app.dag_cursor, rows);
    for (pos, &n) in order.iter().enumerate().skip(first).take(rows) {
        let line = node_line(&flows.nodes[n], task.piece_count, width, theme);
        out.push(if pos == app.dag_cursor {
            line.style(theme.selected())
        } else {
            line
        });
    }
    if detail > 0
        && let Some(node) = order.get(app.dag_cursor).map(|&n| &flows.nodes[n])
    {
        out.resize(height - detail, Line::raw(""));
        out.extend(link_lines(node, width, detail, theme));
    }
    frame.render_widget(Paragraph::new(out), area);
}

/// The task, the byte totals and depth, and the column headings.
fn summary_lines(task: &TaskView, width: usize, theme: Theme) -> Vec<Line<'static>> {
    let flows: &Flows = &task.flows;
    let title = format!(
        "{}  {} peers  {} pieces  {}",
        &task.task_id[..task.task_id.len().min(8)],
        task.peers.len(),
        task.piece_count.map_or("?".to_owned(), |c| c.to_string()),
        task.url
    );
    let moved = flows.from_origin + flows.between_peers;
    let p2p = if moved == 0 {
        0.0
    } else {
        flows.between_peers as f64 * 100.0 / moved as f64
    };
    let bytes = format!(
        "bytes from the origin {}, between peers {} (P2P {p2p:.0}%), depth {}",
        render::bytes(flows.from_origin),
        render::bytes(flows.between_peers),
        flows.depth
    );
    let (by_w, _) = fed_widths(width);
    let header = format!(
        "{:<14} {:<9} {:>4} {:>9} {:>9} {:<by_w$} {}",
        "NODE", "STATE", "DONE", "GOT", "SENT", "FED BY", "FED TO"
    );
    vec![
        Line::styled(keep_start(&title, width), theme.title()),
        Line::styled(keep_start(&bytes, width), theme.dim()),
        Line::styled(keep_start(&header, width), theme.title()),
    ]
}

/// Widths of the FED BY and FED TO columns.
fn fed_widths(width: usize) -> (usize, usize) {
    let rest = width.saturating_sub(FIXED).max(12);
    let by = rest / 2;
    (by, rest - by - 1)
}

fn node_line(node: &FlowNode, pieces: Option<u32>, width: usize, theme: Theme) -> Line<'static> {
    let (by_w, to_w) = fed_widths(width);
    let is_origin = node.peer_id.is_none();
    let name = if node.is_seed {
        format!("{} [seed]", node.name)
    } else {
        node.name.clone()
    };
    let done = if is_origin {
        String::new()
    } else {
        percent(node.finished_pieces, pieces)
    };
    let bytes = |n: u64| {
        if n == 0 {
            "-".to_owned()
        } else {
            render::bytes(n)
        }
    };
    let state_style = match node.state.as_str() {
        "succeeded" => theme.good(),
        "failed" | "left" | "gone" => theme.bad(),
        _ => Style::default(),
    };
    let blocked = node.links.iter().filter(|l| l.blocklisted).count();
    let mark = if blocked > 0 {
        format!("✗{blocked} ")
    } else {
        String::new()
    };
    let by_names: Vec<&str> = node.fed_by().map(|l| l.name.as_str()).collect();
    let to_names: Vec<&str> = node.fed_to().map(|l| l.name.as_str()).collect();
    let by = names_fit(&by_names, by_w.saturating_sub(mark.chars().count()));
    let spans = vec![
        Span::styled(
            format!("{} ", keep_start(&name, 14)),
            if node.is_seed || is_origin {
                theme.title()
            } else {
                Style::default()
            },
        ),
        Span::styled(format!("{:<9} {done:>4} ", node.state), state_style),
        Span::raw(format!(
            "{:>9} {:>9} ",
            bytes(node.received),
            bytes(node.sent)
        )),
        Span::styled(mark.clone(), theme.bad()),
        Span::raw(format!(
            "{} {}",
            keep_start(&by, by_w.saturating_sub(mark.chars().count())),
            names_fit(&to_names, to_w)
        )),
    ];
    Line::from(spans)
}

/// As many of `names` as fit in `width`, comma-separated, then ` +N` for the rest; `-` for
/// none.
pub(super) fn names_fit(names: &[&str], width: usize) -> String {
    if names.is_empty() {
        return "-".to_owned();
    }
    let mut shown = String::new();
    let mut count = 0;
    for (i, name) in names.iter().enumerate() {
        let left = names.len() - i - 1;
        let suffix = if left > 0 {
            format!(" +{left}").len()
        } else {
            0
        };
        let sep = usize::from(i > 0);
        if shown.chars().count() + sep + name.chars().count() + suffix > width {
            break;
        }
        if i > 0 {
            shown.push(',');
        }
        shown.push_str(name);
        count += 1;
    }
    let left = names.len() - count;
    match (count, left) {
        (_, 0) => shown,
        (0, n) => format!("+{n}"),
        (_, n) => format!("{shown} +{n}"),
    }
}

/// The panel about one node: a rule with its totals, then its links, most bytes first, each
/// with what it got from the other (`↓`) and sent it (`↑`).
fn link_lines(node: &FlowNode, width: usize, rows: usize, theme: Theme) -> Vec<Line<'static>> {
    let fed_by = node.fed_by().count();
    let fed_to = node.fed_to().count();
    let rule = format!(
        "── {}: got {} from {fed_by}, sent {} to {fed_to}  (↓ got from ↑ sent to) ",
        node.name,
        render::bytes(node.received),
        render::bytes(node.sent)
    );
    let mut out = vec![Line::styled(
        format!("{rule:─<width$}")
            .chars()
            .take(width)
            .collect::<String>(),
        theme.dim(),
    )];
    let per_line = (width / LINK_CELL).max(1);
    let capacity = per_line * rows.saturating_sub(1);
    let links: Vec<&FlowLink> = node.links.iter().collect();
    let (shown, more) = if links.len() > capacity {
        (capacity.saturating_sub(1), links.len() + 1 - capacity)
    } else {
        (links.len(), 0)
    };
    let mut cells: Vec<Span<'static>> =
        links[..shown].iter().map(|l| link_cell(l, theme)).collect();
    if more > 0 {
        cells.push(Span::styled(format!("+{more} more"), theme.dim()));
    }
    if cells.is_empty() {
        cells.push(Span::styled("no bytes moved yet", theme.dim()));
    }
    for chunk in cells.chunks(per_line) {
        out.push(Line::from(chunk.to_vec()));
    }
    out
}

fn link_cell(link: &FlowLink, theme: Theme) -> Span<'static> {
    let dir = |n: u64| {
        if n == 0 {
            "-".to_owned()
        } else {
            render::bytes(n)
        }
    };
    let text = format!(
        "{}{}↓{:>9} ↑{:>9}  ",
        keep_start(&link.name, 12),
        if link.blocklisted { "✗" } else { " " },
        dir(link.received),
        dir(link.sent)
    );
    if link.blocklisted {
        Span::styled(text, theme.bad())
    } else {
        Span::raw(text)
    }
}
