//! Backend connections: connecting and logging in to a MySQL/MariaDB server with the fixed
//! capability superset, enabling session tracking, and raw command/response I/O.
//!
//! This module never interprets statements; it hands frames to the caller, which streams them
//! through [`crate::protocol::response::Tracker`].

mod conn;
mod pool;
mod state;
mod topology;

pub use conn::{Conn, ConnectParams, ServerInfo};
pub use pool::{Lease, PoolKey, Pools};
pub use state::{Applied, State};
pub use topology::{BackendIndex, Balancer, Node, Topology};

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
    },
    /// The server lacks a capability the proxy requires.
    #[error("server lacks required capability {0}")]
    MissingCapability(&'static str),
    /// Wire-level failure (timeout, closed socket, malformed packet).
    #[error(transparent)]
    Protocol(#[from] protocol::Error),
}

impl Error {
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
                | Self::MissingCapability(_)
        )
    }
}
