//! The `config` capability: the provider's settings and secrets, and nothing of other providers.

use std::sync::Arc;

use crate::config::ProviderConfig;

/// Answers `config.get` from one provider's configuration.
#[derive(Clone)]
pub struct ConfigCap {
    provider: Arc<ProviderConfig>,
}

impl ConfigCap {
    /// The config capability of one provider.
    pub fn new(provider: Arc<ProviderConfig>) -> Self {
        Self { provider }
    }

    /// The value of `key`, settings first then secrets.
    pub fn get(&self, key: &str) -> Option<String> {
        self.provider.get(key).map(str::to_owned)
    }
}
