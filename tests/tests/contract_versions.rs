//! A plugin built against contract 0.1.0 keeps working beside the same plugin built against
//! 0.2.0, in one host, against the MFS Africa sandbox.
//!
//! The 0.1.0 component is the checked-in `tests/fixtures/contract-v0.1.0/mfs-africa.wasm`, built
//! before the contract moved on: it is what a merchant who never rebuilt their plugin runs. The
//! runtime links both contracts and runs the older component through its adapter, so what each
//! operation answers must be the same, except what 0.1 cannot say (it cannot list refunds).

use std::collections::BTreeSet;
use std::sync::Arc;

use refundry_runtime::{
    Capabilities, ContractVersion, Engine, EngineLimits, Plugin, PluginComponent, Refund,
    RefundError, RefundLookup, RefundStatus, Refusal, RefusalKind, Secret, Settings, TimeRange,
    WebhookOutcome, WebhookRequest,
};
use refundry_tests::service::{MFS, Service, expect, mfs_body, str_of as s};
use refundry_tests::{
    MfsSandbox, kes_refund, next_webhook, plugin_path, released_contract_component,
    webhook_receiver,
};
use serde_json::{Value, json};

/// The provider's configuration, as a gateway embedding the runtime would hold it.
fn settings(sandbox: &MfsSandbox) -> Settings {
    let mut config = Settings::default();
    config
        .settings
        .insert("base_url".into(), sandbox.base_url());
    config
        .settings
        .insert("api_key".into(), sandbox.creds.api_key.clone());
    for (key, value) in [
        ("api_secret", &sandbox.creds.api_secret),
        ("webhook_secret", &sandbox.creds.webhook_secret),
    ] {
        config.secrets.insert(key.into(), Secret::new(value));
    }
    config
}

/// `component` bound as the `mfs-africa` provider, reaching only the sandbox.
async fn bind(engine: &Engine, component: PluginComponent, sandbox: &MfsSandbox) -> Plugin {
    let caps = Capabilities::builder(MFS, Arc::new(settings(sandbox)))
        .origin(sandbox.base_url().parse().unwrap())
        .build();
    Plugin::bind(engine.clone(), Arc::new(component), caps, true)
        .await
        .expect("the component binds as mfs-africa")
}

/// The sandbox's count of refunds created through its API.
async fn refunds_created(sandbox: &MfsSandbox) -> u64 {
    let stats = sandbox.inspect("stats").await;
    stats["refunds_created"]
        .as_u64()
        .unwrap_or_else(|| panic!("no refunds_created in {stats}"))
}

/// The sandbox's count of range list requests (`GET /v1/refunds?created_from=..`).
async fn range_lists(sandbox: &MfsSandbox) -> u64 {
    let stats = sandbox.inspect("stats").await;
    stats["requests"]["GET /v1/refunds?created_from"]
        .as_u64()
        .unwrap_or_else(|| panic!("no range list count in {stats}"))
}

/// Creates a refund, sends the same create again, and looks it up both ways; returns it.
async fn create_replay_and_look_up(
    plugin: &Plugin,
    sandbox: &MfsSandbox,
    txn: &str,
    external_id: &str,
) -> Refund {
    let contract = plugin.component().contract();
    let before = refunds_created(sandbox).await;
    let req = kes_refund(txn, external_id, 10_000);
    let created = plugin.create_refund(&req).await.unwrap().unwrap();
    assert_eq!(created.external_refund_id.as_deref(), Some(external_id));
    assert_eq!(created.status, RefundStatus::Pending);
    assert_eq!(created.amount, req.amount);

    // The provider's replay: the same refund, and no second one at the sandbox.
    let again = plugin.create_refund(&req).await.unwrap().unwrap();
    assert_eq!(
        again.provider_refund_id, created.provider_refund_id,
        "{contract}: a replayed create is the same refund"
    );
    assert_eq!(
        refunds_created(sandbox).await,
        before + 1,
        "{contract}: one refund for two identical creates"
    );

    let by_external = plugin
        .get_refund(
            &RefundLookup::ExternalRefundId(external_id.into()),
            Some(txn),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_external.provider_refund_id, created.provider_refund_id);
    let by_provider = plugin
        .get_refund(
            &RefundLookup::ProviderRefundId(created.provider_refund_id.clone()),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_provider.external_refund_id.as_deref(), Some(external_id));
    assert_eq!(by_provider.original_transaction_id, txn);
    created
}

/// Every page of the refunds created in `range`, following the cursors.
async fn list_all(plugin: &Plugin, range: &TimeRange) -> Vec<Refund> {
    let mut refunds = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let page = plugin
            .list_refunds(range, cursor.as_deref())
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("list-refunds refused: {e:?}"));
        refunds.extend(page.refunds);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return refunds,
        }
    }
    panic!("more than 10 pages for a handful of refunds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_1_component_runs_beside_its_0_2_build_in_one_host() {
    let (url, mut webhooks) = webhook_receiver(vec![]).await;
    let sandbox = MfsSandbox::start(Some(url)).await;
    sandbox.seed("txn_v01", "500.00", "KES", 1, true).await;
    sandbox.seed("txn_v02", "500.00", "KES", 1, true).await;

    // One engine, one linker holding both contracts.
    let engine = Engine::new(EngineLimits::default()).expect("the engine starts");
    let old =
        PluginComponent::from_file(&engine, &released_contract_component("0.1.0", "mfs-africa"))
            .expect("the 0.1.0 component loads");
    let new = PluginComponent::from_file(&engine, &plugin_path("mfs-africa"))
        .expect("the 0.2.0 component loads");
    assert_eq!(old.contract(), ContractVersion::V0_1_0);
    assert_eq!(old.contract().as_str(), "0.1.0");
    assert_eq!(new.contract(), ContractVersion::V0_2_0);
    assert_eq!(new.contract().as_str(), "0.2.0");
    assert!(
        old.imports.iter().all(|i| i.ends_with("@0.1.0")),
        "{:?}",
        old.imports
    );
    assert!(
        new.imports.iter().all(|i| i.ends_with("@0.2.0")),
        "{:?}",
        new.imports
    );
    let old = bind(&engine, old, &sandbox).await;
    let new = bind(&engine, new, &sandbox).await;

    // What 0.1 could not say about itself, the adapter answers as 0.1 meant it.
    let (old_info, new_info) = (old.info(), new.info());
    assert_eq!(old_info.id, new_info.id);
    assert_eq!(old_info.currencies, new_info.currencies);
    assert!(old_info.status_queries && new_info.status_queries);
    assert_eq!(old_info.max_list_range_days, None);
    assert_eq!(new_info.max_list_range_days, Some(31));

    let start = chrono::Utc::now().timestamp_millis() - 60_000;
    let a = create_replay_and_look_up(&old, &sandbox, "txn_v01", "cv-old-1").await;
    let b = create_replay_and_look_up(&new, &sandbox, "txn_v02", "cv-new-1").await;
    assert_eq!(refunds_created(&sandbox).await, 2);
    // Each finds the refund the other made: one provider, one set of refunds.
    let seen_by_old = old
        .get_refund(&RefundLookup::ExternalRefundId("cv-new-1".into()), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen_by_old.provider_refund_id, b.provider_refund_id);

    // Listing is 0.2's: the adapter refuses it for 0.1 without a request to the provider.
    let range = TimeRange {
        from: start,
        to: chrono::Utc::now().timestamp_millis() + 60_000,
    };
    let refused = old.list_refunds(&range, None).await.unwrap();
    assert!(
        matches!(
            refused,
            Err(RefundError::Refused(Refusal {
                kind: RefusalKind::Unsupported,
                provider_code: None,
                http_status: None,
                ..
            }))
        ),
        "{refused:?}"
    );
    assert_eq!(range_lists(&sandbox).await, 0);
    let listed: BTreeSet<String> = list_all(&new, &range)
        .await
        .into_iter()
        .map(|r| r.provider_refund_id)
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from([a.provider_refund_id.clone(), b.provider_refund_id.clone()])
    );
    assert!(range_lists(&sandbox).await >= 1);

    // A webhook: 0.1 saw headers and body, and answered one event; the host hears a delivery
    // of one event, the same the 0.2 build parses from the same delivery.
    sandbox
        .control(
            &format!("refunds/{}/status", a.provider_refund_id),
            json!({"status": "processed"}),
        )
        .await;
    let (headers, body) = next_webhook(&mut webhooks, 10).await;
    let delivery = WebhookRequest {
        method: "POST".into(),
        path: "/v1/webhooks/mfs-africa".into(),
        query: None,
        headers,
        body,
    };
    let old_events = match old.parse_webhook(&delivery).await.unwrap() {
        Ok(WebhookOutcome::Events(events)) => events,
        other => panic!("expected events, got {other:?}"),
    };
    assert_eq!(old_events.len(), 1, "{old_events:?}");
    assert_eq!(
        old_events[0].refund.provider_refund_id,
        a.provider_refund_id
    );
    assert_eq!(old_events[0].refund.status, RefundStatus::Processed);
    assert_eq!(
        new.parse_webhook(&delivery).await.unwrap(),
        Ok(WebhookOutcome::Events(old_events))
    );
}

/// One plugin version's entry in a `GET /v1/plugins` answer.
fn listed_version<'a>(list: &'a Value, version: &str) -> &'a Value {
    list["providers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["provider"] == MFS))
        .and_then(|p| p["versions"].as_array())
        .and_then(|vs| vs.iter().find(|v| v["version"] == version))
        .unwrap_or_else(|| panic!("{MFS} has no version {version} in {list}"))
}

/// `refundry serve` running `mfs-africa.wasm` (version 0.2.0, contract 0.2.0) takes the 0.1.0
/// fixture (version 0.1.0, contract 0.1.0) as another version of the same provider; each creates
/// refunds while active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_service_takes_a_0_1_component_as_a_version_beside_a_0_2_one() {
    let service = Service::start().await;
    service.mfs.seed("cv-txn", "500.00", "KES", 1, true).await;

    let fixture = std::fs::read(released_contract_component("0.1.0", "mfs-africa")).unwrap();
    let loaded = service.load_plugin(MFS, fixture).await;
    expect(&loaded, 201, "load the 0.1.0 component");
    assert_eq!(loaded.body["version"], "0.1.0", "{}", loaded.text);
    assert_eq!(loaded.body["active"], false, "{}", loaded.text);

    let list = service.plugins().await;
    // Both listed, each with the contract it was built against.
    for (version, contract) in [("0.1.0", "0.1.0"), ("0.2.0", "0.2.0")] {
        assert_eq!(
            listed_version(&list, version)["contract"],
            contract,
            "{version}: {list}"
        );
    }

    // Each version creates while active (neither names itself in `X-Plugin-Version`: only the
    // `next` build does).
    for (version, key, header) in [("0.1.0", "cv-rest-1", None), ("0.2.0", "cv-rest-2", None)] {
        let activated = service.activate_plugin(MFS, version).await;
        expect(&activated, 200, &format!("activate {version}"));
        let reply = service.post_refund(&mfs_body("cv-txn", key, 1_000)).await;
        expect(&reply, 201, &format!("create {key} on {version}"));
        assert_eq!(reply.body["plugin_version"], version, "{}", reply.text);
        let pid = s(&reply.body["provider_refund_id"]).to_owned();
        assert_eq!(
            service.mfs.created_by_plugin_version(&pid).await.as_deref(),
            header,
            "{key}"
        );
        // The same create again is the same refund, from the ledger or the provider's replay.
        let again = service.post_refund(&mfs_body("cv-txn", key, 1_000)).await;
        assert!(matches!(again.status, 200 | 201), "{}", again.text);
        assert_eq!(
            again.body["provider_refund_id"],
            pid.as_str(),
            "{}",
            again.text
        );
        let found = service.refund(s(&reply.body["id"])).await;
        assert_eq!(found["provider_refund_id"], pid.as_str(), "{found}");
    }
    let created = service.mfs_refunds().await;
    assert_eq!(created.len(), 2, "{created:?}");
    let listed = service.plugins().await;
    assert_eq!(listed_version(&listed, "0.1.0")["contract"], "0.1.0");
    assert_eq!(listed_version(&listed, "0.2.0")["contract"], "0.2.0");
}
