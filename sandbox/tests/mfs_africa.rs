//! The MFS Africa simulator over real HTTP: each test starts its own sandbox on 127.0.0.1:0.

mod common;

use std::time::Duration;

use chrono::{SecondsFormat, TimeDelta, Utc};
use common::*;
use reqwest::Method;
use serde_json::{Value, json};

// Known answer computed independently with Python:
// python3 -c 'import hmac,hashlib;b=b"{\"original_transaction_id\":\"txn_8f2k1\",\"refund_amount\":\"1500.00\",\"currency\":\"KES\",\"reason\":\"customer_return\",\"external_refund_id\":\"order-991-r1\"}";sts="POST\n/v1/refunds\n2026-11-25T10:15:30Z\n"+hashlib.sha256(b).hexdigest();print(hmac.new(b"sk_test_secret",sts.encode(),hashlib.sha256).hexdigest())'
#[test]
fn test_signer_known_answer() {
    let body = br#"{"original_transaction_id":"txn_8f2k1","refund_amount":"1500.00","currency":"KES","reason":"customer_return","external_refund_id":"order-991-r1"}"#;
    assert_eq!(
        sign(
            "sk_test_secret",
            "POST",
            "/v1/refunds",
            "2026-11-25T10:15:30Z",
            body
        ),
        "63dc930ff07ddf254f4a31d80a99926f57003cd019a33f86b9591a890f936751"
    );
}

#[tokio::test]
async fn create_replay_and_duplicate() {
    let sandbox = start().await;
    assert!(sandbox.base.starts_with("http://127.0.0.1:"));
    assert!(!sandbox.base.ends_with('/'));
    sandbox.seed_default().await;

    let created = sandbox
        .create(&create_body("order-991-r1", "1500.00"))
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let refund = created.body.as_object().unwrap();
    let keys: Vec<&str> = refund.keys().map(String::as_str).collect();
    let mut expected_keys = vec![
        "refund_id",
        "external_refund_id",
        "original_transaction_id",
        "refund_amount",
        "currency",
        "reason",
        "status",
        "failure_reason",
        "created_at",
        "updated_at",
    ];
    expected_keys.sort_unstable();
    let mut sorted_keys = keys.clone();
    sorted_keys.sort_unstable();
    assert_eq!(sorted_keys, expected_keys);
    let refund_id = refund["refund_id"].as_str().unwrap().to_owned();
    assert!(refund_id.starts_with("rfnd_"));
    assert_eq!(refund["external_refund_id"], "order-991-r1");
    assert_eq!(refund["original_transaction_id"], "txn_1");
    assert_eq!(refund["refund_amount"], "1500.00");
    assert_eq!(refund["currency"], "KES");
    assert_eq!(refund["reason"], "customer_return");
    assert_eq!(refund["status"], "pending");
    assert_eq!(refund["failure_reason"], Value::Null);
    let created_at = refund["created_at"].as_str().unwrap();
    assert_eq!(created_at.len(), 20, "{created_at}");
    assert!(created_at.ends_with('Z'));
    assert_eq!(refund["updated_at"], refund["created_at"]);

    // Replay: same parameters (the reason does not count), the existing refund with 200.
    let replay_body = json!({"original_transaction_id": "txn_1", "refund_amount": "1500.00",
                             "currency": "KES", "external_refund_id": "order-991-r1"});
    let replay = sandbox.create(&replay_body.to_string()).await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.body, created.body);

    // Same key, different amount: 409.
    let duplicate = sandbox
        .create(&create_body("order-991-r1", "1000.00"))
        .await;
    assert_eq!(duplicate.status, 409);
    assert_eq!(duplicate.code(), "duplicate_external_refund_id");

    // Queries.
    let got = sandbox
        .api(Method::GET, &format!("/v1/refunds/{refund_id}"), None)
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, created.body);
    let listed = sandbox
        .api(
            Method::GET,
            "/v1/refunds?external_refund_id=order-991-r1",
            None,
        )
        .await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body, json!({ "data": [created.body] }));
    let none = sandbox
        .api(Method::GET, "/v1/refunds?external_refund_id=nothing", None)
        .await;
    assert_eq!(none.status, 200);
    assert_eq!(none.body, json!({ "data": [] }));
    let missing = sandbox
        .api(Method::GET, "/v1/refunds/rfnd_missing", None)
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.code(), "refund_not_found");
    let no_query = sandbox.api(Method::GET, "/v1/refunds", None).await;
    assert_eq!(no_query.status, 400);
    assert_eq!(no_query.code(), "invalid_request");

    let stats = sandbox.stats().await;
    assert_eq!(
        stats,
        json!({
            "requests": {"POST /v1/refunds": 3, "GET /v1/refunds/{id}": 2,
                         "GET /v1/refunds?external_refund_id": 3,
                         "GET /v1/refunds?created_from": 0},
            "refunds_created": 1,
            "portal_refunds_created": 0,
            "refunds_deleted": 0,
            "auth_failures": 0
        })
    );
    let all = sandbox
        .control(Method::GET, "/_sandbox/refunds", None)
        .await;
    // The control view is the refund object plus what the sandbox noted about its creation.
    let mut noted = created.body.clone();
    noted["created_by_plugin_version"] = Value::Null;
    assert_eq!(all.body, json!({ "data": [noted] }));
    sandbox.handle.shutdown().await;
}

/// `(external_refund_id, created_by_plugin_version)` of every refund, from the control API.
async fn plugin_versions(sandbox: &Sandbox) -> Vec<(String, Value)> {
    let all = sandbox
        .control(Method::GET, "/_sandbox/refunds", None)
        .await;
    all.body["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|r| {
            (
                r["external_refund_id"].as_str().unwrap().to_owned(),
                r["created_by_plugin_version"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn refunds_keep_the_plugin_version_of_their_create() {
    let sandbox = start().await;
    sandbox.seed_default().await;
    let create = |ext: &'static str, headers: &'static [(&'static str, &'static str)]| {
        let sandbox = &sandbox;
        async move {
            sandbox
                .api_with_headers(
                    Method::POST,
                    "/v1/refunds",
                    Some(&create_body(ext, "10.00")),
                    headers,
                )
                .await
        }
    };
    let with_version = create("pv-1", &[("X-Plugin-Version", "0.2.0")]).await;
    assert_eq!(with_version.status, 201, "{:?}", with_version.body);
    assert_eq!(create("pv-2", &[]).await.status, 201);
    // Replays answer the refund as it is: they do not change what its create sent.
    assert_eq!(
        create("pv-1", &[("x-plugin-version", "9.9.9")])
            .await
            .status,
        200
    );
    assert_eq!(
        create("pv-2", &[("X-Plugin-Version", "0.2.0")])
            .await
            .status,
        200
    );
    assert_eq!(
        plugin_versions(&sandbox).await,
        [
            ("pv-1".to_owned(), json!("0.2.0")),
            ("pv-2".to_owned(), Value::Null)
        ]
    );
    // Only the control listing shows it: the API's refund object stays the spec's.
    let refund_id = with_version.body["refund_id"].as_str().unwrap();
    let got = sandbox
        .api(Method::GET, &format!("/v1/refunds/{refund_id}"), None)
        .await;
    assert_eq!(got.status, 200);
    assert!(got.body.get("created_by_plugin_version").is_none());
}

#[tokio::test]
async fn a_required_header_is_checked_before_anything_changes() {
    let mut config = refundry_sandbox::mfs_africa::Config::new(API_KEY, API_SECRET, WEBHOOK_SECRET);
    config.require_header = Some("X-Plugin-Version".into());
    let sandbox = start_with(config).await;
    sandbox.seed_default().await;
    // Queued before the refused requests: they must not use it up.
    sandbox
        .fault(json!({"kind": "status", "status": 503, "count": 1}))
        .await;
    let body = create_body("rh-1", "10.00");

    for (method, target, body) in [
        (Method::POST, "/v1/refunds", Some(body.as_str())),
        (Method::GET, "/v1/refunds?external_refund_id=rh-1", None),
        (Method::GET, "/v1/refunds/rfnd_any", None),
    ] {
        let refused = sandbox.api(method.clone(), target, body).await;
        assert_eq!(refused.status, 400, "{method} {target}: {:?}", refused.body);
        assert_eq!(refused.code(), "invalid_request");
        let message = refused.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("X-Plugin-Version"), "{message}");
    }
    // Authentication still comes first.
    let unauthenticated = sandbox
        .api_as(
            Method::POST,
            "/v1/refunds",
            Some(&body),
            "pk_other",
            API_SECRET,
            &now_timestamp(),
        )
        .await;
    assert_eq!(unauthenticated.status, 401);
    assert_eq!(unauthenticated.code(), "invalid_api_key");
    assert!(plugin_versions(&sandbox).await.is_empty());
    assert_eq!(sandbox.stats().await["refunds_created"], 0);

    // With the header (in any case), the fault answers first, then the refund is made.
    let send = || {
        sandbox.api_with_headers(
            Method::POST,
            "/v1/refunds",
            Some(&body),
            &[("x-plugin-version", "0.2.0")],
        )
    };
    assert_eq!(send().await.status, 503);
    let created = send().await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(
        plugin_versions(&sandbox).await,
        [("rh-1".to_owned(), json!("0.2.0"))]
    );
}

#[tokio::test]
async fn authentication_errors() {
    let sandbox = start().await;
    sandbox.seed_default().await;
    let body = create_body("auth-1", "10.00");
    let now = now_timestamp();
    let cases = [
        (
            "wrong key",
            "pk_other",
            API_SECRET,
            now.clone(),
            "invalid_api_key",
        ),
        ("empty key", "", API_SECRET, now.clone(), "invalid_api_key"),
        (
            "wrong secret",
            API_KEY,
            "sk_other",
            now.clone(),
            "invalid_signature",
        ),
        (
            "too old",
            API_KEY,
            API_SECRET,
            (Utc::now() - TimeDelta::seconds(330)).to_rfc3339_opts(SecondsFormat::Secs, true),
            "timestamp_out_of_range",
        ),
        (
            "too far ahead",
            API_KEY,
            API_SECRET,
            (Utc::now() + TimeDelta::seconds(330)).to_rfc3339_opts(SecondsFormat::Secs, true),
            "timestamp_out_of_range",
        ),
        (
            "fractional seconds",
            API_KEY,
            API_SECRET,
            Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            "timestamp_out_of_range",
        ),
        (
            "garbage",
            API_KEY,
            API_SECRET,
            "yesterday".to_owned(),
            "timestamp_out_of_range",
        ),
    ];
    for (what, key, secret, timestamp, code) in &cases {
        let answer = sandbox
            .api_as(
                Method::POST,
                "/v1/refunds",
                Some(&body),
                key,
                secret,
                timestamp,
            )
            .await;
        assert_eq!(answer.status, 401, "{what}: {:?}", answer.body);
        assert_eq!(answer.code(), *code, "{what}");
    }

    // Signed over the path without its query: the signature must cover the target as sent.
    // Then the right signature in upper case: the spec says lowercase hex.
    let timestamp = now_timestamp();
    let target = "/v1/refunds?external_refund_id=x";
    for signature in [
        sign(API_SECRET, "GET", "/v1/refunds", &timestamp, b""),
        sign(API_SECRET, "GET", target, &timestamp, b"").to_uppercase(),
    ] {
        let answer = sandbox
            .http
            .get(format!("{}{target}", sandbox.base))
            .header("X-Api-Key", API_KEY)
            .header("X-Timestamp", &timestamp)
            .header("X-Signature", signature)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401);
        let body: Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "invalid_signature");
    }
    let good = sandbox.api(Method::GET, target, None).await;
    assert_eq!(good.status, 200);

    // No headers at all.
    let bare = sandbox
        .http
        .post(format!("{}/v1/refunds", sandbox.base))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 401);

    let stats = sandbox.stats().await;
    assert_eq!(stats["auth_failures"], cases.len() + 3);
    assert_eq!(stats["refunds_created"], 0);
}

#[tokio::test]
async fn ip_allowlist() {
    let sandbox = start().await;
    sandbox.seed_default().await;
    let set = sandbox
        .control(
            Method::POST,
            "/_sandbox/ip-allowlist",
            Some(json!({"allowed": ["203.0.113.7"]})),
        )
        .await;
    assert_eq!(set.status, 200);
    let refused = sandbox.create(&create_body("ip-1", "10.00")).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.code(), "ip_not_allowed");

    let bad = sandbox
        .control(
            Method::POST,
            "/_sandbox/ip-allowlist",
            Some(json!({"allowed": ["not-an-ip"]})),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.body["error"].is_string());

    sandbox
        .control(
            Method::POST,
            "/_sandbox/ip-allowlist",
            Some(json!({"allowed": ["203.0.113.7", "127.0.0.1"]})),
        )
        .await;
    assert_eq!(
        sandbox.create(&create_body("ip-1", "10.00")).await.status,
        201
    );
    sandbox
        .control(
            Method::POST,
            "/_sandbox/ip-allowlist",
            Some(json!({"allowed": []})),
        )
        .await;
    assert_eq!(
        sandbox.create(&create_body("ip-2", "10.00")).await.status,
        201
    );
}

#[tokio::test]
async fn business_errors() {
    let sandbox = start().await;
    let days_ago =
        |days: i64| (Utc::now() - TimeDelta::days(days)).to_rfc3339_opts(SecondsFormat::Secs, true);
    sandbox.seed_default().await;
    sandbox
        .seed(
            json!({"transaction_id": "txn_unsettled", "amount": "100.00", "currency": "KES",
                     "settled": false}),
        )
        .await;
    sandbox
        .seed(
            json!({"transaction_id": "txn_old", "amount": "100.00", "currency": "KES",
                     "completed_at": days_ago(181)}),
        )
        .await;
    sandbox
        .seed(
            json!({"transaction_id": "txn_179", "amount": "100.00", "currency": "KES",
                     "completed_at": days_ago(179)}),
        )
        .await;

    let refund = |txn: &str, amount: &str, currency: &str, external: &str| {
        json!({"original_transaction_id": txn, "refund_amount": amount, "currency": currency,
               "external_refund_id": external})
        .to_string()
    };
    let cases = [
        (
            refund("txn_nope", "1.00", "KES", "b1"),
            404,
            "invalid_transaction",
        ),
        (
            refund("txn_1", "1.00", "NGN", "b2"),
            422,
            "currency_mismatch",
        ),
        (
            refund("txn_unsettled", "1.00", "KES", "b3"),
            422,
            "transaction_not_settled",
        ),
        (
            refund("txn_old", "1.00", "KES", "b4"),
            422,
            "refund_window_expired",
        ),
        (
            refund("txn_1", "5000.01", "KES", "b5"),
            422,
            "amount_exceeded",
        ),
    ];
    for (body, status, code) in &cases {
        let answer = sandbox.create(body).await;
        assert_eq!(answer.status, *status, "{body}: {:?}", answer.body);
        assert_eq!(answer.code(), *code, "{body}");
    }
    assert_eq!(
        sandbox
            .create(&refund("txn_179", "100.00", "KES", "b6"))
            .await
            .status,
        201
    );

    // Partial refunds add up; failed ones free their amount.
    let first = sandbox.create(&create_body("p1", "3000.00")).await;
    assert_eq!(first.status, 201);
    let over = sandbox.create(&create_body("p2", "2000.01")).await;
    assert_eq!(over.code(), "amount_exceeded");
    let failed = sandbox
        .set_status(
            first.body["refund_id"].as_str().unwrap(),
            json!({"status": "failed", "failure_reason": "wallet_closed"}),
        )
        .await;
    assert_eq!(failed.status, 200);
    assert_eq!(failed.body["failure_reason"], "wallet_closed");
    assert_eq!(
        sandbox.create(&create_body("p2", "5000.00")).await.status,
        201
    );
    // Seeding the same id again replaces it.
    sandbox
        .seed(json!({"transaction_id": "txn_unsettled", "amount": "100.00", "currency": "KES"}))
        .await;
    assert_eq!(
        sandbox
            .create(&refund("txn_unsettled", "1.00", "KES", "b7"))
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn request_validation() {
    let sandbox = start().await;
    sandbox.seed_default().await;
    sandbox
        .seed(json!({"transaction_id": "txn_ugx", "amount": "100000", "currency": "UGX"}))
        .await;
    let ugx = |amount: &str, external: &str| {
        json!({"original_transaction_id": "txn_ugx", "refund_amount": amount, "currency": "UGX",
               "external_refund_id": external})
        .to_string()
    };
    for amount in [
        "1500", "15.5", "-1.00", "0.00", "1e3", "1500.000", " 1.00", "+1.00",
    ] {
        let answer = sandbox.create(&create_body("v-kes", amount)).await;
        assert_eq!(answer.status, 400, "{amount}: {:?}", answer.body);
        assert_eq!(answer.code(), "invalid_request");
    }
    assert_eq!(
        sandbox.create(&ugx("5000.00", "v-ugx")).await.code(),
        "invalid_request"
    );
    assert_eq!(
        sandbox.create(&ugx("0", "v-ugx")).await.code(),
        "invalid_request"
    );
    let ok = sandbox.create(&ugx("5000", "v-ugx")).await;
    assert_eq!(ok.status, 201, "{:?}", ok.body);
    assert_eq!(ok.body["refund_amount"], "5000");
    assert_eq!(ok.body["reason"], Value::Null);

    let long_reason = "r".repeat(256);
    let long_id = "a".repeat(65);
    let bodies = [
        "{".to_owned(),
        r#"{"refund_amount": "1.00", "currency": "KES"}"#.to_owned(),
        r#"{"original_transaction_id": "txn_1", "refund_amount": 1.0, "currency": "KES"}"#
            .to_owned(),
        r#"{"original_transaction_id": "txn_1", "refund_amount": "1.00", "currency": "XXX"}"#
            .to_owned(),
        json!({"original_transaction_id": "txn_1", "refund_amount": "1.00", "currency": "KES",
               "reason": long_reason})
        .to_string(),
        json!({"original_transaction_id": "txn_1", "refund_amount": "1.00", "currency": "KES",
               "external_refund_id": long_id})
        .to_string(),
        json!({"original_transaction_id": "txn_1", "refund_amount": "1.00", "currency": "KES",
               "external_refund_id": "has space"})
        .to_string(),
    ];
    for body in &bodies {
        let answer = sandbox.create(body).await;
        assert_eq!(answer.status, 400, "{body}");
        assert_eq!(answer.code(), "invalid_request", "{body}");
    }
    let stats = sandbox.stats().await;
    assert_eq!(stats["refunds_created"], 1);
}

#[tokio::test]
async fn status_faults() {
    let sandbox = start().await;
    sandbox.seed_default().await;
    sandbox
        .fault(json!({"kind": "status", "status": 429, "count": 1, "retry_after": 7}))
        .await;
    sandbox
        .fault(json!({"kind": "status", "status": 429, "count": 1}))
        .await;
    sandbox
        .fault(json!({"kind": "status", "status": 500, "count": 1}))
        .await;
    sandbox
        .fault(json!({"kind": "status", "status": 502, "count": 1}))
        .await;
    sandbox
        .fault(json!({"kind": "status", "status": 503, "count": 2}))
        .await;
    // Control requests do not consume faults.
    assert_eq!(sandbox.stats().await["refunds_created"], 0);
    // Unauthenticated requests do not consume faults either.
    let unauthenticated = sandbox
        .api_as(
            Method::GET,
            "/v1/refunds/x",
            None,
            "pk_wrong",
            API_SECRET,
            &now_timestamp(),
        )
        .await;
    assert_eq!(unauthenticated.status, 401);

    let body = create_body("f-1", "10.00");
    let expected = [
        (429, "rate_limited", Some("7")),
        (429, "rate_limited", Some("1")),
        (500, "internal_error", None),
        (502, "service_unavailable", None),
        (503, "service_unavailable", None),
        (503, "service_unavailable", None),
    ];
    for (status, code, retry_after) in expected {
        let answer = sandbox.create(&body).await;
        assert_eq!(answer.status, status);
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
    assert_eq!(sandbox.create(&body).await.status, 201);

    // DELETE clears the queue.
    sandbox
        .fault(json!({"kind": "status", "status": 503, "count": 5}))
        .await;
    let cleared = sandbox
        .control(Method::DELETE, "/_sandbox/faults", None)
        .await;
    assert_eq!(cleared.status, 200);
    assert_eq!(sandbox.create(&body).await.status, 200);

    // Bad fault specs.
    for bad in [
        json!({"kind": "status", "status": 404, "count": 1}),
        json!({"kind": "status", "status": 503, "count": 0}),
        json!({"kind": "explode", "count": 1}),
        json!({"kind": "delay", "count": 1}),
    ] {
        let answer = sandbox
            .control(Method::POST, "/_sandbox/faults", Some(bad.clone()))
            .await;
        assert_eq!(answer.status, 400, "{bad}");
        assert!(answer.body["error"].is_string());
    }
}

#[tokio::test]
async fn error_fault_answers_then_next_request_is_processed() {
    let sandbox = start().await;
    sandbox.seed_default().await;
    sandbox
        .fault(json!({"kind": "error", "status": 400, "code": "invalid_request"}))
        .await;
    // Unauthenticated requests do not consume the fault.
    let unauthenticated = sandbox
        .api_as(
            Method::GET,
            "/v1/refunds/x",
            None,
            "pk_wrong",
            API_SECRET,
            &now_timestamp(),
        )
        .await;
    assert_eq!(unauthenticated.status, 401);

    let body = create_body("e-1", "10.00");
    let injected = sandbox.create(&body).await;
    assert_eq!(injected.status, 400, "{:?}", injected.body);
    assert_eq!(injected.code(), "invalid_request");
    let message = injected.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("injected"), "{message}");
    assert!(injected.headers.get("retry-after").is_none());
    // Not processed.
    assert_eq!(sandbox.stats().await["refunds_created"], 0);

    // The same (valid) request is then processed normally.
    let created = sandbox.create(&body).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(sandbox.stats().await["refunds_created"], 1);

    // Unknown codes, Retry-After, and the shared queue order with `status` faults.
    sandbox
        .fault(json!({"kind": "error", "status": 418, "code": "teapot", "retry_after": 7}))
        .await;
    sandbox
        .fault(json!({"kind": "status", "status": 503}))
        .await;
    sandbox
        .fault(json!({"kind": "error", "status": 429, "code": "rate_limited"}))
        .await;
    let expected = [
        (418, "teapot", Some("7")),
        (503, "service_unavailable", None),
        (429, "rate_limited", Some("1")),
    ];
    for (status, code, retry_after) in expected {
        let answer = sandbox
            .api(Method::GET, "/v1/refunds?external_refund_id=e-1", None)
            .await;
        assert_eq!(answer.status, status);
        assert_eq!(answer.code(), code);
        assert_eq!(
            answer
                .headers
                .get("retry-after")
                .map(|v| v.to_str().unwrap()),
            retry_after
        );
    }
    let found = sandbox
        .api(Method::GET, "/v1/refunds?external_refund_id=e-1", None)
        .await;
    assert_eq!(found.status, 200);
}

#[tokio::test]
async fn error_fault_for_a_table_row_without_the_condition() {
    let sandbox = start().await;
    // txn_1 is settled: the 422 comes from the fault only.
    sandbox.seed_default().await;
    sandbox
        .fault(
            json!({"kind": "error", "status": 422, "code": "transaction_not_settled",
                      "count": 2}),
        )
        .await;
    let body = create_body("ns-1", "10.00");
    for _ in 0..2 {
        let answer = sandbox.create(&body).await;
        assert_eq!(answer.status, 422, "{:?}", answer.body);
        assert_eq!(answer.code(), "transaction_not_settled");
        assert!(answer.headers.get("retry-after").is_none());
    }
    assert_eq!(sandbox.stats().await["refunds_created"], 0);
    // The client retries later with the same external id: created once.
    let created = sandbox.create(&body).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(sandbox.create(&body).await.status, 200);
    assert_eq!(sandbox.stats().await["refunds_created"], 1);
}

#[tokio::test]
async fn invalid_error_faults_are_refused() {
    let sandbox = start().await;
    sandbox.seed_default().await;
    for (bad, mentions) in [
        (
            json!({"kind": "error", "status": 200, "code": "invalid_request"}),
            "status 200",
        ),
        (
            json!({"kind": "error", "status": 600, "code": "invalid_request"}),
            "status 600",
        ),
        (json!({"kind": "error", "status": 400, "code": ""}), "code"),
        (
            json!({"kind": "error", "status": 400, "code": "Invalid-Request"}),
            "code",
        ),
        (json!({"kind": "error", "status": 400}), "code"),
        (
            json!({"kind": "error", "status": 400, "code": "invalid_request", "count": 0}),
            "count",
        ),
    ] {
        let answer = sandbox
            .control(Method::POST, "/_sandbox/faults", Some(bad.clone()))
            .await;
        assert_eq!(answer.status, 400, "{bad}");
        let error = answer.body["error"].as_str().expect("error message");
        assert!(error.contains(mentions), "{bad}: {error}");
    }
    // Nothing was queued.
    assert_eq!(
        sandbox.create(&create_body("ok-1", "10.00")).await.status,
        201
    );
}

#[tokio::test]
async fn delay_fault_processes_then_delays() {
    let sandbox = start().await;
    sandbox.seed_default().await;
    sandbox
        .fault(json!({"kind": "delay", "delay_ms": 3000, "count": 1}))
        .await;
    let body = create_body("slow-1", "10.00");
    let timestamp = now_timestamp();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let outcome = impatient
        .post(format!("{}/v1/refunds", sandbox.base))
        .header("X-Api-Key", API_KEY)
        .header("X-Timestamp", &timestamp)
        .header(
            "X-Signature",
            sign(
                API_SECRET,
                "POST",
                "/v1/refunds",
                &timestamp,
                body.as_bytes(),
            ),
        )
        .header("Content-Type", "application/json")
        .body(body.clone())
        .send()
        .await;
    let error = outcome.expect_err("the client times out");
    assert!(error.is_timeout(), "{error}");

    // The refund exists anyway: the lookup a client does after a timeout finds it.
    let found = sandbox
        .api(Method::GET, "/v1/refunds?external_refund_id=slow-1", None)
        .await;
    assert_eq!(found.status, 200);
    assert_eq!(found.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(found.body["data"][0]["status"], "pending");
    assert_eq!(sandbox.stats().await["refunds_created"], 1);
}

#[tokio::test]
async fn status_changes_send_signed_webhooks_in_order() {
    let sandbox = start().await;
    let receiver = receiver(0).await;
    sandbox.set_callback(&receiver.url).await;
    sandbox.seed_default().await;
    let created = sandbox.create(&create_body("wh-1", "100.00")).await;
    let refund_id = created.body["refund_id"].as_str().unwrap().to_owned();

    let processed = sandbox
        .set_status(&refund_id, json!({"status": "processed"}))
        .await;
    assert_eq!(processed.status, 200);
    assert_eq!(processed.body["status"], "processed");
    assert_eq!(processed.body["failure_reason"], Value::Null);
    let reversed = sandbox
        .set_status(&refund_id, json!({"status": "reversed"}))
        .await;
    assert_eq!(reversed.status, 200);

    let received = eventually("two webhooks", || async {
        let got = receiver.received();
        (got.len() >= 2).then_some(got)
    })
    .await;
    assert_eq!(received.len(), 2);
    for (hook, status) in received.iter().zip(["processed", "reversed"]) {
        assert_signed(hook);
        let event = hook.json();
        assert!(event["event_id"].as_str().unwrap().starts_with("evt_"));
        assert_eq!(event["event_type"], "refund.status_changed");
        assert!(event["occurred_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(event["data"]["refund_id"], refund_id.as_str());
        assert_eq!(event["data"]["status"], status);
    }
    assert_eq!(received[1].json()["data"], reversed.body);
    assert_ne!(
        received[0].json()["event_id"],
        received[1].json()["event_id"]
    );

    // Illegal moves and unknown refunds.
    let illegal = sandbox
        .set_status(&refund_id, json!({"status": "processed"}))
        .await;
    assert_eq!(illegal.status, 409);
    assert!(illegal.body["error"].is_string());
    let unknown = sandbox
        .set_status("rfnd_nope", json!({"status": "processed"}))
        .await;
    assert_eq!(unknown.status, 404);
    let bad = sandbox
        .set_status(&refund_id, json!({"status": "exploded"}))
        .await;
    assert_eq!(bad.status, 400);

    let deliveries = sandbox.deliveries().await;
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0]["attempt"], 1);
    assert_eq!(deliveries[0]["status"], 200);
    assert_eq!(deliveries[0]["error"], Value::Null);
    assert_eq!(deliveries[0]["refund_id"], refund_id.as_str());
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_the_same_event() {
    let sandbox = start().await;
    let receiver = receiver(2).await;
    sandbox.set_callback(&receiver.url).await;
    sandbox.seed_default().await;
    let created = sandbox.create(&create_body("retry-1", "100.00")).await;
    let refund_id = created.body["refund_id"].as_str().unwrap().to_owned();
    sandbox
        .set_status(&refund_id, json!({"status": "processed"}))
        .await;

    let received = eventually("three attempts", || async {
        let got = receiver.received();
        (got.len() >= 3).then_some(got)
    })
    .await;
    let event_id = received[0].header("x-mfs-event-id").to_owned();
    for hook in &received {
        assert_signed(hook);
        assert_eq!(hook.header("x-mfs-event-id"), event_id);
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
            .all(|d| d["event_id"] == event_id.as_str())
    );
    assert!(deliveries[0]["error"].is_string());

    // A healthy receiver, but the next attempt is failed by injection: a retry follows.
    sandbox
        .fault(json!({"kind": "fail_webhooks", "count": 1}))
        .await;
    sandbox
        .set_status(&refund_id, json!({"status": "reversed"}))
        .await;
    let deliveries = eventually("injected failure and retry", || async {
        let records = sandbox.deliveries().await;
        (records.len() >= 5).then_some(records)
    })
    .await;
    assert_eq!(deliveries[3]["attempt"], 1);
    assert_eq!(deliveries[3]["status"], Value::Null);
    assert!(deliveries[3]["error"].is_string());
    assert_eq!(deliveries[4]["attempt"], 2);
    assert_eq!(deliveries[4]["status"], 200);
    assert_eq!(deliveries[3]["event_id"], deliveries[4]["event_id"]);
    assert_eq!(receiver.received().len(), 4);
}

#[tokio::test]
async fn attempts_stop_at_the_maximum() {
    let mut config = refundry_sandbox::mfs_africa::Config::new(API_KEY, API_SECRET, WEBHOOK_SECRET);
    config.webhook_retry_base = Duration::from_millis(5);
    config.webhook_max_attempts = 3;
    let receiver = receiver(u32::MAX).await;
    config.callback_url = Some(receiver.url.clone());
    let sandbox = start_with(config).await;
    sandbox.seed_default().await;
    let created = sandbox.create(&create_body("max-1", "100.00")).await;
    let refund_id = created.body["refund_id"].as_str().unwrap().to_owned();
    sandbox
        .set_status(&refund_id, json!({"status": "processed"}))
        .await;
    sandbox
        .set_status(&refund_id, json!({"status": "reversed"}))
        .await;
    // The second event of the refund is attempted only after the first gave up, so six records
    // show where each event stopped.
    let deliveries = eventually("two events given up", || async {
        let records = sandbox.deliveries().await;
        (records.len() >= 6).then_some(records)
    })
    .await;
    let attempts: Vec<u64> = deliveries
        .iter()
        .map(|d| d["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3, 1, 2, 3]);
    assert!(deliveries.iter().all(|d| d["status"] == 500));
    assert_ne!(deliveries[0]["event_id"], deliveries[3]["event_id"]);

    // `failed` without a reason gets a default one.
    let other = sandbox.create(&create_body("max-2", "100.00")).await;
    let failed = sandbox
        .set_status(
            other.body["refund_id"].as_str().unwrap(),
            json!({"status": "failed"}),
        )
        .await;
    assert_eq!(failed.body["failure_reason"], "operator_rejected");
}

#[tokio::test]
async fn drop_and_duplicate_faults() {
    let sandbox = start().await;
    let receiver = receiver(0).await;
    sandbox.set_callback(&receiver.url).await;
    sandbox.seed_default().await;
    let created = sandbox.create(&create_body("dd-1", "100.00")).await;
    let refund_id = created.body["refund_id"].as_str().unwrap().to_owned();

    sandbox
        .fault(json!({"kind": "drop_webhooks", "count": 1}))
        .await;
    sandbox
        .set_status(&refund_id, json!({"status": "processed"}))
        .await;
    sandbox
        .fault(json!({"kind": "duplicate_webhooks", "count": 1}))
        .await;
    sandbox
        .set_status(&refund_id, json!({"status": "reversed"}))
        .await;

    // Events of one refund are delivered in order, so once the two copies of the second event
    // are in, the first event was certainly dropped rather than late.
    let received = eventually("duplicated event", || async {
        let got = receiver.received();
        (got.len() >= 2).then_some(got)
    })
    .await;
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].body, received[1].body);
    assert_eq!(
        received[0].header("x-mfs-event-id"),
        received[1].header("x-mfs-event-id")
    );
    for hook in &received {
        assert_signed(hook);
        assert_eq!(hook.json()["data"]["status"], "reversed");
    }
    let deliveries = sandbox.deliveries().await;
    assert_eq!(deliveries.len(), 2);
}

#[tokio::test]
async fn control_input_errors_and_callback_config() {
    let sandbox = start().await;
    for (path, body) in [
        (
            "/_sandbox/transactions",
            json!({"transaction_id": "t", "amount": "1500", "currency": "KES"}),
        ),
        (
            "/_sandbox/transactions",
            json!({"transaction_id": "t", "amount": "1.00", "currency": "ABC"}),
        ),
        (
            "/_sandbox/transactions",
            json!({"transaction_id": "t", "amount": "1.00", "currency": "KES",
                                          "completed_at": "yesterday"}),
        ),
        (
            "/_sandbox/transactions",
            json!({"amount": "1.00", "currency": "KES"}),
        ),
        (
            "/_sandbox/webhooks/config",
            json!({"callback": "http://127.0.0.1:1/x"}),
        ),
        (
            "/_sandbox/webhooks/config",
            json!({"callback_url": "not a url"}),
        ),
    ] {
        let answer = sandbox
            .control(Method::POST, path, Some(body.clone()))
            .await;
        assert_eq!(answer.status, 400, "{path} {body}");
        assert!(answer.body["error"].is_string(), "{:?}", answer.body);
    }
    let seeded = sandbox
        .control(
            Method::POST,
            "/_sandbox/transactions",
            Some(
                json!({"transaction_id": "t", "amount": "5000", "currency": "UGX",
                        "completed_at": "2026-11-20T10:00:00+03:00"}),
            ),
        )
        .await;
    assert_eq!(seeded.status, 201);
    assert_eq!(
        seeded.body,
        json!({"transaction_id": "t", "amount": "5000", "currency": "UGX",
               "completed_at": "2026-11-20T07:00:00Z", "settled": true})
    );
    let off = sandbox
        .control(
            Method::POST,
            "/_sandbox/webhooks/config",
            Some(json!({"callback_url": null})),
        )
        .await;
    assert_eq!(off.status, 200);
    assert_eq!(off.body, json!({"callback_url": null}));
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let sandbox = start().await;
    let addr = sandbox.handle.addr();
    assert_eq!(sandbox.base, format!("http://{addr}"));
    sandbox.handle.shutdown().await;
    let refused = reqwest::Client::new()
        .get(format!("http://{addr}/_sandbox/stats"))
        .send()
        .await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn a_required_header_that_is_no_header_name_is_refused_at_start() {
    let mut config = refundry_sandbox::mfs_africa::Config::new(API_KEY, API_SECRET, WEBHOOK_SECRET);
    config.require_header = Some("X Plugin Version".into());
    let addr = "127.0.0.1:0".parse().unwrap();
    match refundry_sandbox::mfs_africa::start(config, addr).await {
        Err(refundry_sandbox::SandboxError::Config(message)) => {
            assert!(message.contains("X Plugin Version"), "{message}")
        }
        Err(other) => panic!("expected a configuration error, got {other}"),
        Ok(_) => panic!("a sandbox that would refuse every request started"),
    }
}
