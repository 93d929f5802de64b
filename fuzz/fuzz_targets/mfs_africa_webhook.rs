//! MFS Africa's plugin verifying and reading webhook deliveries (layout: `corpus::webhook`).
//! Random bytes would all die at the signature check, so most inputs are bodies this target signs
//! as the provider does (spec "Webhooks") with a timestamp near the host clock; raw inputs bring
//! their own headers.
//!
//! Besides "no panic": a delivery signed with the configured secret and a fresh timestamp is
//! accepted or found malformed, never refused as unsigned; a stale one is refused as stale with
//! its age; nothing verifies without a secret; an accepted raw delivery has a signature that
//! verifies independently and a fresh timestamp; a missing header is named and really missing;
//! an event carries the header's event id and a refund as the spec maps it.
#![no_main]

use chrono::{DateTime, SecondsFormat};
use libfuzzer_sys::fuzz_target;
use refundry_fuzz::corpus::mfs_africa::{API_SECRET, WEBHOOK_SECRET};
use refundry_fuzz::corpus::{Fields, webhook};
use refundry_fuzz::{check, header, header_lines, number, signing};
use refundry_mfs_africa::MfsAfrica;
use refundry_sdk::testing::FakeHost;
use refundry_sdk::{Provider, RefundStatus, WebhookError, WebhookOutcome, WebhookRequest};

/// Spec "The refund object": the status words and their Refundry status.
const STATUSES: [(&str, RefundStatus); 4] = [
    ("pending", RefundStatus::Pending),
    ("processed", RefundStatus::Processed),
    ("failed", RefundStatus::Failed),
    ("reversed", RefundStatus::Reversed),
];

/// Spec "Webhooks": timestamps older than 300 s are rejected (the plugin also rejects ones as far
/// in the future).
const TOLERANCE_MS: i64 = 300_000;

/// The clock stays in years 1970 to 9999, where RFC 3339 can write it.
const LAST_MS: i64 = 253_402_300_799_000;

const SIGNATURE: &str = "X-MFS-Signature";
const TIMESTAMP: &str = "X-MFS-Timestamp";
const EVENT_ID: &str = "X-MFS-Event-Id";

fuzz_target!(|data: &[u8]| {
    let mut fields = Fields::new(data);
    let mode = fields.field().first().copied().unwrap_or(0);
    let now_ms = number(&fields.text()).clamp(0, LAST_MS);
    let second = fields.text();
    let third = fields.text();
    let body = fields.field().to_vec();
    let secret = (mode & webhook::NO_SECRET == 0).then_some(WEBHOOK_SECRET);

    let mut host = FakeHost::new().with_now_ms(now_ms);
    host.set_config("api_secret", API_SECRET);
    if let Some(secret) = secret {
        host.set_config("webhook_secret", secret);
    }
    let signed = mode & webhook::RAW == 0;
    let (headers, sent_ms) = if signed {
        let sent_ms = now_ms + number(&second).clamp(-10_000_000, 10_000_000) * 1000;
        let sent = DateTime::from_timestamp_millis(sent_ms).expect("a time in range");
        let timestamp = sent.to_rfc3339_opts(SecondsFormat::Secs, true);
        let signature = signing::mfs_webhook(WEBHOOK_SECRET, &timestamp, &body);
        let name = |n: &str| {
            if mode & webhook::LOWERCASE != 0 {
                n.to_ascii_lowercase()
            } else {
                n.to_owned()
            }
        };
        let headers = vec![
            (name(SIGNATURE), signature),
            (name(TIMESTAMP), timestamp),
            (name(EVENT_ID), third),
            ("Content-Type".to_owned(), "application/json".to_owned()),
        ];
        // What the plugin reads back: the time to the second.
        (headers, Some(sent_ms.div_euclid(1000) * 1000))
    } else {
        (header_lines(&second), None)
    };
    let req = WebhookRequest {
        method: "POST".into(),
        path: "/v1/webhooks/mfs-africa".into(),
        query: None,
        headers: headers.clone(),
        body: body.clone(),
    };
    let result = MfsAfrica::parse_webhook(&host, &req);
    check::no_secret(&format!("{result:?}"), &[API_SECRET, WEBHOOK_SECRET], data);

    match (sent_ms, secret) {
        (Some(_), None) => assert_eq!(result, Err(WebhookError::InvalidSignature)),
        (Some(sent_ms), Some(_)) => {
            let age_ms = now_ms - sent_ms;
            if age_ms.abs() > TOLERANCE_MS {
                assert_eq!(result, Err(WebhookError::StaleTimestamp(age_ms / 1000)));
            } else {
                assert!(
                    matches!(result, Ok(_) | Err(WebhookError::Malformed(_))),
                    "a fresh signed delivery refused: {result:?}"
                );
            }
        }
        (None, _) => {
            if result.is_ok() {
                let secret = secret.expect("accepted without a secret");
                let timestamp = header(&headers, TIMESTAMP).expect("accepted without a timestamp");
                let signature = signing::mfs_webhook(secret, timestamp, &body);
                assert_eq!(header(&headers, SIGNATURE), Some(signature.as_str()));
                let sent = DateTime::parse_from_rfc3339(timestamp).expect("an RFC 3339 timestamp");
                assert!((now_ms - sent.timestamp_millis()).abs() <= TOLERANCE_MS);
            }
        }
    }
    if let Err(WebhookError::MissingHeader(name)) = &result {
        assert!([SIGNATURE, TIMESTAMP, EVENT_ID].contains(&name.as_str()));
        assert_eq!(header(&headers, name), None, "{name} is there");
    }
    if let Ok(WebhookOutcome::Events(events)) = &result {
        assert_eq!(events.len(), 1, "one event per delivery");
        assert_eq!(
            Some(events[0].event_id.as_str()),
            header(&headers, EVENT_ID)
        );
        check::refund(&events[0].refund, &STATUSES);
    }
});
