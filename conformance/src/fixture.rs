//! What a provider writes to plug into the kit: a [`Fixture`] (its id, what it supports, how its
//! sandbox starts) and, for a started sandbox, a [`ProviderSandbox`] (seed a payment, move a
//! refund, make one in the portal, sign a webhook, inject a fault, expire a token, count refunds).
//!
//! Every method but the few every case needs has a default that answers
//! [`FixtureError::NotImplemented`]: a fixture implements what its [`Supports`] declares, and the
//! kit never calls what a provider declares it lacks.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use refundry_runtime::RefundStatus;

use crate::supports::Supports;

/// A provider, as the kit sees it. Each fixture file exports `pub fn fixture() -> Box<dyn
/// Fixture>`.
#[async_trait(?Send)]
pub trait Fixture: Send + Sync {
    /// The provider id: the plugin's `describe().id`, the host configuration's provider key, and
    /// the component `target/plugins/<id>.wasm` that `cargo xtask build-plugins` writes.
    fn id(&self) -> &'static str;

    /// What the provider and this fixture support.
    fn supports(&self) -> Supports;

    /// Starts a sandbox of the provider on `127.0.0.1:0` with fresh random credentials, sending
    /// webhooks to `options.webhook_url` (with retries tens of milliseconds apart, so the cases
    /// see a provider's redelivery quickly).
    async fn start(
        &self,
        options: SandboxOptions,
    ) -> Result<Box<dyn ProviderSandbox>, FixtureError> {
        let _ = options;
        Err(FixtureError::NotImplemented("start"))
    }
}

/// How the kit wants a sandbox started.
#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    /// Where the sandbox sends its webhooks; `None`: nowhere.
    pub webhook_url: Option<String>,
}

/// A running sandbox of one provider and its controls. Dropping it stops the sandbox.
#[async_trait(?Send)]
pub trait ProviderSandbox: Send + Sync {
    /// The provider's configuration for a host: the settings and secrets the plugin reads, with
    /// `base_url` (the sandbox's URL) among the settings.
    fn provider_config(&self) -> ProviderConfig;

    /// The currencies the cases use.
    fn currencies(&self) -> Currencies;

    /// Seeds a completed, settled payment; answers its id at the provider (what a refund request
    /// names as the original transaction).
    async fn seed_payment(&self, payment: &Payment) -> Result<String, FixtureError>;

    /// Moves a refund at the provider to `to` (what the provider does by itself, later): a legal
    /// move sends a webhook when a URL is set.
    async fn move_refund(
        &self,
        provider_refund_id: &str,
        to: RefundStatus,
    ) -> Result<(), FixtureError>;

    /// How many refunds the provider holds of `of`, whatever their status.
    async fn refunds_at_provider(&self, of: RefundsOf<'_>) -> Result<usize, FixtureError>;

    /// Makes a refund in the provider's portal ([`Feature::PortalRefunds`](crate::Feature));
    /// answers its provider refund id.
    async fn portal_refund(&self, refund: &PortalRefund) -> Result<String, FixtureError> {
        let _ = refund;
        Err(FixtureError::NotImplemented("portal_refund"))
    }

    /// The headers of a delivery of `body`, signed as `signing` says
    /// ([`Feature::Webhooks`](crate::Feature); [`Signing::Stale`] only with
    /// [`Feature::SignedWebhookTime`](crate::Feature)).
    fn sign_webhook(
        &self,
        body: &[u8],
        signing: Signing,
    ) -> Result<Vec<(String, String)>, FixtureError> {
        let _ = (body, signing);
        Err(FixtureError::NotImplemented("sign_webhook"))
    }

    /// The body of a delivery of an event type the plugin does not handle (a payout, say), in the
    /// provider's delivery shape ([`Feature::Webhooks`](crate::Feature)).
    fn unknown_event_body(&self) -> Result<Vec<u8>, FixtureError> {
        Err(FixtureError::NotImplemented("unknown_event_body"))
    }

    /// One delivery body carrying the events of `bodies`, each the body of a delivery the
    /// sandbox sent ([`Feature::BatchedWebhooks`](crate::Feature)).
    fn batched_body(&self, bodies: &[&[u8]]) -> Result<Vec<u8>, FixtureError> {
        let _ = bodies;
        Err(FixtureError::NotImplemented("batched_body"))
    }

    /// Makes the provider's next refund request fail as `fault` says
    /// ([`Feature::ProviderFaults`](crate::Feature), [`Feature::RateLimits`](crate::Feature)).
    async fn inject(&self, fault: Fault) -> Result<(), FixtureError> {
        let _ = fault;
        Err(FixtureError::NotImplemented("inject"))
    }

    /// Expires every access token the provider issued ([`Feature::Tokens`](crate::Feature)).
    async fn expire_tokens(&self) -> Result<(), FixtureError> {
        Err(FixtureError::NotImplemented("expire_tokens"))
    }
}

/// A provider's configuration for a host: what its plugin reads with `config.get`. Its `Debug`
/// names the secrets without their values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProviderConfig {
    /// Plain settings; `base_url` among them.
    pub settings: BTreeMap<String, String>,
    /// Secrets (redacted from the host's logs).
    pub secrets: BTreeMap<String, String>,
}

impl ProviderConfig {
    /// A configuration of these settings and secrets.
    pub fn new<'a>(
        settings: impl IntoIterator<Item = (&'a str, String)>,
        secrets: impl IntoIterator<Item = (&'a str, String)>,
    ) -> Self {
        Self {
            settings: settings
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            secrets: secrets
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        }
    }
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("settings", &self.settings)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The currencies the cases use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Currencies {
    /// The currency of the payments and refunds (ISO 4217).
    pub main: &'static str,
    /// Another currency, in which a refund of a payment in `main` must be refused (one the
    /// provider takes when it takes several).
    pub other: &'static str,
}

/// A payment to seed at the provider: completed, settled, `age_days` ago.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// Amount paid, in minor units of `currency`.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// How many days ago it completed.
    pub age_days: u32,
}

/// A refund made in the provider's portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalRefund {
    /// The payment's id at the provider.
    pub payment_id: String,
    /// Amount in minor units.
    pub amount_minor: i64,
    /// ISO 4217 code (the payment's).
    pub currency: String,
    /// When the portal user made it (in the past, after the payment).
    pub created_at: DateTime<Utc>,
}

/// Which refunds to count at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundsOf<'a> {
    /// Those with this external refund id.
    ExternalRefundId(&'a str),
    /// Those of this payment.
    Payment(&'a str),
}

/// How a fixture signs a webhook body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// As the provider would, now.
    Genuine,
    /// With a secret other than the configured one.
    Forged,
    /// As the provider would, at a time older than the provider's tolerance.
    Stale,
}

/// A fault at the provider, applied to its next refund request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Carried out, then answered with this 5xx status and the provider's error body.
    FailAfterActing {
        /// HTTP status (500, say).
        status: u16,
    },
    /// Carried out, then answered only after `delay` (longer than the host waits).
    AnswerLate {
        /// How long the answer is held.
        delay: Duration,
    },
    /// Not carried out: answered 429 with `Retry-After: <retry_after_secs>`.
    RateLimited {
        /// Seconds in `Retry-After`.
        retry_after_secs: u64,
    },
}

/// Why a fixture could not do what the kit asked.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The fixture does not implement this method (yet): its [`Supports`] should say so.
    #[error("the fixture does not implement `{0}`")]
    NotImplemented(&'static str),
    /// The provider cannot do this (a stale signature where no time is signed, say).
    #[error("the provider cannot {0}")]
    Unsupported(&'static str),
    /// The sandbox misbehaved or answered something unexpected.
    #[error("sandbox: {0}")]
    Sandbox(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_config_prints_its_secrets_names_but_not_their_values() {
        let config = ProviderConfig::new(
            [("base_url", "http://127.0.0.1:1".to_owned())],
            [("api_secret", "s3cret-value".to_owned())],
        );
        assert_eq!(config.settings["base_url"], "http://127.0.0.1:1");
        assert_eq!(config.secrets["api_secret"], "s3cret-value");
        let printed = format!("{config:?}");
        assert!(
            printed.contains("api_secret") && printed.contains("127.0.0.1"),
            "{printed}"
        );
        assert!(!printed.contains("s3cret-value"), "{printed}");
    }
}
