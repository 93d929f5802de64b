//! A payment gateway that embeds the Refundry runtime and nothing else: it brings its own
//! key-value store (a map behind a mutex) and its own log sink, loads one provider's plugin
//! component, and makes, looks up and verifies refunds with it.
//!
//! ```text
//! embed-gateway --provider-config FILE create --original-transaction-id T --amount-minor N \
//!     --currency C --external-refund-id X [--reason R] [--order-id O]
//! embed-gateway --provider-config FILE get --external-refund-id X
//! embed-gateway --provider-config FILE webhook --headers-json FILE --body FILE
//! ```
//! Exit codes: 0 and the refund (or webhook event; a list for a batch, `{"ignored": ..}` for an
//! event type the plugin does not handle) as JSON on stdout (in the runtime's
//! [`refundry_runtime::json`] shape: amounts in minor units, times in ms); 1 and the provider's
//! refusal (or the webhook's rejection) as JSON; 2 on a usage or configuration error; 3 and the
//! error as JSON when there is no final answer (retryable, outcome unknown, plugin failure).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::{Parser, Subcommand};
use refundry_runtime::bindings::storage::StorageError;
use refundry_runtime::caps::{LogLine, Settings};
use refundry_runtime::json;
use refundry_runtime::{
    BoxFuture, Capabilities, Engine, EngineLimits, KeyValueStore, LogSink, Money, Plugin,
    PluginComponent, Refund, RefundError, RefundLookup, RefundRequest, Secret, WebhookError,
    WebhookOutcome, WebhookRequest,
};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "A gateway using a Refundry provider plugin through the runtime alone")]
struct Cli {
    /// The provider's TOML: `plugin`, `[settings]` (with `base_url`), `[secrets]`.
    #[arg(long)]
    provider_config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Asks the provider to refund.
    Create {
        #[arg(long)]
        original_transaction_id: String,
        #[arg(long)]
        amount_minor: i64,
        #[arg(long)]
        currency: String,
        #[arg(long)]
        external_refund_id: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        order_id: Option<String>,
    },
    /// Looks a refund up by the gateway's id for it.
    Get {
        #[arg(long)]
        external_refund_id: String,
    },
    /// Verifies and parses a webhook the provider sent.
    Webhook {
        /// A JSON object of header names and values, as received.
        #[arg(long)]
        headers_json: PathBuf,
        /// The raw body, as received.
        #[arg(long)]
        body: PathBuf,
    },
}

/// The provider-config file, as written.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderFile {
    plugin: PathBuf,
    #[serde(default)]
    settings: BTreeMap<String, String>,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
}

/// The gateway's own key-value store: a map behind a mutex (a real gateway would use its
/// database). The runtime checks key and value sizes before it is asked.
#[derive(Default)]
struct MapStore(Mutex<HashMap<String, Vec<u8>>>);

impl KeyValueStore for MapStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StorageError>> {
        let value = self.0.lock().unwrap().get(key).cloned();
        Box::pin(async move { Ok(value) })
    }
    fn set<'a>(&'a self, key: &'a str, value: &'a [u8]) -> BoxFuture<'a, Result<(), StorageError>> {
        self.0
            .lock()
            .unwrap()
            .insert(key.to_owned(), value.to_vec());
        Box::pin(async { Ok(()) })
    }
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StorageError>> {
        self.0.lock().unwrap().remove(key);
        Box::pin(async { Ok(()) })
    }
}

/// The gateway's own log sink: plugin lines on stderr (already without secrets).
struct StderrLog;

impl LogSink for StderrLog {
    fn write(&self, line: &LogLine<'_>) {
        eprintln!(
            "[{} {} {:?}] {}",
            line.provider, line.op, line.level, line.text
        );
    }
}

/// A usage or configuration error: exit 2.
struct Usage(String);

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok((code, answer)) => {
            println!("{answer:#}");
            ExitCode::from(code)
        }
        Err(Usage(message)) => {
            eprintln!("embed-gateway: {message}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<(u8, Value), Usage> {
    let plugin = load(&cli.provider_config).await?;
    Ok(match cli.command {
        Command::Create {
            original_transaction_id,
            amount_minor,
            currency,
            external_refund_id,
            reason,
            order_id,
        } => {
            let req = RefundRequest {
                original_transaction_id,
                external_refund_id,
                amount: Money {
                    amount_minor,
                    currency,
                },
                reason,
                order_id,
            };
            refund_answer(plugin.create_refund(&req).await)
        }
        Command::Get { external_refund_id } => {
            let lookup = RefundLookup::ExternalRefundId(external_refund_id);
            refund_answer(plugin.get_refund(&lookup, None).await)
        }
        Command::Webhook { headers_json, body } => {
            let headers: BTreeMap<String, String> = serde_json::from_str(&read(&headers_json)?)
                .map_err(|e| Usage(format!("{}: {e}", headers_json.display())))?;
            let headers: Vec<(String, String)> = headers.into_iter().collect();
            let body =
                std::fs::read(&body).map_err(|e| Usage(format!("{}: {e}", body.display())))?;
            // The delivery as this command line has it: a POST whose path this gateway does not
            // know (no provider the runtime ships signs the path).
            let req = WebhookRequest {
                method: "POST".into(),
                path: "/".into(),
                query: None,
                headers,
                body,
            };
            match plugin.parse_webhook(&req).await {
                Ok(Ok(WebhookOutcome::Events(events))) => match events.as_slice() {
                    [one] => (0, json::webhook_event(one)),
                    many => (
                        0,
                        Value::Array(many.iter().map(json::webhook_event).collect()),
                    ),
                },
                Ok(Ok(WebhookOutcome::Ignored(reason))) => (0, json!({ "ignored": reason })),
                Ok(Err(e)) => (1, json!({ "rejected": webhook_error_json(&e) })),
                Err(e) => (3, json!({ "error": e.to_string() })),
            }
        }
    })
}

/// The plugin the provider-config file names, bound to the gateway's capabilities.
async fn load(path: &Path) -> Result<Plugin, Usage> {
    let file: ProviderFile =
        toml::from_str(&read(path)?).map_err(|e| Usage(format!("{}: {e}", path.display())))?;
    let value = |key: &str, v: String| match v.strip_prefix("env:") {
        Some(name) => std::env::var(name)
            .map_err(|_| Usage(format!("{key}: environment variable {name} is not set"))),
        None => Ok(v),
    };
    let mut config = Settings::default();
    for (k, v) in file.settings {
        config.settings.insert(k.clone(), value(&k, v)?);
    }
    for (k, v) in file.secrets {
        config.secrets.insert(k.clone(), Secret::new(value(&k, v)?));
    }
    let base_url = config
        .settings
        .get("base_url")
        .ok_or_else(|| Usage(format!("{}: [settings] has no base_url", path.display())))?;
    let origin = base_url
        .parse()
        .map_err(|e| Usage(format!("base_url {base_url:?}: {e}")))?;
    let component_path = path.parent().unwrap_or(Path::new(".")).join(&file.plugin);
    let engine = Engine::new(EngineLimits::default()).map_err(|e| Usage(e.to_string()))?;
    let component =
        PluginComponent::from_file(&engine, &component_path).map_err(|e| Usage(e.to_string()))?;
    // Named for its logs after the component's file; the component says which provider it is.
    let name = component_path
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy();
    let caps = Capabilities::builder(&name, Arc::new(config))
        .origin(origin)
        .storage(Arc::new(MapStore::default()))
        .log(Arc::new(StderrLog))
        .build();
    Plugin::bind(engine, Arc::new(component), caps, false)
        .await
        .map_err(|e| Usage(e.to_string()))
}

fn read(path: &Path) -> Result<String, Usage> {
    std::fs::read_to_string(path).map_err(|e| Usage(format!("{}: {e}", path.display())))
}

/// Exit code and JSON of a refund operation's answer.
fn refund_answer(
    answer: Result<Result<Refund, RefundError>, refundry_runtime::PluginError>,
) -> (u8, Value) {
    match answer {
        Ok(Ok(refund)) => (0, json::refund(&refund)),
        Ok(Err(RefundError::Refused(r))) => (
            1,
            json!({ "refused": {
                "kind": r.kind.as_str(),
                "provider_code": r.provider_code,
                "message": r.message,
                "http_status": r.http_status,
            }}),
        ),
        Ok(Err(RefundError::Retryable(r))) => (
            3,
            json!({ "retryable": {
                "provider_code": r.provider_code,
                "message": r.message,
                "http_status": r.http_status,
                "retry_after_ms": r.retry_after_ms,
            }}),
        ),
        Ok(Err(RefundError::UnknownOutcome(why))) => (3, json!({ "unknown_outcome": why })),
        Err(e) => (3, json!({ "error": e.to_string() })),
    }
}

fn webhook_error_json(e: &WebhookError) -> Value {
    match e {
        WebhookError::MissingHeader(h) => json!({ "reason": "missing_header", "header": h }),
        WebhookError::InvalidSignature => json!({ "reason": "invalid_signature" }),
        WebhookError::StaleTimestamp(s) => json!({ "reason": "stale_timestamp", "skew_s": s }),
        WebhookError::Malformed(m) => json!({ "reason": "malformed", "message": m }),
    }
}
