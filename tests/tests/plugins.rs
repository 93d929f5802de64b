//! Plugin versions (hot swap) end to end: the real `refundry serve` as a child process against the
//! MFS Africa sandbox, with its two real plugin versions, `mfs-africa.wasm` (0.2.0) and
//! `mfs-africa-next.wasm` (0.3.0, which names itself in `X-Plugin-Version`; the sandbox records
//! that header per refund, so the sandbox tells which version really sent a request).
//!
//! Swapping under load, pinning a refund to the version that created it, restarts (the same
//! versions and active one, from the artifact cache), bad uploads (refused, nothing changed),
//! damaged artifacts (rebuilt), the watched folder and the CLI.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use refundry_tests::plugin_path;
use refundry_tests::service::{
    MFS, Options, PE, Reply, Service, expect, mfs_body, pe_body, run_refundry, str_of as s,
    wait_for, wait_until,
};
use serde_json::{Value, json};

/// Generous: debug builds on a busy 2-core machine.
const T: Duration = Duration::from_secs(30);

/// `mfs-africa.wasm`'s version.
const V1: &str = "0.2.0";
/// `mfs-africa-next.wasm`'s version.
const V2: &str = "0.3.0";

/// The bytes of a built component (`cargo xtask build-plugins`).
fn component(name: &str) -> Vec<u8> {
    std::fs::read(plugin_path(name)).unwrap()
}

/// A provider's entry in a `GET /v1/plugins` answer.
fn provider<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["providers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["provider"] == id))
        .unwrap_or_else(|| panic!("no provider {id} in {list}"))
}

/// The versions a provider has loaded, in the order listed.
fn versions(list: &Value, id: &str) -> Vec<String> {
    provider(list, id)["versions"]
        .as_array()
        .unwrap_or_else(|| panic!("no versions array for {id} in {list}"))
        .iter()
        .map(|v| s(&v["version"]).to_owned())
        .collect()
}

/// One loaded version's entry.
fn version<'a>(list: &'a Value, id: &str, version: &str) -> &'a Value {
    provider(list, id)["versions"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["version"] == version))
        .unwrap_or_else(|| panic!("{id} has no version {version} in {list}"))
}

/// A `GET /v1/plugins` answer without what may differ between two processes holding the same
/// versions (`loaded_from`, `load_ms`), for comparing across a restart.
fn stable(list: &Value) -> Value {
    let mut list = list.clone();
    for p in list["providers"].as_array_mut().unwrap() {
        for v in p["versions"].as_array_mut().unwrap() {
            let v = v.as_object_mut().unwrap();
            assert!(v.remove("loaded_from").is_some(), "loaded_from missing");
            assert!(v.remove("load_ms").is_some(), "load_ms missing");
        }
    }
    list
}

/// Every version's `loaded_from`, as `provider version -> how`.
fn loaded_from(list: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for p in list["providers"].as_array().unwrap() {
        for v in p["versions"].as_array().unwrap() {
            out.insert(
                format!("{} {}", s(&p["provider"]), s(&v["version"])),
                s(&v["loaded_from"]).to_owned(),
            );
        }
    }
    out
}

/// Asserts that every loaded version came to this process by way of `how`.
fn assert_all_loaded_from(list: &Value, how: &str) {
    let all = loaded_from(list);
    assert!(
        all.values().all(|h| h == how),
        "every version should be loaded from {how}: {all:?}"
    );
}

/// The `.cwasm` files of the artifact cache, sorted.
fn artifacts(service: &Service) -> Vec<PathBuf> {
    let dir = service.plugin_cache_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    files.sort();
    files
}

/// The key the (stopped) service's ledger authenticates its artifacts with.
async fn ledger_artifact_key(service: &Service) -> refundry_service::registry::ArtifactKey {
    let db = refundry_ledger::db::Database::open(Some(&service.db_path())).unwrap();
    refundry_service::registry::artifact_key(&db).await.unwrap()
}

/// The SHA-256 of the component an artifact file is named after (`<sha256>-<engine key>.cwasm`).
fn component_sha256(artifact: &Path) -> String {
    let name = artifact.file_stem().unwrap().to_str().unwrap();
    name.split('-').next().unwrap().to_owned()
}

/// The value of header `name` in an exchange's request headers (`[[name, value], ...]`).
fn request_header(exchange: &Value, name: &str) -> Option<String> {
    exchange["request_headers"]
        .as_array()
        .unwrap_or_else(|| panic!("no request_headers in {exchange}"))
        .iter()
        .find(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .map(|h| s(&h[1]).to_owned())
}

/// The `X-Plugin-Version` header of the last `get-refund` exchange of refund `id` (the janitor's
/// last check): `None` when that request had none, as version 0.2.0 sends none.
async fn last_check_header(service: &Service, id: &str) -> Option<String> {
    let log = service.exchanges(id).await;
    let checks: Vec<&Value> = log
        .as_array()
        .unwrap_or_else(|| panic!("exchanges of {id} are not an array: {log}"))
        .iter()
        .filter(|e| e["operation"] == "get-refund")
        .collect();
    let last = checks
        .last()
        .unwrap_or_else(|| panic!("no get-refund exchange for {id}: {log}"));
    request_header(last, "x-plugin-version")
}

/// The header the sandbox saw on the request that created a refund, for the version the ledger
/// recorded: 0.3.0 sends `X-Plugin-Version: 0.3.0`, 0.2.0 sends none.
fn header_of(version: &str) -> Option<String> {
    match version {
        V1 => None,
        V2 => Some(V2.to_owned()),
        other => panic!("unexpected plugin version {other}"),
    }
}

/// The janitor's applied history entry moving a refund to `to`.
fn janitor_entry<'a>(refund: &'a Value, to: &str) -> &'a Value {
    refund["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["source"] == "janitor" && h["to"] == to && h["applied"] == true)
        .unwrap_or_else(|| panic!("no applied janitor move to {to}: {refund}"))
}

/// Loads `mfs-africa-next.wasm` (0.3.0) through the API; asserts it is new and not active.
async fn load_next(service: &Service) -> Value {
    let reply = service.load_plugin(MFS, component("mfs-africa-next")).await;
    expect(&reply, 201, "load mfs-africa-next");
    assert_eq!(reply.body["version"], V2, "{}", reply.text);
    assert_eq!(reply.body["new"], true, "{}", reply.text);
    assert_eq!(reply.body["active"], false, "loading does not activate");
    reply.body
}

/// Activates `to` and asserts the answer (the version before was `from`).
async fn activate(service: &Service, to: &str, from: &str) {
    let reply = service.activate_plugin(MFS, to).await;
    expect(&reply, 200, &format!("activate {to}"));
    assert_eq!(
        reply.body,
        json!({"provider": MFS, "active": to, "previous": from}),
        "activate {to}"
    );
}

/// Creates an MFS Africa refund; asserts 201 and returns the answer's refund.
async fn create(service: &Service, txn: &str, key: &str) -> Value {
    let reply = service.post_refund(&mfs_body(txn, key, 1_000)).await;
    expect(&reply, 201, &format!("create {key}"));
    reply.body
}

/// A load of concurrent refunds while the active version is switched back and forth 100 times:
/// no request fails, and each refund records the version the provider saw sending it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_under_load_fails_nothing_and_records_the_version_that_served() {
    const WORKERS: usize = 8;
    const REFUNDS: usize = 320;
    const SWAPS: usize = 100;
    // No janitor checks during the test: the load is the creates and the swaps alone.
    let service = Arc::new(
        Service::start_with(Options {
            janitor_backoff_ms: vec![600_000],
            ..Options::default()
        })
        .await,
    );
    for w in 0..WORKERS {
        service
            .mfs
            .seed(&format!("swap-txn-{w}"), "1000000.00", "KES", 1, true)
            .await;
    }
    load_next(&service).await;
    let listed = service.plugins().await;
    let sha: HashMap<String, String> = [V1, V2]
        .iter()
        .map(|v| {
            (
                v.to_string(),
                s(&version(&listed, MFS, v)["sha256"]).to_owned(),
            )
        })
        .collect();

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let swapping = Arc::new(AtomicBool::new(true));
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(0usize);
    let done_tx = Arc::new(done_tx);
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (service, next, done_tx) = (service.clone(), next.clone(), done_tx.clone());
        let swapping = swapping.clone();
        workers.push(tokio::spawn(async move {
            let mut answers: Vec<(usize, Reply)> = Vec::new();
            // At least REFUNDS refunds, and creating until the last swap is done: every swap
            // happens while refunds are being created.
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= REFUNDS && !swapping.load(Ordering::SeqCst) {
                    return answers;
                }
                let txn = format!("swap-txn-{w}");
                let body = mfs_body(&txn, &format!("swap-{i}"), 100 + i as i64);
                answers.push((i, service.post_refund(&body).await));
                done_tx.send_modify(|d| *d += 1);
            }
        }));
    }
    // Swap k waits for k * REFUNDS / SWAPS answers, which spreads the swaps over the load when
    // activating is quicker than creating (else they simply follow one another).
    let swapper = {
        let service = service.clone();
        tokio::spawn(async move {
            let mut answered_at = Vec::new();
            for k in 0..SWAPS {
                let target = k * REFUNDS / SWAPS;
                answered_at.push(*done_rx.wait_for(|d| *d >= target).await.unwrap());
                let (to, from) = if k % 2 == 0 { (V2, V1) } else { (V1, V2) };
                let reply = service.activate_plugin(MFS, to).await;
                assert_eq!(
                    (reply.status, &reply.body),
                    (
                        200,
                        &json!({"provider": MFS, "active": to, "previous": from})
                    ),
                    "swap {k} to {to}: {}",
                    reply.text
                );
            }
            swapping.store(false, Ordering::SeqCst);
            answered_at
        })
    };
    let answered_at = swapper.await.expect("the swapper panicked");
    let mut answers: Vec<(usize, Reply)> = Vec::new();
    for w in workers {
        answers.extend(w.await.expect("a load worker panicked"));
    }
    let elapsed = started.elapsed();
    assert!(answers.len() >= REFUNDS, "{}", answers.len());
    let total = answers.len();

    // Zero failed requests: each create answered 201, as it does without swapping.
    let failed: Vec<String> = answers
        .iter()
        .filter(|(_, r)| r.status != 201)
        .map(|(i, r)| format!("swap-{i}: {} {}", r.status, r.text))
        .collect();
    assert!(failed.is_empty(), "{} failed: {failed:#?}", failed.len());
    // 100 swaps from 0.2.0: back on 0.2.0.
    assert_eq!(provider(&service.plugins().await, MFS)["active"], V1);

    // Each refund's recorded version is the one that sent its request.
    let at_sandbox: HashMap<String, Option<String>> = service
        .mfs_refunds()
        .await
        .iter()
        .map(|r| {
            (
                s(&r["refund_id"]).to_owned(),
                r["created_by_plugin_version"].as_str().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(at_sandbox.len(), total, "one provider refund per request");
    let ledger: HashMap<String, Value> = service
        .list_all("provider=mfs-africa", 100)
        .await
        .into_iter()
        .map(|r| (s(&r["id"]).to_owned(), r))
        .collect();
    assert_eq!(ledger.len(), total);
    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    for (i, reply) in &answers {
        let refund = &reply.body;
        let recorded = s(&refund["plugin_version"]);
        let stored = &ledger[s(&refund["id"])];
        assert_eq!(stored["plugin_version"], recorded, "swap-{i}: {stored}");
        assert_eq!(stored["plugin_sha256"], refund["plugin_sha256"]);
        assert_eq!(
            s(&refund["plugin_sha256"]),
            sha[recorded],
            "swap-{i}: the hash is the recorded version's"
        );
        let pid = s(&refund["provider_refund_id"]);
        assert_eq!(
            at_sandbox[pid],
            header_of(recorded),
            "swap-{i} ({pid}) recorded {recorded} but the sandbox saw another version"
        );
        *served.entry(recorded.to_owned()).or_default() += 1;
    }
    assert!(
        served.get(V1).is_some_and(|&n| n > 0) && served.get(V2).is_some_and(|&n| n > 0),
        "both versions must have served refunds: {served:?}"
    );
    eprintln!(
        "swap under load: {total} refunds by {WORKERS} workers and {SWAPS} swaps in {elapsed:?}; \
         served {served:?}; answers before swaps 1, 50, 100: {}, {}, {}",
        answered_at[0], answered_at[49], answered_at[99]
    );
}

/// A refund's status checks go to the version that created it while that is
/// loaded, else to the active one, and each history entry names the version that made it.
#[tokio::test]
async fn refund_checks_are_pinned_to_the_creating_version_while_it_is_loaded() {
    // Only the janitor learns of status changes (no webhooks), and it looks often.
    let service = Service::start_with(Options {
        webhooks_to_service: false,
        janitor_backoff_ms: vec![100, 200],
        ..Options::default()
    })
    .await;
    service.mfs.seed("pin-txn", "500.00", "KES", 1, true).await;
    load_next(&service).await;

    // Created on 0.2.0, left pending; then 0.3.0 becomes active, and the sandbox processes it.
    let a = create(&service, "pin-txn", "pin-a").await;
    assert_eq!(a["plugin_version"], V1);
    assert_eq!(a["status"], "pending");
    let a_pid = s(&a["provider_refund_id"]).to_owned();
    assert_eq!(service.mfs.created_by_plugin_version(&a_pid).await, None);
    activate(&service, V2, V1).await;
    service
        .mfs
        .control(
            &format!("refunds/{a_pid}/status"),
            json!({"status": "processed"}),
        )
        .await;
    let done = service.wait_status(s(&a["id"]), "processed", T).await;
    assert_eq!(
        janitor_entry(&done, "processed")["plugin_version"],
        V1,
        "checked while 0.2.0 is loaded: 0.2.0 must check it: {done}"
    );
    // The request itself came from 0.2.0, not from the active 0.3.0.
    assert_eq!(last_check_header(&service, s(&a["id"])).await, None);
    assert_eq!(versions(&service.plugins().await, MFS), [V1, V2]);

    // Created on 0.2.0, which is then removed: the active 0.3.0 takes over its checks.
    activate(&service, V1, V2).await;
    let b = create(&service, "pin-txn", "pin-b").await;
    assert_eq!(b["plugin_version"], V1);
    let b_pid = s(&b["provider_refund_id"]).to_owned();
    activate(&service, V2, V1).await;
    let v1_artifacts = artifacts(&service).len();
    let removed = service.remove_plugin(MFS, V1).await;
    expect(&removed, 204, "remove 0.2.0");
    let listed = service.plugins().await;
    assert_eq!(versions(&listed, MFS), [V2]);
    assert_eq!(provider(&listed, MFS)["active"], V2);
    assert_eq!(
        artifacts(&service).len(),
        v1_artifacts - 1,
        "the removed version's artifact stays"
    );
    service
        .mfs
        .control(
            &format!("refunds/{b_pid}/status"),
            json!({"status": "processed"}),
        )
        .await;
    let done = service.wait_status(s(&b["id"]), "processed", T).await;
    assert_eq!(
        janitor_entry(&done, "processed")["plugin_version"],
        V2,
        "0.2.0 is gone: the active 0.3.0 must check it: {done}"
    );
    assert_eq!(
        last_check_header(&service, s(&b["id"])).await.as_deref(),
        Some(V2)
    );
    // The refund keeps the version that created it.
    assert_eq!(done["plugin_version"], V1);
    assert_eq!(done["provider_status"], "processed");
}

/// Pinning covers re-sends too: a refund left `unknown` by 0.2.0 (its request lost on the way
/// to the provider), then 0.3.0 activated (and 0.2.0 removed when `remove_v1`), then the
/// provider reachable again: the janitor finds nothing there and re-sends. Returns the header
/// the sandbox saw on the re-sent request, and the refund once pending.
async fn resend_after_a_swap(remove_v1: bool) -> (Option<String>, Value) {
    let service = Service::start_with(Options {
        mfs_proxy: true,
        webhooks_to_service: false,
        janitor_backoff_ms: vec![100, 200],
        ..Options::default()
    })
    .await;
    service.mfs.seed("rsd-txn", "500.00", "KES", 1, true).await;
    load_next(&service).await;
    // Dropping before the first request: no pooled connection slips past the proxy.
    let proxy = service.mfs_proxy.as_ref().unwrap();
    proxy.set_dropping(true);
    let reply = service
        .post_refund(&mfs_body("rsd-txn", "rsd-1", 1_000))
        .await;
    expect(&reply, 202, "sent, no answer");
    assert_eq!(reply.body["status"], "unknown");
    assert_eq!(reply.body["plugin_version"], V1);
    assert!(proxy.dropped() >= 1);
    activate(&service, V2, V1).await;
    if remove_v1 {
        expect(&service.remove_plugin(MFS, V1).await, 204, "remove 0.2.0");
    }
    proxy.set_dropping(false);
    let pending = service
        .wait_status(s(&reply.body["id"]), "pending", T)
        .await;
    let at_sandbox = service.mfs_refunds().await;
    assert_eq!(at_sandbox.len(), 1, "one provider refund: {at_sandbox:?}");
    assert_eq!(pending["provider_refund_id"], at_sandbox[0]["refund_id"]);
    let header = at_sandbox[0]["created_by_plugin_version"]
        .as_str()
        .map(str::to_owned);
    (header, pending)
}

/// A re-send goes to the version that created the refund while it is loaded.
#[tokio::test]
async fn resend_of_an_unknown_refund_is_pinned_to_its_version() {
    let (header, pending) = resend_after_a_swap(false).await;
    assert_eq!(
        header, None,
        "0.2.0 is loaded: it must re-send what it created"
    );
    assert_eq!(janitor_entry(&pending, "pending")["plugin_version"], V1);
}

/// A re-send goes to the active version once the creating one is removed.
#[tokio::test]
async fn resend_of_an_unknown_refund_uses_the_active_version_once_its_own_is_gone() {
    let (header, pending) = resend_after_a_swap(true).await;
    assert_eq!(
        header.as_deref(),
        Some(V2),
        "the active 0.3.0 must re-send it"
    );
    assert_eq!(janitor_entry(&pending, "pending")["plugin_version"], V2);
    assert_eq!(
        pending["plugin_version"], V1,
        "the refund keeps its creator"
    );
}

/// A restart (kill -9, then a graceful one) loads the same versions and the same
/// active one, from the artifact cache, and new refunds go to the active version.
#[tokio::test]
async fn restart_keeps_versions_and_the_active_one_and_uses_the_cache() {
    let mut service = Service::start().await;
    service.mfs.seed("rs-txn", "500.00", "KES", 1, true).await;
    let first = service.plugins().await;
    assert_all_loaded_from(&first, "compiled");
    let loaded = load_next(&service).await;
    assert_eq!(loaded["loaded_from"], "compiled");
    activate(&service, V2, V1).await;
    let before = service.plugins().await;
    assert_eq!(versions(&before, MFS), [V1, V2]);
    let cached = artifacts(&service);
    assert_eq!(cached.len(), 3, "one artifact per component: {cached:?}");
    for v in [V1, V2] {
        let sha = s(&version(&before, MFS, v)["sha256"]);
        assert!(
            cached.iter().any(|p| p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{sha}-"))),
            "no artifact named by {v}'s hash {sha}: {cached:?}"
        );
    }
    let stamps = |files: &[PathBuf]| -> Vec<(PathBuf, std::time::SystemTime)> {
        files
            .iter()
            .map(|f| (f.clone(), f.metadata().unwrap().modified().unwrap()))
            .collect()
    };
    let cached_stamps = stamps(&cached);

    for (n, graceful) in [(1, false), (2, true)] {
        if graceful {
            service.stop().await;
        } else {
            service.kill_9().await;
        }
        service.restart().await;
        let after = service.plugins().await;
        assert_eq!(stable(&after), stable(&before), "restart {n}");
        assert_eq!(provider(&after, MFS)["active"], V2, "restart {n}");
        assert_all_loaded_from(&after, "cache");
        assert_eq!(
            stamps(&artifacts(&service)),
            cached_stamps,
            "restart {n} rewrote an artifact"
        );
        let refund = create(&service, "rs-txn", &format!("rs-{n}")).await;
        assert_eq!(refund["plugin_version"], V2, "restart {n}");
        let pid = s(&refund["provider_refund_id"]);
        assert_eq!(
            service.mfs.created_by_plugin_version(pid).await.as_deref(),
            Some(V2),
            "restart {n}: the sandbox must see 0.3.0"
        );
    }
}

/// Removing the configured version (`plugin = "mfs-africa.wasm"`, 0.2.0) with 0.3.0 active, then
/// restarting, keeps it removed and 0.3.0 active: a start applies the configured file only when
/// it changed (a deploy), so a restart loads the same versions and the same active one.
#[tokio::test]
async fn restart_after_removing_the_configured_version_keeps_the_active_one() {
    let mut service = Service::start().await;
    load_next(&service).await;
    activate(&service, V2, V1).await;
    expect(&service.remove_plugin(MFS, V1).await, 204, "remove 0.2.0");
    let before = service.plugins().await;
    assert_eq!(versions(&before, MFS), [V2]);
    service.restart().await;
    let after = service.plugins().await;
    assert_eq!(
        (versions(&after, MFS), &provider(&after, MFS)["active"]),
        (vec![V2.to_owned()], &json!(V2)),
        "the restart changed the versions or the active one: {after}"
    );
    assert_eq!(stable(&after), stable(&before));
}

/// A deploy: the configured file changed while the service was down. The restart loads it and
/// makes it active, keeping the earlier version loaded for rollback; a second restart with the
/// same file keeps an admin's rollback.
#[tokio::test]
async fn restart_with_another_configured_file_activates_it() {
    let mut service = Service::start().await;
    service.kill_9().await;
    let config = std::fs::read_to_string(service.config_path()).unwrap();
    let next = plugin_path("mfs-africa-next").display().to_string();
    let old = plugin_path(MFS).display().to_string();
    let deployed = config.replace(&format!("{old:?}"), &format!("{next:?}"));
    assert_ne!(deployed, config, "the config names {old}");
    std::fs::write(service.config_path(), deployed).unwrap();
    service.restart().await;
    let after = service.plugins().await;
    assert_eq!(versions(&after, MFS), [V1, V2]);
    assert_eq!(provider(&after, MFS)["active"], V2, "{after}");
    activate(&service, V1, V2).await;
    service.restart().await;
    let again = service.plugins().await;
    assert_eq!(
        provider(&again, MFS)["active"],
        V1,
        "the rollback was undone: {again}"
    );
}

/// Appends a custom section (`name`, `payload`) to a component: the same code under another hash.
fn with_custom_section(mut bytes: Vec<u8>, name: &str, payload: &[u8]) -> Vec<u8> {
    let size = 1 + name.len() + payload.len();
    assert!(size < 128 && name.len() < 128, "one-byte LEB128 sizes only");
    bytes.push(0); // custom section id
    bytes.push(size as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name.as_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// Every bad upload is refused with its code and leaves the registry as it was;
/// the same component twice is no change.
#[tokio::test]
async fn bad_uploads_are_refused_and_change_nothing() {
    let mut service = Service::start().await;
    let v1 = component("mfs-africa");
    let before = service.plugins().await;
    assert_eq!(versions(&before, MFS), [V1]);

    // The same code with another hash: a valid component, claiming the loaded 0.2.0.
    let twin = with_custom_section(v1.clone(), "refundry-test", b"another build");
    let engine = refundry_runtime::engine::Engine::new(Default::default()).unwrap();
    refundry_runtime::component::PluginComponent::compile(&engine, &twin)
        .expect("a component with one more custom section is still a valid plugin");
    // A component's contract is the provider interface it exports: this one claims 0.2.0 and
    // reaches for WASI besides; without the export it would be no plugin of any contract.
    let wasi_import = r#"(import "wasi:cli/environment@0.2.0" (instance
                (export "get-arguments" (func (result (list string))))))"#;
    let forbidden = wat::parse_str(format!(
        r#"(component {wasi_import}
            (instance $provider)
            (export "refundry:provider/provider@0.2.0" (instance $provider)))"#
    ))
    .unwrap();
    let no_provider = wat::parse_str(format!("(component {wasi_import})")).unwrap();
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "junk bytes",
            MFS,
            b"this is not a component".to_vec(),
            422,
            "not_a_component",
        ),
        (
            "a core module",
            MFS,
            wat::parse_str("(module)").unwrap(),
            422,
            "not_a_component",
        ),
        ("a WASI import", MFS, forbidden, 422, "forbidden_import"),
        (
            "a WASI import and no provider export",
            MFS,
            no_provider,
            422,
            "contract_mismatch",
        ),
        (
            "an empty component",
            MFS,
            wat::parse_str("(component)").unwrap(),
            422,
            "contract_mismatch",
        ),
        (
            "describe() traps",
            MFS,
            component("hostile-trap-describe"),
            422,
            "describe_failed",
        ),
        (
            "PagoEfectivo as MFS Africa",
            MFS,
            component("pagoefectivo"),
            422,
            "provider_mismatch",
        ),
        ("another 0.2.0", MFS, twin.clone(), 409, "version_conflict"),
        (
            "an unknown provider",
            "nope",
            v1.clone(),
            404,
            "unknown_provider",
        ),
    ];
    for (what, to, bytes, status, code) in cases {
        let reply = service.load_plugin(to, bytes).await;
        expect(&reply, status, what);
        assert_eq!(reply.error_code(), code, "{what}: {}", reply.text);
        assert_eq!(
            service.plugins().await,
            before,
            "{what} changed the registry"
        );
    }
    // The conflict names both hashes.
    let offered_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&twin));
    let conflict = service.load_plugin(MFS, twin).await;
    let loaded_sha = s(&version(&before, MFS, V1)["sha256"]);
    for sha in [loaded_sha, offered_sha.as_str()] {
        assert!(
            conflict.text.contains(sha),
            "the conflict should name {sha}: {}",
            conflict.text
        );
    }

    // Not a body, not allowed, not there, still active.
    let empty = service.load_plugin(MFS, Vec::new()).await;
    expect(&empty, 400, "an empty body");
    let no_admin = service
        .try_send(
            reqwest::Method::POST,
            "/v1/plugins/mfs-africa/versions",
            Some(&service.gateway_token),
            Some(component("mfs-africa-next")),
            &[("content-type", "application/wasm")],
        )
        .await
        .unwrap();
    expect(&no_admin, 403, "a token without scope admin");
    let changes: Vec<(&str, Reply, u16, &str)> = vec![
        (
            "activate an unknown version",
            service.activate_plugin(MFS, "9.9.9").await,
            404,
            "unknown_version",
        ),
        (
            "activate at an unknown provider",
            service.activate_plugin("nope", V1).await,
            404,
            "unknown_provider",
        ),
        (
            "remove the active version",
            service.remove_plugin(MFS, V1).await,
            409,
            "version_active",
        ),
        (
            "remove an unknown version",
            service.remove_plugin(MFS, "9.9.9").await,
            404,
            "unknown_version",
        ),
    ];
    for (what, reply, status, code) in changes {
        expect(&reply, status, what);
        assert_eq!(reply.error_code(), code, "{what}: {}", reply.text);
    }
    assert_eq!(
        service.plugins().await,
        before,
        "a refused change changed the registry"
    );
    // Nor did a refused component leave an artifact: one per loaded version (mfs-africa 0.2.0,
    // pagoefectivo), however many uploads were compiled.
    assert_eq!(artifacts(&service).len(), 2, "{:?}", artifacts(&service));

    // The configured component again: already loaded, nothing changes.
    let again = service.load_plugin(MFS, v1).await;
    expect(&again, 200, "the loaded component again");
    assert_eq!(again.body["new"], false);
    assert_eq!(again.body["version"], V1);
    assert_eq!(again.body["active"], true);
    assert_eq!(service.plugins().await, before);
    // A new one, then the same again: 201, then 200 with nothing changed.
    load_next(&service).await;
    let with_next = service.plugins().await;
    assert_eq!(versions(&with_next, MFS), [V1, V2]);
    let again = service.load_plugin(MFS, component("mfs-africa-next")).await;
    expect(&again, 200, "mfs-africa-next again");
    assert_eq!(again.body["new"], false);
    assert_eq!(again.body["active"], false);
    assert_eq!(service.plugins().await, with_next);

    // The ledger kept nothing of the refusals either.
    service.restart().await;
    assert_eq!(stable(&service.plugins().await), stable(&with_next));
}

/// The byte range of the ELF64 (little-endian) section `name` in `elf`, if it has one.
fn elf_section(elf: &[u8], name: &str) -> Option<std::ops::Range<usize>> {
    let bytes = |at: usize, n: usize| elf.get(at..at + n);
    let u16_at = |at| Some(u16::from_le_bytes(bytes(at, 2)?.try_into().ok()?) as usize);
    let u32_at = |at| Some(u32::from_le_bytes(bytes(at, 4)?.try_into().ok()?) as usize);
    let u64_at = |at| Some(u64::from_le_bytes(bytes(at, 8)?.try_into().ok()?) as usize);
    // ELF header: e_shoff at 0x28, e_shentsize, e_shnum, e_shstrndx at 0x3a.. (ELF64).
    let (shoff, entsize, count) = (u64_at(0x28)?, u16_at(0x3a)?, u16_at(0x3c)?);
    let header = |i: usize| shoff + i * entsize;
    // Section header: sh_name at 0, sh_offset at 0x18, sh_size at 0x20.
    let names = u64_at(header(u16_at(0x3e)?) + 0x18)?;
    (0..count).find_map(|i| {
        let at = names + u32_at(header(i))?;
        let len = elf.get(at..)?.iter().position(|&b| b == 0)?;
        (&elf[at..at + len] == name.as_bytes()).then_some(())?;
        let offset = u64_at(header(i) + 0x18)?;
        Some(offset..offset + u64_at(header(i) + 0x20)?)
    })
}

/// `artifact` (a valid wasmtime artifact of this build, unframed) as another wasmtime release
/// would have made it: the version in its `.wasmtime.engine` section (a format byte, then the
/// length-prefixed version, e.g. `48`) bumped, same length. `None` when the layout is not that.
fn as_from_another_wasmtime(artifact: &[u8]) -> Option<Vec<u8>> {
    let engine = elf_section(artifact, ".wasmtime.engine")?;
    let len = usize::from(*artifact.get(engine.start + 1)?);
    let version = engine.start + 2..engine.start + 2 + len;
    let digits = artifact.get(version.clone())?;
    if len == 0 || version.end > engine.end || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut other = artifact.to_vec();
    let last = version.end - 1;
    other[last] = if other[last] == b'9' {
        b'0'
    } else {
        other[last] + 1
    };
    Some(other)
}

/// Damaged artifacts (a flipped byte, a truncation, one made by another wasmtime)
/// are rejected and rebuilt from the components in the ledger, and the rebuilt ones are used
/// at the next start.
#[tokio::test]
async fn damaged_or_foreign_artifacts_are_rebuilt() {
    let mut service = Service::start().await;
    service.mfs.seed("art-txn", "500.00", "KES", 1, true).await;
    service.pe.seed("art-pe", "500.00", "PEN", 1, true).await;
    load_next(&service).await;
    service.kill_9().await;
    let files = artifacts(&service);
    assert_eq!(files.len(), 3, "{files:?}");
    let key = ledger_artifact_key(&service).await;
    let mut damage = Vec::new();
    for (n, path) in files.iter().enumerate() {
        let mut bytes = std::fs::read(path).unwrap();
        // What was done, and what the host's rejection must say.
        let how = match n {
            0 => {
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x5a;
                ("a flipped byte", "corrupted")
            }
            1 => {
                bytes.truncate(bytes.len() / 2);
                ("truncated", "corrupted")
            }
            _ => {
                let header = refundry_service::registry::cache::HEADER_LEN;
                let foreign = as_from_another_wasmtime(&bytes[header..]).expect(
                    "the artifact's .wasmtime.engine section is not laid out as this test \
                     expects (a wasmtime upgrade?): update as_from_another_wasmtime",
                );
                // Framed with the ledger's key: authentic, so what rejects it is the engine check.
                bytes = refundry_service::registry::cache::frame(
                    &key,
                    &component_sha256(path),
                    &foreign,
                );
                ("made by another wasmtime", "made for another engine")
            }
        };
        std::fs::write(path, &bytes).unwrap();
        damage.push((path.clone(), how, bytes));
    }
    service.restart().await;
    let listed = service.plugins().await;
    assert_all_loaded_from(&listed, "rebuilt");
    for (path, (how, _), bad) in &damage {
        let now = std::fs::read(path).unwrap();
        assert_ne!(&now, bad, "{how}: the artifact was not rewritten");
        let magic = refundry_service::registry::cache::MAGIC;
        assert!(now.starts_with(magic), "{how}: not a framed artifact");
    }
    let logs = service.logs();
    let rejections: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("precompiled plugin artifact rejected"))
        .collect();
    assert_eq!(
        rejections.len(),
        3,
        "one rejection per artifact: {rejections:#?}"
    );
    for (path, (how, reason), _) in &damage {
        let file = path.file_name().unwrap().to_string_lossy();
        assert!(
            rejections
                .iter()
                .any(|l| l.contains(file.as_ref()) && l.contains(reason)),
            "{how}: no rejection of {file} saying {reason:?}: {rejections:#?}"
        );
    }

    // Refunds work on the rebuilt code, at both providers and both MFS Africa versions.
    create(&service, "art-txn", "art-1").await;
    activate(&service, V2, V1).await;
    let refund = create(&service, "art-txn", "art-2").await;
    assert_eq!(refund["plugin_version"], V2);
    let reply = service
        .post_refund(&pe_body("art-pe", "art-pe-1", 1_000))
        .await;
    expect(&reply, 201, "PagoEfectivo create");

    service.restart().await;
    assert_all_loaded_from(&service.plugins().await, "cache");
}

/// The artifact cache does not trust a file's name: with the artifacts of 0.2.0 and 0.3.0
/// exchanged (each a valid artifact of this engine, under the other component's name), a
/// restart would run one version's code under the other's name. The frame names the component
/// it was built from, so both are rejected and rebuilt.
#[tokio::test]
async fn artifact_under_another_components_name_is_rebuilt() {
    let mut service = Service::start().await;
    load_next(&service).await;
    let before = service.plugins().await;
    service.kill_9().await;
    let file_of = |v: &str| {
        let sha = s(&version(&before, MFS, v)["sha256"]).to_owned();
        artifacts(&service)
            .into_iter()
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&sha))
            .unwrap_or_else(|| panic!("no artifact for {v}"))
    };
    let (one, two) = (file_of(V1), file_of(V2));
    let (one_bytes, two_bytes) = (std::fs::read(&one).unwrap(), std::fs::read(&two).unwrap());
    std::fs::write(&one, &two_bytes).unwrap();
    std::fs::write(&two, &one_bytes).unwrap();
    service.restart().await;
    let after = service.plugins().await;
    assert_eq!(
        stable(&after),
        stable(&before),
        "each version must keep its own hash and code"
    );
    assert_eq!(version(&after, MFS, V1)["loaded_from"], "rebuilt");
    assert_eq!(version(&after, MFS, V2)["loaded_from"], "rebuilt");
}

/// One with write access to the cache folder, but not the ledger, takes 0.3.0's artifact,
/// re-frames it as built from 0.2.0 (its hash) with every unkeyed digest recomputed, and puts it
/// under 0.2.0's name. Without the ledger's key its tag cannot be made: it is rejected and 0.2.0
/// is rebuilt from its own component, so 0.3.0's code never runs as 0.2.0.
#[tokio::test]
async fn reframed_artifact_with_a_recomputed_digest_is_rejected() {
    use sha2::Digest;
    let mut service = Service::start().await;
    load_next(&service).await;
    let before = service.plugins().await;
    service.kill_9().await;
    let sha_of = |v: &str| s(&version(&before, MFS, v)["sha256"]).to_owned();
    let file_of = |v: &str| {
        let sha = sha_of(v);
        artifacts(&service)
            .into_iter()
            .find(|p| component_sha256(p) == sha)
            .unwrap_or_else(|| panic!("no artifact for {v}"))
    };
    let (one, two) = (file_of(V1), file_of(V2));
    let header = refundry_service::registry::cache::HEADER_LEN;
    let code_of_two = std::fs::read(&two).unwrap()[header..].to_vec();
    let mut forged = refundry_service::registry::cache::MAGIC.to_vec();
    forged.extend_from_slice(&hex::decode(sha_of(V1)).unwrap());
    forged.extend_from_slice(&sha2::Sha256::digest(&code_of_two));
    forged.extend_from_slice(&code_of_two);
    std::fs::write(&one, &forged).unwrap();
    service.restart().await;
    let after = service.plugins().await;
    assert_eq!(stable(&after), stable(&before));
    assert_eq!(version(&after, MFS, V1)["loaded_from"], "rebuilt");
    assert_eq!(version(&after, MFS, V2)["loaded_from"], "cache");
    let file = one.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        service
            .logs()
            .lines()
            .any(|l| l.contains("precompiled plugin artifact rejected")
                && l.contains(&file)
                && l.contains("not authenticated")),
        "no rejection of {file}: {}",
        service.logs()
    );
    assert_ne!(std::fs::read(&one).unwrap(), forged, "not rewritten");
}

/// `.wasm` files put in the watched folder are loaded (not activated); a bad file,
/// or one still being copied, is logged and does not stop the watcher.
#[tokio::test]
async fn watched_folder_loads_new_versions_and_survives_bad_files() {
    let service = Service::start_with(Options {
        plugins_watch: Some("plugins".into()),
        plugins_watch_interval_ms: Some(50),
        ..Options::default()
    })
    .await;
    service.mfs.seed("w-txn", "500.00", "KES", 1, true).await;
    let watched = service.dir().join("plugins");
    std::fs::create_dir_all(&watched).unwrap();
    let before = service.plugins().await;

    // Junk, and half of the next version (a copy in progress): both logged, neither loaded.
    // Put in at once (written aside, then renamed), so it is seen exactly once.
    std::fs::write(watched.join("junk.tmp"), b"not a component at all").unwrap();
    std::fs::rename(watched.join("junk.tmp"), watched.join("junk.wasm")).unwrap();
    let next = component("mfs-africa-next");
    std::fs::write(watched.join("next.wasm"), &next[..next.len() / 2]).unwrap();
    // A file that is not `.wasm` is not looked at.
    std::fs::write(watched.join("README.txt"), b"notes").unwrap();
    let not_loaded = |logs: &str, file: &str| {
        logs.lines()
            .any(|l| l.contains("watched plugin file not loaded") && l.contains(file))
    };
    wait_until("both bad files logged", T, || async {
        let logs = service.logs();
        not_loaded(&logs, "junk.wasm") && not_loaded(&logs, "next.wasm")
    })
    .await;
    assert_eq!(
        service.plugins().await,
        before,
        "a bad file changed the registry"
    );
    assert!(!service.logs().contains("README.txt"));

    // The copy completes: loaded, not active.
    std::fs::write(watched.join("next.wasm"), &next).unwrap();
    let listed = wait_for("0.3.0 loaded from the watched folder", T, || async {
        let list = service.plugins().await;
        (versions(&list, MFS).len() == 2).then_some(list)
    })
    .await;
    assert_eq!(versions(&listed, MFS), [V1, V2]);
    assert_eq!(
        provider(&listed, MFS)["active"],
        V1,
        "watched files are not activated"
    );
    assert_eq!(version(&listed, MFS, V2)["active"], false);
    // The junk was tried once (its size and time did not change), not at every look.
    let junk_lines = service
        .logs()
        .lines()
        .filter(|l| l.contains("watched plugin file not loaded") && l.contains("junk.wasm"))
        .count();
    assert_eq!(junk_lines, 1, "the junk file should be logged once");

    // The watched version serves once activated.
    activate(&service, V2, V1).await;
    let refund = create(&service, "w-txn", "w-1").await;
    assert_eq!(refund["plugin_version"], V2);
    assert_eq!(
        service
            .mfs
            .created_by_plugin_version(s(&refund["provider_refund_id"]))
            .await
            .as_deref(),
        Some(V2)
    );
}

/// `refundry plugin ...` against the running service (`--url`, `--token`, or their
/// environment variables), and offline on the ledger of a stopped one.
#[tokio::test]
async fn cli_changes_a_running_service_and_a_stopped_one() {
    let mut service = Service::start().await;
    service.mfs.seed("cli-txn", "500.00", "KES", 1, true).await;
    let config = service.config_path().display().to_string();
    let next = plugin_path("mfs-africa-next").display().to_string();
    let (url, token) = (service.url.clone(), service.ops_token.clone());
    let remote = ["--url", url.as_str(), "--token", token.as_str()];
    let cli = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = ["--config", config.as_str()]
            .iter()
            .chain(args)
            .map(|a| a.to_string())
            .collect();
        all.extend(remote.iter().map(|a| a.to_string()));
        all
    };
    let run = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_refundry(&args, &[], T).await
    };

    // Load (provider from the component's describe()), activate, list.
    let out = run(cli(&["--json", "plugin", "load", &next]))
        .await
        .expect_code(0, "plugin load")
        .to_owned();
    let loaded: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&loaded["version"], &loaded["new"]),
        (&json!(V2), &json!(true))
    );
    run(cli(&["plugin", "activate", MFS, V2]))
        .await
        .expect_code(0, "plugin activate");
    let out = run(cli(&["--json", "plugin", "list"]))
        .await
        .expect_code(0, "plugin list")
        .to_owned();
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(provider(&listed, MFS)["active"], V2, "{listed}");
    assert_eq!(version(&listed, MFS, V2)["active"], true);
    assert_eq!(stable(&listed), stable(&service.plugins().await));
    // The same through the environment variables: the readable list marks the active one.
    let by_env = run_refundry(
        &["--config", &config, "plugin", "list"],
        &[("REFUNDRY_URL", &url), ("REFUNDRY_TOKEN", &token)],
        T,
    )
    .await;
    let out = by_env.expect_code(0, "plugin list by environment");
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with('*') && l.contains(V2)),
        "0.3.0 should be marked active:\n{out}"
    );

    // Removing the active version is refused: exit 1, the code printed.
    let refused = run(cli(&["plugin", "remove", MFS, V2])).await;
    let out = refused.expect_code(1, "plugin remove of the active version");
    assert!(out.contains("version_active"), "{out}");
    let refused = run(cli(&["--json", "plugin", "remove", MFS, V2])).await;
    let out = refused.expect_code(1, "plugin remove --json");
    let error: Value = serde_json::from_str(out).unwrap();
    assert_eq!(error["error"]["code"], "version_active");
    assert_eq!(versions(&service.plugins().await, MFS), [V1, V2]);

    // Offline: the service stopped, no --url: the change goes to the ledger.
    service.stop().await;
    let offline = run_refundry(
        &["--config", &config, "plugin", "activate", MFS, V1],
        &[],
        T,
    )
    .await;
    let out = offline.expect_code(0, "offline plugin activate");
    assert!(out.contains(V1), "{out}");
    let offline = run_refundry(&["--config", &config, "--json", "plugin", "list"], &[], T).await;
    let listed: Value = serde_json::from_str(offline.expect_code(0, "offline list")).unwrap();
    assert_eq!(provider(&listed, MFS)["active"], V1, "{listed}");
    service.restart().await;
    let listed = service.plugins().await;
    assert_eq!(provider(&listed, MFS)["active"], V1);
    assert_eq!(versions(&listed, MFS), [V1, V2]);
    let refund = create(&service, "cli-txn", "cli-1").await;
    assert_eq!(refund["plugin_version"], V1);
    assert_eq!(
        service
            .mfs
            .created_by_plugin_version(s(&refund["provider_refund_id"]))
            .await,
        None
    );
    // PagoEfectivo, untouched, still has its one version.
    assert_eq!(versions(&listed, PE).len(), 1);
}
