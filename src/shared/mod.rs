//! The state every listener shares: the running configuration, the topology the monitor
//! publishes, the backend pools, the classifier, operations state (metrics, client registry,
//! drain signal), the failed-login throttle and the pin counters.
//!
//! It sits below `frontend` and `admin` so that both can read it without depending on each other;
//! what only client sessions need (prepared-statement registry, `KILL` registry, client TLS,
//! handshake slots) lives in `frontend::Front`, which wraps this. No task runs here and nothing
//! here holds a lock across an `.await`.

mod clients;
mod ops;
mod pins;
mod throttle;

pub use clients::{Client, ClientRow, Clients, Entry, Seen};
pub use ops::{refresh_metrics, Drain, Ops, Phase};
pub use pins::{Pins, REASONS as PIN_REASONS};
pub use throttle::{LogLine, Throttle};

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::backend::{Balancer, Pools, ServerInfo, Topology, TopologyCell};
use crate::classify::Classifier;
use crate::config::Config;
use crate::stats::ProtocolFault;

/// After the first few, at most one protocol-error log line per client address in this period.
pub const PROTOCOL_LOG_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);

/// A connection id the proxy hands to a client in its handshake (not a backend thread id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub u32);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// State shared by the client sessions, the admin port, the monitor and the reloader.
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
    /// Metrics, the client registry (`SHOW CLIENTS`) and the graceful-drain signal.
    pub ops: Ops,
    /// Failed logins per source address (`listen.max_auth_failures`), client and admin ports.
    pub throttle: Throttle,
    /// Protocol errors per source address: only its log rate limit is used (never blocks).
    protocol_log: Throttle,
    /// Sessions pinned, by reason (index into [`PIN_REASONS`]).
    pins_total: [AtomicU64; PIN_REASONS.len()],
    /// Logged-in client sessions.
    clients: AtomicU32,
}

impl Shared {
    /// Shared state for a configuration, recording into `metrics`; new backend connections use
    /// `pools` (built with the backend TLS settings).
    pub fn new(config: Config, metrics: Arc<crate::stats::Metrics>, pools: Pools) -> Self {
        Self {
            topology: TopologyCell::new(Topology::from_config(&config)),
            config: ArcSwap::from_pointee(config),
            primary_info: ArcSwapOption::empty(),
            balancer: Balancer::default(),
            pools,
            classifier: Classifier::new(4096),
            ops: Ops::new(metrics),
            throttle: Throttle::default(),
            protocol_log: Throttle::default(),
            pins_total: Default::default(),
            clients: AtomicU32::new(0),
        }
    }

    /// How many sessions were pinned for each reason, as (label, count).
    pub fn pin_counts(&self) -> Vec<(&'static str, u64)> {
        PIN_REASONS.iter().zip(&self.pins_total).map(|((_, label), n)| (*label, n.load(Ordering::Relaxed))).collect()
    }

    /// Counts the pin reasons a session just took.
    pub fn count_pins(&self, added: Pins) {
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

    /// Counts a client's protocol error (metric `client_protocol_errors_total{reason}`) and logs
    /// it at info with the peer, rate-limited per address like failed logins: the first few one by
    /// one, then one line per [`PROTOCOL_LOG_PERIOD`] saying how many were not logged.
    pub fn protocol_error(&self, peer: std::net::SocketAddr, fault: ProtocolFault, error: &dyn std::fmt::Display) {
        self.ops.metrics.clients.protocol_error(fault);
        if let Some(line) = self.protocol_log.failed(peer.ip(), PROTOCOL_LOG_PERIOD) {
            tracing::info!(peer = %peer, reason = fault.label(), error = %error, suppressed = line.suppressed,
                "client broke the protocol");
        }
    }

    /// True while logins from `peer` are refused for too many failures.
    pub fn is_login_blocked(&self, peer: std::net::SocketAddr) -> bool {
        let listen = &self.config.load().listen;
        self.throttle.is_blocked(peer.ip(), listen.max_auth_failures, listen.auth_failure_decay)
    }

    /// Client connections currently logged in.
    pub fn client_count(&self) -> u32 {
        self.clients.load(Ordering::Relaxed)
    }

    /// Takes a slot for a client that logged in; `None` when `listen.max_client_connections`
    /// sessions are already logged in. The slot is given back when dropped.
    pub fn take_client_slot(self: &Arc<Self>) -> Option<ClientSlot> {
        let slot = ClientSlot(self.clone());
        let before = self.clients.fetch_add(1, Ordering::Relaxed);
        (before < self.config.load().listen.max_client_connections).then_some(slot)
    }
}

/// A client's place in the global count; released when the session ends, however it ends.
#[derive(Debug)]
pub struct ClientSlot(Arc<Shared>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}
