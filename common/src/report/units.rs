//! How reports write numbers: seconds and percentages rounded as every report shows them,
//! and dollars.

pub(crate) fn secs(ms: u64) -> f64 {
    (ms as f64 / 1000.0 * 1000.0).round() / 1000.0
}

pub(crate) fn pct(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        (part as f64 * 1000.0 / total as f64).round() / 10.0
    }
}

/// Dollars as reports show them: `$0.0450` below a dollar, `$12.30` above.
pub(crate) use crate::model::format_dollars as usd;
