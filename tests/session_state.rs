//! What a session's previous statement left behind (warnings, insert ids, `ROW_COUNT()`,
//! `FOUND_ROWS()`, its schema) belongs to that session alone, and no backend connection is held
//! while a client is idle (issue 11). The proxy runs with one connection per backend, so every
//! client shares the same primary connection: anything one client left on it would show.

mod common;

use std::time::Duration;

use common::{direct_opts, fresh_db, server_error, Cluster, TestProxy};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row};

/// A proxy whose pools hold one connection per backend, with a short checkout timeout.
async fn shared_pool_proxy(cluster: &Cluster) -> TestProxy {
    let mut config = cluster.config();
    config.pool.max_connections_per_backend = 1;
    config.pool.checkout_timeout = Duration::from_secs(2);
    TestProxy::start_with(cluster.clone(), config).await
}

/// A fresh database with `t (id AUTO_INCREMENT, v UNIQUE)` holding `rows` rows.
async fn table(cluster: &Cluster, prefix: &str, rows: u32) -> String {
    let db = fresh_db(cluster, prefix).await;
    let mut primary = cluster.primary_conn().await;
    primary
        .query_drop(format!(
            "CREATE TABLE `{db}`.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64) NOT NULL, UNIQUE KEY (v))"
        ))
        .await
        .unwrap();
    for i in 0..rows {
        primary.query_drop(format!("INSERT INTO `{db}`.t (v) VALUES ('row{i}')")).await.unwrap();
    }
    primary.disconnect().await.unwrap();
    cluster.wait_replicas().await;
    db
}

/// `SHOW WARNINGS` as (level, code, message).
async fn warnings(conn: &mut Conn) -> Vec<(String, u32, String)> {
    conn.query("SHOW WARNINGS").await.unwrap()
}

async fn count(conn: &mut Conn, sql: &str) -> u64 {
    conn.query_first(sql).await.unwrap().unwrap()
}

#[tokio::test]
async fn another_clients_warnings_are_never_seen() {
    let cluster = Cluster::shared().await;
    let db = table(&cluster, "warnleak", 1).await;
    let proxy = shared_pool_proxy(&cluster).await;
    let mut a = proxy.connect_db(&db).await;
    let mut b = proxy.connect_db(&db).await;
    b.query_drop("INSERT IGNORE INTO t (v) VALUES ('row0')").await.unwrap();
    b.query_drop("SELECT 1").await.unwrap();
    assert_eq!(warnings(&mut a).await, vec![], "A ran nothing that warned");
    assert_eq!(count(&mut a, "SELECT @@warning_count").await, 0);
    assert_eq!(count(&mut a, "SHOW COUNT(*) WARNINGS").await, 0);
    // B's own warning is still B's: `SELECT 1` opens no table, so it does not clear it.
    let seen = warnings(&mut b).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].2.contains("row0"), "{seen:?}");
}

#[tokio::test]
async fn own_warnings_answer_like_a_direct_connection_after_other_clients_used_the_connection() {
    let cluster = Cluster::shared().await;
    let db = table(&cluster, "warnown", 1).await;
    let proxy = shared_pool_proxy(&cluster).await;
    let mut through = proxy.connect_db(&db).await;
    let mut direct = Conn::new(direct_opts(cluster.primary, Some(&db))).await.unwrap();
    let mut other = proxy.connect_db(&db).await;
    for conn in [&mut through, &mut direct] {
        conn.query_drop("INSERT IGNORE INTO t (v) VALUES ('row0'), ('row0')").await.unwrap();
    }
    // Another client clears the diagnostics of the shared connection and leaves its own.
    other.query_drop("INSERT INTO t (v) VALUES ('other')").await.unwrap();
    other.query_drop("INSERT IGNORE INTO t (v) VALUES ('other')").await.unwrap();
    // `SELECT COUNT(*) FROM t` below reads a replica through the proxy: let it catch up first.
    cluster.wait_replicas().await;
    let questions = [
        "SHOW WARNINGS",
        "SHOW WARNINGS LIMIT 1",
        "SHOW ERRORS",
        "SHOW COUNT(*) WARNINGS",
        "SHOW COUNT(*) ERRORS",
        "SELECT @@warning_count, @@error_count",
        "SELECT 1",
        "SHOW WARNINGS",
        "SELECT COUNT(*) FROM t",
        "SHOW WARNINGS",
        "SELECT @@session.warning_count",
    ];
    for sql in questions {
        let want: Vec<Row> = direct.query(sql).await.unwrap();
        let got: Vec<Row> = through.query(sql).await.unwrap();
        let cells = |rows: &[Row]| rows.iter().map(|r| r.clone().unwrap()).collect::<Vec<_>>();
        assert_eq!(cells(&got), cells(&want), "{sql}: values through the proxy and directly");
        let meta = |rows: &[Row]| {
            rows.first().map(|r| {
                r.columns_ref()
                    .iter()
                    .map(|c| (c.name_str().into_owned(), c.column_type(), c.column_length(), c.flags(), c.decimals()))
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(meta(&got), meta(&want), "{sql}: column metadata");
        assert_eq!(through.get_warnings(), direct.get_warnings(), "{sql}: warning count of the response");
    }
}

#[tokio::test]
async fn idle_writers_do_not_starve_a_pool_of_one() {
    let cluster = Cluster::shared().await;
    let db = table(&cluster, "idlewrite", 1).await;
    let proxy = shared_pool_proxy(&cluster).await;
    let mut first = proxy.connect_db(&db).await;
    let mut second = proxy.connect_db(&db).await;
    first.query_drop("INSERT INTO t (v) VALUES ('first')").await.unwrap();
    second.query_drop("INSERT IGNORE INTO t (v) VALUES ('row0')").await.unwrap();
    second.query_drop("SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1").await.unwrap();
    // Both sit idle now. A third client writes, and a fourth logs in with a schema.
    let mut third = proxy.connect_db(&db).await;
    third.query_drop("INSERT INTO t (v) VALUES ('third')").await.unwrap();
    let mut fourth = proxy.connect_db(&db).await;
    fourth.query_drop("UPDATE t SET v = 'fourth' WHERE v = 'third'").await.unwrap();
    // And the idle ones still get their own answers afterwards.
    assert_eq!(first.query_first::<i64, _>("SELECT ROW_COUNT()").await.unwrap(), Some(1));
    assert_eq!(second.query_first::<u64, _>("SELECT FOUND_ROWS()").await.unwrap(), Some(2));
}

#[tokio::test]
async fn insert_ids_are_this_sessions_under_every_name() {
    let cluster = Cluster::shared().await;
    let db = table(&cluster, "identity", 0).await;
    let proxy = shared_pool_proxy(&cluster).await;
    let mut a = proxy.connect_db(&db).await;
    let mut b = proxy.connect_db(&db).await;
    a.query_drop("INSERT INTO t (v) VALUES ('a')").await.unwrap();
    let mine = a.last_insert_id().unwrap();
    b.query_drop("INSERT INTO t (v) VALUES ('b1'), ('b2')").await.unwrap();
    let ids: (u64, u64, u64) =
        a.query_first("SELECT @@identity, @@last_insert_id, LAST_INSERT_ID()").await.unwrap().unwrap();
    assert_eq!(ids, (mine, mine, mine));
    let fresh = proxy.connect().await.query_first::<u64, _>("SELECT @@identity").await.unwrap();
    assert_eq!(fresh, Some(0), "a session with no insert of its own sees 0");
}

#[tokio::test]
async fn row_count_and_found_rows_are_this_sessions() {
    let cluster = Cluster::shared().await;
    let db = table(&cluster, "rowcount", 5).await;
    let proxy = shared_pool_proxy(&cluster).await;
    let mut a = proxy.connect_db(&db).await;
    let mut b = proxy.connect_db(&db).await;
    let mut direct = Conn::new(direct_opts(cluster.primary, Some(&db))).await.unwrap();

    a.query_drop("UPDATE t SET v = CONCAT(v, 'x') WHERE id <= 3").await.unwrap();
    b.query_drop("UPDATE t SET v = CONCAT(v, 'y') WHERE id = 5").await.unwrap();
    assert_eq!(a.query_first::<i64, _>("SELECT ROW_COUNT()").await.unwrap(), Some(3));
    assert_eq!(b.query_first::<i64, _>("SELECT ROW_COUNT()").await.unwrap(), Some(1));
    assert_eq!(a.query_first::<i64, _>("SELECT ROW_COUNT()").await.unwrap(), Some(-1), "after a SELECT");

    a.query_drop("SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1").await.unwrap();
    b.query_drop("SELECT SQL_CALC_FOUND_ROWS * FROM t WHERE id > 3 LIMIT 1").await.unwrap();
    assert_eq!(a.query_first::<u64, _>("SELECT FOUND_ROWS()").await.unwrap(), Some(5));
    assert_eq!(b.query_first::<u64, _>("SELECT FOUND_ROWS() AS n").await.unwrap(), Some(2));

    // The answers carry the server's column metadata.
    for sql in ["SELECT ROW_COUNT()", "SELECT FOUND_ROWS() AS n"] {
        let meta = |row: Row| {
            row.columns_ref()
                .iter()
                .map(|c| (c.name_str().into_owned(), c.column_type(), c.column_length(), c.flags()))
                .collect::<Vec<_>>()
        };
        let want: Row = direct.query_first(sql).await.unwrap().unwrap();
        let got: Row = a.query_first(sql).await.unwrap().unwrap();
        assert_eq!(meta(got), meta(want), "{sql}");
    }
}

#[tokio::test]
async fn dropping_the_current_schema_leaves_the_session_without_one() {
    let cluster = Cluster::shared().await;
    let proxy = shared_pool_proxy(&cluster).await;
    let db = format!("t_dropcur_{}", std::process::id());
    let mut conn = proxy.connect().await;
    conn.query_drop(format!("CREATE DATABASE `{db}`")).await.unwrap();
    conn.query_drop(format!("USE `{db}`")).await.unwrap();
    conn.query_drop(format!("DROP DATABASE `{db}`")).await.unwrap();
    assert_eq!(conn.query_first::<u8, _>("SELECT 1").await.unwrap(), Some(1));
    let schema: Option<Option<String>> = conn.query_first("SELECT DATABASE()").await.unwrap();
    assert_eq!(schema, Some(None), "no schema selected, as on a direct connection");
    let err = conn.query_drop("CREATE TABLE t (a INT)").await.unwrap_err();
    assert_eq!(server_error(&err).0, 1046, "no database selected");
    conn.query_drop("USE mysql").await.unwrap();
    assert_eq!(conn.query_first::<String, _>("SELECT DATABASE()").await.unwrap().as_deref(), Some("mysql"));
}

#[tokio::test]
async fn sequence_values_are_this_sessions() {
    let cluster = Cluster::shared().await;
    let db = table(&cluster, "sequence", 0).await;
    let mut primary = cluster.primary_conn().await;
    primary.query_drop(format!("CREATE SEQUENCE `{db}`.s")).await.unwrap();
    cluster.wait_replicas().await;
    let proxy = shared_pool_proxy(&cluster).await;
    let mut a = proxy.connect_db(&db).await;
    let mut b = proxy.connect_db(&db).await;
    assert_eq!(a.query_first::<i64, _>("SELECT NEXTVAL(s)").await.unwrap(), Some(1));
    for _ in 0..3 {
        b.query_drop("SELECT NEXT VALUE FOR s").await.unwrap();
    }
    assert_eq!(a.query_first::<i64, _>("SELECT LASTVAL(s)").await.unwrap(), Some(1));
    assert_eq!(a.query_first::<i64, _>("SELECT PREVIOUS VALUE FOR s").await.unwrap(), Some(1));
    assert_eq!(b.query_first::<i64, _>("SELECT LASTVAL(s)").await.unwrap(), Some(4));
    let mut c = proxy.connect_db(&db).await;
    let none: Option<Option<i64>> = c.query_first("SELECT LASTVAL(s)").await.unwrap();
    assert_eq!(none, Some(None), "a session that generated nothing sees NULL");
    let meta = |row: Row| {
        row.columns_ref()
            .iter()
            .map(|col| (col.name_str().into_owned(), col.column_type(), col.flags()))
            .collect::<Vec<_>>()
    };
    let mut direct = Conn::new(direct_opts(cluster.primary, Some(&db))).await.unwrap();
    let want: Row = direct.query_first("SELECT LASTVAL(s)").await.unwrap().unwrap();
    let got: Row = a.query_first("SELECT LASTVAL(s)").await.unwrap().unwrap();
    assert_eq!(meta(got), meta(want), "the server's column metadata");
}

/// Runs the script of the stored-function view case on `conn`; returns what the client sees:
/// `DATABASE()` after the information_schema read, then the count of `db.t` (or the error code).
async fn view_of_function_script(conn: &mut Conn, db: &str) -> (Option<String>, Result<u64, u16>) {
    let columns: u64 = conn
        .query_first(format!(
            "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = '{db}' AND table_name = 'v'"
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(columns, 1);
    let schema: Option<Option<String>> = conn.query_first("SELECT DATABASE()").await.unwrap();
    let count = match conn.query_first::<u64, _>(format!("/* rwsplit:primary */ SELECT COUNT(*) FROM `{db}`.t")).await {
        Ok(n) => Ok(n.unwrap_or(0)),
        Err(err) => Err(server_error(&err).0),
    };
    (schema.flatten(), count)
}

#[tokio::test]
async fn reading_the_columns_of_a_view_calling_a_stored_function_keeps_the_schema() {
    let cluster = Cluster::shared().await;
    let db = table(&cluster, "viewfn", 2).await;
    let mut primary = cluster.primary_conn().await;
    primary.query_drop(format!("CREATE FUNCTION `{db}`.f() RETURNS INT DETERMINISTIC RETURN 1")).await.unwrap();
    primary.query_drop(format!("CREATE VIEW `{db}`.v AS SELECT `{db}`.f() AS x")).await.unwrap();
    primary.disconnect().await.unwrap();
    cluster.wait_replicas().await;
    let proxy = shared_pool_proxy(&cluster).await;
    // With the view's schema selected and with none (the server reports an empty schema then).
    for schema in [Some(db.as_str()), None] {
        let mut direct = Conn::new(direct_opts(cluster.primary, schema)).await.unwrap();
        let expected = view_of_function_script(&mut direct, &db).await;
        assert_eq!(expected, (schema.map(str::to_owned), Ok(2)), "what a direct connection sees");
        let mut conn = match schema {
            Some(db) => proxy.connect_db(db).await,
            None => proxy.connect().await,
        };
        assert_eq!(view_of_function_script(&mut conn, &db).await, expected, "through the proxy, schema {schema:?}");
        // And the next statement that needs the schema (or its absence) still behaves the same.
        let unqualified = conn.query_first::<u64, _>("SELECT COUNT(*) FROM t").await.map_err(|e| server_error(&e).0);
        let direct_unqualified =
            direct.query_first::<u64, _>("SELECT COUNT(*) FROM t").await.map_err(|e| server_error(&e).0);
        assert_eq!(unqualified.map(|n| n.is_some()), direct_unqualified.map(|n| n.is_some()), "schema {schema:?}");
    }
}
