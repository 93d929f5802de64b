//! A plugin component bound to one provider's capabilities: each operation runs on a fresh
//! instance, under the engine's deadline and memory cap, and any trap or limit becomes a
//! [`PluginError`].

use std::sync::Arc;

use crate::BoxFuture;
use crate::bindings::types::{
    ProviderInfo, Refund, RefundError, RefundLookup, RefundPage, RefundRequest, TimeRange,
    WebhookError, WebhookOutcome, WebhookRequest,
};
use crate::caps::{Capabilities, OperationHost, PluginState, Settings};
use crate::component::PluginComponent;
use crate::contract::Instance;
use crate::engine::Engine;
use crate::error::{LoadError, PluginError};
use crate::limits::MemoryLimitExceeded;
use crate::logic::RefundLogic;
use crate::observe::{Observer, Operation, OperationAnswer};

/// What one operation cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpStats {
    /// The largest linear memory the instance had during the operation, in bytes.
    pub peak_memory: usize,
}

/// A sandboxed plugin serving one provider: what a gateway embedding the runtime calls.
#[derive(Clone)]
pub struct Plugin {
    engine: Engine,
    component: Arc<PluginComponent>,
    caps: Arc<Capabilities>,
    provider: String,
    info: ProviderInfo,
}

impl Plugin {
    /// Binds a component to a provider's capabilities, asks it to `describe()` itself, and checks
    /// that it is the provider the capabilities are granted to (unless `check_id` is false: a
    /// plugin being inspected names its provider itself).
    pub async fn bind(
        engine: Engine,
        component: Arc<PluginComponent>,
        caps: Arc<Capabilities>,
        check_id: bool,
    ) -> Result<Self, LoadError> {
        let mut plugin = Self {
            engine,
            component,
            provider: caps.provider().to_owned(),
            caps,
            info: ProviderInfo {
                id: String::new(),
                version: String::new(),
                display_name: String::new(),
                currencies: Vec::new(),
                partial_refunds: false,
                multiple_refunds: false,
                refund_window_days: None,
                status_queries: false,
                reversal_window_days: None,
                max_list_range_days: None,
            },
        };
        // What a plugin says of itself is shown and kept too: held to the same rules as its
        // other answers.
        let logic: &dyn RefundLogic = &plugin;
        let info = logic.describe().await.map_err(LoadError::Describe)?;
        if check_id && info.id != plugin.provider {
            return Err(LoadError::ProviderMismatch {
                expected: plugin.provider,
                found: info.id,
            });
        }
        plugin.provider = info.id.clone();
        plugin.info = info;
        Ok(plugin)
    }

    /// Binds a component only to hear it `describe()` itself: no network, no configuration,
    /// throw-away storage, and no provider id to check against (it names its provider itself).
    pub async fn inspect(
        engine: Engine,
        component: Arc<PluginComponent>,
    ) -> Result<Self, LoadError> {
        let caps = Capabilities::builder("inspect", Arc::new(Settings::default())).build();
        Self::bind(engine, component, caps, false).await
    }

    /// What the plugin said of itself when it was bound.
    pub fn info(&self) -> &ProviderInfo {
        &self.info
    }

    /// The capabilities it is bound to.
    pub fn capabilities(&self) -> &Arc<Capabilities> {
        &self.caps
    }

    /// The component this plugin runs.
    pub fn component(&self) -> &Arc<PluginComponent> {
        &self.component
    }

    /// `create-refund`, on a fresh instance; the answer without secrets, within the caps.
    pub async fn create_refund(
        &self,
        req: &RefundRequest,
    ) -> Result<Result<Refund, RefundError>, PluginError> {
        (self as &dyn RefundLogic).create_refund(req, None).await
    }

    /// `get-refund`, on a fresh instance; `original_transaction_id` when the gateway knows it.
    pub async fn get_refund(
        &self,
        lookup: &RefundLookup,
        original_transaction_id: Option<&str>,
    ) -> Result<Result<Refund, RefundError>, PluginError> {
        (self as &dyn RefundLogic)
            .get_refund(lookup, original_transaction_id, None)
            .await
    }

    /// `list-refunds`, on a fresh instance: one page of the refunds the provider holds, created
    /// in `range`; `cursor` is `None` for the first page, then the page's `next_cursor`.
    pub async fn list_refunds(
        &self,
        range: &TimeRange,
        cursor: Option<&str>,
    ) -> Result<Result<RefundPage, RefundError>, PluginError> {
        (self as &dyn RefundLogic)
            .list_refunds(range, cursor, None)
            .await
    }

    /// `parse-webhook`, on a fresh instance: the delivery as received.
    pub async fn parse_webhook(
        &self,
        req: &WebhookRequest,
    ) -> Result<Result<WebhookOutcome, WebhookError>, PluginError> {
        (self as &dyn RefundLogic).parse_webhook(req, None).await
    }

    /// `create-refund` on a fresh instance, as the plugin answered it (not sanitized), and what
    /// it cost: for measuring.
    pub async fn create_refund_with_stats(
        &self,
        req: &RefundRequest,
    ) -> Result<(Result<Refund, RefundError>, OpStats), PluginError> {
        let host = self.host("create-refund", None);
        match self
            .run_with_stats(Operation::CreateRefund(req), host)
            .await?
        {
            (OperationAnswer::Refund(r), stats) => Ok((r, stats)),
            _ => unreachable!("create-refund answers with a refund"),
        }
    }

    /// One instance kept warm for repeated calls. The runtime never does this (each operation
    /// gets a fresh instance so no state leaks between refunds); it exists to measure what
    /// instantiation costs.
    pub async fn warm(&self) -> Result<WarmPlugin, PluginError> {
        let host = self.host("warm", None);
        let (store, instance) = self.instantiate("warm", host).await?;
        Ok(WarmPlugin {
            store,
            instance,
            plugin: self.clone(),
        })
    }

    fn host(&self, op: &'static str, observer: Option<Arc<dyn Observer>>) -> Arc<OperationHost> {
        Arc::new(
            self.caps
                .operation(op, self.info.version.as_str().into(), observer),
        )
    }

    async fn run_with_stats(
        &self,
        op: Operation<'_>,
        host: Arc<OperationHost>,
    ) -> Result<(OperationAnswer, OpStats), PluginError> {
        let name = op.name();
        let deadline = self.engine.limits().deadline;
        let work = async {
            let (mut store, instance) = self.instantiate(name, host).await?;
            let answer = instance.call(&mut store, op).await;
            let stats = OpStats {
                peak_memory: store.data().memory.peak(),
            };
            answer
                .map(|a| (a, stats))
                .map_err(|e| self.call_error(name, e))
        };
        // The instance yields at every epoch tick, so this fires on time even for a plugin that
        // never returns; dropping `work` drops its store and frees the pool slot.
        tokio::time::timeout(deadline, work)
            .await
            .unwrap_or_else(|_| {
                Err(PluginError::DeadlineExceeded {
                    provider: self.provider.clone(),
                    op: name,
                    deadline,
                })
            })
    }

    /// A fresh store (with this engine's limits) and instance for operation `op`.
    async fn instantiate(
        &self,
        op: &'static str,
        host: Arc<OperationHost>,
    ) -> Result<(wasmtime::Store<PluginState>, Instance), PluginError> {
        let state = PluginState {
            host,
            memory: self.engine.memory_cap(),
        };
        let mut store = self.engine.store(state);
        let instance = self
            .component
            .pre
            .instantiate(&mut store)
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

impl RefundLogic for Plugin {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    fn capabilities(&self) -> &Arc<Capabilities> {
        &self.caps
    }

    fn component(&self) -> Option<&Arc<PluginComponent>> {
        Some(&self.component)
    }

    fn run<'a>(
        &'a self,
        op: Operation<'a>,
        host: Arc<OperationHost>,
    ) -> BoxFuture<'a, Result<OperationAnswer, PluginError>> {
        Box::pin(async move { self.run_with_stats(op, host).await.map(|(a, _)| a) })
    }
}

/// A plugin instance kept across calls; see [`Plugin::warm`].
pub struct WarmPlugin {
    store: wasmtime::Store<PluginState>,
    instance: Instance,
    plugin: Plugin,
}

impl WarmPlugin {
    /// Calls `create-refund` on the warm instance.
    pub async fn create_refund(
        &mut self,
        req: &RefundRequest,
    ) -> Result<Result<Refund, RefundError>, PluginError> {
        match self
            .instance
            .call(&mut self.store, Operation::CreateRefund(req))
            .await
        {
            Ok(OperationAnswer::Refund(r)) => Ok(r),
            Ok(_) => unreachable!("create-refund answers with a refund"),
            Err(e) => Err(self.plugin.call_error("create-refund", e)),
        }
    }
}
