//! `mysql_native_password`: verifying a client's scrambled password, and scrambling the configured
//! backend password for a server's challenge.
//!
//! The proxy stores either the plain password or the server-style hash `*HEX(SHA1(SHA1(pw)))`.
//! Verification needs only `SHA1(SHA1(pw))`, so both forms work; comparisons are constant-time.

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// Name of the native password plugin.
pub const NATIVE_PASSWORD: &str = "mysql_native_password";

/// Length of the scramble (nonce) the proxy sends.
pub const SCRAMBLE_LEN: usize = 20;

/// `SHA1(SHA1(password))`, the value a server stores for native-password accounts.
pub type NativeHash = [u8; 20];

/// Computes the stored hash of a plain password.
pub fn native_hash(password: &[u8]) -> NativeHash {
    Sha1::digest(Sha1::digest(password)).into()
}

/// Parses a hash written as `*` followed by 40 hex digits (as in `mysql.user`).
pub fn parse_native_hash(text: &str) -> Option<NativeHash> {
    let hex = text.strip_prefix('*')?;
    if hex.len() != 40 {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Checks a client's auth response against the stored hash for the scramble it was sent.
/// An empty password matches only an empty response.
pub fn verify_native(scramble: &[u8], response: &[u8], stored: Option<&NativeHash>) -> bool {
    let Some(stored) = stored else {
        return response.is_empty();
    };
    let Ok(response) = <[u8; 20]>::try_from(response) else {
        return false;
    };
    // response = SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw))); recover SHA1(pw) and hash it again.
    let mask: [u8; 20] = Sha1::new().chain_update(scramble).chain_update(stored).finalize().into();
    let mut stage1 = [0u8; 20];
    for (i, b) in stage1.iter_mut().enumerate() {
        *b = response[i] ^ mask[i];
    }
    let candidate: [u8; 20] = Sha1::digest(stage1).into();
    candidate.ct_eq(stored).into()
}

/// The auth response a client sends for `password` and the server's `scramble`; empty for an
/// empty password.
pub fn scramble_native(scramble: &[u8], password: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    mysql_common::scramble::scramble_native(scramble, password).map(|s| s.to_vec()).unwrap_or_default()
}

/// A fresh random scramble of printable, non-NUL bytes (some clients treat the scramble as a C string).
pub fn new_scramble() -> [u8; SCRAMBLE_LEN] {
    use rand::Rng;
    let mut rng = rand::rng();
    let mut s = [0u8; SCRAMBLE_LEN];
    for b in &mut s {
        *b = rng.random_range(0x21..0x7F);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrambled_password_verifies_only_with_the_right_password_and_scramble() {
        let scramble = new_scramble();
        let stored = native_hash(b"secret");
        let response = scramble_native(&scramble, b"secret");
        assert!(verify_native(&scramble, &response, Some(&stored)));
        assert!(!verify_native(&scramble, &scramble_native(&scramble, b"Secret"), Some(&stored)));
        assert!(!verify_native(&new_scramble(), &response, Some(&stored)));
        assert!(!verify_native(&scramble, &response[..19], Some(&stored)));
        assert!(!verify_native(&scramble, b"", Some(&stored)));
        assert!(verify_native(&scramble, b"", None));
        assert!(!verify_native(&scramble, &response, None));
    }

    #[test]
    fn hashes_parse_like_the_server_prints_them() {
        // SELECT PASSWORD('app') on MariaDB.
        let parsed = parse_native_hash("*5BCB3E6AC345B435C7C2E6B7949A04CE6F6563D3").unwrap();
        assert_eq!(parsed, native_hash(b"app"));
        assert!(parse_native_hash("5BCB3E6AC345B435C7C2E6B7949A04CE6F6563D3").is_none());
        assert!(parse_native_hash("*5BCB").is_none());
        assert!(parse_native_hash("*ZZCB3E6AC345B435C7C2E6B7949A04CE6F6563D3").is_none());
    }
}
