//! Colour decisions and painting.

use std::io::IsTerminal;

use anstyle::{AnsiColor, Effects, Style};

/// Whether to colour, decided once per command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Palette {
    pub color: bool,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour on a terminal, unless NO_COLOR or CI is set.
    #[default]
    Auto,
    Always,
    Never,
}

impl Palette {
    pub const PLAIN: Palette = Palette { color: false };

    /// Colour on a terminal; plain when piped, in CI, or with `NO_COLOR`.
    pub fn detect(choice: ColorChoice, stream: &impl IsTerminal) -> Self {
        let color = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
                let ci = std::env::var_os("CI").is_some();
                let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
                stream.is_terminal() && !no_color && !ci && !dumb
            }
        };
        Self { color }
    }

    pub fn paint(&self, style: Style, text: &str) -> String {
        if self.color && !text.is_empty() {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text.to_string()
        }
    }

    pub fn bold(&self, text: &str) -> String {
        self.paint(Style::new().effects(Effects::BOLD), text)
    }

    pub fn dim(&self, text: &str) -> String {
        self.paint(Style::new().effects(Effects::DIMMED), text)
    }

    pub fn green(&self, text: &str) -> String {
        self.paint(AnsiColor::Green.on_default(), text)
    }

    pub fn red(&self, text: &str) -> String {
        self.paint(AnsiColor::Red.on_default().effects(Effects::BOLD), text)
    }

    pub fn yellow(&self, text: &str) -> String {
        self.paint(AnsiColor::Yellow.on_default(), text)
    }

    pub fn cyan(&self, text: &str) -> String {
        self.paint(AnsiColor::Cyan.on_default(), text)
    }

    pub fn magenta(&self, text: &str) -> String {
        self.paint(AnsiColor::Magenta.on_default(), text)
    }
}

/// Columns of the terminal on stdout; `COLUMNS`, then 100 when there is none.
pub fn terminal_width() -> usize {
    if let Some((terminal_size::Width(w), _)) = terminal_size::terminal_size() {
        return usize::from(w).max(40);
    }
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).unwrap_or(100).max(40)
}

/// Width of text as a terminal shows it (one column per char; our glyphs are all narrow).
pub fn width(text: &str) -> usize {
    text.chars().count()
}

/// `text` padded with spaces to `cols` columns.
pub fn pad(text: &str, cols: usize) -> String {
    let w = width(text);
    if w >= cols {
        text.to_string()
    } else {
        format!("{text}{}", " ".repeat(cols - w))
    }
}

/// `text` right-aligned in `cols` columns.
pub fn pad_left(text: &str, cols: usize) -> String {
    let w = width(text);
    if w >= cols {
        text.to_string()
    } else {
        format!("{}{text}", " ".repeat(cols - w))
    }
}

/// `text` cut to `cols` columns, ending in `…` when cut.
pub fn truncate(text: &str, cols: usize) -> String {
    if width(text) <= cols {
        return text.to_string();
    }
    let mut out: String = text.chars().take(cols.saturating_sub(1)).collect();
    out.push('…');
    out
}
