//! What a recording holds, and the in-memory recorder one plugin operation fills.
//!
//! A recording is the operation's input, every import call the plugin made in order with the
//! host's answer, and the operation's output. It is collected in memory while the plugin runs
//! (no database round trip per import call) and written once when the operation ends.
//!
//! Configured secret values never enter a recording: a `config.get` of a secret key is kept as a
//! marker naming the key, and a secret value inside any other text (a request body, a log line)
//! is replaced by the same marker, `[secret:<key>]`. A replay re-supplies the values from the
//! configuration.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use refundry_runtime::bindings::http::{HttpError, Request, Response};
use refundry_runtime::bindings::log::Level;
use refundry_runtime::bindings::storage::StorageError;
use refundry_runtime::bindings::types::{
    Refund, RefundError, RefundLookup, RefundRequest, WebhookError, WebhookOutcome, WebhookRequest,
};
use refundry_runtime::error::PluginError;
use refundry_runtime::observe::{
    Import, ImportAnswer, Observer, Operation, OperationAnswer, Scope,
};
use refundry_runtime::secret::Secret;

/// Raw bytes as recorded: UTF-8 text as is (readable, and greppable for a leaked secret), anything
/// else as hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Body {
    /// The bytes were UTF-8.
    Text(String),
    /// The bytes were not UTF-8.
    Hex {
        /// Lowercase hex of the bytes.
        hex: String,
    },
}

impl Body {
    fn of(masks: &SecretMasks, bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => Body::Text(masks.mask(text)),
            Err(_) => Body::Hex {
                hex: hex::encode(masks.swap_bytes(bytes, true)),
            },
        }
    }

    /// The bytes, with secret markers replaced by the configured values.
    pub fn bytes(&self, masks: &SecretMasks) -> Vec<u8> {
        match self {
            Body::Text(t) => masks.unmask(t).into_bytes(),
            Body::Hex { hex } => masks.swap_bytes(&hex::decode(hex).unwrap_or_default(), false),
        }
    }

    /// As shown in a comparison: the text, or `hex:` and the hex digits.
    pub fn display(&self) -> String {
        match self {
            Body::Text(t) => t.clone(),
            Body::Hex { hex } => format!("hex:{hex}"),
        }
    }

    fn len(&self) -> usize {
        match self {
            Body::Text(t) => t.len(),
            Body::Hex { hex } => hex.len(),
        }
    }
}

/// A refund request, as recorded (every field of the contract's `refund-request`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// The provider's id of the original payment.
    pub original_transaction_id: String,
    /// The merchant's refund id.
    pub external_refund_id: String,
    /// Amount in minor units.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Reason.
    pub reason: Option<String>,
    /// Order id.
    pub order_id: Option<String>,
}

/// An operation's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", rename_all = "kebab-case")]
pub enum Input {
    /// `create-refund`.
    CreateRefund {
        /// The request.
        request: RecordedRequest,
    },
    /// `get-refund`, by the provider's refund id or by the external refund id.
    GetRefund {
        /// The provider's refund id, when looked up by it.
        provider_refund_id: Option<String>,
        /// The external refund id, when looked up by it.
        external_refund_id: Option<String>,
        /// The original payment's id, when the host passed it (absent from recordings made
        /// before lookups carried it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        original_transaction_id: Option<String>,
    },
    /// `parse-webhook`.
    ParseWebhook {
        /// The request method (recordings made before webhooks carried it were all `POST`).
        #[serde(default = "post")]
        method: String,
        /// The request path, without the query (empty in older recordings).
        #[serde(default)]
        path: String,
        /// The query string, when there was one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query: Option<String>,
        /// Headers as received.
        headers: Vec<(String, String)>,
        /// The raw body.
        body: Body,
    },
}

/// Webhooks are POSTed: the method of a webhook recorded before the method was kept.
fn post() -> String {
    "POST".to_owned()
}

impl Input {
    /// The operation's name in the contract.
    pub fn operation(&self) -> &'static str {
        match self {
            Input::CreateRefund { .. } => "create-refund",
            Input::GetRefund { .. } => "get-refund",
            Input::ParseWebhook { .. } => "parse-webhook",
        }
    }

    /// The input of a `create-refund`.
    pub fn create(masks: &SecretMasks, r: &RefundRequest) -> Self {
        let m = |s: &str| masks.mask(s);
        Input::CreateRefund {
            request: RecordedRequest {
                original_transaction_id: m(&r.original_transaction_id),
                external_refund_id: m(&r.external_refund_id),
                amount_minor: r.amount.amount_minor,
                currency: m(&r.amount.currency),
                reason: r.reason.as_deref().map(m),
                order_id: r.order_id.as_deref().map(m),
            },
        }
    }

    /// The input of a `get-refund`.
    pub fn get(masks: &SecretMasks, lookup: &RefundLookup, original: Option<&str>) -> Self {
        let original_transaction_id = original.map(|id| masks.mask(id));
        match lookup {
            RefundLookup::ProviderRefundId(id) => Input::GetRefund {
                provider_refund_id: Some(masks.mask(id)),
                external_refund_id: None,
                original_transaction_id,
            },
            RefundLookup::ExternalRefundId(id) => Input::GetRefund {
                provider_refund_id: None,
                external_refund_id: Some(masks.mask(id)),
                original_transaction_id,
            },
        }
    }

    /// The input of a `parse-webhook`.
    pub fn webhook(masks: &SecretMasks, req: &WebhookRequest) -> Self {
        Input::ParseWebhook {
            method: req.method.clone(),
            path: masks.mask(&req.path),
            query: req.query.as_deref().map(|q| masks.mask(q)),
            headers: mask_pairs(masks, &req.headers),
            body: Body::of(masks, &req.body),
        }
    }

    fn size(&self) -> usize {
        match self {
            Input::CreateRefund { request: r } => {
                r.original_transaction_id.len()
                    + r.external_refund_id.len()
                    + r.reason.as_ref().map_or(0, String::len)
                    + r.order_id.as_ref().map_or(0, String::len)
                    + 32
            }
            Input::GetRefund {
                provider_refund_id,
                external_refund_id,
                original_transaction_id,
            } => {
                provider_refund_id.as_ref().map_or(0, String::len)
                    + external_refund_id.as_ref().map_or(0, String::len)
                    + original_transaction_id.as_ref().map_or(0, String::len)
                    + 16
            }
            Input::ParseWebhook {
                method,
                path,
                query,
                headers,
                body,
            } => {
                method.len()
                    + path.len()
                    + query.as_ref().map_or(0, String::len)
                    + pairs_size(headers)
                    + body.len()
                    + 16
            }
        }
    }
}

/// What the plugin asked for through one import: its side of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "import", rename_all = "kebab-case")]
pub enum RecordedCall {
    /// `http.send`.
    HttpSend {
        /// Method (`GET`, `POST`, ...).
        method: String,
        /// URL.
        url: String,
        /// Headers, in order.
        headers: Vec<(String, String)>,
        /// Body.
        body: Option<Body>,
    },
    /// `clock.now`.
    ClockNow,
    /// `storage.get`.
    StorageGet {
        /// Key.
        key: String,
    },
    /// `storage.set`.
    StorageSet {
        /// Key.
        key: String,
        /// Value written.
        value: Body,
    },
    /// `storage.delete`.
    StorageDelete {
        /// Key.
        key: String,
    },
    /// `config.get`.
    ConfigGet {
        /// Key.
        key: String,
    },
    /// `log.log`.
    Log {
        /// Level (`trace` ... `error`).
        level: String,
        /// Message.
        message: String,
        /// Fields, in order.
        fields: Vec<(String, String)>,
    },
}

impl RecordedCall {
    /// How the import is named in a comparison (`http request`, `clock now`, ...).
    pub fn label(&self) -> &'static str {
        match self {
            RecordedCall::HttpSend { .. } => "http request",
            RecordedCall::ClockNow => "clock now",
            RecordedCall::StorageGet { .. } => "storage get",
            RecordedCall::StorageSet { .. } => "storage set",
            RecordedCall::StorageDelete { .. } => "storage delete",
            RecordedCall::ConfigGet { .. } => "config get",
            RecordedCall::Log { .. } => "log",
        }
    }

    /// Whether `other` is a call of the same import (whatever its arguments).
    pub fn same_import(&self, other: &RecordedCall) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }

    /// The plugin's side of an `http.send`.
    pub fn http(masks: &SecretMasks, req: &Request) -> Self {
        RecordedCall::HttpSend {
            method: refundry_runtime::caps::http::method(req.method).to_string(),
            url: masks.mask(&req.url),
            headers: mask_pairs(masks, &req.headers),
            body: req.body.as_deref().map(|b| Body::of(masks, b)),
        }
    }

    /// The plugin's side of a `storage.set`.
    pub fn storage_set(masks: &SecretMasks, key: &str, value: &[u8]) -> Self {
        RecordedCall::StorageSet {
            key: masks.mask(key),
            value: Body::of(masks, value),
        }
    }

    /// The plugin's side of a `log.log`.
    pub fn log(
        masks: &SecretMasks,
        level: Level,
        message: &str,
        fields: &[(String, String)],
    ) -> Self {
        let level = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        RecordedCall::Log {
            level: level.into(),
            message: masks.mask(message),
            fields: mask_pairs(masks, fields),
        }
    }

    fn size(&self) -> usize {
        16 + match self {
            RecordedCall::HttpSend {
                method,
                url,
                headers,
                body,
            } => {
                method.len() + url.len() + pairs_size(headers) + body.as_ref().map_or(0, Body::len)
            }
            RecordedCall::ClockNow => 0,
            RecordedCall::StorageGet { key }
            | RecordedCall::StorageDelete { key }
            | RecordedCall::ConfigGet { key } => key.len(),
            RecordedCall::StorageSet { key, value } => key.len() + value.len(),
            RecordedCall::Log {
                level,
                message,
                fields,
            } => level.len() + message.len() + pairs_size(fields),
        }
    }
}

/// An HTTP response, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedResponse {
    /// Status code.
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Body,
}

/// Why no HTTP response came, as recorded (the contract's `http-error`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordedHttpError {
    /// Refused by the host's policy.
    Denied(String),
    /// Malformed URL or header.
    InvalidRequest(String),
    /// No connection.
    ConnectFailed(String),
    /// No answer in time.
    Timeout,
    /// The connection failed after sending.
    Transport(String),
    /// The response was over the cap (bytes).
    ResponseTooLarge(u64),
}

/// Why a storage call failed, as recorded (the contract's `storage-error`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordedStorageError {
    /// Key or value over the limit (bytes allowed).
    TooLarge(u32),
    /// The store failed.
    Unavailable(String),
}

/// What `config.get` answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConfigAnswer {
    /// A plain setting's value.
    Value(String),
    /// A secret: only its key is recorded; a replay takes the value from the configuration.
    Secret(String),
    /// Not configured.
    Absent,
}

/// The host's side of a step: what the import returned to the plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordedAnswer {
    /// `http.send`'s result.
    Http(Result<RecordedResponse, RecordedHttpError>),
    /// `clock.now`, ms since the epoch.
    Clock(i64),
    /// `storage.get`'s result.
    Stored(Result<Option<Body>, RecordedStorageError>),
    /// `storage.set` or `storage.delete`'s result.
    Written(Result<(), RecordedStorageError>),
    /// `config.get`'s result.
    Config(ConfigAnswer),
    /// `log.log` returns nothing.
    Logged,
}

impl RecordedAnswer {
    /// `http.send`'s answer.
    pub fn http(masks: &SecretMasks, result: &Result<Response, HttpError>) -> Self {
        RecordedAnswer::Http(match result {
            Ok(r) => Ok(RecordedResponse {
                status: r.status,
                headers: mask_pairs(masks, &r.headers),
                body: Body::of(masks, &r.body),
            }),
            Err(e) => Err(match e {
                HttpError::Denied(m) => RecordedHttpError::Denied(masks.mask(m)),
                HttpError::InvalidRequest(m) => RecordedHttpError::InvalidRequest(masks.mask(m)),
                HttpError::ConnectFailed(m) => RecordedHttpError::ConnectFailed(masks.mask(m)),
                HttpError::Timeout => RecordedHttpError::Timeout,
                HttpError::Transport(m) => RecordedHttpError::Transport(masks.mask(m)),
                HttpError::ResponseTooLarge(n) => RecordedHttpError::ResponseTooLarge(*n),
            }),
        })
    }

    /// `storage.get`'s answer.
    pub fn stored(masks: &SecretMasks, result: &Result<Option<Vec<u8>>, StorageError>) -> Self {
        RecordedAnswer::Stored(match result {
            Ok(v) => Ok(v.as_deref().map(|b| Body::of(masks, b))),
            Err(e) => Err(storage_error(masks, e)),
        })
    }

    /// `storage.set` or `storage.delete`'s answer.
    pub fn written(masks: &SecretMasks, result: &Result<(), StorageError>) -> Self {
        RecordedAnswer::Written(match result {
            Ok(()) => Ok(()),
            Err(e) => Err(storage_error(masks, e)),
        })
    }

    fn size(&self) -> usize {
        8 + match self {
            RecordedAnswer::Http(Ok(r)) => pairs_size(&r.headers) + r.body.len(),
            RecordedAnswer::Http(Err(_)) => 64,
            RecordedAnswer::Stored(Ok(v)) => v.as_ref().map_or(0, Body::len),
            RecordedAnswer::Config(ConfigAnswer::Value(v) | ConfigAnswer::Secret(v)) => v.len(),
            _ => 16,
        }
    }
}

fn storage_error(masks: &SecretMasks, e: &StorageError) -> RecordedStorageError {
    match e {
        StorageError::TooLarge(n) => RecordedStorageError::TooLarge(*n),
        StorageError::Unavailable(m) => RecordedStorageError::Unavailable(masks.mask(m)),
    }
}

/// One import call: what the plugin asked and what the host answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The plugin's side.
    pub call: RecordedCall,
    /// The host's side.
    pub answer: RecordedAnswer,
}

/// One plugin operation, recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    /// The operation and its input.
    pub input: Input,
    /// Every import call, in order (a prefix of them when `truncated`).
    pub steps: Vec<Step>,
    /// What the operation returned (see [`refund_output`], [`webhook_output`],
    /// [`failure_output`]); `null` when it never returned.
    pub output: Value,
    /// Whether the recording passed its size cap, so that later steps are missing.
    pub truncated: bool,
}

pub use refundry_ledger::recordings::RecordedBy;

/// Collects one operation's recording in memory. Cheap to clone (shared with the instance's
/// state, so the calls made before a trap or the deadline are kept too).
#[derive(Clone)]
pub struct Recorder {
    draft: Arc<Mutex<Draft>>,
    /// The provider's secrets, as the recording marks them.
    masks: Arc<SecretMasks>,
}

struct Draft {
    by: RecordedBy,
    cap: usize,
    size: usize,
    input: Option<Input>,
    steps: Vec<Step>,
    output: Value,
    truncated: bool,
    /// Credentials the provider issued at run time (see [`Recorder::step`]), in the order found.
    tokens: Vec<Token>,
}

/// A credential the provider issued at run time, and the ways a recorded text can hold it.
struct Token {
    value: String,
    /// As is; as written inside a JSON string (a body that is JSON holds it so); and that with
    /// `/` written `\/`, as some JSON encoders write it. Longest first, none twice.
    spellings: Vec<String>,
    /// Each spelling as a step's own JSON text holds it (escaped once more).
    in_json: Vec<String>,
}

impl Token {
    fn new(value: String) -> Self {
        let escaped = json_escaped(&value);
        let mut spellings = vec![escaped.replace('/', "\\/"), escaped, value.clone()];
        spellings.sort_by_key(|s| std::cmp::Reverse(s.len()));
        spellings.dedup();
        let in_json = spellings.iter().map(|s| json_escaped(s)).collect();
        Self {
            value,
            spellings,
            in_json,
        }
    }
}

impl Recorder {
    /// An empty recording of an operation run by `by`, capped at about `cap` bytes, with the
    /// provider's secrets marked as `masks` says.
    pub fn new(by: RecordedBy, cap: usize, masks: Arc<SecretMasks>) -> Self {
        let draft = Draft {
            by,
            cap,
            size: 0,
            input: None,
            steps: Vec::new(),
            output: Value::Null,
            truncated: false,
            tokens: Vec::new(),
        };
        Self {
            draft: Arc::new(Mutex::new(draft)),
            masks,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Draft> {
        self.draft.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the operation's input.
    pub fn input(&self, input: Input) {
        let mut d = self.lock();
        d.size += input.size();
        d.input = Some(input);
    }

    /// Records one import call. Past the cap, the step is dropped and the recording marked
    /// truncated (and every later step dropped too: a recording is always a prefix).
    ///
    /// A credential the provider issues at run time (an auth token) is no configured secret, but
    /// one all the same: the value of a field or header named like a credential (the rule of the
    /// exchange log) in an HTTP answer or a stored value is replaced, in this step and every
    /// later one, by `[token:N]`. The plugin never sees the value on replay: it is handed the
    /// marker where it was handed the token, and sends the marker where it sent the token, so the
    /// comparison holds.
    pub fn step(&self, mut call: RecordedCall, mut answer: RecordedAnswer) {
        let mut d = self.lock();
        if d.truncated {
            return;
        }
        for found in issued_credentials(&answer) {
            if !d.tokens.iter().any(|t| t.value == found) {
                d.tokens.push(Token::new(found));
            }
        }
        if !d.tokens.is_empty() {
            call = mask_tokens(&d.tokens, call);
            answer = mask_tokens(&d.tokens, answer);
        }
        let size = call.size() + answer.size();
        if d.size + size > d.cap {
            d.truncated = true;
            return;
        }
        d.size += size;
        d.steps.push(Step { call, answer });
    }

    /// Records what the operation returned.
    pub fn output(&self, mut output: Value) {
        let mut d = self.lock();
        if !d.tokens.is_empty() {
            replace_tokens(&d.tokens, &mut output);
        }
        d.output = output;
    }

    /// Who ran the operation.
    pub fn by(&self) -> RecordedBy {
        self.lock().by.clone()
    }

    /// Takes the recording; `None` when no input was recorded (nothing ran) or it was taken.
    pub fn take(&self) -> Option<Recording> {
        let mut d = self.lock();
        let input = d.input.take()?;
        Some(Recording {
            input,
            steps: std::mem::take(&mut d.steps),
            output: std::mem::take(&mut d.output),
            truncated: d.truncated,
        })
    }
}

/// The recording of an operation is made by watching it: its input, every import call with its
/// answer, and its output.
impl Observer for Recorder {
    fn operation_started(&self, _scope: Scope<'_>, op: &Operation<'_>) {
        let masks = &self.masks;
        let input = match op {
            // `describe()` and `list-refunds` are never run for one refund, so never recorded.
            Operation::Describe | Operation::ListRefunds(..) => return,
            Operation::CreateRefund(req) => Input::create(masks, req),
            Operation::GetRefund(lookup, original) => Input::get(masks, lookup, *original),
            Operation::ParseWebhook(req) => Input::webhook(masks, req),
        };
        self.input(input);
    }

    fn import(&self, _scope: Scope<'_>, call: &Import<'_>, answer: &ImportAnswer<'_>) {
        let m = &self.masks;
        let (call, answer) = match (*call, *answer) {
            (Import::HttpSend { request, .. }, ImportAnswer::Http(r)) => {
                (RecordedCall::http(m, request), RecordedAnswer::http(m, r))
            }
            (Import::ClockNow, ImportAnswer::Clock(now)) => {
                (RecordedCall::ClockNow, RecordedAnswer::Clock(now))
            }
            (Import::StorageGet { key }, ImportAnswer::Stored(r)) => (
                RecordedCall::StorageGet { key: m.mask(key) },
                RecordedAnswer::stored(m, r),
            ),
            (Import::StorageSet { key, value }, ImportAnswer::Written(r)) => (
                RecordedCall::storage_set(m, key, value),
                RecordedAnswer::written(m, r),
            ),
            (Import::StorageDelete { key }, ImportAnswer::Written(r)) => (
                RecordedCall::StorageDelete { key: m.mask(key) },
                RecordedAnswer::written(m, r),
            ),
            (Import::ConfigGet { key }, ImportAnswer::Config(value)) => (
                RecordedCall::ConfigGet { key: m.mask(key) },
                RecordedAnswer::Config(m.config_answer(key, value)),
            ),
            (
                Import::Log {
                    level,
                    message,
                    fields,
                },
                ImportAnswer::Logged,
            ) => (
                RecordedCall::log(m, level, message, fields),
                RecordedAnswer::Logged,
            ),
            (call, answer) => unreachable!("{call:?} is never answered with {answer:?}"),
        };
        self.step(call, answer);
    }

    fn operation_finished(&self, _scope: Scope<'_>, answer: &Result<OperationAnswer, PluginError>) {
        let m = &self.masks;
        self.output(match answer {
            Ok(OperationAnswer::Refund(r)) => refund_output(m, r),
            Ok(OperationAnswer::Webhook(r)) => webhook_output(m, r),
            Ok(OperationAnswer::Info(_) | OperationAnswer::Page(_)) => Value::Null,
            Err(e) => failure_output(e),
        });
    }
}

/// A provider's secret values and the markers that stand for them in recordings.
#[derive(Debug, Default)]
pub struct SecretMasks {
    /// (key, value), longest value first so a secret containing another is replaced whole.
    secrets: Vec<(String, Secret)>,
}

impl SecretMasks {
    /// The masks of a provider's `secrets` table. Empty values are ignored.
    pub fn new(secrets: &BTreeMap<String, Secret>) -> Self {
        Self::of(secrets.iter().map(|(k, v)| (k.clone(), v.clone())))
    }

    /// The masks of these secrets, by key. Empty values are ignored.
    pub fn of(secrets: impl IntoIterator<Item = (String, Secret)>) -> Self {
        let mut secrets: Vec<(String, Secret)> = secrets
            .into_iter()
            .filter(|(_, v)| !v.expose().is_empty())
            .collect();
        secrets.sort_by_key(|(_, v)| std::cmp::Reverse(v.expose().len()));
        Self { secrets }
    }

    /// The marker that stands for secret `key`.
    pub fn marker(key: &str) -> String {
        format!("[secret:{key}]")
    }

    /// Whether `key` is one of the secrets.
    pub fn is_secret(&self, key: &str) -> bool {
        self.secrets.iter().any(|(k, _)| k == key)
    }

    /// The value of secret `key`.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.secrets
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.expose())
    }

    /// `text` with every secret value replaced by its marker.
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (key, value) in &self.secrets {
            if out.contains(value.expose()) {
                out = out.replace(value.expose(), &Self::marker(key));
            }
        }
        out
    }

    /// `text` with every marker replaced by its secret value.
    pub fn unmask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (key, value) in &self.secrets {
            let marker = Self::marker(key);
            if out.contains(&marker) {
                out = out.replace(&marker, value.expose());
            }
        }
        out
    }

    /// `bytes` with every secret value replaced by its marker (`masking`), or the reverse.
    fn swap_bytes(&self, bytes: &[u8], masking: bool) -> Vec<u8> {
        let mut out = bytes.to_vec();
        for (key, value) in &self.secrets {
            let marker = Self::marker(key);
            let (value, marker) = (value.expose().as_bytes(), marker.as_bytes());
            let (from, to) = if masking {
                (value, marker)
            } else {
                (marker, value)
            };
            out = replace_bytes(&out, from, to);
        }
        out
    }

    /// What `config.get(key)` answered, as recorded.
    pub fn config_answer(&self, key: &str, value: Option<&str>) -> ConfigAnswer {
        match value {
            None => ConfigAnswer::Absent,
            Some(_) if self.is_secret(key) => ConfigAnswer::Secret(key.to_owned()),
            Some(v) => ConfigAnswer::Value(self.mask(v)),
        }
    }

    /// Masks every string inside a JSON value.
    fn mask_json(&self, v: &mut Value) {
        match v {
            Value::String(s) => *s = self.mask(s),
            Value::Array(items) => items.iter_mut().for_each(|i| self.mask_json(i)),
            Value::Object(map) => map.values_mut().for_each(|i| self.mask_json(i)),
            _ => {}
        }
    }
}

/// Values of credential-named JSON fields and headers in an answer the plugin was handed.
fn issued_credentials(answer: &RecordedAnswer) -> Vec<String> {
    let mut out = Vec::new();
    let mut body = |b: &Body| {
        if let Body::Text(t) = b {
            out.extend(refundry_runtime::secret::credentials_in(t.as_bytes()));
        }
    };
    match answer {
        RecordedAnswer::Http(Ok(r)) => {
            body(&r.body);
            out.extend(refundry_runtime::secret::credential_headers(&r.headers));
        }
        RecordedAnswer::Stored(Ok(Some(b))) => body(b),
        _ => {}
    }
    // Never a marker of a configured secret.
    out.retain(|t| !t.starts_with("[secret:"));
    out
}

/// The marker of the `i`th run-time credential found.
fn token_marker(i: usize) -> String {
    format!("[token:{}]", i + 1)
}

fn replace_tokens(tokens: &[Token], v: &mut Value) {
    match v {
        Value::String(s) => {
            for (i, t) in tokens.iter().enumerate() {
                for spelling in &t.spellings {
                    if s.contains(spelling.as_str()) {
                        *s = s.replace(spelling.as_str(), &token_marker(i));
                    }
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| replace_tokens(tokens, i)),
        Value::Object(map) => map.values_mut().for_each(|i| replace_tokens(tokens, i)),
        _ => {}
    }
}

/// `item` with every run-time credential in its text replaced by its marker.
///
/// Most steps after a token was issued do not hold it (a clock reading, a config value): their
/// JSON text is looked at first, and only one that holds a token goes through a JSON value to
/// have it replaced. A string that holds a spelling of a token holds it in its JSON text too,
/// escaped as JSON escapes it, so the look misses none.
fn mask_tokens<T: Serialize + serde::de::DeserializeOwned>(tokens: &[Token], item: T) -> T {
    let Ok(text) = serde_json::to_string(&item) else {
        return item;
    };
    let holds = |t: &Token| t.in_json.iter().any(|s| text.contains(s.as_str()));
    if !tokens.iter().any(holds) {
        return item;
    }
    let Ok(mut v) = serde_json::from_str::<Value>(&text) else {
        return item;
    };
    replace_tokens(tokens, &mut v);
    serde_json::from_value(v).unwrap_or(item)
}

/// `text` as it is written inside a JSON string.
fn json_escaped(text: &str) -> String {
    let quoted = Value::from(text).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

fn replace_bytes(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    if from.is_empty() || haystack.len() < from.len() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

fn mask_pairs(masks: &SecretMasks, pairs: &[(String, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (masks.mask(k), masks.mask(v)))
        .collect()
}

fn pairs_size(pairs: &[(String, String)]) -> usize {
    pairs.iter().map(|(k, v)| k.len() + v.len() + 4).sum()
}

/// The output of `create-refund` or `get-refund`: `{"ok": refund}` or `{"error": ...}`.
pub fn refund_output(masks: &SecretMasks, r: &Result<Refund, RefundError>) -> Value {
    let mut v = match r {
        Ok(refund) => json!({ "ok": refundry_runtime::json::refund(refund) }),
        Err(e) => json!({ "error": crate::view::RefundErrorView::from(e) }),
    };
    masks.mask_json(&mut v);
    v
}

/// The output of `parse-webhook`: `{"ok": event}` for a delivery of one event (the shape of
/// every recording made before deliveries could carry several), `{"ok_events": [event, ...]}`
/// for a batch, `{"ignored": "why"}` or `{"error": "..."}`.
pub fn webhook_output(masks: &SecretMasks, r: &Result<WebhookOutcome, WebhookError>) -> Value {
    use refundry_runtime::json::webhook_event;
    let mut v = match r {
        Ok(WebhookOutcome::Events(events)) => match events.as_slice() {
            [one] => json!({ "ok": webhook_event(one) }),
            many => json!({ "ok_events": many.iter().map(webhook_event).collect::<Vec<_>>() }),
        },
        Ok(WebhookOutcome::Ignored(why)) => json!({ "ignored": why }),
        Err(e) => json!({ "error": crate::providers::describe_webhook_error(e) }),
    };
    masks.mask_json(&mut v);
    v
}

/// The output of an operation the plugin did not finish (trap, deadline, memory cap): the kind
/// of failure. The trap's message is left out: it carries code addresses that differ between
/// builds of the same logic.
pub fn failure_output(e: &PluginError) -> Value {
    let kind = match e {
        PluginError::Trap { .. } => "trap",
        PluginError::DeadlineExceeded { .. } => "deadline-exceeded",
        PluginError::MemoryLimit { .. } => "memory-limit",
        PluginError::Instantiate { .. } => "instantiate",
        PluginError::OversizedAnswer { .. } => "oversized-answer",
    };
    json!({ "plugin_failed": kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masks() -> SecretMasks {
        let mut s = BTreeMap::new();
        s.insert("api_secret".to_owned(), Secret::new("s3cr3t"));
        s.insert("long".to_owned(), Secret::new("s3cr3t-and-more"));
        s.insert("empty".to_owned(), Secret::new(""));
        SecretMasks::new(&s)
    }

    fn by() -> RecordedBy {
        RecordedBy {
            provider: "p".into(),
            plugin_version: "0.1.0".into(),
            plugin_sha256: "ab".into(),
        }
    }

    #[test]
    fn secrets_become_markers_and_come_back() {
        let m = masks();
        let text = "a s3cr3t-and-more b s3cr3t c";
        let masked = m.mask(text);
        assert_eq!(masked, "a [secret:long] b [secret:api_secret] c");
        assert_eq!(m.unmask(&masked), text);
        let bytes = [b"\xff".as_slice(), b"s3cr3t"].concat();
        let body = Body::of(&m, &bytes);
        assert!(matches!(body, Body::Hex { .. }));
        assert!(!format!("{body:?}").contains(&hex::encode("s3cr3t")));
        assert_eq!(body.bytes(&m), bytes);
        assert_eq!(
            m.config_answer("api_secret", Some("s3cr3t")),
            ConfigAnswer::Secret("api_secret".into())
        );
        assert_eq!(
            m.config_answer("base_url", Some("http://x")),
            ConfigAnswer::Value("http://x".into())
        );
        assert_eq!(m.config_answer("nope", None), ConfigAnswer::Absent);
    }

    #[test]
    fn a_recording_past_its_cap_is_a_truncated_prefix() {
        let rec = Recorder::new(by(), 200, Arc::default());
        rec.input(Input::GetRefund {
            provider_refund_id: Some("r1".into()),
            external_refund_id: None,
            original_transaction_id: None,
        });
        for i in 0..20 {
            rec.step(RecordedCall::ClockNow, RecordedAnswer::Clock(i));
        }
        rec.output(json!({"ok": 1}));
        let r = rec.take().unwrap();
        assert!(r.truncated);
        assert!(
            !r.steps.is_empty() && r.steps.len() < 20,
            "{}",
            r.steps.len()
        );
        // A prefix: the steps kept are the first ones, in order.
        for (i, s) in r.steps.iter().enumerate() {
            assert_eq!(s.answer, RecordedAnswer::Clock(i as i64));
        }
        assert_eq!(r.output, json!({"ok": 1}));

        let rec = Recorder::new(by(), 10_000, Arc::default());
        rec.input(Input::GetRefund {
            provider_refund_id: Some("r1".into()),
            external_refund_id: None,
            original_transaction_id: None,
        });
        for i in 0..20 {
            rec.step(RecordedCall::ClockNow, RecordedAnswer::Clock(i));
        }
        let r = rec.take().unwrap();
        assert!(!r.truncated);
        assert_eq!(r.steps.len(), 20);
        assert!(rec.take().is_none(), "a recording is taken once");
    }

    #[test]
    fn credential_names_are_told_by_their_last_word() {
        for yes in [
            "token",
            "access_token",
            "accessToken",
            "X-Api-Key",
            "client-secret",
            "Authorization",
        ] {
            assert!(refundry_runtime::secret::names_a_credential(yes), "{yes}");
        }
        for no in [
            "tokenExpires",
            "tokenStart",
            "hashString",
            "keyId",
            "status",
            "monkey",
        ] {
            assert!(!refundry_runtime::secret::names_a_credential(no), "{no}");
        }
    }

    /// A recorder of a `get-refund` by provider refund id `r`, its input recorded.
    fn recording_a_lookup() -> Recorder {
        let rec = Recorder::new(by(), 1 << 20, Arc::default());
        rec.input(Input::GetRefund {
            provider_refund_id: Some("r".into()),
            external_refund_id: None,
            original_transaction_id: None,
        });
        rec
    }

    /// Records a `201` answer of `body`, which issues `token`, then a request that sends it as
    /// a bearer token.
    fn issue_then_use(rec: &Recorder, body: &[u8], token: &str) {
        let m = masks();
        let issued = Ok(Response {
            status: 201,
            headers: vec![],
            body: body.to_vec(),
        });
        rec.step(RecordedCall::ClockNow, RecordedAnswer::http(&m, &issued));
        let used = Request {
            method: refundry_runtime::bindings::http::Method::Get,
            url: "http://p/v1/refunds/r".into(),
            headers: vec![("Authorization".into(), format!("Bearer {token}"))],
            body: None,
        };
        rec.step(RecordedCall::http(&m, &used), RecordedAnswer::Clock(1));
    }

    #[test]
    fn a_token_the_provider_issues_is_masked_from_where_it_is_found() {
        let token = "tok-0123456789abcdef";
        let rec = recording_a_lookup();
        let body = format!(
            r#"{{"data":{{"token":"{token}","key":"1","tokenExpires":"2026-11-25T17:42:51-05:00"}}}}"#
        );
        issue_then_use(&rec, body.as_bytes(), token);
        rec.output(json!({"ok": format!("echo {token}")}));
        let r = rec.take().unwrap();
        let text = serde_json::to_string(&r).unwrap();
        assert!(!text.contains(token), "{text}");
        assert!(text.contains(r#"\"token\":\"[token:1]\""#), "{text}");
        assert!(text.contains("Bearer [token:1]"), "{text}");
        assert!(
            text.contains(r#"\"key\":\"1\""#),
            "short values stay: {text}"
        );
        assert!(
            text.contains("2026-11-25T17:42:51-05:00"),
            "not credentials: {text}"
        );
        assert_eq!(r.output, json!({"ok": "echo [token:1]"}));
    }

    #[test]
    fn a_token_json_escapes_is_masked_and_steps_without_one_are_kept_as_they_are() {
        let m = masks();
        let token = r#"tok"0123456789\abcdef"#;
        let rec = recording_a_lookup();
        let issued = Ok(Response {
            status: 200,
            headers: vec![],
            body: serde_json::to_vec(&json!({ "access_token": token })).unwrap(),
        });
        rec.step(RecordedCall::ClockNow, RecordedAnswer::http(&m, &issued));
        let sent = Request {
            method: refundry_runtime::bindings::http::Method::Post,
            url: "http://p/v1/refunds".into(),
            headers: vec![("X-Note".into(), "none here".into())],
            body: Some(format!("auth={token}").into_bytes()),
        };
        rec.step(RecordedCall::http(&m, &sent), RecordedAnswer::Clock(7));
        let plain = RecordedCall::StorageGet { key: "k".into() };
        rec.step(plain.clone(), RecordedAnswer::Clock(8));
        let r = rec.take().unwrap();
        let text = serde_json::to_string(&r).unwrap();
        // Neither as the plugin sent it nor inside the answer's JSON body, however escaped.
        assert!(!text.contains("0123456789"), "{text}");
        assert!(text.contains("auth=[token:1]"), "{text}");
        assert_eq!(r.steps[2].call, plain);
        assert_eq!(r.steps[2].answer, RecordedAnswer::Clock(8));
    }

    #[test]
    fn a_token_an_encoder_wrote_with_escaped_slashes_is_masked_in_the_body_too() {
        let token = "tok/0123456789+abcdef==";
        let rec = recording_a_lookup();
        // As PHP's json_encode writes it by default.
        let body = br#"{"code":"100","data":{"token":"tok\/0123456789+abcdef=="}}"#;
        issue_then_use(&rec, body, token);
        let r = rec.take().unwrap();
        let text = serde_json::to_string(&r).unwrap();
        assert!(!text.contains("0123456789+abcdef"), "{text}");
        assert!(text.contains(r#"\"token\":\"[token:1]\""#), "{text}");
        assert!(text.contains("Bearer [token:1]"), "{text}");
    }

    #[test]
    fn recordings_round_trip_through_json() {
        let m = masks();
        let rec = Recorder::new(by(), 1 << 20, Arc::default());
        rec.input(Input::webhook(
            &m,
            &WebhookRequest {
                method: "POST".into(),
                path: "/v1/webhooks/p".into(),
                query: Some("k=s3cr3t".into()),
                headers: vec![("X-Sig".into(), "v".into())],
                body: b"{\"a\":\"s3cr3t\"}".to_vec(),
            },
        ));
        rec.step(
            RecordedCall::ConfigGet {
                key: "api_secret".into(),
            },
            RecordedAnswer::Config(m.config_answer("api_secret", Some("s3cr3t"))),
        );
        rec.step(
            RecordedCall::StorageGet { key: "t".into() },
            RecordedAnswer::stored(&m, &Ok(Some(vec![0xff, 0x00]))),
        );
        let r = rec.take().unwrap();
        let text = serde_json::to_string(&r).unwrap();
        assert!(!text.contains("s3cr3t"), "{text}");
        let back: Recording = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn a_lookup_keeps_the_original_payment_masked() {
        let m = masks();
        let lookup = RefundLookup::ExternalRefundId("r-1".into());
        assert_eq!(
            Input::get(&m, &lookup, Some("txn-s3cr3t")),
            Input::GetRefund {
                provider_refund_id: None,
                external_refund_id: Some("r-1".into()),
                original_transaction_id: Some("txn-[secret:api_secret]".into()),
            }
        );
        // Without it, the recording reads as one made before lookups carried it.
        let text = serde_json::to_string(&Input::get(&m, &lookup, None)).unwrap();
        assert!(!text.contains("original_transaction_id"), "{text}");
    }

    #[test]
    fn recordings_made_before_contract_0_2_still_read() {
        let get: Input = serde_json::from_str(
            r#"{"operation": "get-refund", "provider_refund_id": "r1", "external_refund_id": null}"#,
        )
        .unwrap();
        assert_eq!(
            get,
            Input::GetRefund {
                provider_refund_id: Some("r1".into()),
                external_refund_id: None,
                original_transaction_id: None,
            }
        );
        // A webhook was headers and body: it was POSTed, to a path nobody kept.
        let webhook: Input = serde_json::from_str(
            r#"{"operation": "parse-webhook", "headers": [["X-Sig", "v"]], "body": "{}"}"#,
        )
        .unwrap();
        assert_eq!(
            webhook,
            Input::ParseWebhook {
                method: "POST".into(),
                path: String::new(),
                query: None,
                headers: vec![("X-Sig".into(), "v".into())],
                body: Body::Text("{}".into()),
            }
        );
    }
}
