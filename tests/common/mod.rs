//! Shared fixtures for the integration tests: the real MariaDB cluster of `scripts/cluster.sh`,
//! the real proxy started in-process on `127.0.0.1:0`, and a raw protocol client for malformed
//! input. A test that needs the cluster and cannot reach it fails, naming the command to run.
#![allow(dead_code)]

pub mod differential;
pub mod faults;
pub mod ops;
pub mod raw;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder};
use rwsplit::config::{Config, Role};

/// The test cluster: three MariaDB servers on consecutive ports, one writable.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Ports of all nodes, in node order.
    pub ports: Vec<u16>,
    /// Port of the writable node.
    pub primary: u16,
}

impl Cluster {
    /// Finds the running cluster (ports from `RWSPLIT_CLUSTER_PORT_BASE`, default 13306) and
    /// which node is the primary. Panics with instructions when it is not running.
    pub async fn shared() -> Cluster {
        let base: u16 = std::env::var("RWSPLIT_CLUSTER_PORT_BASE").ok().and_then(|v| v.parse().ok()).unwrap_or(13306);
        let ports = vec![base, base + 1, base + 2];
        let mut primary = None;
        for &port in &ports {
            let mut conn = match tokio::time::timeout(Duration::from_secs(5), Conn::new(direct_opts(port, None))).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(err)) => panic!(
                    "the test cluster is not reachable on 127.0.0.1:{port} ({err}); start it with `scripts/cluster.sh up` \
                     or run the whole suite with `scripts/test.sh`"
                ),
                Err(_) => panic!("timed out connecting to 127.0.0.1:{port}; is `scripts/cluster.sh up` running?"),
            };
            let read_only: u8 = conn.query_first("SELECT @@read_only").await.unwrap().unwrap();
            if read_only == 0 {
                assert!(primary.is_none(), "two writable nodes in the test cluster");
                primary = Some(port);
            }
            conn.disconnect().await.unwrap();
        }
        Cluster { ports, primary: primary.expect("no writable node in the test cluster") }
    }

    /// A direct connection (not through the proxy) to the primary.
    pub async fn primary_conn(&self) -> Conn {
        Conn::new(direct_opts(self.primary, None)).await.expect("direct connection to the primary")
    }

    /// Replica ports.
    pub fn replicas(&self) -> Vec<u16> {
        self.ports.iter().copied().filter(|&p| p != self.primary).collect()
    }

    /// A proxy configuration for this cluster: demo.toml with the cluster's roles, listening on
    /// ephemeral ports.
    pub fn config(&self) -> Config {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml")).unwrap();
        let mut config = Config::parse_and_validate(&text).unwrap();
        config.listen.mysql = "127.0.0.1:0".parse().unwrap();
        config.listen.admin = "127.0.0.1:0".parse().unwrap();
        config.listen.http = "127.0.0.1:0".parse().unwrap();
        for (backend, &port) in config.backends.iter_mut().zip(&self.ports) {
            backend.port = port;
            backend.role = if port == self.primary { Role::Primary } else { Role::Replica };
        }
        config
    }
}

/// Options for a direct connection to a node as `app`.
pub fn direct_opts(port: u16, db: Option<&str>) -> Opts {
    OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("app"))
        .pass(Some("app"))
        .db_name(db)
        .prefer_socket(false)
        .into()
}

/// The real proxy, running in this test's runtime; stops when dropped with the runtime.
pub struct TestProxy {
    pub handle: rwsplit::app::Handle,
    pub cluster: Cluster,
}

impl TestProxy {
    /// Starts the proxy with the cluster's default test configuration.
    pub async fn start(cluster: Cluster) -> TestProxy {
        let config = cluster.config();
        Self::start_with(cluster, config).await
    }

    /// Starts the proxy with a custom configuration.
    pub async fn start_with(cluster: Cluster, config: Config) -> TestProxy {
        let handle = rwsplit::app::start(config).await.expect("proxy starts");
        TestProxy { handle, cluster }
    }

    /// The proxy's MySQL port.
    pub fn port(&self) -> u16 {
        self.handle.mysql_addr().port()
    }

    /// Connection options through the proxy.
    pub fn opts(&self, db: Option<&str>) -> Opts {
        OptsBuilder::from_opts(direct_opts(self.port(), db)).into()
    }

    /// A mysql_async connection through the proxy.
    pub async fn connect(&self) -> Conn {
        Conn::new(self.opts(None)).await.expect("connect through the proxy")
    }

    /// A connection through the proxy with a default schema.
    pub async fn connect_db(&self, db: &str) -> Conn {
        Conn::new(self.opts(Some(db))).await.expect("connect through the proxy")
    }
}

/// A database name no other test uses; created on the primary (directly) and returned.
pub async fn fresh_db(cluster: &Cluster, prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = format!("t_{prefix}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    let mut conn = cluster.primary_conn().await;
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`")).await.unwrap();
    conn.query_drop(format!("CREATE DATABASE `{name}`")).await.unwrap();
    conn.disconnect().await.unwrap();
    cluster.wait_replicas().await;
    name
}

impl Cluster {
    /// Waits until every replica has applied everything the primary has written so far.
    pub async fn wait_replicas(&self) {
        let mut primary = self.primary_conn().await;
        let pos: String = primary.query_first("SELECT @@gtid_binlog_pos").await.unwrap().unwrap();
        primary.disconnect().await.unwrap();
        for port in self.replicas() {
            let mut replica = Conn::new(direct_opts(port, None)).await.unwrap();
            let waited: i64 =
                replica.query_first(format!("SELECT MASTER_GTID_WAIT('{pos}', 30)")).await.unwrap().unwrap();
            assert_eq!(waited, 0, "replica on {port} did not reach {pos} within 30 s");
            replica.disconnect().await.unwrap();
        }
    }
}

/// Polls `check` every 50 ms until it returns true or `limit` passes; returns whether it did.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The server error inside a mysql_async error, as (code, SQLSTATE, message).
pub fn server_error(err: &mysql_async::Error) -> (u16, String, String) {
    match err {
        mysql_async::Error::Server(e) => (e.code, e.state.clone(), e.message.clone()),
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; a tiny race is acceptable in tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The real `rwsplit` binary running as a child process, killed on drop.
pub struct ProxyProcess {
    pub child: std::process::Child,
    pub port: u16,
    pub config_path: std::path::PathBuf,
}

impl ProxyProcess {
    /// Writes a config for the cluster and starts the binary; waits until it accepts connections.
    pub async fn start(cluster: &Cluster) -> ProxyProcess {
        let port = free_port();
        let mut text = format!(
            "[listen]\nmysql = \"127.0.0.1:{port}\"\nadmin = \"127.0.0.1:{}\"\nhttp = \"127.0.0.1:{}\"\n\n",
            free_port(),
            free_port()
        );
        for (i, &p) in cluster.ports.iter().enumerate() {
            let role = if p == cluster.primary { "primary" } else { "replica" };
            text.push_str(&format!(
                "[[backends]]\nname = \"node{i}\"\nhost = \"127.0.0.1\"\nport = {p}\nrole = \"{role}\"\n\n"
            ));
        }
        text.push_str("[[users]]\nname = \"app\"\npassword = \"app\"\n\n[logging]\nlevel = \"warn\"\n");
        let config_path = std::env::temp_dir().join(format!("rwsplit-test-{}-{port}.toml", std::process::id()));
        std::fs::write(&config_path, text).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_rwsplit"))
            .arg("--config")
            .arg(&config_path)
            .spawn()
            .expect("start the rwsplit binary");
        let up = eventually(Duration::from_secs(20), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await;
        assert!(up, "rwsplit binary did not start listening on {port}");
        ProxyProcess { child, port, config_path }
    }

    /// A field of `/proc/<pid>/status` in KiB (e.g. `VmRSS`, `VmHWM`).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field).and_then(|r| r.trim_start_matches(':').trim().strip_suffix("kB")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    /// Connection options through this proxy.
    pub fn opts(&self) -> Opts {
        OptsBuilder::from_opts(direct_opts(self.port, None)).into()
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config_path);
    }
}

/// What a statement run in the background ended with, and when.
pub type Ended<T> = tokio::task::JoinHandle<(std::time::Instant, Result<Option<T>, mysql_async::Error>)>;

/// Runs `SELECT SLEEP(secs)` on `sleeper` in the background and returns once a node of `cluster`
/// runs it.
pub async fn sleep_in_background(cluster: &Cluster, mut sleeper: Conn, secs: u32) -> Ended<i64> {
    let sql = format!("SELECT SLEEP({secs})");
    let sleeping = tokio::spawn({
        let sql = sql.clone();
        async move {
            let result = sleeper.query_first::<i64, _>(sql).await;
            (std::time::Instant::now(), result)
        }
    });
    let ports = cluster.ports.clone();
    let running = eventually(Duration::from_secs(10), move || {
        let (ports, sql) = (ports.clone(), sql.clone());
        async move {
            for port in ports {
                let mut c = Conn::new(direct_opts(port, None)).await.unwrap();
                let n: Option<u64> = c
                    .exec_first("SELECT COUNT(*) FROM information_schema.processlist WHERE info = ?", (sql.as_str(),))
                    .await
                    .unwrap();
                let _ = c.disconnect().await;
                if n.unwrap_or(0) > 0 {
                    return true;
                }
            }
            false
        }
    })
    .await;
    assert!(running, "the statement runs on a backend");
    sleeping
}

/// Sends `KILL QUERY id` through `killer` and checks that the sleep `sleeping` runs ends, interrupted,
/// within `bound`.
pub async fn kill_query_interrupts(killer: &mut Conn, id: u32, sleeping: Ended<i64>, bound: Duration) {
    let killed_at = std::time::Instant::now();
    killer.query_drop(format!("KILL QUERY {id}")).await.unwrap();
    let (returned_at, result) = sleeping.await.unwrap();
    let took = returned_at.saturating_duration_since(killed_at);
    assert!(took < bound, "the SLEEP returned {took:?} after KILL QUERY");
    match result {
        Ok(v) => assert_eq!(v, Some(1), "an interrupted SLEEP returns 1"),
        Err(e) => assert_eq!(server_error(&e).0, 1317),
    }
}
