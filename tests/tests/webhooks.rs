//! MFS Africa webhooks end to end: signed by the sandbox, delivered over loopback, verified and
//! parsed by the real plugin in the host.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use refundry_runtime::RefundStatus;
use refundry_runtime::caps::SkewedClock;
use refundry_runtime::{WebhookError, WebhookEvent, WebhookOutcome};
use refundry_service::OperationError;
use refundry_tests::{MfsSandbox, kes_refund, next_webhook, webhook_receiver};
use serde_json::json;
use sha2::Sha256;

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("header {name} missing"))
}

/// Signs like the spec says, independently of the plugin and the sandbox.
fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The one event of an MFS Africa delivery.
fn one_event(r: Result<WebhookOutcome, OperationError>) -> WebhookEvent {
    match r {
        Ok(WebhookOutcome::Events(mut events)) if events.len() == 1 => events.remove(0),
        other => panic!("expected one event, got {other:?}"),
    }
}

fn webhook_error(r: Result<WebhookOutcome, OperationError>) -> WebhookError {
    match r {
        Err(OperationError::Webhook(e)) => e,
        other => panic!("expected a webhook error, got {other:?}"),
    }
}

/// A sandbox that sends webhooks to a receiver answering `script`, with one processed refund.
async fn processed_refund(
    script: Vec<u16>,
) -> (
    MfsSandbox,
    refundry_tests::Webhook,
    tokio::sync::mpsc::UnboundedReceiver<refundry_tests::Webhook>,
    String,
) {
    let (url, mut rx) = webhook_receiver(script).await;
    let sandbox = MfsSandbox::start(Some(url)).await;
    sandbox.seed("txn_w", "100.00", "KES", 1, true).await;
    let host = sandbox.host().await;
    let refund = host
        .create_refund("mfs-africa", &kes_refund("txn_w", "w-1", 100))
        .await
        .unwrap();
    sandbox
        .control(
            &format!("refunds/{}/status", refund.provider_refund_id),
            json!({"status": "processed"}),
        )
        .await;
    let webhook = next_webhook(&mut rx, 10).await;
    (sandbox, webhook, rx, refund.provider_refund_id)
}

#[tokio::test]
async fn valid_webhook_is_accepted_and_forgeries_are_not() {
    let (sandbox, (headers, body), _rx, refund_id) = processed_refund(vec![]).await;
    let host = sandbox.host().await;

    let event = one_event(host.parse_webhook("mfs-africa", &headers, &body).await);
    assert_eq!(event.event_id, header(&headers, "x-mfs-event-id"));
    assert_eq!(event.event_type, "refund.status_changed");
    assert_eq!(event.refund.provider_refund_id, refund_id);
    assert_eq!(event.refund.status, RefundStatus::Processed);

    // The body changed after signing.
    let tampered = String::from_utf8(body.clone())
        .unwrap()
        .replace("processed", "reversed");
    assert_eq!(
        webhook_error(
            host.parse_webhook("mfs-africa", &headers, tampered.as_bytes())
                .await
        ),
        WebhookError::InvalidSignature
    );

    // Signed with another secret.
    let ts = header(&headers, "x-mfs-timestamp").to_owned();
    let mut forged = headers.clone();
    for (k, v) in forged.iter_mut() {
        if k.eq_ignore_ascii_case("x-mfs-signature") {
            *v = sign("not-the-webhook-secret", &ts, &body);
        }
    }
    assert_eq!(
        webhook_error(host.parse_webhook("mfs-africa", &forged, &body).await),
        WebhookError::InvalidSignature
    );

    // No signature at all.
    let unsigned: Vec<_> = headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("x-mfs-signature"))
        .cloned()
        .collect();
    assert!(matches!(
        webhook_error(host.parse_webhook("mfs-africa", &unsigned, &body).await),
        WebhookError::MissingHeader(h) if h.eq_ignore_ascii_case("x-mfs-signature")
    ));
}

#[tokio::test]
async fn stale_timestamp_is_rejected_by_the_host_clock() {
    let (sandbox, (headers, body), _rx, _) = processed_refund(vec![]).await;
    // The same genuine webhook, judged by a host whose clock is 301 s later.
    let late_host = sandbox
        .host_with(
            &sandbox.creds,
            Arc::new(SkewedClock { offset_ms: 301_000 }),
            "",
        )
        .await;
    assert!(matches!(
        webhook_error(late_host.parse_webhook("mfs-africa", &headers, &body).await),
        WebhookError::StaleTimestamp(s) if s >= 300
    ));

    // A correctly signed webhook whose timestamp is ten minutes old.
    let host = sandbox.host().await;
    let old = (chrono::Utc::now() - chrono::Duration::minutes(10))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let replayed = vec![
        (
            "X-MFS-Event-Id".to_string(),
            header(&headers, "x-mfs-event-id").to_owned(),
        ),
        ("X-MFS-Timestamp".to_string(), old.clone()),
        (
            "X-MFS-Signature".to_string(),
            sign(&sandbox.creds.webhook_secret, &old, &body),
        ),
    ];
    assert!(matches!(
        webhook_error(host.parse_webhook("mfs-africa", &replayed, &body).await),
        WebhookError::StaleTimestamp(_)
    ));
}

#[tokio::test]
async fn malformed_body_with_a_valid_signature_is_rejected() {
    let sandbox = MfsSandbox::start(None).await;
    let host = sandbox.host().await;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for body in [&b"{not json"[..], br#"{"event_id": "evt_1"}"#] {
        let headers = vec![
            ("X-MFS-Event-Id".to_string(), "evt_1".to_string()),
            ("X-MFS-Timestamp".to_string(), now.clone()),
            (
                "X-MFS-Signature".to_string(),
                sign(&sandbox.creds.webhook_secret, &now, body),
            ),
        ];
        assert!(matches!(
            webhook_error(host.parse_webhook("mfs-africa", &headers, body).await),
            WebhookError::Malformed(_)
        ));
    }
}

#[tokio::test]
async fn a_genuine_webhook_of_another_event_type_is_ignored_and_a_forged_one_refused() {
    let sandbox = MfsSandbox::start(None).await;
    let host = sandbox.host().await;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = br#"{"event_id": "evt_9", "event_type": "payout.completed", "data": {"payout_id": "po_1"}}"#;
    let signed_with = |secret: &str| {
        vec![
            ("X-MFS-Event-Id".to_string(), "evt_9".to_string()),
            ("X-MFS-Timestamp".to_string(), now.clone()),
            ("X-MFS-Signature".to_string(), sign(secret, &now, body)),
        ]
    };
    let genuine = signed_with(&sandbox.creds.webhook_secret);
    match host.parse_webhook("mfs-africa", &genuine, body).await {
        Ok(WebhookOutcome::Ignored(reason)) => {
            assert!(reason.contains("payout.completed"), "{reason}")
        }
        other => panic!("expected ignored, got {other:?}"),
    }
    assert_eq!(
        webhook_error(
            host.parse_webhook("mfs-africa", &signed_with("not-the-webhook-secret"), body)
                .await
        ),
        WebhookError::InvalidSignature
    );
}

#[tokio::test]
async fn sandbox_retry_delivers_the_same_event_id() {
    // The receiver fails the first delivery; the sandbox retries the same event.
    let (sandbox, (first_headers, first_body), mut rx, _) = processed_refund(vec![500]).await;
    let (second_headers, second_body) = next_webhook(&mut rx, 10).await;
    let host = sandbox.host().await;
    let first = one_event(
        host.parse_webhook("mfs-africa", &first_headers, &first_body)
            .await,
    );
    let second = one_event(
        host.parse_webhook("mfs-africa", &second_headers, &second_body)
            .await,
    );
    assert_eq!(first.event_id, second.event_id);
    assert_eq!(first.refund, second.refund);

    // The sandbox records an attempt once its answer is in: wait for both records.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let attempts = loop {
        let deliveries = sandbox.inspect("webhooks/deliveries").await;
        let attempts: Vec<_> = deliveries
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["event_id"] == first.event_id.as_str())
            .map(|d| (d["attempt"].as_u64().unwrap(), d["status"].as_u64()))
            .collect();
        if attempts.len() >= 2 || tokio::time::Instant::now() > deadline {
            break attempts;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(attempts, vec![(1, Some(500)), (2, Some(200))]);
}
