//! The query of `GET /v1/refunds` (spec, "Query" and "List (reconciliation)"): which of the two
//! requests it is, and the range list's parameters, validated so that every problem is the
//! spec's `invalid_request` with a useful message.

use chrono::{DateTime, TimeDelta, Utc};

use super::error::ApiError;
use super::signing::parse_timestamp;

/// The longest range a list may cover (spec: "A range longer than 31 days ... get 400").
pub(crate) const MAX_RANGE: TimeDelta = TimeDelta::days(31);
/// The page size when `limit` is absent.
pub(crate) const DEFAULT_LIMIT: usize = 50;
/// The largest `limit` (spec: `limit=<1..100>`).
pub(crate) const MAX_LIMIT: usize = 100;

/// The parameters that make a `GET /v1/refunds` the range list rather than the lookup by
/// external id.
const RANGE_PARAMETERS: [&str; 4] = ["created_from", "created_to", "limit", "starting_after"];

/// Which request a `GET /v1/refunds` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// `?external_refund_id=...`: also any query with none of the range parameters, which the
    /// lookup then refuses for its missing `external_refund_id`.
    ByExternalId,
    /// `?created_from=..&created_to=..`.
    Range,
}

impl ListKind {
    /// With `external_refund_id` present the request is the lookup, whatever else it carries
    /// (spec); otherwise any range parameter makes it the range list.
    pub(crate) fn of(pairs: &[(String, String)]) -> Self {
        let has = |name: &str| pairs.iter().any(|(key, _)| key == name);
        if !has("external_refund_id") && RANGE_PARAMETERS.iter().any(|name| has(name)) {
            ListKind::Range
        } else {
            ListKind::ByExternalId
        }
    }
}

/// A range list request that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RangeQuery {
    /// Included.
    pub(crate) from: DateTime<Utc>,
    /// Excluded.
    pub(crate) to: DateTime<Utc>,
    /// 1 to [`MAX_LIMIT`].
    pub(crate) limit: usize,
    /// The last `refund_id` of the previous page.
    pub(crate) starting_after: Option<String>,
}

impl RangeQuery {
    /// Validates the decoded query pairs. Unknown parameters are ignored; a parameter given twice
    /// is refused (which value would count is anyone's guess).
    pub(crate) fn from_pairs(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        let one = |name: &str| -> Result<Option<&str>, ApiError> {
            let mut values = pairs.iter().filter(|(key, _)| key == name);
            let first = values.next().map(|(_, value)| value.as_str());
            if values.next().is_some() {
                return Err(invalid(format!("{name} is given more than once")));
            }
            Ok(first)
        };
        let timestamp = |name: &str| -> Result<DateTime<Utc>, ApiError> {
            let text = one(name)?.ok_or_else(|| {
                invalid(format!(
                    "{name} is required (with created_from and created_to, or external_refund_id)"
                ))
            })?;
            parse_timestamp(text).ok_or_else(|| {
                invalid(format!(
                    "{name} must be RFC 3339 UTC to the second, YYYY-MM-DDTHH:MM:SSZ; got {text:?}"
                ))
            })
        };
        let from = timestamp("created_from")?;
        let to = timestamp("created_to")?;
        if from > to {
            return Err(invalid(
                "created_from must not be later than created_to".to_owned(),
            ));
        }
        if to - from > MAX_RANGE {
            return Err(invalid(
                "the range from created_from to created_to must be at most 31 days".to_owned(),
            ));
        }
        let limit = match one("limit")? {
            None => DEFAULT_LIMIT,
            Some(text) => parse_limit(text).ok_or_else(|| {
                invalid(format!(
                    "limit must be an integer from 1 to {MAX_LIMIT}; got {text:?}"
                ))
            })?,
        };
        let starting_after = match one("starting_after")? {
            None => None,
            Some("") => return Err(invalid("starting_after must not be empty".to_owned())),
            Some(id) => Some(id.to_owned()),
        };
        Ok(Self {
            from,
            to,
            limit,
            starting_after,
        })
    }
}

/// Plain decimal digits (no sign, no spaces) from 1 to [`MAX_LIMIT`].
fn parse_limit(text: &str) -> Option<usize> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let limit: usize = text.parse().ok()?;
    (1..=MAX_LIMIT).contains(&limit).then_some(limit)
}

fn invalid(message: String) -> ApiError {
    ApiError::InvalidRequest(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn parse(query: &[(&str, &str)]) -> Result<RangeQuery, ApiError> {
        RangeQuery::from_pairs(&pairs(query))
    }

    #[test]
    fn external_id_makes_it_the_lookup() {
        assert_eq!(
            ListKind::of(&pairs(&[
                ("external_refund_id", "a"),
                ("created_from", "x")
            ])),
            ListKind::ByExternalId
        );
        assert_eq!(ListKind::of(&pairs(&[])), ListKind::ByExternalId);
        assert_eq!(
            ListKind::of(&pairs(&[("other", "1")])),
            ListKind::ByExternalId
        );
        assert_eq!(ListKind::of(&pairs(&[("limit", "3")])), ListKind::Range);
        assert_eq!(
            ListKind::of(&pairs(&[("created_to", "x")])),
            ListKind::Range
        );
    }

    #[test]
    fn a_valid_range_with_defaults() {
        let query = parse(&[
            ("created_from", "2026-11-01T00:00:00Z"),
            ("created_to", "2026-12-02T00:00:00Z"),
        ])
        .unwrap();
        assert_eq!(query.to - query.from, MAX_RANGE);
        assert_eq!(query.limit, 50);
        assert_eq!(query.starting_after, None);
        let query = parse(&[
            ("created_from", "2026-11-01T00:00:00Z"),
            ("created_to", "2026-11-01T00:00:00Z"),
            ("limit", "100"),
            ("starting_after", "rfnd_1"),
            ("unknown", "ignored"),
        ])
        .unwrap();
        assert_eq!(query.limit, 100);
        assert_eq!(query.starting_after.as_deref(), Some("rfnd_1"));
    }

    #[test]
    fn invalid_ranges_are_invalid_requests() {
        let from = ("created_from", "2026-11-01T00:00:00Z");
        let to = ("created_to", "2026-11-02T00:00:00Z");
        for query in [
            vec![from],
            vec![to],
            vec![from, ("created_to", "2026-12-02T00:00:01Z")],
            vec![("created_from", "2026-11-03T00:00:00Z"), to],
            vec![("created_from", "2026-11-01T00:00:00+00:00"), to],
            vec![("created_from", "2026-11-01T00:00:00.000Z"), to],
            vec![("created_from", "2026-11-01"), to],
            vec![from, ("created_to", "1764547200")],
            vec![from, to, ("limit", "0")],
            vec![from, to, ("limit", "101")],
            vec![from, to, ("limit", "+5")],
            vec![from, to, ("limit", "")],
            vec![from, to, ("starting_after", "")],
            vec![from, from, to],
        ] {
            assert!(
                matches!(parse(&query), Err(ApiError::InvalidRequest(_))),
                "{query:?}"
            );
        }
    }
}
