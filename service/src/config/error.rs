//! Why a configuration could not be used, and the range check every limit goes through.

use std::path::PathBuf;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said.
        message: String,
    },
    /// A value names an environment variable that is not set.
    #[error("{key} = \"env:{var}\", but the environment variable {var} is not set")]
    MissingEnv {
        /// The key whose value was missing, as a dotted path (`providers.p.secrets.api_secret`).
        key: String,
        /// The variable name.
        var: String,
    },
    /// A provider has no `base_url` setting (the HTTP allowlist is built from it).
    #[error("providers.{provider}.settings.base_url is required")]
    MissingBaseUrl {
        /// Provider id.
        provider: String,
    },
    /// A provider's `base_url` is not an absolute http(s) URL.
    #[error("providers.{provider}.settings.base_url = {value:?} is not an http(s) URL: {reason}")]
    BadBaseUrl {
        /// Provider id.
        provider: String,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The `[database]` section is wrong.
    #[error("database: {0}")]
    BadDatabase(String),
    /// A `[server]` setting is wrong.
    #[error("server.{key}: {reason}")]
    BadServer {
        /// The key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An `[events]` setting is wrong.
    #[error("events.{key}: {reason}")]
    BadEvents {
        /// The key.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A `[reconcile]` setting is wrong.
    #[error("reconcile.{key}: {reason}")]
    BadReconcile {
        /// The key.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A limit is zero or absurd.
    #[error("{key} = {value} is out of range ({reason})")]
    BadLimit {
        /// The key.
        key: &'static str,
        /// The value given.
        value: u64,
        /// The allowed range.
        reason: &'static str,
    },
}

/// `value` (or `default`) when it is inside `range`, else a [`ConfigError::BadLimit`] naming `key`.
pub(crate) fn limit(
    key: &'static str,
    value: Option<u64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let v = value.unwrap_or(default);
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(ConfigError::BadLimit {
            key,
            value: v,
            reason: "see the documented range in refundry.toml",
        })
    }
}
