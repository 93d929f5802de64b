//! Outbound events end to end: a real `refundry serve` posts an event for every status a refund
//! enters to a receiver on loopback, signed with `Refundry-Signature`, in order per refund, from a
//! durable outbox that outlives a receiver outage and a `kill -9` of the service.

use std::collections::BTreeMap;
use std::time::Duration;

use refundry_service::outbound_events::signature;
use refundry_tests::receiver::{Received, Receiver};
use refundry_tests::service::{
    Options, Service, expect, mfs_body, pe_body, str_of as s, wait_until, with_original,
};
use serde_json::{Value, json};

/// Generous: debug builds on a busy 2-core machine.
const T: Duration = Duration::from_secs(30);

const SECRET: &str = "events-secret-0123456789abcdef";

fn options(receiver: &Receiver) -> Options {
    Options {
        extra_toml: format!(
            "[events]\nurl = {:?}\nsecret = {SECRET:?}\ninterval_ms = 25\nbackoff_ms = [100, 200]\n",
            receiver.url
        ),
        ..Options::default()
    }
}

/// The statuses a refund entered, in order, as its history records them (every applied entry).
async fn entered(service: &Service, id: &str) -> Vec<String> {
    let refund = service.refund(id).await;
    refund["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["applied"] == true)
        .map(|h| s(&h["to"]).to_owned())
        .collect()
}

/// Checks every delivery's signature and shape; returns, per refund, the statuses its events
/// announced in arrival order, each event counted once (delivery is at least once).
fn by_refund(received: &[Received]) -> BTreeMap<String, Vec<String>> {
    let now = chrono::Utc::now().timestamp();
    let mut seen = std::collections::HashSet::new();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in received {
        signature::verify(
            SECRET.as_bytes(),
            r.signature.as_deref(),
            &r.body,
            now,
            signature::DEFAULT_TOLERANCE_SECS,
        )
        .unwrap_or_else(|e| panic!("bad signature ({e}) on {}", r.json));
        let event = &r.json;
        let id = s(&event["id"]);
        assert!(id.starts_with("evt_"), "{event}");
        assert_eq!(r.event_id_header.as_deref(), Some(id), "{event}");
        let status = s(&event["data"]["status"]);
        assert_eq!(event["type"], format!("refund.{status}"), "{event}");
        chrono::DateTime::parse_from_rfc3339(s(&event["created_at"])).expect("created_at");
        if seen.insert(id.to_owned()) {
            out.entry(s(&event["data"]["id"]).to_owned())
                .or_default()
                .push(status.to_owned());
        }
    }
    out
}

/// Waits until the receiver has every status each refund entered, then checks they came in order.
async fn assert_all_delivered_in_order(service: &Service, receiver: &Receiver, ids: &[String]) {
    let mut expected = BTreeMap::new();
    for id in ids {
        expected.insert(id.clone(), entered(service, id).await);
    }
    wait_until("every event to reach the receiver", T, || async {
        let got = by_refund(&receiver.received());
        ids.iter()
            .all(|id| got.get(id).map(Vec::len) == expected.get(id).map(Vec::len))
    })
    .await;
    let got = by_refund(&receiver.received());
    for id in ids {
        assert_eq!(
            got[id], expected[id],
            "events of {id} out of order or wrong"
        );
    }
    // Nothing reached the receiver that the ledger did not write.
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
}

/// A processed, a failed by the provider, a refused by the pre-check, and a PagoEfectivo refund.
async fn make_refunds(service: &Service, tag: &str) -> Vec<String> {
    service
        .mfs
        .seed(&format!("txn-{tag}"), "100.00", "KES", 2, true)
        .await;
    service
        .pe
        .seed(&format!("pe-{tag}"), "50.00", "PEN", 2, true)
        .await;
    let mut ids = Vec::new();
    for (n, final_status) in [(1, "processed"), (2, "failed")] {
        let created = service
            .post_refund(&mfs_body(
                &format!("txn-{tag}"),
                &format!("{tag}-{n}"),
                1_000,
            ))
            .await;
        expect(&created, 201, "an MFS Africa refund");
        let provider_id = s(&created.body["provider_refund_id"]).to_owned();
        let body = match final_status {
            "processed" => json!({"status": "processed"}),
            _ => json!({"status": "failed", "failure_reason": "wallet_closed"}),
        };
        service
            .mfs
            .control(&format!("refunds/{provider_id}/status"), body)
            .await;
        ids.push(s(&created.body["id"]).to_owned());
    }
    let refused = service
        .post_refund(&with_original(
            mfs_body(&format!("txn-{tag}"), &format!("{tag}-3"), 999_999),
            10_000,
            "KES",
            2,
            None,
        ))
        .await;
    expect(&refused, 422, "more than the original");
    ids.push(s(&refused.refund()["id"]).to_owned());
    let pe = service
        .post_refund(&pe_body(&format!("pe-{tag}"), &format!("{tag}-4"), 500))
        .await;
    assert!(pe.status < 300, "a PagoEfectivo refund: {}", pe.text);
    ids.push(s(&pe.body["id"]).to_owned());
    service.wait_status(&ids[0], "processed", T).await;
    service.wait_status(&ids[1], "failed", T).await;
    ids
}

/// The event list of `GET /v1/events?refund_id=`.
async fn events_of(service: &Service, id: &str) -> Vec<Value> {
    let reply = service.get(&format!("/v1/events?refund_id={id}")).await;
    expect(&reply, 200, "GET /v1/events");
    reply.body["events"].as_array().unwrap().clone()
}

#[tokio::test]
async fn every_status_change_reaches_the_receiver_signed_and_in_order() {
    let receiver = Receiver::start().await;
    let service = Service::start_with(options(&receiver)).await;
    let ids = make_refunds(&service, "a").await;
    assert_all_delivered_in_order(&service, &receiver, &ids).await;
    assert_eq!(
        entered(&service, &ids[0]).await,
        ["unknown", "pending", "processed"]
    );
    assert_eq!(entered(&service, &ids[2]).await, ["failed"]);

    // The ledger shows each event delivered, with its attempts.
    let events = events_of(&service, &ids[0]).await;
    assert_eq!(events.len(), 3, "{events:?}");
    for e in &events {
        assert_eq!(e["refund_id"], ids[0].as_str());
        let delivery = &e["deliveries"][0];
        assert_eq!(delivery["endpoint"], receiver.url.as_str(), "{e}");
        assert_eq!(delivery["state"], "delivered", "{e}");
        let attempts = delivery["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "{e}");
        assert_eq!(attempts[0]["http_status"], 204, "{e}");
    }
    // The body stored is the body sent.
    let sent: Vec<Value> = receiver
        .received()
        .into_iter()
        .filter(|r| r.json["data"]["id"] == ids[0].as_str())
        .map(|r| r.json)
        .collect();
    assert_eq!(sent[0], events[0]["body"]);
}

#[tokio::test]
async fn deliveries_wait_for_a_receiver_that_is_down() {
    let mut receiver = Receiver::start().await;
    receiver.stop().await;
    let service = Service::start_with(options(&receiver)).await;
    let ids = make_refunds(&service, "b").await;
    // The first event is retried, failing, while the later ones of the refund wait behind it.
    wait_until("retries of the first event", T, || async {
        let events = events_of(&service, &ids[0]).await;
        events[0]["deliveries"][0]["attempts"]
            .as_array()
            .is_some_and(|a| a.len() >= 2)
    })
    .await;
    let events = events_of(&service, &ids[0]).await;
    let first = &events[0]["deliveries"][0];
    assert_eq!(first["state"], "pending", "{first}");
    assert!(first["attempts"][0]["error"].is_string(), "{first}");
    assert!(
        events[1]["deliveries"][0]["attempts"]
            .as_array()
            .unwrap()
            .is_empty(),
        "a later event was tried before the first was delivered: {events:?}"
    );
    assert!(receiver.received().is_empty());

    receiver.start_again().await;
    assert_all_delivered_in_order(&service, &receiver, &ids).await;
    let events = events_of(&service, &ids[0]).await;
    let first = &events[0]["deliveries"][0];
    assert_eq!(first["state"], "delivered", "{first}");
    assert!(first["attempts"].as_array().unwrap().len() >= 3, "{first}");
}

#[tokio::test]
async fn a_restart_of_the_service_loses_no_event() {
    let mut receiver = Receiver::start().await;
    receiver.stop().await;
    let mut service = Service::start_with(options(&receiver)).await;
    let ids = make_refunds(&service, "c").await;
    wait_until("a failed try", T, || async {
        let events = events_of(&service, &ids[0]).await;
        events[0]["deliveries"][0]["attempts"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    })
    .await;
    service.kill_9().await;
    receiver.start_again().await;
    service.restart().await;
    assert_all_delivered_in_order(&service, &receiver, &ids).await;
    // A refund made after the restart is delivered too.
    let more = service.post_refund(&mfs_body("txn-c", "c-5", 1_000)).await;
    expect(&more, 201, "a refund after the restart");
    let mut all = ids.clone();
    all.push(s(&more.body["id"]).to_owned());
    assert_all_delivered_in_order(&service, &receiver, &all).await;
}
