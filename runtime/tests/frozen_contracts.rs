//! Every released contract is frozen: the bytes of each `wit/vX.Y.Z/` folder are pinned here.
//!
//! A plugin built against a released contract must keep loading in every later host, and the
//! host checks a component against the contract's WIT as it was released. Editing a released
//! folder (even a comment, which changes nothing on the wire, is how drift starts) would make
//! the host's idea of that version differ from the plugins built against it. A change to the
//! contract goes in a new folder, with a new [`ContractVersion`]; the version is released when
//! it joins [`ContractVersion::ALL`], and this test then gains its list.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use refundry_runtime::ContractVersion;
use sha2::{Digest, Sha256};

/// Each released folder: every file in it, with its SHA-256 (lowercase hex), as released.
const RELEASED: &[(&str, &[(&str, &str)])] = &[
    (
        "v0.1.0",
        &[
            (
                "clock.wit",
                "ecd7e9a8cf401bf7cd9c52394d13205da842142757b2e6bb0ae652e5b228e913",
            ),
            (
                "config.wit",
                "0c78c8b8061ae2cdb9e9b36b039ca555daa334bc411ea5ded304c412a14efe26",
            ),
            (
                "http.wit",
                "ed6cb0cbe8ec275436f0f7a08c768b29047445fc13360268a53f31bf646e73c6",
            ),
            (
                "log.wit",
                "6c23c7ca43b5ae54c1d085658a0d9fbd05b3f11a8eacb33c33a9ceadfe441d03",
            ),
            (
                "provider.wit",
                "a3b63a703180dce3edaf1526dddcc089db419ce6ffd974688848f2725382ca7f",
            ),
            (
                "storage.wit",
                "60a7e83bc1065d6f22e9c6c56d4ac4cd43997ce6ed8ea45c0cdd90f338082b99",
            ),
            (
                "types.wit",
                "d9aca357ba7eec8956510cbac0d26ea680e23a43ec1d807a85ceff1277a63521",
            ),
            (
                "world.wit",
                "24b76e037de2307391fddaab382d8bdbc6a49119f44795b82117c3abc11a805a",
            ),
        ],
    ),
    (
        "v0.2.0",
        &[
            (
                "clock.wit",
                "10ca6ff8e112dacd22d9649b9b53f25da5737100a32fb8bd7a09fc091c0f1c36",
            ),
            (
                "config.wit",
                "09dd6a658f117f09d718e893927b68daac81d1f9241b0f134b48bace18ba2dc5",
            ),
            (
                "crypto.wit",
                "9f22c6ff931edd2af85a9cad345bc1660cd4d642abd7a233043869de5da7fb09",
            ),
            (
                "http.wit",
                "d7fb89f49efc15b8ee29711e7a15063b8e320c7d0fd4de28ee751be0569200e3",
            ),
            (
                "log.wit",
                "83b2e2c408a2bc71bdd1e717bd33d13f8ee06d397c467eb75f67d21ba1b66c2a",
            ),
            (
                "provider.wit",
                "a8a1302b45fdb39bef05728209d58f1d84898e69ac0465da1b7a0335e638ebf6",
            ),
            (
                "storage.wit",
                "cbda6dd757d4b19b0fca32e9890509d6cfee418af826cd7ffd773cbbcc56e036",
            ),
            (
                "types.wit",
                "8164fbd68eddd0d1f4477df16b369fa85f61fa9a6324a7c7bf115786f0dd835c",
            ),
            (
                "world.wit",
                "c460ab91c27e9e7d6995a0393ece1f87960c30330638af4e51e772da13aa0d25",
            ),
        ],
    ),
];

fn wit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit")
}

/// Every file of `folder` (subfolders included, by their path inside it) with its SHA-256.
fn hashes(folder: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                let name = path.strip_prefix(root).unwrap().to_string_lossy();
                // `/` on every platform, as the list above writes it.
                out.insert(name.replace('\\', "/"), hex::encode(Sha256::digest(&bytes)));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(folder, folder, &mut out);
    out
}

/// What differs between a folder as released and as it is now, one line per file.
fn drift(released: &[(&str, &str)], now: &BTreeMap<String, String>) -> Vec<String> {
    let released: BTreeMap<&str, &str> = released.iter().copied().collect();
    let mut out = Vec::new();
    for (name, hash) in &released {
        match now.get(*name) {
            None => out.push(format!("{name} disappeared")),
            Some(h) if h != hash => out.push(format!("{name} changed (sha256 {h}, was {hash})")),
            Some(_) => {}
        }
    }
    for name in now.keys() {
        if !released.contains_key(name.as_str()) {
            out.push(format!("{name} appeared"));
        }
    }
    out
}

#[test]
fn no_file_of_a_released_contract_changes_appears_or_disappears() {
    let mut problems = Vec::new();
    for (folder, files) in RELEASED {
        for line in drift(files, &hashes(&wit_dir().join(folder))) {
            problems.push(format!("wit/{folder}/{line}"));
        }
    }
    assert!(
        problems.is_empty(),
        "a released contract is frozen; put changes in a new wit/vX.Y.Z/ folder:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn every_contract_the_runtime_speaks_is_pinned_here() {
    // A version the runtime links but this test does not pin could be edited unnoticed.
    for version in ContractVersion::ALL {
        let folder = format!("v{}", version.as_str());
        assert!(
            RELEASED.iter().any(|(f, _)| *f == folder),
            "contract {version} (wit/{folder}/) has no pinned file list in this test"
        );
        assert!(wit_dir().join(&folder).is_dir(), "wit/{folder}/ is missing");
    }
}

#[test]
fn drift_names_each_changed_added_and_removed_file() {
    let released = [("a.wit", "11"), ("b.wit", "22")];
    let now: BTreeMap<String, String> = [("a.wit", "11"), ("b.wit", "99"), ("c.wit", "33")]
        .into_iter()
        .map(|(n, h)| (n.to_owned(), h.to_owned()))
        .collect();
    assert_eq!(
        drift(&released, &now),
        ["b.wit changed (sha256 99, was 22)", "c.wit appeared"]
    );
    let gone: BTreeMap<String, String> = BTreeMap::new();
    assert_eq!(
        drift(&released, &gone),
        ["a.wit disappeared", "b.wit disappeared"]
    );
}
