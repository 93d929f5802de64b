//! Converting a provider's refund object into Refundry's [`Refund`](crate::Refund): what every
//! plugin's `wire.rs` refuses to guess about. The status mapping itself stays in the plugin, as
//! an exhaustive match whose unknown case becomes [`ConvertError::UnknownStatus`].

use crate::money::{self, MoneyError};
use crate::time::FieldError;

/// Why a provider's refund object could not be converted: never guessed around.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// A status outside the spec.
    #[error("unknown refund status `{status}`")]
    UnknownStatus {
        /// The status word verbatim.
        status: String,
    },
    /// An amount with the wrong precision, sign or currency.
    #[error("{field}: {source}")]
    Amount {
        /// The wire field (`refund_amount`, `refundAmount`).
        field: &'static str,
        /// What is wrong with it.
        source: MoneyError,
    },
    /// A time that is not RFC 3339 ([`crate::time::parse_field`]).
    #[error(transparent)]
    Time(#[from] FieldError),
}

/// The decimal amount of wire `field` in `currency` as minor units, in exactly the form
/// [`money::from_decimal`] accepts.
pub fn amount(field: &'static str, decimal: &str, currency: &str) -> Result<i64, ConvertError> {
    money::from_decimal(decimal, currency).map_err(|source| ConvertError::Amount { field, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time;

    #[test]
    fn amounts_name_their_field() {
        assert_eq!(amount("refund_amount", "1500.00", "KES"), Ok(150_000));
        let err = amount("refundAmount", "160.5", "PEN").unwrap_err();
        assert!(matches!(
            err,
            ConvertError::Amount {
                field: "refundAmount",
                source: MoneyError::WrongPrecision { .. }
            }
        ));
        assert_eq!(
            err.to_string(),
            "refundAmount: `160.5` does not have exactly 2 decimal digits for PEN"
        );
    }

    #[test]
    fn times_and_statuses_say_what_is_wrong() {
        let err: ConvertError = time::parse_field("updated_at", Some("yesterday"))
            .unwrap_err()
            .into();
        assert_eq!(
            err.to_string(),
            "updated_at: `yesterday` is not an RFC 3339 date-time"
        );
        let status = ConvertError::UnknownStatus {
            status: "on_hold".into(),
        };
        assert_eq!(status.to_string(), "unknown refund status `on_hold`");
    }
}
