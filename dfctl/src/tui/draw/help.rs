//! The `?` overlay: every key binding, over the current pane.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use super::theme::Theme;

pub(super) fn draw_help(frame: &mut Frame<'_>, body: Rect, theme: Theme) {
    let lines = [
        "?          this help (Esc closes)",
        "q, Ctrl-C  quit",
        "Tab, 1-6   Tasks DAG Pieces Hosts Locate Logs",
        "j/k, ↑/↓   move; PgUp/PgDn, g/G page, top, end",
        "Enter      task: open its DAG; DAG: go to the",
        "           node's top feeder; host: its logs",
        "           Locate: type a task id, URL, digest",
        "/          filter the list (Esc clears)",
        "s          Tasks: sort newest/size/peers/",
        "           progress/rate; DAG: hops/sent",
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
