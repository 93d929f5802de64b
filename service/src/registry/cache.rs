//! Precompiled plugin artifacts on disk, so a version is compiled once, not at every start or
//! load. An artifact is named by the component's SHA-256 and the engine's
//! [`artifact_key`](refundry_runtime::engine::Engine::artifact_key) (wasmtime version and settings), and
//! framed with the SHA-256 of the component it was built from and an HMAC-SHA256 tag over the
//! frame and its bytes, under an [`ArtifactKey`] kept in the ledger, not in the cache folder.
//! Nothing read back is trusted on its name: a file that is truncated, corrupted, built from
//! another component, not tagged with this ledger's key, or made by another wasmtime build or
//! configuration is rejected, logged, and rebuilt from the component.
//!
//! wasmtime runs a valid artifact's machine code as it is, so a plain digest is not enough: one
//! who can write the folder could re-frame another component's artifact and recompute it. The
//! tag needs the key, which lives in the ledger. The folder is created `0700` and its files
//! `0600`, so other local users cannot even read the compiled code.

use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use utoipa::ToSchema;
use wasmtime::component::Component;

use refundry_runtime::engine::Engine;
use refundry_runtime::error::LoadError;

/// First bytes of every artifact file. The SHA-256 of the component it was built from follows,
/// then the HMAC-SHA256 tag (see [`frame`]), then wasmtime's bytes. (Version 3: version 2 had an
/// unkeyed digest where the tag is, and is rejected and rebuilt.)
pub const MAGIC: &[u8; 16] = b"refundry-cwasm3\n";

/// Length of the frame before wasmtime's bytes.
pub const HEADER_LEN: usize = MAGIC.len() + 32 + 32;

/// How a version's compiled code was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LoadedFrom {
    /// A valid precompiled artifact: nothing was compiled.
    Cache,
    /// Compiled (no artifact yet, or no cache folder); the artifact is now written.
    Compiled,
    /// An artifact was there but rejected (corrupt or foreign); compiled again and replaced.
    Rebuilt,
    /// A plugin linked into the host (`native:`): nothing to compile.
    Native,
}

impl LoadedFrom {
    /// The word for it (as in JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            LoadedFrom::Cache => "cache",
            LoadedFrom::Compiled => "compiled",
            LoadedFrom::Rebuilt => "rebuilt",
            LoadedFrom::Native => "native",
        }
    }
}

/// The key artifacts are authenticated with: 32 random bytes, created once and kept in the ledger
/// (see [`refundry_ledger::plugin_versions::artifact_key`]), so that write access to the cache folder alone
/// cannot make the host run code it did not compile. It does not print.
#[derive(Clone, PartialEq, Eq)]
pub struct ArtifactKey([u8; 32]);

impl ArtifactKey {
    /// A new random key.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// The key of these bytes (as the ledger keeps it); `None` unless there are 32.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The key's bytes, to store it.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length")
    }
}

impl std::fmt::Debug for ArtifactKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArtifactKey([redacted])")
    }
}

/// The artifact folder (none: always compile), and the key its files are tagged with.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: Option<PathBuf>,
    key: ArtifactKey,
}

impl ArtifactCache {
    /// A cache in `dir` (created `0700` when first written), or none, whose artifacts are
    /// tagged with `key`.
    pub fn new(dir: Option<PathBuf>, key: ArtifactKey) -> Self {
        Self { dir, key }
    }

    /// Where the artifact of the component with this hash lives, for this engine.
    pub fn path(&self, engine: &Engine, sha256: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{sha256}-{}.cwasm", engine.artifact_key())))
    }

    /// The compiled component of `bytes` (whose SHA-256 is `sha256`): from its artifact when
    /// that is valid, else compiled, with the artifact (re)written.
    pub fn compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<(Component, LoadedFrom), LoadError> {
        let path = self.path(engine, sha256);
        let mut from = LoadedFrom::Compiled;
        if let Some(path) = &path {
            match read(engine, &self.key, path, sha256) {
                Ok(Some(component)) => return Ok((component, LoadedFrom::Cache)),
                Ok(None) => {}
                Err(reason) => {
                    tracing::warn!(
                        path = %path.display(), %reason,
                        "precompiled plugin artifact rejected: rebuilding it from the component"
                    );
                    from = LoadedFrom::Rebuilt;
                }
            }
        }
        let artifact = engine
            .wasmtime()
            .precompile_component(bytes)
            .map_err(|e| LoadError::NotAComponent(format!("{e:#}")))?;
        // SAFETY: these bytes were produced by this engine a moment ago, in this process.
        let component = unsafe { Component::deserialize(engine.wasmtime(), &artifact) }
            .map_err(|e| LoadError::NotAComponent(format!("{e:#}")))?;
        if let Some(path) = &path
            && let Err(e) = write(path, &self.key, sha256, &artifact)
        {
            // The cache only saves time: a host that cannot write it still runs.
            tracing::warn!(path = %path.display(), error = %e, "cannot write plugin artifact");
        }
        Ok((component, from))
    }

    /// Deletes the artifact of the component with this hash, if there is one (a refused or
    /// removed version: the folder holds only what is loaded, or was loaded by another start).
    pub fn forget(&self, engine: &Engine, sha256: &str) {
        let Some(path) = self.path(engine, sha256) else {
            return;
        };
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete plugin artifact")
            }
        }
    }
}

/// Frames wasmtime's artifact bytes, built from the component whose hex SHA-256 is
/// `component_sha256`, as they are stored, tagged with `key`.
pub fn frame(key: &ArtifactKey, component_sha256: &str, artifact: &[u8]) -> Vec<u8> {
    let component = component_digest(component_sha256);
    let mut file = Vec::with_capacity(HEADER_LEN + artifact.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&component);
    file.extend_from_slice(
        &tag(key, &component)
            .chain_update(artifact)
            .finalize()
            .into_bytes(),
    );
    file.extend_from_slice(artifact);
    file
}

/// The MAC of a frame so far: the magic and the component's hash are covered, so that a tag
/// is good for one component's artifact only (the artifact's bytes are fed next).
fn tag(key: &ArtifactKey, component: &[u8]) -> Hmac<Sha256> {
    let mut mac = key.mac();
    mac.update(MAGIC);
    mac.update(component);
    mac
}

/// The 32 bytes of a hex SHA-256 (zeros for anything else, which matches no real component).
fn component_digest(sha256: &str) -> [u8; 32] {
    let mut digest = [0; 32];
    if hex::decode_to_slice(sha256, &mut digest).is_err() {
        digest = [0; 32];
    }
    digest
}

/// Writes through a temporary file and a rename, so a reader never sees half an artifact. The
/// folder is created `0700` and the file `0600`: compiled code is the host's alone.
fn write(
    path: &Path,
    key: &ArtifactKey,
    component_sha256: &str,
    artifact: &[u8],
) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    // A stale temporary file of an earlier process with this id would keep its old mode.
    let _ = std::fs::remove_file(&tmp);
    let mut file = private_file(&tmp)?;
    file.write_all(&frame(key, component_sha256, artifact))?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(unix)]
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// The artifact at `path` for the component with this hash: `None` when there is none, an
/// error saying why it is unusable.
fn read(
    engine: &Engine,
    key: &ArtifactKey,
    path: &Path,
    component_sha256: &str,
) -> Result<Option<Component>, String> {
    let file = match std::fs::read(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("unreadable: {e}")),
    };
    let Some(rest) = file.strip_prefix(MAGIC.as_slice()) else {
        return Err("not a refundry artifact".into());
    };
    if rest.len() < 64 {
        return Err("truncated".into());
    }
    let (component, rest) = rest.split_at(32);
    if component != component_digest(component_sha256) {
        return Err(format!(
            "built from another component (sha256 {}), not {component_sha256}",
            hex::encode(component)
        ));
    }
    let (tag_bytes, artifact) = rest.split_at(32);
    // `verify_slice` compares in constant time.
    if tag(key, component)
        .chain_update(artifact)
        .verify_slice(tag_bytes)
        .is_err()
    {
        return Err(
            "corrupted or not authenticated: its tag does not match this ledger's key".into(),
        );
    }
    if wasmtime::Engine::detect_precompiled(artifact) != Some(wasmtime::Precompiled::Component) {
        return Err("not a precompiled component".into());
    }
    // SAFETY: the bytes are what a host of this ledger wrote (tag checked above, with a key that
    // is not in the cache folder); wasmtime refuses an artifact made by another wasmtime
    // version or configuration.
    unsafe { Component::deserialize(engine.wasmtime(), artifact) }
        .map(Some)
        .map_err(|e| format!("made for another engine: {e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use refundry_runtime::limits::EngineLimits;
    use sha2::Digest;

    /// The smallest component there is.
    fn component_bytes() -> Vec<u8> {
        // `(component)` in the binary format: magic, component version 0x0d, layer 1.
        vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]
    }

    /// How `cache` gets the compiled component this time.
    fn load(engine: &Engine, cache: &ArtifactCache, bytes: &[u8], sha: &str) -> LoadedFrom {
        cache.compile(engine, bytes, sha).unwrap().1
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "refundry-cache-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn setup(name: &str) -> (Engine, ArtifactCache, Vec<u8>, String, PathBuf) {
        let engine = Engine::new(EngineLimits::default()).unwrap();
        let dir = temp_dir(name);
        let cache = ArtifactCache::new(Some(dir.clone()), ArtifactKey::random());
        let bytes = component_bytes();
        let sha = refundry_runtime::component::sha256_hex(&bytes);
        (engine, cache, bytes, sha, dir)
    }

    #[test]
    fn second_load_comes_from_the_cache() {
        let (engine, cache, bytes, sha, dir) = setup("hit");
        assert_eq!(load(&engine, &cache, &bytes, &sha), LoadedFrom::Compiled);
        assert!(cache.path(&engine, &sha).unwrap().exists());
        assert_eq!(load(&engine, &cache, &bytes, &sha), LoadedFrom::Cache);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn corrupted_artifact_is_rebuilt() {
        let (engine, cache, bytes, sha, dir) = setup("corrupt");
        cache.compile(&engine, &bytes, &sha).unwrap();
        let path = cache.path(&engine, &sha).unwrap();
        let mut file = std::fs::read(&path).unwrap();
        let last = file.len() - 1;
        file[last] ^= 0xff;
        std::fs::write(&path, &file).unwrap();
        assert_eq!(
            read(&engine, &cache.key, &path, &sha).unwrap_err(),
            "corrupted or not authenticated: its tag does not match this ledger's key"
        );
        assert_eq!(load(&engine, &cache, &bytes, &sha), LoadedFrom::Rebuilt);
        // The rebuilt artifact replaced the bad one.
        assert_eq!(load(&engine, &cache, &bytes, &sha), LoadedFrom::Cache);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn truncated_and_foreign_files_are_rebuilt() {
        let (engine, cache, bytes, sha, dir) = setup("foreign");
        let path = cache.path(&engine, &sha).unwrap();
        for junk in [
            b"refundry-cwasm3\nshort".to_vec(),
            b"\0asm garbage".to_vec(),
        ] {
            std::fs::write(&path, junk).unwrap();
            assert_eq!(load(&engine, &cache, &bytes, &sha), LoadedFrom::Rebuilt);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn artifact_of_another_engine_configuration_is_rejected() {
        let (engine, cache, bytes, sha, dir) = setup("other-engine");
        // Another wasmtime configuration (no epoch interruption): a valid artifact, correctly
        // framed, under this engine's file name, that must still not be run here.
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let other = wasmtime::Engine::new(&config).unwrap();
        let artifact = other.precompile_component(&bytes).unwrap();
        let path = cache.path(&engine, &sha).unwrap();
        std::fs::write(&path, frame(&cache.key, &sha, &artifact)).unwrap();
        let reason = read(&engine, &cache.key, &path, &sha).unwrap_err();
        assert!(reason.starts_with("made for another engine"), "{reason}");
        assert_eq!(load(&engine, &cache, &bytes, &sha), LoadedFrom::Rebuilt);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn artifact_of_another_component_is_rejected() {
        let (engine, cache, bytes, sha, dir) = setup("swapped");
        // A valid artifact of this engine, framed for another component, put under this one's
        // name (as if two files were swapped): it would run the other component's code.
        let other = "00".repeat(32);
        let artifact = engine.wasmtime().precompile_component(&bytes).unwrap();
        let path = cache.path(&engine, &sha).unwrap();
        std::fs::write(&path, frame(&cache.key, &other, &artifact)).unwrap();
        let reason = read(&engine, &cache.key, &path, &sha).unwrap_err();
        assert!(
            reason.starts_with("built from another component"),
            "{reason}"
        );
        assert_eq!(load(&engine, &cache, &bytes, &sha), LoadedFrom::Rebuilt);
        assert_eq!(load(&engine, &cache, &bytes, &sha), LoadedFrom::Cache);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Another component: the smallest one plus a custom section, so its code hash differs.
    fn other_component_bytes() -> Vec<u8> {
        let mut bytes = component_bytes();
        // Custom section (id 0), 2 bytes: a 1-byte name, "x".
        bytes.extend_from_slice(&[0x00, 0x02, 0x01, b'x']);
        bytes
    }

    #[test]
    fn reframed_artifact_with_an_unkeyed_digest_is_rejected() {
        let (engine, cache, bytes, sha, dir) = setup("reframed");
        let other = other_component_bytes();
        let other_sha = refundry_runtime::component::sha256_hex(&other);
        assert_ne!(other_sha, sha);
        // What one with write access to the folder alone can do: take another component's
        // valid artifact, frame it as built from this one, and recompute every digest there is
        // without a key (here, SHA-256 over the artifact, as version 2 of the frame had).
        let artifact = engine.wasmtime().precompile_component(&other).unwrap();
        let mut forged = Vec::new();
        forged.extend_from_slice(MAGIC);
        forged.extend_from_slice(&component_digest(&sha));
        forged.extend_from_slice(&sha2::Sha256::digest(&artifact));
        forged.extend_from_slice(&artifact);
        let path = cache.path(&engine, &sha).unwrap();
        std::fs::write(&path, &forged).unwrap();
        let reason = read(&engine, &cache.key, &path, &sha).unwrap_err();
        assert!(reason.contains("not authenticated"), "{reason}");
        assert_eq!(load(&engine, &cache, &bytes, &sha), LoadedFrom::Rebuilt);
        assert_ne!(std::fs::read(&path).unwrap(), forged, "not rewritten");
        // Framed with another ledger's key: rejected too.
        let stranger = frame(&ArtifactKey::random(), &sha, &artifact);
        std::fs::write(&path, &stranger).unwrap();
        assert!(read(&engine, &cache.key, &path, &sha).is_err());
        assert_eq!(load(&engine, &cache, &bytes, &sha), LoadedFrom::Rebuilt);
        assert_eq!(load(&engine, &cache, &bytes, &sha), LoadedFrom::Cache);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn folder_is_0700_and_artifacts_0600() {
        use std::os::unix::fs::PermissionsExt;
        let (engine, _, bytes, sha, parent) = setup("modes");
        let dir = parent.join("cache");
        let cache = ArtifactCache::new(Some(dir.clone()), ArtifactKey::random());
        assert_eq!(load(&engine, &cache, &bytes, &sha), LoadedFrom::Compiled);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&cache.path(&engine, &sha).unwrap()), 0o600);
        std::fs::remove_dir_all(parent).unwrap();
    }

    #[test]
    fn the_key_does_not_print() {
        let key = ArtifactKey::from_bytes(&[7; 32]).unwrap();
        assert_eq!(format!("{key:?}"), "ArtifactKey([redacted])");
        assert!(ArtifactKey::from_bytes(&[7; 31]).is_none());
    }

    #[test]
    fn the_key_names_the_engine_configuration() {
        let a = Engine::new(EngineLimits::default()).unwrap();
        let b = Engine::new(EngineLimits::default()).unwrap();
        assert_eq!(a.artifact_key(), b.artifact_key());
        assert_eq!(a.artifact_key().len(), 16);
    }

    #[test]
    fn no_folder_always_compiles() {
        let engine = Engine::new(EngineLimits::default()).unwrap();
        let bytes = component_bytes();
        let sha = refundry_runtime::component::sha256_hex(&bytes);
        let cache = ArtifactCache::new(None, ArtifactKey::random());
        for _ in 0..2 {
            assert_eq!(load(&engine, &cache, &bytes, &sha), LoadedFrom::Compiled);
        }
    }

    #[test]
    fn not_a_component_is_refused() {
        let (engine, cache, _, _, dir) = setup("bad");
        let err = cache.compile(&engine, b"not wasm", "x").unwrap_err();
        assert!(matches!(err, LoadError::NotAComponent(_)), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
