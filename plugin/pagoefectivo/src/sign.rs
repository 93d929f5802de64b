//! The authorization hash, request signatures and webhook verification (spec: "Authorization",
//! "Every other call", "Notifications"). Pure functions of their arguments: only the flows in
//! `lib.rs` read the clock, the configuration and storage.

use refundry_sdk::crypto::{hmac_sha256_hex, sha256_hex, verify_hmac_sha256_hex};
use serde_json::{Map, Value};

/// `hashString`: lowercase hex SHA-256 of `idService.accessKey.secretKey.dateRequest`, where
/// `id_service` is the decimal text of the number sent.
pub fn auth_hash(
    id_service: &str,
    access_key: &str,
    secret_key: &str,
    date_request: &str,
) -> String {
    sha256_hex(format!("{id_service}.{access_key}.{secret_key}.{date_request}").as_bytes())
}

/// The canonical string of a JSON body: its top-level fields sorted bytewise by key, each
/// `key=value`, joined with `&`; null fields are left out. A string is written as its value
/// without quotes; any other value (the spec's bodies have none) as its compact JSON text.
///
/// Sorted here rather than trusted to the map's order: `serde_json`'s `preserve_order` feature,
/// if anything in the build enables it, turns `Map` into an insertion-ordered map.
pub fn canonical_json(body: &Map<String, Value>) -> String {
    let mut fields: Vec<(&String, &Value)> = body.iter().filter(|(_, v)| !v.is_null()).collect();
    fields.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out = String::new();
    for (i, (key, value)) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(key);
        out.push('=');
        match value {
            Value::String(s) => out.push_str(s),
            other => out.push_str(&other.to_string()),
        }
    }
    out
}

/// `PE-Signature`: lowercase hex HMAC-SHA256(secret_key, canonical). For a bodiless request the
/// canonical string is the request target (path and query exactly as sent).
pub fn signature(secret_key: &[u8], canonical: &str) -> String {
    hmac_sha256_hex(secret_key, canonical.as_bytes())
}

/// The headers of a signed call, in the order they are sent: `Authorization`, `PE-Signature`
/// and, only when there is a body, `Content-Type: application/json`.
pub fn signed_headers(
    token: &str,
    secret_key: &[u8],
    canonical: &str,
    has_body: bool,
) -> Vec<(String, String)> {
    let mut headers = vec![
        ("Authorization".to_owned(), format!("Bearer {token}")),
        ("PE-Signature".to_owned(), signature(secret_key, canonical)),
    ];
    if has_body {
        headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
    }
    headers
}

/// True when `signature` (the `PE-Signature` header) is the HMAC of the raw webhook `body`,
/// compared in constant time. The spec fixes lowercase hex, so nothing is normalised.
pub fn verify_webhook(secret_key: &[u8], body: &[u8], signature: &str) -> bool {
    verify_hmac_sha256_hex(secret_key, body, signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test_secret_key";
    /// The spec's example canonical string ("Create a refund"), verbatim.
    const SPEC_CANONICAL: &str = "currency=PEN&reason=producto devuelto&refundAmount=160.50&refundId=order-991-r1&transactionCode=ORDER-991&transactionId=81234567";

    fn object(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    // Computed with Python 3, independently of this crate:
    //   python3 -c 'import hashlib; print(hashlib.sha256(
    //     b"1024.AK1.test_secret_key.2026-11-25T05:15:30-05:00").hexdigest())'
    #[test]
    fn auth_hash_known_answer() {
        assert_eq!(
            auth_hash(
                "1024",
                "AK1",
                "test_secret_key",
                "2026-11-25T05:15:30-05:00"
            ),
            "a156f5a4118490138673b6de77c7d135f1a4b9e1d81c4a5930677a63c13d568f"
        );
    }

    // The spec's example body (tests/fixtures/create_request.json) gives the spec's string.
    //   python3 -c 'import hashlib,hmac; print(hmac.new(b"test_secret_key", b"currency=PEN&reason=producto
    //     devuelto&refundAmount=160.50&refundId=order-991-r1&transactionCode=ORDER-991&transactionId=81234567",
    //     hashlib.sha256).hexdigest())'        (one line, a single space in "producto devuelto")
    #[test]
    fn spec_example_canonical_and_signature() {
        let body = object(include_str!("../tests/fixtures/create_request.json"));
        assert_eq!(canonical_json(&body), SPEC_CANONICAL);
        assert_eq!(
            signature(SECRET, SPEC_CANONICAL),
            "c8d84c46b168c446c236aa777adb49ae3e1062784ebfc8fc0d7156b5369162c1"
        );
    }

    #[test]
    fn canonical_leaves_out_nulls_and_sorts_bytewise() {
        // Upper case sorts before lower case bytewise; `a_` after `aZ`; nulls vanish; a number is
        // its JSON text; a string is unquoted and unescaped.
        let body = object(r#"{"b": "x\"y", "a_": "1", "aZ": "2", "n": null, "B": 7, "e": ""}"#);
        assert_eq!(canonical_json(&body), "B=7&aZ=2&a_=1&b=x\"y&e=");
        assert_eq!(canonical_json(&Map::new()), "");
    }

    //   python3 -c 'import hashlib,hmac; [print(hmac.new(b"test_secret_key", t, hashlib.sha256).hexdigest())
    //     for t in (b"/v1/refunds/PE-RF-000123", b"/v1/refunds?refundId=order-991-r1")]'
    #[test]
    fn bodiless_requests_sign_the_target() {
        let headers = signed_headers("tok-1", SECRET, "/v1/refunds/PE-RF-000123", false);
        assert_eq!(
            headers,
            vec![
                ("Authorization".to_owned(), "Bearer tok-1".to_owned()),
                (
                    "PE-Signature".to_owned(),
                    "c309d86dafccfcdc5dcc30ff7c0ad2315b17db7230ed3dc4cbc738a835123a3f".to_owned()
                ),
            ]
        );
        assert_eq!(
            signature(SECRET, "/v1/refunds?refundId=order-991-r1"),
            "845eda4f9e39558a5f902bb98c62e5b8b190d877e869e689de438c34bb2f3ad0"
        );
        assert_eq!(
            signed_headers("t", SECRET, "x", true)[2],
            ("Content-Type".to_owned(), "application/json".to_owned())
        );
    }

    //   python3 -c 'import hashlib,hmac; b=open("tests/fixtures/webhook_completed.json","rb").read();
    //     print(hmac.new(b"test_secret_key", b, hashlib.sha256).hexdigest())'
    #[test]
    fn webhook_known_answer() {
        let body = include_bytes!("../tests/fixtures/webhook_completed.json");
        let expected = "498ea99a64fe15deebe5b978189ad723395be3e342b711caf4a1121a2830bfb4";
        assert!(verify_webhook(SECRET, body, expected));
        assert!(!verify_webhook(b"other_secret", body, expected));
        assert!(!verify_webhook(SECRET, &body[1..], expected));
        assert!(!verify_webhook(SECRET, body, &expected.to_uppercase()));
        assert!(!verify_webhook(SECRET, body, ""));
    }
}
