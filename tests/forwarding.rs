//! The raw-forwarding proxy against the real cluster: CRUD with mysql_async and the mysql CLI,
//! multi-statements, large and long results, errors, bad credentials, disconnects, bad packets.

mod common;

use std::process::Command;
use std::time::Duration;

use common::raw::{err_code, RawClient};
use common::{eventually, fresh_db, server_error, Cluster, TestProxy};
use mysql_async::prelude::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn crud_through_the_proxy_with_mysql_async() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let db = fresh_db(&proxy.cluster, "crud").await;
    let mut conn = proxy.connect_db(&db).await;
    conn.query_drop("CREATE TABLE items (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(50), price DECIMAL(10,2))")
        .await
        .unwrap();
    conn.query_drop("INSERT INTO items (name, price) VALUES ('apple', 1.25), ('pear', 2.50)").await.unwrap();
    assert_eq!(conn.affected_rows(), 2);
    assert_eq!(conn.last_insert_id(), Some(1));
    conn.query_drop("UPDATE items SET price = price * 2 WHERE name = 'pear'").await.unwrap();
    assert_eq!(conn.affected_rows(), 1);
    assert!(conn.info().contains("Rows matched: 1"), "info passes through: {:?}", conn.info());
    conn.query_drop("DELETE FROM items WHERE name = 'apple'").await.unwrap();
    let rows: Vec<(u32, String, String, u16)> =
        conn.query("/* rwsplit:primary */ SELECT id, name, CAST(price AS CHAR), @@port FROM items").await.unwrap();
    assert_eq!(rows, vec![(2, "pear".to_string(), "5.00".to_string(), proxy.cluster.primary)]);

    // Verify on the primary directly.
    let mut direct = proxy.cluster.primary_conn().await;
    let names: Vec<String> = direct.query(format!("SELECT name FROM `{db}`.items")).await.unwrap();
    assert_eq!(names, vec!["pear"]);
}

#[tokio::test]
async fn crud_through_the_proxy_with_the_mysql_cli() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let db = fresh_db(&proxy.cluster, "cli").await;
    let port = proxy.port().to_string();
    let script = format!(
        "CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(20)); \
         INSERT INTO `{db}`.t VALUES (1, 'one'), (2, 'two'); \
         UPDATE `{db}`.t SET v = 'TWO' WHERE id = 2; \
         DELETE FROM `{db}`.t WHERE id = 1; \
         /* rwsplit:primary */ SELECT id, v, @@port FROM `{db}`.t;"
    );
    // The CLI runs in a blocking thread: the proxy lives on this test's runtime.
    let out = tokio::task::spawn_blocking(move || {
        Command::new("mysql")
            .args([
                "-h127.0.0.1",
                "-P",
                &port,
                "-uapp",
                "-papp",
                "--batch",
                "--skip-column-names",
                "--comments",
                "-e",
                &script,
            ])
            .output()
            .expect("the mysql CLI is installed (scripts/test.sh installs mariadb-client)")
    })
    .await
    .unwrap();
    assert!(out.status.success(), "mysql CLI failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("2\tTWO\t{}\n", proxy.cluster.primary));
}

#[tokio::test]
async fn cli_reports_server_errors_and_bad_passwords() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let port = proxy.port().to_string();
    let out = tokio::task::spawn_blocking(move || {
        let bad_table = Command::new("mysql")
            .args(["-h127.0.0.1", "-P", &port, "-uapp", "-papp", "-e", "SELECT * FROM no_such_db.no_such_table"])
            .output()
            .unwrap();
        let bad_pass = Command::new("mysql")
            .args(["-h127.0.0.1", "-P", &port, "-uapp", "-pnope", "-e", "SELECT 1"])
            .output()
            .unwrap();
        (bad_table, bad_pass)
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.0.stderr);
    assert!(stderr.contains("ERROR 1146 (42S02)") || stderr.contains("ERROR 1049 (42000)"), "{stderr}");
    let stderr = String::from_utf8_lossy(&out.1.stderr);
    assert!(
        stderr.contains("ERROR 1045 (28000): Access denied for user 'app'@'127.0.0.1' (using password: YES)"),
        "{stderr}"
    );
}

#[tokio::test]
async fn one_multi_statement_packet_returns_three_result_sets() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let mut conn = proxy.connect().await;
    let mut result =
        conn.query_iter("SELECT 1 AS a; SELECT 'x' AS b, 'y' AS c; SELECT seq FROM mysql.seq_1_to_5").await.unwrap();
    let first: Vec<u8> = result.collect().await.unwrap();
    let second: Vec<(String, String)> = result.collect().await.unwrap();
    let third: Vec<u32> = result.collect().await.unwrap();
    assert!(result.is_empty(), "exactly three result sets");
    drop(result);
    assert_eq!(first, vec![1]);
    assert_eq!(second, vec![("x".to_string(), "y".to_string())]);
    assert_eq!(third, vec![1, 2, 3, 4, 5]);
    // The connection is still in sync afterwards.
    let v: u32 = conn.query_first("SELECT 42").await.unwrap().unwrap();
    assert_eq!(v, 42);
}

#[tokio::test]
async fn server_errors_pass_through_with_code_and_sqlstate() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let db = fresh_db(&proxy.cluster, "err").await;
    let mut conn = proxy.connect_db(&db).await;
    let err = conn.query_drop("SELECT * FROM missing_table").await.unwrap_err();
    let (code, state, message) = server_error(&err);
    assert_eq!((code, state.as_str()), (1146, "42S02"));
    assert_eq!(message, format!("Table '{db}.missing_table' doesn't exist"));
    let err = conn.query_drop("SELEC 1").await.unwrap_err();
    assert_eq!(server_error(&err).0, 1064);
    // An error in the middle of a multi-statement ends the response there.
    let err = conn.query_iter("SELECT 1; SELECT * FROM missing_table; SELECT 3").await;
    match err {
        Err(e) => assert_eq!(server_error(&e).0, 1146),
        Ok(mut r) => {
            let _: Vec<u8> = r.collect().await.unwrap();
            let e = r.collect::<u8>().await.unwrap_err();
            assert_eq!(server_error(&e).0, 1146);
        }
    }
    let v: u8 = conn.query_first("SELECT 7").await.unwrap().unwrap();
    assert_eq!(v, 7, "the connection stays usable after errors");
}

#[tokio::test]
async fn bad_password_and_unknown_user_get_access_denied() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    for (user, pass) in [("app", "wrong"), ("nobody", "app"), ("app", "")] {
        let opts = mysql_async::OptsBuilder::from_opts(proxy.opts(None)).user(Some(user)).pass(Some(pass));
        let err = mysql_async::Conn::new(opts).await.unwrap_err();
        let (code, state, message) = server_error(&err);
        assert_eq!((code, state.as_str()), (1045, "28000"), "{user}/{pass}");
        let using = if pass.is_empty() { "NO" } else { "YES" };
        assert_eq!(message, format!("Access denied for user '{user}'@'127.0.0.1' (using password: {using})"));
    }
}

#[tokio::test]
async fn a_20_mib_blob_round_trips() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let db = fresh_db(&proxy.cluster, "blob").await;
    let mut conn = proxy.connect_db(&db).await;
    conn.query_drop("CREATE TABLE blobs (id INT PRIMARY KEY, b LONGBLOB)").await.unwrap();
    let blob: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    // A 40 MiB hex literal: the command itself spans three frames.
    let hex: String = blob.iter().map(|b| format!("{b:02x}")).collect();
    conn.query_drop(format!("INSERT INTO blobs VALUES (1, x'{hex}')")).await.unwrap();
    let back: Vec<u8> =
        conn.query_first("/* rwsplit:primary */ SELECT b FROM blobs WHERE id = 1").await.unwrap().unwrap();
    assert_eq!(back.len(), blob.len());
    assert!(back == blob, "blob bytes differ after the round trip");
    proxy.cluster.wait_replicas().await;
    let replica_copy: Vec<u8> = conn.query_first("SELECT b FROM blobs WHERE id = 1").await.unwrap().unwrap();
    assert!(replica_copy == blob, "the blob read from a replica differs");
}

#[tokio::test]
async fn a_client_that_disconnects_mid_result_leaks_no_backend_connection() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let (mut client, reply) = RawClient::login(proxy.port(), "app", "app").await;
    assert_eq!(reply.first(), Some(&0), "login OK");
    // Inside a transaction the session keeps one backend connection, so CONNECTION_ID() names
    // the thread that will stream the big result.
    client.send_packet(0, b"\x03BEGIN").await;
    assert_eq!(client.read_packet().await.unwrap().1.first(), Some(&0));
    client.send_packet(0, b"\x03SELECT CONNECTION_ID()").await;
    let mut thread_id = None;
    while let Some((_, p)) = client.read_packet().await {
        if p.first() == Some(&0xFE) && p.len() < 9 {
            break;
        }
        if let Some(text) = p.get(1..).filter(|_| p.len() > 1 && p[0] as usize == p.len() - 1) {
            thread_id = std::str::from_utf8(text).ok().and_then(|s| s.parse::<u64>().ok());
        }
    }
    let thread_id = thread_id.expect("backend thread id");
    client.send_packet(0, b"\x03SELECT seq, REPEAT('x', 200) FROM mysql.seq_1_to_5000000").await;
    for _ in 0..100 {
        client.read_packet().await.expect("some rows arrive");
    }
    drop(client);

    let cluster = proxy.cluster.clone();
    let gone = eventually(Duration::from_secs(20), || {
        let cluster = cluster.clone();
        async move {
            let mut direct = cluster.primary_conn().await;
            let q = format!("SELECT COUNT(*) FROM information_schema.processlist WHERE id = {thread_id}");
            let n: Option<u64> = direct.query_first(q).await.unwrap();
            let _ = direct.disconnect().await;
            n == Some(0)
        }
    })
    .await;
    assert!(gone, "backend thread {thread_id} still exists after its client disconnected");
    assert!(eventually(Duration::from_secs(5), || async { proxy.handle.client_count() == 0 }).await);
}

#[tokio::test]
async fn malformed_and_unknown_packets_get_errors_and_others_keep_working() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let mut bystander = proxy.connect().await;

    // Garbage instead of a handshake response: ERR or close, never a hang.
    let mut garbage = RawClient::open(proxy.port()).await;
    garbage.send_packet(1, b"\x01\x02\x03").await;
    if let Some((_, p)) = garbage.read_packet().await {
        assert_eq!(p.first(), Some(&0xFF), "an ERR packet");
    }
    assert_eq!(garbage.drain_until_closed().await, 0, "closed after the error");

    // A frame header promising more than follows, then EOF.
    let mut truncated = RawClient::open(proxy.port()).await;
    truncated.send_raw(&[0xFF, 0xFF, 0x00, 0x01, 1, 2, 3]).await;
    truncated.stream.shutdown().await.unwrap();
    assert!(truncated.drain_until_closed().await <= 1);

    // After login: an unknown command gets 1047 and the connection stays usable.
    let (mut client, _) = RawClient::login(proxy.port(), "app", "app").await;
    client.send_packet(0, b"\x99whatever").await;
    let (seq, p) = client.read_packet().await.unwrap();
    assert_eq!((seq, err_code(&p)), (1, Some((1047, "08S01".to_string()))));
    client.send_packet(0, b"").await;
    let (_, p) = client.read_packet().await.unwrap();
    assert_eq!(err_code(&p).map(|e| e.0), Some(1047), "an empty command packet");
    client.send_packet(0, b"\x03SELECT 1").await;
    let (_, p) = client.read_packet().await.unwrap();
    assert_eq!(&p[..], &[1], "one column: the connection still works");
    client.drain_until_closed_or_ok().await;

    let v: u8 = bystander.query_first("SELECT 5").await.unwrap().unwrap();
    assert_eq!(v, 5, "other clients are unaffected");
}

#[tokio::test]
async fn an_oversized_packet_gets_1153_and_a_close() {
    let cluster = Cluster::shared().await;
    let mut config = cluster.config();
    config.server.max_packet_size = 1024 * 1024;
    let proxy = TestProxy::start_with(cluster, config).await;
    let (mut client, _) = RawClient::login(proxy.port(), "app", "app").await;
    let mut big = vec![b'x'; 2 * 1024 * 1024];
    big[0] = 0x03;
    client.send_packet(0, &big).await;
    let (_, p) = client.read_packet().await.expect("an ERR before the close");
    assert_eq!(err_code(&p), Some((1153, "08S01".to_string())));
    assert_eq!(client.drain_until_closed().await, 0);
    let mut conn = proxy.connect().await;
    let v: u8 = conn.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(v, 1);
}

trait DrainOk {
    async fn drain_until_closed_or_ok(&mut self);
}

impl DrainOk for RawClient {
    /// Reads the rest of a simple result set (up to its closing OK/EOF).
    async fn drain_until_closed_or_ok(&mut self) {
        while let Some((_, p)) = self.read_packet().await {
            if p.first() == Some(&0xFE) && p.len() < 0xFF_FFFF {
                return;
            }
        }
    }
}
