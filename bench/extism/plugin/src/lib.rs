//! The Refundry providers' `create-refund` as an Extism plugin, for the comparison bench: the
//! provider crates themselves (`refundry-mfs-africa`, `refundry-pagoefectivo`), called through
//! [`Provider::create_refund`] with a [`Host`] whose every capability is an Extism host function
//! (namespace `extism:host/user`, arguments and answers in JSON, see `refundry-extism-wire`).
//!
//! Exports `create_refund_mfs_africa` and `create_refund_pagoefectivo`: a JSON refund request in,
//! the JSON refund out; a refund error is the call's error, with the error's debug text.
//!
//! SHA-256 and HMAC are computed in wasm (the SDK's `guest-crypto` feature), as an Extism plugin
//! would: a core module cannot take the component `crypto` import.

mod convert;

use extism_pdk::{Error, FnResult, Json, plugin_fn};
use refundry_extism_wire as wire;
use refundry_mfs_africa::MfsAfrica;
use refundry_pagoefectivo::PagoEfectivo;
use refundry_sdk::{Host, Level, Provider, StorageError, http};

/// MFS Africa's `create_refund`.
#[plugin_fn]
pub fn create_refund_mfs_africa(
    Json(req): Json<wire::RefundRequest>,
) -> FnResult<Json<wire::Refund>> {
    create_refund::<MfsAfrica>(req)
}

/// PagoEfectivo's `create_refund`.
#[plugin_fn]
pub fn create_refund_pagoefectivo(
    Json(req): Json<wire::RefundRequest>,
) -> FnResult<Json<wire::Refund>> {
    create_refund::<PagoEfectivo>(req)
}

fn create_refund<P: Provider>(req: wire::RefundRequest) -> FnResult<Json<wire::Refund>> {
    match P::create_refund(&ExtismHost, convert::request(req)) {
        Ok(refund) => Ok(Json(convert::refund(refund))),
        Err(e) => Err(Error::msg(format!("{e:?}")).into()),
    }
}

/// The host functions, as the bench defines them.
mod imports {
    use extism_pdk::{Json, host_fn};
    use refundry_extism_wire as wire;

    #[host_fn]
    extern "ExtismHost" {
        pub fn http_send(
            req: Json<wire::HttpRequest>,
        ) -> Json<Result<wire::HttpResponse, wire::HttpError>>;
        pub fn now_ms() -> i64;
        pub fn config_get(key: &str) -> Json<Option<String>>;
        pub fn storage_get(key: &str) -> Json<Result<Option<String>, wire::StorageError>>;
        pub fn storage_set(key: &str, value: &str) -> Json<Result<(), wire::StorageError>>;
        pub fn storage_delete(key: &str) -> Json<Result<(), wire::StorageError>>;
        pub fn log(line: Json<wire::LogLine>);
    }
}

/// The SDK's [`Host`] over the host functions. A host function that fails (the call itself, not
/// the capability) is the capability's own failure: `transport` for HTTP, `unavailable` for
/// storage, no value for configuration; the clock has none, so that is a panic.
struct ExtismHost;

impl Host for ExtismHost {
    fn http_send(&self, req: http::Request) -> Result<http::Response, http::HttpError> {
        let req = convert::http_request(req)?;
        // SAFETY (this and the calls below): the bench defines every host function with the
        // arguments and answer declared in `imports`.
        match unsafe { imports::http_send(Json(req)) } {
            Ok(Json(answer)) => answer
                .map(convert::http_response)
                .map_err(convert::http_error),
            Err(e) => Err(http::HttpError::Transport(format!("http_send: {e}"))),
        }
    }

    fn now_ms(&self) -> i64 {
        unsafe { imports::now_ms() }.expect("the host's clock answers")
    }

    fn storage_get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match unsafe { imports::storage_get(key) } {
            Ok(Json(answer)) => answer
                .map(|value| value.map(String::into_bytes))
                .map_err(convert::storage_error),
            Err(e) => Err(StorageError::Unavailable(format!("storage_get: {e}"))),
        }
    }

    fn storage_set(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        let value = std::str::from_utf8(value)
            .map_err(|_| StorageError::Unavailable("the value is not UTF-8".into()))?;
        match unsafe { imports::storage_set(key, value) } {
            Ok(Json(answer)) => answer.map_err(convert::storage_error),
            Err(e) => Err(StorageError::Unavailable(format!("storage_set: {e}"))),
        }
    }

    fn storage_delete(&self, key: &str) -> Result<(), StorageError> {
        match unsafe { imports::storage_delete(key) } {
            Ok(Json(answer)) => answer.map_err(convert::storage_error),
            Err(e) => Err(StorageError::Unavailable(format!("storage_delete: {e}"))),
        }
    }

    fn config(&self, key: &str) -> Option<String> {
        unsafe { imports::config_get(key) }.ok()?.0
    }

    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        let line = wire::LogLine {
            level: convert::level(level),
            message: message.to_owned(),
            fields: fields
                .iter()
                .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        };
        // A log line that cannot be written is dropped, as the contract's `log` never fails.
        let _ = unsafe { imports::log(Json(line)) };
    }
}
