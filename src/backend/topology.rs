//! The topology snapshot: which backends exist, which one is the primary, which are healthy,
//! how far each replica lags and which GTIDs it has applied; plus the weighted choice among
//! replicas. A statement loads one snapshot from the [`TopologyCell`] and uses it throughout.
//!
//! The monitor (`crate::monitor`) is the only writer: it publishes a new snapshot whenever a probe
//! changes anything and bumps the cell's `watch` channel. The frontend adds one piece of passive
//! health: a backend whose connect just failed leaves replica rotation for a short time, shared
//! by every later snapshot of the same backend. Nothing here does I/O or runs tasks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{watch, Notify};

use super::gtid::{Gtid, Position};
use crate::config::{self, BackendConfig, Config};

/// Position of a backend in the topology (stable for the life of a snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendIndex(pub usize);

/// What a backend currently is, as the monitor last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The elected primary: takes writes.
    Primary,
    /// Read-only (or hinted as a replica and not yet probed): may take reads.
    Replica,
    /// Writable but not elected (two writable backends, or a promotion not yet confirmed): takes
    /// no writes; reads only while its lag allows.
    Writable,
}

impl Role {
    /// Lowercase label for logs, metrics and the admin API.
    pub fn label(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Writable => "writable",
        }
    }
}

/// The monitor's verdict on reachability, after its thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// Reachable (or not probed yet).
    Up,
    /// `monitor.failure_threshold` probes in a row failed.
    Down,
}

/// Replication state of a backend that replicates from another (`SHOW SLAVE STATUS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    /// The IO thread is connected to its source (`Slave_IO_Running = Yes`).
    pub io_running: bool,
    /// The SQL thread is applying events (`Slave_SQL_Running = Yes`).
    pub sql_running: bool,
    /// `Seconds_Behind_Master`; unknown (NULL) while a thread is stopped.
    pub seconds_behind: Option<u64>,
    /// `Last_SQL_Errno`: non-zero when the SQL thread stopped on an error.
    pub sql_error: u32,
}

impl Replication {
    /// True when the SQL thread stopped on an error: the data may have diverged, so the backend
    /// gets no reads whatever its lag.
    pub fn is_broken(&self) -> bool {
        !self.sql_running && self.sql_error != 0
    }
}

/// Passive health shared by every snapshot of one backend.
#[derive(Debug)]
struct Passive {
    /// Milliseconds since `start` until which the node is out of rotation (0 = in).
    down_until_ms: AtomicU64,
    start: Instant,
}

/// One backend and what is known about it.
#[derive(Debug, Clone)]
pub struct Node {
    /// Position in the topology.
    pub index: BackendIndex,
    /// Its configuration.
    pub config: BackendConfig,
    /// What it is now.
    pub role: Role,
    /// Reachability verdict of the monitor.
    pub health: Health,
    /// Replication state; `None` when it replicates from nothing (or was not probed yet).
    pub replication: Option<Replication>,
    /// Estimated replication lag: `Seconds_Behind_Master`, or longer when its GTID position shows
    /// it lacks transactions the primary had longer ago. `None` when unknown.
    pub lag: Option<Duration>,
    /// Out of read rotation for lag (set above `routing.max_replication_lag`, cleared below half).
    pub lagging: bool,
    /// Executed GTIDs at the last poll, if known.
    pub gtid: Option<Arc<Position>>,
    passive: Arc<Passive>,
}

impl Node {
    /// A node as the configuration describes it: hinted role, up, nothing measured.
    pub fn new(index: BackendIndex, config: BackendConfig) -> Self {
        let role = if config.role == config::Role::Primary { Role::Primary } else { Role::Replica };
        let passive = Arc::new(Passive { down_until_ms: AtomicU64::new(0), start: Instant::now() });
        Self {
            index,
            config,
            role,
            health: Health::Up,
            replication: None,
            lag: None,
            lagging: false,
            gtid: None,
            passive,
        }
    }

    /// True unless the monitor marked it down or a connect to it failed recently.
    pub fn is_up(&self) -> bool {
        if self.health == Health::Down {
            return false;
        }
        let until = self.passive.down_until_ms.load(Ordering::Relaxed);
        until == 0 || millis(self.passive.start.elapsed()) >= until
    }

    /// Takes the node out of replica rotation for `period` (a failed connect). Shared with every
    /// later snapshot of this backend.
    pub fn mark_down(&self, period: Duration) {
        let until = millis(self.passive.start.elapsed() + period);
        self.passive.down_until_ms.store(until.max(1), Ordering::Relaxed);
    }

    /// True when reads may go here: up, weight > 0, not lagging, replication not broken.
    pub fn is_readable(&self) -> bool {
        self.config.weight > 0
            && !self.lagging
            && !self.replication.as_ref().is_some_and(Replication::is_broken)
            && self.is_up()
    }

    /// True when its last polled GTID position contains `gtid`.
    pub fn has_applied(&self, gtid: &Gtid) -> bool {
        self.gtid.as_ref().is_some_and(|pos| pos.covers(gtid))
    }

    /// The backend's configured name.
    pub fn name(&self) -> &str {
        self.config.name.as_str()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Backends and roles, as one immutable snapshot.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Every backend, indexed by [`BackendIndex`].
    pub nodes: Vec<Node>,
    /// The writable backend, if one is known.
    pub primary: Option<BackendIndex>,
    /// Primary generation: bumped every time `primary` changes (including to and from none).
    pub epoch: u64,
}

impl Topology {
    /// The starting topology: roles as the configuration hints them, everything up.
    pub fn from_config(config: &Config) -> Self {
        let nodes: Vec<Node> =
            config.backends.iter().enumerate().map(|(i, b)| Node::new(BackendIndex(i), b.clone())).collect();
        let primary = nodes.iter().find(|n| n.role == Role::Primary).map(|n| n.index);
        Self { nodes, primary, epoch: 0 }
    }

    /// The node at `index`.
    pub fn node(&self, index: BackendIndex) -> Option<&Node> {
        self.nodes.get(index.0)
    }

    /// Finds a backend by name (routing hints).
    pub fn by_name(&self, name: &[u8]) -> Option<BackendIndex> {
        self.nodes.iter().find(|n| n.config.name.as_str().as_bytes() == name).map(|n| n.index)
    }
}

/// Where the current [`Topology`] lives: an `ArcSwap` for readers, a `watch` channel that ticks
/// on every publication (held writes wait on it), and a way for the frontend to ask the monitor
/// for an immediate probe when the primary stops answering.
#[derive(Debug)]
pub struct TopologyCell {
    current: ArcSwap<Topology>,
    changed: watch::Sender<Option<BackendIndex>>,
    probe_now: Notify,
    failovers: AtomicU64,
    split_brains: AtomicU64,
    discounted_probes: AtomicU64,
}

impl TopologyCell {
    /// A cell holding `topology`.
    pub fn new(topology: Topology) -> Self {
        Self {
            changed: watch::channel(topology.primary).0,
            current: ArcSwap::from_pointee(topology),
            probe_now: Notify::new(),
            failovers: AtomicU64::new(0),
            split_brains: AtomicU64::new(0),
            discounted_probes: AtomicU64::new(0),
        }
    }

    /// The current snapshot, for a short look.
    pub fn load(&self) -> arc_swap::Guard<Arc<Topology>> {
        self.current.load()
    }

    /// The current snapshot, to keep for a whole statement.
    pub fn load_full(&self) -> Arc<Topology> {
        self.current.load_full()
    }

    /// Replaces the snapshot and notifies every subscriber.
    pub fn publish(&self, topology: Topology) {
        let primary = topology.primary;
        self.current.store(Arc::new(topology));
        self.changed.send_modify(|published| *published = primary);
    }

    /// A receiver that sees a change after every [`Self::publish`]; its value is the primary
    /// the last snapshot names.
    pub fn subscribe(&self) -> watch::Receiver<Option<BackendIndex>> {
        self.changed.subscribe()
    }

    /// Asks the monitor to probe every backend now (a primary connection just failed).
    pub fn request_probe(&self) {
        self.probe_now.notify_one();
    }

    /// Completes after the next [`Self::request_probe`] (or at once if one is pending).
    pub async fn probe_requested(&self) {
        self.probe_now.notified().await;
    }

    /// Counts one change of primary.
    pub fn count_failover(&self) {
        self.failovers.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one occurrence of two or more writable backends.
    pub fn count_split_brain(&self) {
        self.split_brains.fetch_add(1, Ordering::Relaxed);
    }

    /// Changes of primary so far (`rwsplit_failovers_total`).
    pub fn failovers_total(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    /// Times two or more writable backends were seen.
    pub fn split_brain_total(&self) -> u64 {
        self.split_brains.load(Ordering::Relaxed)
    }

    /// Counts one failed probe the monitor did not count because the backend answered
    /// statements meanwhile.
    pub fn count_discounted_probe(&self) {
        self.discounted_probes.fetch_add(1, Ordering::Relaxed);
    }

    /// Failed probes not counted so far (`rwsplit_monitor_probe_failures_discounted_total`).
    pub fn discounted_probes_total(&self) -> u64 {
        self.discounted_probes.load(Ordering::Relaxed)
    }
}

/// Smooth weighted round-robin over the readable replicas (nginx's algorithm): every pick adds
/// each candidate's weight to its running score, takes the highest, and subtracts the total from
/// it. Over any window the picks follow the weights closely and never burst.
#[derive(Debug, Default)]
pub struct Balancer {
    scores: Mutex<Vec<i64>>,
}

impl Balancer {
    /// Picks a backend other than the primary that is readable ([`Node::is_readable`]), is not
    /// `exclude` and, when `required` is given, has applied that GTID. `None` when none qualifies.
    pub fn pick(
        &self,
        topology: &Topology,
        exclude: Option<BackendIndex>,
        required: Option<&Gtid>,
    ) -> Option<BackendIndex> {
        let mut scores = self.scores.lock().unwrap_or_else(|p| p.into_inner());
        if scores.len() != topology.nodes.len() {
            *scores = vec![0; topology.nodes.len()];
        }
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for node in &topology.nodes {
            let i = node.index.0;
            let eligible = Some(node.index) != topology.primary
                && Some(node.index) != exclude
                && node.is_readable()
                && required.is_none_or(|gtid| node.has_applied(gtid));
            if !eligible {
                continue;
            }
            let weight = i64::from(node.config.weight);
            scores[i] += weight;
            total += weight;
            if best.is_none_or(|b| scores[i] > scores[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        scores[best] -= total;
        Some(BackendIndex(best))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(weights: &[u32]) -> Topology {
        let mut config = Config::default();
        for (i, &w) in weights.iter().enumerate() {
            config.backends.push(BackendConfig {
                name: crate::config::BackendId::new(format!("b{i}")),
                host: "127.0.0.1".into(),
                port: 1,
                weight: w,
                role: if i == 0 { config::Role::Primary } else { config::Role::Replica },
            });
        }
        Topology::from_config(&config)
    }

    #[test]
    fn picks_follow_the_weights_and_skip_primary_drained_down_and_excluded() {
        let t = topology(&[5, 1, 3, 0]);
        let b = Balancer::default();
        let picks: Vec<usize> = (0..8).map(|_| b.pick(&t, None, None).unwrap().0).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 1).count(), 2);
        assert_eq!(picks.iter().filter(|&&p| p == 2).count(), 6);
        assert!(!picks.contains(&0) && !picks.contains(&3));
        assert_eq!(b.pick(&t, Some(BackendIndex(2)), None), Some(BackendIndex(1)));
        t.nodes[1].mark_down(Duration::from_secs(60));
        assert_eq!(b.pick(&t, Some(BackendIndex(2)), None), None);
        assert_eq!(b.pick(&t, None, None), Some(BackendIndex(2)));
        let later = t.clone();
        assert!(!later.nodes[1].is_up(), "passive marks carry over to later snapshots");
    }

    #[test]
    fn picks_skip_lagging_broken_and_monitor_down_replicas() {
        let mut t = topology(&[1, 1, 1, 1]);
        t.nodes[1].lagging = true;
        t.nodes[2].replication =
            Some(Replication { io_running: true, sql_running: false, seconds_behind: None, sql_error: 1062 });
        let b = Balancer::default();
        assert_eq!(b.pick(&t, None, None), Some(BackendIndex(3)));
        t.nodes[3].health = Health::Down;
        assert_eq!(b.pick(&t, None, None), None);
        t.nodes[2].replication.as_mut().unwrap().sql_error = 0;
        assert_eq!(b.pick(&t, None, None), Some(BackendIndex(2)), "a stopped SQL thread alone is judged by lag");
    }

    #[test]
    fn read_your_writes_needs_a_replica_that_applied_the_gtid() {
        let mut t = topology(&[1, 1, 1]);
        t.nodes[1].gtid = Some(Arc::new(Position::parse("0-1-10").unwrap()));
        t.nodes[2].gtid = Some(Arc::new(Position::parse("0-1-12").unwrap()));
        let b = Balancer::default();
        let gtid = Gtid::parse("0-1-11").unwrap();
        for _ in 0..4 {
            assert_eq!(b.pick(&t, None, Some(&gtid)), Some(BackendIndex(2)));
        }
        assert_eq!(b.pick(&t, None, Some(&Gtid::parse("0-1-13").unwrap())), None);
        t.primary = None;
        assert_eq!(b.pick(&t, None, Some(&Gtid::parse("0-1-13").unwrap())), None, "no position known for b0");
    }

    #[tokio::test]
    async fn publishing_notifies_subscribers() {
        let cell = TopologyCell::new(topology(&[1, 1]));
        let mut rx = cell.subscribe();
        let mut next = (*cell.load_full()).clone();
        next.primary = None;
        next.epoch += 1;
        cell.publish(next);
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow(), None);
        assert_eq!(cell.load().primary, None);
        assert_eq!(cell.load().epoch, 1);
    }
}
