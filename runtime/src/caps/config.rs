//! The `config` capability: the provider's settings and secrets, and nothing of other providers.

use std::collections::BTreeMap;

use crate::secret::Secret;

/// Where a provider's settings and secrets come from. A gateway implements it over its own
/// configuration or secret store; [`Settings`] is a ready one over two maps.
///
/// The runtime asks for [`ConfigSource::secrets`] once, when the capabilities are built: their
/// values are removed from the plugin's log lines and answers.
pub trait ConfigSource: Send + Sync + 'static {
    /// The value the plugin gets for `key` (settings first, then secrets), if configured.
    fn get(&self, key: &str) -> Option<String>;

    /// Every secret, by key.
    fn secrets(&self) -> Vec<(String, Secret)>;
}

/// Settings and secrets in memory.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Plain settings.
    pub settings: BTreeMap<String, String>,
    /// Secrets.
    pub secrets: BTreeMap<String, Secret>,
}

impl ConfigSource for Settings {
    fn get(&self, key: &str) -> Option<String> {
        self.settings
            .get(key)
            .cloned()
            .or_else(|| self.secrets.get(key).map(|s| s.expose().to_owned()))
    }

    fn secrets(&self) -> Vec<(String, Secret)> {
        self.secrets
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_before_secrets() {
        let s = Settings {
            settings: [("a".into(), "1".into())].into(),
            secrets: [
                ("a".into(), Secret::new("x")),
                ("b".into(), Secret::new("2")),
            ]
            .into(),
        };
        assert_eq!(s.get("a").as_deref(), Some("1"));
        assert_eq!(s.get("b").as_deref(), Some("2"));
        assert_eq!(s.get("c"), None);
        assert_eq!(s.secrets().len(), 2);
    }
}
