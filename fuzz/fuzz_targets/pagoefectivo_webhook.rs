//! PagoEfectivo's plugin verifying and reading notifications (layout: `corpus::webhook`). Random
//! bytes would all die at the signature check, so most inputs are bodies this target signs as
//! the provider does (spec "Notifications": HMAC of the raw body, no timestamp); raw inputs bring
//! their own headers.
//!
//! Besides "no panic": a body signed with the configured secret is accepted or found malformed,
//! never refused as unsigned; nothing verifies without a secret; an accepted raw delivery has a
//! signature that verifies independently; a missing header is named and really missing; an event
//! carries its operation number, the refund's last change as its time, and a refund as the spec
//! maps it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use refundry_fuzz::corpus::pagoefectivo::SECRET_KEY;
use refundry_fuzz::corpus::{Fields, webhook};
use refundry_fuzz::{check, header, header_lines, number, signing};
use refundry_pagoefectivo::PagoEfectivo;
use refundry_sdk::testing::FakeHost;
use refundry_sdk::{Provider, RefundStatus, WebhookError, WebhookOutcome, WebhookRequest};

/// Spec "The refund object": the status words and their Refundry status.
const STATUSES: [(&str, RefundStatus); 4] = [
    ("pending", RefundStatus::Pending),
    ("completed", RefundStatus::Processed),
    ("rejected", RefundStatus::Failed),
    ("reverted", RefundStatus::Reversed),
];

const SIGNATURE: &str = "PE-Signature";

fuzz_target!(|data: &[u8]| {
    let mut fields = Fields::new(data);
    let mode = fields.field().first().copied().unwrap_or(0);
    let now_ms = number(&fields.text());
    let second = fields.text();
    let _event_id = fields.field();
    let body = fields.field().to_vec();
    let secret = (mode & webhook::NO_SECRET == 0).then_some(SECRET_KEY);

    let mut host = FakeHost::new().with_now_ms(now_ms);
    if let Some(secret) = secret {
        host.set_config("secret_key", secret);
    }
    let signed = mode & webhook::RAW == 0;
    let headers = if signed {
        let name = if mode & webhook::LOWERCASE != 0 {
            SIGNATURE.to_ascii_lowercase()
        } else {
            SIGNATURE.to_owned()
        };
        vec![
            (name, signing::pe_webhook(SECRET_KEY, &body)),
            ("Content-Type".to_owned(), "application/json".to_owned()),
        ]
    } else {
        header_lines(&second)
    };
    let req = WebhookRequest {
        method: "POST".into(),
        path: "/v1/webhooks/pagoefectivo".into(),
        query: None,
        headers: headers.clone(),
        body: body.clone(),
    };
    let result = PagoEfectivo::parse_webhook(&host, &req);
    check::no_secret(&format!("{result:?}"), &[SECRET_KEY], data);

    match (signed, secret) {
        (true, None) => assert_eq!(result, Err(WebhookError::InvalidSignature)),
        (true, Some(_)) => assert!(
            matches!(result, Ok(_) | Err(WebhookError::Malformed(_))),
            "a signed delivery refused: {result:?}"
        ),
        (false, _) => {
            if result.is_ok() {
                let secret = secret.expect("accepted without a secret");
                let signature = signing::pe_webhook(secret, &body);
                assert_eq!(header(&headers, SIGNATURE), Some(signature.as_str()));
            }
        }
    }
    if let Err(WebhookError::MissingHeader(name)) = &result {
        assert_eq!(name, SIGNATURE);
        assert_eq!(header(&headers, name), None, "{name} is there");
    }
    if let Ok(WebhookOutcome::Events(events)) = &result {
        assert_eq!(events.len(), 1, "one event per notification");
        let event = &events[0];
        assert!(!event.event_id.is_empty());
        assert_eq!(event.occurred_at, event.refund.updated_at);
        check::refund(&event.refund, &STATUSES);
    }
});
