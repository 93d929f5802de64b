//! `refundry sandbox pagoefectivo`: this simulator's command line.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, FromArgMatches as _};

use super::Config;
use crate::SandboxError;

#[derive(Args)]
struct PagoEfectivoArgs {
    /// Loopback port to listen on (0 picks a free one; the URL is printed).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Service id the simulator accepts.
    #[arg(long, env = "PAGOEFECTIVO_ID_SERVICE")]
    id_service: u64,
    /// Access key the simulator accepts.
    #[arg(long, env = "PAGOEFECTIVO_ACCESS_KEY")]
    access_key: String,
    /// Secret key (authorization hash, request and notification signatures).
    #[arg(long, env = "PAGOEFECTIVO_SECRET_KEY", hide_env_values = true)]
    secret_key: String,
    /// Where signed notifications are sent.
    #[arg(long)]
    callback_url: Option<String>,
    /// Lifetime of the tokens it issues, in seconds.
    #[arg(long, default_value_t = 7200)]
    token_lifetime_secs: u64,
}

/// The arguments of `refundry sandbox pagoefectivo`.
pub(super) fn command() -> clap::Command {
    PagoEfectivoArgs::augment_args(
        clap::Command::new(super::SIMULATOR.id).about(super::SIMULATOR.about),
    )
}

/// Serves a simulator configured from `matches` (parsed with [`command`]) on loopback.
pub(super) fn serve(matches: clap::ArgMatches) -> crate::ServeFuture {
    let args = PagoEfectivoArgs::from_arg_matches(&matches);
    Box::pin(async move {
        let args = args.map_err(|e| SandboxError::Config(e.to_string()))?;
        let mut config = Config::new(args.id_service, args.access_key, args.secret_key);
        config.notification_url = args.callback_url;
        config.token_lifetime = Duration::from_secs(args.token_lifetime_secs);
        super::serve_forever(config, SocketAddr::from(([127, 0, 0, 1], args.port))).await
    })
}
