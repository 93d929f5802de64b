//! Record and replay end to end: refunds made through a real `refundry serve` against
//! the sandboxes are recorded (every plugin operation: its input, each import call with the
//! host's answer, its output), and `refundry replay <refund-id>` re-runs them offline from the
//! ledger: identical with the recorded version, and, with `--plugin mfs-africa-next.wasm`
//! (0.3.0, which adds `X-Plugin-Version: 0.3.0` to its requests), different exactly there.

use std::time::Duration;

use refundry_tests::plugin_path;
use refundry_tests::service::{
    CliRun, MFS, Options, PE, Service, expect, mfs_body, pe_body, run_refundry, str_of as s,
    with_original,
};
use serde_json::{Value, json};

/// Generous: debug builds on a busy 2-core machine.
const T: Duration = Duration::from_secs(60);

/// The documented exit codes of `refundry replay`.
const IDENTICAL: i32 = 0;
const DIFFERENT: i32 = 1;
const ERROR: i32 = 2;

/// Only webhooks move refunds (the janitor waits 10 minutes): a refund's recorded operations are
/// exactly its create and its webhook.
fn webhooks_only(extra_toml: &str) -> Options {
    Options {
        janitor_backoff_ms: vec![600_000],
        extra_toml: extra_toml.to_owned(),
        ..Options::default()
    }
}

/// `refundry --config <service's> [--json] replay <args>`.
async fn replay(service: &Service, json: bool, args: &[&str]) -> CliRun {
    let config = service.config_path().display().to_string();
    let mut all = vec!["--config", config.as_str()];
    if json {
        all.push("--json");
    }
    all.push("replay");
    all.extend_from_slice(args);
    run_refundry(&all, &[], T).await
}

/// The `--json` report of a run that exited with `code`.
fn report(run: &CliRun, code: i32, what: &str) -> Value {
    let out = run.expect_code(code, what);
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{what}: not JSON ({e}):\n{out}"))
}

/// The operations of a report, by name, in order.
fn operations(report: &Value) -> Vec<String> {
    report["operations"]
        .as_array()
        .unwrap_or_else(|| panic!("no operations in {report}"))
        .iter()
        .map(|o| s(&o["operation"]).to_owned())
        .collect()
}

/// The rows of every operation of a report.
fn rows(report: &Value) -> Vec<&Value> {
    report["operations"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|o| o["rows"].as_array().unwrap())
        .collect()
}

/// Makes an MFS Africa refund through the service and has the sandbox process it (its signed
/// webhook moves the refund); returns the service's refund id.
async fn processed_mfs_refund(service: &Service, txn: &str, external_id: &str) -> String {
    service.mfs.seed(txn, "500.00", "KES", 1, true).await;
    let created = service.post_refund(&mfs_body(txn, external_id, 150)).await;
    expect(&created, 201, "MFS Africa create");
    let id = s(&created.body["id"]).to_owned();
    let path = format!("refunds/{}/status", s(&created.body["provider_refund_id"]));
    service
        .mfs
        .control(&path, json!({"status": "processed"}))
        .await;
    service.wait_status(&id, "processed", T).await;
    id
}

/// Makes a PagoEfectivo refund through the service and has the sandbox complete it.
async fn completed_pe_refund(service: &Service, txn: &str, external_id: &str) -> String {
    service.pe.seed(txn, "300.00", "PEN", 1, true).await;
    let created = service.post_refund(&pe_body(txn, external_id, 120)).await;
    expect(&created, 201, "PagoEfectivo create");
    let id = s(&created.body["id"]).to_owned();
    let path = format!("refunds/{}/status", s(&created.body["provider_refund_id"]));
    service
        .pe
        .control
        .post(&path, json!({"status": "completed"}))
        .await;
    service.wait_status(&id, "processed", T).await;
    id
}

#[tokio::test]
async fn an_mfs_africa_refund_replays_identically_and_shows_what_the_next_version_changes() {
    let service = Service::start_with(webhooks_only("")).await;
    let id = processed_mfs_refund(&service, "txn-replay", "replay-1").await;

    // With the recorded version (0.2.0): the same outputs, step for step.
    let same = report(&replay(&service, true, &[&id]).await, IDENTICAL, "replay");
    assert_eq!(same["refund_id"], id.as_str());
    assert_eq!(same["provider"], MFS);
    assert_eq!(operations(&same), ["create-refund", "parse-webhook"]);
    assert_eq!(same["columns"][1]["label"], "replay");
    assert_eq!(same["columns"][1]["version"], "0.2.0");
    assert_eq!(same["columns"][1]["first_difference"], Value::Null);
    let all = rows(&same);
    assert!(all.iter().all(|r| r["differs"] == false), "{same}");
    // What is compared: the request the plugin sent (signed with the re-supplied secret, so its
    // signature header is compared too) and the result.
    let create = &same["operations"][0]["rows"];
    let field = |call: &str, field: &str| {
        create
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["call"] == call && r["field"] == field)
            .unwrap_or_else(|| panic!("no {call} {field} row in {create}"))
            .clone()
    };
    assert_eq!(field("http request", "method")["values"][0], "POST");
    let signature = field("http request", "header X-Signature");
    assert!(signature["values"][0].is_string(), "{signature}");
    assert_eq!(signature["values"][0], signature["values"][1]);
    assert_eq!(
        field("result", "ok.status")["values"],
        json!(["pending", "pending"])
    );
    assert_eq!(
        field("config get", "key")["values"][0],
        "base_url",
        "the first thing the plugin asks is its base_url"
    );

    // The readable table says so too, and exits 0.
    let text = replay(&service, false, &[&id]).await;
    let out = text.expect_code(IDENTICAL, "replay, readable");
    assert!(out.contains("operation 1: create-refund"), "{out}");
    assert!(out.contains("replay (0.2.0): identical"), "{out}");

    // With 0.3.0: its X-Plugin-Version header is the first difference; the recorded version
    // still replays identically, and the webhook parses the same in both.
    let next = plugin_path("mfs-africa-next").display().to_string();
    let run = replay(&service, true, &[&id, "--plugin", &next]).await;
    let diff = report(&run, DIFFERENT, "replay --plugin mfs-africa-next.wasm");
    assert_eq!(
        diff["columns"][1]["first_difference"],
        Value::Null,
        "{diff}"
    );
    let other = &diff["columns"][2];
    assert_eq!(other["label"], "mfs-africa-next.wasm");
    assert_eq!(other["version"], "0.3.0");
    let first = &other["first_difference"];
    assert_eq!(first["operation"], "create-refund", "{first}");
    assert_eq!(first["call"], "http request", "{first}");
    assert_eq!(first["field"], "header X-Plugin-Version", "{first}");
    assert_eq!(
        (&first["original"], &first["replay"]),
        (&Value::Null, &json!("0.3.0"))
    );
    let webhook_rows = diff["operations"][1]["rows"].as_array().unwrap();
    assert!(
        webhook_rows
            .iter()
            .all(|r| r["values"][2] == r["values"][0]),
        "0.3.0 parses the webhook as 0.2.0 did: {webhook_rows:?}"
    );
    // The same, readable: the difference named in one line.
    let text = replay(&service, false, &[&id, "--plugin", &next]).await;
    let out = text.expect_code(DIFFERENT, "replay --plugin, readable");
    let step = first["step"].as_u64().unwrap();
    let line = format!(
        "mfs-africa-next.wasm (0.3.0): differs at create-refund step {step} http request \
         header X-Plugin-Version: absent vs 0.3.0"
    );
    assert!(out.contains(&line), "expected {line:?} in:\n{out}");
}

#[tokio::test]
async fn a_pagoefectivo_refund_replays_identically() {
    // The janitor runs as usual here: its status checks are recorded and replayed too.
    let service = Service::start().await;
    let id = completed_pe_refund(&service, "pe-replay", "pe-replay-1").await;
    let same = report(&replay(&service, true, &[&id]).await, IDENTICAL, "replay");
    assert_eq!(same["provider"], PE);
    let ops = operations(&same);
    assert_eq!(ops[0], "create-refund", "{ops:?}");
    assert!(
        ops[1..]
            .iter()
            .all(|o| o == "parse-webhook" || o == "get-refund"),
        "{ops:?}"
    );
    assert!(rows(&same).iter().all(|r| r["differs"] == false), "{same}");
    // The first refund authorizes, caches the token (a storage write), then refunds: all of it
    // recorded and replayed without touching the network or storage.
    let calls: Vec<&str> = same["operations"][0]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["field"] == "import")
        .map(|r| s(&r["values"][0]))
        .collect();
    let requests = calls.iter().filter(|c| **c == "http request").count();
    assert_eq!(requests, 2, "authorization and refund: {calls:?}");
    assert!(calls.contains(&"storage set"), "{calls:?}");
    assert!(calls.contains(&"clock now"), "{calls:?}");
}

/// Every recording's text, and the plugin storage's values, read with SQL from the service's
/// database (the raw file can split a long row across pages).
async fn recordings_and_storage(service: &Service) -> (String, Vec<String>) {
    let path = service.db_path();
    tokio::task::spawn_blocking(move || {
        let c = rusqlite::Connection::open(path)?;
        let mut all = String::new();
        let mut rows = c.prepare("SELECT recording FROM recordings")?;
        for text in rows.query_map([], |r| r.get::<_, String>(0))? {
            all.push_str(&text?);
            all.push('\n');
        }
        let mut kv = c.prepare("SELECT CAST(value AS TEXT) FROM plugin_kv")?;
        let stored = kv
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, rusqlite::Error>((all, stored))
    })
    .await
    .unwrap()
    .unwrap()
}

#[tokio::test]
async fn recordings_hold_no_secret_value() {
    let service = Service::start_with(webhooks_only("")).await;
    let mfs = processed_mfs_refund(&service, "txn-secret", "secret-1").await;
    let pe = completed_pe_refund(&service, "pe-secret", "secret-2").await;
    for id in [&mfs, &pe] {
        replay(&service, false, &[id])
            .await
            .expect_code(IDENTICAL, "replay");
    }
    let (recordings, stored) = recordings_and_storage(&service).await;
    // The secrets were read and used, and are recorded as markers naming their keys: config
    // answers, and PagoEfectivo's access key inside its authorization request.
    for marker in [
        r#"{"secret":"api_secret"}"#,
        r#"{"secret":"webhook_secret"}"#,
        r#"{"secret":"secret_key"}"#,
        r#"\"accessKey\":\"[secret:access_key]\""#,
    ] {
        assert!(recordings.contains(marker), "no {marker} in {recordings}");
    }
    // The token PagoEfectivo issued (cached in the plugin's storage) is recorded as a marker.
    let cached: Value = serde_json::from_str(&stored[0]).unwrap();
    let token = s(&cached["token"]);
    assert!(token.len() >= 16, "{cached}");
    assert!(
        !recordings.contains(token),
        "the issued token is in a recording"
    );
    assert!(recordings.contains("Bearer [token:1]"), "{recordings}");
    // No configured secret value is anywhere in the database file.
    let bytes = service.db_bytes();
    for (name, value) in service.secrets() {
        assert!(
            !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
            "the {name} is in the database file"
        );
        assert!(!recordings.contains(&value), "the {name} is in a recording");
    }
}

#[tokio::test]
async fn replay_refusals_are_typed_and_exit_2() {
    let service = Service::start_with(webhooks_only("")).await;
    let id = processed_mfs_refund(&service, "txn-errors", "errors-1").await;

    let run = replay(&service, false, &["rf_nope"]).await;
    run.expect_code(ERROR, "unknown refund");
    assert!(run.stderr.contains("no refund rf_nope"), "{}", run.stderr);

    // A refund refused by a pre-check never reached the plugin: nothing was recorded.
    let over = with_original(
        mfs_body("txn-errors", "errors-2", 900_000),
        100,
        "KES",
        1,
        None,
    );
    let refused = service.post_refund(&over).await;
    expect(&refused, 422, "over-refund refused by the pre-check");
    let refused_id = s(&refused.refund()["id"]).to_owned();
    let run = replay(&service, false, &[&refused_id]).await;
    run.expect_code(ERROR, "no recording");
    assert!(
        run.stderr.contains("no recorded operation"),
        "{}",
        run.stderr
    );

    // --plugin: not a component; another provider's component.
    let garbage = service.dir().join("garbage.wasm");
    std::fs::write(&garbage, b"not wasm").unwrap();
    let run = replay(
        &service,
        false,
        &[&id, "--plugin", garbage.to_str().unwrap()],
    )
    .await;
    run.expect_code(ERROR, "garbage component");
    assert!(
        run.stderr.contains("not a valid WebAssembly component"),
        "{}",
        run.stderr
    );
    let pe = plugin_path(PE).display().to_string();
    let run = replay(&service, false, &[&id, "--plugin", &pe]).await;
    run.expect_code(ERROR, "another provider's component");
    assert!(
        run.stderr.contains("is a plugin of \"pagoefectivo\""),
        "{}",
        run.stderr
    );
    let missing = service.dir().join("missing.wasm");
    let run = replay(
        &service,
        false,
        &[&id, "--plugin", missing.to_str().unwrap()],
    )
    .await;
    run.expect_code(ERROR, "missing component file");
    assert!(run.stderr.contains("cannot read plugin"), "{}", run.stderr);

    // The recorded version removed from the registry: its component is gone from the ledger.
    let next = std::fs::read(plugin_path("mfs-africa-next")).unwrap();
    expect(&service.load_plugin(MFS, next).await, 201, "load 0.3.0");
    expect(
        &service.activate_plugin(MFS, "0.3.0").await,
        200,
        "activate 0.3.0",
    );
    expect(
        &service.remove_plugin(MFS, "0.2.0").await,
        204,
        "remove 0.2.0",
    );
    let run = replay(&service, false, &[&id]).await;
    run.expect_code(ERROR, "recorded version removed");
    assert!(
        run.stderr.contains("mfs-africa 0.2.0") && run.stderr.contains("no longer in the ledger"),
        "{}",
        run.stderr
    );
}

/// Starts a service with `extra_toml`, makes one MFS Africa refund (no webhook) and replays it.
async fn replay_one_refund(extra_toml: &str, txn: &str) -> CliRun {
    let service = Service::start_with(webhooks_only(extra_toml)).await;
    service.mfs.seed(txn, "500.00", "KES", 1, true).await;
    let created = service.post_refund(&mfs_body(txn, txn, 100)).await;
    expect(&created, 201, "create");
    replay(&service, false, &[s(&created.body["id"])]).await
}

#[tokio::test]
async fn recording_caps_and_switch_are_honoured() {
    // A per-operation cap far below one create-refund: recorded truncated, not replayable.
    let run = replay_one_refund("[recording]\nmax_operation_bytes = 1024\n", "txn-cap").await;
    run.expect_code(ERROR, "truncated recording");
    assert!(
        run.stderr.contains("truncated") && run.stderr.contains("create-refund"),
        "{}",
        run.stderr
    );
    // Recording off: refunds work, nothing is recorded.
    let run = replay_one_refund("[recording]\nenabled = false\n", "txn-off").await;
    run.expect_code(ERROR, "recording off");
    assert!(
        run.stderr.contains("no recorded operation"),
        "{}",
        run.stderr
    );
}
