//! What every provider's `get-refund` does around its own request: the lookup checked and put
//! into a request target, and the refund a lookup by the merchant's id asked about picked out of
//! the provider's answer.

use crate::RefundLookup;
use crate::errors::ProviderError;
use crate::http;
use crate::validate::RefundRules;

/// The request target of `lookup`, checked first ([`RefundRules::check_lookup`]): a provider
/// refund id as one path segment after `by_provider_id` (`"/v1/refunds/"`), or a merchant refund
/// id after `by_external_id` (`"/v1/refunds?refundId="`). Both are percent-encoded
/// ([`http::path_segment`]), which leaves an id of letters, digits, `-` and `_` as it is.
pub fn target(
    lookup: &RefundLookup,
    rules: &RefundRules,
    by_provider_id: &str,
    by_external_id: &str,
) -> Result<String, ProviderError> {
    rules.check_lookup(lookup)?;
    Ok(match lookup {
        RefundLookup::ProviderRefundId(id) => format!("{by_provider_id}{}", http::path_segment(id)),
        RefundLookup::ExternalRefundId(id) => format!("{by_external_id}{}", http::path_segment(id)),
    })
}

/// The entry of a lookup-by-merchant-id answer that is about `id`: the first whose `echoed`
/// merchant id is `id`, or that echoes none. An entry naming another id is skipped (a provider
/// that ignored the filter answered about other refunds); without one, the refund is
/// [`ProviderError::NotFound`] under `field`, the provider's name for the merchant's id.
pub fn find_by_external_id<T>(
    entries: impl IntoIterator<Item = T>,
    field: &'static str,
    id: &str,
    echoed: impl Fn(&T) -> Option<&str>,
) -> Result<T, ProviderError> {
    entries
        .into_iter()
        .find(|entry| echoed(entry).is_none_or(|echoed| echoed == id))
        .ok_or_else(|| ProviderError::NotFound {
            field,
            id: id.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::IdRule;

    const RULES: RefundRules = RefundRules {
        provider: "Acme",
        currencies: &["KES"],
        max_reason_chars: 255,
        external_id: IdRule {
            max_len: 64,
            symbols: "_-",
        },
    };

    fn target_of(lookup: RefundLookup) -> Result<String, ProviderError> {
        target(&lookup, &RULES, "/v1/refunds/", "/v1/refunds?ref=")
    }

    #[test]
    fn targets_carry_the_id_encoded() {
        let by_id = RefundLookup::ProviderRefundId("a/b c?".into());
        assert_eq!(target_of(by_id).unwrap(), "/v1/refunds/a%2Fb%20c%3F");
        let by_ref = RefundLookup::ExternalRefundId("order-991_r1".into());
        assert_eq!(target_of(by_ref).unwrap(), "/v1/refunds?ref=order-991_r1");
    }

    #[test]
    fn a_lookup_that_breaks_the_rules_has_no_target() {
        for lookup in [
            RefundLookup::ProviderRefundId(String::new()),
            RefundLookup::ExternalRefundId("a&b=c".into()),
            RefundLookup::ExternalRefundId(String::new()),
        ] {
            let err = target_of(lookup).unwrap_err();
            assert!(matches!(err, ProviderError::InvalidRequest { .. }), "{err}");
        }
    }

    #[test]
    fn the_entry_about_the_id_is_found_and_others_skipped() {
        type Entry = (u8, Option<String>);
        fn echoed(entry: &Entry) -> Option<&str> {
            entry.1.as_deref()
        }
        let entry = |n: u8, id: Option<&str>| -> Entry { (n, id.map(str::to_owned)) };
        let entries = [
            entry(1, Some("other")),
            entry(2, Some("r-1")),
            entry(3, None),
        ];
        let found = find_by_external_id(entries, "refundId", "r-1", echoed).unwrap();
        assert_eq!(found, entry(2, Some("r-1")));
        // An entry that echoes no id is taken as the answer about the one asked for.
        let entries = [entry(1, Some("other")), entry(3, None)];
        let found = find_by_external_id(entries, "refundId", "r-1", echoed).unwrap();
        assert_eq!(found, entry(3, None));
        let others = [entry(1, Some("other"))];
        let err = find_by_external_id(others, "refundId", "r-1", echoed).unwrap_err();
        assert_eq!(err.to_string(), "no refund with refundId `r-1`");
        assert!(find_by_external_id(Vec::<Entry>::new(), "refundId", "r-1", echoed).is_err());
    }
}
