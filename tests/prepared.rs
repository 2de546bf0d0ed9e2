//! Protocol completeness against the real cluster: server-side prepared statements across
//! backends (types, long data, cursors, bounded server statements), COM_CHANGE_USER,
//! COM_RESET_CONNECTION, KILL, LOAD DATA LOCAL INFILE, COM_FIELD_LIST, COM_STATISTICS and
//! COM_SET_OPTION.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::raw::{err_code, RawClient};
use common::{direct_opts, fresh_db, server_error, Cluster, TestProxy};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};

/// Every value of a row with its column's type, flags, charset and decimals.
fn describe(row: &Row) -> Vec<(String, u8, u16, u16, u8, Value)> {
    row.columns_ref()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                c.name_str().into_owned(),
                c.column_type() as u8,
                c.flags().bits(),
                c.character_set(),
                c.decimals(),
                row.as_ref(i).cloned().unwrap_or(Value::NULL),
            )
        })
        .collect()
}

#[tokio::test]
async fn prepared_statements_return_what_a_direct_connection_returns() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let db = fresh_db(&proxy.cluster, "ps_types").await;
    let mut direct = Conn::new(direct_opts(proxy.cluster.primary, Some(&db))).await.unwrap();
    direct
        .query_drop(
            "CREATE TABLE t (id INT PRIMARY KEY, ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT, \
             i INT, iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED, f FLOAT, d DOUBLE, de DECIMAL(30,10), \
             s VARCHAR(100) CHARSET utf8mb4, b BLOB, dt DATE, tm TIME(6), dtm DATETIME(6), ts TIMESTAMP(3) NULL, \
             bt BIT(12), e ENUM('x','y'), j JSON, n INT NULL)",
        )
        .await
        .unwrap();
    let rows: Vec<Vec<Value>> = vec![
        vec![
            1.into(),
            i8::MIN.into(),
            u8::MAX.into(),
            i16::MIN.into(),
            (-8_388_608i32).into(),
            i32::MIN.into(),
            u32::MAX.into(),
            i64::MIN.into(),
            u64::MAX.into(),
            1.5f32.into(),
            (-2.25e300f64).into(),
            "-12345678901234567890.0123456789".into(),
            "héllo wörld 🦀 ✓".into(),
            Value::Bytes(vec![0, 1, 2, 255, 0]),
            Value::Date(1999, 12, 31, 0, 0, 0, 0),
            Value::Time(true, 2, 3, 4, 5, 123_456),
            Value::Date(2024, 2, 29, 23, 59, 58, 999_999),
            Value::Date(2020, 1, 1, 0, 0, 0, 5000),
            Value::Bytes(vec![0x0F, 0xFF]),
            "y".into(),
            r#"{"a": [1, 2, {"b": null}]}"#.into(),
            Value::NULL,
        ],
        vec![
            2.into(),
            i8::MAX.into(),
            0u8.into(),
            i16::MAX.into(),
            8_388_607i32.into(),
            i32::MAX.into(),
            0u32.into(),
            i64::MAX.into(),
            0u64.into(),
            (-0.0f32).into(),
            f64::MIN_POSITIVE.into(),
            "0.0000000001".into(),
            "".into(),
            Value::Bytes(vec![]),
            Value::Date(1000, 1, 1, 0, 0, 0, 0),
            Value::Time(false, 34, 22, 59, 59, 0),
            Value::Date(1970, 1, 1, 0, 0, 1, 0),
            Value::NULL,
            Value::Bytes(vec![0, 0]),
            "x".into(),
            "[]".into(),
            7.into(),
        ],
    ];
    let insert = "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    let mut via_proxy = proxy.connect_db(&db).await;
    for row in &rows {
        via_proxy.exec_drop(insert, row.clone()).await.unwrap();
    }
    proxy.cluster.wait_replicas().await;
    let queries = [
        ("SELECT * FROM t WHERE id = ?", vec![Value::from(1)]),
        ("SELECT * FROM t WHERE id = ?", vec![Value::from(2)]),
        ("SELECT * FROM t WHERE id >= ? ORDER BY id", vec![Value::from(0)]),
        (
            "SELECT ? AS p1, ? AS p2, ? AS p3, ? AS p4",
            vec![Value::NULL, Value::from(-1i64), Value::from(u64::MAX), Value::from("ü")],
        ),
        ("SELECT id, de * 2, CONCAT(s, ?) FROM t ORDER BY id", vec![Value::from("!")]),
    ];
    for (sql, params) in queries {
        let expected: Vec<Row> = direct.exec(sql, params.clone()).await.unwrap();
        let got: Vec<Row> = via_proxy.exec(sql, params.clone()).await.unwrap();
        assert_eq!(got.len(), expected.len(), "{sql}");
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(describe(g), describe(e), "{sql}");
        }
        // The text protocol must agree too (same statement, literals inlined by the server).
        let text: Vec<Row> = via_proxy.query(format!("SELECT COUNT(*) FROM t WHERE id > {}", 0)).await.unwrap();
        assert_eq!(text.len(), 1);
    }
}

#[tokio::test]
async fn one_statement_executes_on_both_replicas_and_the_primary() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let mut conn = proxy.connect().await;
    let stmt = conn.prep("SELECT @@port + ?").await.unwrap();
    let mut seen = HashSet::new();
    for _ in 0..10 {
        let port: u16 = conn.exec_first(&stmt, (0,)).await.unwrap().unwrap();
        seen.insert(port);
    }
    conn.query_drop("BEGIN").await.unwrap();
    let in_trx: u16 = conn.exec_first(&stmt, (0,)).await.unwrap().unwrap();
    conn.query_drop("COMMIT").await.unwrap();
    assert_eq!(in_trx, proxy.cluster.primary, "inside a transaction the statement runs on the primary");
    seen.insert(in_trx);
    let all: HashSet<u16> = proxy.cluster.ports.iter().copied().collect();
    assert_eq!(seen, all, "the same prepared statement ran on every backend");
}

async fn prepared_count(port: u16) -> u64 {
    let mut conn = Conn::new(direct_opts(port, None)).await.unwrap();
    let row: (String, u64) = conn.query_first("SHOW GLOBAL STATUS LIKE 'Prepared_stmt_count'").await.unwrap().unwrap();
    conn.disconnect().await.unwrap();
    row.1
}

#[tokio::test]
async fn ten_thousand_prepare_cycles_keep_server_statements_bounded() {
    let cluster = Cluster::shared().await;
    let mut config = cluster.config();
    config.pool.max_prepared_per_connection = 16;
    config.pool.max_connections_per_backend = 2;
    let proxy = TestProxy::start_with(cluster, config).await;
    let before: Vec<u64> = futures_counts(&proxy.cluster.ports).await;
    let mut conn = proxy.connect().await;
    let mut peak = [0u64; 3];
    for i in 0..10_000u32 {
        // A distinct statement each time: nothing can be reused.
        let stmt = conn.prep(format!("SELECT ? + {i}")).await.unwrap();
        let v: u32 = conn.exec_first(&stmt, (1,)).await.unwrap().unwrap();
        assert_eq!(v, i + 1);
        conn.close(stmt).await.unwrap();
        if i % 2500 == 0 {
            for (p, port) in peak.iter_mut().zip(&proxy.cluster.ports) {
                *p = (*p).max(prepared_count(*port).await);
            }
        }
    }
    let after = futures_counts(&proxy.cluster.ports).await;
    for (i, port) in proxy.cluster.ports.iter().enumerate() {
        let grown = after[i].max(peak[i]).saturating_sub(before[i]);
        // 2 connections per backend x 16 statements, plus room for other tests running alongside.
        assert!(grown <= 32 + 40, "backend {port}: Prepared_stmt_count grew by {grown}");
    }
}

async fn futures_counts(ports: &[u16]) -> Vec<u64> {
    let mut out = Vec::new();
    for &p in ports {
        out.push(prepared_count(p).await);
    }
    out
}

/// Binary-protocol helpers for the raw client.
fn stmt_payload(cmd: u8, id: u32, rest: &[u8]) -> Vec<u8> {
    let mut p = vec![cmd];
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(rest);
    p
}

async fn raw_prepare(client: &mut RawClient, sql: &str) -> (u32, u16, u16) {
    let mut p = vec![0x16];
    p.extend_from_slice(sql.as_bytes());
    client.send_packet(0, &p).await;
    let (_, ok) = client.read_packet().await.unwrap();
    assert_eq!(ok[0], 0, "prepare OK: {:?}", err_code(&ok));
    let id = u32::from_le_bytes([ok[1], ok[2], ok[3], ok[4]]);
    let columns = u16::from_le_bytes([ok[5], ok[6]]);
    let params = u16::from_le_bytes([ok[7], ok[8]]);
    for _ in 0..(columns + params) {
        client.read_packet().await.unwrap();
    }
    (id, columns, params)
}

#[tokio::test]
async fn long_data_and_cursors_work_through_the_proxy() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let (mut client, _) = RawClient::login(proxy.port(), "app", "app").await;

    // Long data: three 100 KB chunks for one BLOB parameter.
    let (id, _, params) = raw_prepare(&mut client, "SELECT LENGTH(?), MD5(?)").await;
    assert_eq!(params, 2);
    let chunk = vec![b'z'; 100_000];
    for param in [0u16, 1] {
        for _ in 0..3 {
            let mut rest = param.to_le_bytes().to_vec();
            rest.extend_from_slice(&chunk);
            client.send_packet(0, &stmt_payload(0x18, id, &rest)).await;
        }
    }
    // flags 0, iterations 1, null bitmap, new-params-bound 1, both parameters BLOB.
    let exec = stmt_payload(0x17, id, &[0, 1, 0, 0, 0, 0, 1, 252, 0, 252, 0]);
    client.send_packet(0, &exec).await;
    let packets = client.query_reply(true).await;
    let row = &packets[packets.len() - 2];
    // Binary row: 0x00, null bitmap (1 byte), LENGTH() as a 4-byte INT, then the MD5 text.
    let length = u32::from_le_bytes(row[2..6].try_into().unwrap());
    assert_eq!(length, 300_000, "three long-data chunks were joined");
    assert_eq!(row[6], 32);
    let md5 = std::str::from_utf8(&row[7..]).unwrap();
    let mut direct = Conn::new(direct_opts(proxy.cluster.primary, None)).await.unwrap();
    let expected: String = direct.query_first("SELECT MD5(REPEAT('z', 300000))").await.unwrap().unwrap();
    assert_eq!(md5, expected);

    // A cursor: execute with CURSOR_TYPE_READ_ONLY, then fetch in batches of 4.
    let (id, columns, _) = raw_prepare(&mut client, "SELECT seq FROM mysql.seq_1_to_10").await;
    assert_eq!(columns, 1);
    client.send_packet(0, &stmt_payload(0x17, id, &[1, 1, 0, 0, 0])).await;
    let header = client.query_reply(true).await;
    let last = header.last().unwrap();
    assert_eq!(last[0], 0xFE);
    assert_ne!(u16::from_le_bytes([last[3], last[4]]) & 0x0040, 0, "SERVER_STATUS_CURSOR_EXISTS");
    let mut values = Vec::new();
    loop {
        client.send_packet(0, &stmt_payload(0x1C, id, &4u32.to_le_bytes())).await;
        let mut done = false;
        while let Some((_, p)) = client.read_packet().await {
            if p[0] == 0xFE && p.len() < 0xFF_FFFF {
                done = u16::from_le_bytes([p[3], p[4]]) & 0x0080 != 0;
                break;
            }
            assert_eq!(p[0], 0, "a binary row, not {:?}", err_code(&p));
            values.push(u64::from_le_bytes(p[2..10].try_into().unwrap()));
        }
        if done || values.len() > 10 {
            break;
        }
    }
    assert_eq!(values, (1..=10).collect::<Vec<u64>>());
    assert!(proxy.handle.pin_counts().iter().any(|(l, n)| *l == "cursor" && *n >= 1));
    // Closing the statement releases the cursor and its pin; an unknown id gets 1243.
    client.send_packet(0, &stmt_payload(0x19, id, &[])).await;
    client.send_packet(0, &stmt_payload(0x1C, id, &4u32.to_le_bytes())).await;
    let (_, p) = client.read_packet().await.unwrap();
    assert_eq!(err_code(&p).map(|e| e.0), Some(1243));
}

#[tokio::test]
async fn change_user_and_reset_connection_start_clean_sessions() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let db = fresh_db(&proxy.cluster, "reset").await;
    let replicas = proxy.cluster.replicas();
    let mut conn = proxy.connect_db(&db).await;
    conn.query_drop("SET @v = 5, time_zone = '+05:00'").await.unwrap();
    conn.query_drop("CREATE TEMPORARY TABLE tmp (i INT)").await.unwrap();
    let port: u16 = conn.query_first("SELECT @@port").await.unwrap().unwrap();
    assert_eq!(port, proxy.cluster.primary, "pinned");
    assert!(conn.reset().await.unwrap());
    let (v, tz): (Option<u32>, String) = conn.query_first("SELECT @v, @@time_zone").await.unwrap().unwrap();
    assert_eq!((v, tz.as_str()), (None, "SYSTEM"), "variables are gone after COM_RESET_CONNECTION");
    assert!(conn.query_drop("SELECT * FROM tmp").await.is_err(), "temporary table is gone");
    let port: u16 = conn.query_first("SELECT @@port").await.unwrap().unwrap();
    assert!(replicas.contains(&port), "the pin was released");

    conn.query_drop("SET @w = 1").await.unwrap();
    let opts = mysql_async::ChangeUserOpts::default()
        .with_user(Some("app".into()))
        .with_pass(Some("app".into()))
        .with_db_name(Some(db.clone()));
    conn.change_user(opts).await.unwrap();
    let (w, current): (Option<u32>, Option<String>) = conn.query_first("SELECT @w, DATABASE()").await.unwrap().unwrap();
    assert_eq!((w, current.as_deref()), (None, Some(db.as_str())));
    let bad = mysql_async::ChangeUserOpts::default().with_user(Some("app".into())).with_pass(Some("nope".into()));
    let err = conn.change_user(bad).await.unwrap_err();
    assert_eq!(server_error(&err).0, 1045);
}

#[tokio::test]
async fn kill_query_stops_a_sleep_within_a_second() {
    let cluster = Cluster::shared().await;
    let mut config = cluster.config();
    let mut other = config.users[0].clone();
    other.name = rwsplit::config::UserName::new("other");
    other.password = Some("other".into());
    other.backend_user = "app".into();
    other.backend_password = Some("app".into());
    config.users.push(other);
    let proxy = TestProxy::start_with(cluster, config).await;
    let sleeper = proxy.connect().await;
    let id = sleeper.id();
    let sleeping = common::sleep_in_background(&proxy.cluster, sleeper, 30).await;

    let opts = mysql_async::OptsBuilder::from_opts(proxy.opts(None)).user(Some("other")).pass(Some("other"));
    let mut intruder = Conn::new(opts).await.unwrap();
    let err = intruder.query_drop(format!("KILL QUERY {id}")).await.unwrap_err();
    assert_eq!(server_error(&err).0, 1095, "another user's connection ids are refused");

    let mut killer = proxy.connect().await;
    common::kill_query_interrupts(&mut killer, id, sleeping, Duration::from_secs(1)).await;
    let err = killer.query_drop("KILL QUERY 4000000000").await.unwrap_err();
    assert_eq!(server_error(&err).0, 1094);
}

#[tokio::test]
async fn load_data_local_infile_streams_100k_rows() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let db = fresh_db(&proxy.cluster, "load").await;
    let mut conn = proxy.connect_db(&db).await;
    conn.query_drop("CREATE TABLE l (id INT PRIMARY KEY, name VARCHAR(20))").await.unwrap();
    let path = std::env::temp_dir().join(format!("rwsplit-load-{}.csv", std::process::id()));
    let data: String = (1..=100_000).map(|i| format!("{i},name{i}\n")).collect();
    std::fs::write(&path, data).unwrap();
    let port = proxy.port().to_string();
    let script = format!("LOAD DATA LOCAL INFILE '{}' INTO TABLE `{db}`.l FIELDS TERMINATED BY ','", path.display());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("mysql")
            .args(["-h127.0.0.1", "-P", &port, "-uapp", "-papp", "--local-infile=1", "-e", &script])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    std::fs::remove_file(&path).ok();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let n: u64 = conn.query_first("/* rwsplit:primary */ SELECT COUNT(*) FROM l").await.unwrap().unwrap();
    assert_eq!(n, 100_000);
    let last: String =
        conn.query_first("/* rwsplit:primary */ SELECT name FROM l WHERE id = 100000").await.unwrap().unwrap();
    assert_eq!(last, "name100000");

    // A client that did not enable LOCAL INFILE is refused by the proxy, not by surprise.
    let (mut raw, _) = RawClient::login(proxy.port(), "app", "app").await;
    let packets = raw.query_packets(&format!("LOAD DATA LOCAL INFILE '/etc/hostname' INTO TABLE `{db}`.l"), true).await;
    assert_eq!(err_code(&packets[0]).map(|e| e.0), Some(1148));
}

#[tokio::test]
async fn field_list_statistics_and_set_option_answer() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let db = fresh_db(&proxy.cluster, "meta").await;
    let mut setup = proxy.connect_db(&db).await;
    setup.query_drop("CREATE TABLE f (a INT, b VARCHAR(3))").await.unwrap();
    proxy.cluster.wait_replicas().await;
    let (mut client, _) = RawClient::login(proxy.port(), "app", "app").await;
    let mut init = vec![0x02];
    init.extend_from_slice(db.as_bytes());
    client.send_packet(0, &init).await;
    assert_eq!(client.read_packet().await.unwrap().1[0], 0);
    client.send_packet(0, b"\x04f\x00").await;
    let defs = client.query_reply(true).await;
    assert_eq!(defs.len(), 3, "two column definitions and a terminator");
    client.send_packet(0, b"\x09").await;
    let (_, stats) = client.read_packet().await.unwrap();
    assert!(std::str::from_utf8(&stats).unwrap().contains("Uptime"), "{stats:?}");
    client.send_packet(0, b"\x1b\x01\x00").await;
    let (_, reply) = client.read_packet().await.unwrap();
    assert_eq!(reply[0], 0xFE);
    let packets = client.query_packets("SELECT 1; SELECT 2", true).await;
    assert_eq!(err_code(&packets[0]).map(|e| e.0), Some(1064), "multi-statements off after COM_SET_OPTION");
    // A statement on a connection without multi-statements, then back on: the session must not
    // keep using the pool it used a moment ago (its connections were opened without the flag).
    let one = client.query_packets("SELECT 1", true).await;
    assert_eq!(err_code(&one[0]), None);
    client.send_packet(0, b"\x1b\x00\x00").await;
    let (_, reply) = client.read_packet().await.unwrap();
    assert_eq!(reply[0], 0xFE);
    let first = client.query_packets("SELECT 1; SELECT 2", true).await;
    assert_eq!(err_code(&first[0]), None, "multi-statements on again after COM_SET_OPTION");
    let second = client.query_reply(true).await;
    assert!(second.iter().any(|p| p.as_ref() == b"\x012"), "the second result set arrives: {second:?}");
}
