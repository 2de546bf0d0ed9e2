//! The connection phase with a client: greeting, optional TLS upgrade after an `SSLRequest`, the
//! handshake response, then password verification against the proxy's own user list
//! ([`super::verify`]: `mysql_native_password` or `caching_sha2_password` per user).
//!
//! The greeting advertises `mysql_native_password` (the user-agnostic default) and `CLIENT_SSL`
//! when a certificate is loaded; users with another plugin get an auth switch. The whole phase is
//! bounded by `server.handshake_timeout`, and so is each wait inside it.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::session::ClientIo;
use super::verify::{self, Attempt, FirstAnswer, Verdict};
use super::{ClientError, ConnId, Front};
use crate::config::UserConfig;
use crate::protocol::auth::{new_scramble, NATIVE_PASSWORD};
use crate::protocol::handshake::{extended, proxy_capabilities, Greeting, Response};
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
    /// MariaDB extended capabilities in effect (client's ∩ offered; see
    /// `protocol::handshake::extended`). Backend connections negotiate the same.
    pub extended: u32,
    /// Collation the client asked for.
    pub collation: u8,
    /// Schema the client named, or the user's default schema.
    pub database: Option<Bytes>,
    /// Sequence id of the last packet of the connection phase; the login OK goes out after it.
    pub last_seq: u8,
    /// The greeting's challenge: libmariadb answers a native-password `COM_CHANGE_USER` with it,
    /// as the server expects.
    pub scramble: [u8; crate::protocol::auth::SCRAMBLE_LEN],
}

/// Runs the connection phase. On failure the client has been sent an ERR (when it still listens)
/// and `None` is returned; the caller closes the connection.
pub async fn handshake(io: &mut ClientIo, shared: &Arc<Front>, id: ConnId, peer: SocketAddr) -> Option<Login> {
    let timeout = shared.config.load().server.handshake_timeout;
    match tokio::time::timeout(timeout, connection_phase(io, shared, id, peer)).await {
        Ok(login) => login,
        Err(_) => {
            tracing::debug!(?timeout, "client did not finish the handshake in time");
            None
        }
    }
}

async fn connection_phase(io: &mut ClientIo, shared: &Arc<Front>, id: ConnId, peer: SocketAddr) -> Option<Login> {
    let config = shared.config.load_full();
    let timeout = config.server.handshake_timeout;
    let acceptor = shared.tls.acceptor();
    let primary = shared.primary_info.load_full();
    let mut offered = match &primary {
        Some(info) => proxy_capabilities() & (info.capabilities | CapabilityFlags::CLIENT_CONNECT_ATTRS),
        None => proxy_capabilities(),
    };
    offered.set(CapabilityFlags::CLIENT_SSL, acceptor.offers_tls());
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
        status: initial_status(primary.as_deref()),
        auth_plugin: NATIVE_PASSWORD.as_bytes().to_vec(),
        // What the primary offers of what the proxy relays; a MariaDB greeting (no CLIENT_MYSQL)
        // carries them, as the primary's does.
        extended: match &primary {
            Some(info) if !offered.contains(CapabilityFlags::CLIENT_LONG_PASSWORD) => info.extended & extended::RELAYED,
            _ => 0,
        },
    };
    let offered_extended = greeting.extended;
    let mut payload = BytesMut::new();
    greeting.encode(&mut payload);
    put_packet(&mut io.out, 0, &payload);
    io.flush(timeout).await.ok()?;

    let (mut seq, mut payload) =
        io.read_packet(timeout, HANDSHAKE_LIMIT).await.map_err(|e| super::observe::protocol(shared, peer, &e)).ok()?;
    if let Some(tls) = acceptor.tls().filter(|_| Response::is_ssl_request(&payload)) {
        if let Err(err) = io.start_tls(tls, timeout).await {
            tracing::debug!(error = %err, "client TLS handshake failed");
            return None;
        }
        (seq, payload) = io
            .read_packet(timeout, HANDSHAKE_LIMIT)
            .await
            .map_err(|e| super::observe::protocol(shared, peer, &e))
            .ok()?;
    }
    let response = match Response::parse(&payload) {
        Ok(r) if !Response::is_ssl_request(&payload) => r,
        _ => {
            let fault = crate::stats::ProtocolFault::Malformed;
            super::observe::bad_command(shared, peer, fault, "malformed or unsupported handshake response");
            let err = if payload.len() >= 2 && payload[1] & 0x02 == 0 {
                ClientError::auth_mode_not_supported()
            } else {
                ClientError::malformed_packet()
            };
            return refuse(io, err, seq, timeout).await;
        }
    };
    if acceptor.is_required() && !io.is_tls() {
        tracing::info!(peer = %peer, "refused a client without TLS (tls.mode = \"required\")");
        super::observe::rejected(shared, crate::stats::Reject::TlsRequired);
        return refuse(io, ClientError::secure_transport_required(), seq, timeout).await;
    }
    tracing::Span::current().record("user", String::from_utf8_lossy(&response.user).as_ref());
    if shared.is_login_blocked(peer) {
        super::observe::rejected(shared, crate::stats::Reject::Blocked);
        return refuse(io, ClientError::host_blocked(&peer.ip().to_string()), seq, timeout).await;
    }

    // The server refuses these before authentication, whatever the password.
    if let Some(charset) = unusable_client_charset(response.collation) {
        return refuse(io, ClientError::bad_client_charset(charset), seq, timeout).await;
    }
    let user = config.users.iter().find(|u| u.name.as_str().as_bytes() == response.user.as_slice());
    // A client without CLIENT_PLUGIN_AUTH answered for the plugin of the greeting.
    let client_plugin = response.auth_plugin.as_deref().unwrap_or(NATIVE_PASSWORD.as_bytes());
    let attempt = Attempt {
        user,
        scramble: &scramble,
        first: Some(FirstAnswer { plugin: client_plugin, data: &response.auth_response }),
        seq,
        acceptor: &acceptor,
        timeout,
    };
    let last_seq = match verify::authenticate(io, shared, attempt).await {
        Verdict::Accepted { last_seq } => last_seq,
        Verdict::Denied { last_seq, using_password } => {
            shared.login_failed(peer, "mysql");
            super::observe::rejected(shared, crate::stats::Reject::AccessDenied);
            let err = ClientError::access_denied(&response.user, &peer.ip().to_string(), using_password);
            return refuse(io, err, last_seq, timeout).await;
        }
        Verdict::Closed => return None,
    };
    let user = user?;
    let database = response
        .database
        .map(Bytes::from)
        .or_else(|| (!user.default_schema.is_empty()).then(|| Bytes::from(user.default_schema.clone().into_bytes())));
    Some(Login {
        user: user.clone(),
        capabilities: response.capabilities & offered,
        extended: response.extended & offered_extended,
        collation: response.collation,
        database,
        last_seq,
        scramble,
    })
}

/// The status flags of a new session: `SERVER_STATUS_AUTOCOMMIT` as the primary's greeting
/// reported it (its global `autocommit`), on when the primary was not reached yet.
pub(super) fn initial_status(primary: Option<&crate::backend::ServerInfo>) -> u16 {
    primary.map_or(STATUS_AUTOCOMMIT, |info| info.status & STATUS_AUTOCOMMIT)
}

/// The character set of a handshake collation id that cannot be a client character set (more
/// than one byte for every character: ucs2, utf16, utf16le, utf32), as the server names it.
fn unusable_client_charset(collation: u8) -> Option<&'static str> {
    match collation {
        35 | 90 | 128..=151 | 159 => Some("ucs2"),
        54 | 55 | 101..=124 => Some("utf16"),
        56 | 62 => Some("utf16le"),
        60 | 61 | 160..=183 => Some("utf32"),
        _ => None,
    }
}

/// Sends `err` after the client's packet `seq` (best effort) and ends the connection phase.
async fn refuse(io: &mut ClientIo, err: ClientError, seq: u8, timeout: std::time::Duration) -> Option<Login> {
    err.write(seq.wrapping_add(1), &mut io.out);
    let _ = io.flush(timeout).await;
    None
}
