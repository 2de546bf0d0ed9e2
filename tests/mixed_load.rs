//! Issue 11's "done when": 200 ordinary clients doing a mixed workload (reads, writes, transactions,
//! isolation-level transactions, named locks, statements with warnings) through a proxy whose pools hold at
//! most 2 connections per backend. Every client checks that what it sees about its own previous statement
//! (insert ids, warnings, counters) is its own; the run must finish with no error at all.

mod common;

use std::time::Duration;

use common::{fresh_db, Cluster, TestProxy};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row};

const CLIENTS: u32 = 200;
const ROUNDS: u32 = 3;
/// Bound for the whole run; a run that hangs fails instead of blocking CI.
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// One client's workload; returns a description of the first thing that went wrong.
async fn client(opts: mysql_async::Opts, me: u32) -> Result<(), String> {
    let fail = |what: &str, err: &dyn std::fmt::Display| format!("client {me}: {what}: {err}");
    let mut conn = Conn::new(opts).await.map_err(|e| fail("connect", &e))?;
    for round in 0..ROUNDS {
        let marker = format!("c{me}-r{round}");

        // A write, then questions about it: the insert id must be this client's own.
        conn.query_drop(format!("INSERT INTO t (owner, v) VALUES ({me}, '{marker}')"))
            .await
            .map_err(|e| fail("insert", &e))?;
        let id = conn.last_insert_id().ok_or_else(|| fail("insert", &"no insert id"))?;
        let asked: Option<u64> = conn.query_first("SELECT LAST_INSERT_ID()").await.map_err(|e| fail("lid", &e))?;
        if asked != Some(id) {
            return Err(fail("LAST_INSERT_ID()", &format!("{asked:?}, the OK said {id}")));
        }
        let owner: Option<u32> = conn
            .query_first(format!("SELECT owner FROM t WHERE id = {id} FOR UPDATE"))
            .await
            .map_err(|e| fail("owner", &e))?;
        if owner != Some(me) {
            return Err(fail("row of my insert id", &format!("owner {owner:?}")));
        }

        // A statement with a warning that names this client, then the warning questions.
        conn.query_drop(format!("INSERT IGNORE INTO t (owner, v) VALUES ({me}, '{marker}')"))
            .await
            .map_err(|e| fail("insert ignore", &e))?;
        let count: Option<u64> =
            conn.query_first("SELECT @@warning_count").await.map_err(|e| fail("@@warning_count", &e))?;
        if count != Some(1) {
            return Err(fail("@@warning_count after my duplicate", &format!("{count:?}")));
        }
        let warnings: Vec<Row> = conn.query("SHOW WARNINGS").await.map_err(|e| fail("show warnings", &e))?;
        let texts: Vec<String> = warnings.iter().filter_map(|row| row.get::<String, _>(2)).collect();
        if texts.len() != 1 || !texts[0].contains(&marker) {
            return Err(fail("SHOW WARNINGS after my duplicate", &format!("{texts:?}")));
        }
        // A plain read (replicas). It uses a table, so on a direct connection it clears the warnings
        // (`SELECT 1` or `DO 1` would not).
        let _: Option<u64> = conn
            .query_first(format!("SELECT COUNT(*) FROM t WHERE owner = {me}"))
            .await
            .map_err(|e| fail("read", &e))?;
        let warnings: Vec<Row> = conn.query("SHOW WARNINGS").await.map_err(|e| fail("show warnings", &e))?;
        if !warnings.is_empty() {
            let texts: Vec<String> = warnings.iter().filter_map(|row| row.get::<String, _>(2)).collect();
            return Err(fail("SHOW WARNINGS after a clean read of a table", &format!("{texts:?}")));
        }
        let count: Option<u64> =
            conn.query_first("SELECT @@warning_count").await.map_err(|e| fail("@@warning_count", &e))?;
        if count != Some(0) {
            return Err(fail("@@warning_count after a clean read of a table", &format!("{count:?}")));
        }

        // A transaction on this client's own counter.
        conn.query_drop("START TRANSACTION").await.map_err(|e| fail("begin", &e))?;
        conn.query_drop(format!("UPDATE acct SET n = n + 1 WHERE owner = {me}"))
            .await
            .map_err(|e| fail("update", &e))?;
        let n: Option<u32> = conn
            .query_first(format!("SELECT n FROM acct WHERE owner = {me}"))
            .await
            .map_err(|e| fail("select in trx", &e))?;
        if n != Some(round + 1) {
            return Err(fail("my counter inside my transaction", &format!("{n:?}, expected {}", round + 1)));
        }
        conn.query_drop("COMMIT").await.map_err(|e| fail("commit", &e))?;

        // What Go's BeginTx with an isolation level sends.
        conn.query_drop("SET TRANSACTION ISOLATION LEVEL READ COMMITTED").await.map_err(|e| fail("set trx", &e))?;
        conn.query_drop("START TRANSACTION").await.map_err(|e| fail("begin rc", &e))?;
        let _: Option<u32> = conn
            .query_first(format!("SELECT n FROM acct WHERE owner = {me}"))
            .await
            .map_err(|e| fail("select rc", &e))?;
        conn.query_drop("COMMIT").await.map_err(|e| fail("commit rc", &e))?;

        // A named lock shared with a few other clients, taken and released.
        let name = format!("mixed_{}", me % 10);
        let got: Option<i64> =
            conn.query_first(format!("SELECT GET_LOCK('{name}', 30)")).await.map_err(|e| fail("get_lock", &e))?;
        if got != Some(1) {
            return Err(fail("GET_LOCK", &format!("{got:?}")));
        }
        let released: Option<i64> =
            conn.query_first(format!("SELECT RELEASE_LOCK('{name}')")).await.map_err(|e| fail("release", &e))?;
        if released != Some(1) {
            return Err(fail("RELEASE_LOCK of a lock I hold", &format!("{released:?}")));
        }
    }
    conn.disconnect().await.map_err(|e| fail("disconnect", &e))?;
    Ok(())
}

/// Creates the workload's tables in a fresh database and waits for the replicas.
async fn setup(cluster: &Cluster) -> String {
    let db = fresh_db(cluster, "mixed").await;
    let mut primary = cluster.primary_conn().await;
    primary
        .query_drop(format!(
            "CREATE TABLE `{db}`.t (id INT AUTO_INCREMENT PRIMARY KEY, owner INT NOT NULL, v VARCHAR(64) NOT NULL, \
             UNIQUE KEY (v)); CREATE TABLE `{db}`.acct (owner INT PRIMARY KEY, n INT NOT NULL)"
        ))
        .await
        .unwrap();
    let rows: Vec<String> = (0..CLIENTS).map(|i| format!("({i}, 0)")).collect();
    primary.query_drop(format!("INSERT INTO `{db}`.acct VALUES {}", rows.join(","))).await.unwrap();
    primary.disconnect().await.unwrap();
    cluster.wait_replicas().await;
    db
}

/// The workload's own expectations hold on direct connections to the primary, so a failure through the
/// proxy is the proxy's.
#[tokio::test]
async fn the_workload_passes_on_direct_connections() {
    let cluster = Cluster::shared().await;
    let db = setup(&cluster).await;
    for me in 0..5 {
        client(common::direct_opts(cluster.primary, Some(&db)), me).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_share_two_connections_per_backend_without_errors_or_leaks() {
    let cluster = Cluster::shared().await;
    let db = setup(&cluster).await;

    let mut config = cluster.config();
    config.pool.max_connections_per_backend = 2;
    config.pool.checkout_timeout = Duration::from_secs(60);
    let proxy = TestProxy::start_with(cluster.clone(), config).await;

    let mut tasks = tokio::task::JoinSet::new();
    for me in 0..CLIENTS {
        tasks.spawn(client(proxy.opts(Some(&db)), me));
    }
    let run = tokio::time::timeout(RUN_LIMIT, async {
        let mut failures = Vec::new();
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(failure)) => failures.push(failure),
                Err(panic) => failures.push(format!("client task failed: {panic}")),
            }
        }
        failures
    })
    .await;
    let failures = run.unwrap_or_else(|_| panic!("the mixed run did not finish within {RUN_LIMIT:?}"));
    assert!(
        failures.is_empty(),
        "{} of {CLIENTS} clients failed; first few:\n{}",
        failures.len(),
        failures.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );

    // Every write landed exactly once, and every counter moved only by its own client.
    let mut primary = cluster.primary_conn().await;
    let per_owner: Vec<(u32, u64)> =
        primary.query(format!("SELECT owner, COUNT(*) FROM `{db}`.t GROUP BY owner")).await.unwrap();
    assert_eq!(per_owner.len(), CLIENTS as usize);
    assert!(per_owner.iter().all(|&(_, n)| n == u64::from(ROUNDS)), "rows per client: {per_owner:?}");
    let wrong: Vec<(u32, u32)> =
        primary.query(format!("SELECT owner, n FROM `{db}`.acct WHERE n <> {ROUNDS}")).await.unwrap();
    assert!(wrong.is_empty(), "counters not at {ROUNDS}: {wrong:?}");
    primary.query_drop(format!("DROP DATABASE `{db}`")).await.unwrap();
    primary.disconnect().await.unwrap();
}
