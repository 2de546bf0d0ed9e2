//! The registry of logged-in client sessions behind the admin `SHOW CLIENTS`: who is connected,
//! from where, and what each session holds (a backend connection, a transaction, pins).
//!
//! Each session owns a [`Client`] handle; dropping it leaves the registry. The session writes
//! its own entry between commands (one uncontended lock); the admin reads all of them. The
//! registry's own lock is taken only on join, leave and listing, never per statement.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::pins::Pins;
use super::ConnId;
use crate::backend::BackendIndex;
use crate::router::Hold;
use crate::stats::Metrics;

/// What a session last reported about itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen {
    /// The backend connection it holds between statements, and why.
    pub held: Option<(BackendIndex, Hold)>,
    /// A transaction is open.
    pub in_transaction: bool,
    /// Why it is pinned.
    pub pins: Pins,
}

/// One session's entry.
#[derive(Debug)]
pub struct Entry {
    id: ConnId,
    user: String,
    peer: SocketAddr,
    since: SystemTime,
    seen: Mutex<Seen>,
    /// Statements run so far.
    pub statements: AtomicU64,
    /// The metrics, reachable from a session without touching the shared state's reference count.
    pub metrics: Arc<Metrics>,
}

impl Entry {
    /// Replaces what the session reports about itself.
    pub fn report(&self, seen: Seen) {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = seen;
    }
}

/// One row of `SHOW CLIENTS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRow {
    /// The connection id the client was given.
    pub id: ConnId,
    /// The proxy user it logged in as.
    pub user: String,
    /// Its address.
    pub peer: SocketAddr,
    /// How long it has been connected.
    pub connected: Duration,
    /// The backend whose connection it holds between statements, if any.
    pub backend: Option<BackendIndex>,
    /// Why it holds that connection: `transaction` or `pinned`.
    pub hold: Option<&'static str>,
    /// A transaction is open.
    pub in_transaction: bool,
    /// Pin reasons (labels of [`super::PIN_REASONS`]).
    pub pins: Vec<&'static str>,
    /// Statements run so far.
    pub statements: u64,
}

type Map = Arc<Mutex<HashMap<ConnId, Arc<Entry>>>>;

/// All logged-in sessions.
#[derive(Debug, Default)]
pub struct Clients {
    map: Map,
}

impl Clients {
    /// Registers a session; it leaves when the returned handle drops.
    pub fn join(&self, id: ConnId, peer: SocketAddr, user: &str, metrics: Arc<Metrics>) -> Client {
        let entry = Arc::new(Entry {
            id,
            user: user.to_owned(),
            peer,
            since: SystemTime::now(),
            seen: Mutex::new(Seen::default()),
            statements: AtomicU64::new(0),
            metrics,
        });
        self.map.lock().unwrap_or_else(|p| p.into_inner()).insert(id, entry.clone());
        Client { entry, map: self.map.clone() }
    }

    /// Every session, by connection id.
    pub fn list(&self) -> Vec<ClientRow> {
        let entries: Vec<Arc<Entry>> = self.map.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        let mut rows: Vec<ClientRow> = entries
            .iter()
            .map(|e| {
                let seen = *e.seen.lock().unwrap_or_else(|p| p.into_inner());
                ClientRow {
                    id: e.id,
                    user: e.user.clone(),
                    peer: e.peer,
                    connected: e.since.elapsed().unwrap_or_default(),
                    backend: seen.held.map(|(b, _)| b),
                    hold: seen.held.map(|(_, h)| hold_label(h)),
                    in_transaction: seen.in_transaction,
                    pins: seen.pins.labels().collect(),
                    statements: e.statements.load(Ordering::Relaxed),
                }
            })
            .collect();
        rows.sort_by_key(|r| r.id.0);
        rows
    }

    /// Sessions registered now.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no session is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn hold_label(hold: Hold) -> &'static str {
    match hold {
        Hold::Pinned => "pinned",
        Hold::Transaction => "transaction",
    }
}

/// A session's registration; leaves the registry when dropped.
#[derive(Debug)]
pub struct Client {
    /// The session's entry.
    pub entry: Arc<Entry>,
    map: Map,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.entry.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_join_report_and_leave() {
        let reg = prometheus::Registry::new();
        let metrics = Arc::new(Metrics::register(&reg, &crate::config::Config::default()).unwrap());
        let clients = Clients::default();
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let a = clients.join(ConnId(7), peer, "app", metrics.clone());
        let b = clients.join(ConnId(3), peer, "other", metrics);
        let mut pins = Pins::default();
        pins.insert(Pins::USER_VAR);
        a.entry.report(Seen { held: Some((BackendIndex(1), Hold::Pinned)), in_transaction: true, pins });
        let rows = clients.list();
        assert_eq!(rows.iter().map(|r| r.id.0).collect::<Vec<_>>(), [3, 7]);
        assert_eq!(
            (rows[1].backend, rows[1].hold, rows[1].in_transaction),
            (Some(BackendIndex(1)), Some("pinned"), true)
        );
        assert_eq!(rows[1].pins, ["user_var"]);
        drop(b);
        assert_eq!(clients.len(), 1);
        drop(a);
        assert!(clients.is_empty());
    }
}
