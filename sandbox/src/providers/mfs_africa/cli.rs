//! `refundry sandbox mfs-africa`: this simulator's command line.

use std::net::SocketAddr;

use clap::{Args, FromArgMatches as _};

use super::Config;
use crate::SandboxError;

#[derive(Args)]
struct MfsAfricaArgs {
    /// Loopback port to listen on (0 picks a free one; the URL is printed).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// API key the simulator accepts.
    #[arg(long, env = "MFS_AFRICA_API_KEY")]
    api_key: String,
    /// Request signing secret.
    #[arg(long, env = "MFS_AFRICA_API_SECRET", hide_env_values = true)]
    api_secret: String,
    /// Webhook signing secret.
    #[arg(long, env = "MFS_AFRICA_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: String,
    /// Where signed webhooks are sent.
    #[arg(long)]
    callback_url: Option<String>,
    /// Refuse API requests without this header (e.g. X-Plugin-Version, which the second MFS
    /// Africa plugin version sends).
    #[arg(long)]
    require_header: Option<String>,
}

/// The arguments of `refundry sandbox mfs-africa`.
pub(super) fn command() -> clap::Command {
    MfsAfricaArgs::augment_args(clap::Command::new(super::SIMULATOR.id).about(super::SIMULATOR.about))
}

/// Serves a simulator configured from `matches` (parsed with [`command`]) on loopback.
pub(super) fn serve(matches: clap::ArgMatches) -> crate::ServeFuture {
    let args = MfsAfricaArgs::from_arg_matches(&matches);
    Box::pin(async move {
        let args = args.map_err(|e| SandboxError::Config(e.to_string()))?;
        let mut config = Config::new(args.api_key, args.api_secret, args.webhook_secret);
        config.callback_url = args.callback_url;
        config.require_header = args.require_header;
        super::serve_forever(config, SocketAddr::from(([127, 0, 0, 1], args.port))).await
    })
}
