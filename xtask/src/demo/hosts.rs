//! The demo's scale-out part: two `refundry serve` hosts on one PostgreSQL ledger (a private
//! cluster made for the demo in a temporary folder), as two hosts behind a load balancer would
//! run. A refund made on host A; the provider's webhook delivered to host B moves it, and host A
//! sees it; a plugin version loaded and activated on host A is active on host B within a second,
//! and host B's next refund is made by it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;

use super::cli::{Step, Story, control, print_table, random_hex, start_sandbox};
use super::service::{Service, original, refund_body, start_service, summary};
use crate::build;

/// The next version of MFS Africa's plugin (`mfs-africa-next.wasm`).
const NEXT: &str = "0.3.0";

/// Runs the two-host story with MFS Africa; returns how many steps did not behave as expected.
pub async fn walk(bin: &Path, story: &Story) -> Result<usize> {
    build::ensure_postgres()?;
    let cluster = refundry_pg_cluster::PgCluster::start(false)
        .context("starting a private PostgreSQL cluster")?;
    let database = cluster.create_database("refundry")?;
    let client = reqwest::Client::new();
    let (token, admin_token) = (random_hex(24), random_hex(24));
    let mut env: Vec<(&str, String)> = vec![
        ("REFUNDRY_DEMO_TOKEN", token.clone()),
        ("REFUNDRY_DEMO_ADMIN_TOKEN", admin_token.clone()),
        ("REFUNDRY_DATABASE_URL", database),
    ];
    env.extend(story.env.iter().cloned());
    let (_sandbox, base_url) =
        start_sandbox(bin, story.provider, &story.env, "http://127.0.0.1:9/")?;
    // Removed at the end, after the hosts (dropped first) have stopped.
    let folder = tempfile::Builder::new()
        .prefix("refundry-demo-hosts-")
        .tempdir()?;
    let dir = folder.path();
    let mut hosts = Vec::new();
    for name in ["a", "b"] {
        // Each host its own file: the same ledger, its own artifact cache.
        let toml = format!(
            "[database]\nurl = \"env:REFUNDRY_DATABASE_URL\"\n\n\
             [plugins]\ncache = \"plugin-cache-{name}\"\n\n\
             [server.tokens.demo]\ntoken = \"env:REFUNDRY_DEMO_TOKEN\"\nscopes = [\"refunds\"]\n\n\
             [server.tokens.operator]\ntoken = \"env:REFUNDRY_DEMO_ADMIN_TOKEN\"\nscopes = [\"admin\"]\n\n\
             {}",
            story.provider_toml(&base_url)
        );
        let path = dir.join(format!("host-{name}.toml"));
        std::fs::write(&path, toml)?;
        let (child, url) = start_service(bin, &path, &env, "warn")?;
        hosts.push(Service {
            _child: child,
            url,
            token: token.clone(),
            admin_token: admin_token.clone(),
            client: client.clone(),
        });
    }
    let (a, b) = (&hosts[0], &hosts[1]);
    println!(
        "\nTwo hosts, one PostgreSQL ledger (private cluster on port {}): host A at {}, host B at {}\n",
        cluster.port(),
        a.url,
        b.url
    );

    let p = story.provider;
    // The provider's webhooks go to host B, as a load balancer may send them.
    control(
        &client,
        format!("{base_url}/_sandbox/webhooks/config"),
        json!({"callback_url": format!("{}/v1/webhooks/{p}", b.url)}),
    )
    .await?;
    let mut steps = Vec::new();
    let txn = story.seed_payment(&client, &base_url, 92_000_000).await?;
    let original = original(story);
    let run = random_hex(3);
    let (r1, r2) = (format!("hosts-{run}-1"), format!("hosts-{run}-2"));
    let body = |ext: &str, amount: i64| refund_body(story, &txn, &original, ext, amount);

    let (status, _, first) = a.post("/v1/refunds", &body(&r1, 100_000)).await?;
    let id1 = first["id"].as_str().unwrap_or("").to_owned();
    steps.push(Step {
        what: format!("host A: POST refund {r1} of 1000.00"),
        expected: "201 pending".into(),
        observed: summary(status, &first),
        ok: status == 201 && first["status"] == "pending",
    });
    let (status, replayed, again) = b.post("/v1/refunds", &body(&r1, 100_000)).await?;
    steps.push(Step {
        what: "host B: the same request".into(),
        expected: "201, the same refund, replayed".into(),
        observed: format!(
            "{}{}{}",
            summary(status, &again),
            if again["id"] == id1.as_str() {
                ", same id"
            } else {
                ", another id"
            },
            if replayed { ", replayed" } else { "" }
        ),
        ok: status == 201 && replayed && again["id"] == id1.as_str(),
    });

    let prid = first["provider_refund_id"].as_str().unwrap_or("");
    control(
        &client,
        format!("{base_url}/_sandbox/refunds/{prid}/status"),
        json!({"status": story.processed_word}),
    )
    .await?;
    let seen_on_a = a.wait_for(&id1, "processed", 15).await?;
    let by_webhook = seen_on_a["history"].as_array().is_some_and(|h| {
        h.iter()
            .any(|e| e["source"] == "webhook" && e["applied"] == true)
    });
    steps.push(Step {
        what: format!("provider processes {r1}; webhook to host B; read on host A"),
        expected: "processed, by webhook".into(),
        observed: format!(
            "{}{}",
            seen_on_a["status"].as_str().unwrap_or("?"),
            if by_webhook { ", by webhook" } else { "" }
        ),
        ok: seen_on_a["status"] == "processed" && by_webhook,
    });

    let next = build::plugins_dir().join("mfs-africa-next.wasm");
    let (loaded, _) = a.upload(p, &next).await?;
    let (activated, _) = a.activate(p, NEXT).await?;
    let started = Instant::now();
    let mut on_b = String::new();
    while started.elapsed() < Duration::from_secs(10) {
        let (_, list) = b.plugins().await?;
        on_b = list["providers"]
            .as_array()
            .and_then(|ps| ps.iter().find(|x| x["provider"] == p))
            .and_then(|x| x["active"].as_str())
            .unwrap_or("")
            .to_owned();
        if on_b == NEXT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    steps.push(Step {
        what: format!("host A: load and activate {p} {NEXT}; host B's active version"),
        expected: format!("{NEXT} on B within 1 s"),
        observed: format!(
            "load {loaded}, activate {activated}; {on_b} on B after {} ms",
            took.as_millis()
        ),
        ok: matches!(loaded, 200 | 201)
            && activated == 200
            && on_b == NEXT
            && took < Duration::from_secs(1),
    });
    let (status, _, v) = b.post("/v1/refunds", &body(&r2, 50_000)).await?;
    steps.push(Step {
        what: format!("host B: POST refund {r2} of 500.00"),
        expected: format!("201 pending, by {NEXT}"),
        observed: format!(
            "{}, by {}",
            summary(status, &v),
            v["plugin_version"].as_str().unwrap_or("?")
        ),
        ok: status == 201 && v["plugin_version"] == NEXT,
    });

    print_table(&steps);
    Ok(steps.iter().filter(|s| !s.ok).count())
}
