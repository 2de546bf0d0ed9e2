//! The one place where proxy-side failures become ERR packets for clients: code, SQLSTATE and
//! message shaped like the server's own.

use bytes::BytesMut;

use crate::backend;
use crate::protocol::okerr::encode_err;
use crate::protocol::packet::put_packet;

/// An error the proxy itself reports to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    /// MySQL error code.
    pub code: u16,
    /// SQLSTATE.
    pub sqlstate: [u8; 5],
    /// Message.
    pub message: String,
}

impl ClientError {
    fn new(code: u16, sqlstate: &[u8; 5], message: impl Into<String>) -> Self {
        Self { code, sqlstate: *sqlstate, message: message.into() }
    }

    /// `ER_ACCESS_DENIED_ERROR` (1045), worded as the server words it.
    pub fn access_denied(user: &[u8], host: &str, using_password: bool) -> Self {
        let user = String::from_utf8_lossy(user);
        let using = if using_password { "YES" } else { "NO" };
        Self::new(1045, b"28000", format!("Access denied for user '{user}'@'{host}' (using password: {using})"))
    }

    /// `ER_CON_COUNT_ERROR` (1040): the proxy's client limit is reached.
    pub fn too_many_connections() -> Self {
        Self::new(1040, b"08004", "Too many connections")
    }

    /// `ER_TOO_MANY_USER_CONNECTIONS` (1203).
    pub fn too_many_user_connections(user: &str) -> Self {
        Self::new(
            1203,
            b"42000",
            format!("User {user} already has more than 'max_user_connections' active connections"),
        )
    }

    /// `ER_UNKNOWN_COM_ERROR` (1047): a command the proxy does not handle.
    pub fn unknown_command() -> Self {
        Self::new(1047, b"08S01", "Unknown command")
    }

    /// `ER_NET_PACKET_TOO_LARGE` (1153).
    pub fn packet_too_large() -> Self {
        Self::new(1153, b"08S01", "Got a packet bigger than 'max_allowed_packet' bytes")
    }

    /// `ER_NET_READ_ERROR`-style (1158) refusal of a malformed packet.
    pub fn malformed_packet() -> Self {
        Self::new(1158, b"08S01", "Got an error reading communication packets")
    }

    /// `ER_NOT_SUPPORTED_AUTH_MODE` (1251): the client cannot do what the proxy requires.
    pub fn auth_mode_not_supported() -> Self {
        Self::new(
            1251,
            b"08004",
            "Client does not support authentication protocol requested by server; consider upgrading MySQL client",
        )
    }

    /// A backend could not be reached or refused the proxy's login (2003-style, so drivers treat it
    /// as a connection failure and may retry).
    pub fn backend_unavailable(backend: &str, err: &backend::Error) -> Self {
        match err {
            // A refusal that concerns the client's own request (unknown database, ...) passes through.
            backend::Error::Refused { code, sqlstate, message } if *code != 1045 && *code != 1040 => {
                let mut state = *b"HY000";
                if sqlstate.len() == 5 {
                    state.copy_from_slice(sqlstate.as_bytes());
                }
                Self { code: *code, sqlstate: state, message: message.clone() }
            }
            _ => Self::new(2003, b"HY000", format!("rwsplit: backend '{backend}' is unavailable: {err}")),
        }
    }

    /// The backend failed while a statement was running (2013-style, "lost connection").
    pub fn lost_backend(err: &backend::Error) -> Self {
        Self::new(2013, b"HY000", format!("rwsplit: lost connection to backend during query: {err}"))
    }

    /// Appends this error as one packet with sequence id `seq`.
    pub fn write(&self, seq: u8, out: &mut BytesMut) {
        let mut payload = BytesMut::with_capacity(9 + self.message.len());
        encode_err(self.code, &self.sqlstate, &self.message, &mut payload);
        put_packet(out, seq, &payload);
    }
}
