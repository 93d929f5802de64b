//! The contract's answers as JSON: every field, amounts in minor units with their currency, times
//! in milliseconds since the epoch (UTC), enum values as the contract spells them. Recordings keep
//! a plugin's answers in this shape, and a gateway can print them in it.

use serde_json::{Value, json};

use crate::bindings::types::{Refund, WebhookEvent};

/// A refund.
pub fn refund(r: &Refund) -> Value {
    json!({
        "provider_refund_id": r.provider_refund_id,
        "external_refund_id": r.external_refund_id,
        "original_transaction_id": r.original_transaction_id,
        "amount_minor": r.amount.amount_minor,
        "currency": r.amount.currency,
        "status": r.status.as_str(),
        "provider_status": r.provider_status,
        "failure_reason": r.failure_reason,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
    })
}

/// A webhook event, with its refund.
pub fn webhook_event(e: &WebhookEvent) -> Value {
    json!({
        "event_id": e.event_id,
        "event_type": e.event_type,
        "occurred_at": e.occurred_at,
        "refund": refund(&e.refund),
    })
}
