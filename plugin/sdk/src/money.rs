//! Converting between Refundry's integer minor units and providers' decimal strings.
//!
//! No floating point anywhere: `0.1 + 0.2` has no place in a refund. The decimal form is the one
//! most providers use: major units, a `.`, then exactly the currency's ISO 4217 minor digits
//! (`"1500.00"` KES, `"5000"` UGX).

/// Why an amount could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The currency is not in the SDK's ISO 4217 table.
    #[error("unknown currency `{currency}`")]
    UnknownCurrency {
        /// The code as given.
        currency: String,
    },
    /// A negative amount; Refundry amounts are positive (refunds) or zero.
    #[error("negative amount {amount_minor}")]
    Negative {
        /// The amount in minor units.
        amount_minor: i64,
    },
    /// The string is not digits, optionally followed by `.` and digits (empty, sign, exponent,
    /// spaces, other characters).
    #[error("`{input}` is not a plain decimal amount")]
    Malformed {
        /// The string as given.
        input: String,
    },
    /// The string does not have exactly the currency's number of minor digits.
    #[error("`{input}` does not have exactly {expected} decimal digits for {currency}")]
    WrongPrecision {
        /// The string as given.
        input: String,
        /// The currency code.
        currency: String,
        /// The number of minor digits the currency has.
        expected: u32,
    },
    /// The amount does not fit in an `i64` of minor units.
    #[error("`{input}` overflows the minor-unit range")]
    Overflow {
        /// The string as given.
        input: String,
    },
}

/// ISO 4217 minor-unit exponents of the currencies Refundry's providers use.
///
/// Kept explicit rather than complete: a currency missing here is refused rather than guessed.
const EXPONENTS: &[(&str, u32)] = &[
    ("KES", 2),
    ("NGN", 2),
    ("GHS", 2),
    ("TZS", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("MWK", 2),
    ("USD", 2),
    ("EUR", 2),
    ("PEN", 2),
    ("GBP", 2),
    ("EGP", 2),
    ("MAD", 2),
    ("BWP", 2),
    ("MZN", 2),
    ("ETB", 2),
    ("UGX", 0),
    ("XOF", 0),
    ("XAF", 0),
    ("RWF", 0),
    ("CLP", 0),
    ("JPY", 0),
];

/// Number of minor digits of `currency` (ISO 4217, upper case), or `None` when unknown.
pub fn exponent(currency: &str) -> Option<u32> {
    EXPONENTS
        .iter()
        .find(|(code, _)| *code == currency)
        .map(|&(_, exp)| exp)
}

fn exponent_or_err(currency: &str) -> Result<u32, MoneyError> {
    exponent(currency).ok_or_else(|| MoneyError::UnknownCurrency {
        currency: currency.to_owned(),
    })
}

/// Formats `amount_minor` of `currency` as a major-unit decimal with exactly the currency's digits:
/// `to_decimal(150000, "KES") == "1500.00"`, `to_decimal(5000, "UGX") == "5000"`.
pub fn to_decimal(amount_minor: i64, currency: &str) -> Result<String, MoneyError> {
    let exp = exponent_or_err(currency)?;
    if amount_minor < 0 {
        return Err(MoneyError::Negative { amount_minor });
    }
    if exp == 0 {
        return Ok(amount_minor.to_string());
    }
    let digits = amount_minor.to_string();
    let exp = exp as usize;
    // Left-pad so that there is at least one major digit: 5 cents -> "005" -> "0.05".
    let padded = format!("{digits:0>width$}", width = exp + 1);
    let (major, minor) = padded.split_at(padded.len() - exp);
    Ok(format!("{major}.{minor}"))
}

/// Parses a major-unit decimal of `currency` into minor units, accepting only the exact form
/// [`to_decimal`] produces (leading zeros aside): ASCII digits, then `.` and exactly the currency's
/// minor digits when it has any. Signs, exponents, spaces, missing or extra digits are errors.
pub fn from_decimal(input: &str, currency: &str) -> Result<i64, MoneyError> {
    let exp = exponent_or_err(currency)?;
    let malformed = || MoneyError::Malformed {
        input: input.to_owned(),
    };
    let (major, minor) = match input.split_once('.') {
        Some((major, minor)) => (major, Some(minor)),
        None => (input, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(major) || minor.is_some_and(|m| !all_digits(m)) {
        return Err(malformed());
    }
    let minor = minor.unwrap_or("");
    if minor.len() != exp as usize {
        return Err(MoneyError::WrongPrecision {
            input: input.to_owned(),
            currency: currency.to_owned(),
            expected: exp,
        });
    }
    let overflow = || MoneyError::Overflow {
        input: input.to_owned(),
    };
    major
        .bytes()
        .chain(minor.bytes())
        .try_fold(0i64, |acc, b| {
            acc.checked_mul(10)?.checked_add(i64::from(b - b'0'))
        })
        .ok_or_else(overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponents_of_the_provider_currencies() {
        for c in [
            "KES", "NGN", "GHS", "TZS", "ZAR", "ZMW", "MWK", "USD", "EUR", "PEN",
        ] {
            assert_eq!(exponent(c), Some(2), "{c}");
        }
        for c in ["UGX", "XOF", "XAF", "RWF"] {
            assert_eq!(exponent(c), Some(0), "{c}");
        }
        assert_eq!(exponent("kes"), None);
        assert_eq!(exponent("XXX"), None);
    }

    #[test]
    fn to_decimal_gives_exactly_the_currency_digits() {
        assert_eq!(to_decimal(150000, "KES").unwrap(), "1500.00");
        assert_eq!(to_decimal(5, "USD").unwrap(), "0.05");
        assert_eq!(to_decimal(50, "PEN").unwrap(), "0.50");
        assert_eq!(to_decimal(0, "EUR").unwrap(), "0.00");
        assert_eq!(to_decimal(5000, "UGX").unwrap(), "5000");
        assert_eq!(to_decimal(0, "XOF").unwrap(), "0");
        assert_eq!(to_decimal(i64::MAX, "KES").unwrap(), "92233720368547758.07");
    }

    #[test]
    fn to_decimal_errors() {
        assert!(matches!(
            to_decimal(-1, "KES"),
            Err(MoneyError::Negative { amount_minor: -1 })
        ));
        assert!(matches!(
            to_decimal(i64::MIN, "UGX"),
            Err(MoneyError::Negative { .. })
        ));
        assert!(matches!(
            to_decimal(1, "XYZ"),
            Err(MoneyError::UnknownCurrency { .. })
        ));
    }

    #[test]
    fn from_decimal_round_trips() {
        for (s, c, v) in [
            ("1500.00", "KES", 150000),
            ("0.05", "USD", 5),
            ("000.50", "PEN", 50),
            ("5000", "UGX", 5000),
            ("0", "RWF", 0),
            ("92233720368547758.07", "KES", i64::MAX),
        ] {
            assert_eq!(from_decimal(s, c).unwrap(), v, "{s}");
            if !s.starts_with("00") {
                assert_eq!(to_decimal(v, c).unwrap(), s);
            }
        }
    }

    #[test]
    fn from_decimal_rejects_wrong_precision() {
        for (s, c) in [
            ("1500", "KES"),
            ("15.5", "KES"),
            ("15.500", "KES"),
            ("5000.00", "UGX"),
            ("5000.", "UGX"),
        ] {
            assert!(
                matches!(
                    from_decimal(s, c),
                    Err(MoneyError::WrongPrecision { .. } | MoneyError::Malformed { .. })
                ),
                "{s} {c}"
            );
        }
        assert!(matches!(
            from_decimal("1500", "KES"),
            Err(MoneyError::WrongPrecision { expected: 2, .. })
        ));
    }

    #[test]
    fn from_decimal_rejects_malformed() {
        for s in [
            "", ".", ".50", "-1.00", "+1.00", "1e3", "1.5e2", " 1.00", "1.00 ", "1,00", "1.0a",
            "١.٠٠", "1..00", "1.-1",
        ] {
            assert!(
                matches!(from_decimal(s, "KES"), Err(MoneyError::Malformed { .. })),
                "{s:?}"
            );
        }
        assert!(matches!(
            from_decimal("-5", "UGX"),
            Err(MoneyError::Malformed { .. })
        ));
    }

    #[test]
    fn from_decimal_rejects_overflow_and_unknown_currency() {
        assert!(matches!(
            from_decimal("92233720368547758.08", "KES"),
            Err(MoneyError::Overflow { .. })
        ));
        assert!(matches!(
            from_decimal("99999999999999999999999", "UGX"),
            Err(MoneyError::Overflow { .. })
        ));
        assert!(matches!(
            from_decimal("1.00", "ABC"),
            Err(MoneyError::UnknownCurrency { .. })
        ));
    }
}
