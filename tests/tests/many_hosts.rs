//! Several `refundry serve` hosts on one PostgreSQL ledger, each test on a private PostgreSQL
//! cluster of its own (made in a temporary folder, on a free port) and the sandboxes:
//!
//! - 3,000 refunds sent round-robin to three hosts at concurrency 32, one host killed with
//!   SIGKILL mid-run and restarted, a plugin version activated through another host mid-run:
//!   nothing lost, one provider refund per key, every refund final, every event delivered in
//!   order per refund;
//! - the same key sent to two hosts at once: one provider call, one refund;
//! - an activation and a removal made through one host reach the other within a second;
//! - PagoEfectivo authorizes once for all hosts (plugin storage is shared), and a host sees
//!   another's storage writes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use refundry_ledger::testing::PgCluster;
use refundry_tests::plugin_path;
use refundry_tests::receiver::Receiver;
use refundry_tests::service::{
    Host, MFS, Options, Service, mfs_body, pe_body, str_of as s, wait_until, with_original,
};
use serde_json::{Value, json};

/// Generous: debug builds, three hosts, PostgreSQL and the sandboxes on two cores.
const T: Duration = Duration::from_secs(60);
const EVENTS_SECRET: &str = "events-secret-0123456789abcdef";
/// `mfs-africa-next.wasm`'s version.
const NEXT: &str = "0.3.0";

/// A private cluster and, on it, the service's database.
fn cluster() -> (PgCluster, String) {
    let cluster = PgCluster::start(false).expect("a private PostgreSQL cluster");
    let url = cluster.create_database("refundry").expect("a database");
    (cluster, url)
}

fn options(url: &str, extra: &str) -> Options {
    Options {
        database_url: Some(url.to_owned()),
        // Many plugin operations at once on a small machine: time to wait their turn.
        engine_deadline_ms: Some(60_000),
        extra_toml: extra.to_owned(),
        ..Options::default()
    }
}

/// `1234` -> `"12.34"`, as the sandbox writes KES.
fn kes(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

async fn post(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    body: &Value,
) -> Result<(u16, Value), reqwest::Error> {
    let response = client
        .post(format!("{base}/v1/refunds"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

async fn get(client: &reqwest::Client, base: &str, token: &str, path: &str) -> Value {
    let response = client
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {base}{path}: {e}"));
    assert_eq!(response.status(), 200, "GET {base}{path}");
    response.json().await.unwrap()
}

/// The active version of `provider` as the host at `base` reports it.
async fn active(client: &reqwest::Client, base: &str, token: &str, provider: &str) -> String {
    let list = get(client, base, token, "/v1/plugins").await;
    list["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == provider)
        .map(|p| s(&p["active"]).to_owned())
        .unwrap_or_default()
}

/// The versions `provider` has loaded, as the host at `base` reports them.
async fn versions(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    provider: &str,
) -> Vec<String> {
    let list = get(client, base, token, "/v1/plugins").await;
    list["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == provider)
        .map(|p| {
            p["versions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| s(&v["version"]).to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_share_3000_refunds_through_a_kill_and_an_activation() {
    const N: usize = 3_000;
    const CONCURRENCY: usize = 32;
    const TRANSACTIONS: usize = 30;
    const ORIGINAL: i64 = 100_000_000;
    let (_cluster, url) = cluster();
    let receiver = Receiver::start().await;
    let events = format!(
        "[events]\nurl = {:?}\nsecret = {EVENTS_SECRET:?}\ninterval_ms = 25\nbackoff_ms = [100, 200]\n",
        receiver.url
    );
    // No webhooks here (3,000 at once would be a test of the sandbox): the three janitors,
    // sharing the queue, bring every status; the demo and the activation test cover webhooks
    // reaching another host. Processed refunds leave the queue (no reversal watch), and pending
    // ones are checked every few seconds, not continuously.
    let service = Service::start_with(Options {
        // A request retried on another host after the kill waits for the dead host's answer
        // for the create budget (deadline x attempts + waits), then resumes the refund: keep
        // that budget short.
        engine_deadline_ms: Some(10_000),
        retry_attempts: 2,
        webhooks_to_service: false,
        reversal_window_days: Some(0),
        janitor_backoff_ms: vec![1_000, 2_000, 4_000],
        ..options(&url, &events)
    })
    .await;
    let b = service.another_host("b").await;
    let c = service.another_host("c").await;
    for t in 0..TRANSACTIONS {
        service
            .mfs
            .seed(&format!("mh-txn-{t}"), &kes(ORIGINAL), "KES", 1, true)
            .await;
    }
    let key = |i: usize| format!("mh-{i:04}");
    let bodies: Arc<Vec<Value>> = Arc::new(
        (0..N)
            .map(|i| {
                let body = mfs_body(
                    &format!("mh-txn-{}", i % TRANSACTIONS),
                    &key(i),
                    100 + i as i64,
                );
                with_original(body, ORIGINAL, "KES", 1, None)
            })
            .collect(),
    );
    // The load balancer's view: three hosts, round-robin; a request that gets no answer (its
    // host died) goes to the next host with the same key, as a gateway retries.
    let urls = Arc::new(RwLock::new(vec![
        service.url.clone(),
        b.url.clone(),
        c.url.clone(),
    ]));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, u16, Value, u32)>();
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let started = Instant::now();
    // The sender in a task of its own, so that the kill and the activation below happen while
    // requests are being sent.
    let sender = {
        let (urls, client, bodies, token) = (
            urls.clone(),
            client.clone(),
            bodies.clone(),
            service.gateway_token.clone(),
        );
        async move {
            for i in 0..N {
                let permit = permits.clone().acquire_owned().await.unwrap();
                let (urls, client, bodies, token, done) = (
                    urls.clone(),
                    client.clone(),
                    bodies.clone(),
                    token.clone(),
                    done_tx.clone(),
                );
                let turn = next.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let mut tries = 0;
                    loop {
                        tries += 1;
                        let base = {
                            let urls = urls.read().unwrap();
                            urls[turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                                % urls.len()]
                            .clone()
                        };
                        match post(&client, &base, &token, &bodies[i]).await {
                            Ok((status, body)) => {
                                let _ = done.send((i, status, body, tries));
                                return;
                            }
                            Err(_) if tries < 20 => continue,
                            Err(e) => panic!("key {i}: no host answered in 20 tries: {e}"),
                        }
                    }
                });
            }
            drop(done_tx);
        }
    };
    tokio::spawn(sender);

    let mut b = b;
    let mut answers: Vec<Option<(u16, Value)>> = vec![None; N];
    let (mut answered, mut retried) = (0, 0);
    let mut killed = false;
    let mut activated_at: Option<usize> = None;
    let mut switch = Duration::ZERO;
    while let Some((i, status, body, tries)) = done_rx.recv().await {
        answered += 1;
        if tries > 1 {
            retried += 1;
        }
        answers[i] = Some((status, body));
        if !killed && answered >= 1_000 {
            killed = true;
            b.kill_9().await;
            // Its requests in flight fail over; it comes back on a new port.
            b.restart().await;
            urls.write().unwrap()[1] = b.url.clone();
        }
        if activated_at.is_none() && answered >= 1_500 {
            activated_at = Some(answered);
            let component = std::fs::read(plugin_path("mfs-africa-next")).unwrap();
            let loaded = client
                .post(format!("{}/v1/plugins/{MFS}/versions", c.url))
                .bearer_auth(&service.ops_token)
                .header("content-type", "application/wasm")
                .body(component)
                .send()
                .await
                .unwrap();
            assert!(
                loaded.status().is_success(),
                "load on c: {}",
                loaded.status()
            );
            let t0 = Instant::now();
            let on = client
                .post(format!("{}/v1/plugins/{MFS}/activate", c.url))
                .bearer_auth(&service.ops_token)
                .json(&json!({ "version": NEXT }))
                .send()
                .await
                .unwrap();
            assert_eq!(on.status(), 200, "activate on c");
            for base in [service.url.clone(), b.url.clone()] {
                wait_until("the activation reaches every host", T, || {
                    let (client, base, token) =
                        (client.clone(), base.clone(), service.ops_token.clone());
                    async move { active(&client, &base, &token, MFS).await == NEXT }
                })
                .await;
            }
            switch = t0.elapsed();
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(answered, N);
    assert!(killed);
    eprintln!(
        "many hosts: {N} refunds in {elapsed:.1?} ({:.0}/s), {retried} retried on another host \
         after the kill, activation seen on every host after {switch:.0?}",
        N as f64 / elapsed.as_secs_f64()
    );
    assert!(
        switch < Duration::from_secs(5),
        "the activation took {switch:?} to reach every host under load"
    );
    for (i, answer) in answers.iter().enumerate() {
        let (status, body) = answer.as_ref().unwrap();
        assert!(
            *status == 201 || *status == 202,
            "{} answered {status}: {body}",
            key(i)
        );
        assert_eq!(body["external_refund_id"], key(i).as_str());
    }

    // The provider settles what is pending; every host's janitor brings the news.
    let token = service.ops_token.clone();
    let ledger = service
        .settle_mfs_until_final(N, Duration::from_secs(300))
        .await;
    assert_eq!(ledger.len(), N, "0 refunds lost, none made up");

    // At the provider: each key exactly once, for exactly the amount asked.
    let at_sandbox = service.mfs_refunds().await;
    assert_eq!(
        at_sandbox.len(),
        ledger.len(),
        "sandbox count equals ledger count"
    );
    let mut by_key: HashMap<String, Vec<&Value>> = HashMap::new();
    for refund in &at_sandbox {
        by_key
            .entry(s(&refund["external_refund_id"]).to_owned())
            .or_default()
            .push(refund);
    }
    for i in 0..N {
        let refunds = by_key.get(&key(i)).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(
            refunds.len(),
            1,
            "{} made {} refunds at the sandbox",
            key(i),
            refunds.len()
        );
        assert_eq!(
            refunds[0]["refund_amount"],
            kes(100 + i as i64).as_str(),
            "{}",
            key(i)
        );
    }
    // Refunds stay on the version that created them: both versions made some.
    let mut by_version: BTreeMap<String, usize> = BTreeMap::new();
    for r in &ledger {
        *by_version
            .entry(s(&r["plugin_version"]).to_owned())
            .or_default() += 1;
    }
    eprintln!("many hosts: refunds by plugin version {by_version:?}");
    assert_eq!(by_version.len(), 2, "{by_version:?}");
    assert!(by_version.contains_key(NEXT), "{by_version:?}");

    // Every event delivered, in order per refund: each refund's events (deduplicated: a host
    // killed after a delivery and before recording it sends it again) are the statuses its
    // history entered, in that order.
    let expected: HashMap<String, Vec<String>> = {
        let ids: Vec<String> = ledger.iter().map(|r| s(&r["id"]).to_owned()).collect();
        let mut expected = HashMap::new();
        for chunk in ids.chunks(64) {
            let details = refundry_tests::join_all(
                chunk
                    .iter()
                    .map(|id| {
                        let (client, base, token) =
                            (client.clone(), service.url.clone(), token.clone());
                        let path = format!("/v1/refunds/{id}");
                        async move { get(&client, &base, &token, &path).await }
                    })
                    .collect(),
            )
            .await;
            for d in details {
                let entered: Vec<String> = d["history"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|h| h["applied"] == true)
                    .map(|h| format!("refund.{}", s(&h["to"])))
                    .collect();
                expected.insert(s(&d["id"]).to_owned(), entered);
            }
        }
        expected
    };
    let total: usize = expected.values().map(Vec::len).sum();
    let received = |receiver: &Receiver| {
        let mut seen = std::collections::HashSet::new();
        let mut got: HashMap<String, Vec<String>> = HashMap::new();
        for r in receiver.received() {
            let id = s(&r.json["id"]).to_owned();
            if seen.insert(id) {
                got.entry(s(&r.json["data"]["id"]).to_owned())
                    .or_default()
                    .push(s(&r.json["type"]).to_owned());
            }
        }
        got
    };
    wait_until("every event is delivered", Duration::from_secs(120), || {
        let n: usize = received(&receiver).values().map(Vec::len).sum();
        async move { n >= total }
    })
    .await;
    let got = received(&receiver);
    for (id, entered) in &expected {
        assert_eq!(got.get(id), Some(entered), "events of {id}, in order");
    }
    let redelivered = receiver.received().len() - total;
    eprintln!("many hosts: {total} events delivered in order, {redelivered} sent again");
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_on_two_hosts_at_once_makes_one_provider_call() {
    let (_cluster, url) = cluster();
    let service = Service::start_with(options(&url, "")).await;
    let b = service.another_host("b").await;
    service
        .mfs
        .seed("twice-txn", "1000.00", "KES", 1, true)
        .await;
    let client = reqwest::Client::new();
    let before = service.mfs_create_calls().await;
    const KEYS: usize = 20;
    for k in 0..KEYS {
        let body = mfs_body("twice-txn", &format!("twice-{k}"), 1_000 + k as i64);
        let (on_a, on_b) = tokio::join!(
            post(&client, &service.url, &service.gateway_token, &body),
            post(&client, &b.url, &service.gateway_token, &body),
        );
        let ((sa, a), (sb, bb)) = (on_a.unwrap(), on_b.unwrap());
        assert!(
            matches!(sa, 201 | 202) && matches!(sb, 201 | 202),
            "{sa} {a} / {sb} {bb}"
        );
        assert_eq!(a["id"], bb["id"], "both hosts answer with the same refund");
    }
    let calls = service.mfs_create_calls().await - before;
    assert_eq!(calls, KEYS as u64, "one provider call per key");
    assert_eq!(service.mfs_refunds().await.len(), KEYS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activation_and_a_removal_on_one_host_reach_the_other_within_a_second() {
    let (_cluster, url) = cluster();
    let service = Service::start_with(options(&url, "")).await;
    let b: Host = service.another_host("b").await;
    let client = reqwest::Client::new();
    let token = service.ops_token.clone();
    let first = active(&client, &b.url, &token, MFS).await;
    // Loaded through the first host, activated through it: the second follows.
    let loaded = service
        .load_plugin(MFS, std::fs::read(plugin_path("mfs-africa-next")).unwrap())
        .await;
    assert!(matches!(loaded.status, 200 | 201), "{}", loaded.text);
    let started = Instant::now();
    let on = service.activate_plugin(MFS, NEXT).await;
    assert_eq!(on.status, 200, "{}", on.text);
    wait_until("the activation reaches the second host", T, || {
        let (client, base, token) = (client.clone(), b.url.clone(), token.clone());
        async move { active(&client, &base, &token, MFS).await == NEXT }
    })
    .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "the activation took {took:?}"
    );
    // A refund made on the second host now uses it.
    service.mfs.seed("act-txn", "100.00", "KES", 1, true).await;
    let (status, refund) = post(
        &client,
        &b.url,
        &service.gateway_token,
        &mfs_body("act-txn", "act-1", 500),
    )
    .await
    .unwrap();
    assert!(matches!(status, 201 | 202), "{refund}");
    assert_eq!(refund["plugin_version"], NEXT);
    // The provider settles it; its webhook goes to the first host, and the second host reads
    // the refund moved by it.
    let settle = client
        .post(format!(
            "{}/_sandbox/refunds/{}/status",
            service.mfs.base_url(),
            s(&refund["provider_refund_id"])
        ))
        .json(&json!({"status": "processed"}))
        .send()
        .await
        .unwrap();
    assert!(settle.status().is_success());
    let path = format!("/v1/refunds/{}", s(&refund["id"]));
    wait_until("the webhook to the first host moves the refund", T, || {
        let (client, base, token, path) =
            (client.clone(), b.url.clone(), token.clone(), path.clone());
        async move { get(&client, &base, &token, &path).await["status"] == "processed" }
    })
    .await;
    let detail = get(&client, &b.url, &token, &path).await;
    assert!(
        detail["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["source"] == "webhook" && h["applied"] == true),
        "moved by the webhook: {detail}"
    );

    // Back to the first version through the second host, then the next one removed there.
    let back = client
        .post(format!("{}/v1/plugins/{MFS}/activate", b.url))
        .bearer_auth(&token)
        .json(&json!({ "version": first }))
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 200);
    let removed = client
        .delete(format!("{}/v1/plugins/{MFS}/versions/{NEXT}", b.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(
        removed.status().is_success(),
        "remove on b: {}",
        removed.status()
    );
    let started = Instant::now();
    wait_until("the removal reaches the first host", T, || {
        let (client, base, token) = (client.clone(), service.url.clone(), token.clone());
        async move {
            !versions(&client, &base, &token, MFS)
                .await
                .contains(&NEXT.to_owned())
        }
    })
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "the removal took {took:?}");
    assert_eq!(active(&client, &service.url, &token, MFS).await, first);
    // The refund made by the removed version is served by the active one from now on.
    let detail = get(
        &client,
        &service.url,
        &token,
        &format!("/v1/refunds/{}", s(&refund["id"])),
    )
    .await;
    assert_eq!(
        detail["plugin_version"], NEXT,
        "the ledger keeps who created it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagoefectivo_authorizes_once_for_all_hosts() {
    let (_cluster, url) = cluster();
    let service = Service::start_with(options(&url, "")).await;
    let b = service.another_host("b").await;
    let c = service.another_host("c").await;
    let client = reqwest::Client::new();
    let hosts = [service.url.clone(), b.url.clone(), c.url.clone()];
    for i in 0..9 {
        let txn = format!("pe-txn-{i}");
        service.pe.seed(&txn, "100.00", "PEN", 1, true).await;
        let (status, body) = post(
            &client,
            &hosts[i % 3],
            &service.gateway_token,
            &pe_body(&txn, &format!("pe-{i}"), 1_000),
        )
        .await
        .unwrap();
        assert!(matches!(status, 201 | 202), "{status} {body}");
    }
    assert_eq!(
        service.pe.authorizations().await,
        1,
        "one token, stored once and read by every host"
    );
    assert_eq!(service.pe_refunds().await.len(), 9);
    drop((b, c));
}

/// The registry's fallback when an announcement is lost: a host compares what the ledger holds
/// (versions and hashes, no components) with what it has, and a refresh brings it level. In
/// process: two hosts' `Providers` on one database, no announcement followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_missed_an_announcement_sees_it_is_behind_and_catches_up() {
    use refundry_runtime::caps::SystemClock;
    use refundry_service::{Config, Providers, StartOptions};

    let (_cluster, url) = cluster();
    let sandbox = refundry_tests::MfsSandbox::start(None).await;
    let toml = format!(
        "[database]\nurl = {url:?}\n\n{}",
        refundry_tests::MfsSandbox::provider_toml(&sandbox.creds, &sandbox.base_url())
    );
    let config = Config::parse(&toml, "test.toml".as_ref(), "/".as_ref(), |_| None).unwrap();
    let start = || Providers::start_with(&config, StartOptions::with_clock(Arc::new(SystemClock)));
    let a = start().await.expect("host a starts");
    let b = start().await.expect("host b starts");
    let (ra, rb) = (a.registry(), b.registry());
    assert!(!rb.is_behind(MFS).await.unwrap());

    let next = std::fs::read(plugin_path("mfs-africa-next")).unwrap();
    ra.load(Some(MFS), next).await.unwrap();
    ra.activate(MFS, NEXT).await.unwrap();
    assert!(rb.is_behind(MFS).await.unwrap(), "b has not heard");
    assert_eq!(rb.active(MFS).unwrap().version(), "0.2.0");
    let caught = rb.refresh(MFS).await.unwrap();
    assert_eq!(caught.added, [NEXT]);
    assert_eq!(caught.activated.as_deref(), Some(NEXT));
    assert_eq!(rb.active(MFS).unwrap().version(), NEXT);
    assert!(!rb.is_behind(MFS).await.unwrap());

    ra.activate(MFS, "0.2.0").await.unwrap();
    ra.remove(MFS, NEXT).await.unwrap();
    assert!(rb.is_behind(MFS).await.unwrap());
    let caught = rb.refresh(MFS).await.unwrap();
    assert_eq!(caught.removed, [NEXT]);
    assert_eq!(rb.active(MFS).unwrap().version(), "0.2.0");
    assert!(!rb.is_behind(MFS).await.unwrap());
    assert_eq!(
        rb.refresh(MFS).await.unwrap(),
        Default::default(),
        "nothing left to do"
    );
}
