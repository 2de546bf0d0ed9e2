//! Failover as one client session lives it. Called from `query.rs` at four points:
//!
//! * **statement start** ([`Session::leave_retired`]): a held backend connection whose backend was
//!   drained (the primary changed, or the backend went down) is dropped. If it carried a
//!   transaction or pinned state, this statement fails with one error saying so, and the session
//!   continues on the new primary, as a server continues after rolling back a deadlocked
//!   transaction.
//! * **writes** ([`Session::acquire_primary`]): with no primary known, or when connecting to the
//!   primary fails before anything was sent, the statement waits for the monitor to publish a
//!   primary, up to `routing.failover_hold`, then fails with a clear error. Reads meanwhile keep
//!   going to replicas.
//! * **reads** ([`Session::pick_replica`]): with `routing.consistency = "session"`, only replicas
//!   whose last polled GTID position covers the session's last write (its `last_gtid`, learned
//!   from the OK packet) qualify; otherwise the read goes to the primary. No extra round trip.
//! * **a held primary connection dying mid-statement** ([`Session::lost_primary`]): one error,
//!   then the session continues (instead of being closed).
//!
//! Nothing here blocks longer than `routing.failover_hold`, and nothing holds a lock across an
//! `.await`.

use std::time::{Duration, Instant};

use super::query::Outcome;
use super::session::Session;
use super::ClientError;
use crate::backend::{self, BackendIndex, Gtid, Lease, Topology};
use crate::config::{Config, Consistency, NoReplica};
use crate::protocol::okerr::STATUS_IN_TRANS;
use crate::router::Target;

/// While a write waits for a primary, it tries the current one again this often even if the
/// monitor published nothing (a primary that only blipped).
const RETRY_PRIMARY: Duration = Duration::from_millis(500);

/// Completes once a snapshot names no primary or another one than `index` (never, if the cell
/// goes away): at once when the last publication already did (the snapshot the caller acts on
/// may be older than the receiver).
async fn primary_moved(changes: &mut tokio::sync::watch::Receiver<Option<BackendIndex>>, index: BackendIndex) {
    loop {
        if *changes.borrow_and_update() != Some(index) {
            return;
        }
        if changes.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Session {
    /// Drops a held connection that a failover retired; see the module docs. `seq` is the
    /// client's command sequence id. `None` when the statement may run.
    pub(super) async fn leave_retired(&mut self, seq: u8, config: &Config) -> Option<Outcome> {
        let lease = self.binding.lease()?;
        if !lease.is_retired() {
            return None;
        }
        let in_transaction = self.status & STATUS_IN_TRANS != 0;
        tracing::warn!(backend = lease.backend().0, in_transaction, "held backend connection retired by a failover");
        Some(self.held_connection_lost(seq, config).await)
    }

    /// The session's held connection is gone with its backend: answers the statement `seq`
    /// started with the failover's one error (the transaction, or the pinned state, is lost)
    /// and lets the session go on.
    pub(super) async fn held_connection_lost(&mut self, seq: u8, config: &Config) -> Outcome {
        self.binding.forget();
        self.previous.connection_lost();
        let in_transaction = self.status & STATUS_IN_TRANS != 0;
        self.forget_backend_state();
        let err = if in_transaction {
            ClientError::transaction_lost_in_failover()
        } else {
            ClientError::state_lost_in_failover()
        };
        self.reply_error(&err, seq.wrapping_add(1), config).await
    }

    /// Checks out a connection to the primary, waiting up to `routing.failover_hold` while none
    /// is known or the known one refuses connections. Only failures before anything was sent
    /// wait; an exhausted pool fails at once, unless the monitor dropped or replaced the primary
    /// while the checkout waited.
    pub(super) async fn acquire_primary(
        &mut self,
        with_schema: bool,
        config: &Config,
        topology: &Topology,
    ) -> Result<Lease, (ClientError, Option<BackendIndex>)> {
        let hold = config.routing.failover_hold;
        let started = Instant::now();
        let mut changes = self.shared.topology.subscribe();
        let mut snapshot = None;
        let mut last_error = None;
        loop {
            let current: &Topology = snapshot.as_deref().unwrap_or(topology);
            if let Some(index) = current.primary {
                // A checkout that waits for a connection (the pool is full of statements stuck on
                // a primary that froze) gives up as soon as the monitor drops that primary or
                // elects another one; the statement is then held like any other.
                let moved = primary_moved(&mut changes, index);
                let checkout = self.checkout(index, with_schema, config, current, false);
                let result = tokio::select! {
                    biased;
                    result = checkout => Some(result),
                    () = moved => None,
                };
                let Some(result) = result else {
                    // The checkout itself is bounded (checkout_timeout) and a turn with no primary
                    // checks the hold; this bounds a primary moving again and again.
                    let waited = started.elapsed();
                    if waited >= hold {
                        return Err((ClientError::no_primary_after(waited, last_error.as_ref()), None));
                    }
                    snapshot = Some(self.shared.topology.load_full());
                    continue;
                };
                match result {
                    Ok(lease) => {
                        if last_error.is_some() || snapshot.is_some() {
                            tracing::info!(
                                waited_ms = started.elapsed().as_millis(),
                                "held statement resumes on the primary"
                            );
                        }
                        return Ok(lease);
                    }
                    Err((err, None)) => {
                        // Timed out just as the monitor dropped that primary: held as well.
                        let now = self.shared.topology.load_full();
                        if now.primary == Some(index) {
                            return Err((err, None));
                        }
                        last_error = Some(err);
                        snapshot = Some(now);
                        if started.elapsed() < hold {
                            continue;
                        }
                    }
                    Err((err, Some(_))) => {
                        self.shared.topology.request_probe();
                        last_error = Some(err);
                    }
                }
            }
            let waited = started.elapsed();
            if waited >= hold {
                return Err((ClientError::no_primary_after(waited, last_error.as_ref()), None));
            }
            let wait = (hold - waited).min(RETRY_PRIMARY);
            if let Ok(Err(_)) = tokio::time::timeout(wait, changes.changed()).await {
                // The cell outlives every session, so this cannot happen; never spin if it does.
                tokio::time::sleep(wait).await;
            }
            snapshot = Some(self.shared.topology.load_full());
        }
    }

    /// Where a read goes: `Ok(Some(replica))`, `Ok(None)` for the primary, or an error when no
    /// replica is usable and `routing.no_replica = "error"`. In session consistency after a write,
    /// only replicas that applied the session's last GTID qualify, else the primary.
    pub(super) fn pick_replica(
        &self,
        topology: &Topology,
        excluded: Option<BackendIndex>,
        config: &Config,
    ) -> Result<Option<BackendIndex>, ClientError> {
        let required = self.required_gtid(config);
        if let Some(index) = self.shared.balancer.pick(topology, excluded, required.as_ref()) {
            return Ok(Some(index));
        }
        let any_readable = || {
            topology
                .nodes
                .iter()
                .any(|n| Some(n.index) != topology.primary && Some(n.index) != excluded && n.is_readable())
        };
        if config.routing.no_replica == NoReplica::Error && !(required.is_some() && any_readable()) {
            return Err(ClientError::no_replica());
        }
        Ok(None)
    }

    /// The GTID a read must see: the session's last write, in session consistency only.
    fn required_gtid(&self, config: &Config) -> Option<Gtid> {
        if config.routing.consistency != Consistency::Session {
            return None;
        }
        let text = std::str::from_utf8(self.state.last_gtid.as_deref()?).ok()?;
        Gtid::parse(text).ok()
    }

    /// A connection to the primary failed mid-statement: asks the monitor to probe at once and,
    /// when it was the session's held connection (a transaction or pinned state), reports one
    /// error and lets the session continue. `None` leaves the failure to the caller.
    pub(super) async fn lost_primary(
        &mut self,
        err: &backend::Error,
        target: Target,
        backend: BackendIndex,
        topology: &Topology,
        seq: u8,
        config: &Config,
    ) -> Option<Outcome> {
        if topology.primary != Some(backend) {
            return None;
        }
        self.shared.topology.request_probe();
        if target != Target::Held {
            return None;
        }
        tracing::warn!(error = %err, "lost the held connection to the primary mid-statement");
        self.forget_backend_state();
        Some(self.reply_error(&ClientError::lost_primary(err), seq, config).await)
    }

    /// The session's transaction and pinned state lived on a connection that is gone.
    fn forget_backend_state(&mut self) {
        self.binding.forget();
        self.previous.connection_lost();
        self.sequences.connection_lost();
        // Cursors lived on the dropped connection.
        self.stmts.close_cursors();
        self.status &= !STATUS_IN_TRANS;
    }
}
