//! The embedding example (`examples/embed-gateway`): a gateway that links only the runtime, with
//! its own storage and log sink, makes, replays and looks up refunds, and verifies webhooks,
//! against both sandboxes, through its command line (the contract the README and the
//! JavaScript gateway share: JSON on stdout; exit 0, 1 on a refusal, 2 on a usage or
//! configuration error).

use std::path::{Path, PathBuf};

use refundry_tests::service::workspace_binary;
use refundry_tests::{
    MfsSandbox, PeSandbox, Webhook, next_webhook, plugin_path, released_contract_component,
    webhook_receiver,
};
use serde_json::{Value, json};

/// What one run of `embed-gateway` did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: Value,
    stderr: String,
}

async fn gateway(config: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let out = tokio::process::Command::new(workspace_binary("embed-gateway", "embed-gateway"))
        .arg("--provider-config")
        .arg(config)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .await
        .expect("embed-gateway runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    Run {
        code: out.status.code().expect("an exit code"),
        stdout: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A fresh folder for one test's files, removed with the test (a `Path` through `Deref`).
struct Folder(tempfile::TempDir);

impl std::ops::Deref for Folder {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.0.path()
    }
}

fn folder(name: &str) -> Folder {
    let dir = tempfile::Builder::new()
        .prefix(&format!("refundry-embed-{name}-"))
        .tempdir()
        .expect("a temporary folder");
    Folder(dir)
}

/// Writes a provider-config file naming the component by a path relative to the file.
fn provider_config(dir: &Path, plugin: &str, settings: &str, secrets: &str) -> PathBuf {
    provider_config_of(dir, &plugin_path(plugin), plugin, settings, secrets)
}

/// [`provider_config`] with the component at `source`, copied in as `<plugin>.wasm`.
fn provider_config_of(
    dir: &Path,
    source: &Path,
    plugin: &str,
    settings: &str,
    secrets: &str,
) -> PathBuf {
    let component = dir.join(format!("{plugin}.wasm"));
    std::fs::copy(source, &component).expect("the component is there");
    let file = dir.join(format!("{plugin}.toml"));
    let text = format!("plugin = \"{plugin}.wasm\"\n[settings]\n{settings}[secrets]\n{secrets}");
    std::fs::write(&file, text).unwrap();
    file
}

/// Writes a captured webhook as the `webhook` command takes it: headers as a JSON object, and
/// the raw body.
fn webhook_files(
    dir: &Path,
    (headers, body): &Webhook,
    body_override: Option<&[u8]>,
) -> [String; 4] {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let (h, b) = (dir.join("headers.json"), dir.join("body"));
    std::fs::write(&h, Value::Object(headers).to_string()).unwrap();
    std::fs::write(&b, body_override.unwrap_or(body)).unwrap();
    let s = |p: PathBuf| p.display().to_string();
    ["--headers-json".into(), s(h), "--body".into(), s(b)]
}

/// The `[settings]` and `[secrets]` lines of the MFS Africa sandbox's provider file, its secrets
/// written in.
fn mfs_tables(sandbox: &MfsSandbox) -> (String, String) {
    let creds = &sandbox.creds;
    let settings = format!(
        "base_url = \"{}\"\napi_key = \"{}\"\n",
        sandbox.base_url(),
        creds.api_key
    );
    let secrets = format!(
        "api_secret = \"{}\"\nwebhook_secret = \"{}\"\n",
        creds.api_secret, creds.webhook_secret
    );
    (settings, secrets)
}

fn create_args<'a>(txn: &'a str, amount: &'a str, currency: &'a str, id: &'a str) -> Vec<&'a str> {
    vec![
        "create",
        "--original-transaction-id",
        txn,
        "--amount-minor",
        amount,
        "--currency",
        currency,
        "--external-refund-id",
        id,
    ]
}

#[tokio::test]
async fn mfs_africa_refunds_and_webhooks_through_a_gateway_that_embeds_the_runtime() {
    let (url, mut rx) = webhook_receiver(vec![]).await;
    let sandbox = MfsSandbox::start(Some(url)).await;
    sandbox.seed("txn_e1", "100.00", "KES", 1, true).await;
    let dir = folder("mfs");
    let creds = &sandbox.creds;
    let settings = format!(
        "base_url = \"{}\"\napi_key = \"{}\"\n",
        sandbox.base_url(),
        creds.api_key
    );
    // Secrets from the environment, as a gateway keeps them.
    let secrets =
        "api_secret = \"env:MFS_API_SECRET\"\nwebhook_secret = \"env:MFS_WEBHOOK_SECRET\"\n";
    let config = provider_config(&dir, "mfs-africa", &settings, secrets);
    let env = [
        ("MFS_API_SECRET", creds.api_secret.as_str()),
        ("MFS_WEBHOOK_SECRET", creds.webhook_secret.as_str()),
    ];

    let created = gateway(
        &config,
        &env,
        &create_args("txn_e1", "6000", "KES", "emb-1"),
    )
    .await;
    assert_eq!(created.code, 0, "{created:?}");
    let refund = &created.stdout;
    assert_eq!(refund["external_refund_id"], "emb-1");
    assert_eq!(refund["amount_minor"], 6000);
    assert_eq!(refund["currency"], "KES");
    let id = refund["provider_refund_id"].as_str().unwrap().to_owned();
    assert!(!creds.api_secret.is_empty() && !created.stderr.contains(&creds.api_secret));

    // The same request again is the same refund at the provider.
    let again = gateway(
        &config,
        &env,
        &create_args("txn_e1", "6000", "KES", "emb-1"),
    )
    .await;
    assert_eq!(
        (again.code, &again.stdout["provider_refund_id"]),
        (0, &json!(id))
    );
    let found = gateway(&config, &env, &["get", "--external-refund-id", "emb-1"]).await;
    assert_eq!(
        (found.code, &found.stdout["provider_refund_id"]),
        (0, &json!(id))
    );

    // More than remains of the payment: the provider's refusal, exit 1.
    let over = gateway(
        &config,
        &env,
        &create_args("txn_e1", "6000", "KES", "emb-2"),
    )
    .await;
    assert_eq!(over.code, 1, "{over:?}");
    assert_eq!(over.stdout["refused"]["kind"], "amount-exceeded");

    // A real webhook verifies; the same one altered does not.
    sandbox
        .control(
            &format!("refunds/{id}/status"),
            json!({"status": "processed"}),
        )
        .await;
    let webhook = next_webhook(&mut rx, 10).await;
    let files = webhook_files(&dir, &webhook, None);
    let mut args = vec!["webhook"];
    args.extend(files.iter().map(String::as_str));
    let event = gateway(&config, &env, &args).await;
    assert_eq!(event.code, 0, "{event:?}");
    assert_eq!(event.stdout["refund"]["provider_refund_id"], json!(id));
    assert_eq!(event.stdout["refund"]["status"], "processed");
    let tampered = String::from_utf8(webhook.1.clone())
        .unwrap()
        .replace("processed", "reversed");
    let files = webhook_files(&dir, &webhook, Some(tampered.as_bytes()));
    let mut args = vec!["webhook"];
    args.extend(files.iter().map(String::as_str));
    let forged = gateway(&config, &env, &args).await;
    assert_eq!(forged.code, 1, "{forged:?}");
    assert_eq!(forged.stdout["rejected"]["reason"], "invalid_signature");

    // A genuine delivery of an event type the plugin does not handle: acknowledged, exit 0.
    let other_type = String::from_utf8(webhook.1.clone())
        .unwrap()
        .replace("refund.status_changed", "refund.note_added");
    let timestamp = webhook
        .0
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-mfs-timestamp"))
        .map(|(_, v)| v.clone())
        .unwrap();
    let mut headers = webhook.0.clone();
    for (k, v) in headers.iter_mut() {
        if k.eq_ignore_ascii_case("x-mfs-signature") {
            *v = mfs_sign(&creds.webhook_secret, &timestamp, other_type.as_bytes());
        }
    }
    let files = webhook_files(&dir, &(headers, other_type.into_bytes()), None);
    let mut args = vec!["webhook"];
    args.extend(files.iter().map(String::as_str));
    let ignored = gateway(&config, &env, &args).await;
    assert_eq!(ignored.code, 0, "{ignored:?}");
    assert!(
        ignored.stdout["ignored"]
            .as_str()
            .is_some_and(|r| r.contains("refund.note_added")),
        "{ignored:?}"
    );
}

/// `bench`: one warm-up and `--count` timed refunds against the sandbox, the timings as JSON;
/// a count of 0 is a usage error.
#[tokio::test]
async fn bench_times_refunds_after_one_warm_up() {
    let sandbox = MfsSandbox::start(None).await;
    // Room for the warm-up and five refunds of 10.00.
    sandbox.seed("txn_bench", "60.00", "KES", 1, true).await;
    let dir = folder("bench");
    let (settings, secrets) = mfs_tables(&sandbox);
    let config = provider_config(&dir, "mfs-africa", &settings, &secrets);
    let bench = |count: &'static str, prefix: &'static str| {
        let config = config.clone();
        async move {
            let args = [
                "bench",
                "--original-transaction-id",
                "txn_bench",
                "--amount-minor",
                "1000",
                "--currency",
                "KES",
                "--count",
                count,
                "--external-refund-id-prefix",
                prefix,
            ];
            gateway(&config, &[], &args).await
        }
    };

    let run = bench("5", "bench").await;
    assert_eq!(run.code, 0, "{run:?}");
    let t = &run.stdout;
    assert_eq!(t["count"], 5, "{t}");
    let field = |name: &str| {
        t[name]
            .as_f64()
            .unwrap_or_else(|| panic!("{name} is a number: {t}"))
    };
    let (min, p50, p99, max, mean) = (
        field("min_us"),
        field("p50_us"),
        field("p99_us"),
        field("max_us"),
        field("mean_us"),
    );
    assert!(0.0 < min && min <= p50 && p50 <= p99 && p99 <= max, "{t}");
    assert!(min <= mean && mean <= max, "{t}");
    // Of five timings, the 99th percentile is the slowest.
    assert_eq!(p99, max, "{t}");
    // The warm-up and the five timed refunds, each made once.
    assert_eq!(sandbox.inspect("stats").await["refunds_created"], 6);

    // The payment is used up: the first refund of another run is refused, and that refusal is
    // the answer, as `create` gives it.
    let refused = bench("5", "more").await;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert_eq!(refused.stdout["refused"]["kind"], "amount-exceeded");
    assert_eq!(sandbox.inspect("stats").await["refunds_created"], 6);

    let zero = bench("0", "zero").await;
    assert_eq!(zero.code, 2, "{zero:?}");
    assert!(zero.stderr.contains("--count"), "{}", zero.stderr);
}

/// The MFS Africa webhook signature, from the spec.
fn mfs_sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A gateway that never rebuilt its plugin: the component built against contract 0.1.0 still
/// makes, replays and finds refunds in a gateway on today's runtime.
#[tokio::test]
async fn a_component_built_for_contract_0_1_0_still_runs_in_the_gateway() {
    let sandbox = MfsSandbox::start(None).await;
    sandbox.seed("txn_old", "100.00", "KES", 1, true).await;
    let dir = folder("mfs-v0.1.0");
    let (settings, secrets) = mfs_tables(&sandbox);
    let config = provider_config_of(
        &dir,
        &released_contract_component("0.1.0", "mfs-africa"),
        "mfs-africa",
        &settings,
        &secrets,
    );
    let created = gateway(
        &config,
        &[],
        &create_args("txn_old", "2500", "KES", "old-1"),
    )
    .await;
    assert_eq!(created.code, 0, "{created:?}");
    let id = created.stdout["provider_refund_id"].clone();
    let again = gateway(
        &config,
        &[],
        &create_args("txn_old", "2500", "KES", "old-1"),
    )
    .await;
    assert_eq!((again.code, &again.stdout["provider_refund_id"]), (0, &id));
    let found = gateway(&config, &[], &["get", "--external-refund-id", "old-1"]).await;
    assert_eq!((found.code, &found.stdout["provider_refund_id"]), (0, &id));
    assert_eq!(sandbox.inspect("stats").await["refunds_created"], 1);
}

#[tokio::test]
async fn pagoefectivo_refunds_through_a_gateway_that_embeds_the_runtime() {
    let (url, mut rx) = webhook_receiver(vec![]).await;
    let sandbox = PeSandbox::start(Some(url)).await;
    sandbox.seed("77001", "500.00", "PEN", 1, true).await;
    let dir = folder("pe");
    let creds = &sandbox.creds;
    let settings = format!(
        "base_url = \"{}\"\nid_service = \"{}\"\n",
        sandbox.handle.base_url(),
        creds.id_service
    );
    let secrets = format!(
        "access_key = \"{}\"\nsecret_key = \"{}\"\n",
        creds.access_key, creds.secret_key
    );
    let config = provider_config(&dir, "pagoefectivo", &settings, &secrets);
    let mut args = create_args("77001", "15000", "PEN", "emb-pe-1");
    args.extend(["--order-id", "ORDER-77", "--reason", "customer_return"]);

    let created = gateway(&config, &[], &args).await;
    assert_eq!(created.code, 0, "{created:?}");
    let id = created.stdout["provider_refund_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(created.stdout["amount_minor"], 15000);
    let again = gateway(&config, &[], &args).await;
    assert_eq!(
        (again.code, &again.stdout["provider_refund_id"]),
        (0, &json!(id))
    );
    let found = gateway(&config, &[], &["get", "--external-refund-id", "emb-pe-1"]).await;
    assert_eq!(
        (found.code, &found.stdout["provider_refund_id"]),
        (0, &json!(id))
    );
    for secret in [&creds.secret_key, &creds.access_key] {
        assert!(
            !created.stderr.contains(secret.as_str()),
            "{}",
            created.stderr
        );
    }

    sandbox
        .control
        .post(
            &format!("refunds/{id}/status"),
            json!({"status": "completed"}),
        )
        .await;
    let webhook = next_webhook(&mut rx, 10).await;
    let files = webhook_files(&dir, &webhook, None);
    let mut args = vec!["webhook"];
    args.extend(files.iter().map(String::as_str));
    let event = gateway(&config, &[], &args).await;
    assert_eq!(event.code, 0, "{event:?}");
    assert_eq!(event.stdout["refund"]["status"], "processed");
}

#[tokio::test]
async fn usage_and_configuration_errors_exit_2() {
    let dir = folder("usage");
    let settings = "base_url = \"http://127.0.0.1:9\"\napi_key = \"k\"\n";
    let config = provider_config(
        &dir,
        "mfs-africa",
        settings,
        "api_secret = \"env:NOT_SET_HERE\"\n",
    );
    let unset = gateway(&config, &[], &["get", "--external-refund-id", "x"]).await;
    assert_eq!(unset.code, 2, "{unset:?}");
    assert!(unset.stderr.contains("NOT_SET_HERE"), "{}", unset.stderr);

    let missing = gateway(
        &dir.join("nope.toml"),
        &[],
        &["get", "--external-refund-id", "x"],
    )
    .await;
    assert_eq!(missing.code, 2, "{missing:?}");

    let no_base = provider_config(&dir, "mfs-africa", "api_key = \"k\"\n", "");
    let run = gateway(&no_base, &[], &["get", "--external-refund-id", "x"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("base_url"), "{}", run.stderr);

    let bad_amount = gateway(&config, &[], &create_args("t", "ten", "KES", "x")).await;
    assert_eq!(bad_amount.code, 2, "{bad_amount:?}");
}
