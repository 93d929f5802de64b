//! [`RefundLogic`]: a provider's refund logic, however it runs, and the one path every operation
//! takes through the runtime.
//!
//! A sandboxed component ([`crate::Plugin`]) is how the runtime runs a provider; a benchmark can
//! also link the same plugin crate natively and implement [`RefundLogic`] over the same
//! capabilities. Either way each operation goes through [`dyn RefundLogic`]'s typed methods:
//! the observers see it start and end, and its answer is sanitized (see [`crate::sanitize`])
//! once, here, where the host takes it.

use std::sync::Arc;

use crate::BoxFuture;
use crate::bindings::types::{
    ProviderInfo, Refund, RefundError, RefundLookup, RefundPage, RefundRequest, TimeRange,
    WebhookError, WebhookOutcome, WebhookRequest,
};
use crate::caps::{Capabilities, OperationHost};
use crate::component::PluginComponent;
use crate::error::PluginError;
use crate::observe::{Observer, Operation, OperationAnswer};
use crate::sanitize::{MAX_ID, Sanitizer};

/// A provider's refund logic: the contract's operations, run with the provider's capabilities.
pub trait RefundLogic: Send + Sync + 'static {
    /// What the plugin said of itself when it was loaded.
    fn info(&self) -> &ProviderInfo;

    /// The capabilities it runs with.
    fn capabilities(&self) -> &Arc<Capabilities>;

    /// The sandboxed component, unless the logic is linked natively.
    fn component(&self) -> Option<&Arc<PluginComponent>> {
        None
    }

    /// Runs one operation with `host` as its side of the imports, and answers as the plugin did.
    /// Callers use the typed methods of `dyn RefundLogic`, which sanitize the answer.
    fn run<'a>(
        &'a self,
        op: Operation<'a>,
        host: Arc<OperationHost>,
    ) -> BoxFuture<'a, Result<OperationAnswer, PluginError>>;
}

impl dyn RefundLogic {
    /// Lowercase hex SHA-256 of the component; `native` for logic linked natively.
    pub fn sha256(&self) -> &str {
        self.component().map_or("native", |c| c.sha256.as_str())
    }

    /// `describe()`.
    pub async fn describe(&self) -> Result<ProviderInfo, PluginError> {
        match self.perform(Operation::Describe, None).await? {
            OperationAnswer::Info(info) => Ok(info),
            _ => unreachable!("describe answers with provider info"),
        }
    }

    /// `create-refund`, seen by `observer` too when given.
    pub async fn create_refund(
        &self,
        req: &RefundRequest,
        observer: Option<Arc<dyn Observer>>,
    ) -> Result<Result<Refund, RefundError>, PluginError> {
        match self.perform(Operation::CreateRefund(req), observer).await? {
            OperationAnswer::Refund(r) => Ok(r),
            _ => unreachable!("create-refund answers with a refund"),
        }
    }

    /// `get-refund` (with the original payment's id when known), seen by `observer` too when
    /// given.
    pub async fn get_refund(
        &self,
        lookup: &RefundLookup,
        original_transaction_id: Option<&str>,
        observer: Option<Arc<dyn Observer>>,
    ) -> Result<Result<Refund, RefundError>, PluginError> {
        let op = Operation::GetRefund(lookup, original_transaction_id);
        match self.perform(op, observer).await? {
            OperationAnswer::Refund(r) => Ok(r),
            _ => unreachable!("get-refund answers with a refund"),
        }
    }

    /// `list-refunds`: one page of the refunds the provider holds, created in `range`; seen by
    /// `observer` too when given.
    pub async fn list_refunds(
        &self,
        range: &TimeRange,
        cursor: Option<&str>,
        observer: Option<Arc<dyn Observer>>,
    ) -> Result<Result<RefundPage, RefundError>, PluginError> {
        match self
            .perform(Operation::ListRefunds(range, cursor), observer)
            .await?
        {
            OperationAnswer::Page(r) => Ok(r),
            _ => unreachable!("list-refunds answers with a page"),
        }
    }

    /// `parse-webhook`, seen by `observer` too when given.
    pub async fn parse_webhook(
        &self,
        req: &WebhookRequest,
        observer: Option<Arc<dyn Observer>>,
    ) -> Result<Result<WebhookOutcome, WebhookError>, PluginError> {
        match self.perform(Operation::ParseWebhook(req), observer).await? {
            OperationAnswer::Webhook(r) => Ok(r),
            _ => unreachable!("parse-webhook answers with a webhook event"),
        }
    }

    /// Runs `op`, shows it to the observers, and answers as the host keeps it: without the
    /// provider's configured secrets or the credentials it issued (in this operation's HTTP
    /// answers, or kept in the plugin's storage), within the caps; an id over its cap makes it a
    /// plugin error.
    async fn perform(
        &self,
        op: Operation<'_>,
        observer: Option<Arc<dyn Observer>>,
    ) -> Result<OperationAnswer, PluginError> {
        let caps = self.capabilities();
        let version = self.info().version.as_str();
        let host = Arc::new(caps.operation(op.name(), version.into(), observer));
        let scope = host.scope();
        host.observe(|o| o.operation_started(scope, &op));
        let answer = self.run(op, host.clone()).await;
        host.observe(|o| o.operation_finished(scope, &answer));
        let sanitizer = Sanitizer::new(caps.redactor().clone(), host.issued());
        let answer = answer.map_err(|e| sanitizer.plugin_error(e))?;
        let clean = match &answer {
            OperationAnswer::Info(i) => sanitizer.provider_info(i).map(OperationAnswer::Info),
            OperationAnswer::Refund(r) => sanitizer.refund_answer(r).map(OperationAnswer::Refund),
            OperationAnswer::Page(p) => sanitizer.page_answer(p).map(OperationAnswer::Page),
            OperationAnswer::Webhook(w) => {
                sanitizer.webhook_answer(w).map(OperationAnswer::Webhook)
            }
        };
        clean.map_err(|o| {
            let e = PluginError::OversizedAnswer {
                provider: caps.provider().to_owned(),
                op: op.name(),
                field: o.field,
                len: o.len,
                limit: MAX_ID,
            };
            tracing::error!(provider = %caps.provider(), op = op.name(), error = %e, "plugin failed");
            host.observe(|o| o.answer_refused(scope, &e));
            e
        })
    }
}
