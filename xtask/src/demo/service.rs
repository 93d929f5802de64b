//! The demo's last part: `refundry serve`, the refund service, with both providers at once.
//!
//! Both sandboxes and the service run as separate processes on loopback ports chosen at run time.
//! The story, per provider, over the REST API: a refund (201), its replay (same answer), the key
//! reused with another amount (409, no provider call), an over-refund refused by the pre-check
//! against the original payment (422, no provider call); the provider processes the refund and
//! its webhook moves it; webhooks are then lost and the janitor finds the next refund's final
//! status on its own; and finance exports the day as CSV.
//!
//! The gateway's event endpoint (a receiver in this process) is told of every status change:
//! each provider's first refund arrives as `refund.unknown`, `refund.pending`,
//! `refund.processed`, in that order, and the ledger shows each delivery made.
//!
//! Then a hot swap of MFS Africa's plugin on the running service, with the admin token: load its
//! second version (0.3.0, which names itself in `X-Plugin-Version`), activate it, refund through
//! it, roll back to 0.2.0 and refund again; the refund made on 0.3.0 is still checked with 0.3.0
//! after the rollback; removing the active version and loading another provider's component
//! under MFS Africa are refused and change nothing.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::cli::{Step, Story, control, print_table, random_hex, start_sandbox};
use crate::build;
use crate::process::{Guard, spawn_announcing};

/// A running `refundry serve` and how to call it.
pub(crate) struct Service {
    pub(crate) _child: Guard,
    pub(crate) url: String,
    /// Scope `refunds`: what a gateway holds.
    pub(crate) token: String,
    /// Scope `admin`: what an operator holds, for `/v1/plugins`.
    pub(crate) admin_token: String,
    pub(crate) client: reqwest::Client,
}

impl Service {
    pub(crate) async fn post(&self, path: &str, body: &Value) -> Result<(u16, bool, Value)> {
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

    pub(crate) async fn refund(&self, id: &str) -> Result<Value> {
        let (_, body) = self.get(&format!("/v1/refunds/{id}")).await?;
        Ok(serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// Sends an admin request; answers its status and JSON body (`null` when it has none).
    async fn admin(&self, request: reqwest::RequestBuilder) -> Result<(u16, Value)> {
        let resp = request.bearer_auth(&self.admin_token).send().await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// `GET /v1/plugins`.
    pub(crate) async fn plugins(&self) -> Result<(u16, Value)> {
        self.admin(self.client.get(format!("{}/v1/plugins", self.url)))
            .await
    }

    /// `POST /v1/plugins/{provider}/versions` with the component file as the body.
    pub(crate) async fn upload(&self, provider: &str, file: &Path) -> Result<(u16, Value)> {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let url = format!("{}/v1/plugins/{provider}/versions", self.url);
        self.admin(
            self.client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/wasm")
                .body(bytes),
        )
        .await
    }

    /// `POST /v1/plugins/{provider}/activate`.
    pub(crate) async fn activate(&self, provider: &str, version: &str) -> Result<(u16, Value)> {
        let url = format!("{}/v1/plugins/{provider}/activate", self.url);
        self.admin(self.client.post(url).json(&json!({ "version": version })))
            .await
    }

    /// `DELETE /v1/plugins/{provider}/versions/{version}`.
    async fn remove(&self, provider: &str, version: &str) -> Result<(u16, Value)> {
        let url = format!("{}/v1/plugins/{provider}/versions/{version}", self.url);
        self.admin(self.client.delete(url)).await
    }

    /// Polls a refund until its status is `want` (or `secs` pass); returns the last state seen.
    pub(crate) async fn wait_for(&self, id: &str, want: &str, secs: u64) -> Result<Value> {
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
/// Starts `refundry serve` on a free loopback port, logging at `log` (a `REFUNDRY_LOG` filter),
/// and reads the URL it prints.
pub(crate) fn start_service(
    bin: &Path,
    config: &Path,
    env: &[(&str, String)],
    log: &str,
) -> Result<(Guard, String)> {
    let mut command = Command::new(bin);
    command
        .args(["serve", "--config"])
        .arg(config)
        .args(["--listen", "127.0.0.1:0"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("REFUNDRY_LOG", log)
        .stderr(Stdio::inherit());
    spawn_announcing(&mut command, "refund service")
}

fn config(
    dir: &Path,
    stories: &[(&Story, String)],
    events_url: &str,
) -> Result<std::path::PathBuf> {
    let mut toml = String::from(
        "[database]\npath = \"service.db\"\n\n\
         [server.tokens.demo]\ntoken = \"env:REFUNDRY_DEMO_TOKEN\"\nscopes = [\"refunds\"]\n\n\
         [server.tokens.operator]\ntoken = \"env:REFUNDRY_DEMO_ADMIN_TOKEN\"\nscopes = [\"admin\"]\n\n\
         [janitor]\ninterval_ms = 200\nbackoff_ms = [1000]\n\n",
    );
    toml.push_str(&format!(
        "[events]\nurl = {events_url:?}\nsecret = \"env:REFUNDRY_DEMO_EVENTS_SECRET\"\n\
         interval_ms = 100\n\n"
    ));
    for (story, base_url) in stories {
        toml.push_str(&story.provider_toml(base_url));
    }
    let path = dir.join("service.toml");
    std::fs::write(&path, toml)?;
    Ok(path)
}

/// The gateway's event endpoint: keeps every event body it is sent, in arrival order.
async fn start_receiver() -> Result<(String, Arc<Mutex<Vec<Value>>>)> {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |axum::Json(event): axum::Json<Value>| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(event);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/events", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, got))
}

/// The statuses announced by the events the receiver got for `refund_id`, in arrival order,
/// once it has `want` of them (or after 10 s).
async fn announced(got: &Mutex<Vec<Value>>, refund_id: &str, want: usize) -> Vec<String> {
    let of_refund = || -> Vec<String> {
        got.lock()
            .unwrap()
            .iter()
            .filter(|e| e["data"]["id"] == refund_id)
            .map(|e| e["type"].as_str().unwrap_or("?").to_owned())
            .collect()
    };
    for _ in 0..100 {
        if of_refund().len() >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    of_refund()
}

/// The `original` of a refund request: a payment of 5000.00, settled, made yesterday. Made once
/// per payment: its time is part of the request, so a replay must send the same one.
pub(crate) fn original(story: &Story) -> Value {
    json!({
        "amount": 500_000, "currency": story.currency,
        "completed_at": (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339(),
        "settled": true,
    })
}

/// A `POST /v1/refunds` body: `amount` (minor units) of the payment `txn`.
pub(crate) fn refund_body(
    story: &Story,
    txn: &str,
    original: &Value,
    ext: &str,
    amount: i64,
) -> Value {
    json!({
        "provider": story.provider, "external_refund_id": ext, "original_transaction_id": txn,
        "amount": amount, "currency": story.currency, "reason": "customer_return",
        "order_id": "ORDER-991", "original": original,
    })
}

pub(crate) fn summary(status: u16, v: &Value) -> String {
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
    let (token, admin_token) = (random_hex(24), random_hex(24));
    let mut env: Vec<(&str, String)> = vec![
        ("REFUNDRY_DEMO_TOKEN", token.clone()),
        ("REFUNDRY_DEMO_ADMIN_TOKEN", admin_token.clone()),
        ("REFUNDRY_DEMO_EVENTS_SECRET", random_hex(32)),
    ];
    let (events_url, events) = start_receiver().await?;
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
    let config = config(&dir, &pairs, &events_url)?;
    let (child, url) = start_service(bin, &config, &env, "warn")?;
    let service = Service {
        _child: child,
        url,
        token,
        admin_token,
        client: client.clone(),
    };
    println!(
        "\nRefund service: refundry serve at {}, both providers\n",
        service.url
    );

    let mut steps = Vec::new();
    let mut first_refunds = Vec::new();
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
        let original = original(story);
        let body = |ext: &str, amount: i64| refund_body(story, &txn, &original, ext, amount);
        let (r1, r2, r3) = (
            format!("svc-{run}-1"),
            format!("svc-{run}-2"),
            format!("svc-{run}-3"),
        );

        let (status, _, first) = service.post("/v1/refunds", &body(&r1, 200_000)).await?;
        let id1 = first["id"].as_str().unwrap_or("").to_owned();
        first_refunds.push((p, r1.clone(), id1.clone()));
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
            json!({"kind": "drop_webhooks", "count": 1}),
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

        // Staff refund 10.00 of the same payment in the provider's portal: only the provider's
        // own list shows it, and reconciliation reports it (everything else matches).
        let mut portal = json!({"amount": "10.00", "currency": story.currency});
        portal[story.portal_payment_field] = json!(txn);
        let made = control(
            &client,
            format!("{base_url}/_sandbox/portal-refunds"),
            portal,
        )
        .await?;
        let portal_id = made["refund_id"]
            .as_str()
            .or(made["referenceId"].as_str())
            .unwrap_or("?")
            .to_owned();
        let now = chrono::Utc::now();
        let (status, run) = service
            .admin(
                service
                    .client
                    .post(format!("{}/v1/reconciliations", service.url))
                    .json(&json!({
                        "provider": p,
                        "from": (now - chrono::Duration::days(1)).to_rfc3339(),
                        "to": (now + chrono::Duration::minutes(1)).to_rfc3339(),
                    })),
            )
            .await?;
        let findings: Vec<String> = run["findings"]
            .as_array()
            .map(|f| {
                f.iter()
                    .map(|f| {
                        format!(
                            "{} {}",
                            f["kind"].as_str().unwrap_or("?"),
                            f["provider_refund_id"].as_str().unwrap_or("-")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let expected = format!("missing_in_ledger {portal_id}");
        steps.push(Step {
            what: format!("{p}: staff refund 10.00 in the portal; reconcile the last day"),
            expected: format!("201, only {expected}"),
            observed: format!("{status}, {}", findings.join("; ")),
            ok: status == 201 && findings == [expected],
        });
    }
    for (p, ext, id) in &first_refunds {
        let types = announced(&events, id, 3).await;
        let (_, listed) = service.get(&format!("/v1/events?refund_id={id}")).await?;
        let listed: Value = serde_json::from_str(&listed).unwrap_or(Value::Null);
        let delivered = listed["events"].as_array().is_some_and(|events| {
            events
                .iter()
                .all(|e| e["deliveries"][0]["state"] == "delivered")
        });
        let expected = ["refund.unknown", "refund.pending", "refund.processed"];
        steps.push(Step {
            what: format!("{p}: the gateway's endpoint was told of {ext}"),
            expected: format!("{}, delivered", expected.join(" > ")),
            observed: format!(
                "{}{}",
                types.join(" > "),
                if delivered { ", delivered" } else { "" }
            ),
            ok: types == expected && delivered,
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

    let mut failed = steps.iter().filter(|s| !s.ok).count();
    if let Some((story, base_url)) = pairs.iter().find(|(s, _)| s.provider == "mfs-africa") {
        println!(
            "\nHot swap: MFS Africa's plugin 0.2.0 -> 0.3.0 -> 0.2.0 on the running service\n"
        );
        let steps = swap(&service, story, base_url).await?;
        print_table(&steps);
        failed += steps.iter().filter(|s| !s.ok).count();
    }
    drop(service);
    drop(sandboxes);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(failed)
}

/// `provider`'s active and loaded versions in a `GET /v1/plugins` answer: `active 0.2.0 of
/// 0.2.0, 0.3.0`.
fn versions(list: &Value, provider: &str) -> String {
    let found = list["providers"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["provider"] == provider));
    let Some(p) = found else {
        return format!("no {provider}");
    };
    let loaded: Vec<&str> = p["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["version"].as_str())
        .collect();
    format!(
        "active {} of {}",
        p["active"].as_str().unwrap_or("?"),
        loaded.join(", ")
    )
}

/// An admin answer as the table shows it: `<status> <error code>` when refused, else
/// `<status> <what>`.
fn answered(status: u16, v: &Value, what: impl FnOnce(&Value) -> String) -> String {
    match v["error"]["code"].as_str() {
        Some(code) => format!("{status} {code}"),
        None => format!("{status} {}", what(v)),
    }
}

/// The `X-Plugin-Version` the MFS Africa sandbox saw on the request that created its refund
/// `provider_refund_id` (its control API's `created_by_plugin_version`), as a table cell.
async fn sandbox_saw(client: &reqwest::Client, base_url: &str, provider_refund_id: &str) -> String {
    let list: Value = match client
        .get(format!("{base_url}/_sandbox/refunds"))
        .send()
        .await
    {
        Ok(resp) => resp.json().await.unwrap_or(Value::Null),
        Err(e) => return format!("sandbox unreachable: {e}"),
    };
    let found = list["data"]
        .as_array()
        .and_then(|all| all.iter().find(|r| r["refund_id"] == provider_refund_id));
    match found.map(|r| &r["created_by_plugin_version"]) {
        None => "sandbox has no such refund".into(),
        Some(Value::String(v)) => format!("sandbox saw X-Plugin-Version: {v}"),
        Some(_) => "sandbox saw no X-Plugin-Version".into(),
    }
}

/// The hot swap, on MFS Africa: load its next version, activate it, refund, roll back, refund,
/// check the first refund later with the version that made it, then two refused changes.
/// Answers the steps.
async fn swap(service: &Service, story: &Story, base_url: &str) -> Result<Vec<Step>> {
    let p = story.provider;
    let client = &service.client;
    let txn = story.seed_payment(client, base_url, 93_000_000).await?;
    let original = original(story);
    let run = random_hex(3);
    let (r4, r5) = (format!("svc-{run}-4"), format!("svc-{run}-5"));
    let mut steps = Vec::new();

    let (status, list) = service.plugins().await?;
    steps.push(Step {
        what: format!("GET /v1/plugins (admin token): {p}"),
        expected: "200, active 0.2.0 of 0.2.0".into(),
        observed: format!("{status}, {}", versions(&list, p)),
        ok: status == 200 && versions(&list, p) == "active 0.2.0 of 0.2.0",
    });

    let (status, v) = service
        .upload(p, &build::plugins_dir().join("mfs-africa-next.wasm"))
        .await?;
    steps.push(Step {
        what: format!("{p}: load mfs-africa-next.wasm"),
        expected: "201 0.3.0, not active".into(),
        observed: answered(status, &v, |v| {
            let active = if v["active"] == true {
                "active"
            } else {
                "not active"
            };
            format!("{}, {active}", v["version"].as_str().unwrap_or("?"))
        }),
        ok: status == 201 && v["version"] == "0.3.0" && v["active"] == false,
    });

    // What an activation answers: the version now active and the one before.
    let switched = |v: &Value| {
        format!(
            "active {}, was {}",
            v["active"].as_str().unwrap_or("?"),
            v["previous"].as_str().unwrap_or("?")
        )
    };
    let (status, v) = service.activate(p, "0.3.0").await?;
    steps.push(Step {
        what: format!("{p}: activate 0.3.0"),
        expected: "200 active 0.3.0, was 0.2.0".into(),
        observed: answered(status, &v, switched),
        ok: status == 200 && v["active"] == "0.3.0" && v["previous"] == "0.2.0",
    });

    // A refund through the active version: what the ledger recorded, what the sandbox saw.
    let (txn, original) = (&txn, &original);
    let refund = |ext: String| async move {
        let (status, _, v) = service
            .post(
                "/v1/refunds",
                &refund_body(story, txn, original, &ext, 50_000),
            )
            .await?;
        let saw = sandbox_saw(
            client,
            base_url,
            v["provider_refund_id"].as_str().unwrap_or(""),
        )
        .await;
        let observed = format!(
            "{}, plugin {}; {saw}",
            summary(status, &v),
            v["plugin_version"].as_str().unwrap_or("?")
        );
        anyhow::Ok((status, v, observed, saw))
    };
    let (status, v4, observed, saw) = refund(r4.clone()).await?;
    steps.push(Step {
        what: format!("{p}: POST refund {r4} of 500.00"),
        expected: "201 pending, plugin 0.3.0; sandbox saw X-Plugin-Version: 0.3.0".into(),
        observed,
        ok: status == 201
            && v4["plugin_version"] == "0.3.0"
            && saw == "sandbox saw X-Plugin-Version: 0.3.0",
    });

    let (status, v) = service.activate(p, "0.2.0").await?;
    steps.push(Step {
        what: format!("{p}: roll back: activate 0.2.0"),
        expected: "200 active 0.2.0, was 0.3.0".into(),
        observed: answered(status, &v, switched),
        ok: status == 200 && v["active"] == "0.2.0" && v["previous"] == "0.3.0",
    });

    let (status, v, observed, saw) = refund(r5.clone()).await?;
    steps.push(Step {
        what: format!("{p}: POST refund {r5} of 500.00"),
        expected: "201 pending, plugin 0.2.0; sandbox saw no X-Plugin-Version".into(),
        observed,
        ok: status == 201
            && v["plugin_version"] == "0.2.0"
            && saw == "sandbox saw no X-Plugin-Version",
    });

    // The refund made on 0.3.0 turns processed after the rollback; its webhook is lost, so the
    // janitor asks the provider, with the version that created the refund (pinning).
    let (id4, prid4) = (
        v4["id"].as_str().unwrap_or(""),
        v4["provider_refund_id"].as_str().unwrap_or(""),
    );
    control(
        client,
        format!("{base_url}/_sandbox/faults"),
        json!({"kind": "drop_webhooks", "count": 1}),
    )
    .await?;
    control(
        client,
        format!("{base_url}/_sandbox/refunds/{prid4}/status"),
        json!({"status": story.processed_word}),
    )
    .await?;
    let v = service.wait_for(id4, "processed", 20).await?;
    let checked_by = v["history"].as_array().and_then(|h| {
        h.iter()
            .find(|e| e["source"] == "janitor" && e["applied"] == true)
            .map(|e| e["plugin_version"].as_str().unwrap_or("?"))
    });
    steps.push(Step {
        what: format!("{p}: {r4} processed after the rollback"),
        expected: "processed, by janitor with 0.3.0".into(),
        observed: format!(
            "{}{}",
            v["status"].as_str().unwrap_or("?"),
            checked_by.map_or(String::new(), |by| format!(", by janitor with {by}"))
        ),
        ok: v["status"] == "processed" && checked_by == Some("0.3.0"),
    });

    let (status, v) = service.remove(p, "0.2.0").await?;
    steps.push(Step {
        what: format!("{p}: remove 0.2.0, the active version"),
        expected: "409 version_active".into(),
        observed: answered(status, &v, |_| "removed".into()),
        ok: status == 409 && v["error"]["code"] == "version_active",
    });

    let (_, before) = service.plugins().await?;
    let (status, v) = service
        .upload(p, &build::plugins_dir().join("pagoefectivo.wasm"))
        .await?;
    steps.push(Step {
        what: format!("{p}: load pagoefectivo.wasm as {p}"),
        expected: "422 provider_mismatch".into(),
        observed: answered(status, &v, |v| {
            format!("loaded {}", v["version"].as_str().unwrap_or("?"))
        }),
        ok: status == 422 && v["error"]["code"] == "provider_mismatch",
    });
    let (status, after) = service.plugins().await?;
    let unchanged = after == before;
    steps.push(Step {
        what: "GET /v1/plugins after the refusal".into(),
        expected: "200, unchanged: active 0.2.0 of 0.2.0, 0.3.0".into(),
        observed: format!(
            "{status}, {}: {}",
            if unchanged { "unchanged" } else { "changed" },
            versions(&after, p)
        ),
        ok: status == 200 && unchanged && versions(&after, p) == "active 0.2.0 of 0.2.0, 0.3.0",
    });
    Ok(steps)
}
