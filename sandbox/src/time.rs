//! Formatting of times, shared by the simulators.

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};

/// RFC 3339 UTC with seconds precision and a `Z` suffix, e.g. `2026-11-25T10:15:30Z`.
pub(crate) fn rfc3339_seconds(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// RFC 3339 (ISO 8601) at a fixed UTC offset with seconds precision, the offset always written
/// `±HH:MM` (never `Z`), e.g. `2026-11-25T05:15:30-05:00` for UTC-5. Fractions are cut, not
/// rounded, so the text never names a later instant than `at`.
pub(crate) fn rfc3339_seconds_at(at: DateTime<Utc>, offset: FixedOffset) -> String {
    at.with_timezone(&offset)
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// RFC 3339 UTC with millisecond precision, for sandbox records where ordering matters.
pub(crate) fn rfc3339_millis(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_offset_formatting() {
        let at = DateTime::parse_from_rfc3339("2026-11-25T10:15:30.999Z")
            .unwrap()
            .to_utc();
        let lima = FixedOffset::west_opt(5 * 3600).unwrap();
        assert_eq!(rfc3339_seconds_at(at, lima), "2026-11-25T05:15:30-05:00");
        let utc = FixedOffset::east_opt(0).unwrap();
        assert_eq!(rfc3339_seconds_at(at, utc), "2026-11-25T10:15:30+00:00");
    }
}
