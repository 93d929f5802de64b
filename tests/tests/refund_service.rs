//! The refund service as a library (what a Rust gateway embeds), in process, against the MFS
//! Africa sandbox on loopback: idempotency, retries, unknown outcomes and the janitor.

use std::time::Duration;

use refundry_ledger::{Begin, NewRow, Outcome, Status};
use refundry_service::refunds::{CreateError, NewRefund, RefundService};
use refundry_tests::MfsSandbox;
use serde_json::json;

const FAST: &str = r#"
[http]
timeout_ms = 300
[retry]
attempts = 3
backoff_ms = [10, 20]
[janitor]
interval_ms = 20
backoff_ms = [50]
"#;

async fn service(sandbox: &MfsSandbox) -> RefundService {
    let config = sandbox.host_config(&sandbox.creds, FAST);
    RefundService::start(&config).await.expect("service starts")
}

fn refund(ext: &str, amount: i64) -> NewRefund {
    NewRefund {
        provider: "mfs-africa".into(),
        external_refund_id: ext.into(),
        original_transaction_id: "txn-svc".into(),
        amount,
        currency: "KES".into(),
        reason: Some("damaged".into()),
        order_id: None,
        original: None,
    }
}

async fn refunds_at_sandbox(sandbox: &MfsSandbox) -> usize {
    sandbox.inspect("refunds").await["data"]
        .as_array()
        .map_or(0, Vec::len)
}

#[tokio::test]
async fn a_key_makes_one_refund_and_replays_its_first_answer() {
    let sandbox = MfsSandbox::start(None).await;
    sandbox.seed("txn-svc", "100.00", "KES", 1, true).await;
    let service = service(&sandbox).await;

    let first = service.create(refund("r-1", 2_500)).await.unwrap();
    assert_eq!((first.outcome, first.replayed), (Outcome::Created, false));
    assert_eq!(first.refund.status, Status::Pending);
    assert!(first.refund.provider_refund_id.is_some());

    let again = service.create(refund("r-1", 2_500)).await.unwrap();
    assert_eq!((again.outcome, again.replayed), (Outcome::Created, true));
    assert_eq!(again.refund.id, first.refund.id);

    let conflict = service.create(refund("r-1", 2_600)).await.unwrap_err();
    assert!(
        matches!(conflict, CreateError::IdempotencyConflict { refund_id } if refund_id == first.refund.id)
    );
    assert_eq!(refunds_at_sandbox(&sandbox).await, 1);
    let exchanges = service.exchanges(&first.refund.id).await.unwrap();
    assert_eq!(exchanges.len(), 1, "one provider call for three requests");
    assert_eq!(exchanges[0].operation, "create-refund");
}

#[tokio::test]
async fn retryable_failures_are_retried_then_given_up() {
    let sandbox = MfsSandbox::start(None).await;
    sandbox.seed("txn-svc", "100.00", "KES", 1, true).await;
    let service = service(&sandbox).await;

    sandbox
        .control(
            "faults",
            json!({"kind": "status", "status": 503, "count": 2}),
        )
        .await;
    let ok = service.create(refund("r-retry", 1_000)).await.unwrap();
    assert_eq!(ok.outcome, Outcome::Created, "third attempt succeeds");
    assert_eq!(service.exchanges(&ok.refund.id).await.unwrap().len(), 3);

    sandbox
        .control(
            "faults",
            json!({"kind": "status", "status": 503, "count": 3}),
        )
        .await;
    // A server error may have been acted on: after the last attempt the refund is unknown (the
    // janitor asks the provider), never failed.
    let gone = service.create(refund("r-down", 1_000)).await.unwrap();
    assert_eq!(gone.outcome, Outcome::Unknown);
    assert_eq!(gone.refund.status, Status::Unknown);
    assert_eq!(gone.refund.failure, None);
}

#[tokio::test]
async fn an_unknown_outcome_is_resolved_by_the_janitor() {
    let sandbox = MfsSandbox::start(None).await;
    sandbox.seed("txn-svc", "100.00", "KES", 1, true).await;
    let service = service(&sandbox).await;

    // The sandbox makes the refund, then answers after the host's timeout.
    sandbox
        .control("faults", json!({"kind": "delay", "delay_ms": 1_000}))
        .await;
    let lost = service.create(refund("r-lost", 1_200)).await.unwrap();
    assert_eq!(lost.outcome, Outcome::Unknown);
    assert_eq!(lost.refund.status, Status::Unknown);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let resolved = loop {
        service.janitor_pass().await.unwrap();
        let r = service.get(&lost.refund.id).await.unwrap().unwrap();
        if r.refund.status != Status::Unknown {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "janitor never resolved it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(resolved.refund.status, Status::Pending);
    assert_eq!(
        refunds_at_sandbox(&sandbox).await,
        1,
        "found by lookup, not re-sent"
    );
    assert!(
        resolved
            .history
            .iter()
            .any(|h| h.applied && h.source == refundry_ledger::Source::Janitor)
    );
    // The replay still answers as the first answer did.
    let replay = service.create(refund("r-lost", 1_200)).await.unwrap();
    assert_eq!(
        (replay.outcome, replay.refund.status),
        (Outcome::Unknown, Status::Pending)
    );
}

#[tokio::test]
async fn refunds_left_unanswered_by_a_crash_are_resumed() {
    let sandbox = MfsSandbox::start(None).await;
    sandbox.seed("txn-svc", "100.00", "KES", 1, true).await;
    let dir = std::env::temp_dir().join(format!("refundry-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = sandbox.host_config(&sandbox.creds, FAST);
    config.database = Some(dir.join("ledger.db"));

    // A first run wrote two refunds under their keys and died before sending either.
    {
        let crashed = service_with(&config).await;
        for ext in ["r-orphan-a", "r-orphan-b"] {
            let req = refund(ext, 700);
            let row = NewRow {
                id: format!("rf_orphan_{ext}"),
                provider: req.provider.clone(),
                plugin_version: "0.1.0".into(),
                plugin_sha256: "x".into(),
                external_refund_id: req.external_refund_id.clone(),
                original_transaction_id: req.original_transaction_id.clone(),
                amount: req.amount,
                currency: req.currency.clone(),
                reason: req.reason.clone(),
                order_id: None,
                original_amount: None,
                fingerprint: req.fingerprint(),
                now_ms: chrono::Utc::now().timestamp_millis(),
                first_check_ms: i64::MAX,
            };
            assert!(matches!(
                crashed.ledger().begin(row, None).await.unwrap(),
                Begin::New(_)
            ));
        }
    }
    let service = service_with(&config).await;

    // The gateway re-sends one of them: the identical request is resumed.
    let resumed = service.create(refund("r-orphan-a", 700)).await.unwrap();
    assert_eq!(
        (resumed.outcome, resumed.replayed, resumed.refund.status),
        (Outcome::Created, true, Status::Pending)
    );
    // The other was made due at start: the janitor finds it unknown to the provider and re-sends it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        service.janitor_pass().await.unwrap();
        let r = service.get("rf_orphan_r-orphan-b").await.unwrap().unwrap();
        if r.refund.status != Status::Unknown {
            assert_eq!(r.refund.status, Status::Pending);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "janitor never resolved it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        refunds_at_sandbox(&sandbox).await,
        2,
        "one provider refund per key"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

async fn service_with(config: &refundry_service::Config) -> RefundService {
    RefundService::start(config).await.expect("service starts")
}

#[tokio::test]
async fn a_request_cut_off_by_the_plugin_deadline_is_unknown_and_logged() {
    let sandbox = MfsSandbox::start(None).await;
    sandbox.seed("txn-svc", "100.00", "KES", 1, true).await;
    let extra = "[engine]\ndeadline_ms = 300\n[janitor]\ninterval_ms = 20\nbackoff_ms = [50]\n";
    let service = service_with(&sandbox.host_config(&sandbox.creds, extra)).await;

    // The sandbox makes the refund and holds its answer past the plugin's deadline.
    sandbox
        .control("faults", json!({"kind": "delay", "delay_ms": 1_500}))
        .await;
    let cut = service.create(refund("r-cut", 900)).await.unwrap();
    assert_eq!(
        (cut.outcome, cut.refund.status),
        (Outcome::Unknown, Status::Unknown)
    );
    let exchanges = service.exchanges(&cut.refund.id).await.unwrap();
    assert_eq!(
        exchanges.len(),
        1,
        "the request that was cut off is in the log"
    );
    let error = exchanges[0].exchange.error.as_deref().unwrap_or("");
    assert!(error.contains("cut off"), "{error}");
    assert_eq!(exchanges[0].exchange.status, None);
}
