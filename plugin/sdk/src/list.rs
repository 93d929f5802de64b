//! What every provider's `list-refunds` does around its own request: the range asked for is
//! checked and widened to the whole seconds providers take, and the answer cut back to it.

use crate::{Refund, TimeRange};

const SECOND_MS: i64 = 1000;
const DAY_S: i64 = 86_400;

/// Why a range cannot be listed in one request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// `to` is not after `from`.
    #[error("empty range: to {to} is not after from {from}")]
    Empty {
        /// The start asked for (ms).
        from: i64,
        /// The end asked for (ms).
        to: i64,
    },
    /// Widened to whole seconds, the range is longer than the provider lists at once.
    #[error("a list covers at most {max_days} days")]
    TooLong {
        /// The provider's longest range, in days.
        max_days: u32,
    },
    /// Widened to whole seconds, the range starts or ends past the milliseconds an `i64` holds
    /// (within a second of its ends), so its seconds cannot be turned back into times.
    #[error("the range [{from}, {to}) in whole seconds runs past the representable times")]
    OutOfRange {
        /// The start asked for (ms).
        from: i64,
        /// The end asked for (ms).
        to: i64,
    },
}

/// A range in whole seconds since the epoch: `from` included, `to` excluded. Both times 1000 fit
/// an `i64`: they are times in ms again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecondRange {
    /// The first second.
    pub from_s: i64,
    /// The first second after the range.
    pub to_s: i64,
}

/// `range` widened to the whole seconds around it (its start down, its end up), checked to be
/// no longer than `max_days` once widened.
pub fn whole_seconds(range: &TimeRange, max_days: u32) -> Result<SecondRange, RangeError> {
    if range.to <= range.from {
        return Err(RangeError::Empty {
            from: range.from,
            to: range.to,
        });
    }
    let from_s = range.from.div_euclid(SECOND_MS);
    let to_s = range.to.div_euclid(SECOND_MS) + i64::from(range.to.rem_euclid(SECOND_MS) != 0);
    let in_ms = |s: i64| s.checked_mul(SECOND_MS).is_some();
    if !(in_ms(from_s) && in_ms(to_s)) {
        return Err(RangeError::OutOfRange {
            from: range.from,
            to: range.to,
        });
    }
    if to_s - from_s > i64::from(max_days) * DAY_S {
        return Err(RangeError::TooLong { max_days });
    }
    Ok(SecondRange { from_s, to_s })
}

/// Whether a refund created at `created_at` (ms) belongs in `range`; one whose provider gave no
/// creation time is kept (the provider listed it for the range).
pub fn inside(range: &TimeRange, refund: &Refund) -> bool {
    refund
        .created_at
        .is_none_or(|at| (range.from..range.to).contains(&at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Money, RefundStatus};

    fn range(from: i64, to: i64) -> TimeRange {
        TimeRange { from, to }
    }

    #[test]
    fn a_range_is_widened_to_whole_seconds() {
        assert_eq!(
            whole_seconds(&range(1_500, 3_001), 31),
            Ok(SecondRange { from_s: 1, to_s: 4 })
        );
        assert_eq!(
            whole_seconds(&range(-1_500, 2_000), 31),
            Ok(SecondRange {
                from_s: -2,
                to_s: 2
            })
        );
    }

    #[test]
    fn an_empty_or_too_long_range_is_refused() {
        assert!(matches!(
            whole_seconds(&range(5, 5), 31),
            Err(RangeError::Empty { .. })
        ));
        let day = 86_400_000;
        assert!(whole_seconds(&range(0, 31 * day), 31).is_ok());
        // 31 days off the second widens to 31 days and a second.
        assert_eq!(
            whole_seconds(&range(1, 31 * day + 1), 31),
            Err(RangeError::TooLong { max_days: 31 })
        );
    }

    /// Found by fuzzing `list-refunds`: the plugins turned these seconds back into ms and
    /// overflowed.
    #[test]
    fn a_range_at_the_ends_of_i64_is_refused() {
        for (from, to) in [(i64::MAX - 1_000, i64::MAX), (i64::MIN, i64::MIN + 1_000)] {
            assert_eq!(
                whole_seconds(&range(from, to), 31),
                Err(RangeError::OutOfRange { from, to })
            );
        }
        // The last whole second that is a time in ms is still listed.
        let last = i64::MAX / SECOND_MS * SECOND_MS;
        assert!(whole_seconds(&range(last - 1_000, last), 31).is_ok());
    }

    #[test]
    fn only_refunds_created_inside_the_range_are_kept() {
        let refund = |created_at| Refund {
            provider_refund_id: "r".into(),
            external_refund_id: None,
            original_transaction_id: "t".into(),
            amount: Money {
                amount_minor: 1,
                currency: "KES".into(),
            },
            status: RefundStatus::Pending,
            provider_status: "pending".into(),
            failure_reason: None,
            created_at,
            updated_at: None,
        };
        let r = range(1_000, 2_000);
        assert!(inside(&r, &refund(Some(1_000))));
        assert!(inside(&r, &refund(Some(1_999))));
        assert!(!inside(&r, &refund(Some(2_000))));
        assert!(!inside(&r, &refund(Some(999))));
        assert!(inside(&r, &refund(None)));
    }
}
