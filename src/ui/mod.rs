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

/// The UTC clock time `window` after `now`: `04:12 UTC`, with the date when it is not
/// `now`'s day (`2026-12-02 04:12 UTC`). What a `--deadline` given as a duration means on
/// the clock.
pub fn utc_clock_after(now: jiff::Timestamp, window: std::time::Duration) -> String {
    let end = jiff::SignedDuration::try_from(window).ok().and_then(|w| now.checked_add(w).ok());
    let Some(end) = end else { return "beyond the calendar".into() };
    let same_day = end.strftime("%Y-%m-%d").to_string() == now.strftime("%Y-%m-%d").to_string();
    let format = if same_day { "%H:%M UTC" } else { "%Y-%m-%d %H:%M UTC" };
    end.strftime(format).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_after_a_window_shows_the_date_only_on_another_day() {
        let now: jiff::Timestamp = "2026-11-29T22:12:30Z".parse().unwrap();
        let h = |n: u64| std::time::Duration::from_secs(n * 3600);
        assert_eq!(utc_clock_after(now, h(1)), "23:12 UTC");
        assert_eq!(utc_clock_after(now, h(6)), "2026-11-30 04:12 UTC");
        assert_eq!(utc_clock_after(now, std::time::Duration::MAX), "beyond the calendar");
    }
}
