//! The released versions of the `refundry:provider` contract, and how a component of each runs.
//!
//! A released contract is frozen in `wit/vX.Y.Z/` and never edited again: a plugin built once
//! must keep loading in every later host. The runtime links every released version into one
//! linker, finds the version a component was built against from the provider interface it
//! exports, and runs an older component through its adapter onto the newest operations
//! ([`v0_1`]), so the rest of the host speaks only the newest contract's types.

mod exports;
pub(crate) mod v0_1;

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::{Component, Linker};

use crate::bindings;
use crate::caps::PluginState;
use crate::error::LoadError;
use crate::observe::{Operation, OperationAnswer};
use exports::Exports;

/// A released version of the `refundry:provider` contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContractVersion {
    /// `wit/v0.1.0/`: create, get and parse-webhook; the host's adapter answers `list-refunds`
    /// with `unsupported`.
    V0_1_0,
    /// `wit/v0.2.0/`: adds `list-refunds`, the `crypto` import, the `configuration` and
    /// `unsupported` refusals, webhook requests and outcomes, and more of `describe()`.
    V0_2_0,
}

impl ContractVersion {
    /// Every released version, oldest first.
    pub const ALL: [ContractVersion; 2] = [ContractVersion::V0_1_0, ContractVersion::V0_2_0];

    /// The version the runtime's own types speak.
    pub const NEWEST: ContractVersion = ContractVersion::V0_2_0;

    /// The version as written in the WIT package (`0.2.0`).
    pub fn as_str(self) -> &'static str {
        match self {
            ContractVersion::V0_1_0 => "0.1.0",
            ContractVersion::V0_2_0 => "0.2.0",
        }
    }

    /// The interfaces a component of this version may import: the contract's own, nothing else
    /// (not even WASI).
    pub fn imports(self) -> &'static [&'static str] {
        match self {
            ContractVersion::V0_1_0 => &[
                "refundry:provider/types@0.1.0",
                "refundry:provider/http@0.1.0",
                "refundry:provider/clock@0.1.0",
                "refundry:provider/storage@0.1.0",
                "refundry:provider/config@0.1.0",
                "refundry:provider/log@0.1.0",
            ],
            ContractVersion::V0_2_0 => &[
                "refundry:provider/types@0.2.0",
                "refundry:provider/http@0.2.0",
                "refundry:provider/clock@0.2.0",
                "refundry:provider/storage@0.2.0",
                "refundry:provider/config@0.2.0",
                "refundry:provider/log@0.2.0",
                "refundry:provider/crypto@0.2.0",
            ],
        }
    }

    /// The provider interface a component of this version exports.
    pub fn export(self) -> &'static str {
        match self {
            ContractVersion::V0_1_0 => "refundry:provider/provider@0.1.0",
            ContractVersion::V0_2_0 => "refundry:provider/provider@0.2.0",
        }
    }

    /// The version a component was built against, from the provider interface it exports.
    pub fn of(engine: &wasmtime::Engine, component: &Component) -> Result<Self, LoadError> {
        let exports: Vec<String> = component
            .component_type()
            .exports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        Self::ALL
            .into_iter()
            .rev()
            .find(|v| exports.iter().any(|e| e == v.export()))
            .ok_or_else(|| {
                LoadError::Contract(format!(
                    "it exports {exports:?}, none of the released provider interfaces ({})",
                    Self::ALL.map(Self::export).join(", ")
                ))
            })
    }

    /// Checks that `component` imports only what this version grants.
    pub(crate) fn check_imports(self, imports: &[String]) -> Result<(), LoadError> {
        let allowed = self.imports();
        match imports.iter().find(|i| !allowed.contains(&i.as_str())) {
            None => Ok(()),
            Some(import) => Err(LoadError::ForbiddenImport {
                import: import.clone(),
                contract: self.as_str(),
                allowed: allowed.join(", "),
            }),
        }
    }
}

impl std::fmt::Display for ContractVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Adds every released contract's imports to `linker`: the host's capabilities under each
/// version's names.
pub(crate) fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    use wasmtime::component::HasSelf;
    bindings::RefundPlugin::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    v0_1::RefundPlugin::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    Ok(())
}

/// A component linked against the contract it was built for, ready to instantiate.
pub(crate) enum Prepared {
    /// Built against 0.1.0: runs through [`v0_1`]'s adapter.
    V0_1(v0_1::RefundPluginPre<PluginState>),
    /// Built against the newest contract: its operations found once ([`exports`]).
    V0_2(bindings::RefundPluginPre<PluginState>, Arc<Exports>),
}

impl Prepared {
    /// Links `component`, built against `version`, with `linker`.
    pub(crate) fn link(
        linker: &Linker<PluginState>,
        component: &Component,
        version: ContractVersion,
    ) -> Result<Self, LoadError> {
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| LoadError::Contract(format!("{e:#}")))?;
        let fit = |e: wasmtime::Error| LoadError::Contract(format!("{e:#}"));
        Ok(match version {
            ContractVersion::V0_1_0 => {
                Prepared::V0_1(v0_1::RefundPluginPre::new(pre).map_err(fit)?)
            }
            ContractVersion::V0_2_0 => {
                let pre = bindings::RefundPluginPre::new(pre).map_err(fit)?;
                let exports =
                    Exports::find(pre.instance_pre(), version.export()).ok_or_else(|| {
                        LoadError::Contract("the provider interface lacks an operation".into())
                    })?;
                Prepared::V0_2(pre, exports)
            }
        })
    }

    /// The contract version.
    pub(crate) fn version(&self) -> ContractVersion {
        match self {
            Prepared::V0_1(_) => ContractVersion::V0_1_0,
            Prepared::V0_2(..) => ContractVersion::V0_2_0,
        }
    }

    /// The compiled component.
    pub(crate) fn component(&self) -> &Component {
        match self {
            Prepared::V0_1(pre) => pre.instance_pre().component(),
            Prepared::V0_2(pre, _) => pre.instance_pre().component(),
        }
    }

    /// A new instance in `store`.
    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<PluginState>,
    ) -> wasmtime::Result<Instance> {
        Ok(match self {
            Prepared::V0_1(pre) => Instance::V0_1(pre.instantiate_async(store).await?),
            Prepared::V0_2(pre, exports) => Instance::V0_2(
                pre.instance_pre().instantiate_async(store).await?,
                exports.clone(),
            ),
        })
    }
}

/// One instance of a component, of whichever contract it was built for.
pub(crate) enum Instance {
    /// Built against 0.1.0.
    V0_1(v0_1::RefundPlugin),
    /// Built against the newest contract.
    V0_2(wasmtime::component::Instance, Arc<Exports>),
}

impl Instance {
    /// Runs `op` on this instance and answers in the newest contract's terms.
    pub(crate) async fn call(
        &self,
        store: &mut Store<PluginState>,
        op: Operation<'_>,
    ) -> wasmtime::Result<OperationAnswer> {
        match self {
            Instance::V0_1(instance) => v0_1::call(instance, store, op).await,
            Instance::V0_2(instance, exports) => exports.call(instance, store, op).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::PluginComponent;
    use crate::engine::Engine;

    /// A component exporting an (empty) instance under each of `exports` and importing a clock
    /// under each of `imports`: enough for the loader, which goes by names before it links.
    fn component(imports: &[&str], exports: &[&str]) -> Vec<u8> {
        let mut wat = String::from("(component\n");
        for i in imports {
            wat.push_str(&format!(
                "  (import \"{i}\" (instance (export \"now\" (func (result s64)))))\n"
            ));
        }
        for (n, e) in exports.iter().enumerate() {
            wat.push_str(&format!(
                "  (instance $e{n})\n  (export \"{e}\" (instance $e{n}))\n"
            ));
        }
        wat.push(')');
        wat::parse_str(&wat).unwrap()
    }

    fn version_of(bytes: &[u8]) -> Result<ContractVersion, LoadError> {
        let engine =
            wasmtime::Engine::new(wasmtime::Config::new().wasm_component_model(true)).unwrap();
        let component = Component::new(&engine, bytes).unwrap();
        ContractVersion::of(&engine, &component)
    }

    #[test]
    fn a_version_is_written_as_in_its_wit_package() {
        assert_eq!(ContractVersion::V0_1_0.as_str(), "0.1.0");
        assert_eq!(ContractVersion::V0_2_0.as_str(), "0.2.0");
        assert_eq!(ContractVersion::V0_2_0.to_string(), "0.2.0");
        // Oldest first, the newest last: `of` prefers the newest a component exports.
        assert!(ContractVersion::ALL.is_sorted());
        assert_eq!(ContractVersion::ALL.last(), Some(&ContractVersion::NEWEST));
        // Every name a version grants or expects is of that version's package, and no other's.
        for v in ContractVersion::ALL {
            let suffix = format!("@{}", v.as_str());
            assert!(v.export().ends_with(&suffix), "{}", v.export());
            for import in v.imports() {
                assert!(import.starts_with("refundry:provider/"), "{import}");
                assert!(import.ends_with(&suffix), "{v}: {import}");
            }
        }
    }

    #[test]
    fn the_version_is_the_provider_interface_a_component_exports() {
        let v01 = component(&[], &["refundry:provider/provider@0.1.0"]);
        let v02 = component(&[], &["refundry:provider/provider@0.2.0"]);
        assert_eq!(version_of(&v01).unwrap(), ContractVersion::V0_1_0);
        assert_eq!(version_of(&v02).unwrap(), ContractVersion::V0_2_0);
        let both = component(
            &[],
            &[
                "refundry:provider/provider@0.1.0",
                "refundry:provider/provider@0.2.0",
            ],
        );
        assert_eq!(version_of(&both).unwrap(), ContractVersion::V0_2_0);
    }

    #[test]
    fn a_component_exporting_no_released_provider_interface_is_refused() {
        for exports in [
            &[][..],
            &["refundry:provider/provider@0.3.0"][..],
            &["refundry:provider/provider"][..],
            &["example:other/provider@0.2.0"][..],
        ] {
            match version_of(&component(&[], exports)) {
                Err(LoadError::Contract(message)) => {
                    assert!(
                        message.contains("refundry:provider/provider@0.1.0"),
                        "{message}"
                    );
                    assert!(
                        message.contains("refundry:provider/provider@0.2.0"),
                        "{message}"
                    );
                }
                other => panic!("{exports:?}: expected a contract error, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_component_importing_another_versions_interface_is_refused_naming_its_contract() {
        let engine = Engine::new(Default::default()).unwrap();
        // A 0.2 component reaching for 0.1's clock, and a 0.1 component reaching for the crypto
        // that only 0.2 grants: each version's world is exactly its own folder's.
        for (import, export, contract) in [
            (
                "refundry:provider/clock@0.1.0",
                "refundry:provider/provider@0.2.0",
                "0.2.0",
            ),
            (
                "refundry:provider/crypto@0.2.0",
                "refundry:provider/provider@0.1.0",
                "0.1.0",
            ),
        ] {
            let bytes = component(&[import], &[export]);
            match PluginComponent::compile(&engine, &bytes) {
                Err(e @ LoadError::ForbiddenImport { .. }) => {
                    let message = e.to_string();
                    let LoadError::ForbiddenImport {
                        import: found,
                        contract: named,
                        allowed,
                    } = e
                    else {
                        unreachable!()
                    };
                    assert_eq!((found.as_str(), named), (import, contract));
                    assert!(
                        message.contains(&format!("refundry:provider@{contract}")),
                        "{message}"
                    );
                    assert!(!allowed.contains(import), "{allowed}");
                }
                Err(other) => panic!("{import}: expected ForbiddenImport, got {other}"),
                Ok(_) => panic!("{import} was loaded into a {contract} component"),
            }
        }
    }

    #[test]
    fn each_version_allows_exactly_its_own_imports() {
        for v in ContractVersion::ALL {
            let own: Vec<String> = v.imports().iter().map(|i| i.to_string()).collect();
            assert!(v.check_imports(&own).is_ok(), "{v}");
            assert!(
                v.check_imports(&[]).is_ok(),
                "{v}: importing nothing is allowed"
            );
            for other in ContractVersion::ALL.into_iter().filter(|o| *o != v) {
                for import in other.imports() {
                    if v.imports().contains(import) {
                        continue;
                    }
                    match v.check_imports(&[import.to_string()]) {
                        Err(LoadError::ForbiddenImport { contract, .. }) => {
                            assert_eq!(contract, v.as_str())
                        }
                        other => panic!("{v} allowed {import}: {other:?}"),
                    }
                }
            }
        }
    }
}
