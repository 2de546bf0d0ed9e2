//! Verifying a client's password with the user's plugin: the auth switch when the client
//! answered with another plugin, `mysql_native_password`, and `caching_sha2_password` with its
//! fast path (the user is in [`Sha2Cache`]) and full path (password over TLS, or RSA-encrypted
//! after sending the public key), as MySQL 8 does.
//!
//! Used by the login and by `COM_CHANGE_USER`. Every read waits at most the handshake timeout.
//! Secrets are compared in constant time; no credential or auth data is logged.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::BytesMut;
use subtle::ConstantTimeEq;

use super::session::ClientIo;
use super::tls::Acceptor;
use super::Front;
use crate::config::{AuthPlugin, UserConfig};
use crate::protocol::auth::{native_hash, parse_native_hash, verify_native, NativeHash};
use crate::protocol::handshake::AuthSwitch;
use crate::protocol::packet::put_packet;
use crate::protocol::sha2::{
    same_password, sha2_digest, verify_sha2, Secret, Sha2Digest, FAST_AUTH_OK, FULL_AUTH, MORE_DATA, REQUEST_PUBLIC_KEY,
};

/// Largest authentication packet accepted from a client (an RSA ciphertext is 512 bytes at most
/// for a 4096-bit key).
const AUTH_PACKET_LIMIT: usize = 64 * 1024;

/// Users who passed a full `caching_sha2_password` authentication, with the digest of the
/// password they passed with: a login uses the fast path only while that is still the configured
/// password, so a changed password needs a full authentication again, as in MySQL.
#[derive(Debug, Default)]
pub struct Sha2Cache(Mutex<HashMap<String, Sha2Digest>>);

impl Sha2Cache {
    fn is_cached(&self, user: &str, digest: &Sha2Digest) -> bool {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(user).is_some_and(|cached| bool::from(cached.ct_eq(digest)))
    }

    fn insert(&self, user: &str, digest: Sha2Digest) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(user.to_owned(), digest);
    }

    /// Forgets every user, so each one's next login is a full authentication (like MySQL's
    /// `FLUSH PRIVILEGES`).
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// What the client already sent: the plugin its response was computed with, and the response.
#[derive(Debug, Clone, Copy)]
pub(super) struct FirstAnswer<'a> {
    /// Plugin name as the client sent it.
    pub plugin: &'a [u8],
    /// Auth response.
    pub data: &'a [u8],
}

/// One authentication to run.
pub(super) struct Attempt<'a> {
    /// The configured user, `None` for an unknown name (verified against nothing, same work).
    pub user: Option<&'a UserConfig>,
    /// The challenge the client was given (greeting or auth switch).
    pub scramble: &'a [u8],
    /// The client's answer so far; `None` always starts with an auth switch.
    pub first: Option<FirstAnswer<'a>>,
    /// Sequence id of the client's last packet.
    pub seq: u8,
    /// The TLS snapshot of this connection (RSA key source).
    pub acceptor: &'a Acceptor,
    /// Limit for each wait.
    pub timeout: Duration,
}

/// How an authentication ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Passed; the OK goes out with sequence id `last_seq + 1`.
    Accepted {
        /// Sequence id of the last packet of the exchange.
        last_seq: u8,
    },
    /// Failed; the ERR goes out with `last_seq + 1`.
    Denied {
        /// Sequence id of the last packet of the exchange.
        last_seq: u8,
        /// Whether the client sent a password (for the message).
        using_password: bool,
    },
    /// The client went away or stalled; nothing more to send.
    Closed,
}

/// Runs the exchange for `attempt` with the user's plugin (`mysql_native_password` for unknown
/// users, like MySQL's default plugin).
pub(super) async fn authenticate(io: &mut ClientIo, shared: &Front, attempt: Attempt<'_>) -> Verdict {
    let plugin = attempt.user.map_or(AuthPlugin::MysqlNativePassword, |u| u.auth_plugin);
    // A client whose plugin is not the greeting's (native) may have sent an empty placeholder and
    // wait for an auth switch carrying its plugin's challenge (libmariadb does), so only a
    // non-empty answer from such a client is taken as is.
    let usable = |first: &FirstAnswer<'_>| {
        first.plugin == plugin.name().as_bytes()
            && (!first.data.is_empty() || plugin == AuthPlugin::MysqlNativePassword)
    };
    let (seq, response) = match attempt.first {
        Some(first) if usable(&first) => (attempt.seq, first.data.to_vec()),
        _ => {
            let switch = AuthSwitch { plugin: plugin.name().as_bytes().to_vec(), data: attempt.scramble.to_vec() };
            let mut payload = BytesMut::new();
            switch.encode(&mut payload);
            match exchange(io, attempt.seq, &payload, attempt.timeout).await {
                Some((seq, answer)) => (seq, answer.to_vec()),
                None => return Verdict::Closed,
            }
        }
    };
    match (plugin, attempt.user) {
        (AuthPlugin::CachingSha2Password, Some(user)) => sha2(io, shared, &attempt, user, seq, &response).await,
        (_, user) => {
            let stored = user.and_then(native_stored);
            let verified = match (user, &stored) {
                (Some(_), Some(hash)) => verify_native(attempt.scramble, &response, hash.as_ref()),
                _ => {
                    // Same work for unknown users, so timing does not tell which names exist.
                    let _ = verify_native(attempt.scramble, &response, Some(&native_hash(b"")));
                    false
                }
            };
            verdict(verified, seq, !response.is_empty())
        }
    }
}

/// The stored native hash of a user: `Some(None)` for an empty password, `None` when the
/// configured hash is unusable (validation rejects that, so it only guards against a bad reload).
pub(super) fn native_stored(user: &UserConfig) -> Option<Option<NativeHash>> {
    match (&user.password, &user.password_hash) {
        (Some(p), _) if p.is_empty() => Some(None),
        (Some(p), _) => Some(Some(native_hash(p.as_bytes()))),
        (None, Some(h)) => parse_native_hash(h).map(Some),
        (None, None) => None,
    }
}

fn verdict(verified: bool, last_seq: u8, using_password: bool) -> Verdict {
    if verified {
        Verdict::Accepted { last_seq }
    } else {
        Verdict::Denied { last_seq, using_password }
    }
}

/// Sends `payload` after the client's packet `seq` and reads the client's answer.
async fn exchange(io: &mut ClientIo, seq: u8, payload: &[u8], timeout: Duration) -> Option<(u8, bytes::Bytes)> {
    put_packet(&mut io.out, seq.wrapping_add(1), payload);
    io.flush(timeout).await.ok()?;
    io.read_packet(timeout, AUTH_PACKET_LIMIT).await.ok()
}

async fn sha2(
    io: &mut ClientIo,
    shared: &Front,
    attempt: &Attempt<'_>,
    user: &UserConfig,
    seq: u8,
    response: &[u8],
) -> Verdict {
    let Some(password) = user.password.as_deref().map(str::as_bytes) else {
        // Validation requires a plain password for this plugin; a hash-only user cannot pass.
        return Verdict::Denied { last_seq: seq, using_password: !response.is_empty() };
    };
    if password.is_empty() {
        return verdict(response.is_empty() || response == [0], seq, !response.is_empty());
    }
    if response.is_empty() {
        return Verdict::Denied { last_seq: seq, using_password: false };
    }
    let stored = sha2_digest(password);
    let name = user.name.as_str();
    if shared.sha2_cache.is_cached(name, &stored) {
        if !verify_sha2(attempt.scramble, response, &stored) {
            return Verdict::Denied { last_seq: seq, using_password: true };
        }
        let fast_ok_seq = seq.wrapping_add(1);
        put_packet(&mut io.out, fast_ok_seq, &[MORE_DATA, FAST_AUTH_OK]);
        return match io.flush(attempt.timeout).await {
            Ok(()) => Verdict::Accepted { last_seq: fast_ok_seq },
            Err(_) => Verdict::Closed,
        };
    }
    // Not cached: the password itself is needed, whatever the scramble said (as in MySQL).
    let Some((seq, answer)) = exchange(io, seq, &[MORE_DATA, FULL_AUTH], attempt.timeout).await else {
        return Verdict::Closed;
    };
    let (seq, candidate) = match full_password(io, shared, attempt, seq, &answer).await {
        Ok(got) => got,
        Err(Failure::Closed) => return Verdict::Closed,
        Err(Failure::Refused { seq, reason }) => {
            tracing::info!(reason, "caching_sha2_password full authentication refused");
            return Verdict::Denied { last_seq: seq, using_password: true };
        }
    };
    let verified = same_password(candidate.expose(), password);
    if verified {
        shared.sha2_cache.insert(name, stored);
    }
    verdict(verified, seq, true)
}

enum Failure {
    Closed,
    Refused { seq: u8, reason: &'static str },
}

/// The password sent in full: in clear over TLS, or RSA-encrypted (after sending the public key
/// when the client asks for it). A clear-text password over a plain connection is refused.
async fn full_password(
    io: &mut ClientIo,
    shared: &Front,
    attempt: &Attempt<'_>,
    seq: u8,
    answer: &[u8],
) -> Result<(u8, Secret), Failure> {
    if io.is_tls() {
        let password = answer.strip_suffix(&[0]).unwrap_or(answer);
        return Ok((seq, Secret::new(password.to_vec())));
    }
    let refused = |seq, reason| Failure::Refused { seq, reason };
    let Some(key) = shared.tls.rsa_key(attempt.acceptor, attempt.timeout).await else {
        return Err(refused(seq, "no RSA key: use TLS, or fix tls.rsa_private_key"));
    };
    let (seq, ciphertext) = if answer == [REQUEST_PUBLIC_KEY] {
        let mut payload = Vec::with_capacity(1 + key.public_pem().len());
        payload.push(MORE_DATA);
        payload.extend_from_slice(key.public_pem().as_bytes());
        let (seq, ciphertext) = exchange(io, seq, &payload, attempt.timeout).await.ok_or(Failure::Closed)?;
        (seq, ciphertext.to_vec())
    } else if answer.len() == key.ciphertext_len() {
        // The client already had the public key.
        (seq, answer.to_vec())
    } else {
        return Err(refused(seq, "password sent without TLS or RSA encryption"));
    };
    match key.decrypt_password(&ciphertext, attempt.scramble) {
        Ok(password) => Ok((seq, password)),
        Err(_) => Err(refused(seq, "RSA ciphertext does not decrypt with the proxy's key")),
    }
}
