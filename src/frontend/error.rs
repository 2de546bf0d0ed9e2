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

/// The proxy lost its backend connection mid-statement: `ER_NET_READ_ERROR` (1158, SQLSTATE
/// 08S01, a communication failure drivers treat as a lost connection). Never a client-range code
/// (2000-2999): libmariadb refuses those from a server and reports 2027 "malformed packet".
const LOST: (u16, &[u8; 5]) = (1158, b"08S01");

/// No backend could be reached for the statement: `ER_CONNECT_TO_FOREIGN_DATA_SOURCE` (1429, the
/// server's own code for an unreachable remote server) with SQLSTATE 08S01, so that drivers treat
/// it as a connection failure and may retry. Not 2003, for the reason given at [`LOST`].
const UNREACHABLE: (u16, &[u8; 5]) = (1429, b"08S01");

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

    /// `ER_HOST_IS_BLOCKED` (1129): too many failed logins from this address (see
    /// `listen.max_auth_failures`).
    pub fn host_blocked(host: &str) -> Self {
        Self::new(1129, b"HY000", format!("Host '{host}' is blocked because of many connection errors"))
    }

    /// `ER_CON_COUNT_ERROR` (1040): the proxy's client limit is reached.
    pub fn too_many_connections() -> Self {
        Self::new(1040, b"08004", "Too many connections")
    }

    /// `ER_WRONG_VALUE_FOR_VAR` (1231) for a handshake character set that cannot be a client
    /// character set, with the text the server sends.
    pub fn bad_client_charset(charset: &str) -> Self {
        Self::new(1231, b"42000", format!("Variable 'character_set_client' can't be set to the value of '{charset}'"))
    }

    /// `ER_NOT_SUPPORTED_YET` (1235): a `KILL` the proxy cannot translate to a backend thread
    /// (after another statement of a multi-statement, `KILL USER`, `KILL QUERY ID`, inside an
    /// executable comment or a prepared statement). Sending its id untranslated would kill
    /// whatever backend thread has that number.
    pub fn kill_not_translated() -> Self {
        Self::new(
            1235,
            b"42000",
            "This version of MariaDB doesn't yet support 'this KILL through rwsplit (KILL [QUERY] <id> alone or first in the packet)'",
        )
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

    /// A backend could not be reached or refused the proxy's login ([`UNREACHABLE`], so drivers
    /// treat it as a connection failure and may retry).
    pub fn backend_unavailable(backend: &str, err: &backend::Error) -> Self {
        match err {
            // A refusal that concerns the client's own request (unknown database, ...) or that a
            // direct client would get too (1040 Too many connections) passes through.
            backend::Error::Refused { code, sqlstate, message } if *code != 1045 => {
                let mut state = *b"HY000";
                if sqlstate.len() == 5 {
                    state.copy_from_slice(sqlstate.as_bytes());
                }
                Self { code: *code, sqlstate: state, message: message.clone() }
            }
            _ => Self::new(UNREACHABLE.0, UNREACHABLE.1, format!("rwsplit: backend '{backend}' is unavailable: {err}")),
        }
    }

    /// The backend failed while a statement was running ([`LOST`]).
    pub fn lost_backend(err: &backend::Error) -> Self {
        Self::new(LOST.0, LOST.1, format!("rwsplit: lost connection to backend during query: {err}"))
    }

    /// Appends this error as one packet with sequence id `seq`.
    pub fn write(&self, seq: u8, out: &mut BytesMut) {
        let mut payload = BytesMut::with_capacity(9 + self.message.len());
        encode_err(self.code, &self.sqlstate, &self.message, &mut payload);
        put_packet(out, seq, &payload);
    }
}

impl ClientError {
    /// Re-creates an ERR packet a backend sent (a state sync the server refused), so it can be
    /// sent to the client with the client's sequence id.
    pub fn from_err_packet(payload: &[u8]) -> Self {
        match crate::protocol::okerr::Err::parse(payload) {
            Ok(e) => {
                Self { code: e.code, sqlstate: e.sqlstate, message: String::from_utf8_lossy(e.message).into_owned() }
            }
            Err(_) => Self::new(1105, b"HY000", "rwsplit: malformed ERR packet from the backend"),
        }
    }

    /// The checkout for a backend failed: the backend is unreachable or its pool is exhausted.
    pub fn checkout_failed(backend: &str, user: &str, err: &backend::Error) -> Self {
        match err {
            err if err.is_login_refusal() => Self::backend_refused_login(backend, user, err),
            backend::Error::CheckoutTimeout { connecting, .. } => {
                // The server's exact text; which backend, how long and what was waited for (a busy
                // pool, or a new connection that did not finish opening) go to the log.
                tracing::warn!(backend, error = %err, connecting, "checkout timed out; client gets 1040");
                Self::too_many_connections()
            }
            _ => Self::backend_unavailable(backend, err),
        }
    }

    /// A backend refused the proxy's login for `user`: the server's own code and words (an
    /// authentication method the proxy cannot use is `ER_NOT_SUPPORTED_AUTH_MODE`, 1251), which
    /// backend, and what to look at. The pool logs the refusal (rate-limited), so this does not.
    pub fn backend_refused_login(backend: &str, user: &str, err: &backend::Error) -> Self {
        let (code, sqlstate, why): (u16, [u8; 5], String) = match err {
            backend::Error::Refused { code, sqlstate, message } => {
                let state = <[u8; 5]>::try_from(sqlstate.as_bytes()).unwrap_or(*b"28000");
                (*code, state, message.clone())
            }
            other => (1251, *b"08004", other.to_string()),
        };
        let hint = match code {
            // ER_DBACCESS_DENIED_ERROR: the account lacks rights on the session's schema.
            1044 => "",
            // ER_HOST_IS_BLOCKED
            1129 => " (the backend blocked the proxy's host after too many connection errors; FLUSH HOSTS there)",
            // ER_HOST_NOT_PRIVILEGED
            1130 => " (the backend does not accept this account from the proxy's host)",
            _ => " (check backend_user and backend_password of this user in the proxy's configuration, and the account on the backend)",
        };
        Self::new(
            code,
            &sqlstate,
            format!("rwsplit: backend '{backend}' refused the login for user '{user}': {why}{hint}"),
        )
    }

    /// No primary is known, so a write cannot run.
    pub fn no_primary() -> Self {
        Self::new(UNREACHABLE.0, UNREACHABLE.1, "rwsplit: no primary is available for writes")
    }

    /// No replica is usable and `routing.no_replica = "error"`.
    pub fn no_replica() -> Self {
        Self::new(UNREACHABLE.0, UNREACHABLE.1, "rwsplit: no replica is available for reads")
    }
}

impl ClientError {
    /// `ER_UNKNOWN_STMT_HANDLER` (1243) for a statement id the client never prepared.
    pub fn unknown_statement(payload: &[u8], command: &str) -> Self {
        let id = crate::protocol::prepare::statement_id(payload).unwrap_or(0);
        Self::new(1243, b"HY000", format!("Unknown prepared statement handler ({id}) given to {command}"))
    }

    /// `ER_MAX_PREPARED_STMT_COUNT_REACHED` (1461): the session's `server.max_prepared_per_session`.
    pub fn too_many_prepared(limit: u32) -> Self {
        let message = format!("Can't create more than max_prepared_stmt_count statements (current value: {limit})");
        Self::new(1461, b"42000", message)
    }

    /// `ER_UNKNOWN_ERROR` (1105) for an execute whose long data was dropped: worded as the
    /// server's error for long data beyond `max_allowed_packet`.
    pub fn long_data_too_long() -> Self {
        Self::new(
            1105,
            b"HY000",
            "Parameter of prepared statement which is set through mysql_send_long_data() is longer than 'max_allowed_packet' bytes",
        )
    }

    /// `ER_STMT_HAS_NO_OPEN_CURSOR` (1421).
    pub fn no_open_cursor(id: u32) -> Self {
        Self::new(1421, b"HY000", format!("The statement ({id}) has no open cursor."))
    }

    /// `ER_NO_SUCH_THREAD` (1094) for `KILL` of an unknown connection id.
    pub fn unknown_thread(id: u32) -> Self {
        Self::new(1094, b"HY000", format!("Unknown thread id: {id}"))
    }

    /// `ER_KILL_DENIED_ERROR` (1095): another user's connection.
    pub fn not_owner(id: u32) -> Self {
        Self::new(1095, b"HY000", format!("You are not owner of thread {id}"))
    }

    /// `ER_CONNECTION_KILLED` (1927).
    pub fn connection_killed() -> Self {
        Self::new(1927, b"70100", "Connection was killed")
    }

    /// `ER_NOT_ALLOWED_COMMAND` (1148): `LOAD DATA LOCAL` from a client that did not enable it.
    pub fn local_infile_refused() -> Self {
        Self::new(1148, b"42000", "The used command is not allowed with this MariaDB version")
    }
}

/// Errors of a primary failover (`frontend/failover.rs`).
impl ClientError {
    /// The session's open transaction lived on a backend that stopped being the primary or went
    /// down: it is gone. `ER_LOCK_DEADLOCK` (1213, SQLSTATE 40001), the code drivers and ORMs already treat as
    /// "the transaction was rolled back, run it again"; the session continues.
    pub fn transaction_lost_in_failover() -> Self {
        Self::new(
            1213,
            b"40001",
            "rwsplit: failover: the backend of the open transaction stopped being primary or went down; the \
             transaction was rolled back, run it again",
        )
    }

    /// The session's pinned state (temporary tables, user variables, locks, server-side
    /// `PREPARE`) lived on a backend that stopped being the primary or went down ([`LOST`]); the
    /// session continues without that state.
    pub fn state_lost_in_failover() -> Self {
        Self::new(
            LOST.0,
            LOST.1,
            "rwsplit: failover: the backend holding this session's state stopped being primary or went down; \
             its temporary tables, user variables, locks and prepared SQL are gone",
        )
    }

    /// The held connection to the primary failed mid-statement: the statement's outcome is
    /// unknown and the transaction and pinned state on it are gone; the session continues.
    pub fn lost_primary(err: &backend::Error) -> Self {
        Self::new(
            LOST.0,
            LOST.1,
            format!(
                "rwsplit: lost the connection to the primary during the query ({err}); the open transaction and \
                 session state on it are gone and the statement's outcome is unknown"
            ),
        )
    }

    /// No primary could be reached within `routing.failover_hold`.
    pub fn no_primary_after(waited: std::time::Duration, last: Option<&ClientError>) -> Self {
        let cause = last.map(|e| format!(": {}", e.message)).unwrap_or_default();
        Self::new(
            UNREACHABLE.0,
            UNREACHABLE.1,
            format!(
                "rwsplit: no primary is available for writes (waited {} ms for a failover){cause}",
                waited.as_millis()
            ),
        )
    }
}

impl ClientError {
    /// `ER_SECURE_TRANSPORT_REQUIRED` (3159), MySQL's refusal of a client without TLS under
    /// `require_secure_transport=ON` (here `tls.mode = "required"`).
    pub fn secure_transport_required() -> Self {
        Self::new(
            3159,
            b"HY000",
            "Connections using insecure transport are prohibited while --require_secure_transport=ON.",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::ClientError;
    use crate::backend;

    fn refused(code: u16, sqlstate: &str) -> backend::Error {
        backend::Error::Refused { code, sqlstate: sqlstate.into(), message: "the server's words".into() }
    }

    #[test]
    fn a_refused_backend_login_keeps_the_servers_code_and_says_what_to_check() {
        let e = ClientError::backend_refused_login("node1", "u", &refused(1045, "28000"));
        assert_eq!((e.code, &e.sqlstate), (1045, b"28000"));
        assert!(
            e.message.contains("node1")
                && e.message.contains("the server's words")
                && e.message.contains("backend_password")
        );
        let e = ClientError::backend_refused_login("node1", "u", &refused(1130, "HY000"));
        assert_eq!((e.code, &e.sqlstate), (1130, b"HY000"));
        assert!(e.message.contains("proxy's host") && !e.message.contains("backend_password"), "{}", e.message);
        let e = ClientError::backend_refused_login("node1", "u", &refused(1129, "HY000"));
        assert!(e.code == 1129 && e.message.contains("FLUSH HOSTS"), "{}", e.message);
        let e = ClientError::backend_refused_login("node1", "u", &refused(1044, "42000"));
        assert_eq!((e.code, &e.sqlstate), (1044, b"42000"));
        assert!(!e.message.contains("backend_password"), "{}", e.message);
        let e = ClientError::backend_refused_login("node1", "u", &backend::Error::UnsupportedAuth("dialog".into()));
        assert_eq!((e.code, &e.sqlstate), (1251, b"08004"));
    }

    #[test]
    fn a_server_going_away_is_a_connect_failure_not_a_refusal() {
        assert!(refused(1040, "08004").is_refusal(), "too many connections: the server is up");
        assert!(refused(1045, "28000").is_refusal() && refused(1045, "28000").is_login_refusal());
        for going_away in [1053, 3032] {
            let e = refused(going_away, "08S01");
            assert!(!e.is_refusal() && !e.is_login_refusal() && e.is_before_send(), "{going_away}");
        }
    }
}
