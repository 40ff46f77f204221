//! The Logs pane: the followed daemons' log lines, newest at the bottom, named by daemon;
//! paused, wrapped or limited to the selected task on request.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::theme::Theme;
use crate::tui::app::App;

pub(super) fn draw_logs(frame: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
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
