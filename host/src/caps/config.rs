//! The `config` capability: the provider's settings and secrets, and nothing of other providers.

use std::sync::Arc;

use crate::config::ProviderConfig;
use crate::replay::SecretMasks;

/// Answers `config.get` from one provider's configuration.
#[derive(Clone)]
pub struct ConfigCap {
    provider: Arc<ProviderConfig>,
    /// The provider's secrets as recordings mark them (built once, used by every recording).
    masks: Arc<SecretMasks>,
}

impl ConfigCap {
    /// The config capability of one provider.
    pub fn new(provider: Arc<ProviderConfig>) -> Self {
        let masks = Arc::new(SecretMasks::new(&provider.secrets));
        Self { provider, masks }
    }

    /// The markers that stand for this provider's secret values in recordings.
    pub fn masks(&self) -> &SecretMasks {
        &self.masks
    }

    /// The value of `key`, settings first then secrets.
    pub fn get(&self, key: &str) -> Option<String> {
        self.provider.get(key).map(str::to_owned)
    }
}
