//! The cases: provider-agnostic checks, each named for the behaviour it checks, each with the
//! features it needs (a provider lacking one skips it by name) and the setup it runs in.

mod faults;
mod queries;
mod refunds;
mod webhooks;

use std::future::Future;
use std::pin::Pin;

use crate::check::KitError;
use crate::harness::{Harness, Setup};
use crate::supports::Feature;

/// What a case's run returns.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = Result<(), KitError>> + 'a>>;

/// One behaviour the kit checks of every provider.
#[derive(Clone, Copy)]
pub struct Case {
    /// Its name, the second half of the trial name (`mfs-africa::<name>`).
    pub name: &'static str,
    /// What it needs of the provider and its fixture.
    pub needs: &'static [Feature],
    /// The world it runs in.
    pub setup: Setup,
    /// The check, given a started harness.
    pub run: for<'a> fn(&'a Harness) -> CaseFuture<'a>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .field("needs", &self.needs)
            .field("setup", &self.setup)
            .finish_non_exhaustive()
    }
}

/// A case named after its function in `module`, needing [`Feature::Basics`] and `needs`.
macro_rules! case {
    ($module:ident :: $name:ident, [$($need:ident),*], $setup:expr) => {
        Case {
            name: stringify!($name),
            needs: &[Feature::Basics, $(Feature::$need),*],
            setup: $setup,
            run: |h| Box::pin($module::$name(h)),
        }
    };
}

/// The setup of the cases that receive webhooks and answer the first delivery 500, so that the
/// provider delivers it again.
const REDELIVERED: Setup = Setup {
    webhooks: Some(&[500]),
    ..Setup::PLAIN
};

/// Every case: refunds, queries, webhooks, faults.
pub fn all() -> Vec<Case> {
    vec![
        case!(refunds::create, [], Setup::PLAIN),
        case!(refunds::replay_with_the_same_external_id, [], Setup::PLAIN),
        case!(
            refunds::same_external_id_with_other_parameters,
            [],
            Setup::PLAIN
        ),
        case!(refunds::over_refund, [], Setup::PLAIN),
        case!(refunds::other_currency, [], Setup::PLAIN),
        case!(
            refunds::outside_the_refund_window,
            [RefundWindow],
            Setup::PLAIN
        ),
        case!(
            queries::status_query_by_provider_id,
            [StatusQueries],
            Setup::PLAIN
        ),
        case!(
            queries::status_query_by_external_id,
            [StatusQueries],
            Setup::PLAIN
        ),
        case!(
            queries::list_over_a_range_with_several_pages,
            [List, PortalRefunds],
            Setup::PLAIN
        ),
        case!(
            queries::reconcile_over_a_range_with_several_pages,
            [List, PortalRefunds],
            Setup::PLAIN
        ),
        case!(webhooks::webhook_valid, [Webhooks], Setup::WEBHOOKS),
        case!(webhooks::webhook_forged, [Webhooks], Setup::WEBHOOKS),
        case!(
            webhooks::webhook_stale,
            [Webhooks, SignedWebhookTime],
            Setup::WEBHOOKS
        ),
        case!(webhooks::webhook_duplicated, [Webhooks], REDELIVERED),
        case!(
            webhooks::webhook_out_of_order,
            [Webhooks, Reversals],
            Setup::WEBHOOKS
        ),
        case!(
            webhooks::webhook_batched,
            [Webhooks, BatchedWebhooks],
            Setup::WEBHOOKS
        ),
        case!(webhooks::webhook_ignored, [Webhooks], Setup::PLAIN),
        case!(
            faults::fault_500_after_acting,
            [ProviderFaults],
            Setup::PLAIN
        ),
        case!(
            faults::fault_timeout_after_acting,
            [ProviderFaults],
            Setup {
                http_timeout_ms: Some(faults::HOST_TIMEOUT_MS),
                ..Setup::PLAIN
            }
        ),
        case!(
            faults::fault_lost_answer,
            [],
            Setup {
                lost_answers: true,
                ..Setup::PLAIN
            }
        ),
        case!(
            faults::fault_429_with_retry_after,
            [RateLimits],
            Setup::PLAIN
        ),
        case!(faults::fault_expired_token, [Tokens], Setup::PLAIN),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_has_its_own_name_and_needs_the_basics() {
        let cases = all();
        let names: std::collections::HashSet<_> = cases.iter().map(|c| c.name).collect();
        assert_eq!(names.len(), cases.len());
        for case in &cases {
            assert_eq!(case.needs.first(), Some(&Feature::Basics), "{}", case.name);
            assert!(
                case.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                case.name
            );
        }
    }
}
