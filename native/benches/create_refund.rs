//! What a `create-refund` costs in the sandbox, with the network faked in-process.
//!
//! One criterion group per provider (`create_refund/mfs-africa`, `create_refund/pagoefectivo`),
//! six columns each, measured in the same run on the same request (1500.00, fixed external id)
//! and the same canned `201` answer from the spec:
//!
//! - `fresh_instance`: [`Plugin::create_refund`], what the service does for every operation:
//!   take a pool slot, instantiate the component, call it, drop the store. Per-operation
//!   isolation (no state can leak between refunds) is paid for here.
//! - `warm_instance`: one instance kept by [`Plugin::warm`] and called again and again. The same
//!   wasm code and host capabilities as `fresh_instance`, without instantiation: what the
//!   plugin's logic costs when compiled to wasm and called across the component boundary.
//! - `instance_only`: a fresh instance made and dropped, no call: the pool slot, the store, the
//!   component's instantiation and the slot's reset. The sandbox's own floor per operation,
//!   whatever the plugin computes; `fresh_instance` is about this plus `warm_instance`.
//! - `native`: the same plugin crate compiled natively, called directly with the SDK's
//!   `FakeHost`. No wasm, no canonical ABI, no host policy: the floor.
//!
//! - `fresh_instance_guest_crypto` and `warm_instance_guest_crypto`: the same two, with the
//!   component built with the SDK's `guest-crypto` feature (`<provider>-guest-crypto.wasm`):
//!   SHA-256 and HMAC computed in wasm instead of by the host's `crypto` import.
//!
//! So `fresh_instance - native` is the sandbox's overhead per operation,
//! `warm_instance / native` is how much slower the logic itself runs as wasm, and
//! `warm_instance_guest_crypto / warm_instance` is what the `crypto` import saves.
//!
//! The HTTP capability runs for real (origin check, header policy, timeout) around a fake
//! `Transport` that answers without I/O; the configured `base_url` is never contacted. After
//! each group, one more operation reports the component's size and the linear memory one
//! operation had (its initial memory included). PagoEfectivo's token is authorized once before
//! measuring and then comes from storage, as the spec wants (SQLite in the host, a map natively).
//! The cases, the fake network and the columns are in `common/`, which the Extism comparison
//! (`bench/extism/`) measures too.
//!
//! Needs the plugin components: `cargo xtask build-plugins`, then
//! `cargo bench -p refundry-native --bench create_refund`.

mod common;

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use refundry_mfs_africa::MfsAfrica;
use refundry_pagoefectivo::PagoEfectivo;
use refundry_runtime::{Plugin, RefundRequest};
use refundry_sdk::Provider;
use tokio::runtime::Runtime;

use common::{Case, MFS_AFRICA, PAGOEFECTIVO, RefundryColumns, created};

fn bench_case<P: Provider>(c: &mut Criterion, rt: &Runtime, case: &'static Case) {
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let columns = RefundryColumns::<P>::new(rt, case, &common::plugins_dir(&repository));
    let mut group = c.benchmark_group(format!("create_refund/{}", case.provider));
    columns.bench(&mut group, rt);
    group.finish();

    report_size_and_memory(rt, case, &columns.plugin, &columns.req);
}

fn create_refund(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    bench_case::<MfsAfrica>(c, &rt, &MFS_AFRICA);
    bench_case::<PagoEfectivo>(c, &rt, &PAGOEFECTIVO);
}

/// What one operation needs: the component's size and the linear memory of one call.
fn report_size_and_memory(rt: &Runtime, case: &Case, plugin: &Plugin, req: &RefundRequest) {
    let (result, stats) = rt
        .block_on(plugin.create_refund_with_stats(req))
        .expect("create_refund_with_stats");
    created("fresh_instance (stats)", Ok::<_, ()>(result));
    let size = plugin.component().size;
    println!(
        "{} component size: {size} bytes ({:.1} KiB); linear memory of one operation: {} KiB",
        case.provider,
        size as f64 / 1024.0,
        stats.peak_memory / 1024
    );
}

criterion_group!(benches, create_refund);
criterion_main!(benches);
