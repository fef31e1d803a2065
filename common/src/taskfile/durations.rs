//! Task timeouts: their bounds and how a `timeout:` value reads (seconds or a humantime
//! duration). Shared by the validators (`validate`, `limits`, `lenient`) without their
//! importing each other or the module that wires them.

use std::time::Duration;

use super::raw::RawTimeout;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(crate::model::DEFAULT_TIMEOUT_MS);
pub const MIN_TIMEOUT: Duration = Duration::from_secs(1);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

pub(super) fn duration_of(t: &RawTimeout) -> Result<Duration, String> {
    match t {
        RawTimeout::Int(n) if *n >= 0 => Ok(Duration::from_secs(*n as u64)),
        RawTimeout::Int(n) => Err(format!("timeout {n} is negative; use seconds (300) or a duration (\"5m\")")),
        RawTimeout::Float(f) if f.is_finite() && *f >= 0.0 && *f < 1e9 => Ok(Duration::from_secs_f64(*f)),
        RawTimeout::Float(f) => Err(format!("timeout {f} is not a valid number of seconds; use seconds (300) or a duration (\"5m\")")),
        RawTimeout::Text(s) => humantime::parse_duration(s.trim()).map_err(|e| {
            let why = match e {
                humantime::DurationError::UnknownUnit { unit, .. } => format!(" (unknown unit `{unit}`; units are ms, s, m, h, d)"),
                humantime::DurationError::NumberOverflow => " (too large)".to_string(),
                _ => String::new(),
            };
            format!("timeout `{s}` is not a duration{why}; use seconds (300) or a duration such as \"90s\" or \"5m\"")
        }),
    }
}
