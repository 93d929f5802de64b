//! Small pieces the fixtures share: money in major units, HMAC signatures, random ids, times.
//! Each is what a spec says, written once here rather than in every fixture (and apart from the
//! plugins and the sandbox: the kit is a third reading of the specs).

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use refundry_sandbox::faults::FaultSpec;
use serde_json::Value;
use sha2::Sha256;

use crate::fixture::{Fault, FixtureError};

/// `amount_minor` as a decimal string in major units with `digits` decimals: `150000` with 2
/// is `"1500.00"`, `5000` with 0 is `"5000"`.
pub fn major_units(amount_minor: i64, digits: u32) -> String {
    if digits == 0 {
        return amount_minor.to_string();
    }
    let scale = 10_i64.pow(digits);
    let sign = if amount_minor < 0 { "-" } else { "" };
    let abs = amount_minor.unsigned_abs();
    let scale = scale.unsigned_abs();
    format!(
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = digits as usize
    )
}

/// Lowercase hex HMAC-SHA256 of the concatenated `parts` under `key`.
pub fn hmac_sha256_hex(key: &str, parts: &[&[u8]]) -> String {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// `n` random decimal digits, the first not 0.
pub fn random_digits(n: usize) -> String {
    (0..n)
        .map(|i| {
            let low = if i == 0 { 1 } else { 0 };
            char::from(b'0' + rand::random_range(low..10u8))
        })
        .collect()
}

/// A time as RFC 3339 UTC to the second, `2026-11-25T10:15:30Z`.
pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// How many of the refunds in a sandbox's `{"data": [...]}` answer have `field` equal to
/// `value`.
pub fn count_where(answer: &Value, field: &str, value: &str) -> Result<usize, FixtureError> {
    let refunds = answer["data"]
        .as_array()
        .ok_or_else(|| FixtureError::Sandbox(format!("no refund list: {answer}")))?;
    Ok(refunds.iter().filter(|r| r[field] == value).count())
}

/// The fault queued at a sandbox of `refundry_sandbox` (`POST /_sandbox/faults`) for `fault`,
/// where the provider's spec has the status asked for.
pub fn sandbox_fault(fault: Fault) -> FaultSpec {
    match fault {
        Fault::FailAfterActing { status } => FaultSpec::StatusAfterProcessing {
            status,
            count: 1,
            retry_after: None,
        },
        Fault::AnswerLate { delay } => FaultSpec::Delay {
            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            count: 1,
        },
        Fault::RateLimited { retry_after_secs } => FaultSpec::Status {
            status: 429,
            count: 1,
            retry_after: Some(retry_after_secs),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_units_have_exactly_the_currency_digits() {
        assert_eq!(major_units(150_000, 2), "1500.00");
        assert_eq!(major_units(5, 2), "0.05");
        assert_eq!(major_units(16_050, 2), "160.50");
        assert_eq!(major_units(5_000, 0), "5000");
        assert_eq!(major_units(-150, 2), "-1.50");
    }

    #[test]
    fn hmac_matches_a_known_answer() {
        // RFC 4231, test case 2.
        assert_eq!(
            hmac_sha256_hex("Jefe", &[b"what do ya want ", b"for nothing?"]),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn refunds_are_counted_by_one_field() {
        let answer = serde_json::json!({"data": [
            {"refundId": "r-1", "transactionId": "t"},
            {"refundId": "r-2", "transactionId": "t"},
        ]});
        assert_eq!(count_where(&answer, "transactionId", "t").unwrap(), 2);
        assert_eq!(count_where(&answer, "refundId", "r-2").unwrap(), 1);
        assert_eq!(count_where(&answer, "refundId", "r-3").unwrap(), 0);
        assert!(count_where(&serde_json::json!({"error": "x"}), "refundId", "r").is_err());
    }

    #[test]
    fn faults_become_the_sandbox_faults_that_play_them() {
        let specs = [
            Fault::FailAfterActing { status: 500 },
            Fault::AnswerLate {
                delay: std::time::Duration::from_secs(3),
            },
            Fault::RateLimited {
                retry_after_secs: 1,
            },
        ]
        .map(|f| serde_json::to_value(sandbox_fault(f)).unwrap());
        assert_eq!(
            specs,
            [
                serde_json::json!({"kind": "status_after_processing", "status": 500, "count": 1}),
                serde_json::json!({"kind": "delay", "delay_ms": 3000, "count": 1}),
                serde_json::json!({"kind": "status", "status": 429, "count": 1, "retry_after": 1}),
            ]
        );
    }

    #[test]
    fn random_digits_are_digits_without_a_leading_zero() {
        for _ in 0..50 {
            let id = random_digits(8);
            assert_eq!(id.len(), 8);
            assert!(
                id.bytes().all(|b| b.is_ascii_digit()) && !id.starts_with('0'),
                "{id}"
            );
        }
    }
}
