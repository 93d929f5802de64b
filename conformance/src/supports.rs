//! What a provider declares it supports, and which cases run for it: a case needing a feature the
//! provider does not have, or whose fixture does not have yet, is a named skip with its reason,
//! never a silent pass.

use std::fmt;

/// Whether a provider (and its fixture) has one feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// The provider has it and the fixture drives it: the cases needing it run.
    Supported,
    /// The provider does not have it: the cases needing it are skipped for good, with this
    /// reason ("the spec signs no timestamp").
    NotSupported(&'static str),
    /// The provider may have it, but the fixture does not drive it yet: what a freshly scaffolded
    /// fixture declares for everything.
    NotYetImplemented,
}

/// Something a case needs of a provider and its fixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feature {
    /// Start a sandbox, seed a payment, move a refund at the provider and count the provider's
    /// refunds: every case needs these.
    Basics,
    /// `get-refund` by provider refund id and by external refund id.
    StatusQueries,
    /// The provider refuses refunds of payments older than the window `describe()` gives.
    RefundWindow,
    /// `list-refunds`: the provider's refunds of a time range, page by page.
    List,
    /// Refunds made in the provider's portal (by the merchant's staff, not through the API).
    PortalRefunds,
    /// Signed webhooks when a refund moves; the fixture signs a body (genuine or forged) and
    /// builds one of an event type the plugin does not handle.
    Webhooks,
    /// A processed refund can be reversed at the provider.
    Reversals,
    /// The webhook signature covers a time, so a delivery can be stale.
    SignedWebhookTime,
    /// One delivery may carry several events.
    BatchedWebhooks,
    /// The sandbox can fail a request after carrying it out (a 5xx answer), or answer it late.
    ProviderFaults,
    /// The provider answers 429 with `Retry-After`.
    RateLimits,
    /// The provider issues access tokens that expire.
    Tokens,
}

impl Feature {
    /// Every feature.
    pub const ALL: [Feature; 12] = [
        Feature::Basics,
        Feature::StatusQueries,
        Feature::RefundWindow,
        Feature::List,
        Feature::PortalRefunds,
        Feature::Webhooks,
        Feature::Reversals,
        Feature::SignedWebhookTime,
        Feature::BatchedWebhooks,
        Feature::ProviderFaults,
        Feature::RateLimits,
        Feature::Tokens,
    ];

    /// Its name in skip reasons.
    pub fn name(self) -> &'static str {
        match self {
            Feature::Basics => "basics",
            Feature::StatusQueries => "status queries",
            Feature::RefundWindow => "refund window",
            Feature::List => "list",
            Feature::PortalRefunds => "portal refunds",
            Feature::Webhooks => "webhooks",
            Feature::Reversals => "reversals",
            Feature::SignedWebhookTime => "signed webhook time",
            Feature::BatchedWebhooks => "batched webhooks",
            Feature::ProviderFaults => "provider faults",
            Feature::RateLimits => "rate limits",
            Feature::Tokens => "tokens",
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A provider's declaration: one [`Support`] per [`Feature`].
///
/// Start from [`Supports::all`] and name what differs, or from [`Supports::not_yet_implemented`]
/// for a new provider:
/// ```
/// use refundry_conformance::{Support, Supports};
/// let supports = Supports {
///     signed_webhook_time: Support::NotSupported("the spec signs no timestamp"),
///     ..Supports::all()
/// };
/// # assert_eq!(supports.tokens, Support::Supported);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supports {
    /// [`Feature::Basics`].
    pub basics: Support,
    /// [`Feature::StatusQueries`].
    pub status_queries: Support,
    /// [`Feature::RefundWindow`].
    pub refund_window: Support,
    /// [`Feature::List`].
    pub list: Support,
    /// [`Feature::PortalRefunds`].
    pub portal_refunds: Support,
    /// [`Feature::Webhooks`].
    pub webhooks: Support,
    /// [`Feature::Reversals`].
    pub reversals: Support,
    /// [`Feature::SignedWebhookTime`].
    pub signed_webhook_time: Support,
    /// [`Feature::BatchedWebhooks`].
    pub batched_webhooks: Support,
    /// [`Feature::ProviderFaults`].
    pub provider_faults: Support,
    /// [`Feature::RateLimits`].
    pub rate_limits: Support,
    /// [`Feature::Tokens`].
    pub tokens: Support,
}

impl Supports {
    /// Every feature supported.
    pub fn all() -> Self {
        Self::every(Support::Supported)
    }

    /// Every feature not yet implemented: what a freshly scaffolded fixture declares, so that
    /// every case is skipped until the fixture says otherwise.
    pub fn not_yet_implemented() -> Self {
        Self::every(Support::NotYetImplemented)
    }

    fn every(support: Support) -> Self {
        Self {
            basics: support.clone(),
            status_queries: support.clone(),
            refund_window: support.clone(),
            list: support.clone(),
            portal_refunds: support.clone(),
            webhooks: support.clone(),
            reversals: support.clone(),
            signed_webhook_time: support.clone(),
            batched_webhooks: support.clone(),
            provider_faults: support.clone(),
            rate_limits: support.clone(),
            tokens: support,
        }
    }

    /// What is declared for `feature`.
    pub fn get(&self, feature: Feature) -> &Support {
        match feature {
            Feature::Basics => &self.basics,
            Feature::StatusQueries => &self.status_queries,
            Feature::RefundWindow => &self.refund_window,
            Feature::List => &self.list,
            Feature::PortalRefunds => &self.portal_refunds,
            Feature::Webhooks => &self.webhooks,
            Feature::Reversals => &self.reversals,
            Feature::SignedWebhookTime => &self.signed_webhook_time,
            Feature::BatchedWebhooks => &self.batched_webhooks,
            Feature::ProviderFaults => &self.provider_faults,
            Feature::RateLimits => &self.rate_limits,
            Feature::Tokens => &self.tokens,
        }
    }
}

/// Whether a case runs for a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every feature the case needs is supported.
    Run,
    /// Skipped, with the reason the trial shows.
    Skip(String),
}

/// Whether a case needing `needs` runs for a provider that declares `supports`.
///
/// A feature the provider does not have decides first (the skip is for good, and its reason
/// says why); otherwise every feature not yet implemented is named.
pub fn decide(supports: &Supports, needs: &[Feature]) -> Decision {
    let not_supported: Vec<String> = needs
        .iter()
        .filter_map(|&feature| match supports.get(feature) {
            Support::NotSupported(reason) => Some(format!("{feature} ({reason})")),
            Support::Supported | Support::NotYetImplemented => None,
        })
        .collect();
    if !not_supported.is_empty() {
        return Decision::Skip(format!("not supported: {}", not_supported.join("; ")));
    }
    let not_yet: Vec<&str> = needs
        .iter()
        .filter(|&&feature| *supports.get(feature) == Support::NotYetImplemented)
        .map(|feature| feature.name())
        .collect();
    if !not_yet.is_empty() {
        return Decision::Skip(format!("not yet implemented: {}", not_yet.join(", ")));
    }
    Decision::Run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_runs_when_everything_it_needs_is_supported() {
        let supports = Supports {
            tokens: Support::NotSupported("no tokens"),
            ..Supports::all()
        };
        assert_eq!(
            decide(&supports, &[Feature::Basics, Feature::Webhooks]),
            Decision::Run
        );
        assert_eq!(decide(&supports, &[]), Decision::Run);
    }

    #[test]
    fn a_feature_the_provider_lacks_is_a_skip_naming_why() {
        let supports = Supports {
            signed_webhook_time: Support::NotSupported("the spec signs no timestamp"),
            ..Supports::all()
        };
        assert_eq!(
            decide(&supports, &[Feature::Basics, Feature::SignedWebhookTime]),
            Decision::Skip(
                "not supported: signed webhook time (the spec signs no timestamp)".into()
            )
        );
    }

    #[test]
    fn not_supported_wins_over_not_yet_implemented() {
        let supports = Supports {
            batched_webhooks: Support::NotSupported("one event per delivery"),
            ..Supports::not_yet_implemented()
        };
        assert_eq!(
            decide(
                &supports,
                &[Feature::Basics, Feature::Webhooks, Feature::BatchedWebhooks]
            ),
            Decision::Skip("not supported: batched webhooks (one event per delivery)".into())
        );
    }

    #[test]
    fn a_scaffolded_fixture_skips_every_case_naming_what_is_missing() {
        let supports = Supports::not_yet_implemented();
        assert_eq!(
            decide(&supports, &[Feature::Basics, Feature::Tokens]),
            Decision::Skip("not yet implemented: basics, tokens".into())
        );
        for feature in Feature::ALL {
            assert_eq!(*supports.get(feature), Support::NotYetImplemented);
            assert!(matches!(decide(&supports, &[feature]), Decision::Skip(_)));
        }
    }

    #[test]
    fn every_feature_has_its_own_field_and_name() {
        for feature in Feature::ALL {
            let mut supports = Supports::all();
            let only = Support::NotSupported("only this one");
            // Set one field through a decision: exactly that feature is refused.
            match feature {
                Feature::Basics => supports.basics = only,
                Feature::StatusQueries => supports.status_queries = only,
                Feature::RefundWindow => supports.refund_window = only,
                Feature::List => supports.list = only,
                Feature::PortalRefunds => supports.portal_refunds = only,
                Feature::Webhooks => supports.webhooks = only,
                Feature::Reversals => supports.reversals = only,
                Feature::SignedWebhookTime => supports.signed_webhook_time = only,
                Feature::BatchedWebhooks => supports.batched_webhooks = only,
                Feature::ProviderFaults => supports.provider_faults = only,
                Feature::RateLimits => supports.rate_limits = only,
                Feature::Tokens => supports.tokens = only,
            }
            for other in Feature::ALL {
                let refused = !matches!(decide(&supports, &[other]), Decision::Run);
                assert_eq!(refused, other == feature, "{feature} vs {other}");
            }
        }
        let names: std::collections::HashSet<_> = Feature::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(names.len(), Feature::ALL.len());
    }
}
