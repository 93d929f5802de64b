//! PagoEfectivo end to end: the real plugin component in the host, against the sandbox on
//! loopback. Every error code is reached and mapped; the authorization token is cached, reused
//! and renewed as the spec says.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use refundry_runtime::RefundError;
use refundry_runtime::RefundLookup;
use refundry_runtime::RefundStatus;
use refundry_runtime::RefusalKind;
use refundry_runtime::caps::{FixedClock, SkewedClock, SystemClock};
use refundry_runtime::{WebhookError, WebhookEvent, WebhookOutcome};
use refundry_service::OperationError;
use refundry_tests::{PeCredentials, PeSandbox, next_webhook, pen_refund, webhook_receiver};
use serde_json::json;
use sha2::Sha256;

type Outcome = Result<refundry_runtime::Refund, OperationError>;

fn refusal(result: Outcome) -> (RefusalKind, Option<String>, Option<u16>) {
    match result {
        Err(OperationError::Refund(RefundError::Refused(r))) => {
            (r.kind, r.provider_code, r.http_status)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn refused(
    kind: RefusalKind,
    code: &str,
    status: u16,
) -> (RefusalKind, Option<String>, Option<u16>) {
    (kind, Some(code.to_owned()), Some(status))
}

#[tokio::test]
async fn refunds_replay_and_status() {
    let sandbox = PeSandbox::start(None).await;
    sandbox.seed("81234567", "500.00", "PEN", 3, true).await;
    let host = sandbox.host().await;
    let r1 = host
        .create_refund("pagoefectivo", &pen_refund("81234567", "a-r1", 16_050))
        .await
        .unwrap();
    assert_eq!(r1.status, RefundStatus::Pending);
    assert_eq!(r1.amount.amount_minor, 16_050);
    assert!(
        r1.provider_refund_id.starts_with("PE-RF-"),
        "{}",
        r1.provider_refund_id
    );
    let replay = host
        .create_refund("pagoefectivo", &pen_refund("81234567", "a-r1", 16_050))
        .await
        .unwrap();
    assert_eq!(replay.provider_refund_id, r1.provider_refund_id);
    assert_eq!(sandbox.control.get("stats").await["refunds_created"], 1);

    sandbox
        .control
        .post(
            &format!("refunds/{}/status", r1.provider_refund_id),
            json!({"status": "completed"}),
        )
        .await;
    let by_ref = host
        .get_refund(
            "pagoefectivo",
            &RefundLookup::ProviderRefundId(r1.provider_refund_id.clone()),
        )
        .await
        .unwrap();
    assert_eq!(
        (by_ref.status, by_ref.provider_status.as_str()),
        (RefundStatus::Processed, "completed")
    );
    let by_ext = host
        .get_refund(
            "pagoefectivo",
            &RefundLookup::ExternalRefundId("a-r1".into()),
        )
        .await
        .unwrap();
    assert_eq!(by_ext.provider_refund_id, r1.provider_refund_id);
    assert_eq!(
        refusal(
            host.get_refund(
                "pagoefectivo",
                &RefundLookup::ProviderRefundId("PE-RF-0".into())
            )
            .await
        ),
        refused(RefusalKind::NotFound, "121", 404)
    );

    sandbox
        .control
        .post(
            &format!("refunds/{}/status", r1.provider_refund_id),
            json!({"status": "reverted"}),
        )
        .await;
    let reverted = host
        .get_refund(
            "pagoefectivo",
            &RefundLookup::ProviderRefundId(r1.provider_refund_id.clone()),
        )
        .await
        .unwrap();
    assert_eq!(reverted.status, RefundStatus::Reversed);
}

#[tokio::test]
async fn business_errors_map_to_their_kinds() {
    let sandbox = PeSandbox::start(None).await;
    sandbox.seed("100", "100.00", "PEN", 1, true).await;
    sandbox.seed("101", "100.00", "PEN", 181, true).await;
    sandbox.seed("102", "100.00", "PEN", 1, false).await;
    let host = sandbox.host().await;
    let create = |txn: &'static str, ext: &'static str, amount: i64| {
        let host = &host;
        async move {
            host.create_refund("pagoefectivo", &pen_refund(txn, ext, amount))
                .await
        }
    };
    assert_eq!(
        refusal(create("999", "b-1", 100).await),
        refused(RefusalKind::InvalidTransaction, "120", 404)
    );
    assert_eq!(
        refusal(create("100", "b-2", 10_001).await),
        refused(RefusalKind::AmountExceeded, "132", 422)
    );
    // A USD refund against a PEN payment.
    let mut usd = pen_refund("100", "b-3", 100);
    usd.amount.currency = "USD".into();
    assert_eq!(
        refusal(host.create_refund("pagoefectivo", &usd).await),
        refused(RefusalKind::CurrencyMismatch, "133", 422)
    );
    // 181 days after the payment.
    assert_eq!(
        refusal(create("101", "b-4", 100).await),
        refused(RefusalKind::WindowExpired, "134", 422)
    );
    assert_eq!(
        refusal(create("102", "b-5", 100).await),
        refused(RefusalKind::NotSettled, "135", 422)
    );
    create("100", "b-6", 100).await.unwrap();
    assert_eq!(
        refusal(create("100", "b-6", 200).await),
        refused(RefusalKind::IdempotencyConflict, "131", 409)
    );
    sandbox
        .control
        .post("balance", json!({"sufficient": false}))
        .await;
    assert_eq!(
        refusal(create("100", "b-7", 100).await),
        refused(RefusalKind::InsufficientFunds, "136", 422)
    );
    sandbox
        .control
        .post("balance", json!({"sufficient": true}))
        .await;
    create("100", "b-7", 100).await.unwrap();
    // A malformed request the plugin's own checks keep it from sending, injected at the provider.
    sandbox
        .control
        .post(
            "faults",
            json!({"kind": "error", "status": 400, "code": "111"}),
        )
        .await;
    assert_eq!(
        refusal(create("100", "b-8", 100).await),
        refused(RefusalKind::InvalidRequest, "111", 400)
    );
    // A currency PagoEfectivo does not take is refused before any network call.
    let before = sandbox.control.get("stats").await;
    let mut kes = pen_refund("100", "b-9", 100);
    kes.amount.currency = "KES".into();
    let (kind, code, status) = refusal(host.create_refund("pagoefectivo", &kes).await);
    assert_eq!(
        (kind, code, status),
        (RefusalKind::CurrencyMismatch, None, None)
    );
    assert_eq!(
        sandbox.control.get("stats").await["requests"],
        before["requests"]
    );
}

#[tokio::test]
async fn authentication_errors() {
    let sandbox = PeSandbox::start(None).await;
    sandbox.seed("200", "100.00", "PEN", 1, true).await;
    let req = pen_refund("200", "c-1", 100);

    let wrong_key = PeCredentials {
        access_key: "AK-wrong".into(),
        ..sandbox.creds.clone()
    };
    let host = sandbox
        .host_with(&wrong_key, Arc::new(SystemClock), "")
        .await;
    assert_eq!(
        refusal(host.create_refund("pagoefectivo", &req).await),
        refused(RefusalKind::Authentication, "105", 401)
    );

    let skewed = sandbox
        .host_with(
            &sandbox.creds,
            Arc::new(SkewedClock { offset_ms: 301_000 }),
            "",
        )
        .await;
    assert_eq!(
        refusal(skewed.create_refund("pagoefectivo", &req).await),
        refused(RefusalKind::Authentication, "108", 401)
    );

    // A wrong secret: with a token cached from the right credentials (a secret rotated on one
    // side only), every signed call is refused with 107.
    let dir = std::env::temp_dir().join(format!("refundry-pe-{}-{}", std::process::id(), line!()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!(
        "[database]\npath = {:?}\n",
        dir.join("shared.db").display().to_string()
    );
    let good = sandbox
        .host_with(&sandbox.creds, Arc::new(SystemClock), &db)
        .await;
    good.create_refund("pagoefectivo", &req).await.unwrap();
    drop(good);
    let wrong_secret = PeCredentials {
        secret_key: "not-the-secret".into(),
        ..sandbox.creds.clone()
    };
    let bad = sandbox
        .host_with(&wrong_secret, Arc::new(SystemClock), &db)
        .await;
    assert_eq!(
        refusal(
            bad.create_refund("pagoefectivo", &pen_refund("200", "c-2", 100))
                .await
        ),
        refused(RefusalKind::Authentication, "107", 401)
    );
    drop(bad);
    std::fs::remove_dir_all(&dir).unwrap();

    sandbox
        .control
        .post("ip-allowlist", json!({"allowed": ["203.0.113.7"]}))
        .await;
    let host = sandbox.host().await;
    assert_eq!(
        refusal(
            host.create_refund("pagoefectivo", &pen_refund("200", "c-3", 100))
                .await
        ),
        refused(RefusalKind::Forbidden, "109", 403)
    );
}

#[tokio::test]
async fn provider_faults_are_retryable() {
    let sandbox = PeSandbox::start(None).await;
    sandbox.seed("300", "100.00", "PEN", 1, true).await;
    let host = sandbox.host().await;
    let req = pen_refund("300", "d-1", 100);
    for status in [500, 503] {
        sandbox
            .control
            .post(
                "faults",
                json!({"kind": "status", "status": status, "count": 1}),
            )
            .await;
        match host.create_refund("pagoefectivo", &req).await {
            Err(OperationError::Refund(RefundError::Retryable(r))) => {
                assert_eq!(
                    (r.http_status, r.provider_code.as_deref()),
                    (Some(status), Some("999"))
                );
            }
            other => panic!("expected retryable, got {other:?}"),
        }
    }
    host.create_refund("pagoefectivo", &req).await.unwrap();
    assert_eq!(sandbox.control.get("stats").await["refunds_created"], 1);
}

#[tokio::test]
async fn token_is_reused_across_refunds() {
    let sandbox = PeSandbox::start(None).await;
    sandbox.seed("400", "1000.00", "PEN", 1, true).await;
    let host = sandbox.host().await;
    for i in 0..5 {
        host.create_refund("pagoefectivo", &pen_refund("400", &format!("e-{i}"), 100))
            .await
            .unwrap();
    }
    host.get_refund(
        "pagoefectivo",
        &RefundLookup::ExternalRefundId("e-0".into()),
    )
    .await
    .unwrap();
    assert_eq!(sandbox.authorizations().await, 1);
}

#[tokio::test]
async fn expired_token_is_renewed_once() {
    let sandbox = PeSandbox::start(None).await;
    sandbox.seed("500", "1000.00", "PEN", 1, true).await;
    sandbox
        .control
        .post("token-lifetime", json!({"seconds": 10}))
        .await;
    let clock = FixedClock::new(chrono::Utc::now().timestamp_millis());
    let host = sandbox.host_with(&sandbox.creds, clock.clone(), "").await;
    host.create_refund("pagoefectivo", &pen_refund("500", "f-1", 100))
        .await
        .unwrap();
    host.create_refund("pagoefectivo", &pen_refund("500", "f-2", 100))
        .await
        .unwrap();
    assert_eq!(sandbox.authorizations().await, 1);
    // The host clock passes the token's expiry: the next refund authorizes once and succeeds.
    clock.set_ms(clock_now() + 11_000);
    host.create_refund("pagoefectivo", &pen_refund("500", "f-3", 100))
        .await
        .unwrap();
    assert_eq!(sandbox.authorizations().await, 2);
    // The provider drops every token early (106): the plugin authorizes again once and retries.
    clock.set_ms(clock_now());
    sandbox.control.post("tokens/expire", json!({})).await;
    host.create_refund("pagoefectivo", &pen_refund("500", "f-4", 100))
        .await
        .unwrap();
    assert_eq!(sandbox.authorizations().await, 3);
    assert_eq!(sandbox.control.get("stats").await["refunds_created"], 4);
}

fn clock_now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The one event of a PagoEfectivo notification.
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

#[tokio::test]
async fn notifications_verified_forged_malformed_and_replayed() {
    let (url, mut rx) = webhook_receiver(vec![]).await;
    let sandbox = PeSandbox::start(Some(url)).await;
    sandbox.seed("600", "100.00", "PEN", 1, true).await;
    let host = sandbox.host().await;
    let refund = host
        .create_refund("pagoefectivo", &pen_refund("600", "g-1", 100))
        .await
        .unwrap();
    sandbox
        .control
        .post(
            &format!("refunds/{}/status", refund.provider_refund_id),
            json!({"status": "rejected", "status_reason": "cuenta cerrada"}),
        )
        .await;
    let (headers, body) = next_webhook(&mut rx, 10).await;

    let event = one_event(host.parse_webhook("pagoefectivo", &headers, &body).await);
    assert!(event.event_id.starts_with("OP-"), "{}", event.event_id);
    assert_eq!(event.event_type, "refund.rejected");
    assert_eq!(event.refund.status, RefundStatus::Failed);
    assert_eq!(
        event.refund.failure_reason.as_deref(),
        Some("cuenta cerrada")
    );
    // The same notification delivered again is the same event.
    let again = one_event(host.parse_webhook("pagoefectivo", &headers, &body).await);
    assert_eq!(again.event_id, event.event_id);

    let forged_body = String::from_utf8(body.clone())
        .unwrap()
        .replace("rejected", "completed");
    assert_eq!(
        webhook_error(
            host.parse_webhook("pagoefectivo", &headers, forged_body.as_bytes())
                .await
        ),
        WebhookError::InvalidSignature
    );
    let malformed = b"{\"eventType\": 42}";
    let signed = vec![(
        "PE-Signature".to_string(),
        sign(&sandbox.creds.secret_key, malformed),
    )];
    assert!(matches!(
        webhook_error(host.parse_webhook("pagoefectivo", &signed, malformed).await),
        WebhookError::Malformed(_)
    ));
    assert!(matches!(
        webhook_error(host.parse_webhook("pagoefectivo", &[], &body).await),
        WebhookError::MissingHeader(_)
    ));
    // A genuine notification of a type the spec does not list is acknowledged, not refused, so
    // the provider stops retrying it; forged, it is still refused.
    let other_type = String::from_utf8(body.clone())
        .unwrap()
        .replace("refund.rejected", "refund.settled");
    let signed = vec![(
        "PE-Signature".to_string(),
        sign(&sandbox.creds.secret_key, other_type.as_bytes()),
    )];
    assert!(matches!(
        host.parse_webhook("pagoefectivo", &signed, other_type.as_bytes())
            .await,
        Ok(WebhookOutcome::Ignored(reason)) if reason.contains("refund.settled")
    ));
    let forged = vec![(
        "PE-Signature".to_string(),
        sign("not-the-secret-key", other_type.as_bytes()),
    )];
    assert_eq!(
        webhook_error(
            host.parse_webhook("pagoefectivo", &forged, other_type.as_bytes())
                .await
        ),
        WebhookError::InvalidSignature
    );
}
