//! A plugin operation runs in the linear memory its instance starts with: it never grows it.
//!
//! A memory that grew makes the host shrink the pool slot back (`mprotect`) before the slot's next
//! instance, and on a host with several threads that is a TLB shootdown interrupting every core.
//! The SDK's allocator starts its heap in the free part of the initial memory, which the
//! workspace links at 256 KiB (`.cargo/config.toml`, `HEAP` in `plugin/sdk/src/lib.rs`). With
//! Rust's own wasm allocator, which takes every heap page by growing, this test fails.
//!
//! Needs the plugin components: `cargo xtask build-plugins` (`cargo xtask test` builds them).

#[path = "../benches/common/mod.rs"]
#[allow(dead_code)]
mod common;

use std::path::Path;

use common::{Case, MFS_AFRICA, PAGOEFECTIVO, bind_plugin, created, plugins_dir};

/// What `.cargo/config.toml` links the plugins' initial memory at.
const INITIAL_MEMORY: usize = 256 * 1024;

fn runs_in_its_initial_memory(case: &'static Case) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let file = format!("{}.wasm", case.provider);
    let plugin = rt.block_on(bind_plugin(case, &plugins_dir(&repository), &file));
    let req = case.request();
    // The first call of PagoEfectivo also fetches its token; the second takes it from storage.
    for call in ["first", "second"] {
        let (result, stats) = rt
            .block_on(plugin.create_refund_with_stats(&req))
            .expect("create_refund_with_stats");
        created(call, Ok::<_, ()>(result));
        assert_eq!(
            stats.peak_memory, INITIAL_MEMORY,
            "{}: the {call} create-refund had {} bytes of linear memory, not the initial {}",
            case.provider, stats.peak_memory, INITIAL_MEMORY
        );
    }
}

#[test]
fn a_create_refund_of_mfs_africa_needs_no_memory_grow() {
    runs_in_its_initial_memory(&MFS_AFRICA);
}

#[test]
fn a_create_refund_of_pagoefectivo_needs_no_memory_grow() {
    runs_in_its_initial_memory(&PAGOEFECTIVO);
}
