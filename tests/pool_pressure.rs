//! Pools under pressure (issue 11): one connection cap per backend across every pool, a FIFO wait
//! that ends in ERR 1040 (the server's text; the log names the backend), idle connections of one pool closed to make room for
//! another, and connections a client left dirty reset in the background and reused.

mod common;

use std::time::Duration;

use common::{eventually, fresh_db, server_error, Cluster, TestProxy};
use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder};

/// A proxy with `cap` connections per backend and the given checkout timeout, a fresh database
/// with a table `t`, and the primary's backend name.
async fn setup(prefix: &str, cap: u32, checkout: Duration) -> (TestProxy, String, String) {
    let cluster = Cluster::shared().await;
    let db = fresh_db(&cluster, prefix).await;
    let mut primary = cluster.primary_conn().await;
    primary.query_drop(format!("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v INT)")).await.unwrap();
    primary.query_drop(format!("INSERT INTO `{db}`.t VALUES (1, 0), (2, 0), (3, 0)")).await.unwrap();
    primary.disconnect().await.unwrap();
    cluster.wait_replicas().await;
    let mut config = cluster.config();
    config.pool.max_connections_per_backend = cap;
    config.pool.checkout_timeout = checkout;
    let name = config.backends.iter().find(|b| b.port == cluster.primary).unwrap().name.to_string();
    (TestProxy::start_with(cluster, config).await, db, name)
}

/// A metric of the proxy, as an integer.
fn metric(proxy: &TestProxy, name: &str, with: &[(&str, &str)]) -> i64 {
    common::ops::metric(&proxy.handle, name, with) as i64
}

#[tokio::test]
async fn one_cap_covers_every_pool_of_a_backend_and_waiters_are_served_in_order() {
    let (proxy, db, primary) = setup("poolcap", 2, Duration::from_secs(1)).await;
    // Three clients whose connections come from three different pools of the primary.
    let mut with_schema = proxy.connect_db(&db).await;
    let mut without_schema = proxy.connect().await;
    let found_rows = OptsBuilder::from_opts(proxy.opts(Some(&db))).client_found_rows(true);
    let mut third = Conn::new(found_rows).await.unwrap();
    with_schema.query_drop("BEGIN").await.unwrap();
    with_schema.query_drop("UPDATE t SET v = v + 1 WHERE id = 1").await.unwrap();
    without_schema.query_drop("BEGIN").await.unwrap();
    without_schema.query_drop(format!("UPDATE `{db}`.t SET v = v + 1 WHERE id = 2")).await.unwrap();
    let err = third.query_drop("UPDATE t SET v = v + 1 WHERE id = 3").await.unwrap_err();
    let (code, _, message) = server_error(&err);
    assert_eq!(code, 1040, "{message}");
    assert_eq!(message, "Too many connections", "the server's text; the backend is named in the log");
    let backend = [("backend", primary.as_str())];
    let open = metric(&proxy, "rwsplit_pool_connections", &backend);
    assert!(open <= 2, "never more than the cap: {open}");
    assert_eq!(metric(&proxy, "rwsplit_pool_max_connections", &backend), 2);

    // A waiting client gets the first connection that comes back.
    let waiter =
        tokio::spawn(async move { third.query_drop("UPDATE t SET v = v + 1 WHERE id = 3").await.map(|_| third) });
    let waiting = || async { metric(&proxy, "rwsplit_pool_waiters", &backend) == 1 };
    assert!(eventually(Duration::from_secs(5), waiting).await, "one waiter");
    with_schema.query_drop("COMMIT").await.unwrap();
    let _third = waiter.await.unwrap().expect("the waiter got the connection freed by the commit");
    without_schema.query_drop("COMMIT").await.unwrap();
}

#[tokio::test]
async fn idle_connections_of_another_pool_make_room() {
    let (proxy, db, primary) = setup("poolroom", 2, Duration::from_secs(2)).await;
    let mut a = proxy.connect_db(&db).await;
    let mut b = proxy.connect_db(&db).await;
    for (id, conn) in [(1, &mut a), (2, &mut b)] {
        conn.query_drop("BEGIN").await.unwrap();
        conn.query_drop(format!("SELECT v FROM t WHERE id = {id} FOR UPDATE")).await.unwrap();
    }
    a.query_drop("COMMIT").await.unwrap();
    b.query_drop("COMMIT").await.unwrap();
    // Both connections of the primary sit idle in the schema pool. A client without a schema
    // needs one from its own pool, twice over.
    let mut c = proxy.connect().await;
    let mut d = proxy.connect().await;
    let started = std::time::Instant::now();
    for (id, conn) in [(2, &mut c), (3, &mut d)] {
        conn.query_drop("BEGIN").await.unwrap();
        conn.query_drop(format!("UPDATE `{db}`.t SET v = v + 1 WHERE id = {id}")).await.unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(2), "room was made, nobody waited out the timeout");
    assert!(metric(&proxy, "rwsplit_pool_connections", &[("backend", primary.as_str())]) <= 2);
    c.query_drop("COMMIT").await.unwrap();
    d.query_drop("COMMIT").await.unwrap();
}

#[tokio::test]
async fn a_connection_left_dirty_is_reset_and_reused_not_closed() {
    let (proxy, db, primary) = setup("poolreset", 1, Duration::from_secs(3)).await;
    let lock = format!("poolreset_{}", std::process::id());
    let mut dirty = proxy.connect_db(&db).await;
    dirty.query_drop("BEGIN").await.unwrap();
    dirty.query_drop("UPDATE t SET v = 100 WHERE id = 1").await.unwrap();
    dirty.query_drop("CREATE TEMPORARY TABLE tt (a INT)").await.unwrap();
    dirty.query_drop(format!("SELECT GET_LOCK('{lock}', 1)")).await.unwrap();
    let thread: u64 = dirty.query_first("SELECT CONNECTION_ID()").await.unwrap().unwrap();
    dirty.disconnect().await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            metric(&proxy, "rwsplit_pool_resets_total", &[("result", "ok")]) >= 1
        })
        .await,
        "the connection was reset in the background"
    );
    let backend = [("backend", primary.as_str())];
    assert_eq!(metric(&proxy, "rwsplit_pool_connections_in_use", &backend), 0, "it is back in its pool");
    assert_eq!(metric(&proxy, "rwsplit_pool_connections", &backend), 1, "and still open");

    let mut next = proxy.connect_db(&db).await;
    let again: u64 = next.query_first("/* rwsplit:primary */ SELECT CONNECTION_ID()").await.unwrap().unwrap();
    assert_eq!(again, thread, "the same backend connection is reused, not a new one");
    let err = next.query_drop("/* rwsplit:primary */ SELECT * FROM tt").await.unwrap_err();
    assert_eq!(server_error(&err).0, 1146, "the temporary table is gone");
    let free: Option<i64> = next.query_first(format!("SELECT IS_FREE_LOCK('{lock}')")).await.unwrap();
    assert_eq!(free, Some(1), "the named lock was released");
    let v: Option<i64> = next.query_first("/* rwsplit:primary */ SELECT v FROM t WHERE id = 1").await.unwrap();
    assert_eq!(v, Some(0), "the open transaction was rolled back");
}

#[tokio::test]
async fn a_users_backend_cap_applies_over_its_pools() {
    let cluster = Cluster::shared().await;
    let db = fresh_db(&cluster, "poolusercap").await;
    let mut primary = cluster.primary_conn().await;
    primary.query_drop(format!("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v INT)")).await.unwrap();
    primary.query_drop(format!("INSERT INTO `{db}`.t VALUES (1, 0), (2, 0)")).await.unwrap();
    cluster.wait_replicas().await;
    let mut config = cluster.config();
    config.pool.max_connections_per_backend = 10;
    config.pool.checkout_timeout = Duration::from_millis(500);
    for user in &mut config.users {
        if user.name.as_str() == "app" {
            user.max_backend_connections = 1;
        }
    }
    let proxy = TestProxy::start_with(cluster, config).await;
    let mut a = proxy.connect_db(&db).await;
    let mut b = proxy.connect().await;
    a.query_drop("BEGIN").await.unwrap();
    a.query_drop("UPDATE t SET v = 1 WHERE id = 1").await.unwrap();
    let err = b.query_drop(format!("UPDATE `{db}`.t SET v = 1 WHERE id = 2")).await.unwrap_err();
    assert_eq!(server_error(&err).0, 1040, "app may hold one connection to the primary, over both pools");
    a.query_drop("COMMIT").await.unwrap();
    b.query_drop(format!("UPDATE `{db}`.t SET v = 1 WHERE id = 2")).await.unwrap();
}

#[tokio::test]
async fn pinned_connections_show_per_backend_and_pool_user_until_the_pin_ends() {
    let (proxy, db, primary) = setup("poolpinned", 2, Duration::from_secs(2)).await;
    let name: &'static str = Box::leak(primary.into_boxed_str());
    let pinned = [("backend", name), ("user", "app"), ("hold", "pinned")];
    let in_transaction = [("backend", name), ("user", "app"), ("hold", "transaction")];
    assert_eq!(metric(&proxy, "rwsplit_pool_connections_held", &pinned), 0, "a zero series exists before any pin");
    let mut a = proxy.connect_db(&db).await;
    let mut b = proxy.connect_db(&db).await;
    a.query_drop("CREATE TEMPORARY TABLE tt (x INT)").await.unwrap();
    b.query_drop("BEGIN").await.unwrap();
    b.query_drop("UPDATE t SET v = v + 1 WHERE id = 1").await.unwrap();
    // Each session reports what it holds right after its response; poll for it.
    let held = |with: [(&'static str, &'static str); 3], want: i64| {
        let proxy = &proxy;
        async move {
            eventually(Duration::from_secs(5), || async {
                metric(proxy, "rwsplit_pool_connections_held", &with) == want
            })
            .await
        }
    };
    assert!(held(pinned, 1).await, "the temporary table pins one connection");
    assert!(held(in_transaction, 1).await, "the transaction holds one connection");
    a.query_drop("DROP TEMPORARY TABLE tt").await.unwrap();
    b.query_drop("COMMIT").await.unwrap();
    assert!(held(pinned, 0).await, "the pin ended with the last temporary table");
    assert!(held(in_transaction, 0).await, "the transaction ended");
}

/// The server refuses a new login of a pool's account (its password was changed on the server;
/// the same holds for a host blocked or an account at its connection limit) while the pool still
/// has connections logged in from before. The refusal is remembered so that statements do not
/// each cost a failed login, but only for checkouts that would have to log in: once a connection
/// in use is back, the next statement runs on it instead of getting the refusal.
#[tokio::test]
async fn a_refused_login_does_not_hide_connections_already_logged_in() {
    let cluster = Cluster::shared().await;
    let db = fresh_db(&cluster, "refusedidle").await;
    let account = format!("rot_{}", &db[db.len() - 8..]);
    let mut primary = cluster.primary_conn().await;
    primary.query_drop(format!("CREATE TABLE `{db}`.t (id INT PRIMARY KEY)")).await.unwrap();
    primary.query_drop(format!("CREATE USER '{account}'@'%' IDENTIFIED BY 'before'")).await.unwrap();
    primary.query_drop(format!("GRANT ALL ON `{db}`.* TO '{account}'@'%'")).await.unwrap();
    cluster.wait_replicas().await;
    let mut config = cluster.config();
    let mut user = config.users[0].clone();
    user.name = rwsplit::config::UserName::new("rotating");
    user.password = Some("client".into());
    user.backend_user = account.clone();
    user.backend_password = Some("before".into());
    config.users.push(user);
    let proxy = TestProxy::start_with(cluster.clone(), config).await;
    let opts = OptsBuilder::from_opts(proxy.opts(Some(&db))).user(Some("rotating")).pass(Some("client"));
    // Every client connects before the rotation (a client's own login needs no backend).
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(Conn::new(opts.clone()).await.unwrap());
    }
    let mut b = clients.pop().unwrap();
    b.query_drop("INSERT INTO t VALUES (1)").await.expect("the pool logs in with the old password");

    // Rotated on the server only: the connections logged in before stay usable. Other clients
    // hold them in transactions until a statement of `b` needs a new login, which is refused.
    primary.query_drop(format!("ALTER USER '{account}'@'%' IDENTIFIED BY 'after'")).await.unwrap();
    let mut holders = Vec::new();
    let mut id = 2;
    loop {
        match b.query_drop(format!("INSERT INTO t VALUES ({id})")).await {
            Ok(()) => {
                let mut holder = clients.pop().expect("a few connections logged in before the rotation");
                holder.query_drop("BEGIN").await.unwrap();
                holder.query_drop(format!("INSERT INTO t VALUES ({})", 100 + id)).await.unwrap();
                holders.push(holder);
                id += 1;
            }
            Err(err) => {
                assert_eq!(server_error(&err).0, 1045, "a new login is refused: {err}");
                break;
            }
        }
    }
    holders[0].query_drop("COMMIT").await.unwrap();
    for id in 1000..1004 {
        b.query_drop(format!("INSERT INTO t VALUES ({id})")).await.expect("a connection logged in before serves it");
    }
    let n: Option<u64> = primary.query_first(format!("SELECT COUNT(*) FROM `{db}`.t WHERE id >= 1000")).await.unwrap();
    assert_eq!(n, Some(4));
    for mut holder in holders {
        holder.query_drop("ROLLBACK").await.unwrap();
    }
    primary.query_drop(format!("DROP USER '{account}'@'%'")).await.unwrap();
}
