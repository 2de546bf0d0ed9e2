//! Backend and pool metrics. Checkout waits, timeouts and connect errors are recorded on the hot
//! path through handles cached per backend position; roles, health, lag, weights and pool sizes
//! are copied in at scrape time from the topology and the pools ([`BackendMetrics::refresh`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use super::Error;

/// How a pool checkout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkout {
    /// A connection was handed out.
    Ok,
    /// No connection became free within `pool.checkout_timeout`.
    Timeout,
    /// Connecting to the backend failed.
    Error,
    /// The monitor drained the backend while the checkout waited: only the wait is recorded.
    Drained,
}

/// What the scrape needs to know about one backend (built by the owner of the topology).
#[derive(Debug, Clone, PartialEq)]
pub struct BackendRow {
    /// Configured name (`backend` label).
    pub name: String,
    /// `primary`, `replica` or `writable` (`role` label).
    pub role: &'static str,
    /// Reachable and not marked down.
    pub up: bool,
    /// Replication lag, when known.
    pub lag: Option<Duration>,
    /// Current weight (runtime changes included).
    pub weight: u32,
    /// Pooled connections open (idle and in use).
    pub open: u32,
    /// Pooled connections checked out.
    pub in_use: u32,
    /// Most connections its pools may open together.
    pub max: u32,
    /// Server-side prepared statements open over its pooled connections.
    pub prepared: i64,
    /// Connects waiting for room under its connection cap.
    pub waiting: i64,
    /// Connections sessions hold between statements, per configured user (the pool's user).
    pub held: Vec<(String, HeldCount)>,
}

/// Connections sessions of one user hold on one backend between statements, by why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeldCount {
    /// Held for pinned session state.
    pub pinned: u32,
    /// Held for an open transaction.
    pub transaction: u32,
}

/// Hot-path handles of one backend.
#[derive(Debug)]
struct Handles {
    name: String,
    wait: Histogram,
    timeouts: IntCounter,
    errors: IntCounter,
}

/// Backend and pool metrics.
#[derive(Debug)]
pub struct BackendMetrics {
    up: IntGaugeVec,
    lag: GaugeVec,
    weight: IntGaugeVec,
    open: IntGaugeVec,
    in_use: IntGaugeVec,
    max: IntGaugeVec,
    wait: HistogramVec,
    timeouts: IntCounterVec,
    errors: IntCounterVec,
    prepared: IntGaugeVec,
    waiting: IntGaugeVec,
    held: IntGaugeVec,
    /// `rwsplit_pool_resets_total{result}`: connections reset in the background at check-in.
    pub resets: IntCounterVec,
    handles: ArcSwap<Vec<Handles>>,
    /// Serializes rebuilding `handles` and resetting the scrape-time gauges.
    rebuild: Mutex<()>,
}

fn gauge_vec(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec, Error> {
    let vec = IntGaugeVec::new(Opts::new(name, help), labels)?;
    reg.register(Box::new(vec.clone()))?;
    Ok(vec)
}

fn counter_vec(reg: &Registry, name: &str, help: &str) -> Result<IntCounterVec, Error> {
    let vec = IntCounterVec::new(Opts::new(name, help), &["backend"])?;
    reg.register(Box::new(vec.clone()))?;
    Ok(vec)
}

impl BackendMetrics {
    /// Registers the backend and pool metrics on `reg`.
    pub fn register(reg: &Registry) -> Result<Self, Error> {
        let up = gauge_vec(
            reg,
            "backend_up",
            "1 when the backend is reachable, by backend and current role",
            &["backend", "role"],
        )?;
        let lag = GaugeVec::new(
            Opts::new("replica_lag_seconds", "Replication lag as the monitor last measured it"),
            &["backend"],
        )?;
        reg.register(Box::new(lag.clone()))?;
        let weight = gauge_vec(reg, "backend_weight", "Share of replica reads (0 drains)", &["backend"])?;
        let open =
            gauge_vec(reg, "pool_connections", "Pooled backend connections open (idle and in use)", &["backend"])?;
        let in_use = gauge_vec(reg, "pool_connections_in_use", "Pooled backend connections checked out", &["backend"])?;
        let max = gauge_vec(
            reg,
            "pool_max_connections",
            "Most connections the backend's pools may open together",
            &["backend"],
        )?;
        let wait = HistogramVec::new(
            HistogramOpts::new("pool_checkout_wait_seconds", "Time a statement waited for a pooled connection")
                .buckets(prometheus::exponential_buckets(0.00005, 2.0, 17)?),
            &["backend"],
        )?;
        reg.register(Box::new(wait.clone()))?;
        let timeouts =
            counter_vec(reg, "pool_checkout_timeouts_total", "Checkouts that found no free connection in time")?;
        let errors = counter_vec(reg, "pool_connect_errors_total", "Checkouts that failed to connect to the backend")?;
        let prepared =
            gauge_vec(reg, "prepared_statements", "Server-side prepared statements open on the backend", &["backend"])?;
        let waiting = gauge_vec(
            reg,
            "pool_waiters",
            "Connects waiting for room under the backend's connection cap (pool.max_connections_per_backend)",
            &["backend"],
        )?;
        let held = gauge_vec(
            reg,
            "pool_connections_held",
            "Backend connections sessions keep between statements, by pool user and why (pinned, transaction)",
            &["backend", "user", "hold"],
        )?;
        let resets = IntCounterVec::new(
            Opts::new(
                "pool_resets_total",
                "Connections left dirty by a session, reset in the background (ok) or closed (failed)",
            ),
            &["result"],
        )?;
        reg.register(Box::new(resets.clone()))?;
        Ok(Self {
            up,
            lag,
            weight,
            open,
            in_use,
            max,
            wait,
            timeouts,
            errors,
            prepared,
            waiting,
            held,
            resets,
            handles: ArcSwap::from_pointee(Vec::new()),
            rebuild: Mutex::new(()),
        })
    }

    /// Resolves the hot-path handles for the backends, in topology order, and drops the series of
    /// backends no longer configured. Called at startup and after a reload.
    pub fn set_backends(&self, names: &[&str]) {
        let _rebuild = self.rebuild.lock().unwrap_or_else(|p| p.into_inner());
        self.set_backends_locked(names);
    }

    fn set_backends_locked(&self, names: &[&str]) {
        let old = self.handles.load();
        if old.len() == names.len() && old.iter().zip(names).all(|(h, n)| h.name == *n) {
            return;
        }
        for gone in old.iter().filter(|h| !names.contains(&h.name.as_str())) {
            let label = [gone.name.as_str()];
            let _ = self.wait.remove_label_values(&label);
            let _ = self.timeouts.remove_label_values(&label);
            let _ = self.errors.remove_label_values(&label);
        }
        let handles = names
            .iter()
            .map(|name| Handles {
                name: (*name).to_owned(),
                wait: self.wait.with_label_values(&[name]),
                timeouts: self.timeouts.with_label_values(&[name]),
                errors: self.errors.with_label_values(&[name]),
            })
            .collect();
        self.handles.store(Arc::new(handles));
    }

    /// Runs `f` on the handles of the backend at `index` named `name`. During the moment after a
    /// reload when the cache lags the topology, falls back to a label lookup.
    fn with<R>(&self, index: usize, name: &str, f: impl FnOnce(&Handles) -> R) -> R {
        let handles = self.handles.load();
        match handles.get(index).filter(|h| h.name == name) {
            Some(h) => f(h),
            None => f(&Handles {
                name: name.to_owned(),
                wait: self.wait.with_label_values(&[name]),
                timeouts: self.timeouts.with_label_values(&[name]),
                errors: self.errors.with_label_values(&[name]),
            }),
        }
    }

    /// Records one checkout from the backend at topology position `index`.
    pub fn checkout(&self, index: usize, name: &str, waited: Duration, result: Checkout) {
        self.with(index, name, |h| {
            h.wait.observe(waited.as_secs_f64());
            match result {
                Checkout::Ok | Checkout::Drained => {}
                Checkout::Timeout => h.timeouts.inc(),
                Checkout::Error => h.errors.inc(),
            }
        });
    }

    /// Replaces the scrape-time gauges with `rows` (one per configured backend, topology order).
    pub fn refresh(&self, rows: &[BackendRow]) {
        let _rebuild = self.rebuild.lock().unwrap_or_else(|p| p.into_inner());
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        self.set_backends_locked(&names);
        // Reset first: a role change or a removed backend must not leave its old series behind.
        for vec in
            [&self.up, &self.weight, &self.open, &self.in_use, &self.max, &self.prepared, &self.waiting, &self.held]
        {
            vec.reset();
        }
        self.lag.reset();
        for row in rows {
            let name = row.name.as_str();
            self.up.with_label_values(&[name, row.role]).set(i64::from(row.up));
            self.weight.with_label_values(&[name]).set(i64::from(row.weight));
            self.open.with_label_values(&[name]).set(i64::from(row.open));
            self.in_use.with_label_values(&[name]).set(i64::from(row.in_use));
            self.max.with_label_values(&[name]).set(i64::from(row.max));
            self.prepared.with_label_values(&[name]).set(row.prepared);
            self.waiting.with_label_values(&[name]).set(row.waiting);
            for (user, count) in &row.held {
                self.held.with_label_values(&[name, user, "pinned"]).set(i64::from(count.pinned));
                self.held.with_label_values(&[name, user, "transaction"]).set(i64::from(count.transaction));
            }
            if let Some(lag) = row.lag {
                self.lag.with_label_values(&[name]).set(lag.as_secs_f64());
            }
        }
    }

    /// Checkout timeouts counted so far for `name`.
    pub fn timeouts(&self, name: &str) -> u64 {
        self.timeouts.with_label_values(&[name]).get()
    }
}
