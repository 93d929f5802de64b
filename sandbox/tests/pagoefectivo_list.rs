//! The PagoEfectivo simulator's range list (`GET /v1/refunds?dateFrom=..&dateTo=..`), back-office
//! ("portal") refunds and forgotten refunds, over real HTTP. Refunds are placed at fixed past
//! times with the portal's `created_at`, so the tests do not depend on the day they run.

mod common;
mod pe_common;

use common::{eventually, receiver};
use pe_common::*;
use reqwest::Method;
use serde_json::{Value, json};

/// Seeds `TX-OLD`: 500.00 PEN, paid well before every time used here.
async fn seed_old(sandbox: &Pe) {
    sandbox
        .seed(
            json!({"transaction_id": "TX-OLD", "amount": "500.00", "currency": "PEN",
                     "paid_at": "2026-09-01T00:00:00-05:00"}),
        )
        .await;
}

async fn portal(sandbox: &Pe, body: Value) -> Answer {
    sandbox
        .control(Method::POST, "/_sandbox/portal-refunds", Some(body))
        .await
}

/// A portal refund of 1.00 PEN on `TX-OLD` made at `created_at`; gives the refund object.
async fn portal_at(sandbox: &Pe, created_at: &str) -> Value {
    let made = portal(
        sandbox,
        json!({"transaction_id": "TX-OLD", "amount": "1.00", "currency": "PEN",
               "created_at": created_at}),
    )
    .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    made.body
}

async fn list(sandbox: &Pe, query: &str) -> Answer {
    sandbox
        .api(Method::GET, &format!("/v1/refunds?{query}"), None)
        .await
}

/// The `data` of a successful list, after checking its shape.
fn page_of(answer: &Answer) -> &Value {
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let data = answer.data(false);
    let mut keys: Vec<&str> = data
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["items", "page", "pageSize", "totalPages"]);
    data
}

fn references(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items array")
        .iter()
        .map(|refund| refund["referenceId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn seven_refunds_three_per_page_make_three_pages() {
    let sandbox = start().await;
    seed_old(&sandbox).await;
    let mut made = Vec::new();
    // Made out of time order: the list orders by dateCreation, not by when they were recorded.
    for hour in [3, 0, 6, 1, 5, 2, 4] {
        made.push(portal_at(&sandbox, &format!("2026-11-20T0{hour}:00:00-05:00")).await);
    }
    made.sort_by_key(|refund| refund["dateCreation"].as_str().unwrap().to_owned());
    portal_at(&sandbox, "2026-11-19T23:59:59-05:00").await;

    let range = "dateFrom=2026-11-20T00:00:00-05:00&dateTo=2026-11-21T00:00:00-05:00";
    for (page, expected) in [(1, &made[0..3]), (2, &made[3..6]), (3, &made[6..7])] {
        let answer = list(&sandbox, &format!("{range}&page={page}&pageSize=3")).await;
        assert_eq!(
            page_of(&answer),
            &json!({"items": expected, "page": page, "pageSize": 3, "totalPages": 3})
        );
    }
    // Past the last page: no items, the same totalPages.
    let past = list(&sandbox, &format!("{range}&page=4&pageSize=3")).await;
    assert_eq!(
        page_of(&past),
        &json!({"items": [], "page": 4, "pageSize": 3, "totalPages": 3})
    );
    // Defaults: page 1 of 50.
    let all = list(&sandbox, range).await;
    assert_eq!(
        page_of(&all),
        &json!({"items": made, "page": 1, "pageSize": 50, "totalPages": 1})
    );
    // A range without refunds has no pages.
    let empty = list(
        &sandbox,
        "dateFrom=2026-10-01T00:00:00-05:00&dateTo=2026-10-02T00:00:00-05:00",
    )
    .await;
    assert_eq!(
        page_of(&empty),
        &json!({"items": [], "page": 1, "pageSize": 50, "totalPages": 0})
    );
    let stats = sandbox.stats().await;
    assert_eq!(stats["requests"]["GET /v1/refunds?dateFrom"], 6);
    assert_eq!(stats["requests"]["GET /v1/refunds?refundId"], 0);
}

#[tokio::test]
async fn the_range_is_half_open_in_lima_time() {
    let sandbox = start().await;
    seed_old(&sandbox).await;
    // Given in UTC to the portal; Lima is five hours behind.
    let at_from = portal_at(&sandbox, "2026-11-24T05:00:00Z").await;
    assert_eq!(at_from["dateCreation"], "2026-11-24T00:00:00-05:00");
    let last_second = portal_at(&sandbox, "2026-11-25T04:59:59Z").await;
    assert_eq!(last_second["dateCreation"], "2026-11-24T23:59:59-05:00");
    assert_eq!(last_second["dateUpdate"], "2026-11-24T23:59:59-05:00");
    let at_to = portal_at(&sandbox, "2026-11-25T05:00:00Z").await;
    assert_eq!(at_to["dateCreation"], "2026-11-25T00:00:00-05:00");
    let before = portal_at(&sandbox, "2026-11-24T04:59:59Z").await;

    let day = list(
        &sandbox,
        "dateFrom=2026-11-24T00:00:00-05:00&dateTo=2026-11-25T00:00:00-05:00",
    )
    .await;
    assert_eq!(page_of(&day)["items"], json!([at_from, last_second]));
    let next = list(
        &sandbox,
        "dateFrom=2026-11-25T00:00:00-05:00&dateTo=2026-11-26T00:00:00-05:00",
    )
    .await;
    assert_eq!(page_of(&next)["items"], json!([at_to]));
    let previous = list(
        &sandbox,
        "dateFrom=2026-11-23T00:00:00-05:00&dateTo=2026-11-24T00:00:00-05:00",
    )
    .await;
    assert_eq!(page_of(&previous)["items"], json!([before]));
}

#[tokio::test]
async fn refunds_of_the_same_second_are_ordered_by_reference_id() {
    let sandbox = start().await;
    seed_old(&sandbox).await;
    let later = portal_at(&sandbox, "2026-11-20T10:00:01-05:00").await;
    let mut same = Vec::new();
    for _ in 0..3 {
        same.push(portal_at(&sandbox, "2026-11-20T10:00:00-05:00").await);
    }
    same.sort_by_key(|refund| refund["referenceId"].as_str().unwrap().to_owned());
    same.push(later);
    let range = "dateFrom=2026-11-20T00:00:00-05:00&dateTo=2026-11-21T00:00:00-05:00";
    let all = list(&sandbox, range).await;
    assert_eq!(page_of(&all)["items"], json!(same));
    let mut paged = Vec::new();
    for page in 1..=4 {
        let answer = list(&sandbox, &format!("{range}&page={page}&pageSize=1")).await;
        paged.extend(references(page_of(&answer)));
    }
    assert_eq!(paged, references(page_of(&all)));
}

#[tokio::test]
async fn refunds_more_than_31_days_apart_are_listed_by_separate_ranges() {
    let sandbox = start().await;
    seed_old(&sandbox).await;
    let october = portal_at(&sandbox, "2026-10-01T12:00:00-05:00").await;
    let november = portal_at(&sandbox, "2026-11-15T12:00:00-05:00").await;
    let first = list(
        &sandbox,
        "dateFrom=2026-09-30T00:00:00-05:00&dateTo=2026-10-31T00:00:00-05:00",
    )
    .await;
    assert_eq!(page_of(&first)["items"], json!([october]));
    let second = list(
        &sandbox,
        "dateFrom=2026-10-31T00:00:00-05:00&dateTo=2026-12-01T00:00:00-05:00",
    )
    .await;
    assert_eq!(page_of(&second)["items"], json!([november]));
}

#[tokio::test]
async fn malformed_ranges_are_111_naming_the_field() {
    let sandbox = start().await;
    let longest = list(
        &sandbox,
        "dateFrom=2026-11-01T00:00:00-05:00&dateTo=2026-12-02T00:00:00-05:00",
    )
    .await;
    page_of(&longest);
    for (query, fields) in [
        (
            "dateFrom=2026-11-01T00:00:00-05:00&dateTo=2026-12-02T00:00:01-05:00",
            vec!["dateTo"],
        ),
        (
            "dateFrom=2026-11-01T05:00:00Z&dateTo=2026-11-02T00:00:00-05:00",
            vec!["dateFrom"],
        ),
        (
            "dateFrom=2026-11-01T00:00:00%2B00:00&dateTo=2026-11-02",
            vec!["dateFrom", "dateTo"],
        ),
        (
            "dateFrom=2026-11-01T00:00:00.000-05:00&dateTo=2026-11-02T00:00:00-05:00",
            vec!["dateFrom"],
        ),
        (
            "dateFrom=2026-11-03T00:00:00-05:00&dateTo=2026-11-02T00:00:00-05:00",
            vec!["dateTo"],
        ),
        ("dateFrom=2026-11-01T00:00:00-05:00", vec!["dateTo"]),
        ("pageSize=10", vec!["dateFrom", "dateTo"]),
        (
            "dateFrom=2026-11-01T00:00:00-05:00&dateTo=2026-11-02T00:00:00-05:00&page=0&pageSize=101",
            vec!["page", "pageSize"],
        ),
        (
            "dateFrom=2026-11-01T00:00:00-05:00&dateTo=2026-11-02T00:00:00-05:00&pageSize=0",
            vec!["pageSize"],
        ),
    ] {
        let answer = list(&sandbox, query).await;
        assert_eq!(answer.status, 400, "{query}: {:?}", answer.body);
        assert_eq!(answer.code(), "111", "{query}");
        assert_eq!(answer.fields(), fields, "{query}");
    }
    // With refundId present the request is the lookup, range or not.
    let lookup = list(
        &sandbox,
        "refundId=nothing&dateFrom=2026-11-01T00:00:00-05:00&dateTo=2026-12-30T00:00:00-05:00",
    )
    .await;
    assert_eq!(lookup.status, 200);
    assert_eq!(lookup.data(false), &json!([]));
}

#[tokio::test]
async fn list_requests_need_the_token_and_a_signature_over_the_query() {
    let sandbox = start().await;
    let target = "/v1/refunds?dateFrom=2026-11-01T00:00:00-05:00&dateTo=2026-11-02T00:00:00-05:00";
    let token = sandbox.token().await;
    let bearer = format!("Bearer {token}");

    let unsigned = sandbox
        .api_raw(Method::GET, target, None, Some(&bearer), None)
        .await;
    assert_eq!(unsigned.status, 401);
    assert_eq!(unsigned.code(), "107");
    let path_only = sandbox
        .api_raw(
            Method::GET,
            target,
            None,
            Some(&bearer),
            Some(&sign("/v1/refunds", "")),
        )
        .await;
    assert_eq!(path_only.status, 401);
    assert_eq!(path_only.code(), "107");
    let other_query = sandbox
        .api_raw(
            Method::GET,
            target,
            None,
            Some(&bearer),
            Some(&sign(&format!("{target}&page=2"), "")),
        )
        .await;
    assert_eq!(other_query.status, 401);
    assert_eq!(other_query.code(), "107");
    let no_token = sandbox
        .api_raw(Method::GET, target, None, None, Some(&sign(target, "")))
        .await;
    assert_eq!(no_token.status, 401);
    assert_eq!(no_token.code(), "106");
    let signed = sandbox
        .api_raw(
            Method::GET,
            target,
            None,
            Some(&bearer),
            Some(&sign(target, "")),
        )
        .await;
    page_of(&signed);
}

#[tokio::test]
async fn portal_refunds_show_in_lookups_lists_stats_and_notifications() {
    let sandbox = start().await;
    seed_old(&sandbox).await;
    let receiver = receiver(0).await;
    sandbox.set_callback(&receiver.url).await;
    let made = portal(
        &sandbox,
        json!({"transaction_id": "TX-OLD", "amount_minor": 16_050, "currency": "PEN",
               "reason": "cortesía", "refund_id": "desk-7", "transaction_code": "ORDER-7",
               "created_at": "2026-11-20T10:00:00.900Z"}),
    )
    .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    assert_refund_shape(&made.body);
    let reference = made.body["referenceId"].as_str().unwrap().to_owned();
    assert!(reference.starts_with("PE-RF-"), "{reference}");
    assert_eq!(
        made.body,
        json!({"refundId": "desk-7", "referenceId": reference, "transactionId": "TX-OLD",
               "transactionCode": "ORDER-7", "refundAmount": "160.50", "currency": "PEN",
               "status": "pending", "statusReason": null,
               "dateCreation": "2026-11-20T05:00:00-05:00",
               "dateUpdate": "2026-11-20T05:00:00-05:00"})
    );
    // Without a refund_id: portal-<n>; the transaction code defaults to the transaction id; the
    // creation time to now.
    let anonymous = portal(
        &sandbox,
        json!({"transaction_id": "TX-OLD", "amount": "1.00", "currency": "PEN"}),
    )
    .await;
    assert_eq!(anonymous.status, 201, "{:?}", anonymous.body);
    assert_eq!(anonymous.body["refundId"], "portal-1");
    assert_eq!(anonymous.body["transactionCode"], "TX-OLD");
    let made_at = parse_lima(anonymous.body["dateCreation"].as_str().unwrap());
    assert!((chrono::Utc::now() - made_at).num_seconds().abs() < 60);
    let second = portal(
        &sandbox,
        json!({"transaction_id": "TX-OLD", "amount": "1.00", "currency": "PEN"}),
    )
    .await;
    assert_eq!(second.body["refundId"], "portal-2");

    let got = sandbox
        .api(Method::GET, &format!("/v1/refunds/{reference}"), None)
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.data(false), &made.body);
    let by_refund_id = list(&sandbox, "refundId=desk-7").await;
    assert_eq!(by_refund_id.data(false), &json!([made.body]));
    let listed = list(
        &sandbox,
        "dateFrom=2026-11-20T00:00:00-05:00&dateTo=2026-11-21T00:00:00-05:00",
    )
    .await;
    assert_eq!(page_of(&listed)["items"], json!([made.body]));
    let stats = sandbox.stats().await;
    assert_eq!(stats["refunds_created"], 3);
    assert_eq!(stats["portal_refunds_created"], 3);
    assert_eq!(stats["refunds_deleted"], 0);

    let moved = sandbox
        .set_status(&reference, json!({"status": "completed"}))
        .await;
    assert_eq!(moved.status, 200, "{:?}", moved.body);
    let received = eventually("the notification", || async {
        receiver.received().into_iter().next()
    })
    .await;
    assert_notification_signed(&received);
    assert_eq!(received.json()["eventType"], "refund.completed");
    assert_eq!(received.json()["data"]["referenceId"], reference);

    // The back office does not replay: a refundId in use is refused.
    let again = portal(
        &sandbox,
        json!({"transaction_id": "TX-OLD", "amount": "160.50", "currency": "PEN",
               "refund_id": "desk-7"}),
    )
    .await;
    assert_eq!(again.status, 409, "{:?}", again.body);
    assert_eq!(again.body["code"], "131");
}

#[tokio::test]
async fn a_portal_refund_follows_the_business_rules() {
    let sandbox = start().await;
    sandbox.seed_default().await;
    let api = sandbox.create(&create_body("api-1", "400.00")).await;
    assert_eq!(api.status, 201, "{:?}", api.body);
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
    // Over the refundable balance (500.00 minus the API's 400.00).
    refuse(
        json!({"transaction_id": "81234567", "amount": "100.01", "currency": "PEN"}),
        422,
        Some("132"),
    )
    .await;
    refuse(
        json!({"transaction_id": "81234567", "amount": "1.00", "currency": "USD"}),
        422,
        Some("133"),
    )
    .await;
    refuse(
        json!({"transaction_id": "nothing", "amount": "1.00", "currency": "PEN"}),
        404,
        Some("120"),
    )
    .await;
    // Before the payment (an hour ago), or in the future.
    refuse(
        json!({"transaction_id": "81234567", "amount": "1.00", "currency": "PEN",
               "created_at": "2026-01-01T00:00:00-05:00"}),
        422,
        None,
    )
    .await;
    refuse(
        json!({"transaction_id": "81234567", "amount": "1.00", "currency": "PEN",
               "created_at": "2999-01-01T00:00:00-05:00"}),
        422,
        None,
    )
    .await;
    for body in [
        json!({"transaction_id": "81234567", "amount": "1.00", "amount_minor": 100,
               "currency": "PEN"}),
        json!({"transaction_id": "81234567", "currency": "PEN"}),
        json!({"transaction_id": "81234567", "amount": "1.0", "currency": "PEN"}),
        json!({"transaction_id": "81234567", "amount": "1.00", "currency": "EUR"}),
        json!({"transaction_id": "81234567", "amount_minor": -1, "currency": "PEN"}),
        json!({"transaction_id": "81234567", "amount": "1.00", "currency": "PEN",
               "refund_id": "has space"}),
        json!({"transaction_id": "81234567", "amount": "1.00", "currency": "PEN",
               "created_at": "ayer"}),
        json!({"transaction_id": "", "amount": "1.00", "currency": "PEN"}),
    ] {
        refuse(body, 400, None).await;
    }
    // The merchant balance rule applies too.
    let balance = sandbox
        .control(
            Method::POST,
            "/_sandbox/balance",
            Some(json!({"sufficient": false})),
        )
        .await;
    assert_eq!(balance.status, 200);
    refuse(
        json!({"transaction_id": "81234567", "amount": "1.00", "currency": "PEN"}),
        422,
        Some("136"),
    )
    .await;
    sandbox
        .control(
            Method::POST,
            "/_sandbox/balance",
            Some(json!({"sufficient": true})),
        )
        .await;
    let rest = portal(
        &sandbox,
        json!({"transaction_id": "81234567", "amount": "100.00", "currency": "PEN"}),
    )
    .await;
    assert_eq!(rest.status, 201, "{:?}", rest.body);
    let more = sandbox.create(&create_body("api-2", "0.01")).await;
    assert_eq!(more.status, 422);
    assert_eq!(more.code(), "132");
    assert_eq!(sandbox.stats().await["refunds_created"], 2);
}

#[tokio::test]
async fn a_deleted_refund_is_gone_from_lookups_and_lists() {
    let sandbox = start().await;
    sandbox.seed_default().await;
    let created = sandbox.create(&create_body("lost-1", "400.00")).await;
    assert_eq!(created.status, 201);
    let lost = created.data(true).clone();
    let reference = lost["referenceId"].as_str().unwrap().to_owned();
    let kept = sandbox.create(&create_body("kept-1", "50.00")).await;
    let kept = kept.data(true).clone();
    let now = chrono::Utc::now();
    let range = format!(
        "dateFrom={}&dateTo={}",
        lima(now - chrono::TimeDelta::days(1)),
        lima(now + chrono::TimeDelta::days(1)),
    );
    assert_eq!(references(page_of(&list(&sandbox, &range).await)).len(), 2);

    let deleted = sandbox
        .control(
            Method::DELETE,
            &format!("/_sandbox/refunds/{reference}"),
            None,
        )
        .await;
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.body, json!({ "deleted": reference }));
    let got = sandbox
        .api(Method::GET, &format!("/v1/refunds/{reference}"), None)
        .await;
    assert_eq!(got.status, 404);
    assert_eq!(got.code(), "121");
    assert_eq!(
        list(&sandbox, "refundId=lost-1").await.data(false),
        &json!([])
    );
    assert_eq!(
        page_of(&list(&sandbox, &range).await),
        &json!({"items": [kept], "page": 1, "pageSize": 50, "totalPages": 1})
    );
    let again = sandbox
        .control(
            Method::DELETE,
            &format!("/_sandbox/refunds/{reference}"),
            None,
        )
        .await;
    assert_eq!(again.status, 404);
    assert!(again.body["error"].is_string());
    // The lost refund no longer holds its amount or its refundId.
    let remade = sandbox.create(&create_body("lost-1", "450.00")).await;
    assert_eq!(remade.status, 201, "{:?}", remade.body);
    assert_ne!(remade.data(true)["referenceId"], reference.as_str());
    let stats = sandbox.stats().await;
    assert_eq!(stats["refunds_created"], 3);
    assert_eq!(stats["refunds_deleted"], 1);
}
