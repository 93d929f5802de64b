//! Precompiled plugin artifacts on disk, so a version is compiled once, not at every start or
//! load. An artifact is named by the component's SHA-256 and the engine's
//! [`artifact_key`](crate::engine::Engine::artifact_key) (wasmtime version and settings), and
//! framed with the SHA-256 of the component it was built from and a digest of its own bytes.
//! Nothing read back is trusted on its name: a file that is truncated, corrupted, built from
//! another component, or made by another wasmtime build or configuration is rejected, logged,
//! and rebuilt from the component.
//!
//! The folder must be writable by the host alone: wasmtime runs a valid artifact's machine code
//! as it is (the digest catches damage, not a forger with write access).

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use wasmtime::component::Component;

use crate::engine::Engine;
use crate::error::LoadError;

/// First bytes of every artifact file. The SHA-256 of the component it was built from follows,
/// then the SHA-256 of wasmtime's bytes, then those bytes.
pub const MAGIC: &[u8; 16] = b"refundry-cwasm2\n";

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

/// The artifact folder (none: always compile).
#[derive(Debug, Clone, Default)]
pub struct ArtifactCache {
    dir: Option<PathBuf>,
}

impl ArtifactCache {
    /// A cache in `dir` (created when first written), or none.
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
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
            match read(engine, path, sha256) {
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
            && let Err(e) = write(path, sha256, &artifact)
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
/// `component_sha256`, as they are stored.
pub fn frame(component_sha256: &str, artifact: &[u8]) -> Vec<u8> {
    let mut file = Vec::with_capacity(HEADER_LEN + artifact.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&component_digest(component_sha256));
    file.extend_from_slice(&Sha256::digest(artifact));
    file.extend_from_slice(artifact);
    file
}

/// The 32 bytes of a hex SHA-256 (zeros for anything else, which matches no real component).
fn component_digest(sha256: &str) -> [u8; 32] {
    let mut digest = [0; 32];
    if hex::decode_to_slice(sha256, &mut digest).is_err() {
        digest = [0; 32];
    }
    digest
}

/// Writes through a temporary file and a rename, so a reader never sees half an artifact.
fn write(path: &Path, component_sha256: &str, artifact: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, frame(component_sha256, artifact))?;
    std::fs::rename(&tmp, path)
}

/// The artifact at `path` for the component with this hash: `None` when there is none, an
/// error saying why it is unusable.
fn read(engine: &Engine, path: &Path, component_sha256: &str) -> Result<Option<Component>, String> {
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
    let (digest, artifact) = rest.split_at(32);
    if Sha256::digest(artifact).as_slice() != digest {
        return Err("corrupted: its bytes do not match their digest".into());
    }
    if wasmtime::Engine::detect_precompiled(artifact) != Some(wasmtime::Precompiled::Component) {
        return Err("not a precompiled component".into());
    }
    // SAFETY: the bytes are what this host wrote (digest checked above); wasmtime refuses an
    // artifact made by another wasmtime version or configuration.
    unsafe { Component::deserialize(engine.wasmtime(), artifact) }
        .map(Some)
        .map_err(|e| format!("made for another engine: {e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EngineLimits;

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
        let cache = ArtifactCache::new(Some(dir.clone()));
        let bytes = component_bytes();
        let sha = crate::plugin::sha256_hex(&bytes);
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
            read(&engine, &path, &sha).unwrap_err(),
            "corrupted: its bytes do not match their digest"
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
            b"refundry-cwasm2\nshort".to_vec(),
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
        std::fs::write(&path, frame(&sha, &artifact)).unwrap();
        let reason = read(&engine, &path, &sha).unwrap_err();
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
        std::fs::write(&path, frame(&other, &artifact)).unwrap();
        let reason = read(&engine, &path, &sha).unwrap_err();
        assert!(
            reason.starts_with("built from another component"),
            "{reason}"
        );
        assert_eq!(load(&engine, &cache, &bytes, &sha), LoadedFrom::Rebuilt);
        assert_eq!(load(&engine, &cache, &bytes, &sha), LoadedFrom::Cache);
        std::fs::remove_dir_all(dir).unwrap();
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
        let sha = crate::plugin::sha256_hex(&bytes);
        let cache = ArtifactCache::new(None);
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
