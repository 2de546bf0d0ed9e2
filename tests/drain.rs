//! Graceful shutdown: readiness turns false, listeners close, idle clients are closed at once,
//! an open transaction may still commit within `shutdown.grace`, then everything closes; the real
//! binary does this on SIGTERM and exits 0, and a second signal forces it.

mod common;

use std::time::{Duration, Instant};

use common::ops::{config_text, http, ConfigFile};
use common::{eventually, free_port, fresh_db, Cluster, TestProxy};
use mysql_async::prelude::*;
use mysql_async::Conn;

async fn rows_on_primary(cluster: &Cluster, db: &str) -> i64 {
    let mut conn = cluster.primary_conn().await;
    let n: i64 = conn.query_first(format!("SELECT COUNT(*) FROM `{db}`.t")).await.unwrap().unwrap();
    conn.disconnect().await.unwrap();
    n
}

async fn table(proxy_opts: mysql_async::Opts, cluster: &Cluster, db: &str) {
    let mut conn = Conn::new(proxy_opts).await.unwrap();
    conn.query_drop(format!("CREATE TABLE `{db}`.t (id INT PRIMARY KEY)")).await.unwrap();
    conn.disconnect().await.unwrap();
    cluster.wait_replicas().await;
}

#[tokio::test]
async fn drain_lets_an_open_transaction_commit_and_closes_idle_clients() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let db = fresh_db(&proxy.cluster, "drain").await;
    table(proxy.opts(None), &proxy.cluster, &db).await;
    let mut idle = proxy.connect_db(&db).await;
    idle.query_drop("SELECT 1").await.unwrap();
    let mut trx = proxy.connect_db(&db).await;
    trx.query_drop("BEGIN").await.unwrap();
    trx.query_drop("INSERT INTO t VALUES (1)").await.unwrap();
    let (http_addr, opts) = (proxy.handle.http_addr(), proxy.opts(Some(&db)));
    let TestProxy { handle, cluster } = proxy;

    let drain = tokio::spawn(handle.drain(Duration::from_secs(20), std::future::pending()));
    let unready =
        eventually(Duration::from_secs(5), || async { http(http_addr, "GET", "/ready").await.0 == 503 }).await;
    assert!(unready, "/ready turns 503 while draining");
    let refused = eventually(Duration::from_secs(5), || async { Conn::new(opts.clone()).await.is_err() }).await;
    assert!(refused, "no new clients while draining");
    assert!(idle.query_drop("SELECT 1").await.is_err(), "an idle client is closed at once");

    trx.query_drop("INSERT INTO t VALUES (2)").await.expect("the transaction goes on");
    trx.query_drop("COMMIT").await.expect("and commits");
    let drained =
        tokio::time::timeout(Duration::from_secs(10), drain).await.expect("drain ends after the commit").unwrap();
    assert!(!drained.forced && drained.remaining == 0, "{drained:?}");
    assert!(drained.waited < Duration::from_secs(10), "{drained:?}");
    assert!(trx.query_drop("SELECT 1").await.is_err(), "closed after its transaction");
    assert_eq!(rows_on_primary(&cluster, &db).await, 2);
}

#[tokio::test]
async fn a_transaction_that_outlives_the_grace_period_is_closed() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let db = fresh_db(&proxy.cluster, "grace").await;
    table(proxy.opts(None), &proxy.cluster, &db).await;
    let mut trx = proxy.connect_db(&db).await;
    trx.query_drop("BEGIN").await.unwrap();
    trx.query_drop("INSERT INTO t VALUES (1)").await.unwrap();
    let TestProxy { handle, cluster } = proxy;
    let drained = handle.drain(Duration::from_millis(300), std::future::pending()).await;
    assert!(drained.forced && drained.remaining == 0, "{drained:?}");
    assert!(trx.query_drop("COMMIT").await.is_err(), "closed when the grace period ended");
    assert_eq!(rows_on_primary(&cluster, &db).await, 0, "never committed");
}

/// The real binary, started from a config file.
struct Binary {
    child: std::process::Child,
    mysql: u16,
    http: std::net::SocketAddr,
    _file: ConfigFile,
}

impl Binary {
    async fn start(cluster: &Cluster, grace: &str) -> Binary {
        let (mysql, admin, http) = (free_port(), free_port(), free_port());
        let text = config_text(
            cluster,
            &[],
            &[],
            &format!("[logging]\nlevel = \"warn\"\n\n[shutdown]\ngrace = \"{grace}\"\n"),
        )
        .replace("mysql = \"127.0.0.1:0\"", &format!("mysql = \"127.0.0.1:{mysql}\""))
        .replace("admin = \"127.0.0.1:0\"", &format!("admin = \"127.0.0.1:{admin}\""))
        .replace("http = \"127.0.0.1:0\"", &format!("http = \"127.0.0.1:{http}\""));
        let file = ConfigFile::new("drain-bin", &text);
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_rwsplit"))
            .arg("--config")
            .arg(&file.path)
            .spawn()
            .expect("start the rwsplit binary");
        let http: std::net::SocketAddr = ([127, 0, 0, 1], http).into();
        let up = eventually(Duration::from_secs(20), || async { http_ok(http).await }).await;
        assert!(up, "the binary did not become ready");
        Binary { child, mysql, http, _file: file }
    }

    fn opts(&self, db: &str) -> mysql_async::Opts {
        common::direct_opts(self.mysql, Some(db))
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill").args([name, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; its exit code.
    async fn exit_code(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "the binary did not exit within {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn http_ok(addr: std::net::SocketAddr) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_ok() && http(addr, "GET", "/ready").await.0 == 200
}

#[tokio::test]
async fn sigterm_lets_the_transaction_commit_then_exits_zero() {
    let cluster = Cluster::shared().await;
    let db = fresh_db(&cluster, "sigterm").await;
    let mut bin = Binary::start(&cluster, "20s").await;
    table(bin.opts(&db), &cluster, &db).await;
    let mut trx = Conn::new(bin.opts(&db)).await.unwrap();
    trx.query_drop("BEGIN").await.unwrap();
    trx.query_drop("INSERT INTO t VALUES (1)").await.unwrap();
    bin.signal("-TERM");
    let unready = eventually(Duration::from_secs(5), || async { http(bin.http, "GET", "/ready").await.0 == 503 }).await;
    assert!(unready, "/ready turns 503 on SIGTERM");
    trx.query_drop("INSERT INTO t VALUES (2)").await.expect("the transaction goes on after SIGTERM");
    trx.query_drop("COMMIT").await.expect("and commits");
    assert_eq!(bin.exit_code(Duration::from_secs(10)).await, Some(0));
    assert_eq!(rows_on_primary(&cluster, &db).await, 2);
}

#[tokio::test]
async fn a_second_signal_forces_the_exit() {
    let cluster = Cluster::shared().await;
    let db = fresh_db(&cluster, "force").await;
    let mut bin = Binary::start(&cluster, "60s").await;
    table(bin.opts(&db), &cluster, &db).await;
    let mut trx = Conn::new(bin.opts(&db)).await.unwrap();
    trx.query_drop("BEGIN").await.unwrap();
    trx.query_drop("INSERT INTO t VALUES (1)").await.unwrap();
    let started = Instant::now();
    bin.signal("-TERM");
    let unready = eventually(Duration::from_secs(5), || async { http(bin.http, "GET", "/ready").await.0 == 503 }).await;
    assert!(unready);
    bin.signal("-INT");
    assert_eq!(bin.exit_code(Duration::from_secs(10)).await, Some(0));
    assert!(started.elapsed() < Duration::from_secs(15), "did not wait out the 60 s grace period");
    assert!(trx.query_drop("COMMIT").await.is_err());
    assert_eq!(rows_on_primary(&cluster, &db).await, 0);
}
