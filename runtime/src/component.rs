//! A plugin component compiled, checked to import only the contract, and linked: ready to
//! instantiate for any provider.

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use crate::contract::{ContractVersion, Prepared};
use crate::engine::{Engine, imports};
use crate::error::LoadError;

/// A compiled, linked plugin component, ready to instantiate.
pub struct PluginComponent {
    pub(crate) pre: Prepared,
    /// Lowercase hex SHA-256 of the component bytes.
    pub sha256: String,
    /// Size of the component, in bytes.
    pub size: usize,
    /// What the component imports.
    pub imports: Vec<String>,
}

impl PluginComponent {
    /// Validates, compiles and links component bytes.
    pub fn compile(engine: &Engine, bytes: &[u8]) -> Result<Self, LoadError> {
        let pre = engine.prepare(bytes)?;
        Ok(Self::of(engine, pre, sha256_hex(bytes), bytes.len()))
    }

    /// Links a component already compiled (from a precompiled artifact, say) from component
    /// bytes of this hash and size.
    pub fn link(
        engine: &Engine,
        component: &Component,
        sha256: String,
        size: usize,
    ) -> Result<Self, LoadError> {
        let pre = engine.link(component)?;
        Ok(Self::of(engine, pre, sha256, size))
    }

    fn of(engine: &Engine, pre: Prepared, sha256: String, size: usize) -> Self {
        Self {
            imports: imports(engine.wasmtime(), pre.component()),
            pre,
            sha256,
            size,
        }
    }

    /// Reads, validates, compiles and links a component file.
    pub fn from_file(engine: &Engine, path: &std::path::Path) -> Result<Self, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::compile(engine, &bytes)
    }

    /// The compiled component.
    pub fn component(&self) -> &Component {
        self.pre.component()
    }

    /// The released contract the component was built against.
    pub fn contract(&self) -> ContractVersion {
        self.pre.version()
    }
}

/// Lowercase hex SHA-256 of component bytes: a plugin version's identity.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
