//! Functions on the read path (issue 11, item 8): only builtins known to be read-only leave the
//! primary. A stored function that writes, called from a SELECT, runs on the primary (on a replica
//! it would fail with 1290); `routing.unknown_functions = "replica"` lets an operator override it;
//! a back-quoted lock function takes its lock on the primary.

mod common;

use common::{fresh_db, server_error, Cluster, TestProxy};
use mysql_async::prelude::*;

async fn with_bump(cluster: &Cluster) -> String {
    let db = fresh_db(cluster, "func").await;
    let mut primary = cluster.primary_conn().await;
    primary.query_drop(format!("CREATE TABLE `{db}`.hits (id INT AUTO_INCREMENT PRIMARY KEY)")).await.unwrap();
    primary
        .query_drop(format!(
            "CREATE FUNCTION `{db}`.bump() RETURNS INT DETERMINISTIC MODIFIES SQL DATA \
             BEGIN INSERT INTO `{db}`.hits VALUES (NULL); RETURN LAST_INSERT_ID(); END"
        ))
        .await
        .unwrap();
    primary.disconnect().await.unwrap();
    cluster.wait_replicas().await;
    db
}

#[tokio::test]
async fn a_stored_function_that_writes_runs_on_the_primary_unless_the_operator_says_otherwise() {
    let cluster = Cluster::shared().await;
    let db = with_bump(&cluster).await;
    let proxy = TestProxy::start(cluster.clone()).await;
    let mut conn = proxy.connect_db(&db).await;
    for _ in 0..3 {
        let id: Option<i64> = conn.query_first("SELECT bump()").await.unwrap();
        assert!(id.is_some_and(|id| id > 0));
    }
    let id: Option<i64> = conn.query_first(format!("SELECT `{db}`.`bump`()")).await.unwrap();
    assert!(id.is_some(), "qualified and back-quoted names go to the primary too");
    let read_only: Option<i64> = conn.query_first("SELECT @@read_only + ABS(-0)").await.unwrap();
    assert_eq!(read_only, Some(1), "builtins stay on the replicas");

    let mut config = cluster.config();
    config.routing.unknown_functions = rwsplit::config::UnknownFunctions::Replica;
    let trusting = TestProxy::start_with(cluster, config).await;
    let mut conn = trusting.connect_db(&db).await;
    let err = conn.query_drop("SELECT bump()").await.unwrap_err();
    assert_eq!(server_error(&err).0, 1290, "told that functions only read, the proxy sends it to a replica");
}

#[tokio::test]
async fn a_back_quoted_lock_function_locks_on_the_primary() {
    let cluster = Cluster::shared().await;
    let proxy = TestProxy::start(cluster.clone()).await;
    let mut conn = proxy.connect().await;
    let name = format!("funclock_{}", std::process::id());
    let got: Option<i64> = conn.query_first(format!("SELECT `GET_LOCK`('{name}', 0)")).await.unwrap();
    assert_eq!(got, Some(1));
    let mut primary = cluster.primary_conn().await;
    let holder: Option<Option<u64>> = primary.query_first(format!("SELECT IS_USED_LOCK('{name}')")).await.unwrap();
    assert!(holder.flatten().is_some(), "the lock is held on the primary");
    let released: Option<i64> = conn.query_first(format!("SELECT RELEASE_LOCK('{name}')")).await.unwrap();
    assert_eq!(released, Some(1), "and released on the same connection");
}
