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
use crate::replay::SecretMasks;
use crate::replay::record::{Answer, Call, Recorder};

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
    /// Removes the provider's configured secrets from text (its log lines, its exchanges, and
    /// every text its plugin answers with).
    pub redactor: crate::secret::Redactor,
    /// Where the provider's HTTP latency and plugin failures are counted (see [`crate::metrics`]).
    pub metrics: crate::metrics::MetricsSlot,
}

/// The data of one plugin instance's store: the capabilities plus per-operation limits.
pub struct PluginState {
    caps: Arc<ProviderCaps>,
    pub(crate) memory: MemoryCap,
    /// The operation's log lines, counted against the cap.
    log: self::log::OperationLog,
    exchanges: Option<Exchanges>,
    /// The operation's recording, when it is recorded: every import call and its answer.
    recorder: Option<Recorder>,
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
            recorder: exchanges.as_ref().and_then(Exchanges::recorder),
            log: caps.log.operation(op),
            caps,
            memory,
            exchanges,
        }
    }

    /// Records one import call, when the operation is recorded (collected in memory: the
    /// recording is written once, when the operation ends).
    fn record(&self, step: impl FnOnce(&SecretMasks) -> (Call, Answer)) {
        if let Some(recorder) = &self.recorder {
            let (call, answer) = step(self.caps.config.masks());
            recorder.step(call, answer);
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
        let call = self
            .recorder
            .as_ref()
            .map(|_| Call::http(self.caps.config.masks(), &req));
        let result = self
            .caps
            .http
            .send_recorded(
                req,
                self.exchanges.as_ref(),
                sent_at,
                Some(&self.caps.metrics),
            )
            .await;
        if let Some(call) = call {
            self.record(|m| (call, Answer::http(m, &result)));
        }
        result
    }
}

impl bindings::clock::Host for PluginState {
    fn now(&mut self) -> i64 {
        let now = self.caps.clock.now_ms();
        self.record(|_| (Call::ClockNow, Answer::Clock(now)));
        now
    }
}

impl bindings::storage::Host for PluginState {
    async fn get(
        &mut self,
        key: String,
    ) -> Result<Option<Vec<u8>>, bindings::storage::StorageError> {
        let recorded = self.recorder.as_ref().map(|_| key.clone());
        let result = self.caps.storage.get(key).await;
        if let Some(key) = recorded {
            self.record(|m| {
                (
                    Call::StorageGet { key: m.mask(&key) },
                    Answer::stored(m, &result),
                )
            });
        }
        result
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), bindings::storage::StorageError> {
        let call = self
            .recorder
            .as_ref()
            .map(|_| Call::storage_set(self.caps.config.masks(), &key, &value));
        let result = self.caps.storage.set(key, value).await;
        if let Some(call) = call {
            self.record(|m| (call, Answer::written(m, &result)));
        }
        result
    }

    async fn delete(&mut self, key: String) -> Result<(), bindings::storage::StorageError> {
        let recorded = self.recorder.as_ref().map(|_| key.clone());
        let result = self.caps.storage.delete(key).await;
        if let Some(key) = recorded {
            let answer = |m: &SecretMasks| Answer::written(m, &result);
            self.record(|m| (Call::StorageDelete { key: m.mask(&key) }, answer(m)));
        }
        result
    }
}

impl bindings::config::Host for PluginState {
    fn get(&mut self, key: String) -> Option<String> {
        let value = self.caps.config.get(&key);
        self.record(|m| {
            let answer = Answer::Config(m.config_answer(&key, value.as_deref()));
            (Call::ConfigGet { key: m.mask(&key) }, answer)
        });
        value
    }
}

impl bindings::log::Host for PluginState {
    fn log(&mut self, level: bindings::log::Level, message: String, fields: Vec<(String, String)>) {
        self.log.log(level, &message, &fields);
        self.record(|m| (Call::log(m, level, &message, &fields), Answer::Logged));
    }
}
