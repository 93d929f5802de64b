//! The capabilities a plugin imports, one module each, and the per-instance state that carries them.
//!
//! A plugin can only do what these grant: HTTP to its provider's origin, the host clock, its own
//! key-value namespace, its own configuration, and log lines. Each is deny-by-default.

pub mod clock;
pub mod config;
pub mod http;
pub mod log;
pub mod storage;

use std::sync::Arc;

use crate::bindings;
use crate::exchange::Exchanges;
use crate::limits::MemoryCap;

pub use self::clock::{Clock, FixedClock, SkewedClock, SystemClock};
pub use self::config::ConfigCap;
pub use self::http::HttpCap;
pub use self::log::LogCap;
pub use self::storage::StorageCap;

/// Everything one provider's plugin may use, shared by all of its instances.
pub struct ProviderCaps {
    /// Outbound HTTP to the provider's origin.
    pub http: HttpCap,
    /// The host clock.
    pub clock: Arc<dyn Clock>,
    /// The provider's key-value namespace.
    pub storage: StorageCap,
    /// The provider's settings and secrets.
    pub config: ConfigCap,
    /// Redacting log sink.
    pub log: LogCap,
}

/// The data of one plugin instance's store: the capabilities plus per-operation limits.
pub struct PluginState {
    caps: Arc<ProviderCaps>,
    op: &'static str,
    pub(crate) memory: MemoryCap,
    exchanges: Option<Exchanges>,
}

impl PluginState {
    /// State for one operation (`op` names it in logs) with the given memory cap; its HTTP
    /// exchanges go to `exchanges` when given.
    pub(crate) fn new(
        caps: Arc<ProviderCaps>,
        op: &'static str,
        memory: MemoryCap,
        exchanges: Option<Exchanges>,
    ) -> Self {
        Self {
            caps,
            op,
            memory,
            exchanges,
        }
    }
}

impl bindings::types::Host for PluginState {}

impl bindings::http::Host for PluginState {
    async fn send(
        &mut self,
        req: bindings::http::Request,
    ) -> Result<bindings::http::Response, bindings::http::HttpError> {
        let sent_at = self.caps.clock.now_ms();
        self.caps
            .http
            .send_recorded(req, self.exchanges.as_ref(), sent_at)
            .await
    }
}

impl bindings::clock::Host for PluginState {
    fn now(&mut self) -> i64 {
        self.caps.clock.now_ms()
    }
}

impl bindings::storage::Host for PluginState {
    async fn get(
        &mut self,
        key: String,
    ) -> Result<Option<Vec<u8>>, bindings::storage::StorageError> {
        self.caps.storage.get(key).await
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), bindings::storage::StorageError> {
        self.caps.storage.set(key, value).await
    }

    async fn delete(&mut self, key: String) -> Result<(), bindings::storage::StorageError> {
        self.caps.storage.delete(key).await
    }
}

impl bindings::config::Host for PluginState {
    fn get(&mut self, key: String) -> Option<String> {
        self.caps.config.get(&key)
    }
}

impl bindings::log::Host for PluginState {
    fn log(&mut self, level: bindings::log::Level, message: String, fields: Vec<(String, String)>) {
        self.caps.log.log(self.op, level, &message, &fields);
    }
}
