//! Refundry's refund service, on the plugin runtime and the ledger: what `refundry serve` runs.
//!
//! Along the data path: [`RefundService`] (the orchestrator: idempotency, pre-checks, retries,
//! the state machine) -> [`providers::Providers`] (every configured provider) ->
//! [`registry::Registry`] (each provider's loaded plugin versions and the active one) ->
//! [`refundry_runtime::RefundLogic`] (a fresh plugin instance per operation, with the provider's
//! capabilities) -> the provider. Around it: the janitor, webhook intake, outbound events,
//! metrics, record and replay, batch, export and the configuration.

#![deny(missing_docs)]

pub mod batch;
pub mod config;
pub mod exchange;
pub mod export;
pub mod logging;
pub mod metrics;
pub mod money;
pub mod outbound_events;
pub mod providers;
pub mod refunds;
pub mod registry;
pub mod replay;
pub mod view;

pub use config::{Config, Needs};
pub use providers::{OperationError, Providers, StartError, StartOptions};
pub use refunds::RefundService;
