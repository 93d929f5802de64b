//! One trial's world: the provider's sandbox (started by its fixture), a webhook receiver, and a
//! refund service in process running the provider's real plugin component, with an in-memory
//! ledger. Cases drive the plugin through the runtime (the service's [`Providers`]) and the
//! host's rules through the [`RefundService`] itself.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use refundry_ledger::{RefundRecord, Status};
use refundry_runtime::{Refund, RefundLookup, RefundRequest, WebhookOutcome, WebhookRequest};
use refundry_service::refunds::{NewRefund, WebhookAccepted, WebhookIntakeError};
use refundry_service::{Config, OperationError, Providers, RefundService};
use tokio::sync::{Mutex, mpsc};

use crate::check::{KitError, ensure, host};
use crate::fixture::{
    Currencies, Fixture, Payment, ProviderConfig, ProviderSandbox, RefundsOf, SandboxOptions,
};
use crate::proxy::LostAnswerProxy;

/// How long a case waits for something the provider does by itself (a webhook delivery, a
/// janitor's resolution) before it fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// What a case needs set up besides the sandbox and the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// Receive the sandbox's webhooks, answering the first deliveries with these statuses (then
    /// 200); `None`: the sandbox sends none.
    pub webhooks: Option<&'static [u16]>,
    /// Put a [`LostAnswerProxy`] between the host and the sandbox.
    pub lost_answers: bool,
    /// The host's HTTP timeout (`[http] timeout_ms`); `None`: the default.
    pub http_timeout_ms: Option<u64>,
}

impl Setup {
    /// A sandbox and a service, nothing else.
    pub const PLAIN: Setup = Setup {
        webhooks: None,
        lost_answers: false,
        http_timeout_ms: None,
    };

    /// [`Setup::PLAIN`] with the sandbox's webhooks received and answered 200.
    pub const WEBHOOKS: Setup = Setup {
        webhooks: Some(&[]),
        ..Setup::PLAIN
    };
}

/// A webhook delivery: the headers as sent and the raw body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

/// One trial's sandbox, service and webhook receiver.
pub struct Harness {
    provider: &'static str,
    sandbox: Box<dyn ProviderSandbox>,
    service: RefundService,
    webhooks: Option<Mutex<mpsc::UnboundedReceiver<refundry_tests::Webhook>>>,
    proxy: Option<LostAnswerProxy>,
    ids: AtomicUsize,
}

impl Harness {
    /// Starts `fixture`'s sandbox and a service running its plugin, as `setup` says.
    pub async fn start(fixture: &dyn Fixture, setup: Setup) -> Result<Self, KitError> {
        let provider = fixture.id();
        let (webhook_url, webhooks) = match setup.webhooks {
            Some(script) => {
                let (url, rx) = refundry_tests::webhook_receiver(script.to_vec()).await;
                (Some(url), Some(Mutex::new(rx)))
            }
            None => (None, None),
        };
        let sandbox = fixture.start(SandboxOptions { webhook_url }).await?;
        let mut config = sandbox.provider_config();
        let proxy = if setup.lost_answers {
            let upstream = config.settings.get("base_url").ok_or_else(|| {
                KitError::Check("the fixture's provider config has no base_url setting".into())
            })?;
            let proxy = LostAnswerProxy::start(upstream).await.map_err(host)?;
            config
                .settings
                .insert("base_url".into(), proxy.url().to_owned());
            Some(proxy)
        } else {
            None
        };
        let plugin = refundry_tests::plugin_path(provider);
        let text = host_toml(provider, &plugin, &config, setup.http_timeout_ms);
        let config = Config::parse(&text, "conformance.toml".as_ref(), "/".as_ref(), |_| None)
            .map_err(host)?;
        let service = RefundService::start(&config).await.map_err(host)?;
        Ok(Self {
            provider,
            sandbox,
            service,
            webhooks,
            proxy,
            ids: AtomicUsize::new(0),
        })
    }

    /// The provider id.
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// The provider's sandbox.
    pub fn sandbox(&self) -> &dyn ProviderSandbox {
        self.sandbox.as_ref()
    }

    /// The refund service (the host).
    pub fn service(&self) -> &RefundService {
        &self.service
    }

    /// The host's providers: the plugin through the runtime, without the service's rules.
    pub fn providers(&self) -> &Providers {
        self.service.providers()
    }

    /// The lost-answer proxy, when the setup asked for one.
    pub fn proxy(&self) -> Result<&LostAnswerProxy, KitError> {
        self.proxy
            .as_ref()
            .ok_or_else(|| KitError::Check("this case's setup has no lost-answer proxy".into()))
    }

    /// The currencies the cases use.
    pub fn currencies(&self) -> Currencies {
        self.sandbox.currencies()
    }

    /// A fresh external refund id, `<tag>-<n>`.
    pub fn external_id(&self, tag: &str) -> String {
        format!("{tag}-{}", self.ids.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Seeds a payment of `amount_minor` in the main currency, completed a day ago.
    pub async fn payment(&self, amount_minor: i64) -> Result<String, KitError> {
        self.payment_aged(amount_minor, 1).await
    }

    /// Seeds a payment of `amount_minor` in the main currency, completed `age_days` ago.
    pub async fn payment_aged(&self, amount_minor: i64, age_days: u32) -> Result<String, KitError> {
        let payment = Payment {
            amount_minor,
            currency: self.currencies().main.to_owned(),
            age_days,
        };
        Ok(self.sandbox.seed_payment(&payment).await?)
    }

    /// A refund request of `amount_minor` in the main currency, with a reason and an order id.
    pub fn request(&self, payment: &str, external_id: &str, amount_minor: i64) -> RefundRequest {
        RefundRequest {
            original_transaction_id: payment.to_owned(),
            external_refund_id: external_id.to_owned(),
            amount: refundry_runtime::Money {
                amount_minor,
                currency: self.currencies().main.to_owned(),
            },
            reason: Some("conformance".into()),
            order_id: Some(format!("order-{external_id}")),
        }
    }

    /// The same request as the service takes it (no original payment: the provider checks).
    pub fn new_refund(&self, payment: &str, external_id: &str, amount_minor: i64) -> NewRefund {
        let request = self.request(payment, external_id, amount_minor);
        NewRefund {
            provider: self.provider.to_owned(),
            external_refund_id: request.external_refund_id,
            original_transaction_id: request.original_transaction_id,
            amount: amount_minor,
            currency: request.amount.currency,
            reason: request.reason,
            order_id: request.order_id,
            original: None,
        }
    }

    /// `create-refund` through the runtime.
    pub async fn create(&self, request: &RefundRequest) -> Result<Refund, OperationError> {
        self.providers().create_refund(self.provider, request).await
    }

    /// `get-refund` through the runtime.
    pub async fn get(&self, lookup: &RefundLookup) -> Result<Refund, OperationError> {
        self.providers().get_refund(self.provider, lookup).await
    }

    /// A refund made through the service, which must come back created with a provider refund
    /// id.
    pub async fn create_in_service(&self, refund: NewRefund) -> Result<RefundRecord, KitError> {
        let external_id = refund.external_refund_id.clone();
        let created = self.service.create(refund).await.map_err(host)?;
        let record = created.refund;
        ensure!(
            record.provider_refund_id.is_some() && record.status == Status::Pending,
            "{external_id}: the service should hold a pending refund with a provider id, \
             holds {record:?} (outcome {:?})",
            created.outcome
        );
        Ok(record)
    }

    /// The refund's status in the service's ledger.
    pub async fn ledger_refund(&self, refund_id: &str) -> Result<RefundRecord, KitError> {
        let detail = self.service.get(refund_id).await.map_err(host)?;
        detail
            .map(|d| d.refund)
            .ok_or_else(|| KitError::Check(format!("the ledger has no refund {refund_id}")))
    }

    /// Runs the janitor until the refund's outcome is known, as the service's background
    /// janitor would; answers the refund as it then is.
    pub async fn janitor_settles(&self, refund_id: &str) -> Result<RefundRecord, KitError> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            self.service.janitor_pass().await.map_err(host)?;
            let refund = self.ledger_refund(refund_id).await?;
            if refund.status != Status::Unknown {
                return Ok(refund);
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "the janitor left {refund_id} unknown for {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How many refunds the provider holds of `of`.
    pub async fn count(&self, of: RefundsOf<'_>) -> Result<usize, KitError> {
        Ok(self.sandbox.refunds_at_provider(of).await?)
    }

    /// The convergence check: the provider holds exactly one refund with `external_id`.
    pub async fn exactly_one(&self, external_id: &str) -> Result<(), KitError> {
        let n = self.count(RefundsOf::ExternalRefundId(external_id)).await?;
        ensure!(
            n == 1,
            "the provider holds {n} refunds with external id {external_id}, not exactly one"
        );
        Ok(())
    }

    /// The next webhook delivery the sandbox sent.
    pub async fn next_webhook(&self) -> Result<Webhook, KitError> {
        let receiver = self
            .webhooks
            .as_ref()
            .ok_or_else(|| KitError::Check("this case's setup receives no webhooks".into()))?;
        let mut receiver = receiver.lock().await;
        match tokio::time::timeout(PATIENCE, receiver.recv()).await {
            Ok(Some((headers, body))) => Ok(Webhook { headers, body }),
            Ok(None) => Err(KitError::Check("the webhook receiver stopped".into())),
            Err(_) => Err(KitError::Check(format!(
                "no webhook delivery within {PATIENCE:?}"
            ))),
        }
    }

    /// `parse-webhook` through the runtime.
    pub async fn parse(&self, webhook: &Webhook) -> Result<WebhookOutcome, OperationError> {
        self.providers()
            .parse_webhook(self.provider, &webhook.headers, &webhook.body)
            .await
    }

    /// The service's webhook intake, as `POST /v1/webhooks/{provider}` feeds it.
    pub async fn deliver(&self, webhook: &Webhook) -> Result<WebhookAccepted, WebhookIntakeError> {
        let request = WebhookRequest {
            method: "POST".into(),
            path: format!("/v1/webhooks/{}", self.provider),
            query: None,
            headers: webhook.headers.clone(),
            body: webhook.body.clone(),
        };
        self.service.webhook(self.provider, request).await
    }
}

/// The host configuration of one trial: an in-memory ledger, quick retries, a janitor whose
/// checks are always due (a case runs its passes), and the provider with its plugin component.
pub fn host_toml(
    provider: &str,
    plugin: &Path,
    config: &ProviderConfig,
    http_timeout_ms: Option<u64>,
) -> String {
    use toml::{Table, Value};
    let table = |pairs: Vec<(&str, Value)>| -> Value {
        Value::Table(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    };
    let strings = |map: &std::collections::BTreeMap<String, String>| -> Value {
        Value::Table(
            map.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    };
    let mut root = Table::new();
    root.insert(
        "database".into(),
        table(vec![("path", Value::String(":memory:".into()))]),
    );
    if let Some(ms) = http_timeout_ms {
        root.insert(
            "http".into(),
            table(vec![("timeout_ms", Value::Integer(ms as i64))]),
        );
    }
    // Retries a few tens of milliseconds apart (a provider's Retry-After still decides when it
    // is longer), so that a fault costs a case little time.
    root.insert(
        "retry".into(),
        table(vec![
            ("attempts", Value::Integer(3)),
            ("backoff_ms", Value::Array(vec![Value::Integer(50)])),
            ("max_wait_ms", Value::Integer(5_000)),
        ]),
    );
    // No background janitor runs in a trial: a case calls its passes, and wants every refund due.
    root.insert(
        "janitor".into(),
        table(vec![("backoff_ms", Value::Array(vec![Value::Integer(1)]))]),
    );
    let provider_table = table(vec![
        ("plugin", Value::String(plugin.display().to_string())),
        ("settings", strings(&config.settings)),
        ("secrets", strings(&config.secrets)),
    ]);
    root.insert("providers".into(), table(vec![(provider, provider_table)]));
    root.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_configuration_carries_the_provider_as_the_fixture_gives_it() {
        let mut config = ProviderConfig::default();
        config
            .settings
            .insert("base_url".into(), "http://127.0.0.1:4321".into());
        config
            .settings
            .insert("api_key".into(), "key \"quoted\"".into());
        config.secrets.insert("api_secret".into(), "s3cret".into());
        let text = host_toml(
            "acme-pay",
            "/plugins/acme-pay.wasm".as_ref(),
            &config,
            Some(750),
        );
        let parsed = Config::parse(&text, "t.toml".as_ref(), "/".as_ref(), |_| None).unwrap();
        let provider = &parsed.providers["acme-pay"];
        assert_eq!(provider.plugin, Path::new("/plugins/acme-pay.wasm"));
        assert_eq!(provider.base_url.as_str(), "http://127.0.0.1:4321/");
        assert_eq!(provider.get("api_key"), Some("key \"quoted\""));
        assert_eq!(provider.get("api_secret"), Some("s3cret"));
        assert_eq!(parsed.http.timeout, Duration::from_millis(750));
        assert_eq!(parsed.database, None);
        assert_eq!(parsed.retry.attempts, 3);
        assert_eq!(parsed.janitor.backoff, vec![Duration::from_millis(1)]);
    }
}
