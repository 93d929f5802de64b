//! For the tests of the ledger and of the crates that use it: sample rows, and a private
//! PostgreSQL server.

use chrono::{DateTime, Utc};

use crate::{Failure, RefundRecord, Status};

/// A refund record numbered `n`: failed, with a reason that needs CSV quoting.
pub fn record(n: u32) -> RefundRecord {
    let at = DateTime::parse_from_rfc3339("2026-11-25T10:00:00.5Z")
        .unwrap()
        .with_timezone(&Utc);
    RefundRecord {
        id: format!("rf_{n:04}"),
        provider: "mfs-africa".into(),
        plugin_version: "0.1.0".into(),
        plugin_sha256: "ab".repeat(32),
        external_refund_id: format!("ext-{n}"),
        original_transaction_id: "tx-1".into(),
        amount: 150_050,
        currency: "KES".into(),
        reason: Some("customer, said \"no\"".into()),
        order_id: None,
        status: Status::Failed,
        provider_refund_id: None,
        provider_status: Some("FAILED".into()),
        failure: Some(Failure {
            code: "amount_exceeded".into(),
            message: "=cmd|' /C calc'!A0".into(),
            provider_code: Some("E12".into()),
        }),
        created_at: at,
        updated_at: at,
    }
}

pub use pg_cluster::{PgCluster, shared_cluster, test_database};

/// A ledger on a new database of the test process's private PostgreSQL cluster.
pub async fn pg_ledger(label: &str) -> crate::Ledger {
    crate::Ledger::new(pg_database(label).await)
}

/// A new database of the test process's private PostgreSQL cluster, connected and migrated.
pub async fn pg_database(label: &str) -> crate::db::Database {
    let url = tokio::task::spawn_blocking({
        let label = label.to_owned();
        move || test_database(&label)
    })
    .await
    .expect("a test database");
    crate::db::Database::connect(&url, crate::postgres::PgOptions::default())
        .await
        .expect("the test database connects and migrates")
}

/// A private PostgreSQL server for tests, benchmarks and the demo: a cluster made in a temporary
/// folder (`initdb`), started on a free loopback port (`pg_ctl`), and stopped and removed when
/// dropped. PostgreSQL refuses to run as root, so as root (as CI runs) the server runs as the
/// `postgres` system user that Debian's package creates, with the folder given to it.
mod pg_cluster {
    use std::io::Write;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Where Debian puts the server's programs.
    const BIN: &str = "/usr/lib/postgresql/15/bin";

    /// A running private cluster.
    pub struct PgCluster {
        dir: tempfile::TempDir,
        port: u16,
        as_postgres: bool,
        /// Stops the cluster when this process ends, however it ends (see [`PgCluster::start`]).
        reaper: Option<Child>,
    }

    impl PgCluster {
        /// Makes and starts a cluster. `durable` false turns off `fsync` (tests: nothing
        /// survives them anyway); benchmarks keep PostgreSQL's defaults. A reaper process
        /// stops the server and removes its folder when this process ends without dropping the
        /// cluster (a panic in a static, a kill): it waits for its standard input, a pipe whose
        /// only writer is this process, to close.
        pub fn start(durable: bool) -> std::io::Result<Self> {
            let bin = Path::new(BIN);
            if !bin.join("initdb").exists() {
                return Err(std::io::Error::other(format!(
                    "PostgreSQL's server is not installed ({BIN}/initdb is missing): \
                     `apt-get install postgresql` (cargo xtask test installs it)"
                )));
            }
            let dir = tempfile::Builder::new().prefix("refundry-pg-").tempdir()?;
            let as_postgres = is_root();
            if as_postgres {
                run(Command::new("chown").arg("postgres:").arg(dir.path()))?;
            }
            let data = dir.path().join("data");
            let mut cluster = Self {
                dir,
                port: 0,
                as_postgres,
                reaper: None,
            };
            run(cluster
                .command("initdb")
                .args([
                    "-A",
                    "trust",
                    "-U",
                    "refundry",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "-D",
                ])
                .arg(&data))?;
            let mut last = None;
            // The port is free when asked for, and may be taken before the server binds it.
            for _ in 0..5 {
                let port = free_port()?;
                let mut options = format!(
                    "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=400 \
                     -c shared_buffers=128MB",
                    cluster.dir.path().display()
                );
                if !durable {
                    options.push_str(
                        " -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
                    );
                }
                let started = run(cluster
                    .command("pg_ctl")
                    .args(["-w", "-t", "30", "-D"])
                    .arg(&data)
                    .arg("-l")
                    .arg(cluster.dir.path().join("server.log"))
                    .args(["-o", &options, "start"]));
                match started {
                    Ok(()) => {
                        cluster.port = port;
                        cluster.reaper = Some(cluster.reaper()?);
                        return Ok(cluster);
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| std::io::Error::other("PostgreSQL did not start")))
        }

        /// The loopback port it listens on.
        pub fn port(&self) -> u16 {
            self.port
        }

        /// The URL of database `name` in it (made by [`PgCluster::create_database`]).
        pub fn url(&self, name: &str) -> String {
            format!("postgres://refundry@127.0.0.1:{}/{name}", self.port)
        }

        /// Makes an empty database and returns its URL.
        pub fn create_database(&self, name: &str) -> std::io::Result<String> {
            run(Command::new(Path::new(BIN).join("createdb"))
                .args(["-h", "127.0.0.1", "-U", "refundry", "-p"])
                .arg(self.port.to_string())
                .arg(name))?;
            Ok(self.url(name))
        }

        /// The server's log (for a failed test's message).
        pub fn log(&self) -> String {
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
        }

        fn command(&self, program: &str) -> Command {
            let path = Path::new(BIN).join(program);
            if self.as_postgres {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(path);
                c
            } else {
                Command::new(path)
            }
        }

        fn stop_command(&self) -> Command {
            let mut c = self.command("pg_ctl");
            c.args(["-D"])
                .arg(self.dir.path().join("data"))
                .args(["-m", "immediate", "stop"]);
            c
        }

        fn reaper(&self) -> std::io::Result<Child> {
            let stop = self.stop_command();
            let mut words: Vec<String> = std::iter::once(stop.get_program())
                .chain(stop.get_args())
                .map(|w| shell_quote(&w.to_string_lossy()))
                .collect();
            words.push(">/dev/null 2>&1;".into());
            let script = format!(
                "cat >/dev/null; {} rm -rf {}",
                words.join(" "),
                shell_quote(&self.dir.path().to_string_lossy())
            );
            Command::new("sh")
                .args(["-c", &script])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        }
    }

    impl Drop for PgCluster {
        fn drop(&mut self) {
            if self.port != 0 {
                let _ = self
                    .stop_command()
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            if let Some(mut reaper) = self.reaper.take() {
                // Closing its input lets it finish (the server is already stopped).
                if let Some(mut input) = reaper.stdin.take() {
                    let _ = input.flush();
                }
                let _ = reaper.wait();
            }
        }
    }

    /// One cluster for the whole test process, started on first use and stopped by its reaper
    /// when the process ends.
    pub fn shared_cluster() -> &'static PgCluster {
        static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
        CLUSTER.get_or_init(|| PgCluster::start(false).expect("a private PostgreSQL cluster"))
    }

    /// A new empty database in the process's shared cluster, named after `label`.
    pub fn test_database(label: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let name = format!(
            "t{}_{}_{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        shared_cluster()
            .create_database(&name)
            .expect("a test database")
    }

    fn is_root() -> bool {
        Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false)
    }

    fn free_port() -> std::io::Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    }

    fn run(command: &mut Command) -> std::io::Result<()> {
        let out = command.stdin(Stdio::null()).output()?;
        if out.status.success() {
            return Ok(());
        }
        Err(std::io::Error::other(format!(
            "{:?} failed ({}): {}{}",
            command.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }

    fn shell_quote(word: &str) -> String {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}
