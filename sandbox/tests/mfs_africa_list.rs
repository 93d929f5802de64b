//! The MFS Africa simulator's range list (`GET /v1/refunds?created_from=..&created_to=..`), portal
//! refunds and forgotten refunds, over real HTTP. Refunds are placed at fixed past times with the
//! portal's `created_at`, so the tests do not depend on the day they run.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

/// Seeds `txn_old`: 5000.00 KES, settled, completed well before every time used here.
async fn seed_old(sandbox: &Sandbox) {
    sandbox
        .seed(
            json!({"transaction_id": "txn_old", "amount": "5000.00", "currency": "KES",
                     "completed_at": "2026-09-01T00:00:00Z", "settled": true}),
        )
        .await;
}

async fn portal(sandbox: &Sandbox, body: Value) -> Answer {
    sandbox
        .control(Method::POST, "/_sandbox/portal-refunds", Some(body))
        .await
}

/// A portal refund of 10.00 KES on `txn_old` made at `created_at`; gives the refund object.
async fn portal_at(sandbox: &Sandbox, created_at: &str) -> Value {
    let made = portal(
        sandbox,
        json!({"original_transaction_id": "txn_old", "amount": "10.00", "currency": "KES",
               "created_at": created_at}),
    )
    .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    made.body
}

async fn list(sandbox: &Sandbox, query: &str) -> Answer {
    sandbox
        .api(Method::GET, &format!("/v1/refunds?{query}"), None)
        .await
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|refund| refund["refund_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn seven_refunds_three_per_page_make_three_pages() {
    let sandbox = start().await;
    seed_old(&sandbox).await;
    let mut made = Vec::new();
    // Made out of time order: the list orders by created_at, not by when they were recorded.
    for hour in [3, 0, 6, 1, 5, 2, 4] {
        made.push(portal_at(&sandbox, &format!("2026-11-20T0{hour}:00:00Z")).await);
    }
    made.sort_by_key(|refund| refund["created_at"].as_str().unwrap().to_owned());
    // Outside the range: before it, and an API refund made now.
    portal_at(&sandbox, "2026-11-19T23:59:59Z").await;
    sandbox.seed_default().await;
    assert_eq!(
        sandbox.create(&create_body("api-1", "1.00")).await.status,
        201
    );

    let range = "created_from=2026-11-20T00:00:00Z&created_to=2026-11-21T00:00:00Z";
    let first = list(&sandbox, &format!("{range}&limit=3")).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let keys: Vec<&str> = first
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["data", "has_more"]);
    assert_eq!(first.body["data"], json!(made[0..3]));
    assert_eq!(first.body["has_more"], true);
    let last = &ids(&first.body)[2];
    let second = list(&sandbox, &format!("{range}&limit=3&starting_after={last}")).await;
    assert_eq!(second.body["data"], json!(made[3..6]));
    assert_eq!(second.body["has_more"], true);
    let last = &ids(&second.body)[2];
    let third = list(&sandbox, &format!("{range}&limit=3&starting_after={last}")).await;
    assert_eq!(third.body["data"], json!(made[6..7]));
    assert_eq!(third.body["has_more"], false);

    // The default limit (50) takes them all at once.
    let all = list(&sandbox, range).await;
    assert_eq!(all.body["data"], json!(made));
    assert_eq!(all.body["has_more"], false);
    // Exactly full pages: the last full one says there is no more.
    let seven = list(&sandbox, &format!("{range}&limit=7")).await;
    assert_eq!(seven.body["has_more"], false);
    let six = list(&sandbox, &format!("{range}&limit=6")).await;
    assert_eq!(six.body["has_more"], true);
    // The signed list requests are counted apart from the lookups.
    let stats = sandbox.stats().await;
    assert_eq!(stats["requests"]["GET /v1/refunds?created_from"], 6);
    assert_eq!(stats["requests"]["GET /v1/refunds?external_refund_id"], 0);
}

#[tokio::test]
async fn the_range_includes_created_from_and_excludes_created_to() {
    let sandbox = start().await;
    seed_old(&sandbox).await;
    let before = portal_at(&sandbox, "2026-11-20T09:59:59Z").await;
    let at_from = portal_at(&sandbox, "2026-11-20T10:00:00Z").await;
    let last_second = portal_at(&sandbox, "2026-11-20T10:59:59Z").await;
    let at_to = portal_at(&sandbox, "2026-11-20T11:00:00Z").await;
    let page = list(
        &sandbox,
        "created_from=2026-11-20T10:00:00Z&created_to=2026-11-20T11:00:00Z",
    )
    .await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    assert_eq!(
        page.body,
        json!({"data": [at_from, last_second], "has_more": false})
    );
    let next = list(
        &sandbox,
        "created_from=2026-11-20T11:00:00Z&created_to=2026-11-20T12:00:00Z",
    )
    .await;
    assert_eq!(next.body["data"], json!([at_to]));
    let earlier = list(
        &sandbox,
        "created_from=2026-11-20T09:00:00Z&created_to=2026-11-20T10:00:00Z",
    )
    .await;
    assert_eq!(earlier.body["data"], json!([before]));
    // An empty range is valid and empty.
    let empty = list(
        &sandbox,
        "created_from=2026-11-20T10:00:00Z&created_to=2026-11-20T10:00:00Z",
    )
    .await;
    assert_eq!(empty.status, 200);
    assert_eq!(empty.body, json!({"data": [], "has_more": false}));
}

#[tokio::test]
async fn refunds_of_the_same_second_are_ordered_by_refund_id() {
    let sandbox = start().await;
    seed_old(&sandbox).await;
    let mut expected = Vec::new();
    for _ in 0..4 {
        expected.push(
            portal_at(&sandbox, "2026-11-20T10:00:00Z").await["refund_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    expected.sort();
    let range = "created_from=2026-11-20T00:00:00Z&created_to=2026-11-21T00:00:00Z";
    assert_eq!(ids(&list(&sandbox, range).await.body), expected);
    // Paging one at a time through the tie gives the same order.
    let mut paged = Vec::new();
    let mut query = format!("{range}&limit=1");
    loop {
        let page = list(&sandbox, &query).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        let got = ids(&page.body);
        assert_eq!(got.len(), 1);
        paged.push(got[0].clone());
        if page.body["has_more"] == false {
            break;
        }
        query = format!("{range}&limit=1&starting_after={}", got[0]);
    }
    assert_eq!(paged, expected);
}

#[tokio::test]
async fn refunds_more_than_31_days_apart_are_listed_by_separate_ranges() {
    let sandbox = start().await;
    seed_old(&sandbox).await;
    let october = portal_at(&sandbox, "2026-10-01T12:00:00Z").await;
    let november = portal_at(&sandbox, "2026-11-15T12:00:00Z").await;
    let first = list(
        &sandbox,
        "created_from=2026-09-30T00:00:00Z&created_to=2026-10-31T00:00:00Z",
    )
    .await;
    assert_eq!(first.body["data"], json!([october]));
    let second = list(
        &sandbox,
        "created_from=2026-10-31T00:00:00Z&created_to=2026-12-01T00:00:00Z",
    )
    .await;
    assert_eq!(second.body["data"], json!([november]));
}

#[tokio::test]
async fn malformed_ranges_are_invalid_request() {
    let sandbox = start().await;
    seed_old(&sandbox).await;
    portal_at(&sandbox, "2026-11-20T10:00:00Z").await;
    // Exactly 31 days is allowed.
    let longest = list(
        &sandbox,
        "created_from=2026-11-01T00:00:00Z&created_to=2026-12-02T00:00:00Z",
    )
    .await;
    assert_eq!(longest.status, 200, "{:?}", longest.body);
    for query in [
        // Longer than 31 days.
        "created_from=2026-11-01T00:00:00Z&created_to=2026-12-02T00:00:01Z",
        // Not YYYY-MM-DDTHH:MM:SSZ.
        "created_from=2026-11-01T00:00:00%2B00:00&created_to=2026-11-02T00:00:00Z",
        "created_from=2026-11-01T00:00:00.000Z&created_to=2026-11-02T00:00:00Z",
        "created_from=2026-11-01&created_to=2026-11-02",
        "created_from=2026-11-01T00:00:00z&created_to=2026-11-02T00:00:00Z",
        "created_from=1793491200&created_to=2026-11-02T00:00:00Z",
        // From after to, or one of the two missing.
        "created_from=2026-11-03T00:00:00Z&created_to=2026-11-02T00:00:00Z",
        "created_from=2026-11-01T00:00:00Z",
        "created_to=2026-11-02T00:00:00Z",
        // Limits and cursors.
        "created_from=2026-11-01T00:00:00Z&created_to=2026-11-02T00:00:00Z&limit=0",
        "created_from=2026-11-01T00:00:00Z&created_to=2026-11-02T00:00:00Z&limit=101",
        "created_from=2026-11-01T00:00:00Z&created_to=2026-11-02T00:00:00Z&limit=ten",
        "created_from=2026-11-01T00:00:00Z&created_to=2026-11-02T00:00:00Z&starting_after=rfnd_unknown",
        "created_from=2026-11-01T00:00:00Z&created_from=2026-11-01T00:00:00Z&created_to=2026-11-02T00:00:00Z",
    ] {
        let answer = list(&sandbox, query).await;
        assert_eq!(answer.status, 400, "{query}: {:?}", answer.body);
        assert_eq!(answer.code(), "invalid_request", "{query}");
    }
    // With external_refund_id present the request is the lookup, range or not.
    let lookup = list(
        &sandbox,
        "external_refund_id=nothing&created_from=2026-11-01T00:00:00Z&created_to=2026-12-30T00:00:00Z",
    )
    .await;
    assert_eq!(lookup.status, 200);
    assert_eq!(lookup.body, json!({"data": []}));
}

#[tokio::test]
async fn list_requests_are_authenticated_and_signed_with_their_query() {
    let sandbox = start().await;
    let target = "/v1/refunds?created_from=2026-11-01T00:00:00Z&created_to=2026-11-02T00:00:00Z";
    let url = format!("{}{target}", sandbox.base);
    let timestamp = now_timestamp();

    let unsigned = sandbox.http.get(&url).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    let body: Value = serde_json::from_slice(&unsigned.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");

    // Signed over the path without its query: refused.
    let path_only = sign(API_SECRET, "GET", "/v1/refunds", &timestamp, b"");
    let answer = sandbox
        .http
        .get(&url)
        .header("X-Api-Key", API_KEY)
        .header("X-Timestamp", &timestamp)
        .header("X-Signature", path_only)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    let body: Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "invalid_signature");

    let wrong_secret = sandbox
        .api_as(
            Method::GET,
            target,
            None,
            API_KEY,
            "not-the-secret",
            &timestamp,
        )
        .await;
    assert_eq!(wrong_secret.status, 401);
    assert_eq!(wrong_secret.code(), "invalid_signature");

    let signed = sandbox
        .api_as(Method::GET, target, None, API_KEY, API_SECRET, &timestamp)
        .await;
    assert_eq!(signed.status, 200, "{:?}", signed.body);
    assert_eq!(sandbox.stats().await["auth_failures"], 3);
}

#[tokio::test]
async fn portal_refunds_show_in_lookups_lists_stats_and_webhooks() {
    let sandbox = start().await;
    seed_old(&sandbox).await;
    let receiver = receiver(0).await;
    sandbox.set_callback(&receiver.url).await;
    let made = portal(
        &sandbox,
        json!({"original_transaction_id": "txn_old", "amount_minor": 150_000, "currency": "KES",
               "reason": "goodwill", "external_refund_id": "desk-7",
               "created_at": "2026-11-20T10:00:00.750+03:00"}),
    )
    .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let refund_id = made.body["refund_id"].as_str().unwrap().to_owned();
    assert!(refund_id.starts_with("rfnd_"), "{refund_id}");
    assert_eq!(
        made.body,
        json!({"refund_id": refund_id, "external_refund_id": "desk-7",
               "original_transaction_id": "txn_old", "refund_amount": "1500.00",
               "currency": "KES", "reason": "goodwill", "status": "pending",
               "failure_reason": null, "created_at": "2026-11-20T07:00:00Z",
               "updated_at": "2026-11-20T07:00:00Z"})
    );
    // Without an external id, as staff make them: null, and a created_at of now by default.
    let anonymous = portal(
        &sandbox,
        json!({"original_transaction_id": "txn_old", "amount": "5.00", "currency": "KES"}),
    )
    .await;
    assert_eq!(anonymous.status, 201, "{:?}", anonymous.body);
    assert_eq!(anonymous.body["external_refund_id"], Value::Null);
    assert_eq!(anonymous.body["reason"], Value::Null);
    let made_at =
        chrono::DateTime::parse_from_rfc3339(anonymous.body["created_at"].as_str().unwrap())
            .unwrap();
    assert!((chrono::Utc::now() - made_at.to_utc()).num_seconds().abs() < 60);

    let got = sandbox
        .api(Method::GET, &format!("/v1/refunds/{refund_id}"), None)
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, made.body);
    let by_external = list(&sandbox, "external_refund_id=desk-7").await;
    assert_eq!(by_external.body, json!({"data": [made.body]}));
    let listed = list(
        &sandbox,
        "created_from=2026-11-20T00:00:00Z&created_to=2026-11-21T00:00:00Z",
    )
    .await;
    assert_eq!(listed.body, json!({"data": [made.body], "has_more": false}));
    let stats = sandbox.stats().await;
    assert_eq!(stats["refunds_created"], 2);
    assert_eq!(stats["portal_refunds_created"], 2);
    assert_eq!(stats["refunds_deleted"], 0);

    // A portal refund moves and is announced like any other.
    let moved = sandbox
        .set_status(&refund_id, json!({"status": "processed"}))
        .await;
    assert_eq!(moved.status, 200, "{:?}", moved.body);
    let received = eventually("the webhook", || async {
        receiver.received().into_iter().next()
    })
    .await;
    assert_signed(&received);
    assert_eq!(received.json()["data"]["refund_id"], refund_id);
    assert_eq!(received.json()["data"]["status"], "processed");

    // The portal does not replay: an external id in use is refused.
    let again = portal(
        &sandbox,
        json!({"original_transaction_id": "txn_old", "amount_minor": 150_000, "currency": "KES",
               "external_refund_id": "desk-7"}),
    )
    .await;
    assert_eq!(again.status, 409, "{:?}", again.body);
    assert_eq!(again.body["code"], "duplicate_external_refund_id");
}

#[tokio::test]
async fn a_portal_refund_follows_the_business_rules() {
    let sandbox = start().await;
    sandbox.seed_default().await;
    let api = sandbox.create(&create_body("api-1", "4000.00")).await;
    assert_eq!(api.status, 201);
    let refuse = |body: Value, status: u16, code: Option<&'static str>| {
        let sandbox = &sandbox;
        async move {
            let answer = portal(sandbox, body.clone()).await;
            assert_eq!(answer.status, status, "{body}: {:?}", answer.body);
            assert!(answer.body["error"].is_string(), "{:?}", answer.body);
            assert_eq!(
                answer.body.get("code").and_then(Value::as_str),
                code,
                "{body}"
            );
        }
    };
    // Over the refundable balance (5000.00 minus the API's 4000.00).
    refuse(
        json!({"original_transaction_id": "txn_1", "amount": "1000.01", "currency": "KES"}),
        422,
        Some("amount_exceeded"),
    )
    .await;
    refuse(
        json!({"original_transaction_id": "txn_1", "amount": "10.00", "currency": "UGX"}),
        400,
        None,
    )
    .await;
    refuse(
        json!({"original_transaction_id": "txn_1", "amount": "10.00", "currency": "USD"}),
        422,
        Some("currency_mismatch"),
    )
    .await;
    refuse(
        json!({"original_transaction_id": "txn_none", "amount": "10.00", "currency": "KES"}),
        404,
        Some("invalid_transaction"),
    )
    .await;
    // Before the original completed (an hour ago), or in the future.
    refuse(
        json!({"original_transaction_id": "txn_1", "amount": "10.00", "currency": "KES",
               "created_at": "2026-01-01T00:00:00Z"}),
        422,
        None,
    )
    .await;
    refuse(
        json!({"original_transaction_id": "txn_1", "amount": "10.00", "currency": "KES",
               "created_at": "2999-01-01T00:00:00Z"}),
        422,
        None,
    )
    .await;
    // Malformed bodies.
    for body in [
        json!({"original_transaction_id": "txn_1", "amount": "10.00", "amount_minor": 1000,
               "currency": "KES"}),
        json!({"original_transaction_id": "txn_1", "currency": "KES"}),
        json!({"original_transaction_id": "txn_1", "amount": "10", "currency": "KES"}),
        json!({"original_transaction_id": "txn_1", "amount_minor": 0, "currency": "KES"}),
        json!({"original_transaction_id": "txn_1", "amount": "10.00", "currency": "KES",
               "external_refund_id": "has space"}),
        json!({"original_transaction_id": "txn_1", "amount": "10.00", "currency": "KES",
               "created_at": "yesterday"}),
        json!({"original_transaction_id": "txn_1", "amount": "10.00", "currency": "KES",
               "unknown": 1}),
    ] {
        refuse(body, 400, None).await;
    }
    // Exactly the rest is allowed, and then the API has nothing left.
    let rest = portal(
        &sandbox,
        json!({"original_transaction_id": "txn_1", "amount": "1000.00", "currency": "KES"}),
    )
    .await;
    assert_eq!(rest.status, 201, "{:?}", rest.body);
    let more = sandbox.create(&create_body("api-2", "0.01")).await;
    assert_eq!(more.status, 422);
    assert_eq!(more.code(), "amount_exceeded");
    assert_eq!(sandbox.stats().await["refunds_created"], 2);
}

#[tokio::test]
async fn a_deleted_refund_is_gone_from_lookups_and_lists() {
    let sandbox = start().await;
    sandbox.seed_default().await;
    let created = sandbox.create(&create_body("lost-1", "4000.00")).await;
    assert_eq!(created.status, 201);
    let refund_id = created.body["refund_id"].as_str().unwrap().to_owned();
    let kept = sandbox.create(&create_body("kept-1", "500.00")).await;
    let now = chrono::Utc::now();
    let range = format!(
        "created_from={}&created_to={}",
        (now - chrono::TimeDelta::days(1)).format("%Y-%m-%dT%H:%M:%SZ"),
        (now + chrono::TimeDelta::days(1)).format("%Y-%m-%dT%H:%M:%SZ"),
    );
    assert_eq!(ids(&list(&sandbox, &range).await.body).len(), 2);

    let deleted = sandbox
        .control(
            Method::DELETE,
            &format!("/_sandbox/refunds/{refund_id}"),
            None,
        )
        .await;
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.body, json!({ "deleted": refund_id }));
    let got = sandbox
        .api(Method::GET, &format!("/v1/refunds/{refund_id}"), None)
        .await;
    assert_eq!(got.status, 404);
    assert_eq!(got.code(), "refund_not_found");
    assert_eq!(
        list(&sandbox, "external_refund_id=lost-1").await.body,
        json!({ "data": [] })
    );
    assert_eq!(
        list(&sandbox, &range).await.body,
        json!({ "data": [kept.body], "has_more": false })
    );
    let again = sandbox
        .control(
            Method::DELETE,
            &format!("/_sandbox/refunds/{refund_id}"),
            None,
        )
        .await;
    assert_eq!(again.status, 404);
    assert!(again.body["error"].is_string());
    // The lost refund no longer holds its amount or its external id.
    let remade = sandbox.create(&create_body("lost-1", "4500.00")).await;
    assert_eq!(remade.status, 201, "{:?}", remade.body);
    assert_ne!(remade.body["refund_id"], refund_id.as_str());
    let stats = sandbox.stats().await;
    assert_eq!(stats["refunds_created"], 3);
    assert_eq!(stats["refunds_deleted"], 1);
}
