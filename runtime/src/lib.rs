//! Refundry's plugin runtime: loads provider refund plugins (WebAssembly components of the
//! `refundry:provider` contract) and runs their operations with only the capabilities the
//! embedding gateway grants them, under limits.
//!
//! A gateway needs three things: an [`Engine`] (wasmtime, pooling allocator, epoch time
//! slicing, memory cap; one per process), a [`PluginComponent`] (a component compiled and checked
//! to import nothing outside the contract), and [`Capabilities`] for each provider (built with
//! [`Capabilities::builder`] from its own HTTP transport, key-value store, clock, configuration
//! and log sink, or the defaults). [`Plugin::bind`] joins them; each operation then runs on a
//! fresh instance and answers with the provider's refund, sanitized of secrets.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use refundry_runtime::{Capabilities, Engine, EngineLimits, Plugin, PluginComponent, Settings};
//!
//! let engine = Engine::new(EngineLimits::default())?;
//! let component = PluginComponent::from_file(&engine, "mfs-africa.wasm".as_ref())?;
//! let config = Arc::new(Settings::default());
//! let caps = Capabilities::builder("mfs-africa", config)
//!     .origin("http://127.0.0.1:8701".parse()?)
//!     .build();
//! let plugin = Plugin::bind(engine, Arc::new(component), caps, true).await?;
//! println!("{}", plugin.info().display_name);
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

#[allow(missing_docs)]
pub mod bindings;
pub mod caps;
pub mod component;
pub mod contract;
pub mod engine;
pub mod error;
pub mod json;
pub mod limits;
pub mod logic;
pub mod observe;
pub mod plugin;
pub mod sanitize;
pub mod secret;

use std::future::Future;
use std::pin::Pin;

pub use bindings::types::{
    Money, ProviderInfo, Refund, RefundError, RefundLookup, RefundPage, RefundRequest,
    RefundStatus, Refusal, RefusalKind, Retryable, TimeRange, WebhookError, WebhookEvent,
    WebhookOutcome, WebhookRequest,
};
pub use caps::{
    Capabilities, Clock, ConfigSource, KeyValueStore, LogSink, MemoryStore, ReqwestTransport,
    Settings, SystemClock, Transport,
};
pub use component::PluginComponent;
pub use contract::ContractVersion;
pub use engine::Engine;
pub use error::{LoadError, PluginError};
pub use limits::{EngineLimits, HttpLimits, MemoryLimitExceeded, PluginQuotas};
pub use logic::RefundLogic;
pub use observe::{Observer, Operation, OperationAnswer};
pub use plugin::Plugin;
pub use secret::Secret;

/// A boxed future, as the capability traits return them (so they can be trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
