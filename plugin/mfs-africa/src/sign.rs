//! Request signing and webhook verification (spec: "Request signing", "Webhooks"). Pure functions
//! of their arguments: only the flows in `lib.rs` read the clock and the configuration.

use refundry_sdk::crypto::{hmac_sha256_hex, sha256_hex, verify_hmac_sha256_hex};

/// `METHOD \n PATH \n TIMESTAMP \n lowercase hex SHA-256(body)`; an absent body hashes as empty.
/// `path` is the request target exactly as sent, query string included.
pub fn string_to_sign(method: &str, path: &str, timestamp: &str, body: &[u8]) -> String {
    format!("{method}\n{path}\n{timestamp}\n{}", sha256_hex(body))
}

/// The headers of a signed request, in the order they are sent: `X-Api-Key`, `X-Timestamp`,
/// `X-Signature` and, only when there is a body, `Content-Type: application/json`.
pub fn signed_headers(
    api_key: &str,
    api_secret: &[u8],
    method: &str,
    path: &str,
    timestamp: &str,
    body: Option<&[u8]>,
) -> Vec<(String, String)> {
    let to_sign = string_to_sign(method, path, timestamp, body.unwrap_or_default());
    let mut headers = vec![
        ("X-Api-Key".to_owned(), api_key.to_owned()),
        ("X-Timestamp".to_owned(), timestamp.to_owned()),
        (
            "X-Signature".to_owned(),
            hmac_sha256_hex(api_secret, to_sign.as_bytes()),
        ),
    ];
    if body.is_some() {
        headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
    }
    headers
}

/// What a webhook signature covers: `TIMESTAMP + "." + raw body`.
fn webhook_payload(timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut signed = Vec::with_capacity(timestamp.len() + 1 + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    signed
}

/// Lowercase hex HMAC-SHA256(webhook_secret, `TIMESTAMP + "." + raw body`).
pub fn webhook_signature(webhook_secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    hmac_sha256_hex(webhook_secret, &webhook_payload(timestamp, body))
}

/// True when `signature` (the `X-MFS-Signature` header) is the webhook signature of `body`,
/// compared in constant time. The spec fixes lowercase hex, so nothing is normalised.
pub fn verify_webhook(
    webhook_secret: &[u8],
    timestamp: &str,
    body: &[u8],
    signature: &str,
) -> bool {
    verify_hmac_sha256_hex(webhook_secret, &webhook_payload(timestamp, body), signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"original_transaction_id":"txn_8f2k1","refund_amount":"1500.00","currency":"KES","reason":"customer_return","external_refund_id":"order-991-r1"}"#;
    const TS: &str = "2026-11-25T10:15:30Z";

    // Expected values computed with Python 3's hashlib/hmac, independently of this crate:
    //   python3 -c 'import hashlib,hmac; b=open("create_request.json","rb").read().rstrip(b"\n");
    //     s=b"POST\n/v1/refunds\n2026-11-25T10:15:30Z\n"+hashlib.sha256(b).hexdigest().encode();
    //     print(hashlib.sha256(b).hexdigest(), hmac.new(b"test_api_secret", s, hashlib.sha256).hexdigest())'
    #[test]
    fn create_request_known_answer() {
        assert_eq!(
            BODY,
            include_str!("../tests/fixtures/create_request.json").trim_end()
        );
        assert_eq!(
            string_to_sign("POST", "/v1/refunds", TS, BODY.as_bytes()),
            "POST\n/v1/refunds\n2026-11-25T10:15:30Z\n\
             4c0212f5ff2a3dcbf1f08c98065b3962b0fe8e033cd248e762e13e1e1d332f5d"
        );
        let headers = signed_headers(
            "test_api_key",
            b"test_api_secret",
            "POST",
            "/v1/refunds",
            TS,
            Some(BODY.as_bytes()),
        );
        let expected = [
            ("X-Api-Key", "test_api_key"),
            ("X-Timestamp", TS),
            (
                "X-Signature",
                "e96f561edaf97bba3cbc1c9657d353a91b451a7fd8d64cff8e5069f8c2ec0bc6",
            ),
            ("Content-Type", "application/json"),
        ];
        assert_eq!(headers.len(), expected.len());
        for ((name, value), (want_name, want_value)) in headers.iter().zip(expected) {
            assert_eq!((name.as_str(), value.as_str()), (want_name, want_value));
        }
    }

    //   python3 -c 'import hashlib,hmac; s=b"GET\n/v1/refunds?external_refund_id=order-991-r1\n2026-11-25T10:15:30Z\n"
    //     +hashlib.sha256(b"").hexdigest().encode(); print(hmac.new(b"test_api_secret", s, hashlib.sha256).hexdigest())'
    #[test]
    fn get_request_known_answer_has_no_content_type() {
        let path = "/v1/refunds?external_refund_id=order-991-r1";
        assert_eq!(
            string_to_sign("GET", path, TS, b""),
            "GET\n/v1/refunds?external_refund_id=order-991-r1\n2026-11-25T10:15:30Z\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let headers = signed_headers("k", b"test_api_secret", "GET", path, TS, None);
        assert_eq!(headers.len(), 3);
        assert_eq!(
            headers[2].1,
            "18d0b01f4769d662f8b9f277b571a7752fd884e899e13cb7358b82de386a9e27"
        );
    }

    //   python3 -c 'import hashlib,hmac; b=open("webhook_processed.json","rb").read();
    //     print(hmac.new(b"test_webhook_secret", b"2026-11-25T10:20:00Z."+b, hashlib.sha256).hexdigest())'
    #[test]
    fn webhook_known_answer() {
        let body = include_bytes!("../tests/fixtures/webhook_processed.json");
        let ts = "2026-11-25T10:20:00Z";
        let expected = "9d732ba2a4743f2e149064a33f1e032a4f1f5da237559018c456568a896081c3";
        assert_eq!(
            webhook_signature(b"test_webhook_secret", ts, body),
            expected
        );
        assert!(verify_webhook(b"test_webhook_secret", ts, body, expected));
        assert!(!verify_webhook(b"other_secret", ts, body, expected));
        assert!(!verify_webhook(
            b"test_webhook_secret",
            "2026-11-25T10:20:01Z",
            body,
            expected
        ));
        assert!(!verify_webhook(
            b"test_webhook_secret",
            ts,
            &body[1..],
            expected
        ));
        assert!(!verify_webhook(
            b"test_webhook_secret",
            ts,
            body,
            &expected.to_uppercase()
        ));
        assert!(!verify_webhook(b"test_webhook_secret", ts, body, ""));
    }
}
