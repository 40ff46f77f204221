//! Fitting values into terminal cells: windows of rows around a cursor, text cut to a width,
//! rates and percentages as the panes print them.

use crate::render;

/// The first row to show so that `cursor` is on screen in `height` rows.
pub(super) fn window(cursor: usize, height: usize) -> usize {
    if height == 0 {
        0
    } else {
        cursor.saturating_sub(height - 1)
    }
}

/// `s` cut to `width` characters, keeping the end (URLs differ at the end).
pub(super) fn keep_end(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return format!("{s:<width$}");
    }
    if width == 0 {
        return String::new();
    }
    let tail: String = s.chars().skip(n - width + 1).collect();
    format!("…{tail}")
}

/// `s` cut to `width` characters, keeping the start.
pub(super) fn keep_start(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return format!("{s:<width$}");
    }
    if width == 0 {
        return String::new();
    }
    let head: String = s.chars().take(width - 1).collect();
    format!("{head}…")
}

pub(super) fn rate(bytes_per_sec: f64) -> String {
    if bytes_per_sec < 1.0 {
        "-".to_owned()
    } else {
        format!("{}/s", render::bytes(bytes_per_sec as u64))
    }
}

pub(super) fn percent(have: u32, of: Option<u32>) -> String {
    match of {
        Some(0) => "100%".to_owned(),
        Some(total) => format!("{:.0}%", f64::from(have) * 100.0 / f64::from(total)),
        None => "-".to_owned(),
    }
}
