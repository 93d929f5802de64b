//! Harness for the end-to-end tests of `refundry serve`: the real binary as a child process on
//! loopback, talking to both provider sandboxes (in-process, real HTTP servers on loopback that
//! outlive a `kill -9` of the service).
//!
//! A [`Service`] owns a fresh temporary folder (config, SQLite database, one stderr log per run),
//! the child process, both sandboxes and an HTTP client. Waiting is always on a condition with a
//! deadline ([`wait_for`], [`wait_until`]), never a fixed sleep.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::tls::TestCert;
use crate::{MfsSandbox, PeSandbox, plugin_path};

/// The provider ids as configured.
pub const MFS: &str = "mfs-africa";
/// The provider ids as configured.
pub const PE: &str = "pagoefectivo";

/// What a test may change in the service's configuration and start-up.
#[derive(Debug, Clone)]
pub struct Options {
    /// `[janitor] backoff_ms` (default 200, 400, 800: fast, for tests).
    pub janitor_backoff_ms: Vec<u64>,
    /// `[janitor] interval_ms` (default 50).
    pub janitor_interval_ms: u64,
    /// `[retry] attempts` (default 3).
    pub retry_attempts: u32,
    /// `[retry] backoff_ms` (default 20, 50).
    pub retry_backoff_ms: Vec<u64>,
    /// `[http] timeout_ms` (default: the host's).
    pub http_timeout_ms: Option<u64>,
    /// `[engine] deadline_ms` (default: the host's).
    pub engine_deadline_ms: Option<u64>,
    /// `REFUNDRY_LOG` of the child (default `info`).
    pub log_filter: String,
    /// Whether the sandboxes' webhooks are pointed at the service once it listens (default true).
    pub webhooks_to_service: bool,
    /// Whether the service reaches MFS Africa through a [`LossyProxy`] (starting in
    /// pass-through mode) instead of directly (default false).
    pub mfs_proxy: bool,
    /// `[plugins] watch`: a folder (relative to the test's folder) whose `.wasm` files the
    /// service loads as they appear (default none).
    pub plugins_watch: Option<String>,
    /// `[plugins] watch_interval_ms` (default: the host's).
    pub plugins_watch_interval_ms: Option<u64>,
    /// More configuration, appended to the file as is (e.g. an `[events]` table).
    pub extra_toml: String,
    /// More keys of the `[server]` table, as is (e.g. `max_connections = 16`).
    pub server_toml: String,
    /// Serve HTTPS with this certificate (`[server.tls]`); the harness's client trusts it. The
    /// sandboxes' webhook clients do not: set `webhooks_to_service` to false with it.
    pub tls: Option<TestCert>,
    /// The service's limit of open files (`ulimit -n`; default: the test's own).
    pub open_files_limit: Option<u64>,
    /// `[database] url`: a PostgreSQL ledger instead of the SQLite file (default none).
    pub database_url: Option<String>,
    /// `[janitor] reversal_window_days` (default: the host's).
    pub reversal_window_days: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            janitor_backoff_ms: vec![200, 400, 800],
            janitor_interval_ms: 50,
            retry_attempts: 3,
            retry_backoff_ms: vec![20, 50],
            http_timeout_ms: None,
            engine_deadline_ms: None,
            log_filter: "info".into(),
            webhooks_to_service: true,
            mfs_proxy: false,
            plugins_watch: None,
            plugins_watch_interval_ms: None,
            extra_toml: String::new(),
            server_toml: String::new(),
            tls: None,
            open_files_limit: None,
            database_url: None,
            reversal_window_days: None,
        }
    }
}

/// An HTTP answer of the service: status, headers and body (JSON when it parses, else a string).
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body as JSON, or `Value::String` of the raw text when it is not JSON.
    pub body: Value,
    /// The raw body.
    pub text: String,
}

impl Reply {
    /// Whether `Idempotent-Replayed: true` was sent.
    pub fn replayed(&self) -> bool {
        self.headers
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    /// `body.error.code`, or "" when absent.
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// The refund object of a create answer: the body itself (201, 202), or `body.refund` (422).
    pub fn refund(&self) -> &Value {
        if self.body.get("refund").is_some_and(Value::is_object) {
            &self.body["refund"]
        } else {
            &self.body
        }
    }
}

/// Another `refundry serve` process on a [`Service`]'s database ([`Service::another_host`]).
pub struct Host {
    /// Its name in file names.
    pub label: String,
    /// Its base URL, `http://127.0.0.1:PORT` (a new port after each restart).
    pub url: String,
    config_path: PathBuf,
    dir: PathBuf,
    options: Options,
    child: Option<Child>,
    runs: u32,
}

impl Host {
    async fn spawn(&mut self) {
        let run = self.runs;
        self.runs += 1;
        let (child, url) = spawn_serve(
            &self.config_path,
            &self.log_path(run),
            &self.dir.join(format!("serve-{}-{run}.stdout", self.label)),
            &self.options,
        )
        .await;
        self.url = url;
        self.child = Some(child);
    }

    fn log_path(&self, run: u32) -> PathBuf {
        self.dir
            .join(format!("serve-{}-{run}.stderr.log", self.label))
    }

    /// `kill -9`s it and waits for it to be gone.
    pub async fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("SIGKILL refundry serve");
            let _ = child.wait().await;
        }
    }

    /// Starts it again (killing it first when it runs); it listens on a new port.
    pub async fn restart(&mut self) {
        self.kill_9().await;
        self.spawn().await;
    }

    /// Every stderr log line of every run so far.
    pub fn logs(&self) -> String {
        (0..self.runs)
            .map(|run| std::fs::read_to_string(self.log_path(run)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Starts `refundry serve` on `config` (stderr to `log`, stdout after its first line to
/// `stdout_log`) and returns it with its URL, read from that first line.
async fn spawn_serve(
    config: &Path,
    log: &Path,
    stdout_log: &Path,
    options: &Options,
) -> (Child, String) {
    let stderr = std::fs::File::create(log).unwrap();
    let mut command = match options.open_files_limit {
        None => Command::new(refundry_binary()),
        Some(limit) => {
            // The shell lowers its limit and becomes the service (same pid).
            let mut sh = Command::new("sh");
            sh.args(["-c", "ulimit -n \"$0\" && exec \"$@\"", &limit.to_string()])
                .arg(refundry_binary());
            sh
        }
    };
    let mut child = command
        .args(["--log-format", "json", "serve", "--config"])
        .arg(config)
        .args(["--listen", "127.0.0.1:0"])
        .env("REFUNDRY_LOG", &options.log_filter)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn refundry serve");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
    let line = match first {
        Ok(Ok(Some(line))) => line,
        other => {
            let status = child.try_wait().ok().flatten();
            panic!(
                "refundry serve gave no URL line ({other:?}; exit status {status:?}); its \
                 stderr:\n{}",
                tail(log, 60)
            );
        }
    };
    let url = line
        .strip_prefix("refundry listening on ")
        .unwrap_or_else(|| panic!("unexpected first stdout line: {line:?}"));
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    assert!(url.starts_with(&format!("{scheme}://127.0.0.1:")), "{url}");
    // Keep reading stdout so the child never blocks on a full pipe.
    let mut stdout_file = tokio::fs::File::create(stdout_log).await.unwrap();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = stdout_file.write_all(line.as_bytes()).await;
            let _ = stdout_file.write_all(b"\n").await;
        }
    });
    (child, url.trim_end_matches('/').to_owned())
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// A fresh folder under the system temp dir, unique per process and call.
pub fn fresh_dir() -> PathBuf {
    let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "refundry-svc-{}-{n}-{nanos:08x}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("create the test's temp dir");
    dir
}

/// The `refundry` binary of the build the tests belong to: `target/<profile>/refundry`, next to
/// the `deps/` folder holding the test executable.
pub fn refundry_binary() -> PathBuf {
    workspace_binary("refundry", "refundry-cli")
}

/// The binary `name` of workspace package `package`, built beside the test executable (as
/// `cargo xtask test` builds it before the tests run).
pub fn workspace_binary(name: &str, package: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps");
    let bin = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p {package} --bin {name}` (with the same \
         CARGO_TARGET_DIR as the tests) first",
        bin.display()
    );
    bin
}

/// What one run of the `refundry` command line gave.
#[derive(Debug)]
pub struct CliRun {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CliRun {
    /// The exit code and both outputs, for an assertion's message.
    pub fn show(&self) -> String {
        format!(
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    /// Asserts the exit code (the output in the message); returns stdout.
    pub fn expect_code(&self, code: i32, what: &str) -> &str {
        assert_eq!(self.code, Some(code), "{what}: {}", self.show());
        &self.stdout
    }
}

/// Runs the `refundry` binary with `args` and `env` to completion (at most `timeout`), logging
/// at `warn` and without the test's own `REFUNDRY_URL` or `REFUNDRY_TOKEN`.
pub async fn run_refundry(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> CliRun {
    let mut command = Command::new(refundry_binary());
    command
        .args(args)
        .env_remove("REFUNDRY_URL")
        .env_remove("REFUNDRY_TOKEN")
        .env("REFUNDRY_LOG", "warn")
        .envs(env.iter().copied())
        .kill_on_drop(true);
    let out = tokio::time::timeout(timeout, command.output())
        .await
        .unwrap_or_else(|_| panic!("refundry {args:?} did not finish in {timeout:?}"))
        .expect("run refundry");
    CliRun {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Polls `check` every 25 ms until it gives `Some`, or panics naming `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls `check` every 25 ms until it is true, or panics naming `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(what, timeout, || {
        let fut = check();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// A running `refundry serve` with both sandboxes.
pub struct Service {
    /// The MFS Africa sandbox.
    pub mfs: MfsSandbox,
    /// The PagoEfectivo sandbox.
    pub pe: PeSandbox,
    /// The base URL of the running service, `http://127.0.0.1:PORT` (`https://` with TLS).
    pub url: String,
    /// The bearer token with scope `refunds` only.
    pub gateway_token: String,
    /// The bearer token with scopes `refunds` and `admin`.
    pub ops_token: String,
    /// The options it was started with.
    pub options: Options,
    /// The proxy in front of the MFS Africa sandbox, when the options ask for one.
    pub mfs_proxy: Option<LossyProxy>,
    dir: PathBuf,
    config_path: PathBuf,
    child: Option<Child>,
    runs: u32,
    client: reqwest::Client,
}

impl Service {
    /// Starts both sandboxes and the service with default options.
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    /// Starts both sandboxes and the service with `options`.
    pub async fn start_with(options: Options) -> Self {
        // What is missing from the build shows first, before any folder is made.
        refundry_binary();
        plugin_path(MFS);
        plugin_path(PE);
        let mfs = MfsSandbox::start(None).await;
        let pe = PeSandbox::start(None).await;
        let dir = fresh_dir();
        let token = |name: &str| format!("{name}-{:032x}", crate::rand_u128());
        let mfs_proxy = match options.mfs_proxy {
            true => Some(LossyProxy::start(mfs.handle.addr(), false).await),
            false => None,
        };
        let client = match &options.tls {
            Some(cert) => cert.client(),
            None => reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        };
        let mut service = Self {
            mfs_proxy,
            mfs,
            pe,
            url: String::new(),
            gateway_token: token("gw"),
            ops_token: token("ops"),
            options,
            config_path: dir.join("refundry.toml"),
            dir,
            child: None,
            runs: 0,
            client,
        };
        if let Some(cert) = &service.options.tls {
            std::fs::write(service.dir.join("cert.pem"), &cert.cert_pem).unwrap();
            std::fs::write(service.dir.join("key.pem"), &cert.key_pem).unwrap();
        }
        std::fs::write(&service.config_path, service.config_toml()).unwrap();
        // A harness mistake shows here, not as a service that will not start.
        refundry_service::Config::load(&service.config_path).expect("the test config parses");
        service.spawn().await;
        service
    }

    /// The process id of the running service.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// The test's temporary folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The SQLite database file.
    pub fn db_path(&self) -> PathBuf {
        self.dir.join("refundry.db")
    }

    /// The configuration file the service runs on.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The precompiled plugin artifact folder (the host's default: `plugin-cache` beside the
    /// database).
    pub fn plugin_cache_dir(&self) -> PathBuf {
        self.dir.join("plugin-cache")
    }

    /// Every configured secret value: provider secrets (the PagoEfectivo access key included, see
    /// [`Service::config_toml`]) and both bearer tokens.
    pub fn secrets(&self) -> Vec<(&'static str, String)> {
        vec![
            ("mfs api_secret", self.mfs.creds.api_secret.clone()),
            ("mfs webhook_secret", self.mfs.creds.webhook_secret.clone()),
            ("pagoefectivo secret_key", self.pe.creds.secret_key.clone()),
            ("pagoefectivo access_key", self.pe.creds.access_key.clone()),
            ("gateway token", self.gateway_token.clone()),
            ("ops token", self.ops_token.clone()),
        ]
    }

    /// The configuration file's text, with the provider tables the sandboxes' `provider_toml`
    /// write (PagoEfectivo's `access_key` among the secrets, so the secrets test may demand that
    /// it never shows, like every other configured secret).
    pub fn config_toml(&self) -> String {
        let o = &self.options;
        let list = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
        let mut limits = match o.http_timeout_ms {
            Some(ms) => format!("[http]\ntimeout_ms = {ms}\n"),
            None => String::new(),
        };
        if let Some(ms) = o.engine_deadline_ms {
            limits.push_str(&format!("[engine]\ndeadline_ms = {ms}\n"));
        }
        // The artifact cache stays at its default (`plugin-cache` beside the database).
        limits.push_str("[plugins]\n");
        if let Some(dir) = &o.plugins_watch {
            limits.push_str(&format!("watch = {dir:?}\n"));
        }
        if let Some(ms) = o.plugins_watch_interval_ms {
            limits.push_str(&format!("watch_interval_ms = {ms}\n"));
        }
        let mut server = o.server_toml.clone();
        if o.tls.is_some() {
            // Relative to the config file, which is in the same folder.
            server.push_str("\n[server.tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n");
        }
        let mfs_base_url = match &self.mfs_proxy {
            Some(proxy) => proxy.url.clone(),
            None => self.mfs.base_url(),
        };
        let database = match &o.database_url {
            Some(url) => format!("url = {url:?}"),
            None => format!("path = {:?}", self.db_path().display().to_string()),
        };
        format!(
            r#"
{limits}
[database]
{database}

[server]
listen = "127.0.0.1:0"
{server}
[server.tokens.gateway]
token = "{gateway}"
scopes = ["refunds"]
[server.tokens.ops]
token = "{ops}"
scopes = ["refunds", "admin"]

[retry]
attempts = {attempts}
backoff_ms = [{retry_backoff}]

[janitor]
interval_ms = {interval}
backoff_ms = [{janitor_backoff}]
concurrency = 16
{reversal}

{mfs}
{pe}
{extra}
"#,
            gateway = self.gateway_token,
            ops = self.ops_token,
            attempts = o.retry_attempts,
            retry_backoff = list(&o.retry_backoff_ms),
            interval = o.janitor_interval_ms,
            janitor_backoff = list(&o.janitor_backoff_ms),
            reversal = o
                .reversal_window_days
                .map(|d| format!("reversal_window_days = {d}"))
                .unwrap_or_default(),
            mfs = MfsSandbox::provider_toml(&self.mfs.creds, &mfs_base_url),
            pe = self.pe.provider_toml(&self.pe.creds),
            extra = o.extra_toml,
        )
    }

    fn log_path(&self, run: u32) -> PathBuf {
        self.dir.join(format!("serve-{run}.stderr.log"))
    }

    /// Spawns the binary on the config, reads its URL line and points the sandboxes' webhooks at
    /// it (unless the options say not to).
    async fn spawn(&mut self) {
        let run = self.runs;
        self.runs += 1;
        let (child, url) = spawn_serve(
            &self.config_path,
            &self.log_path(run),
            &self.dir.join(format!("serve-{run}.stdout")),
            &self.options,
        )
        .await;
        self.url = url;
        self.child = Some(child);
        if self.options.webhooks_to_service {
            let mfs_hook = format!("{}/v1/webhooks/{MFS}", self.url);
            let pe_hook = format!("{}/v1/webhooks/{PE}", self.url);
            self.mfs
                .control("webhooks/config", json!({ "callback_url": mfs_hook }))
                .await;
            self.pe
                .control
                .post("webhooks/config", json!({ "callback_url": pe_hook }))
                .await;
        }
    }

    /// Another `refundry serve` on this service's configuration, and so on its database: a
    /// second host behind the same load balancer (useful with [`Options::database_url`]). It
    /// has a configuration file of its own, the same but for its artifact cache folder
    /// (`plugin-cache-{label}`); the sandboxes' webhooks stay pointed at this service.
    pub async fn another_host(&self, label: &str) -> Host {
        let config_path = self.dir.join(format!("refundry-{label}.toml"));
        let text = self.config_toml().replacen(
            "[plugins]\n",
            &format!("[plugins]\ncache = \"plugin-cache-{label}\"\n"),
            1,
        );
        std::fs::write(&config_path, text).unwrap();
        let mut host = Host {
            label: label.to_owned(),
            url: String::new(),
            config_path,
            dir: self.dir.clone(),
            options: self.options.clone(),
            child: None,
            runs: 0,
        };
        host.spawn().await;
        host
    }

    /// `kill -9`s the service and waits for it to be gone.
    pub async fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("SIGKILL refundry serve");
            let _ = child.wait().await;
        }
    }

    /// Stops the service gracefully (SIGTERM: it finishes the requests in flight) and waits for
    /// it to exit; panics unless it exits with success within 30 s.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().expect("a running child has a pid");
        // `kill` the command: std has no way to send SIGTERM, and this keeps libc out.
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM {pid}: {sent}");
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("refundry serve stops within 30 s of SIGTERM")
            .expect("wait for refundry serve");
        assert!(
            status.success(),
            "refundry serve exited with {status} after SIGTERM; its stderr:\n{}",
            tail(&self.log_path(self.runs - 1), 40)
        );
    }

    /// Starts the service again on the same config and database (after [`Service::kill_9`] or
    /// [`Service::stop`]; a running one is killed first); it listens on a new port, and the
    /// sandboxes' webhooks follow it.
    pub async fn restart(&mut self) {
        self.kill_9().await;
        self.spawn().await;
    }

    /// Every stderr log line of every run so far.
    pub fn logs(&self) -> String {
        (0..self.runs)
            .map(|run| std::fs::read_to_string(self.log_path(run)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The raw bytes of the SQLite database and its WAL and shared-memory files.
    pub fn db_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let path = PathBuf::from(format!("{}{suffix}", self.db_path().display()));
            if let Ok(bytes) = std::fs::read(path) {
                all.extend(bytes);
            }
        }
        all
    }

    /// Sends a request to the service; `token` is the whole bearer token (or none).
    pub async fn try_send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, reqwest::Error> {
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(body) = body {
            // JSON unless the caller names another type.
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                request = request.header("content-type", "application/json");
            }
            request = request.body(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
        Ok(Reply {
            status,
            headers,
            body,
            text,
        })
    }

    /// Like [`Service::try_send`], panicking when no answer comes.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Reply {
        self.try_send(method.clone(), path, token, body, &[])
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: no answer: {e}"))
    }

    /// `POST /v1/refunds` with the gateway token; `Err` when no answer came.
    pub async fn try_post_refund(&self, body: &Value) -> Result<Reply, reqwest::Error> {
        let bytes = serde_json::to_vec(body).unwrap();
        self.try_send(
            reqwest::Method::POST,
            "/v1/refunds",
            Some(&self.gateway_token),
            Some(bytes),
            &[],
        )
        .await
    }

    /// `POST /v1/refunds` with the gateway token.
    pub async fn post_refund(&self, body: &Value) -> Reply {
        self.try_post_refund(body)
            .await
            .unwrap_or_else(|e| panic!("POST /v1/refunds {body}: no answer: {e}"))
    }

    /// `GET path` with the ops token (scopes `refunds` and `admin`).
    pub async fn get(&self, path: &str) -> Reply {
        self.send(reqwest::Method::GET, path, Some(&self.ops_token), None)
            .await
    }

    /// `GET /v1/plugins` (every provider's plugin versions and active one); panics unless 200.
    pub async fn plugins(&self) -> Value {
        let reply = self.get("/v1/plugins").await;
        assert_eq!(reply.status, 200, "GET /v1/plugins: {}", reply.text);
        reply.body
    }

    /// `POST /v1/plugins/{provider}/versions` with the ops token and `component` as the body
    /// (`application/wasm`).
    pub async fn load_plugin(&self, provider: &str, component: Vec<u8>) -> Reply {
        let path = format!("/v1/plugins/{provider}/versions");
        self.try_send(
            reqwest::Method::POST,
            &path,
            Some(&self.ops_token),
            Some(component),
            &[("content-type", "application/wasm")],
        )
        .await
        .unwrap_or_else(|e| panic!("POST {path}: no answer: {e}"))
    }

    /// `POST /v1/plugins/{provider}/activate` `{"version": version}` with the ops token.
    pub async fn activate_plugin(&self, provider: &str, version: &str) -> Reply {
        let body = serde_json::to_vec(&json!({ "version": version })).unwrap();
        self.send(
            reqwest::Method::POST,
            &format!("/v1/plugins/{provider}/activate"),
            Some(&self.ops_token),
            Some(body),
        )
        .await
    }

    /// `DELETE /v1/plugins/{provider}/versions/{version}` with the ops token.
    pub async fn remove_plugin(&self, provider: &str, version: &str) -> Reply {
        self.send(
            reqwest::Method::DELETE,
            &format!("/v1/plugins/{provider}/versions/{version}"),
            Some(&self.ops_token),
            None,
        )
        .await
    }

    /// `GET /v1/refunds/{id}` (the refund and its history); panics unless 200.
    pub async fn refund(&self, id: &str) -> Value {
        let reply = self.get(&format!("/v1/refunds/{id}")).await;
        assert_eq!(reply.status, 200, "GET refund {id}: {}", reply.text);
        reply.body
    }

    /// `GET /v1/refunds/{id}/exchanges`; panics unless 200.
    pub async fn exchanges(&self, id: &str) -> Value {
        let reply = self.get(&format!("/v1/refunds/{id}/exchanges")).await;
        assert_eq!(reply.status, 200, "GET exchanges {id}: {}", reply.text);
        reply.body
    }

    /// Every refund of the selection `query` (e.g. `provider=mfs-africa`), following cursors with
    /// pages of `limit`.
    pub async fn list_all(&self, query: &str, limit: usize) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10_000 {
            let mut path = format!("/v1/refunds?limit={limit}");
            if !query.is_empty() {
                path.push('&');
                path.push_str(query);
            }
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={}", urlencode(c)));
            }
            let reply = self.get(&path).await;
            assert_eq!(reply.status, 200, "GET {path}: {}", reply.text);
            let page = reply.body["refunds"]
                .as_array()
                .unwrap_or_else(|| panic!("GET {path}: no refunds array: {}", reply.text));
            assert!(
                page.len() <= limit,
                "page over limit {limit}: {}",
                page.len()
            );
            all.extend(page.iter().cloned());
            match reply.body["next_cursor"].as_str() {
                Some(next) if !next.is_empty() => cursor = Some(next.to_owned()),
                _ => return all,
            }
        }
        panic!("more than 10000 pages");
    }

    /// Waits until refund `id` has `status`; returns its detail.
    pub async fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        let what = format!("refund {id} to become {status}");
        wait_for(&what, timeout, || async {
            let refund = self.refund(id).await;
            (refund["status"] == status).then_some(refund)
        })
        .await
    }

    /// The MFS Africa sandbox's refunds (`GET /_sandbox/refunds`), oldest first.
    pub async fn mfs_refunds(&self) -> Vec<Value> {
        data(self.mfs.inspect("refunds").await)
    }

    /// The MFS Africa sandbox processes every refund it holds pending, again and again, until
    /// the ledger holds at least `n` MFS Africa refunds and all of them are final (the service
    /// learns of each by webhook or janitor); returns them. Panics after `timeout`.
    pub async fn settle_mfs_until_final(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            for refund in self.mfs_refunds().await {
                if refund["status"] == "pending" {
                    let url = format!(
                        "{}/_sandbox/refunds/{}/status",
                        self.mfs.base_url(),
                        str_of(&refund["refund_id"])
                    );
                    // A 409 only means it moved meanwhile.
                    let _ = self
                        .client
                        .post(url)
                        .json(&json!({"status": "processed"}))
                        .send()
                        .await;
                }
            }
            let ledger = self.list_all(&format!("provider={MFS}"), 500).await;
            let not_final = ledger
                .iter()
                .filter(|r| !matches!(str_of(&r["status"]), "processed" | "failed" | "reversed"))
                .count();
            if ledger.len() >= n && not_final == 0 {
                return ledger;
            }
            assert!(
                Instant::now() < deadline,
                "not every refund is final: {} in the ledger, {not_final} not final",
                ledger.len()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The PagoEfectivo sandbox's refunds, oldest first.
    pub async fn pe_refunds(&self) -> Vec<Value> {
        data(self.pe.control.get("refunds").await)
    }

    /// How many `POST /v1/refunds` the MFS Africa sandbox received (faulted ones included).
    pub async fn mfs_create_calls(&self) -> u64 {
        self.mfs.inspect("stats").await["requests"]["POST /v1/refunds"]
            .as_u64()
            .unwrap()
    }

    /// How many `POST /v1/refunds` the PagoEfectivo sandbox received (faulted ones included).
    pub async fn pe_create_calls(&self) -> u64 {
        self.pe.control.get("stats").await["requests"]["POST /v1/refunds"]
            .as_u64()
            .unwrap()
    }

    /// Clears both sandboxes' fault queues.
    pub async fn clear_faults(&self) {
        for base in [self.mfs.base_url(), self.pe.handle.base_url()] {
            let status = self
                .client
                .delete(format!("{base}/_sandbox/faults"))
                .send()
                .await
                .unwrap()
                .status();
            assert!(status.is_success(), "DELETE faults: {status}");
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // The child is killed by `kill_on_drop`. Keep the folder of a failed test for a look.
        if std::thread::panicking() {
            eprintln!(
                "refundry serve files kept in {} (logs: serve-N.stderr.log)",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn data(list: Value) -> Vec<Value> {
    list["data"].as_array().cloned().unwrap_or_default()
}

/// The last `n` lines of a file, for failure messages.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The string at `v`; panics, naming the value, when it is not one.
pub fn str_of(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

/// Asserts that `reply` has `status`, with the body in the message.
pub fn expect(reply: &Reply, status: u16, what: &str) {
    assert_eq!(
        reply.status, status,
        "{what}: expected {status}, got {}: {}",
        reply.status, reply.text
    );
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A `POST /v1/refunds` body for MFS Africa in KES.
pub fn mfs_body(txn: &str, external_id: &str, amount: i64) -> Value {
    json!({
        "provider": MFS,
        "external_refund_id": external_id,
        "original_transaction_id": txn,
        "amount": amount,
        "currency": "KES",
        "reason": "customer_return",
    })
}

/// A `POST /v1/refunds` body for PagoEfectivo in PEN, with the order id it needs.
pub fn pe_body(txn: &str, external_id: &str, amount: i64) -> Value {
    json!({
        "provider": PE,
        "external_refund_id": external_id,
        "original_transaction_id": txn,
        "amount": amount,
        "currency": "PEN",
        "reason": "producto devuelto",
        "order_id": format!("ORDER-{external_id}"),
    })
}

/// `body` with `"original"` set: the payment as the gateway recorded it, `days_ago` days back.
pub fn with_original(
    mut body: Value,
    amount: i64,
    currency: &str,
    days_ago: i64,
    settled: Option<bool>,
) -> Value {
    let completed_at = (chrono::Utc::now() - chrono::Duration::days(days_ago))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut original =
        json!({"amount": amount, "currency": currency, "completed_at": completed_at});
    if let Some(settled) = settled {
        original["settled"] = json!(settled);
    }
    body["original"] = original;
    body
}

/// What a [`LossyProxy`] does with a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward bytes both ways.
    Pass,
    /// Read the request, then hang up without forwarding or answering.
    Drop,
    /// Read nothing and answer nothing, keeping the connection open until the mode changes (then
    /// hang up): a request sent into the void, waiting.
    Hold,
}

impl ProxyMode {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => ProxyMode::Pass,
            1 => ProxyMode::Drop,
            _ => ProxyMode::Hold,
        }
    }
}

/// A TCP proxy in front of a sandbox, so that a request can leave the host and never reach the
/// provider ([`ProxyMode::Drop`], [`ProxyMode::Hold`]): the case a provider's own fault
/// injection cannot make, since a sandbox only ever fails requests it received.
pub struct LossyProxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    mode: Arc<AtomicU8>,
    /// Connections still passed before the mode becomes `Hold` (`u64::MAX`: no switch).
    pass_budget: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    held: Arc<AtomicU64>,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl LossyProxy {
    /// A proxy to `upstream` (`127.0.0.1:PORT`), dropping from the start when `dropping`.
    pub async fn start(upstream: std::net::SocketAddr, dropping: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let initial = if dropping {
            ProxyMode::Drop
        } else {
            ProxyMode::Pass
        };
        let proxy = Self {
            url,
            mode: Arc::new(AtomicU8::new(initial as u8)),
            pass_budget: Arc::new(AtomicU64::new(u64::MAX)),
            dropped: Arc::new(AtomicU64::new(0)),
            held: Arc::new(AtomicU64::new(0)),
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        let (mode, budget, dropped, held, tasks) = (
            proxy.mode.clone(),
            proxy.pass_budget.clone(),
            proxy.dropped.clone(),
            proxy.held.clone(),
            proxy.tasks.clone(),
        );
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut now = ProxyMode::from_u8(mode.load(Ordering::SeqCst));
                if now == ProxyMode::Pass {
                    // `u64::MAX` is no budget; 0 is a budget used up.
                    let exhausted = budget
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| match b {
                            u64::MAX => Some(b),
                            0 => None,
                            b => Some(b - 1),
                        })
                        .is_err();
                    if exhausted {
                        mode.store(ProxyMode::Hold as u8, Ordering::SeqCst);
                        now = ProxyMode::Hold;
                    }
                }
                let (mode, dropped, held) = (mode.clone(), dropped.clone(), held.clone());
                let task = tokio::spawn(async move {
                    match now {
                        ProxyMode::Pass => {
                            if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await
                            {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                                    .await;
                            }
                        }
                        ProxyMode::Drop => {
                            // Read what the client sends (its request), then hang up.
                            let mut buf = vec![0u8; 64 * 1024];
                            let _ = tokio::time::timeout(
                                Duration::from_millis(200),
                                inbound.read(&mut buf),
                            )
                            .await;
                            dropped.fetch_add(1, Ordering::SeqCst);
                        }
                        ProxyMode::Hold => {
                            held.fetch_add(1, Ordering::SeqCst);
                            while mode.load(Ordering::SeqCst) == ProxyMode::Hold as u8 {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                });
                tasks.lock().unwrap().push(task);
            }
        });
        proxy.tasks.lock().unwrap().push(accept);
        proxy
    }

    /// Sets what happens to new connections (and releases held ones unless `Hold`).
    pub fn set_mode(&self, mode: ProxyMode) {
        self.pass_budget.store(u64::MAX, Ordering::SeqCst);
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Passes `n` more new connections, then holds every later one.
    pub fn hold_after(&self, n: u64) {
        self.mode.store(ProxyMode::Pass as u8, Ordering::SeqCst);
        self.pass_budget.store(n, Ordering::SeqCst);
    }

    /// Starts or stops dropping requests (connections already spliced stay so).
    pub fn set_dropping(&self, dropping: bool) {
        self.set_mode(if dropping {
            ProxyMode::Drop
        } else {
            ProxyMode::Pass
        });
    }

    /// How many connections were dropped.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }

    /// How many connections were held.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::SeqCst)
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}
