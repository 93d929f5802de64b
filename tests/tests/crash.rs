//! Crash safety of `refundry serve`: 200 refunds sent at once, `kill -9` mid-flight, a restart on
//! the same database, the unanswered requests sent again with the same keys (as a gateway would).
//! Every refund must end final, each key must have made exactly one refund at the provider, and
//! none may refund more than was asked.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use refundry_tests::service::{Options, ProxyMode, Service, mfs_body, str_of as s, with_original};
use serde_json::{Value, json};

const N: usize = 200;
const TRANSACTIONS: usize = 4;
/// Each original payment, in minor units (10,000.00 KES): far above what its refunds ask.
const ORIGINAL: i64 = 1_000_000;

fn key(i: usize) -> String {
    format!("crash-{i:03}")
}

fn amount(i: usize) -> i64 {
    1_000 + i as i64
}

fn txn(i: usize) -> String {
    format!("crash-txn-{}", i % TRANSACTIONS)
}

/// `1234` -> `"12.34"`, as the sandbox writes KES.
fn kes(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

/// An answer, or none (the connection died with the service).
type Answer = Option<(u16, Value)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_flight_loses_nothing_and_refunds_nothing_twice() {
    // 200 plugin operations at once on a small machine: give each one time to wait its turn.
    let mut service = Service::start_with(Options {
        engine_deadline_ms: Some(60_000),
        mfs_proxy: true,
        ..Options::default()
    })
    .await;
    for t in 0..TRANSACTIONS {
        service
            .mfs
            .seed(&format!("crash-txn-{t}"), &kes(ORIGINAL), "KES", 1, true)
            .await;
    }
    // Many requests in flight at the kill, of three kinds: taken by the sandbox with the answer
    // still held back (delay faults, applied in arrival order, spread over about 1 s), sent by
    // the host but never arrived (the proxy holds every connection after the first 100), and
    // not yet sent at all.
    for step in 0..20u64 {
        service
            .mfs
            .control(
                "faults",
                json!({"kind": "delay", "delay_ms": 300 + step * 50, "count": 12}),
            )
            .await;
    }
    let proxy = service.mfs_proxy.as_ref().unwrap();
    proxy.hold_after(100);
    let bodies: Vec<Value> = (0..N)
        .map(|i| {
            with_original(
                mfs_body(&txn(i), &key(i), amount(i)),
                ORIGINAL,
                "KES",
                1,
                None,
            )
        })
        .collect();

    // All at once, each from its own task; answers are counted as they come.
    let client = reqwest::Client::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Answer)>();
    for (i, body) in bodies.iter().enumerate() {
        let request = client
            .post(format!("{}/v1/refunds", service.url))
            .bearer_auth(&service.gateway_token)
            .json(body);
        let tx = tx.clone();
        tokio::spawn(async move {
            let answer = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    match response.json::<Value>().await {
                        Ok(body) => Some((status, body)),
                        Err(_) => None,
                    }
                }
                Err(_) => None,
            };
            let _ = tx.send((i, answer));
        });
    }
    drop(tx);
    let mut answers: Vec<Answer> = vec![None; N];
    let mut reported = 0;
    let mut answered = 0;
    let mut killed = false;
    while let Some((i, answer)) = rx.recv().await {
        reported += 1;
        if answer.is_some() {
            answered += 1;
        }
        answers[i] = answer;
        if !killed && answered >= 50 {
            service.kill_9().await;
            killed = true;
        }
    }
    assert_eq!(reported, N);
    assert!(killed, "fewer than 50 answers came: {answered}");
    let unanswered: Vec<usize> = (0..N).filter(|&i| answers[i].is_none()).collect();
    assert!(
        !unanswered.is_empty(),
        "every request was answered before the kill: nothing was in flight"
    );
    for (i, answer) in answers.iter().enumerate() {
        if let Some((status, body)) = answer {
            assert!(
                *status == 201 || *status == 202,
                "{} answered {status}: {body}",
                key(i)
            );
        }
    }

    let proxy = service.mfs_proxy.as_ref().unwrap();
    eprintln!(
        "crash: {answered} answered before the kill, {} not; {} refunds at the sandbox; {} \
         requests held by the proxy",
        unanswered.len(),
        service.mfs_refunds().await.len(),
        proxy.held()
    );
    proxy.set_mode(ProxyMode::Pass);

    // Same database, no more slowness; the gateway sends again what got no answer.
    service.clear_faults().await;
    service.restart().await;
    let mut resent: BTreeMap<u16, usize> = BTreeMap::new();
    for &i in &unanswered {
        let reply = service.post_refund(&bodies[i]).await;
        *resent.entry(reply.status).or_default() += 1;
        assert!(
            reply.status == 201 || reply.status == 202,
            "{} re-sent after the restart: {} {}",
            key(i),
            reply.status,
            reply.text
        );
        assert_eq!(reply.body["external_refund_id"], key(i).as_str());
    }
    eprintln!("crash: answers to the re-sent requests by status: {resent:?}");
    // Answered ones replay their first answer.
    for (i, answer) in answers
        .iter()
        .enumerate()
        .filter(|(_, a)| a.is_some())
        .take(5)
    {
        let (status, body) = answer.as_ref().unwrap();
        let reply = service.post_refund(&bodies[i]).await;
        assert_eq!(reply.status, *status, "{} replay: {}", key(i), reply.text);
        assert!(reply.replayed(), "{} replay without the header", key(i));
        assert_eq!(reply.body["id"], body["id"]);
    }

    // The provider settles whatever is pending; the janitor (and webhooks) bring the news.
    let ledger = service
        .settle_mfs_until_final(N, Duration::from_secs(180))
        .await;

    // At the provider: each key exactly once, with exactly the amount asked.
    let at_sandbox = service.mfs_refunds().await;
    let mut by_key: HashMap<String, Vec<&Value>> = HashMap::new();
    for refund in &at_sandbox {
        by_key
            .entry(s(&refund["external_refund_id"]).to_owned())
            .or_default()
            .push(refund);
    }
    let mut per_txn: BTreeMap<String, i64> = BTreeMap::new();
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
            kes(amount(i)).as_str(),
            "{}",
            key(i)
        );
        assert_eq!(refunds[0]["original_transaction_id"], txn(i).as_str());
        *per_txn.entry(txn(i)).or_default() += amount(i);
    }
    assert_eq!(at_sandbox.len(), N, "refunds nobody asked for");
    for (txn, total) in &per_txn {
        assert!(*total <= ORIGINAL, "{txn}: {total} refunded of {ORIGINAL}");
    }

    // In the ledger: each key once, final, and the same refund the provider has.
    assert_eq!(ledger.len(), N, "the ledger has other refunds");
    let mut seen = HashMap::new();
    for refund in &ledger {
        let k = s(&refund["external_refund_id"]).to_owned();
        let i: usize = k
            .strip_prefix("crash-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected key {k}"));
        assert!(
            seen.insert(k.clone(), ()).is_none(),
            "{k} twice in the ledger"
        );
        assert_eq!(refund["status"], "processed", "{refund}");
        assert_eq!(refund["amount"], amount(i), "{refund}");
        assert_eq!(
            refund["provider_refund_id"], by_key[&k][0]["refund_id"],
            "{k}: the ledger and the sandbox disagree"
        );
    }
}
