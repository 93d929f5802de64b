//! Refundry against Extism, the plugin system a Rust gateway would otherwise pick: the same
//! `create-refund` in one criterion run, per provider (`versus_extism/mfs-africa`,
//! `versus_extism/pagoefectivo`), same request, same canned answers, same frozen clock, same
//! settings and secrets.
//!
//! - `fresh_instance`, `warm_instance`, `instance_only`, `fresh_instance_guest_crypto`,
//!   `warm_instance_guest_crypto`, `native`: Refundry's columns, exactly as
//!   `native/benches/create_refund.rs` measures them (the shared `common` module).
//! - `extism_fresh`: a new `extism::Plugin` per call, made with `Plugin::new_from_compiled` from
//!   a `CompiledPlugin` built once (the cheapest instance Extism 1.30 offers: the module is
//!   compiled once, each plugin still links its host functions and instantiates), called, dropped.
//!   Extism is given wasmtime's pooling allocator, as Refundry's engine has.
//! - `extism_reused`: one `extism::Plugin` called again and again (its instance is kept between
//!   calls).
//!
//! The Extism plugin (`bench/extism/plugin`) runs the same provider crates through the same
//! `Provider::create_refund`, with a `Host` whose every capability is an Extism host function
//! defined here: `http_send` answers the canned bodies by path like the native `FakeHost` (no
//! Refundry HTTP policy), `now_ms` the frozen clock, `config_get` the case's settings and secrets,
//! `storage_*` a map kept in the functions' user data (shared by every instance, so PagoEfectivo's
//! token is authorized once before measuring, then cached), `log` drops the line. Arguments and
//! answers are JSON (`refundry-extism-wire`), the request and refund too.
//!
//! An Extism plugin is a core wasm module: it cannot take the component `crypto` import, so its
//! SHA-256 and HMAC are computed in wasm (the SDK's `guest-crypto` feature). The like-for-like
//! comparison is with Refundry's `*_guest_crypto` columns; the other two show what the import
//! adds on top.
//!
//! Every column is called once before measuring and must give the pending 1500.00 refund. Run it
//! with `cargo xtask bench-extism` (builds the components and the Extism plugin first).

#[path = "../../../../native/benches/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use extism::convert::Json;
use extism::{CompiledPlugin, Function, PTR, Plugin, PluginBuilder, UserData, host_fn};
use refundry_extism_wire as wire;
use refundry_mfs_africa::MfsAfrica;
use refundry_pagoefectivo::PagoEfectivo;
use refundry_sdk::Provider;
use tokio::runtime::Runtime;
use wasmtime::{InstanceAllocationStrategy, PoolingAllocationConfig};

use common::{BASE_URL, CONTENT_TYPE, Case, MFS_AFRICA, NOW_MS, PAGOEFECTIVO, RefundryColumns};

/// The repository's root, from this crate's folder (`bench/extism/bench`).
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// The Extism plugin as `cargo xtask bench-extism` builds it: in this workspace's target folder
/// (`$CARGO_TARGET_DIR` when set, as cargo builds there then).
fn extism_plugin_path() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("wasm32-unknown-unknown/plugin/refundry_extism_plugin.wasm")
}

host_fn!(http_send(case: &'static Case; req: Json<wire::HttpRequest>)
    -> Json<Result<wire::HttpResponse, wire::HttpError>> {
    let case: &'static Case = *case.get()?.lock().expect("the case is never poisoned");
    let Json(req) = req;
    let path = req.url.strip_prefix(BASE_URL).unwrap_or(&req.url);
    let path = path.split('?').next().unwrap_or(path);
    let answer = match case.answer(path) {
        Some((status, body)) => Ok(wire::HttpResponse {
            status,
            headers: vec![(CONTENT_TYPE.0.to_owned(), CONTENT_TYPE.1.to_owned())],
            body: String::from_utf8(body.to_vec())?,
        }),
        None => Err(wire::HttpError::ConnectFailed(path.to_owned())),
    };
    Ok(Json(answer))
});

host_fn!(now_ms() -> i64 { Ok(NOW_MS) });

host_fn!(config_get(config: HashMap<String, String>; key: String) -> Json<Option<String>> {
    let config = config.get()?;
    let value = config.lock().expect("the config is never poisoned").get(&key).cloned();
    Ok(Json(value))
});

host_fn!(storage_get(storage: HashMap<String, String>; key: String)
    -> Json<Result<Option<String>, wire::StorageError>> {
    let storage = storage.get()?;
    let value = storage.lock().expect("the storage is never poisoned").get(&key).cloned();
    Ok(Json(Ok::<_, wire::StorageError>(value)))
});

host_fn!(storage_set(storage: HashMap<String, String>; key: String, value: String)
    -> Json<Result<(), wire::StorageError>> {
    let storage = storage.get()?;
    storage.lock().expect("the storage is never poisoned").insert(key, value);
    Ok(Json(Ok::<_, wire::StorageError>(())))
});

host_fn!(storage_delete(storage: HashMap<String, String>; key: String)
    -> Json<Result<(), wire::StorageError>> {
    let storage = storage.get()?;
    storage.lock().expect("the storage is never poisoned").remove(&key);
    Ok(Json(Ok::<_, wire::StorageError>(())))
});

host_fn!(log(_line: Json<wire::LogLine>) { Ok(()) });

/// The Extism plugin compiled once, with `case`'s host functions.
fn compile(case: &'static Case, wasm: &[u8]) -> CompiledPlugin {
    let mut config: HashMap<String, String> = case
        .settings
        .iter()
        .chain(case.secrets)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    config.insert("base_url".into(), BASE_URL.into());
    let storage = UserData::new(HashMap::<String, String>::new());
    let functions = [
        Function::new("http_send", [PTR], [PTR], UserData::new(case), http_send),
        Function::new("now_ms", [], [PTR], UserData::new(()), now_ms),
        Function::new(
            "config_get",
            [PTR],
            [PTR],
            UserData::new(config),
            config_get,
        ),
        Function::new("storage_get", [PTR], [PTR], storage.clone(), storage_get),
        Function::new(
            "storage_set",
            [PTR, PTR],
            [PTR],
            storage.clone(),
            storage_set,
        ),
        Function::new("storage_delete", [PTR], [PTR], storage, storage_delete),
        Function::new("log", [PTR], [], UserData::new(()), log),
    ];
    // The pooling allocator, as Refundry's engine has: a new instance takes a slot instead of
    // mapping its memory (10 to 30 % off `extism_fresh` in a trial; Extism's default is on demand).
    let mut config = wasmtime::Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(
        PoolingAllocationConfig::default(),
    ));
    PluginBuilder::new(wasm)
        .with_wasmtime_config(config)
        .with_functions(functions)
        // Compiled once here, in process: no compilation cache on disk.
        .with_cache_disabled()
        .compile()
        .expect("the Extism plugin compiles")
}

/// [`Case::request`] as the Extism plugin's JSON.
fn wire_request(case: &Case) -> wire::RefundRequest {
    let req = case.request();
    wire::RefundRequest {
        original_transaction_id: req.original_transaction_id,
        external_refund_id: req.external_refund_id,
        amount: wire::Money {
            amount_minor: req.amount.amount_minor,
            currency: req.amount.currency,
        },
        reason: req.reason,
        order_id: req.order_id,
    }
}

/// Checks that an Extism call created the pending refund, so no column can measure an error.
fn extism_created(column: &str, result: Result<Json<wire::Refund>, extism::Error>) {
    match result {
        Ok(Json(refund)) => assert!(
            refund.status == wire::RefundStatus::Pending && refund.amount.amount_minor == 150_000,
            "{column}: unexpected refund {refund:?}"
        ),
        Err(e) => panic!("{column}: create_refund did not succeed: {e:?}"),
    }
}

fn bench_case<P: Provider>(c: &mut Criterion, rt: &Runtime, case: &'static Case, wasm: &[u8]) {
    let refundry = RefundryColumns::<P>::new(rt, case, &common::plugins_dir(&repository()));
    let compiled = compile(case, wasm);
    let export = format!("create_refund_{}", case.provider.replace('-', "_"));
    let input = Json(wire_request(case));
    let call = |plugin: &mut Plugin| plugin.call::<_, Json<wire::Refund>>(&export, &input);

    let mut fresh = || {
        let mut plugin = Plugin::new_from_compiled(&compiled).expect("an Extism plugin");
        call(&mut plugin)
    };
    extism_created("extism_fresh", fresh());
    let mut reused = Plugin::new_from_compiled(&compiled).expect("an Extism plugin");
    extism_created("extism_reused", call(&mut reused));

    let mut group = c.benchmark_group(format!("versus_extism/{}", case.provider));
    refundry.bench(&mut group, rt);
    group.bench_function("extism_fresh", |b| b.iter(&mut fresh));
    group.bench_function("extism_reused", |b| b.iter(|| call(&mut reused)));
    group.finish();
}

fn versus_extism(c: &mut Criterion) {
    let path = extism_plugin_path();
    let wasm = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build it with `cargo xtask bench-extism`",
            path.display()
        )
    });
    println!("Extism plugin (both providers): {} bytes", wasm.len());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    bench_case::<MfsAfrica>(c, &rt, &MFS_AFRICA, &wasm);
    bench_case::<PagoEfectivo>(c, &rt, &PAGOEFECTIVO, &wasm);
}

criterion_group!(benches, versus_extism);
criterion_main!(benches);
