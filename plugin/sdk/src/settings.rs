//! A plugin's settings and secrets, read from the host's `config` capability.
//!
//! Every problem with a setting is a [`SettingsError`], which the flows' error
//! ([`crate::errors::ProviderError`]) turns into a final refusal of kind `configuration`: a
//! missing key is fixed by the operator, never by a retry, and never a panic.

use std::str::FromStr;

use crate::Host;

/// A value that must never reach a log line or a `Debug` print (a key, a token): deliberately
/// without `Debug` or `Display`, so that neither `{:?}` nor `{}` compiles with it.
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that needs it (a signer, a header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Why a setting cannot be used. Each message starts with the provider id, whose section of the
/// host configuration (`[providers.<id>]`) the key belongs in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// The key is not configured, or configured empty.
    #[error("{provider} is not configured: config key `{key}` is not set")]
    Missing {
        /// The provider id.
        provider: &'static str,
        /// The config key.
        key: String,
    },
    /// `base_url` has no scheme or no authority, so there is no request target to sign.
    #[error("{provider} is not configured: base_url `{value}` is not an absolute http(s) URL")]
    BaseUrl {
        /// The provider id.
        provider: &'static str,
        /// The value as configured.
        value: String,
    },
    /// The value does not parse as the type the key holds.
    #[error("{provider} is not configured: config key `{key}` must be {expected}, got `{value}`")]
    Invalid {
        /// The provider id.
        provider: &'static str,
        /// The config key.
        key: String,
        /// What the value should be, as a phrase (`an integer`).
        expected: &'static str,
        /// The value as configured (only keys that hold no secret are parsed).
        value: String,
    },
}

/// Reads the settings of one provider from its host.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'h, H: ?Sized> {
    host: &'h H,
    provider: &'static str,
}

impl<'h, H: Host + ?Sized> Settings<'h, H> {
    /// The settings of `provider` (its id, for messages) as `host` holds them.
    pub fn new(host: &'h H, provider: &'static str) -> Self {
        Self { host, provider }
    }

    /// The value of `key`; an absent or empty value is [`SettingsError::Missing`].
    pub fn get(&self, key: &str) -> Result<String, SettingsError> {
        match self.host.config(key) {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(SettingsError::Missing {
                provider: self.provider,
                key: key.to_owned(),
            }),
        }
    }

    /// The value of `key` as a [`Secret`], so that it cannot be printed by mistake.
    pub fn secret(&self, key: &str) -> Result<Secret, SettingsError> {
        self.get(key).map(Secret)
    }

    /// The value of `key` parsed as a `T` (spaces around it ignored); `expected` says what it
    /// should be in the error (`"an integer"`). For keys that hold no secret: the error quotes
    /// the value.
    pub fn parse<T: FromStr>(&self, key: &str, expected: &'static str) -> Result<T, SettingsError> {
        let value = self.get(key)?;
        value.trim().parse().map_err(|_| SettingsError::Invalid {
            provider: self.provider,
            key: key.to_owned(),
            expected,
            value,
        })
    }

    /// The provider's `base_url` without trailing `/`, so that a request target (`/v1/...`)
    /// appends to it. It must have a scheme and an authority (`https://host[:port][/prefix]`):
    /// the request target a signature covers is everything after the authority.
    pub fn base_url(&self) -> Result<String, SettingsError> {
        let value = self.get("base_url")?;
        let absolute = value
            .split_once("://")
            .is_some_and(|(scheme, rest)| !scheme.is_empty() && !rest.is_empty());
        if !absolute {
            return Err(SettingsError::BaseUrl {
                provider: self.provider,
                value,
            });
        }
        Ok(value.trim_end_matches('/').to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;

    fn settings(host: &FakeHost) -> Settings<'_, FakeHost> {
        Settings::new(host, "acme")
    }

    #[test]
    fn a_missing_or_empty_key_is_missing() {
        let host = FakeHost::new()
            .with_config("api_key", "k")
            .with_config("empty", "");
        assert_eq!(settings(&host).get("api_key"), Ok("k".to_owned()));
        for key in ["absent", "empty"] {
            let err = settings(&host).get(key).unwrap_err();
            assert_eq!(
                err,
                SettingsError::Missing {
                    provider: "acme",
                    key: key.to_owned()
                }
            );
            assert_eq!(
                err.to_string(),
                format!("acme is not configured: config key `{key}` is not set")
            );
            assert!(settings(&host).secret(key).is_err());
        }
        assert_eq!(settings(&host).secret("api_key").unwrap().expose(), "k");
    }

    #[test]
    fn parse_reads_a_typed_value_and_quotes_a_bad_one() {
        let host = FakeHost::new()
            .with_config("id_service", " 1024 ")
            .with_config("negative", "-1");
        assert_eq!(
            settings(&host).parse::<u64>("id_service", "an integer"),
            Ok(1024)
        );
        let err = settings(&host)
            .parse::<u64>("negative", "an integer")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "acme is not configured: config key `negative` must be an integer, got `-1`"
        );
        assert!(matches!(
            settings(&host).parse::<u64>("absent", "an integer"),
            Err(SettingsError::Missing { .. })
        ));
    }

    #[test]
    fn base_url_must_be_absolute_and_loses_its_trailing_slash() {
        for (value, expected) in [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("https://pe.example/api/", "https://pe.example/api"),
            ("https://pe.example//", "https://pe.example"),
        ] {
            let host = FakeHost::new().with_config("base_url", value);
            assert_eq!(settings(&host).base_url(), Ok(expected.to_owned()));
        }
        for value in ["127.0.0.1:8080", "://host", "http://", "host"] {
            let host = FakeHost::new().with_config("base_url", value);
            let err = settings(&host).base_url().unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "acme is not configured: base_url `{value}` is not an absolute http(s) URL"
                )
            );
        }
        assert!(matches!(
            settings(&FakeHost::new()).base_url(),
            Err(SettingsError::Missing { .. })
        ));
    }
}
