//! `refundry batch`: a CSV of refunds through a running `refundry serve` (real processes, the
//! MFS Africa sandbox on loopback) and in process on a configured ledger. Good rows are refunded
//! exactly once at the sandbox, bad rows are reported by line in the results file and never sent,
//! and running the same file again changes nothing at the sandbox.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use refundry_tests::service::{CliRun, MFS, Options, PE, Service, fresh_dir, run_refundry};
use refundry_tests::{MfsSandbox, PeSandbox};
use serde_json::Value;

const HEADER: &str = "provider,external_refund_id,original_transaction_id,amount,currency,reason,\
                      original_amount,original_completed_at,order_id";

/// What a data line of a generated file should come to.
#[derive(Debug, Clone)]
enum Expect {
    /// Refunded (the row's external refund id).
    Good(String),
    /// Reported invalid, with this in its error.
    Bad(&'static str),
    /// The same refund as an earlier good row (its external refund id).
    Duplicate(String),
}

/// One results line.
#[derive(Debug, Clone)]
struct ResultLine {
    line: u64,
    provider: String,
    external_refund_id: String,
    outcome: String,
    refund_id: String,
    status: String,
    error: String,
}

fn read_results(path: &Path) -> Vec<ResultLine> {
    let mut reader =
        csv::Reader::from_path(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        header,
        [
            "line",
            "provider",
            "external_refund_id",
            "outcome",
            "refund_id",
            "status",
            "error"
        ]
    );
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            ResultLine {
                line: r[0].parse().unwrap(),
                provider: r[1].to_owned(),
                external_refund_id: r[2].to_owned(),
                outcome: r[3].to_owned(),
                refund_id: r[4].to_owned(),
                status: r[5].to_owned(),
                error: r[6].to_owned(),
            }
        })
        .collect()
}

/// Runs `refundry [--config CONFIG] batch ARGS...` to completion.
async fn batch(config: Option<&Path>, args: &[&str]) -> CliRun {
    let config = config.map(|c| c.display().to_string());
    let mut all: Vec<&str> = Vec::new();
    if let Some(config) = &config {
        all.extend(["--config", config.as_str()]);
    }
    all.push("batch");
    all.extend(args);
    run_refundry(&all, &[], Duration::from_secs(120)).await
}

fn days_ago(days: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::days(days))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A file of `n` data lines: mostly good MFS Africa refunds over `txns` transactions, and every
/// 40th line a bad one of another kind (and one identical repeat of a good line).
fn generate(n: usize, txns: &[String]) -> (String, Vec<Expect>) {
    let mut lines = vec![HEADER.to_owned()];
    let mut expect = Vec::new();
    let completed = days_ago(1);
    let mut bad_kind = 0;
    for i in 0..n {
        let ext = format!("batch-{i:04}");
        let txn = &txns[i % txns.len()];
        let (line, e) = if i == 500 {
            // Line 2 again, character for character: sent once.
            (lines[1].clone(), Expect::Duplicate("batch-0000".into()))
        } else if i % 40 == 39 {
            bad_kind += 1;
            match bad_kind % 8 {
                0 => (
                    format!("{MFS},{ext},{txn},1.00,KES"),
                    Expect::Bad("has 5 fields, the header has 9"),
                ),
                1 => (
                    format!("{MFS},{ext},{txn},1.5,KES,batch,,,"),
                    Expect::Bad("amount \"1.5\" is not a positive decimal"),
                ),
                2 => (
                    format!("{MFS},{ext},{txn},1.00,kes,batch,,,"),
                    Expect::Bad("currency \"kes\" is not a currency Refundry knows"),
                ),
                3 => (
                    format!("stripe,{ext},{txn},1.00,KES,batch,,,"),
                    Expect::Bad("unknown provider \"stripe\""),
                ),
                4 => (
                    format!("{MFS},{ext},{txn},1.00,KES,batch,100000.00,last tuesday,"),
                    Expect::Bad("original_completed_at \"last tuesday\" is not an RFC 3339 time"),
                ),
                5 => (
                    format!("{MFS},{ext},,1.00,KES,batch,,,"),
                    Expect::Bad("original_transaction_id is empty"),
                ),
                6 => (
                    format!("{MFS},{ext},{txn},1.00,KES,batch,100000.00,,"),
                    Expect::Bad("original_amount is given without original_completed_at"),
                ),
                _ => (
                    // The same key as the good-looking line before it, with another amount:
                    // both are bad (which one was meant cannot be told).
                    format!("{MFS},batch-{:04},{txn},2.00,KES,batch,,,", i - 1),
                    Expect::Bad("with different values"),
                ),
            }
        } else if i % 7 == 0 {
            // With the payment, for the service's pre-checks.
            (
                format!("{MFS},{ext},{txn},1.00,KES,batch,100000.00,{completed},"),
                Expect::Good(ext),
            )
        } else {
            (
                format!("{MFS},{ext},{txn},1.00,KES,\"batch, line {i}\",,,"),
                Expect::Good(ext),
            )
        };
        lines.push(line);
        expect.push(e);
    }
    // The line before each conflicting repeat is bad too.
    for i in 0..expect.len() {
        if matches!(expect[i], Expect::Bad("with different values")) {
            expect[i - 1] = Expect::Bad("with different values");
        }
    }
    (lines.join("\n") + "\n", expect)
}

/// Checks a run's results against what the file asked for; the refund id of each good line.
fn check_results(
    results: &[ResultLine],
    expect: &[Expect],
    good_outcome: &str,
) -> HashMap<String, String> {
    assert_eq!(results.len(), expect.len(), "one result per data line");
    let mut ids = HashMap::new();
    for (i, (r, e)) in results.iter().zip(expect).enumerate() {
        assert_eq!(
            r.line,
            i as u64 + 2,
            "results in input order, by physical line"
        );
        match e {
            Expect::Good(ext) => {
                assert_eq!(
                    (r.outcome.as_str(), r.status.as_str(), r.provider.as_str()),
                    (good_outcome, "pending", MFS),
                    "line {}: {r:?}",
                    r.line
                );
                assert_eq!(&r.external_refund_id, ext);
                assert!(r.refund_id.starts_with("rf_"), "{r:?}");
                assert!(r.error.is_empty(), "{r:?}");
                ids.insert(ext.clone(), r.refund_id.clone());
            }
            Expect::Bad(reason) => {
                assert_eq!(r.outcome, "invalid", "line {}: {r:?}", r.line);
                assert!(
                    r.error.starts_with("invalid_row: ") && r.error.contains(reason),
                    "line {}: {:?} lacks {reason:?}",
                    r.line,
                    r.error
                );
                assert!(r.refund_id.is_empty() && r.status.is_empty(), "{r:?}");
            }
            Expect::Duplicate(_) => {}
        }
    }
    for (r, e) in results.iter().zip(expect) {
        if let Expect::Duplicate(ext) = e {
            assert_eq!(r.outcome, "duplicate", "{r:?}");
            assert_eq!(Some(&r.refund_id), ids.get(ext), "{r:?}");
            assert!(r.error.contains("the same refund as line 2"), "{r:?}");
        }
    }
    ids
}

/// External refund id -> how many refunds the sandbox holds under it.
fn by_external_id(refunds: &[Value]) -> BTreeMap<String, usize> {
    let mut count = BTreeMap::new();
    for r in refunds {
        let ext = r["external_refund_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        *count.entry(ext).or_default() += 1;
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_rows_through_the_service_each_good_one_refunded_once() {
    // The janitor is not under test here: it stays out of the way of the thousand requests.
    let service = Service::start_with(Options {
        janitor_backoff_ms: vec![600_000],
        ..Options::default()
    })
    .await;
    let txns: Vec<String> = (0..10).map(|k| format!("batch-txn-{k}")).collect();
    for txn in &txns {
        service.mfs.seed(txn, "100000.00", "KES", 1, true).await;
    }
    let (text, expect) = generate(1_000, &txns);
    let file = service.dir().join("refunds.csv");
    std::fs::write(&file, &text).unwrap();
    let results_path = service.dir().join("refunds.results.csv");
    let good: HashSet<String> = expect
        .iter()
        .filter_map(|e| match e {
            Expect::Good(ext) => Some(ext.clone()),
            _ => None,
        })
        .collect();
    let bad = expect
        .iter()
        .filter(|e| matches!(e, Expect::Bad(_)))
        .count();
    assert!(
        good.len() > 900 && bad >= 24,
        "{} good, {bad} bad",
        good.len()
    );

    let args = [
        file.to_str().unwrap(),
        "--url",
        &service.url,
        "--token",
        &service.gateway_token,
    ];
    let started = Instant::now();
    let out = batch(None, &args).await;
    let took = started.elapsed();
    assert_eq!(out.code, Some(1), "bad rows make exit 1: {}", out.show());
    let stdout = &out.stdout;
    assert!(
        stdout.contains(&format!("{} created", good.len()))
            && stdout.contains(&format!("{bad} invalid"))
            && stdout.contains("1 duplicate")
            && stdout.contains(&format!("{bad} lines not refunded as asked, exit 1")),
        "{}",
        out.show()
    );
    // Bad rows are named on stderr too, by line.
    let stderr = &out.stderr;
    assert!(
        stderr.contains("line 41: invalid, not sent: "),
        "{}",
        out.show()
    );
    let first = check_results(&read_results(&results_path), &expect, "created");
    assert_eq!(first.len(), good.len());

    // At the sandbox: every good row once, nothing else.
    let at_sandbox = by_external_id(&service.mfs_refunds().await);
    assert_eq!(at_sandbox.len(), good.len(), "one refund per good row");
    assert!(
        at_sandbox.values().all(|&n| n == 1),
        "no key refunded twice"
    );
    assert_eq!(
        at_sandbox.keys().cloned().collect::<HashSet<_>>(),
        good,
        "exactly the good rows"
    );
    let calls = service.mfs_create_calls().await;
    assert_eq!(
        calls,
        good.len() as u64,
        "no bad row sent, no good row sent twice"
    );
    eprintln!("1,000 rows through the service in {took:?}");

    // Again: nothing new anywhere, each good row an existing refund with the same id.
    let out = batch(None, &args).await;
    assert_eq!(out.code, Some(1), "{}", out.show());
    assert!(
        out.stdout.contains(&format!("{} existing", good.len())),
        "{}",
        out.show()
    );
    let second = check_results(&read_results(&results_path), &expect, "existing");
    assert_eq!(second, first, "the same refunds");
    assert_eq!(
        service.mfs_create_calls().await,
        calls,
        "nothing sent to the provider"
    );
    assert_eq!(
        by_external_id(&service.mfs_refunds().await),
        at_sandbox,
        "nothing changed at the sandbox"
    );
    assert_eq!(
        service.list_all("provider=mfs-africa", 500).await.len(),
        good.len()
    );
}

#[tokio::test]
async fn what_stops_a_run_exits_2_and_sends_nothing() {
    let service = Service::start().await;
    service.mfs.seed("txn-stop", "100.00", "KES", 1, true).await;
    let dir = service.dir();
    let file = dir.join("few.csv");
    let rows: Vec<String> = (0..20)
        .map(|i| format!("{MFS},stop-{i},txn-stop,1.00,KES,x,,,"))
        .collect();
    std::fs::write(&file, format!("{HEADER}\n{}\n", rows.join("\n"))).unwrap();
    let file_arg = file.to_str().unwrap();

    // A token the service refuses: the run stops at the first answer.
    let out = batch(
        None,
        &[
            file_arg,
            "--url",
            &service.url,
            "--token",
            "not-a-token-of-this-service",
        ],
    )
    .await;
    assert_eq!(out.code, Some(2), "{}", out.show());
    assert!(
        out.stdout.contains("stopped (unauthorized"),
        "{}",
        out.show()
    );
    let results = read_results(&dir.join("few.results.csv"));
    assert_eq!(results.len(), 20);
    assert!(results.iter().all(|r| r.refund_id.is_empty()));
    let not_sent = results.iter().filter(|r| r.outcome == "not_sent").count();
    assert!(
        not_sent >= 20 - 8,
        "at most the first 8 were in flight: {results:?}"
    );
    for r in &results {
        match r.outcome.as_str() {
            "rejected" => assert!(r.error.starts_with("unauthorized: "), "{r:?}"),
            "not_sent" => assert!(r.error.contains("the run stopped: unauthorized"), "{r:?}"),
            _ => panic!("{r:?}"),
        }
    }

    // --url without a token.
    let out = batch(None, &[file_arg, "--url", &service.url]).await;
    assert_eq!(out.code, Some(2), "{}", out.show());
    assert!(out.stderr.contains("--url needs --token"), "{}", out.show());

    // A header with a misspelt column: nothing is read, let alone sent.
    let misspelt = dir.join("misspelt.csv");
    std::fs::write(
        &misspelt,
        format!(
            "{},orginal_amount\n{MFS},m-1,txn-stop,1.00,KES,x,,,,1.00\n",
            HEADER
        ),
    )
    .unwrap();
    let out = batch(
        None,
        &[
            misspelt.to_str().unwrap(),
            "--url",
            &service.url,
            "--token",
            &service.gateway_token,
        ],
    )
    .await;
    assert_eq!(out.code, Some(2), "{}", out.show());
    assert!(
        out.stderr
            .contains("line 1: unknown column \"orginal_amount\""),
        "{}",
        out.show()
    );
    assert!(!dir.join("misspelt.results.csv").exists());

    // No service at the URL.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let out = batch(
        None,
        &[
            file_arg,
            "--url",
            &closed,
            "--token",
            &service.gateway_token,
        ],
    )
    .await;
    assert_eq!(out.code, Some(2), "{}", out.show());
    assert!(
        out.stderr.contains("the service does not answer"),
        "{}",
        out.show()
    );

    // The input file as its own results file.
    let out = batch(
        None,
        &[
            file_arg,
            "--results",
            file_arg,
            "--url",
            &service.url,
            "--token",
            &service.gateway_token,
        ],
    )
    .await;
    assert_eq!(out.code, Some(2), "{}", out.show());
    assert!(out.stderr.contains("is the input file"));

    // A file that is not there, and one without even a header.
    let missing = dir.join("missing.csv");
    let empty = dir.join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    for (path, says) in [(&missing, "opening"), (&empty, "the file is empty")] {
        let out = batch(
            None,
            &[
                path.to_str().unwrap(),
                "--url",
                &service.url,
                "--token",
                &service.gateway_token,
            ],
        )
        .await;
        assert_eq!(out.code, Some(2), "{}", out.show());
        assert!(out.stderr.contains(says), "{}", out.show());
    }

    // A concurrency out of range is a usage error.
    let out = batch(None, &[file_arg, "--concurrency", "0"]).await;
    assert_eq!(out.code, Some(2), "{}", out.show());

    assert_eq!(
        service.mfs_create_calls().await,
        0,
        "nothing reached the provider"
    );
    assert!(
        service.list_all("", 500).await.is_empty(),
        "nothing in the ledger"
    );
}

/// A configuration for both sandboxes with a ledger file in `dir`.
fn in_process_config(dir: &Path, mfs: &MfsSandbox, pe: &PeSandbox) -> PathBuf {
    let path = dir.join("refundry.toml");
    let text = format!(
        "[database]\npath = {:?}\n[retry]\nattempts = 2\nbackoff_ms = [20]\n{}\n{}",
        dir.join("ledger.db").display().to_string(),
        MfsSandbox::provider_toml(&mfs.creds, &mfs.base_url()),
        pe.provider_toml(&pe.creds),
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn in_process_both_providers_and_a_pre_check() {
    let mfs = MfsSandbox::start(None).await;
    let pe = PeSandbox::start(None).await;
    mfs.seed("txn-ip", "100.00", "KES", 1, true).await;
    pe.seed("pe-ip", "100.00", "PEN", 1, true).await;
    let dir = fresh_dir();
    let config = in_process_config(&dir, &mfs, &pe);
    let old = days_ago(400);
    let lines = [
        format!("{MFS},ip-1,txn-ip,10.00,KES,damaged,,,"),
        format!("{MFS},ip-2,txn-ip,5.00,KES,,100.00,{},", days_ago(2)),
        format!("{PE},ip-3,pe-ip,12.50,PEN,producto devuelto,,,ORDER-ip-3"),
        format!("{PE},ip-4,pe-ip,1.00,KES,x,,,ORDER-ip-4"),
        format!("{MFS},ip-5,txn-ip,1.00,KES,too late,100.00,{old},"),
        format!("{MFS},ip-6,txn-ip,7.00,KES,x,,,"),
    ];
    let file = dir.join("mixed.csv");
    std::fs::write(&file, format!("{HEADER}\n{}\n", lines.join("\n"))).unwrap();
    let out_path = dir.join("out.csv");
    let args = [
        file.to_str().unwrap(),
        "--results",
        out_path.to_str().unwrap(),
        "--concurrency",
        "3",
    ];

    let out = batch(Some(&config), &args).await;
    assert_eq!(out.code, Some(1), "{}", out.show());
    let results = read_results(&out_path);
    let view: Vec<(u64, &str, &str)> = results
        .iter()
        .map(|r| (r.line, r.outcome.as_str(), r.status.as_str()))
        .collect();
    assert_eq!(
        view,
        [
            (2, "created", "pending"),
            (3, "created", "pending"),
            (4, "created", "pending"),
            // Checked against the provider's currencies before anything was sent.
            (5, "invalid", ""),
            // Refused by the pre-check (outside the refund window): recorded failed, not sent.
            (6, "failed", "failed"),
            (7, "created", "pending"),
        ]
    );
    assert!(
        results[3]
            .error
            .contains("pagoefectivo does not refund KES")
    );
    assert!(
        results[4].error.starts_with("window_expired: "),
        "{:?}",
        results[4]
    );
    assert_eq!(results[2].provider, PE);
    let mfs_refunds = by_external_id(
        &mfs.inspect("refunds").await["data"]
            .as_array()
            .unwrap()
            .clone(),
    );
    let pe_refunds = pe.control.get("refunds").await["data"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        mfs_refunds.keys().map(String::as_str).collect::<Vec<_>>(),
        ["ip-1", "ip-2", "ip-6"]
    );
    assert_eq!(pe_refunds, 1);

    // Again, on the same ledger: every refund is the existing one, nothing is sent.
    let out = batch(Some(&config), &args).await;
    assert_eq!(out.code, Some(1), "{}", out.show());
    let again = read_results(&out_path);
    for (a, b) in results.iter().zip(&again) {
        match a.outcome.as_str() {
            "invalid" => assert_eq!(b.outcome, "invalid"),
            _ => assert_eq!(
                (b.outcome.as_str(), b.refund_id.as_str()),
                ("existing", a.refund_id.as_str()),
                "{b:?}"
            ),
        }
    }
    assert_eq!(
        mfs.inspect("stats").await["requests"]["POST /v1/refunds"],
        3
    );
    assert_eq!(
        pe.control.get("refunds").await["data"]
            .as_array()
            .unwrap()
            .len(),
        pe_refunds
    );

    // A file of only the good rows: every one existing and taken, so exit 0.
    let good = dir.join("good.csv");
    let good_lines = [&lines[0], &lines[1], &lines[2], &lines[5]];
    std::fs::write(
        &good,
        format!("{HEADER}\n{}\n", good_lines.map(String::as_str).join("\n")),
    )
    .unwrap();
    let out = batch(Some(&config), &[good.to_str().unwrap(), "--json"]).await;
    assert_eq!(out.code, Some(0), "{}", out.show());
    let summary: Value = serde_json::from_str(&out.stdout).expect("--json prints one object");
    assert_eq!(summary["counts"]["existing"], 4, "{summary}");
    assert_eq!(summary["exit_code"], 0);
    let results = read_results(&dir.join("good.results.csv"));
    assert!(results.iter().all(|r| r.outcome == "existing"));
    let _ = std::fs::remove_dir_all(&dir);
}
