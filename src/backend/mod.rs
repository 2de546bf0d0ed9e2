//! Backend connections: connecting and logging in to a MySQL/MariaDB server with the fixed
//! capability superset, enabling session tracking, and raw command/response I/O.
//!
//! This module never interprets statements; it hands frames to the caller, which streams them
//! through [`crate::protocol::response::Tracker`].

mod cap;
mod conn;
mod gtid;
mod login;
mod pool;
mod state;
mod stmt;
pub mod tls;
mod topology;

pub use conn::{Conn, ConnectParams, ServerInfo};
pub use gtid::{Gtid, ParseError as GtidParseError, Position as GtidPosition};
pub use pool::{Evidence, Lease, Pool, PoolKey, PoolStats, Pools, ResetCounts, Watch, REMOVED, STALLED_WAITS};
pub use state::{Applied, State};
pub use stmt::{GlobalId, Owner, StmtCache};
pub use topology::{BackendIndex, Balancer, Health, Node, Replication, Role, Topology, TopologyCell};

use std::time::Duration;

use crate::protocol;

/// Failures while connecting to or talking with a backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The TCP connection could not be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// `host:port` that was dialled.
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// Connecting (TCP plus login) took longer than the connect timeout.
    #[error("connecting to {addr} timed out after {after:?}")]
    ConnectTimeout {
        /// `host:port` that was dialled.
        addr: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// The server refused the login (or failed a setup statement) with an ERR packet.
    #[error("server refused: {code} ({sqlstate}) {message}")]
    Refused {
        /// MySQL error code.
        code: u16,
        /// SQLSTATE.
        sqlstate: String,
        /// Server message.
        message: String,
    },
    /// The server asked for an authentication method the proxy cannot perform.
    #[error("unsupported authentication plugin {0:?}")]
    UnsupportedAuth(String),
    /// No pooled connection became free within the checkout timeout.
    #[error("no connection to backend {backend} became available within {waited:?}")]
    CheckoutTimeout {
        /// Backend name.
        backend: String,
        /// How long the checkout waited.
        waited: Duration,
        /// The pool had room for more connections: the wait was for a new connection to be made
        /// (a backend slow to accept logins, a frozen one, or the backend's cap over all pools),
        /// not for a busy one to come back.
        connecting: bool,
    },
    /// `tls.backend` requires TLS but the server does not offer it (or the CA did not load).
    #[error("tls.backend requires TLS, but the server does not offer it or the proxy's TLS settings did not load")]
    TlsRequired,
    /// The TLS handshake with the server failed (certificate refused, protocol mismatch, ...).
    #[error("TLS handshake failed: {0}")]
    TlsHandshake(#[source] std::io::Error),
    /// The authentication exchange cannot continue safely or at all; the text says why and which
    /// setting changes that.
    #[error("authentication: {0}")]
    AuthExchange(&'static str),
    /// The server lacks a capability the proxy requires.
    #[error("server lacks required capability {0}")]
    MissingCapability(&'static str),
    /// Wire-level failure (timeout, closed socket, malformed packet).
    #[error(transparent)]
    Protocol(#[from] protocol::Error),
    /// A connection attempt made for another checkout failed; this is its description.
    #[error("{0}")]
    ConnectFailed(String),
    /// The monitor drained the backend (marked it down, or another primary was elected) while
    /// the checkout waited for a connection to it. Nothing was sent, and nothing failed to
    /// connect: the statement goes elsewhere, or waits for the primary.
    #[error("the backend was drained by the monitor while this checkout waited")]
    Drained,
    /// A read waited on a backend that the monitor marked down meanwhile (its pools were
    /// drained); the connection is given up. Nothing says the statement did not run there, but a
    /// read may run again elsewhere when nothing of its answer reached the client.
    #[error("the backend was marked down while the read waited for its answer (after {waited:?})")]
    Abandoned {
        /// How long the read had waited for the next response bytes.
        waited: Duration,
    },
    /// A statement waited on a primary that the monitor replaced meanwhile (another backend was
    /// elected); the connection is given up. Its outcome is unknown, as when a server dies.
    #[error("the backend stopped being the primary while the statement waited for its answer (after {waited:?}); its outcome is unknown")]
    Demoted {
        /// How long the statement had waited for the next response bytes.
        waited: Duration,
    },
    /// A replica read got no response bytes for `pool.replica_read_timeout`.
    #[error("no answer from the replica for {after:?} (pool.replica_read_timeout)")]
    Stalled {
        /// The bound that expired.
        after: Duration,
    },
}

impl Clone for Error {
    fn clone(&self) -> Self {
        self.for_waiters()
    }
}

impl Error {
    /// A copy of a connect failure for checkouts that were waiting on it: server refusals keep
    /// their code, anything else becomes [`Error::ConnectFailed`] with the same text.
    pub fn for_waiters(&self) -> Error {
        match self {
            Self::Refused { code, sqlstate, message } => {
                Self::Refused { code: *code, sqlstate: sqlstate.clone(), message: message.clone() }
            }
            Self::UnsupportedAuth(plugin) => Self::UnsupportedAuth(plugin.clone()),
            Self::AuthExchange(why) => Self::AuthExchange(why),
            Self::MissingCapability(what) => Self::MissingCapability(what),
            Self::TlsRequired => Self::TlsRequired,
            Self::Drained => Self::Drained,
            other => Self::ConnectFailed(other.to_string()),
        }
    }

    /// True when the server answered the connect with a refusal: it is up and reachable, so
    /// neither a failover nor marking it down helps, and the client should hear why at once. A
    /// server shutting down (`ER_SERVER_SHUTDOWN` 1053) or in offline mode
    /// (`ER_SERVER_OFFLINE_MODE` 3032) is going away: that is a connect failure (writes wait for
    /// a failover, reads go elsewhere).
    pub fn is_refusal(&self) -> bool {
        const GOING_AWAY: [u16; 2] = [1053, 3032];
        matches!(self, Self::Refused { code, .. } if !GOING_AWAY.contains(code))
            || matches!(
                self,
                Self::UnsupportedAuth(_) | Self::AuthExchange(_) | Self::MissingCapability(_) | Self::TlsRequired
            )
    }

    /// True when the server refused the credentials the proxy logged in with (wrong backend
    /// password, unknown or locked account, host not allowed, an authentication method the proxy
    /// cannot use): a configuration problem of one user, not a backend failure.
    pub fn is_login_refusal(&self) -> bool {
        // ER_DBACCESS_DENIED_ERROR, ER_ACCESS_DENIED_ERROR, ER_HOST_IS_BLOCKED,
        // ER_HOST_NOT_PRIVILEGED, ER_NOT_SUPPORTED_AUTH_MODE, ER_ACCESS_DENIED_NO_PASSWORD_ERROR,
        // ER_MUST_CHANGE_PASSWORD_LOGIN, ER_ACCOUNT_HAS_BEEN_LOCKED (MySQL, MariaDB).
        const ACCESS: [u16; 9] = [1044, 1045, 1129, 1130, 1251, 1698, 1862, 3118, 4151];
        match self {
            Self::Refused { code, .. } => ACCESS.contains(code),
            Self::UnsupportedAuth(_) | Self::AuthExchange(_) => true,
            _ => false,
        }
    }
}

impl Error {
    /// True when the server did not answer in time: the statement may still be running there.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Protocol(protocol::Error::Timeout(_)) | Self::Stalled { .. })
    }

    /// True when nothing of a client's statement can have reached the server, so the statement
    /// may be retried on another connection.
    pub fn is_before_send(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. }
                | Self::ConnectTimeout { .. }
                | Self::CheckoutTimeout { .. }
                | Self::Refused { .. }
                | Self::UnsupportedAuth(_)
                | Self::TlsRequired
                | Self::TlsHandshake(_)
                | Self::AuthExchange(_)
                | Self::MissingCapability(_)
                | Self::ConnectFailed(_)
                | Self::Drained
        )
    }
}
