//! The plugin's flows, run natively against `FakeHost` with the JSON fixtures in `fixtures/`.

use refundry_mfs_africa::{MfsAfrica, sign};
use refundry_sdk::http::{self, HttpError, Method};
use refundry_sdk::testing::{FakeHost, response};
use refundry_sdk::{
    Host, Level, Money, Provider, Refund, RefundError, RefundLookup, RefundPage, RefundRequest,
    RefundStatus, Refusal, RefusalKind, Retryable, TimeRange, WebhookError, WebhookEvent,
    WebhookOutcome, WebhookRequest,
};

/// 2026-11-25T10:15:30Z (`date -u -d 2026-11-25T10:15:30Z +%s`).
const NOW: i64 = 1_795_601_730_000;
const BASE: &str = "http://127.0.0.1:8080";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn host(
    responder: impl Fn(&http::Request) -> Result<http::Response, HttpError> + Send + Sync + 'static,
) -> FakeHost {
    FakeHost::new()
        .with_now_ms(NOW)
        .with_config("base_url", BASE)
        .with_config("api_key", "test_api_key")
        .with_config("api_secret", "test_api_secret")
        .with_config("webhook_secret", "test_webhook_secret")
        .with_responder(responder)
}

fn answering(status: u16, body: Vec<u8>) -> FakeHost {
    host(move |_| Ok(response(status, &[], body.clone())))
}

fn request() -> RefundRequest {
    RefundRequest {
        original_transaction_id: "txn_8f2k1".into(),
        external_refund_id: "order-991-r1".into(),
        amount: Money {
            amount_minor: 150_000,
            currency: "KES".into(),
        },
        reason: Some("customer_return".into()),
        order_id: Some("order-991".into()),
    }
}

fn pending_refund() -> Refund {
    Refund {
        provider_refund_id: "rfnd_abc123".into(),
        external_refund_id: Some("order-991-r1".into()),
        original_transaction_id: "txn_8f2k1".into(),
        amount: Money {
            amount_minor: 150_000,
            currency: "KES".into(),
        },
        status: RefundStatus::Pending,
        provider_status: "pending".into(),
        failure_reason: None,
        created_at: Some(NOW + 1_000),
        updated_at: Some(NOW + 1_000),
    }
}

/// What every request carries after the spec's signed headers: `X-Plugin-Version` in the `next`
/// build (the plugin's second version), nothing in the default build.
const EXTRA_HEADERS: &[(&str, &str)] = if cfg!(feature = "next") {
    &[("X-Plugin-Version", "0.3.0")]
} else {
    &[]
};

/// `signed` followed by [`EXTRA_HEADERS`]: the headers of a request as sent.
fn with_extra(signed: Vec<(String, String)>) -> Vec<(String, String)> {
    let extra = EXTRA_HEADERS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
    signed.into_iter().chain(extra).collect()
}

fn headers(req: &http::Request) -> Vec<(&str, &str)> {
    req.headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[test]
fn create_sends_the_byte_exact_signed_request() {
    let host = answering(201, fixture("refund_pending.json"));
    let refund = MfsAfrica::create_refund(&host, request()).unwrap();
    assert_eq!(refund, pending_refund());

    let sent = host.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].method, Method::Post);
    assert_eq!(sent[0].url, "http://127.0.0.1:8080/v1/refunds");
    let body = fixture("create_request.json");
    assert_eq!(sent[0].body.as_deref(), Some(body.trim_ascii_end()));
    // Signature: see sign.rs `create_request_known_answer` for how it was computed. The same in
    // both builds: the `next` build's extra header is not signed.
    let signed = [
        ("X-Api-Key", "test_api_key"),
        ("X-Timestamp", "2026-11-25T10:15:30Z"),
        (
            "X-Signature",
            "e96f561edaf97bba3cbc1c9657d353a91b451a7fd8d64cff8e5069f8c2ec0bc6",
        ),
        ("Content-Type", "application/json"),
    ];
    assert_eq!(headers(&sent[0]), [&signed[..], EXTRA_HEADERS].concat());
}

#[test]
fn create_replay_200_is_the_existing_refund() {
    let host = answering(200, fixture("refund_pending.json"));
    assert_eq!(
        MfsAfrica::create_refund(&host, request()),
        Ok(pending_refund())
    );
}

#[test]
fn create_omits_absent_reason_and_formats_zero_digit_currencies() {
    let host = answering(201, fixture("refund_failed.json"));
    let mut req = request();
    req.reason = None;
    req.amount = Money {
        amount_minor: 5000,
        currency: "UGX".into(),
    };
    let refund = MfsAfrica::create_refund(&host, req).unwrap();
    assert_eq!(refund.amount.amount_minor, 5000);
    assert_eq!(refund.status, RefundStatus::Failed);
    assert_eq!(refund.failure_reason.as_deref(), Some("wallet_closed"));
    // 13:15:31+03:00 is 10:15:31Z.
    assert_eq!(refund.created_at, Some(NOW + 1_000));
    assert_eq!(
        host.requests()[0].body.as_deref(),
        Some(&br#"{"original_transaction_id":"txn_8f2k1","refund_amount":"5000","currency":"UGX","external_refund_id":"order-991-r1"}"#[..])
    );
}

#[test]
fn base_url_path_prefix_is_part_of_the_signed_path() {
    let mut host = answering(201, fixture("refund_pending.json"));
    host.set_config("base_url", "https://mfs.example/api/");
    MfsAfrica::create_refund(&host, request()).unwrap();
    let sent = &host.requests()[0];
    assert_eq!(sent.url, "https://mfs.example/api/v1/refunds");
    let expected = sign::signed_headers(
        "test_api_key",
        b"test_api_secret",
        "POST",
        "/api/v1/refunds",
        "2026-11-25T10:15:30Z",
        sent.body.as_deref(),
    );
    assert_eq!(sent.headers, with_extra(expected));
}

fn refused_before_call(kind: RefusalKind) -> impl Fn(&RefundError) -> bool {
    move |e| matches!(e, RefundError::Refused(Refusal { kind: k, provider_code: None, http_status: None, .. }) if *k == kind)
}

#[test]
fn invalid_requests_are_refused_before_any_call() {
    type Change = Box<dyn Fn(&mut RefundRequest)>;
    let cases: Vec<(Change, RefusalKind)> = vec![
        (
            Box::new(|r| r.external_refund_id = String::new()),
            RefusalKind::InvalidRequest,
        ),
        (
            Box::new(|r| r.external_refund_id = "a".repeat(65)),
            RefusalKind::InvalidRequest,
        ),
        (
            Box::new(|r| r.external_refund_id = "a b".into()),
            RefusalKind::InvalidRequest,
        ),
        (
            Box::new(|r| r.external_refund_id = "r/1".into()),
            RefusalKind::InvalidRequest,
        ),
        (
            Box::new(|r| r.external_refund_id = "é".into()),
            RefusalKind::InvalidRequest,
        ),
        (
            Box::new(|r| r.original_transaction_id = String::new()),
            RefusalKind::InvalidRequest,
        ),
        (
            Box::new(|r| r.reason = Some("é".repeat(256))),
            RefusalKind::InvalidRequest,
        ),
        (
            Box::new(|r| r.amount.amount_minor = 0),
            RefusalKind::InvalidRequest,
        ),
        (
            Box::new(|r| r.amount.amount_minor = -100),
            RefusalKind::InvalidRequest,
        ),
        (
            Box::new(|r| r.amount.currency = "PEN".into()),
            RefusalKind::CurrencyMismatch,
        ),
        (
            Box::new(|r| r.amount.currency = "kes".into()),
            RefusalKind::CurrencyMismatch,
        ),
    ];
    for (i, (change, kind)) in cases.into_iter().enumerate() {
        let host = answering(201, fixture("refund_pending.json"));
        let mut req = request();
        change(&mut req);
        let err = MfsAfrica::create_refund(&host, req).unwrap_err();
        assert!(refused_before_call(kind)(&err), "case {i}: {err:?}");
        assert!(host.requests().is_empty(), "case {i} sent a request");
    }
    // The limits themselves are allowed.
    let host = answering(201, fixture("refund_pending.json"));
    let mut req = request();
    req.external_refund_id = "A-z_9".repeat(12) + "abcd";
    req.reason = Some("é".repeat(255));
    assert!(MfsAfrica::create_refund(&host, req).is_ok());
}

#[test]
fn missing_configuration_is_a_configuration_refusal() {
    let range = TimeRange {
        from: NOW,
        to: NOW + 60_000,
    };
    for key in ["base_url", "api_key", "api_secret"] {
        let mut host = answering(201, fixture("refund_pending.json"));
        host.remove_config(key);
        let err = MfsAfrica::create_refund(&host, request()).unwrap_err();
        assert!(
            refused_before_call(RefusalKind::Configuration)(&err),
            "{key}: {err:?}"
        );
        assert!(format!("{err:?}").contains(key));
        let err = MfsAfrica::get_refund(&host, RefundLookup::ProviderRefundId("x".into()), None)
            .unwrap_err();
        assert!(
            refused_before_call(RefusalKind::Configuration)(&err),
            "{key}: {err:?}"
        );
        let err = MfsAfrica::list_refunds(&host, range, None).unwrap_err();
        assert!(
            refused_before_call(RefusalKind::Configuration)(&err),
            "{key}: {err:?}"
        );
        assert!(host.requests().is_empty());
    }
    let mut host = answering(201, fixture("refund_pending.json"));
    host.set_config("base_url", "127.0.0.1:8080");
    let err = MfsAfrica::create_refund(&host, request()).unwrap_err();
    assert!(
        refused_before_call(RefusalKind::Configuration)(&err),
        "{err:?}"
    );
}

fn error_body(code: &str) -> Vec<u8> {
    format!(r#"{{"error": {{"code": "{code}", "message": "msg {code}"}}, "trace_id": "tr_1"}}"#)
        .into_bytes()
}

fn refused(kind: RefusalKind, code: &str, status: u16) -> RefundError {
    RefundError::Refused(Refusal {
        kind,
        provider_code: Some(code.into()),
        message: format!("msg {code} (trace_id tr_1)"),
        http_status: Some(status),
    })
}

fn retryable(code: &str, status: u16, retry_after_ms: Option<u64>) -> RefundError {
    RefundError::Retryable(Retryable {
        provider_code: Some(code.into()),
        message: format!("msg {code} (trace_id tr_1)"),
        http_status: Some(status),
        retry_after_ms,
    })
}

#[test]
fn every_error_row_is_mapped() {
    use RefusalKind as K;
    let rows = [
        (
            400,
            "invalid_request",
            refused(K::InvalidRequest, "invalid_request", 400),
        ),
        (
            401,
            "invalid_api_key",
            refused(K::Authentication, "invalid_api_key", 401),
        ),
        (
            401,
            "invalid_signature",
            refused(K::Authentication, "invalid_signature", 401),
        ),
        (
            401,
            "timestamp_out_of_range",
            refused(K::Authentication, "timestamp_out_of_range", 401),
        ),
        (
            403,
            "ip_not_allowed",
            refused(K::Forbidden, "ip_not_allowed", 403),
        ),
        (
            404,
            "invalid_transaction",
            refused(K::InvalidTransaction, "invalid_transaction", 404),
        ),
        (
            409,
            "duplicate_external_refund_id",
            refused(K::IdempotencyConflict, "duplicate_external_refund_id", 409),
        ),
        (
            422,
            "amount_exceeded",
            refused(K::AmountExceeded, "amount_exceeded", 422),
        ),
        (
            422,
            "currency_mismatch",
            refused(K::CurrencyMismatch, "currency_mismatch", 422),
        ),
        (
            422,
            "transaction_not_settled",
            refused(K::NotSettled, "transaction_not_settled", 422),
        ),
        (
            422,
            "refund_window_expired",
            refused(K::WindowExpired, "refund_window_expired", 422),
        ),
        (429, "rate_limited", retryable("rate_limited", 429, None)),
        (
            500,
            "internal_error",
            retryable("internal_error", 500, None),
        ),
        (
            502,
            "service_unavailable",
            retryable("service_unavailable", 502, None),
        ),
        (
            503,
            "service_unavailable",
            retryable("service_unavailable", 503, None),
        ),
        (
            500,
            "internal_error",
            retryable("internal_error", 500, None),
        ),
        // Codes outside the spec: the status class decides, the code is kept.
        (418, "teapot", refused(K::Other, "teapot", 418)),
        (
            422,
            "wallet_frozen",
            refused(K::Other, "wallet_frozen", 422),
        ),
        (
            504,
            "gateway_timeout",
            retryable("gateway_timeout", 504, None),
        ),
        (429, "slow_down", retryable("slow_down", 429, None)),
    ];
    for (status, code, expected) in rows {
        let host = answering(status, error_body(code));
        assert_eq!(
            MfsAfrica::create_refund(&host, request()),
            Err(expected),
            "{status} {code}"
        );
    }
}

#[test]
fn rate_limit_carries_retry_after() {
    let host = host(|_| {
        Ok(response(
            429,
            &[("retry-after", "7")],
            error_body("rate_limited"),
        ))
    });
    assert_eq!(
        MfsAfrica::create_refund(&host, request()),
        Err(retryable("rate_limited", 429, Some(7_000)))
    );
    let host = host_with_header("Retry-After", "soon");
    assert_eq!(
        MfsAfrica::create_refund(&host, request()),
        Err(retryable("rate_limited", 429, None))
    );
}

fn host_with_header(name: &'static str, value: &'static str) -> FakeHost {
    host(move |_| Ok(response(429, &[(name, value)], error_body("rate_limited"))))
}

#[test]
fn error_fixture_keeps_message_and_trace_id() {
    let host = answering(422, fixture("error_amount_exceeded.json"));
    assert_eq!(
        MfsAfrica::create_refund(&host, request()),
        Err(RefundError::Refused(Refusal {
            kind: RefusalKind::AmountExceeded,
            provider_code: Some("amount_exceeded".into()),
            message: "refund amount exceeds the refundable balance (trace_id tr_9x8y7)".into(),
            http_status: Some(422),
        }))
    );
}

#[test]
fn error_without_provider_body_goes_by_status() {
    let host = answering(400, b"<html>bad gateway</html>".to_vec());
    let err = MfsAfrica::create_refund(&host, request()).unwrap_err();
    assert!(
        matches!(
            err,
            RefundError::Refused(Refusal {
                kind: RefusalKind::Other,
                provider_code: None,
                http_status: Some(400),
                ..
            })
        ),
        "{err:?}"
    );
    let host = answering(502, Vec::new());
    let err = MfsAfrica::create_refund(&host, request()).unwrap_err();
    assert!(
        matches!(
            err,
            RefundError::Retryable(Retryable {
                provider_code: None,
                http_status: Some(502),
                ..
            })
        ),
        "{err:?}"
    );
}

#[test]
fn success_bodies_that_do_not_parse_are_unknown_outcomes() {
    let pending = String::from_utf8(fixture("refund_pending.json")).unwrap();
    let bodies = [
        b"not json".to_vec(),
        b"{}".to_vec(),
        pending.replace("\"pending\"", "\"on_hold\"").into_bytes(),
        pending.replace("\"1500.00\"", "\"1500\"").into_bytes(),
        pending.replace("\"1500.00\"", "\"1500.5\"").into_bytes(),
        pending
            .replace("\"2026-11-25T10:15:31Z\"", "\"yesterday\"")
            .into_bytes(),
    ];
    for body in bodies {
        let host = answering(201, body.clone());
        let err = MfsAfrica::create_refund(&host, request()).unwrap_err();
        assert!(matches!(err, RefundError::UnknownOutcome(_)), "{err:?}");
        let host = answering(200, body);
        let err = MfsAfrica::get_refund(
            &host,
            RefundLookup::ProviderRefundId("rfnd_abc123".into()),
            None,
        )
        .unwrap_err();
        assert!(matches!(err, RefundError::UnknownOutcome(_)), "{err:?}");
    }
    // A success status the spec does not use is not a refund either.
    let host = answering(202, fixture("refund_pending.json"));
    let err = MfsAfrica::create_refund(&host, request()).unwrap_err();
    assert!(matches!(err, RefundError::UnknownOutcome(_)), "{err:?}");
}

#[test]
fn transport_failures_depend_on_the_operation() {
    let failures = [
        HttpError::ConnectFailed("refused".into()),
        HttpError::Timeout,
        HttpError::Transport("reset".into()),
        HttpError::ResponseTooLarge(1 << 20),
        HttpError::Denied("not allowed".into()),
        HttpError::InvalidRequest("bad header".into()),
    ];
    for failure in failures {
        let f = failure.clone();
        let host = host(move |_| Err(f.clone()));
        let create = MfsAfrica::create_refund(&host, request()).unwrap_err();
        let get = MfsAfrica::get_refund(&host, RefundLookup::ExternalRefundId("r-1".into()), None)
            .unwrap_err();
        let is_retryable = |e: &RefundError| {
            matches!(
                e,
                RefundError::Retryable(Retryable {
                    provider_code: None,
                    http_status: None,
                    retry_after_ms: None,
                    ..
                })
            )
        };
        let is_config = |e: &RefundError| refused_before_call(RefusalKind::Configuration)(e);
        match failure {
            HttpError::ConnectFailed(_) => {
                assert!(is_retryable(&create), "{create:?}");
                assert!(is_retryable(&get), "{get:?}");
            }
            HttpError::Timeout | HttpError::Transport(_) | HttpError::ResponseTooLarge(_) => {
                assert!(
                    matches!(create, RefundError::UnknownOutcome(_)),
                    "{create:?}"
                );
                assert!(is_retryable(&get), "{get:?}");
            }
            HttpError::Denied(_) | HttpError::InvalidRequest(_) => {
                assert!(is_config(&create), "{create:?}");
                assert!(is_config(&get), "{get:?}");
            }
        }
    }
}

#[test]
fn get_by_provider_id() {
    let host = answering(200, fixture("refund_failed.json"));
    let refund = MfsAfrica::get_refund(
        &host,
        RefundLookup::ProviderRefundId("rfnd_ugx777".into()),
        None,
    )
    .unwrap();
    assert_eq!(refund.provider_refund_id, "rfnd_ugx777");
    assert_eq!(
        refund.amount,
        Money {
            amount_minor: 5000,
            currency: "UGX".into()
        }
    );
    assert_eq!(refund.provider_status, "failed");
    assert_eq!(refund.updated_at, Some(NOW + 32_000));
    let sent = &host.requests()[0];
    assert_eq!(
        (sent.method, sent.url.as_str()),
        (Method::Get, "http://127.0.0.1:8080/v1/refunds/rfnd_ugx777")
    );
    assert_eq!(sent.body, None);
    let expected = sign::signed_headers(
        "test_api_key",
        b"test_api_secret",
        "GET",
        "/v1/refunds/rfnd_ugx777",
        "2026-11-25T10:15:30Z",
        None,
    );
    assert_eq!(expected.len(), 3, "no Content-Type without a body");
    assert_eq!(sent.headers, with_extra(expected));
}

#[test]
fn get_by_provider_id_encodes_the_path_segment() {
    let host = answering(200, fixture("refund_pending.json"));
    MfsAfrica::get_refund(&host, RefundLookup::ProviderRefundId("a/b c?".into()), None).unwrap();
    assert_eq!(
        host.requests()[0].url,
        "http://127.0.0.1:8080/v1/refunds/a%2Fb%20c%3F"
    );
}

#[test]
fn get_unknown_refund_is_not_found() {
    let host = answering(404, error_body("refund_not_found"));
    assert_eq!(
        MfsAfrica::get_refund(&host, RefundLookup::ProviderRefundId("rfnd_x".into()), None),
        Err(refused(RefusalKind::NotFound, "refund_not_found", 404))
    );
}

#[test]
fn get_by_external_id() {
    let host = answering(200, fixture("refund_list.json"));
    let refund = MfsAfrica::get_refund(
        &host,
        RefundLookup::ExternalRefundId("order-991-r1".into()),
        None,
    )
    .unwrap();
    assert_eq!(refund.status, RefundStatus::Processed);
    assert_eq!(refund.provider_refund_id, "rfnd_abc123");
    let sent = &host.requests()[0];
    assert_eq!(
        sent.url,
        "http://127.0.0.1:8080/v1/refunds?external_refund_id=order-991-r1"
    );
    // Signature: see sign.rs `get_request_known_answer_has_no_content_type`.
    let signed = [
        ("X-Api-Key", "test_api_key"),
        ("X-Timestamp", "2026-11-25T10:15:30Z"),
        (
            "X-Signature",
            "18d0b01f4769d662f8b9f277b571a7752fd884e899e13cb7358b82de386a9e27",
        ),
    ];
    assert_eq!(headers(sent), [&signed[..], EXTRA_HEADERS].concat());
}

#[test]
fn get_by_external_id_not_found_or_invalid() {
    let host = answering(200, fixture("refund_list_empty.json"));
    let err = MfsAfrica::get_refund(&host, RefundLookup::ExternalRefundId("r-404".into()), None)
        .unwrap_err();
    assert!(refused_before_call(RefusalKind::NotFound)(&err), "{err:?}");

    // A list naming another external id is not an answer about ours.
    let host = answering(200, fixture("refund_list.json"));
    let err = MfsAfrica::get_refund(&host, RefundLookup::ExternalRefundId("r-404".into()), None)
        .unwrap_err();
    assert!(refused_before_call(RefusalKind::NotFound)(&err), "{err:?}");

    let host = answering(200, fixture("refund_list.json"));
    for bad in ["", "a&b=c", "r 1", "x".repeat(65).as_str()] {
        let err = MfsAfrica::get_refund(&host, RefundLookup::ExternalRefundId(bad.into()), None)
            .unwrap_err();
        assert!(
            refused_before_call(RefusalKind::InvalidRequest)(&err),
            "{bad:?}: {err:?}"
        );
    }
    assert!(host.requests().is_empty());
}

#[test]
fn describe_matches_the_spec() {
    let info = MfsAfrica::describe();
    assert_eq!(info.id, "mfs-africa");
    let version = if cfg!(feature = "next") {
        "0.3.0"
    } else {
        env!("CARGO_PKG_VERSION")
    };
    assert_eq!(info.version, version);
    assert_eq!(info.version, refundry_mfs_africa::VERSION);
    assert_eq!(info.currencies.len(), 13);
    assert!(
        info.currencies
            .iter()
            .all(|c| refundry_sdk::money::exponent(c).is_some())
    );
    assert!(info.partial_refunds && info.multiple_refunds);
    assert_eq!(info.refund_window_days, Some(180));
    // Spec "Query" and "List (reconciliation)": status queries, ranges of at most 31 days; the
    // spec sets no reversal window.
    assert!(info.status_queries);
    assert_eq!(info.max_list_range_days, Some(31));
    assert_eq!(info.reversal_window_days, None);
}

#[test]
fn only_the_next_build_names_its_version_on_every_request() {
    let host = answering(201, fixture("refund_pending.json"));
    MfsAfrica::create_refund(&host, request()).unwrap();
    let host_get = answering(200, fixture("refund_pending.json"));
    MfsAfrica::get_refund(
        &host_get,
        RefundLookup::ProviderRefundId("rfnd_abc123".into()),
        None,
    )
    .unwrap();
    let host_list = answering(200, fixture("refund_list.json"));
    MfsAfrica::get_refund(
        &host_list,
        RefundLookup::ExternalRefundId("order-991-r1".into()),
        None,
    )
    .unwrap();
    let expected: &[&str] = if cfg!(feature = "next") {
        &["0.3.0"]
    } else {
        &[]
    };
    for sent in [&host, &host_get, &host_list].map(|h| h.requests()[0].clone()) {
        let versions: Vec<&str> = sent
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("X-Plugin-Version"))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(versions, expected, "{} {}", sent.method.as_str(), sent.url);
    }
}

// --- list (reconciliation) ---

/// 09:15:30.250Z to 10:15:30.500Z: neither end on a whole second, as the host may ask.
const LIST_RANGE: TimeRange = TimeRange {
    from: NOW - 3_600_000 + 250,
    to: NOW + 500,
};
/// The range widened to the whole seconds the provider takes.
const LIST_QUERY: &str =
    "created_from=2026-11-25T09:15:30Z&created_to=2026-11-25T10:15:31Z&limit=100";

#[test]
fn list_sends_the_signed_range_request_and_maps_a_page() {
    let host = answering(200, fixture("list_page.json"));
    let page = MfsAfrica::list_refunds(&host, LIST_RANGE, None).unwrap();

    let sent = host.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].method, Method::Get);
    assert_eq!(
        sent[0].url,
        format!("http://127.0.0.1:8080/v1/refunds?{LIST_QUERY}")
    );
    assert_eq!(sent[0].body, None);
    // The signed PATH is the target with its query. Computed independently:
    //   python3 -c 'import hashlib,hmac; e=hashlib.sha256(b"").hexdigest();
    //     s="GET\n/v1/refunds?created_from=2026-11-25T09:15:30Z&created_to=2026-11-25T10:15:31Z&limit=100\n2026-11-25T10:15:30Z\n"+e;
    //     print(hmac.new(b"test_api_secret", s.encode(), hashlib.sha256).hexdigest())'
    let signed = [
        ("X-Api-Key", "test_api_key"),
        ("X-Timestamp", "2026-11-25T10:15:30Z"),
        (
            "X-Signature",
            "f9357fff90e13d2acffa1f3f79b03f5b2865341a00e7a51751d607570a92e282",
        ),
    ];
    assert_eq!(headers(&sent[0]), [&signed[..], EXTRA_HEADERS].concat());

    // rfnd_early (09:15:30.000) is before `from` and rfnd_late (10:15:30.750) at or after `to`:
    // the provider sent them for the widened seconds, the page keeps only the range asked.
    assert_eq!(
        page,
        RefundPage {
            refunds: vec![
                Refund {
                    provider_refund_id: "rfnd_api1".into(),
                    external_refund_id: Some("order-991-r1".into()),
                    original_transaction_id: "txn_8f2k1".into(),
                    amount: Money {
                        amount_minor: 150_000,
                        currency: "KES".into(),
                    },
                    status: RefundStatus::Processed,
                    provider_status: "processed".into(),
                    failure_reason: None,
                    created_at: Some(NOW - 2_130_000),
                    updated_at: Some(NOW - 1_830_000),
                },
                // Made by staff in the portal: no external id, created at 13:00+03:00.
                Refund {
                    provider_refund_id: "rfnd_portal".into(),
                    external_refund_id: None,
                    original_transaction_id: "txn_9c3".into(),
                    amount: Money {
                        amount_minor: 5000,
                        currency: "UGX".into(),
                    },
                    status: RefundStatus::Pending,
                    provider_status: "pending".into(),
                    failure_reason: None,
                    created_at: Some(NOW - 930_000),
                    updated_at: Some(NOW - 930_000),
                },
            ],
            // `has_more`: the cursor is the page's last refund id as the provider sent it, even
            // when that refund was cut from the page.
            next_cursor: Some("rfnd_late".into()),
        }
    );
}

#[test]
fn list_with_a_cursor_asks_for_the_refunds_after_it() {
    let host = answering(200, fixture("list_page_last.json"));
    let page = MfsAfrica::list_refunds(&host, LIST_RANGE, Some("rfnd_late".into())).unwrap();
    let sent = &host.requests()[0];
    assert_eq!(
        sent.url,
        format!("http://127.0.0.1:8080/v1/refunds?{LIST_QUERY}&starting_after=rfnd_late")
    );
    // Computed as above, over the target with `&starting_after=rfnd_late`.
    assert_eq!(
        headers(sent)[2],
        (
            "X-Signature",
            "c8b2396486f0e4dd3bf230a3a7f60b9a0407c99d4d142f954a024e7e444ded1c"
        )
    );
    // No `has_more`: the last page. Its one refund (10:15:30.900) is past the range.
    assert_eq!(
        page,
        RefundPage {
            refunds: vec![],
            next_cursor: None,
        }
    );
    // A cursor is a path-safe refund id: anything else is encoded, never spliced raw.
    let host = answering(200, fixture("list_page_last.json"));
    MfsAfrica::list_refunds(&host, LIST_RANGE, Some("a&limit=1".into())).unwrap();
    assert!(
        host.requests()[0]
            .url
            .ends_with("&limit=100&starting_after=a%26limit%3D1"),
        "{}",
        host.requests()[0].url
    );
}

#[test]
fn list_refuses_a_range_over_31_days_or_empty_before_any_call() {
    const DAY: i64 = 86_400_000;
    let whole = |from: i64, to: i64| TimeRange { from, to };
    for (range, what) in [
        (whole(NOW, NOW + 31 * DAY + 1_000), "31 days and a second"),
        (whole(NOW, NOW + 40 * DAY), "40 days"),
        // Widened to whole seconds it is over 31 days.
        (whole(NOW + 1, NOW + 31 * DAY + 1), "31 days off the second"),
        (whole(NOW, NOW), "empty"),
        (whole(NOW, NOW - 1), "reversed"),
    ] {
        let host = answering(200, fixture("list_page.json"));
        let err = MfsAfrica::list_refunds(&host, range, None).unwrap_err();
        assert!(
            refused_before_call(RefusalKind::InvalidRequest)(&err),
            "{what}: {err:?}"
        );
        assert!(host.requests().is_empty(), "{what} sent a request");
    }
    // Exactly 31 days is allowed, as is one millisecond.
    for range in [whole(NOW, NOW + 31 * DAY), whole(NOW, NOW + 1)] {
        let host = answering(200, fixture("list_page_last.json"));
        assert!(MfsAfrica::list_refunds(&host, range, None).is_ok());
    }
    // An empty cursor is no page the provider gave.
    let host = answering(200, fixture("list_page.json"));
    let err = MfsAfrica::list_refunds(&host, LIST_RANGE, Some(String::new())).unwrap_err();
    assert!(
        refused_before_call(RefusalKind::InvalidRequest)(&err),
        "{err:?}"
    );
}

#[test]
fn list_errors_follow_the_error_table_and_an_unparseable_page_is_an_unknown_outcome() {
    let refusing = answering(400, error_body("invalid_request"));
    assert_eq!(
        MfsAfrica::list_refunds(&refusing, LIST_RANGE, None),
        Err(refused(RefusalKind::InvalidRequest, "invalid_request", 400))
    );
    let unavailable = answering(503, error_body("service_unavailable"));
    assert_eq!(
        MfsAfrica::list_refunds(&unavailable, LIST_RANGE, None),
        Err(retryable("service_unavailable", 503, None))
    );
    // A list only reads: a lost answer is retried, never an unknown outcome.
    let timing_out = host(|_| Err(HttpError::Timeout));
    let err = MfsAfrica::list_refunds(&timing_out, LIST_RANGE, None).unwrap_err();
    assert!(matches!(err, RefundError::Retryable(_)), "{err:?}");
    // Pages that are not the spec's: no `has_more`, or more promised after an empty page.
    for body in [
        fixture("refund_list.json"),
        br#"{"data": [], "has_more": true}"#.to_vec(),
        b"not json".to_vec(),
    ] {
        let host = answering(200, body);
        let err = MfsAfrica::list_refunds(&host, LIST_RANGE, None).unwrap_err();
        assert!(matches!(err, RefundError::UnknownOutcome(_)), "{err:?}");
    }
}

// --- webhooks ---

const WEBHOOK_TS: &str = "2026-11-25T10:20:00Z";
const WEBHOOK_TS_MS: i64 = NOW + 270_000;
/// See sign.rs `webhook_known_answer` for how it was computed.
const WEBHOOK_SIG: &str = "9d732ba2a4743f2e149064a33f1e032a4f1f5da237559018c456568a896081c3";

fn webhook_headers(sig: &str, ts: &str, event_id: &str) -> Vec<(String, String)> {
    vec![
        // Names as a proxy might deliver them: any case.
        ("x-mfs-signature".into(), sig.into()),
        ("X-MFS-TIMESTAMP".into(), ts.into()),
        ("X-Mfs-Event-Id".into(), event_id.into()),
        ("content-type".into(), "application/json".into()),
    ]
}

/// A delivery as the host passes it on: `POST` to the plugin's webhook path.
fn webhook(headers: &[(String, String)], body: &[u8]) -> WebhookRequest {
    WebhookRequest {
        method: "POST".into(),
        path: "/v1/webhooks/mfs-africa".into(),
        query: None,
        headers: headers.to_vec(),
        body: body.to_vec(),
    }
}

/// The one event of a delivery (MFS Africa sends one event per delivery).
fn one_event(outcome: WebhookOutcome) -> WebhookEvent {
    match outcome {
        WebhookOutcome::Events(mut events) if events.len() == 1 => events.remove(0),
        other => panic!("expected one event, got {other:?}"),
    }
}

fn webhook_host(now: i64) -> FakeHost {
    host(|_| panic!("webhooks make no calls")).with_now_ms(now)
}

#[test]
fn valid_webhook_is_parsed() {
    let host = webhook_host(WEBHOOK_TS_MS + 10_000);
    let body = fixture("webhook_processed.json");
    let event = one_event(
        MfsAfrica::parse_webhook(
            &host,
            &webhook(&webhook_headers(WEBHOOK_SIG, WEBHOOK_TS, "evt_01"), &body),
        )
        .unwrap(),
    );
    assert_eq!(event.event_id, "evt_01");
    assert_eq!(event.event_type, "refund.status_changed");
    assert_eq!(event.occurred_at, Some(WEBHOOK_TS_MS));
    assert_eq!(event.refund.status, RefundStatus::Processed);
    assert_eq!(event.refund.updated_at, Some(WEBHOOK_TS_MS));
    assert_eq!(event.refund.amount.amount_minor, 150_000);
}

#[test]
fn forged_webhooks_are_rejected() {
    let host = webhook_host(WEBHOOK_TS_MS);
    let body = fixture("webhook_processed.json");
    let mut tampered = body.clone();
    tampered[body.len() - 5] = b' ';
    let other_secret = sign::webhook_signature(b"guess", WEBHOOK_TS, &body);
    for (sig, ts, body) in [
        (WEBHOOK_SIG, WEBHOOK_TS, &tampered),
        (WEBHOOK_SIG, "2026-11-25T10:20:01Z", &body),
        (other_secret.as_str(), WEBHOOK_TS, &body),
        (&WEBHOOK_SIG.to_uppercase(), WEBHOOK_TS, &body),
        ("", WEBHOOK_TS, &body),
    ] {
        assert_eq!(
            MfsAfrica::parse_webhook(&host, &webhook(&webhook_headers(sig, ts, "evt_01"), body)),
            Err(WebhookError::InvalidSignature)
        );
    }
}

/// `webhook_processed.json` as another event type, signed with `secret` at [`WEBHOOK_TS`].
fn other_event_type(secret: &[u8]) -> (Vec<(String, String)>, Vec<u8>) {
    let body = String::from_utf8(fixture("webhook_processed.json"))
        .unwrap()
        .replace("refund.status_changed", "payout.completed")
        .into_bytes();
    let sig = sign::webhook_signature(secret, WEBHOOK_TS, &body);
    (webhook_headers(&sig, WEBHOOK_TS, "evt_01"), body)
}

#[test]
fn a_verified_webhook_of_another_event_type_is_ignored() {
    let host = webhook_host(WEBHOOK_TS_MS);
    let (headers, body) = other_event_type(b"test_webhook_secret");
    match MfsAfrica::parse_webhook(&host, &webhook(&headers, &body)) {
        Ok(WebhookOutcome::Ignored(reason)) => {
            assert!(reason.contains("payout.completed"), "{reason}")
        }
        other => panic!("expected ignored, got {other:?}"),
    }
    // Ignored only once genuine: its type is not even read otherwise.
    let (headers, body) = other_event_type(b"guess");
    assert_eq!(
        MfsAfrica::parse_webhook(&host, &webhook(&headers, &body)),
        Err(WebhookError::InvalidSignature)
    );
    // And a genuine but stale one is still stale.
    let (headers, body) = other_event_type(b"test_webhook_secret");
    let host = webhook_host(WEBHOOK_TS_MS + 301_000);
    assert_eq!(
        MfsAfrica::parse_webhook(&host, &webhook(&headers, &body)),
        Err(WebhookError::StaleTimestamp(301))
    );
}

#[test]
fn stale_webhooks_are_rejected_either_way() {
    let body = fixture("webhook_processed.json");
    let headers = webhook_headers(WEBHOOK_SIG, WEBHOOK_TS, "evt_01");
    for (offset_ms, expected) in [
        (300_000, None),
        (-300_000, None),
        (301_000, Some(301)),
        (-301_000, Some(-301)),
        (86_400_000, Some(86_400)),
    ] {
        let host = webhook_host(WEBHOOK_TS_MS + offset_ms);
        let got = MfsAfrica::parse_webhook(&host, &webhook(&headers, &body));
        match expected {
            None => assert!(got.is_ok(), "{offset_ms}: {got:?}"),
            Some(s) => assert_eq!(got, Err(WebhookError::StaleTimestamp(s)), "{offset_ms}"),
        }
    }
}

#[test]
fn missing_headers_are_named() {
    let host = webhook_host(WEBHOOK_TS_MS);
    let body = fixture("webhook_processed.json");
    for name in ["X-MFS-Signature", "X-MFS-Timestamp", "X-MFS-Event-Id"] {
        let headers: Vec<_> = webhook_headers(WEBHOOK_SIG, WEBHOOK_TS, "evt_01")
            .into_iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case(name))
            .collect();
        assert_eq!(
            MfsAfrica::parse_webhook(&host, &webhook(&headers, &body)),
            Err(WebhookError::MissingHeader(name.into()))
        );
    }
}

#[test]
fn malformed_but_signed_webhooks_are_malformed() {
    let host = webhook_host(WEBHOOK_TS_MS);
    let good = String::from_utf8(fixture("webhook_processed.json")).unwrap();
    let cases = [
        ("evt_01", "not json".to_string()),
        ("evt_01", r#"{"event_id": "evt_01"}"#.to_string()),
        ("evt_02", good.clone()),
        ("evt_01", good.replace("\"processed\"", "\"settled\"")),
        ("evt_01", good.replace("\"1500.00\"", "\"1500.0\"")),
        (
            "evt_01",
            good.replace(
                "\"occurred_at\": \"2026-11-25T10:20:00Z\"",
                "\"occurred_at\": \"now\"",
            ),
        ),
    ];
    for (event_id, body) in cases {
        let sig = sign::webhook_signature(b"test_webhook_secret", WEBHOOK_TS, body.as_bytes());
        let got = MfsAfrica::parse_webhook(
            &host,
            &webhook(
                &webhook_headers(&sig, WEBHOOK_TS, event_id),
                body.as_bytes(),
            ),
        );
        assert!(
            matches!(got, Err(WebhookError::Malformed(_))),
            "{event_id} {body}: {got:?}"
        );
    }
    // A signed but unparseable timestamp is malformed too, not stale.
    let sig = sign::webhook_signature(b"test_webhook_secret", "yesterday", good.as_bytes());
    let got = MfsAfrica::parse_webhook(
        &host,
        &webhook(
            &webhook_headers(&sig, "yesterday", "evt_01"),
            good.as_bytes(),
        ),
    );
    assert!(matches!(got, Err(WebhookError::Malformed(_))), "{got:?}");
}

#[test]
fn webhook_without_secret_is_rejected_and_logged() {
    let mut host = webhook_host(WEBHOOK_TS_MS);
    host.remove_config("webhook_secret");
    let body = fixture("webhook_processed.json");
    assert_eq!(
        MfsAfrica::parse_webhook(
            &host,
            &webhook(&webhook_headers(WEBHOOK_SIG, WEBHOOK_TS, "evt_01"), &body)
        ),
        Err(WebhookError::InvalidSignature)
    );
    let logs = host.logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].level, Level::Error);
    assert!(logs[0].message.contains("webhook_secret"));
}

#[test]
fn fake_host_clock_is_what_gets_signed() {
    let host = answering(201, fixture("refund_pending.json"));
    host.advance_ms(61_500);
    MfsAfrica::create_refund(&host, request()).unwrap();
    assert_eq!(host.requests()[0].headers[1].1, "2026-11-25T10:16:31Z");
    assert_eq!(host.now_ms(), NOW + 61_500);
}
