//! Graceful shutdown: readiness turns false, the MySQL and admin listeners close, idle sessions
//! close at once, sessions inside a transaction get `shutdown.grace` to finish it; then everyone
//! left is told to close between statements. `force` (a second signal) skips the grace period.
//! The HTTP endpoint keeps answering meanwhile, so `/ready` reports the drain.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::shared::{Phase, Shared};

/// How long sessions get to close once forced (a statement still running keeps its session until
/// it ends or the process exits).
const FORCE_WAIT: Duration = Duration::from_secs(2);
/// How often the drain looks at the client count.
const POLL: Duration = Duration::from_millis(20);

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Time from the start of the drain until the last session closed (or the drain gave up).
    pub waited: Duration,
    /// The grace period ended or a second signal came before every session had closed.
    pub forced: bool,
    /// Client connections still open when the drain gave up.
    pub remaining: u32,
}

/// Runs the drain; `listeners` closes the MySQL and admin listeners.
pub(super) async fn drain(
    shared: &Shared,
    listeners: &watch::Sender<bool>,
    grace: Duration,
    force: impl Future<Output = ()>,
) -> Drained {
    let started = Instant::now();
    shared.ops.drain.advance(Phase::Draining);
    let _ = listeners.send(true);
    tracing::info!(clients = shared.client_count(), grace = ?grace, "draining: idle clients close now, open transactions may finish");
    let forced = tokio::select! {
        () = until_empty(shared) => false,
        () = tokio::time::sleep(grace) => true,
        () = force => true,
    };
    if forced {
        tracing::warn!(clients = shared.client_count(), "drain grace over: closing every client between statements");
        shared.ops.drain.advance(Phase::Forced);
        let _ = tokio::time::timeout(FORCE_WAIT, until_empty(shared)).await;
    }
    let drained = Drained { waited: started.elapsed(), forced, remaining: shared.client_count() };
    tracing::info!(waited = ?drained.waited, forced, remaining = drained.remaining, "drain finished");
    drained
}

async fn until_empty(shared: &Shared) {
    while shared.client_count() > 0 {
        tokio::time::sleep(POLL).await;
    }
}
