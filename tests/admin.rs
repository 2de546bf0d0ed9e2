//! The MySQL-protocol admin interface, driven by the real `mysql` CLI: every command answers,
//! logins are checked, runtime weights and drains reach the topology.

mod common;

use std::time::Duration;

use common::ops::{admin_cli, rows};
use common::{eventually, fresh_db, Cluster, TestProxy};
use mysql_async::prelude::*;

fn port(proxy: &TestProxy) -> u16 {
    proxy.handle.admin_addr().port()
}

async fn admin(proxy: &TestProxy, sql: &str) -> Vec<Vec<String>> {
    let out = admin_cli(port(proxy), "admin", sql).await.unwrap_or_else(|err| panic!("{sql}: {err}"));
    rows(&out)
}

/// Names of the primary and the replicas, from `SHOW BACKENDS`.
async fn roles(proxy: &TestProxy) -> (String, Vec<String>) {
    let backends = admin(proxy, "SHOW BACKENDS").await;
    let primary = backends[1..].iter().find(|r| r[3] == "primary").expect("a primary")[0].clone();
    let replicas = backends[1..].iter().filter(|r| r[3] != "primary").map(|r| r[0].clone()).collect();
    (primary, replicas)
}

/// The value of `column` in the row whose first cell is `key`.
fn cell(table: &[Vec<String>], key: &str, column: &str) -> String {
    let at = table[0].iter().position(|c| c == column).unwrap_or_else(|| panic!("no column {column}: {table:?}"));
    let row = table.iter().find(|r| r[0] == key).unwrap_or_else(|| panic!("no row {key}: {table:?}"));
    row[at].clone()
}

#[tokio::test]
async fn show_commands_answer_through_the_mysql_cli() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let db = fresh_db(&proxy.cluster, "admin").await;
    let mut conn = proxy.connect_db(&db).await;
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY)").await.unwrap();
    proxy.cluster.wait_replicas().await;
    for _ in 0..3 {
        let _: Vec<i32> = conn.query("SELECT id FROM t WHERE id = 7").await.unwrap();
    }
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("INSERT INTO t VALUES (1)").await.unwrap();

    let backends = admin(&proxy, "SHOW BACKENDS").await;
    assert_eq!(&backends[0][..5], ["name", "host", "port", "role", "up"]);
    assert_eq!(backends.len(), 4, "{backends:?}");
    let roles: Vec<&str> = backends[1..].iter().map(|r| r[3].as_str()).collect();
    assert_eq!(roles.iter().filter(|r| **r == "primary").count(), 1, "{backends:?}");

    let clients = admin(&proxy, "SHOW CLIENTS").await;
    assert_eq!(clients.len(), 2, "{clients:?}");
    let id = clients[1][0].clone();
    assert_eq!(cell(&clients, &id, "user"), "app");
    assert_eq!(cell(&clients, &id, "in_transaction"), "yes");
    assert_eq!(cell(&clients, &id, "holds"), "transaction");

    let pools = admin(&proxy, "SHOW POOLS").await;
    assert!(pools.len() >= 2 && pools[1][1] == "app", "{pools:?}");

    let digests = admin(&proxy, "SHOW DIGESTS LIMIT 50").await;
    assert_eq!(&digests[0][..2], ["digest", "count"]);
    let select = digests.iter().find(|r| r.last().is_some_and(|t| t == "SELECT id FROM t WHERE id = ?"));
    assert_eq!(select.expect("the SELECT digest is listed")[1], "3");
    assert_eq!(admin(&proxy, "SHOW DIGESTS LIMIT 1").await.len(), 2);

    let config = admin(&proxy, "SHOW CONFIG").await;
    assert_eq!(cell(&config, "admin.password", "value"), "\"<redacted>\"");
    assert_eq!(cell(&config, "users[0].password", "value"), "\"<redacted>\"");
    assert!(cell(&config, "backends[0].name", "value").starts_with("\"node"), "{config:?}");

    conn.query_drop("COMMIT").await.unwrap();
    conn.disconnect().await.unwrap();
    let gone = eventually(Duration::from_secs(5), || async { admin(&proxy, "SHOW CLIENTS").await.len() <= 1 }).await;
    assert!(gone, "the client left SHOW CLIENTS");
}

#[tokio::test]
async fn explain_route_names_the_route_and_reason() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let (primary, replicas) = roles(&proxy).await;
    let read = admin(&proxy, "EXPLAIN ROUTE 'SELECT * FROM t WHERE id = 1'").await;
    assert_eq!(&read[0][..3], ["route", "backend", "reason"]);
    assert_eq!(read[1][0], "replica");
    assert!(replicas.iter().all(|r| read[1][1].contains(r.as_str())), "{read:?}");
    assert_eq!(read[1][5], "SELECT * FROM t WHERE id = ?");
    let write = admin(&proxy, "EXPLAIN ROUTE 'INSERT INTO t VALUES (1)'").await;
    assert_eq!((write[1][0].as_str(), write[1][1].as_str()), ("primary", primary.as_str()));
    let locking = admin(&proxy, "EXPLAIN ROUTE 'SELECT * FROM t WHERE a = ''x'' FOR UPDATE'").await;
    assert_eq!((locking[1][0].as_str(), locking[1][2].as_str()), ("primary", "locking read"));
    let sql = format!("EXPLAIN ROUTE '/* rwsplit:backend={} */ SELECT 1'", replicas[1]);
    let hinted = admin(&proxy, &sql).await;
    assert_eq!((hinted[1][0].as_str(), hinted[1][1].as_str()), ("replica", replicas[1].as_str()));
}

#[tokio::test]
async fn runtime_weights_and_drains_reach_the_topology() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let (primary, replicas) = roles(&proxy).await;
    let (kept, drained_name) = (&replicas[0], &replicas[1]);
    let mut conn = proxy.connect().await;
    for _ in 0..4 {
        conn.query_drop("SELECT 1").await.unwrap();
    }
    let out = admin_cli(port(&proxy), "admin", &format!("SET BACKEND {kept} WEIGHT 5")).await.unwrap();
    assert!(out.is_empty(), "an OK, no rows: {out:?}");
    let weighted = eventually(Duration::from_secs(5), || async {
        cell(&admin(&proxy, "SHOW BACKENDS").await, kept, "weight") == "5"
    })
    .await;
    assert!(weighted, "weight 5 reached the topology");

    admin_cli(port(&proxy), "admin", &format!("DRAIN BACKEND {drained_name}")).await.unwrap();
    let drained = eventually(Duration::from_secs(5), || async {
        let backends = admin(&proxy, "SHOW BACKENDS").await;
        cell(&backends, drained_name, "weight") == "0" && cell(&backends, drained_name, "connections") == "0"
    })
    .await;
    assert!(drained, "{drained_name} drained: {:?}", admin(&proxy, "SHOW BACKENDS").await);
    let drained_port: u16 = cell(&admin(&proxy, "SHOW BACKENDS").await, drained_name, "port").parse().unwrap();
    for _ in 0..6 {
        let port: u16 = conn.query_first("SELECT @@port").await.unwrap().unwrap();
        assert_ne!(port, drained_port, "no read goes to a drained backend");
    }
    let err = admin_cli(port(&proxy), "admin", &format!("DRAIN BACKEND {primary}")).await.unwrap_err();
    assert!(err.contains("primary"), "{err}");
    let err = admin_cli(port(&proxy), "admin", "SET BACKEND nosuch WEIGHT 1").await.unwrap_err();
    assert!(err.contains("no backend named"), "{err}");
    conn.disconnect().await.unwrap();
}

#[tokio::test]
async fn logins_are_checked_and_bad_commands_explained() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let err = admin_cli(port(&proxy), "wrong", "SHOW BACKENDS").await.unwrap_err();
    assert!(err.contains("1045") || err.contains("denied") || err.contains("Authenticate failed"), "{err}");
    let err = admin_cli(port(&proxy), "admin", "DROP TABLE t").await.unwrap_err();
    assert!(err.contains("SHOW BACKENDS"), "the error lists the commands: {err}");
    let err = admin_cli(port(&proxy), "admin", "RELOAD").await.unwrap_err();
    assert!(err.contains("no config file"), "{err}");
}
