//! Stateful simulators of provider refund APIs, for tests, the demo and `refundry sandbox`.
//!
//! Each provider has one module ([`mfs_africa`] and [`pagoefectivo`]), a folder of
//! `src/providers/` found by the build script (no list of providers to edit: see
//! [`SIMULATORS`]), that reads that provider's wire contract independently of the plugins and
//! the SDK: the sandbox
//! shares no code with them, so that a misreading on either side shows up as a failing exchange.
//! The pieces that do not depend on a provider live in their own modules and are reused by every
//! simulator: [`faults`] (fault injection queue, with a per-provider [`faults::FaultPolicy`]),
//! [`webhooks`] (outbound signed delivery with retries), [`allowlist`] (caller IP allowlist), and
//! the crate-private `control` (the common `/_sandbox/` routes: faults, allowlist, webhook
//! configuration and deliveries) and `time` (date formatting).
//!
//! A simulator is started with its module's `start` function and answers through a
//! [`SandboxHandle`]. Tests and the demo drive it over plain HTTP control endpoints under
//! `/_sandbox/`, so that they work the same in-process and against a separate process.
#![deny(missing_docs)]

pub mod allowlist;
mod control;
pub mod faults;
mod time;
pub mod webhooks;

// The provider simulators (`pub mod <folder>;` for each folder of `src/providers/`) and
// `SIMULATORS`, written by build.rs.
include!(concat!(env!("OUT_DIR"), "/providers.rs"));

use std::net::SocketAddr;

use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A provider simulator as the crate's registry ([`SIMULATORS`]) knows it: what
/// `refundry sandbox <id>` runs. Each simulator's module defines one as `SIMULATOR`.
#[derive(Clone, Copy)]
pub struct Simulator {
    /// The provider id, also the `refundry sandbox` subcommand (`mfs-africa`).
    pub id: &'static str,
    /// What it simulates, in one line (the subcommand's help).
    pub about: &'static str,
    /// Its command line (port, credentials, callback URL, ...), named `id`.
    #[cfg(feature = "cli")]
    pub command: fn() -> clap::Command,
    /// Starts it from arguments parsed with `command` and serves until the process is killed,
    /// after printing one line, `refundry-sandbox <id> listening on <url>`.
    #[cfg(feature = "cli")]
    pub serve: fn(clap::ArgMatches) -> ServeFuture,
}

/// What [`Simulator::serve`] returns: a future for the process's main task (not `Send`).
#[cfg(feature = "cli")]
pub type ServeFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), SandboxError>>>>;

/// The simulator of provider `id`, if this crate has one.
pub fn simulator(id: &str) -> Option<&'static Simulator> {
    SIMULATORS.iter().find(|s| s.id == id)
}

/// Why a simulator could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address that was asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The HTTP client used for outbound webhooks could not be built.
    #[error("cannot build the webhook HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// Writing the "listening" line to stdout failed, or the server stopped with an I/O error.
    #[error("sandbox I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A setting is unusable (for example a required header that is no header name).
    #[error("bad sandbox configuration: {0}")]
    Config(String),
    /// The server task ended abnormally (it panicked or was cancelled).
    #[error("sandbox server task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A running simulator. Dropping it stops the server (without waiting); [`SandboxHandle::shutdown`]
/// stops it and waits until in-flight requests are answered.
pub struct SandboxHandle {
    addr: SocketAddr,
    shutdown_tx: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    webhooks: webhooks::Dispatcher,
}

impl SandboxHandle {
    /// The address the server is bound to (with the real port when `:0` was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL clients use, e.g. `http://127.0.0.1:40123`, without a trailing slash.
    ///
    /// When bound to an unspecified address (`0.0.0.0` or `::`), the loopback address of the same
    /// family is given instead, since that is an address a local client can actually reach.
    pub fn base_url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            let loopback: std::net::IpAddr = if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            addr.set_ip(loopback);
        }
        format!("http://{addr}")
    }

    /// Stops accepting connections, waits for in-flight requests to be answered, and cancels any
    /// webhook deliveries still queued or waiting to be retried.
    pub async fn shutdown(mut self) {
        self.webhooks.shutdown();
        if let Some(tx) = self.shutdown_tx.take() {
            // An error only means the server already stopped.
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "sandbox server stopped with an error"),
                Err(error) => tracing::warn!(%error, "sandbox server task failed"),
            }
        }
    }

    /// Prints exactly one line to stdout, `refundry-sandbox <id> listening on <url>`, then serves
    /// until the process is killed: what `refundry sandbox <id>` does once its simulator started.
    pub async fn serve_forever(self, id: &str) -> Result<(), SandboxError> {
        use std::io::Write as _;
        {
            let mut stdout = std::io::stdout().lock();
            writeln!(
                stdout,
                "refundry-sandbox {id} listening on {}",
                self.base_url()
            )?;
            stdout.flush()?;
        }
        self.run_until_stopped().await
    }

    /// Serves until the server stops by itself (in practice: until the process is killed).
    pub(crate) async fn run_until_stopped(mut self) -> Result<(), SandboxError> {
        match self.server.take() {
            Some(server) => Ok(server.await??),
            None => Ok(()),
        }
    }
}

impl Drop for SandboxHandle {
    fn drop(&mut self) {
        self.webhooks.shutdown();
        if let Some(tx) = self.shutdown_tx.take() {
            let _ = tx.send(());
        }
    }
}

/// Binds `addr` and serves `router` from a task of the current tokio runtime.
///
/// The router is served with the peer's socket address available as
/// `axum::extract::ConnectInfo<SocketAddr>` (the IP allowlist needs it).
pub(crate) async fn spawn_server(
    router: Router,
    addr: SocketAddr,
    webhooks: webhooks::Dispatcher,
) -> Result<SandboxHandle, SandboxError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| SandboxError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| SandboxError::Bind { addr, source })?;
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move {
        axum::serve(listener, service)
            .with_graceful_shutdown(async move {
                // Either an explicit shutdown or the handle being dropped (the sender goes away).
                let _ = shutdown_rx.await;
            })
            .await
    });
    Ok(SandboxHandle {
        addr: bound,
        shutdown_tx: Some(shutdown_tx),
        server: Some(server),
        webhooks,
    })
}
