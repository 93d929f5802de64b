//! Decimal amounts at the host's edges (CLI input, readable output) to and from minor units.
//! Inside Refundry money is always integer minor units plus an ISO 4217 code.

/// Why a decimal amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The currency is not one whose minor-unit exponent the host knows.
    #[error("unknown currency {0:?} (expected an ISO 4217 code such as KES, UGX, PEN)")]
    UnknownCurrency(String),
    /// The text is not a plain positive decimal with the currency's number of decimals, or is
    /// above [`MAX_AMOUNT_MINOR`].
    #[error(
        "amount {amount:?} is not a positive decimal with exactly {digits} decimals for {currency}, \
         at most 10^15 minor units"
    )]
    BadAmount {
        /// The text given.
        amount: String,
        /// The currency.
        currency: String,
        /// Its ISO 4217 minor-unit exponent.
        digits: u32,
    },
}

/// The largest amount Refundry takes, in minor units: 10^15 (ten trillion KES, far above any
/// payment a mobile-money or cash provider carries). Bounding every amount a gateway sends keeps
/// the sums of a payment's refunds (checked where they are added) far from `i64`'s range.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000_000;

/// The currencies Refundry's providers use, with their ISO 4217 minor-unit exponents. The one
/// list: [`exponent`] reads it, and the OpenAPI document lists its codes as the only ones a
/// refund request may carry.
pub const CURRENCIES: &[(&str, u32)] = &[
    ("EUR", 2),
    ("GBP", 2),
    ("GHS", 2),
    ("JPY", 0),
    ("KES", 2),
    ("MWK", 2),
    ("NGN", 2),
    ("PEN", 2),
    ("RWF", 0),
    ("TZS", 2),
    ("UGX", 0),
    ("USD", 2),
    ("XAF", 0),
    ("XOF", 0),
    ("ZAR", 2),
    ("ZMW", 2),
];

/// ISO 4217 minor-unit exponent of a currency in [`CURRENCIES`].
pub fn exponent(currency: &str) -> Option<u32> {
    CURRENCIES
        .iter()
        .find(|(code, _)| *code == currency)
        .map(|(_, digits)| *digits)
}

/// Parses `"1500.00"` (KES) into minor units (`150000`). The number of decimals must be exactly
/// the currency's exponent: `"1500"` for KES is refused rather than guessed.
pub fn parse_decimal(amount: &str, currency: &str) -> Result<i64, MoneyError> {
    let digits = exponent(currency).ok_or_else(|| MoneyError::UnknownCurrency(currency.into()))?;
    let bad = || MoneyError::BadAmount {
        amount: amount.into(),
        currency: currency.into(),
        digits,
    };
    let (whole, frac) = match amount.split_once('.') {
        Some((w, f)) if digits > 0 => (w, f),
        None if digits == 0 => (amount, ""),
        _ => return Err(bad()),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || (digits > 0 && (!all_digits(frac) || frac.len() != digits as usize)) {
        return Err(bad());
    }
    let value = format!("{whole}{frac}").parse::<i64>().map_err(|_| bad())?;
    if value <= 0 || value > MAX_AMOUNT_MINOR {
        return Err(bad());
    }
    Ok(value)
}

/// Formats minor units as a decimal in major units (`150000` KES -> `"1500.00"`); the code alone
/// when the currency is unknown (`"150000 minor units"`).
pub fn format_minor(amount_minor: i64, currency: &str) -> String {
    match exponent(currency) {
        Some(0) => amount_minor.to_string(),
        Some(d) => {
            let scale = 10i64.pow(d);
            let sign = if amount_minor < 0 { "-" } else { "" };
            let abs = amount_minor.unsigned_abs();
            format!(
                "{sign}{}.{:0width$}",
                abs / scale as u64,
                abs % scale as u64,
                width = d as usize
            )
        }
        None => format!("{amount_minor} minor units"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_precision_only() {
        assert_eq!(parse_decimal("1500.00", "KES"), Ok(150_000));
        assert_eq!(parse_decimal("0.01", "USD"), Ok(1));
        assert_eq!(parse_decimal("5000", "UGX"), Ok(5_000));
        assert_eq!(
            parse_decimal("10000000000000.00", "KES"),
            Ok(MAX_AMOUNT_MINOR)
        );
        for (amount, currency) in [
            ("1500", "KES"),
            ("15.5", "KES"),
            ("1.000", "KES"),
            ("-1.00", "KES"),
            ("0.00", "KES"),
            ("1e3", "UGX"),
            ("5000.00", "UGX"),
            ("", "KES"),
            (".50", "KES"),
            ("1,000.00", "KES"),
            ("99999999999999999999.00", "KES"),
            ("10000000000000.01", "KES"),
            ("1000000000000001", "UGX"),
        ] {
            assert!(
                parse_decimal(amount, currency).is_err(),
                "{amount} {currency}"
            );
        }
        assert_eq!(
            parse_decimal("1.00", "XYZ"),
            Err(MoneyError::UnknownCurrency("XYZ".into()))
        );
    }

    #[test]
    fn formats_by_exponent() {
        assert_eq!(format_minor(150_000, "KES"), "1500.00");
        assert_eq!(format_minor(5, "USD"), "0.05");
        assert_eq!(format_minor(5_000, "UGX"), "5000");
        assert_eq!(format_minor(-250, "PEN"), "-2.50");
    }
}
