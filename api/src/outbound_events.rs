//! `GET /v1/events`: the outbound events the ledger wrote, with each delivery and its attempts
//! (scope `refunds`), so a gateway can see what its endpoints were sent and when.

use axum::Json;
use axum::extract::State;
use utoipa::IntoParams;

use super::auth::{Authorized, RefundsScope};
use super::error::{ApiError, ErrorBody, QueryPairs};
use super::refunds::page_limit;
use super::{AppState, RefundApi};
use refundry_ledger::{EventPage, EventQuery};
use refundry_service::export::DEFAULT_PAGE;

/// The query parameters of `GET /v1/events` (documentation; [`parse`] reads them).
#[derive(Debug, Clone, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Only this refund's events (empty: every refund's).
    pub refund_id: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// The previous page's `next_cursor`: the last event's position, decimal digits (empty:
    /// from the first).
    #[param(pattern = "^[0-9]{0,18}$", example = "42")]
    pub cursor: Option<String>,
}

/// The longest cursor: 18 decimal digits always fit the ledger's 64-bit event positions, and
/// no position this API hands out is longer.
const CURSOR_DIGITS: usize = 18;

/// An event cursor: the decimal digits of a position, as `next_cursor` gives them. Exactly what
/// the document's pattern allows, no sign and no spaces, so that a cursor the document calls
/// valid is never refused and one it calls invalid never taken.
fn parse_cursor(value: &str) -> Result<i64, ApiError> {
    let digits = !value.is_empty()
        && value.len() <= CURSOR_DIGITS
        && value.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| value.parse::<i64>().ok())
        .flatten()
        .ok_or_else(|| {
            ApiError::invalid(
                "cursor",
                format!("cursor {value:?} is not a next_cursor this API gave"),
            )
        })
}

/// Reads the query: an unknown parameter or a bad value is a 400 naming it.
pub fn parse(pairs: Vec<(String, String)>) -> Result<EventQuery, ApiError> {
    let mut query = EventQuery {
        limit: DEFAULT_PAGE,
        ..EventQuery::default()
    };
    for (name, value) in pairs {
        if value.is_empty() && matches!(name.as_str(), "refund_id" | "cursor") {
            continue;
        }
        match name.as_str() {
            "refund_id" => query.refund_id = Some(value),
            "limit" => query.limit = page_limit(&value)?,
            "cursor" => query.after_seq = Some(parse_cursor(&value)?),
            other => {
                return Err(ApiError::invalid(
                    other,
                    format!("unknown query parameter {other:?}"),
                ));
            }
        }
    }
    Ok(query)
}

/// The events written for refund status changes, oldest first, each with its deliveries to the
/// configured endpoints and every attempt.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    operation_id = "list_events",
    params(EventParams),
    responses(
        (status = 200, description = "A page of events", body = EventPage),
        (status = 400, description = "A bad or unknown parameter (`invalid_request`, named in \
            `field`)", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"refundry\"`"))),
        (status = 403, description = "The token lacks scope `refunds`", body = ErrorBody),
        (status = 500, description = "The ledger could not be read (`internal`)", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn list<S: RefundApi>(
    _auth: Authorized<RefundsScope>,
    State(state): State<AppState<S>>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<EventPage>, ApiError> {
    let query = parse(pairs)?;
    let page = state
        .service
        .events(query)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(Json(page))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refunds::tests::pairs;

    #[test]
    fn reads_the_query() {
        let q = parse(pairs(&[
            ("refund_id", "rf_1"),
            ("limit", "10"),
            ("cursor", "42"),
        ]))
        .unwrap();
        assert_eq!(
            q,
            EventQuery {
                refund_id: Some("rf_1".into()),
                after_seq: Some(42),
                limit: 10
            }
        );
        assert_eq!(parse(pairs(&[("refund_id", "")])).unwrap().refund_id, None);
        // The longest cursor the document allows.
        let q = parse(pairs(&[("cursor", "999999999999999999")])).unwrap();
        assert_eq!(q.after_seq, Some(999_999_999_999_999_999));
        assert_eq!(parse(pairs(&[("cursor", "")])).unwrap().after_seq, None);
    }

    #[test]
    fn bad_parameters_are_named() {
        for (name, value) in [
            ("limit", "0"),
            ("limit", "501"),
            ("cursor", "x"),
            ("cursor", "-1"),
            ("cursor", "+1"),
            ("cursor", " 1"),
            ("cursor", "1234567890123456789"),
            ("nope", "1"),
        ] {
            let e = parse(pairs(&[(name, value)])).unwrap_err();
            assert_eq!(e.detail.field.as_deref(), Some(name), "{name}={value}");
        }
    }
}
