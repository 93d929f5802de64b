//! What a plugin checks in a request before any call (the authorization included): whatever
//! the provider's spec lets a plugin know it would refuse is refused here, as `invalid-request`
//! or `currency-mismatch`, without spending a request or an outcome on it.

use crate::errors::ProviderError;
use crate::{RefundLookup, RefundRequest, money};

/// Which merchant refund ids (the idempotency key) a provider takes: 1 to `max_len` ASCII
/// letters, digits and `symbols`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRule {
    /// The longest id, in characters (bytes: every allowed character is ASCII).
    pub max_len: usize,
    /// The characters allowed besides ASCII letters and digits (`"_-"`). Keep them URL-safe if
    /// the plugin puts the id into a query unencoded.
    pub symbols: &'static str,
}

impl IdRule {
    /// `id` if the rule allows it, else an `invalid-request` naming the rule.
    pub fn check(&self, id: &str) -> Result<(), ProviderError> {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || self.symbols.as_bytes().contains(&b);
        if (1..=self.max_len).contains(&id.len()) && id.bytes().all(allowed) {
            return Ok(());
        }
        Err(ProviderError::invalid(format!(
            "external_refund_id `{id}` must be 1 to {} of [A-Za-z0-9{}]",
            self.max_len, self.symbols
        )))
    }
}

/// What a provider's spec says of the refunds it takes, checked before any call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefundRules {
    /// The provider's name, for messages.
    pub provider: &'static str,
    /// The ISO 4217 codes it refunds in (upper case, as the SDK's money table has them).
    pub currencies: &'static [&'static str],
    /// The longest `reason`, in characters (not bytes).
    pub max_reason_chars: usize,
    /// The merchant refund ids it takes.
    pub external_id: IdRule,
}

impl RefundRules {
    /// Checks `req` and gives its amount as the provider's decimal (`"1500.00"`). In this order,
    /// so that one request always meets the same refusal: the external id, a non-empty
    /// original transaction id, the reason's length, the currency (`currency-mismatch`), a
    /// positive amount, an amount the currency's decimals can write.
    pub fn check_create(&self, req: &RefundRequest) -> Result<String, ProviderError> {
        self.external_id.check(&req.external_refund_id)?;
        if req.original_transaction_id.is_empty() {
            return Err(ProviderError::invalid("original_transaction_id is empty"));
        }
        let max = self.max_reason_chars;
        if req.reason.as_ref().is_some_and(|r| r.chars().count() > max) {
            return Err(ProviderError::invalid(format!(
                "reason is longer than {max} characters"
            )));
        }
        let currency = &req.amount.currency;
        if !self.currencies.contains(&currency.as_str()) {
            return Err(ProviderError::UnsupportedCurrency {
                provider: self.provider,
                currency: currency.clone(),
                supported: self.currencies,
            });
        }
        if req.amount.amount_minor <= 0 {
            return Err(ProviderError::invalid(format!(
                "refund amount must be positive, got {} minor units",
                req.amount.amount_minor
            )));
        }
        money::to_decimal(req.amount.amount_minor, currency)
            .map_err(|e| ProviderError::invalid(e.to_string()))
    }

    /// Checks a lookup: a provider refund id must not be empty (it would ask for the list
    /// instead), a merchant refund id must follow [`RefundRules::external_id`].
    pub fn check_lookup(&self, lookup: &RefundLookup) -> Result<(), ProviderError> {
        match lookup {
            RefundLookup::ProviderRefundId(id) if id.is_empty() => {
                Err(ProviderError::invalid("provider refund id is empty"))
            }
            // A URL parser resolves `.` and `..` as path steps (`/v1/refunds/..` is `/v1/`), so
            // no encoding keeps such an id inside its segment: it cannot be looked up by path.
            // Found by fuzzing get-refund.
            RefundLookup::ProviderRefundId(id) if id == "." || id == ".." => Err(
                ProviderError::invalid(format!("provider refund id `{id}` is no path segment")),
            ),
            RefundLookup::ProviderRefundId(_) => Ok(()),
            RefundLookup::ExternalRefundId(id) => self.external_id.check(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Money, RefundError, Refusal, RefusalKind};

    const RULES: RefundRules = RefundRules {
        provider: "Acme",
        currencies: &["KES", "UGX"],
        max_reason_chars: 5,
        external_id: IdRule {
            max_len: 8,
            symbols: "_-",
        },
    };

    fn request() -> RefundRequest {
        RefundRequest {
            original_transaction_id: "txn_1".into(),
            external_refund_id: "r-1".into(),
            amount: Money {
                amount_minor: 150_000,
                currency: "KES".into(),
            },
            reason: Some("éééé".into()),
            order_id: None,
        }
    }

    fn kind(err: ProviderError) -> RefusalKind {
        match RefundError::from(err) {
            RefundError::Refused(Refusal { kind, .. }) => kind,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ids_follow_the_rule() {
        let rule = RULES.external_id;
        for id in ["a", "A-z_9", "12345678"] {
            assert!(rule.check(id).is_ok(), "{id}");
        }
        for id in ["", "123456789", "a b", "r/1", "a&b=c", "é", "a.b"] {
            let err = rule.check(id).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("external_refund_id `{id}` must be 1 to 8 of [A-Za-z0-9_-]")
            );
        }
    }

    #[test]
    fn a_good_request_gives_the_providers_decimal() {
        assert_eq!(RULES.check_create(&request()).unwrap(), "1500.00");
        let mut req = request();
        req.amount = Money {
            amount_minor: 5_000,
            currency: "UGX".into(),
        };
        req.reason = None;
        assert_eq!(RULES.check_create(&req).unwrap(), "5000");
    }

    #[test]
    fn each_rule_refuses_with_its_kind() {
        type Change = fn(&mut RefundRequest);
        let cases: [(Change, RefusalKind, &str); 6] = [
            (
                |r| r.external_refund_id = "a b".into(),
                RefusalKind::InvalidRequest,
                "external_refund_id `a b` must be 1 to 8 of [A-Za-z0-9_-]",
            ),
            (
                |r| r.original_transaction_id.clear(),
                RefusalKind::InvalidRequest,
                "original_transaction_id is empty",
            ),
            (
                |r| r.reason = Some("é".repeat(6)),
                RefusalKind::InvalidRequest,
                "reason is longer than 5 characters",
            ),
            (
                |r| r.amount.currency = "kes".into(),
                RefusalKind::CurrencyMismatch,
                "currency `kes` is not supported by Acme (KES, UGX only)",
            ),
            (
                |r| r.amount.amount_minor = 0,
                RefusalKind::InvalidRequest,
                "refund amount must be positive, got 0 minor units",
            ),
            (
                |r| r.amount.amount_minor = -1,
                RefusalKind::InvalidRequest,
                "refund amount must be positive, got -1 minor units",
            ),
        ];
        for (change, expected_kind, message) in cases {
            let mut req = request();
            change(&mut req);
            let err = RULES.check_create(&req).unwrap_err();
            assert_eq!(err.to_string(), message);
            assert_eq!(kind(err), expected_kind, "{message}");
        }
    }

    #[test]
    fn the_first_broken_rule_is_the_one_reported() {
        let mut req = request();
        req.amount.currency = "EUR".into();
        req.reason = Some("too long".into());
        assert_eq!(
            kind(RULES.check_create(&req).unwrap_err()),
            RefusalKind::InvalidRequest
        );
    }

    #[test]
    fn a_currency_the_sdk_cannot_write_is_invalid() {
        let rules = RefundRules {
            currencies: &["XXX"],
            ..RULES
        };
        let mut req = request();
        req.amount.currency = "XXX".into();
        let err = rules.check_create(&req).unwrap_err();
        assert_eq!(err.to_string(), "unknown currency `XXX`");
    }

    #[test]
    fn lookups_are_checked() {
        let check = |lookup| RULES.check_lookup(&lookup);
        assert!(check(RefundLookup::ProviderRefundId("a/b c?".into())).is_ok());
        assert!(check(RefundLookup::ExternalRefundId("r-1".into())).is_ok());
        let empty = check(RefundLookup::ProviderRefundId(String::new())).unwrap_err();
        assert_eq!(empty.to_string(), "provider refund id is empty");
        assert!(check(RefundLookup::ProviderRefundId("...".into())).is_ok());
        for dots in [".", ".."] {
            let err = check(RefundLookup::ProviderRefundId(dots.into())).unwrap_err();
            assert_eq!(kind(err), RefusalKind::InvalidRequest, "{dots:?}");
        }
        for bad in ["", "a&b=c", "r 1"] {
            let err = check(RefundLookup::ExternalRefundId(bad.into())).unwrap_err();
            assert_eq!(kind(err), RefusalKind::InvalidRequest, "{bad:?}");
        }
    }
}
