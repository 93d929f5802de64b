//! The demo's first part: each provider through the `refundry` command line, and the stories
//! (providers, sandboxes, steps) both parts tell.
//!
//! Everything runs as separate processes on loopback ports chosen at run time: the sandbox
//! (`refundry sandbox mfs-africa --port 0`), and the host for each step (`refundry refund ...`).
//! The credentials are random for each run and reach both through the environment, as they would
//! in production. Every step states what it expects; the demo exits non-zero if any step differs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::build;
use crate::process::{Guard, spawn_announcing};

/// One row of the table.
pub(crate) struct Step {
    pub(crate) what: String,
    pub(crate) expected: String,
    pub(crate) observed: String,
    pub(crate) ok: bool,
}

/// A captured webhook: headers and raw body.
type Captured = (Vec<(String, String)>, Vec<u8>);

impl Story {
    /// The `[providers.<id>]` tables of a service config for this provider against `base_url`,
    /// its keys read from the environment.
    pub(crate) fn provider_toml(&self, base_url: &str) -> String {
        let p = self.provider;
        let plugin = build::plugins_dir().join(format!("{p}.wasm"));
        let (mut settings, mut secrets) = (format!("base_url = \"{base_url}\"\n"), String::new());
        for (key, var, secret) in &self.keys {
            let line = format!("{key} = \"env:{var}\"\n");
            if *secret { &mut secrets } else { &mut settings }.push_str(&line);
        }
        format!(
            "[providers.{p}]\nplugin = {plugin:?}\n[providers.{p}.settings]\n{settings}\
             [providers.{p}.secrets]\n{secrets}\n"
        )
    }
}

/// What differs between providers in the same refund story.
pub(crate) struct Story {
    pub(crate) provider: &'static str,
    name: &'static str,
    /// Environment shared by the sandbox and the host: (variable, value).
    pub(crate) env: Vec<(&'static str, String)>,
    /// Host config keys read from the environment: (key, variable, is secret).
    pub(crate) keys: Vec<(&'static str, &'static str, bool)>,
    pub(crate) currency: &'static str,
    /// Control call seeding the original payment of 5000.00: (path, body without the id).
    seed: (&'static str, Value),
    /// Extra arguments every `refund create` needs.
    create_args: Vec<&'static str>,
    over_refund_code: &'static str,
    conflict_code: &'static str,
    /// The provider's word for "processed" in its control API.
    pub(crate) processed_word: &'static str,
    /// The field naming the original payment in the sandbox's portal-refund control call.
    pub(crate) portal_payment_field: &'static str,
    /// Prefix of the webhook headers the plugin verifies.
    webhook_headers: &'static str,
}

impl Story {
    /// Seeds an original payment of 5000.00 at the sandbox, under a random id from `base` up;
    /// returns the id.
    pub(crate) async fn seed_payment(
        &self,
        client: &reqwest::Client,
        base_url: &str,
        base: u32,
    ) -> Result<String> {
        let txn = format!("{}", base + rand::random::<u32>() % 1_000_000);
        self.seed_payment_as(client, base_url, &txn).await?;
        Ok(txn)
    }

    /// Seeds an original payment of 5000.00 at the sandbox under the id `txn`.
    pub(crate) async fn seed_payment_as(
        &self,
        client: &reqwest::Client,
        base_url: &str,
        txn: &str,
    ) -> Result<()> {
        let (path, mut body) = self.seed.clone();
        body["transaction_id"] = json!(txn);
        control(client, format!("{base_url}/_sandbox/{path}"), body).await?;
        Ok(())
    }
}

pub(crate) fn mfs_africa() -> Story {
    Story {
        provider: "mfs-africa",
        name: "MFS Africa",
        env: vec![
            ("MFS_AFRICA_API_KEY", format!("demo-{}", random_hex(4))),
            ("MFS_AFRICA_API_SECRET", random_hex(32)),
            ("MFS_AFRICA_WEBHOOK_SECRET", random_hex(32)),
        ],
        keys: vec![
            ("api_key", "MFS_AFRICA_API_KEY", true),
            ("api_secret", "MFS_AFRICA_API_SECRET", true),
            ("webhook_secret", "MFS_AFRICA_WEBHOOK_SECRET", true),
        ],
        currency: "KES",
        seed: (
            "transactions",
            json!({"amount": "5000.00", "currency": "KES", "settled": true}),
        ),
        create_args: vec![],
        over_refund_code: "amount_exceeded",
        conflict_code: "duplicate_external_refund_id",
        processed_word: "processed",
        portal_payment_field: "original_transaction_id",
        webhook_headers: "x-mfs-",
    }
}

pub(crate) fn pagoefectivo() -> Story {
    Story {
        provider: "pagoefectivo",
        name: "PagoEfectivo",
        env: vec![
            (
                "PAGOEFECTIVO_ID_SERVICE",
                (1000 + rand::random::<u16>() % 9000).to_string(),
            ),
            ("PAGOEFECTIVO_ACCESS_KEY", format!("AK-{}", random_hex(4))),
            ("PAGOEFECTIVO_SECRET_KEY", random_hex(32)),
        ],
        keys: vec![
            ("id_service", "PAGOEFECTIVO_ID_SERVICE", false),
            ("access_key", "PAGOEFECTIVO_ACCESS_KEY", true),
            ("secret_key", "PAGOEFECTIVO_SECRET_KEY", true),
        ],
        currency: "PEN",
        seed: (
            "payments",
            json!({"amount": "5000.00", "currency": "PEN", "paid": true}),
        ),
        create_args: vec!["--order-id", "ORDER-991"],
        over_refund_code: "132",
        conflict_code: "131",
        processed_word: "completed",
        portal_payment_field: "transaction_id",
        webhook_headers: "pe-",
    }
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let v: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(v)
}

/// Starts a loopback receiver that captures every webhook it gets; returns its URL.
async fn webhook_receiver() -> Result<(String, mpsc::UnboundedReceiver<Captured>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/webhooks/{provider}",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let tx = tx.clone();
                async move {
                    let headers = headers
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.to_string(),
                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                            )
                        })
                        .collect();
                    let _ = tx.send((headers, body.to_vec()));
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, rx))
}

/// Starts `refundry sandbox <provider> --port 0` and reads the URL it prints.
pub(crate) fn start_sandbox(
    bin: &Path,
    provider: &str,
    env: &[(&str, String)],
    callback: &str,
) -> Result<(Guard, String)> {
    let mut command = Command::new(bin);
    command
        .args([
            "sandbox",
            provider,
            "--port",
            "0",
            "--callback-url",
            callback,
        ])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stderr(Stdio::inherit());
    spawn_announcing(&mut command, "sandbox")
}

/// Runs the host CLI with `--json`; returns its exit code and parsed output.
fn host(bin: &Path, config: &Path, env: &[(&str, String)], args: &[&str]) -> Result<(i32, Value)> {
    let out = Command::new(bin)
        .arg("--config")
        .arg(config)
        .arg("--json")
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .with_context(|| format!("running refundry {}", args.join(" ")))?;
    let code = out.status.code().unwrap_or(-1);
    let value = serde_json::from_slice(&out.stdout).unwrap_or_else(
        |_| json!({ "stderr": String::from_utf8_lossy(&out.stderr).trim().to_string() }),
    );
    Ok((code, value))
}

pub(crate) async fn control(client: &reqwest::Client, url: String, body: Value) -> Result<Value> {
    let resp = client.post(&url).json(&body).send().await?;
    let status = resp.status();
    let value: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("sandbox control {url} answered {status}: {value}");
    }
    Ok(value)
}

fn write_config(dir: &Path, story: &Story, plugin: &Path, base_url: &str) -> Result<PathBuf> {
    let provider = story.provider;
    let mut settings = format!("base_url = \"{base_url}\"\n");
    let mut secrets = String::new();
    for (key, var, secret) in &story.keys {
        let line = format!("{key} = \"env:{var}\"\n");
        if *secret {
            secrets.push_str(&line)
        } else {
            settings.push_str(&line)
        }
    }
    let toml = format!(
        "[database]\npath = \"demo.db\"\n\n[providers.{provider}]\nplugin = {plugin:?}\n\
         [providers.{provider}.settings]\n{settings}[providers.{provider}.secrets]\n{secrets}"
    );
    let path = dir.join("refundry.toml");
    std::fs::write(&path, toml)?;
    Ok(path)
}

fn refund_field<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or("")
}

fn describe(code: i32, v: &Value) -> String {
    if code == 0 {
        format!(
            "{} {} {} {}",
            refund_field(v, "provider_refund_id"),
            refund_field(v, "status"),
            refund_field(v, "amount_display"),
            refund_field(v, "currency")
        )
    } else if let Some(e) = v.get("error") {
        format!(
            "{} {} ({})",
            e.get("kind").and_then(Value::as_str).unwrap_or(""),
            e.get("refusal").and_then(Value::as_str).unwrap_or(""),
            e.get("provider_code").and_then(Value::as_str).unwrap_or("")
        )
    } else {
        format!("exit {code}: {v}")
    }
}

/// Walks one provider through the story; returns how many steps did not behave as expected.
pub(super) async fn walk(bin: &Path, story: &Story) -> Result<usize> {
    let provider = story.provider;
    let env = &story.env;
    let currency = story.currency;
    let (receiver_url, mut webhooks) = webhook_receiver().await?;
    let callback = format!("{receiver_url}/webhooks/{provider}");
    let (_sandbox, base_url) = start_sandbox(bin, provider, env, &callback)?;
    let dir = std::env::temp_dir().join(format!("refundry-demo-{}-{provider}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let plugin = build::plugins_dir().join(format!("{provider}.wasm"));
    let config = write_config(&dir, story, &plugin, &base_url)?;
    println!(
        "\n{}: sandbox at {base_url}, plugin {}\n",
        story.name,
        plugin.display()
    );

    let client = reqwest::Client::new();
    let run_id = random_hex(3);
    let txn = story.seed_payment(&client, &base_url, 81_000_000).await?;
    let mut steps = vec![Step {
        what: format!("seed original payment {txn}"),
        expected: format!("5000.00 {currency}, settled"),
        observed: "seeded".into(),
        ok: true,
    }];
    let r1 = format!("demo-{run_id}-r1");
    let r2 = format!("demo-{run_id}-r2");
    let r3 = format!("demo-{run_id}-r3");
    let create = |ext: &str, amount: &str| -> Result<(i32, Value)> {
        let mut args = vec![
            "refund",
            "create",
            "--provider",
            provider,
            "--original-transaction-id",
            &txn,
            "--amount",
            amount,
            "--currency",
            currency,
            "--external-refund-id",
            ext,
            "--reason",
            "customer_return",
        ];
        args.extend(&story.create_args);
        host(bin, &config, env, &args)
    };

    let (code, first) = create(&r1, "2000.00")?;
    let r1_id = refund_field(&first, "provider_refund_id").to_owned();
    steps.push(Step {
        what: format!("partial refund {r1} of 2000.00"),
        expected: format!("pending 2000.00 {currency}"),
        observed: describe(code, &first),
        ok: code == 0
            && refund_field(&first, "status") == "pending"
            && refund_field(&first, "amount_display") == "2000.00",
    });
    let (code, v) = create(&r2, "3000.00")?;
    steps.push(Step {
        what: format!("second partial {r2} of 3000.00 (reaches the total)"),
        expected: format!("pending 3000.00 {currency}"),
        observed: describe(code, &v),
        ok: code == 0 && refund_field(&v, "status") == "pending",
    });
    let (code, v) = create(&r3, "0.01")?;
    steps.push(Step {
        what: format!("over-refund {r3} of 0.01"),
        expected: format!("refused amount-exceeded ({})", story.over_refund_code),
        observed: describe(code, &v),
        ok: code == 1 && v["error"]["provider_code"] == story.over_refund_code,
    });
    let (code, v) = create(&r1, "2000.00")?;
    steps.push(Step {
        what: format!("replay {r1} with the same amount"),
        expected: format!("the same refund {r1_id}, no new money"),
        observed: describe(code, &v),
        ok: code == 0 && !r1_id.is_empty() && refund_field(&v, "provider_refund_id") == r1_id,
    });
    let (code, v) = create(&r1, "2500.00")?;
    steps.push(Step {
        what: format!("reuse {r1} with another amount"),
        expected: format!("refused idempotency-conflict ({})", story.conflict_code),
        observed: describe(code, &v),
        ok: code == 1 && v["error"]["provider_code"] == story.conflict_code,
    });
    let word = story.processed_word;
    let moved = control(
        &client,
        format!("{base_url}/_sandbox/refunds/{r1_id}/status"),
        json!({"status": word}),
    )
    .await;
    steps.push(Step {
        what: format!("sandbox moves {r1_id} to {word}"),
        expected: word.into(),
        observed: match &moved {
            Ok(v) => refund_field(v, "status").to_owned(),
            Err(e) => e.to_string(),
        },
        ok: moved
            .as_ref()
            .is_ok_and(|v| refund_field(v, "status") == word),
    });
    let get = ["refund", "get", "--provider", provider, "--id", &r1_id];
    let (code, v) = host(bin, &config, env, &get)?;
    steps.push(Step {
        what: format!("status query of {r1_id}"),
        expected: "processed".into(),
        observed: describe(code, &v),
        ok: code == 0 && refund_field(&v, "status") == "processed",
    });
    let webhook = tokio::time::timeout(Duration::from_secs(15), webhooks.recv()).await;
    let (observed, ok) = match webhook {
        Ok(Some((headers, body))) => {
            let body_path = dir.join("webhook.json");
            std::fs::write(&body_path, &body)?;
            let mut args: Vec<String> = ["webhook", "parse", "--provider", provider, "--body-file"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            args.push(body_path.display().to_string());
            for (k, v) in headers
                .iter()
                .filter(|(k, _)| k.starts_with(story.webhook_headers))
            {
                args.push("--header".into());
                args.push(format!("{k}: {v}"));
            }
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let (code, v) = host(bin, &config, env, &refs)?;
            let status = v["refund"]["status"].as_str().unwrap_or("");
            (
                format!(
                    "{} {} -> {}",
                    v["event_id"].as_str().unwrap_or("?"),
                    v["event_type"].as_str().unwrap_or("?"),
                    if code == 0 { status } else { "rejected" }
                ),
                code == 0
                    && status == "processed"
                    && v["refund"]["provider_refund_id"] == r1_id.as_str(),
            )
        }
        _ => ("no webhook within 15 s".into(), false),
    };
    steps.push(Step {
        what: "webhook received, verified and parsed".into(),
        expected: format!("signature valid, {r1_id} processed"),
        observed,
        ok,
    });
    print_table(&steps);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(steps.iter().filter(|s| !s.ok).count())
}

pub(crate) fn print_table(steps: &[Step]) {
    let w1 = steps.iter().map(|s| s.what.len()).max().unwrap_or(0);
    let w2 = steps.iter().map(|s| s.expected.len()).max().unwrap_or(0);
    let w3 = steps.iter().map(|s| s.observed.len()).max().unwrap_or(0);
    println!(
        "  # | {:w1$} | {:w2$} | {:w3$} | ok",
        "step", "expected", "observed"
    );
    println!("{}", "-".repeat(w1 + w2 + w3 + 18));
    for (i, s) in steps.iter().enumerate() {
        println!(
            "{:>3} | {:w1$} | {:w2$} | {:w3$} | {}",
            i + 1,
            s.what,
            s.expected,
            s.observed,
            if s.ok { "yes" } else { "NO" }
        );
    }
}
