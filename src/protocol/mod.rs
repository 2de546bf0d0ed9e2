//! MySQL wire protocol: framing, handshake, authentication, OK/ERR/EOF packets and the response
//! boundary tracker.
//!
//! Pure protocol code with no routing policy and no knowledge of sessions. Everything here reads
//! untrusted bytes (from clients and from backends), so every parser returns a [`Error`] instead of
//! panicking, and nothing here allocates per row: the response tracker looks only at the first bytes
//! of each packet and at terminator packets.

pub mod auth;
pub mod command;
pub mod handshake;
pub mod okerr;
pub mod packet;
pub mod prepare;
pub mod response;
pub mod session_track;
pub mod sha2;
pub mod stream;
pub mod wire;

pub use mysql_common::constants::{CapabilityFlags, StatusFlags};

/// Largest payload one frame can carry; a payload of this length or more continues in the next frame.
pub const MAX_FRAME_PAYLOAD: usize = 0xFF_FFFF;

/// Failures of the wire layer. None of them says who is at fault; the caller knows which peer it
/// was talking to and wraps the error accordingly.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The peer closed the connection (clean EOF between packets).
    #[error("connection closed by peer")]
    Closed,
    /// The peer closed the connection in the middle of a packet.
    #[error("connection closed in the middle of a packet")]
    Truncated,
    /// No byte arrived within the configured time.
    #[error("timed out after {0:?} waiting for the peer")]
    Timeout(std::time::Duration),
    /// A logical packet is larger than allowed.
    #[error("packet of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the payload seen so far.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A packet did not have the layout its type requires.
    #[error("malformed {what} packet")]
    Malformed {
        /// Which packet was being parsed.
        what: &'static str,
    },
    /// A sequence id was not the one expected.
    #[error("packet out of order: expected sequence id {expected}, got {got}")]
    OutOfOrder {
        /// The sequence id the protocol required.
        expected: u8,
        /// The sequence id received.
        got: u8,
    },
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Shorthand for a [`Error::Malformed`] error.
    pub fn malformed(what: &'static str) -> Self {
        Self::Malformed { what }
    }
}

/// Result alias for the wire layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
