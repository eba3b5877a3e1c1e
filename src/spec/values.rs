//! Durations and percentages as the definition language writes them (`4h30m`, `20%`).

use std::fmt;
use std::time::Duration;

/// The longest duration a definition may write: ten years (humantime's `10y`, 365.25-day
/// years). Anything longer is surely a typo, and the cap keeps every sum of budgets, buffers
/// and timeouts far from overflow (100 000 nodes of 10 years with a 1000% buffer still fit
/// in a `Duration` many times over), and a deadline computed from a timeout representable.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 31_557_600);

/// Parses `4h30m`, `90s`, `500ms`, `1h 15m`.
///
/// # Errors
/// The reason, phrased for a person, when the text is not a duration or is longer than
/// [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err("a duration cannot be negative".into());
    }
    let too_long = || "it is longer than 10 years, the longest duration milepost accepts".to_string();
    match humantime::parse_duration(trimmed) {
        Ok(d) if d > MAX_DURATION => Err(too_long()),
        Ok(d) => Ok(d),
        // humantime says NumberOverflow when a part or the sum overflows, and also for
        // fractions finer than a nanosecond; only the first is possible without a `.`.
        Err(humantime::DurationError::NumberOverflow) if !trimmed.contains('.') => Err(too_long()),
        Err(e) => Err(e.to_string()),
    }
}

/// A duration the way the definition language writes it: `4h30m`, `1m30s`, `0s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span(pub Duration);

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        format_duration(self.0, f)
    }
}

/// Hours and minutes for long spans, seconds below a minute, milliseconds below a second.
/// Rounded to the nearest unit shown, never truncated: 1803ms is `2s`, 9.96s is `10s`,
/// 999.6ms is `1s`. Every duration milepost shows a person goes through here.
pub fn format_duration(d: Duration, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let nanos = d.as_nanos();
    let total_ms = (nanos + 500_000) / 1_000_000;
    if total_ms == 0 {
        return f.pad("0s");
    }
    if total_ms < 1000 {
        return f.pad(&format!("{total_ms}ms"));
    }
    // Hours are not folded into days: rollout plans speak of "28h36m", not "1d04h36m".
    let secs = (nanos + 500_000_000) / 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 || (h > 0 && s > 0) {
        out.push_str(&format!("{m:0width$}m", width = if h > 0 { 2 } else { 1 }));
    }
    if s > 0 {
        let width = if h > 0 || m > 0 { 2 } else { 1 };
        out.push_str(&format!("{s:0width$}s"));
    }
    f.pad(&out)
}

/// Formats a duration for a person: `5h24m`, `30m`, `1m30s`.
pub fn human(d: Duration) -> String {
    Span(d).to_string()
}

/// A share written as `20%`, kept as a fraction.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Percent(pub f64);

impl Percent {
    /// `d` grown by this share, rounded to the second.
    pub fn grow(self, d: Duration) -> Duration {
        let secs = (d.as_secs_f64() * (1.0 + self.0)).round();
        Duration::from_secs(secs as u64)
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = self.0 * 100.0;
        if (pct - pct.round()).abs() < 1e-9 {
            write!(f, "{}%", pct.round() as i64)
        } else {
            write!(f, "{pct:.1}%")
        }
    }
}

/// Parses `20%` or `12.5%`.
///
/// # Errors
/// The reason, phrased for a person.
pub fn parse_percent(text: &str) -> Result<Percent, String> {
    let Some(number) = text.trim().strip_suffix('%') else {
        return Err("a percentage ends with `%`".into());
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("`{number}` is not a number"))?;
    if !value.is_finite() || value < 0.0 {
        return Err("a percentage cannot be negative".into());
    }
    if value > 1000.0 {
        return Err("a percentage above 1000% is surely a typo".into());
    }
    Ok(Percent(value / 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_written_in_plans() {
        let table = [("4h30m", 16_200), ("90s", 90), ("30m", 1800), ("1h 15m", 4500), ("2d", 172_800)];
        for (text, secs) in table {
            assert_eq!(parse_duration(text), Ok(Duration::from_secs(secs)), "{text}");
        }
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn bad_durations_say_why() {
        assert!(parse_duration("4x").unwrap_err().contains("unknown time unit"));
        assert!(parse_duration("-1h").unwrap_err().contains("negative"));
        assert!(parse_duration("").is_err());
    }

    /// Issue 12 item 13: `18446744073709551615s` overflowed a sum of budgets (a panic) and
    /// `1000000y` made `plan` take 10 s. Both are now rejected where they are written.
    #[test]
    fn issue_12_huge_durations_are_rejected() {
        for text in [
            "18446744073709551615s",
            "1000000y",
            "10y 1s",
            "3653d",
            "99999999999999999999999h",
            "1y 1y 1y 1y 1y 1y 1y 1y 1y 1y 1y",
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains("longer than 10 years"), "{text}: {err}");
        }
        assert_eq!(parse_duration("10y"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("520w"), Ok(Duration::from_secs(520 * 7 * 86_400)));
    }

    #[test]
    fn durations_print_compactly() {
        let table = [
            (0, "0s"),
            (45, "45s"),
            (90, "1m30s"),
            (1800, "30m"),
            (16_200, "4h30m"),
            (19_440, "5h24m"),
            (3600, "1h"),
            (3605, "1h00m05s"),
            (75_960, "21h06m"),
            (108_360, "30h06m"),
        ];
        for (secs, text) in table {
            assert_eq!(human(Duration::from_secs(secs)), text, "{secs}");
        }
        assert_eq!(human(Duration::from_millis(250)), "250ms");
    }

    /// Issue 15 item 6: durations round, they are not cut (`1803ms` was `1s`, `9.96s` was `9s`).
    #[test]
    fn durations_round_to_the_unit_shown() {
        let table = [
            (1_803, "2s"),
            (9_960, "10s"),
            (1_499, "1s"),
            (1_500, "2s"),
            (59_600, "1m"),
            (89_500, "1m30s"),
            (999_600_000, "1s"),
            (450_400_000, "450ms"),
            (400_000, "0s"),
        ];
        for (i, (amount, text)) in table.into_iter().enumerate() {
            // The first six are milliseconds, the rest nanoseconds.
            let d = if i < 6 { Duration::from_millis(amount) } else { Duration::from_nanos(amount) };
            assert_eq!(human(d), text, "{d:?}");
        }
    }

    #[test]
    fn percentages_grow_budgets() {
        let buffer = parse_percent("20%").unwrap();
        assert_eq!(buffer.grow(Duration::from_secs(16_200)), Duration::from_secs(19_440));
        assert_eq!(buffer.to_string(), "20%");
        assert_eq!(parse_percent("12.5%").unwrap().to_string(), "12.5%");
        assert!(parse_percent("20").unwrap_err().contains("ends with"));
        assert!(parse_percent("-5%").unwrap_err().contains("negative"));
        assert!(parse_percent("x%").unwrap_err().contains("not a number"));
    }
}
