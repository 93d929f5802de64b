//! The capabilities a plugin gets from its host, as a trait so that plugin logic runs natively
//! against fakes ([`crate::testing::FakeHost`]) and in wasm against the real imports ([`WasmHost`]).

use crate::{Level, StorageError, http};

/// What the host grants a plugin: one HTTP attempt at a time, a clock, a small key-value store,
/// its configuration and a log. Nothing else is reachable from a plugin.
pub trait Host {
    /// Sends one request to the provider and waits for the answer. The host allows only the
    /// provider's configured `base_url` origin, applies a timeout and a response size cap, and never
    /// retries.
    fn http_send(&self, req: http::Request) -> Result<http::Response, http::HttpError>;

    /// The host's current UTC time in milliseconds since the epoch: the only clock a plugin has.
    fn now_ms(&self) -> i64;

    /// The value stored under `key` for this provider, `None` when absent.
    fn storage_get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;

    /// Stores `value` under `key`, replacing any previous value.
    fn storage_set(&self, key: &str, value: &[u8]) -> Result<(), StorageError>;

    /// Removes `key`; removing an absent key is not an error.
    fn storage_delete(&self, key: &str) -> Result<(), StorageError>;

    /// The configuration value `key` for this provider (`base_url`, `api_key`, ...), `None` when
    /// not configured.
    fn config(&self, key: &str) -> Option<String>;

    /// Writes one log line with key-value `fields`. The host redacts configured secrets.
    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]);
}

/// The host of a plugin running as a component: every method calls the matching WIT import.
/// Only on `wasm32` (documented everywhere): natively there are no imports to call.
#[cfg(any(target_arch = "wasm32", doc))]
#[derive(Debug, Default, Clone, Copy)]
pub struct WasmHost;

#[cfg(target_arch = "wasm32")]
impl Host for WasmHost {
    fn http_send(&self, req: http::Request) -> Result<http::Response, http::HttpError> {
        crate::__private::wit::refundry::provider::http::send(&req)
    }

    fn now_ms(&self) -> i64 {
        crate::__private::wit::refundry::provider::clock::now()
    }

    fn storage_get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        crate::__private::wit::refundry::provider::storage::get(key)
    }

    fn storage_set(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        crate::__private::wit::refundry::provider::storage::set(key, value)
    }

    fn storage_delete(&self, key: &str) -> Result<(), StorageError> {
        crate::__private::wit::refundry::provider::storage::delete(key)
    }

    fn config(&self, key: &str) -> Option<String> {
        crate::__private::wit::refundry::provider::config::get(key)
    }

    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        // The generated import takes owned pairs; log lines are rare enough for the copy.
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        crate::__private::wit::refundry::provider::log::log(level, message, &fields);
    }
}
