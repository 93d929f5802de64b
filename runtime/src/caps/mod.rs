//! The capabilities a plugin imports, and what one operation's instance reaches them through.
//!
//! A plugin can only do what these grant: HTTP to its provider's origin, the host clock, its own
//! key-value namespace, its own configuration, and log lines. Each is deny-by-default. The
//! gateway supplies each as a trait object ([`Transport`], [`Clock`], [`KeyValueStore`],
//! [`ConfigSource`], [`LogSink`]); the runtime applies the policy around it and shows every call
//! to the [`Observer`]s.

pub mod clock;
pub mod config;
pub mod crypto;
pub mod http;
pub mod log;
pub mod storage;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::bindings;
use crate::bindings::http::{HttpError, Request, Response};
use crate::bindings::storage::StorageError;
use crate::limits::{HttpLimits, PluginQuotas};
use crate::observe::{Import, ImportAnswer, NoObserver, Observer, Scope, Sent};
use crate::secret::{self, Redactor};

pub use self::clock::{Clock, FixedClock, SkewedClock, SystemClock};
pub use self::config::{ConfigSource, Settings};
pub use self::http::{HttpPolicy, ReqwestTransport, Transport};
pub use self::log::{LogLine, LogSink, TracingLog};
pub use self::storage::{KeyValueStore, MemoryStore};

/// Everything one provider's plugin may use, shared by all of its instances. Built with
/// [`Capabilities::builder`].
pub struct Capabilities {
    provider: Arc<str>,
    http: HttpPolicy,
    clock: Arc<dyn Clock>,
    storage: storage::Storage,
    config: Arc<dyn ConfigSource>,
    log: log::Log,
    redactor: Redactor,
    observer: Arc<dyn Observer>,
}

impl Capabilities {
    /// Capabilities for `provider`, configured by `config`. Until the builder is told otherwise:
    /// no network at all, the system clock, storage in memory, log lines through `tracing`, and
    /// no observer.
    pub fn builder(provider: &str, config: Arc<dyn ConfigSource>) -> CapabilitiesBuilder {
        CapabilitiesBuilder {
            provider: provider.into(),
            config,
            origin: None,
            transport: None,
            http_limits: HttpLimits::default(),
            quotas: PluginQuotas::default(),
            clock: Arc::new(SystemClock),
            storage: None,
            log: Arc::new(TracingLog),
            observer: Arc::new(NoObserver),
        }
    }

    /// The provider these capabilities are granted to.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The clock the plugin reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The provider's settings and secrets.
    pub fn config(&self) -> &Arc<dyn ConfigSource> {
        &self.config
    }

    /// Removes the provider's configured secrets from text.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// The credentials the plugin keeps in its storage, as far as they have been read or written
    /// by this process.
    pub(crate) fn stored_credentials(&self) -> Vec<String> {
        self.storage.credentials()
    }

    /// The host side of one operation `op`, seen by the provider's observer and `observer`.
    pub fn operation(
        self: &Arc<Self>,
        op: &'static str,
        plugin_version: Arc<str>,
        observer: Option<Arc<dyn Observer>>,
    ) -> OperationHost {
        OperationHost {
            log: self.log.operation(op),
            caps: self.clone(),
            op,
            plugin_version,
            observer,
            issued: Mutex::default(),
        }
    }
}

/// Builds [`Capabilities`]; see [`Capabilities::builder`].
pub struct CapabilitiesBuilder {
    provider: Arc<str>,
    config: Arc<dyn ConfigSource>,
    origin: Option<reqwest::Url>,
    transport: Option<Arc<dyn Transport>>,
    http_limits: HttpLimits,
    quotas: PluginQuotas,
    clock: Arc<dyn Clock>,
    storage: Option<Arc<dyn KeyValueStore>>,
    log: Arc<dyn LogSink>,
    observer: Arc<dyn Observer>,
}

impl CapabilitiesBuilder {
    /// Lets the plugin send HTTP to `origin`'s scheme, host and port (the provider's `base_url`).
    pub fn origin(mut self, origin: reqwest::Url) -> Self {
        self.origin = Some(origin);
        self
    }

    /// What carries the plugin's requests (by default a [`ReqwestTransport`] of its own; share
    /// one between providers for one connection pool).
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// The HTTP timeout and response size cap.
    pub fn http_limits(mut self, limits: HttpLimits) -> Self {
        self.http_limits = limits;
        self
    }

    /// The storage and log quotas (the storage quotas are those of the default [`MemoryStore`];
    /// a store of the gateway's own enforces its own).
    pub fn quotas(mut self, quotas: PluginQuotas) -> Self {
        self.quotas = quotas;
        self
    }

    /// The clock the plugin reads.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The provider's key-value namespace.
    pub fn storage(mut self, store: Arc<dyn KeyValueStore>) -> Self {
        self.storage = Some(store);
        self
    }

    /// Where the plugin's log lines go.
    pub fn log(mut self, sink: Arc<dyn LogSink>) -> Self {
        self.log = sink;
        self
    }

    /// What watches every operation and import call of the provider.
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// The capabilities.
    pub fn build(self) -> Arc<Capabilities> {
        let secrets = self.config.secrets();
        let redactor = Redactor::new(secrets.iter().map(|(_, s)| s));
        let transport = self
            .transport
            .unwrap_or_else(|| Arc::new(ReqwestTransport::new()));
        let store = self
            .storage
            .unwrap_or_else(|| Arc::new(MemoryStore::new(self.quotas)));
        Arc::new(Capabilities {
            http: HttpPolicy::new(
                transport,
                self.origin,
                self.http_limits,
                redactor.clone(),
                self.provider.clone(),
            ),
            clock: self.clock,
            storage: storage::Storage::new(store),
            config: self.config,
            log: log::Log::new(
                self.provider.clone(),
                redactor.clone(),
                self.quotas,
                self.log,
            ),
            provider: self.provider,
            redactor,
            observer: self.observer,
        })
    }
}

/// The host side of one plugin operation: each import call goes through the capability's
/// policy, and is shown, with its answer, to the observers. A sandboxed instance and a plugin
/// linked natively reach the capabilities through it alike.
pub struct OperationHost {
    caps: Arc<Capabilities>,
    op: &'static str,
    plugin_version: Arc<str>,
    /// The operation's own observer, besides the provider's.
    observer: Option<Arc<dyn Observer>>,
    /// The operation's log lines, counted against the cap.
    log: log::OperationLog,
    /// Credentials the provider issued in this operation's HTTP answers.
    issued: Mutex<Vec<String>>,
}

impl OperationHost {
    /// The capabilities.
    pub fn capabilities(&self) -> &Arc<Capabilities> {
        &self.caps
    }

    /// Who runs the operation, as observers are told.
    pub fn scope(&self) -> Scope<'_> {
        Scope {
            provider: &self.caps.provider,
            plugin_version: &self.plugin_version,
            op: self.op,
        }
    }

    /// Calls `f` with each observer: the provider's, then the operation's.
    pub fn observe(&self, f: impl Fn(&dyn Observer)) {
        f(self.caps.observer.as_ref());
        if let Some(o) = &self.observer {
            f(o.as_ref());
        }
    }

    fn observed(&self, call: Import<'_>, answer: ImportAnswer<'_>) {
        let scope = self.scope();
        self.observe(|o| o.import(scope, &call, &answer));
    }

    /// Credentials the provider issued in this operation's answers so far (values of
    /// credential-named JSON fields and headers, as [`secret::credentials_in`] finds them), and
    /// those kept in the plugin's storage: removed from the plugin's answer with the configured
    /// secrets.
    pub fn issued(&self) -> Vec<String> {
        let mut issued = self.issued.lock().map(|i| i.clone()).unwrap_or_default();
        issued.extend(self.caps.stored_credentials());
        issued
    }

    /// `http.send`: the request checked against the policy, then sent once.
    pub async fn http_send(&self, req: Request) -> Result<Response, HttpError> {
        let (result, sent) = match self.caps.http.check(&req) {
            Err(e) => (Err(e), None),
            Ok(url) => {
                let wire = OnTheWire {
                    host: self,
                    request: &req,
                    at_ms: self.caps.clock.now_ms(),
                    started: Instant::now(),
                    answered: false,
                };
                let result = self.caps.http.exchange(&req, url).await;
                (result, Some(wire.answered()))
            }
        };
        if let Ok(r) = &result {
            let mut found = secret::credentials_in(&r.body);
            found.extend(secret::credential_headers(&r.headers));
            if !found.is_empty()
                && let Ok(mut issued) = self.issued.lock()
            {
                issued.extend(found);
            }
        }
        let call = Import::HttpSend {
            request: &req,
            sent,
        };
        self.observed(call, ImportAnswer::Http(&result));
        result
    }

    /// `clock.now`.
    pub fn clock_now(&self) -> i64 {
        let now = self.caps.clock.now_ms();
        self.observed(Import::ClockNow, ImportAnswer::Clock(now));
        now
    }

    /// `storage.get`.
    pub async fn storage_get(&self, key: String) -> Result<Option<Vec<u8>>, StorageError> {
        let result = self.caps.storage.get(&key).await;
        self.observed(
            Import::StorageGet { key: &key },
            ImportAnswer::Stored(&result),
        );
        result
    }

    /// `storage.set`.
    pub async fn storage_set(&self, key: String, value: Vec<u8>) -> Result<(), StorageError> {
        let result = self.caps.storage.set(&key, &value).await;
        let call = Import::StorageSet {
            key: &key,
            value: &value,
        };
        self.observed(call, ImportAnswer::Written(&result));
        result
    }

    /// `storage.delete`.
    pub async fn storage_delete(&self, key: String) -> Result<(), StorageError> {
        let result = self.caps.storage.delete(&key).await;
        self.observed(
            Import::StorageDelete { key: &key },
            ImportAnswer::Written(&result),
        );
        result
    }

    /// `config.get`.
    pub fn config_get(&self, key: String) -> Option<String> {
        let value = self.caps.config.get(&key);
        let answer = ImportAnswer::Config(value.as_deref());
        self.observed(Import::ConfigGet { key: &key }, answer);
        value
    }

    /// `log.log`.
    pub fn log(&self, level: bindings::log::Level, message: String, fields: Vec<(String, String)>) {
        self.log.log(level, &message, &fields);
        let call = Import::Log {
            level,
            message: &message,
            fields: &fields,
        };
        self.observed(call, ImportAnswer::Logged);
    }
}

/// A request on the wire: if the operation ends before its answer (the deadline drops the
/// instance), the observers learn that it was cut off.
struct OnTheWire<'a> {
    host: &'a OperationHost,
    request: &'a Request,
    at_ms: i64,
    started: Instant,
    answered: bool,
}

impl OnTheWire<'_> {
    fn sent(&self) -> Sent {
        Sent {
            at_ms: self.at_ms,
            latency: self.started.elapsed(),
        }
    }

    fn answered(mut self) -> Sent {
        self.answered = true;
        self.sent()
    }
}

impl Drop for OnTheWire<'_> {
    fn drop(&mut self) {
        if !self.answered {
            let (scope, sent) = (self.host.scope(), self.sent());
            self.host
                .observe(|o| o.request_cut_off(scope, self.request, sent));
        }
    }
}

/// The data of one plugin instance's store: the operation's host side and its memory cap.
pub struct PluginState {
    pub(crate) host: Arc<OperationHost>,
    pub(crate) memory: crate::limits::MemoryCap,
}

impl bindings::types::Host for PluginState {}

impl bindings::http::Host for PluginState {
    async fn send(&mut self, req: Request) -> Result<Response, HttpError> {
        self.host.http_send(req).await
    }
}

impl bindings::clock::Host for PluginState {
    fn now(&mut self) -> i64 {
        self.host.clock_now()
    }
}

impl bindings::storage::Host for PluginState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, StorageError> {
        self.host.storage_get(key).await
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), StorageError> {
        self.host.storage_set(key, value).await
    }

    async fn delete(&mut self, key: String) -> Result<(), StorageError> {
        self.host.storage_delete(key).await
    }
}

impl bindings::config::Host for PluginState {
    fn get(&mut self, key: String) -> Option<String> {
        self.host.config_get(key)
    }
}

impl bindings::log::Host for PluginState {
    fn log(&mut self, level: bindings::log::Level, message: String, fields: Vec<(String, String)>) {
        self.host.log(level, message, fields);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::BoxFuture;
    use crate::bindings::http::Method;
    use crate::observe::{Operation, OperationAnswer};

    /// Answers `/slow` never, anything else at once with a body carrying an issued token.
    struct Fake;

    impl Transport for Fake {
        fn exchange<'a>(
            &'a self,
            _req: &'a Request,
            url: reqwest::Url,
            _max_body: usize,
        ) -> BoxFuture<'a, Result<Response, HttpError>> {
            if url.path() == "/slow" {
                return Box::pin(std::future::pending());
            }
            Box::pin(std::future::ready(Ok(Response {
                status: 200,
                headers: vec![],
                body: br#"{"access_token":"tok-0123456789abcdef"}"#.to_vec(),
            })))
        }
    }

    /// Notes what it sees, as text.
    #[derive(Default)]
    struct Notes(Mutex<Vec<String>>);

    impl Observer for Notes {
        fn operation_started(&self, scope: Scope<'_>, op: &Operation<'_>) {
            self.note(format!("start {} {}", scope.op, op.name()));
        }
        fn import(&self, _: Scope<'_>, call: &Import<'_>, answer: &ImportAnswer<'_>) {
            let call = match call {
                Import::HttpSend { request, sent } => {
                    format!("http {} sent={}", request.url, sent.is_some())
                }
                other => format!("{other:?}"),
            };
            let ok = !matches!(answer, ImportAnswer::Http(Err(_)));
            self.note(format!("{call} ok={ok}"));
        }
        fn request_cut_off(&self, _: Scope<'_>, request: &Request, _: Sent) {
            self.note(format!("cut off {}", request.url));
        }
        fn operation_finished(
            &self,
            _: Scope<'_>,
            _: &Result<OperationAnswer, crate::PluginError>,
        ) {
        }
    }

    impl Notes {
        fn note(&self, line: String) {
            self.0.lock().unwrap().push(line);
        }
    }

    fn get(url: &str) -> Request {
        Request {
            method: Method::Get,
            url: url.into(),
            headers: vec![],
            body: None,
        }
    }

    #[tokio::test]
    async fn every_import_reaches_both_observers_and_issued_credentials_are_noted() {
        let (provider, op) = (Arc::new(Notes::default()), Arc::new(Notes::default()));
        let caps = Capabilities::builder("p", Arc::new(Settings::default()))
            .origin("http://127.0.0.1:9".parse().unwrap())
            .transport(Arc::new(Fake))
            .clock(FixedClock::new(7))
            .observer(provider.clone())
            .build();
        let host = caps.operation("create-refund", "1.0.0".into(), Some(op.clone()));
        host.http_send(get("http://127.0.0.1:9/auth"))
            .await
            .unwrap();
        let refused = host.http_send(get("http://elsewhere:9/x")).await;
        assert!(matches!(refused, Err(HttpError::Denied(_))), "{refused:?}");
        assert_eq!(host.clock_now(), 7);
        host.storage_set("k".into(), b"v".to_vec()).await.unwrap();
        assert_eq!(host.config_get("missing".into()), None);
        // The deadline drops an operation waiting on its provider.
        let slow = host.http_send(get("http://127.0.0.1:9/slow"));
        assert!(
            tokio::time::timeout(Duration::from_millis(20), slow)
                .await
                .is_err()
        );

        let seen = op.0.lock().unwrap().clone();
        assert_eq!(
            seen,
            *provider.0.lock().unwrap(),
            "both observers see the same"
        );
        assert_eq!(seen.len(), 6, "{seen:#?}");
        assert_eq!(seen[0], "http http://127.0.0.1:9/auth sent=true ok=true");
        assert_eq!(seen[1], "http http://elsewhere:9/x sent=false ok=false");
        assert!(seen[2].starts_with("ClockNow"), "{seen:#?}");
        assert!(seen[3].starts_with("StorageSet"), "{seen:#?}");
        assert!(seen[4].starts_with("ConfigGet"), "{seen:#?}");
        assert_eq!(seen[5], "cut off http://127.0.0.1:9/slow");
        assert_eq!(host.issued(), ["tok-0123456789abcdef"]);
    }
}
