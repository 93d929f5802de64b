//! Money as the MFS Africa spec writes it (section "Money"): a decimal string in major units with
//! exactly the currency's ISO 4217 minor digits. Parsed here into integer minor units, with no
//! floating point anywhere, so that amounts compare exactly.

/// The currencies the spec lists, with their ISO 4217 minor digits.
const CURRENCIES: [(&str, u32); 13] = [
    ("KES", 2),
    ("NGN", 2),
    ("GHS", 2),
    ("TZS", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("MWK", 2),
    ("USD", 2),
    ("EUR", 2),
    ("UGX", 0),
    ("XOF", 0),
    ("XAF", 0),
    ("RWF", 0),
];

/// Why an amount or currency was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MoneyError {
    /// Not one of the spec's currencies (codes are upper case).
    #[error("unsupported currency {0:?}")]
    UnknownCurrency(String),
    /// Not a plain decimal with the currency's number of minor digits.
    #[error(
        "amount {amount:?} must be a positive decimal with exactly {digits} decimal places for {currency}"
    )]
    Format {
        /// The amount as given.
        amount: String,
        /// The currency's minor digits.
        digits: u32,
        /// The currency.
        currency: String,
    },
    /// Zero is not an amount one can refund.
    #[error("amount must be greater than zero")]
    Zero,
    /// More than fits in 64-bit minor units.
    #[error("amount {0:?} is too large")]
    TooLarge(String),
}

/// The number of minor digits of `currency`, if the spec lists it.
pub(crate) fn minor_digits(currency: &str) -> Result<u32, MoneyError> {
    CURRENCIES
        .iter()
        .find(|(code, _)| *code == currency)
        .map(|(_, digits)| *digits)
        .ok_or_else(|| MoneyError::UnknownCurrency(currency.to_owned()))
}

/// Parses `amount` in `currency` into minor units (`"1500.00"` KES is 150000, `"5000"` UGX is 5000).
///
/// Accepted: ASCII digits, then, for currencies with minor digits, a `.` and exactly that many
/// digits. Refused: signs, exponents, spaces, missing or extra decimals, zero, and (stricter than
/// the spec's wording, since a correct client never sends them) leading zeros such as `"015.00"`.
pub(crate) fn parse_amount(amount: &str, currency: &str) -> Result<i64, MoneyError> {
    let digits = minor_digits(currency)?;
    let format_error = || MoneyError::Format {
        amount: amount.to_owned(),
        digits,
        currency: currency.to_owned(),
    };
    let (major, minor) = match (digits, amount.split_once('.')) {
        (0, None) => (amount, ""),
        (0, Some(_)) => return Err(format_error()),
        (_, Some((major, minor))) => (major, minor),
        (_, None) => return Err(format_error()),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(major) || (digits > 0 && !all_digits(minor)) {
        return Err(format_error());
    }
    if minor.len() != digits as usize || (major.len() > 1 && major.starts_with('0')) {
        return Err(format_error());
    }
    let too_large = || MoneyError::TooLarge(amount.to_owned());
    let major: i64 = major.parse().map_err(|_| too_large())?;
    let minor: i64 = if minor.is_empty() {
        0
    } else {
        minor.parse().map_err(|_| format_error())?
    };
    let value = major
        .checked_mul(10_i64.pow(digits))
        .and_then(|v| v.checked_add(minor))
        .ok_or_else(too_large)?;
    if value == 0 {
        return Err(MoneyError::Zero);
    }
    Ok(value)
}

/// Formats minor units the way the spec writes them (`150000` KES is `"1500.00"`).
/// `currency` must be one of the spec's currencies (it was checked when the amount was parsed).
pub(crate) fn format_amount(minor_units: i64, currency: &str) -> String {
    let digits = minor_digits(currency).unwrap_or(0);
    if digits == 0 {
        return minor_units.to_string();
    }
    let scale = 10_i64.pow(digits);
    format!(
        "{}.{:0width$}",
        minor_units / scale,
        minor_units % scale,
        width = digits as usize
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_exact_minor_digits() {
        assert_eq!(parse_amount("1500.00", "KES"), Ok(150_000));
        assert_eq!(parse_amount("0.01", "USD"), Ok(1));
        assert_eq!(parse_amount("5000", "UGX"), Ok(5000));
        assert_eq!(parse_amount("7", "RWF"), Ok(7));
    }

    #[test]
    fn refuses_everything_else() {
        for (amount, currency) in [
            ("1500", "KES"),
            ("15.5", "KES"),
            ("15.500", "KES"),
            ("-1.00", "KES"),
            ("+1.00", "KES"),
            ("1e3", "KES"),
            ("1e3", "UGX"),
            ("5000.00", "UGX"),
            ("", "KES"),
            (".50", "KES"),
            ("1.", "KES"),
            (" 1.00", "KES"),
            ("1,000.00", "KES"),
            ("01.00", "KES"),
            ("1.0a", "KES"),
        ] {
            assert!(
                matches!(
                    parse_amount(amount, currency),
                    Err(MoneyError::Format { .. })
                ),
                "{amount:?} {currency} should be a format error"
            );
        }
        assert_eq!(parse_amount("0.00", "KES"), Err(MoneyError::Zero));
        assert_eq!(parse_amount("0", "UGX"), Err(MoneyError::Zero));
        assert!(matches!(
            parse_amount("1.00", "kes"),
            Err(MoneyError::UnknownCurrency(_))
        ));
        assert!(matches!(
            parse_amount("99999999999999999999.00", "KES"),
            Err(MoneyError::TooLarge(_))
        ));
    }

    #[test]
    fn formats_back() {
        assert_eq!(format_amount(150_000, "KES"), "1500.00");
        assert_eq!(format_amount(5, "USD"), "0.05");
        assert_eq!(format_amount(5000, "UGX"), "5000");
    }
}
