//! Terminal presentation: colours, widths, tables. Colour is a rendering parameter, so
//! every renderer can be tested without it.

pub mod progress;
pub mod style;

pub use style::{terminal_width, Palette};

/// `eprintln!` that ignores a stderr that is closed (`2>&1 | head -1`) or full
/// (`2>/dev/full`): what milepost says there is for people, and a run that has done its work
/// must not end in a panic because nobody reads it.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::ui::write_err(format_args!($($arg)*))
    };
}
pub(crate) use errln;

/// One line to stderr; write errors are ignored (see [`errln!`]).
pub fn write_err(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}
