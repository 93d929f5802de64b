//! Prometheus metrics of `refundry serve`: `GET /metrics` (bearer token with scope `metrics`),
//! in the Prometheus text exposition format (version 0.0.4).
//!
//! Two kinds, by where the number lives:
//! - **From the ledger, at scrape time**, so they survive a restart and agree with
//!   `refundry refund list`: refunds by provider, plugin version and status
//!   (`refundry_refunds`), refunds that reached each final status (`refundry_refunds_finalized_total`,
//!   a counter because a final status is never left, except processed for reversed, which it
//!   counts as both), and per provider the refunds not final yet (`refundry_janitor_backlog_refunds`)
//!   and the age of the oldest of them (`refundry_oldest_nonfinal_refund_age_seconds`).
//! - **Counted by this process** since it started (Prometheus takes a restart's reset in its
//!   stride): each HTTP exchange a plugin makes with its provider
//!   (`refundry_provider_request_duration_seconds`), plugin failures (traps, deadlines, memory
//!   cap, instantiation: `refundry_plugin_failures_total`) and webhooks whose verification failed
//!   (`refundry_webhook_verifications_failed_total`).
//!
//! [`Metrics`] belongs to one [`crate::providers::Providers`]; what the plugins do is counted by
//! its [`MetricsObserver`], which every provider's capabilities carry, and webhook intake counts
//! its refusals itself.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use refundry_ledger::{FindingKind, LedgerStats, Status};
use refundry_runtime::bindings::http::{HttpError, Response};
use refundry_runtime::bindings::types::WebhookError;
use refundry_runtime::error::PluginError;
use refundry_runtime::observe::{Import, ImportAnswer, Observer, OperationAnswer, Scope};

/// The `Content-Type` of `GET /metrics`: the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds (seconds) of the provider latency buckets: a loopback sandbox answers in a few
/// milliseconds, a real provider in tens to hundreds; the top bucket is the default HTTP
/// timeout (10 s), past which an exchange is a `timeout`.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The version label of a failure before the plugin said its version (its `describe()` at load).
const VERSION_NOT_KNOWN: &str = "unknown";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExchangeLabels {
    provider: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginFailureLabels {
    provider: String,
    plugin_version: String,
    operation: &'static str,
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    provider: String,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DiscrepancyLabels {
    provider: String,
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefundLabels {
    provider: String,
    plugin_version: String,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The metrics this process counts, and the rendering of every metric at a scrape.
pub struct Metrics {
    provider_requests: Family<ExchangeLabels, Histogram, fn() -> Histogram>,
    plugin_failures: Family<PluginFailureLabels, Counter>,
    webhook_failures: Family<WebhookLabels, Counter>,
    discrepancies: Family<DiscrepancyLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            provider_requests: Family::new_with_constructor(latency_histogram),
            plugin_failures: Family::default(),
            webhook_failures: Family::default(),
            discrepancies: Family::default(),
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// What an HTTP exchange came to, as the `outcome` label; `None` for a request the host's
/// policy refused before any connection (no exchange, no latency to speak of).
fn exchange_outcome(result: &Result<Response, HttpError>) -> Option<&'static str> {
    Some(match result {
        Ok(r) => match r.status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            500..=599 => "5xx",
            _ => "other_status",
        },
        Err(HttpError::Denied(_) | HttpError::InvalidRequest(_)) => return None,
        Err(HttpError::ConnectFailed(_)) => "connect_failed",
        Err(HttpError::Timeout) => "timeout",
        Err(HttpError::Transport(_)) => "transport",
        Err(HttpError::ResponseTooLarge(_)) => "response_too_large",
    })
}

/// Every `kind` label of a plugin failure.
const FAILURE_KINDS: [&str; 5] = [
    "trap",
    "deadline",
    "memory_limit",
    "instantiate",
    "oversized_answer",
];

/// The operations a served plugin runs (`describe` runs only when a version is loaded).
const OPERATIONS: [&str; 3] = ["create-refund", "get-refund", "parse-webhook"];

/// The `kind` label of a plugin failure.
fn failure_kind(e: &PluginError) -> (&'static str, &str, &'static str) {
    match e {
        PluginError::Trap { provider, op, .. } => ("trap", provider, op),
        PluginError::DeadlineExceeded { provider, op, .. } => ("deadline", provider, op),
        PluginError::MemoryLimit { provider, op, .. } => ("memory_limit", provider, op),
        PluginError::Instantiate { provider, op, .. } => ("instantiate", provider, op),
        PluginError::OversizedAnswer { provider, op, .. } => ("oversized_answer", provider, op),
    }
}

/// Every `reason` label of a refused webhook.
const WEBHOOK_REASONS: [&str; 4] = [
    "invalid_signature",
    "missing_header",
    "stale_timestamp",
    "malformed",
];

/// The `reason` label of a refused webhook (the API's error codes, `malformed` for
/// `malformed_webhook`).
fn webhook_reason(e: &WebhookError) -> &'static str {
    match e {
        WebhookError::MissingHeader(_) => "missing_header",
        WebhookError::InvalidSignature => "invalid_signature",
        WebhookError::StaleTimestamp(_) => "stale_timestamp",
        WebhookError::Malformed(_) => "malformed",
    }
}

impl Metrics {
    /// Fresh metrics, every count at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// One HTTP exchange of `provider`'s plugin with its provider took `elapsed`.
    pub fn provider_exchange(
        &self,
        provider: &str,
        result: &Result<Response, HttpError>,
        elapsed: Duration,
    ) {
        if let Some(outcome) = exchange_outcome(result) {
            let labels = ExchangeLabels {
                provider: provider.to_owned(),
                outcome,
            };
            self.provider_requests
                .get_or_create(&labels)
                .observe(elapsed.as_secs_f64());
        }
    }

    /// Shows `provider`'s webhook failure counts (at zero) from now on: a counter whose series
    /// appears only at its first failure would hide that failure from `increase()`.
    pub fn add_provider(&self, provider: &str) {
        for reason in WEBHOOK_REASONS {
            let labels = WebhookLabels {
                provider: provider.to_owned(),
                reason,
            };
            self.webhook_failures.get_or_create(&labels).inc_by(0);
        }
        for kind in FindingKind::ALL {
            let labels = DiscrepancyLabels {
                provider: provider.to_owned(),
                kind: kind.as_str(),
            };
            self.discrepancies.get_or_create(&labels).inc_by(0);
        }
    }

    /// A reconciliation of `provider` found a discrepancy of `kind`.
    pub fn discrepancy(&self, provider: &str, kind: FindingKind) {
        let labels = DiscrepancyLabels {
            provider: provider.to_owned(),
            kind: kind.as_str(),
        };
        self.discrepancies.get_or_create(&labels).inc();
    }

    /// A plugin operation of version `plugin_version` failed (`""` when not known yet).
    pub fn plugin_failed(&self, plugin_version: &str, error: &PluginError) {
        let (kind, provider, operation) = failure_kind(error);
        let plugin_version = match plugin_version {
            "" => VERSION_NOT_KNOWN,
            v => v,
        };
        let labels = PluginFailureLabels {
            provider: provider.to_owned(),
            plugin_version: plugin_version.to_owned(),
            operation,
            kind,
        };
        self.plugin_failures.get_or_create(&labels).inc();
    }

    /// `provider`'s plugin refused a webhook.
    pub fn webhook_rejected(&self, provider: &str, error: &WebhookError) {
        let labels = WebhookLabels {
            provider: provider.to_owned(),
            reason: webhook_reason(error),
        };
        self.webhook_failures.get_or_create(&labels).inc();
    }

    /// Every metric in the text exposition format: this process's counts and the ledger's
    /// `stats` as of `now_ms`. `providers` are the configured providers with their active plugin
    /// version: they are reported (at zero) even before their first refund, so a rate over a
    /// window that starts before the first one is right.
    pub fn render(
        &self,
        stats: &LedgerStats,
        providers: &[(String, String)],
        now_ms: i64,
    ) -> String {
        let refunds = Family::<RefundLabels, Gauge>::default();
        let finalized = Family::<RefundLabels, Counter>::default();
        let backlog = Family::<ProviderLabels, Gauge>::default();
        let oldest = Family::<ProviderLabels, Gauge<f64, AtomicU64>>::default();
        let labels = |provider: &str, plugin_version: &str, status: Status| RefundLabels {
            provider: provider.to_owned(),
            plugin_version: plugin_version.to_owned(),
            status: status.as_str(),
        };
        let versions = providers.iter().map(|(p, v)| (p.as_str(), v.as_str()));
        let seen = stats
            .by_status
            .iter()
            .map(|s| (s.provider.as_str(), s.plugin_version.as_str()));
        // Every series of a (provider, version) starts at zero, so a status with no refund shows.
        for (provider, version) in versions.chain(seen) {
            for status in Status::ALL {
                refunds
                    .get_or_create(&labels(provider, version, status))
                    .set(0);
                if status.is_final() {
                    finalized
                        .get_or_create(&labels(provider, version, status))
                        .inc_by(0);
                }
            }
        }
        for s in &stats.by_status {
            let count = i64::try_from(s.count).unwrap_or(i64::MAX);
            refunds
                .get_or_create(&labels(&s.provider, &s.plugin_version, s.status))
                .set(count);
            // A reversed refund was processed first: it counts as both.
            let reached: &[Status] = match s.status {
                Status::Reversed => &[Status::Processed, Status::Reversed],
                Status::Processed => &[Status::Processed],
                Status::Failed => &[Status::Failed],
                Status::Pending | Status::Unknown => &[],
            };
            for &status in reached {
                finalized
                    .get_or_create(&labels(&s.provider, &s.plugin_version, status))
                    .inc_by(s.count);
            }
        }
        // The active versions' failure counts show at zero until a first failure, so that
        // `increase()` sees that one too.
        for (provider, version) in providers {
            for operation in OPERATIONS {
                for kind in FAILURE_KINDS {
                    let labels = PluginFailureLabels {
                        provider: provider.clone(),
                        plugin_version: version.clone(),
                        operation,
                        kind,
                    };
                    self.plugin_failures.get_or_create(&labels).inc_by(0);
                }
            }
        }
        for (provider, _) in providers {
            let provider = ProviderLabels {
                provider: provider.clone(),
            };
            backlog.get_or_create(&provider).set(0);
            oldest.get_or_create(&provider).set(0.0);
        }
        for w in &stats.waiting {
            let provider = ProviderLabels {
                provider: w.provider.clone(),
            };
            backlog
                .get_or_create(&provider)
                .set(i64::try_from(w.count).unwrap_or(i64::MAX));
            let age_ms = (now_ms - w.oldest_created_ms).max(0);
            oldest.get_or_create(&provider).set(age_ms as f64 / 1e3);
        }

        let mut registry = Registry::default();
        registry.register(
            "refundry_refunds",
            "Refunds in the ledger by provider, version of the plugin that created them, and \
             current status",
            refunds,
        );
        registry.register(
            "refundry_refunds_finalized",
            "Refunds that reached a final status, from the ledger (survives restarts); a \
             reversed refund counts as processed too",
            finalized,
        );
        registry.register(
            "refundry_janitor_backlog_refunds",
            "Refunds not final yet (pending or unknown) that the janitor drives to a final \
             status, by provider",
            backlog,
        );
        registry.register_with_unit(
            "refundry_oldest_nonfinal_refund_age",
            "Age of the oldest refund not final yet (pending or unknown), by provider; 0 when \
             there is none",
            Unit::Seconds,
            oldest,
        );
        registry.register_with_unit(
            "refundry_provider_request_duration",
            "Each HTTP exchange a plugin made with its provider, by provider and outcome (status \
             class, or connect_failed, timeout, transport, response_too_large)",
            Unit::Seconds,
            self.provider_requests.clone(),
        );
        registry.register(
            "refundry_plugin_failures",
            "Plugin operations that failed in the sandbox, by provider, plugin version, \
             operation and kind (trap, deadline, memory_limit, instantiate, oversized_answer)",
            self.plugin_failures.clone(),
        );
        registry.register(
            "refundry_webhook_verifications_failed",
            "Webhooks the provider's plugin refused, by provider and reason (invalid_signature, \
             missing_header, stale_timestamp, malformed)",
            self.webhook_failures.clone(),
        );
        registry.register(
            "refundry_reconcile_discrepancies",
            "Discrepancies reconciliation found between the ledger and a provider's own list, by \
             provider and kind (missing_in_ledger, missing_at_provider, status_mismatch, \
             amount_mismatch, currency_mismatch), since this process started",
            self.discrepancies.clone(),
        );
        if let Some(counts) = stats.writes {
            let (writes, commits) = (Counter::<u64>::default(), Counter::<u64>::default());
            writes.inc_by(counts.writes);
            commits.inc_by(counts.commits);
            registry.register(
                "refundry_ledger_writes",
                "Writes this process committed to its SQLite ledger (a refund's creation, an \
                 answer, its exchanges, a recording, plugin storage)",
                writes,
            );
            registry.register(
                "refundry_ledger_commits",
                "Transactions that committed those writes: writes waiting together commit \
                 together (group commit), so under load there are fewer commits than writes",
                commits,
            );
        }
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// Counts what the plugins of one [`Metrics`] do: each exchange that reached a provider (by
/// outcome and latency), and each failed plugin operation. Given to every provider's
/// capabilities at start (capabilities built for anything else, e.g. inspecting a component,
/// report nowhere).
pub struct MetricsObserver {
    metrics: Arc<Metrics>,
}

impl MetricsObserver {
    /// An observer counting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl Observer for MetricsObserver {
    fn import(&self, scope: Scope<'_>, call: &Import<'_>, answer: &ImportAnswer<'_>) {
        // A request the policy refused never left the host: it is no exchange.
        if let (
            Import::HttpSend {
                sent: Some(sent), ..
            },
            ImportAnswer::Http(result),
        ) = (call, answer)
        {
            self.metrics
                .provider_exchange(scope.provider, result, sent.latency);
        }
    }

    fn operation_finished(&self, scope: Scope<'_>, answer: &Result<OperationAnswer, PluginError>) {
        if let Err(e) = answer {
            self.metrics.plugin_failed(scope.plugin_version, e);
        }
    }

    fn answer_refused(&self, scope: Scope<'_>, error: &PluginError) {
        self.metrics.plugin_failed(scope.plugin_version, error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use refundry_ledger::{StatusCount, Waiting};

    fn count(provider: &str, version: &str, status: Status, count: u64) -> StatusCount {
        StatusCount {
            provider: provider.into(),
            plugin_version: version.into(),
            status,
            count,
        }
    }

    /// The sample lines of `text` (no comments), for exact comparisons.
    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    fn has(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[test]
    fn ledger_numbers_are_rendered_with_zeros_for_what_has_none() {
        let stats = LedgerStats {
            by_status: vec![
                count("mfs-africa", "0.1.0", Status::Processed, 3),
                count("mfs-africa", "0.1.0", Status::Reversed, 1),
                count("mfs-africa", "0.1.0", Status::Pending, 2),
                count("mfs-africa", "0.2.0", Status::Failed, 4),
            ],
            waiting: vec![Waiting {
                provider: "mfs-africa".into(),
                count: 2,
                oldest_created_ms: 1_000,
            }],
            writes: Some(refundry_ledger::db::WriteCounts {
                writes: 40,
                commits: 12,
            }),
        };
        let providers = [
            ("mfs-africa".to_owned(), "0.2.0".to_owned()),
            ("pagoefectivo".to_owned(), "0.1.0".to_owned()),
        ];
        let text = Metrics::new().render(&stats, &providers, 8_500);
        let m = "provider=\"mfs-africa\"";
        for line in [
            format!("refundry_refunds{{{m},plugin_version=\"0.1.0\",status=\"processed\"}} 3"),
            format!("refundry_refunds{{{m},plugin_version=\"0.1.0\",status=\"pending\"}} 2"),
            format!("refundry_refunds{{{m},plugin_version=\"0.1.0\",status=\"failed\"}} 0"),
            format!("refundry_refunds{{{m},plugin_version=\"0.2.0\",status=\"failed\"}} 4"),
            "refundry_refunds{provider=\"pagoefectivo\",plugin_version=\"0.1.0\",status=\"unknown\"} 0".into(),
            // Processed counts the reversed one too.
            format!("refundry_refunds_finalized_total{{{m},plugin_version=\"0.1.0\",status=\"processed\"}} 4"),
            format!("refundry_refunds_finalized_total{{{m},plugin_version=\"0.1.0\",status=\"reversed\"}} 1"),
            format!("refundry_refunds_finalized_total{{{m},plugin_version=\"0.2.0\",status=\"failed\"}} 4"),
            "refundry_refunds_finalized_total{provider=\"pagoefectivo\",plugin_version=\"0.1.0\",status=\"failed\"} 0".into(),
            format!("refundry_janitor_backlog_refunds{{{m}}} 2"),
            "refundry_janitor_backlog_refunds{provider=\"pagoefectivo\"} 0".into(),
            format!("refundry_oldest_nonfinal_refund_age_seconds{{{m}}} 7.5"),
            "refundry_oldest_nonfinal_refund_age_seconds{provider=\"pagoefectivo\"} 0.0".into(),
            "# TYPE refundry_refunds_finalized_total counter".into(),
            "# TYPE refundry_oldest_nonfinal_refund_age_seconds gauge".into(),
            "refundry_ledger_writes_total 40".into(),
            "refundry_ledger_commits_total 12".into(),
        ] {
            assert!(has(&text, &line), "{line} missing from:\n{text}");
        }
        // No pending or unknown series in the counter of final statuses.
        assert!(!text.contains(
            "finalized_total{provider=\"mfs-africa\",plugin_version=\"0.1.0\",status=\"pending\""
        ));
        let zero_failure = "refundry_plugin_failures_total{provider=\"pagoefectivo\",plugin_version=\"0.1.0\",operation=\"get-refund\",kind=\"deadline\"} 0";
        assert!(has(&text, zero_failure), "{text}");
        // Two (provider, version) pairs with refunds plus pagoefectivo's: 5 statuses each.
        let refund_lines = samples(&text)
            .iter()
            .filter(|l| l.starts_with("refundry_refunds{"))
            .count();
        assert_eq!(refund_lines, 15, "{text}");
    }

    #[test]
    fn process_counts_carry_their_labels() {
        let metrics = Metrics::new();
        let ok = Ok(Response {
            status: 201,
            headers: vec![],
            body: vec![],
        });
        metrics.provider_exchange("mfs-africa", &ok, Duration::from_millis(30));
        metrics.provider_exchange("mfs-africa", &ok, Duration::from_millis(3));
        metrics.provider_exchange(
            "mfs-africa",
            &Err(HttpError::Timeout),
            Duration::from_secs(10),
        );
        // A refused request never left the host: no exchange.
        metrics.provider_exchange(
            "mfs-africa",
            &Err(HttpError::Denied("other host".into())),
            Duration::ZERO,
        );
        let trap = PluginError::Trap {
            provider: "hostile".into(),
            op: "create-refund",
            message: "unreachable".into(),
        };
        metrics.plugin_failed("0.1.0", &trap);
        metrics.plugin_failed("0.1.0", &trap);
        metrics.plugin_failed(
            "",
            &PluginError::DeadlineExceeded {
                provider: "hostile".into(),
                op: "describe",
                deadline: Duration::from_secs(1),
            },
        );
        metrics.webhook_rejected("mfs-africa", &WebhookError::InvalidSignature);
        metrics.webhook_rejected("mfs-africa", &WebhookError::MissingHeader("x".into()));
        let text = metrics.render(&LedgerStats::default(), &[], 0);
        // No write counts (PostgreSQL): no ledger write series.
        assert!(!text.contains("refundry_ledger_"), "{text}");
        let d = "refundry_provider_request_duration_seconds";
        let ok2 = "provider=\"mfs-africa\",outcome=\"2xx\"";
        for line in [
            format!("{d}_count{{{ok2}}} 2"),
            format!("{d}_bucket{{{ok2},le=\"0.005\"}} 1"),
            format!("{d}_bucket{{{ok2},le=\"0.025\"}} 1"),
            format!("{d}_bucket{{{ok2},le=\"0.05\"}} 2"),
            format!("{d}_count{{provider=\"mfs-africa\",outcome=\"timeout\"}} 1"),
            "refundry_plugin_failures_total{provider=\"hostile\",plugin_version=\"0.1.0\",operation=\"create-refund\",kind=\"trap\"} 2".into(),
            "refundry_plugin_failures_total{provider=\"hostile\",plugin_version=\"unknown\",operation=\"describe\",kind=\"deadline\"} 1".into(),
            "refundry_webhook_verifications_failed_total{provider=\"mfs-africa\",reason=\"invalid_signature\"} 1".into(),
            "refundry_webhook_verifications_failed_total{provider=\"mfs-africa\",reason=\"missing_header\"} 1".into(),
        ] {
            assert!(has(&text, &line), "{line} missing from:\n{text}");
        }
        assert!(!text.contains("outcome=\"denied\""), "{text}");
        assert_eq!(
            samples(&text)
                .iter()
                .filter(|l| l.starts_with(&format!("{d}_count")))
                .count(),
            2
        );
    }

    #[test]
    fn the_observer_counts_exchanges_on_the_wire_and_failed_operations() {
        use refundry_runtime::bindings::http::{Method, Request};
        use refundry_runtime::observe::Sent;
        let metrics = Arc::new(Metrics::new());
        metrics.add_provider("pagoefectivo");
        let observer = MetricsObserver::new(metrics.clone());
        let scope = Scope {
            provider: "pagoefectivo",
            plugin_version: "0.3.0",
            op: "create-refund",
        };
        let request = Request {
            method: Method::Get,
            url: "http://p/".into(),
            headers: vec![],
            body: None,
        };
        let ok = Ok(Response {
            status: 200,
            headers: vec![],
            body: vec![],
        });
        let sent = Sent {
            at_ms: 0,
            latency: Duration::from_millis(1),
        };
        let on_wire = Import::HttpSend {
            request: &request,
            sent: Some(sent),
        };
        observer.import(scope, &on_wire, &ImportAnswer::Http(&ok));
        let refused = Import::HttpSend {
            request: &request,
            sent: None,
        };
        let denied = Err(HttpError::Denied("elsewhere".into()));
        observer.import(scope, &refused, &ImportAnswer::Http(&denied));
        let trap = PluginError::Trap {
            provider: "pagoefectivo".into(),
            op: "create-refund",
            message: "unreachable".into(),
        };
        observer.operation_finished(scope, &Err(trap));
        let text = metrics.render(&LedgerStats::default(), &[], 0);
        assert!(
            has(
                &text,
                "refundry_provider_request_duration_seconds_count{provider=\"pagoefectivo\",outcome=\"2xx\"} 1"
            ),
            "{text}"
        );
        assert!(!text.contains("outcome=\"denied\""), "{text}");
        assert!(
            has(
                &text,
                "refundry_plugin_failures_total{provider=\"pagoefectivo\",plugin_version=\"0.3.0\",operation=\"create-refund\",kind=\"trap\"} 1"
            ),
            "{text}"
        );
        // The provider's webhook failures show from the start, at zero.
        for reason in WEBHOOK_REASONS {
            let line = format!(
                "refundry_webhook_verifications_failed_total{{provider=\"pagoefectivo\",reason=\"{reason}\"}} 0"
            );
            assert!(has(&text, &line), "{line} missing from:\n{text}");
        }
    }
}
