//! Request and webhook signatures, per the MFS Africa spec ("Request signing", "Webhooks").
//!
//! Pure functions of their inputs: the caller supplies the time, key and bytes.

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// How far a request's `X-Timestamp` may be from the sandbox clock, either way ("more than 300 s
/// from server time" is refused).
pub(crate) const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::seconds(300);

fn hmac_hex(secret: &str, message: &[&[u8]]) -> String {
    // HMAC takes keys of any length (long keys are hashed), so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
        .expect("HMAC-SHA256 accepts keys of any length");
    for part in message {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// `METHOD \n PATH \n TIMESTAMP \n hex(sha256(body))`, PATH being the request target as sent,
/// query included.
pub(crate) fn string_to_sign(method: &str, target: &str, timestamp: &str, body: &[u8]) -> String {
    let body_hash = hex::encode(Sha256::digest(body));
    format!("{method}\n{target}\n{timestamp}\n{body_hash}")
}

/// The lowercase hex `X-Signature` a client must send for this request.
pub(crate) fn request_signature(
    api_secret: &str,
    method: &str,
    target: &str,
    timestamp: &str,
    body: &[u8],
) -> String {
    let to_sign = string_to_sign(method, target, timestamp, body);
    hmac_hex(api_secret, &[to_sign.as_bytes()])
}

/// The lowercase hex `X-MFS-Signature` of a webhook: HMAC-SHA256 over `TIMESTAMP + "." + body`.
pub(crate) fn webhook_signature(webhook_secret: &str, timestamp: &str, body: &[u8]) -> String {
    hmac_hex(webhook_secret, &[timestamp.as_bytes(), b".", body])
}

/// Compares a received value with the expected one in constant time (for equal lengths; a length
/// difference is not secret, since the expected length is public).
pub(crate) fn constant_time_eq(expected: &str, received: &str) -> bool {
    bool::from(expected.as_bytes().ct_eq(received.as_bytes()))
}

/// Parses an `X-Timestamp`: RFC 3339 UTC with seconds precision and a `Z` suffix, exactly
/// `YYYY-MM-DDTHH:MM:SSZ`. Anything else (offsets, fractions, lower-case `z`) is `None`.
pub(crate) fn parse_timestamp(value: &str) -> Option<DateTime<Utc>> {
    let bytes = value.as_bytes();
    let shape_ok = bytes.len() == 20
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b'T',
            13 | 16 => *b == b':',
            19 => *b == b'Z',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%SZ")
        .ok()
        .map(|naive| naive.and_utc())
}

/// Whether `timestamp` is within [`MAX_CLOCK_SKEW`] of `now`, either way.
pub(crate) fn timestamp_in_window(timestamp: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    (now - timestamp).abs() <= MAX_CLOCK_SKEW
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATE_BODY: &[u8] = br#"{"original_transaction_id":"txn_8f2k1","refund_amount":"1500.00","currency":"KES","reason":"customer_return","external_refund_id":"order-991-r1"}"#;

    // Known answers computed independently with Python:
    // python3 -c 'import hmac,hashlib;b=...;sts="POST\n/v1/refunds\n2026-11-25T10:15:30Z\n"+hashlib.sha256(b).hexdigest();print(hmac.new(b"sk_test_secret",sts.encode(),hashlib.sha256).hexdigest())'
    #[test]
    fn request_signature_known_answers() {
        assert_eq!(
            request_signature(
                "sk_test_secret",
                "POST",
                "/v1/refunds",
                "2026-11-25T10:15:30Z",
                CREATE_BODY
            ),
            "63dc930ff07ddf254f4a31d80a99926f57003cd019a33f86b9591a890f936751"
        );
        // Query included in PATH; an empty body hashes as the empty string.
        assert_eq!(
            request_signature(
                "sk_test_secret",
                "GET",
                "/v1/refunds?external_refund_id=order-991-r1",
                "2026-11-25T10:15:30Z",
                b""
            ),
            "c339befdaaf4c4df8595ac5422065ffde003eae6fcc6e6adb94729dd0b433b1e"
        );
        assert!(
            string_to_sign("GET", "/x", "t", b"")
                .ends_with("\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
    }

    // Known answer computed with Python:
    // python3 -c 'import hmac,hashlib;print(hmac.new(b"whsec_test",b"2026-11-25T10:20:00Z."+body,hashlib.sha256).hexdigest())'
    #[test]
    fn webhook_signature_known_answer() {
        let body = br#"{"event_id":"evt_01","event_type":"refund.status_changed","occurred_at":"2026-11-25T10:20:00Z","data":{}}"#;
        assert_eq!(
            webhook_signature("whsec_test", "2026-11-25T10:20:00Z", body),
            "7612bbae5493e9ddd39d6dd7c11682c8f38a72ac4716a2597a3a4c332bd4f1aa"
        );
    }

    #[test]
    fn timestamps_are_strict() {
        let parsed = parse_timestamp("2026-11-25T10:15:30Z").unwrap();
        assert_eq!(crate::time::rfc3339_seconds(parsed), "2026-11-25T10:15:30Z");
        for bad in [
            "2026-11-25T10:15:30.5Z",
            "2026-11-25T10:15:30+00:00",
            "2026-11-25 10:15:30Z",
            "2026-11-25T10:15:30z",
            "2026-13-25T10:15:30Z",
            "1764065730",
            "",
        ] {
            assert!(parse_timestamp(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn window_is_300_seconds_each_way() {
        let now = parse_timestamp("2026-11-25T10:15:30Z").unwrap();
        assert!(timestamp_in_window(now - TimeDelta::seconds(300), now));
        assert!(timestamp_in_window(now + TimeDelta::seconds(300), now));
        assert!(!timestamp_in_window(now - TimeDelta::seconds(301), now));
        assert!(!timestamp_in_window(now + TimeDelta::seconds(301), now));
    }

    #[test]
    fn comparison() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
        assert!(!constant_time_eq("abc", "ABC"));
    }
}
