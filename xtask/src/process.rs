//! Child processes of the demo and the benchmarks: servers that print their URL on their first
//! stdout line (`refundry sandbox`, `refundry serve`), killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// A child process killed when dropped, so a failed run leaves nothing running.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `command` (its stderr as the caller set it up), waits at most a minute for the first
/// stdout line naming an `http://` URL, and returns the child and that URL. The rest of stdout
/// is drained in the background so a chatty child never blocks on a full pipe.
pub fn spawn_announcing(command: &mut Command, what: &str) -> Result<(Guard, String)> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting the {what}"))?;
    let stdout = child.stdout.take().context("child stdout")?;
    let guard = Guard(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        for _ in lines {}
    });
    let line = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Some(Ok(line))) => line,
        Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            bail!("the {what} exited without printing its URL")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            bail!("the {what} printed nothing within 60 s")
        }
    };
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .with_context(|| format!("the {what} did not print its URL (printed {line:?})"))?
        .trim_end_matches('/')
        .to_owned();
    Ok((guard, url))
}
