//! `refundry`: the command line. It parses arguments and wires the crates together;
//! the logic lives in `refundry-service` (and the REST API in `refundry-api`).

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use commands::{batch, plugins};
use refundry_ledger::db::Database;
use refundry_ledger::{Ledger, ListQuery, Page, Status};
use refundry_runtime::engine::Engine;
use refundry_runtime::{Money, RefundLookup, RefundRequest, WebhookOutcome};
use refundry_service::export::{self, DEFAULT_PAGE, MAX_PAGE};
use refundry_service::refunds::RefundService;
use refundry_service::view::{ProviderInfoView, RefundErrorView, RefundView, WebhookEventView};
use refundry_service::{Config, Needs, OperationError, Providers, money, providers};

mod start;

/// mimalloc instead of the system allocator: a refund allocates and frees many small buffers
/// across the runtime's threads, where glibc's malloc spent about a tenth of the service's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod commands {
    pub mod batch;
    pub mod client;
    pub mod new_provider;
    pub mod plugins;
    pub mod reconcile;
    pub mod replay;
    pub mod stuck;
    pub mod table;
}

#[derive(Parser)]
#[command(
    name = "refundry",
    version,
    about = "Provider refunds through sandboxed WebAssembly plugins"
)]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true, default_value = "refundry.toml")]
    config: PathBuf,
    /// Print machine-readable JSON instead of readable text.
    #[arg(long, global = true)]
    json: bool,
    /// Log line format (logs go to stderr).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the refund service: the REST API, webhook intake and the janitor.
    Serve(ServeArgs),
    /// Create or look up refunds.
    #[command(subcommand)]
    Refund(RefundCommand),
    /// Write every refund of a selection to a CSV or JSON file (from the database, offline).
    Export(ExportArgs),
    /// Refunds from a CSV file, through a running service (--url) or in this process.
    Batch(batch::BatchArgs),
    /// Plugin components and the versions a service runs.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Check webhooks a provider sent.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Re-run a refund's recorded plugin operations offline and compare them with the originals
    /// (exit 0: identical, 1: different, 2: could not replay).
    Replay(commands::replay::ReplayArgs),
    /// Reconcile a provider's own list of refunds with the ledger over a range (exit 0: all
    /// match, 1: something differs, 2: could not run).
    Reconcile(commands::reconcile::ReconcileArgs),
    /// Scaffold a provider in this workspace: its plugin, simulator, spec stub, conformance
    /// fixture and example configuration (exit 0: created, 2: nothing written).
    NewProvider(commands::new_provider::NewProviderArgs),
    /// Run a provider simulator on loopback.
    #[cfg(feature = "sandbox")]
    #[command(subcommand)]
    Sandbox(SandboxCommand),
}

#[derive(Subcommand)]
enum WebhookCommand {
    /// Verify and parse a captured webhook with the provider's plugin.
    Parse {
        /// Provider id, as configured.
        #[arg(long)]
        provider: String,
        /// A header as received, `Name: value` (repeat for each).
        #[arg(long = "header")]
        headers: Vec<String>,
        /// File holding the raw request body.
        #[arg(long)]
        body_file: PathBuf,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on, overriding `[server] listen` (port 0 picks a free one; the first
    /// line on stdout says which).
    #[arg(long)]
    listen: Option<SocketAddr>,
}

#[derive(Subcommand)]
enum RefundCommand {
    /// Ask a provider to refund (part of) a payment.
    Create(CreateArgs),
    /// Look a refund up at the provider.
    Get(GetArgs),
    /// List the refunds in the database (offline: no provider is called).
    List(ListArgs),
}

/// Which refunds (`refund list`, `export`).
#[derive(Args)]
struct FilterArgs {
    /// Only this provider's.
    #[arg(long)]
    provider: Option<String>,
    /// Only in this status (pending, processed, failed, reversed, unknown).
    #[arg(long, value_parser = parse_status)]
    status: Option<Status>,
    /// Created at or after this time (RFC 3339, e.g. 2026-11-01T00:00:00Z).
    #[arg(long, value_parser = parse_time)]
    from: Option<DateTime<Utc>>,
    /// Created before this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    to: Option<DateTime<Utc>>,
}

impl FilterArgs {
    fn query(self) -> ListQuery {
        ListQuery {
            provider: self.provider,
            status: self.status,
            created_from: self.from,
            created_to: self.to,
            limit: DEFAULT_PAGE,
            cursor: None,
        }
    }
}

fn parse_status(word: &str) -> Result<Status, String> {
    Status::parse(word)
        .ok_or_else(|| "expected pending, processed, failed, reversed or unknown".to_owned())
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 time ({e})"))
}

fn parse_limit(text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_PAGE).contains(n))
        .ok_or_else(|| format!("expected an integer from 1 to {MAX_PAGE}"))
}

#[derive(Args)]
struct ListArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// At most this many (1 to 500).
    #[arg(long, default_value_t = DEFAULT_PAGE, value_parser = parse_limit)]
    limit: usize,
    /// Continue after this refund id (the `next` a previous listing printed).
    #[arg(long)]
    cursor: Option<String>,
    /// Only refunds pending or unknown for longer than this (30m, 2h, 1d), oldest first, with
    /// their age.
    #[arg(long, value_name = "AGE", value_parser = commands::stuck::parse_age,
          conflicts_with_all = ["status", "from", "to", "cursor"])]
    stuck: Option<std::time::Duration>,
}

#[derive(Args)]
struct ExportArgs {
    /// File format.
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// Write here (replaced only once the export is complete) instead of to stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    filter: FilterArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    Csv,
    Json,
}

#[derive(Args)]
struct CreateArgs {
    /// Provider id, as configured.
    #[arg(long)]
    provider: String,
    /// The provider's id of the original payment.
    #[arg(long)]
    original_transaction_id: String,
    /// Amount in major units with the currency's decimals (`1500.00` KES, `5000` UGX).
    #[arg(long)]
    amount: String,
    /// ISO 4217 currency code.
    #[arg(long)]
    currency: String,
    /// Your unique id for this refund (the idempotency key).
    #[arg(long)]
    external_refund_id: String,
    /// Reason shown to the provider.
    #[arg(long)]
    reason: Option<String>,
    /// Your order id, for providers that want one.
    #[arg(long)]
    order_id: Option<String>,
}

#[derive(Args)]
struct GetArgs {
    /// Provider id, as configured.
    #[arg(long)]
    provider: String,
    /// The provider's refund id.
    #[arg(
        long,
        required_unless_present = "external_refund_id",
        conflicts_with = "external_refund_id"
    )]
    id: Option<String>,
    /// Your external refund id.
    #[arg(long)]
    external_refund_id: Option<String>,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Show what a plugin component says of itself and what it imports.
    Inspect {
        /// The component file.
        file: PathBuf,
    },
    #[command(flatten)]
    Registry(plugins::RegistryCommand),
}

/// `refundry sandbox <provider> ...`: one subcommand per simulator the sandbox crate has
/// (`refundry_sandbox::SIMULATORS`, found from its folders), each with that simulator's own
/// arguments; nothing here names a provider.
#[cfg(feature = "sandbox")]
struct SandboxCommand {
    simulator: &'static refundry_sandbox::Simulator,
    matches: clap::ArgMatches,
}

#[cfg(feature = "sandbox")]
impl clap::FromArgMatches for SandboxCommand {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let Some((id, sub)) = matches.subcommand() else {
            return Err(clap::Error::new(clap::error::ErrorKind::MissingSubcommand));
        };
        let simulator = refundry_sandbox::simulator(id)
            .ok_or_else(|| clap::Error::new(clap::error::ErrorKind::InvalidSubcommand))?;
        Ok(Self {
            simulator,
            matches: sub.clone(),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

#[cfg(feature = "sandbox")]
impl clap::Subcommand for SandboxCommand {
    fn augment_subcommands(cmd: clap::Command) -> clap::Command {
        refundry_sandbox::SIMULATORS
            .iter()
            .fold(cmd, |cmd, simulator| cmd.subcommand((simulator.command)()))
            .subcommand_required(true)
    }

    fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_subcommands(cmd)
    }

    fn has_subcommand(name: &str) -> bool {
        refundry_sandbox::simulator(name).is_some()
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The service logs what it does with each refund; a one-shot command only what went wrong.
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    init_logging(cli.log_format, default_level);
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("REFUNDRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colour codes only for a terminal: a log file or a service manager's journal gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        // Every enclosing span's fields (refund_id, provider, method, path) on each line.
        LogFormat::Json => builder
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(refundry_service::logging::FlatJson)
            .init(),
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve(a) => serve(&cli.config, a).await,
        Command::Replay(a) => commands::replay::run(&cli.config, cli.json, a).await,
        Command::Reconcile(a) => commands::reconcile::run(&cli.config, cli.json, a).await,
        Command::NewProvider(a) => commands::new_provider::run(a),
        Command::Refund(RefundCommand::List(a)) => {
            let ledger = open_ledger(&cli.config).await?;
            if let Some(age) = a.stuck {
                let provider = a.filter.provider;
                return commands::stuck::run(&ledger, cli.json, age, provider, a.limit).await;
            }
            let query = ListQuery {
                limit: a.limit,
                cursor: a.cursor,
                ..a.filter.query()
            };
            let page = ledger.list(query).await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                print_page(&page);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Export(a) => {
            let ledger = open_ledger(&cli.config).await?;
            let format = match a.format {
                ExportFormat::Csv => export::Format::Csv,
                ExportFormat::Json => export::Format::Json,
            };
            match &a.output {
                Some(path) => {
                    // Written beside the target and renamed at the end, so that finance never
                    // picks up half an export.
                    let partial = partial_path(path);
                    let file = std::fs::File::create(&partial)
                        .with_context(|| format!("creating {}", partial.display()))?;
                    let out = std::io::BufWriter::new(file);
                    let count = export_selection(&ledger, a.filter.query(), format, out).await?;
                    std::fs::rename(&partial, path)
                        .with_context(|| format!("renaming to {}", path.display()))?;
                    eprintln!(
                        "exported {count} refund{} to {}",
                        if count == 1 { "" } else { "s" },
                        path.display()
                    );
                }
                None => {
                    let out = std::io::BufWriter::new(std::io::stdout());
                    export_selection(&ledger, a.filter.query(), format, out).await?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Refund(cmd) => {
            let config = Config::load_for(&cli.config, Needs::OneShot)?;
            let host = Providers::start_with(&config, crate::start::options()).await?;
            let outcome = match cmd {
                RefundCommand::Create(a) => {
                    let amount_minor = money::parse_decimal(&a.amount, &a.currency)?;
                    let req = RefundRequest {
                        original_transaction_id: a.original_transaction_id,
                        external_refund_id: a.external_refund_id,
                        amount: Money {
                            amount_minor,
                            currency: a.currency,
                        },
                        reason: a.reason,
                        order_id: a.order_id,
                    };
                    host.create_refund(&a.provider, &req).await
                }
                RefundCommand::List(_) => unreachable!("matched above"),
                RefundCommand::Get(a) => {
                    let lookup = match (a.id, a.external_refund_id) {
                        (Some(id), _) => RefundLookup::ProviderRefundId(id),
                        (None, Some(ext)) => RefundLookup::ExternalRefundId(ext),
                        (None, None) => {
                            unreachable!("clap requires one of --id, --external-refund-id")
                        }
                    };
                    host.get_refund(&a.provider, &lookup).await
                }
            };
            print_outcome(cli.json, outcome)
        }
        Command::Webhook(WebhookCommand::Parse {
            provider,
            headers,
            body_file,
        }) => {
            let headers = headers
                .iter()
                .map(|h| {
                    h.split_once(':')
                        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                        .with_context(|| format!("--header {h:?} is not `Name: value`"))
                })
                .collect::<Result<Vec<_>>>()?;
            let body = std::fs::read(&body_file)
                .with_context(|| format!("reading {}", body_file.display()))?;
            let config = Config::load_for(&cli.config, Needs::OneShot)?;
            let host = Providers::start_with(&config, crate::start::options()).await?;
            match host.parse_webhook(&provider, &headers, &body).await {
                Ok(WebhookOutcome::Ignored(reason)) => {
                    if cli.json {
                        println!("{}", serde_json::json!({ "ignored": reason }));
                    } else {
                        println!("ignored       {reason}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Ok(WebhookOutcome::Events(events)) => {
                    let views: Vec<WebhookEventView> =
                        events.iter().map(WebhookEventView::from).collect();
                    if cli.json {
                        // One event prints as the event itself; a batch as their list.
                        match views.as_slice() {
                            [one] => println!("{}", serde_json::to_string_pretty(one)?),
                            many => println!("{}", serde_json::to_string_pretty(many)?),
                        }
                    } else {
                        for v in &views {
                            println!("event         {} ({})", v.event_id, v.event_type);
                            println!("occurred      {}", v.occurred_at.as_deref().unwrap_or("-"));
                            println!("refund        {}", v.refund.provider_refund_id);
                            println!("status        {}", v.refund.status);
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(OperationError::Webhook(e)) => {
                    let message = providers::describe_webhook_error(&e);
                    if cli.json {
                        println!("{}", serde_json::json!({ "error": message }));
                    } else {
                        println!("rejected: {message}");
                    }
                    Ok(ExitCode::from(1))
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Batch(a) => batch::run(&cli.config, cli.json, a).await,
        Command::Plugin(PluginCommand::Registry(c)) => plugins::run(&cli.config, cli.json, c).await,
        Command::Plugin(PluginCommand::Inspect { file }) => {
            let engine = Engine::new(Default::default())?;
            let (info, component) = providers::inspect(&engine, &file).await?;
            let view = ProviderInfoView::from(&info);
            if cli.json {
                let out = serde_json::json!({
                    "describe": view, "contract": component.contract().as_str(),
                    "imports": component.imports,
                    "sha256": component.sha256, "size_bytes": component.size,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("provider      {} ({})", view.id, view.display_name);
                println!("version       {}", view.version);
                println!("currencies    {}", view.currencies.join(", "));
                println!("partial       {}", view.partial_refunds);
                println!("multiple      {}", view.multiple_refunds);
                let window = view
                    .refund_window_days
                    .map_or("none".into(), |d| format!("{d} days"));
                println!("window        {window}");
                println!("queries       {}", view.status_queries);
                let range = view
                    .max_list_range_days
                    .map_or("none".into(), |d| format!("{d} days"));
                println!("list range    {range}");
                println!("contract      refundry:provider@{}", component.contract());
                println!("size          {} bytes", component.size);
                println!("sha256        {}", component.sha256);
                println!("imports");
                for i in &component.imports {
                    println!("  {i}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "sandbox")]
        Command::Sandbox(SandboxCommand { simulator, matches }) => {
            (simulator.serve)(matches)
                .await
                .with_context(|| format!("{} sandbox", simulator.id))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints a refund or the reason there is none. Exit code 1 for a provider refusal or failure,
/// so scripts can tell it from a usage or configuration error (2).
fn print_outcome(
    json: bool,
    outcome: Result<refundry_runtime::Refund, OperationError>,
) -> Result<ExitCode> {
    match outcome {
        Ok(refund) => {
            let v = RefundView::from(&refund);
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("refund        {}", v.provider_refund_id);
                println!("status        {} ({})", v.status, v.provider_status);
                println!("amount        {} {}", v.amount_display, v.currency);
                println!("original      {}", v.original_transaction_id);
                println!(
                    "external id   {}",
                    v.external_refund_id.as_deref().unwrap_or("-")
                );
                if let Some(reason) = &v.failure_reason {
                    println!("failure       {reason}");
                }
                println!("created       {}", v.created_at.as_deref().unwrap_or("-"));
                println!("updated       {}", v.updated_at.as_deref().unwrap_or("-"));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(OperationError::Refund(e)) => {
            let v = RefundErrorView::from(&e);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "error": v }))?
                );
            } else {
                println!("{}", providers::describe_refund_error(&e));
            }
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

/// `refundry serve`: the service on its listener until SIGINT or SIGTERM.
async fn serve(config_path: &Path, args: ServeArgs) -> Result<ExitCode> {
    let config = Config::load(config_path)?;
    if config.server.tokens.is_empty() {
        bail!(
            "{}: [server.tokens] is empty; configure at least one bearer token \
             (e.g. [server.tokens.gateway] token = \"env:REFUNDRY_TOKEN\", scopes = [\"refunds\"]) \
             before serving",
            config_path.display()
        );
    }
    // First: a bad certificate or key stops the start at once, naming the file.
    let tls = config
        .server
        .tls
        .as_ref()
        .map(refundry_api::tls::acceptor)
        .transpose()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let service = RefundService::start_with(&config, crate::start::options()).await?;
    let outbox = refundry_service::outbound_events::Outbox::new(
        service.ledger().clone(),
        &config.events,
        service.providers().clock().clone(),
    );
    if let Some(outbox) = &outbox {
        // Before the first request: a new endpoint is sent every event from here on.
        outbox
            .register()
            .await
            .context("registering the event endpoints")?;
    }
    let addr = args.listen.unwrap_or(config.server.listen);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let bound = listener.local_addr()?;
    let mut endpoint = refundry_api::server::Endpoint::new(listener, config.server.connections);
    if let Some(acceptor) = tls {
        endpoint = endpoint.with_tls(acceptor);
    }
    // Installed before the address is announced: whoever reads the line may signal at once.
    let shutdown = shutdown_signal()?;
    {
        // The first stdout line, which tests and xtask read to learn the port.
        let mut out = std::io::stdout().lock();
        writeln!(out, "refundry listening on {scheme}://{bound}")?;
        out.flush()?;
    }
    tracing::info!(address = %bound, "listening");
    let janitor = service.spawn_janitor();
    // Other hosts' plugin version changes, on a shared (PostgreSQL) ledger.
    let follower = refundry_service::registry::follow::spawn(
        service.providers().registry().clone(),
        std::time::Duration::from_secs(5),
    );
    let reconciliation = service.spawn_reconciliation(config.reconcile);
    let outbox = outbox.map(|outbox| {
        tracing::info!(
            endpoints = config.events.endpoints.len(),
            "delivering refund events"
        );
        outbox.spawn()
    });
    let watcher = config.plugins.watch.clone().map(|dir| {
        tracing::info!(dir = %dir.display(), "watching for plugin files");
        let registry = service.providers().registry().clone();
        refundry_service::registry::watch::spawn(registry, dir, config.plugins.watch_interval)
    });
    let served = refundry_api::serve(service, &config.server.tokens, endpoint, shutdown).await;
    janitor.abort();
    reconciliation.abort();
    if let Some(o) = outbox {
        o.abort();
    }
    if let Some(w) = watcher {
        w.abort();
    }
    if let Some(f) = follower {
        f.abort();
    }
    served.context("serving")?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Completes on the first SIGINT or SIGTERM.
#[cfg(unix)]
fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down: finishing requests in flight");
    })
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// The ledger in the configured database, for the offline commands.
async fn open_ledger(config_path: &Path) -> Result<Ledger> {
    let config = Config::load_for(config_path, Needs::OneShot)?;
    if config.postgres.is_some() {
        let db = config
            .open_database()
            .await
            .context("connecting to the PostgreSQL ledger ([database] url)")?;
        return Ok(Ledger::new(db));
    }
    let Some(path) = config.database.as_deref() else {
        bail!(
            "{}: the database is in memory ([database] path = \":memory:\"), so there is \
             nothing to read",
            config_path.display()
        );
    };
    let db = Database::open_with(Some(path), config.synchronous)
        .with_context(|| format!("opening the database {}", path.display()))?;
    Ok(Ledger::new(db))
}

/// Writes the whole selection, page by page; the number of refunds written.
async fn export_selection(
    ledger: &Ledger,
    query: ListQuery,
    format: export::Format,
    out: impl Write,
) -> Result<usize> {
    let mut writer = export::Writer::new(format, out)?;
    let mut count = 0;
    let mut pager = export::Pager::new(query);
    while let Some(q) = pager.next_query() {
        let page = ledger.list(q).await?;
        pager.advance(&page);
        count += page.refunds.len();
        page.refunds.iter().try_for_each(|r| writer.write(r))?;
    }
    writer.finish()?;
    Ok(count)
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// A page of refunds as a table.
fn print_page(page: &Page) {
    if page.refunds.is_empty() {
        println!("no refunds");
        return;
    }
    let rows: Vec<[String; 6]> = page
        .refunds
        .iter()
        .map(commands::table::refund_cells)
        .collect();
    // Amounts line up on the right, everything else on the left.
    commands::table::print(commands::table::REFUND_HEADER, &rows, &[3]);
    if let Some(next) = &page.next_cursor {
        println!("more: --cursor {next}");
    }
}
