//! `refundry plugin list | load | activate | remove`: the admin API's plugin routes from the
//! command line, against a running service (`--url`, `--token`) or, without `--url`, directly
//! on the configured ledger (for a stopped service: a running one sees the change at its next
//! start).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use refundry_api::plugins::{PluginList, registry_error};
use refundry_runtime::engine::Engine;
use refundry_service::registry::{Activated, Loaded, ProviderVersions, RegistryError, VersionView};
use refundry_service::{Config, Needs, Providers, providers};
use serde::de::DeserializeOwned;

use super::client::ServiceClient;

/// The registry commands.
#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Every provider's loaded versions and active one.
    List(Target),
    /// Load a component as a new version (not activated).
    Load {
        /// The component file.
        file: PathBuf,
        /// The provider it is for (default: the one its describe() names).
        #[arg(long)]
        provider: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Make a loaded version the active one (rollback: activate the earlier one).
    Activate {
        /// Provider id.
        provider: String,
        /// A loaded version.
        version: String,
        #[command(flatten)]
        target: Target,
    },
    /// Unload a version that is not active.
    Remove {
        /// Provider id.
        provider: String,
        /// A loaded version.
        version: String,
        #[command(flatten)]
        target: Target,
    },
}

/// Where the change goes.
#[derive(Args)]
pub struct Target {
    /// A running `refundry serve` (e.g. http://127.0.0.1:8700). Without it, the configured
    /// ledger is changed directly.
    #[arg(long, env = "REFUNDRY_URL")]
    url: Option<reqwest::Url>,
    /// A bearer token with scope `admin`, for `--url`.
    #[arg(long, env = "REFUNDRY_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// A refusal: the API's error code and message.
struct Refused {
    code: String,
    message: String,
}

impl From<RegistryError> for Refused {
    fn from(e: RegistryError) -> Self {
        let detail = registry_error(e).detail;
        Self {
            code: detail.code,
            message: detail.message,
        }
    }
}

/// Runs a registry command; exit code 1 for a refusal (printed), errors for everything else.
pub async fn run(config_path: &Path, json: bool, command: RegistryCommand) -> Result<ExitCode> {
    let outcome = match command {
        RegistryCommand::List(t) => {
            let list = match t.url {
                Some(url) => {
                    remote::<PluginList>(&t.token, reqwest::Method::GET, url, "v1/plugins", None)
                        .await?
                }
                None => Ok(PluginList {
                    providers: local(config_path).await?.registry().list(),
                }),
            };
            list.map(|l| print_list(json, &l.providers))
        }
        RegistryCommand::Load {
            file,
            provider,
            target,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let loaded = match target.url {
                Some(url) => {
                    let provider = match provider {
                        Some(p) => p,
                        None => describe_id(&file).await?,
                    };
                    let path = format!("v1/plugins/{provider}/versions");
                    remote::<Loaded>(
                        &target.token,
                        reqwest::Method::POST,
                        url,
                        &path,
                        Some(bytes),
                    )
                    .await?
                }
                None => {
                    let host = local(config_path).await?;
                    let loaded = host.registry().load(provider.as_deref(), bytes).await;
                    loaded.map_err(Refused::from)
                }
            };
            loaded.map(|l| print_loaded(json, &l))
        }
        RegistryCommand::Activate {
            provider,
            version,
            target,
        } => {
            let activated = match target.url {
                Some(url) => {
                    let path = format!("v1/plugins/{provider}/activate");
                    let body = serde_json::to_vec(&serde_json::json!({ "version": version }))?;
                    remote::<Activated>(
                        &target.token,
                        reqwest::Method::POST,
                        url,
                        &path,
                        Some(body),
                    )
                    .await?
                }
                None => {
                    let host = local(config_path).await?;
                    let activated = host.registry().activate(&provider, &version).await;
                    activated.map_err(Refused::from)
                }
            };
            activated.map(|a| {
                if json {
                    print_json(&a);
                } else {
                    println!("{}: {} active (was {})", a.provider, a.active, a.previous);
                }
            })
        }
        RegistryCommand::Remove {
            provider,
            version,
            target,
        } => {
            let removed = match target.url {
                Some(url) => {
                    let path = format!("v1/plugins/{provider}/versions/{version}");
                    remote::<()>(&target.token, reqwest::Method::DELETE, url, &path, None).await?
                }
                None => {
                    let host = local(config_path).await?;
                    host.registry()
                        .remove(&provider, &version)
                        .await
                        .map_err(Refused::from)
                }
            };
            removed.map(|()| {
                if json {
                    print_json(&serde_json::json!({ "removed": { "provider": provider, "version": version } }));
                } else {
                    println!("{provider}: {version} removed");
                }
            })
        }
    };
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(r) => {
            if json {
                print_json(
                    &serde_json::json!({ "error": { "code": r.code, "message": r.message } }),
                );
            } else {
                println!("refused ({}): {}", r.code, r.message);
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// The host on the configured ledger.
async fn local(config_path: &Path) -> Result<Providers> {
    let config = Config::load_for(config_path, Needs::OneShot)?;
    Ok(Providers::start_with(&config, crate::start::options()).await?)
}

/// The provider id a component's describe() gives.
async fn describe_id(file: &Path) -> Result<String> {
    let engine = Engine::new(Default::default())?;
    let (info, _) = providers::inspect(&engine, file).await?;
    Ok(info.id)
}

/// One admin API call: the answer's body as `T`, or the API's refusal.
async fn remote<T: DeserializeOwned>(
    token: &Option<String>,
    method: reqwest::Method,
    base: reqwest::Url,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<Result<T, Refused>> {
    let client = ServiceClient::new(base, token.as_deref(), "admin")?;
    let answer = client.send(method, path, body, None, true).await?;
    if answer.status.is_success() {
        return Ok(Ok(answer.json()?));
    }
    let error = answer.error()?;
    Ok(Err(Refused {
        code: error.error.code,
        message: error.error.message,
    }))
}

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("a view serialises")
    );
}

fn print_list(json: bool, providers: &[ProviderVersions]) {
    if json {
        return print_json(&PluginList {
            providers: providers.to_vec(),
        });
    }
    for p in providers {
        println!("{} (active {})", p.provider, p.active);
        for v in &p.versions {
            println!("  {}", version_line(v));
        }
    }
}

fn print_loaded(json: bool, loaded: &Loaded) {
    if json {
        return print_json(loaded);
    }
    let what = if loaded.new {
        "loaded"
    } else {
        "already loaded"
    };
    println!("{}: {what}", loaded.version.provider);
    println!("  {}", version_line(&loaded.version));
}

fn version_line(v: &VersionView) -> String {
    format!(
        "{} {:<10} contract {}  sha256 {}  {} bytes  loaded {}  (from {}, {:.1} ms)",
        if v.active { "*" } else { " " },
        v.version,
        v.contract,
        &v.sha256[..v.sha256.len().min(16)],
        v.size,
        v.loaded_at.format("%Y-%m-%dT%H:%M:%SZ"),
        v.loaded_from.as_str(),
        v.load_ms
    )
}
