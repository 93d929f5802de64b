//! Refundry's reference host: runs provider refund plugins (WebAssembly components of the
//! `refundry:provider` contract) with only the capabilities it grants them, under limits.
//!
//! Along the data path: [`runtime::Refundry`] (providers) -> [`registry::Registry`] (each
//! provider's loaded plugin versions and the active one) -> [`plugin::Plugin`]
//! (a fresh instance per operation) -> [`engine::Engine`] (wasmtime, pooling allocator, epoch
//! time slicing, memory cap) -> [`caps`] (http, clock, storage, config, log) -> the provider.

#![deny(missing_docs)]

pub mod api;
pub mod backend;
pub mod batch;
#[allow(missing_docs)]
pub mod bindings;
pub mod caps;
pub mod config;
pub mod db;
pub mod engine;
pub mod error;
pub mod events;
pub mod exchange;
pub mod export;
mod janitor;
pub mod ledger;
mod limits;
pub mod logging;
pub mod metrics;
pub mod money;
#[cfg(feature = "native-plugins")]
pub mod native;
pub mod plugin;
pub mod refunds;
pub mod registry;
pub mod replay;
pub mod runtime;
pub mod sanitize;
pub mod secret;
pub mod view;
mod webhooks;

pub use bindings::types::{
    Money, ProviderInfo, Refund, RefundError, RefundLookup, RefundRequest, RefundStatus, Refusal,
    RefusalKind, Retryable, WebhookError, WebhookEvent,
};
pub use config::{Config, Needs};
pub use error::{LoadError, PluginError};
pub use limits::MemoryLimitExceeded;
pub use runtime::{OperationError, Refundry, StartError};
