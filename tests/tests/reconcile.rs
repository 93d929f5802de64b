//! Reconciliation end to end: `refundry serve` and `refundry reconcile` against both provider
//! sandboxes, whose lists (the specs' "List (reconciliation)") are the other side of every run.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use refundry_tests::service::{
    MFS, Options, PE, Service, expect, mfs_body, pe_body, run_refundry, with_original,
};
use serde_json::{Value, json};

const RUN: Duration = Duration::from_secs(60);

/// A token of scope `metrics`, as Prometheus would hold.
const METRICS_TOKEN: &str = "prometheus-reconcile-token-7f3a";

/// Options where nothing but reconciliation settles a refund: no webhook reaches the service,
/// and the janitor's first check is an hour away.
fn quiet() -> Options {
    Options {
        webhooks_to_service: false,
        janitor_backoff_ms: vec![3_600_000],
        ..Options::default()
    }
}

fn rfc3339(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `refundry reconcile` for `provider` over the last `days` days (and a minute ahead, so the
/// refunds just made are inside), with `extra` arguments.
async fn reconcile(svc: &Service, provider: &str, days: i64, extra: &[&str]) -> (i32, String) {
    let from = rfc3339(Utc::now() - chrono::Duration::days(days));
    let to = rfc3339(Utc::now() + chrono::Duration::minutes(1));
    let config = svc.config_path().display().to_string();
    let mut args = vec![
        "--config",
        &config,
        "reconcile",
        "--provider",
        provider,
        "--from",
        &from,
        "--to",
        &to,
    ];
    args.extend_from_slice(extra);
    let out = run_refundry(&args, &[], RUN).await;
    (
        out.code.unwrap_or(-1),
        format!("{}{}", out.stdout, out.stderr),
    )
}

fn findings_of<'a>(run: &'a Value, kind: &str) -> Vec<&'a Value> {
    run["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["kind"] == kind)
        .collect()
}

#[tokio::test]
async fn a_portal_refund_is_reported_and_a_lost_webhook_is_made_good() {
    let svc = Service::start_with(Options {
        extra_toml: format!(
            "[server.tokens.prometheus]\ntoken = \"{METRICS_TOKEN}\"\nscopes = [\"metrics\"]\n"
        ),
        ..quiet()
    })
    .await;
    svc.mfs.seed("txn_rc1", "500.00", "KES", 10, true).await;
    let created = svc.post_refund(&mfs_body("txn_rc1", "rc-1", 10_000)).await;
    expect(&created, 201, "create");
    let ours = created.refund().clone();
    let provider_id = ours["provider_refund_id"].as_str().unwrap().to_owned();
    // The provider processes it; its webhook never reaches the service.
    svc.mfs
        .control(
            &format!("refunds/{provider_id}/status"),
            json!({"status": "processed"}),
        )
        .await;
    // Staff refund the same payment in the provider's portal.
    let portal = svc
        .mfs
        .control(
            "portal-refunds",
            json!({"original_transaction_id": "txn_rc1", "amount": "25.00", "currency": "KES"}),
        )
        .await;
    let portal_id = portal["refund_id"].as_str().unwrap().to_owned();
    assert_eq!(
        svc.refund(ours["id"].as_str().unwrap()).await["status"],
        "pending"
    );

    // Through the running service, as the documented `--url` form does it.
    let url = svc.url.clone();
    let (code, out) = reconcile(
        &svc,
        MFS,
        1,
        &["--url", &url, "--token", &svc.ops_token, "--json"],
    )
    .await;
    assert_eq!(code, 1, "differences exit 1: {out}");
    let run: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(run["outcome"], "discrepancies");
    assert_eq!(run["provider_refunds"], 2, "{run}");
    let missing = findings_of(&run, "missing_in_ledger");
    assert_eq!(missing.len(), 1, "{run}");
    assert_eq!(missing[0]["provider_refund_id"], portal_id.as_str());
    assert_eq!(missing[0]["provider"]["amount_minor"], 2_500);
    let status = findings_of(&run, "status_mismatch");
    assert_eq!(status.len(), 1, "{run}");
    assert_eq!(status[0]["refund_id"], ours["id"]);
    assert_eq!(status[0]["applied"], true);
    assert_eq!(status[0]["ledger"]["status"], "pending");
    assert_eq!(status[0]["provider"]["status"], "processed");

    // The lost webhook is made good: the refund moved, and its history says by whom.
    let refund = svc.refund(ours["id"].as_str().unwrap()).await;
    assert_eq!(refund["status"], "processed", "{refund}");
    let sources: Vec<&str> = refund["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["source"].as_str())
        .collect();
    assert!(sources.contains(&"reconcile"), "{refund}");

    // The run is kept, and counted.
    let id = run["id"].as_str().unwrap();
    let list = svc.get("/v1/reconciliations").await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.body["reconciliations"][0]["id"], id);
    assert_eq!(list.body["reconciliations"][0]["trigger"], "api");
    assert_eq!(
        list.body["reconciliations"][0]["finding_counts"]["missing_in_ledger"],
        1
    );
    let one = svc.get(&format!("/v1/reconciliations/{id}")).await;
    assert_eq!(one.status, 200, "{}", one.text);
    assert_eq!(one.body["findings"].as_array().unwrap().len(), 2);
    assert_eq!(svc.get("/v1/reconciliations/rec_nope").await.status, 404);
    let metrics = svc
        .send(reqwest::Method::GET, "/metrics", Some(METRICS_TOKEN), None)
        .await;
    let line = metrics
        .text
        .lines()
        .find(|l| {
            l.starts_with("refundry_reconcile_discrepancies_total")
                && l.contains("kind=\"missing_in_ledger\"")
                && l.contains("provider=\"mfs-africa\"")
        })
        .unwrap_or_else(|| panic!("no discrepancy series in:\n{}", metrics.text));
    assert!(line.ends_with(" 1"), "{line}");

    // One outbound event per finding, for the gateway's ERP or ticket system.
    let events = svc.get("/v1/events?limit=500").await;
    assert_eq!(events.status, 200, "{}", events.text);
    let discrepancies: Vec<&Value> = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "reconciliation.discrepancy")
        .collect();
    assert_eq!(discrepancies.len(), 2, "{}", events.text);
    let portal_event = discrepancies
        .iter()
        .find(|e| e["body"]["data"]["finding"]["kind"] == "missing_in_ledger")
        .expect("an event for the portal refund");
    assert_eq!(portal_event["body"]["data"]["reconciliation_id"], id);
    assert_eq!(
        portal_event["body"]["data"]["finding"]["provider_refund_id"],
        portal_id.as_str()
    );

    // Run again: the status matches now; the portal refund is still unknown to the ledger.
    let (code, out) = reconcile(&svc, MFS, 1, &["--json"]).await;
    assert_eq!(code, 1, "{out}");
    let again: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(findings_of(&again, "status_mismatch").len(), 0, "{again}");
    assert_eq!(findings_of(&again, "missing_in_ledger").len(), 1, "{again}");
    assert_eq!(again["trigger"], "cli");
}

#[tokio::test]
async fn a_refund_the_provider_does_not_hold_is_reported_and_one_refused_before_any_call_is_not() {
    let svc = Service::start_with(quiet()).await;
    svc.mfs.seed("txn_rc2", "500.00", "KES", 10, true).await;
    let kept = svc
        .post_refund(&mfs_body("txn_rc2", "rc-kept", 1_000))
        .await;
    expect(&kept, 201, "create kept");
    let lost = svc
        .post_refund(&mfs_body("txn_rc2", "rc-lost", 2_000))
        .await;
    expect(&lost, 201, "create lost");
    // Refused by the pre-check (another currency than the payment's): never sent.
    let refused = svc
        .post_refund(&with_original(
            mfs_body("txn_rc2", "rc-refused", 1_000),
            50_000,
            "UGX",
            10,
            Some(true),
        ))
        .await;
    assert_eq!(refused.refund()["status"], "failed", "{}", refused.text);
    assert!(refused.refund()["provider_refund_id"].is_null());
    let everything_matches = reconcile(&svc, MFS, 1, &["--json"]).await;
    assert_eq!(everything_matches.0, 0, "{}", everything_matches.1);

    // The provider loses one.
    let lost_id = lost.refund()["provider_refund_id"].as_str().unwrap();
    let status = reqwest::Client::new()
        .delete(format!("{}/_sandbox/refunds/{lost_id}", svc.mfs.base_url()))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success());

    let (code, out) = reconcile(&svc, MFS, 1, &["--csv"]).await;
    assert_eq!(code, 1, "{out}");
    let mut rows = csv::Reader::from_reader(out.as_bytes());
    let headers = rows.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = rows.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1, "{out}");
    let cell = |name: &str| {
        let i = headers.iter().position(|h| h == name).unwrap();
        rows[0][i].to_owned()
    };
    assert_eq!(cell("kind"), "missing_at_provider");
    assert_eq!(cell("external_refund_id"), "rc-lost");
    assert_eq!(cell("provider_refund_id"), lost_id);
    assert_eq!(cell("ledger_amount_minor"), "2000");
    assert_eq!(cell("provider_status"), "");
}

#[tokio::test]
async fn every_page_of_a_range_longer_than_the_provider_allows_is_read() {
    let svc = Service::start_with(quiet()).await;
    svc.pe.seed("81000001", "100000.00", "PEN", 90, true).await;
    // 104 refunds made in PagoEfectivo's back office: 101 inside one 31-day piece (two pages
    // of 100), and one in each of three other pieces of a 75-day range.
    let at = |days_ago: i64, minutes: i64| {
        rfc3339(Utc::now() - chrono::Duration::days(days_ago) + chrono::Duration::minutes(minutes))
    };
    let mut made = Vec::new();
    for i in 0..101 {
        made.push(at(5, i));
    }
    made.extend([at(40, 0), at(70, 0), at(74, 0)]);
    for (i, created_at) in made.iter().enumerate() {
        svc.pe
            .control
            .post(
                "portal-refunds",
                json!({"transaction_id": "81000001", "amount": "1.00", "currency": "PEN",
                       "refund_id": format!("bo-{i}"), "created_at": created_at}),
            )
            .await;
    }
    let lists = |stats: &Value| {
        stats["requests"]["GET /v1/refunds?dateFrom"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = lists(&svc.pe.control.get("stats").await);

    let (code, out) = reconcile(&svc, PE, 75, &["--json"]).await;
    assert_eq!(code, 1, "{out}");
    let run: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(run["provider_refunds"], 104, "{out}");
    let missing = findings_of(&run, "missing_in_ledger");
    assert_eq!(missing.len(), 104);
    let mut ids: Vec<&str> = missing
        .iter()
        .map(|f| f["external_refund_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 104, "each refund is reported once");
    // 75 days in pieces of at most 31: three pieces, the one with 101 refunds in two pages.
    let after = lists(&svc.pe.control.get("stats").await);
    assert_eq!(after - before, 4, "list requests");
}

#[tokio::test]
async fn a_run_that_cannot_happen_exits_2() {
    let svc = Service::start_with(quiet()).await;
    let config = svc.config_path().display().to_string();
    for (args, says) in [
        (
            vec![
                "reconcile",
                "--provider",
                "nope",
                "--from",
                "2026-11-01",
                "--to",
                "2026-11-02",
            ],
            "no provider",
        ),
        (
            vec![
                "reconcile",
                "--provider",
                MFS,
                "--from",
                "2026-11-02",
                "--to",
                "2026-11-01",
            ],
            "must be before",
        ),
        (
            vec![
                "reconcile",
                "--provider",
                MFS,
                "--from",
                "yesterday",
                "--to",
                "2026-11-01",
            ],
            "RFC 3339",
        ),
    ] {
        let mut full = vec!["--config", config.as_str()];
        full.extend(args.iter().copied());
        let out = run_refundry(&full, &[], RUN).await;
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.show());
        assert!(out.stderr.contains(says), "{args:?}: {}", out.show());
    }

    // A plugin built against contract 0.1.0, which has no list-refunds.
    let old = svc.dir().join("contract-0.1.toml");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/contract-v0.1.0/mfs-africa.wasm");
    // A ledger of its own: this one's registry knows the running service's plugin versions.
    let text = std::fs::read_to_string(svc.config_path())
        .unwrap()
        .replace(
            &refundry_tests::plugin_path(MFS).display().to_string(),
            &fixture.display().to_string(),
        )
        .replace(
            &svc.db_path().display().to_string(),
            &svc.dir().join("contract-0.1.db").display().to_string(),
        );
    assert!(
        text.contains("contract-v0.1.0"),
        "the plugin path was replaced"
    );
    std::fs::write(&old, text).unwrap();
    exits_2_saying(&old, "contract 0.1.0").await;

    // A provider that cannot be reached.
    let unreachable = svc.dir().join("unreachable.toml");
    let text = std::fs::read_to_string(svc.config_path())
        .unwrap()
        .replace(&svc.mfs.base_url(), "http://127.0.0.1:9");
    std::fs::write(&unreachable, text).unwrap();
    exits_2_saying(&unreachable, "could not list").await;
    // That run is kept, as failed (the others never started).
    let runs = svc
        .get(&format!("/v1/reconciliations?provider={MFS}"))
        .await;
    let runs = runs.body["reconciliations"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["outcome"], "error");
    assert_eq!(runs[0]["trigger"], "cli");
    assert!(
        runs[0]["error"]
            .as_str()
            .unwrap()
            .contains("could not list"),
        "{runs:?}"
    );
}

/// `refundry reconcile` of MFS Africa with the configuration `config` exits 2, saying `says`.
async fn exits_2_saying(config: &std::path::Path, says: &str) {
    let path = config.display().to_string();
    let args = [
        "--config",
        &path,
        "reconcile",
        "--provider",
        MFS,
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-02",
    ];
    let out = run_refundry(&args, &[], RUN).await;
    assert_eq!(out.code, Some(2), "{}", out.show());
    assert!(out.stderr.contains(says), "{}", out.show());
}

#[tokio::test]
async fn a_scheduled_run_reconciles_every_provider() {
    let svc = Service::start_with(Options {
        extra_toml: "[reconcile]\ninterval = \"1s\"\nwindow_days = 2\n".into(),
        ..quiet()
    })
    .await;
    svc.pe.seed("81000002", "100.00", "PEN", 10, true).await;
    let created = svc
        .post_refund(&pe_body("81000002", "sched-1", 1_000))
        .await;
    expect(&created, 201, "create");
    let id = created.refund()["id"].as_str().unwrap().to_owned();
    let reference = created.refund()["provider_refund_id"].as_str().unwrap();
    svc.pe
        .control
        .post(
            &format!("refunds/{reference}/status"),
            json!({"status": "completed"}),
        )
        .await;
    svc.wait_status(&id, "processed", Duration::from_secs(30))
        .await;
    let runs = svc.get(&format!("/v1/reconciliations?provider={PE}")).await;
    let first = &runs.body["reconciliations"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(first["trigger"], "schedule", "{first}");
    assert!(
        first["to"].as_str().unwrap() > first["from"].as_str().unwrap(),
        "{first}"
    );
}
