//! `[plugins] watch = "dir"`: a folder whose `.wasm` files are loaded as versions as they appear
//! (not activated). A file is tried again only when its size or modification time changes, so
//! one still being copied in is loaded once it is complete, and a bad one is logged once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;

use super::Registry;

/// What one look at the folder found, per file tried.
#[derive(Debug)]
pub struct Tried {
    /// The file.
    pub path: PathBuf,
    /// The version loaded (`new` false: already loaded), or why not.
    pub result: Result<super::Loaded, String>,
}

/// The folder and what was seen in it.
pub struct Watcher {
    dir: PathBuf,
    seen: HashMap<PathBuf, (u64, Option<SystemTime>)>,
}

impl Watcher {
    /// Watches `dir` (it may not exist yet).
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            seen: HashMap::new(),
        }
    }

    /// Loads every `.wasm` file that is new or changed since the last pass.
    pub async fn pass(&mut self, registry: &Registry) -> Vec<Tried> {
        let mut tried = Vec::new();
        for (path, stamp) in wasm_files(&self.dir) {
            if self.seen.get(&path) == Some(&stamp) {
                continue;
            }
            self.seen.insert(path.clone(), stamp);
            let result = match std::fs::read(&path) {
                Ok(bytes) => registry.load(None, bytes).await.map_err(|e| e.to_string()),
                Err(e) => Err(format!("cannot read it: {e}")),
            };
            match &result {
                Ok(l) if l.new => tracing::info!(
                    file = %path.display(), provider = %l.version.provider,
                    version = %l.version.version, "watched plugin file loaded"
                ),
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(file = %path.display(), %error, "watched plugin file not loaded")
                }
            }
            tried.push(Tried { path, result });
        }
        tried
    }
}

/// Starts watching `dir` every `interval`, until the handle is aborted.
pub fn spawn(registry: Arc<Registry>, dir: PathBuf, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut watcher = Watcher::new(dir);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            watcher.pass(&registry).await;
        }
    })
}

fn wasm_files(dir: &Path) -> Vec<(PathBuf, (u64, Option<SystemTime>))> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "wasm"))
        .filter_map(|e| {
            let meta = e.metadata().ok().filter(|m| m.is_file())?;
            Some((e.path(), (meta.len(), meta.modified().ok())))
        })
        .collect();
    files.sort();
    files
}
