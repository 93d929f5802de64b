//! `[reconcile]`: how often `refundry serve` reconciles every provider against its own list of
//! refunds, and over how many days.

use std::time::Duration;

use serde::Deserialize;

use super::error::{ConfigError, limit};

/// `[reconcile]`: the schedule of reconciliation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileSchedule {
    /// Time between two scheduled runs of a provider (default one day).
    pub interval: Duration,
    /// Each scheduled run covers the refunds created in the last this many days (default 7).
    pub window_days: u32,
}

impl Default for ReconcileSchedule {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(24 * 3600),
            window_days: 7,
        }
    }
}

/// `[reconcile]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReconcile {
    interval: Option<Interval>,
    window_days: Option<u64>,
}

/// An interval: whole seconds, or a number with a unit (`"90s"`, `"15m"`, `"6h"`, `"1d"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Interval {
    Seconds(u64),
    Text(String),
}

/// The longest interval: a year (a provider's own list reaches back no further in practice).
const MAX_INTERVAL_SECS: u64 = 366 * 86_400;

impl RawReconcile {
    /// Checks the values and fills in the defaults.
    pub(crate) fn resolve(self) -> Result<ReconcileSchedule, ConfigError> {
        let d = ReconcileSchedule::default();
        let interval = match self.interval {
            None => d.interval,
            Some(i) => Duration::from_secs(seconds(i)?),
        };
        let window_days = limit(
            "reconcile.window_days",
            self.window_days,
            u64::from(d.window_days),
            1..=366,
        )?;
        Ok(ReconcileSchedule {
            interval,
            window_days: window_days as u32,
        })
    }
}

fn seconds(i: Interval) -> Result<u64, ConfigError> {
    let bad = |reason: String| ConfigError::BadReconcile {
        key: "interval",
        reason,
    };
    let secs = match i {
        Interval::Seconds(s) => s,
        Interval::Text(t) => {
            let t = t.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (number, unit) = t.split_at(split);
            let n: u64 = number
                .parse()
                .map_err(|_| bad(format!("{t:?} is not a number with a unit (s, m, h or d)")))?;
            let scale = match unit {
                "" | "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                other => return Err(bad(format!("unknown unit {other:?} (s, m, h or d)"))),
            };
            n.checked_mul(scale)
                .ok_or_else(|| bad(format!("{t:?} is too long")))?
        }
    };
    if !(1..=MAX_INTERVAL_SECS).contains(&secs) {
        return Err(bad(format!(
            "{secs} s is out of range (1 s to {MAX_INTERVAL_SECS} s)"
        )));
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<ReconcileSchedule, ConfigError> {
        toml::from_str::<RawReconcile>(toml).unwrap().resolve()
    }

    #[test]
    fn defaults_to_daily_over_the_last_week() {
        assert_eq!(parse("").unwrap(), ReconcileSchedule::default());
        assert_eq!(
            ReconcileSchedule::default().interval,
            Duration::from_secs(86_400)
        );
        assert_eq!(ReconcileSchedule::default().window_days, 7);
    }

    #[test]
    fn interval_takes_seconds_or_a_unit() {
        for (text, secs) in [
            ("interval = 90", 90),
            ("interval = \"90s\"", 90),
            ("interval = \"15m\"", 900),
            ("interval = \"6h\"", 21_600),
            ("interval = \"1d\"", 86_400),
        ] {
            assert_eq!(
                parse(text).unwrap().interval,
                Duration::from_secs(secs),
                "{text}"
            );
        }
        assert_eq!(parse("window_days = 31").unwrap().window_days, 31);
    }

    #[test]
    fn bad_values_are_named() {
        for text in [
            "interval = 0",
            "interval = \"5w\"",
            "interval = \"soon\"",
            "interval = \"400d\"",
            "interval = \"99999999999999999999d\"",
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.starts_with("reconcile.interval"), "{text}: {e}");
        }
        for text in ["window_days = 0", "window_days = 400"] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains("reconcile.window_days"), "{text}: {e}");
        }
        assert!(toml::from_str::<RawReconcile>("every = 3").is_err());
    }
}
