//! The refund orchestrator: every refund is written to the ledger before any provider call,
//! is idempotent on provider + external refund id, is pre-checked against the original payment,
//! retries retryable failures, and only ever moves its status forward.

mod create;
mod janitor;
mod keys;
mod reconcile;
mod service;
mod types;
mod webhook_intake;

pub use self::reconcile::{MAX_RUN_DAYS, ReconcileError, pieces};
pub use self::service::RefundService;
pub use self::types::{
    AcceptedEvent, CreateError, Created, EventResult, NewRefund, NotSent, OriginalPayment,
    ServiceError, WebhookAccepted, WebhookIntakeError,
};
