//! The client side: accepting connections, the handshake and authentication, and the command
//! loop of each client session.
//!
//! One tokio task per client connection. The shared state ([`Shared`]) is read through snapshots;
//! nothing here holds a lock across an `.await`.

mod auth;
mod change_user;
mod clients;
mod commands;
mod error;
mod failover;
mod handshakes;
pub mod kill;
mod observe;
mod pin_ends;
mod pins;
pub mod prepared;
mod previous;
mod query;
mod sequences;
mod session;
mod sqltext;
mod throttle;
pub mod tls;
mod verify;

pub use clients::{ClientRow, Clients};
pub use error::ClientError;
pub use observe::{refresh_metrics, Drain, Ops, Phase};
pub use pins::{Pins, REASONS as PIN_REASONS};
pub use throttle::Throttle;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;

use crate::backend::{Balancer, Pools, ServerInfo, Topology, TopologyCell};
use crate::classify::Classifier;
use crate::config::Config;

/// A connection id the proxy hands to a client in its handshake (not a backend thread id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub u32);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// State shared by all client sessions.
#[derive(Debug)]
pub struct Shared {
    /// The running configuration; each statement loads one snapshot.
    pub config: ArcSwap<Config>,
    /// What the primary said about itself the last time the proxy connected to it.
    pub primary_info: ArcSwapOption<ServerInfo>,
    /// Backends, roles and health, published by the monitor.
    pub topology: TopologyCell,
    /// Weighted replica choice.
    pub balancer: Balancer,
    /// Backend connection pools.
    pub pools: Pools,
    /// Statement classifier with its fallback cache.
    pub classifier: Classifier,
    /// Prepared statement metadata shared by all sessions.
    pub prepared: prepared::Registry,
    /// Running sessions, for `KILL`.
    pub sessions: kill::Registry,
    /// Client TLS acceptor, RSA key and backend TLS; [`tls::Tls::reload`] swaps them.
    pub tls: tls::Tls,
    /// Users who passed a full `caching_sha2_password` authentication (fast path allowed).
    pub sha2_cache: verify::Sha2Cache,
    /// Metrics, the client registry (`SHOW CLIENTS`) and the graceful-drain signal.
    pub ops: Ops,
    /// Failed logins per source address (`listen.max_auth_failures`), client and admin ports.
    pub throttle: throttle::Throttle,
    /// Connections in the handshake (`listen.max_handshakes`).
    pub handshakes: Arc<handshakes::Handshakes>,
    /// Sessions pinned, by reason (index into [`PIN_REASONS`]).
    pub pins_total: [std::sync::atomic::AtomicU64; PIN_REASONS.len()],
    next_id: AtomicU32,
    clients: AtomicU32,
    per_user: Mutex<HashMap<String, u32>>,
}

impl Shared {
    /// Shared state for a configuration, recording into `metrics`.
    pub fn new(config: Config, metrics: Arc<crate::stats::Metrics>) -> Self {
        let tls = tls::Tls::new(&config.tls);
        Self {
            topology: TopologyCell::new(Topology::from_config(&config)),
            config: ArcSwap::from_pointee(config),
            primary_info: ArcSwapOption::empty(),
            balancer: Balancer::default(),
            pools: Pools::with_tls(tls.backend()),
            tls,
            sha2_cache: verify::Sha2Cache::default(),
            classifier: Classifier::new(4096),
            pins_total: Default::default(),
            handshakes: Arc::default(),
            throttle: throttle::Throttle::default(),
            prepared: prepared::Registry::default(),
            sessions: kill::Registry::default(),
            ops: Ops::new(metrics),
            next_id: AtomicU32::new(1),
            clients: AtomicU32::new(0),
            per_user: Mutex::new(HashMap::new()),
        }
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

    /// How many sessions were pinned for each reason, as (label, count).
    pub fn pin_counts(&self) -> Vec<(&'static str, u64)> {
        PIN_REASONS.iter().zip(&self.pins_total).map(|((_, label), n)| (*label, n.load(Ordering::Relaxed))).collect()
    }

    fn count_pins(&self, added: Pins) {
        for ((pin, _), counter) in PIN_REASONS.iter().zip(&self.pins_total) {
            if added.contains(*pin) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts a failed login from `peer` (any port) and logs it, rate-limited per address.
    pub fn login_failed(&self, peer: std::net::SocketAddr, port: &'static str) {
        let decay = self.config.load().listen.auth_failure_decay;
        if let Some(line) = self.throttle.failed(peer.ip(), decay) {
            tracing::info!(peer = %peer, port, suppressed = line.suppressed, "authentication failed");
        }
    }

    /// True while logins from `peer` are refused for too many failures.
    pub fn is_login_blocked(&self, peer: std::net::SocketAddr) -> bool {
        let listen = &self.config.load().listen;
        self.throttle.is_blocked(peer.ip(), listen.max_auth_failures, listen.auth_failure_decay)
    }

    /// Client connections currently open.
    pub fn client_count(&self) -> u32 {
        self.clients.load(Ordering::Relaxed)
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

/// Releases a client's slot in the global count when the session ends, however it ends.
struct ClientSlot(Arc<Shared>);

impl ClientSlot {
    /// Takes a slot for a client that logged in; `None` when `listen.max_client_connections`
    /// sessions are already logged in.
    fn take(shared: &Arc<Shared>) -> Option<ClientSlot> {
        let slot = ClientSlot(shared.clone());
        let before = shared.clients.fetch_add(1, Ordering::Relaxed);
        (before < shared.config.load().listen.max_client_connections).then_some(slot)
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts clients until `shutdown` turns true, one task per connection. A connection counts
/// against `listen.max_handshakes` until it logs in, and against `listen.max_client_connections`
/// only afterwards.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
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
