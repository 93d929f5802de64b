//! The plugin's flows, run natively against `FakeHost` with the JSON fixtures in `fixtures/`.

use std::collections::VecDeque;
use std::sync::Mutex;

use refundry_pagoefectivo::{PagoEfectivo, TOKEN_KEY, sign};
use refundry_sdk::http::{self, HttpError, Method};
use refundry_sdk::testing::{FakeHost, response};
use refundry_sdk::{
    Host, Level, Money, Provider, Refund, RefundError, RefundLookup, RefundPage, RefundRequest,
    RefundStatus, Refusal, RefusalKind, Retryable, TimeRange, WebhookError, WebhookEvent,
    WebhookOutcome, WebhookRequest,
};

/// 2026-11-25T10:15:30Z = 05:15:30-05:00 (`date -u -d 2026-11-25T10:15:30Z +%s`).
const NOW: i64 = 1_795_601_730_000;
const BASE: &str = "http://127.0.0.1:8080";
const AUTH_URL: &str = "http://127.0.0.1:8080/v1/authorizations";
/// The fixture token lives 2 h (05:15:30 to 07:15:30 Lima): margin min(60 s, 12 min) = 60 s.
const REFRESH_AT: i64 = NOW + 7_200_000 - 60_000;
/// See sign.rs `spec_example_canonical_and_signature` for how it was computed.
const CREATE_SIG: &str = "c8d84c46b168c446c236aa777adb49ae3e1062784ebfc8fc0d7156b5369162c1";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture_str(name: &str) -> String {
    String::from_utf8(fixture(name)).unwrap()
}

fn host(
    responder: impl Fn(&http::Request) -> Result<http::Response, HttpError> + Send + Sync + 'static,
) -> FakeHost {
    FakeHost::new()
        .with_now_ms(NOW)
        .with_config("base_url", BASE)
        .with_config("id_service", "1024")
        .with_config("access_key", "AK1")
        .with_config("secret_key", "test_secret_key")
        .with_responder(responder)
}

fn is_auth(req: &http::Request) -> bool {
    req.url.ends_with("/v1/authorizations")
}

/// Authorizes with the fixture token and answers every other call with `status` and `body`.
fn answering(status: u16, body: Vec<u8>) -> FakeHost {
    host(move |req| {
        Ok(if is_auth(req) {
            response(201, &[], fixture("auth_token.json"))
        } else {
            response(status, &[], body.clone())
        })
    })
}

/// Answers requests with `answers` in order; a request beyond them fails the test.
fn scripted(answers: Vec<(u16, Vec<u8>)>) -> FakeHost {
    let queue = Mutex::new(VecDeque::from(answers));
    host(move |req| {
        let (status, body) = queue
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| panic!("unexpected request to {}", req.url));
        Ok(response(status, &[], body))
    })
}

fn token_answer(token: &str) -> (u16, Vec<u8>) {
    (
        201,
        fixture_str("auth_token.json")
            .replace("tok-1", token)
            .into_bytes(),
    )
}

fn request() -> RefundRequest {
    RefundRequest {
        original_transaction_id: "81234567".into(),
        external_refund_id: "order-991-r1".into(),
        amount: Money {
            amount_minor: 16_050,
            currency: "PEN".into(),
        },
        reason: Some("producto devuelto".into()),
        order_id: Some("ORDER-991".into()),
    }
}

fn pending_refund() -> Refund {
    Refund {
        provider_refund_id: "PE-RF-000123".into(),
        external_refund_id: Some("order-991-r1".into()),
        original_transaction_id: "81234567".into(),
        amount: Money {
            amount_minor: 16_050,
            currency: "PEN".into(),
        },
        status: RefundStatus::Pending,
        provider_status: "pending".into(),
        failure_reason: None,
        created_at: Some(NOW + 1_000),
        updated_at: Some(NOW + 1_000),
    }
}

fn headers(req: &http::Request) -> Vec<(&str, &str)> {
    req.headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn bearer(req: &http::Request) -> &str {
    http::header(&req.headers, "Authorization").unwrap()
}

fn auth_count(host: &FakeHost) -> usize {
    host.requests().iter().filter(|r| is_auth(r)).count()
}

#[test]
fn create_sends_the_byte_exact_requests() {
    let host = answering(201, fixture("refund_pending.json"));
    assert_eq!(
        PagoEfectivo::create_refund(&host, request()),
        Ok(pending_refund())
    );
    let sent = host.requests();
    assert_eq!(sent.len(), 2);

    // hashString: see sign.rs `auth_hash_known_answer`.
    assert_eq!(
        (sent[0].method, sent[0].url.as_str()),
        (Method::Post, AUTH_URL)
    );
    let auth = fixture("auth_request.json");
    assert_eq!(sent[0].body.as_deref(), Some(auth.trim_ascii_end()));
    assert_eq!(headers(&sent[0]), [("Content-Type", "application/json")]);

    assert_eq!(sent[1].method, Method::Post);
    assert_eq!(sent[1].url, "http://127.0.0.1:8080/v1/refunds");
    let body = fixture("create_request.json");
    assert_eq!(sent[1].body.as_deref(), Some(body.trim_ascii_end()));
    assert_eq!(
        headers(&sent[1]),
        [
            ("Authorization", "Bearer tok-1"),
            ("PE-Signature", CREATE_SIG),
            ("Content-Type", "application/json"),
        ]
    );
}

#[test]
fn create_replay_200_is_the_existing_refund() {
    let host = answering(200, fixture("refund_pending.json"));
    assert_eq!(
        PagoEfectivo::create_refund(&host, request()),
        Ok(pending_refund())
    );
}

#[test]
fn absent_or_empty_reason_is_neither_sent_nor_signed() {
    for reason in [None, Some(String::new())] {
        let host = answering(201, fixture("refund_pending.json"));
        let mut req = request();
        req.reason = reason;
        req.amount.amount_minor = 5;
        req.amount.currency = "USD".into();
        // The 201 echoes PEN 160.50; the plugin reports what the provider says.
        PagoEfectivo::create_refund(&host, req).unwrap();
        let sent = &host.requests()[1];
        assert_eq!(
            sent.body.as_deref(),
            Some(&br#"{"transactionId":"81234567","refundAmount":"0.05","currency":"USD","transactionCode":"ORDER-991","refundId":"order-991-r1"}"#[..])
        );
        let canonical = "currency=USD&refundAmount=0.05&refundId=order-991-r1&transactionCode=ORDER-991&transactionId=81234567";
        assert_eq!(
            http::header(&sent.headers, "PE-Signature"),
            Some(sign::signature(b"test_secret_key", canonical).as_str())
        );
    }
}

#[test]
fn token_is_cached_and_reused_across_creates() {
    let host = answering(201, fixture("refund_pending.json"));
    for _ in 0..5 {
        PagoEfectivo::create_refund(&host, request()).unwrap();
        host.advance_ms(60_000);
    }
    PagoEfectivo::get_refund(
        &host,
        RefundLookup::ProviderRefundId("PE-RF-000123".into()),
        None,
    )
    .unwrap_err();
    let sent = host.requests();
    assert_eq!(sent.len(), 7);
    assert_eq!(auth_count(&host), 1, "exactly one authorization");
    assert!(sent[1..].iter().all(|r| bearer(r) == "Bearer tok-1"));
    let cached: serde_json::Value =
        serde_json::from_slice(&host.stored(TOKEN_KEY).unwrap()).unwrap();
    assert_eq!(cached["token"], "tok-1");
    assert_eq!(cached["refresh_at_ms"], REFRESH_AT);
}

#[test]
fn token_is_refreshed_once_the_clock_passes_expiry_minus_margin() {
    let host = answering(201, fixture("refund_pending.json"));
    PagoEfectivo::create_refund(&host, request()).unwrap();
    host.set_now_ms(REFRESH_AT - 1);
    PagoEfectivo::create_refund(&host, request()).unwrap();
    assert_eq!(auth_count(&host), 1);
    host.set_now_ms(REFRESH_AT);
    host.clear_records();
    PagoEfectivo::create_refund(&host, request()).unwrap();
    let sent = host.requests();
    assert_eq!(sent.len(), 2);
    assert!(is_auth(&sent[0]));
    // The new authorization is dated by the host clock: 07:14:30 Lima.
    let auth: serde_json::Value = serde_json::from_slice(sent[0].body.as_ref().unwrap()).unwrap();
    assert_eq!(auth["dateRequest"], "2026-11-25T07:14:30-05:00");
}

#[test]
fn short_lived_token_uses_a_tenth_of_its_lifetime_as_margin() {
    // A sandbox token of 10 s: margin 1 s, so it is reused until 9 s after it was issued.
    let short = fixture_str("auth_token.json").replace("07:15:30", "05:15:40");
    let host = host(move |req| {
        Ok(if is_auth(req) {
            response(201, &[], short.clone())
        } else {
            response(201, &[], fixture("refund_pending.json"))
        })
    });
    PagoEfectivo::create_refund(&host, request()).unwrap();
    host.set_now_ms(NOW + 8_999);
    PagoEfectivo::create_refund(&host, request()).unwrap();
    assert_eq!(auth_count(&host), 1);
    host.set_now_ms(NOW + 9_000);
    PagoEfectivo::create_refund(&host, request()).unwrap();
    assert_eq!(auth_count(&host), 2);
}

#[test]
fn token_of_other_credentials_or_unreadable_is_not_used() {
    let mut host = answering(201, fixture("refund_pending.json"));
    PagoEfectivo::create_refund(&host, request()).unwrap();
    host.set_config("access_key", "AK2");
    PagoEfectivo::create_refund(&host, request()).unwrap();
    assert_eq!(auth_count(&host), 2);
    host.storage_set(TOKEN_KEY, b"not json").unwrap();
    PagoEfectivo::create_refund(&host, request()).unwrap();
    assert_eq!(auth_count(&host), 3);
}

fn error_body(code: &str) -> Vec<u8> {
    format!(r#"{{"code": "{code}", "message": "msg {code}", "data": []}}"#).into_bytes()
}

#[test]
fn expired_token_is_reauthorized_once_and_the_call_retried_once() {
    let host = scripted(vec![
        token_answer("tok-1"),
        (401, error_body("106")),
        token_answer("tok-2"),
        (201, fixture("refund_pending.json")),
    ]);
    assert_eq!(
        PagoEfectivo::create_refund(&host, request()),
        Ok(pending_refund())
    );
    let sent = host.requests();
    assert_eq!(sent.len(), 4);
    assert!(is_auth(&sent[0]) && is_auth(&sent[2]));
    assert_eq!(bearer(&sent[1]), "Bearer tok-1");
    assert_eq!(bearer(&sent[3]), "Bearer tok-2");
    assert_eq!(sent[1].body, sent[3].body);
    let cached: serde_json::Value =
        serde_json::from_slice(&host.stored(TOKEN_KEY).unwrap()).unwrap();
    assert_eq!(cached["token"], "tok-2");

    // A second 106 gives up: exactly one re-authorization, one retry.
    for lookup in [None, Some(RefundLookup::ExternalRefundId("r-1".into()))] {
        let host = scripted(vec![
            token_answer("tok-1"),
            (401, error_body("106")),
            token_answer("tok-2"),
            (401, error_body("106")),
        ]);
        let got = match lookup {
            None => PagoEfectivo::create_refund(&host, request()),
            Some(lookup) => PagoEfectivo::get_refund(&host, lookup, None),
        };
        assert_eq!(got, Err(refused(RefusalKind::Authentication, "106", 401)));
        assert_eq!(host.requests().len(), 4);
    }
}

#[test]
fn authorization_errors_are_refused_before_the_call() {
    for code in ["105", "108"] {
        let host = scripted(vec![(401, error_body(code))]);
        assert_eq!(
            PagoEfectivo::create_refund(&host, request()),
            Err(refused(RefusalKind::Authentication, code, 401))
        );
        assert_eq!(host.requests().len(), 1);
        assert_eq!(host.stored(TOKEN_KEY), None);
    }
    let host = scripted(vec![(503, error_body("999"))]);
    assert_eq!(
        PagoEfectivo::create_refund(&host, request()),
        Err(retryable("999", 503))
    );
    // An authorization answer that does not parse: no refund was asked for, so retryable.
    for body in [
        b"{}".to_vec(),
        fixture_str("auth_token.json")
            .replace("\"100\"", "\"101\"")
            .into_bytes(),
        fixture_str("auth_token.json")
            .replace("07:15:30-05:00", "later")
            .into_bytes(),
    ] {
        let host = scripted(vec![(201, body)]);
        let err = PagoEfectivo::create_refund(&host, request()).unwrap_err();
        assert!(matches!(err, RefundError::Retryable(_)), "{err:?}");
    }
}

fn refused(kind: RefusalKind, code: &str, status: u16) -> RefundError {
    RefundError::Refused(Refusal {
        kind,
        provider_code: Some(code.into()),
        message: format!("msg {code}"),
        http_status: Some(status),
    })
}

fn retryable(code: &str, status: u16) -> RefundError {
    RefundError::Retryable(Retryable {
        provider_code: Some(code.into()),
        message: format!("msg {code}"),
        http_status: Some(status),
        retry_after_ms: None,
    })
}

#[test]
fn every_error_code_is_mapped() {
    use RefusalKind as K;
    let rows = [
        (400, "111", refused(K::InvalidRequest, "111", 400)),
        (401, "105", refused(K::Authentication, "105", 401)),
        (401, "107", refused(K::Authentication, "107", 401)),
        (401, "108", refused(K::Authentication, "108", 401)),
        (403, "109", refused(K::Forbidden, "109", 403)),
        (404, "120", refused(K::InvalidTransaction, "120", 404)),
        (404, "121", refused(K::NotFound, "121", 404)),
        (409, "131", refused(K::IdempotencyConflict, "131", 409)),
        (422, "132", refused(K::AmountExceeded, "132", 422)),
        (422, "133", refused(K::CurrencyMismatch, "133", 422)),
        (422, "134", refused(K::WindowExpired, "134", 422)),
        (422, "135", refused(K::NotSettled, "135", 422)),
        (422, "136", refused(K::InsufficientFunds, "136", 422)),
        (500, "999", retryable("999", 500)),
        (503, "999", retryable("999", 503)),
        // Any 5xx is retryable, whatever its code.
        (502, "111", retryable("111", 502)),
        // Codes outside the spec: the status class decides, the code is kept.
        (418, "777", refused(K::Other, "777", 418)),
        (422, "140", refused(K::Other, "140", 422)),
        (504, "998", retryable("998", 504)),
        (429, "150", retryable("150", 429)),
    ];
    for (status, code, expected) in rows {
        let host = answering(status, error_body(code));
        assert_eq!(
            PagoEfectivo::create_refund(&host, request()),
            Err(expected),
            "{status} {code}"
        );
    }
}

#[test]
fn error_fixture_keeps_message_field_details_and_retry_after() {
    let provider = answering(422, fixture("error_amount_exceeded.json"));
    assert_eq!(
        PagoEfectivo::create_refund(&provider, request()),
        Err(RefundError::Refused(Refusal {
            kind: RefusalKind::AmountExceeded,
            provider_code: Some("132".into()),
            message: "El monto excede el saldo reembolsable. (refundAmount: maximo 100.00)".into(),
            http_status: Some(422),
        }))
    );
    let host = host(|req| {
        Ok(if is_auth(req) {
            response(201, &[], fixture("auth_token.json"))
        } else {
            response(503, &[("retry-after", "7")], error_body("999"))
        })
    });
    let err = PagoEfectivo::create_refund(&host, request()).unwrap_err();
    assert!(
        matches!(
            err,
            RefundError::Retryable(Retryable {
                retry_after_ms: Some(7_000),
                ..
            })
        ),
        "{err:?}"
    );
}

#[test]
fn error_without_provider_body_goes_by_status() {
    let host = answering(400, b"<html>bad request</html>".to_vec());
    let err = PagoEfectivo::create_refund(&host, request()).unwrap_err();
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
    let err = PagoEfectivo::create_refund(&host, request()).unwrap_err();
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

fn refused_before_call(kind: RefusalKind) -> impl Fn(&RefundError) -> bool {
    move |e| matches!(e, RefundError::Refused(Refusal { kind: k, provider_code: None, http_status: None, .. }) if *k == kind)
}

#[test]
fn invalid_requests_are_refused_before_any_call() {
    type Change = Box<dyn Fn(&mut RefundRequest)>;
    use RefusalKind as K;
    let cases: Vec<(Change, RefusalKind)> = vec![
        (
            Box::new(|r| r.external_refund_id = String::new()),
            K::InvalidRequest,
        ),
        (
            Box::new(|r| r.external_refund_id = "a".repeat(65)),
            K::InvalidRequest,
        ),
        (
            Box::new(|r| r.external_refund_id = "a b".into()),
            K::InvalidRequest,
        ),
        (
            Box::new(|r| r.external_refund_id = "é".into()),
            K::InvalidRequest,
        ),
        (
            Box::new(|r| r.original_transaction_id = String::new()),
            K::InvalidRequest,
        ),
        (Box::new(|r| r.order_id = None), K::InvalidRequest),
        (
            Box::new(|r| r.order_id = Some(String::new())),
            K::InvalidRequest,
        ),
        (
            Box::new(|r| r.reason = Some("é".repeat(201))),
            K::InvalidRequest,
        ),
        (Box::new(|r| r.amount.amount_minor = 0), K::InvalidRequest),
        (
            Box::new(|r| r.amount.amount_minor = -100),
            K::InvalidRequest,
        ),
        (
            Box::new(|r| r.amount.currency = "EUR".into()),
            K::CurrencyMismatch,
        ),
        (
            Box::new(|r| r.amount.currency = "pen".into()),
            K::CurrencyMismatch,
        ),
        (
            Box::new(|r| r.amount.currency = "CLP".into()),
            K::CurrencyMismatch,
        ),
    ];
    for (i, (change, kind)) in cases.into_iter().enumerate() {
        let host = answering(201, fixture("refund_pending.json"));
        let mut req = request();
        change(&mut req);
        let err = PagoEfectivo::create_refund(&host, req).unwrap_err();
        assert!(refused_before_call(kind)(&err), "case {i}: {err:?}");
        assert!(host.requests().is_empty(), "case {i} sent a request");
        assert_eq!(host.stored(TOKEN_KEY), None);
    }
    let host = answering(201, fixture("refund_pending.json"));
    let mut req = request();
    req.order_id = None;
    let err = PagoEfectivo::create_refund(&host, req).unwrap_err();
    assert!(format!("{err:?}").contains("PagoEfectivo needs the merchant order id"));
    // The limits themselves are allowed.
    let mut req = request();
    req.external_refund_id = "A-z_9".repeat(12) + "abcd";
    req.reason = Some("é".repeat(200));
    assert!(PagoEfectivo::create_refund(&host, req).is_ok());
}

#[test]
fn missing_or_invalid_configuration_is_a_configuration_refusal() {
    for key in ["base_url", "id_service", "access_key", "secret_key"] {
        let mut host = answering(201, fixture("refund_pending.json"));
        host.remove_config(key);
        let err = PagoEfectivo::create_refund(&host, request()).unwrap_err();
        assert!(
            refused_before_call(RefusalKind::Configuration)(&err),
            "{key}: {err:?}"
        );
        assert!(format!("{err:?}").contains(key));
        let err = PagoEfectivo::get_refund(&host, RefundLookup::ProviderRefundId("x".into()), None)
            .unwrap_err();
        assert!(
            refused_before_call(RefusalKind::Configuration)(&err),
            "{key}: {err:?}"
        );
        let range = TimeRange {
            from: NOW,
            to: NOW + 60_000,
        };
        let err = PagoEfectivo::list_refunds(&host, range, None).unwrap_err();
        assert!(
            refused_before_call(RefusalKind::Configuration)(&err),
            "{key}: {err:?}"
        );
        assert!(host.requests().is_empty());
    }
    for (key, value) in [
        ("id_service", "abc"),
        ("id_service", "-1"),
        ("base_url", "127.0.0.1:8080"),
    ] {
        let mut host = answering(201, fixture("refund_pending.json"));
        host.set_config(key, value);
        let err = PagoEfectivo::create_refund(&host, request()).unwrap_err();
        assert!(
            refused_before_call(RefusalKind::Configuration)(&err),
            "{err:?}"
        );
        assert!(format!("{err:?}").contains(key));
    }
}

#[test]
fn success_bodies_that_do_not_parse_are_unknown_outcomes() {
    let pending = fixture_str("refund_pending.json");
    let bodies = [
        b"not json".to_vec(),
        b"{}".to_vec(),
        pending.replace("\"100\"", "\"111\"").into_bytes(),
        pending.replace("\"pending\"", "\"on_hold\"").into_bytes(),
        pending.replace("\"160.50\"", "\"160.5\"").into_bytes(),
        pending.replace("\"160.50\"", "\"160\"").into_bytes(),
        pending
            .replace("2026-11-25T05:15:31-05:00\",", "ayer\",")
            .into_bytes(),
    ];
    for body in bodies {
        let host = answering(201, body.clone());
        let err = PagoEfectivo::create_refund(&host, request()).unwrap_err();
        assert!(matches!(err, RefundError::UnknownOutcome(_)), "{err:?}");
        let host = answering(200, body);
        let err = PagoEfectivo::get_refund(
            &host,
            RefundLookup::ProviderRefundId("PE-RF-000123".into()),
            None,
        )
        .unwrap_err();
        assert!(matches!(err, RefundError::UnknownOutcome(_)), "{err:?}");
    }
    let host = answering(202, fixture("refund_pending.json"));
    let err = PagoEfectivo::create_refund(&host, request()).unwrap_err();
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
    for failure in failures {
        // The refund calls fail; the authorization succeeds.
        let f = failure.clone();
        let provider = host(move |req| {
            if is_auth(req) {
                Ok(response(201, &[], fixture("auth_token.json")))
            } else {
                Err(f.clone())
            }
        });
        let create = PagoEfectivo::create_refund(&provider, request()).unwrap_err();
        let get = PagoEfectivo::get_refund(
            &provider,
            RefundLookup::ExternalRefundId("r-1".into()),
            None,
        )
        .unwrap_err();
        // The authorization itself fails: nothing about a refund was sent.
        let f = failure.clone();
        let auth_host = host(move |_| Err(f.clone()));
        let auth = PagoEfectivo::create_refund(&auth_host, request()).unwrap_err();
        match failure {
            HttpError::ConnectFailed(_) => {
                assert!(is_retryable(&create), "{create:?}");
                assert!(is_retryable(&get), "{get:?}");
                assert!(is_retryable(&auth), "{auth:?}");
            }
            HttpError::Timeout | HttpError::Transport(_) | HttpError::ResponseTooLarge(_) => {
                assert!(
                    matches!(create, RefundError::UnknownOutcome(_)),
                    "{create:?}"
                );
                assert!(is_retryable(&get), "{get:?}");
                assert!(is_retryable(&auth), "{auth:?}");
            }
            HttpError::Denied(_) | HttpError::InvalidRequest(_) => {
                assert!(is_config(&create), "{create:?}");
                assert!(is_config(&get), "{get:?}");
                assert!(is_config(&auth), "{auth:?}");
            }
        }
    }
}

#[test]
fn get_by_provider_id() {
    let host = answering(200, fixture("refund_rejected.json"));
    let refund = PagoEfectivo::get_refund(
        &host,
        RefundLookup::ProviderRefundId("PE-RF-000123".into()),
        None,
    )
    .unwrap();
    assert_eq!(
        refund,
        Refund {
            provider_refund_id: "PE-RF-000124".into(),
            external_refund_id: Some("r-usd".into()),
            original_transaction_id: "81234568".into(),
            amount: Money {
                amount_minor: 5,
                currency: "USD".into()
            },
            status: RefundStatus::Failed,
            provider_status: "rejected".into(),
            failure_reason: Some("cuenta bancaria cerrada".into()),
            created_at: Some(NOW + 1_000),
            updated_at: Some(NOW + 32_000),
        }
    );
    let sent = &host.requests()[1];
    assert_eq!(
        (sent.method, sent.url.as_str()),
        (Method::Get, "http://127.0.0.1:8080/v1/refunds/PE-RF-000123")
    );
    assert_eq!(sent.body, None);
    // Signature: see sign.rs `bodiless_requests_sign_the_target`.
    assert_eq!(
        headers(sent),
        [
            ("Authorization", "Bearer tok-1"),
            (
                "PE-Signature",
                "c309d86dafccfcdc5dcc30ff7c0ad2315b17db7230ed3dc4cbc738a835123a3f"
            ),
        ]
    );
}

#[test]
fn get_signs_the_target_as_sent() {
    let mut host = answering(200, fixture("refund_pending.json"));
    PagoEfectivo::get_refund(&host, RefundLookup::ProviderRefundId("a/b c?".into()), None).unwrap();
    let sent = &host.requests()[1];
    assert_eq!(sent.url, "http://127.0.0.1:8080/v1/refunds/a%2Fb%20c%3F");
    let sig = sign::signature(b"test_secret_key", "/v1/refunds/a%2Fb%20c%3F");
    assert_eq!(
        http::header(&sent.headers, "PE-Signature"),
        Some(sig.as_str())
    );

    // A base_url path prefix is part of the request target.
    host.set_config("base_url", "https://pe.example/api/");
    host.clear_records();
    PagoEfectivo::get_refund(&host, RefundLookup::ProviderRefundId("PE-1".into()), None).unwrap();
    let sent = host.requests();
    assert_eq!(sent[0].url, "https://pe.example/api/v1/authorizations");
    assert_eq!(sent[1].url, "https://pe.example/api/v1/refunds/PE-1");
    let sig = sign::signature(b"test_secret_key", "/api/v1/refunds/PE-1");
    assert_eq!(
        http::header(&sent[1].headers, "PE-Signature"),
        Some(sig.as_str())
    );
}

#[test]
fn get_unknown_refund_is_not_found() {
    let host = answering(404, error_body("121"));
    assert_eq!(
        PagoEfectivo::get_refund(
            &host,
            RefundLookup::ProviderRefundId("PE-RF-9".into()),
            None
        ),
        Err(refused(RefusalKind::NotFound, "121", 404))
    );
}

#[test]
fn get_by_external_id() {
    let host = answering(200, fixture("refund_list.json"));
    let refund = PagoEfectivo::get_refund(
        &host,
        RefundLookup::ExternalRefundId("order-991-r1".into()),
        None,
    )
    .unwrap();
    assert_eq!(refund.status, RefundStatus::Processed);
    assert_eq!(refund.provider_status, "completed");
    assert_eq!(refund.provider_refund_id, "PE-RF-000123");
    assert_eq!(refund.updated_at, Some(NOW + 150_000));
    let sent = &host.requests()[1];
    assert_eq!(
        sent.url,
        "http://127.0.0.1:8080/v1/refunds?refundId=order-991-r1"
    );
    // Signature: see sign.rs `bodiless_requests_sign_the_target`.
    assert_eq!(
        headers(sent),
        [
            ("Authorization", "Bearer tok-1"),
            (
                "PE-Signature",
                "845eda4f9e39558a5f902bb98c62e5b8b190d877e869e689de438c34bb2f3ad0"
            ),
        ]
    );
}

#[test]
fn get_by_external_id_not_found_or_invalid() {
    let host = answering(200, fixture("refund_list_empty.json"));
    let err = PagoEfectivo::get_refund(&host, RefundLookup::ExternalRefundId("r-404".into()), None)
        .unwrap_err();
    assert!(refused_before_call(RefusalKind::NotFound)(&err), "{err:?}");

    // A list naming another refund id is not an answer about ours.
    let host = answering(200, fixture("refund_list.json"));
    let err = PagoEfectivo::get_refund(&host, RefundLookup::ExternalRefundId("r-404".into()), None)
        .unwrap_err();
    assert!(refused_before_call(RefusalKind::NotFound)(&err), "{err:?}");

    let host = answering(200, fixture("refund_list.json"));
    for bad in ["", "a&b=c", "r 1", "x".repeat(65).as_str()] {
        let err = PagoEfectivo::get_refund(&host, RefundLookup::ExternalRefundId(bad.into()), None)
            .unwrap_err();
        assert!(
            refused_before_call(RefusalKind::InvalidRequest)(&err),
            "{bad:?}: {err:?}"
        );
    }
    let err = PagoEfectivo::get_refund(&host, RefundLookup::ProviderRefundId(String::new()), None)
        .unwrap_err();
    assert!(
        refused_before_call(RefusalKind::InvalidRequest)(&err),
        "{err:?}"
    );
    assert!(host.requests().is_empty());
}

#[test]
fn describe_matches_the_spec() {
    let info = PagoEfectivo::describe();
    assert_eq!(info.id, "pagoefectivo");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.display_name, "PagoEfectivo");
    assert_eq!(info.currencies, ["PEN", "USD"]);
    assert!(info.partial_refunds && info.multiple_refunds);
    assert_eq!(info.refund_window_days, Some(180));
    // Spec "Query" and "List (reconciliation)": status queries, ranges of at most 31 days; the
    // spec sets no reversal window.
    assert!(info.status_queries);
    assert_eq!(info.max_list_range_days, Some(31));
    assert_eq!(info.reversal_window_days, None);
}

// --- list (reconciliation) ---

/// 09:15:30.250Z to 10:15:30.500Z (04:15:30.250 to 05:15:30.500 in Lima): neither end on a whole
/// second, as the host may ask.
const LIST_RANGE: TimeRange = TimeRange {
    from: NOW - 3_600_000 + 250,
    to: NOW + 500,
};
/// The range widened to the whole seconds the provider takes, in Lima time.
const LIST_DATES: &str = "dateFrom=2026-11-25T04:15:30-05:00&dateTo=2026-11-25T05:15:31-05:00";

#[test]
fn list_sends_the_signed_range_request_in_lima_time_and_maps_a_page() {
    let host = answering(200, fixture("list_page.json"));
    let page = PagoEfectivo::list_refunds(&host, LIST_RANGE, None).unwrap();

    let sent = host.requests();
    assert_eq!(sent.len(), 2);
    assert!(is_auth(&sent[0]));
    assert_eq!(sent[1].method, Method::Get);
    assert_eq!(
        sent[1].url,
        format!("http://127.0.0.1:8080/v1/refunds?{LIST_DATES}&page=1&pageSize=100")
    );
    assert_eq!(sent[1].body, None);
    // PE-Signature over the target with its query. Computed independently:
    //   python3 -c 'import hmac,hashlib; t="/v1/refunds?dateFrom=2026-11-25T04:15:30-05:00&dateTo=2026-11-25T05:15:31-05:00&page=1&pageSize=100";
    //     print(hmac.new(b"test_secret_key", t.encode(), hashlib.sha256).hexdigest())'
    assert_eq!(
        headers(&sent[1]),
        [
            ("Authorization", "Bearer tok-1"),
            (
                "PE-Signature",
                "78f523603c73e6694fe43936a3e377cefacc1e01bac3f1db6ba1e311701ca34b"
            ),
        ]
    );

    // PE-RF-000100 (04:15:30.000) is before `from` and PE-RF-000125 (05:15:30.750) at or after
    // `to`: sent for the widened seconds, cut back to the range asked.
    assert_eq!(
        page,
        RefundPage {
            refunds: vec![
                Refund {
                    provider_refund_id: "PE-RF-000123".into(),
                    external_refund_id: Some("order-991-r1".into()),
                    original_transaction_id: "81234567".into(),
                    amount: Money {
                        amount_minor: 16_050,
                        currency: "PEN".into(),
                    },
                    status: RefundStatus::Processed,
                    provider_status: "completed".into(),
                    failure_reason: None,
                    created_at: Some(NOW - 2_130_000),
                    updated_at: Some(NOW - 1_830_000),
                },
                // Made in the back office: no refundId of the merchant's.
                Refund {
                    provider_refund_id: "PE-RF-000124".into(),
                    external_refund_id: None,
                    original_transaction_id: "81239999".into(),
                    amount: Money {
                        amount_minor: 1_200,
                        currency: "USD".into(),
                    },
                    status: RefundStatus::Failed,
                    provider_status: "rejected".into(),
                    failure_reason: Some("cuenta cerrada".into()),
                    created_at: Some(NOW - 930_000),
                    updated_at: Some(NOW - 870_000),
                },
            ],
            // Page 1 of 2: the cursor is the next page's number.
            next_cursor: Some("2".into()),
        }
    );
}

#[test]
fn list_with_a_cursor_asks_for_that_page_and_the_last_page_has_no_cursor() {
    let host = answering(200, fixture("list_page_last.json"));
    let page = PagoEfectivo::list_refunds(&host, LIST_RANGE, Some("2".into())).unwrap();
    assert_eq!(
        page,
        RefundPage {
            refunds: vec![],
            next_cursor: None,
        }
    );
    let sent = &host.requests()[1];
    assert_eq!(
        sent.url,
        format!("http://127.0.0.1:8080/v1/refunds?{LIST_DATES}&page=2&pageSize=100")
    );
    // Computed as above, over the target with `page=2`.
    assert_eq!(
        http::header(&sent.headers, "PE-Signature"),
        Some("4e1f6cfeec3076c88fb6f6ae70928047b4aaef790865fc0c139c47f189c0ae2c")
    );
    // A page past the last (the spec: no items) ends the listing too.
    let past = fixture_str("list_page_last.json").replace("\"page\": 2", "\"page\": 3");
    let host = answering(200, past.into_bytes());
    let page = PagoEfectivo::list_refunds(&host, LIST_RANGE, Some("3".into())).unwrap();
    assert_eq!(page.next_cursor, None);
}

#[test]
fn list_dates_are_lima_dates_even_across_midnight() {
    // 2026-11-25T03:00:00Z to 04:00:00Z is still the 24th in Lima.
    let from = NOW - 26_130_000;
    let host = answering(200, fixture("list_page_last.json"));
    PagoEfectivo::list_refunds(
        &host,
        TimeRange {
            from,
            to: from + 3_600_000,
        },
        None,
    )
    .unwrap();
    assert_eq!(
        host.requests()[1].url,
        "http://127.0.0.1:8080/v1/refunds?dateFrom=2026-11-24T22:00:00-05:00&dateTo=2026-11-24T23:00:00-05:00&page=1&pageSize=100"
    );
}

#[test]
fn list_refuses_a_range_over_31_days_empty_or_a_bad_cursor_before_any_call() {
    const DAY: i64 = 86_400_000;
    let range = |from: i64, to: i64| TimeRange { from, to };
    for (range, cursor, what) in [
        (
            range(NOW, NOW + 31 * DAY + 1_000),
            None,
            "31 days and a second",
        ),
        (range(NOW, NOW + 40 * DAY), None, "40 days"),
        (
            range(NOW + 1, NOW + 31 * DAY + 1),
            None,
            "31 days off the second",
        ),
        (range(NOW, NOW), None, "empty"),
        (range(NOW, NOW - 1), None, "reversed"),
        (LIST_RANGE, Some("0"), "page 0"),
        (LIST_RANGE, Some("two"), "not a number"),
        (LIST_RANGE, Some(""), "empty cursor"),
    ] {
        let host = answering(200, fixture("list_page.json"));
        let err = PagoEfectivo::list_refunds(&host, range, cursor.map(String::from)).unwrap_err();
        assert!(
            refused_before_call(RefusalKind::InvalidRequest)(&err),
            "{what}: {err:?}"
        );
        // Not even the authorization is asked for.
        assert!(host.requests().is_empty(), "{what} sent a request");
    }
    for range in [range(NOW, NOW + 31 * DAY), range(NOW, NOW + 1)] {
        let host = answering(200, fixture("list_page_last.json"));
        assert!(PagoEfectivo::list_refunds(&host, range, None).is_ok());
    }
}

#[test]
fn list_errors_follow_the_error_table_and_an_unparseable_page_is_an_unknown_outcome() {
    let refusing = answering(400, error_body("111"));
    assert_eq!(
        PagoEfectivo::list_refunds(&refusing, LIST_RANGE, None),
        Err(refused(RefusalKind::InvalidRequest, "111", 400))
    );
    // An expired token is renewed for a list like for any call.
    let renewing = scripted(vec![
        token_answer("tok-1"),
        (401, error_body("106")),
        token_answer("tok-2"),
        (200, fixture("list_page_last.json")),
    ]);
    assert!(PagoEfectivo::list_refunds(&renewing, LIST_RANGE, None).is_ok());
    assert_eq!(bearer(&renewing.requests()[3]), "Bearer tok-2");
    // A list only reads: a lost answer is retried, never an unknown outcome.
    let timing_out = host(|req| {
        if is_auth(req) {
            Ok(response(201, &[], fixture("auth_token.json")))
        } else {
            Err(HttpError::Timeout)
        }
    });
    let err = PagoEfectivo::list_refunds(&timing_out, LIST_RANGE, None).unwrap_err();
    assert!(matches!(err, RefundError::Retryable(_)), "{err:?}");
    // Not a page: the lookup's list shape, a failure code, no JSON.
    for body in [
        fixture("refund_list.json"),
        fixture_str("list_page.json")
            .replace("\"100\"", "\"111\"")
            .into_bytes(),
        b"not json".to_vec(),
    ] {
        let host = answering(200, body);
        let err = PagoEfectivo::list_refunds(&host, LIST_RANGE, None).unwrap_err();
        assert!(matches!(err, RefundError::UnknownOutcome(_)), "{err:?}");
    }
}

// --- webhooks ---

/// See sign.rs `webhook_known_answer` for how it was computed.
const WEBHOOK_SIG: &str = "498ea99a64fe15deebe5b978189ad723395be3e342b711caf4a1121a2830bfb4";

fn webhook_headers(sig: &str) -> Vec<(String, String)> {
    vec![
        ("content-type".into(), "application/json".into()),
        // Any case, as a proxy might deliver it.
        ("pe-SIGNATURE".into(), sig.into()),
    ]
}

/// A notification as the host passes it on: `POST` to the plugin's webhook path.
fn webhook(headers: &[(String, String)], body: &[u8]) -> WebhookRequest {
    WebhookRequest {
        method: "POST".into(),
        path: "/v1/webhooks/pagoefectivo".into(),
        query: None,
        headers: headers.to_vec(),
        body: body.to_vec(),
    }
}

/// The one event of a notification (PagoEfectivo sends one event per notification).
fn one_event(outcome: WebhookOutcome) -> WebhookEvent {
    match outcome {
        WebhookOutcome::Events(mut events) if events.len() == 1 => events.remove(0),
        other => panic!("expected one event, got {other:?}"),
    }
}

fn webhook_host() -> FakeHost {
    host(|_| panic!("webhooks make no calls"))
}

fn sign_body(body: &[u8]) -> String {
    refundry_sdk::crypto::hmac_sha256_hex(b"test_secret_key", body)
}

#[test]
fn valid_webhook_is_parsed() {
    let host = webhook_host();
    // No timestamp is signed: any host clock accepts it.
    host.set_now_ms(NOW + 86_400_000 * 30);
    let body = fixture("webhook_completed.json");
    let event = one_event(
        PagoEfectivo::parse_webhook(&host, &webhook(&webhook_headers(WEBHOOK_SIG), &body)).unwrap(),
    );
    assert_eq!(event.event_id, "OP-77812");
    assert_eq!(event.event_type, "refund.completed");
    // dateUpdate 05:20:00-05:00 = 10:20:00Z.
    assert_eq!(event.occurred_at, Some(NOW + 270_000));
    assert_eq!(event.refund.status, RefundStatus::Processed);
    assert_eq!(event.refund.provider_refund_id, "PE-RF-000123");
    assert_eq!(event.refund.amount.amount_minor, 16_050);
}

#[test]
fn forged_webhooks_are_rejected() {
    let host = webhook_host();
    let body = fixture("webhook_completed.json");
    let mut tampered = body.clone();
    tampered[body.len() - 5] = b' ';
    let other_secret = refundry_sdk::crypto::hmac_sha256_hex(b"guess", &body);
    for (sig, body) in [
        (WEBHOOK_SIG, &tampered),
        (other_secret.as_str(), &body),
        (&WEBHOOK_SIG.to_uppercase(), &body),
        ("", &body),
    ] {
        assert_eq!(
            PagoEfectivo::parse_webhook(&host, &webhook(&webhook_headers(sig), body)),
            Err(WebhookError::InvalidSignature)
        );
    }
}

#[test]
fn missing_signature_header_is_named() {
    let host = webhook_host();
    let headers = vec![("content-type".to_string(), "application/json".to_string())];
    assert_eq!(
        PagoEfectivo::parse_webhook(
            &host,
            &webhook(&headers, &fixture("webhook_completed.json"))
        ),
        Err(WebhookError::MissingHeader("PE-Signature".into()))
    );
}

#[test]
fn malformed_but_signed_webhooks_are_malformed() {
    let host = webhook_host();
    let good = fixture_str("webhook_completed.json");
    let cases = [
        "not json".to_string(),
        r#"{"eventType": "refund.completed", "operationNumber": "OP-1"}"#.to_string(),
        good.replace("\"OP-77812\"", "\"\""),
        good.replace("\"status\": \"completed\"", "\"status\": \"done\""),
        good.replace("\"160.50\"", "\"160.500\""),
        good.replace("05:20:00-05:00", "05:20:00"),
    ];
    for body in cases {
        let got = PagoEfectivo::parse_webhook(
            &host,
            &webhook(
                &webhook_headers(&sign_body(body.as_bytes())),
                body.as_bytes(),
            ),
        );
        assert!(
            matches!(got, Err(WebhookError::Malformed(_))),
            "{body}: {got:?}"
        );
    }
}

#[test]
fn a_verified_notification_of_another_event_type_is_ignored() {
    let host = webhook_host();
    // Not one of the four types the spec lists; before contract 0.2 this was `malformed`, and
    // the provider retried a delivery that could never succeed.
    let body = fixture_str("webhook_completed.json").replace("refund.completed", "refund.settled");
    let got = PagoEfectivo::parse_webhook(
        &host,
        &webhook(
            &webhook_headers(&sign_body(body.as_bytes())),
            body.as_bytes(),
        ),
    );
    match got {
        Ok(WebhookOutcome::Ignored(reason)) => {
            assert!(reason.contains("refund.settled"), "{reason}")
        }
        other => panic!("expected ignored, got {other:?}"),
    }
    // Its data is not read: a shape the plugin does not know is no reason to refuse it.
    let body = r#"{"eventType": "payment.expired", "operationNumber": "OP-9", "data": {"cip": 1}}"#;
    assert!(matches!(
        PagoEfectivo::parse_webhook(
            &host,
            &webhook(
                &webhook_headers(&sign_body(body.as_bytes())),
                body.as_bytes()
            ),
        ),
        Ok(WebhookOutcome::Ignored(_))
    ));
    // Ignored only once genuine.
    let forged = refundry_sdk::crypto::hmac_sha256_hex(b"guess", body.as_bytes());
    assert_eq!(
        PagoEfectivo::parse_webhook(&host, &webhook(&webhook_headers(&forged), body.as_bytes())),
        Err(WebhookError::InvalidSignature)
    );
}

#[test]
fn webhook_without_secret_is_rejected_and_logged() {
    let mut host = webhook_host();
    host.remove_config("secret_key");
    let body = fixture("webhook_completed.json");
    assert_eq!(
        PagoEfectivo::parse_webhook(&host, &webhook(&webhook_headers(WEBHOOK_SIG), &body)),
        Err(WebhookError::InvalidSignature)
    );
    let logs = host.logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].level, Level::Error);
    assert!(logs[0].message.contains("secret_key"));
}

#[test]
fn logs_never_carry_the_token_or_secret() {
    let host = answering(201, fixture("refund_pending.json"));
    PagoEfectivo::create_refund(&host, request()).unwrap();
    for line in host.logs() {
        let text = format!("{line:?}");
        assert!(
            !text.contains("tok-1") && !text.contains("test_secret_key"),
            "{text}"
        );
    }
}

/// A host whose store is down: every operation still works, authorizing each time.
struct NoStorage(FakeHost);

impl Host for NoStorage {
    fn http_send(&self, req: http::Request) -> Result<http::Response, HttpError> {
        self.0.http_send(req)
    }
    fn now_ms(&self) -> i64 {
        self.0.now_ms()
    }
    fn storage_get(&self, _: &str) -> Result<Option<Vec<u8>>, refundry_sdk::StorageError> {
        Err(refundry_sdk::StorageError::Unavailable("down".into()))
    }
    fn storage_set(&self, _: &str, _: &[u8]) -> Result<(), refundry_sdk::StorageError> {
        Err(refundry_sdk::StorageError::Unavailable("down".into()))
    }
    fn storage_delete(&self, _: &str) -> Result<(), refundry_sdk::StorageError> {
        Err(refundry_sdk::StorageError::Unavailable("down".into()))
    }
    fn config(&self, key: &str) -> Option<String> {
        self.0.config(key)
    }
    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        self.0.log(level, message, fields)
    }
}

#[test]
fn a_failing_store_costs_an_authorization_per_operation_and_is_logged() {
    let host = NoStorage(answering(201, fixture("refund_pending.json")));
    for _ in 0..2 {
        assert_eq!(
            PagoEfectivo::create_refund(&host, request()),
            Ok(pending_refund())
        );
    }
    assert_eq!(auth_count(&host.0), 2);
    let warnings = host
        .0
        .logs()
        .iter()
        .filter(|l| l.level == Level::Warn)
        .count();
    assert_eq!(warnings, 4, "{:?}", host.0.logs());
}
