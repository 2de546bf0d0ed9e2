//! What one session may make the proxy hold (issue 13, item 6): prepared statements up to
//! `server.max_prepared_per_session` (ERR 1461 beyond, like the server's
//! `max_prepared_stmt_count`), and `COM_STMT_SEND_LONG_DATA` up to
//! `server.max_session_long_data` over all its statements. Long data beyond the budget is dropped
//! and the execute fails: never an execute with part of its data.

mod common;

use common::{fresh_db, server_error, Cluster, TestProxy};
use mysql_async::prelude::*;

#[tokio::test]
async fn a_session_keeps_at_most_its_cap_of_prepared_statements() {
    let cluster = Cluster::shared().await;
    let mut config = cluster.config();
    config.server.max_prepared_per_session = 3;
    let proxy = TestProxy::start_with(cluster, config).await;
    let mut conn = proxy.connect().await;
    let mut kept = Vec::new();
    for n in 0..3 {
        kept.push(conn.prep(format!("SELECT {n} + ?")).await.unwrap());
    }
    let err = conn.prep("SELECT 3 + ?").await.unwrap_err();
    let (code, state, message) = server_error(&err);
    assert_eq!((code, state.as_str()), (1461, "42000"), "{message}");
    assert!(message.contains("max_prepared_stmt_count"), "{message}");

    // Closing one makes room, and the others still execute.
    conn.close(kept.remove(0)).await.unwrap();
    let fourth = conn.prep("SELECT 3 + ?").await.unwrap();
    let four: Option<i64> = conn.exec_first(&fourth, (1,)).await.unwrap();
    assert_eq!(four, Some(4));
    let two: Option<i64> = conn.exec_first(&kept[1], (0,)).await.unwrap();
    assert_eq!(two, Some(2));
    // Another session has its own count.
    let mut other = proxy.connect().await;
    other.prep("SELECT 9 + ?").await.unwrap();
}

#[tokio::test]
async fn long_data_beyond_the_session_budget_fails_the_execute_and_writes_nothing() {
    let cluster = Cluster::shared().await;
    let db = fresh_db(&cluster, "longdata").await;
    let mut primary = cluster.primary_conn().await;
    primary.query_drop(format!("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, b LONGBLOB)")).await.unwrap();
    let mut config = cluster.config();
    // Below mysql_async's 16 MiB long-data threshold, so that any long data passes it.
    config.server.max_session_long_data = 4 * 1024 * 1024;
    let proxy = TestProxy::start_with(cluster, config).await;
    let mut conn = proxy.connect_db(&db).await;

    // mysql_async sends a parameter over 16 MiB as COM_STMT_SEND_LONG_DATA before the execute.
    let big = vec![b'x'; 17 * 1024 * 1024];
    let insert = conn.prep("INSERT INTO t VALUES (?, ?)").await.unwrap();
    let err = conn.exec_drop(&insert, (1, big)).await.unwrap_err();
    let (code, state, message) = server_error(&err);
    assert_eq!((code, state.as_str()), (1105, "HY000"), "{message}");
    assert!(message.contains("mysql_send_long_data"), "{message}");
    let rows: Option<i64> = primary.query_first(format!("SELECT COUNT(*) FROM `{db}`.t")).await.unwrap();
    assert_eq!(rows, Some(0), "nothing was written with partial data");

    // The session goes on.
    conn.query_drop("INSERT INTO t VALUES (3, 'plain')").await.unwrap();
    let rows: Option<i64> = primary.query_first(format!("SELECT COUNT(*) FROM `{db}`.t WHERE id = 3")).await.unwrap();
    assert_eq!(rows, Some(1));
}
