//! The coordinator task: receives every prober's reports, keeps the per-backend trackers, elects
//! the primary, estimates lag and publishes a new topology snapshot whenever anything a reader
//! could act on changed. Also owns the prober tasks and restarts them when the configured
//! backend list changes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::election::{elect, Candidate};
use super::health::{combined_lag, lagging, History, Observation, Thresholds, Tracker, Weight};
use super::probe::{probe_loop, Cadence};
use super::{Error, Host, RECHECK};
use crate::backend::{BackendIndex, GtidPosition, Health, Node, Role, Topology};
use crate::config::{BackendConfig, Config};

/// How long a frontend report of a failed primary keeps the probes fast.
const NUDGE_WINDOW: Duration = Duration::from_secs(2);

/// How often the coordinator looks for a changed configuration.
const CONFIG_CHECK: Duration = Duration::from_secs(1);

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

/// The kinds of report.
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

/// What woke the coordinator.
enum Event {
    DataPath,
    Report(Report),
    Nudge,
    Config,
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
        let mut data_path = tokio::time::interval(RECHECK);
        data_path.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                _ = data_path.tick() => Event::DataPath,
                _ = shutdown.wait_for(|stop| *stop) => break,
                Some(report) = rx.recv() => Event::Report(report),
                () = host.topology().probe_requested() => Event::Nudge,
                () = host.pools().stall_noticed() => Event::Nudge,
                _ = config_check.tick() => Event::Config,
            };
            // A reload renumbers the pools' backends at once; indices in reports, drains and
            // evidence mean the same backends only once the topology follows the new list.
            self.follow_config(&tx);
            match event {
                Event::DataPath => self.look_at_data_path(),
                Event::Report(report) => self.apply(report),
                Event::Nudge => self.nudge(),
                Event::Config => {}
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
        let weight = match &report.kind {
            Kind::Full(Err(error)) => self.weigh_failure(i, report.at, error),
            _ => Weight::Counted,
        };
        match report.kind {
            Kind::Full(Err(error)) if weight == Weight::Discounted => {
                self.host.topology().count_discounted_probe();
                if self.trackers[i].discount() {
                    tracing::warn!(backend = %name, error = %error, "probe failed while the backend answers statements; not counted (more such failures are logged at debug until a probe succeeds)");
                } else {
                    tracing::debug!(backend = %name, error = %error, "probe failed while the backend answers statements; not counted");
                }
            }
            Kind::Full(Err(error)) if weight == Weight::Decisive => {
                if self.trackers[i].record_corroborated_failure(thresholds) == Some(false) {
                    tracing::warn!(backend = %name, error = %error, "backend down: its probe failed and statements wait on it without an answer");
                    self.drain(report.index);
                }
            }
            Kind::Full(result) => {
                let error = result.as_ref().err().map(ToString::to_string);
                match self.trackers[i].record(result.ok(), report.at, thresholds) {
                    Some(false) => {
                        tracing::warn!(backend = %name, error = error.as_deref().unwrap_or(""), "backend down");
                        self.drain(report.index);
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
        let next = self.next_topology(Some(report.index), report.at);
        self.publish_if_changed(next);
    }

    /// How the data path weighs the failed probe of backend `i` that started `at`, after a fresh
    /// look at it.
    fn weigh_failure(&mut self, i: usize, at: Instant, error: &Error) -> Weight {
        self.observe_data_path();
        self.trackers[i].weigh_failure(at, Instant::now(), error.is_timeout())
    }

    /// Takes in what the data path saw of every backend; true when a backend stalled or stopped
    /// being stalled.
    fn observe_data_path(&mut self) -> bool {
        let now = Instant::now();
        let mut changed = false;
        let pools = self.host.pools();
        for (node, tracker) in self.topology.nodes.iter().zip(&mut self.trackers) {
            let was = tracker.data_path_stalled();
            let evidence = pools.place(&node.config, node.index).map(|at| pools.evidence(at)).unwrap_or_default();
            tracker.observe_data_path(evidence, now);
            changed |= tracker.data_path_stalled() != was;
        }
        changed
    }

    /// Looks at the data path (every [`RECHECK`], so that the moment a backend last answered is
    /// known to that precision) and elects again when a backend stalled or stopped being stalled.
    pub(super) fn look_at_data_path(&mut self) {
        let now = Instant::now();
        if self.observe_data_path() {
            let next = self.next_topology(None, now);
            self.publish_if_changed(next);
        }
    }

    /// The topology after backend `changed` (if any) reported at `at`.
    fn next_topology(&mut self, changed: Option<BackendIndex>, at: Instant) -> Topology {
        let candidates: Vec<Candidate> = self
            .topology
            .nodes
            .iter()
            .zip(&self.trackers)
            .map(|(n, t)| Candidate {
                index: n.index,
                up: t.is_up(),
                reachable: t.is_reachable(),
                // Statements waiting on it unanswered can make it a suspect before its next
                // probe fails (that takes up to monitor.timeout); see `elect`.
                stalled: t.data_path_stalled(),
                writable: t.writable(),
                last_alive: t.last_alive(),
                writable_since: t.writable_since(),
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
            if let (true, Some(position)) = (Some(primary) == changed, position) {
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
            } else if Some(node.index) == changed {
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
        tracing::warn!(old = %name(self.topology.primary), new = %name(primary), "primary changed");
        if let Some(old) = self.topology.primary {
            self.drain(old);
        }
        if primary.is_some() && primary != self.last_primary {
            self.host.topology().count_failover();
            // Statements still waiting on the former primary give up only now that another one
            // is elected: one merely marked down keeps them (it may only be slow, or frozen with
            // nobody to replace it, and they complete when it answers again).
            if let Some(former) = self.last_primary.and_then(|i| self.pools_index(i)) {
                self.host.pools().demote(former);
            }
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

    /// A frontend saw the primary fail: probe everything now (at most once per [`RECHECK`], however
    /// many sessions report it) and keep probing fast for a while.
    pub(super) fn nudge(&mut self) {
        let now = Instant::now();
        let recent = self.fast_until.is_some_and(|until| until > now + NUDGE_WINDOW - RECHECK);
        self.fast_until = Some(now + NUDGE_WINDOW);
        if !recent {
            self.cadence.send_modify(|c| c.probe_now = c.probe_now.wrapping_add(1));
        }
    }

    /// Where the pools number the backend at `index` of this topology: the same, except
    /// between a reload's renumbering of the pools and this coordinator following it.
    fn pools_index(&self, index: BackendIndex) -> Option<BackendIndex> {
        let node = self.topology.node(index)?;
        self.host.pools().place(&node.config, index)
    }

    /// Drains the backend at `index` of this topology (see [`crate::backend::Pools::drain`]).
    fn drain(&self, index: BackendIndex) {
        if let Some(at) = self.pools_index(index) {
            self.host.pools().drain(at);
        }
    }

    fn update_cadence(&mut self) {
        let uncertain = self.topology.primary.is_none()
            || self.trackers.iter().any(|t| t.is_up() && !t.is_reachable())
            || self.fast_until.is_some_and(|until| Instant::now() < until);
        self.cadence.send_if_modified(|c| std::mem::replace(&mut c.fast, uncertain) != uncertain);
    }

    /// Follows the running configuration: new settings are read by every probe anyway; changed
    /// weights or hints are copied into the snapshot; a changed backend list restarts the probers
    /// on a new topology that keeps what is known about backends still listed (same name, host
    /// and port), the elected primary included. Pools are left to the reload, which renumbers
    /// what they keep per backend and forgets the pools of moved backends without cutting
    /// transactions short. Runs before each event is handled, so that no report or drain from
    /// the old numbering is applied to the renumbered pools.
    pub(super) fn follow_config(&mut self, tx: &mpsc::Sender<Report>) {
        let config = self.host.config();
        if Arc::ptr_eq(&config, &self.config) {
            return;
        }
        self.config = config.clone();
        let same_list = config.backends.len() == self.topology.nodes.len()
            && config.backends.iter().zip(&self.topology.nodes).all(|(b, n)| b.same_server(&n.config));
        if same_list {
            let mut next = self.topology.clone();
            for (node, backend) in next.nodes.iter_mut().zip(&config.backends) {
                node.config = backend.clone();
            }
            self.publish_if_changed(next);
            return;
        }
        tracing::info!(backends = config.backends.len(), "backend list changed; restarting the monitor's probes");
        let old_index =
            |backend: &BackendConfig| self.topology.nodes.iter().position(|n| n.config.same_server(backend));
        let mut next = Topology::from_config(&config);
        let mut trackers = vec![Tracker::default(); next.nodes.len()];
        for (node, tracker) in next.nodes.iter_mut().zip(&mut trackers) {
            if let Some(i) = old_index(&node.config) {
                let old = &self.topology.nodes[i];
                node.role = if old.role == Role::Primary { Role::Replica } else { old.role };
                node.health = old.health;
                node.replication = old.replication.clone();
                node.lag = old.lag;
                node.lagging = old.lagging;
                node.gtid = old.gtid.clone();
                *tracker = self.trackers[i].clone();
            }
        }
        let old_primary = self.topology.primary.and_then(|p| self.topology.node(p)).map(|n| n.config.clone());
        next.primary =
            next.nodes.iter().find(|n| old_primary.as_ref().is_some_and(|p| p.same_server(&n.config))).map(|n| n.index);
        if let Some(primary) = next.primary {
            next.nodes[primary.0].role = Role::Primary;
        } else {
            self.history.clear();
        }
        next.epoch = self.topology.epoch + u64::from(next.primary.is_none() && old_primary.is_some());
        self.trackers = trackers;
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
