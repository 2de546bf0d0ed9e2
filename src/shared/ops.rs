//! Operations state shared by every listener: the metrics handles, the client registry, the
//! graceful-drain signal, and the scrape-time copy of shared state into gauges. No task runs here.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::watch;

use super::clients::Clients;
use super::pins::REASONS as PIN_REASONS;
use super::Shared;
use crate::backend::BackendIndex;
use crate::stats::{sync_counter, BackendRow, HeldCount, Metrics};

/// Where the proxy is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Serving.
    Running,
    /// Shutting down: idle sessions close, sessions in a transaction may finish it.
    Draining,
    /// The grace period ended (or a second signal came): every session closes between commands.
    Forced,
}

/// The drain signal: a `watch` channel sessions wait on while idle.
#[derive(Debug)]
pub struct Drain {
    phase: watch::Sender<Phase>,
}

impl Default for Drain {
    fn default() -> Self {
        Self { phase: watch::channel(Phase::Running).0 }
    }
}

impl Drain {
    /// Moves to `phase` (never back).
    pub fn advance(&self, phase: Phase) {
        self.phase.send_if_modified(|now| {
            let later = phase > *now;
            if later {
                *now = phase;
            }
            later
        });
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// True once shutdown started.
    pub fn is_draining(&self) -> bool {
        self.phase() != Phase::Running
    }

    /// Completes when a session waiting for its next command must close: at once when draining
    /// and outside a transaction, at the end of the grace period otherwise.
    pub async fn until_close(&self, in_transaction: bool) {
        let needed = if in_transaction { Phase::Forced } else { Phase::Draining };
        let mut rx = self.phase.subscribe();
        if rx.wait_for(|phase| *phase >= needed).await.is_err() {
            // The sender lives in `Shared`, which outlives every session.
            std::future::pending::<()>().await;
        }
    }
}

/// Operations state shared by all sessions.
#[derive(Debug)]
pub struct Ops {
    /// Every metric, registered on the registry `app` built.
    pub metrics: Arc<Metrics>,
    /// Logged-in sessions.
    pub clients: Clients,
    /// The graceful-shutdown signal.
    pub drain: Drain,
}

impl Ops {
    /// Operations state around registered `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics, clients: Clients::default(), drain: Drain::default() }
    }
}

/// Copies shared state into the scrape-time metrics: client count, backends (role, health, lag,
/// weight, pool sizes), pins, failovers and the drain flag. Call before encoding the registry.
pub fn refresh_metrics(shared: &Shared) {
    let metrics = &shared.ops.metrics;
    metrics.clients.connections.set(i64::from(shared.client_count()));
    metrics.backends.refresh(&backend_rows(shared));
    for ((_, label), total) in PIN_REASONS.iter().zip(&shared.pins_total) {
        sync_counter(&metrics.ops.pins.with_label_values(&[label]), total.load(Ordering::Relaxed));
    }
    sync_counter(&metrics.ops.failovers, shared.topology.failovers_total());
    let resets = shared.pools.reset_counts();
    sync_counter(&metrics.backends.resets.with_label_values(&["ok"]), resets.ok.load(Ordering::Relaxed));
    sync_counter(&metrics.backends.resets.with_label_values(&["failed"]), resets.failed.load(Ordering::Relaxed));
    sync_counter(&metrics.ops.split_brain, shared.topology.split_brain_total());
    sync_counter(&metrics.ops.discounted_probes, shared.topology.discounted_probes_total());
    metrics.ops.draining.set(i64::from(shared.ops.drain.is_draining()));
}

/// One row per backend of the current topology, with its pools' counts.
fn backend_rows(shared: &Shared) -> Vec<BackendRow> {
    let topology = shared.topology.load_full();
    // Every configured user gets a series per backend (zeros included), so that a dashboard shows
    // 0 rather than no data; user names come from the configuration, never from clients.
    let config = shared.config.load();
    let users: Vec<&str> = config.users.iter().map(|u| u.name.as_str()).collect();
    let mut held: std::collections::HashMap<(BackendIndex, usize), HeldCount> = std::collections::HashMap::new();
    for row in shared.ops.clients.list() {
        let user = users.iter().position(|u| *u == row.user);
        if let (Some(backend), Some(hold), Some(user)) = (row.backend, row.hold, user) {
            let counts = held.entry((backend, user)).or_default();
            if hold == "pinned" {
                counts.pinned += 1;
            } else {
                counts.transaction += 1;
            }
        }
    }
    topology
        .nodes
        .iter()
        .map(|node| {
            let pools = shared.pools.backend_stats(node.index);
            BackendRow {
                name: node.name().to_owned(),
                role: node.role.label(),
                up: node.is_up(),
                lag: node.lag,
                weight: node.config.weight,
                open: pools.open,
                in_use: pools.in_use(),
                max: pools.max,
                prepared: shared.pools.prepared_open(node.index),
                waiting: pools.waiting,
                held: users
                    .iter()
                    .enumerate()
                    .map(|(i, user)| ((*user).to_owned(), held.get(&(node.index, i)).copied().unwrap_or_default()))
                    .collect(),
            }
        })
        .collect()
}
