//! The Pieces pane: every peer's piece bitmap of the selected task, one row per peer.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::Paragraph;

use super::fit::{keep_start, percent, window};
use super::theme::Theme;
use crate::tui::app::App;

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

pub(super) fn draw_pieces(frame: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
    let Some(task) = app.selected_detail() else {
        return super::no_task(frame, area, app, theme);
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
