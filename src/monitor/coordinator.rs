//! The coordinator task: receives every prober's reports, keeps the per-backend trackers, elects
//! the primary, estimates lag and publishes a new topology snapshot whenever anything a reader
//! could act on changed. Also owns the prober tasks and restarts them when the configured
//! backend list changes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::election::{elect, Candidate};
use super::health::{combined_lag, lagging, History, Observation, Thresholds, Tracker};
use super::probe::Prober;
use super::{Error, Host, RECHECK};
use crate::backend::{BackendIndex, GtidPosition, Health, Node, Role, Topology};
use crate::config::{BackendConfig, Config, Consistency};

/// How long a frontend report of a failed primary keeps the probes fast.
const NUDGE_WINDOW: Duration = Duration::from_secs(2);

/// How often the coordinator looks for a changed configuration.
const CONFIG_CHECK: Duration = Duration::from_secs(1);

/// What the probers are told about their cadence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Cadence {
    /// Probe every [`RECHECK`] instead of every `monitor.interval`.
    pub fast: bool,
    /// Bumped to ask for a probe right now.
    pub probe_now: u64,
}

/// One prober's finding.
#[derive(Debug)]
pub(super) struct Report {
    /// Backend-list generation of the prober (stale reports are ignored).
    pub generation: u64,
    /// Which backend.
    pub index: BackendIndex,
    /// When the probe started.
    pub at: Instant,
    /// What it found.
    pub kind: Kind,
}

/// The two kinds of probe.
#[derive(Debug)]
pub(super) enum Kind {
    /// A full probe.
    Full(Result<Observation, Error>),
    /// A GTID-only poll.
    Gtid(GtidPosition),
}

/// The coordinator's state.
pub(super) struct Coordinator {
    host: Arc<dyn Host>,
    config: Arc<Config>,
    trackers: Vec<Tracker>,
    history: History,
    topology: Topology,
    last_primary: Option<BackendIndex>,
    split_brain: bool,
    fast_until: Option<Instant>,
    cadence: watch::Sender<Cadence>,
    generation: u64,
    probers: JoinSet<()>,
}

impl Coordinator {
    /// Starts from the currently published topology.
    pub(super) fn new(host: Arc<dyn Host>) -> Self {
        let config = host.config();
        let topology = (*host.topology().load_full()).clone();
        Self {
            trackers: vec![Tracker::default(); topology.nodes.len()],
            last_primary: topology.primary,
            host,
            config,
            history: History::default(),
            topology,
            split_brain: false,
            fast_until: None,
            cadence: watch::channel(Cadence::default()).0,
            generation: 0,
            probers: JoinSet::new(),
        }
    }

    /// Runs until `shutdown` turns true.
    pub(super) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let (tx, mut rx) = mpsc::channel(256);
        self.spawn_probers(&tx);
        let host = self.host.clone();
        let mut config_check = tokio::time::interval(CONFIG_CHECK);
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => break,
                Some(report) = rx.recv() => self.apply(report),
                () = host.topology().probe_requested() => self.nudge(),
                _ = config_check.tick() => self.follow_config(&tx),
            }
            self.update_cadence();
        }
        self.probers.shutdown().await;
    }

    fn spawn_probers(&mut self, tx: &mpsc::Sender<Report>) {
        self.probers.abort_all();
        self.generation += 1;
        for node in &self.topology.nodes {
            let task = probe_loop(
                node.index,
                self.generation,
                node.config.clone(),
                self.host.clone(),
                tx.clone(),
                self.cadence.subscribe(),
            );
            self.probers.spawn(task);
        }
    }

    /// Applies one report and publishes the result if it changed anything.
    pub(super) fn apply(&mut self, report: Report) {
        let i = report.index.0;
        if report.generation != self.generation || i >= self.trackers.len() {
            return;
        }
        let name = self.topology.nodes[i].name().to_owned();
        let settings = &self.config.monitor;
        let thresholds = Thresholds { failures: settings.failure_threshold, successes: settings.success_threshold };
        match report.kind {
            Kind::Full(result) => {
                let error = result.as_ref().err().map(ToString::to_string);
                match self.trackers[i].record(result.ok(), thresholds) {
                    Some(false) => {
                        tracing::warn!(backend = %name, error = error.as_deref().unwrap_or(""), "backend down");
                        self.host.pools().drain(report.index);
                    }
                    Some(true) => tracing::info!(backend = %name, "backend up"),
                    None => {
                        if let Some(error) = error {
                            tracing::debug!(backend = %name, error = %error, "probe failed");
                        }
                    }
                }
            }
            Kind::Gtid(position) => {
                if let Some(observation) = self.trackers[i].observation.as_mut() {
                    observation.gtid = Some(position);
                }
            }
        }
        let next = self.next_topology(report.index, report.at);
        self.publish_if_changed(next);
    }

    /// The topology after backend `changed` reported at `at`.
    fn next_topology(&mut self, changed: BackendIndex, at: Instant) -> Topology {
        let candidates: Vec<Candidate> = self
            .topology
            .nodes
            .iter()
            .zip(&self.trackers)
            .map(|(n, t)| Candidate {
                index: n.index,
                up: t.is_up(),
                reachable: t.is_reachable(),
                writable: t.writable(),
            })
            .collect();
        let election = elect(self.topology.primary, &candidates);
        self.note_split_brain(election.split_brain);
        let mut next = self.topology.clone();
        if election.primary != self.topology.primary {
            self.change_primary(&mut next, election.primary);
        }
        let max_lag = self.config.routing.max_replication_lag;
        let keep = max_lag.saturating_mul(2).max(Duration::from_secs(10));
        if let Some(primary) = next.primary {
            let position = self.trackers[primary.0].observation.as_ref().and_then(|o| o.gtid.as_ref());
            if let (true, Some(position)) = (primary == changed, position) {
                self.history.record(at, position, keep);
            }
        }
        for (node, tracker) in next.nodes.iter_mut().zip(&self.trackers) {
            node.health = if tracker.is_up() { Health::Up } else { Health::Down };
            node.role = if Some(node.index) == next.primary {
                Role::Primary
            } else if tracker.writable() == Some(true) {
                Role::Writable
            } else {
                Role::Replica
            };
            let Some(observation) = &tracker.observation else { continue };
            node.replication = observation.replication.clone();
            node.gtid = observation.gtid.clone().map(Arc::new);
            if Some(node.index) == next.primary {
                node.lag = None;
                node.lagging = false;
            } else if node.index == changed {
                let gtid_lag = observation.gtid.as_ref().and_then(|p| self.history.lag(p, at));
                node.lag = combined_lag(observation.replication.as_ref().and_then(|r| r.seconds_behind), gtid_lag);
                let was = node.lagging;
                node.lagging = lagging(was, node.lag, max_lag);
                if node.lagging != was {
                    let lag_ms = node.lag.map_or(0, |d| d.as_millis());
                    tracing::warn!(
                        backend = node.name(),
                        lag_ms,
                        lagging = node.lagging,
                        "replica rotation changed for lag"
                    );
                }
            }
        }
        next
    }

    fn change_primary(&mut self, next: &mut Topology, primary: Option<BackendIndex>) {
        let name = |index: Option<BackendIndex>| {
            index.and_then(|i| self.topology.node(i)).map_or_else(|| "none".to_owned(), |n| n.name().to_owned())
        };
        tracing::info!(old = %name(self.topology.primary), new = %name(primary), "primary changed");
        if let Some(old) = self.topology.primary {
            self.host.pools().drain(old);
        }
        if primary.is_some() && primary != self.last_primary {
            self.host.topology().count_failover();
            self.last_primary = primary;
        }
        // Positions of another primary say nothing about lag behind this one (an asynchronous
        // failover may have lost the old primary's last transactions).
        self.history.clear();
        next.primary = primary;
        next.epoch += 1;
    }

    fn note_split_brain(&mut self, split_brain: bool) {
        if split_brain && !self.split_brain {
            let writable: Vec<&str> = self
                .topology
                .nodes
                .iter()
                .zip(&self.trackers)
                .filter(|(_, t)| t.is_up() && t.is_reachable() && t.writable() == Some(true))
                .map(|(n, _)| n.name())
                .collect();
            tracing::error!(?writable, "more than one backend is writable; keeping the current primary, if any");
            self.host.topology().count_split_brain();
        } else if !split_brain && self.split_brain {
            tracing::info!("only one backend is writable again");
        }
        self.split_brain = split_brain;
    }

    fn publish_if_changed(&mut self, next: Topology) {
        let same = next.primary == self.topology.primary
            && next.epoch == self.topology.epoch
            && next.nodes.iter().zip(&self.topology.nodes).all(|(a, b)| same_node(a, b));
        if !same {
            self.host.topology().publish(next.clone());
            self.topology = next;
        }
    }

    /// A frontend saw the primary fail: probe everything now and keep probing fast for a while.
    pub(super) fn nudge(&mut self) {
        self.fast_until = Some(Instant::now() + NUDGE_WINDOW);
        self.cadence.send_modify(|c| c.probe_now = c.probe_now.wrapping_add(1));
    }

    fn update_cadence(&mut self) {
        let uncertain = self.topology.primary.is_none()
            || self.trackers.iter().any(|t| t.is_up() && !t.is_reachable())
            || self.fast_until.is_some_and(|until| Instant::now() < until);
        self.cadence.send_if_modified(|c| std::mem::replace(&mut c.fast, uncertain) != uncertain);
    }

    /// Follows the running configuration: new settings are read by every probe anyway; a changed
    /// backend list restarts the probers on a fresh topology and drains every pool (indexes may
    /// have moved); changed weights or hints are copied into the snapshot.
    fn follow_config(&mut self, tx: &mpsc::Sender<Report>) {
        let config = self.host.config();
        if Arc::ptr_eq(&config, &self.config) {
            return;
        }
        let key = |b: &BackendConfig| (b.name.clone(), b.host.clone(), b.port);
        let same_list = config.backends.len() == self.topology.nodes.len()
            && config.backends.iter().zip(&self.topology.nodes).all(|(b, n)| key(b) == key(&n.config));
        self.config = config.clone();
        if same_list {
            let mut next = self.topology.clone();
            for (node, backend) in next.nodes.iter_mut().zip(&config.backends) {
                node.config = backend.clone();
            }
            self.host.topology().publish(next.clone());
            self.topology = next;
            return;
        }
        tracing::info!(backends = config.backends.len(), "backend list changed; restarting the monitor's probes");
        let mut next = Topology::from_config(&config);
        next.epoch = self.topology.epoch + 1;
        self.host.pools().drain_all();
        self.trackers = vec![Tracker::default(); next.nodes.len()];
        self.history.clear();
        self.last_primary = next.primary;
        self.host.topology().publish(next.clone());
        self.topology = next;
        self.spawn_probers(tx);
    }
}

fn same_node(a: &Node, b: &Node) -> bool {
    a.role == b.role
        && a.health == b.health
        && a.replication == b.replication
        && a.lag == b.lag
        && a.lagging == b.lagging
        && a.gtid == b.gtid
        && a.config == b.config
}

/// One backend's prober: full probes on the cadence, GTID-only polls in between when session
/// consistency needs fresh positions.
async fn probe_loop(
    index: BackendIndex,
    generation: u64,
    backend: BackendConfig,
    host: Arc<dyn Host>,
    tx: mpsc::Sender<Report>,
    mut cadence: watch::Receiver<Cadence>,
) {
    let mut prober = Prober::new(backend.host.clone(), backend.port);
    let mut next_full = Instant::now();
    let mut next_gtid: Option<Instant> = None;
    loop {
        let config = host.config();
        let settings = &config.monitor;
        let seen = *cadence.borrow_and_update();
        let now = Instant::now();
        let gtid_every =
            (config.routing.consistency == Consistency::Session && RECHECK < settings.interval).then_some(RECHECK);
        if now >= next_full {
            let result = prober.full(settings).await;
            let failing = result.is_err();
            if tx.send(Report { generation, index, at: now, kind: Kind::Full(result) }).await.is_err() {
                return;
            }
            let fast = seen.fast || failing;
            next_full = now + if fast { settings.interval.min(RECHECK) } else { settings.interval };
            next_gtid = gtid_every.map(|every| now + every);
        } else if next_gtid.is_some_and(|at| now >= at) {
            match prober.gtid(settings).await {
                Ok(Some(position)) => {
                    if tx.send(Report { generation, index, at: now, kind: Kind::Gtid(position) }).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(_) => next_full = now,
            }
            next_gtid = gtid_every.map(|every| now + every);
        }
        let wake = next_gtid.map_or(next_full, |at| at.min(next_full));
        tokio::select! {
            () = tokio::time::sleep_until(wake.into()) => {}
            changed = cadence.changed() => {
                if changed.is_err() {
                    return;
                }
                let now_cadence = *cadence.borrow();
                if now_cadence.probe_now != seen.probe_now {
                    next_full = Instant::now();
                } else if now_cadence.fast && !seen.fast {
                    next_full = next_full.min(Instant::now() + RECHECK);
                }
            }
        }
    }
}
