//! The Locate pane: the query being typed, then which peers hold the task, how complete, the
//! file on each node and when its GC collects it.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::Paragraph;

use super::fit::{keep_end, keep_start, percent};
use super::theme::Theme;
use crate::location::host_name;
use crate::render;
use crate::tui::app::{App, Input, LocateState};

pub(super) fn draw_locate(frame: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
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
                let host = host_name(&c.host_id);
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
