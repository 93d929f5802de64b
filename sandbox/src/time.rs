//! Formatting of UTC times, shared by the simulators.

use chrono::{DateTime, SecondsFormat, Utc};

/// RFC 3339 UTC with seconds precision and a `Z` suffix, e.g. `2026-11-25T10:15:30Z`.
pub(crate) fn rfc3339_seconds(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// RFC 3339 UTC with millisecond precision, for sandbox records where ordering matters.
pub(crate) fn rfc3339_millis(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}
