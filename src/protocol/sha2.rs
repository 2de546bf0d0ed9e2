//! `caching_sha2_password` and `sha256_password`: the SHA-256 scramble, its server-side check, the
//! `AuthMoreData` status bytes, and the RSA-OAEP (SHA-1) password exchange in both directions.
//!
//! Pure functions and key types; no I/O. Secrets are compared in constant time and wiped after use
//! where the proxy owns the buffer ([`Secret`]). The RSA decryption is the `rsa` crate's blinded
//! one; it is not constant-time (RUSTSEC-2023-0071, "Marvin"), which matters little for one
//! decryption per full login but is why TLS is the better path for the password.

use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Name of the caching SHA-256 plugin (MySQL 8's default).
pub const CACHING_SHA2: &str = "caching_sha2_password";

/// Name of the non-caching SHA-256 plugin (RSA or TLS on every login).
pub const SHA256_PASSWORD: &str = "sha256_password";

/// First byte of an `AuthMoreData` packet.
pub const MORE_DATA: u8 = 0x01;

/// Client → server: "send me your RSA public key".
pub const REQUEST_PUBLIC_KEY: u8 = 0x02;

/// Server → client (after [`MORE_DATA`]): the scramble matched the cached hash; OK follows.
pub const FAST_AUTH_OK: u8 = 0x03;

/// Server → client (after [`MORE_DATA`]): send the password itself (TLS) or RSA-encrypted.
pub const FULL_AUTH: u8 = 0x04;

/// `SHA256(SHA256(password))`: what the server caches for fast authentication.
pub type Sha2Digest = [u8; 32];

/// A password or other secret held by the proxy; zeroed when dropped.
#[derive(Default)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps bytes that are secret.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Volatile-free best effort: the buffer is not read again, so the compiler may not elide
        // a loop it cannot prove dead only with `black_box`.
        for b in self.0.iter_mut() {
            *b = 0;
        }
        std::hint::black_box(&self.0);
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// `SHA256(SHA256(password))`.
pub fn sha2_digest(password: &[u8]) -> Sha2Digest {
    Sha256::digest(Sha256::digest(password)).into()
}

/// The client's fast-path response: `SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) || nonce)`; empty
/// for an empty password.
pub fn scramble_sha2(nonce: &[u8], password: &[u8]) -> Vec<u8> {
    mysql_common::scramble::scramble_sha256(nonce, password).map(|s| s.to_vec()).unwrap_or_default()
}

/// Checks a fast-path response against the cached digest: recovers `SHA256(pw)` from the
/// response and compares its hash with `stored` in constant time.
pub fn verify_sha2(nonce: &[u8], response: &[u8], stored: &Sha2Digest) -> bool {
    let Ok(response) = <[u8; 32]>::try_from(response) else {
        return false;
    };
    let mask: [u8; 32] = Sha256::new().chain_update(stored).chain_update(nonce).finalize().into();
    let mut stage1 = [0u8; 32];
    for (i, b) in stage1.iter_mut().enumerate() {
        *b = response[i] ^ mask[i];
    }
    let candidate: [u8; 32] = Sha256::digest(stage1).into();
    candidate.ct_eq(stored).into()
}

/// True when `candidate` (a password received in full) is the configured `password`; constant
/// time in the contents (both sides are hashed first, so lengths do not leak either).
pub fn same_password(candidate: &[u8], password: &[u8]) -> bool {
    sha2_digest(candidate).ct_eq(&sha2_digest(password)).into()
}

/// `bytes XOR nonce`, the nonce repeated; what the client encrypts (password + NUL) so that a
/// replayed ciphertext is useless with another scramble.
fn xor_nonce(bytes: &mut [u8], nonce: &[u8]) {
    if nonce.is_empty() {
        return;
    }
    for (i, b) in bytes.iter_mut().enumerate() {
        *b ^= nonce[i % nonce.len()];
    }
}

/// Failures of the RSA exchange. None includes key or password material.
#[derive(Debug, thiserror::Error)]
pub enum RsaError {
    /// The PEM text is not an RSA key of the expected kind.
    #[error("not a PEM RSA {0} key")]
    BadKey(&'static str),
    /// The key is too small (the proxy's own key needs 2048 bits, a server's 1024).
    #[error("RSA key of {0} bits is too small")]
    TooSmall(usize),
    /// Encryption or decryption failed (wrong key, corrupted ciphertext, password too long).
    #[error("RSA operation failed")]
    Crypto,
    /// Key generation failed.
    #[error("RSA key generation failed")]
    Generate,
}

/// The proxy's RSA key pair for `caching_sha2_password`, with the public half pre-encoded as the
/// PEM (SubjectPublicKeyInfo) that clients receive.
pub struct RsaKey {
    private: RsaPrivateKey,
    public_pem: String,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaKey").field("bits", &(self.private.size() * 8)).finish_non_exhaustive()
    }
}

impl RsaKey {
    /// Loads a PEM private key (PKCS#8 `BEGIN PRIVATE KEY` or PKCS#1 `BEGIN RSA PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<Self, RsaError> {
        let private = RsaPrivateKey::from_pkcs8_pem(pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
            .map_err(|_| RsaError::BadKey("private"))?;
        Self::from_private(private)
    }

    /// Generates a fresh key pair. CPU-heavy (tens to hundreds of milliseconds for 2048 bits in a
    /// release build, seconds in a debug build): run it on a blocking thread.
    pub fn generate(bits: usize) -> Result<Self, RsaError> {
        let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits).map_err(|_| RsaError::Generate)?;
        Self::from_private(private)
    }

    fn from_private(private: RsaPrivateKey) -> Result<Self, RsaError> {
        let bits = private.size() * 8;
        if bits < 2048 {
            return Err(RsaError::TooSmall(bits));
        }
        let public_pem =
            RsaPublicKey::from(&private).to_public_key_pem(LineEnding::LF).map_err(|_| RsaError::BadKey("public"))?;
        Ok(Self { private, public_pem })
    }

    /// The public key as PEM, sent to clients after `AuthMoreData`.
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// Length of a ciphertext made with this key.
    pub fn ciphertext_len(&self) -> usize {
        self.private.size()
    }

    /// Decrypts a client's RSA-OAEP(SHA-1) ciphertext and undoes the scramble XOR; returns the
    /// password without its terminating NUL.
    pub fn decrypt_password(&self, ciphertext: &[u8], nonce: &[u8]) -> Result<Secret, RsaError> {
        let plain = self
            .private
            .decrypt_blinded(&mut rsa::rand_core::OsRng, Oaep::new::<sha1::Sha1>(), ciphertext)
            .map_err(|_| RsaError::Crypto)?;
        let mut plain = Secret::new(plain);
        xor_nonce(&mut plain.0, nonce);
        if plain.0.last() == Some(&0) {
            plain.0.pop();
        }
        Ok(plain)
    }
}

/// Encrypts `password` (plus NUL, XOR the nonce) with a server's PEM public key, as a client does
/// for a full `caching_sha2_password` or `sha256_password` authentication without TLS. Accepts
/// SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`) and PKCS#1 (`BEGIN RSA PUBLIC KEY`).
pub fn encrypt_password(public_pem: &[u8], password: &[u8], nonce: &[u8]) -> Result<Vec<u8>, RsaError> {
    let text = std::str::from_utf8(public_pem).map_err(|_| RsaError::BadKey("public"))?;
    let text = text.trim_end_matches('\0');
    let key = RsaPublicKey::from_public_key_pem(text)
        .or_else(|_| <RsaPublicKey as rsa::pkcs1::DecodeRsaPublicKey>::from_pkcs1_pem(text))
        .map_err(|_| RsaError::BadKey("public"))?;
    if key.size() * 8 < 1024 {
        return Err(RsaError::TooSmall(key.size() * 8));
    }
    let mut plain = Secret::new(Vec::with_capacity(password.len() + 1));
    plain.0.extend_from_slice(password);
    plain.0.push(0);
    xor_nonce(&mut plain.0, nonce);
    key.encrypt(&mut rsa::rand_core::OsRng, Oaep::new::<sha1::Sha1>(), plain.expose()).map_err(|_| RsaError::Crypto)
}

#[cfg(test)]
mod tests;
