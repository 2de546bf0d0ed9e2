//! Timeouts a client sets for its own session, emulated on the client side because the session
//! is spread over pooled backend connections:
//! - `SET SESSION wait_timeout = n`: the session is closed after `n` idle seconds, as the server
//!   closes an idle connection (the client's next statement sees 2006/2013). The proxy's
//!   `server.idle_timeout` stays the upper bound.
//! - A held backend connection the server ended while the client was idle
//!   (`idle_transaction_timeout`, a `KILL` from elsewhere): the client connection is closed too,
//!   as a direct client's would be, instead of answering its next statement with an error. When
//!   the server itself is gone, that is a failover instead (one error, the session goes on).
//!
//! Nothing here waits or runs a task.

use std::time::Duration;

use super::query::Outcome;
use super::session::Session;
use crate::backend::{State, Topology};
use crate::config::Config;

/// How long the session may stay idle: the session's `wait_timeout` when it set one, capped by
/// the proxy's configured idle timeout.
pub(super) fn idle_limit(state: &State, configured: Duration) -> Duration {
    let set = state
        .vars
        .get(&b"wait_timeout"[..])
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    match set {
        Some(limit) => limit.min(configured),
        None => configured,
    }
}

impl Session {
    /// Closes the session when the server already ended its held connection while the client
    /// was idle; see the module docs. `None` when the statement may run.
    ///
    /// A server that is gone (killed, crashed, unreachable: its port refuses or does not answer
    /// within [`GONE_AFTER`]) is a failover the monitor has not seen yet, not a session the
    /// server ended: the client gets the failover's one error and the session goes on, as it
    /// would a moment later once the monitor drained the backend.
    pub(super) async fn left_by_server(&mut self, seq: u8, topology: &Topology, config: &Config) -> Option<Outcome> {
        let lease = self.binding.lease_mut()?;
        if !lease.is_closed_by_server() {
            return None;
        }
        lease.broken = true;
        let backend = lease.backend();
        // The address the connection was made to: after a reload that renumbered the backends
        // the lease's index may name another server, and a host name may resolve elsewhere now.
        let alive = match (lease.peer_addr(), topology.node(backend)) {
            (Some(addr), _) => listens(addr).await,
            (None, Some(node)) => listens((node.config.host.as_str(), node.config.port)).await,
            (None, None) => true,
        };
        if !alive {
            tracing::warn!(
                backend = backend.0,
                "the server of the held connection is gone; one error, then the session goes on"
            );
            self.shared.topology.request_probe();
            return Some(self.held_connection_lost(seq, config).await);
        }
        tracing::info!(
            backend = backend.0,
            "the server ended the held connection while the client was idle; closing the client as it would"
        );
        self.binding.forget();
        Some(Outcome::Close)
    }
}

/// How long a server whose held connection closed may take to accept a new TCP connection
/// before it counts as gone.
const GONE_AFTER: Duration = Duration::from_millis(200);

/// True when something accepts TCP connections on `addr` (its name resolved) within [`GONE_AFTER`].
async fn listens(addr: impl tokio::net::ToSocketAddrs) -> bool {
    matches!(tokio::time::timeout(GONE_AFTER, tokio::net::TcpStream::connect(addr)).await, Ok(Ok(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_timeout_shortens_the_idle_limit_only() {
        let configured = Duration::from_secs(600);
        let mut state = State::default();
        assert_eq!(idle_limit(&state, configured), configured);
        state.vars.insert(b"wait_timeout"[..].into(), b"1"[..].into());
        assert_eq!(idle_limit(&state, configured), Duration::from_secs(1));
        state.vars.insert(b"wait_timeout"[..].into(), b"28800"[..].into());
        assert_eq!(idle_limit(&state, configured), configured);
    }
}
