//! A [`Host`] for running plugin logic natively: plugin unit tests and the host's native
//! benchmark (the same logic without the wasm boundary). Also the measure of a plugin's size
//! ([`code_lines_in`]), which each plugin's tests hold to its budget.
//!
//! Cheap by design, because the benchmark calls it in a hot loop: the clock is an atomic, the
//! responder a plain closure, and recording requests and log lines can be switched off.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use crate::{Host, Level, StorageError, http};

/// Answers the plugin's HTTP requests in place of a provider.
pub type Responder =
    Box<dyn Fn(&http::Request) -> Result<http::Response, http::HttpError> + Send + Sync>;

/// One log line a plugin wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Severity.
    pub level: Level,
    /// The message.
    pub message: String,
    /// Key-value fields, in order.
    pub fields: Vec<(String, String)>,
}

/// An in-process [`Host`] with a settable clock, a config map, in-memory storage, captured log
/// lines and an HTTP responder closure that also records every request sent.
pub struct FakeHost {
    now_ms: AtomicI64,
    config: HashMap<String, String>,
    storage: Mutex<HashMap<String, Vec<u8>>>,
    storage_down: bool,
    responder: Responder,
    recording: AtomicBool,
    requests: Mutex<Vec<http::Request>>,
    logs: Mutex<Vec<LogLine>>,
}

impl Default for FakeHost {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for FakeHost {
    // Config may hold secrets and the responder is opaque: show only what is safe and useful.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeHost")
            .field("now_ms", &self.now_ms())
            .field("config_keys", &self.config.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl FakeHost {
    /// A host at time 0 with no config, empty storage, recording on, and a responder that fails
    /// every request with `connect-failed` (so a test that forgot one fails loudly, not by hanging).
    pub fn new() -> Self {
        Self {
            now_ms: AtomicI64::new(0),
            config: HashMap::new(),
            storage: Mutex::new(HashMap::new()),
            storage_down: false,
            responder: Box::new(|_| {
                Err(http::HttpError::ConnectFailed(
                    "FakeHost has no responder".into(),
                ))
            }),
            recording: AtomicBool::new(true),
            requests: Mutex::new(Vec::new()),
            logs: Mutex::new(Vec::new()),
        }
    }

    /// Sets the clock (builder form).
    pub fn with_now_ms(self, ms: i64) -> Self {
        self.set_now_ms(ms);
        self
    }

    /// Sets a config value (builder form).
    pub fn with_config(mut self, key: &str, value: &str) -> Self {
        self.set_config(key, value);
        self
    }

    /// Sets the HTTP responder (builder form).
    pub fn with_responder(
        mut self,
        responder: impl Fn(&http::Request) -> Result<http::Response, http::HttpError>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.set_responder(responder);
        self
    }

    /// Stops recording requests and log lines (builder form), for hot loops where the records
    /// would only grow.
    pub fn without_recording(self) -> Self {
        self.recording.store(false, Ordering::Relaxed);
        self
    }

    /// Makes every storage call fail with `unavailable` (builder form), as a host whose store is
    /// down: storage is a cache, and a plugin must work without it.
    pub fn with_storage_down(mut self) -> Self {
        self.storage_down = true;
        self
    }

    /// Sets the clock to `ms` since the epoch.
    pub fn set_now_ms(&self, ms: i64) {
        self.now_ms.store(ms, Ordering::Relaxed);
    }

    /// Moves the clock by `delta_ms` (negative moves it back).
    pub fn advance_ms(&self, delta_ms: i64) {
        self.now_ms.fetch_add(delta_ms, Ordering::Relaxed);
    }

    /// Sets a config value.
    pub fn set_config(&mut self, key: &str, value: &str) {
        self.config.insert(key.to_owned(), value.to_owned());
    }

    /// Removes a config value.
    pub fn remove_config(&mut self, key: &str) {
        self.config.remove(key);
    }

    /// Replaces the HTTP responder.
    pub fn set_responder(
        &mut self,
        responder: impl Fn(&http::Request) -> Result<http::Response, http::HttpError>
        + Send
        + Sync
        + 'static,
    ) {
        self.responder = Box::new(responder);
    }

    /// The requests sent so far, oldest first.
    pub fn requests(&self) -> Vec<http::Request> {
        lock(&self.requests).clone()
    }

    /// The requests sent so far, emptying the record.
    pub fn take_requests(&self) -> Vec<http::Request> {
        std::mem::take(&mut *lock(&self.requests))
    }

    /// The log lines written so far, oldest first.
    pub fn logs(&self) -> Vec<LogLine> {
        lock(&self.logs).clone()
    }

    /// The stored value of `key`, as a test would inspect it.
    pub fn stored(&self, key: &str) -> Option<Vec<u8>> {
        lock(&self.storage).get(key).cloned()
    }

    /// Empties the request and log records.
    pub fn clear_records(&self) {
        lock(&self.requests).clear();
        lock(&self.logs).clear();
    }
}

impl FakeHost {
    fn storage_up(&self) -> Result<(), StorageError> {
        if self.storage_down {
            return Err(StorageError::Unavailable("FakeHost storage is down".into()));
        }
        Ok(())
    }
}

/// A poisoned lock only means another test thread panicked; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A response with `status`, the given headers (names as given) and `body`.
pub fn response(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> http::Response {
    http::Response {
        status,
        headers: headers
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        body: body.into(),
    }
}

impl Host for FakeHost {
    fn http_send(&self, req: http::Request) -> Result<http::Response, http::HttpError> {
        let answer = (self.responder)(&req);
        if self.recording.load(Ordering::Relaxed) {
            lock(&self.requests).push(req);
        }
        answer
    }

    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::Relaxed)
    }

    fn storage_get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.storage_up()?;
        Ok(lock(&self.storage).get(key).cloned())
    }

    fn storage_set(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.storage_up()?;
        lock(&self.storage).insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn storage_delete(&self, key: &str) -> Result<(), StorageError> {
        self.storage_up()?;
        lock(&self.storage).remove(key);
        Ok(())
    }

    fn config(&self, key: &str) -> Option<String> {
        self.config.get(key).cloned()
    }

    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        if self.recording.load(Ordering::Relaxed) {
            lock(&self.logs).push(LogLine {
                level,
                message: message.to_owned(),
                fields: fields
                    .iter()
                    .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            });
        }
    }
}

/// The code lines of one Rust source file, by the rules a plugin's size budget is counted in:
/// - a line counts unless, with the white space around it trimmed, it is empty or starts with
///   `//` (comments and `///`/`//!` doc comments: explaining the code costs nothing);
/// - nothing counts from the first line that, trimmed, starts with `#[cfg(test)]` or
///   `#[cfg(all(test`: the unit tests a file ends with.
///
/// Everything else counts, block comments (`/* */`) and attributes included.
pub fn code_lines(source: &str) -> usize {
    source
        .lines()
        .map(str::trim)
        .take_while(|line| !line.starts_with("#[cfg(test)]") && !line.starts_with("#[cfg(all(test"))
        .filter(|line| !line.is_empty() && !line.starts_with("//"))
        .count()
}

/// The code lines ([`code_lines`]) of every `.rs` file under `dir`, subfolders included.
pub fn code_lines_in(dir: &Path) -> std::io::Result<usize> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            total += code_lines_in(&path)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            total += code_lines(&std::fs::read_to_string(&path)?);
        }
    }
    Ok(total)
}

/// Holds a plugin to its size budget, from its `tests/size.rs`: panics unless the `src/` of the
/// crate at `manifest_dir` (its `CARGO_MANIFEST_DIR`) has at most `budget` code lines
/// ([`code_lines_in`]). Prints the count either way (`cargo test -- --nocapture` shows it).
pub fn assert_src_within_budget(manifest_dir: &str, budget: usize) {
    let src = Path::new(manifest_dir).join("src");
    let lines = code_lines_in(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    println!("{}: {lines} code lines, budget {budget}", src.display());
    assert!(
        lines <= budget,
        "{} has {lines} code lines, over its budget of {budget}: what is not provider logic \
         belongs in the SDK",
        src.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(url: &str) -> http::Request {
        http::Request {
            method: http::Method::Get,
            url: url.into(),
            headers: vec![],
            body: None,
        }
    }

    #[test]
    fn clock_is_settable() {
        let host = FakeHost::new().with_now_ms(1_000);
        assert_eq!(host.now_ms(), 1_000);
        host.advance_ms(-400);
        assert_eq!(host.now_ms(), 600);
        host.set_now_ms(7);
        assert_eq!(host.now_ms(), 7);
    }

    #[test]
    fn config_and_storage() {
        let mut host = FakeHost::new().with_config("api_key", "k");
        assert_eq!(host.config("api_key").as_deref(), Some("k"));
        host.remove_config("api_key");
        assert_eq!(host.config("api_key"), None);

        assert_eq!(host.storage_get("a"), Ok(None));
        host.storage_set("a", b"1").unwrap();
        assert_eq!(host.storage_get("a"), Ok(Some(b"1".to_vec())));
        assert_eq!(host.stored("a"), Some(b"1".to_vec()));
        host.storage_delete("a").unwrap();
        host.storage_delete("a").unwrap();
        assert_eq!(host.storage_get("a"), Ok(None));
    }

    #[test]
    fn responder_answers_and_requests_are_recorded() {
        let host = FakeHost::new()
            .with_responder(|req| Ok(response(200, &[("x-url", &req.url)], b"ok".to_vec())));
        let resp = host.http_send(get("http://p/a")).unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.headers, vec![("x-url".into(), "http://p/a".into())]);
        assert_eq!(host.requests(), vec![get("http://p/a")]);
        assert_eq!(host.take_requests().len(), 1);
        assert!(host.requests().is_empty());
    }

    #[test]
    fn default_responder_fails_to_connect() {
        let host = FakeHost::new();
        assert!(matches!(
            host.http_send(get("http://p/")),
            Err(http::HttpError::ConnectFailed(_))
        ));
    }

    #[test]
    fn logs_are_captured_unless_recording_is_off() {
        let host = FakeHost::new();
        host.log(Level::Warn, "hello", &[("k", "v")]);
        assert_eq!(
            host.logs(),
            vec![LogLine {
                level: Level::Warn,
                message: "hello".into(),
                fields: vec![("k".into(), "v".into())],
            }]
        );
        host.clear_records();
        assert!(host.logs().is_empty());

        let quiet = FakeHost::new()
            .with_responder(|_| Ok(response(204, &[], Vec::new())))
            .without_recording();
        quiet.log(Level::Info, "x", &[]);
        quiet.http_send(get("http://p/")).unwrap();
        assert!(quiet.logs().is_empty());
        assert!(quiet.requests().is_empty());
    }

    #[test]
    fn code_lines_skip_blank_lines_comments_and_unit_tests() {
        let source = "//! A plugin.

use x::y;

/// Doc.
pub fn f() -> u8 {
    // Why.
    /* a block comment counts */
    1 // a trailing comment does not hide its line
}
    #[cfg(test)]
mod tests {
    #[test]
    fn t() {}
}
";
        assert_eq!(code_lines(source), 5);
        assert_eq!(code_lines(""), 0);
        assert_eq!(
            code_lines("fn a() {}\n#[cfg(all(test, feature = \"x\"))]\nfn b() {}\n"),
            1
        );
        // Only a line that starts with the attribute ends the count.
        assert_eq!(code_lines("#[cfg(not(test))]\nfn a() {}\n"), 2);
    }

    #[test]
    fn storage_can_be_down() {
        let host = FakeHost::new().with_storage_down();
        for result in [
            host.storage_set("a", b"1"),
            host.storage_delete("a"),
            host.storage_get("a").map(|_| ()),
        ] {
            assert!(matches!(result, Err(StorageError::Unavailable(_))));
        }
        assert_eq!(host.stored("a"), None);
    }

    #[test]
    fn code_lines_in_counts_rust_files_in_subfolders_too() {
        let dir =
            std::env::temp_dir().join(format!("refundry-sdk-code-lines-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("flows")).unwrap();
        std::fs::write(dir.join("lib.rs"), "mod flows;\n\nfn a() {}\n").unwrap();
        std::fs::write(dir.join("flows").join("mod.rs"), "// x\nfn b() {}\n").unwrap();
        std::fs::write(dir.join("notes.md"), "not code\n").unwrap();
        let counted = code_lines_in(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(counted.unwrap(), 3);
        assert!(code_lines_in(&dir).is_err());
    }

    #[test]
    fn a_crate_within_its_budget_passes_and_one_over_it_fails() {
        let dir = std::env::temp_dir().join(format!("refundry-sdk-budget-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("src").join("lib.rs"), "fn a() {}\nfn b() {}\n").unwrap();
        let manifest_dir = dir.to_str().unwrap().to_owned();
        assert_src_within_budget(&manifest_dir, 2);
        let over = std::panic::catch_unwind(|| assert_src_within_budget(&manifest_dir, 1));
        std::fs::remove_dir_all(&dir).unwrap();
        let message = *over.unwrap_err().downcast::<String>().unwrap();
        assert!(
            message.contains("2 code lines, over its budget of 1"),
            "{message}"
        );
    }
}
