//! The authorization hash, request signatures and notification signatures of the PagoEfectivo
//! spec ("Authorization", "Every other call", "Notifications").
//!
//! Pure functions of their inputs: the caller supplies the time, keys and bytes.

use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// How far `dateRequest` may be from the sandbox clock, either way ("more than 300 s from server
/// time" is refused with `108`).
pub(crate) const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::seconds(300);

fn hmac_hex(secret: &str, message: &[u8]) -> String {
    // HMAC takes keys of any length (long keys are hashed), so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
        .expect("HMAC-SHA256 accepts keys of any length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// The authorization's `hashString`: lowercase hex SHA-256 of
/// `idService + '.' + accessKey + '.' + secretKey + '.' + dateRequest`, `idService` in decimal and
/// `dateRequest` exactly as sent.
pub(crate) fn hash_string(
    id_service: u64,
    access_key: &str,
    secret_key: &str,
    date_request: &str,
) -> String {
    let text = format!("{id_service}.{access_key}.{secret_key}.{date_request}");
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The canonical string of a JSON body's top-level fields: sorted by key (bytewise), each written
/// `key=value`, joined with `&`, null fields left out.
///
/// A string value is written without quotes, as its decoded JSON string (so `"a\"b"` is written
/// `a"b`; nothing is escaped or trimmed). The spec only has string values; any other value is
/// written as its compact JSON text (`true`, `12`, `{"a":1}`), so that such a body can still be
/// signed and then refused by validation with a useful `111`.
pub(crate) fn canonical_fields(fields: &Map<String, Value>) -> String {
    let mut present: Vec<(&String, &Value)> = fields
        .iter()
        .filter(|(_, value)| !value.is_null())
        .collect();
    // Explicitly bytewise, whatever order the map keeps.
    present.sort_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
    let pairs: Vec<String> = present
        .into_iter()
        .map(|(key, value)| match value {
            Value::String(text) => format!("{key}={text}"),
            other => format!("{key}={other}"),
        })
        .collect();
    pairs.join("&")
}

/// A body that is not empty and not a JSON object, so it has no canonical string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a request body must be a JSON object")]
pub(crate) struct NotAnObject;

/// The canonical string of a request: for an empty body, the request target (path and query
/// exactly as received); otherwise [`canonical_fields`] of the body, which must be a JSON object.
pub(crate) fn canonical_request(target: &str, body: &[u8]) -> Result<String, NotAnObject> {
    if body.is_empty() {
        return Ok(target.to_owned());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => Ok(canonical_fields(&fields)),
        _ => Err(NotAnObject),
    }
}

/// The lowercase hex `PE-Signature` of a request: HMAC-SHA256(secret_key, canonical).
pub(crate) fn request_signature(secret_key: &str, canonical: &str) -> String {
    hmac_hex(secret_key, canonical.as_bytes())
}

/// The lowercase hex `PE-Signature` of a notification: HMAC-SHA256(secret_key, raw body).
pub(crate) fn notification_signature(secret_key: &str, body: &[u8]) -> String {
    hmac_hex(secret_key, body)
}

/// Compares a received value with the expected one in constant time (for equal lengths; a length
/// difference is not secret, since the expected length is public).
pub(crate) fn constant_time_eq(expected: &str, received: &str) -> bool {
    bool::from(expected.as_bytes().ct_eq(received.as_bytes()))
}

/// Whether `date` is within [`MAX_CLOCK_SKEW`] of `now`, either way.
pub(crate) fn date_in_window(date: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    (now - date).abs() <= MAX_CLOCK_SKEW
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATE_BODY: &str = r#"{"transactionId": "81234567", "refundAmount": "160.50", "currency": "PEN",
 "transactionCode": "ORDER-991", "refundId": "order-991-r1", "reason": "producto devuelto"}"#;

    /// The spec's example ("Create a refund"), byte for byte.
    const SPEC_CANONICAL: &str = "currency=PEN&reason=producto devuelto&refundAmount=160.50&refundId=order-991-r1&transactionCode=ORDER-991&transactionId=81234567";

    #[test]
    fn canonical_string_of_the_spec_example() {
        assert_eq!(
            canonical_request("/v1/refunds", CREATE_BODY.as_bytes()).unwrap(),
            SPEC_CANONICAL
        );
    }

    #[test]
    fn canonical_rules() {
        // Bytewise: upper case sorts before lower case; null fields are left out; an explicit
        // empty string is kept.
        let body = br#"{"b": "1", "B": "2", "a": null, "aa": "x", "c": ""}"#;
        assert_eq!(canonical_request("/x", body).unwrap(), "B=2&aa=x&b=1&c=");
        // Decoded string values, as sent (no trimming, no re-formatting).
        let body = br#"{"r": "say \"hola\" ", "n": "007.50"}"#;
        assert_eq!(
            canonical_request("/x", body).unwrap(),
            "n=007.50&r=say \"hola\" "
        );
        // Non-strings are written as JSON text.
        assert_eq!(
            canonical_request("/x", br#"{"n": 12, "t": true, "o": {"k": "v"}}"#).unwrap(),
            r#"n=12&o={"k":"v"}&t=true"#
        );
        // No body: the request target as received, query included.
        assert_eq!(
            canonical_request("/v1/refunds?refundId=a%2Db", b"").unwrap(),
            "/v1/refunds?refundId=a%2Db"
        );
        assert_eq!(canonical_request("/x", b"{}").unwrap(), "");
        for bad in [&b"[]"[..], b"\"s\"", b"{", b" "] {
            assert_eq!(canonical_request("/x", bad), Err(NotAnObject));
        }
    }

    // Known answers computed independently with Python:
    // python3 -c 'import hmac,hashlib;print(hmac.new(b"sk_test_secret",b"currency=PEN&reason=producto devuelto&refundAmount=160.50&refundId=order-991-r1&transactionCode=ORDER-991&transactionId=81234567",hashlib.sha256).hexdigest())'
    // python3 -c 'import hmac,hashlib;print(hmac.new(b"sk_test_secret",b"/v1/refunds?refundId=order-991-r1",hashlib.sha256).hexdigest())'
    #[test]
    fn request_signature_known_answers() {
        assert_eq!(
            request_signature("sk_test_secret", SPEC_CANONICAL),
            "28b921ffc1e8f851219c3e9115366ce92c3499a4c58a17ec5067435747581ead"
        );
        assert_eq!(
            request_signature("sk_test_secret", "/v1/refunds?refundId=order-991-r1"),
            "413603059ff40da687f681b25d0757ad3f3f22b1886d51e409c56ddbd87550f3"
        );
    }

    // Known answer computed with Python:
    // python3 -c 'import hashlib;print(hashlib.sha256(b"1024.AK1.sk_test_secret.2026-11-25T05:15:30-05:00").hexdigest())'
    #[test]
    fn hash_string_known_answer() {
        assert_eq!(
            hash_string(1024, "AK1", "sk_test_secret", "2026-11-25T05:15:30-05:00"),
            "c333e4f1ad075bbd67301b9a04e040a777a6efea933bd9d7f0d0bf19be826d0a"
        );
    }

    // Known answer computed with Python:
    // python3 -c 'import hmac,hashlib;print(hmac.new(b"sk_test_secret",b"{\"eventType\":\"refund.completed\",\"operationNumber\":\"OP-77812\",\"data\":{\"refundId\":\"order-991-r1\"}}",hashlib.sha256).hexdigest())'
    #[test]
    fn notification_signature_known_answer() {
        let body = br#"{"eventType":"refund.completed","operationNumber":"OP-77812","data":{"refundId":"order-991-r1"}}"#;
        assert_eq!(
            notification_signature("sk_test_secret", body),
            "18292bcd1ab52320f9078f1de0f88d81decf4b84f5fb078cbf75abbfc42dd979"
        );
    }

    #[test]
    fn window_is_300_seconds_each_way() {
        let now = DateTime::parse_from_rfc3339("2026-11-25T05:15:30-05:00")
            .unwrap()
            .to_utc();
        assert!(date_in_window(now - TimeDelta::seconds(300), now));
        assert!(date_in_window(now + TimeDelta::seconds(300), now));
        assert!(!date_in_window(now - TimeDelta::seconds(301), now));
        assert!(!date_in_window(now + TimeDelta::seconds(301), now));
    }

    #[test]
    fn comparison() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
        assert!(!constant_time_eq("abc", "ABC"));
    }
}
