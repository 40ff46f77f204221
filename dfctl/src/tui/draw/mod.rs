//! Drawing `dfctl top`: a header with the schedulers' links, a tab bar, the current pane and a
//! key-hint footer (or the text being typed). Everything is drawn from [`App`] alone; each
//! pane is a module of its own, the frame around them is [`chrome`].
//!
//! Invariants:
//! - Only what fits on screen is built (rows are windowed around the cursor), so a frame costs
//!   the same with 1000 tasks as with 20.
//! - Colours only mark meaning that the text also says (state words, `✗`), and with
//!   `NO_COLOR` no colour is emitted at all; selection uses reverse video, which is not colour.
//! - At 80x24 every pane shows its key columns.

mod chrome;
mod dag;
mod fit;
mod help;
mod hosts;
mod locate;
mod logs;
mod pieces;
mod tasks;
mod theme;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;

pub use pieces::piece_bar;
use theme::Theme;

use crate::tui::app::{App, Pane};

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
    chrome::draw_header(frame, header, app, theme);
    if down > 0 {
        chrome::draw_warning(frame, warning, &app.view, theme);
    }
    chrome::draw_tabs(frame, tabs, app, theme);
    match app.pane {
        Pane::Tasks => tasks::draw_tasks(frame, body, app, theme),
        Pane::Dag => dag::draw_dag(frame, body, app, theme),
        Pane::Pieces => pieces::draw_pieces(frame, body, app, theme),
        Pane::Hosts => hosts::draw_hosts(frame, body, app, theme),
        Pane::Locate => locate::draw_locate(frame, body, app, theme),
        Pane::Logs => logs::draw_logs(frame, body, app, theme),
    }
    chrome::draw_footer(frame, footer, app, theme);
    if app.help {
        help::draw_help(frame, body, theme);
    }
}

/// What the DAG and Pieces panes show before the selected task's detail arrived, or when
/// there is no task to select.
fn no_task(frame: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
    let text = match &app.selected_task {
        None => "no task to show: the Tasks pane (1) lists none",
        Some(_) => "waiting for the task's detail from the schedulers…",
    };
    frame.render_widget(Line::styled(text, theme.dim()), area);
}
