//! The REST target's service double: the API's router runs for real (auth, routing, extractors,
//! body limits, error shapes, the query and JSON parsers), the service behind it answers from a
//! few fixed records without a ledger or plugins. Its answers vary with the request (a create's
//! outcome by its amount, a webhook's by its body's length), so that every way the API turns a
//! service answer into HTTP is reached, and it never fails: a 500 is the API's own doing.

use std::sync::Arc;
use std::time::Duration;

use refundry_api::RefundApi;
use refundry_api::health::ProviderHealth;
use refundry_ledger::testing::record;
use refundry_ledger::{
    EventPage, EventQuery, ExchangeRecord, Failure, ListQuery, Outcome, Page, ReconciliationPage,
    ReconciliationQuery, ReconciliationRecord, RefundDetail, RefundRecord, Status,
};
use refundry_runtime::bindings::types::{WebhookError, WebhookRequest};
use refundry_runtime::error::LoadError;
use refundry_runtime::secret::Secret;
use refundry_service::config::{ApiToken, Scope};
use refundry_service::refunds::{
    AcceptedEvent, CreateError, Created, EventResult, NewRefund, NotSent, ReconcileError,
    ServiceError, WebhookAccepted, WebhookIntakeError,
};
use refundry_service::registry::{Activated, Loaded, ProviderVersions, RegistryError};

use crate::corpus::rest::{ADMIN_TOKEN, REFUNDS_TOKEN};

/// The providers the double knows.
pub const PROVIDERS: [&str; 2] = ["mfs-africa", "pagoefectivo"];

/// The bearer tokens the router is configured with.
pub fn tokens() -> Vec<ApiToken> {
    vec![
        ApiToken {
            name: "gateway".into(),
            token: Secret::new(REFUNDS_TOKEN),
            scopes: vec![Scope::Refunds],
        },
        ApiToken {
            name: "ops".into(),
            token: Secret::new(ADMIN_TOKEN),
            scopes: vec![Scope::Admin, Scope::Metrics],
        },
    ]
}

/// The service double.
#[derive(Clone)]
pub struct Service {
    refunds: Arc<Vec<RefundRecord>>,
}

impl Default for Service {
    fn default() -> Self {
        Self {
            refunds: Arc::new((1..=7).map(record).collect()),
        }
    }
}

impl RefundApi for Service {
    async fn create(&self, req: NewRefund) -> Result<Created, CreateError> {
        // The service's own checks, which the API relies on for a 400 naming the field.
        req.check()?;
        if !PROVIDERS.contains(&req.provider.as_str()) {
            return Err(CreateError::UnknownProvider(req.provider));
        }
        let mut refund = record(1);
        refund.amount = req.amount;
        refund.currency = req.currency;
        refund.external_refund_id = req.external_refund_id;
        let failure = Failure {
            code: "provider_unavailable".into(),
            message: "rate limited".into(),
            provider_code: Some("rate_limited".into()),
        };
        let (outcome, not_sent) = match req.amount % 5 {
            0 => (Outcome::Created, None),
            1 => (Outcome::Unknown, None),
            2 => (Outcome::Refused, None),
            3 => (
                Outcome::Unavailable,
                Some(NotSent {
                    failure,
                    retry_after: Duration::from_millis(req.amount.unsigned_abs() % 100_000),
                }),
            ),
            _ => {
                return Err(CreateError::IdempotencyConflict {
                    refund_id: refund.id,
                });
            }
        };
        Ok(Created {
            refund,
            outcome,
            replayed: req.amount % 2 == 0,
            not_sent,
        })
    }

    async fn get(&self, id: &str) -> Result<Option<RefundDetail>, ServiceError> {
        Ok(self
            .refunds
            .iter()
            .find(|r| r.id == id)
            .map(|r| RefundDetail {
                refund: r.clone(),
                history: vec![],
            }))
    }

    async fn exchanges(&self, _refund_id: &str) -> Result<Vec<ExchangeRecord>, ServiceError> {
        Ok(vec![])
    }

    /// Pages of at most 3 after the cursor (from the first when it names no refund), so that a
    /// CSV export walks pages and ends.
    async fn list(&self, query: ListQuery) -> Result<Page, ServiceError> {
        let start = query
            .cursor
            .and_then(|c| self.refunds.iter().position(|r| r.id == c))
            .map_or(0, |i| i + 1);
        let refunds: Vec<RefundRecord> = self
            .refunds
            .iter()
            .skip(start)
            .filter(|r| query.status.is_none_or(|s| s == r.status))
            .take(query.limit.min(3))
            .cloned()
            .collect();
        let next_cursor = (start + refunds.len() < self.refunds.len() && !refunds.is_empty())
            .then(|| refunds.last().map(|r| r.id.clone()))
            .flatten();
        Ok(Page {
            refunds,
            next_cursor,
        })
    }

    async fn events(&self, _query: EventQuery) -> Result<EventPage, ServiceError> {
        Ok(EventPage {
            events: vec![],
            next_cursor: None,
        })
    }

    async fn webhook(
        &self,
        provider: &str,
        req: WebhookRequest,
    ) -> Result<WebhookAccepted, WebhookIntakeError> {
        if !PROVIDERS.contains(&provider) {
            return Err(WebhookIntakeError::UnknownProvider(provider.into()));
        }
        let one = |result| {
            WebhookAccepted::Events(vec![AcceptedEvent {
                event_id: "evt_1".into(),
                result,
            }])
        };
        Ok(match req.body.len() % 8 {
            0 => one(EventResult::Applied {
                refund_id: "rf_0001".into(),
                status: Status::Processed,
            }),
            1 => one(EventResult::Recorded {
                refund_id: "rf_0001".into(),
            }),
            2 => one(EventResult::Duplicate),
            3 => one(EventResult::Unmatched),
            4 => WebhookAccepted::Ignored {
                reason: "event type `x` is not handled".into(),
            },
            5 => return Err(WebhookIntakeError::Rejected(WebhookError::InvalidSignature)),
            6 => {
                return Err(WebhookIntakeError::Rejected(WebhookError::MissingHeader(
                    "X-MFS-Signature".into(),
                )));
            }
            _ => {
                return Err(WebhookIntakeError::Rejected(WebhookError::Malformed(
                    "body: not JSON".into(),
                )));
            }
        })
    }

    fn providers(&self) -> Vec<ProviderHealth> {
        PROVIDERS
            .iter()
            .map(|id| ProviderHealth {
                id: (*id).into(),
                version: "0.2.0".into(),
                sha256: "ab".repeat(32),
            })
            .collect()
    }

    fn plugins(&self) -> Vec<ProviderVersions> {
        vec![]
    }

    async fn load_plugin(
        &self,
        provider: &str,
        component: Vec<u8>,
    ) -> Result<Loaded, RegistryError> {
        if !PROVIDERS.contains(&provider) {
            return Err(RegistryError::UnknownProvider(provider.into()));
        }
        Err(RegistryError::Rejected(LoadError::NotAComponent(format!(
            "{} bytes that are no component",
            component.len()
        ))))
    }

    async fn activate_plugin(
        &self,
        provider: &str,
        version: &str,
    ) -> Result<Activated, RegistryError> {
        Err(RegistryError::UnknownVersion {
            provider: provider.into(),
            version: version.into(),
        })
    }

    async fn remove_plugin(&self, provider: &str, version: &str) -> Result<(), RegistryError> {
        Err(RegistryError::Active {
            provider: provider.into(),
            version: version.into(),
        })
    }

    async fn reconciliations(
        &self,
        _query: ReconciliationQuery,
    ) -> Result<ReconciliationPage, ServiceError> {
        Ok(ReconciliationPage {
            reconciliations: vec![],
            next_cursor: None,
        })
    }

    async fn reconciliation(
        &self,
        _id: &str,
    ) -> Result<Option<ReconciliationRecord>, ServiceError> {
        Ok(None)
    }

    /// The service's range rule, then "cannot list" (a run needs a plugin and a ledger).
    async fn reconcile(
        &self,
        provider: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<ReconciliationRecord, ReconcileError> {
        if !PROVIDERS.contains(&provider) {
            return Err(ReconcileError::UnknownProvider(provider.into()));
        }
        if from_ms >= to_ms {
            return Err(ReconcileError::BadRange {
                from: from_ms,
                to: to_ms,
                reason: "`from` must be before `to`".into(),
            });
        }
        Err(ReconcileError::Unsupported {
            provider: provider.into(),
            reason: "the double lists nothing".into(),
        })
    }

    async fn metrics(&self) -> Result<String, ServiceError> {
        Ok("# EOF\n".into())
    }
}
