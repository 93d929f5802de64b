//! Money as the PagoEfectivo spec writes it (section "Dates, money, currency"): a JSON string in
//! major units with exactly two decimals (`"160.50"`), in `PEN` or `USD` only. Parsed here into
//! integer cents, with no floating point anywhere, so that amounts compare exactly.

use serde::Serialize;

/// The spec's two currencies (both have two decimals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) enum Currency {
    /// Peruvian sol.
    #[serde(rename = "PEN")]
    Pen,
    /// US dollar.
    #[serde(rename = "USD")]
    Usd,
}

impl Currency {
    /// The currency for an ISO 4217 code, if the spec lists it (codes are upper case).
    pub(crate) fn parse(code: &str) -> Option<Self> {
        match code {
            "PEN" => Some(Currency::Pen),
            "USD" => Some(Currency::Usd),
            _ => None,
        }
    }

    /// The ISO 4217 code.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Currency::Pen => "PEN",
            Currency::Usd => "USD",
        }
    }
}

/// Why an amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MoneyError {
    /// Not a plain decimal with exactly two decimals.
    #[error("amount {0:?} must be a string of digits with exactly two decimals, e.g. \"160.50\"")]
    Format(String),
    /// Zero is not an amount one can pay or refund.
    #[error("amount must be greater than zero")]
    Zero,
    /// More than fits in 64-bit cents.
    #[error("amount {0:?} is too large")]
    TooLarge(String),
}

/// Parses `"160.50"` into 16050 cents.
///
/// Accepted: ASCII digits, a `.`, exactly two digits. Refused: signs, exponents, spaces, missing
/// or extra decimals, zero, and (stricter than the spec's wording, since a correct client never
/// sends them) leading zeros such as `"015.00"`.
pub(crate) fn parse_amount(amount: &str) -> Result<i64, MoneyError> {
    let format_error = || MoneyError::Format(amount.to_owned());
    let (major, minor) = amount.split_once('.').ok_or_else(format_error)?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(major) || !all_digits(minor) || minor.len() != 2 {
        return Err(format_error());
    }
    if major.len() > 1 && major.starts_with('0') {
        return Err(format_error());
    }
    let too_large = || MoneyError::TooLarge(amount.to_owned());
    let major: i64 = major.parse().map_err(|_| too_large())?;
    let minor: i64 = minor.parse().map_err(|_| format_error())?;
    let cents = major
        .checked_mul(100)
        .and_then(|v| v.checked_add(minor))
        .ok_or_else(too_large)?;
    if cents == 0 {
        return Err(MoneyError::Zero);
    }
    Ok(cents)
}

/// Formats cents the way the spec writes them (16050 is `"160.50"`). Never negative in practice;
/// a negative value is written with a leading `-`.
pub(crate) fn format_amount(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}{}.{:02}", cents / 100, cents % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_two_decimals() {
        assert_eq!(parse_amount("160.50"), Ok(16_050));
        assert_eq!(parse_amount("0.01"), Ok(1));
        assert_eq!(parse_amount("1000000.00"), Ok(100_000_000));
    }

    #[test]
    fn refuses_everything_else() {
        for amount in [
            "160", "160.5", "160.500", "-1.00", "+1.00", "1e3", "", ".50", "1.", " 1.00", "1.00 ",
            "1,000.00", "01.00", "1.0a", "160,50", "１.00",
        ] {
            assert!(
                matches!(parse_amount(amount), Err(MoneyError::Format(_))),
                "{amount:?} should be a format error"
            );
        }
        assert_eq!(parse_amount("0.00"), Err(MoneyError::Zero));
        assert!(matches!(
            parse_amount("99999999999999999999.00"),
            Err(MoneyError::TooLarge(_))
        ));
    }

    #[test]
    fn formats_back() {
        assert_eq!(format_amount(16_050), "160.50");
        assert_eq!(format_amount(5), "0.05");
        assert_eq!(format_amount(0), "0.00");
        assert_eq!(format_amount(-5), "-0.05");
    }

    #[test]
    fn currencies() {
        assert_eq!(Currency::parse("PEN"), Some(Currency::Pen));
        assert_eq!(Currency::parse("USD").map(Currency::as_str), Some("USD"));
        assert_eq!(Currency::parse("pen"), None);
        assert_eq!(Currency::parse("EUR"), None);
    }
}
