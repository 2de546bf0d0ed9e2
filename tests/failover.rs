//! Primary failover and replica loss on the real cluster, under load from many clients: a real
//! promotion with `scripts/cluster.sh failover`, and a replica killed with SIGKILL.
//!
//! These tests kill and promote servers. They take `faults::SERIAL`, and leave the cluster healthy
//! (three nodes up and replicating; the primary may have moved, which other tests discover
//! through `@@read_only`), also when they fail.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::faults::{self, cluster_sh_async, direct, kill9, on_node, restore_cluster, root_sql, with_cleanup};
use common::{eventually, fresh_db, server_error, Cluster, TestProxy};
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts};
use rwsplit::backend::{BackendIndex, Health};

const CLIENTS: usize = 20;
/// Clients 0..TRANSACTIONAL run two-insert transactions; the others autocommit writes and reads.
const TRANSACTIONAL: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    Commit,
    Other,
}

/// One statement a client ran, and when.
#[derive(Debug, Clone)]
struct Op {
    client: usize,
    kind: Kind,
    start: Instant,
    end: Instant,
    /// When the explicit transaction this statement belongs to began.
    transaction: Option<Instant>,
    error: Option<String>,
}

#[derive(Default)]
struct Journal {
    ops: Mutex<Vec<Op>>,
    acked: Mutex<Vec<i64>>,
}

async fn run(conn: &mut Conn, sql: String, op: (usize, Kind, Option<Instant>), journal: &Journal) -> bool {
    let start = Instant::now();
    let result = conn.query_drop(sql).await;
    let (client, kind, transaction) = op;
    let error = result.err().map(|e| e.to_string());
    let ok = error.is_none();
    journal.ops.lock().unwrap().push(Op { client, kind, start, end: Instant::now(), transaction, error });
    ok
}

async fn client(i: usize, opts: Opts, stop: Arc<AtomicBool>, journal: Arc<Journal>) {
    let mut conn = Conn::new(opts).await.unwrap();
    let mut next = i64::try_from(i).unwrap() * 100_000_000;
    while !stop.load(Ordering::Relaxed) {
        if i < TRANSACTIONAL {
            let begun = Instant::now();
            let mut ok = run(&mut conn, "BEGIN".into(), (i, Kind::Other, None), &journal).await;
            let ids = [next, next + 1];
            next += 2;
            for id in ids {
                let sql = format!("INSERT INTO w VALUES ({id}, {i})");
                ok = ok && run(&mut conn, sql, (i, Kind::Write, Some(begun)), &journal).await;
            }
            if ok && run(&mut conn, "COMMIT".into(), (i, Kind::Commit, Some(begun)), &journal).await {
                journal.acked.lock().unwrap().extend(ids);
            } else {
                // A well-behaved client after an error in a transaction.
                run(&mut conn, "ROLLBACK".into(), (i, Kind::Other, None), &journal).await;
            }
        } else {
            let id = next;
            next += 1;
            if run(&mut conn, format!("INSERT INTO w VALUES ({id}, {i})"), (i, Kind::Write, None), &journal).await {
                journal.acked.lock().unwrap().push(id);
            }
            let sql = format!("SELECT COUNT(*) FROM w WHERE client = {i}");
            run(&mut conn, sql, (i, Kind::Read, None), &journal).await;
        }
    }
}

/// A proxy (with `routing.failover_hold` of 15 s) and [`CLIENTS`] clients writing through it to a
/// fresh table, until [`Load::finish`].
struct Load {
    proxy: TestProxy,
    db: String,
    journal: Arc<Journal>,
    stop: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts the clients and waits until they are writing.
    async fn start(cluster: &Cluster, prefix: &str) -> Load {
        let mut config = cluster.config();
        config.routing.failover_hold = Duration::from_secs(15);
        let proxy = TestProxy::start_with(cluster.clone(), config).await;
        let db = fresh_db(cluster, prefix).await;
        let mut setup = proxy.connect_db(&db).await;
        setup.query_drop("CREATE TABLE w (id BIGINT PRIMARY KEY, client INT, KEY (client))").await.unwrap();
        let journal = Arc::new(Journal::default());
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..CLIENTS)
            .map(|i| tokio::spawn(client(i, proxy.opts(Some(&db)), stop.clone(), journal.clone())))
            .collect();
        let j: &Journal = &journal;
        let busy =
            eventually(Duration::from_secs(20), move || async move { j.acked.lock().unwrap().len() > 200 }).await;
        assert!(busy, "the clients are writing");
        Load { proxy, db, journal, stop, clients }
    }

    /// Waits until writes started after `t` succeed, stops the clients (none may stay stuck) and
    /// returns what they ran, and the first write acknowledged among those started after `t`.
    async fn finish(&mut self, t: Instant) -> (Vec<Op>, Instant) {
        let writes_after = || {
            let ops = self.journal.ops.lock().unwrap();
            ops.iter().filter(|o| o.error.is_none() && o.kind != Kind::Read && o.start > t).count()
        };
        let w = &writes_after;
        let resumed = eventually(Duration::from_secs(30), move || async move { w() > 3 * CLIENTS }).await;
        assert!(resumed, "writes resumed");
        self.stop.store(true, Ordering::Relaxed);
        for c in std::mem::take(&mut self.clients) {
            let joined = tokio::time::timeout(Duration::from_secs(20), c).await;
            assert!(joined.is_ok(), "a client is still stuck");
            joined.unwrap().unwrap();
        }
        let ops = self.journal.ops.lock().unwrap().clone();
        let first = ops
            .iter()
            .filter(|o| o.error.is_none() && matches!(o.kind, Kind::Write | Kind::Commit) && o.start > t)
            .map(|o| o.end)
            .min()
            .expect("a write succeeded");
        (ops, first)
    }
}

/// Polls the replicas directly until one of them turns writable; returns when.
async fn promoted_at(replicas: Vec<u16>) -> (Instant, u16) {
    let mut conns = Vec::new();
    for port in replicas {
        conns.push((port, direct(port).await));
    }
    loop {
        for (port, conn) in &mut conns {
            if let Ok(Some(0u8)) = conn.query_first::<u8, _>("SELECT @@global.read_only").await {
                return (Instant::now(), *port);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// When the proxy's topology dropped the primary on `old_port`, and when it named another one.
async fn proxy_view(proxy: &TestProxy, old_port: u16) -> (Instant, Instant) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut demoted = None;
    loop {
        let primary = proxy.handle.topology().primary.map(|p| proxy.cluster.ports[p.0]);
        if primary != Some(old_port) {
            let now = Instant::now();
            let demoted = *demoted.get_or_insert(now);
            if primary.is_some() {
                return (demoted, now);
            }
        }
        assert!(Instant::now() < deadline, "the proxy named no new primary within 60 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Semi-synchronous replication for the promotion test: without it a commit acknowledged by the
/// primary may not have reached any replica when the primary is killed, and no proxy can bring
/// that write back. With it, the primary answers a commit only after a replica has it.
async fn semi_sync(cluster: &Cluster, on: bool) {
    let flag = if on { "ON" } else { "OFF" };
    for port in cluster.replicas() {
        on_node(port, &format!("SET GLOBAL rpl_semi_sync_slave_enabled = {flag}")).await;
        on_node(port, "STOP SLAVE IO_THREAD").await;
        on_node(port, "START SLAVE IO_THREAD").await;
    }
    on_node(cluster.primary, &format!("SET GLOBAL rpl_semi_sync_master_enabled = {flag}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_resume_on_the_promoted_replica_without_losing_acknowledged_writes() {
    let _serial = faults::SERIAL.lock().await;
    let cleanup = async {
        restore_cluster().await;
        let cluster = Cluster::shared().await;
        for port in cluster.replicas() {
            on_node(port, "SET GLOBAL rpl_semi_sync_slave_enabled = OFF").await;
        }
        on_node(cluster.primary, "SET GLOBAL rpl_semi_sync_master_enabled = OFF").await;
    };
    with_cleanup(promotion_under_load(), cleanup).await;
}

async fn promotion_under_load() {
    restore_cluster().await;
    let cluster = Cluster::shared().await;
    semi_sync(&cluster, true).await;
    let mut load = Load::start(&cluster, "failover").await;
    let (db, journal) = (load.db.clone(), load.journal.clone());

    let (pid, old_port) = faults::node("PRIMARY");
    assert_eq!(old_port, cluster.primary);
    let promotion = tokio::spawn(promoted_at(cluster.replicas()));
    let failover = async {
        let issued = Instant::now();
        let killed = kill9(pid, old_port).await;
        cluster_sh_async(&["failover"]).await;
        (issued, killed)
    };
    let ((issued, killed), (demoted, elected)) = tokio::join!(failover, proxy_view(&load.proxy, old_port));
    let (promoted, new_port) = promotion.await.unwrap();
    let (ops, first_write_after_kill) = load.finish(killed).await;
    let proxy = &load.proxy;
    let resume = first_write_after_kill.saturating_duration_since(promoted);
    eprintln!(
        "kill -9 → proxy has no primary {:?}; kill → promotion {:?}; promotion → proxy elects it {:?}; promotion → \
         first write acknowledged {resume:?}; {} statements",
        demoted.saturating_duration_since(issued),
        promoted - killed,
        elected.saturating_duration_since(promoted),
        ops.len()
    );
    assert!(first_write_after_kill >= promoted, "nothing is writable before the promotion");
    assert!(resume <= Duration::from_secs(2), "writes resumed {resume:?} after the promotion");

    // Errors only for statements in flight at the kill or in transactions open at that moment,
    // at most one per client, and never for reads.
    let mut errors_per_client = vec![0; CLIENTS];
    let mut unexpected = Vec::new();
    for op in ops.iter().filter(|o| o.error.is_some()) {
        errors_per_client[op.client] += 1;
        let in_flight = op.start < killed;
        let open_transaction = op.transaction.is_some_and(|t| t < killed);
        if !(in_flight || open_transaction) {
            unexpected.push((op.start.saturating_duration_since(killed), op));
        }
        assert_ne!(op.kind, Kind::Read, "a read failed: {op:?}");
    }
    // The first unexpected errors, and every error of the first client that had one (the error
    // before them says what went wrong).
    if let Some((_, op)) = unexpected.first() {
        let first: Vec<_> = unexpected.iter().take(5).collect();
        let client: Vec<_> = ops.iter().filter(|o| o.client == op.client && o.error.is_some()).take(5).collect();
        panic!(
            "{} unexpected errors after the kill (per client {errors_per_client:?}); first {first:#?}; client {}: \
             {client:#?}",
            unexpected.len(),
            op.client
        );
    }
    assert!(errors_per_client.iter().all(|&n| n <= 1), "one error at most per client: {errors_per_client:?}");
    let mut kinds: Vec<String> = ops
        .iter()
        .filter_map(|o| o.error.as_ref().map(|e| format!("{:?}: {}", o.kind, &e[..e.len().min(90)])))
        .collect();
    kinds.sort();
    kinds.dedup();
    eprintln!("errors per client: {errors_per_client:?}; kinds: {kinds:#?}");

    // Every acknowledged write is on the new primary.
    let acked: HashSet<i64> = journal.acked.lock().unwrap().iter().copied().collect();
    let mut primary = direct(new_port).await;
    let stored: HashSet<i64> = primary.query(format!("SELECT id FROM `{db}`.w")).await.unwrap().into_iter().collect();
    let missing: Vec<_> = acked.difference(&stored).take(10).collect();
    assert!(missing.is_empty(), "{} acknowledged writes missing on the new primary, e.g. {missing:?}", acked.len());
    let new_index = BackendIndex(cluster.ports.iter().position(|&p| p == new_port).unwrap());
    assert_eq!(proxy.handle.topology().primary, Some(new_index));

    // The killed primary comes back as a replica of the new one and rejoins read rotation.
    restore_cluster().await;
    let old_index = BackendIndex(cluster.ports.iter().position(|&p| p == old_port).unwrap());
    let back = eventually(Duration::from_secs(30), move || async move {
        let t = proxy.handle.topology();
        t.nodes[old_index.0].health == Health::Up && t.primary == Some(new_index)
    })
    .await;
    assert!(back, "the rebuilt node is up again in the proxy's topology");
}

/// A transaction held on the primary when the primary is killed, and its next statement sent
/// before the monitor noticed (the held socket is closed already): the statement gets the
/// failover's one error (1213) and the session goes on. Before, the client connection was closed,
/// as for a server that ended an idle session, and the client's later statements all failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_whose_primary_dies_between_statements_gets_one_error() {
    let _serial = faults::SERIAL.lock().await;
    with_cleanup(killed_between_statements(), restore_cluster()).await;
}

async fn killed_between_statements() {
    restore_cluster().await;
    let cluster = Cluster::shared().await;
    let mut config = cluster.config();
    // The monitor must not notice the kill before the next statement does.
    config.monitor.interval = Duration::from_secs(20);
    let proxy = TestProxy::start_with(cluster.clone(), config).await;
    let db = fresh_db(&cluster, "diedidle").await;
    let mut conn = proxy.connect_db(&db).await;
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY)").await.unwrap();
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("INSERT INTO t VALUES (1)").await.unwrap();
    let (pid, port) = faults::node("PRIMARY");
    kill9(pid, port).await;
    let topology = proxy.handle.topology();
    let primary = topology.primary.expect("a primary");
    assert_eq!(topology.nodes[primary.0].health, Health::Up, "the monitor has not noticed the kill yet");

    let err = conn.query_drop("INSERT INTO t VALUES (2)").await.expect_err("the transaction is gone");
    let (code, state, message) = server_error(&err);
    assert_eq!((code, state.as_str()), (1213, "40001"), "{message}");
    // The same client connection goes on: a read runs on a replica.
    let port: Option<u16> = conn.query_first("SELECT @@port").await.expect("the session goes on");
    assert!(port.is_some_and(|p| cluster.replicas().contains(&p)), "read on a replica: {port:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_a_replica_fails_no_read() {
    let _serial = faults::SERIAL.lock().await;
    with_cleanup(replica_loss(), restore_cluster()).await;
}

async fn replica_loss() {
    restore_cluster().await;
    let cluster = Cluster::shared().await;
    let proxy = TestProxy::start(cluster.clone()).await;
    let (pid, port) = faults::node("REPLICA1");
    let index = cluster.ports.iter().position(|&p| p == port).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(Mutex::new(Vec::<Result<u16, String>>::new()));
    let mut clients = Vec::new();
    for _ in 0..10 {
        let (opts, stop, reads) = (proxy.opts(None), stop.clone(), reads.clone());
        clients.push(tokio::spawn(async move {
            let mut conn = Conn::new(opts).await.unwrap();
            while !stop.load(Ordering::Relaxed) {
                let got = conn.query_first::<u16, _>("SELECT @@port").await.map(Option::unwrap_or_default);
                reads.lock().unwrap().push(got.map_err(|e| e.to_string()));
            }
        }));
    }
    let hits = |port: u16| reads.lock().unwrap().iter().filter(|r| r.as_ref().is_ok_and(|&p| p == port)).count();
    let h = &hits;
    assert!(eventually(Duration::from_secs(10), move || async move { h(port) > 50 }).await, "reads reach {port}");

    kill9(pid, port).await;
    let p = &proxy;
    let down =
        eventually(
            Duration::from_secs(10),
            move || async move { p.handle.topology().nodes[index].health == Health::Down },
        )
        .await;
    assert!(down, "the monitor marked the killed replica down");
    let seen = reads.lock().unwrap().len();
    let r = &reads;
    assert!(eventually(Duration::from_secs(10), move || async move { r.lock().unwrap().len() > seen + 500 }).await);

    restore_cluster().await;
    let before = hits(port);
    let back = eventually(Duration::from_secs(30), move || async move { h(port) > before + 50 }).await;
    assert!(back, "reads return to the restarted replica");
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let reads = reads.lock().unwrap();
    let failed: Vec<_> = reads.iter().filter_map(|r| r.as_ref().err()).take(5).collect();
    eprintln!("{} reads, {} failed", reads.len(), failed.len());
    assert!(failed.is_empty(), "reads failed: {failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_wait_for_a_primary_then_fail_clearly_while_reads_go_on() {
    let _serial = faults::SERIAL.lock().await;
    let undo = async {
        tokio::task::spawn_blocking(|| root_sql("PRIMARY", "SET GLOBAL read_only = 0")).await.unwrap();
        restore_cluster().await;
    };
    with_cleanup(no_primary(), undo).await;
}

async fn no_primary() {
    restore_cluster().await;
    let cluster = Cluster::shared().await;
    let mut config = cluster.config();
    config.routing.failover_hold = Duration::from_secs(1);
    config.monitor.interval = Duration::from_millis(500);
    config.monitor.timeout = Duration::from_millis(500);
    let proxy = TestProxy::start_with(cluster.clone(), config).await;
    let db = fresh_db(&cluster, "hold").await;
    let mut conn = proxy.connect_db(&db).await;
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY)").await.unwrap();
    let mut in_transaction = proxy.connect_db(&db).await;
    in_transaction.query_drop("BEGIN").await.unwrap();
    in_transaction.query_drop("INSERT INTO t VALUES (1)").await.unwrap();

    // The primary turns read-only and nothing else is writable: there is no primary.
    tokio::task::spawn_blocking(|| root_sql("PRIMARY", "SET GLOBAL read_only = 1")).await.unwrap();
    let p = &proxy;
    assert!(eventually(Duration::from_secs(10), move || async move { p.handle.topology().primary.is_none() }).await);

    let err = in_transaction.query_drop("INSERT INTO t VALUES (2)").await.unwrap_err();
    assert_eq!(server_error(&err).0, 1213, "the transaction on the old primary is gone: {err}");
    // The session goes on, and reads still run (on a replica, or on the read-only old primary).
    let port: u16 = in_transaction.query_first("SELECT @@port").await.unwrap().unwrap();
    assert!(cluster.ports.contains(&port));

    let started = Instant::now();
    let err = conn.query_drop("INSERT INTO t VALUES (3)").await.unwrap_err();
    let waited = started.elapsed();
    let (code, _, message) = server_error(&err);
    assert_eq!(code, 1429, "{message}");
    assert!(message.contains("no primary"), "{message}");
    assert!(waited >= Duration::from_secs(1) && waited < Duration::from_secs(3), "held for {waited:?}");

    // A write held while the primary comes back completes.
    let held = tokio::spawn({
        let opts = proxy.opts(Some(&db));
        async move { mysql_async::Conn::new(opts).await.unwrap().query_drop("INSERT INTO t VALUES (4)").await }
    });
    tokio::task::spawn_blocking(|| root_sql("PRIMARY", "SET GLOBAL read_only = 0")).await.unwrap();
    held.await.unwrap().expect("the held write ran once the primary was back");
    in_transaction.query_drop("BEGIN").await.unwrap();
    in_transaction.query_drop("INSERT INTO t VALUES (5)").await.unwrap();
    in_transaction.query_drop("COMMIT").await.unwrap();
    let ids: Vec<i32> = conn.query("/* rwsplit:primary */ SELECT id FROM t ORDER BY id").await.unwrap();
    assert_eq!(ids, [4, 5], "the rolled-back transaction left nothing behind");
}

/// A reload that renumbers the backends (the same three, listed in another order) while a
/// session holds a transaction on the primary; then the primary turns read-only. The drain of the
/// primary, now at another index, still reaches the held connection: the session's next
/// statement gets the failover's 1213. (Before, what the pools keep per backend stayed at the old
/// index, so the held connection was not retired and the statement ran on the read-only former
/// primary: 1290.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_that_renumbers_backends_keeps_failover_reaching_held_connections() {
    let _serial = faults::SERIAL.lock().await;
    let undo = async {
        tokio::task::spawn_blocking(|| root_sql("PRIMARY", "SET GLOBAL read_only = 0")).await.unwrap();
        restore_cluster().await;
    };
    with_cleanup(renumbered(), undo).await;
}

/// A proxy started from a config file (so that it can be reloaded) with the cluster's backends;
/// its text, and client options for a fresh database named after `tag`.
async fn reloadable(
    tag: &str,
) -> (Cluster, String, common::ops::ConfigFile, rwsplit::app::Handle, mysql_async::OptsBuilder) {
    restore_cluster().await;
    let cluster = Cluster::shared().await;
    let text = common::ops::config_text(&cluster, &[], &[], "");
    let file = common::ops::ConfigFile::new(tag, &text);
    let handle = common::ops::start_from(&file, false).await;
    let opts = mysql_async::OptsBuilder::from_opts(common::direct_opts(handle.mysql_addr().port(), None));
    let db = fresh_db(&cluster, tag).await;
    (cluster, text, file, handle, opts.db_name(Some(db)))
}

async fn renumbered() {
    let (cluster, text, file, handle, opts) = reloadable("renumber").await;
    let mut conn = Conn::new(opts).await.unwrap();
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY)").await.unwrap();
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("INSERT INTO t VALUES (1)").await.unwrap();

    file.replace(&rotated(&text));
    let changes = handle.reload().await.expect("the reload is accepted");
    let primary_name = |h: &rwsplit::app::Handle| {
        let t = h.topology();
        t.primary.and_then(|p| t.node(p)).map(|n| (n.index, n.name().to_owned()))
    };
    let (index, name) = primary_name(&handle).expect("a primary");
    let before = cluster.ports.iter().position(|&p| p == cluster.primary).unwrap();
    assert_ne!(index.0, before, "the primary got another index ({name}); changes: {changes:?}");
    // The held connection is shown on the primary, by its new index.
    conn.query_drop("SELECT 1").await.unwrap();
    let held = |h: &rwsplit::app::Handle, backend: &str| {
        common::ops::metric(h, "rwsplit_pool_connections_held", &[("backend", backend), ("hold", "transaction")])
    };
    assert_eq!(held(&handle, &name), 1.0, "held on {name}: {:?}", handle.metrics_text());

    tokio::task::spawn_blocking(|| root_sql("PRIMARY", "SET GLOBAL read_only = 1")).await.unwrap();
    let h = &handle;
    assert!(eventually(Duration::from_secs(10), move || async move { h.topology().primary.is_none() }).await);
    let err = conn.query_drop("INSERT INTO t VALUES (2)").await.expect_err("the transaction is gone");
    let (code, _, message) = server_error(&err);
    assert_eq!(code, 1213, "the held connection was retired with the former primary: {message}");
}

/// `KILL QUERY` for a statement that started before a reload renumbered the backends reaches
/// the server it runs on. (Before, the session recorded the backend's index, which named
/// another server after the reload: the statement ran on.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_query_reaches_a_statement_across_a_renumbering() {
    let _serial = faults::SERIAL.lock().await;
    let (cluster, text, file, handle, opts) = reloadable("renumber_kill").await;
    let sleeper = Conn::new(opts.clone()).await.unwrap();
    let id = sleeper.id();
    let sleeping = common::sleep_in_background(&cluster, sleeper, 10).await;
    file.replace(&rotated(&text));
    let _changes = handle.reload().await.expect("the reload is accepted");
    let mut killer = Conn::new(opts).await.unwrap();
    common::kill_query_interrupts(&mut killer, id, sleeping, Duration::from_secs(2)).await;
}

/// `text` with the same backends rotated by one place: every index changes.
fn rotated(text: &str) -> String {
    let (head, rest) = text.split_once("[[backends]]").unwrap();
    let mut blocks: Vec<String> = rest.split("[[backends]]").map(|b| format!("[[backends]]{b}")).collect();
    let last = blocks.pop().unwrap();
    let (last_backend, after) = last.split_at(last.find("[[users]]").unwrap());
    blocks.push(last_backend.to_owned());
    blocks.rotate_left(1);
    format!("{head}{}{after}", blocks.concat())
}

/// A reload that renumbers the backends while a client keeps reading and writing. Sessions
/// route by the old topology until the monitor publishes the new one (up to a second later);
/// the pools they open meanwhile must not stay behind at an index that now means another server.
/// Afterwards every write reaches the primary and every read a replica. (Before, a read in that
/// window left a pool of a replica at the primary's new index: writes got 1290 from the replica.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_that_renumbers_backends_under_traffic_keeps_each_index_on_its_server() {
    let _serial = faults::SERIAL.lock().await;
    let (cluster, text, file, handle, opts) = reloadable("renumber_traffic").await;
    let mut writer = Conn::new(opts.clone()).await.unwrap();
    writer.query_drop("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY)").await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let traffic: Vec<_> = (0..8)
        .map(|_| {
            let (stop, opts) = (stop.clone(), opts.clone());
            tokio::spawn(async move {
                let mut conn = Conn::new(opts).await.unwrap();
                let (mut statements, mut errors) = (0, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    for sql in ["SELECT @@port", "INSERT INTO t VALUES ()"] {
                        statements += 1;
                        if let Err(err) = conn.query_drop(sql).await {
                            errors.push(format!("{sql}: {err}"));
                        }
                    }
                }
                (statements, errors)
            })
        })
        .collect();
    file.replace(&rotated(&text));
    let changes = handle.reload().await.expect("the reload is accepted");
    stop.store(true, Ordering::Relaxed);
    let (mut statements, mut errors) = (0, Vec::new());
    for client in traffic {
        let (n, failed) = client.await.unwrap();
        statements += n;
        errors.extend(failed);
    }
    eprintln!("{statements} statements during the reload ({changes:?})");
    assert!(
        errors.is_empty(),
        "{} statements failed during the reload, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(3)]
    );

    let mut reader = Conn::new(opts).await.unwrap();
    for _ in 0..20 {
        writer.query_drop("INSERT INTO t VALUES ()").await.expect("a write after the reload reaches the primary");
        let port: u16 = reader.query_first("SELECT @@port").await.unwrap().unwrap();
        assert_ne!(port, cluster.primary, "a read after the reload went to the primary");
    }
}

/// The replica that received the most of a frozen primary's transactions, once both have stopped
/// moving: its `env` label and port. Promoting it keeps the other one a prefix of it, so that
/// `scripts/cluster.sh failover` can repoint that one afterwards.
async fn most_advanced_replica() -> (&'static str, u16) {
    let labels = ["REPLICA1", "REPLICA2"];
    let mut conns = Vec::new();
    for label in labels {
        conns.push(direct(faults::node(label).1).await);
    }
    let mut last: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut now = Vec::new();
        for conn in &mut conns {
            now.push(conn.query_first::<String, _>("SELECT @@global.gtid_current_pos").await.unwrap().unwrap());
        }
        if now == last || Instant::now() > deadline {
            // One domain, one stream of transactions: the higher sequence number has more.
            let seq = |pos: &str| pos.rsplit('-').next().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
            let best = if seq(&now[1]) > seq(&now[0]) { 1 } else { 0 };
            return (labels[best], faults::node(labels[best]).1);
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Issue 13 item 10: the primary freezes (SIGSTOP: it accepts connections and answers nothing,
/// like a network black hole), and an orchestrator promotes a replica. Writes must follow the
/// promotion within about a second, without waiting for the frozen primary to be confirmed down
/// by probe timeouts, and the statements stuck on the frozen primary must fail (once per client,
/// outcome unknown) instead of hanging for `pool.query_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_follow_a_promotion_away_from_a_frozen_primary() {
    let _serial = faults::SERIAL.lock().await;
    let cleanup = async {
        // Kills the frozen primary (SIGKILL ends a stopped process) and wires the other replica
        // to the promoted one; `up` rebuilds the killed node as a replica.
        cluster_sh_async(&["failover"]).await;
        restore_cluster().await;
    };
    with_cleanup(frozen_primary(), cleanup).await;
}

async fn frozen_primary() {
    restore_cluster().await;
    let cluster = Cluster::shared().await;
    let mut load = Load::start(&cluster, "frozen").await;
    let (pid, old_port) = faults::node("PRIMARY");
    let status = std::process::Command::new("kill").args(["-STOP", &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill -STOP {pid}");
    let frozen = Instant::now();
    let (label, new_port) = most_advanced_replica().await;
    let promote = move || root_sql(label, "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0");
    tokio::task::spawn_blocking(promote).await.unwrap();
    let promoted = Instant::now();
    let (_, elected) = proxy_view(&load.proxy, old_port).await;
    let (ops, first_write) = load.finish(promoted).await;
    let resume = first_write.saturating_duration_since(promoted);
    let stuck: Vec<&Op> = ops.iter().filter(|o| o.error.is_some()).collect();
    let last_error = stuck.iter().map(|o| o.end).max().map(|t| t.saturating_duration_since(promoted));
    eprintln!(
        "freeze → promotion {:?}; promotion → proxy elects it {:?}; promotion → first write acknowledged {resume:?}; \
         {} statements failed, the last {last_error:?} after the promotion; {} statements",
        promoted - frozen,
        elected.saturating_duration_since(promoted),
        stuck.len(),
        ops.len()
    );
    assert!(resume <= Duration::from_secs(1), "writes resumed {resume:?} after the promotion");

    // Errors only for statements that reached the frozen primary (running at the freeze, or sent
    // to it before the proxy followed the promotion) or in transactions open then: at most one
    // per client, never a read, and each says the outcome is unknown.
    let mut errors_per_client = vec![0; CLIENTS];
    for op in &stuck {
        errors_per_client[op.client] += 1;
        assert!(op.start < elected || op.transaction.is_some_and(|t| t < elected), "late error: {op:?}");
        assert_ne!(op.kind, Kind::Read, "a read failed: {op:?}");
        let error = op.error.as_deref().unwrap_or_default();
        assert!(error.contains("1158") || error.contains("1213"), "{error}");
    }
    assert!(errors_per_client.iter().all(|&n| n <= 1), "one error at most per client: {errors_per_client:?}");
    let new_index = BackendIndex(cluster.ports.iter().position(|&p| p == new_port).unwrap());
    assert_eq!(load.proxy.handle.topology().primary, Some(new_index));
}
