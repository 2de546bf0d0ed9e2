//! Hostile peers (issue 13): the admin port checks the framing of everything a client sends
//! before opensrv-mysql reads it, so an oversized frame or a handshake trickled in byte by byte is
//! cut off instead of growing memory or holding the connection; real logins keep working.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, TestProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the proxy closes the connection; how long that took (or `None` within `limit`).
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

async fn admin_login_works(proxy: &TestProxy) {
    let out = common::ops::admin_cli(proxy.handle.admin_addr().port(), "admin", "SHOW BACKENDS").await;
    let out = out.expect("the mysql CLI logs in to the admin port after the attack");
    assert!(out.lines().count() > 1, "{out}");
}

#[tokio::test]
async fn an_oversized_frame_on_the_admin_port_is_refused_before_login() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let mut stream = TcpStream::connect(proxy.handle.admin_addr()).await.unwrap();
    let mut greeting = [0u8; 512];
    let n = stream.read(&mut greeting).await.unwrap();
    assert!(n > 4, "the admin port greets");
    // A 16 MiB frame header (a continuation frame follows it in the attack), then some of it.
    stream.write_all(&[0xFF, 0xFF, 0xFF, 1]).await.unwrap();
    stream.write_all(&[b'x'; 4096]).await.ok();
    let closed = closed_within(&mut stream, Duration::from_secs(3)).await;
    assert!(closed.is_some(), "the connection is closed at the header, not left waiting for 16 MiB");
    admin_login_works(&proxy).await;
}

#[tokio::test]
async fn a_trickled_admin_handshake_is_cut_at_its_deadline() {
    let cluster = Cluster::shared().await;
    let mut config = cluster.config();
    config.server.handshake_timeout = Duration::from_secs(1);
    let proxy = TestProxy::start_with(cluster, config).await;
    let mut stream = TcpStream::connect(proxy.handle.admin_addr()).await.unwrap();
    let mut greeting = [0u8; 512];
    assert!(stream.read(&mut greeting).await.unwrap() > 4, "the admin port greets");
    // A handshake response header announcing 200 bytes, then one byte every 250 ms: each read
    // arrives well within the per-read limit, but the whole handshake takes far too long.
    stream.write_all(&[200, 0, 0, 1]).await.unwrap();
    let started = Instant::now();
    let mut cut = false;
    for _ in 0..24 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if stream.write_all(b"x").await.is_err() {
            cut = true;
            break;
        }
        let mut probe = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await {
            cut = true;
            break;
        }
    }
    assert!(cut, "still open after {:?} of trickling", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(4), "cut near the 1 s handshake budget: {:?}", started.elapsed());
    admin_login_works(&proxy).await;
}

/// PyMySQL with `autocommit=True` sends `SET AUTOCOMMIT = 1` right after login; the admin port
/// accepts such settings (it has no session state) instead of refusing the connection.
#[tokio::test]
async fn pymysql_with_autocommit_logs_in_to_the_admin_port() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let port = proxy.handle.admin_addr().port();
    let python = std::env::var("RWSPLIT_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".to_owned());
    let script = format!(
        "import pymysql\nc = pymysql.connect(host='127.0.0.1', port={port}, user='admin', password='admin', autocommit=True)\n\
         cur = c.cursor()\ncur.execute('SHOW BACKENDS')\nprint(len(cur.fetchall()))\n"
    );
    let output = tokio::task::spawn_blocking(move || std::process::Command::new(python).args(["-c", &script]).output())
        .await
        .unwrap()
        .expect("python3 with PyMySQL (scripts/test.sh installs python3-pymysql)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "pymysql could not use the admin port: {stderr}");
    let rows: u32 = String::from_utf8_lossy(&output.stdout).trim().parse().unwrap();
    assert_eq!(rows, 3, "one row per backend");
}

/// Sockets that connect and never log in take handshake places, not client slots; when the
/// handshake places run out the oldest silent socket is cut off, so real clients still log in.
#[tokio::test]
async fn a_flood_of_silent_sockets_does_not_keep_real_clients_out() {
    let cluster = Cluster::shared().await;
    let mut config = cluster.config();
    config.listen.max_client_connections = 40;
    config.listen.max_handshakes = 16;
    config.server.handshake_timeout = Duration::from_secs(20);
    let proxy = TestProxy::start_with(cluster, config).await;
    let mut silent = Vec::new();
    for _ in 0..100 {
        let mut stream = TcpStream::connect(("127.0.0.1", proxy.port())).await.unwrap();
        let mut greeting = [0u8; 256];
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut greeting)).await;
        silent.push(stream);
    }
    for n in 0..10 {
        let mut conn = tokio::time::timeout(Duration::from_secs(5), mysql_async::Conn::new(proxy.opts(None)))
            .await
            .unwrap_or_else(|_| panic!("login {n} hung"))
            .unwrap_or_else(|err| panic!("login {n} refused while silent sockets are open: {err}"));
        let one: Option<u8> = mysql_async::prelude::Queryable::query_first(&mut conn, "SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
    }
    let evicted = common::ops::metric(
        &proxy.handle,
        "rwsplit_client_connections_rejected_total",
        &[("reason", "handshake_evicted")],
    );
    assert!(evicted >= 84.0, "silent sockets were cut off to make room: {evicted}");
    drop(silent);
}

/// Password guessing is braked per address: after `listen.max_auth_failures` failures, logins from
/// the address are refused with ERR 1129 before any password is checked, on the admin port too.
#[tokio::test]
async fn repeated_wrong_passwords_block_the_address() {
    let cluster = Cluster::shared().await;
    let mut config = cluster.config();
    config.listen.max_auth_failures = 5;
    config.listen.auth_failure_decay = Duration::from_secs(3600);
    let proxy = TestProxy::start_with(cluster, config).await;
    let wrong = mysql_async::OptsBuilder::from_opts(proxy.opts(None)).pass(Some("wrong"));
    for attempt in 0..5 {
        let Err(err) = mysql_async::Conn::new(wrong.clone()).await else { panic!("a wrong password fails") };
        assert_eq!(common::server_error(&err).0, 1045, "attempt {attempt}");
    }
    let Err(err) = mysql_async::Conn::new(proxy.opts(None)).await else { panic!("the address is blocked now") };
    let (code, _, message) = common::server_error(&err);
    assert_eq!(code, 1129, "{message}");
    let admin = common::ops::admin_cli(proxy.handle.admin_addr().port(), "admin", "SHOW BACKENDS").await;
    assert!(admin.is_err(), "the admin port refuses the blocked address too");
    let blocked =
        common::ops::metric(&proxy.handle, "rwsplit_client_connections_rejected_total", &[("reason", "blocked")]);
    assert!(blocked >= 1.0, "blocked logins are counted");
}

/// With `admin.http_token` set, `POST /reload` and `GET /backends` need it; probes and metrics do not.
#[tokio::test]
async fn control_endpoints_need_the_token_and_probes_do_not() {
    let cluster = Cluster::shared().await;
    let mut config = cluster.config();
    config.admin.http_token = "hardening-token".into();
    let proxy = TestProxy::start_with(cluster, config).await;
    let addr = proxy.handle.http_addr();
    let request = |method: &str, path: &str, token: Option<&str>| {
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        format!("{method} {path} HTTP/1.1\r\nHost: rwsplit\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n")
    };
    async fn status(addr: std::net::SocketAddr, raw: String) -> u16 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(raw.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut out)).await.unwrap().unwrap();
        String::from_utf8_lossy(&out).split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap()
    }
    assert_eq!(status(addr, request("POST", "/reload", None)).await, 401);
    assert_eq!(status(addr, request("GET", "/backends", Some("wrong-token"))).await, 401);
    assert_eq!(status(addr, request("GET", "/backends", Some("hardening-token"))).await, 200);
    for open in ["/metrics", "/live", "/ready"] {
        assert_eq!(status(addr, request("GET", open, None)).await, 200, "{open}");
    }
}

/// Issue 13 item 8: a user whose backend password is wrong logs in to the proxy (its own password
/// is right) and then gets, for its first write and its first read, at once, an error saying that
/// the backend refused the proxy's login for it, not a wait for a failover that ends in "no
/// primary". Nobody else is affected: the backends stay in rotation for users with good
/// credentials.
#[tokio::test]
async fn a_wrong_backend_password_fails_at_once_and_says_so() {
    let cluster = Cluster::shared().await;
    let mut config = cluster.config();
    let mut broken = config.users[0].clone();
    broken.name = rwsplit::config::UserName::new("misconfigured");
    broken.password = Some("client-side".into());
    broken.backend_user = "app".into();
    broken.backend_password = Some("not-the-backend-password".into());
    config.users.push(broken);
    config.routing.failover_hold = Duration::from_secs(10);
    let proxy = TestProxy::start_with(cluster.clone(), config).await;
    // Both set, so that mysql_async sends no query of its own at connect.
    let opts = mysql_async::OptsBuilder::from_opts(proxy.opts(None))
        .user(Some("misconfigured"))
        .pass(Some("client-side"))
        .max_allowed_packet(Some(16 << 20))
        .wait_timeout(Some(28_800));
    let mut conn = mysql_async::Conn::new(opts).await.expect("the proxy's own login succeeds");
    let db = common::fresh_db(&cluster, "wrongpass").await;
    for sql in [format!("CREATE TABLE `{db}`.t (a INT)"), "SELECT 1".to_owned(), "SELECT @@port".to_owned()] {
        let started = Instant::now();
        let err = mysql_async::prelude::Queryable::query_drop(&mut conn, &sql).await.expect_err("the backend refuses");
        let waited = started.elapsed();
        let (code, state, message) = common::server_error(&err);
        assert_eq!((code, state.as_str()), (1045, "28000"), "{sql}: {message}");
        assert!(
            message.contains("refused the login")
                && message.contains("misconfigured")
                && message.contains("Access denied"),
            "{sql}: {message}"
        );
        assert!(waited < Duration::from_secs(5), "{sql}: answered after {waited:?}, as if waiting for a failover");
    }
    // The refusal is remembered for a few seconds: more statements do not each cost every
    // backend a failed login (which can lock the account or block the proxy's host).
    let denied = || async {
        let mut total = Vec::new();
        for &port in &cluster.ports {
            let mut direct = mysql_async::Conn::new(common::direct_opts(port, None)).await.unwrap();
            let row: Option<(String, u64)> = mysql_async::prelude::Queryable::query_first(
                &mut direct,
                "SHOW GLOBAL STATUS LIKE 'Access_denied_errors'",
            )
            .await
            .unwrap();
            total.push(row.map_or(0, |(_, n)| n));
            direct.disconnect().await.unwrap();
        }
        total
    };
    let before = denied().await;
    for i in 0..30 {
        let sql = if i % 2 == 0 { "SELECT @@port".to_owned() } else { format!("INSERT INTO `{db}`.t VALUES ({i})") };
        let err = mysql_async::prelude::Queryable::query_drop(&mut conn, &sql).await.expect_err("still refused");
        assert_eq!(common::server_error(&err).0, 1045, "{sql}");
    }
    let after = denied().await;
    let more: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    // A replica not tried yet may refuse once.
    assert!(more.iter().all(|&n| n <= 1), "failed backend logins per node during 30 statements: {more:?}");
    // The backends were not taken out of rotation for everybody else.
    let topology = proxy.handle.topology();
    assert!(topology.primary.is_some());
    for node in &topology.nodes {
        assert!(node.is_up() && (Some(node.index) == topology.primary || node.is_readable()), "{node:?}");
    }
    let mut good = proxy.connect().await;
    let port: u16 = mysql_async::prelude::Queryable::query_first(&mut good, "SELECT @@port").await.unwrap().unwrap();
    assert!(cluster.replicas().contains(&port), "reads still go to the replicas ({port})");
}
