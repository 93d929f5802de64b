//! The one hook through which a host watches its plugins: every operation with its input and
//! answer, and every import call the plugin made with the answer it got.
//!
//! The runtime calls an [`Observer`] and never looks at what it does: the reference service's
//! HTTP exchange log, its recordings (record and replay) and its metrics are observers, so a
//! capability is implemented once, in the runtime, and seen by all of them.
//!
//! Observers are trusted host code and see what the plugin sees, secrets included (a recorder
//! masks them itself); the answer a host keeps is the sanitized one the operation returns.

use std::time::Duration;

use crate::bindings::http::{HttpError, Request, Response};
use crate::bindings::log::Level;
use crate::bindings::storage::StorageError;
use crate::bindings::types::{
    ProviderInfo, Refund, RefundError, RefundLookup, RefundPage, RefundRequest, TimeRange,
    WebhookError, WebhookOutcome, WebhookRequest,
};
use crate::error::PluginError;

/// One operation of the contract, with its input.
#[derive(Debug, Clone, Copy)]
pub enum Operation<'a> {
    /// `describe()`.
    Describe,
    /// `create-refund`.
    CreateRefund(&'a RefundRequest),
    /// `get-refund`, with the original payment's id when the host knows it.
    GetRefund(&'a RefundLookup, Option<&'a str>),
    /// `list-refunds`: the range and the cursor of the page asked for (`None` for the first).
    ListRefunds(&'a TimeRange, Option<&'a str>),
    /// `parse-webhook`: the delivery as received.
    ParseWebhook(&'a WebhookRequest),
}

impl Operation<'_> {
    /// The operation's name in the contract.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Describe => "describe",
            Operation::CreateRefund(_) => "create-refund",
            Operation::GetRefund(..) => "get-refund",
            Operation::ListRefunds(..) => "list-refunds",
            Operation::ParseWebhook(_) => "parse-webhook",
        }
    }
}

/// What an operation answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperationAnswer {
    /// `describe()`'s answer.
    Info(ProviderInfo),
    /// `create-refund`'s or `get-refund`'s answer.
    Refund(Result<Refund, RefundError>),
    /// `list-refunds`' answer.
    Page(Result<RefundPage, RefundError>),
    /// `parse-webhook`'s answer.
    Webhook(Result<WebhookOutcome, WebhookError>),
}

/// Who runs an operation: the provider and the plugin version that serves it.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The provider id.
    pub provider: &'a str,
    /// The plugin's version, as it describes itself.
    pub plugin_version: &'a str,
    /// The operation's name in the contract.
    pub op: &'static str,
}

/// One import call of a plugin.
#[derive(Debug, Clone, Copy)]
pub enum Import<'a> {
    /// `http.send`. `sent` says when it went on the wire and how long the answer took; `None`
    /// when the host's policy refused it (it never left the host).
    HttpSend {
        /// The request as the plugin made it.
        request: &'a Request,
        /// When it was sent and how long it took.
        sent: Option<Sent>,
    },
    /// `clock.now`.
    ClockNow,
    /// `storage.get`.
    StorageGet {
        /// The key.
        key: &'a str,
    },
    /// `storage.set`.
    StorageSet {
        /// The key.
        key: &'a str,
        /// The value.
        value: &'a [u8],
    },
    /// `storage.delete`.
    StorageDelete {
        /// The key.
        key: &'a str,
    },
    /// `config.get`.
    ConfigGet {
        /// The key.
        key: &'a str,
    },
    /// `log.log`.
    Log {
        /// The level.
        level: Level,
        /// The message, as the plugin wrote it.
        message: &'a str,
        /// The structured fields.
        fields: &'a [(String, String)],
    },
}

/// When a request went on the wire, and how long its answer took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sent {
    /// The host clock when it was sent (UTC, ms since the epoch).
    pub at_ms: i64,
    /// From sending to the last byte of the answer (or the failure).
    pub latency: Duration,
}

/// The host's answer to one import call.
#[derive(Debug, Clone, Copy)]
pub enum ImportAnswer<'a> {
    /// To `http.send`.
    Http(&'a Result<Response, HttpError>),
    /// To `clock.now`: UTC, ms since the epoch.
    Clock(i64),
    /// To `storage.get`.
    Stored(&'a Result<Option<Vec<u8>>, StorageError>),
    /// To `storage.set` and `storage.delete`.
    Written(&'a Result<(), StorageError>),
    /// To `config.get`: the value, when the key is configured.
    Config(Option<&'a str>),
    /// To `log.log` (which answers nothing).
    Logged,
}

/// Sees what plugins do. Every method has an empty default: implement what you watch.
pub trait Observer: Send + Sync + 'static {
    /// An operation starts, with its input.
    fn operation_started(&self, _scope: Scope<'_>, _op: &Operation<'_>) {}

    /// The plugin made an import call and got this answer.
    fn import(&self, _scope: Scope<'_>, _call: &Import<'_>, _answer: &ImportAnswer<'_>) {}

    /// A request was on the wire when the operation ended (its deadline dropped it): the provider
    /// may have it, and no answer came.
    fn request_cut_off(&self, _scope: Scope<'_>, _request: &Request, _sent: Sent) {}

    /// The operation ended, with the plugin's answer as it gave it, or why it gave none.
    fn operation_finished(
        &self,
        _scope: Scope<'_>,
        _answer: &Result<OperationAnswer, PluginError>,
    ) {
    }

    /// The host refused the plugin's answer (see [`crate::sanitize`]): the operation's result is
    /// this error, though the plugin answered.
    fn answer_refused(&self, _scope: Scope<'_>, _error: &PluginError) {}
}

/// Watches nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl Observer for NoObserver {}
