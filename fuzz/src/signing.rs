//! The providers' signatures computed from the specs with `hmac` and `sha2` directly, not with
//! the SDK's helpers: the targets sign webhooks with these and check the plugins' requests and
//! verdicts against them, so a plugin that misreads a scheme disagrees here.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Lowercase hex HMAC-SHA256 of `message` under `key`.
pub fn hmac_hex(key: &[u8], message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// MFS Africa, "Webhooks": HMAC-SHA256(webhook_secret, TIMESTAMP + "." + raw body).
pub fn mfs_webhook(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut signed = Vec::with_capacity(timestamp.len() + 1 + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    hmac_hex(secret.as_bytes(), &signed)
}

/// MFS Africa, "Request signing": HMAC-SHA256(api_secret, METHOD \n PATH \n TIMESTAMP \n
/// hex SHA-256(body)), an absent body hashing as the empty string.
pub fn mfs_request(secret: &str, method: &str, path: &str, timestamp: &str, body: &[u8]) -> String {
    let to_sign = format!("{method}\n{path}\n{timestamp}\n{}", sha256_hex(body));
    hmac_hex(secret.as_bytes(), to_sign.as_bytes())
}

/// PagoEfectivo, "Notifications": HMAC-SHA256(secret_key, raw body).
pub fn pe_webhook(secret: &str, body: &[u8]) -> String {
    hmac_hex(secret.as_bytes(), body)
}

/// PagoEfectivo, "Every other call": the canonical string of a JSON body, its top-level fields
/// sorted bytewise by key, `key=value` (a string without quotes), joined with `&`, nulls left
/// out. `None` when the body is no JSON object.
pub fn pe_canonical(body: &[u8]) -> Option<String> {
    let serde_json::Value::Object(fields) = serde_json::from_slice(body).ok()? else {
        return None;
    };
    let mut fields: Vec<_> = fields.iter().filter(|(_, v)| !v.is_null()).collect();
    fields.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let pairs: Vec<String> = fields
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    Some(pairs.join("&"))
}

/// PagoEfectivo, "Authorization": hex SHA-256 of `idService.accessKey.secretKey.dateRequest`.
pub fn pe_auth_hash(id_service: u64, access_key: &str, secret: &str, date_request: &str) -> String {
    sha256_hex(format!("{id_service}.{access_key}.{secret}.{date_request}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The plugins' own known answers (computed there with Python's hmac), reproduced here.
    #[test]
    fn known_answers() {
        let body = br#"{"original_transaction_id":"txn_8f2k1","refund_amount":"1500.00","currency":"KES","reason":"customer_return","external_refund_id":"order-991-r1"}"#;
        assert_eq!(
            mfs_request(
                "test_api_secret",
                "POST",
                "/v1/refunds",
                "2026-11-25T10:15:30Z",
                body
            ),
            "e96f561edaf97bba3cbc1c9657d353a91b451a7fd8d64cff8e5069f8c2ec0bc6"
        );
        assert_eq!(
            pe_auth_hash(1024, "AK1", "test_secret_key", "2026-11-25T05:15:30-05:00"),
            "a156f5a4118490138673b6de77c7d135f1a4b9e1d81c4a5930677a63c13d568f"
        );
        assert_eq!(
            pe_canonical(br#"{"b": "x", "a": "1", "n": null, "B": 7}"#).as_deref(),
            Some("B=7&a=1&b=x")
        );
    }
}
