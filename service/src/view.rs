//! Serializable views of the contract's types, for the CLI's `--json` output and readable tables.

use serde::Serialize;

use crate::money::format_minor;
use refundry_runtime::bindings::types::{ProviderInfo, Refund, RefundError, WebhookEvent};

/// A refund, as printed.
#[derive(Debug, Serialize)]
pub struct RefundView {
    /// The provider's refund id.
    pub provider_refund_id: String,
    /// The merchant's refund id.
    pub external_refund_id: Option<String>,
    /// The original payment.
    pub original_transaction_id: String,
    /// Amount in minor units.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Amount in major units, for people.
    pub amount_display: String,
    /// Canonical status.
    pub status: &'static str,
    /// The provider's own status word.
    pub provider_status: String,
    /// Why it failed, if it did.
    pub failure_reason: Option<String>,
    /// Created (RFC 3339 UTC).
    pub created_at: Option<String>,
    /// Last changed (RFC 3339 UTC).
    pub updated_at: Option<String>,
}

impl From<&Refund> for RefundView {
    fn from(r: &Refund) -> Self {
        Self {
            provider_refund_id: r.provider_refund_id.clone(),
            external_refund_id: r.external_refund_id.clone(),
            original_transaction_id: r.original_transaction_id.clone(),
            amount: r.amount.amount_minor,
            currency: r.amount.currency.clone(),
            amount_display: format_minor(r.amount.amount_minor, &r.amount.currency),
            status: r.status.as_str(),
            provider_status: r.provider_status.clone(),
            failure_reason: r.failure_reason.clone(),
            created_at: r.created_at.map(rfc3339),
            updated_at: r.updated_at.map(rfc3339),
        }
    }
}

/// A refund error, as printed.
#[derive(Debug, Serialize)]
pub struct RefundErrorView {
    /// `refused`, `retryable` or `unknown-outcome`.
    pub kind: &'static str,
    /// For refusals, what kind.
    pub refusal: Option<&'static str>,
    /// The provider's code, when it gave one.
    pub provider_code: Option<String>,
    /// HTTP status of the provider's answer, when there was one.
    pub http_status: Option<u16>,
    /// What happened.
    pub message: String,
    /// For retryable errors, how long the provider asked to wait.
    pub retry_after_ms: Option<u64>,
}

impl From<&RefundError> for RefundErrorView {
    fn from(e: &RefundError) -> Self {
        match e {
            RefundError::Refused(r) => Self {
                kind: "refused",
                refusal: Some(r.kind.as_str()),
                provider_code: r.provider_code.clone(),
                http_status: r.http_status,
                message: r.message.clone(),
                retry_after_ms: None,
            },
            RefundError::Retryable(r) => Self {
                kind: "retryable",
                refusal: None,
                provider_code: r.provider_code.clone(),
                http_status: r.http_status,
                message: r.message.clone(),
                retry_after_ms: r.retry_after_ms,
            },
            RefundError::UnknownOutcome(m) => Self {
                kind: "unknown-outcome",
                refusal: None,
                provider_code: None,
                http_status: None,
                message: m.clone(),
                retry_after_ms: None,
            },
        }
    }
}

/// What a plugin says of itself (its `describe()`), as printed and as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ProviderInfoView {
    /// Provider id.
    pub id: String,
    /// Plugin version.
    pub version: String,
    /// Display name.
    pub display_name: String,
    /// Currencies.
    pub currencies: Vec<String>,
    /// Partial refunds supported.
    pub partial_refunds: bool,
    /// Several refunds per payment supported.
    pub multiple_refunds: bool,
    /// Refund window in days.
    pub refund_window_days: Option<u32>,
    /// Whether the provider answers status queries (false: callback-only).
    pub status_queries: bool,
    /// Days a processed refund may still be reversed; `null` when the plugin does not say.
    pub reversal_window_days: Option<u32>,
    /// The longest range one list of refunds may cover, in days; `null` when unlimited or
    /// when the provider cannot list refunds.
    pub max_list_range_days: Option<u32>,
}

impl From<&ProviderInfo> for ProviderInfoView {
    fn from(i: &ProviderInfo) -> Self {
        Self {
            id: i.id.clone(),
            version: i.version.clone(),
            display_name: i.display_name.clone(),
            currencies: i.currencies.clone(),
            partial_refunds: i.partial_refunds,
            multiple_refunds: i.multiple_refunds,
            refund_window_days: i.refund_window_days,
            status_queries: i.status_queries,
            reversal_window_days: i.reversal_window_days,
            max_list_range_days: i.max_list_range_days,
        }
    }
}

/// A webhook event, as printed.
#[derive(Debug, Serialize)]
pub struct WebhookEventView {
    /// Provider's event id.
    pub event_id: String,
    /// Provider's event type.
    pub event_type: String,
    /// When it happened (RFC 3339 UTC).
    pub occurred_at: Option<String>,
    /// The refund it is about.
    pub refund: RefundView,
}

impl From<&WebhookEvent> for WebhookEventView {
    fn from(e: &WebhookEvent) -> Self {
        Self {
            event_id: e.event_id.clone(),
            event_type: e.event_type.clone(),
            occurred_at: e.occurred_at.map(rfc3339),
            refund: RefundView::from(&e.refund),
        }
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC with seconds precision.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| format!("{ms} ms"))
}
