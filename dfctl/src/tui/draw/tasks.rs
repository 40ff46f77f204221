//! The Tasks pane: one row per task (size, peers done/running/failed, progress, rate, share
//! from peers, URL), windowed around the cursor.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::Paragraph;

use super::fit::{keep_end, keep_start, rate, window};
use super::theme::Theme;
use crate::render;
use crate::tui::app::App;

pub(super) fn draw_tasks(frame: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
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
