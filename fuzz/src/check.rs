//! What every answer of a plugin must satisfy, whatever the provider said: the checks the
//! targets assert after each operation.

use refundry_sdk::{Refund, RefundStatus, TimeRange};

/// A refund a plugin returned: its status is the spec's mapping of its provider status (an
/// unknown provider status is never mapped, so never returned), its amount is not negative, and
/// its currency is one whose digits Refundry knows (the amount was read with them).
pub fn refund(refund: &Refund, statuses: &[(&str, RefundStatus)]) {
    let mapped = statuses
        .iter()
        .find(|(word, _)| *word == refund.provider_status)
        .map(|(_, status)| *status);
    assert_eq!(
        mapped,
        Some(refund.status),
        "provider status {:?} returned as {:?}",
        refund.provider_status,
        refund.status
    );
    assert!(
        refund.amount.amount_minor >= 0,
        "negative amount {}",
        refund.amount.amount_minor
    );
    assert!(
        refundry_sdk::money::exponent(&refund.amount.currency).is_some(),
        "currency {:?} has no known digits",
        refund.amount.currency
    );
}

/// A listed refund belongs to the range asked for (or has no creation time to tell).
pub fn inside(range: &TimeRange, refund: &Refund) {
    if let Some(at) = refund.created_at {
        assert!(
            range.from <= at && at < range.to,
            "refund created at {at} listed for [{}, {})",
            range.from,
            range.to
        );
    }
}

/// No configured secret appears in what a plugin answered (its `Debug` text) unless the input
/// brought it: an error message may quote what the provider sent, but must not carry a secret of
/// the plugin's own to the host's logs.
pub fn no_secret(answer: &str, secrets: &[&str], input: &[u8]) {
    for secret in secrets {
        // The answer is searched first, with std's (uninstrumented) search: comparing every
        // window of the input would cost a quarter of the run and teach the fuzzer the secret.
        if answer.contains(secret) {
            assert!(
                String::from_utf8_lossy(input).contains(secret),
                "a secret in the answer: {answer}"
            );
        }
    }
}
