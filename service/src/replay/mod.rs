//! Record and replay: every plugin operation run for a refund is recorded (its input, each
//! import call with the host's answer, its output), and `refundry replay <refund-id>` re-runs
//! the recorded operations offline against those answers, side by side with the originals and,
//! with `--plugin FILE`, with another component.
//!
//! A plugin sees the world only through its imports, so its run is a function of its input and
//! the host's answers: replaying the recorded version gives the recorded outputs exactly, and
//! another version shows what it would have done differently, step by step.
//!
//! - [`record`]: what a recording holds; the in-memory [`Recorder`] one operation fills (the
//!   capabilities write to it, see `caps`), with secret values replaced by markers.
//! - [`store`]: the `recordings` table, with its per-operation and total size caps.
//! - [`player`]: the replay imports, answering from a recording in order.
//! - [`compare`]: the side-by-side table and the first difference.

pub mod compare;
pub mod player;
pub mod record;
pub mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use self::compare::{Column, Difference, OperationReport, Report, Row};
pub use self::record::{RecordedBy, Recorder, Recording, SecretMasks};
pub use self::store::{Recordings, StoredRecording};
pub use crate::config::RecordingConfig;

use self::player::{Player, Prepared};
use self::record::{ConfigAnswer, RecordedAnswer};
use crate::config::Config;
use refundry_ledger::db::{Database, DbError};
use refundry_runtime::component::PluginComponent;
use refundry_runtime::engine::{Engine, EngineError};
use refundry_runtime::error::LoadError;

/// Exit code of `refundry replay` when every replay is identical to the original.
pub const EXIT_IDENTICAL: u8 = 0;
/// Exit code of `refundry replay` when a replay differs from the original.
pub const EXIT_DIFFERENT: u8 = 1;
/// Exit code of `refundry replay` when it could not replay (the errors of [`ReplayError`]).
pub const EXIT_ERROR: u8 = 2;

/// Why a refund could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The configuration has no database file to read.
    #[error(
        "the database is in memory ([database] path = \":memory:\"): there is no ledger to replay from"
    )]
    InMemoryDatabase,
    /// The configured database file does not exist.
    #[error("the database {0} does not exist")]
    NoLedger(PathBuf),
    /// The ledger failed.
    #[error(transparent)]
    Database(#[from] DbError),
    /// No refund has this id.
    #[error("no refund {0} in the ledger")]
    UnknownRefund(String),
    /// The refund exists but has no recording (recording was off, no plugin operation ran for
    /// it, or its recordings were pruned).
    #[error("refund {0} has no recorded operation (recording off, no provider call, or pruned)")]
    NoRecording(String),
    /// A recording passed its size cap, so its later steps are missing.
    #[error(
        "operation {seq} ({operation}) of refund {refund_id} was recorded truncated (it passed \
         [recording] max_operation_bytes): it cannot be replayed exactly"
    )]
    Truncated {
        /// The refund.
        refund_id: String,
        /// The operation's sequence number.
        seq: i64,
        /// The operation.
        operation: String,
    },
    /// A recording could not be read.
    #[error(transparent)]
    Unreadable(#[from] store::LoadRecordingError),
    /// The refund's provider is not in the configuration, so its secrets cannot be re-supplied.
    #[error("provider {0:?} is not configured: its secrets cannot be re-supplied for the replay")]
    ProviderNotConfigured(String),
    /// A secret the plugin read is not in the configuration.
    #[error("providers.{provider}.secrets.{key} is not configured: the replay needs it")]
    MissingSecret {
        /// Provider id.
        provider: String,
        /// The secret's key.
        key: String,
    },
    /// The component that ran an operation is no longer in the ledger (its version was removed).
    #[error(
        "{provider} {version} (sha256 {sha256}) is no longer in the ledger (removed from the \
         registry): load it again to replay with it"
    )]
    ComponentGone {
        /// Provider id.
        provider: String,
        /// The version.
        version: String,
        /// Its component's SHA-256.
        sha256: String,
    },
    /// The recorded component in the ledger could not be compiled.
    #[error("the recorded component of {provider} {version}: {source}")]
    RecordedComponent {
        /// Provider id.
        provider: String,
        /// The version.
        version: String,
        /// Why.
        #[source]
        source: LoadError,
    },
    /// The `--plugin` file is not a usable plugin component.
    #[error("--plugin {path}: {source}")]
    BadComponent {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: LoadError,
    },
    /// The `--plugin` file is a plugin of another provider.
    #[error("--plugin {path} is a plugin of {found:?}, but the refund is {expected:?}'s")]
    WrongProvider {
        /// The file.
        path: PathBuf,
        /// The refund's provider.
        expected: String,
        /// The provider the component says it is.
        found: String,
    },
    /// The engine could not start.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Replays every recorded operation of `refund_id` from the configured ledger, with the recorded
/// plugin version and, when given, the component in `plugin`.
pub async fn replay(
    config: &Config,
    refund_id: &str,
    plugin: Option<&Path>,
) -> Result<Report, ReplayError> {
    if config.postgres.is_none() {
        let path = config
            .database
            .as_deref()
            .ok_or(ReplayError::InMemoryDatabase)?;
        if !path.exists() {
            return Err(ReplayError::NoLedger(path.to_owned()));
        }
    }
    let db = config.open_database().await?;
    replay_in(&db, config, refund_id, plugin).await
}

/// [`replay`] on an open database.
pub async fn replay_in(
    db: &Database,
    config: &Config,
    refund_id: &str,
    plugin: Option<&Path>,
) -> Result<Report, ReplayError> {
    let recordings = store::load(db, refund_id).await?;
    let Some(first) = recordings.first() else {
        let known = refundry_ledger::Ledger::new(db.clone())
            .get(refund_id)
            .await?;
        return Err(match known {
            Some(_) => ReplayError::NoRecording(refund_id.to_owned()),
            None => ReplayError::UnknownRefund(refund_id.to_owned()),
        });
    };
    if let Some(t) = recordings.iter().find(|r| r.recording.truncated) {
        return Err(ReplayError::Truncated {
            refund_id: refund_id.to_owned(),
            seq: t.seq,
            operation: t.recording.input.operation().to_owned(),
        });
    }
    let provider = first.by.provider.clone();
    let provider_config = config
        .providers
        .get(&provider)
        .ok_or_else(|| ReplayError::ProviderNotConfigured(provider.clone()))?;
    let masks = Arc::new(SecretMasks::new(&provider_config.secrets));
    for r in &recordings {
        for step in &r.recording.steps {
            if let RecordedAnswer::Config(ConfigAnswer::Secret(key)) = &step.answer
                && masks.value(key).is_none()
            {
                return Err(ReplayError::MissingSecret {
                    provider: provider.clone(),
                    key: key.clone(),
                });
            }
        }
    }

    let engine = Engine::new(config.engine)?;
    let player = Player::new(engine.clone()).map_err(|source| ReplayError::RecordedComponent {
        provider: provider.clone(),
        version: first.by.plugin_version.clone(),
        source,
    })?;
    // The recorded components, by hash (a refund's operations may have run on several).
    let mut recorded: BTreeMap<String, Prepared> = BTreeMap::new();
    for r in &recordings {
        if recorded.contains_key(&r.by.plugin_sha256) {
            continue;
        }
        let prepared = recorded_component(db, &engine, &player, &r.by).await?;
        recorded.insert(r.by.plugin_sha256.clone(), prepared);
    }
    let other = match plugin {
        Some(path) => Some(other_component(&engine, &player, path, &provider).await?),
        None => None,
    };

    let mut columns = vec![
        Column {
            label: "original".into(),
            version: versions(recordings.iter().map(|r| r.by.plugin_version.as_str())),
            first_difference: None,
        },
        Column {
            label: "replay".into(),
            version: versions(recordings.iter().map(|r| r.by.plugin_version.as_str())),
            first_difference: None,
        },
    ];
    if let Some((label, version, _)) = &other {
        columns.push(Column {
            label: label.clone(),
            version: version.clone(),
            first_difference: None,
        });
    }
    let mut operations = Vec::new();
    for r in &recordings {
        let same = player
            .run(&recorded[&r.by.plugin_sha256], &r.recording, masks.clone())
            .await;
        let mut replays = vec![same];
        if let Some((_, _, prepared)) = &other {
            replays.push(player.run(prepared, &r.recording, masks.clone()).await);
        }
        let refs: Vec<_> = replays.iter().collect();
        let (rows, stopped) = compare::compare(&r.recording, &refs);
        operations.push(OperationReport {
            seq: r.seq,
            operation: r.recording.input.operation().to_owned(),
            plugin_version: r.by.plugin_version.clone(),
            recorded_at: crate::view::rfc3339(r.recorded_at),
            rows,
            stopped,
        });
    }
    for (i, c) in columns.iter_mut().enumerate().skip(1) {
        c.first_difference = compare::first_difference(&operations, i);
    }
    Ok(Report {
        refund_id: refund_id.to_owned(),
        provider,
        columns,
        operations,
        earlier_pruned: first.seq > 1,
    })
}

/// The distinct versions, in order, joined with `, `.
fn versions<'a>(all: impl Iterator<Item = &'a str>) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for v in all {
        if !seen.contains(&v) {
            seen.push(v);
        }
    }
    seen.join(", ")
}

/// The component that ran a recorded operation, from the registry's rows in the ledger.
async fn recorded_component(
    db: &Database,
    engine: &Engine,
    player: &Player,
    by: &RecordedBy,
) -> Result<Prepared, ReplayError> {
    let bytes =
        refundry_ledger::plugin_versions::component(db, &by.provider, &by.plugin_sha256).await?;
    let gone = || ReplayError::ComponentGone {
        provider: by.provider.clone(),
        version: by.plugin_version.clone(),
        sha256: by.plugin_sha256.clone(),
    };
    let bytes = bytes.ok_or_else(gone)?;
    let failed = |source| ReplayError::RecordedComponent {
        provider: by.provider.clone(),
        version: by.plugin_version.clone(),
        source,
    };
    let component = PluginComponent::compile(engine, &bytes).map_err(failed)?;
    player.prepare(component.component()).map_err(failed)
}

/// The `--plugin` component: checked like any load (a component of the contract that describes
/// itself), and of the refund's provider. Its column label and version.
async fn other_component(
    engine: &Engine,
    player: &Player,
    path: &Path,
    provider: &str,
) -> Result<(String, String, Prepared), ReplayError> {
    let bad = |source| ReplayError::BadComponent {
        path: path.to_owned(),
        source,
    };
    let (info, component) = crate::providers::inspect(engine, path).await.map_err(bad)?;
    if info.id != provider {
        return Err(ReplayError::WrongProvider {
            path: path.to_owned(),
            expected: provider.to_owned(),
            found: info.id,
        });
    }
    let prepared = player.prepare(component.component()).map_err(bad)?;
    let label = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok((label, info.version, prepared))
}
