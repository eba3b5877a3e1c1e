//! Reports: what a rollout did, measured against its plan, as HTML, JUnit XML, JSON or
//! Markdown. [`model::build`] folds the journals once; each format only renders.

pub mod facts;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod model;

pub use model::{build, Report, ReportError};

use std::time::Duration;

use crate::spec::values::human;

/// Seconds kept to the millisecond the journals record, so sums and differences do not
/// carry float noise (`1.2610000000000001`) into JSON.
pub fn to_ms(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

/// Seconds as a person reads them: `0s`, `0.42s`, `3.4s`, `30s`, `4h30m`.
pub fn seconds(secs: f64) -> String {
    if secs == 0.0 {
        "0s".into()
    } else if secs < 1.0 {
        format!("{secs:.2}s")
    } else if secs < 10.0 {
        format!("{secs:.1}s")
    } else if secs < 60.0 {
        format!("{secs:.0}s")
    } else {
        human(Duration::from_secs_f64(secs.round()))
    }
}
