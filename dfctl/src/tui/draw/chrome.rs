//! The frame around the panes: the header with the schedulers' links, the warning line of a
//! disconnected scheduler, the tab bar, and the footer with key hints or the text being typed.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

use super::theme::Theme;
use crate::tui::app::{App, Input, Pane};
use crate::tui::model::TopView;

pub(super) fn draw_header(frame: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
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

pub(super) fn draw_warning(frame: &mut Frame<'_>, area: Rect, view: &TopView, theme: Theme) {
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

pub(super) fn draw_tabs(frame: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
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

pub(super) fn draw_footer(frame: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
    let line = match app.input {
        Some(Input::Filter) => Line::from(vec![
            Span::styled("/", theme.warn()),
            Span::raw(format!("{}█", app.filter_draft)),
            Span::styled("  Enter apply  Esc cancel", theme.dim()),
        ]),
        Some(Input::Locate) => Line::styled(
            "type a task id, URL or layer digest  Enter look up  Esc/Tab leave",
            theme.dim(),
        ),
        None => {
            let extra = match app.pane {
                Pane::Tasks => format!("  Enter open  s sort:{}", app.sort.label()),
                Pane::Logs => format!(
                    "  f {}  w wrap{}  t task{}",
                    if app.follow { "pause" } else { "follow" },
                    if app.wrap { ":on" } else { "" },
                    if app.logs_of_task { ":on" } else { "" }
                ),
                Pane::Dag => format!("  Enter feeder  s sort:{}", app.dag_sort.label()),
                Pane::Hosts => "  Enter logs".to_owned(),
                Pane::Locate => "  Enter type".to_owned(),
                Pane::Pieces => String::new(),
            };
            Line::styled(
                format!("? help  q quit  Tab/1-6 panes  / filter{extra}"),
                theme.dim(),
            )
        }
    };
    frame.render_widget(line, area);
}
