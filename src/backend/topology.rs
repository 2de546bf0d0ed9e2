//! The topology snapshot: which backends exist, which one is the primary, which are usable, and
//! the weighted choice among replicas. Loaded once per statement from an `ArcSwap`.
//!
//! Until the monitor exists, health is passive: a backend whose connect fails is taken out of
//! rotation for a short time and then tried again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{BackendConfig, Config, Role};

/// Position of a backend in the topology (stable for the life of a snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendIndex(pub usize);

/// One backend and its health.
#[derive(Debug)]
pub struct Node {
    /// Position in the topology.
    pub index: BackendIndex,
    /// Its configuration.
    pub config: BackendConfig,
    /// Milliseconds since `epoch_start` until which the node is out of rotation (0 = in).
    down_until_ms: AtomicU64,
    epoch_start: Instant,
}

impl Node {
    /// True unless the node was marked down recently.
    pub fn is_up(&self) -> bool {
        let until = self.down_until_ms.load(Ordering::Relaxed);
        until == 0 || self.epoch_start.elapsed().as_millis() as u64 >= until
    }

    /// Takes the node out of rotation for `period` (a failed connect).
    pub fn mark_down(&self, period: Duration) {
        let until = (self.epoch_start.elapsed() + period).as_millis() as u64;
        self.down_until_ms.store(until.max(1), Ordering::Relaxed);
    }

    /// The backend's configured name.
    pub fn name(&self) -> &str {
        self.config.name.as_str()
    }
}

/// Backends and roles, as one immutable snapshot.
#[derive(Debug)]
pub struct Topology {
    /// Every backend, indexed by [`BackendIndex`].
    pub nodes: Vec<Node>,
    /// The writable backend, if one is known.
    pub primary: Option<BackendIndex>,
}

impl Topology {
    /// The starting topology: roles as the configuration hints them, everything up.
    pub fn from_config(config: &Config) -> Self {
        let start = Instant::now();
        let nodes: Vec<Node> = config
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| Node {
                index: BackendIndex(i),
                config: b.clone(),
                down_until_ms: AtomicU64::new(0),
                epoch_start: start,
            })
            .collect();
        let primary = nodes.iter().find(|n| n.config.role == Role::Primary).map(|n| n.index);
        Self { nodes, primary }
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

/// Smooth weighted round-robin over the replicas that are up (nginx's algorithm): every pick adds
/// each candidate's weight to its running score, takes the highest, and subtracts the total from
/// it. Over any window the picks follow the weights closely and never burst.
#[derive(Debug, Default)]
pub struct Balancer {
    scores: Mutex<Vec<i64>>,
}

impl Balancer {
    /// Picks a replica (never the primary) with weight > 0 that is up and not `exclude`.
    pub fn pick(&self, topology: &Topology, exclude: Option<BackendIndex>) -> Option<BackendIndex> {
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
                && node.config.weight > 0
                && node.is_up();
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
                role: if i == 0 { Role::Primary } else { Role::Replica },
            });
        }
        Topology::from_config(&config)
    }

    #[test]
    fn picks_follow_the_weights_and_skip_primary_drained_down_and_excluded() {
        let t = topology(&[5, 1, 3, 0]);
        let b = Balancer::default();
        let picks: Vec<usize> = (0..8).map(|_| b.pick(&t, None).unwrap().0).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 1).count(), 2);
        assert_eq!(picks.iter().filter(|&&p| p == 2).count(), 6);
        assert!(!picks.contains(&0) && !picks.contains(&3));
        assert_eq!(b.pick(&t, Some(BackendIndex(2))), Some(BackendIndex(1)));
        t.nodes[1].mark_down(Duration::from_secs(60));
        assert_eq!(b.pick(&t, Some(BackendIndex(2))), None);
        assert_eq!(b.pick(&t, None), Some(BackendIndex(2)));
    }
}
