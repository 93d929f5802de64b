//! A private PostgreSQL server for tests, benchmarks and the demo: a cluster made in a temporary
//! folder (`initdb`), started on a free loopback port (`pg_ctl`), and stopped and removed when
//! dropped, or by a reaper process when the process that started it ends without dropping it.
//! PostgreSQL refuses to run as root, so as root (as CI runs) the server runs as the `postgres`
//! system user that Debian's package creates, with the folder given to it.
//!
//! Standard library only (and `tempfile`), so that xtask can use it without the host's crates.

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
                options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_serves_on_its_port_and_is_gone_once_dropped() {
        let cluster = PgCluster::start(false).unwrap();
        let port = cluster.port();
        let data = cluster.dir.path().to_owned();
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        let url = cluster.create_database("one").unwrap();
        assert_eq!(url, format!("postgres://refundry@127.0.0.1:{port}/one"));
        assert!(
            cluster.create_database("one").is_err(),
            "a database is made once"
        );
        drop(cluster);
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
        assert!(!data.exists(), "its folder is removed");
    }
}
