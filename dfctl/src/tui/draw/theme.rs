//! The styles of `dfctl top`: colour only where the text also says it, none under `NO_COLOR`;
//! selection is reverse video, which is not colour.

use ratatui::style::{Color, Modifier, Style};

/// Styles, or none of them under `NO_COLOR`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Theme {
    pub(super) color: bool,
}

impl Theme {
    pub(super) fn fg(self, c: Color) -> Style {
        if self.color {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    }
    pub(super) fn good(self) -> Style {
        self.fg(Color::Green)
    }
    pub(super) fn bad(self) -> Style {
        self.fg(Color::Red)
    }
    pub(super) fn warn(self) -> Style {
        self.fg(Color::Yellow)
    }
    pub(super) fn dim(self) -> Style {
        self.fg(Color::DarkGray)
    }
    pub(super) fn title(self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }
    pub(super) fn selected(self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }
}
