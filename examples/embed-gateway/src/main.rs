//! A payment gateway that embeds the Refundry runtime and nothing else: it brings its own
//! key-value store (a map behind a mutex) and its own log sink, loads one provider's plugin
//! component, and makes, looks up and verifies refunds with it.
//!
//! ```text
//! embed-gateway --provider-config FILE create --original-transaction-id T --amount-minor N \
//!     --currency C --external-refund-id X [--reason R] [--order-id O]
//! embed-gateway --provider-config FILE get --external-refund-id X
//! embed-gateway --provider-config FILE webhook --headers-json FILE --body FILE
//! embed-gateway --provider-config FILE bench --original-transaction-id T --amount-minor N \
//!     --currency C --count K --external-refund-id-prefix P [--reason R] [--order-id O]
//! ```
//! Exit codes: 0 and the refund (or webhook event; a list for a batch, `{"ignored": ..}` for an
//! event type the plugin does not handle) as JSON on stdout (in the runtime's
//! [`refundry_runtime::json`] shape: amounts in minor units, times in ms); 1 and the provider's
//! refusal (or the webhook's rejection) as JSON; 2 on a usage or configuration error; 3 and the
//! error as JSON when there is no final answer (retryable, outcome unknown, plugin failure).
//!
//! `bench` times the create-refund call, as the JavaScript gateway's `bench` does with the same
//! arguments, so that the two compare: the plugin loads once (not timed), one untimed warm-up
//! refund `P-0` is made, then `K` refunds `P-1`..`P-K` of `N` minor units each, one after the
//! other, each timed from before the call to its answer (a fresh plugin instance, the provider's
//! round trip, the answer). It prints `{"count", "mean_us", "p50_us", "p99_us", "min_us",
//! "max_us"}` (microseconds; a percentile is the nearest rank, `sorted[ceil(q*K)-1]`) and exits
//! 0. The first answer that is not a refund stops it, printed with the exit code `create` would
//! give it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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

/// What every refund asked for on the command line carries, but its id.
#[derive(clap::Args)]
struct RefundArgs {
    #[arg(long)]
    original_transaction_id: String,
    /// The amount, in minor units.
    #[arg(long)]
    amount_minor: i64,
    #[arg(long)]
    currency: String,
    #[arg(long)]
    reason: Option<String>,
    #[arg(long)]
    order_id: Option<String>,
}

impl RefundArgs {
    /// The refund with the gateway's id `external_refund_id`.
    fn request(&self, external_refund_id: String) -> RefundRequest {
        RefundRequest {
            original_transaction_id: self.original_transaction_id.clone(),
            external_refund_id,
            amount: Money {
                amount_minor: self.amount_minor,
                currency: self.currency.clone(),
            },
            reason: self.reason.clone(),
            order_id: self.order_id.clone(),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Asks the provider to refund.
    Create {
        #[command(flatten)]
        refund: RefundArgs,
        #[arg(long)]
        external_refund_id: String,
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
    /// Times `count` refunds of the same payment, made one after the other, after one warm-up.
    Bench {
        #[command(flatten)]
        refund: RefundArgs,
        /// Timed refunds; at least 1.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        count: u32,
        /// The refunds' ids are `<prefix>-0` (the warm-up) to `<prefix>-<count>`.
        #[arg(long)]
        external_refund_id_prefix: String,
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
            refund,
            external_refund_id,
        } => refund_answer(
            plugin
                .create_refund(&refund.request(external_refund_id))
                .await,
        ),
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
        Command::Bench {
            refund,
            count,
            external_refund_id_prefix,
        } => {
            let request = |i: u32| refund.request(format!("{external_refund_id_prefix}-{i}"));
            bench(&plugin, request, count).await
        }
    })
}

/// Refund 0 untimed, then refunds 1..=`count` each timed; the timings as JSON, or the first
/// answer that is not a refund as `create` gives it.
async fn bench(plugin: &Plugin, request: impl Fn(u32) -> RefundRequest, count: u32) -> (u8, Value) {
    // The warm-up pays for what only the first call does: opening the connection to the
    // provider, which later calls reuse, and, for a provider with a token (PagoEfectivo), the
    // authorization, whose token the plugin keeps in this gateway's store.
    match plugin.create_refund(&request(0)).await {
        Ok(Ok(_)) => {}
        answer => return refund_answer(answer),
    }
    let mut micros = Vec::with_capacity(count as usize);
    for i in 1..=count {
        // Built before the clock starts: only the call is timed.
        let req = request(i);
        let started = Instant::now();
        let answer = plugin.create_refund(&req).await;
        let elapsed = started.elapsed();
        match answer {
            Ok(Ok(_)) => micros.push(elapsed.as_secs_f64() * 1e6),
            answer => return refund_answer(answer),
        }
    }
    (0, timings(micros))
}

/// `{"count", "mean_us", "p50_us", "p99_us", "min_us", "max_us"}` of at least one timing, in
/// microseconds; a percentile is the nearest rank, `sorted[ceil(q*K)-1]`.
fn timings(mut micros: Vec<f64>) -> Value {
    micros.sort_by(f64::total_cmp);
    let k = micros.len();
    let rank = |q: f64| micros[((q * k as f64).ceil() as usize).clamp(1, k) - 1];
    json!({
        "count": k,
        "mean_us": micros.iter().sum::<f64>() / k as f64,
        "p50_us": rank(0.5),
        "p99_us": rank(0.99),
        "min_us": micros[0],
        "max_us": micros[k - 1],
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_are_nearest_rank() {
        let hundred: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let t = timings(hundred);
        assert_eq!(
            (&t["count"], &t["p50_us"], &t["p99_us"]),
            (&json!(100), &json!(50.0), &json!(99.0))
        );
        assert_eq!(
            (&t["min_us"], &t["max_us"], &t["mean_us"]),
            (&json!(1.0), &json!(100.0), &json!(50.5))
        );
        // Five timings: the median is the third, the 99th percentile the largest.
        let t = timings(vec![5.0, 1.0, 4.0, 2.0, 3.0]);
        assert_eq!((&t["p50_us"], &t["p99_us"]), (&json!(3.0), &json!(5.0)));
        let t = timings(vec![7.0]);
        assert_eq!((&t["p50_us"], &t["p99_us"]), (&json!(7.0), &json!(7.0)));
    }
}
