//! What serves a provider's refund operations: its plugin as a WebAssembly component (always, in
//! production), or, in a build with the `native-plugins` feature, the same plugin crate compiled
//! into the host (the baseline `cargo xtask bench-service` measures the component against).
//!
//! Every answer of either comes back through [`Backend`]'s one `sanitized` step: this is where
//! the host takes a plugin's answer, so this is where secrets leave it and its caps are held
//! (see [`crate::sanitize`]).

use std::sync::Arc;

use crate::bindings::types::{
    ProviderInfo, Refund, RefundError, RefundLookup, RefundRequest, WebhookError, WebhookEvent,
};
use crate::caps::ProviderCaps;
use crate::error::PluginError;
use crate::exchange::Exchanges;
use crate::plugin::Plugin;
use crate::sanitize::{MAX_ID, Oversized, Sanitizer};

/// A provider's refund logic, however it is run.
#[derive(Clone)]
pub enum Backend {
    /// A sandboxed component: a fresh instance per operation.
    Wasm(Plugin),
    /// The plugin crate linked into the host, with the same capabilities (benchmark baseline).
    #[cfg(feature = "native-plugins")]
    Native(crate::native::NativeProvider),
}

impl Backend {
    /// What the plugin said of itself when it was loaded.
    pub fn info(&self) -> &ProviderInfo {
        match self {
            Backend::Wasm(p) => p.info(),
            #[cfg(feature = "native-plugins")]
            Backend::Native(p) => p.info(),
        }
    }

    /// Lowercase hex SHA-256 of the component; `native` for a plugin linked into the host.
    pub fn sha256(&self) -> &str {
        match self {
            Backend::Wasm(p) => &p.component().sha256,
            #[cfg(feature = "native-plugins")]
            Backend::Native(_) => "native",
        }
    }

    /// The component plugin, unless this provider runs natively.
    pub fn plugin(&self) -> Option<&Plugin> {
        match self {
            Backend::Wasm(p) => Some(p),
            #[cfg(feature = "native-plugins")]
            Backend::Native(_) => None,
        }
    }

    /// `create-refund`, with its HTTP exchanges collected in `exchanges`.
    pub async fn create_refund(
        &self,
        req: &RefundRequest,
        exchanges: &Exchanges,
    ) -> Result<Result<Refund, RefundError>, PluginError> {
        let answer = match self {
            Backend::Wasm(p) => p.create_refund_recorded(req, exchanges).await,
            #[cfg(feature = "native-plugins")]
            Backend::Native(p) => p.create_refund(req, exchanges).await,
        };
        self.sanitized("create-refund", exchanges, answer, Sanitizer::refund_answer)
    }

    /// `get-refund`, with its HTTP exchanges collected in `exchanges`.
    pub async fn get_refund(
        &self,
        lookup: &RefundLookup,
        exchanges: &Exchanges,
    ) -> Result<Result<Refund, RefundError>, PluginError> {
        let answer = match self {
            Backend::Wasm(p) => p.get_refund_recorded(lookup, exchanges).await,
            #[cfg(feature = "native-plugins")]
            Backend::Native(p) => p.get_refund(lookup, exchanges).await,
        };
        self.sanitized("get-refund", exchanges, answer, Sanitizer::refund_answer)
    }

    /// `parse-webhook`, recorded when `exchanges` carries a recorder (a plugin linked into the
    /// host is not recorded).
    pub async fn parse_webhook(
        &self,
        headers: &[(String, String)],
        body: &[u8],
        exchanges: &Exchanges,
    ) -> Result<Result<WebhookEvent, WebhookError>, PluginError> {
        let answer = match self {
            Backend::Wasm(p) => p.parse_webhook_recorded(headers, body, exchanges).await,
            #[cfg(feature = "native-plugins")]
            Backend::Native(p) => p.parse_webhook(headers, body).await,
        };
        self.sanitized(
            "parse-webhook",
            exchanges,
            answer,
            Sanitizer::webhook_answer,
        )
    }

    /// The provider's capabilities.
    fn caps(&self) -> &Arc<ProviderCaps> {
        match self {
            Backend::Wasm(p) => p.caps(),
            #[cfg(feature = "native-plugins")]
            Backend::Native(p) => p.caps(),
        }
    }

    /// The answer of operation `op` as the host keeps it: without the provider's configured
    /// secrets or the credentials it issued (in this operation's exchanges, or kept in the
    /// plugin's storage), within the caps; an id over its cap makes it a plugin error.
    fn sanitized<T>(
        &self,
        op: &'static str,
        exchanges: &Exchanges,
        answer: Result<T, PluginError>,
        clean: impl FnOnce(&Sanitizer, &T) -> Result<T, Oversized>,
    ) -> Result<T, PluginError> {
        let caps = self.caps();
        let mut issued = exchanges.issued();
        issued.extend(caps.storage.credentials());
        let sanitizer = Sanitizer::new(caps.redactor.clone(), issued);
        let answer = answer.map_err(|e| sanitizer.plugin_error(e))?;
        clean(&sanitizer, &answer).map_err(|o| {
            let provider = self.info().id.clone();
            let e = PluginError::OversizedAnswer {
                provider,
                op,
                field: o.field,
                len: o.len,
                limit: MAX_ID,
            };
            tracing::error!(provider = %self.info().id, op, error = %e, "plugin failed");
            caps.metrics.plugin_failed(&self.info().version, &e);
            e
        })
    }
}
