//! The parts of `parse-webhook` that are the same for every provider: the verification secret,
//! the freshness of a signed timestamp, the `malformed` error of a delivery that is signed but
//! not what the spec says, and the `ignored` outcome of an event type the plugin does not handle.
//! Reading the signature headers, the signed payload and the comparison stay in the plugin's
//! `sign.rs`.

use std::fmt::Display;

use serde::de::DeserializeOwned;

use crate::settings::{Secret, Settings};
use crate::{Host, Level, WebhookError, WebhookOutcome};

/// The secret webhooks are verified with, setting `key` of `provider` (its id). Without it no
/// delivery can be verified: that is `invalid-signature` (the provider must not be told the
/// secret is missing) and an error-level log line for the operator, which names the key only.
pub fn secret(
    host: &(impl Host + ?Sized),
    provider: &'static str,
    key: &str,
) -> Result<Secret, WebhookError> {
    Settings::new(host, provider).secret(key).map_err(|_| {
        let message = format!("{provider}: config key `{key}` is not set; rejecting webhook");
        host.log(Level::Error, &message, &[]);
        WebhookError::InvalidSignature
    })
}

/// `malformed`: the part of a verified delivery named `what` (`body`, a header) is not what the
/// spec says, for the reason `error` gives.
pub fn malformed(what: &str, error: impl Display) -> WebhookError {
    WebhookError::Malformed(format!("{what}: {error}"))
}

/// The verified body parsed as JSON into `T`; a body that does not parse is `malformed`.
pub fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, WebhookError> {
    serde_json::from_slice(body).map_err(|e| malformed("body", e))
}

/// Checks that a delivery signed at `signed_ms` is at most `tolerance_ms` from the host's
/// `now_ms`, either way: a timestamp from the future is as suspect as an old one, and a replayed
/// delivery cannot outlive the window either way. Else `stale-timestamp` with the age in whole
/// seconds (negative: from the future). Only once the signature is verified: the timestamp is
/// trusted only then.
pub fn check_age(now_ms: i64, signed_ms: i64, tolerance_ms: i64) -> Result<(), WebhookError> {
    let age_ms = now_ms.saturating_sub(signed_ms);
    if age_ms.unsigned_abs() > tolerance_ms.unsigned_abs() {
        return Err(WebhookError::StaleTimestamp(age_ms / 1000));
    }
    Ok(())
}

/// `ignored`: a verified delivery of an event type the plugin does not handle, acknowledged so
/// that the provider stops sending it again. `field` is the provider's name for the event type.
pub fn ignored(field: &str, event_type: &str) -> WebhookOutcome {
    WebhookOutcome::Ignored(format!("{field} `{event_type}` is not handled"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;

    #[test]
    fn the_secret_is_read_from_the_settings() {
        let host = FakeHost::new().with_config("webhook_secret", "s3cret");
        let secret = secret(&host, "acme", "webhook_secret").unwrap();
        assert_eq!(secret.expose(), "s3cret");
        assert!(host.logs().is_empty());
    }

    #[test]
    fn without_a_secret_every_delivery_is_rejected_and_the_operator_told() {
        for host in [
            FakeHost::new(),
            FakeHost::new().with_config("webhook_secret", ""),
        ] {
            assert!(matches!(
                secret(&host, "acme", "webhook_secret"),
                Err(WebhookError::InvalidSignature)
            ));
            let logs = host.logs();
            assert_eq!(logs.len(), 1);
            assert_eq!(logs[0].level, Level::Error);
            assert_eq!(
                logs[0].message,
                "acme: config key `webhook_secret` is not set; rejecting webhook"
            );
        }
    }

    #[test]
    fn malformed_names_the_part_and_the_reason() {
        assert_eq!(
            malformed("X-Timestamp", "not a date"),
            WebhookError::Malformed("X-Timestamp: not a date".into())
        );
        assert_eq!(json::<Vec<u8>>(b"[1]"), Ok(vec![1]));
        match json::<Vec<u8>>(b"not json") {
            Err(WebhookError::Malformed(m)) => assert!(m.starts_with("body: "), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_timestamp_too_far_either_way_is_stale() {
        let now = 1_795_601_730_000;
        assert_eq!(check_age(now, now, 300_000), Ok(()));
        assert_eq!(check_age(now, now - 300_000, 300_000), Ok(()));
        assert_eq!(check_age(now, now + 300_000, 300_000), Ok(()));
        assert_eq!(
            check_age(now, now - 300_001, 300_000),
            Err(WebhookError::StaleTimestamp(300))
        );
        assert_eq!(
            check_age(now, now + 301_000, 300_000),
            Err(WebhookError::StaleTimestamp(-301))
        );
        assert_eq!(
            check_age(now, i64::MIN, 300_000),
            Err(WebhookError::StaleTimestamp(i64::MAX / 1000))
        );
    }

    #[test]
    fn an_unhandled_event_type_is_ignored_by_name() {
        assert_eq!(
            ignored("eventType", "refund.settled"),
            WebhookOutcome::Ignored("eventType `refund.settled` is not handled".into())
        );
    }
}
