//! Output for people and for scripts: aligned plain-text tables, JSON, and the human units
//! (bytes, rates, durations) that tables use.
//!
//! Invariants: JSON output is one document on stdout and never contains styling; tables are
//! styled only when stdout is a terminal and `NO_COLOR` is unset or empty (no-color.org).

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

/// How a data-printing command prints its result (`-o`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON document for scripts.
    Json,
}

/// Whether to emit ANSI styling on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Palette {
    enabled: bool,
}

impl Palette {
    /// Styling for stdout: on only for a terminal, and never with `NO_COLOR` set.
    pub fn stdout() -> Self {
        Self::detect(std::io::stdout().is_terminal())
    }

    /// Styling for stderr, same rules as [`Palette::stdout`].
    pub fn stderr() -> Self {
        Self::detect(std::io::stderr().is_terminal())
    }

    fn detect(is_terminal: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            enabled: is_terminal && !no_color,
        }
    }

    pub fn plain() -> Self {
        Self { enabled: false }
    }

    pub fn bold(self, s: &str) -> String {
        self.wrap("1", s)
    }

    pub fn red(self, s: &str) -> String {
        self.wrap("31", s)
    }

    pub fn green(self, s: &str) -> String {
        self.wrap("32", s)
    }

    pub fn yellow(self, s: &str) -> String {
        self.wrap("33", s)
    }

    fn wrap(self, code: &str, s: &str) -> String {
        if self.enabled {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
}

/// A cell: its text, and the styled form printed in its place (same visible width).
#[derive(Debug, Clone)]
pub struct Cell {
    text: String,
    styled: Option<String>,
}

impl Cell {
    pub fn styled(text: impl Into<String>, style: impl FnOnce(&str) -> String) -> Self {
        let text = text.into();
        let styled = style(&text);
        Self {
            text,
            styled: Some(styled),
        }
    }
}

impl<T: Into<String>> From<T> for Cell {
    fn from(text: T) -> Self {
        Self {
            text: text.into(),
            styled: None,
        }
    }
}

/// Rows under upper-case headers, columns separated by two spaces, left-aligned.
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new<I, S>(headers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row<I, C>(&mut self, cells: I)
    where
        I: IntoIterator<Item = C>,
        C: Into<Cell>,
    {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, each ending in `\n`; trailing spaces trimmed.
    pub fn render(&self, palette: Palette) -> String {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain(std::iter::once(self.headers.len()))
            .max()
            .unwrap_or(0);
        let mut widths = vec![0; columns];
        for (i, h) in self.headers.iter().enumerate() {
            widths[i] = h.chars().count();
        }
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.text.chars().count());
            }
        }
        let mut out = String::new();
        let header_cells: Vec<Cell> = self
            .headers
            .iter()
            .map(|h| Cell::styled(h.clone(), |t| palette.bold(t)))
            .collect();
        for row in std::iter::once(&header_cells).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let shown = cell.styled.as_deref().unwrap_or(&cell.text);
                line.push_str(shown);
                if i + 1 < row.len() {
                    let pad = widths[i] - cell.text.chars().count();
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table on stdout with stdout's palette.
    pub fn print(&self) -> anyhow::Result<()> {
        write_stdout(&self.render(Palette::stdout()))
    }
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut text =
        serde_json::to_string_pretty(value).context("cannot encode the output as JSON")?;
    text.push('\n');
    write_stdout(&text)
}

/// Writes to stdout in one go; a closed pipe (`dfctl ... | head`) surfaces as an io error that
/// `main` turns into a quiet exit.
pub fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `10.0 MiB`.
/// A host's state in the tables: `gone`, `disabled`, `reconn Ns` (reconnected N s ago; for the first
/// `RECENT` seconds after a reconnect, so a restart shows up where the operator looks) or `ok`.
pub fn host_state(connected: bool, disabled: bool, last_reconnect_secs_ago: Option<u64>) -> String {
    const RECENT: u64 = 120;
    match (connected, disabled, last_reconnect_secs_ago) {
        (false, _, _) => "gone".into(),
        (true, true, _) => "disabled".into(),
        (true, false, Some(s)) if s < RECENT => format!("reconn {s}s"),
        _ => "ok".into(),
    }
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A transfer rate: `bytes(n / secs)/s`; `-` when no time passed.
pub fn rate(n: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return "-".to_owned();
    }
    format!("{}/s", bytes((n as f64 / secs) as u64))
}

/// A duration for people: `350ms`, `4.2s`, `3m05s`, `2h03m`, `3d04h`.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        // Whole-second values (uptimes, ages) of zero read better as 0s than as 0ms.
        0 if d.subsec_nanos() == 0 => "0s".to_owned(),
        0 => format!("{}ms", d.as_millis()),
        1..60 => format!("{:.1}s", d.as_secs_f64()),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
        _ => format!("{}d{:02}h", secs / 86400, (secs % 86400) / 3600),
    }
}

/// Sort key that orders `peer-2` before `peer-10`.
pub fn natural_key(s: &str) -> (&str, u64) {
    let digits = s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (head, num) = s.split_at(s.len() - digits);
    (head, num.parse().unwrap_or(0))
}

/// `-` for absent values in tables.
pub fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recent_reconnect_shows_in_the_host_state_for_two_minutes() {
        assert_eq!(host_state(true, false, Some(3)), "reconn 3s");
        assert_eq!(host_state(true, false, Some(600)), "ok");
        assert_eq!(host_state(true, false, None), "ok");
        assert_eq!(host_state(true, true, Some(3)), "disabled");
        assert_eq!(host_state(false, false, Some(3)), "gone");
    }

    #[test]
    fn tables_align_columns_and_trim_trailing_space() {
        let mut t = Table::new(["name", "addr", "ok"]);
        t.row(["scheduler-0", "127.0.0.1:8080", "yes"]);
        t.row(["p", "x", ""]);
        assert_eq!(
            t.render(Palette::plain()),
            "name         addr            ok\n\
             scheduler-0  127.0.0.1:8080  yes\n\
             p            x\n"
        );
    }

    #[test]
    fn styled_cells_keep_alignment() {
        let palette = Palette { enabled: true };
        let mut t = Table::new(["a", "b"]);
        t.row([Cell::styled("no", |s| palette.red(s)), "x".into()]);
        let text = t.render(palette);
        let row = text.lines().nth(1).expect("one row");
        assert_eq!(row, "\x1b[31mno\x1b[0m  x");
    }

    #[test]
    fn units_read_naturally() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(10 << 20), "10.0 MiB");
        assert_eq!(rate(10 << 20, Duration::from_secs(2)), "5.0 MiB/s");
        assert_eq!(rate(1, Duration::ZERO), "-");
        assert_eq!(duration(Duration::from_millis(350)), "350ms");
        assert_eq!(duration(Duration::ZERO), "0s");
        assert_eq!(duration(Duration::from_millis(4200)), "4.2s");
        assert_eq!(duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(duration(Duration::from_secs(7380)), "2h03m");
        assert_eq!(duration(Duration::from_secs(3 * 86400 + 4 * 3600)), "3d04h");
        assert_eq!(or_dash(None::<u64>), "-");
    }
}
