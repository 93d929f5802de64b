//! Inputs that `cargo xtask fuzz` found making the plugin misbehave, kept as tests so that plain
//! `cargo test` holds the fixes. Each names its fuzz target and the input as that target read it.

use refundry_pagoefectivo::PagoEfectivo;
use refundry_sdk::testing::{FakeHost, response};
use refundry_sdk::{Provider, RefundError, RefundLookup, Refusal, RefusalKind, TimeRange};

fn host() -> FakeHost {
    FakeHost::new()
        .with_now_ms(0)
        .with_config("base_url", "https://provider.example")
        .with_config("id_service", "1024")
        .with_config("access_key", "k")
        .with_config("secret_key", "s")
        .with_responder(|_| Ok(response(200, &[], b"{}".to_vec())))
}

/// `pagoefectivo_answer`, get by provider id `.` (the same input as MFS Africa's): the plugin
/// authorized and then sent `/v1/refunds/.`, signed as such, which a URL parser (the host's)
/// resolves to `/v1/refunds/`, and `..` to `/v1/`. Such an id is refused before any call.
#[test]
fn a_dot_segment_id_is_refused_before_any_call() {
    for id in [".", ".."] {
        let host = host();
        let lookup = RefundLookup::ProviderRefundId(id.into());
        let result = PagoEfectivo::get_refund(&host, lookup, None);
        assert!(
            matches!(
                result,
                Err(RefundError::Refused(Refusal {
                    kind: RefusalKind::InvalidRequest,
                    ..
                }))
            ),
            "{id}: {result:?}"
        );
        assert!(host.requests().is_empty(), "{id}");
    }
}

/// `pagoefectivo_answer`, a hand-made edge seed: list from `i64::MAX - 1000` to `i64::MAX` ms (and the
/// same at `i64::MIN`). The range in whole seconds was turned back into ms for the request and
/// overflowed (a panic with overflow checks, a wrapped time without). Refused before any call.
#[test]
fn a_list_range_at_the_ends_of_i64_is_refused_before_any_call() {
    for (from, to) in [(i64::MAX - 1_000, i64::MAX), (i64::MIN, i64::MIN + 1_000)] {
        let host = host();
        let result = PagoEfectivo::list_refunds(&host, TimeRange { from, to }, None);
        assert!(
            matches!(
                result,
                Err(RefundError::Refused(Refusal {
                    kind: RefusalKind::InvalidRequest,
                    ..
                }))
            ),
            "[{from}, {to}): {result:?}"
        );
        assert!(host.requests().is_empty());
    }
}

/// `pagoefectivo_answer`, input `crash-a674fe04...`: the first page of a list answered with
/// `"page": 0, "totalPages": 1`. The next cursor was the answer's page plus one, `1`: the page
/// just read, which the host would ask again. It is the page asked for plus one.
#[test]
fn the_next_page_follows_the_page_asked_for_whatever_the_answer_numbers() {
    let token =
        r#"{"code": "100", "data": {"token": "t", "tokenExpires": "2100-01-01T00:00:00-05:00"}}"#;
    let page = |n: u32, total: u32| {
        format!(
            r#"{{"code": "100", "data": {{"items": [], "page": {n}, "pageSize": 100, "totalPages": {total}}}}}"#
        )
    };
    for (cursor, answered, total, next) in [
        (None, 0, 1, None),
        (None, 0, 2, Some("2")),
        (Some("2"), 7, 3, Some("3")),
        (Some("3"), 1, 3, None),
    ] {
        let answers = std::sync::Mutex::new(vec![page(answered, total), token.to_owned()]);
        let host = host().with_responder(move |_| {
            let body = answers.lock().unwrap().pop().unwrap_or_default();
            Ok(response(200, &[], body.into_bytes()))
        });
        let range = TimeRange { from: 0, to: 1_000 };
        let listed = PagoEfectivo::list_refunds(&host, range, cursor.map(str::to_owned))
            .unwrap_or_else(|e| panic!("{cursor:?}: {e:?}"));
        assert_eq!(
            listed.next_cursor.as_deref(),
            next,
            "{cursor:?} answered page {answered}"
        );
    }
}
