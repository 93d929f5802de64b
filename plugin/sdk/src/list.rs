//! What every provider's `list-refunds` does around its own request: the range asked for is
//! checked and widened to the whole seconds providers take, the cursor checked before any call,
//! and the answer cut back to the range.

use crate::time::TimeError;
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
    /// An end of the range cannot be written in the provider's time format (a date beyond
    /// what the format holds).
    #[error("range: {source}")]
    Unwritable {
        /// Why it cannot be written.
        source: TimeError,
    },
}

/// A cursor the host passed back that this provider's listing never gave out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// An empty cursor (the first page is asked for with none).
    #[error("empty cursor")]
    Empty,
    /// Not a page number from 1 up, for a provider whose cursor is one ([`page_number`]).
    #[error("cursor `{cursor}` is not a page number")]
    NotAPage {
        /// The cursor as given.
        cursor: String,
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

impl SecondRange {
    /// The first second, in milliseconds since the epoch (what the time formatters take).
    /// Saturates at the ends of `i64`, which no formatter takes either.
    pub fn from_ms(&self) -> i64 {
        self.from_s.saturating_mul(SECOND_MS)
    }

    /// The first second after the range, in milliseconds since the epoch; saturates likewise.
    pub fn to_ms(&self) -> i64 {
        self.to_s.saturating_mul(SECOND_MS)
    }

    /// Both ends written by `format` (a formatter of [`crate::time`], given milliseconds): what
    /// the provider's list request names as from and to.
    pub fn format(
        &self,
        format: impl Fn(i64) -> Result<String, TimeError>,
    ) -> Result<(String, String), RangeError> {
        let write = |ms| format(ms).map_err(|source| RangeError::Unwritable { source });
        Ok((write(self.from_ms())?, write(self.to_ms())?))
    }
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

/// The refunds of one answered page, each converted by `convert` (an error stops the page) and
/// kept only when it belongs in `range` ([`inside`]): a provider lists whole seconds, the host
/// asked for milliseconds.
pub fn keep_inside<T, E>(
    range: &TimeRange,
    items: impl IntoIterator<Item = T>,
    mut convert: impl FnMut(T) -> Result<Refund, E>,
) -> Result<Vec<Refund>, E> {
    let mut refunds = Vec::new();
    for item in items {
        let refund = convert(item)?;
        if inside(range, &refund) {
            refunds.push(refund);
        }
    }
    Ok(refunds)
}

/// For a provider whose cursor is an id from the previous page (`starting_after`): the cursor,
/// refused when empty (no page ever ends with an empty id).
pub fn id_cursor(cursor: Option<&str>) -> Result<Option<&str>, CursorError> {
    match cursor {
        Some("") => Err(CursorError::Empty),
        other => Ok(other),
    }
}

/// For a provider that numbers its pages from 1: the page a cursor names, 1 for none.
pub fn page_number(cursor: Option<&str>) -> Result<u32, CursorError> {
    match cursor {
        None => Ok(1),
        Some(c) => c
            .parse::<u32>()
            .ok()
            .filter(|page| *page >= 1)
            .ok_or_else(|| CursorError::NotAPage {
                cursor: c.to_owned(),
            }),
    }
}

/// For a provider that numbers its pages from 1: the cursor of the page after `page` of
/// `total_pages`, `None` from the last page on (a page past the last ends the listing too).
pub fn next_page(page: u32, total_pages: u32) -> Option<String> {
    (page < total_pages).then(|| (page + 1).to_string())
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

    fn refund(created_at: Option<i64>) -> Refund {
        Refund {
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
        }
    }

    #[test]
    fn only_refunds_created_inside_the_range_are_kept() {
        let r = range(1_000, 2_000);
        assert!(inside(&r, &refund(Some(1_000))));
        assert!(inside(&r, &refund(Some(1_999))));
        assert!(!inside(&r, &refund(Some(2_000))));
        assert!(!inside(&r, &refund(Some(999))));
        assert!(inside(&r, &refund(None)));
    }

    #[test]
    fn a_page_is_converted_and_cut_back_to_the_range() {
        let r = range(1_000, 2_000);
        let kept = keep_inside(&r, [Some(999), None, Some(1_500), Some(2_000)], |at| {
            Ok::<_, String>(refund(at))
        });
        assert_eq!(kept, Ok(vec![refund(None), refund(Some(1_500))]));
        let failed = keep_inside(&r, [Some(1_500), Some(-1)], |at| match at {
            Some(-1) => Err("unreadable".to_owned()),
            at => Ok(refund(at)),
        });
        assert_eq!(failed, Err("unreadable".to_owned()));
    }

    #[test]
    fn whole_seconds_in_milliseconds_and_written() {
        let seconds = SecondRange {
            from_s: -2,
            to_s: 4,
        };
        assert_eq!((seconds.from_ms(), seconds.to_ms()), (-2_000, 4_000));
        assert_eq!(
            seconds.format(crate::time::format_rfc3339_utc),
            Ok((
                "1969-12-31T23:59:58Z".to_owned(),
                "1970-01-01T00:00:04Z".to_owned()
            ))
        );
        let far = SecondRange {
            from_s: 0,
            to_s: i64::MAX / 1000,
        };
        let err = far.format(crate::time::format_rfc3339_utc).unwrap_err();
        assert!(matches!(err, RangeError::Unwritable { .. }), "{err:?}");
        assert!(err.to_string().starts_with("range: "), "{err}");
    }

    #[test]
    fn id_cursors_must_not_be_empty() {
        assert_eq!(id_cursor(None), Ok(None));
        assert_eq!(id_cursor(Some("rfnd_1")), Ok(Some("rfnd_1")));
        assert_eq!(id_cursor(Some("")), Err(CursorError::Empty));
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
    fn page_cursors_are_page_numbers_from_one() {
        assert_eq!(page_number(None), Ok(1));
        assert_eq!(page_number(Some("2")), Ok(2));
        for bad in ["0", "two", "", "-1", " 2", "4294967296"] {
            assert_eq!(
                page_number(Some(bad)),
                Err(CursorError::NotAPage {
                    cursor: bad.to_owned()
                }),
                "{bad:?}"
            );
        }
        assert_eq!(
            CursorError::NotAPage { cursor: "x".into() }.to_string(),
            "cursor `x` is not a page number"
        );
        assert_eq!(next_page(1, 2), Some("2".to_owned()));
        assert_eq!(next_page(2, 2), None);
        assert_eq!(next_page(3, 2), None);
        assert_eq!(next_page(1, 0), None);
    }
}
