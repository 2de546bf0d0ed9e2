//! Read/write splitting against the real cluster: where each statement class runs (told apart by
//! `@@port`), transactions, hints, pins, weights, LAST_INSERT_ID under concurrency, and 200
//! clients multiplexed over a few backend connections without any session state leaking.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::raw::RawClient;
use common::{free_port, fresh_db, Cluster, TestProxy};
use mysql_async::prelude::*;
use rwsplit::config::{BackendConfig, BackendId, Role};
use rwsplit::protocol::CapabilityFlags;

async fn port_of(conn: &mut mysql_async::Conn, sql: &str) -> u16 {
    conn.query_first(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).unwrap()
}

#[tokio::test]
async fn each_statement_class_runs_where_it_should() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let primary = proxy.cluster.primary;
    let replicas = proxy.cluster.replicas();
    let db = fresh_db(&proxy.cluster, "route").await;
    let mut conn = proxy.connect_db(&db).await;
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, v INT)").await.unwrap();
    conn.query_drop("CREATE SEQUENCE rwsplit_seq").await.unwrap();
    // Writes on a replica would fail with 1290 (read_only), so success proves they reached the primary.
    conn.query_drop("INSERT INTO t (v) VALUES (1), (2)").await.unwrap();
    conn.query_drop("UPDATE t SET v = v + 1").await.unwrap();
    conn.query_drop("REPLACE INTO t VALUES (1, 5)").await.unwrap();
    conn.query_drop("DELETE FROM t WHERE id = 2").await.unwrap();
    proxy.cluster.wait_replicas().await;

    let reads = [
        "SELECT @@port",
        "select @@port from t limit 1",
        "/* leading comment */ SELECT @@port",
        "WITH x AS (SELECT 1) SELECT @@port FROM x",
        "(SELECT @@port)",
    ];
    for sql in reads {
        let port = port_of(&mut conn, sql).await;
        assert!(replicas.contains(&port), "{sql} ran on {port}, not a replica");
    }
    let on_primary = [
        "SELECT @@port FROM t WHERE id = 1 FOR UPDATE",
        "SELECT @@port FROM t WHERE id = 1 LOCK IN SHARE MODE",
        "SELECT @@port + 0 * LAST_INSERT_ID()",
        "/* rwsplit:primary */ SELECT @@port",
        "SELECT @@port + 0 * (SELECT COUNT(*) FROM t WHERE v = NEXTVAL(rwsplit_seq))",
    ];
    for sql in on_primary {
        assert_eq!(port_of(&mut conn, sql).await, primary, "{sql}");
    }
    let hinted = port_of(&mut conn, "/* rwsplit:replica */ SELECT @@port").await;
    assert!(replicas.contains(&hinted));
    let named = port_of(&mut conn, "/* rwsplit:backend=node3 */ SELECT @@port").await;
    assert_eq!(named, proxy.cluster.ports[2], "backend hint by name");

    // A read-write transaction stays on the primary until it ends.
    conn.query_drop("BEGIN").await.unwrap();
    assert_eq!(port_of(&mut conn, "SELECT @@port").await, primary, "reads inside a transaction");
    conn.query_drop("INSERT INTO t (v) VALUES (9)").await.unwrap();
    assert_eq!(port_of(&mut conn, "SELECT @@port").await, primary);
    conn.query_drop("COMMIT").await.unwrap();
    assert!(replicas.contains(&port_of(&mut conn, "SELECT @@port").await), "after COMMIT reads leave the primary");

    // autocommit=0 keeps everything on the primary.
    conn.query_drop("SET autocommit = 0").await.unwrap();
    assert_eq!(port_of(&mut conn, "SELECT @@port").await, primary, "autocommit=0");
    conn.query_drop("COMMIT").await.unwrap();
    assert_eq!(port_of(&mut conn, "SELECT @@port").await, primary, "still autocommit=0");
    conn.query_drop("ROLLBACK").await.unwrap();
    conn.query_drop("SET autocommit = 1").await.unwrap();
    assert!(replicas.contains(&port_of(&mut conn, "SELECT @@port").await));

    // A read-only transaction runs on one replica from start to end.
    conn.query_drop("START TRANSACTION READ ONLY").await.unwrap();
    let first = port_of(&mut conn, "SELECT @@port").await;
    assert!(replicas.contains(&first));
    for _ in 0..5 {
        assert_eq!(port_of(&mut conn, "SELECT @@port").await, first, "same replica for the whole transaction");
    }
    let err = conn.query_drop("INSERT INTO t (v) VALUES (1)").await.unwrap_err();
    let code = common::server_error(&err).0;
    assert!(code == 1792 || code == 1290, "writes fail inside READ ONLY on a replica, got {code}");
    conn.query_drop("COMMIT").await.unwrap();

    // Multi-statements: all reads may go to a replica, any write sends the packet to the primary.
    let ports: Vec<u16> = conn.query("SELECT @@port; ").await.unwrap();
    assert!(replicas.contains(&ports[0]));
    let mut result = conn.query_iter("SELECT @@port; SELECT @@port").await.unwrap();
    let a: Vec<u16> = result.collect().await.unwrap();
    let b: Vec<u16> = result.collect().await.unwrap();
    drop(result);
    assert!(replicas.contains(&a[0]) && a == b, "a multi-statement of reads runs on one replica");
    let mut result = conn.query_iter("INSERT INTO t (v) VALUES (3); SELECT @@port").await.unwrap();
    let _: Vec<u8> = result.collect().await.unwrap();
    let c: Vec<u16> = result.collect().await.unwrap();
    drop(result);
    assert_eq!(c, vec![primary], "a multi-statement with a write runs on the primary");
}

#[tokio::test]
async fn temp_tables_and_user_variables_pin_and_keep_working() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let db = fresh_db(&proxy.cluster, "pins").await;
    let pins = |label: &str| proxy.handle.pin_counts().into_iter().find(|(l, _)| *l == label).map(|(_, n)| n).unwrap();

    let mut conn = proxy.connect_db(&db).await;
    conn.query_drop("CREATE TEMPORARY TABLE scratch (id INT PRIMARY KEY, v VARCHAR(10))").await.unwrap();
    conn.query_drop("INSERT INTO scratch VALUES (1, 'a'), (2, 'b')").await.unwrap();
    for _ in 0..10 {
        // Plain reads would go to a replica, where the temporary table does not exist.
        let n: u32 = conn.query_first("SELECT COUNT(*) FROM scratch").await.unwrap().unwrap();
        assert_eq!(n, 2);
    }
    assert_eq!(pins("temp_table"), 1, "the pin is reported once");

    let mut conn2 = proxy.connect().await;
    conn2.query_drop("SET @greeting = 'hello', @n = 41").await.unwrap();
    for _ in 0..10 {
        let (g, n): (String, u32) = conn2.query_first("SELECT @greeting, @n + 1").await.unwrap().unwrap();
        assert_eq!((g.as_str(), n), ("hello", 42));
    }
    let mut conn3 = proxy.connect().await;
    conn3.query_drop("SELECT 7 INTO @seven").await.unwrap();
    let seven: u32 = conn3.query_first("SELECT @seven").await.unwrap().unwrap();
    assert_eq!(seven, 7, "SELECT .. INTO @var pins too (the server does not report it)");
    assert!(pins("user_var") >= 2);

    let mut locker = proxy.connect().await;
    let got: u8 = locker.query_first("SELECT GET_LOCK('rwsplit_pin_test', 5)").await.unwrap().unwrap();
    assert_eq!(got, 1);
    let primary = proxy.cluster.primary;
    for _ in 0..5 {
        assert_eq!(
            port_of(&mut locker, "SELECT @@port").await,
            primary,
            "a session holding a lock stays on its connection"
        );
    }
    let held: u8 =
        locker.query_first("SELECT IS_USED_LOCK('rwsplit_pin_test') = CONNECTION_ID()").await.unwrap().unwrap();
    assert_eq!(held, 1, "the lock is held by this session's backend connection");
    assert_eq!(pins("get_lock"), 1);

    // Another client never sees this session's variables or temporary tables.
    let mut other = proxy.connect_db(&db).await;
    let greeting: Option<Option<String>> = other.query_first("SELECT @greeting").await.unwrap();
    assert_eq!(greeting, Some(None));
    assert!(other.query_drop("SELECT * FROM scratch").await.is_err());
}

#[tokio::test]
async fn replica_reads_follow_the_weights() {
    let cluster = Cluster::shared().await;
    let mut config = cluster.config();
    let replicas = cluster.replicas();
    for b in &mut config.backends {
        if b.port == replicas[0] {
            b.weight = 1;
        } else if b.port == replicas[1] {
            b.weight = 3;
        }
    }
    let proxy = TestProxy::start_with(cluster, config).await;
    let mut conn = proxy.connect().await;
    let mut counts: HashMap<u16, u32> = HashMap::new();
    for _ in 0..4000 {
        *counts.entry(port_of(&mut conn, "SELECT @@port").await).or_default() += 1;
    }
    let light = counts.get(&replicas[0]).copied().unwrap_or(0);
    let heavy = counts.get(&replicas[1]).copied().unwrap_or(0);
    assert_eq!(light + heavy, 4000, "every read went to a replica: {counts:?}");
    assert!((950..=1050).contains(&light), "weight 1 got {light} of 4000");
    assert!((2850..=3150).contains(&heavy), "weight 3 got {heavy} of 4000");
}

#[tokio::test]
async fn last_insert_id_and_row_count_are_right_under_concurrency() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let db = fresh_db(&proxy.cluster, "lastid").await;
    let mut setup = proxy.connect_db(&db).await;
    setup.query_drop("CREATE TABLE ids (id INT AUTO_INCREMENT PRIMARY KEY, owner INT)").await.unwrap();
    let mut tasks = Vec::new();
    for owner in 0..20u32 {
        let opts = proxy.opts(Some(&db));
        tasks.push(tokio::spawn(async move {
            let mut conn = mysql_async::Conn::new(opts).await.unwrap();
            for _ in 0..25 {
                conn.query_drop(format!("INSERT INTO ids (owner) VALUES ({owner})")).await.unwrap();
                let from_ok = conn.last_insert_id().unwrap();
                let (id, mine): (u64, u32) = conn
                    .query_first("SELECT LAST_INSERT_ID(), (SELECT owner FROM ids WHERE id = LAST_INSERT_ID())")
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(id, from_ok, "LAST_INSERT_ID() matches the insert's OK");
                assert_eq!(mine, owner, "the row with that id is this client's");
                // A read in between moves the session elsewhere; the id must survive it.
                let _: Option<u8> = conn.query_first("SELECT 1").await.unwrap();
                let again: u64 = conn.query_first("SELECT LAST_INSERT_ID()").await.unwrap().unwrap();
                assert_eq!(again, from_ok, "LAST_INSERT_ID() after another statement");
                conn.query_drop(format!("UPDATE ids SET owner = owner WHERE owner = {owner} OR id = 0")).await.unwrap();
                conn.query_drop(format!("UPDATE ids SET owner = {owner} WHERE id = {from_ok}")).await.unwrap();
                let rows: i64 = conn.query_first("SELECT ROW_COUNT()").await.unwrap().unwrap();
                assert_eq!(rows, 0, "ROW_COUNT() of the previous UPDATE (no row changed)");
                conn.query_drop(format!("DELETE FROM ids WHERE id = {from_ok} AND owner = {owner} AND 1 = 0"))
                    .await
                    .unwrap();
                let rows: i64 = conn.query_first("SELECT ROW_COUNT()").await.unwrap().unwrap();
                assert_eq!(rows, 0);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// What each client sets for itself and checks after every statement.
#[derive(Clone)]
struct Identity {
    time_zone: String,
    sql_mode: &'static str,
    charset: &'static str,
    schema: String,
}

async fn check_identity(conn: &mut mysql_async::Conn, me: &Identity, step: &str) {
    let row: (String, String, String, Option<String>) = conn
        .query_first("SELECT @@time_zone, @@sql_mode, @@character_set_client, DATABASE()")
        .await
        .unwrap_or_else(|e| panic!("{step}: {e}"))
        .unwrap();
    assert_eq!(row.0, me.time_zone, "time_zone after {step}");
    assert_eq!(row.1, me.sql_mode, "sql_mode after {step}");
    assert_eq!(row.2, me.charset, "character set after {step}");
    assert_eq!(row.3.as_deref(), Some(me.schema.as_str()), "schema after {step}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_share_twenty_backend_connections_without_leaking_state() {
    let cluster = Cluster::shared().await;
    let mut config = cluster.config();
    config.pool.max_connections_per_backend = 6;
    config.pool.checkout_timeout = Duration::from_secs(30);
    let dbs = [fresh_db(&cluster, "mux_a").await, fresh_db(&cluster, "mux_b").await];
    for db in &dbs {
        let mut c = cluster.primary_conn().await;
        c.query_drop(format!("CREATE TABLE `{db}`.events (id INT AUTO_INCREMENT PRIMARY KEY, client INT, n INT)"))
            .await
            .unwrap();
    }
    cluster.wait_replicas().await;
    let proxy = TestProxy::start_with(cluster, config).await;

    let mut tasks = Vec::new();
    for i in 0..200u32 {
        // Like most applications, every client names a schema in its DSN (sessions without one use
        // separate pools: a schema cannot be unselected on a backend connection).
        let opts = proxy.opts(Some(&dbs[0]));
        let me = Identity {
            time_zone: format!("+{:02}:{:02}", i % 12, (i / 12) % 4 * 15),
            sql_mode: ["STRICT_ALL_TABLES", "NO_ENGINE_SUBSTITUTION", "", "ONLY_FULL_GROUP_BY,NO_ZERO_DATE"]
                [i as usize % 4],
            charset: ["utf8mb4", "latin1", "utf8mb3"][i as usize % 3],
            schema: dbs[i as usize % 2].clone(),
        };
        tasks.push(tokio::spawn(async move {
            let mut conn = mysql_async::Conn::new(opts).await.unwrap();
            conn.query_drop(format!("USE `{}`", me.schema)).await.unwrap();
            conn.query_drop(format!("SET time_zone = '{}', sql_mode = '{}'", me.time_zone, me.sql_mode)).await.unwrap();
            conn.query_drop(format!("SET NAMES {}", me.charset)).await.unwrap();
            check_identity(&mut conn, &me, "setup").await;
            for n in 0..6 {
                conn.query_drop(format!("INSERT INTO events (client, n) VALUES ({i}, {n})")).await.unwrap();
                check_identity(&mut conn, &me, "insert").await;
                let _: Vec<(u32, u32)> =
                    conn.query("SELECT client, n FROM events ORDER BY id DESC LIMIT 3").await.unwrap();
                check_identity(&mut conn, &me, "read").await;
                conn.query_drop("BEGIN").await.unwrap();
                let mine: u64 = conn
                    .query_first(format!("SELECT COUNT(*) FROM events WHERE client = {i} FOR UPDATE"))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(mine, n + 1, "a transaction reads its own client's rows on the primary");
                conn.query_drop(format!("UPDATE events SET n = n WHERE client = {i}")).await.unwrap();
                check_identity(&mut conn, &me, "inside a transaction").await;
                conn.query_drop("COMMIT").await.unwrap();
                check_identity(&mut conn, &me, "commit").await;
            }
            conn.disconnect().await.unwrap();
        }));
    }
    let mut peak = 0;
    let watcher = async {
        loop {
            peak = peak.max(proxy.handle.backend_connections());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let all = async {
        for t in tasks {
            t.await.unwrap();
        }
    };
    tokio::select! {
        _ = all => {}
        _ = watcher => unreachable!(),
    }
    let peak = peak.max(proxy.handle.backend_connections());
    eprintln!("peak backend connections: {peak}");
    assert!(peak <= 20, "200 clients used {peak} backend connections");
    assert!(peak >= 3, "connections were actually used: {peak}");
}

#[tokio::test]
async fn reads_skip_a_replica_that_cannot_be_reached() {
    let cluster = Cluster::shared().await;
    let mut config = cluster.config();
    // Nothing listens on this port: every connect is refused at once.
    config.backends.push(BackendConfig {
        name: BackendId::new("dead"),
        host: "127.0.0.1".into(),
        port: free_port(),
        weight: 100,
        role: Role::Replica,
    });
    let replicas = cluster.replicas();
    let proxy = TestProxy::start_with(cluster, config).await;
    let mut conn = proxy.connect().await;
    for _ in 0..50 {
        let port = port_of(&mut conn, "SELECT @@port").await;
        assert!(replicas.contains(&port), "read answered by {port}");
    }
}

#[tokio::test]
async fn old_clients_get_eof_packets_and_no_session_state() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    for deprecate_eof in [false, true] {
        let extra = if deprecate_eof { CapabilityFlags::CLIENT_DEPRECATE_EOF } else { CapabilityFlags::empty() };
        let (mut client, reply) = RawClient::login_with(proxy.port(), "app", "app", extra).await;
        assert_eq!(reply.first(), Some(&0));
        let packets = client.query_packets("SELECT 'a' AS x, 2 AS y UNION ALL SELECT 'b', 3", deprecate_eof).await;
        let shape: Vec<u8> = packets.iter().map(|p| p[0]).collect();
        if deprecate_eof {
            assert_eq!(packets.len(), 6, "count, 2 columns, 2 rows, OK: {shape:x?}");
        } else {
            assert_eq!(packets.len(), 7, "count, 2 columns, EOF, 2 rows, EOF: {shape:x?}");
            assert_eq!(&packets[3][..], &[0xFE, 0, 0, 0x02, 0], "EOF after the column definitions");
            assert_eq!(packets[6].len(), 5, "a classic EOF ends the rows");
        }
        assert_eq!(&packets[packets.len() - 3][..], b"\x01a\x012", "rows pass unchanged");
        // A SET reports state changes to the proxy; this client did not ask for them.
        let ok = client.query_packets("SET time_zone = '+03:00'", deprecate_eof).await;
        assert_eq!(ok.len(), 1);
        let status = u16::from_le_bytes([ok[0][3], ok[0][4]]);
        assert_eq!(status & 0x4000, 0, "no SESSION_STATE_CHANGED for a client without SESSION_TRACK");
        assert_eq!(ok[0].len(), 7, "no session-state bytes: {:?}", ok[0]);
    }
}

#[tokio::test]
async fn a_client_gone_mid_transaction_leaves_nothing_behind_in_the_pool() {
    let cluster = Cluster::shared().await;
    let mut config = cluster.config();
    // One connection per pool: the next session would get the very same backend connection.
    config.pool.max_connections_per_backend = 1;
    let db = fresh_db(&cluster, "gone").await;
    let proxy = TestProxy::start_with(cluster, config).await;
    let mut setup = proxy.connect_db(&db).await;
    setup.query_drop("CREATE TABLE g (id INT PRIMARY KEY)").await.unwrap();
    drop(setup);
    for pinned in [false, true] {
        // The same client flags, collation and schema as the next session: the same pool.
        let mut gone = proxy.connect_db(&db).await;
        if pinned {
            gone.query_drop("CREATE TEMPORARY TABLE secret (i INT)").await.unwrap();
        } else {
            gone.query_drop("BEGIN").await.unwrap();
            gone.query_drop("INSERT INTO g VALUES (1)").await.unwrap();
        }
        drop(gone);
        let mut next = proxy.connect_db(&db).await;
        let (in_trx, rows): (u8, u64) = next
            .query_first("/* rwsplit:primary */ SELECT @@in_transaction, (SELECT COUNT(*) FROM g)")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((in_trx, rows), (0, 0), "no transaction and no uncommitted row leak to the next session");
        let temp = next.query_drop("/* rwsplit:primary */ SELECT * FROM secret").await;
        assert!(temp.is_err(), "no temporary table leaks to the next session");
    }
}

/// A read that times out is not retried on another replica: the first copy is still running.
#[tokio::test]
async fn a_read_that_timed_out_is_not_run_again_elsewhere() {
    let cluster = Cluster::shared().await;
    let mut config = cluster.config();
    config.pool.query_timeout = Duration::from_millis(500);
    let proxy = TestProxy::start_with(cluster.clone(), config).await;
    let mut conn = proxy.connect().await;
    let marker = format!("timeout_marker_{}", std::process::id());
    let sql = format!("SELECT SLEEP(3) AS {marker}");
    assert!(conn.query_drop(&sql).await.is_err(), "the read times out");
    let mut running = 0;
    for port in cluster.replicas() {
        let mut direct = mysql_async::Conn::new(common::direct_opts(port, None)).await.unwrap();
        let n: u64 = direct
            .query_first(format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%{marker}%' AND INFO NOT LIKE '%PROCESSLIST%'"
            ))
            .await
            .unwrap()
            .unwrap();
        running += n;
    }
    assert_eq!(running, 1, "exactly one replica runs the statement");
}
