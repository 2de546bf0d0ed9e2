//! The monitor's decisions without I/O: thresholds, lag hysteresis and estimation, elections, and
//! whole failover sequences fed to the coordinator as synthetic probe reports.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::coordinator::{Coordinator, Kind, Report};
use super::election::{elect, Candidate, Election};
use super::health::{combined_lag, lagging, History, Observation, Thresholds, Tracker};
use super::{Error, Host};
use crate::backend::{BackendIndex, GtidPosition, Health, Pools, Replication, Role, Topology, TopologyCell};
use crate::config::{self, BackendConfig, BackendId, Config};

const T: Thresholds = Thresholds { failures: 3, successes: 2 };

fn seen(writable: bool) -> Option<Observation> {
    Some(Observation { writable, replication: None, gtid: None })
}

#[test]
fn verdicts_flip_only_after_consecutive_results() {
    let mut t = Tracker::default();
    assert!(t.is_up() && t.is_reachable() && t.writable().is_none());
    assert_eq!(t.record(None, Instant::now(), T), None);
    assert_eq!(t.record(None, Instant::now(), T), None);
    assert!(t.is_up() && !t.is_reachable(), "suspect, not down");
    assert_eq!(t.record(seen(true), Instant::now(), T), None, "a success resets the failure streak");
    assert_eq!(t.record(None, Instant::now(), T), None);
    assert_eq!(t.record(None, Instant::now(), T), None);
    assert_eq!(t.record(None, Instant::now(), T), Some(false));
    assert_eq!(t.record(None, Instant::now(), T), None);
    assert_eq!(t.writable(), Some(true), "the last observation is kept while down");
    assert_eq!(t.record(seen(false), Instant::now(), T), None);
    assert_eq!(t.record(seen(false), Instant::now(), T), Some(true));
    assert_eq!(t.writable(), Some(false));
}

#[test]
fn lag_has_hysteresis() {
    let max = Duration::from_secs(10);
    let s = Duration::from_secs;
    assert!(!lagging(false, Some(s(10)), max));
    assert!(lagging(false, Some(s(11)), max));
    assert!(lagging(true, Some(s(6)), max), "stays out between max/2 and max");
    assert!(!lagging(true, Some(s(5)), max));
    assert!(lagging(true, None, max) && !lagging(false, None, max), "unknown lag changes nothing");
    assert_eq!(combined_lag(Some(3), Some(s(5))), Some(s(5)));
    assert_eq!(combined_lag(Some(7), None), Some(s(7)));
    assert_eq!(combined_lag(None, None), None);
}

#[test]
fn gtid_history_measures_how_long_a_replica_missed_what_the_primary_had() {
    let pos = |s: &str| GtidPosition::parse(s).unwrap();
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let keep = Duration::from_secs(10);
    let mut h = History::default();
    assert_eq!(h.lag(&pos("0-1-1"), at(0)), None);
    h.record(at(0), &pos("0-1-5"), keep);
    h.record(at(100), &pos("0-1-5"), keep);
    h.record(at(200), &pos("0-1-8"), keep);
    h.record(at(1200), &pos("0-1-9"), keep);
    assert_eq!(h.lag(&pos("0-1-9"), at(1300)), Some(Duration::ZERO));
    assert_eq!(h.lag(&pos("0-1-8"), at(1300)), Some(Duration::from_millis(100)));
    assert_eq!(h.lag(&pos("0-1-6"), at(1300)), Some(Duration::from_millis(1100)), "missing since 0-1-8 appeared");
    assert_eq!(h.lag(&pos("0-1-8"), at(1100)), Some(Duration::ZERO), "later samples do not count");
    assert_eq!(h.lag(&pos("0-1-1"), at(1300)), Some(Duration::from_millis(1300)), "behind every sample");
    h.record(at(20_000), &pos("0-1-10"), keep);
    assert_eq!(h.lag(&pos("0-1-9"), at(20_000)), Some(Duration::ZERO), "old samples were pruned");
}

fn c(i: usize, up: bool, reachable: bool, writable: Option<bool>) -> Candidate {
    Candidate {
        index: BackendIndex(i),
        up,
        reachable,
        stalled: false,
        writable,
        last_alive: None,
        writable_since: None,
    }
}

#[test]
fn elections_follow_the_single_reachable_writer_and_never_guess() {
    let b = |i| Some(BackendIndex(i));
    let ro = |i| c(i, true, true, Some(false));
    let cases: &[(&str, Option<BackendIndex>, Vec<Candidate>, Election)] = &[
        (
            "hint kept before any probe",
            b(0),
            vec![c(0, true, true, None), ro(1)],
            Election { primary: b(0), split_brain: false },
        ),
        (
            "hint wrong: the writer wins",
            b(0),
            vec![ro(0), c(1, true, true, Some(true))],
            Election { primary: b(1), split_brain: false },
        ),
        ("primary read-only: none", b(0), vec![ro(0), ro(1)], Election { primary: None, split_brain: false }),
        (
            "suspect primary kept",
            b(0),
            vec![c(0, true, false, Some(true)), ro(1)],
            Election { primary: b(0), split_brain: false },
        ),
        (
            "down primary dropped",
            b(0),
            vec![c(0, false, false, Some(true)), ro(1)],
            Election { primary: None, split_brain: false },
        ),
        (
            "promotion while the old one is only suspect: wait",
            b(0),
            vec![c(0, true, false, Some(true)), c(1, true, true, Some(true))],
            Election { primary: None, split_brain: false },
        ),
        (
            "promotion after the old one is down",
            b(0),
            vec![c(0, false, false, Some(true)), c(1, true, true, Some(true))],
            Election { primary: b(1), split_brain: false },
        ),
        (
            "two writers: keep current",
            b(0),
            vec![c(0, true, true, Some(true)), c(1, true, true, Some(true))],
            Election { primary: b(0), split_brain: true },
        ),
        (
            "two writers, current not one of them: none",
            b(2),
            vec![c(0, true, true, Some(true)), c(1, true, true, Some(true)), ro(2)],
            Election { primary: None, split_brain: true },
        ),
        ("nothing known: none", None, vec![ro(0), ro(1)], Election { primary: None, split_brain: false }),
    ];
    for (name, current, candidates, expected) in cases {
        assert_eq!(elect(*current, candidates), *expected, "{name}");
    }
}

struct FakeHost {
    config: arc_swap::ArcSwap<Config>,
    topology: TopologyCell,
    pools: Pools,
}

impl Host for FakeHost {
    fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }
    fn topology(&self) -> &TopologyCell {
        &self.topology
    }
    fn pools(&self) -> &Pools {
        &self.pools
    }
}

fn host(max_lag: Duration) -> Arc<FakeHost> {
    let mut config = Config::default();
    for i in 0..3 {
        config.backends.push(BackendConfig {
            name: BackendId::new(format!("n{i}")),
            host: "127.0.0.1".into(),
            port: 1,
            weight: 1,
            role: if i == 0 { config::Role::Primary } else { config::Role::Replica },
        });
    }
    config.monitor.failure_threshold = 2;
    config.monitor.success_threshold = 1;
    config.routing.max_replication_lag = max_lag;
    let topology = TopologyCell::new(Topology::from_config(&config));
    Arc::new(FakeHost { config: arc_swap::ArcSwap::from_pointee(config), topology, pools: Pools::default() })
}

fn full(i: usize, at: Instant, result: Result<Observation, Error>) -> Report {
    Report { generation: 0, index: BackendIndex(i), at, kind: Kind::Full(result) }
}

fn node(writable: bool, gtid: &str, replica: bool) -> Result<Observation, Error> {
    let replication =
        replica.then_some(Replication { io_running: true, sql_running: true, seconds_behind: Some(0), sql_error: 0 });
    Ok(Observation { writable, replication, gtid: Some(GtidPosition::parse(gtid).unwrap()) })
}

fn down() -> Result<Observation, Error> {
    Err(Error::Timeout { after: Duration::from_secs(1) })
}

#[test]
fn a_promotion_moves_the_primary_once_the_old_one_is_confirmed_down() {
    let h = host(Duration::from_secs(10));
    let mut co = Coordinator::new(h.clone());
    let t0 = Instant::now();
    co.apply(full(0, t0, node(true, "0-1-5", false)));
    co.apply(full(1, t0, node(false, "0-1-5", true)));
    co.apply(full(2, t0, node(false, "0-1-5", true)));
    let t = h.topology.load_full();
    assert_eq!((t.primary, t.epoch), (Some(BackendIndex(0)), 0));
    assert_eq!(t.nodes[1].role, Role::Replica);

    co.apply(full(0, t0, down()));
    assert_eq!(h.topology.load().primary, Some(BackendIndex(0)), "one failure is only a suspicion");
    co.apply(full(1, t0, node(true, "0-1-5", false)));
    assert_eq!(h.topology.load().primary, None, "promoted, but the old primary may still answer: writes wait");
    co.apply(full(0, t0, down()));
    let t = h.topology.load_full();
    assert_eq!(t.nodes[0].health, Health::Down);
    co.apply(full(2, t0, node(false, "0-1-5", true)));
    let t = h.topology.load_full();
    assert_eq!(t.primary, Some(BackendIndex(1)));
    assert_eq!(t.nodes[1].role, Role::Primary);
    assert_eq!(t.epoch, 2, "old primary → none → new primary");
    assert_eq!(h.topology.failovers_total(), 1);
}

#[test]
fn two_writers_keep_the_current_primary_and_are_counted_once() {
    let h = host(Duration::from_secs(10));
    let mut co = Coordinator::new(h.clone());
    let t0 = Instant::now();
    co.apply(full(0, t0, node(true, "0-1-5", false)));
    co.apply(full(1, t0, node(true, "0-1-5", false)));
    co.apply(full(1, t0, node(true, "0-1-5", false)));
    let t = h.topology.load_full();
    assert_eq!(t.primary, Some(BackendIndex(0)));
    assert_eq!(t.nodes[1].role, Role::Writable);
    assert_eq!(h.topology.split_brain_total(), 1);
    assert_eq!(h.topology.failovers_total(), 0);
}

#[test]
fn replicas_behind_the_primary_leave_rotation_and_return_with_hysteresis() {
    let h = host(Duration::from_secs(2));
    let mut co = Coordinator::new(h.clone());
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    co.apply(full(0, at(0), node(true, "0-1-5", false)));
    co.apply(full(1, at(0), node(false, "0-1-5", true)));
    // The primary moves on; replica 1 stays at 0-1-5 (its SQL thread is stopped).
    co.apply(full(0, at(100), node(true, "0-1-6", false)));
    co.apply(full(1, at(1000), node(false, "0-1-5", true)));
    assert!(!h.topology.load().nodes[1].lagging, "900 ms behind is within 2 s");
    co.apply(full(0, at(1500), node(true, "0-1-7", false)));
    co.apply(full(1, at(2200), node(false, "0-1-5", true)));
    let t = h.topology.load_full();
    assert!(t.nodes[1].lagging, "2.1 s behind");
    assert_eq!(t.nodes[1].lag, Some(Duration::from_millis(2100)));
    co.apply(full(1, at(2800), node(false, "0-1-6", true)));
    let t = h.topology.load_full();
    assert_eq!(t.nodes[1].lag, Some(Duration::from_millis(1300)));
    assert!(t.nodes[1].lagging, "1.3 s is above max/2: still out");
    co.apply(full(1, at(2900), node(false, "0-1-7", true)));
    assert!(!h.topology.load().nodes[1].lagging, "caught up");
}

#[tokio::test]
async fn a_reload_that_removes_a_backend_keeps_the_elected_primary_and_what_is_known() {
    let h = host(Duration::from_secs(10));
    let mut co = Coordinator::new(h.clone());
    let t0 = Instant::now();
    // The monitor found n1 to be the primary, against the configuration's hint (n0).
    co.apply(full(0, t0, node(false, "0-1-5", true)));
    co.apply(full(1, t0, node(true, "0-1-5", false)));
    co.apply(full(2, t0, node(false, "0-1-5", true)));
    assert_eq!(h.topology.load().primary, Some(BackendIndex(1)));
    let mut config = (*h.config.load_full()).clone();
    config.backends.remove(0);
    h.config.store(Arc::new(config));
    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    co.follow_config(&tx);
    let t = h.topology.load_full();
    assert_eq!(t.nodes.len(), 2);
    assert_eq!(t.primary, Some(BackendIndex(0)), "n1 is still the primary, now at index 0");
    assert_eq!((t.nodes[0].role, t.nodes[1].role), (Role::Primary, Role::Replica));
    assert!(t.nodes[1].gtid.is_some(), "n2 keeps its measurements");
}

#[test]
fn a_suspect_last_seen_before_the_promotion_does_not_hold_it_back() {
    let t0 = Instant::now();
    let at = |ms: u64| Some(t0 + Duration::from_millis(ms));
    let b = |i| Some(BackendIndex(i));
    let old = |last_ok| Candidate { last_alive: last_ok, ..c(0, true, false, Some(true)) };
    let promoted = |since| Candidate { last_alive: at(1300), writable_since: since, ..c(1, true, true, Some(true)) };
    // The old primary answered last at 0 ms; the replica turned writable at 1200 ms.
    assert_eq!(elect(b(0), &[old(at(0)), promoted(at(1200))]), Election { primary: b(1), split_brain: false });
    // The old primary answered after the other one turned writable: it may still take writes.
    assert_eq!(elect(b(0), &[old(at(1250)), promoted(at(1200))]), Election { primary: None, split_brain: false });
    // Unknown times never move the primary.
    assert_eq!(elect(b(0), &[old(None), promoted(at(1200))]), Election { primary: None, split_brain: false });
    // Its probe still passes, but its data path stalled before the promotion: replaced.
    let silent = |last_ok| Candidate { reachable: true, stalled: true, ..old(last_ok) };
    assert_eq!(elect(b(0), &[silent(at(0)), promoted(at(1200))]), Election { primary: b(1), split_brain: false });
    // Two writers all along (split brain) and a long statement on the current one: it stays.
    assert_eq!(
        elect(b(0), &[silent(at(1250)), promoted(at(1200))]),
        Election { primary: b(0), split_brain: true },
        "stalled, but it answered after the other turned writable"
    );
    // Not stalled (one long statement: the tracker keeps a single waiting statement silent, not
    // stalled; see `the_data_path_weighs_in_on_failed_probes`), whatever the times: not
    // replaced, so it holds the promoted one back until its probe fails or answers.
    let busy = |last_ok| Candidate { reachable: true, ..old(last_ok) };
    assert_eq!(elect(b(0), &[busy(at(0)), promoted(at(1200))]), Election { primary: b(0), split_brain: true });
    let alone = [silent(at(0)), c(1, true, true, Some(false))];
    assert_eq!(elect(b(0), &alone), Election { primary: b(0), split_brain: false }, "a long statement alone");
}

#[test]
fn a_promotion_after_the_primary_went_silent_is_followed_at_once() {
    let h = host(Duration::from_secs(10));
    let mut co = Coordinator::new(h.clone());
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    co.apply(full(0, at(0), node(true, "0-1-5", false)));
    co.apply(full(1, at(0), node(false, "0-1-5", true)));
    co.apply(full(2, at(0), node(false, "0-1-5", true)));
    // A probe of the primary started at 100 ms times out; the replica reads writable at 1200 ms.
    co.apply(full(0, at(100), down()));
    assert_eq!(h.topology.load().primary, Some(BackendIndex(0)), "one failure is only a suspicion");
    co.apply(full(1, at(1200), node(true, "0-1-5", false)));
    let t = h.topology.load_full();
    assert_eq!(t.primary, Some(BackendIndex(1)), "promoted after the old primary was last seen: follow it");
    assert_eq!(t.nodes[0].health, Health::Up, "the old one is not confirmed down");
    assert_eq!(h.topology.failovers_total(), 1);
}

#[test]
fn the_data_path_weighs_in_on_failed_probes() {
    use super::health::Weight;
    use crate::backend::Evidence;
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let ev = |answered, silent, waiting| Evidence { answered, silent, waiting };
    let th = Thresholds { failures: 3, successes: 1 };
    let mut t = Tracker::default();
    t.observe_data_path(ev(10, 0, 0), at(0));
    t.observe_data_path(ev(20, 0, 0), at(100));
    assert_eq!(t.weigh_failure(at(150), at(1150), true), Weight::Counted, "never probed successfully");
    t.record(node(true, "0-1-5", false).ok(), at(0), th);
    assert_eq!(t.weigh_failure(at(150), at(1150), true), Weight::Counted, "nothing answered during the probe");
    t.observe_data_path(ev(30, 1, 0), at(1000));
    assert_eq!(t.weigh_failure(at(50), at(1050), true), Weight::Discounted, "answered during the probe");
    assert_eq!(t.weigh_failure(at(50), at(1050), false), Weight::Counted, "only a timeout is discounted");
    assert_eq!(t.weigh_failure(at(1049), at(1050), true), Weight::Discounted, "a short probe: answered just before");
    assert_eq!(t.weigh_failure(at(1400), at(1401), true), Weight::Counted, "answered too long before a short probe");
    // One long statement waits unanswered: silent, not stalled. Nothing is discounted, nothing
    // is decisive either.
    t.observe_data_path(ev(30, 3, 1), at(1100));
    assert!(t.data_path_silent() && !t.data_path_stalled(), "one statement waits since the last answer");
    assert_eq!(t.weigh_failure(at(1000), at(1150), true), Weight::Counted);
    // A second one waits too: stalled.
    t.observe_data_path(ev(30, 5, 2), at(1200));
    assert!(t.data_path_stalled());
    assert_eq!(t.weigh_failure(at(50), at(1250), true), Weight::Decisive);
    assert_eq!(t.weigh_failure(at(50), at(1250), false), Weight::Decisive);
    assert_eq!(t.last_alive(), Some(at(1000)));
    t.observe_data_path(ev(31, 5, 2), at(1300));
    assert!(!t.data_path_silent() && !t.data_path_stalled(), "answered again");
    // Discounting ends DISCOUNT_LIMIT after the last successful probe.
    let late = at(0) + super::health::DISCOUNT_LIMIT + Duration::from_millis(1);
    t.observe_data_path(ev(40, 5, 0), late);
    assert_eq!(t.weigh_failure(late, late, true), Weight::Counted, "the last good probe is too old");
    t.record(node(true, "0-1-5", false).ok(), late, th);
    assert_eq!(t.weigh_failure(late, late, true), Weight::Discounted);
    let mut u = Tracker::default();
    assert_eq!(u.record_corroborated_failure(th), Some(false), "decisive: down at once");
    assert!(!u.is_up());
}

/// Between a reload's renumbering of the pools and the coordinator following the new list, a
/// backend the coordinator takes down (by the index it still knows it at) is drained where the
/// pools number it now, and no other backend is.
#[tokio::test]
async fn a_backend_taken_down_by_its_old_index_is_drained_at_its_new_one() {
    let h = host(Duration::from_secs(10));
    let config = h.config.load_full();
    h.pools.set_layout(&config.backends);
    let mut co = Coordinator::new(h.clone());
    let t0 = Instant::now();
    co.apply(full(0, t0, node(true, "0-1-5", false)));
    co.apply(full(1, t0, node(false, "0-1-5", true)));
    co.apply(full(2, t0, node(false, "0-1-5", true)));
    // The reload lists n1 n2 n0: the pools follow at once, the coordinator not yet.
    let mut rotated = config.backends.clone();
    rotated.rotate_left(1);
    h.pools.reindex(&[Some(2), Some(0), Some(1)], &rotated);
    let renumbered = Topology::from_config(&Config { backends: rotated, ..(*config).clone() });
    let user = Config::from_toml(
        "[[backends]]\nname = \"x\"\nhost = \"127.0.0.1\"\nrole = \"primary\"\n[[users]]\nname = \"u\"\npassword = \"p\"\n",
    )
    .unwrap()
    .users
    .remove(0);
    let pools: Vec<_> = renumbered
        .nodes
        .iter()
        .map(|n| {
            let key = crate::backend::PoolKey {
                backend: n.index,
                user: "u".into(),
                capabilities: 0,
                extended: 0,
                collation: 0,
                with_schema: false,
            };
            h.pools.pool(&key, n, &user, &config.pool)
        })
        .collect();
    // n1, index 1 to the coordinator, fails its probes.
    co.apply(full(1, t0, down()));
    co.apply(full(1, t0, down()));
    assert_eq!(h.topology.load().nodes[1].health, Health::Down);
    let forgotten: Vec<bool> = pools.iter().map(|p| p.is_forgotten()).collect();
    assert_eq!(forgotten, [true, false, false], "n1's pools, now at index 0, were drained");
}
