//! The ledger is never wrong about money: a refund that may have happened is never `failed`,
//! nothing is recorded final when nothing reached the provider, a reversal is found without its
//! webhook, and amounts are bounded. The refund service in process, against the MFS Africa
//! sandbox on loopback.

use std::time::Duration;

use refundry_ledger::{Outcome, RefundDetail, Source, Status};
use refundry_service::refunds::{CreateError, NewRefund, OriginalPayment, RefundService};
use refundry_tests::MfsSandbox;
use serde_json::json;

const FAST: &str = r#"
[http]
timeout_ms = 2000
[retry]
attempts = 3
backoff_ms = [10, 20]
[janitor]
interval_ms = 20
backoff_ms = [50]
"#;

/// How long a condition is awaited before the test fails.
const PATIENCE: Duration = Duration::from_secs(15);

async fn service(sandbox: &MfsSandbox, extra: &str) -> RefundService {
    let config = sandbox.host_config(&sandbox.creds, &format!("{FAST}{extra}"));
    RefundService::start(&config).await.expect("service starts")
}

fn refund(ext: &str, amount: i64) -> NewRefund {
    NewRefund {
        provider: "mfs-africa".into(),
        external_refund_id: ext.into(),
        original_transaction_id: "txn-safe".into(),
        amount,
        currency: "KES".into(),
        reason: None,
        order_id: None,
        original: None,
    }
}

/// When the payment was made: yesterday, the same instant for every request of a test run (it is
/// part of the request, so a replay must carry the same).
static PAID_AT: std::sync::LazyLock<chrono::DateTime<chrono::Utc>> =
    std::sync::LazyLock::new(|| chrono::Utc::now() - chrono::Duration::days(1));

/// `refund` with the original payment of 100.00 KES, so that the pre-check runs.
fn checked_refund(ext: &str, amount: i64) -> NewRefund {
    NewRefund {
        original: Some(OriginalPayment {
            amount: 10_000,
            currency: "KES".into(),
            completed_at: *PAID_AT,
            settled: Some(true),
        }),
        ..refund(ext, amount)
    }
}

async fn refunds_at_sandbox(sandbox: &MfsSandbox) -> usize {
    sandbox.inspect("refunds").await["data"]
        .as_array()
        .map_or(0, Vec::len)
}

/// Runs janitor passes until the refund leaves `from`; returns it as it then is.
async fn janitor_moves(service: &RefundService, id: &str, from: Status) -> RefundDetail {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        service.janitor_pass().await.unwrap();
        let r = service.get(id).await.unwrap().unwrap();
        if r.refund.status != from {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the janitor never moved {id} from {from:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_refund_the_provider_acted_on_then_answered_500_is_unknown_counted_and_found() {
    let sandbox = MfsSandbox::start(None).await;
    sandbox.seed("txn-safe", "100.00", "KES", 1, true).await;
    let service = service(&sandbox, "").await;

    // The provider makes the refund, then answers 500 to it and to both retries.
    sandbox
        .control(
            "faults",
            json!({"kind": "status_after_processing", "status": 500, "count": 3}),
        )
        .await;
    let acted = service
        .create(checked_refund("r-acted", 6_000))
        .await
        .unwrap();
    assert_eq!(acted.outcome, Outcome::Unknown, "answered 202, not 503");
    assert_eq!(acted.refund.status, Status::Unknown, "never failed");
    assert_eq!(acted.refund.failure, None);
    assert!(acted.not_sent.is_none());
    assert_eq!(refunds_at_sandbox(&sandbox).await, 1);
    assert_eq!(service.exchanges(&acted.refund.id).await.unwrap().len(), 3);

    // Counted by the pre-check: 60.00 may be out already, so 50.00 more is too much.
    let more = service
        .create(checked_refund("r-more", 5_000))
        .await
        .unwrap();
    assert_eq!(more.outcome, Outcome::Refused);
    assert_eq!(more.refund.failure.unwrap().code, "amount_exceeded");

    // The janitor finds it by its external id; nothing is sent again.
    let found = janitor_moves(&service, &acted.refund.id, Status::Unknown).await;
    assert_eq!(found.refund.status, Status::Pending);
    assert!(found.refund.provider_refund_id.is_some());
    assert_eq!(refunds_at_sandbox(&sandbox).await, 1, "found, not re-sent");
    // The gateway's retry gets the first answer again: still no failure.
    let replay = service
        .create(checked_refund("r-acted", 6_000))
        .await
        .unwrap();
    assert_eq!(
        (replay.outcome, replay.replayed, replay.refund.status),
        (Outcome::Unknown, true, Status::Pending)
    );
}

#[tokio::test]
async fn a_rate_limit_on_every_attempt_records_nothing_final_and_the_key_is_sent_again() {
    let sandbox = MfsSandbox::start(None).await;
    sandbox.seed("txn-safe", "100.00", "KES", 1, true).await;
    let service = service(&sandbox, "").await;

    sandbox
        .control(
            "faults",
            json!({"kind": "status", "status": 429, "count": 3, "retry_after": 1}),
        )
        .await;
    let limited = service.create(refund("r-429", 1_000)).await.unwrap();
    assert_eq!(limited.outcome, Outcome::Unavailable, "answered 503");
    let not_sent = limited.not_sent.expect("why nothing was sent");
    assert_eq!(not_sent.failure.code, "provider_unavailable");
    assert!(not_sent.retry_after >= Duration::from_secs(1));
    assert_eq!(limited.refund.status, Status::Unknown, "nothing final");
    assert_eq!(limited.refund.failure, None);
    assert_eq!(refunds_at_sandbox(&sandbox).await, 0);

    // The same key is sent again, and the provider takes it once.
    let again = service.create(refund("r-429", 1_000)).await.unwrap();
    assert_eq!(
        (again.outcome, again.replayed, again.refund.status),
        (Outcome::Created, true, Status::Pending)
    );
    assert_eq!(again.refund.id, limited.refund.id);
    assert_eq!(refunds_at_sandbox(&sandbox).await, 1);
    let history = service
        .get(&again.refund.id)
        .await
        .unwrap()
        .unwrap()
        .history;
    assert!(
        history.iter().any(|h| h
            .detail
            .as_deref()
            .is_some_and(|d| d.starts_with("not sent (provider_unavailable)"))),
        "{history:?}"
    );
}

#[tokio::test]
async fn a_full_instance_pool_records_nothing_final_and_the_key_is_sent_again() {
    let sandbox = MfsSandbox::start(None).await;
    sandbox.seed("txn-safe", "100.00", "KES", 1, true).await;
    let service = service(&sandbox, "[engine]\nmax_instances = 1\n").await;

    // The one instance waits on the provider, which holds its answer.
    sandbox
        .control("faults", json!({"kind": "delay", "delay_ms": 1_500}))
        .await;
    let first = {
        let service = service.clone();
        tokio::spawn(async move { service.create(refund("r-slow", 700)).await })
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while refunds_at_sandbox(&sandbox).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "r-slow never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let crowded = service.create(refund("r-crowded", 800)).await.unwrap();
    assert_eq!(crowded.outcome, Outcome::Unavailable, "answered 503");
    let not_sent = crowded.not_sent.expect("why nothing was sent");
    assert_eq!(not_sent.failure.code, "plugin_error");
    assert_eq!(crowded.refund.status, Status::Unknown, "nothing final");
    assert_eq!(refunds_at_sandbox(&sandbox).await, 1);

    let slow = first.await.unwrap().unwrap();
    assert_eq!(slow.outcome, Outcome::Created);
    // With the pool free again, the same key goes through.
    let again = service.create(refund("r-crowded", 800)).await.unwrap();
    assert_eq!(
        (again.outcome, again.replayed, again.refund.status),
        (Outcome::Created, true, Status::Pending)
    );
    assert_eq!(refunds_at_sandbox(&sandbox).await, 2);
}

#[tokio::test]
async fn a_reversal_is_found_by_the_janitor_without_its_webhook() {
    // No webhook URL: the sandbox tells the host of nothing.
    let sandbox = MfsSandbox::start(None).await;
    sandbox.seed("txn-safe", "100.00", "KES", 1, true).await;
    let service = service(&sandbox, "").await;

    let made = service.create(refund("r-rev", 2_000)).await.unwrap();
    assert_eq!(made.refund.status, Status::Pending);
    let provider_id = made.refund.provider_refund_id.clone().unwrap();
    let set = |status: &'static str| {
        let sandbox = &sandbox;
        let path = format!("refunds/{provider_id}/status");
        async move { sandbox.control(&path, json!({ "status": status })).await }
    };
    set("processed").await;
    let processed = janitor_moves(&service, &made.refund.id, Status::Pending).await;
    assert_eq!(processed.refund.status, Status::Processed);

    set("reversed").await;
    let reversed = janitor_moves(&service, &made.refund.id, Status::Processed).await;
    assert_eq!(reversed.refund.status, Status::Reversed);
    let last = reversed.history.last().unwrap();
    assert_eq!(
        (last.source, last.from, last.to, last.applied),
        (
            Source::Janitor,
            Some(Status::Processed),
            Status::Reversed,
            true
        )
    );
    // Final now: out of the janitor's queue.
    assert_eq!(service.ledger().backlog().await.unwrap(), 0);
}

#[tokio::test]
async fn amounts_above_ten_to_the_fifteen_are_refused_before_the_ledger() {
    let sandbox = MfsSandbox::start(None).await;
    let service = service(&sandbox, "").await;
    // The reproduction: a huge refund in flight, then a small one against a small original.
    for (req, field) in [
        (refund("r-huge", 9_223_372_036_854_775_000), "amount"),
        (
            NewRefund {
                original: Some(OriginalPayment {
                    amount: 1_000_000_000_000_001,
                    ..checked_refund("x", 1).original.unwrap()
                }),
                ..refund("r-orig", 5_000)
            },
            "original.amount",
        ),
    ] {
        match service.create(req).await {
            Err(CreateError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    assert_eq!(refunds_at_sandbox(&sandbox).await, 0);
    let page = service
        .list(refundry_ledger::ListQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(page.refunds.is_empty(), "nothing written");
}

#[tokio::test]
async fn a_janitor_resend_that_fails_again_backs_off() {
    let sandbox = MfsSandbox::start(None).await;
    sandbox.seed("txn-safe", "100.00", "KES", 1, true).await;
    // The first look comes soon; the one after a failed re-send, ten minutes later.
    let config = sandbox.host_config(
        &sandbox.creds,
        "[retry]\nattempts = 1\n[janitor]\ninterval_ms = 20\nbackoff_ms = [20, 600000]\n",
    );
    let service = RefundService::start(&config).await.unwrap();

    sandbox
        .control("faults", json!({"kind": "status", "status": 429}))
        .await;
    let limited = service.create(refund("r-again", 900)).await.unwrap();
    assert_eq!(limited.outcome, Outcome::Unavailable);
    // The janitor's lookup finds nothing (answered normally), and its re-send is refused again.
    sandbox
        .control("faults", json!({"kind": "delay", "delay_ms": 0}))
        .await;
    sandbox
        .control("faults", json!({"kind": "status", "status": 429}))
        .await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while service.janitor_pass().await.unwrap() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never due");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = service.get(&limited.refund.id).await.unwrap().unwrap();
    assert_eq!(r.refund.status, Status::Unknown);
    let last = r.history.last().unwrap();
    assert_eq!(last.source, Source::Janitor, "{:?}", r.history);
    assert_eq!(refunds_at_sandbox(&sandbox).await, 0);
    // Its next look is at the second step of the back-off, not the first again.
    let in_a_minute = chrono::Utc::now().timestamp_millis() + 60_000;
    let due = service.ledger().due(in_a_minute, 0, 10).await.unwrap();
    assert!(due.is_empty(), "re-sent at the first step again: {due:?}");
}
