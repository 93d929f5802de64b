//! MFS Africa end to end: the real plugin component in the host, against the sandbox on loopback.
//! Every row of the spec's error table is reached and mapped to the right `refund-error` kind.

use std::sync::Arc;

use refundry_runtime::RefundError;
use refundry_runtime::RefundLookup;
use refundry_runtime::RefundStatus;
use refundry_runtime::RefusalKind;
use refundry_runtime::caps::SkewedClock;
use refundry_service::OperationError;
use refundry_service::Providers;
use refundry_tests::{Credentials, MfsSandbox, kes_refund, plugin_path};
use serde_json::json;

/// The refusal's kind, provider code and HTTP status; panics on anything else.
fn refusal(
    result: Result<refundry_runtime::Refund, OperationError>,
) -> (RefusalKind, Option<String>, Option<u16>) {
    match result {
        Err(OperationError::Refund(RefundError::Refused(r))) => {
            (r.kind, r.provider_code, r.http_status)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn retryable(
    result: Result<refundry_runtime::Refund, OperationError>,
) -> refundry_runtime::Retryable {
    match result {
        Err(OperationError::Refund(RefundError::Retryable(r))) => r,
        other => panic!("expected a retryable error, got {other:?}"),
    }
}

#[tokio::test]
async fn partial_refunds_replay_and_status() {
    let sandbox = MfsSandbox::start(None).await;
    sandbox.seed("txn_a", "5000.00", "KES", 2, true).await;
    let host = sandbox.host().await;

    let r1 = host
        .create_refund("mfs-africa", &kes_refund("txn_a", "a-r1", 200_000))
        .await
        .unwrap();
    assert_eq!(r1.status, RefundStatus::Pending);
    assert_eq!(r1.amount.amount_minor, 200_000);
    assert_eq!(r1.external_refund_id.as_deref(), Some("a-r1"));
    let r2 = host
        .create_refund("mfs-africa", &kes_refund("txn_a", "a-r2", 300_000))
        .await
        .unwrap();
    assert_ne!(r1.provider_refund_id, r2.provider_refund_id);

    // Replay: the same refund, no new money.
    let again = host
        .create_refund("mfs-africa", &kes_refund("txn_a", "a-r1", 200_000))
        .await
        .unwrap();
    assert_eq!(again.provider_refund_id, r1.provider_refund_id);
    let stats = sandbox.inspect("stats").await;
    assert_eq!(stats["refunds_created"], 2, "{stats}");

    sandbox
        .control(
            &format!("refunds/{}/status", r1.provider_refund_id),
            json!({"status": "processed"}),
        )
        .await;
    let by_id = host
        .get_refund(
            "mfs-africa",
            &RefundLookup::ProviderRefundId(r1.provider_refund_id.clone()),
        )
        .await
        .unwrap();
    assert_eq!(by_id.status, RefundStatus::Processed);
    let by_ext = host
        .get_refund("mfs-africa", &RefundLookup::ExternalRefundId("a-r2".into()))
        .await
        .unwrap();
    assert_eq!(by_ext.provider_refund_id, r2.provider_refund_id);

    let (kind, code, _) = refusal(
        host.get_refund(
            "mfs-africa",
            &RefundLookup::ProviderRefundId("rfnd_nope".into()),
        )
        .await,
    );
    assert_eq!(
        (kind, code.as_deref()),
        (RefusalKind::NotFound, Some("refund_not_found"))
    );
    let (kind, code, _) = refusal(
        host.get_refund(
            "mfs-africa",
            &RefundLookup::ExternalRefundId("never-made".into()),
        )
        .await,
    );
    assert_eq!((kind, code), (RefusalKind::NotFound, None));
}

#[tokio::test]
async fn business_refusals_map_to_their_kinds() {
    let sandbox = MfsSandbox::start(None).await;
    sandbox.seed("txn_kes", "100.00", "KES", 1, true).await;
    sandbox.seed("txn_usd", "100.00", "USD", 1, true).await;
    sandbox
        .seed("txn_unsettled", "100.00", "KES", 1, false)
        .await;
    sandbox.seed("txn_old", "100.00", "KES", 181, true).await;
    let host = sandbox.host().await;
    let create = |txn: &'static str, ext: &'static str, amount: i64| {
        let host = &host;
        async move {
            host.create_refund("mfs-africa", &kes_refund(txn, ext, amount))
                .await
        }
    };

    assert_eq!(
        refusal(create("txn_missing", "b-1", 100).await),
        (
            RefusalKind::InvalidTransaction,
            Some("invalid_transaction".into()),
            Some(404)
        )
    );
    assert_eq!(
        refusal(create("txn_kes", "b-2", 10_001).await),
        (
            RefusalKind::AmountExceeded,
            Some("amount_exceeded".into()),
            Some(422)
        )
    );
    assert_eq!(
        refusal(create("txn_usd", "b-3", 100).await),
        (
            RefusalKind::CurrencyMismatch,
            Some("currency_mismatch".into()),
            Some(422)
        )
    );
    assert_eq!(
        refusal(create("txn_unsettled", "b-4", 100).await),
        (
            RefusalKind::NotSettled,
            Some("transaction_not_settled".into()),
            Some(422)
        )
    );
    assert_eq!(
        refusal(create("txn_old", "b-5", 100).await),
        (
            RefusalKind::WindowExpired,
            Some("refund_window_expired".into()),
            Some(422)
        )
    );
    create("txn_kes", "b-6", 100).await.unwrap();
    assert_eq!(
        refusal(create("txn_kes", "b-6", 200).await),
        (
            RefusalKind::IdempotencyConflict,
            Some("duplicate_external_refund_id".into()),
            Some(409)
        )
    );
}

#[tokio::test]
async fn authentication_and_allowlist_refusals() {
    let sandbox = MfsSandbox::start(None).await;
    sandbox.seed("txn_c", "100.00", "KES", 1, true).await;
    let req = kes_refund("txn_c", "c-1", 100);

    let wrong_key = Credentials {
        api_key: "someone-else".into(),
        ..sandbox.creds.clone()
    };
    let host = sandbox
        .host_with(
            &wrong_key,
            Arc::new(refundry_runtime::caps::SystemClock),
            "",
        )
        .await;
    assert_eq!(
        refusal(host.create_refund("mfs-africa", &req).await),
        (
            RefusalKind::Authentication,
            Some("invalid_api_key".into()),
            Some(401)
        )
    );

    let wrong_secret = Credentials {
        api_secret: "not-the-secret".into(),
        ..sandbox.creds.clone()
    };
    let host = sandbox
        .host_with(
            &wrong_secret,
            Arc::new(refundry_runtime::caps::SystemClock),
            "",
        )
        .await;
    assert_eq!(
        refusal(host.create_refund("mfs-africa", &req).await),
        (
            RefusalKind::Authentication,
            Some("invalid_signature".into()),
            Some(401)
        )
    );

    for offset_ms in [301_000, -301_000] {
        let host = sandbox
            .host_with(&sandbox.creds, Arc::new(SkewedClock { offset_ms }), "")
            .await;
        assert_eq!(
            refusal(host.create_refund("mfs-africa", &req).await),
            (
                RefusalKind::Authentication,
                Some("timestamp_out_of_range".into()),
                Some(401)
            ),
            "clock off by {offset_ms} ms"
        );
    }

    sandbox
        .control("ip-allowlist", json!({"allowed": ["203.0.113.7"]}))
        .await;
    let host = sandbox.host().await;
    assert_eq!(
        refusal(host.create_refund("mfs-africa", &req).await),
        (
            RefusalKind::Forbidden,
            Some("ip_not_allowed".into()),
            Some(403)
        )
    );
    assert_eq!(sandbox.inspect("stats").await["refunds_created"], 0);
}

#[tokio::test]
async fn provider_faults_are_retryable() {
    let sandbox = MfsSandbox::start(None).await;
    sandbox.seed("txn_d", "100.00", "KES", 1, true).await;
    let host = sandbox.host().await;
    let req = kes_refund("txn_d", "d-1", 100);

    sandbox
        .control(
            "faults",
            json!({"kind": "status", "status": 429, "count": 1, "retry_after": 7}),
        )
        .await;
    let r = retryable(host.create_refund("mfs-africa", &req).await);
    assert_eq!(r.provider_code.as_deref(), Some("rate_limited"));
    assert_eq!(r.retry_after_ms, Some(7_000));

    for (status, code) in [
        (500, "internal_error"),
        (502, "service_unavailable"),
        (503, "service_unavailable"),
    ] {
        sandbox
            .control(
                "faults",
                json!({"kind": "status", "status": status, "count": 1}),
            )
            .await;
        let r = retryable(host.create_refund("mfs-africa", &req).await);
        assert_eq!(
            (r.http_status, r.provider_code.as_deref()),
            (Some(status), Some(code))
        );
    }
    // After the faults, the same external id goes through once.
    let refund = host.create_refund("mfs-africa", &req).await.unwrap();
    assert_eq!(refund.status, RefundStatus::Pending);
    assert_eq!(sandbox.inspect("stats").await["refunds_created"], 1);
}

#[tokio::test]
async fn injected_error_rows_map_to_their_kinds() {
    let sandbox = MfsSandbox::start(None).await;
    sandbox.seed("txn_e", "100.00", "KES", 1, true).await;
    let host = sandbox.host().await;
    let req = kes_refund("txn_e", "e-1", 100);
    // Rows the plugin's own validation keeps a well-behaved client from reaching naturally,
    // and a code the spec does not list.
    for (status, code, kind) in [
        (400, "invalid_request", RefusalKind::InvalidRequest),
        (422, "transaction_not_settled", RefusalKind::NotSettled),
        (418, "teapot", RefusalKind::Other),
    ] {
        sandbox
            .control(
                "faults",
                json!({"kind": "error", "status": status, "code": code}),
            )
            .await;
        assert_eq!(
            refusal(host.create_refund("mfs-africa", &req).await),
            (kind, Some(code.to_owned()), Some(status))
        );
    }
}

#[tokio::test]
async fn lost_answer_is_an_unknown_outcome_resolved_by_lookup() {
    let sandbox = MfsSandbox::start(None).await;
    sandbox.seed("txn_f", "100.00", "KES", 1, true).await;
    // The host gives up on the provider after 300 ms; the sandbox answers after 2 s.
    let host = sandbox
        .host_with(
            &sandbox.creds,
            Arc::new(refundry_runtime::caps::SystemClock),
            "[http]\ntimeout_ms = 300\n",
        )
        .await;
    sandbox
        .control(
            "faults",
            json!({"kind": "delay", "delay_ms": 2000, "count": 1}),
        )
        .await;
    let result = host
        .create_refund("mfs-africa", &kes_refund("txn_f", "f-1", 100))
        .await;
    assert!(
        matches!(
            result,
            Err(OperationError::Refund(RefundError::UnknownOutcome(_)))
        ),
        "{result:?}"
    );
    // The refund exists at the provider: a lookup by external id finds it.
    let found = host
        .get_refund("mfs-africa", &RefundLookup::ExternalRefundId("f-1".into()))
        .await
        .unwrap();
    assert_eq!(found.amount.amount_minor, 100);
    // And resending the identical request replays it rather than refunding twice.
    let replay = host
        .create_refund("mfs-africa", &kes_refund("txn_f", "f-1", 100))
        .await
        .unwrap();
    assert_eq!(replay.provider_refund_id, found.provider_refund_id);
    assert_eq!(sandbox.inspect("stats").await["refunds_created"], 1);
}

#[tokio::test]
async fn unreachable_provider_is_retryable() {
    // A port nobody listens on: nothing was sent, so the request may be retried.
    let sandbox = MfsSandbox::start(None).await;
    let mut config = sandbox.host_config(&sandbox.creds, "");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let provider = config.providers.get_mut("mfs-africa").unwrap();
    let url = format!("http://127.0.0.1:{port}");
    provider.settings.insert("base_url".into(), url.clone());
    provider.base_url = url.parse().unwrap();
    let host = refundry_service::Providers::start(&config).await.unwrap();
    let r = retryable(
        host.create_refund("mfs-africa", &kes_refund("txn", "g-1", 100))
            .await,
    );
    assert_eq!(r.http_status, None);
}

/// The version the component `plugin` gives from `describe()`, asked in `host`'s engine.
async fn described_version(host: &Providers, plugin: &str) -> String {
    let path = plugin_path(plugin);
    let (info, _) = refundry_service::providers::inspect(host.engine(), &path)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    info.version
}

#[tokio::test]
async fn the_next_version_names_itself_and_a_sandbox_can_require_it() {
    let sandbox = MfsSandbox::start_with(None, Some("X-Plugin-Version")).await;
    sandbox.seed("txn_v", "100.00", "KES", 1, true).await;
    let plain = sandbox.host().await;
    let next = sandbox.host_with_plugin("mfs-africa-next").await;
    assert_eq!(described_version(&plain, "mfs-africa").await, "0.2.0");
    assert_eq!(described_version(&next, "mfs-africa-next").await, "0.3.0");

    let refund = next
        .create_refund("mfs-africa", &kes_refund("txn_v", "v-1", 100))
        .await
        .unwrap();
    assert_eq!(refund.status, RefundStatus::Pending);
    assert_eq!(
        sandbox
            .created_by_plugin_version(&refund.provider_refund_id)
            .await
            .as_deref(),
        Some("0.3.0")
    );
    // Its reads carry the header too.
    let found = next
        .get_refund("mfs-africa", &RefundLookup::ExternalRefundId("v-1".into()))
        .await
        .unwrap();
    assert_eq!(found.provider_refund_id, refund.provider_refund_id);

    // The plain version sends no such header: the provider refuses it and makes nothing.
    assert_eq!(
        refusal(
            plain
                .create_refund("mfs-africa", &kes_refund("txn_v", "v-2", 100))
                .await
        ),
        (
            RefusalKind::InvalidRequest,
            Some("invalid_request".into()),
            Some(400)
        )
    );
    assert_eq!(sandbox.inspect("stats").await["refunds_created"], 1);
}
