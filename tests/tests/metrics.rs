//! Metrics and alerts end to end: a scripted run through a real `refundry serve` and the MFS
//! Africa sandbox, then `GET /metrics` with exact counts and a bounded oldest-age gauge; the same
//! numbers after a restart (they come from the ledger); `refundry refund list --stuck`; every
//! metric the alert rules in `examples/prometheus/alerts.yml` name is in a real answer; and the
//! hostile plugin's traps, deadlines and memory-cap hits counted in the host.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use refundry_ledger::LedgerStats;
use refundry_service::OperationError;
use refundry_service::Providers;
use refundry_tests::service::{
    MFS, Options, PE, Reply, Service, expect, mfs_body, run_refundry, str_of as s,
};
use refundry_tests::{hostile_config, kes_refund};
use reqwest::Method;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

/// The token Prometheus would hold: scope `metrics` only.
const METRICS_TOKEN: &str = "prometheus-metrics-token-5e0c1d";

/// A service whose janitor checks nothing during the test (only webhooks move refunds), with a
/// token of scope `metrics`.
fn options() -> Options {
    Options {
        janitor_backoff_ms: vec![600_000],
        extra_toml: format!(
            "[server.tokens.prometheus]\ntoken = \"{METRICS_TOKEN}\"\nscopes = [\"metrics\"]\n"
        ),
        ..Options::default()
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn scrape_with(service: &Service, token: Option<&str>) -> Reply {
    service.send(Method::GET, "/metrics", token, None).await
}

/// `GET /metrics` with the metrics token; panics unless 200 in the text format.
async fn scrape(service: &Service) -> String {
    let reply = scrape_with(service, Some(METRICS_TOKEN)).await;
    expect(&reply, 200, "GET /metrics");
    let content_type = reply.headers["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    reply.text
}

/// The value of the sample `series` (name and labels exactly as exposed), if there is one.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        Some(value.parse().expect("a sample value is a number"))
    })
}

/// Like [`sample`], panicking with the whole answer when the series is missing.
fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

/// Every metric name `text` exposes: the `# TYPE` names and the sample names.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| match line.strip_prefix("# TYPE ") {
            Some(rest) => rest.split(' ').next(),
            None if line.starts_with('#') => None,
            None => line.split(['{', ' ']).next(),
        })
        .map(str::to_owned)
        .collect()
}

/// Every `refundry_*` identifier in the alert rules (expressions and descriptions alike).
fn names_in_alert_rules() -> BTreeSet<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/prometheus/alerts.yml");
    let rules = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let is_name = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    rules
        .match_indices("refundry_")
        .filter(|(at, _)| !rules[..*at].ends_with(is_name))
        .map(|(at, _)| {
            let rest = &rules[at..];
            rest[..rest.find(|c| !is_name(c)).unwrap_or(rest.len())].to_owned()
        })
        .collect()
}

/// Creates an MFS Africa refund of `amount` minor units of `txn`; returns the reply.
async fn create(service: &Service, txn: &str, external_id: &str, amount: i64) -> Reply {
    service
        .post_refund(&mfs_body(txn, external_id, amount))
        .await
}

/// The sandbox's id of the refund with `external_id`.
async fn sandbox_id(service: &Service, external_id: &str) -> String {
    let refunds = service.mfs_refunds().await;
    let refund = refunds
        .iter()
        .find(|r| r["external_refund_id"] == external_id)
        .unwrap_or_else(|| panic!("no sandbox refund {external_id}"));
    s(&refund["refund_id"]).to_owned()
}

/// Runs `refundry --config <the service's> <args>`; returns (exit code, stdout, stderr).
async fn cli(service: &Service, args: &[&str]) -> (i32, String, String) {
    let config = service.config_path().display().to_string();
    let mut all = vec!["--config", config.as_str()];
    all.extend(args);
    let run = run_refundry(&all, &[], Duration::from_secs(60)).await;
    (run.code.expect("refundry exited"), run.stdout, run.stderr)
}

#[tokio::test]
async fn a_scripted_run_gives_exact_counts_and_a_bounded_oldest_age() {
    let mut service = Service::start_with(options()).await;
    let health = service.get("/healthz").await;
    let version = health.body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == MFS)
        .map(|p| s(&p["version"]).to_owned())
        .expect("MFS Africa in /healthz");

    // Only the scope `metrics` reads /metrics.
    expect(&scrape_with(&service, None).await, 401, "no token");
    let gateway = service.gateway_token.clone();
    let ops = service.ops_token.clone();
    for token in [&gateway, &ops] {
        let reply = scrape_with(&service, Some(token)).await;
        expect(&reply, 403, "a token without scope metrics");
        assert_eq!(reply.error_code(), "forbidden");
    }

    // Two refunds that stay pending, the first the oldest refund not final: its creation time is
    // known within [before, after].
    service.mfs.seed("txn-m", "1000.00", "KES", 1, true).await;
    let before = now_ms();
    let first = create(&service, "txn-m", "m-pending-1", 100).await;
    let after = now_ms();
    expect(&first, 201, "first pending refund");
    let second = create(&service, "txn-m", "m-pending-2", 100).await;
    expect(&second, 201, "second pending refund");
    let pending = [
        s(&first.body["id"]).to_owned(),
        s(&second.body["id"]).to_owned(),
    ];

    // Three the provider processes and one it fails, each moved by its signed webhook.
    for (external, to) in [
        ("m-ok-1", "processed"),
        ("m-ok-2", "processed"),
        ("m-ok-3", "processed"),
        ("m-fail-1", "failed"),
    ] {
        let reply = create(&service, "txn-m", external, 100).await;
        expect(&reply, 201, external);
        let id = sandbox_id(&service, external).await;
        service
            .mfs
            .control(&format!("refunds/{id}/status"), json!({ "status": to }))
            .await;
        service.wait_status(s(&reply.body["id"]), to, T).await;
    }
    // One the provider refuses outright (more than the payment): failed at once, 422.
    service.mfs.seed("txn-small", "1.00", "KES", 1, true).await;
    let refused = create(&service, "txn-small", "m-refused", 500).await;
    expect(&refused, 422, "over-refund refused by the provider");

    // One webhook with a bad signature.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = serde_json::to_vec(&json!({
        "event_id": "evt_forged", "event_type": "refund.status_changed", "occurred_at": now,
        "data": {"refund_id": "x", "external_refund_id": "m-pending-1", "status": "processed"},
    }))
    .unwrap();
    let forged = service
        .try_send(
            Method::POST,
            &format!("/v1/webhooks/{MFS}"),
            None,
            Some(body),
            &[
                ("x-mfs-event-id", "evt_forged"),
                ("x-mfs-timestamp", &now),
                ("x-mfs-signature", &"0".repeat(64)),
            ],
        )
        .await
        .unwrap();
    expect(&forged, 401, "forged webhook");
    assert_eq!(forged.error_code(), "invalid_signature", "{}", forged.text);

    let scrape_start = now_ms();
    let text = scrape(&service).await;
    let scrape_end = now_ms();

    let refunds = |status: &str| {
        format!(
            "refundry_refunds{{provider=\"{MFS}\",plugin_version=\"{version}\",status=\"{status}\"}}"
        )
    };
    let finalized = |status: &str| {
        format!(
            "refundry_refunds_finalized_total{{provider=\"{MFS}\",plugin_version=\"{version}\",status=\"{status}\"}}"
        )
    };
    let ledger_numbers = |text: &str| {
        for (status, n) in [
            ("pending", 2.0),
            ("processed", 3.0),
            ("failed", 2.0),
            ("reversed", 0.0),
            ("unknown", 0.0),
        ] {
            assert_eq!(value(text, &refunds(status)), n, "{status}:\n{text}");
        }
        for (status, n) in [("processed", 3.0), ("failed", 2.0), ("reversed", 0.0)] {
            assert_eq!(value(text, &finalized(status)), n, "{status}:\n{text}");
        }
        assert_eq!(sample(text, &finalized("pending")), None, "{text}");
        let backlog = |p: &str| format!("refundry_janitor_backlog_refunds{{provider=\"{p}\"}}");
        assert_eq!(value(text, &backlog(MFS)), 2.0);
        assert_eq!(value(text, &backlog(PE)), 0.0);
        let pe_age = format!("refundry_oldest_nonfinal_refund_age_seconds{{provider=\"{PE}\"}}");
        assert_eq!(value(text, &pe_age), 0.0);
    };
    ledger_numbers(&text);

    // The oldest refund not final is the first pending one: its age, as the service read its
    // clock during the scrape, is within what the test can bound.
    let age_series = format!("refundry_oldest_nonfinal_refund_age_seconds{{provider=\"{MFS}\"}}");
    let check_age = |text: &str, scrape_start: i64, scrape_end: i64| {
        let age_ms = (value(text, &age_series) * 1e3).round() as i64;
        let (low, high) = (scrape_start - after, scrape_end - before);
        assert!(
            (low..=high).contains(&age_ms),
            "oldest age {age_ms} ms outside [{low}, {high}] ms"
        );
    };
    check_age(&text, scrape_start, scrape_end);

    // Provider latency: one exchange per create, six answered 201 and one 4xx, as the sandbox
    // counted them.
    let latency = |outcome: &str, part: &str| {
        format!(
            "refundry_provider_request_duration_seconds_{part}{{provider=\"{MFS}\",outcome=\"{outcome}\"}}"
        )
    };
    assert_eq!(value(&text, &latency("2xx", "count")), 6.0);
    assert_eq!(value(&text, &latency("4xx", "count")), 1.0);
    assert_eq!(service.mfs_create_calls().await, 7);
    let sum = value(&text, &latency("2xx", "sum"));
    assert!(sum > 0.0 && sum < 6.0 * 10.0, "latency sum {sum}");
    let inf = format!(
        "refundry_provider_request_duration_seconds_bucket{{provider=\"{MFS}\",outcome=\"2xx\",le=\"+Inf\"}}"
    );
    assert_eq!(value(&text, &inf), 6.0);

    // Webhooks: the forged one, and no other failure.
    let webhook = |p: &str, reason: &str| {
        format!(
            "refundry_webhook_verifications_failed_total{{provider=\"{p}\",reason=\"{reason}\"}}"
        )
    };
    assert_eq!(value(&text, &webhook(MFS, "invalid_signature")), 1.0);
    for reason in ["missing_header", "stale_timestamp", "malformed"] {
        assert_eq!(value(&text, &webhook(MFS, reason)), 0.0, "{reason}");
    }
    assert_eq!(value(&text, &webhook(PE, "invalid_signature")), 0.0);
    // No plugin failed: the active versions' failure counts are all there, at zero.
    let failures: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("refundry_plugin_failures_total{"))
        .collect();
    // 2 providers, 3 operations, 5 kinds (trap, deadline, memory_limit, instantiate,
    // oversized_answer).
    assert_eq!(failures.len(), 2 * 3 * 5, "{text}");
    assert!(failures.iter().all(|l| l.ends_with(" 0")), "{failures:?}");

    // Every metric the alert rules name is in this answer.
    let exposed = metric_names(&text);
    let named = names_in_alert_rules();
    assert!(named.len() >= 5, "{named:?}");
    let missing: Vec<_> = named.difference(&exposed).collect();
    assert!(
        missing.is_empty(),
        "alerts.yml names metrics /metrics does not expose: {missing:?}"
    );

    // `refund list --stuck`: the same two, oldest first, with their age.
    let (code, out, err) = cli(&service, &["--json", "refund", "list", "--stuck", "0s"]).await;
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["total"], 2, "{out}");
    let ids: Vec<&str> = listed["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| s(&r["id"]))
        .collect();
    assert_eq!(ids, pending, "{out}");
    let age_ms = listed["refunds"][0]["age_ms"].as_i64().unwrap();
    assert!(age_ms >= scrape_end - after, "{age_ms}");
    let (code, out, err) = cli(&service, &["refund", "list", "--stuck", "1h"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "no refund has been pending or unknown for more than 1h"
    );
    let (code, out, _) = cli(
        &service,
        &["refund", "list", "--stuck", "0s", "--limit", "1"],
    )
    .await;
    assert_eq!(code, 0);
    assert!(out.contains(pending[0].as_str()), "{out}");
    assert!(!out.contains(pending[1].as_str()), "{out}");
    assert!(
        out.contains("2 refunds pending or unknown for more than 0s; the 1 oldest shown"),
        "{out}"
    );
    for bad in [
        &["refund", "list", "--stuck", "2x"][..],
        &["refund", "list", "--stuck", "2"],
        &["refund", "list", "--stuck", "1h", "--status", "failed"],
    ] {
        let (code, out, err) = cli(&service, bad).await;
        assert_eq!(code, 2, "{bad:?}: {out}{err}");
        assert!(out.is_empty(), "{bad:?}: {out}");
        assert!(err.contains("--stuck"), "{bad:?}: {err}");
    }
    let (_, _, err) = cli(&service, &["refund", "list", "--stuck", "2x"]).await;
    assert!(err.contains("such as 30m, 2h or 1d"), "{err}");

    // A restart keeps what the ledger says; what this process counted starts again.
    service.restart().await;
    let scrape_start = now_ms();
    let text = scrape(&service).await;
    let scrape_end = now_ms();
    ledger_numbers(&text);
    check_age(&text, scrape_start, scrape_end);
    assert_eq!(value(&text, &webhook(MFS, "invalid_signature")), 0.0);
    assert_eq!(sample(&text, &latency("2xx", "count")), None, "{text}");
}

#[tokio::test]
async fn plugin_traps_deadlines_and_memory_cap_hits_are_counted_by_version() {
    let host = Providers::start(&hostile_config("", "hostile-secret-0000"))
        .await
        .unwrap();
    let version = host.provider("hostile").unwrap().version().to_owned();
    for (reason, times) in [("spin", 1), ("hog", 2), ("panic", 3), ("fine", 1)] {
        for _ in 0..times {
            let mut req = kes_refund("txn", "h-1", 100);
            req.reason = Some(reason.into());
            let result = host.create_refund("hostile", &req).await;
            assert_eq!(
                matches!(result, Err(OperationError::Plugin(_))),
                reason != "fine",
                "{reason}: {result:?}"
            );
        }
    }
    let text = host.metrics().render(&LedgerStats::default(), &[], 0);
    let failures = |kind: &str| {
        format!(
            "refundry_plugin_failures_total{{provider=\"hostile\",plugin_version=\"{version}\",operation=\"create-refund\",kind=\"{kind}\"}}"
        )
    };
    assert_eq!(value(&text, &failures("deadline")), 1.0);
    assert_eq!(value(&text, &failures("memory_limit")), 2.0);
    assert_eq!(value(&text, &failures("trap")), 3.0);
    let lines = text
        .lines()
        .filter(|l| l.starts_with("refundry_plugin_failures_total"))
        .count();
    assert_eq!(lines, 3, "{text}");
}
