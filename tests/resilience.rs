//! A frozen replica (`kill -STOP`) on the real cluster, under a load of reads and writes through
//! the proxy: reads waiting on it are given up once the monitor marks it down (and retried on the
//! other replica), so no client stays stuck for the length of the freeze; and a read pinned to a
//! frozen replica by a hint fails after `pool.replica_read_timeout` with ERR 1158 (08S01).
//!
//! Its own test binary, so no other binary's tests run while a replica is frozen; within it the
//! tests take `faults::SERIAL`. A guard sends SIGCONT however a test ends, and the cleanup waits
//! until the replica has caught up again.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::faults::{self, restore_cluster, with_cleanup};
use common::{eventually, fresh_db, server_error, Cluster, TestProxy};
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts};
use rwsplit::backend::Health;

const CLIENTS: usize = 12;
/// How long the replica stays frozen.
const FREEZE: Duration = Duration::from_secs(12);
/// The longest a client may go without a completed statement while the replica is frozen. The
/// monitor's defaults (1 s interval and timeout, 3 failures) mark it down after about 3.2 s.
const STALL_BOUND: Duration = Duration::from_secs(6);

/// A process stopped with SIGSTOP; SIGCONT when dropped, also on a panic.
struct Frozen(u32);

impl Frozen {
    fn new(pid: u32) -> Frozen {
        let status = Command::new("kill").args(["-STOP", &pid.to_string()]).status().unwrap();
        assert!(status.success(), "kill -STOP {pid} failed");
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0.to_string()]).status();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
}

#[derive(Debug, Clone)]
struct Op {
    client: usize,
    kind: Kind,
    start: Instant,
    end: Instant,
    error: Option<String>,
}

async fn client(i: usize, opts: Opts, stop: Arc<AtomicBool>, ops: Arc<Mutex<Vec<Op>>>) {
    let mut conn = Conn::new(opts).await.unwrap();
    let mut id = i64::try_from(i).unwrap() * 100_000_000;
    while !stop.load(Ordering::Relaxed) {
        for kind in [Kind::Write, Kind::Read] {
            let sql = match kind {
                Kind::Write => format!("INSERT INTO w VALUES ({id}, {i})"),
                Kind::Read => format!("SELECT COUNT(*) FROM w WHERE client = {i}"),
            };
            id += 1;
            let start = Instant::now();
            let error = conn.query_drop(sql).await.err().map(|e| e.to_string());
            ops.lock().unwrap().push(Op { client: i, kind, start, end: Instant::now(), error });
        }
    }
}

/// The longest time client `i` went without completing a statement within `[from, to]`.
fn longest_gap(ops: &[Op], i: usize, from: Instant, to: Instant) -> Duration {
    let mut ends: Vec<Instant> =
        ops.iter().filter(|o| o.client == i && o.end > from && o.end < to).map(|o| o.end).collect();
    ends.sort();
    let mut last = from;
    let mut longest = Duration::ZERO;
    for end in ends.into_iter().chain(std::iter::once(to)) {
        longest = longest.max(end - last);
        last = end;
    }
    longest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_replica_stalls_no_client_for_long() {
    let _serial = faults::SERIAL.lock().await;
    with_cleanup(frozen_replica_under_load(), restore_cluster()).await;
}

async fn frozen_replica_under_load() {
    restore_cluster().await;
    let cluster = Cluster::shared().await;
    let proxy = TestProxy::start(cluster.clone()).await;
    let db = fresh_db(&cluster, "frozen").await;
    let mut setup = proxy.connect_db(&db).await;
    setup.query_drop("CREATE TABLE w (id BIGINT PRIMARY KEY, client INT, KEY (client))").await.unwrap();
    cluster.wait_replicas().await;

    let (pid, port) = faults::node("REPLICA1");
    let index = cluster.ports.iter().position(|&p| p == port).unwrap();
    let ops = Arc::new(Mutex::new(Vec::<Op>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        clients.push(tokio::spawn(client(i, proxy.opts(Some(&db)), stop.clone(), ops.clone())));
    }
    let o = &ops;
    let busy = eventually(Duration::from_secs(20), move || async move { o.lock().unwrap().len() > 500 }).await;
    assert!(busy, "the clients are running statements");

    let frozen_at = Instant::now();
    let frozen = Frozen::new(pid);
    let p = &proxy;
    let down = eventually(FREEZE, move || async move { p.handle.topology().nodes[index].health == Health::Down }).await;
    let marked_down = frozen_at.elapsed();
    assert!(down, "the monitor marked the frozen replica down");
    tokio::time::sleep_until((frozen_at + FREEZE).into()).await;
    let thawed_at = Instant::now();
    drop(frozen);
    // Reads return to the replica once it answers probes again.
    let back =
        eventually(
            Duration::from_secs(20),
            move || async move { p.handle.topology().nodes[index].health == Health::Up },
        )
        .await;
    assert!(back, "the thawed replica is up again");
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }

    let ops = ops.lock().unwrap().clone();
    let gaps: Vec<Duration> = (0..CLIENTS).map(|i| longest_gap(&ops, i, frozen_at, thawed_at)).collect();
    let worst = gaps.iter().copied().max().unwrap_or_default();
    let during = |kind: Kind| {
        ops.iter().filter(|o| o.kind == kind && o.error.is_none() && o.start > frozen_at && o.end < thawed_at).count()
    };
    let (reads, writes) = (during(Kind::Read), during(Kind::Write));
    let errors: Vec<&Op> = ops.iter().filter(|o| o.error.is_some()).collect();
    eprintln!(
        "frozen {FREEZE:?}; marked down after {marked_down:?}; longest stall per client {gaps:?} (worst {worst:?}); \
         during the freeze {reads} reads and {writes} writes succeeded; {} errors",
        errors.len()
    );
    assert!(worst < STALL_BOUND, "a client was stuck {worst:?} while a replica was frozen: {gaps:?}");
    assert!(
        reads > 10 * CLIENTS && writes > 10 * CLIENTS,
        "statements flowed during the freeze: {reads} reads, {writes} writes"
    );
    // Reads stuck on the frozen replica had sent nothing to their client: they ran again on the
    // other replica, so no statement failed.
    assert!(errors.is_empty(), "statements failed: {:?}", &errors[..errors.len().min(5)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_pinned_to_a_frozen_replica_fails_after_the_stall_bound() {
    let _serial = faults::SERIAL.lock().await;
    with_cleanup(stall_bound(), restore_cluster()).await;
}

/// Runs `sql`, which must fail: the server error's code and message, and how long it took.
async fn failure(conn: &mut Conn, sql: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let err = conn.query_drop(sql).await.unwrap_err();
    let waited = started.elapsed();
    let (code, _, message) = server_error(&err);
    (code, message, waited)
}

async fn stall_bound() {
    restore_cluster().await;
    let cluster = Cluster::shared().await;
    let mut config = cluster.config();
    // The monitor is told to be patient, so only the stall bound can end the wait.
    config.monitor.failure_threshold = 1000;
    config.pool.replica_read_timeout = Duration::from_secs(1);
    let proxy = TestProxy::start_with(cluster.clone(), config.clone()).await;
    let (pid, port) = faults::node("REPLICA1");
    let index = cluster.ports.iter().position(|&p| p == port).unwrap();
    let name = config.backends[index].name.clone();
    let mut conn = proxy.connect().await;
    let opts = mysql_async::OptsBuilder::from_opts(proxy.opts(None)).max_allowed_packet(Some(64 << 20));
    let mut sender = Conn::new(opts).await.unwrap();
    let hinted = format!("/* rwsplit:backend={name} */ SELECT @@port");
    let seen: Option<u16> = conn.query_first(&hinted).await.unwrap();
    assert_eq!(seen, Some(port));
    // Two pooled connections to the replica, one for each statement below (a new one would
    // never finish its login on the frozen server).
    let slow = format!("/* rwsplit:backend={name} */ SELECT SLEEP(0.3)");
    let (a, b) = tokio::join!(conn.query_drop(&slow), sender.query_drop(&slow));
    a.unwrap();
    b.unwrap();

    let frozen = Frozen::new(pid);
    // A statement too large for the socket buffers of a server that reads nothing: its send is
    // bounded like the wait for an answer (before, it blocked for pool.query_timeout).
    let big = format!("/* rwsplit:backend={name} */ SELECT LENGTH('{}')", "x".repeat(48 << 20));
    let (code, message, waited) = failure(&mut sender, &big).await;
    eprintln!("48 MiB hinted read to the frozen replica failed after {waited:?}: {code} {message}");
    assert_eq!(code, 1158, "{message}");
    assert!(message.contains("replica_read_timeout"), "the error names the bound: {message}");
    assert!(waited < Duration::from_secs(5), "the send was bounded: {waited:?}");
    drop(sender);

    let (code, message, waited) = failure(&mut conn, &hinted).await;
    eprintln!("hinted read on the frozen replica failed after {waited:?}: {code} {message}");
    assert_eq!(code, 1158, "ER_NET_READ_ERROR, a lost connection to drivers: {message}");
    assert!(message.contains("replica_read_timeout"), "the error names the bound: {message}");
    assert!(waited >= Duration::from_secs(1) && waited < Duration::from_secs(3), "failed after {waited:?}");
    // The session goes on: the next statement runs elsewhere.
    let other: Option<u16> = conn.query_first("/* rwsplit:primary */ SELECT @@port").await.unwrap();
    assert_eq!(other, Some(cluster.primary));
    drop(frozen);
    // The abandoned connection was closed, not pooled: once thawed, the replica answers a new one.
    let again: Option<u16> = conn.query_first(&hinted).await.unwrap();
    assert_eq!(again, Some(port));
}

/// Probes of every node time out (the proxy short of CPU, as far as the monitor can tell) while
/// four clients keep reading and writing: the failures are not counted, so no backend leaves
/// rotation; `rwsplit_monitor_probe_failures_discounted_total` counts them. The control: once
/// the traffic stops, the same timeouts count and every backend goes down.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn probe_timeouts_alone_do_not_drop_backends_that_serve_traffic() {
    let _serial = faults::SERIAL.lock().await;
    let cluster = Cluster::shared().await;
    cluster.wait_replicas().await;
    faults::stalled_monitor_account(&cluster).await;
    let ports = cluster.ports.clone();
    let cleanup = async move {
        for port in ports {
            faults::unstall_probes(port).await;
        }
    };
    with_cleanup(probe_timeouts_under_traffic(cluster), cleanup).await;
}

/// A proxy whose monitor probes as [`faults::STALLED_MONITOR`], with the default thresholds.
async fn proxy_with_stallable_probes(cluster: &Cluster, failure_threshold: u32) -> TestProxy {
    let mut config = cluster.config();
    config.monitor.user = faults::STALLED_MONITOR.into();
    config.monitor.password = faults::STALLED_MONITOR.into();
    config.monitor.failure_threshold = failure_threshold;
    let proxy = TestProxy::start_with(cluster.clone(), config).await;
    let p = &proxy;
    let probed = eventually(Duration::from_secs(10), move || async move {
        let topology = p.handle.topology();
        topology.primary.is_some() && topology.nodes.iter().all(|n| n.health == Health::Up && n.gtid.is_some())
    })
    .await;
    assert!(probed, "every backend was probed successfully: {:?}", proxy.handle.topology());
    proxy
}

async fn probe_timeouts_under_traffic(cluster: Cluster) {
    let proxy = proxy_with_stallable_probes(&cluster, 3).await;
    let db = fresh_db(&cluster, "starved").await;
    let mut setup = proxy.connect_db(&db).await;
    setup.query_drop("CREATE TABLE w (id BIGINT PRIMARY KEY, client INT, KEY (client))").await.unwrap();
    let ops = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> =
        (0..4).map(|i| tokio::spawn(client(i, proxy.opts(Some(&db)), stop.clone(), ops.clone()))).collect();
    let o = &ops;
    let busy = eventually(Duration::from_secs(20), move || async move { o.lock().unwrap().len() > 200 }).await;
    assert!(busy, "the clients are running statements");

    for &port in &cluster.ports {
        faults::stall_probes(port).await;
    }
    let discounted = || common::ops::metric(&proxy.handle, "rwsplit_monitor_probe_failures_discounted_total", &[]);
    let before = discounted();
    // Three probe periods for the monitor to notice, then thirty more: ten times the threshold.
    let until = Instant::now() + Duration::from_secs(6);
    let mut looks = 0;
    while Instant::now() < until {
        let topology = proxy.handle.topology();
        let down: Vec<&str> = topology.nodes.iter().filter(|n| n.health == Health::Down).map(|n| n.name()).collect();
        assert!(down.is_empty() && topology.primary.is_some(), "dropped while serving: {down:?}, {topology:?}");
        looks += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let discounted_during = discounted() - before;
    {
        let ops = ops.lock().unwrap();
        let failed: Vec<_> = ops.iter().filter(|o| o.error.is_some()).take(3).collect();
        assert!(failed.is_empty(), "statements failed: {failed:?}");
        let reads = ops.iter().filter(|o| o.kind == Kind::Read).count();
        eprintln!(
            "{} statements ({reads} reads) while every probe timed out; {discounted_during} probe failures \
             discounted; {looks} looks, all backends up",
            ops.len()
        );
    }
    assert!(discounted_during >= 6.0, "the timed-out probes were counted as discounted: {discounted_during}");
    drop(setup);

    // Without traffic the same timeouts count: every backend goes down.
    let p = &proxy;
    let all_down = eventually(Duration::from_secs(15), move || async move {
        p.handle.topology().nodes.iter().all(|n| n.health == Health::Down)
    })
    .await;
    assert!(all_down, "idle backends whose probes time out go down: {:?}", proxy.handle.topology());
}

/// One long statement (`SLEEP(3)` in a transaction) on an otherwise idle primary while its
/// probes fail: one statement waiting is no proof of a frozen server, so the failures count
/// towards the threshold like any other, the primary stays up, and the transaction commits.
/// (Before: the first failed probe with a statement waiting marked it down at once, and the
/// transaction was lost.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_statement_on_an_idle_primary_outlives_failed_probes() {
    let _serial = faults::SERIAL.lock().await;
    let cluster = Cluster::shared().await;
    cluster.wait_replicas().await;
    faults::stalled_monitor_account(&cluster).await;
    let primary = cluster.primary;
    with_cleanup(long_statement_on_idle_primary(cluster), faults::unstall_probes(primary)).await;
}

async fn long_statement_on_idle_primary(cluster: Cluster) {
    // Far more failures than the statement lasts probe periods: only a decisive verdict could
    // drop the primary within it.
    let proxy = proxy_with_stallable_probes(&cluster, 50).await;
    let db = fresh_db(&cluster, "longstmt").await;
    let mut conn = proxy.connect_db(&db).await;
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY)").await.unwrap();
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("INSERT INTO t VALUES (1)").await.unwrap();
    let sleeper = tokio::spawn(async move {
        let slept: Result<Option<i64>, _> = conn.query_first("SELECT SLEEP(3)").await;
        (conn, slept)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    faults::stall_probes(cluster.primary).await;
    let primary = proxy.handle.topology().primary.expect("a primary");
    let started = Instant::now();
    let mut down = None;
    while !sleeper.is_finished() {
        let topology = proxy.handle.topology();
        if topology.nodes[primary.0].health == Health::Down || topology.primary != Some(primary) {
            down.get_or_insert(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut conn, slept) = sleeper.await.unwrap();
    assert_eq!(slept.unwrap(), Some(0), "SLEEP(3) ran to its end");
    assert_eq!(down, None, "the primary was dropped while one statement ran on it");
    conn.query_drop("COMMIT").await.unwrap();
    let mut direct = cluster.primary_conn().await;
    let n: Option<i64> = direct.query_first(format!("SELECT COUNT(*) FROM {db}.t")).await.unwrap();
    assert_eq!(n, Some(1), "the transaction committed on the primary");
    eprintln!("SLEEP(3) ran {:?} after the probes started failing; primary up throughout", started.elapsed());
}
