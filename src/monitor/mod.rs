//! Health monitor: probes every backend over mysql_async, decides who is up, who is the primary
//! and which replicas are too far behind, and publishes each change as a new topology snapshot.
//!
//! Tasks (started by `app` through [`spawn`], stopped by its shutdown signal):
//! * one **prober** per backend (`probe.rs`): a full probe every `monitor.interval` (reachability,
//!   `@@read_only`/`@@innodb_read_only`, replica status, GTID position), each under
//!   `monitor.timeout`, on one long-lived connection that is reopened after a failure. Faster
//!   cadence ([`RECHECK`]) while something is uncertain: no primary known, a backend whose last
//!   probe failed, or the frontend reporting a failed primary connection. With
//!   `routing.consistency = "session"` the GTID position alone is also polled every [`RECHECK`].
//! * one **coordinator** (`coordinator.rs`): the only writer of the topology. It applies the
//!   thresholds ([`health`]), elects the primary ([`election`]), estimates lag from the primary's
//!   GTID history, drains the pools of a backend that stopped being primary or went down, and
//!   follows backend changes in the running configuration.
//!
//! Must not: route statements, touch client sessions, or block on anything but its own probes.

mod coordinator;
pub mod election;
pub mod health;
mod probe;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backend::{Pools, TopologyCell};
use crate::config::Config;

/// Probe period while something is uncertain, and of the GTID-only poll in session consistency
/// (never longer than `monitor.interval`).
pub const RECHECK: Duration = Duration::from_millis(100);

/// Why one probe failed. Probes are retried on the next tick whatever the cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The backend did not answer within `monitor.timeout`.
    #[error("probe timed out after {after:?}")]
    Timeout {
        /// The timeout that expired.
        after: Duration,
    },
    /// Connecting, logging in or a probe query failed.
    #[error(transparent)]
    Mysql(#[from] mysql_async::Error),
    /// The backend answered something the probe cannot read.
    #[error("unexpected probe answer: {0}")]
    Malformed(&'static str),
    /// There was no connection to probe on.
    #[error("no monitor connection")]
    NotConnected,
}

impl Error {
    /// True when the probe missed its deadline: that may be the proxy's own doing (short of CPU),
    /// so such failures are not counted while the backend answers statements. Anything else (a
    /// refused or reset connection, a refused monitor login, an answer the probe cannot read)
    /// always counts: it says something about the server or the monitor's account.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }
}

/// What the monitor needs from the rest of the proxy; `app` implements it for the frontend's
/// shared state.
pub trait Host: Send + Sync + 'static {
    /// The running configuration (backends, `[monitor]`, `[routing]`), read on every probe.
    fn config(&self) -> Arc<Config>;
    /// Where snapshots are published.
    fn topology(&self) -> &TopologyCell;
    /// Backend pools, drained when a backend stops being primary or goes down.
    fn pools(&self) -> &Pools;
}

/// Starts the monitor; it runs until `shutdown` turns true (or its sender is dropped).
pub fn spawn(host: Arc<dyn Host>, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(coordinator::Coordinator::new(host).run(shutdown))
}
