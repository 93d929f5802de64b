//! A loaded plugin bound to one provider's capabilities: each operation runs on a fresh instance,
//! under the engine's deadline and memory cap, and any trap or limit becomes a [`PluginError`].

use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use crate::bindings::RefundPluginPre;
use crate::bindings::types::{
    ProviderInfo, Refund, RefundError, RefundLookup, RefundRequest, WebhookError, WebhookEvent,
};
use crate::caps::{PluginState, ProviderCaps};
use crate::engine::{Engine, imports};
use crate::error::{LoadError, PluginError};
use crate::exchange::Exchanges;
use crate::limits::MemoryLimitExceeded;
use crate::replay::record;
use crate::sanitize::{MAX_ID, Sanitizer};

/// A compiled, linked plugin component, ready to instantiate.
pub struct PluginComponent {
    pre: RefundPluginPre<PluginState>,
    /// Lowercase hex SHA-256 of the component bytes.
    pub sha256: String,
    /// Size of the component, in bytes.
    pub size: usize,
    /// What the component imports.
    pub imports: Vec<String>,
}

impl PluginComponent {
    /// Validates, compiles and links component bytes.
    pub fn compile(engine: &Engine, bytes: &[u8]) -> Result<Self, LoadError> {
        let pre = engine.prepare(bytes)?;
        Ok(Self::of(engine, pre, sha256_hex(bytes), bytes.len()))
    }

    /// Links a component already compiled (from a precompiled artifact, say) from component
    /// bytes of this hash and size.
    pub fn link(
        engine: &Engine,
        component: &Component,
        sha256: String,
        size: usize,
    ) -> Result<Self, LoadError> {
        let pre = engine.link(component)?;
        Ok(Self::of(engine, pre, sha256, size))
    }

    fn of(engine: &Engine, pre: RefundPluginPre<PluginState>, sha256: String, size: usize) -> Self {
        Self {
            imports: imports(engine.wasmtime(), pre.instance_pre().component()),
            pre,
            sha256,
            size,
        }
    }

    /// Reads, validates, compiles and links a component file.
    pub fn from_file(engine: &Engine, path: &std::path::Path) -> Result<Self, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::compile(engine, &bytes)
    }

    /// The compiled component.
    pub fn component(&self) -> &Component {
        self.pre.instance_pre().component()
    }
}

/// Lowercase hex SHA-256 of component bytes: a plugin version's identity.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One operation's call, and its answer.
enum Call<'a> {
    Describe,
    Create(&'a RefundRequest),
    Get(&'a RefundLookup),
    Webhook(&'a [(String, String)], &'a [u8]),
}

/// What one operation cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpStats {
    /// The largest linear memory the instance had during the operation, in bytes.
    pub peak_memory: usize,
}

enum Answer {
    Describe(ProviderInfo),
    Refund(Result<Refund, RefundError>),
    Webhook(Result<WebhookEvent, WebhookError>),
}

impl Call<'_> {
    fn name(&self) -> &'static str {
        match self {
            Call::Describe => "describe",
            Call::Create(_) => "create-refund",
            Call::Get(_) => "get-refund",
            Call::Webhook(..) => "parse-webhook",
        }
    }
}

/// A plugin serving one provider.
#[derive(Clone)]
pub struct Plugin {
    engine: Engine,
    component: Arc<PluginComponent>,
    caps: Arc<ProviderCaps>,
    provider: String,
    info: ProviderInfo,
}

impl Plugin {
    /// Binds a component to a provider's capabilities, asks it to `describe()` itself, and checks
    /// that it is the provider it is configured as (`expected`, when given).
    pub async fn bind(
        engine: Engine,
        component: Arc<PluginComponent>,
        caps: Arc<ProviderCaps>,
        expected: Option<&str>,
    ) -> Result<Self, LoadError> {
        let mut plugin = Self {
            engine,
            component,
            caps,
            provider: expected.unwrap_or("(unbound)").to_owned(),
            info: ProviderInfo {
                id: String::new(),
                version: String::new(),
                display_name: String::new(),
                currencies: Vec::new(),
                partial_refunds: false,
                multiple_refunds: false,
                refund_window_days: None,
            },
        };
        let info = plugin.describe().await.map_err(LoadError::Describe)?;
        // What a plugin says of itself is shown and kept too: held to the same rules as its
        // other answers.
        let info = Sanitizer::new(plugin.caps.redactor.clone(), [])
            .provider_info(&info)
            .map_err(|o| {
                LoadError::Describe(PluginError::OversizedAnswer {
                    provider: plugin.provider.clone(),
                    op: "describe",
                    field: o.field,
                    len: o.len,
                    limit: MAX_ID,
                })
            })?;
        if let Some(expected) = expected
            && info.id != expected
        {
            return Err(LoadError::ProviderMismatch {
                expected: expected.to_owned(),
                found: info.id,
            });
        }
        plugin.provider = info.id.clone();
        plugin.info = info;
        Ok(plugin)
    }

    /// What the plugin said of itself when it was bound.
    pub fn info(&self) -> &ProviderInfo {
        &self.info
    }

    /// The capabilities it is bound to.
    pub fn caps(&self) -> &Arc<ProviderCaps> {
        &self.caps
    }

    /// The component this plugin runs.
    pub fn component(&self) -> &PluginComponent {
        &self.component
    }

    /// Calls `describe()` on a fresh instance.
    pub async fn describe(&self) -> Result<ProviderInfo, PluginError> {
        match self.run(Call::Describe).await? {
            Answer::Describe(info) => Ok(info),
            _ => unreachable!("describe answers with provider info"),
        }
    }

    /// Calls `create-refund` on a fresh instance.
    pub async fn create_refund(
        &self,
        req: &RefundRequest,
    ) -> Result<Result<Refund, RefundError>, PluginError> {
        self.create_refund_with_stats(req).await.map(|(r, _)| r)
    }

    /// Calls `create-refund` on a fresh instance and reports what it cost.
    pub async fn create_refund_with_stats(
        &self,
        req: &RefundRequest,
    ) -> Result<(Result<Refund, RefundError>, OpStats), PluginError> {
        match self.run_with_stats(Call::Create(req), None).await? {
            (Answer::Refund(r), stats) => Ok((r, stats)),
            _ => unreachable!("create-refund answers with a refund"),
        }
    }

    /// One instance kept warm for repeated calls. The service never does this (each operation
    /// gets a fresh instance so no state leaks between refunds); it exists to measure what
    /// instantiation costs.
    pub async fn warm(&self) -> Result<WarmPlugin, PluginError> {
        let (store, instance) = self.instantiate("warm", None).await?;
        Ok(WarmPlugin {
            store,
            instance,
            plugin: self.clone(),
        })
    }

    /// Calls `create-refund` on a fresh instance; its HTTP exchanges go to `exchanges` (those
    /// made before a trap or the deadline included).
    pub async fn create_refund_recorded(
        &self,
        req: &RefundRequest,
        exchanges: &Exchanges,
    ) -> Result<Result<Refund, RefundError>, PluginError> {
        match self
            .run_with_stats(Call::Create(req), Some(exchanges))
            .await?
        {
            (Answer::Refund(r), _) => Ok(r),
            _ => unreachable!("create-refund answers with a refund"),
        }
    }

    /// Calls `get-refund` on a fresh instance; its HTTP exchanges go to `exchanges`.
    pub async fn get_refund_recorded(
        &self,
        lookup: &RefundLookup,
        exchanges: &Exchanges,
    ) -> Result<Result<Refund, RefundError>, PluginError> {
        match self
            .run_with_stats(Call::Get(lookup), Some(exchanges))
            .await?
        {
            (Answer::Refund(r), _) => Ok(r),
            _ => unreachable!("get-refund answers with a refund"),
        }
    }

    /// Calls `get-refund` on a fresh instance.
    pub async fn get_refund(
        &self,
        lookup: &RefundLookup,
    ) -> Result<Result<Refund, RefundError>, PluginError> {
        match self.run(Call::Get(lookup)).await? {
            Answer::Refund(r) => Ok(r),
            _ => unreachable!("get-refund answers with a refund"),
        }
    }

    /// Calls `parse-webhook` on a fresh instance.
    pub async fn parse_webhook(
        &self,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Result<WebhookEvent, WebhookError>, PluginError> {
        match self.run(Call::Webhook(headers, body)).await? {
            Answer::Webhook(r) => Ok(r),
            _ => unreachable!("parse-webhook answers with a webhook event"),
        }
    }

    /// Calls `parse-webhook` on a fresh instance; recorded when `exchanges` carries a recorder.
    pub async fn parse_webhook_recorded(
        &self,
        headers: &[(String, String)],
        body: &[u8],
        exchanges: &Exchanges,
    ) -> Result<Result<WebhookEvent, WebhookError>, PluginError> {
        match self
            .run_with_stats(Call::Webhook(headers, body), Some(exchanges))
            .await?
        {
            (Answer::Webhook(r), _) => Ok(r),
            _ => unreachable!("parse-webhook answers with a webhook event"),
        }
    }

    async fn run(&self, call: Call<'_>) -> Result<Answer, PluginError> {
        self.run_with_stats(call, None)
            .await
            .map(|(answer, _)| answer)
    }

    async fn run_with_stats(
        &self,
        call: Call<'_>,
        exchanges: Option<&Exchanges>,
    ) -> Result<(Answer, OpStats), PluginError> {
        let op = call.name();
        let deadline = self.engine.limits().deadline;
        let recorder = exchanges.and_then(Exchanges::recorder);
        if let Some(r) = &recorder {
            r.input(self.recorded_input(&call));
        }
        let work = async {
            let (mut store, instance) = self.instantiate(op, exchanges.cloned()).await?;
            let guest = instance.refundry_provider_provider();
            let answer = match call {
                Call::Describe => guest.call_describe(&mut store).await.map(Answer::Describe),
                Call::Create(req) => guest
                    .call_create_refund(&mut store, req)
                    .await
                    .map(Answer::Refund),
                Call::Get(lookup) => guest
                    .call_get_refund(&mut store, lookup)
                    .await
                    .map(Answer::Refund),
                Call::Webhook(headers, body) => guest
                    .call_parse_webhook(&mut store, headers, body)
                    .await
                    .map(Answer::Webhook),
            };
            let stats = OpStats {
                peak_memory: store.data().memory.peak(),
            };
            answer
                .map(|a| (a, stats))
                .map_err(|e| self.call_error(op, e))
        };
        // The instance yields at every epoch tick, so this fires on time even for a plugin that
        // never returns; dropping `work` drops its store and frees the pool slot.
        let result = tokio::time::timeout(deadline, work)
            .await
            .unwrap_or_else(|_| {
                Err(PluginError::DeadlineExceeded {
                    provider: self.provider.clone(),
                    op,
                    deadline,
                })
            });
        if let Err(e) = &result {
            self.caps.metrics.plugin_failed(&self.info.version, e);
        }
        if let Some(r) = &recorder {
            r.output(self.recorded_output(&result));
        }
        result
    }

    /// An operation's input, as recorded.
    fn recorded_input(&self, call: &Call<'_>) -> record::Input {
        let masks = self.caps.config.masks();
        match call {
            // `describe()` is never run for a refund, so never recorded; an empty lookup stands in.
            Call::Describe => record::Input::GetRefund {
                provider_refund_id: None,
                external_refund_id: None,
            },
            Call::Create(req) => record::Input::create(masks, req),
            Call::Get(lookup) => record::Input::get(masks, lookup),
            Call::Webhook(headers, body) => record::Input::webhook(masks, headers, body),
        }
    }

    /// An operation's output, as recorded.
    fn recorded_output(
        &self,
        result: &Result<(Answer, OpStats), PluginError>,
    ) -> serde_json::Value {
        let masks = self.caps.config.masks();
        match result {
            Ok((Answer::Refund(r), _)) => record::refund_output(masks, r),
            Ok((Answer::Webhook(r), _)) => record::webhook_output(masks, r),
            Ok((Answer::Describe(_), _)) => serde_json::Value::Null,
            Err(e) => record::failure_output(e),
        }
    }

    /// A fresh store (with this engine's limits) and instance for operation `op`.
    async fn instantiate(
        &self,
        op: &'static str,
        exchanges: Option<Exchanges>,
    ) -> Result<(wasmtime::Store<PluginState>, crate::bindings::RefundPlugin), PluginError> {
        let state = PluginState::new(self.caps.clone(), op, self.engine.memory_cap(), exchanges);
        let mut store = self.engine.store(state);
        let instance = self
            .component
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| self.instantiate_error(op, e))?;
        Ok((store, instance))
    }

    fn instantiate_error(&self, op: &'static str, e: wasmtime::Error) -> PluginError {
        if let Some(m) = e.downcast_ref::<MemoryLimitExceeded>() {
            return PluginError::MemoryLimit {
                provider: self.provider.clone(),
                op,
                limit: m.limit,
            };
        }
        PluginError::Instantiate {
            provider: self.provider.clone(),
            op,
            message: format!("{e:#}"),
        }
    }

    fn call_error(&self, op: &'static str, e: wasmtime::Error) -> PluginError {
        let error = if let Some(m) = e.downcast_ref::<MemoryLimitExceeded>() {
            PluginError::MemoryLimit {
                provider: self.provider.clone(),
                op,
                limit: m.limit,
            }
        } else {
            PluginError::Trap {
                provider: self.provider.clone(),
                op,
                message: format!("{e:?}"),
            }
        };
        tracing::error!(provider = %self.provider, op, error = %error, "plugin failed");
        error
    }
}

/// A plugin instance kept across calls; see [`Plugin::warm`].
pub struct WarmPlugin {
    store: wasmtime::Store<PluginState>,
    instance: crate::bindings::RefundPlugin,
    plugin: Plugin,
}

impl WarmPlugin {
    /// Calls `create-refund` on the warm instance.
    pub async fn create_refund(
        &mut self,
        req: &RefundRequest,
    ) -> Result<Result<Refund, RefundError>, PluginError> {
        let guest = self.instance.refundry_provider_provider();
        guest
            .call_create_refund(&mut self.store, req)
            .await
            .map_err(|e| self.plugin.call_error("create-refund", e))
    }
}
