//! Re-running a recorded operation: the plugin's imports answered from the recording, in order,
//! with no network, no real clock and no storage writes.
//!
//! The replayed plugin's calls are collected as they come. When it asks for something the
//! recording does not have at that step (another import, or more calls than were recorded), the
//! operation stops there: an async import never answers and the call is dropped; a sync one
//! (clock, config, log) answers a placeholder and the call is dropped at the plugin's next yield
//! (every epoch tick). What the plugin did after that point is not looked at.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::Notify;
use wasmtime::Store;
use wasmtime::component::{Component, HasSelf, Linker};

use super::record::{
    Body, ConfigAnswer, Input, RecordedAnswer, RecordedCall, RecordedHttpError,
    RecordedStorageError, Recording, SecretMasks, Step, failure_output, refund_output,
    webhook_output,
};
use refundry_runtime::bindings;
use refundry_runtime::bindings::{RefundPlugin, RefundPluginPre};
use refundry_runtime::caps::crypto;
use refundry_runtime::contract::ContractVersion;
use refundry_runtime::engine::Engine;
use refundry_runtime::error::{LoadError, PluginError};
use refundry_runtime::limits::{MemoryCap, MemoryLimitExceeded};

/// The store data of a replayed instance: the recording it answers from and what it was asked.
pub struct ReplayState {
    recorded: Arc<[Step]>,
    masks: Arc<SecretMasks>,
    calls: Vec<RecordedCall>,
    stopped: Option<String>,
    stop: Arc<Notify>,
    memory: MemoryCap,
}

impl ReplayState {
    /// The recorded answer to `call`, the next call of the plugin; `None` (and the operation
    /// stopped) when the recording has no such call at this step.
    fn answer(&mut self, call: RecordedCall) -> Option<RecordedAnswer> {
        if self.stopped.is_some() {
            return None;
        }
        let step = self.calls.len() + 1;
        let found = call.label();
        let expected = self.recorded.get(step - 1).cloned();
        self.calls.push(call);
        let why = match expected {
            Some(s) if s.call.same_import(&self.calls[step - 1]) => return Some(s.answer),
            Some(s) => format!(
                "at step {step} the plugin asked for {found} where the recording has {}",
                s.call.label()
            ),
            None => format!(
                "at step {step} the plugin asked for {found}; the recording has only {} steps",
                self.recorded.len()
            ),
        };
        self.stopped = Some(why);
        self.stop.notify_one();
        None
    }
}

impl bindings::types::Host for ReplayState {}

impl bindings::http::Host for ReplayState {
    async fn send(
        &mut self,
        req: bindings::http::Request,
    ) -> Result<bindings::http::Response, bindings::http::HttpError> {
        let masks = self.masks.clone();
        match self.answer(RecordedCall::http(&masks, &req)) {
            Some(RecordedAnswer::Http(Ok(r))) => Ok(bindings::http::Response {
                status: r.status,
                headers: unmask_pairs(&masks, &r.headers),
                body: r.body.bytes(&masks),
            }),
            Some(RecordedAnswer::Http(Err(e))) => Err(match e {
                RecordedHttpError::Denied(m) => bindings::http::HttpError::Denied(masks.unmask(&m)),
                RecordedHttpError::InvalidRequest(m) => {
                    bindings::http::HttpError::InvalidRequest(masks.unmask(&m))
                }
                RecordedHttpError::ConnectFailed(m) => {
                    bindings::http::HttpError::ConnectFailed(masks.unmask(&m))
                }
                RecordedHttpError::Timeout => bindings::http::HttpError::Timeout,
                RecordedHttpError::Transport(m) => {
                    bindings::http::HttpError::Transport(masks.unmask(&m))
                }
                RecordedHttpError::ResponseTooLarge(n) => {
                    bindings::http::HttpError::ResponseTooLarge(n)
                }
            }),
            _ => std::future::pending().await,
        }
    }
}

impl bindings::clock::Host for ReplayState {
    fn now(&mut self) -> i64 {
        match self.answer(RecordedCall::ClockNow) {
            Some(RecordedAnswer::Clock(t)) => t,
            _ => 0,
        }
    }
}

impl bindings::storage::Host for ReplayState {
    async fn get(
        &mut self,
        key: String,
    ) -> Result<Option<Vec<u8>>, bindings::storage::StorageError> {
        let masks = self.masks.clone();
        match self.answer(RecordedCall::StorageGet {
            key: masks.mask(&key),
        }) {
            Some(RecordedAnswer::Stored(r)) => r
                .map(|v| v.map(|b| b.bytes(&masks)))
                .map_err(|e| storage_error(&masks, e)),
            _ => std::future::pending().await,
        }
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), bindings::storage::StorageError> {
        let masks = self.masks.clone();
        match self.answer(RecordedCall::storage_set(&masks, &key, &value)) {
            Some(RecordedAnswer::Written(r)) => r.map_err(|e| storage_error(&masks, e)),
            _ => std::future::pending().await,
        }
    }

    async fn delete(&mut self, key: String) -> Result<(), bindings::storage::StorageError> {
        let masks = self.masks.clone();
        match self.answer(RecordedCall::StorageDelete {
            key: masks.mask(&key),
        }) {
            Some(RecordedAnswer::Written(r)) => r.map_err(|e| storage_error(&masks, e)),
            _ => std::future::pending().await,
        }
    }
}

impl bindings::config::Host for ReplayState {
    fn get(&mut self, key: String) -> Option<String> {
        let masks = self.masks.clone();
        match self.answer(RecordedCall::ConfigGet {
            key: masks.mask(&key),
        }) {
            Some(RecordedAnswer::Config(ConfigAnswer::Value(v))) => Some(masks.unmask(&v)),
            // Re-supplied from the configuration, so what is computed with it comes out the same.
            Some(RecordedAnswer::Config(ConfigAnswer::Secret(k))) => {
                masks.value(&k).map(str::to_owned)
            }
            _ => None,
        }
    }
}

/// Digests are pure functions of their arguments: a replay computes them again, as the host did
/// when the operation ran (they are not recorded).
impl bindings::crypto::Host for ReplayState {
    fn sha256(&mut self, data: Vec<u8>) -> Vec<u8> {
        crypto::sha256(&data).to_vec()
    }

    fn hmac_sha256(&mut self, key: Vec<u8>, data: Vec<u8>) -> Vec<u8> {
        crypto::hmac_sha256(&key, &data).to_vec()
    }

    fn hmac_sha256_verify(&mut self, key: Vec<u8>, data: Vec<u8>, mac: Vec<u8>) -> bool {
        crypto::hmac_sha256_verify(&key, &data, &mac)
    }
}

impl bindings::log::Host for ReplayState {
    fn log(&mut self, level: bindings::log::Level, message: String, fields: Vec<(String, String)>) {
        let masks = self.masks.clone();
        self.answer(RecordedCall::log(&masks, level, &message, &fields));
    }
}

fn storage_error(masks: &SecretMasks, e: RecordedStorageError) -> bindings::storage::StorageError {
    match e {
        RecordedStorageError::TooLarge(n) => bindings::storage::StorageError::TooLarge(n),
        RecordedStorageError::Unavailable(m) => {
            bindings::storage::StorageError::Unavailable(masks.unmask(&m))
        }
    }
}

fn unmask_pairs(masks: &SecretMasks, pairs: &[(String, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (masks.unmask(k), masks.unmask(v)))
        .collect()
}

/// What a replayed operation did.
#[derive(Debug, Clone, PartialEq)]
pub struct Replayed {
    /// Every import call the plugin made, in order (up to where it stopped).
    pub calls: Vec<RecordedCall>,
    /// What it returned; `null` when it was stopped first.
    pub output: Value,
    /// Why it was stopped before returning, if it was.
    pub stopped: Option<String>,
}

/// Runs components against recordings, in an engine of its own imports.
pub struct Player {
    engine: Engine,
    linker: Linker<ReplayState>,
}

/// A component linked to the recording's imports.
pub struct Prepared(RefundPluginPre<ReplayState>);

impl Player {
    /// A player in `engine` (its limits: deadline and memory cap, apply to each replay).
    pub fn new(engine: Engine) -> Result<Self, LoadError> {
        let mut linker = Linker::new(engine.wasmtime());
        RefundPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| LoadError::Contract(format!("{e:#}")))?;
        Ok(Self { engine, linker })
    }

    /// Links a compiled (and import-checked) component to the replay imports. Replays run
    /// components of the newest contract only: an older one is refused with its version.
    pub fn prepare(&self, component: &Component) -> Result<Prepared, LoadError> {
        let version = ContractVersion::of(self.engine.wasmtime(), component)?;
        if version != ContractVersion::NEWEST {
            return Err(LoadError::Contract(format!(
                "replay runs components built against contract {}; this one is built against {version}",
                ContractVersion::NEWEST
            )));
        }
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| LoadError::Contract(format!("{e:#}")))?;
        RefundPluginPre::new(pre)
            .map(Prepared)
            .map_err(|e| LoadError::Contract(format!("{e:#}")))
    }

    /// Re-runs `recording`'s operation on `component`, answering from the recording.
    pub async fn run(
        &self,
        component: &Prepared,
        recording: &Recording,
        masks: Arc<SecretMasks>,
    ) -> Replayed {
        let stop = Arc::new(Notify::new());
        let state = ReplayState {
            recorded: recording.steps.clone().into(),
            masks: masks.clone(),
            calls: Vec::new(),
            stopped: None,
            stop: stop.clone(),
            memory: MemoryCap::new(self.engine.limits().memory_limit),
        };
        let mut store = Store::new(self.engine.wasmtime(), state);
        store.limiter(|s| &mut s.memory);
        store.epoch_deadline_async_yield_and_update(1);
        let deadline = self.engine.limits().deadline;
        let op = recording.input.operation();
        let output = {
            let work = call(&mut store, &component.0, &recording.input, &masks);
            tokio::select! {
                done = tokio::time::timeout(deadline, work) => match done {
                    Ok(Ok(output)) => output,
                    Ok(Err(e)) => failure_output(&plugin_error(op, e)),
                    Err(_) => failure_output(&PluginError::DeadlineExceeded {
                        provider: String::new(),
                        op,
                        deadline,
                    }),
                },
                () = stop.notified() => Value::Null,
            }
        };
        let state = store.into_data();
        Replayed {
            output: if state.stopped.is_some() {
                Value::Null
            } else {
                output
            },
            calls: state.calls,
            stopped: state.stopped,
        }
    }
}

/// Instantiates and calls the recorded operation with the recorded input.
async fn call(
    store: &mut Store<ReplayState>,
    pre: &RefundPluginPre<ReplayState>,
    input: &Input,
    masks: &SecretMasks,
) -> wasmtime::Result<Value> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let guest = instance.refundry_provider_provider();
    let m = |s: &str| masks.unmask(s);
    Ok(match input {
        Input::CreateRefund { request: r } => {
            let req = bindings::types::RefundRequest {
                original_transaction_id: m(&r.original_transaction_id),
                external_refund_id: m(&r.external_refund_id),
                amount: bindings::types::Money {
                    amount_minor: r.amount_minor,
                    currency: m(&r.currency),
                },
                reason: r.reason.as_deref().map(m),
                order_id: r.order_id.as_deref().map(m),
            };
            refund_output(masks, &guest.call_create_refund(&mut *store, &req).await?)
        }
        Input::GetRefund {
            provider_refund_id,
            external_refund_id,
            original_transaction_id,
        } => {
            let lookup = match (provider_refund_id, external_refund_id) {
                (Some(id), _) => bindings::types::RefundLookup::ProviderRefundId(m(id)),
                (None, id) => bindings::types::RefundLookup::ExternalRefundId(m(id
                    .as_deref()
                    .unwrap_or_default())),
            };
            let original = original_transaction_id.as_deref().map(m);
            let answer = guest
                .call_get_refund(&mut *store, &lookup, original.as_deref())
                .await?;
            refund_output(masks, &answer)
        }
        Input::ParseWebhook {
            method,
            path,
            query,
            headers,
            body,
        } => {
            let req = bindings::types::WebhookRequest {
                method: method.clone(),
                path: m(path),
                query: query.as_deref().map(m),
                headers: unmask_pairs(masks, headers),
                body: Body::bytes(body, masks),
            };
            let outcome = guest.call_parse_webhook(&mut *store, &req).await?;
            webhook_output(masks, &outcome)
        }
    })
}

fn plugin_error(op: &'static str, e: wasmtime::Error) -> PluginError {
    match e.downcast_ref::<MemoryLimitExceeded>() {
        Some(m) => PluginError::MemoryLimit {
            provider: String::new(),
            op,
            limit: m.limit,
        },
        None => PluginError::Trap {
            provider: String::new(),
            op,
            message: format!("{e:#}"),
        },
    }
}
