//! Every pin has an end (issue 11): with one connection per backend, a pinned client owns the
//! primary's only connection, so another client's write waits and fails with 1040; once the pin
//! ends the write goes through and the state is gone from the connection (locks free, temporary
//! tables dropped, the one-shot isolation level used up).

mod common;

use std::time::Duration;

use common::{fresh_db, server_error, Cluster, TestProxy};
use mysql_async::prelude::*;
use mysql_async::Conn;

async fn setup(prefix: &str) -> (TestProxy, String) {
    let cluster = Cluster::shared().await;
    let db = fresh_db(&cluster, prefix).await;
    let mut primary = cluster.primary_conn().await;
    primary.query_drop(format!("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")).await.unwrap();
    primary.query_drop(format!("INSERT INTO `{db}`.t VALUES (1, 0)")).await.unwrap();
    primary.disconnect().await.unwrap();
    cluster.wait_replicas().await;
    let mut config = cluster.config();
    config.pool.max_connections_per_backend = 1;
    config.pool.checkout_timeout = Duration::from_millis(700);
    (TestProxy::start_with(cluster, config).await, db)
}

/// Whether another client can write now (`false`: the primary's only connection is held).
async fn can_write(other: &mut Conn) -> bool {
    match other.query_drop("UPDATE t SET v = v + 1 WHERE id = 1").await {
        Ok(()) => true,
        Err(err) => {
            assert_eq!(server_error(&err).0, 1040, "only a checkout timeout is expected: {err}");
            false
        }
    }
}

#[tokio::test]
async fn named_locks_pin_until_the_last_is_released() {
    let (proxy, db) = setup("pinlock").await;
    let mut a = proxy.connect_db(&db).await;
    let mut b = proxy.connect_db(&db).await;
    a.query_drop("SELECT GET_LOCK('pins_a', 5)").await.unwrap();
    a.query_drop("SELECT `GET_LOCK`('pins_a', 5)").await.unwrap();
    assert!(!can_write(&mut b).await, "a session holding a named lock is pinned");
    a.query_drop("SELECT RELEASE_LOCK('pins_a')").await.unwrap();
    assert!(!can_write(&mut b).await, "the lock was taken twice and is still held");
    a.query_drop("SELECT RELEASE_LOCK('pins_a')").await.unwrap();
    assert!(can_write(&mut b).await, "the last release ends the pin");
    let free: Option<i64> = b.query_first("SELECT IS_FREE_LOCK('pins_a')").await.unwrap();
    assert_eq!(free, Some(1));
    assert!(can_write(&mut a).await, "looking at a lock pins nothing");
}

/// Whether a transaction of `conn` sees a row committed by someone else after its first read:
/// true under READ COMMITTED, false under REPEATABLE READ.
async fn sees_later_commits(conn: &mut Conn, cluster: &Cluster, db: &str) -> bool {
    conn.query_drop("START TRANSACTION").await.unwrap();
    let before: i64 = conn.query_first("SELECT v FROM t WHERE id = 1").await.unwrap().unwrap();
    let mut other = cluster.primary_conn().await;
    other.query_drop(format!("UPDATE `{db}`.t SET v = v + 100 WHERE id = 1")).await.unwrap();
    other.disconnect().await.unwrap();
    let after: i64 = conn.query_first("SELECT v FROM t WHERE id = 1").await.unwrap().unwrap();
    conn.query_drop("COMMIT").await.unwrap();
    after != before
}

#[tokio::test]
async fn set_transaction_pins_until_its_transaction_ends_and_does_not_leak() {
    let (proxy, db) = setup("pinsettrx").await;
    let cluster = proxy.cluster.clone();
    let mut a = proxy.connect_db(&db).await;
    let mut b = proxy.connect_db(&db).await;
    a.query_drop("SET TRANSACTION ISOLATION LEVEL READ COMMITTED").await.unwrap();
    assert!(!can_write(&mut b).await, "the one-shot level lives on a's connection");
    assert!(sees_later_commits(&mut a, &cluster, &db).await, "a's next transaction is READ COMMITTED");
    assert!(can_write(&mut b).await, "the transaction used it up: no pin");
    assert!(!sees_later_commits(&mut b, &cluster, &db).await, "b's transaction is REPEATABLE READ");
    assert!(!sees_later_commits(&mut a, &cluster, &db).await, "and so is a's second one");
}

#[tokio::test]
async fn table_locks_and_temporary_tables_end_and_later_statements_of_a_packet_count() {
    let (proxy, db) = setup("pintables").await;
    let mut a = proxy.connect_db(&db).await;
    let mut b = proxy.connect_db(&db).await;
    // A pin taken by the second statement of a multi-statement packet.
    a.query_drop("DO 1; LOCK TABLES t WRITE").await.unwrap();
    assert!(!can_write(&mut b).await, "LOCK TABLES in second position pins");
    a.query_drop("UNLOCK TABLES").await.unwrap();
    assert!(can_write(&mut b).await, "UNLOCK TABLES ends it, and the next client sees no table lock");

    a.query_drop("CREATE TEMPORARY TABLE tmp1 (a INT)").await.unwrap();
    a.query_drop("CREATE TEMPORARY TABLE `tmp2` (a INT)").await.unwrap();
    a.query_drop("DROP TEMPORARY TABLE tmp1").await.unwrap();
    assert!(!can_write(&mut b).await, "one temporary table is left");
    a.query_drop("DROP TABLE tmp2").await.unwrap();
    assert!(can_write(&mut b).await, "the last one dropped ends the pin");
    let err = b.query_drop("SELECT * FROM tmp2").await.unwrap_err();
    assert_eq!(server_error(&err).0, 1146, "no temporary table was left on the connection");
}
