//! The client side: accepting connections, the handshake and authentication, and the command
//! loop of each client session.
//!
//! One tokio task per client connection. The shared state ([`Front`] around
//! [`Shared`]) is read through snapshots;
//! nothing here holds a lock across an `.await`.

mod auth;
mod binding;
pub mod change_user;
mod commands;
mod error;
mod failover;
mod handshakes;
pub mod kill;
mod observe;
mod pin_ends;
pub mod prepared;
mod previous;
mod query;
mod sequences;
mod session;
mod sqltext;
mod timeouts;
pub mod tls;
mod verify;

pub use crate::shared::ConnId;
pub use error::ClientError;

use crate::shared::Shared;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;

use crate::backend::Pools;
use crate::config::Config;

/// What the client sessions share beyond [`Shared`]: the prepared-statement registry, the
/// `KILL` registry, client TLS, the `caching_sha2_password` fast-path cache, handshake slots,
/// connection ids and per-user counts. Derefs to [`Shared`].
#[derive(Debug)]
pub struct Front {
    /// The state every listener shares.
    pub shared: Arc<Shared>,
    /// Prepared statement metadata shared by all sessions.
    pub prepared: prepared::Registry,
    /// Running sessions, for `KILL`.
    pub sessions: kill::Registry,
    /// Client TLS acceptor, RSA key and backend TLS; [`tls::Tls::reload`] swaps them.
    pub tls: tls::Tls,
    /// Users who passed a full `caching_sha2_password` authentication (fast path allowed).
    pub sha2_cache: verify::Sha2Cache,
    /// Connections in the handshake (`listen.max_handshakes`).
    pub handshakes: Arc<handshakes::Handshakes>,
    next_id: AtomicU32,
    per_user: Mutex<HashMap<String, u32>>,
}

impl std::ops::Deref for Front {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl Front {
    /// The client side over `shared`, with the client TLS material `tls` (whose backend half
    /// `shared.pools` was built with).
    pub fn new(shared: Arc<Shared>, tls: tls::Tls) -> Self {
        Self {
            shared,
            tls,
            sha2_cache: verify::Sha2Cache::default(),
            handshakes: Arc::default(),
            prepared: prepared::Registry::default(),
            sessions: kill::Registry::default(),
            next_id: AtomicU32::new(1),
            per_user: Mutex::new(HashMap::new()),
        }
    }

    /// Shared state and the client side for a configuration, recording into `metrics`.
    pub fn build(config: Config, metrics: Arc<crate::stats::Metrics>) -> Self {
        let tls = tls::Tls::new(&config.tls);
        let pools = Pools::with_tls(tls.backend());
        pools.set_layout(&config.backends);
        Self::new(Arc::new(Shared::new(config, metrics, pools)), tls)
    }

    fn next_conn_id(&self) -> ConnId {
        // Id 0 means "no connection" to some clients; skip it on wrap-around.
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return ConnId(id);
            }
        }
    }

    /// Counts a logged-in client against its user's limit; `false` when the limit is reached.
    fn admit_user(&self, user: &str, limit: u32) -> bool {
        let mut map = self.per_user.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = map.entry(user.to_owned()).or_insert(0);
        if limit != 0 && *count >= limit {
            return false;
        }
        *count += 1;
        true
    }

    fn release_user(&self, user: &str) {
        let mut map = self.per_user.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = map.get_mut(user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(user);
            }
        }
    }
}

/// Accepts clients until `shutdown` turns true, one task per connection. A connection counts
/// against `listen.max_handshakes` until it logs in, and against `listen.max_client_connections`
/// only afterwards.
pub async fn serve(listener: TcpListener, shared: Arc<Front>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Running out of file descriptors must not spin the loop.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let id = shared.next_conn_id();
        let (ticket, cut) = shared.handshakes.enter(id, shared.config.load().listen.max_handshakes);
        observe::accepted(&shared, cut);
        let span = tracing::info_span!("conn", conn_id = %id, client_addr = %peer, user = tracing::field::Empty);
        let shared = shared.clone();
        tokio::spawn(
            async move {
                session::run(stream, peer, id, shared, ticket).await;
            }
            .instrument(span),
        );
    }
}
