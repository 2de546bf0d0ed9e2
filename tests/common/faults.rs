//! Fault injection on the real cluster for the failover and lag tests: running
//! `scripts/cluster.sh` (with the same `RWSPLIT_CLUSTER_DIR`/`RWSPLIT_CLUSTER_PORT_BASE` the
//! tests use), killing servers, and restoring a healthy cluster afterwards, even when a test
//! fails. Tests that use these take [`SERIAL`] so that only one of them disturbs the cluster at
//! a time.

use std::collections::HashMap;
use std::future::Future;
use std::process::Command;
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use mysql_async::Conn;

use super::{direct_opts, eventually, Cluster};

/// Held by every test that kills, promotes, stops or delays a server.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn script() -> Command {
    let base = std::env::var("RWSPLIT_CLUSTER_PORT_BASE").ok();
    let dir = std::env::var("RWSPLIT_CLUSTER_DIR").ok();
    assert!(
        base.as_deref().is_none_or(|b| b == "13306") || dir.is_some(),
        "RWSPLIT_CLUSTER_PORT_BASE is set without RWSPLIT_CLUSTER_DIR; set both (scripts/cluster.sh env prints them)"
    );
    Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh"))
}

/// Runs `scripts/cluster.sh <args>` to completion (blocking; call from `spawn_blocking`) and
/// returns its stdout; panics with its output when it fails.
pub fn cluster_sh(args: &[&str]) -> String {
    let out = script().args(args).output().unwrap_or_else(|e| panic!("cannot run scripts/cluster.sh: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "scripts/cluster.sh {} failed ({}):\n{stdout}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// [`cluster_sh`] on a blocking thread.
pub async fn cluster_sh_async(args: &'static [&'static str]) -> String {
    tokio::task::spawn_blocking(move || cluster_sh(args)).await.unwrap()
}

/// The `KEY=value` lines of `scripts/cluster.sh env`.
pub fn cluster_env() -> HashMap<String, String> {
    cluster_sh(&["env"]).lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// The pid and port of a node by its `env` label (`PRIMARY`, `REPLICA1`, `REPLICA2`).
pub fn node(label: &str) -> (u32, u16) {
    let env = cluster_env();
    let get = |key: String| env.get(&key).cloned().unwrap_or_else(|| panic!("no {key} in `scripts/cluster.sh env`"));
    let pid = get(format!("RWSPLIT_{label}_PID")).parse().expect("a running node has a pid");
    let port = get(format!("RWSPLIT_{label}_PORT")).parse().unwrap();
    (pid, port)
}

/// `kill -9 pid` of the node listening on `port`, then waits until the kernel has closed its
/// sockets (connections to `port` are refused: a multi-threaded server can show as a zombie
/// before its last thread closed them); returns that moment.
pub async fn kill9(pid: u32, port: u16) -> Instant {
    let status = Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill -9 {pid} failed");
    let gone = eventually(Duration::from_secs(10), || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err()
    })
    .await;
    assert!(gone, "pid {pid} still accepts connections on {port} 10 s after kill -9");
    Instant::now()
}

/// A direct connection to a node as `app`.
pub async fn direct(port: u16) -> Conn {
    Conn::new(direct_opts(port, None)).await.unwrap_or_else(|e| panic!("direct connection to {port}: {e}"))
}

/// Brings every node back (`scripts/cluster.sh up`: restarts killed ones, rebuilds a killed
/// primary as a replica, wires and syncs replication) and waits until every replica has
/// applied everything.
pub async fn restore_cluster() {
    cluster_sh_async(&["up"]).await;
    Cluster::shared().await.wait_replicas().await;
}

/// Runs `body`, then `cleanup` whether or not `body` panicked, then re-raises the panic.
pub async fn with_cleanup<B, C>(body: B, cleanup: C)
where
    B: Future<Output = ()> + Send + 'static,
    C: Future<Output = ()>,
{
    let result = tokio::spawn(body).await;
    cleanup.await;
    if let Err(err) = result {
        if err.is_panic() {
            std::panic::resume_unwind(err.into_panic());
        }
        panic!("test body was cancelled: {err}");
    }
}

/// Runs `sql` on the node at `port` directly.
pub async fn on_node(port: u16, sql: &str) {
    let mut conn = direct(port).await;
    conn.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql} on {port}: {e}"));
    conn.disconnect().await.unwrap();
}

/// Runs `sql` as root over the unix socket of the node with `env` label `label` (`PRIMARY`,
/// `REPLICA1`, ...): for what `app` may not do, such as `SET GLOBAL read_only`.
pub fn root_sql(label: &str, sql: &str) {
    let env = cluster_env();
    let key = format!("RWSPLIT_{label}_SOCKET");
    let socket = env.get(&key).unwrap_or_else(|| panic!("no {key} in `scripts/cluster.sh env`"));
    let out = Command::new("mariadb")
        .args(["--no-defaults", "-uroot", "-N", "-e", sql])
        .arg(format!("--socket={socket}"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run the mariadb client: {e}"));
    assert!(out.status.success(), "{sql} on {label}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The monitor account whose probes [`stall_probes`] makes time out: the grants of the cluster's
/// `monitor`, password `stallmon`.
pub const STALLED_MONITOR: &str = "stallmon";

/// Creates [`STALLED_MONITOR`] on the primary (replicated to the replicas) if it is missing and
/// waits until the replicas have it.
pub async fn stalled_monitor_account(cluster: &Cluster) {
    let sql = format!(
        "CREATE USER IF NOT EXISTS '{STALLED_MONITOR}'@'%' IDENTIFIED BY '{STALLED_MONITOR}'; \
         GRANT PROCESS, BINLOG MONITOR, SLAVE MONITOR, REPLICATION MASTER ADMIN ON *.* TO '{STALLED_MONITOR}'@'%'"
    );
    on_node(cluster.primary, &sql).await;
    cluster.wait_replicas().await;
}

/// From now on, every new login of [`STALLED_MONITOR`] on the node at `port` hangs in
/// `init_connect` (the server, not the network: the data path's `app` logins are untouched), and
/// its open connections are killed, so that a proxy probing with that account sees its next
/// probe fail and every later one time out, as a proxy too short of CPU to meet its deadline
/// would. Undo with [`unstall_probes`].
pub async fn stall_probes(port: u16) {
    let hang = format!("DO IF(CURRENT_USER() LIKE ''{STALLED_MONITOR}@%'', SLEEP(600), 0)");
    on_node(port, &format!("SET GLOBAL init_connect = '{hang}'")).await;
    kill_stalled_monitor(port).await;
}

/// Undoes [`stall_probes`] on the node at `port`: clears `init_connect` and kills the logins
/// hanging in it.
pub async fn unstall_probes(port: u16) {
    on_node(port, "SET GLOBAL init_connect = ''").await;
    kill_stalled_monitor(port).await;
}

async fn kill_stalled_monitor(port: u16) {
    let mut conn = direct(port).await;
    let ids: Vec<u64> = conn
        .exec("SELECT id FROM information_schema.processlist WHERE user = ?", (STALLED_MONITOR,))
        .await
        .unwrap_or_else(|e| panic!("processlist on {port}: {e}"));
    for id in ids {
        // It may have ended by itself meanwhile.
        let _ = conn.query_drop(format!("KILL CONNECTION {id}")).await;
    }
    conn.disconnect().await.unwrap();
}
