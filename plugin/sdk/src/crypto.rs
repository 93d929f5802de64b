//! Digests and MACs that provider signing schemes are built from, and a constant-time comparison
//! for verifying them.
//!
//! Inside a component these call the host's `crypto` import (native code, several times faster
//! than the same digest compiled to wasm), unless the SDK is built with the `guest-crypto`
//! feature (the benchmark's baseline), which computes them in the guest. Natively (plugin unit
//! tests, the host's native benchmark) they are the `sha2` and `hmac` crates. Either way these
//! are pure functions: a signer stays a function of its inputs.

use subtle::ConstantTimeEq;

#[cfg(all(target_arch = "wasm32", not(feature = "guest-crypto")))]
mod imp {
    use crate::__private::wit::refundry::provider::crypto as host;

    /// The contract answers 32 bytes for both functions.
    fn digest(bytes: Vec<u8>) -> [u8; 32] {
        bytes
            .try_into()
            .unwrap_or_else(|v: Vec<u8>| panic!("host crypto answered {} bytes, not 32", v.len()))
    }

    pub fn sha256(data: &[u8]) -> [u8; 32] {
        digest(host::sha256(data))
    }

    pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
        digest(host::hmac_sha256(key, message))
    }

    pub fn hmac_sha256_verify(key: &[u8], message: &[u8], mac: &[u8]) -> bool {
        host::hmac_sha256_verify(key, message, mac)
    }
}

#[cfg(not(all(target_arch = "wasm32", not(feature = "guest-crypto"))))]
mod imp {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};

    pub fn sha256(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
        // HMAC accepts keys of any length (longer ones are hashed), so this cannot fail.
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    pub fn hmac_sha256_verify(key: &[u8], message: &[u8], mac: &[u8]) -> bool {
        super::constant_time_eq(&hmac_sha256(key, message), mac)
    }
}

/// SHA-256 of `data` (32 bytes).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    imp::sha256(data)
}

/// Lowercase hex SHA-256 of `data` (64 characters).
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha256(data))
}

/// Raw HMAC-SHA256 of `message` under `key` (32 bytes).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    imp::hmac_sha256(key, message)
}

/// Lowercase hex HMAC-SHA256 of `message` under `key` (64 characters).
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    hex::encode(hmac_sha256(key, message))
}

/// Whether `signature_hex` is the lowercase hex HMAC-SHA256 of `message` under `key`, the MAC
/// compared in constant time. Providers fix lowercase hex, so anything else (upper case, spaces,
/// not hex) is `false`, as a byte-wise comparison of the hex strings would say.
pub fn verify_hmac_sha256_hex(key: &[u8], message: &[u8], signature_hex: &str) -> bool {
    // Whether the signature is lowercase hex says nothing about the expected MAC: checking it
    // first leaks nothing.
    let lowercase = signature_hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    match hex::decode(signature_hex) {
        Ok(mac) if lowercase => imp::hmac_sha256_verify(key, message, &mac),
        _ => false,
    }
}

/// Compares two byte strings in time that depends only on their lengths, never on where they
/// differ, so that a forger cannot learn a valid signature byte by byte. Lengths are not secret
/// (a signature's length is public), so different lengths return `false` at once.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values from openssl 3:
    //   printf 'abc' | openssl dgst -sha256
    //   printf '' | openssl dgst -sha256
    //   printf 'what do ya want for nothing?' | openssl dgst -sha256 -hmac 'Jefe'   (RFC 4231 case 2)
    #[test]
    fn sha256_known_answers() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn hmac_known_answer() {
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            expected
        );
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            expected
        );
    }

    #[test]
    fn verify_accepts_the_lowercase_mac_and_nothing_else() {
        let good = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let msg = b"what do ya want for nothing?";
        assert!(verify_hmac_sha256_hex(b"Jefe", msg, good));
        assert!(!verify_hmac_sha256_hex(b"Jefe", msg, &good.to_uppercase()));
        assert!(!verify_hmac_sha256_hex(b"Jefe", msg, &format!(" {good}")));
        assert!(!verify_hmac_sha256_hex(b"Jefe", b"other", good));
        assert!(!verify_hmac_sha256_hex(b"Jefe", msg, &good[..62]));
        assert!(!verify_hmac_sha256_hex(b"Jefe", msg, "not hex"));
        assert!(!verify_hmac_sha256_hex(b"Jefe", msg, ""));
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"abc", b""));
    }
}
