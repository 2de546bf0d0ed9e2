//! Replication lag and read-your-writes on the real cluster: a replica whose SQL thread is stopped
//! leaves read rotation once its lag passes `routing.max_replication_lag` and returns when it
//! has caught up; with `routing.consistency = "session"` a read right after a write always sees
//! it, even with a replica delayed by `MASTER_DELAY`, while `"eventual"` is allowed to miss.
//!
//! These tests stop and delay replication. They take `faults::SERIAL` and restore the replicas
//! (threads running, no delay, caught up), also when they fail.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::faults::{self, on_node, restore_cluster, with_cleanup};
use common::{eventually, fresh_db, Cluster, TestProxy};
use mysql_async::prelude::*;
use rwsplit::config::Consistency;

async fn port_of(conn: &mut mysql_async::Conn) -> u16 {
    conn.query_first("SELECT @@port").await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_with_a_stopped_sql_thread_leaves_rotation_once_too_far_behind() {
    let _serial = faults::SERIAL.lock().await;
    let cluster = Cluster::shared().await;
    let lagging = cluster.replicas()[0];
    let restore = async move {
        on_node(lagging, "START SLAVE").await;
        restore_cluster().await;
    };
    with_cleanup(stopped_sql_thread(), restore).await;
}

async fn stopped_sql_thread() {
    let cluster = Cluster::shared().await;
    let (lagging, other) = (cluster.replicas()[0], cluster.replicas()[1]);
    let index = cluster.ports.iter().position(|&p| p == lagging).unwrap();
    let mut config = cluster.config();
    config.routing.max_replication_lag = Duration::from_secs(2);
    config.monitor.interval = Duration::from_millis(500);
    config.monitor.timeout = Duration::from_millis(500);
    let proxy = TestProxy::start_with(cluster.clone(), config).await;
    let db = fresh_db(&cluster, "lag").await;
    let mut conn = proxy.connect_db(&db).await;
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT)").await.unwrap();
    let p = &proxy;
    assert!(
        eventually(Duration::from_secs(10), move || async move { p.handle.topology().nodes[index].gtid.is_some() })
            .await
    );

    // Writes keep coming, so a replica that stops applying them falls further behind.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (opts, stop) = (proxy.opts(Some(&db)), stop.clone());
        tokio::spawn(async move {
            let mut conn = mysql_async::Conn::new(opts).await.unwrap();
            while !stop.load(Ordering::Relaxed) {
                conn.query_drop("INSERT INTO t VALUES ()").await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    on_node(lagging, "STOP SLAVE SQL_THREAD").await;
    let stopped = Instant::now();
    let out =
        eventually(Duration::from_secs(15), move || async move { p.handle.topology().nodes[index].lagging }).await;
    let after = stopped.elapsed();
    assert!(out, "the stopped replica left rotation");
    let lag = proxy.handle.topology().nodes[index].lag;
    eprintln!("left rotation {after:?} after STOP SLAVE SQL_THREAD (estimated lag {lag:?})");
    assert!(after >= Duration::from_secs(2), "not before its lag passed 2 s: {after:?}");
    for _ in 0..100 {
        assert_eq!(port_of(&mut conn).await, other, "reads avoid the lagging replica");
    }

    on_node(lagging, "START SLAVE SQL_THREAD").await;
    let back =
        eventually(Duration::from_secs(20), move || async move { !p.handle.topology().nodes[index].lagging }).await;
    assert!(back, "the replica returned to rotation once caught up");
    let mut seen = false;
    for _ in 0..100 {
        seen |= port_of(&mut conn).await == lagging;
    }
    assert!(seen, "reads reach the replica again");
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_consistency_reads_its_writes_with_a_delayed_replica() {
    let _serial = faults::SERIAL.lock().await;
    let cluster = Cluster::shared().await;
    let slow = cluster.replicas()[0];
    let restore = async move {
        on_node(slow, "STOP SLAVE").await;
        on_node(slow, "CHANGE MASTER TO MASTER_DELAY = 0").await;
        on_node(slow, "START SLAVE").await;
        restore_cluster().await;
    };
    with_cleanup(read_your_writes(), restore).await;
}

/// Writes a row into `table` (which exists everywhere) and reads it back at once, `n` times;
/// returns how often the read missed it and how many reads ran on a replica.
async fn write_then_read(proxy: &TestProxy, db: &str, table: &str, n: u32, primary: u16) -> (u32, u32) {
    let mut conn = proxy.connect_db(db).await;
    let (mut missed, mut on_replica) = (0, 0);
    for id in 0..n {
        conn.query_drop(format!("INSERT INTO {table} VALUES ({id})")).await.unwrap();
        let row: Option<(Option<i64>, u16)> =
            conn.query_first(format!("SELECT MAX(id), @@port FROM {table} WHERE id = {id}")).await.unwrap();
        let (found, port) = row.unwrap();
        missed += u32::from(found != Some(i64::from(id)));
        on_replica += u32::from(port != primary);
    }
    (missed, on_replica)
}

async fn read_your_writes() {
    let cluster = Cluster::shared().await;
    let slow = cluster.replicas()[0];
    on_node(slow, "STOP SLAVE").await;
    on_node(slow, "CHANGE MASTER TO MASTER_DELAY = 5").await;
    on_node(slow, "START SLAVE").await;
    let db = fresh_db(&cluster, "ryw").await;
    let mut primary = cluster.primary_conn().await;
    primary.query_drop(format!("CREATE TABLE `{db}`.s (id INT PRIMARY KEY)")).await.unwrap();
    primary.query_drop(format!("CREATE TABLE `{db}`.e (id INT PRIMARY KEY)")).await.unwrap();
    primary.disconnect().await.unwrap();
    // Every replica has the tables (the delayed one after its 5 s).
    cluster.wait_replicas().await;

    let mut config = cluster.config();
    config.routing.consistency = Consistency::Session;
    let session = TestProxy::start_with(cluster.clone(), config).await;
    let started = Instant::now();
    let (missed, on_replica) = write_then_read(&session, &db, "s", 1000, cluster.primary).await;
    eprintln!(
        "session: 1000 write+read pairs in {:?}, {missed} missed, {on_replica} reads on replicas",
        started.elapsed()
    );
    assert_eq!(missed, 0, "session consistency: every read sees the session's own write");

    // Replicas that have caught up with the session's last write take its reads again.
    let mut conn = session.connect_db(&db).await;
    conn.query_drop("INSERT INTO s VALUES (1000)").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while port_of(&mut conn).await == cluster.primary {
        assert!(Instant::now() < deadline, "reads go to a replica once one has the session's write");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let eventual = TestProxy::start(cluster.clone()).await;
    let (missed, on_replica) = write_then_read(&eventual, &db, "e", 200, cluster.primary).await;
    eprintln!("eventual: 200 write+read pairs, {missed} missed, {on_replica} reads on replicas");
    assert!(missed > 0, "eventual consistency reads from the delayed replica and misses the write");
}
