//! Operations hooks of the frontend: per-statement and per-connection recording (metrics,
//! per-digest statistics, the slow-query log, the client registry), the graceful-drain signal
//! sessions watch between commands, and the scrape-time copy of shared state into gauges.
//!
//! The session and statement code calls one-line hooks from here; everything they record goes
//! through handles resolved once ([`crate::stats`]), so a statement costs a few atomic adds, one
//! uncontended lock for its digest and one for its registry entry. No task runs here.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::query::{Exec, Work};
use super::session::Session;
use crate::backend::{self, BackendIndex, Lease, Pool, Pools, Topology};
use crate::classify::Classified;
use crate::config::Config;
use crate::protocol::command;
use crate::protocol::okerr::STATUS_IN_TRANS;
use crate::protocol::response;
use crate::router::Target;
pub(super) use crate::shared::Client;
use crate::shared::Shared;
use crate::shared::{Entry, Seen};
use crate::stats::{Checkout, ProtocolFault, QueryResult, Reject, RouteLabel};

/// Longest SQL prefix normalized for a new digest's text.
const NORMALIZE_LIMIT: usize = 4096;
/// Longest SQL text put in a debug log line.
const LOG_SQL_LIMIT: usize = 200;

/// Completes when the session must close instead of reading its next command (graceful drain).
pub(super) async fn until_close(shared: &Shared, status: u16) {
    shared.ops.drain.until_close(status & STATUS_IN_TRANS != 0).await;
}

/// Counts an accepted TCP connection, and the older handshake it cut off, if any.
pub(super) fn accepted(shared: &Shared, cut_off_a_handshake: bool) {
    shared.ops.metrics.clients.accepted.inc();
    if cut_off_a_handshake {
        shared.ops.metrics.clients.reject(Reject::HandshakeEvicted);
    }
}

/// Counts and logs (info, rate-limited per address) a client read that broke the protocol.
/// Timeouts, clean closes and socket errors are not protocol errors and pass silently.
pub(super) fn protocol(shared: &Shared, peer: std::net::SocketAddr, err: &crate::protocol::Error) {
    use crate::protocol::Error as E;
    let fault = match err {
        E::TooLarge { .. } => ProtocolFault::TooLarge,
        E::OutOfOrder { .. } => ProtocolFault::OutOfOrder,
        E::Truncated => ProtocolFault::Truncated,
        E::Malformed { .. } => ProtocolFault::Malformed,
        E::Closed | E::Timeout(_) | E::Io(_) => return,
    };
    shared.protocol_error(peer, fault, err);
}

/// Counts and logs a client packet that broke the protocol in a way found above the wire layer
/// (a command that does not parse, an unknown command byte).
pub(super) fn bad_command(shared: &Shared, peer: std::net::SocketAddr, fault: ProtocolFault, what: &'static str) {
    shared.protocol_error(peer, fault, &what);
}

/// Counts a connection refused after login.
pub(super) fn rejected(shared: &Shared, reason: Reject) {
    shared.ops.metrics.clients.reject(reason);
}

/// Registers a logged-in session in the client registry.
pub(super) fn join(shared: &Shared, session_id: super::ConnId, peer: std::net::SocketAddr, user: &str) -> Client {
    shared.ops.clients.join(session_id, peer, user, shared.ops.metrics.clone())
}

/// Between two commands: publishes what the session holds to the registry and counts the bytes
/// exchanged since the last call.
pub(super) fn between_commands(session: &mut Session) {
    let entry = &session.observed.entry;
    entry.report(Seen {
        held: session.binding.seen(),
        in_transaction: session.status & STATUS_IN_TRANS != 0,
        pins: session.binding.pins(),
    });
    let clients = &entry.metrics.clients;
    clients.sent_bytes.inc_by(std::mem::take(&mut session.io.sent));
    clients.received_bytes.inc_by(std::mem::take(&mut session.io.received));
}

/// Checks a connection out of `pool` (backend `index`, named `name`), recording the wait and
/// whether it timed out or failed to connect.
pub(super) async fn checkout(
    shared: &Shared,
    pool: &Pool,
    index: BackendIndex,
    name: &str,
    timeout: Duration,
    retryable: bool,
) -> Result<Lease, backend::Error> {
    let started = Instant::now();
    let result = Pools::checkout(pool, name, timeout, retryable, started).await;
    let outcome = match &result {
        Ok(_) => Checkout::Ok,
        Err(backend::Error::CheckoutTimeout { .. }) => Checkout::Timeout,
        Err(backend::Error::Drained) => Checkout::Drained,
        Err(_) => Checkout::Error,
    };
    shared.ops.metrics.backends.checkout(index.0, name, started.elapsed(), outcome);
    result
}

/// One statement being recorded. [`Statement::done`] records a complete response; dropped
/// without it, the statement counts as failed.
pub(super) struct Statement<'a> {
    entry: Arc<Entry>,
    sql: Option<&'a [u8]>,
    digest: u64,
    target: Target,
    primary: Option<BackendIndex>,
    slow: Duration,
    started: Instant,
    finished: bool,
}

impl<'a> Statement<'a> {
    /// Starts timing a routed statement.
    pub(super) fn start(
        client: &Client,
        exec: &Exec<'a>,
        stmt: &Classified,
        target: Target,
        topology: &Topology,
        config: &Config,
    ) -> Self {
        let sql = match exec.work {
            Work::Forward(payload) if payload.first() == Some(&command::QUERY) => payload.get(1..),
            Work::Prepare(sql) => Some(sql),
            _ => None,
        };
        Self {
            entry: client.entry.clone(),
            sql,
            digest: stmt.digest,
            target,
            primary: topology.primary,
            slow: config.logging.slow_query,
            started: Instant::now(),
            finished: false,
        }
    }

    /// Records a complete response from `backend`.
    pub(super) fn done(&mut self, topology: &Topology, backend: BackendIndex, outcome: &response::Outcome) {
        self.finished = true;
        let route = if Some(backend) == self.primary { RouteLabel::Primary } else { RouteLabel::Replica };
        let result = if outcome.error.is_some() { QueryResult::Error } else { QueryResult::Ok };
        let name = topology.node(backend).map_or("unknown", |n| n.name());
        self.record(route, result, outcome.rows, name);
    }

    fn record(&self, route: RouteLabel, result: QueryResult, rows: u64, backend: &str) {
        let elapsed = self.started.elapsed();
        let metrics = &self.entry.metrics;
        metrics.clients.query(route, result, elapsed);
        self.entry.statements.fetch_add(1, Ordering::Relaxed);
        let sql = self.sql;
        let text = || digest_text(sql);
        metrics.digests.record(self.digest, text, elapsed, rows, result != QueryResult::Ok);
        if !self.slow.is_zero() && elapsed >= self.slow {
            metrics.clients.slow_queries.inc();
            let digest = format!("{:016x}", self.digest);
            let duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
            tracing::warn!(digest = %digest, duration_ms, backend, result = result.label(), "slow query");
            if tracing::enabled!(tracing::Level::DEBUG) {
                let raw = sql.unwrap_or_default();
                let mut text = String::from_utf8_lossy(raw.get(..LOG_SQL_LIMIT + 4).unwrap_or(raw)).into_owned();
                crate::stats::truncate_text(&mut text, LOG_SQL_LIMIT);
                tracing::debug!(digest = %digest, sql = %text, "slow query text");
            }
        }
    }
}

impl Drop for Statement<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let route = match self.target {
            Target::Replica => RouteLabel::Replica,
            Target::Backend(index) if Some(index) != self.primary => RouteLabel::Replica,
            _ => RouteLabel::Primary,
        };
        self.record(route, QueryResult::Failed, 0, "none");
    }
}

/// The normalized text of a new digest (`classify::normalize` of the SQL's first 4 KiB).
fn digest_text(sql: Option<&[u8]>) -> String {
    let Some(sql) = sql else { return "(prepared statement)".to_owned() };
    let mut text = String::new();
    crate::classify::normalize(sql.get(..NORMALIZE_LIMIT).unwrap_or(sql), &mut text);
    text
}
