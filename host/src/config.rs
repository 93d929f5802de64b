//! `refundry.toml`: engine limits, HTTP limits, the database, and each provider's plugin and settings.
//!
//! ```toml
//! [engine]
//! deadline_ms = 5000             # per plugin operation, wall time
//! memory_limit_bytes = 16777216  # per plugin instance
//!
//! [http]
//! timeout_ms = 10000
//! max_response_bytes = 1048576
//!
//! [database]
//! path = "refundry.db"           # relative to this file; ":memory:" for none
//!
//! [providers.mfs-africa]
//! plugin = "../target/plugins/mfs-africa.wasm"   # relative to this file
//! [providers.mfs-africa.settings]
//! base_url = "http://127.0.0.1:8080"
//! [providers.mfs-africa.secrets]
//! api_secret = "env:MFS_AFRICA_API_SECRET"       # read from the environment at start-up
//! ```
//! Settings and secrets are both visible to the plugin through `config.get`; secrets are also
//! redacted from every log line. A value `env:NAME` in either table is read from the environment,
//! and a missing variable is a start-up error naming it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;

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
    #[error(
        "providers.{provider}.{table}.{key} = \"env:{var}\", but the environment variable {var} is not set"
    )]
    MissingEnv {
        /// Provider id.
        provider: String,
        /// `settings` or `secrets`.
        table: &'static str,
        /// The key whose value was missing.
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

/// Limits applied to every plugin operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineLimits {
    /// Wall-time budget of one operation (instantiate + call), including time spent in host calls.
    pub deadline: Duration,
    /// The most linear memory one plugin instance may have, in bytes.
    pub memory_limit: usize,
    /// How many plugin instances may exist at once (the pooling allocator's slots).
    pub max_instances: u32,
}

impl Default for EngineLimits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(5),
            memory_limit: 16 << 20,
            max_instances: 256,
        }
    }
}

/// Limits applied to the plugins' outbound HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time allowed for one request, from connect to the last body byte.
    pub timeout: Duration,
    /// Largest response body accepted, in bytes.
    pub max_response_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_response_bytes: 1 << 20,
        }
    }
}

/// One provider: which plugin runs it and what it is configured with.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Provider id (the table name under `[providers]`); must match the plugin's `describe().id`.
    pub id: String,
    /// Path of the plugin component.
    pub plugin: PathBuf,
    /// The provider's `base_url`, which bounds where the plugin may send HTTP.
    pub base_url: reqwest::Url,
    /// Plain settings, visible to the plugin.
    pub settings: BTreeMap<String, String>,
    /// Secrets, visible to the plugin and redacted from logs.
    pub secrets: BTreeMap<String, Secret>,
}

impl ProviderConfig {
    /// The value the plugin gets for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.settings
            .get(key)
            .map(String::as_str)
            .or_else(|| self.secrets.get(key).map(Secret::expose))
    }
}

/// The whole host configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Plugin limits.
    pub engine: EngineLimits,
    /// Outbound HTTP limits.
    pub http: HttpLimits,
    /// SQLite database file (`None` for an in-memory database).
    pub database: Option<PathBuf>,
    /// Providers by id.
    pub providers: BTreeMap<String, ProviderConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    engine: RawEngine,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    database: RawDatabase,
    #[serde(default)]
    providers: BTreeMap<String, RawProvider>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    deadline_ms: Option<u64>,
    memory_limit_bytes: Option<u64>,
    max_instances: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    timeout_ms: Option<u64>,
    max_response_bytes: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    path: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    plugin: PathBuf,
    #[serde(default)]
    settings: BTreeMap<String, String>,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
}

impl Config {
    /// Reads and resolves a config file; relative paths in it are relative to its folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, path, dir, |var| std::env::var(var).ok())
    }

    /// Parses config text. `origin` names it in errors, relative paths are resolved against
    /// `dir`, and `env` looks up `env:NAME` values.
    pub fn parse(
        text: &str,
        origin: &Path,
        dir: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        let defaults = EngineLimits::default();
        let engine = EngineLimits {
            deadline: Duration::from_millis(limit(
                "engine.deadline_ms",
                raw.engine.deadline_ms,
                defaults.deadline.as_millis() as u64,
                1..=600_000,
            )?),
            memory_limit: limit(
                "engine.memory_limit_bytes",
                raw.engine.memory_limit_bytes,
                defaults.memory_limit as u64,
                // At least one 64 KiB wasm page; at most 1 GiB, as a plugin has no business with more.
                65_536..=1 << 30,
            )? as usize,
            max_instances: limit(
                "engine.max_instances",
                raw.engine.max_instances,
                u64::from(defaults.max_instances),
                1..=10_000,
            )? as u32,
        };
        let http_defaults = HttpLimits::default();
        let http = HttpLimits {
            timeout: Duration::from_millis(limit(
                "http.timeout_ms",
                raw.http.timeout_ms,
                http_defaults.timeout.as_millis() as u64,
                1..=600_000,
            )?),
            max_response_bytes: limit(
                "http.max_response_bytes",
                raw.http.max_response_bytes,
                http_defaults.max_response_bytes as u64,
                1..=1 << 30,
            )? as usize,
        };
        let database = match raw.database.path.as_deref() {
            Some(":memory:") => None,
            Some(p) => Some(dir.join(p)),
            None => Some(dir.join("refundry.db")),
        };
        let mut providers = BTreeMap::new();
        for (id, p) in raw.providers {
            let settings = resolve(&id, "settings", p.settings, &env)?;
            let secrets = resolve(&id, "secrets", p.secrets, &env)?
                .into_iter()
                .map(|(k, v)| (k, Secret::new(v)))
                .collect();
            let base_url = parse_base_url(&id, settings.get("base_url"))?;
            providers.insert(
                id.clone(),
                ProviderConfig {
                    plugin: dir.join(&p.plugin),
                    id,
                    base_url,
                    settings,
                    secrets,
                },
            );
        }
        Ok(Self {
            engine,
            http,
            database,
            providers,
        })
    }
}

fn limit(
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

fn resolve(
    provider: &str,
    table: &'static str,
    values: BTreeMap<String, String>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    values
        .into_iter()
        .map(|(key, value)| match value.strip_prefix("env:") {
            Some(var) => match env(var) {
                Some(v) => Ok((key, v)),
                None => Err(ConfigError::MissingEnv {
                    provider: provider.to_owned(),
                    table,
                    key,
                    var: var.to_owned(),
                }),
            },
            None => Ok((key, value)),
        })
        .collect()
}

fn parse_base_url(provider: &str, value: Option<&String>) -> Result<reqwest::Url, ConfigError> {
    let Some(value) = value else {
        return Err(ConfigError::MissingBaseUrl {
            provider: provider.to_owned(),
        });
    };
    let bad = |reason: &str| ConfigError::BadBaseUrl {
        provider: provider.to_owned(),
        value: value.clone(),
        reason: reason.to_owned(),
    };
    let url = reqwest::Url::parse(value).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if url.host_str().is_none() {
        return Err(bad("it has no host"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[engine]
deadline_ms = 250

[providers.mfs-africa]
plugin = "plugins/mfs-africa.wasm"
[providers.mfs-africa.settings]
base_url = "http://127.0.0.1:9000"
api_key = "key-1"
[providers.mfs-africa.secrets]
api_secret = "env:TEST_SECRET"
"#;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::parse(
            text,
            Path::new("test.toml"),
            Path::new("/etc/refundry"),
            |var| env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone()),
        )
    }

    #[test]
    fn resolves_env_paths_and_defaults() {
        let c = parse(SAMPLE, &[("TEST_SECRET", "s3cr3t")]).unwrap();
        assert_eq!(c.engine.deadline, Duration::from_millis(250));
        assert_eq!(c.engine.memory_limit, 16 << 20);
        assert_eq!(c.http.timeout, Duration::from_secs(10));
        assert_eq!(c.database, Some(PathBuf::from("/etc/refundry/refundry.db")));
        let p = &c.providers["mfs-africa"];
        assert_eq!(
            p.plugin,
            PathBuf::from("/etc/refundry/plugins/mfs-africa.wasm")
        );
        assert_eq!(p.get("api_key"), Some("key-1"));
        assert_eq!(p.get("api_secret"), Some("s3cr3t"));
        assert_eq!(p.get("nope"), None);
        assert_eq!(p.base_url.port(), Some(9000));
    }

    #[test]
    fn missing_env_names_the_variable() {
        let err = parse(SAMPLE, &[]).unwrap_err();
        assert!(matches!(&err, ConfigError::MissingEnv { var, .. } if var == "TEST_SECRET"));
        assert!(err.to_string().contains("TEST_SECRET"));
    }

    #[test]
    fn base_url_is_required_and_checked() {
        let no_url = "[providers.p]\nplugin = \"p.wasm\"\n";
        assert!(matches!(
            parse(no_url, &[]),
            Err(ConfigError::MissingBaseUrl { .. })
        ));
        let bad =
            "[providers.p]\nplugin = \"p.wasm\"\n[providers.p.settings]\nbase_url = \"ftp://x\"\n";
        assert!(matches!(
            parse(bad, &[]),
            Err(ConfigError::BadBaseUrl { .. })
        ));
    }

    #[test]
    fn unknown_keys_and_bad_limits_are_refused() {
        assert!(matches!(
            parse("[engine]\nfoo = 1\n", &[]),
            Err(ConfigError::Parse { .. })
        ));
        assert!(matches!(
            parse("[engine]\ndeadline_ms = 0\n", &[]),
            Err(ConfigError::BadLimit {
                key: "engine.deadline_ms",
                ..
            })
        ));
    }
}
