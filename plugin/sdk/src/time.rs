//! RFC 3339 formatting and parsing of Refundry timestamps (UTC milliseconds since the epoch).
//!
//! These functions never read a clock: the only time a plugin has is [`crate::Host::now_ms`], so a
//! run stays a pure function of its inputs and tests can freeze it.

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};

/// Why a timestamp could not be formatted or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// The timestamp is outside the range of representable dates.
    #[error("timestamp {ms} ms is out of range")]
    OutOfRange {
        /// The timestamp in milliseconds since the epoch.
        ms: i64,
    },
    /// The offset is not a valid UTC offset (more than a day either way).
    #[error("invalid UTC offset of {minutes} minutes")]
    InvalidOffset {
        /// The offset east of UTC, in minutes.
        minutes: i32,
    },
    /// The string is not an RFC 3339 date-time.
    #[error("`{input}` is not an RFC 3339 date-time")]
    Invalid {
        /// The string as given.
        input: String,
    },
}

fn utc(ms: i64) -> Result<DateTime<Utc>, TimeError> {
    DateTime::from_timestamp_millis(ms).ok_or(TimeError::OutOfRange { ms })
}

/// Formats `ms` as RFC 3339 in UTC with seconds precision and a `Z` suffix
/// (`2026-11-25T10:15:30Z`). Milliseconds are truncated towards the past.
pub fn format_rfc3339_utc(ms: i64) -> Result<String, TimeError> {
    Ok(utc(ms)?.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// Formats `ms` as RFC 3339 at a fixed offset of `offset_minutes` east of UTC, seconds precision
/// (`-300` gives `2026-11-25T05:15:30-05:00`). For providers that want local time with its offset.
pub fn format_rfc3339_offset(ms: i64, offset_minutes: i32) -> Result<String, TimeError> {
    let offset = offset_minutes
        .checked_mul(60)
        .and_then(FixedOffset::east_opt)
        .ok_or(TimeError::InvalidOffset {
            minutes: offset_minutes,
        })?;
    Ok(utc(ms)?
        .with_timezone(&offset)
        .to_rfc3339_opts(SecondsFormat::Secs, false))
}

/// Parses an RFC 3339 date-time with any offset (`Z`, `+03:00`, fractional seconds allowed) into
/// UTC milliseconds since the epoch. Sub-millisecond digits are truncated.
pub fn parse_rfc3339(input: &str) -> Result<i64, TimeError> {
    DateTime::parse_from_rfc3339(input)
        .map(|t| t.timestamp_millis())
        .map_err(|_| TimeError::Invalid {
            input: input.to_owned(),
        })
}

/// A timestamp field of a provider's answer that is not RFC 3339: the wire field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {source}")]
pub struct FieldError {
    /// The field as the provider names it (`created_at`, `dateCreation`).
    pub field: &'static str,
    /// What is wrong with its value.
    pub source: TimeError,
}

/// Parses the optional RFC 3339 `field` of a provider's answer into UTC milliseconds: `None`
/// stays `None` (the provider left the field out), a value that does not parse is an error
/// naming the field.
pub fn parse_field(field: &'static str, value: Option<&str>) -> Result<Option<i64>, FieldError> {
    value.map(|v| parse_required(field, v)).transpose()
}

/// Parses the RFC 3339 `field` of a provider's answer that is always there into UTC
/// milliseconds; a value that does not parse is an error naming the field.
pub fn parse_required(field: &'static str, value: &str) -> Result<i64, FieldError> {
    parse_rfc3339(value).map_err(|source| FieldError { field, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-25T10:15:30Z, computed with `date -u -d 2026-11-25T10:15:30Z +%s` (1795601730).
    const T: i64 = 1_795_601_730_000;

    #[test]
    fn formats_utc_seconds_with_z() {
        assert_eq!(format_rfc3339_utc(T).unwrap(), "2026-11-25T10:15:30Z");
        assert_eq!(format_rfc3339_utc(T + 999).unwrap(), "2026-11-25T10:15:30Z");
        assert_eq!(format_rfc3339_utc(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339_utc(-1).unwrap(), "1969-12-31T23:59:59Z");
        assert!(matches!(
            format_rfc3339_utc(i64::MAX),
            Err(TimeError::OutOfRange { .. })
        ));
    }

    #[test]
    fn formats_at_fixed_offset() {
        assert_eq!(
            format_rfc3339_offset(T, -300).unwrap(),
            "2026-11-25T05:15:30-05:00"
        );
        assert_eq!(
            format_rfc3339_offset(T, 180).unwrap(),
            "2026-11-25T13:15:30+03:00"
        );
        assert_eq!(
            format_rfc3339_offset(T, 0).unwrap(),
            "2026-11-25T10:15:30+00:00"
        );
        assert!(matches!(
            format_rfc3339_offset(T, 24 * 60),
            Err(TimeError::InvalidOffset { .. })
        ));
        assert!(matches!(
            format_rfc3339_offset(T, i32::MAX),
            Err(TimeError::InvalidOffset { .. })
        ));
    }

    #[test]
    fn parses_any_offset_to_utc_ms() {
        assert_eq!(parse_rfc3339("2026-11-25T10:15:30Z").unwrap(), T);
        assert_eq!(parse_rfc3339("2026-11-25T05:15:30-05:00").unwrap(), T);
        assert_eq!(parse_rfc3339("2026-11-25T13:15:30+03:00").unwrap(), T);
        assert_eq!(parse_rfc3339("2026-11-25T10:15:30.250Z").unwrap(), T + 250);
        assert_eq!(
            parse_rfc3339("2026-11-25T10:15:30.250999Z").unwrap(),
            T + 250
        );
    }

    #[test]
    fn rejects_non_rfc3339() {
        for s in [
            "",
            "2026-11-25",
            "2026-11-25T10:15:30",
            "2026-11-25 10:15:30",
            "1795601730",
            "2026-13-25T10:15:30Z",
            "2026-11-25T10:15:30+0500",
        ] {
            assert!(
                matches!(parse_rfc3339(s), Err(TimeError::Invalid { .. })),
                "{s:?}"
            );
        }
    }

    #[test]
    fn parse_field_keeps_absence_and_names_the_field() {
        assert_eq!(parse_field("created_at", None), Ok(None));
        assert_eq!(
            parse_field("created_at", Some("2026-11-25T05:15:30-05:00")),
            Ok(Some(T))
        );
        let err = parse_field("dateCreation", Some("ayer")).unwrap_err();
        assert_eq!(err.field, "dateCreation");
        assert_eq!(
            parse_required("tokenExpires", "2026-11-25T10:15:30Z"),
            Ok(T)
        );
        assert_eq!(parse_required("dateCreation", "ayer"), Err(err.clone()));
        assert_eq!(
            err.to_string(),
            "dateCreation: `ayer` is not an RFC 3339 date-time"
        );
    }
}
