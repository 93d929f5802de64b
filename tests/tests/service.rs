//! `refundry serve` end to end: the real binary as a child process on loopback, against both
//! sandboxes. Every orchestrator rule (idempotency, pre-checks, refusals, retries,
//! unknown outcomes, concurrency), the REST API's answers (auth, limits, listing, CSV, history),
//! and that no configured secret leaks into the logs, the exchange log or the database.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use refundry_tests::join_all;
use refundry_tests::service::{
    MFS, Options, PE, Reply, Service, expect, mfs_body, pe_body, str_of as s, with_original,
};
use reqwest::Method;
use serde_json::{Value, json};

/// Generous: debug builds on a busy 2-core machine.
const T: Duration = Duration::from_secs(30);

/// Asserts the fields of a refund object against the request that made it.
fn assert_matches_request(refund: &Value, request: &Value) {
    for field in [
        "provider",
        "external_refund_id",
        "original_transaction_id",
        "amount",
        "currency",
        "reason",
    ] {
        assert_eq!(refund[field], request[field], "{field} in {refund}");
    }
    if request.get("order_id").is_some() {
        assert_eq!(
            refund["order_id"], request["order_id"],
            "order_id in {refund}"
        );
    }
    for field in [
        "id",
        "plugin_version",
        "plugin_sha256",
        "status",
        "created_at",
        "updated_at",
    ] {
        assert!(
            refund[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field} missing in {refund}"
        );
    }
    for field in ["created_at", "updated_at"] {
        chrono::DateTime::parse_from_rfc3339(s(&refund[field]))
            .unwrap_or_else(|e| panic!("{field} is not RFC 3339 ({e}) in {refund}"));
    }
}

async fn seed_mfs(service: &Service, txn: &str, amount: &str) {
    service.mfs.seed(txn, amount, "KES", 2, true).await;
}

async fn seed_pe(service: &Service, txn: &str, amount: &str) {
    service.pe.seed(txn, amount, "PEN", 2, true).await;
}

#[tokio::test]
async fn health_and_openapi() {
    let service = Service::start().await;
    let health = service.send(Method::GET, "/healthz", None, None).await;
    expect(&health, 200, "healthz without a token");
    let openapi = service.get("/openapi.json").await;
    expect(&openapi, 200, "openapi.json");
    assert!(
        openapi.body["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "not an OpenAPI 3 document: {}",
        openapi.text
    );
    for path in ["/v1/refunds", "/v1/refunds/{id}", "/v1/webhooks/{provider}"] {
        assert!(
            openapi.body["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI paths"
        );
    }
}

#[tokio::test]
async fn creates_a_refund_with_each_provider() {
    let service = Service::start().await;
    seed_mfs(&service, "txn-c1", "500.00").await;
    seed_pe(&service, "pe-c1", "500.00").await;

    let request = mfs_body("txn-c1", "c-mfs-1", 12_345);
    let reply = service.post_refund(&request).await;
    expect(&reply, 201, "MFS Africa create");
    assert!(!reply.replayed(), "a first answer is no replay");
    let refund = &reply.body;
    assert_matches_request(refund, &request);
    assert_eq!(refund["status"], "pending");
    assert_eq!(refund["provider_status"], "pending");
    assert_eq!(refund["failure"], Value::Null);
    assert_eq!(s(&refund["plugin_sha256"]).len(), 64, "{refund}");
    let at_sandbox = service.mfs_refunds().await;
    assert_eq!(at_sandbox.len(), 1);
    assert_eq!(at_sandbox[0]["refund_id"], refund["provider_refund_id"]);
    assert_eq!(at_sandbox[0]["external_refund_id"], "c-mfs-1");
    assert_eq!(at_sandbox[0]["refund_amount"], "123.45");

    let request = pe_body("pe-c1", "c-pe-1", 16_050);
    let reply = service.post_refund(&request).await;
    expect(&reply, 201, "PagoEfectivo create");
    let refund = &reply.body;
    assert_matches_request(refund, &request);
    assert_eq!(refund["status"], "pending");
    let at_sandbox = service.pe_refunds().await;
    assert_eq!(at_sandbox.len(), 1);
    assert_eq!(at_sandbox[0]["referenceId"], refund["provider_refund_id"]);
    assert_eq!(at_sandbox[0]["refundId"], "c-pe-1");
    assert_eq!(at_sandbox[0]["transactionCode"], "ORDER-c-pe-1");
    assert_eq!(at_sandbox[0]["refundAmount"], "160.50");

    // The detail has the same refund.
    let detail = service.refund(s(&refund["id"])).await;
    assert_eq!(detail["provider_refund_id"], refund["provider_refund_id"]);
    assert_eq!(detail["status"], "pending");
}

#[tokio::test]
async fn replay_answers_the_same_and_a_conflict_sends_nothing() {
    let service = Service::start().await;
    seed_mfs(&service, "txn-r", "500.00").await;
    let request = mfs_body("txn-r", "r-1", 10_000);
    let first = service.post_refund(&request).await;
    expect(&first, 201, "first");
    assert!(!first.replayed());

    let replay = service.post_refund(&request).await;
    expect(&replay, 201, "replay gets the first answer's status");
    assert!(replay.replayed(), "Idempotent-Replayed: true missing");
    assert_eq!(replay.body["id"], first.body["id"]);
    assert_eq!(
        replay.body["provider_refund_id"],
        first.body["provider_refund_id"]
    );
    assert_eq!(service.mfs_create_calls().await, 1, "a replay calls nobody");

    // Same key, other parameters: 409 and no provider call.
    for (field, value) in [
        ("amount", json!(10_001)),
        ("original_transaction_id", json!("txn-other")),
        ("currency", json!("UGX")),
    ] {
        let mut other = request.clone();
        other[field] = value;
        let reply = service.post_refund(&other).await;
        expect(&reply, 409, &format!("same key, other {field}"));
        assert_eq!(reply.error_code(), "idempotency_conflict", "{}", reply.text);
    }
    assert_eq!(
        service.mfs_create_calls().await,
        1,
        "a conflict calls nobody"
    );

    // The key is provider + external id: the same external id at the other provider is new.
    seed_pe(&service, "pe-r", "500.00").await;
    let reply = service.post_refund(&pe_body("pe-r", "r-1", 1_000)).await;
    expect(&reply, 201, "same external id, other provider");
    assert_ne!(reply.body["id"], first.body["id"]);
    assert_eq!(service.pe_refunds().await.len(), 1);
}

#[tokio::test]
async fn bad_input_is_400_naming_the_field() {
    let service = Service::start().await;
    seed_mfs(&service, "txn-b", "500.00").await;
    let good = mfs_body("txn-b", "b-1", 100);
    let without = |field: &str| {
        let mut v = good.clone();
        v.as_object_mut().unwrap().remove(field);
        v
    };
    let with = |field: &str, value: Value| {
        let mut v = good.clone();
        v[field] = value;
        v
    };
    let mut bad_original = with_original(good.clone(), 1_000, "KES", 1, None);
    bad_original["original"]["completed_at"] = json!("yesterday");
    let cases: Vec<(&str, Value)> = vec![
        ("amount", without("amount")),
        ("amount", with("amount", json!("1.00"))),
        ("amount", with("amount", json!(0))),
        ("amount", with("amount", json!(-5))),
        ("currency", without("currency")),
        ("currency", with("currency", json!("kenyan shillings"))),
        ("external_refund_id", without("external_refund_id")),
        ("external_refund_id", with("external_refund_id", json!(""))),
        (
            "original_transaction_id",
            without("original_transaction_id"),
        ),
        ("provider", without("provider")),
        ("completed_at", bad_original),
    ];
    for (field, body) in cases {
        let reply = service.post_refund(&body).await;
        expect(&reply, 400, &format!("bad {field}: {body}"));
        let error = &reply.body["error"];
        let named = error["field"].as_str().is_some_and(|f| f.contains(field))
            || error["message"].as_str().is_some_and(|m| m.contains(field));
        assert!(
            named,
            "400 for {body} does not name {field}: {}",
            reply.text
        );
    }
    let reply = service
        .send(
            Method::POST,
            "/v1/refunds",
            Some(&service.gateway_token),
            Some(b"{not json".to_vec()),
        )
        .await;
    expect(&reply, 400, "not JSON");
    assert_eq!(
        service.mfs_create_calls().await,
        0,
        "bad input calls nobody"
    );
}

#[tokio::test]
async fn unknown_provider_is_404() {
    let service = Service::start().await;
    let mut body = mfs_body("txn-x", "x-1", 100);
    body["provider"] = json!("paypal");
    let reply = service.post_refund(&body).await;
    expect(&reply, 404, "unknown provider");
    let reply = service
        .send(
            Method::POST,
            "/v1/webhooks/paypal",
            None,
            Some(b"{}".to_vec()),
        )
        .await;
    expect(&reply, 404, "webhook for an unknown provider");
}

#[tokio::test]
async fn auth_scopes_and_body_limit() {
    let service = Service::start().await;
    seed_mfs(&service, "txn-a", "500.00").await;
    let body = serde_json::to_vec(&mfs_body("txn-a", "a-1", 100)).unwrap();

    let no_token = service
        .send(Method::POST, "/v1/refunds", None, Some(body.clone()))
        .await;
    expect(&no_token, 401, "no token");
    let wrong = service
        .send(
            Method::POST,
            "/v1/refunds",
            Some("not-a-configured-token-at-all"),
            Some(body.clone()),
        )
        .await;
    expect(&wrong, 401, "wrong token");
    let basic = service
        .try_send(
            Method::GET,
            "/v1/refunds",
            None,
            None,
            &[("authorization", &format!("Basic {}", service.gateway_token))],
        )
        .await
        .unwrap();
    expect(&basic, 401, "not a bearer token");
    let prefix = &service.gateway_token[..service.gateway_token.len() - 1];
    let list = service
        .send(Method::GET, "/v1/refunds", Some(prefix), None)
        .await;
    expect(&list, 401, "a prefix of the token");
    assert_eq!(service.mfs_create_calls().await, 0);

    let created = service
        .send(
            Method::POST,
            "/v1/refunds",
            Some(&service.gateway_token),
            Some(body),
        )
        .await;
    expect(&created, 201, "gateway token creates");
    let id = s(&created.body["id"]).to_owned();
    let read = service
        .send(
            Method::GET,
            &format!("/v1/refunds/{id}"),
            Some(&service.gateway_token),
            None,
        )
        .await;
    expect(&read, 200, "gateway token reads");
    let exchanges_path = format!("/v1/refunds/{id}/exchanges");
    let forbidden = service
        .send(
            Method::GET,
            &exchanges_path,
            Some(&service.gateway_token),
            None,
        )
        .await;
    expect(&forbidden, 403, "exchanges need the admin scope");
    let allowed = service.get(&exchanges_path).await;
    expect(&allowed, 200, "ops token reads exchanges");
    let exchanges = allowed.body.as_array().expect("an array of exchanges");
    assert!(!exchanges.is_empty(), "the create's exchange is logged");
    assert!(
        exchanges
            .iter()
            .any(|e| e["method"] == "POST" && e["status"] == 201 && e["refund_id"] == id.as_str()),
        "{}",
        allowed.text
    );

    // A body over 64 KiB is refused before anything else.
    let mut huge = mfs_body("txn-a", "a-2", 100);
    huge["reason"] = json!("x".repeat(70 * 1024));
    let reply = service
        .send(
            Method::POST,
            "/v1/refunds",
            Some(&service.gateway_token),
            Some(serde_json::to_vec(&huge).unwrap()),
        )
        .await;
    expect(&reply, 413, "body over 64 KiB");
    assert_eq!(service.mfs_create_calls().await, 1);
}

/// `body` with its `currency` replaced.
fn in_currency(mut body: Value, currency: &str) -> Value {
    body["currency"] = json!(currency);
    body
}

#[tokio::test]
async fn pre_checks_refuse_without_a_provider_call() {
    let service = Service::start().await;
    // The sandbox would accept every one of these: only the pre-checks can refuse them.
    seed_mfs(&service, "txn-p", "1000.00").await;
    seed_pe(&service, "pe-p", "1000.00").await;
    let cases = [
        (
            "currency_mismatch",
            with_original(mfs_body("txn-p", "p-cur", 100), 10_000, "UGX", 2, None),
        ),
        (
            "amount_exceeded",
            with_original(mfs_body("txn-p", "p-amt", 10_001), 10_000, "KES", 2, None),
        ),
        (
            "window_expired",
            with_original(mfs_body("txn-p", "p-win", 100), 10_000, "KES", 400, None),
        ),
        (
            "not_settled",
            with_original(
                mfs_body("txn-p", "p-set", 100),
                10_000,
                "KES",
                2,
                Some(false),
            ),
        ),
        (
            "window_expired",
            with_original(pe_body("pe-p", "p-pe-win", 100), 10_000, "PEN", 400, None),
        ),
        (
            "amount_exceeded",
            with_original(pe_body("pe-p", "p-pe-amt", 10_001), 10_000, "PEN", 2, None),
        ),
        // A currency Refundry knows but this provider does not refund: well formed, refused.
        (
            "unsupported_currency",
            in_currency(mfs_body("txn-p", "p-mfs-pen", 100), "PEN"),
        ),
        (
            "unsupported_currency",
            in_currency(pe_body("pe-p", "p-pe-kes", 100), "KES"),
        ),
    ];
    for (code, body) in &cases {
        let reply = service.post_refund(body).await;
        expect(&reply, 422, code);
        assert_eq!(reply.error_code(), *code, "{}", reply.text);
        let refund = &reply.body["refund"];
        assert_eq!(refund["status"], "failed", "{}", reply.text);
        assert_eq!(refund["failure"]["code"], *code, "{}", reply.text);
        assert_eq!(refund["external_refund_id"], body["external_refund_id"]);
        // Recorded: readable, failed.
        let detail = service.refund(s(&refund["id"])).await;
        assert_eq!(detail["status"], "failed");
        // A replay gets the same refusal.
        let replay = service.post_refund(body).await;
        expect(&replay, 422, &format!("{code} replay"));
        assert!(replay.replayed());
        assert_eq!(replay.body["refund"]["id"], refund["id"]);
    }
    assert_eq!(service.mfs_create_calls().await, 0, "MFS Africa was called");
    assert_eq!(
        service.pe_create_calls().await,
        0,
        "PagoEfectivo was called"
    );

    // Inside every limit, the same original is fine.
    let ok = with_original(
        mfs_body("txn-p", "p-ok", 10_000),
        10_000,
        "KES",
        2,
        Some(true),
    );
    expect(
        &service.post_refund(&ok).await,
        201,
        "exactly the original amount",
    );
}

#[tokio::test]
async fn remaining_amount_counts_refunds_in_flight_but_not_failed_ones() {
    let service = Service::start().await;
    seed_mfs(&service, "txn-m", "1000.00").await;
    let original = |body: Value| with_original(body, 10_000, "KES", 2, None);

    let first = service
        .post_refund(&original(mfs_body("txn-m", "m-1", 6_000)))
        .await;
    expect(&first, 201, "first partial refund");
    // 6000 pending + 5000 > 10000.
    let second = service
        .post_refund(&original(mfs_body("txn-m", "m-2", 5_000)))
        .await;
    expect(&second, 422, "pending refunds count");
    assert_eq!(second.error_code(), "amount_exceeded");
    let third = service
        .post_refund(&original(mfs_body("txn-m", "m-3", 4_000)))
        .await;
    expect(&third, 201, "what remains");
    let fourth = service
        .post_refund(&original(mfs_body("txn-m", "m-4", 1)))
        .await;
    expect(&fourth, 422, "nothing remains");
    assert_eq!(service.mfs_create_calls().await, 2);

    // The provider fails the first: its amount is free again once the service knows.
    let provider_id = s(&first.body["provider_refund_id"]).to_owned();
    service
        .mfs
        .control(
            &format!("refunds/{provider_id}/status"),
            json!({"status": "failed", "failure_reason": "wallet_closed"}),
        )
        .await;
    let failed = service.wait_status(s(&first.body["id"]), "failed", T).await;
    assert!(failed["failure"].is_object(), "{failed}");
    let fifth = service
        .post_refund(&original(mfs_body("txn-m", "m-5", 6_000)))
        .await;
    expect(&fifth, 201, "a failed refund frees its amount");
    let total: f64 = service
        .mfs_refunds()
        .await
        .iter()
        .filter(|r| r["status"] != "failed")
        .map(|r| s(&r["refund_amount"]).parse::<f64>().unwrap())
        .sum();
    assert!(total <= 100.0, "refunded {total} of 100.00");
}

#[tokio::test]
async fn provider_refusal_is_422_and_recorded_failed() {
    let service = Service::start().await;
    // No such transaction at the provider.
    let body = mfs_body("txn-nowhere", "f-1", 100);
    let reply = service.post_refund(&body).await;
    expect(&reply, 422, "provider refusal");
    assert_eq!(reply.error_code(), "invalid_transaction", "{}", reply.text);
    assert_eq!(
        reply.body["error"]["provider_code"], "invalid_transaction",
        "{}",
        reply.text
    );
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    let refund = &reply.body["refund"];
    assert_eq!(refund["status"], "failed");
    assert_eq!(refund["failure"]["code"], "invalid_transaction");
    assert_eq!(refund["failure"]["provider_code"], "invalid_transaction");
    let detail = service.refund(s(&refund["id"])).await;
    assert_eq!(detail["status"], "failed");
    assert_eq!(service.mfs_create_calls().await, 1);

    let replay = service.post_refund(&body).await;
    expect(&replay, 422, "refusal replay");
    assert!(replay.replayed());
    assert_eq!(replay.body["refund"]["id"], refund["id"]);
    assert_eq!(service.mfs_create_calls().await, 1, "a replay calls nobody");

    // An injected refusal of PagoEfectivo (insufficient balance, code 136).
    seed_pe(&service, "pe-f", "100.00").await;
    service
        .pe
        .control
        .post("balance", json!({"sufficient": false}))
        .await;
    let reply = service.post_refund(&pe_body("pe-f", "f-pe-1", 100)).await;
    expect(&reply, 422, "PagoEfectivo refusal");
    assert_eq!(
        reply.body["error"]["provider_code"], "136",
        "{}",
        reply.text
    );
    assert_eq!(reply.body["refund"]["status"], "failed");
}

#[tokio::test]
async fn retryable_failures_are_retried_with_the_same_key() {
    let service = Service::start().await;
    seed_mfs(&service, "txn-t", "500.00").await;
    seed_pe(&service, "pe-t", "500.00").await;

    service
        .mfs
        .control(
            "faults",
            json!({"kind": "status", "status": 503, "count": 2}),
        )
        .await;
    let reply = service.post_refund(&mfs_body("txn-t", "t-1", 100)).await;
    expect(&reply, 201, "succeeds on the third attempt");
    assert_eq!(service.mfs_create_calls().await, 3);
    let at_sandbox = service.mfs_refunds().await;
    assert_eq!(at_sandbox.len(), 1);
    assert_eq!(at_sandbox[0]["external_refund_id"], "t-1");

    service
        .pe
        .control
        .post(
            "faults",
            json!({"kind": "status", "status": 500, "count": 2}),
        )
        .await;
    let reply = service.post_refund(&pe_body("pe-t", "t-pe-1", 100)).await;
    expect(&reply, 201, "PagoEfectivo succeeds on the third attempt");
    assert_eq!(service.pe_create_calls().await, 3);
    assert_eq!(service.pe_refunds().await.len(), 1);
}

#[tokio::test]
async fn server_errors_through_every_retry_answer_202_never_failed() {
    let service = Service::start().await;
    seed_mfs(&service, "txn-u", "500.00").await;
    service
        .mfs
        .control(
            "faults",
            json!({"kind": "status", "status": 503, "count": 3}),
        )
        .await;
    // A 5xx may have been acted on: the refund is unknown, not failed.
    let reply = service.post_refund(&mfs_body("txn-u", "u-1", 100)).await;
    expect(&reply, 202, "three 503s");
    assert_eq!(reply.body["status"], "unknown", "{}", reply.text);
    assert_eq!(service.mfs_create_calls().await, 3, "at most 3 attempts");
    assert!(service.mfs_refunds().await.is_empty());
    // The janitor asks the provider, which has none, and sends the identical request.
    let id = s(&reply.body["id"]).to_owned();
    service.wait_status(&id, "pending", T).await;
    assert_eq!(service.mfs_refunds().await.len(), 1);
}

#[tokio::test]
async fn rate_limited_through_every_retry_answers_503_with_retry_after_and_nothing_final() {
    let service = Service::start().await;
    seed_mfs(&service, "txn-r", "500.00").await;
    service
        .mfs
        .control(
            "faults",
            json!({"kind": "status", "status": 429, "count": 3, "retry_after": 1}),
        )
        .await;
    let body = mfs_body("txn-r", "r-1", 100);
    let reply = service.post_refund(&body).await;
    expect(&reply, 503, "three 429s");
    assert_eq!(
        reply.body["error"]["code"], "provider_unavailable",
        "{}",
        reply.text
    );
    assert_eq!(reply.body["refund"]["status"], "unknown", "{}", reply.text);
    let retry_after: u64 = reply
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!(retry_after >= 1);
    assert!(service.mfs_refunds().await.is_empty());
    // Nothing final was recorded: the same key is sent again and taken.
    let again = service.post_refund(&body).await;
    expect(&again, 201, "the same key, sent again");
    assert_eq!(again.body["id"], reply.body["refund"]["id"]);
    assert_eq!(service.mfs_refunds().await.len(), 1);
}

#[tokio::test]
async fn lost_answer_is_202_and_the_janitor_resolves_it() {
    let service = Service::start_with(Options {
        http_timeout_ms: Some(500),
        ..Options::default()
    })
    .await;
    seed_mfs(&service, "txn-l", "500.00").await;
    // Processed by the sandbox, answered after the host gave up waiting.
    service
        .mfs
        .control(
            "faults",
            json!({"kind": "delay", "delay_ms": 2000, "count": 1}),
        )
        .await;
    let body = mfs_body("txn-l", "l-1", 100);
    let reply = service.post_refund(&body).await;
    expect(&reply, 202, "outcome unknown");
    assert_eq!(reply.body["status"], "unknown", "{}", reply.text);
    let id = s(&reply.body["id"]).to_owned();

    let replay = service.post_refund(&body).await;
    expect(&replay, 202, "replay of an unknown outcome");
    assert!(replay.replayed());
    assert_eq!(replay.body["id"], id.as_str());

    // The janitor finds it at the provider (by external id).
    let pending = service.wait_status(&id, "pending", T).await;
    let at_sandbox = service.mfs_refunds().await;
    assert_eq!(at_sandbox.len(), 1, "the janitor must not create it again");
    assert_eq!(pending["provider_refund_id"], at_sandbox[0]["refund_id"]);

    service
        .mfs
        .control(
            &format!("refunds/{}/status", s(&at_sandbox[0]["refund_id"])),
            json!({"status": "processed"}),
        )
        .await;
    let done = service.wait_status(&id, "processed", T).await;
    let history = done["history"].as_array().unwrap();
    assert_eq!(history[0]["to"], "unknown", "{done}");
    assert_eq!(history[0]["source"], "api");
    assert!(
        history
            .iter()
            .any(|h| h["source"] == "janitor" && h["to"] == "pending" && h["applied"] == true),
        "{done}"
    );
    assert_eq!(service.mfs_refunds().await.len(), 1);
}

#[tokio::test]
async fn unknown_refund_missing_at_the_provider_is_resent() {
    let service = Service::start_with(Options {
        mfs_proxy: true,
        ..Options::default()
    })
    .await;
    seed_mfs(&service, "txn-s", "500.00").await;
    let proxy = service.mfs_proxy.as_ref().unwrap();
    // The request leaves the host, the provider never sees it, no answer comes.
    proxy.set_dropping(true);
    let body = mfs_body("txn-s", "s-1", 250);
    let reply = service.post_refund(&body).await;
    expect(&reply, 202, "request sent, no answer");
    assert_eq!(reply.body["status"], "unknown");
    assert!(proxy.dropped() >= 1);
    assert!(service.mfs_refunds().await.is_empty());
    proxy.set_dropping(false);

    // The janitor does not find it, and sends the identical request again.
    let id = s(&reply.body["id"]).to_owned();
    let pending = service.wait_status(&id, "pending", T).await;
    let at_sandbox = service.mfs_refunds().await;
    assert_eq!(at_sandbox.len(), 1, "{at_sandbox:?}");
    assert_eq!(at_sandbox[0]["external_refund_id"], "s-1");
    assert_eq!(at_sandbox[0]["original_transaction_id"], "txn-s");
    assert_eq!(at_sandbox[0]["refund_amount"], "2.50");
    assert_eq!(at_sandbox[0]["reason"], "customer_return");
    assert_eq!(pending["provider_refund_id"], at_sandbox[0]["refund_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_requests_make_one_refund() {
    const N: usize = 20;
    let service = Service::start().await;
    seed_mfs(&service, "txn-i", "500.00").await;
    // The first request is in flight while the others come in.
    service
        .mfs
        .control(
            "faults",
            json!({"kind": "delay", "delay_ms": 300, "count": 1}),
        )
        .await;
    let body = mfs_body("txn-i", "i-1", 700);
    let replies = futures_join(N, |_| service.post_refund(&body)).await;
    let first = &replies[0];
    for reply in &replies {
        expect(reply, 201, "every identical request");
        for field in [
            "id",
            "provider_refund_id",
            "amount",
            "external_refund_id",
            "status",
        ] {
            assert_eq!(reply.body[field], first.body[field], "{field} differs");
        }
    }
    assert_eq!(
        replies.iter().filter(|r| !r.replayed()).count(),
        1,
        "exactly one first answer"
    );
    assert_eq!(service.mfs_refunds().await.len(), 1);
    assert_eq!(service.mfs_create_calls().await, 1, "one provider call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_partial_refunds_never_exceed_the_original() {
    const N: usize = 20;
    let service = Service::start().await;
    // The sandbox would allow 1000.00: only the pre-check holds the line at 100.00.
    seed_mfs(&service, "txn-race", "1000.00").await;
    service
        .mfs
        .control(
            "faults",
            json!({"kind": "delay", "delay_ms": 200, "count": 40}),
        )
        .await;
    let bodies: Vec<Value> = (0..N)
        .map(|i| {
            with_original(
                mfs_body("txn-race", &format!("race-{i}"), 1_500),
                10_000,
                "KES",
                2,
                None,
            )
        })
        .collect();
    let replies = futures_join(N, |i| service.post_refund(&bodies[i])).await;
    let accepted = replies.iter().filter(|r| r.status == 201).count();
    for reply in replies.iter().filter(|r| r.status != 201) {
        expect(reply, 422, "over the original");
        assert_eq!(reply.error_code(), "amount_exceeded", "{}", reply.text);
    }
    // 6 x 15.00 = 90.00 fits; a 7th would be 105.00.
    assert_eq!(accepted, 6, "accepted refunds");
    let at_sandbox = service.mfs_refunds().await;
    let cents: i64 = at_sandbox
        .iter()
        .map(|r| (s(&r["refund_amount"]).parse::<f64>().unwrap() * 100.0).round() as i64)
        .sum();
    assert!(cents <= 10_000, "refunded {cents} of 10000 at the sandbox");
    assert_eq!(at_sandbox.len(), 6);
}

/// Runs `n` futures made by `make` concurrently and returns their outputs in order.
async fn futures_join<F, Fut>(n: usize, make: F) -> Vec<Reply>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let mut set = Vec::with_capacity(n);
    for i in 0..n {
        set.push(make(i));
    }
    join_all(set).await
}

/// Creates 5 MFS Africa refunds, 3 PagoEfectivo ones and 1 refused MFS Africa one; returns the
/// service's refund objects in creation order.
async fn mixed_refunds(service: &Service) -> Vec<Value> {
    seed_mfs(service, "txn-list", "1000.00").await;
    seed_pe(service, "pe-list", "1000.00").await;
    let mut made = Vec::new();
    for i in 0..5 {
        let body = mfs_body("txn-list", &format!("list-m{i}"), 100 + i);
        let reply = service.post_refund(&body).await;
        expect(&reply, 201, "MFS Africa refund");
        made.push(reply.body);
        if i == 2 {
            let body = pe_body("pe-list", "list-p0", 200);
            let reply = service.post_refund(&body).await;
            expect(&reply, 201, "PagoEfectivo refund");
            made.push(reply.body);
        }
    }
    for i in 1..3 {
        let reply = service
            .post_refund(&pe_body("pe-list", &format!("list-p{i}"), 200 + i))
            .await;
        expect(&reply, 201, "PagoEfectivo refund");
        made.push(reply.body);
    }
    let refused = with_original(
        mfs_body("txn-list", "list-refused", 100),
        100,
        "KES",
        2,
        Some(false),
    );
    let reply = service.post_refund(&refused).await;
    expect(&reply, 422, "refused refund");
    made.push(reply.body["refund"].clone());
    made
}

fn ids(refunds: &[Value]) -> Vec<String> {
    refunds.iter().map(|r| s(&r["id"]).to_owned()).collect()
}

fn created_at(refund: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s(&refund["created_at"]))
        .unwrap()
        .to_utc()
}

#[tokio::test]
async fn list_paginates_and_filters() {
    // No janitor check during the test: statuses stay as created.
    let service = Service::start_with(Options {
        janitor_backoff_ms: vec![600_000],
        ..Options::default()
    })
    .await;
    let made = mixed_refunds(&service).await;

    // Everything, two at a time, oldest first, no repeats.
    let all = service.list_all("", 2).await;
    assert_eq!(ids(&all), ids(&made), "every refund, in creation order");
    let unique: BTreeSet<String> = ids(&all).into_iter().collect();
    assert_eq!(unique.len(), made.len());

    let by = |pred: &dyn Fn(&Value) -> bool| -> Vec<String> {
        ids(&made.iter().filter(|r| pred(r)).cloned().collect::<Vec<_>>())
    };
    let mfs = service.list_all("provider=mfs-africa", 3).await;
    assert_eq!(ids(&mfs), by(&|r| r["provider"] == MFS));
    let pe = service.list_all("provider=pagoefectivo", 1).await;
    assert_eq!(ids(&pe), by(&|r| r["provider"] == PE));
    let failed = service.list_all("status=failed", 10).await;
    assert_eq!(ids(&failed), by(&|r| r["status"] == "failed"));
    assert_eq!(failed.len(), 1);
    let pending = service
        .list_all("provider=mfs-africa&status=pending", 2)
        .await;
    assert_eq!(
        ids(&pending),
        by(&|r| r["provider"] == MFS && r["status"] == "pending")
    );
    assert_eq!(pending.len(), 5);

    // Created at or after the 4th refund's time; created before it.
    let pivot = created_at(&made[3]);
    let stamp = pivot.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let from = service
        .list_all(
            &format!(
                "created_from={}",
                refundry_tests::service::urlencode(&stamp)
            ),
            2,
        )
        .await;
    assert_eq!(ids(&from), by(&|r| created_at(r) >= pivot));
    let to = service
        .list_all(
            &format!("created_to={}", refundry_tests::service::urlencode(&stamp)),
            2,
        )
        .await;
    assert_eq!(ids(&to), by(&|r| created_at(r) < pivot));
    assert!(!from.is_empty() && !to.is_empty());

    // Nonsense filters are bad input.
    for query in ["status=lost", "limit=0", "created_from=yesterday"] {
        let reply = service.get(&format!("/v1/refunds?{query}")).await;
        expect(&reply, 400, query);
    }
}

#[tokio::test]
async fn csv_export_has_the_same_selection() {
    let service = Service::start_with(Options {
        janitor_backoff_ms: vec![600_000],
        ..Options::default()
    })
    .await;
    let made = mixed_refunds(&service).await;
    let reply = service
        .get("/v1/refunds?provider=mfs-africa&format=csv")
        .await;
    expect(&reply, 200, "CSV export");
    let content_type = reply
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    let mut reader = csv::Reader::from_reader(reply.text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    for column in [
        "id",
        "provider",
        "external_refund_id",
        "original_transaction_id",
        "amount",
        "currency",
        "status",
        "provider_refund_id",
        "created_at",
    ] {
        assert!(
            header.iter().any(|h| h == column),
            "{column} missing: {header:?}"
        );
    }
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let expected: Vec<&Value> = made.iter().filter(|r| r["provider"] == MFS).collect();
    assert_eq!(rows.len(), expected.len(), "{}", reply.text);
    let by_id: HashMap<&str, &csv::StringRecord> =
        rows.iter().map(|r| (&r[col("id")], r)).collect();
    for refund in expected {
        let row = by_id
            .get(s(&refund["id"]))
            .unwrap_or_else(|| panic!("{} missing from the CSV", refund["id"]));
        assert_eq!(&row[col("provider")], MFS);
        assert_eq!(
            &row[col("external_refund_id")],
            s(&refund["external_refund_id"])
        );
        assert_eq!(&row[col("amount")], refund["amount"].to_string());
        assert_eq!(&row[col("currency")], "KES");
        assert_eq!(&row[col("status")], s(&refund["status"]));
    }
}

#[tokio::test]
async fn detail_has_history() {
    let service = Service::start().await;
    seed_mfs(&service, "txn-h", "500.00").await;
    let reply = service.post_refund(&mfs_body("txn-h", "h-1", 100)).await;
    expect(&reply, 201, "create");
    let id = s(&reply.body["id"]).to_owned();
    let detail = service.refund(&id).await;
    let history = detail["history"].as_array().expect("history");
    let last = history.last().expect("a history entry for the create");
    assert_eq!(last["source"], "api");
    assert_eq!(last["to"], "pending");
    assert_eq!(last["applied"], true);
    assert!(last["at"].as_str().is_some());

    service
        .mfs
        .control(
            &format!("refunds/{}/status", s(&reply.body["provider_refund_id"])),
            json!({"status": "processed"}),
        )
        .await;
    let done = service.wait_status(&id, "processed", T).await;
    let history = done["history"].as_array().unwrap();
    let moved = history
        .iter()
        .find(|h| h["to"] == "processed" && h["applied"] == true)
        .unwrap_or_else(|| panic!("no applied move to processed: {done}"));
    assert_eq!(moved["from"], "pending");
    assert!(moved["source"] == "webhook" || moved["source"] == "janitor");
    assert_eq!(moved["provider_status"], "processed");
    assert_eq!(done["provider_status"], "processed");
}

#[tokio::test]
async fn unknown_refund_id_is_404() {
    let service = Service::start().await;
    let reply = service.get("/v1/refunds/rf_does_not_exist").await;
    expect(&reply, 404, "unknown refund");
}

/// A full run (both providers, webhooks, the janitor, refusals, bad tokens) and then a grep of
/// everything the service wrote for every configured secret.
#[tokio::test]
async fn no_secret_leaks_into_logs_exchanges_or_the_database() {
    let service = Service::start_with(Options {
        // Everything Refundry logs, at every level (dependencies at info: no wire dumps).
        log_filter: "info,refundry_service=trace,refundry_runtime=trace,refundry=trace".into(),
        ..Options::default()
    })
    .await;
    seed_mfs(&service, "txn-sec", "500.00").await;
    seed_pe(&service, "pe-sec", "500.00").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let reply = service
            .post_refund(&mfs_body("txn-sec", &format!("sec-m{i}"), 100))
            .await;
        expect(&reply, 201, "MFS Africa");
        ids.push(reply.body.clone());
        let reply = service
            .post_refund(&pe_body("pe-sec", &format!("sec-p{i}"), 100))
            .await;
        expect(&reply, 201, "PagoEfectivo");
        ids.push(reply.body.clone());
    }
    // A refusal and a retried failure write their own exchanges.
    expect(
        &service.post_refund(&mfs_body("nope", "sec-bad", 100)).await,
        422,
        "refusal",
    );
    service
        .mfs
        .control(
            "faults",
            json!({"kind": "status", "status": 503, "count": 1}),
        )
        .await;
    expect(
        &service
            .post_refund(&mfs_body("txn-sec", "sec-m9", 100))
            .await,
        201,
        "retried",
    );
    // Webhooks for some, and the janitor for others (their webhooks are dropped).
    service
        .mfs
        .control("faults", json!({"kind": "drop_webhooks", "count": 1}))
        .await;
    service
        .pe
        .control
        .post("faults", json!({"kind": "drop_webhooks", "count": 1}))
        .await;
    for refund in &ids {
        let provider_id = s(&refund["provider_refund_id"]);
        if refund["provider"] == MFS {
            service
                .mfs
                .control(
                    &format!("refunds/{provider_id}/status"),
                    json!({"status": "processed"}),
                )
                .await;
        } else {
            service
                .pe
                .control
                .post(
                    &format!("refunds/{provider_id}/status"),
                    json!({"status": "completed"}),
                )
                .await;
        }
    }
    for refund in &ids {
        service.wait_status(s(&refund["id"]), "processed", T).await;
    }
    // A forged webhook and bad tokens.
    let forged = service
        .try_send(
            Method::POST,
            &format!("/v1/webhooks/{MFS}"),
            None,
            Some(b"{\"event_id\":\"evt_x\"}".to_vec()),
            &[
                ("x-mfs-event-id", "evt_x"),
                ("x-mfs-timestamp", "2026-01-01T00:00:00Z"),
                ("x-mfs-signature", "00"),
            ],
        )
        .await
        .unwrap();
    assert!(
        forged.status == 401 || forged.status == 400,
        "{}",
        forged.text
    );
    let wrong = service
        .send(
            Method::GET,
            "/v1/refunds",
            Some("wrong-token-0123456789"),
            None,
        )
        .await;
    expect(&wrong, 401, "wrong token");

    let mut exchanges = String::new();
    let all = service.list_all("", 50).await;
    for refund in &all {
        let log = service.exchanges(s(&refund["id"])).await;
        exchanges.push_str(&log.to_string());
    }
    assert!(
        exchanges.contains("/v1/authorizations") && exchanges.contains("/v1/refunds"),
        "the exchange log has both providers' calls"
    );
    let logs = service.logs();
    assert!(
        logs.contains(s(&ids[0]["id"])),
        "the serve log does not cover the run (no refund id in it)"
    );
    let db = service.db_bytes();
    assert!(!db.is_empty());
    for (name, secret) in service.secrets() {
        assert!(!logs.contains(&secret), "{name} appears in the serve log");
        assert!(
            !exchanges.contains(&secret),
            "{name} appears in the exchange log"
        );
        assert!(
            !contains(&db, secret.as_bytes()),
            "{name} appears in the database files"
        );
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Without webhooks, the janitor's checks alone bring a refund to its final status.
#[tokio::test]
async fn janitor_moves_refunds_without_webhooks() {
    let service = Service::start_with(Options {
        webhooks_to_service: false,
        ..Options::default()
    })
    .await;
    seed_pe(&service, "pe-j", "500.00").await;
    let reply = service.post_refund(&pe_body("pe-j", "j-1", 100)).await;
    expect(&reply, 201, "create");
    service
        .pe
        .control
        .post(
            &format!("refunds/{}/status", s(&reply.body["provider_refund_id"])),
            json!({"status": "rejected", "status_reason": "cuenta cerrada"}),
        )
        .await;
    let id = s(&reply.body["id"]).to_owned();
    let done = service.wait_status(&id, "failed", T).await;
    assert_eq!(done["provider_status"], "rejected");
    assert!(
        done["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["source"] == "janitor" && h["to"] == "failed" && h["applied"] == true),
        "{done}"
    );
}

/// `refundry serve` writing its text log to a file, as a service manager collects it, writes
/// plain text: no terminal colour codes.
#[tokio::test]
async fn text_logs_written_to_a_file_carry_no_colour_codes() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let mut service = Service::start().await;
    service.stop().await;
    let log = service.dir().join("text-log.stderr.log");
    let mut child = tokio::process::Command::new(refundry_tests::service::refundry_binary())
        .args(["--log-format", "text", "serve", "--config"])
        .arg(service.config_path())
        .args(["--listen", "127.0.0.1:0"])
        // The service's own default level (info), and colour not turned off from outside.
        .env_remove("REFUNDRY_LOG")
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(T, lines.next_line()).await;
    let first = first
        .expect("a first stdout line")
        .unwrap()
        .unwrap_or_default();
    assert!(first.starts_with("refundry listening on "), "{first:?}");
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("plugin version loaded"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file: {text:?}"
    );
}
