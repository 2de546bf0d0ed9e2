//! Metrics: the Prometheus metric structs of every component and the per-digest top-N store.
//!
//! `app` creates one [`prometheus::Registry`] with [`registry`] (prefix `rwsplit`), registers
//! [`Metrics`] on it once and hands the result down; nothing here is global. Hot-path updates use
//! handles resolved once (per route × result, per backend), never a label lookup per statement:
//! an `inc` on a cached handle costs about 2 ns. Values that already live elsewhere (topology,
//! pool sizes, pin counts, failovers) are copied into gauges and counters at scrape time by
//! whoever owns that state ([`sync_counter`] keeps counters monotonic).
//!
//! This module runs no task and does no I/O; the HTTP endpoint in `admin` encodes the registry.

mod backend;
mod client;
mod collect;
mod digest;

#[cfg(test)]
mod tests;

pub use backend::{BackendMetrics, BackendRow, Checkout, HeldCount};
pub use client::{ClientMetrics, ProtocolFault, QueryResult, Reject, RouteLabel};
pub use digest::{truncate as truncate_text, DigestStats, Digests, DIGEST_BUCKETS, TEXT_LIMIT};

use std::sync::Arc;

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::config::Config;

/// Failures while registering or encoding metrics. The proxy is at fault for all of them (a
/// duplicate or malformed metric name), never a client or backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Registering a metric failed.
    #[error("cannot register metrics: {0}")]
    Register(#[from] prometheus::Error),
    /// The text exposition format could not be produced.
    #[error("cannot encode metrics: {0}")]
    Encode(#[source] prometheus::Error),
}

/// The registry every component registers on: names get the `rwsplit_` prefix.
pub fn registry() -> Result<Registry, Error> {
    Ok(Registry::new_custom(Some("rwsplit".into()), None)?)
}

/// Every metric of the proxy, registered once at startup.
#[derive(Debug)]
pub struct Metrics {
    /// Client connections and statements.
    pub clients: ClientMetrics,
    /// Backends and their pools.
    pub backends: BackendMetrics,
    /// Reloads, failovers, pins, drain.
    pub ops: OpsMetrics,
    /// Per-digest statistics of the most frequent statements.
    pub digests: Arc<Digests>,
}

impl Metrics {
    /// Registers every metric on `reg` (built by [`registry`]), sized by `config`.
    pub fn register(reg: &Registry, config: &Config) -> Result<Self, Error> {
        let digests = Arc::new(Digests::new(config.stats.digests as usize));
        reg.register(Box::new(collect::DigestCollector::new(digests.clone())?))?;
        Ok(Self {
            clients: ClientMetrics::register(reg)?,
            backends: BackendMetrics::register(reg)?,
            ops: OpsMetrics::register(reg)?,
            digests,
        })
    }
}

/// Which way a config reload ended (`rwsplit_config_reloads_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// The new config is running.
    Ok,
    /// The file was rejected; the running config stayed.
    Error,
}

/// Process-wide operations metrics.
#[derive(Debug)]
pub struct OpsMetrics {
    reloads: [IntCounter; 2],
    /// `rwsplit_failovers_total`: changes of primary, copied from the topology at scrape time.
    pub failovers: IntCounter,
    /// `rwsplit_split_brain_total`: times two writable backends were seen.
    pub split_brain: IntCounter,
    /// `rwsplit_monitor_probe_failures_discounted_total`: failed probes not counted because the
    /// backend answered statements meanwhile.
    pub discounted_probes: IntCounter,
    /// `rwsplit_pinned_sessions_total{reason}`: sessions pinned to their backend connection.
    pub pins: IntCounterVec,
    /// `rwsplit_draining`: 1 while the proxy shuts down gracefully.
    pub draining: IntGauge,
    /// `rwsplit_config_last_reload_success_timestamp_seconds`: when the running config was loaded.
    pub last_reload: prometheus::Gauge,
}

impl OpsMetrics {
    /// Registers the operations metrics on `reg`.
    pub fn register(reg: &Registry) -> Result<Self, Error> {
        let reloads = IntCounterVec::new(
            Opts::new("config_reloads_total", "Config reloads attempted, by result (ok, error)"),
            &["result"],
        )?;
        let pins = IntCounterVec::new(
            Opts::new("pinned_sessions_total", "Sessions pinned to their backend connection, by reason"),
            &["reason"],
        )?;
        let failovers = IntCounter::new("failovers_total", "Changes of primary seen by the monitor")?;
        let split_brain = IntCounter::new("split_brain_total", "Times two or more writable backends were seen")?;
        let discounted_probes = IntCounter::new(
            "monitor_probe_failures_discounted_total",
            "Failed health probes not counted because the backend answered statements meanwhile",
        )?;
        let draining = IntGauge::new("draining", "1 while the proxy is shutting down gracefully")?;
        let last_reload = prometheus::Gauge::new(
            "config_last_reload_success_timestamp_seconds",
            "Unix time at which the running config was loaded",
        )?;
        reg.register(Box::new(reloads.clone()))?;
        reg.register(Box::new(pins.clone()))?;
        reg.register(Box::new(failovers.clone()))?;
        reg.register(Box::new(split_brain.clone()))?;
        reg.register(Box::new(discounted_probes.clone()))?;
        reg.register(Box::new(draining.clone()))?;
        reg.register(Box::new(last_reload.clone()))?;
        let reloads = [reloads.with_label_values(&["ok"]), reloads.with_label_values(&["error"])];
        last_reload.set(unix_now());
        Ok(Self { reloads, failovers, split_brain, discounted_probes, pins, draining, last_reload })
    }

    /// Counts one reload attempt.
    pub fn reload(&self, result: ReloadResult) {
        match result {
            ReloadResult::Ok => {
                self.reloads[0].inc();
                self.last_reload.set(unix_now());
            }
            ReloadResult::Error => self.reloads[1].inc(),
        }
    }

    /// Reloads counted so far with `result`.
    pub fn reloads(&self, result: ReloadResult) -> u64 {
        self.reloads[result as usize].get()
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Raises `counter` to `total` (a count kept elsewhere as an atomic), never lowering it.
pub fn sync_counter(counter: &IntCounter, total: u64) {
    let have = counter.get();
    if total > have {
        counter.inc_by(total - have);
    }
}

/// The registry in the Prometheus text exposition format.
pub fn encode(reg: &Registry) -> Result<String, Error> {
    use prometheus::Encoder;
    let mut out = Vec::new();
    prometheus::TextEncoder::new().encode(&reg.gather(), &mut out).map_err(Error::Encode)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
