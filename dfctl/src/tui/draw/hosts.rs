//! The Hosts pane: uploads against slots, upload rate, disk against the high watermark, and
//! the host's state (ok, reconnected lately, disabled, evicting, gone).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::Paragraph;

use super::fit::{keep_start, rate, window};
use super::theme::Theme;
use crate::render;
use crate::tui::app::App;

pub(super) fn draw_hosts(frame: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
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
        let state = if over && h.connected && !h.disabled {
            "evicting".to_owned()
        } else {
            render::host_state(h.connected, h.disabled, h.last_reconnect_secs_ago)
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
        } else {
            match state.as_str() {
                "gone" => theme.bad(),
                "disabled" | "evicting" => theme.warn(),
                _ => Style::default(),
            }
        };
        out.push(Line::styled(keep_start(&text, width), style));
    }
    frame.render_widget(Paragraph::new(out), area);
}
