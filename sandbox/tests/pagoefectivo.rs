//! The PagoEfectivo simulator over real HTTP: each test starts its own sandbox on 127.0.0.1:0.

mod common;
mod pe_common;

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::{eventually, receiver};
use pe_common::*;
use reqwest::Method;
use serde_json::{Value, json};

/// The spec's create example and its canonical string ("Create a refund"), byte for byte.
const SPEC_BODY: &str = r#"{"transactionId": "81234567", "refundAmount": "160.50", "currency": "PEN",
 "transactionCode": "ORDER-991", "refundId": "order-991-r1", "reason": "producto devuelto"}"#;
const SPEC_CANONICAL: &str = "currency=PEN&reason=producto devuelto&refundAmount=160.50&refundId=order-991-r1&transactionCode=ORDER-991&transactionId=81234567";

// Known answers computed independently with Python:
// python3 -c 'import hmac,hashlib;print(hmac.new(b"sk_test_secret",b"currency=PEN&reason=producto devuelto&refundAmount=160.50&refundId=order-991-r1&transactionCode=ORDER-991&transactionId=81234567",hashlib.sha256).hexdigest())'
// python3 -c 'import hashlib;print(hashlib.sha256(b"1024.AK1.sk_test_secret.2026-11-25T05:15:30-05:00").hexdigest())'
#[test]
fn spec_canonical_string_and_known_answers() {
    assert_eq!(canonical("/v1/refunds", SPEC_BODY), SPEC_CANONICAL);
    assert_eq!(
        sign("/v1/refunds", SPEC_BODY),
        "28b921ffc1e8f851219c3e9115366ce92c3499a4c58a17ec5067435747581ead"
    );
    assert_eq!(
        hash_string(1024, "AK1", "sk_test_secret", "2026-11-25T05:15:30-05:00"),
        "c333e4f1ad075bbd67301b9a04e040a777a6efea933bd9d7f0d0bf19be826d0a"
    );
}

#[tokio::test]
async fn the_spec_example_body_is_accepted_as_sent() {
    // The spec's body, with its spacing and line break, signed with the spec's canonical string.
    let sandbox = start().await;
    sandbox
        .seed(json!({"transaction_id": "81234567", "amount": "160.50", "currency": "PEN"}))
        .await;
    let token = sandbox.authorize().await;
    let signature = hmac_hex(SECRET_KEY, SPEC_CANONICAL.as_bytes());
    let created = sandbox
        .api_raw(
            Method::POST,
            "/v1/refunds",
            Some(SPEC_BODY),
            Some(&format!("Bearer {token}")),
            Some(&signature),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.data(true)["refundAmount"], "160.50");
}

#[test]
fn config_debug_redacts_the_secret() {
    let config = refundry_sandbox::pagoefectivo::Config::new(7, "AK-public", "very-secret-key");
    let debug = format!("{config:?}");
    assert!(debug.contains("AK-public"), "{debug}");
    assert!(!debug.contains("very-secret-key"), "{debug}");
    assert_eq!(config.token_lifetime, Duration::from_secs(7200));
    assert_eq!(config.webhook_retry_base, Duration::from_secs(1));
    assert_eq!(config.webhook_max_attempts, 5);
    assert_eq!(config.notification_url, None);
}

#[tokio::test]
async fn authorize_create_replay_conflict_and_query() {
    let sandbox = start().await;
    assert!(sandbox.base.starts_with("http://127.0.0.1:"));
    sandbox.seed_default().await;

    let authorized = sandbox
        .authorize_with(authorization_body(&lima_now()))
        .await;
    assert_eq!(authorized.status, 201, "{:?}", authorized.body);
    let data = authorized.data(true).as_object().unwrap();
    let mut keys: Vec<&str> = data.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["codeService", "token", "tokenExpires", "tokenStart"]);
    assert!(data["token"].as_str().unwrap().len() >= 32);
    assert!(data["codeService"].is_string());
    let start = parse_lima(data["tokenStart"].as_str().unwrap());
    let expires = parse_lima(data["tokenExpires"].as_str().unwrap());
    assert_eq!(expires - start, TimeDelta::hours(2));
    assert!((Utc::now() - start).num_seconds().abs() < 5);

    let created = sandbox.create(&create_body("order-991-r1", "160.50")).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_refund_key_order(created.text());
    let refund = created.data(true).clone();
    assert_refund_shape(&refund);
    assert_eq!(refund["refundId"], "order-991-r1");
    assert_eq!(refund["transactionId"], "81234567");
    assert_eq!(refund["transactionCode"], "ORDER-991");
    assert_eq!(refund["refundAmount"], "160.50");
    assert_eq!(refund["currency"], "PEN");
    assert_eq!(refund["status"], "pending");
    assert_eq!(refund["statusReason"], Value::Null);
    assert_eq!(refund["dateUpdate"], refund["dateCreation"]);
    let reference = refund["referenceId"].as_str().unwrap().to_owned();

    // Replay: same transactionId, refundAmount and currency (other fields do not count).
    let replay_body = json!({"transactionId": "81234567", "refundAmount": "160.50",
        "currency": "PEN", "transactionCode": "OTHER", "refundId": "order-991-r1"});
    let replay = sandbox.create(&replay_body.to_string()).await;
    assert_eq!(replay.status, 200, "{:?}", replay.body);
    assert_eq!(replay.data(true), &refund);

    // Same refundId, different amount: 409 131.
    let conflict = sandbox.create(&create_body("order-991-r1", "100.00")).await;
    assert_eq!(conflict.status, 409);
    assert_eq!(conflict.code(), "131");
    assert_eq!(conflict.fields(), ["refundId"]);

    // Queries.
    let got = sandbox
        .api(Method::GET, &format!("/v1/refunds/{reference}"), None)
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.data(false), &refund);
    assert_refund_key_order(got.text());
    let listed = sandbox
        .api(Method::GET, "/v1/refunds?refundId=order-991-r1", None)
        .await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.data(false), &json!([refund]));
    let none = sandbox
        .api(Method::GET, "/v1/refunds?refundId=nothing", None)
        .await;
    assert_eq!(none.status, 200);
    assert_eq!(none.data(false), &json!([]));
    let missing = sandbox
        .api(Method::GET, "/v1/refunds/PE-RF-999999", None)
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.code(), "121");
    assert_eq!(missing.fields(), ["referenceId"]);
    let no_query = sandbox.api(Method::GET, "/v1/refunds", None).await;
    assert_eq!(no_query.status, 400);
    assert_eq!(no_query.code(), "111");
    assert_eq!(no_query.fields(), ["refundId"]);

    let stats = sandbox.stats().await;
    assert_eq!(
        stats,
        json!({
            "requests": {"POST /v1/authorizations": 2, "POST /v1/refunds": 3,
                         "GET /v1/refunds/{referenceId}": 2, "GET /v1/refunds?refundId": 3,
                         "GET /v1/refunds?dateFrom": 0},
            "authorizations": 2,
            "refunds_created": 1,
            "portal_refunds_created": 0,
            "refunds_deleted": 0,
            "auth_failures": 0
        })
    );
    let all = sandbox
        .control(Method::GET, "/_sandbox/refunds", None)
        .await;
    assert_eq!(all.body, json!({ "data": [refund] }));
    sandbox.handle.shutdown().await;
}

#[tokio::test]
async fn authorization_errors() {
    let sandbox = start().await;
    let now = lima_now();
    let with = |patch: Value| {
        let mut body = authorization_body(&now);
        for (key, value) in patch.as_object().unwrap() {
            body[key] = value.clone();
        }
        body
    };
    let dated = |date: &str| authorization_body(date);
    let cases = [
        (
            "wrong access key",
            with(json!({"accessKey": "AK2"})),
            401,
            "105",
        ),
        (
            "wrong service",
            with(json!({"idService": 1025})),
            401,
            "105",
        ),
        (
            "hash with another secret",
            with(json!({"hashString": hash_string(ID_SERVICE, ACCESS_KEY, "other", &now)})),
            401,
            "105",
        ),
        (
            "upper-case hash",
            with(json!({
                "hashString": hash_string(ID_SERVICE, ACCESS_KEY, SECRET_KEY, &now).to_uppercase()
            })),
            401,
            "105",
        ),
        (
            "too old",
            dated(&lima(Utc::now() - TimeDelta::seconds(330))),
            401,
            "108",
        ),
        (
            "too far ahead",
            dated(&lima(Utc::now() + TimeDelta::seconds(330))),
            401,
            "108",
        ),
        ("unparseable date", dated("yesterday"), 400, "111"),
        (
            "UTC instead of the Lima offset",
            dated(&Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            400,
            "111",
        ),
        (
            "service id as a string",
            with(json!({"idService": "1024"})),
            400,
            "111",
        ),
        ("no hash", with(json!({"hashString": null})), 400, "111"),
    ];
    for (what, body, status, code) in &cases {
        let answer = sandbox.authorize_with(body.clone()).await;
        assert_eq!(answer.status, *status, "{what}: {:?}", answer.body);
        assert_eq!(answer.code(), *code, "{what}");
    }
    let garbage = sandbox.authorize_with(json!("not an object")).await;
    assert_eq!(garbage.code(), "111");
    assert_eq!(garbage.fields(), ["body"]);
    let unparseable = sandbox.authorize_with(dated("yesterday")).await;
    assert_eq!(unparseable.fields(), ["dateRequest"]);
    let late = sandbox
        .authorize_with(dated(&lima(Utc::now() - TimeDelta::seconds(330))))
        .await;
    assert_eq!(late.fields(), ["dateRequest"]);
    // 300 s either way is still accepted.
    let edge = sandbox
        .authorize_with(dated(&lima(Utc::now() - TimeDelta::seconds(290))))
        .await;
    assert_eq!(edge.status, 201);

    let stats = sandbox.stats().await;
    assert_eq!(stats["auth_failures"], 7);
    assert_eq!(stats["authorizations"], 1);
    assert_eq!(
        stats["requests"]["POST /v1/authorizations"],
        cases.len() + 4
    );
}

#[tokio::test]
async fn token_and_signature_errors() {
    let sandbox = start().await;
    sandbox.seed_default().await;
    let token = sandbox.authorize().await;
    let bearer = format!("Bearer {token}");
    let body = create_body("auth-1", "10.00");
    let good_signature = sign("/v1/refunds", &body);

    // 106: no token, unknown token, another scheme. Checked before the signature.
    for authorization in [None, Some("Bearer not-a-token"), Some("Basic QUsxOnNr")] {
        let answer = sandbox
            .api_raw(
                Method::POST,
                "/v1/refunds",
                Some(&body),
                authorization,
                Some("bad"),
            )
            .await;
        assert_eq!(answer.status, 401, "{authorization:?}");
        assert_eq!(answer.code(), "106", "{authorization:?}");
    }
    // The scheme is case-insensitive.
    let lower = sandbox
        .api_raw(
            Method::GET,
            "/v1/refunds?refundId=x",
            None,
            Some(&format!("bearer {token}")),
            Some(&sign("/v1/refunds?refundId=x", "")),
        )
        .await;
    assert_eq!(lower.status, 200);

    // 107: wrong secret, upper case, missing, over a changed body, over the path without query.
    let target = "/v1/refunds?refundId=auth-1";
    let wrong = [
        (
            "/v1/refunds",
            Some(body.as_str()),
            Some(hmac_hex(
                "other",
                canonical("/v1/refunds", &body).as_bytes(),
            )),
        ),
        (
            "/v1/refunds",
            Some(body.as_str()),
            Some(good_signature.to_uppercase()),
        ),
        ("/v1/refunds", Some(body.as_str()), None),
        (
            "/v1/refunds",
            Some(body.as_str()),
            Some(sign("/v1/refunds", &create_body("auth-1", "10.01"))),
        ),
        (target, None, Some(sign("/v1/refunds", ""))),
    ];
    for (target, body, signature) in &wrong {
        let method = if body.is_some() {
            Method::POST
        } else {
            Method::GET
        };
        let answer = sandbox
            .api_raw(method, target, *body, Some(&bearer), signature.as_deref())
            .await;
        assert_eq!(answer.status, 401, "{target} {signature:?}");
        assert_eq!(answer.code(), "107");
    }
    // A body that is not a JSON object has no canonical string.
    let not_json = sandbox
        .api_raw(
            Method::POST,
            "/v1/refunds",
            Some("[1, 2]"),
            Some(&bearer),
            Some(&good_signature),
        )
        .await;
    assert_eq!(not_json.status, 400);
    assert_eq!(not_json.code(), "111");
    assert_eq!(not_json.fields(), ["body"]);
    assert_eq!(sandbox.stats().await["refunds_created"], 0);
    let good = sandbox
        .api_raw(
            Method::POST,
            "/v1/refunds",
            Some(&body),
            Some(&bearer),
            Some(&good_signature),
        )
        .await;
    assert_eq!(good.status, 201, "{:?}", good.body);

    // 106 after the sandbox expires every token; a new authorization works.
    let expired = sandbox
        .control(Method::POST, "/_sandbox/tokens/expire", None)
        .await;
    assert_eq!(expired.body, json!({"expired": 1}));
    let after = sandbox.api(Method::GET, target, None).await;
    assert_eq!(after.status, 401);
    assert_eq!(after.code(), "106");
    sandbox.authorize().await;
    assert_eq!(sandbox.api(Method::GET, target, None).await.status, 200);

    // Tokens issued with a zero lifetime are expired on arrival; the lifetime shows in
    // tokenExpires.
    let lifetime = sandbox
        .control(
            Method::POST,
            "/_sandbox/token-lifetime",
            Some(json!({"seconds": 0})),
        )
        .await;
    assert_eq!(lifetime.status, 200);
    let short = sandbox
        .authorize_with(authorization_body(&lima_now()))
        .await;
    let data = short.data(true);
    assert_eq!(data["tokenExpires"], data["tokenStart"]);
    let short_token = data["token"].as_str().unwrap();
    let refused = sandbox
        .api_raw(
            Method::GET,
            target,
            None,
            Some(&format!("Bearer {short_token}")),
            Some(&sign(target, "")),
        )
        .await;
    assert_eq!(refused.code(), "106");
    // The earlier token is unaffected.
    assert_eq!(sandbox.api(Method::GET, target, None).await.status, 200);
    sandbox
        .control(
            Method::POST,
            "/_sandbox/token-lifetime",
            Some(json!({"seconds": 90})),
        )
        .await;
    let data = sandbox
        .authorize_with(authorization_body(&lima_now()))
        .await
        .body["data"]
        .clone();
    let span = parse_lima(data["tokenExpires"].as_str().unwrap())
        - parse_lima(data["tokenStart"].as_str().unwrap());
    assert_eq!(span, TimeDelta::seconds(90));
    let too_long = sandbox
        .control(
            Method::POST,
            "/_sandbox/token-lifetime",
            Some(json!({"seconds": 100_000_000})),
        )
        .await;
    assert_eq!(too_long.status, 400);

    // 3 x 106 + 5 x 107 + 2 x 106.
    assert_eq!(sandbox.stats().await["auth_failures"], 10);
}

#[tokio::test]
async fn ip_allowlist() {
    let sandbox = start().await;
    sandbox.seed_default().await;
    let set = |allowed: Value| {
        sandbox.control(
            Method::POST,
            "/_sandbox/ip-allowlist",
            Some(json!({ "allowed": allowed })),
        )
    };
    assert_eq!(set(json!(["203.0.113.7"])).await.status, 200);
    // The authorization is not subject to the allowlist.
    let token = sandbox.authorize().await;
    let refused = sandbox.create(&create_body("ip-1", "10.00")).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.code(), "109");
    // Token and signature come first.
    let unsigned = sandbox
        .api_raw(
            Method::GET,
            "/v1/refunds?refundId=ip-1",
            None,
            Some(&format!("Bearer {token}")),
            Some("0000"),
        )
        .await;
    assert_eq!(unsigned.code(), "107");
    assert_eq!(set(json!(["not-an-ip"])).await.status, 400);
    set(json!(["203.0.113.7", "127.0.0.1"])).await;
    assert_eq!(
        sandbox.create(&create_body("ip-1", "10.00")).await.status,
        201
    );
    set(json!([])).await;
    assert_eq!(
        sandbox.create(&create_body("ip-2", "10.00")).await.status,
        201
    );
}

#[tokio::test]
async fn business_errors() {
    let sandbox = start().await;
    let days_ago = |days: i64| lima(Utc::now() - TimeDelta::days(days));
    sandbox.seed_default().await;
    for (id, extra) in [
        ("unpaid", json!({"paid": false})),
        ("old", json!({"paid_at": days_ago(181)})),
        ("d179", json!({"paid_at": days_ago(179)})),
    ] {
        let mut body = json!({"transaction_id": id, "amount": "100.00", "currency": "PEN"});
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        sandbox.seed(body).await;
    }
    let refund = |txn: &str, amount: &str, currency: &str, refund_id: &str| {
        json!({"transactionId": txn, "refundAmount": amount, "currency": currency,
               "transactionCode": "ORDER-1", "refundId": refund_id})
        .to_string()
    };
    let cases = [
        (
            refund("nope", "1.00", "PEN", "b1"),
            404,
            "120",
            "transactionId",
        ),
        (
            refund("81234567", "1.00", "USD", "b2"),
            422,
            "133",
            "currency",
        ),
        (
            refund("unpaid", "1.00", "PEN", "b3"),
            422,
            "135",
            "transactionId",
        ),
        (
            refund("old", "1.00", "PEN", "b4"),
            422,
            "134",
            "transactionId",
        ),
        (
            refund("81234567", "500.01", "PEN", "b5"),
            422,
            "132",
            "refundAmount",
        ),
    ];
    for (body, status, code, field) in &cases {
        let answer = sandbox.create(body).await;
        assert_eq!(answer.status, *status, "{body}: {:?}", answer.body);
        assert_eq!(answer.code(), *code, "{body}");
        assert_eq!(answer.fields(), [*field], "{body}");
    }
    assert_eq!(
        sandbox
            .create(&refund("d179", "100.00", "PEN", "b6"))
            .await
            .status,
        201
    );

    // Partial refunds add up; rejected ones free their amount.
    let first = sandbox.create(&create_body("p1", "300.00")).await;
    assert_eq!(first.status, 201);
    let over = sandbox.create(&create_body("p2", "200.01")).await;
    assert_eq!(over.code(), "132");
    let rejected = sandbox
        .set_status(
            first.body["data"]["referenceId"].as_str().unwrap(),
            json!({"status": "rejected", "status_reason": "cuenta cerrada"}),
        )
        .await;
    assert_eq!(rejected.status, 200, "{:?}", rejected.body);
    assert_eq!(rejected.body["statusReason"], "cuenta cerrada");

    // 136: the merchant's balance is short; no refund is made, and the same refundId works once
    // the balance is back.
    let balance = sandbox
        .control(
            Method::POST,
            "/_sandbox/balance",
            Some(json!({"sufficient": false})),
        )
        .await;
    assert_eq!(balance.body, json!({"sufficient": false}));
    let before = sandbox.stats().await["refunds_created"].clone();
    let short = sandbox.create(&create_body("p2", "500.00")).await;
    assert_eq!(short.status, 422);
    assert_eq!(short.code(), "136");
    assert_eq!(short.fields(), Vec::<&str>::new());
    // Other checks come first.
    assert_eq!(
        sandbox.create(&create_body("p3", "500.01")).await.code(),
        "132"
    );
    assert_eq!(sandbox.stats().await["refunds_created"], before);
    let listed = sandbox
        .api(Method::GET, "/v1/refunds?refundId=p2", None)
        .await;
    assert_eq!(listed.data(false), &json!([]));
    sandbox
        .control(
            Method::POST,
            "/_sandbox/balance",
            Some(json!({"sufficient": true})),
        )
        .await;
    assert_eq!(
        sandbox.create(&create_body("p2", "500.00")).await.status,
        201
    );
    // Seeding the same id again replaces the payment.
    sandbox
        .seed(json!({"transaction_id": "unpaid", "amount": "100.00", "currency": "PEN"}))
        .await;
    assert_eq!(
        sandbox
            .create(&refund("unpaid", "1.00", "PEN", "b7"))
            .await
            .status,
        201
    );
    // A USD payment takes USD refunds.
    sandbox
        .seed(json!({"transaction_id": "usd", "amount": "20.00", "currency": "USD"}))
        .await;
    let usd = sandbox.create(&refund("usd", "20.00", "USD", "b8")).await;
    assert_eq!(usd.status, 201);
    assert_eq!(usd.body["data"]["currency"], "USD");
}

#[tokio::test]
async fn request_validation() {
    let sandbox = start().await;
    sandbox.seed_default().await;
    for amount in [
        "160", "160.5", "-1.00", "0.00", "1e3", "160.500", " 1.00", "+1.00", "01.00", "160,50",
    ] {
        let answer = sandbox.create(&create_body("v-1", amount)).await;
        assert_eq!(answer.status, 400, "{amount}: {:?}", answer.body);
        assert_eq!(answer.code(), "111");
        assert_eq!(answer.fields(), ["refundAmount"], "{amount}");
    }
    let base = json!({"transactionId": "81234567", "refundAmount": "1.00", "currency": "PEN",
                      "transactionCode": "ORDER-1", "refundId": "v-2"});
    let patched = |patch: Value| {
        let mut body = base.clone();
        for (key, value) in patch.as_object().unwrap() {
            body[key] = value.clone();
        }
        body.to_string()
    };
    let cases = [
        (patched(json!({"currency": "EUR"})), vec!["currency"]),
        (patched(json!({"currency": "pen"})), vec!["currency"]),
        (patched(json!({"refundAmount": 1.0})), vec!["refundAmount"]),
        (patched(json!({"refundId": "has space"})), vec!["refundId"]),
        (
            patched(json!({"refundId": "a".repeat(65)})),
            vec!["refundId"],
        ),
        (patched(json!({"refundId": ""})), vec!["refundId"]),
        (patched(json!({"reason": "r".repeat(201)})), vec!["reason"]),
        (
            patched(json!({"transactionCode": null})),
            vec!["transactionCode"],
        ),
        (patched(json!({"transactionId": ""})), vec!["transactionId"]),
        (
            json!({"refundAmount": "1.00"}).to_string(),
            vec!["transactionId", "currency", "transactionCode", "refundId"],
        ),
    ];
    for (body, fields) in &cases {
        let answer = sandbox.create(body).await;
        assert_eq!(answer.status, 400, "{body}");
        assert_eq!(answer.code(), "111", "{body}");
        assert_eq!(answer.fields(), *fields, "{body}");
    }
    // At the limits, and with a null reason (left out of the canonical string).
    let ok = sandbox
        .create(&patched(
            json!({"refundId": "a".repeat(64), "reason": "r".repeat(200)}),
        ))
        .await;
    assert_eq!(ok.status, 201, "{:?}", ok.body);
    let null_reason = sandbox
        .create(&patched(json!({"refundId": "v-3", "reason": null})))
        .await;
    assert_eq!(null_reason.status, 201, "{:?}", null_reason.body);
    assert_eq!(sandbox.stats().await["refunds_created"], 2);
}

#[tokio::test]
async fn status_and_error_faults() {
    let sandbox = start().await;
    sandbox.seed_default().await;
    sandbox
        .fault(json!({"kind": "status", "status": 500}))
        .await;
    sandbox
        .fault(json!({"kind": "status", "status": 503, "count": 2, "retry_after": 7}))
        .await;
    sandbox
        .fault(json!({"kind": "error", "status": 422, "code": "136"}))
        .await;
    // Neither the authorization, nor control requests, nor unauthenticated requests consume
    // faults.
    sandbox.authorize().await;
    assert_eq!(sandbox.stats().await["refunds_created"], 0);
    let unauthenticated = sandbox
        .api_raw(Method::GET, "/v1/refunds/x", None, None, None)
        .await;
    assert_eq!(unauthenticated.code(), "106");

    let body = create_body("f-1", "10.00");
    for (status, code, retry_after) in [
        (500, "999", None),
        (503, "999", Some("7")),
        (503, "999", Some("7")),
        (422, "136", None),
    ] {
        let answer = sandbox.create(&body).await;
        assert_eq!(answer.status, status, "{:?}", answer.body);
        assert_eq!(answer.code(), code);
        assert_eq!(
            answer
                .headers
                .get("retry-after")
                .map(|v| v.to_str().unwrap()),
            retry_after
        );
    }
    assert_eq!(sandbox.stats().await["refunds_created"], 0);
    // Retried with the same refundId: created once.
    assert_eq!(sandbox.create(&body).await.status, 201);
    assert_eq!(sandbox.create(&body).await.status, 200);

    // The spec has no 429 and no 502: status faults for them are refused; error faults with an
    // explicit 3-digit code can still send them.
    for bad in [
        json!({"kind": "status", "status": 429}),
        json!({"kind": "status", "status": 502}),
        json!({"kind": "status", "status": 503, "count": 0}),
        json!({"kind": "error", "status": 422, "code": "amount_exceeded"}),
        json!({"kind": "error", "status": 422, "code": "13"}),
        json!({"kind": "error", "status": 200, "code": "100"}),
        json!({"kind": "explode"}),
    ] {
        let answer = sandbox
            .control(Method::POST, "/_sandbox/faults", Some(bad.clone()))
            .await;
        assert_eq!(answer.status, 400, "{bad}");
        assert!(answer.body["error"].is_string(), "{bad}");
    }
    sandbox
        .fault(json!({"kind": "error", "status": 429, "code": "999"}))
        .await;
    let limited = sandbox
        .api(Method::GET, "/v1/refunds?refundId=f-1", None)
        .await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.code(), "999");
    assert_eq!(limited.headers["retry-after"], "1");

    // DELETE clears the queue.
    sandbox
        .fault(json!({"kind": "status", "status": 503, "count": 5}))
        .await;
    let cleared = sandbox
        .control(Method::DELETE, "/_sandbox/faults", None)
        .await;
    assert_eq!(cleared.status, 200);
    assert_eq!(
        sandbox
            .api(Method::GET, "/v1/refunds?refundId=f-1", None)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn delay_fault_processes_then_delays() {
    let sandbox = start().await;
    sandbox.seed_default().await;
    let token = sandbox.authorize().await;
    sandbox
        .fault(json!({"kind": "delay", "delay_ms": 3000}))
        .await;
    let body = create_body("slow-1", "10.00");
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let outcome = impatient
        .post(format!("{}/v1/refunds", sandbox.base))
        .header("Authorization", format!("Bearer {token}"))
        .header("PE-Signature", sign("/v1/refunds", &body))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await;
    assert!(outcome.expect_err("the client times out").is_timeout());
    // The refund exists anyway: the lookup a client does after a timeout finds it.
    let found = sandbox
        .api(Method::GET, "/v1/refunds?refundId=slow-1", None)
        .await;
    assert_eq!(found.data(false).as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn notifications_are_signed_and_retried_with_the_same_operation_number() {
    let sandbox = start().await;
    let receiver = receiver(2).await;
    sandbox.set_callback(&receiver.url).await;
    sandbox.seed_default().await;
    let created = sandbox.create(&create_body("wh-1", "100.00")).await;
    let reference = created.body["data"]["referenceId"]
        .as_str()
        .unwrap()
        .to_owned();
    // Creating sends nothing.
    let completed = sandbox
        .set_status(&reference, json!({"status": "completed"}))
        .await;
    assert_eq!(completed.status, 200, "{:?}", completed.body);
    assert_refund_shape(&completed.body);
    assert_eq!(completed.body["status"], "completed");
    assert_eq!(completed.body["statusReason"], Value::Null);

    let received = eventually("three attempts", || async {
        let got = receiver.received();
        (got.len() >= 3).then_some(got)
    })
    .await;
    let first = received[0].json();
    let operation = first["operationNumber"].as_str().unwrap().to_owned();
    assert!(operation.starts_with("OP-"), "{operation}");
    assert_eq!(first["eventType"], "refund.completed");
    assert_eq!(first["data"], completed.body);
    let mut keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["data", "eventType", "operationNumber"]);
    assert_refund_key_order(std::str::from_utf8(&received[0].body).unwrap());
    for hook in &received {
        assert_notification_signed(hook);
        assert_eq!(hook.body, received[0].body);
    }
    let deliveries = eventually("three delivery records", || async {
        let records = sandbox.deliveries().await;
        (records.len() >= 3).then_some(records)
    })
    .await;
    let summary: Vec<(u64, Value)> = deliveries
        .iter()
        .map(|d| (d["attempt"].as_u64().unwrap(), d["status"].clone()))
        .collect();
    assert_eq!(
        summary,
        vec![(1, json!(500)), (2, json!(500)), (3, json!(200))]
    );
    assert!(
        deliveries
            .iter()
            .all(|d| d["event_id"] == operation.as_str() && d["refund_id"] == reference.as_str())
    );

    // The next event has its own operation number and carries the reason.
    let reverted = sandbox
        .set_status(
            &reference,
            json!({"status": "reverted", "status_reason": "contracargo"}),
        )
        .await;
    assert_eq!(reverted.body["statusReason"], "contracargo");
    let received = eventually("the second event", || async {
        let got = receiver.received();
        (got.len() >= 4).then_some(got)
    })
    .await;
    assert_notification_signed(&received[3]);
    let second = received[3].json();
    assert_eq!(second["eventType"], "refund.reverted");
    assert_eq!(second["data"], reverted.body);
    assert_ne!(second["operationNumber"], first["operationNumber"]);

    // Illegal moves, unknown refunds, bad bodies.
    for (reference, body, status) in [
        (reference.as_str(), json!({"status": "completed"}), 409),
        (reference.as_str(), json!({"status": "pending"}), 409),
        ("PE-RF-000000", json!({"status": "completed"}), 404),
        (reference.as_str(), json!({"status": "exploded"}), 400),
        (reference.as_str(), json!({"state": "completed"}), 400),
    ] {
        let answer = sandbox.set_status(reference, body.clone()).await;
        assert_eq!(answer.status, status, "{body}");
        assert!(answer.body["error"].is_string());
    }
    assert_eq!(receiver.received().len(), 4);
}

#[tokio::test]
async fn notification_url_from_config_and_webhook_faults() {
    let receiver = receiver(0).await;
    let mut config = config();
    config.notification_url = Some(receiver.url.clone());
    let sandbox = start_with(config).await;
    sandbox.seed_default().await;
    let first = sandbox.create(&create_body("wf-1", "10.00")).await;
    let second = sandbox.create(&create_body("wf-2", "10.00")).await;
    let reference = |answer: &Answer| {
        answer.body["data"]["referenceId"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    sandbox
        .fault(json!({"kind": "drop_webhooks", "count": 1}))
        .await;
    sandbox
        .set_status(&reference(&first), json!({"status": "rejected"}))
        .await;
    sandbox
        .fault(json!({"kind": "duplicate_webhooks", "count": 1}))
        .await;
    sandbox
        .fault(json!({"kind": "fail_webhooks", "count": 1}))
        .await;
    sandbox
        .set_status(&reference(&first), json!({"status": "completed"}))
        .await; // 409: rejected is final; nothing sent.
    sandbox
        .set_status(&reference(&second), json!({"status": "completed"}))
        .await;
    let received = eventually("the duplicated event", || async {
        let got = receiver.received();
        (got.len() >= 2).then_some(got)
    })
    .await;
    assert_eq!(received[0].body, received[1].body);
    for hook in &received {
        assert_notification_signed(hook);
        assert_eq!(hook.json()["data"]["referenceId"], reference(&second));
        assert_eq!(hook.json()["eventType"], "refund.completed");
    }
    // One attempt failed by injection (not sent), then two copies delivered.
    let deliveries = eventually("three records", || async {
        let records = sandbox.deliveries().await;
        (records.len() >= 3).then_some(records)
    })
    .await;
    assert_eq!(deliveries[0]["status"], Value::Null);
    assert_eq!(deliveries[1]["status"], 200);
    assert_eq!(deliveries[2]["status"], 200);
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test]
async fn control_input_errors_and_unknown_endpoints() {
    let sandbox = start().await;
    for (path, body) in [
        (
            "/_sandbox/payments",
            json!({"transaction_id": "t", "amount": "160", "currency": "PEN"}),
        ),
        (
            "/_sandbox/payments",
            json!({"transaction_id": "t", "amount": "1.00", "currency": "EUR"}),
        ),
        (
            "/_sandbox/payments",
            json!({"transaction_id": "t", "amount": "1.00", "currency": "PEN",
                   "paid_at": "yesterday"}),
        ),
        (
            "/_sandbox/payments",
            json!({"transaction_id": "", "amount": "1.00", "currency": "PEN"}),
        ),
        ("/_sandbox/balance", json!({"sufficient": "no"})),
        ("/_sandbox/token-lifetime", json!({"seconds": -1})),
        (
            "/_sandbox/webhooks/config",
            json!({"callback": "http://127.0.0.1:1/x"}),
        ),
    ] {
        let answer = sandbox
            .control(Method::POST, path, Some(body.clone()))
            .await;
        assert_eq!(answer.status, 400, "{path} {body}");
        assert!(answer.body["error"].is_string(), "{:?}", answer.body);
    }
    let seeded = sandbox
        .seed(
            json!({"transaction_id": "t", "amount": "160.50", "currency": "USD",
                     "paid_at": "2026-11-20T10:00:00Z", "paid": false}),
        )
        .await;
    assert_eq!(
        seeded.body,
        json!({"transaction_id": "t", "amount": "160.50", "currency": "USD",
               "paid_at": "2026-11-20T05:00:00-05:00", "paid": false})
    );
    let unknown = sandbox.control(Method::GET, "/v1/nothing", None).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.code(), "404");

    let addr = sandbox.handle.addr();
    sandbox.handle.shutdown().await;
    let refused = reqwest::Client::new()
        .get(format!("http://{addr}/_sandbox/stats"))
        .send()
        .await;
    assert!(refused.is_err());
}
