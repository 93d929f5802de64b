//! Webhook intake of `refundry serve` end to end: signed deliveries from both sandboxes, forged
//! and malformed ones, lost webhooks (the janitor still finishes every refund), duplicates and
//! out-of-order events (never a step backwards), and events about refunds nobody knows.

use std::time::Duration;

use hmac::{Hmac, Mac};
use refundry_tests::service::{
    MFS, Options, PE, Reply, Service, expect, mfs_body, pe_body, str_of as s, wait_until,
};
use refundry_tests::{next_webhook, webhook_receiver};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

const T: Duration = Duration::from_secs(30);

/// A janitor that does not check anything during a test: only webhooks move refunds.
fn webhooks_only() -> Options {
    Options {
        janitor_backoff_ms: vec![600_000],
        ..Options::default()
    }
}

/// The MFS Africa webhook signature, computed here from the spec (not by the plugin or sandbox).
fn mfs_sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A signed MFS Africa `refund.status_changed` event about `refund` (a sandbox refund object)
/// with `status`, sent now.
fn mfs_event(
    secret: &str,
    event_id: &str,
    refund: &Value,
    status: &str,
) -> (Vec<(String, String)>, Vec<u8>) {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut data = refund.clone();
    data["status"] = json!(status);
    data["updated_at"] = json!(now);
    let body = serde_json::to_vec(&json!({
        "event_id": event_id,
        "event_type": "refund.status_changed",
        "occurred_at": now,
        "data": data,
    }))
    .unwrap();
    let headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("x-mfs-event-id".to_owned(), event_id.to_owned()),
        ("x-mfs-timestamp".to_owned(), now.clone()),
        ("x-mfs-signature".to_owned(), mfs_sign(secret, &now, &body)),
    ];
    (headers, body)
}

/// POSTs a webhook to the service as received (headers and raw body), without a bearer token.
async fn deliver(
    service: &Service,
    provider: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Reply {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(k, _)| {
            !k.eq_ignore_ascii_case("content-length") && !k.eq_ignore_ascii_case("host")
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    service
        .try_send(
            Method::POST,
            &format!("/v1/webhooks/{provider}"),
            None,
            Some(body.to_vec()),
            &headers,
        )
        .await
        .expect("the service answers a webhook")
}

fn webhook_status(reply: &Reply) -> &str {
    reply.body["status"].as_str().unwrap_or("")
}

/// Creates an MFS Africa refund through the service; returns (service refund, sandbox refund).
async fn mfs_refund(service: &Service, txn: &str, external_id: &str) -> (Value, Value) {
    service.mfs.seed(txn, "500.00", "KES", 1, true).await;
    let reply = service.post_refund(&mfs_body(txn, external_id, 100)).await;
    expect(&reply, 201, "create");
    let at_sandbox = service
        .mfs_refunds()
        .await
        .into_iter()
        .find(|r| r["external_refund_id"] == external_id)
        .expect("the refund at the sandbox");
    (reply.body, at_sandbox)
}

fn history_has(detail: &Value, pred: impl Fn(&Value) -> bool) -> bool {
    detail["history"]
        .as_array()
        .is_some_and(|h| h.iter().any(pred))
}

#[tokio::test]
async fn intake_applies_signed_webhooks_and_refuses_bad_ones() {
    let service = Service::start_with(webhooks_only()).await;
    let (refund, at_sandbox) = mfs_refund(&service, "txn-w", "w-1").await;
    let id = s(&refund["id"]).to_owned();

    // The sandbox's own signed delivery moves the refund.
    service
        .mfs
        .control(
            &format!("refunds/{}/status", s(&at_sandbox["refund_id"])),
            json!({"status": "processed"}),
        )
        .await;
    let done = service.wait_status(&id, "processed", T).await;
    assert!(
        history_has(&done, |h| h["source"] == "webhook"
            && h["to"] == "processed"
            && h["applied"] == true),
        "{done}"
    );
    // The sandbox records a delivery once it has read the answer, which can be a moment after
    // the service applied the event: wait for the record.
    wait_until("the sandbox records the service's 200", T, || async {
        let deliveries = service.mfs.inspect("webhooks/deliveries").await;
        deliveries
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["status"] == 200))
    })
    .await;

    // Forged: signed with another secret.
    let (headers, body) = mfs_event("not-the-secret", "evt_forged", &at_sandbox, "reversed");
    expect(
        &deliver(&service, MFS, &headers, &body).await,
        401,
        "bad signature",
    );
    // Signed, but the body is not what was signed.
    let secret = service.mfs.creds.webhook_secret.clone();
    let (headers, body) = mfs_event(&secret, "evt_tampered", &at_sandbox, "processed");
    let mut tampered = body.clone();
    let at = tampered.len() - 2;
    tampered[at] ^= 1;
    expect(
        &deliver(&service, MFS, &headers, &tampered).await,
        401,
        "tampered body",
    );
    // No signature header at all.
    let unsigned: Vec<_> = headers
        .iter()
        .filter(|(k, _)| k != "x-mfs-signature")
        .cloned()
        .collect();
    expect(
        &deliver(&service, MFS, &unsigned, &body).await,
        401,
        "no signature",
    );
    // Well signed, but not JSON.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let garbage = b"this is not json".to_vec();
    let headers = vec![
        ("x-mfs-event-id".to_owned(), "evt_garbage".to_owned()),
        ("x-mfs-timestamp".to_owned(), now.clone()),
        (
            "x-mfs-signature".to_owned(),
            mfs_sign(&secret, &now, &garbage),
        ),
    ];
    expect(
        &deliver(&service, MFS, &headers, &garbage).await,
        400,
        "malformed",
    );
    // No bearer token is needed, and a bearer token does not turn a forgery into a webhook.
    let after = service.refund(&id).await;
    assert_eq!(after["status"], "processed", "no refused webhook moved it");

    // PagoEfectivo: the sandbox's notification moves the refund, a forged one is 401.
    service.pe.seed("pe-w", "500.00", "PEN", 1, true).await;
    let reply = service.post_refund(&pe_body("pe-w", "w-pe-1", 100)).await;
    expect(&reply, 201, "PagoEfectivo create");
    let pe_id = s(&reply.body["id"]).to_owned();
    service
        .pe
        .control
        .post(
            &format!("refunds/{}/status", s(&reply.body["provider_refund_id"])),
            json!({"status": "completed"}),
        )
        .await;
    let done = service.wait_status(&pe_id, "processed", T).await;
    assert!(history_has(&done, |h| h["source"] == "webhook"), "{done}");
    let forged = vec![("pe-signature".to_owned(), "0".repeat(64))];
    expect(
        &deliver(
            &service,
            PE,
            &forged,
            br#"{"eventType":"refund.completed"}"#,
        )
        .await,
        401,
        "forged PagoEfectivo notification",
    );
}

#[tokio::test]
async fn lost_webhooks_the_janitor_finishes_every_refund() {
    let service = Service::start().await;
    service
        .mfs
        .control("faults", json!({"kind": "drop_webhooks", "count": 1000}))
        .await;
    service
        .pe
        .control
        .post("faults", json!({"kind": "drop_webhooks", "count": 1000}))
        .await;
    service
        .mfs
        .seed("txn-lost", "1000.00", "KES", 1, true)
        .await;
    service.pe.seed("pe-lost", "1000.00", "PEN", 1, true).await;

    // (service id, provider, provider refund id, sandbox move, expected final status)
    let mut plan = Vec::new();
    let mfs_moves = ["processed", "processed", "failed", "processed", "failed"];
    for (i, to) in mfs_moves.iter().enumerate() {
        let reply = service
            .post_refund(&mfs_body("txn-lost", &format!("lost-m{i}"), 100))
            .await;
        expect(&reply, 201, "MFS Africa create");
        let expected = if *to == "failed" {
            "failed"
        } else {
            "processed"
        };
        plan.push((reply.body, MFS, *to, expected));
    }
    let pe_moves = ["completed", "rejected", "completed"];
    for (i, to) in pe_moves.iter().enumerate() {
        let reply = service
            .post_refund(&pe_body("pe-lost", &format!("lost-p{i}"), 100))
            .await;
        expect(&reply, 201, "PagoEfectivo create");
        let expected = if *to == "rejected" {
            "failed"
        } else {
            "processed"
        };
        plan.push((reply.body, PE, *to, expected));
    }
    for (refund, provider, to, _) in &plan {
        let path = format!("refunds/{}/status", s(&refund["provider_refund_id"]));
        if *provider == MFS {
            service.mfs.control(&path, json!({"status": to})).await;
        } else {
            service.pe.control.post(&path, json!({"status": to})).await;
        }
    }
    for (refund, _, _, expected) in &plan {
        let done = service.wait_status(s(&refund["id"]), expected, T).await;
        assert!(
            history_has(&done, |h| h["source"] == "janitor"
                && h["to"] == *expected
                && h["applied"] == true),
            "{done}"
        );
        assert!(
            !history_has(&done, |h| h["source"] == "webhook"),
            "a webhook got through: {done}"
        );
    }
    // Nothing was even attempted.
    for deliveries in [
        service.mfs.inspect("webhooks/deliveries").await,
        service.pe.control.get("webhooks/deliveries").await,
    ] {
        assert_eq!(deliveries.as_array().map(Vec::len), Some(0), "{deliveries}");
    }
}

#[tokio::test]
async fn duplicate_and_out_of_order_webhooks_never_move_backwards() {
    // Webhooks go to a capture first, so the test decides what reaches the service, and when.
    let service = Service::start_with(Options {
        webhooks_to_service: false,
        ..webhooks_only()
    })
    .await;
    let (url, mut rx) = webhook_receiver(vec![]).await;
    service
        .mfs
        .control("webhooks/config", json!({ "callback_url": url }))
        .await;
    let (refund, at_sandbox) = mfs_refund(&service, "txn-o", "o-1").await;
    let id = s(&refund["id"]).to_owned();
    let provider_id = s(&at_sandbox["refund_id"]).to_owned();
    let path = format!("refunds/{provider_id}/status");
    service
        .mfs
        .control(&path, json!({"status": "processed"}))
        .await;
    let (processed_headers, processed_body) = next_webhook(&mut rx, 10).await;
    service
        .mfs
        .control(&path, json!({"status": "reversed"}))
        .await;
    let (reversed_headers, reversed_body) = next_webhook(&mut rx, 10).await;

    let reply = deliver(&service, MFS, &processed_headers, &processed_body).await;
    expect(&reply, 200, "processed");
    assert_eq!(webhook_status(&reply), "applied", "{}", reply.text);
    // A delivery of one event: the receipt says it once for the delivery and once per event.
    let event_id = processed_headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-mfs-event-id"))
        .map(|(_, v)| v.clone())
        .expect("the sandbox names its event");
    assert_eq!(
        reply.body,
        json!({"status": "applied", "refund_id": id, "events": [
            {"event_id": event_id, "status": "applied", "refund_id": id}
        ]}),
        "{}",
        reply.text
    );
    assert_eq!(service.refund(&id).await["status"], "processed");

    let reply = deliver(&service, MFS, &processed_headers, &processed_body).await;
    expect(&reply, 200, "the same event again");
    assert_eq!(webhook_status(&reply), "duplicate", "{}", reply.text);

    let reply = deliver(&service, MFS, &reversed_headers, &reversed_body).await;
    expect(&reply, 200, "reversed");
    assert_eq!(webhook_status(&reply), "applied", "{}", reply.text);
    assert_eq!(service.refund(&id).await["status"], "reversed");

    // Late and backwards events, each with a new event id: recorded, not applied.
    let secret = service.mfs.creds.webhook_secret.clone();
    for (event_id, status) in [
        ("evt_late_processed", "processed"),
        ("evt_late_pending", "pending"),
    ] {
        let (headers, body) = mfs_event(&secret, event_id, &at_sandbox, status);
        let reply = deliver(&service, MFS, &headers, &body).await;
        expect(&reply, 200, &format!("late {status}"));
        assert_eq!(webhook_status(&reply), "recorded", "{}", reply.text);
    }
    let detail = service.refund(&id).await;
    assert_eq!(detail["status"], "reversed", "{detail}");
    for status in ["processed", "pending"] {
        assert!(
            history_has(&detail, |h| h["source"] == "webhook"
                && h["to"] == status
                && h["applied"] == false),
            "no unapplied {status} entry: {detail}"
        );
    }
    let applied: Vec<&str> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        // A refund may be recorded as `unknown` before its provider call: not a move to check.
        .filter(|h| h["applied"] == true && h["to"] != "unknown")
        .map(|h| s(&h["to"]))
        .collect();
    assert_eq!(applied, ["pending", "processed", "reversed"], "{detail}");
}

#[tokio::test]
async fn sandbox_duplicates_are_answered_and_applied_once() {
    let service = Service::start_with(webhooks_only()).await;
    service
        .mfs
        .control("faults", json!({"kind": "duplicate_webhooks", "count": 1}))
        .await;
    let (refund, at_sandbox) = mfs_refund(&service, "txn-d", "d-1").await;
    service
        .mfs
        .control(
            &format!("refunds/{}/status", s(&at_sandbox["refund_id"])),
            json!({"status": "processed"}),
        )
        .await;
    wait_until("both deliveries of the duplicated event", T, || async {
        let deliveries = service.mfs.inspect("webhooks/deliveries").await;
        deliveries
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["status"] == 200)
            .count()
            == 2
    })
    .await;
    let detail = service.refund(s(&refund["id"])).await;
    assert_eq!(detail["status"], "processed");
    let applied_moves = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["to"] == "processed" && h["applied"] == true)
        .count();
    assert_eq!(applied_moves, 1, "{detail}");
}

#[tokio::test]
async fn unknown_refund_reference_is_unmatched_not_lost() {
    let service = Service::start_with(webhooks_only()).await;
    let secret = service.mfs.creds.webhook_secret.clone();
    let stranger = json!({
        "refund_id": "rfnd_000000000000000000stranger",
        "external_refund_id": "nobody-knows-me",
        "original_transaction_id": "txn-none",
        "refund_amount": "1.00",
        "currency": "KES",
        "reason": null,
        "status": "pending",
        "failure_reason": null,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    });
    let event_id = "evt_unmatched_0123456789abcdef";
    let (headers, body) = mfs_event(&secret, event_id, &stranger, "processed");
    let reply = deliver(&service, MFS, &headers, &body).await;
    expect(&reply, 200, "unknown refund");
    assert_eq!(webhook_status(&reply), "unmatched", "{}", reply.text);
    // Kept in the inbox (the database) and logged.
    let db = service.db_bytes();
    assert!(
        db.windows(event_id.len()).any(|w| w == event_id.as_bytes()),
        "the event is not in the database"
    );
    wait_until("the unmatched event to be logged", T, || async {
        let logs = service.logs();
        logs.contains(event_id) || logs.contains("rfnd_000000000000000000stranger")
    })
    .await;
    // Nothing was invented for it.
    let all = service.list_all("", 50).await;
    assert!(all.is_empty(), "{all:?}");
}

#[tokio::test]
async fn a_genuine_delivery_of_an_unhandled_event_type_is_acknowledged_and_kept() {
    let service = Service::start_with(webhooks_only()).await;
    let (refund, at_sandbox) = mfs_refund(&service, "txn-i", "i-1").await;
    let id = s(&refund["id"]).to_owned();
    let secret = service.mfs.creds.webhook_secret.clone();

    // MFS Africa: a type the spec does not define, about the refund, genuinely signed.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let marker = "evt_unhandled_0123456789abcdef";
    let body = serde_json::to_vec(&json!({
        "event_id": marker,
        "event_type": "refund.note_added",
        "occurred_at": now,
        "data": at_sandbox,
    }))
    .unwrap();
    let headers = vec![
        ("x-mfs-event-id".to_owned(), marker.to_owned()),
        ("x-mfs-timestamp".to_owned(), now.clone()),
        ("x-mfs-signature".to_owned(), mfs_sign(&secret, &now, &body)),
    ];
    // 200, so the provider stops retrying; twice, as a provider retries.
    for attempt in 1..=2 {
        let reply = deliver(&service, MFS, &headers, &body).await;
        expect(&reply, 200, &format!("unhandled type, attempt {attempt}"));
        assert_eq!(webhook_status(&reply), "ignored", "{}", reply.text);
        assert_eq!(reply.body["events"], json!([]), "{}", reply.text);
        assert_eq!(reply.body["refund_id"], Value::Null, "{}", reply.text);
        assert!(
            s(&reply.body["reason"]).contains("refund.note_added"),
            "{}",
            reply.text
        );
    }
    // Kept (the delivery is in the database), and nothing moved.
    let db = service.db_bytes();
    assert!(
        db.windows(marker.len()).any(|w| w == marker.as_bytes()),
        "the ignored delivery is not in the database"
    );
    let detail = service.refund(&id).await;
    assert_eq!(detail["status"], "pending", "{detail}");
    assert!(
        !history_has(&detail, |h| h["source"] == "webhook"),
        "{detail}"
    );
    // Ignored only once genuine: the same body under another secret is refused.
    let forged: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| match k.as_str() {
            "x-mfs-signature" => (k.clone(), mfs_sign("not-the-secret", &now, &body)),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    expect(
        &deliver(&service, MFS, &forged, &body).await,
        401,
        "forged unhandled type",
    );

    // PagoEfectivo: an `eventType` outside the four the spec lists.
    let body = br#"{"eventType": "refund.settled", "operationNumber": "OP-IGNORED-1", "data": {}}"#;
    let mut mac = Hmac::<Sha256>::new_from_slice(service.pe.creds.secret_key.as_bytes()).unwrap();
    mac.update(body);
    let signature = hex::encode(mac.finalize().into_bytes());
    let reply = deliver(
        &service,
        PE,
        &[("pe-signature".to_owned(), signature)],
        body,
    )
    .await;
    expect(&reply, 200, "PagoEfectivo unhandled type");
    assert_eq!(webhook_status(&reply), "ignored", "{}", reply.text);
    assert!(
        s(&reply.body["reason"]).contains("refund.settled"),
        "{}",
        reply.text
    );
}
