//! The query of `GET /v1/refunds` (spec, "Query" and "List (reconciliation)"): which of the two
//! requests it is, and the range list's parameters, validated so that every problem is the
//! spec's `111` naming the field.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::error::{ApiError, FieldError};
use super::wire::{RefundObject, parse_date};

/// The longest range a list may cover (spec: "A range longer than 31 days ... get 400").
pub(crate) const MAX_RANGE: TimeDelta = TimeDelta::days(31);
/// The page size when `pageSize` is absent.
pub(crate) const DEFAULT_PAGE_SIZE: usize = 50;
/// The largest `pageSize` (spec: `pageSize=<1..100>`).
pub(crate) const MAX_PAGE_SIZE: usize = 100;

/// The parameters that make a `GET /v1/refunds` the range list rather than the lookup by
/// `refundId`.
const RANGE_PARAMETERS: [&str; 4] = ["dateFrom", "dateTo", "page", "pageSize"];

/// Which request a `GET /v1/refunds` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// `?refundId=...`: also any query with none of the range parameters, which the lookup then
    /// refuses for its missing `refundId`.
    ByRefundId,
    /// `?dateFrom=..&dateTo=..`.
    Range,
}

impl ListKind {
    /// With `refundId` present the request is the lookup, whatever else it carries (spec);
    /// otherwise any range parameter makes it the range list.
    pub(crate) fn of(pairs: &[(String, String)]) -> Self {
        let has = |name: &str| pairs.iter().any(|(key, _)| key == name);
        if !has("refundId") && RANGE_PARAMETERS.iter().any(|name| has(name)) {
            ListKind::Range
        } else {
            ListKind::ByRefundId
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
    /// From 1.
    pub(crate) page: u64,
    /// 1 to [`MAX_PAGE_SIZE`].
    pub(crate) page_size: usize,
}

impl RangeQuery {
    /// Validates the decoded query pairs; every invalid field is listed. Unknown parameters are
    /// ignored; a parameter given twice is refused (which value would count is anyone's guess).
    pub(crate) fn from_pairs(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        let mut errors = Vec::new();
        let mut one = |name: &str| -> Option<&str> {
            let mut values = pairs.iter().filter(|(key, _)| key == name);
            let first = values.next().map(|(_, value)| value.as_str());
            if values.next().is_some() {
                errors.push(FieldError::new(name, "is given more than once"));
                return None;
            }
            first
        };
        let from_text = one("dateFrom");
        let to_text = one("dateTo");
        let page_text = one("page");
        let size_text = one("pageSize");
        let mut date = |name: &str, text: Option<&str>| -> Option<DateTime<Utc>> {
            let Some(text) = text else {
                if !errors.iter().any(|e| e.field == name) {
                    errors.push(FieldError::new(
                        name,
                        "is required (with dateFrom and dateTo, or refundId)",
                    ));
                }
                return None;
            };
            let parsed = parse_date(text);
            if parsed.is_none() {
                errors.push(FieldError::new(
                    name,
                    format!("must be yyyy-MM-ddTHH:mm:ss-05:00 (Lima time); got {text:?}"),
                ));
            }
            parsed
        };
        let from = date("dateFrom", from_text);
        let to = date("dateTo", to_text);
        if let (Some(from), Some(to)) = (from, to) {
            if from > to {
                errors.push(FieldError::new(
                    "dateTo",
                    "must not be earlier than dateFrom",
                ));
            } else if to - from > MAX_RANGE {
                errors.push(FieldError::new(
                    "dateTo",
                    "the range from dateFrom to dateTo must be at most 31 days",
                ));
            }
        }
        let page = match page_text {
            None => Some(1),
            Some(text) => {
                let page = digits(text).and_then(|text| text.parse::<u64>().ok());
                match page {
                    Some(page) if page >= 1 => Some(page),
                    _ => {
                        errors.push(FieldError::new(
                            "page",
                            format!("must be an integer from 1; got {text:?}"),
                        ));
                        None
                    }
                }
            }
        };
        let page_size = match size_text {
            None => Some(DEFAULT_PAGE_SIZE),
            Some(text) => {
                let size = digits(text).and_then(|text| text.parse::<usize>().ok());
                match size {
                    Some(size) if (1..=MAX_PAGE_SIZE).contains(&size) => Some(size),
                    _ => {
                        errors.push(FieldError::new(
                            "pageSize",
                            format!("must be an integer from 1 to {MAX_PAGE_SIZE}; got {text:?}"),
                        ));
                        None
                    }
                }
            }
        };
        match (from, to, page, page_size) {
            (Some(from), Some(to), Some(page), Some(page_size)) if errors.is_empty() => Ok(Self {
                from,
                to,
                page,
                page_size,
            }),
            _ => Err(ApiError::InvalidRequest(errors)),
        }
    }
}

/// `text` if it is plain decimal digits (no sign, no spaces).
fn digits(text: &str) -> Option<&str> {
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())).then_some(text)
}

/// The range list's `data`: `{"items": [...], "page": 1, "pageSize": 50, "totalPages": 3}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RefundPage {
    /// Empty past the last page.
    pub(crate) items: Vec<RefundObject>,
    /// As asked (1 when absent), even past the last page.
    pub(crate) page: u64,
    /// As asked (50 when absent).
    pub(crate) page_size: usize,
    /// The number of pages of the whole range; 0 when the range holds no refund (no page has
    /// items, so there is no page 1 to count).
    pub(crate) total_pages: u64,
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

    fn fields(query: &[(&str, &str)]) -> Vec<String> {
        match RangeQuery::from_pairs(&pairs(query)) {
            Err(ApiError::InvalidRequest(fields)) => fields.into_iter().map(|f| f.field).collect(),
            other => panic!("not a 111: {other:?}"),
        }
    }

    #[test]
    fn refund_id_makes_it_the_lookup() {
        assert_eq!(
            ListKind::of(&pairs(&[("refundId", "a"), ("dateFrom", "x")])),
            ListKind::ByRefundId
        );
        assert_eq!(ListKind::of(&pairs(&[])), ListKind::ByRefundId);
        assert_eq!(ListKind::of(&pairs(&[("pageSize", "3")])), ListKind::Range);
    }

    #[test]
    fn a_valid_range_with_defaults() {
        let query = RangeQuery::from_pairs(&pairs(&[
            ("dateFrom", "2026-11-01T00:00:00-05:00"),
            ("dateTo", "2026-12-02T00:00:00-05:00"),
        ]))
        .unwrap();
        assert_eq!(query.to - query.from, MAX_RANGE);
        assert_eq!(
            crate::time::rfc3339_seconds(query.from),
            "2026-11-01T05:00:00Z"
        );
        assert_eq!((query.page, query.page_size), (1, 50));
        let query = RangeQuery::from_pairs(&pairs(&[
            ("dateFrom", "2026-11-01T00:00:00-05:00"),
            ("dateTo", "2026-11-01T00:00:00-05:00"),
            ("page", "7"),
            ("pageSize", "100"),
        ]))
        .unwrap();
        assert_eq!((query.page, query.page_size), (7, 100));
    }

    #[test]
    fn invalid_ranges_name_their_fields() {
        let from = ("dateFrom", "2026-11-01T00:00:00-05:00");
        let to = ("dateTo", "2026-11-02T00:00:00-05:00");
        assert_eq!(fields(&[from]), ["dateTo"]);
        assert_eq!(fields(&[("page", "1")]), ["dateFrom", "dateTo"]);
        assert_eq!(
            fields(&[from, ("dateTo", "2026-12-02T00:00:01-05:00")]),
            ["dateTo"]
        );
        assert_eq!(
            fields(&[("dateFrom", "2026-11-03T00:00:00-05:00"), to]),
            ["dateTo"]
        );
        assert_eq!(
            fields(&[
                ("dateFrom", "2026-11-01T05:00:00Z"),
                ("dateTo", "2026-11-02")
            ]),
            ["dateFrom", "dateTo"]
        );
        assert_eq!(
            fields(&[("dateFrom", "2026-11-01T00:00:00+00:00"), to]),
            ["dateFrom"]
        );
        assert_eq!(
            fields(&[from, to, ("page", "0"), ("pageSize", "101")]),
            ["page", "pageSize"]
        );
        assert_eq!(
            fields(&[from, to, ("page", "-1"), ("pageSize", "0")]),
            ["page", "pageSize"]
        );
        assert_eq!(fields(&[from, from, to]), ["dateFrom"]);
    }
}
