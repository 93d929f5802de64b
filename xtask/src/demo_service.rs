//! The demo's last part: `refundry serve`, the refund service, with both providers at once.
//!
//! Both sandboxes and the service run as separate processes on loopback ports chosen at run time.
//! The story, per provider, over the REST API: a refund (201), its replay (same answer), the key
//! reused with another amount (409, no provider call), an over-refund refused by the pre-check
//! against the original payment (422, no provider call); the provider processes the refund and
//! its webhook moves it; webhooks are then lost and the janitor finds the next refund's final
//! status on its own; and finance exports the day as CSV.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};

use crate::build;
use crate::demo::{Step, Story, control, print_table, random_hex, start_sandbox};
use crate::process::{Guard, spawn_announcing};

/// A running `refundry serve` and how to call it.
struct Service {
    _child: Guard,
    url: String,
    token: String,
    client: reqwest::Client,
}

impl Service {
    async fn post(&self, path: &str, body: &Value) -> Result<(u16, bool, Value)> {
        let resp = self
            .client
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let replayed = resp.headers().contains_key("idempotent-replayed");
        Ok((status, replayed, resp.json().await.unwrap_or(Value::Null)))
    }

    async fn get(&self, path: &str) -> Result<(u16, String)> {
        let resp = self
            .client
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await?;
        Ok((resp.status().as_u16(), resp.text().await?))
    }

    async fn refund(&self, id: &str) -> Result<Value> {
        let (_, body) = self.get(&format!("/v1/refunds/{id}")).await?;
        Ok(serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// Polls a refund until its status is `want` (or `secs` pass); returns the last state seen.
    async fn wait_for(&self, id: &str, want: &str, secs: u64) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.refund(id).await?;
            if v["status"] == want || tokio::time::Instant::now() > deadline {
                return Ok(v);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Starts `refundry serve` and reads the URL it prints.
fn start_service(bin: &Path, config: &Path, env: &[(&str, String)]) -> Result<(Guard, String)> {
    let mut command = Command::new(bin);
    command
        .args(["serve", "--config"])
        .arg(config)
        .args(["--listen", "127.0.0.1:0"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("REFUNDRY_LOG", "warn")
        .stderr(Stdio::inherit());
    spawn_announcing(&mut command, "refund service")
}

fn config(dir: &Path, stories: &[(&Story, String)]) -> Result<std::path::PathBuf> {
    let mut toml = String::from(
        "[database]\npath = \"service.db\"\n\n\
         [server.tokens.demo]\ntoken = \"env:REFUNDRY_DEMO_TOKEN\"\nscopes = [\"refunds\"]\n\n\
         [janitor]\ninterval_ms = 200\nbackoff_ms = [1000]\n\n",
    );
    for (story, base_url) in stories {
        let p = story.provider;
        let plugin = build::plugins_dir().join(format!("{p}.wasm"));
        let (mut settings, mut secrets) = (format!("base_url = \"{base_url}\"\n"), String::new());
        for (key, var, secret) in &story.keys {
            let line = format!("{key} = \"env:{var}\"\n");
            if *secret { &mut secrets } else { &mut settings }.push_str(&line);
        }
        toml.push_str(&format!(
            "[providers.{p}]\nplugin = {plugin:?}\n[providers.{p}.settings]\n{settings}\
             [providers.{p}.secrets]\n{secrets}\n"
        ));
    }
    let path = dir.join("service.toml");
    std::fs::write(&path, toml)?;
    Ok(path)
}

fn summary(status: u16, v: &Value) -> String {
    let r = if v.get("refund").is_some() {
        &v["refund"]
    } else {
        v
    };
    match v["error"]["code"].as_str() {
        Some(code) if r.get("status").is_none() => format!("{status} {code}"),
        Some(code) => format!(
            "{status} {code}, refund {}",
            r["status"].as_str().unwrap_or("?")
        ),
        None => format!("{status} {}", r["status"].as_str().unwrap_or("?")),
    }
}

/// Runs the service story for both providers; returns how many steps did not behave as expected.
pub async fn walk(bin: &Path, stories: &[Story]) -> Result<usize> {
    let client = reqwest::Client::new();
    let token = random_hex(24);
    let mut env: Vec<(&str, String)> = vec![("REFUNDRY_DEMO_TOKEN", token.clone())];
    let mut sandboxes = Vec::new();
    for story in stories {
        env.extend(story.env.iter().cloned());
        // The callback is set once the service is up and its port known.
        let (guard, url) = start_sandbox(bin, story.provider, &story.env, "http://127.0.0.1:9/")?;
        sandboxes.push((guard, url));
    }
    let dir = std::env::temp_dir().join(format!("refundry-demo-{}-service", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let pairs: Vec<(&Story, String)> = stories
        .iter()
        .zip(&sandboxes)
        .map(|(s, (_, url))| (s, url.clone()))
        .collect();
    let config = config(&dir, &pairs)?;
    let (child, url) = start_service(bin, &config, &env)?;
    let service = Service {
        _child: child,
        url,
        token,
        client: client.clone(),
    };
    println!(
        "\nRefund service: refundry serve at {}, both providers\n",
        service.url
    );

    let mut steps = Vec::new();
    for (story, base_url) in &pairs {
        let p = story.provider;
        control(
            &client,
            format!("{base_url}/_sandbox/webhooks/config"),
            json!({"callback_url": format!("{}/v1/webhooks/{p}", service.url)}),
        )
        .await?;
        let txn = story.seed_payment(&client, base_url, 91_000_000).await?;
        let run = random_hex(3);
        let original = json!({
            "amount": 500_000, "currency": story.currency,
            "completed_at": (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339(),
            "settled": true,
        });
        let body = |ext: &str, amount: i64| {
            json!({
                "provider": p, "external_refund_id": ext, "original_transaction_id": txn,
                "amount": amount, "currency": story.currency, "reason": "customer_return",
                "order_id": "ORDER-991", "original": original,
            })
        };
        let (r1, r2, r3) = (
            format!("svc-{run}-1"),
            format!("svc-{run}-2"),
            format!("svc-{run}-3"),
        );

        let (status, _, first) = service.post("/v1/refunds", &body(&r1, 200_000)).await?;
        let id1 = first["id"].as_str().unwrap_or("").to_owned();
        steps.push(Step {
            what: format!("{p}: POST refund {r1} of 2000.00"),
            expected: "201 pending".into(),
            observed: summary(status, &first),
            ok: status == 201 && first["status"] == "pending",
        });
        let (status, replayed, v) = service.post("/v1/refunds", &body(&r1, 200_000)).await?;
        steps.push(Step {
            what: format!("{p}: the same request again"),
            expected: "201, same refund, replayed".into(),
            observed: format!(
                "{}{}",
                summary(status, &v),
                if replayed { ", replayed" } else { "" }
            ),
            ok: status == 201 && replayed && v["id"] == id1.as_str(),
        });
        let (status, _, v) = service.post("/v1/refunds", &body(&r1, 250_000)).await?;
        steps.push(Step {
            what: format!("{p}: {r1} reused with 2500.00"),
            expected: "409 idempotency_conflict".into(),
            observed: summary(status, &v),
            ok: status == 409 && v["error"]["code"] == "idempotency_conflict",
        });
        let (status, _, v) = service.post("/v1/refunds", &body(&r2, 300_001)).await?;
        // The ledger's history says whether the provider was asked.
        let detail = service
            .refund(v["refund"]["id"].as_str().unwrap_or(""))
            .await?;
        let not_sent = detail["history"].as_array().is_some_and(|h| {
            h.iter().any(|e| {
                e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("before any provider call"))
            })
        });
        steps.push(Step {
            what: format!("{p}: {r2} of 3000.01 (2000.00 taken of 5000.00)"),
            expected: "422 amount_exceeded, no provider call".into(),
            observed: format!(
                "{}{}",
                summary(status, &v),
                if not_sent { ", no provider call" } else { "" }
            ),
            ok: status == 422 && v["error"]["code"] == "amount_exceeded" && not_sent,
        });

        let prid = first["provider_refund_id"].as_str().unwrap_or("");
        let word = story.processed_word;
        control(
            &client,
            format!("{base_url}/_sandbox/refunds/{prid}/status"),
            json!({"status": word}),
        )
        .await?;
        let v = service.wait_for(&id1, "processed", 15).await?;
        let by_webhook = v["history"].as_array().is_some_and(|h| {
            h.iter()
                .any(|e| e["source"] == "webhook" && e["applied"] == true)
        });
        steps.push(Step {
            what: format!("{p}: provider processes {r1}; its webhook arrives"),
            expected: "processed, by webhook".into(),
            observed: format!(
                "{}{}",
                v["status"].as_str().unwrap_or("?"),
                if by_webhook { ", by webhook" } else { "" }
            ),
            ok: v["status"] == "processed" && by_webhook,
        });

        let (status, _, v) = service.post("/v1/refunds", &body(&r3, 100_000)).await?;
        let id3 = v["id"].as_str().unwrap_or("").to_owned();
        let prid3 = v["provider_refund_id"].as_str().unwrap_or("").to_owned();
        control(
            &client,
            format!("{base_url}/_sandbox/faults"),
            json!({"kind": "drop_webhooks", "count": 10}),
        )
        .await?;
        control(
            &client,
            format!("{base_url}/_sandbox/refunds/{prid3}/status"),
            json!({"status": word}),
        )
        .await?;
        let v = service.wait_for(&id3, "processed", 20).await?;
        let by_janitor = v["history"].as_array().is_some_and(|h| {
            h.iter()
                .any(|e| e["source"] == "janitor" && e["applied"] == true)
        });
        steps.push(Step {
            what: format!("{p}: {r3} processed, its webhook lost"),
            expected: "processed, found by the janitor".into(),
            observed: format!(
                "{} then {}{}",
                status,
                v["status"].as_str().unwrap_or("?"),
                if by_janitor { ", by janitor" } else { "" }
            ),
            ok: status == 201 && v["status"] == "processed" && by_janitor,
        });
    }
    let (status, csv) = service.get("/v1/refunds?format=csv").await?;
    let rows = csv.lines().count().saturating_sub(1);
    steps.push(Step {
        what: "finance exports every refund as CSV".into(),
        expected: format!("200, {} rows", 3 * stories.len()),
        observed: format!("{status}, {rows} rows"),
        ok: status == 200 && rows == 3 * stories.len(),
    });
    print_table(&steps);
    drop(service);
    drop(sandboxes);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(steps.iter().filter(|s| !s.ok).count())
}
