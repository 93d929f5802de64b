//! The `crypto` capability: SHA-256 and HMAC-SHA256 computed natively for the plugin.
//!
//! Every provider signs requests and webhooks; the same digest compiled to wasm runs several
//! times slower than the host's. These are pure functions of their arguments, so they are not
//! shown to observers: a replay computes them again, and a recording never holds the keys a
//! plugin passes here.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::PluginState;
use crate::bindings;

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length (longer ones are hashed first): this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Whether `mac` is the HMAC-SHA256 of `data` under `key`, compared in constant time.
pub fn hmac_sha256_verify(key: &[u8], data: &[u8], mac: &[u8]) -> bool {
    hmac_sha256(key, data).ct_eq(mac).into()
}

impl bindings::crypto::Host for PluginState {
    fn sha256(&mut self, data: Vec<u8>) -> Vec<u8> {
        sha256(&data).to_vec()
    }

    fn hmac_sha256(&mut self, key: Vec<u8>, data: Vec<u8>) -> Vec<u8> {
        hmac_sha256(&key, &data).to_vec()
    }

    fn hmac_sha256_verify(&mut self, key: Vec<u8>, data: Vec<u8>, mac: Vec<u8>) -> bool {
        hmac_sha256_verify(&key, &data, &mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known answers from openssl 3:
    //   printf 'abc' | openssl dgst -sha256
    //   printf 'what do ya want for nothing?' | openssl dgst -sha256 -hmac 'Jefe'  (RFC 4231 case 2)
    #[test]
    fn known_answers() {
        assert_eq!(
            hex::encode(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(hmac_sha256_verify(
            b"Jefe",
            b"what do ya want for nothing?",
            &mac
        ));
    }

    #[test]
    fn verify_refuses_another_mac_or_length() {
        let mut mac = hmac_sha256(b"k", b"body");
        assert!(!hmac_sha256_verify(b"k", b"body", &mac[..31]));
        assert!(!hmac_sha256_verify(b"k", b"other", &mac));
        mac[31] ^= 1;
        assert!(!hmac_sha256_verify(b"k", b"body", &mac));
        assert!(!hmac_sha256_verify(b"k", b"body", &[]));
    }
}
