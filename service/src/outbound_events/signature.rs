//! `Refundry-Signature`: how an event's receiver knows Refundry sent it, unchanged and recently.
//!
//! The header is `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>`, `body` being
//! the exact bytes of the request body. A receiver recomputes the HMAC over the raw body (before
//! any JSON parsing), compares in constant time, and refuses a `t` too far from its own clock so a
//! captured request cannot be replayed later. During a secret rotation a header may carry several
//! `v1=` entries; one match is enough.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header's name.
pub const HEADER: &str = "Refundry-Signature";

/// How far `t` may be from the receiver's clock by default (5 minutes, as Stripe's).
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The request has no `Refundry-Signature` header.
    #[error("no {HEADER} header")]
    Missing,
    /// The header is not `t=<unix>,v1=<hex>[,v1=<hex>...]`.
    #[error("malformed {HEADER} header: {0}")]
    Malformed(&'static str),
    /// `t` is further from the receiver's clock than the tolerance.
    #[error("signature time is {age_secs} s from now, more than the {tolerance_secs} s allowed")]
    Stale {
        /// Receiver's clock minus `t` (negative for a time in the future).
        age_secs: i64,
        /// The tolerance applied.
        tolerance_secs: i64,
    },
    /// No `v1` entry is the HMAC of this body with this secret.
    #[error("signature does not match the body")]
    Mismatch,
}

/// The `Refundry-Signature` value for `body` sent at `t` (unix seconds).
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    let tag = mac(secret, t, body).finalize().into_bytes();
    format!("t={t},v1={}", hex::encode(tag))
}

/// Checks a `Refundry-Signature` header value against the raw `body`, with the receiver's clock
/// at `now` (unix seconds) and `tolerance_secs` of allowed skew; returns the signed `t`.
pub fn verify(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut t = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed("an entry is not key=value"))?;
        match key {
            "t" if t.is_none() => {
                t = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed("t is not a unix time"))?,
                );
            }
            "t" => return Err(SignatureError::Malformed("t is given twice")),
            "v1" => candidates
                .push(hex::decode(value).map_err(|_| SignatureError::Malformed("v1 is not hex"))?),
            // Other schemes (a future v2) are ignored, so receivers keep working while both are
            // sent.
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed("no t"))?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed("no v1 signature"));
    }
    let age_secs = now.saturating_sub(t);
    if age_secs.abs() > tolerance_secs {
        return Err(SignatureError::Stale {
            age_secs,
            tolerance_secs,
        });
    }
    let expected = mac(secret, t, body);
    // `verify_slice` compares in constant time.
    if candidates
        .iter()
        .any(|c| expected.clone().verify_slice(c).is_ok())
    {
        Ok(t)
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn mac(secret: &[u8], t: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test_0123456789abcdef";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"refund.processed"}"#;

    #[test]
    fn known_answer() {
        // printf '1700000000.{"id":"evt_1","type":"refund.processed"}' \
        //   | openssl dgst -sha256 -hmac 'whsec_test_0123456789abcdef'
        assert_eq!(
            sign(SECRET, 1_700_000_000, BODY),
            "t=1700000000,v1=6e66cdab6b1e7f9003b812a95eddcf76ec0c3017fc5a4c3ec867f9bbd63f966e"
        );
    }

    #[test]
    fn a_signed_body_verifies() {
        let h = sign(SECRET, 1_700_000_000, BODY);
        assert_eq!(
            verify(SECRET, Some(&h), BODY, 1_700_000_100, 300),
            Ok(1_700_000_000)
        );
    }

    #[test]
    fn refusals_are_typed() {
        let h = sign(SECRET, 1_700_000_000, BODY);
        let now = 1_700_000_000;
        assert_eq!(
            verify(SECRET, None, BODY, now, 300),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(SECRET, Some(&h), b"{}", now, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"another secret!!", Some(&h), BODY, now, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, Some(&h), BODY, now + 301, 300),
            Err(SignatureError::Stale {
                age_secs: 301,
                tolerance_secs: 300
            })
        );
        assert_eq!(
            verify(SECRET, Some(&h), BODY, now - 301, 300),
            Err(SignatureError::Stale {
                age_secs: -301,
                tolerance_secs: 300
            })
        );
        for bad in [
            "",
            "t=1",
            "v1=00",
            "t=x,v1=00",
            "t=1,v1=zz",
            "t=1,t=2,v1=00",
            "garbage",
        ] {
            assert!(
                matches!(
                    verify(SECRET, Some(bad), BODY, 1, 300),
                    Err(SignatureError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn any_v1_may_match_during_a_rotation() {
        let good = sign(SECRET, 1_700_000_000, BODY);
        let v1 = good.split_once(",v1=").unwrap().1;
        let h = format!("t=1700000000,v1={},v1={v1},v2=ignored", "00".repeat(32));
        assert!(verify(SECRET, Some(&h), BODY, 1_700_000_000, 300).is_ok());
    }
}
