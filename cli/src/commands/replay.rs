//! `refundry replay <refund-id> [--plugin FILE]`: re-runs a refund's recorded plugin operations
//! offline, from the configured ledger, and prints them side by side with the originals.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use refundry_service::replay::{self, EXIT_DIFFERENT, EXIT_IDENTICAL};
use refundry_service::{Config, Needs};

/// `refundry replay`.
#[derive(Args)]
pub struct ReplayArgs {
    /// The refund (`rf_...`) whose recorded operations are replayed.
    refund_id: String,
    /// Also replay them with this component (another version of the refund's provider plugin).
    #[arg(long)]
    plugin: Option<PathBuf>,
}

/// Runs the replay; exit code 0 when every replay is identical to the original, 1 when one
/// differs (errors exit 2 through `main`).
pub async fn run(config_path: &Path, json: bool, args: ReplayArgs) -> Result<ExitCode> {
    let config = Config::load_for(config_path, Needs::OneShot)?;
    let report = replay::replay(&config, &args.refund_id, args.plugin.as_deref()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(ExitCode::from(if report.identical() {
        EXIT_IDENTICAL
    } else {
        EXIT_DIFFERENT
    }))
}
