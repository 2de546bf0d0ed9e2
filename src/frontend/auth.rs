//! The connection phase with a client: greeting, handshake response, optional auth switch to
//! `mysql_native_password`, verification against the proxy's own user list.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::session::ClientIo;
use super::{ClientError, ConnId, Shared};
use crate::config::UserConfig;
use crate::protocol::auth::{native_hash, new_scramble, parse_native_hash, verify_native, NATIVE_PASSWORD};
use crate::protocol::handshake::{proxy_capabilities, AuthSwitch, Greeting, Response};
use crate::protocol::okerr::STATUS_AUTOCOMMIT;
use crate::protocol::packet::put_packet;
use crate::protocol::CapabilityFlags;

/// Version string used until the primary has been reached once.
const FALLBACK_VERSION: &[u8] = b"5.5.5-10.11.0-rwsplit";

/// Largest handshake packet accepted from a client.
const HANDSHAKE_LIMIT: usize = 64 * 1024;

/// A client that passed authentication.
#[derive(Debug, Clone)]
pub struct Login {
    /// The user's configuration at login time.
    pub user: UserConfig,
    /// Capabilities in effect (client's request ∩ what the proxy offered).
    pub capabilities: CapabilityFlags,
    /// Collation the client asked for.
    pub collation: u8,
    /// Schema the client named, or the user's default schema.
    pub database: Option<Bytes>,
    /// Sequence id of the client's last handshake packet; the login OK goes out after it.
    pub last_seq: u8,
}

/// Runs the connection phase. On failure the client has been sent an ERR (when it still listens)
/// and `None` is returned; the caller closes the connection.
pub async fn handshake(
    io: &mut ClientIo,
    shared: &Arc<Shared>,
    id: ConnId,
    peer: SocketAddr,
    over_limit: bool,
) -> Option<Login> {
    let config = shared.config.load_full();
    let timeout = config.server.handshake_timeout;
    let primary = shared.primary_info.load_full();
    let offered = match &primary {
        Some(info) => proxy_capabilities() & (info.capabilities | CapabilityFlags::CLIENT_CONNECT_ATTRS),
        None => proxy_capabilities(),
    };
    let version = if !config.server.version.is_empty() {
        config.server.version.as_bytes().to_vec()
    } else {
        primary.as_ref().map_or_else(|| FALLBACK_VERSION.to_vec(), |info| info.version.clone())
    };
    let scramble = new_scramble();
    let greeting = Greeting {
        server_version: version,
        connection_id: id.0,
        scramble: scramble.to_vec(),
        capabilities: offered,
        collation: primary.as_ref().map_or(45, |info| info.collation),
        status: STATUS_AUTOCOMMIT,
        auth_plugin: NATIVE_PASSWORD.as_bytes().to_vec(),
    };
    let mut payload = BytesMut::new();
    greeting.encode(&mut payload);
    put_packet(&mut io.out, 0, &payload);
    if over_limit {
        ClientError::too_many_connections().write(1, &mut io.out);
        let _ = io.flush(timeout).await;
        return None;
    }
    io.flush(timeout).await.ok()?;

    let (seq, payload) = io.read_packet(timeout, HANDSHAKE_LIMIT).await.ok()?;
    let response = match Response::parse(&payload) {
        Ok(r) if !Response::is_ssl_request(&payload) => r,
        _ => {
            tracing::debug!("malformed or unsupported handshake response");
            let err = if payload.len() >= 2 && payload[1] & 0x02 == 0 {
                ClientError::auth_mode_not_supported()
            } else {
                ClientError::malformed_packet()
            };
            err.write(seq.wrapping_add(1), &mut io.out);
            let _ = io.flush(timeout).await;
            return None;
        }
    };
    tracing::Span::current().record("user", String::from_utf8_lossy(&response.user).as_ref());

    // Clients that started with another plugin are asked to switch to the native one.
    let mut last_seq = seq;
    let mut auth_response = response.auth_response.clone();
    let plugin_ok = response.auth_plugin.as_deref().is_none_or(|p| p == NATIVE_PASSWORD.as_bytes());
    if !plugin_ok {
        let switch = AuthSwitch { plugin: NATIVE_PASSWORD.as_bytes().to_vec(), data: scramble.to_vec() };
        let mut payload = BytesMut::new();
        switch.encode(&mut payload);
        put_packet(&mut io.out, last_seq.wrapping_add(1), &payload);
        io.flush(timeout).await.ok()?;
        let (seq, answer) = io.read_packet(timeout, HANDSHAKE_LIMIT).await.ok()?;
        last_seq = seq;
        auth_response = answer.to_vec();
    }

    let user = config.users.iter().find(|u| u.name.as_str().as_bytes() == response.user.as_slice());
    let stored = user.and_then(stored_hash);
    let verified = match (user, &stored) {
        (Some(_), Some(hash)) => verify_native(&scramble, &auth_response, hash.as_ref()),
        _ => {
            // Spend the same work for unknown users so timing does not reveal which names exist.
            let _ = verify_native(&scramble, &auth_response, Some(&native_hash(b"")));
            false
        }
    };
    let Some(user) = user.filter(|_| verified) else {
        tracing::info!(peer = %peer, "authentication failed");
        ClientError::access_denied(&response.user, &peer.ip().to_string(), !auth_response.is_empty())
            .write(last_seq.wrapping_add(1), &mut io.out);
        let _ = io.flush(timeout).await;
        return None;
    };
    let database = response
        .database
        .map(Bytes::from)
        .or_else(|| (!user.default_schema.is_empty()).then(|| Bytes::from(user.default_schema.clone().into_bytes())));
    Some(Login {
        user: user.clone(),
        capabilities: response.capabilities & offered,
        collation: response.collation,
        database,
        last_seq,
    })
}

/// The stored native hash of a user: `Some(None)` for an empty password, `None` when the
/// configured hash is unusable (validation rejects that, so it only guards against a bad reload).
fn stored_hash(user: &UserConfig) -> Option<Option<[u8; 20]>> {
    match (&user.password, &user.password_hash) {
        (Some(p), _) if p.is_empty() => Some(None),
        (Some(p), _) => Some(Some(native_hash(p.as_bytes()))),
        (None, Some(h)) => parse_native_hash(h).map(Some),
        (None, None) => None,
    }
}
