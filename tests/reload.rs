//! Live config reload: under load from 50 clients (a backend added, reweighted, removed) without
//! a single client error; a bad file keeps the service and is counted; non-reloadable keys are
//! refused by name; file changes are picked up on their own; every trigger reaches the same path.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ops::{admin_cli, config_text, http, parse_prometheus, start_from, sum, ConfigFile};
use common::{eventually, fresh_db, Cluster, TestProxy};
use mysql_async::prelude::*;

/// One client of the load: reads, autocommit writes and short transactions until `stop`.
async fn client(
    opts: mysql_async::Opts,
    n: u32,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
) {
    let mut conn = mysql_async::Conn::new(opts).await.expect("connect through the proxy");
    let mut i = 0u32;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let result: Result<(), mysql_async::Error> = async {
            let _: Option<i64> = conn.query_first("SELECT COUNT(*) FROM t").await?;
            conn.exec_drop("INSERT INTO t (client, seq) VALUES (?, ?)", (n, i)).await?;
            if i % 3 == 0 {
                conn.query_drop("BEGIN").await?;
                conn.exec_drop("UPDATE t SET seq = seq + 1 WHERE client = ? AND seq = ?", (n, i)).await?;
                let _: Option<i64> = conn.query_first("SELECT COUNT(*) FROM t WHERE client = 0").await?;
                conn.query_drop("COMMIT").await?;
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                done.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => errors.lock().unwrap().push(format!("client {n}: {err}")),
        }
    }
    conn.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_under_load_adds_reweights_and_removes_backends_without_client_errors() {
    let cluster = Cluster::shared().await;
    let replica = cluster.replicas()[0];
    let file = ConfigFile::new("reload-load", &config_text(&cluster, &[], &[], ""));
    let handle = start_from(&file, false).await;
    let proxy = TestProxy { handle, cluster: cluster.clone() };
    let db = fresh_db(&cluster, "reload").await;
    let mut setup = proxy.connect_db(&db).await;
    setup.query_drop("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, client INT, seq INT)").await.unwrap();
    setup.disconnect().await.unwrap();
    cluster.wait_replicas().await;

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..50)
        .map(|n| tokio::spawn(client(proxy.opts(Some(&db)), n, stop.clone(), done.clone(), errors.clone())))
        .collect();
    let progress = |after: u64| {
        let done = done.clone();
        async move { eventually(Duration::from_secs(20), || async { done.load(Ordering::Relaxed) >= after }).await }
    };
    assert!(progress(200).await, "the load runs");

    // 1. A new replica (the same server under a second name), through POST /reload.
    file.replace(&config_text(&cluster, &[], &[("extra", replica, 2)], ""));
    let (status, body) = http(proxy.handle.http_addr(), "POST", "/reload").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("backend extra added"), "{body}");
    let used = eventually(Duration::from_secs(10), || async {
        let (_, body) = http(proxy.handle.http_addr(), "GET", "/backends").await;
        let backends: serde_json::Value = serde_json::from_str(&body).unwrap();
        backends.as_array().unwrap().iter().any(|b| b["name"] == "extra" && b["connections"].as_u64() > Some(0))
    })
    .await;
    assert!(used, "reads reach the added backend");
    let before = done.load(Ordering::Relaxed);
    assert!(progress(before + 200).await);

    // 2. Reweight, through the admin interface's RELOAD.
    file.replace(&config_text(&cluster, &[1, 3, 1], &[("extra", replica, 2)], ""));
    let out = admin_cli(proxy.handle.admin_addr().port(), "admin", "RELOAD").await.unwrap();
    assert!(out.contains("weight 1 -> 3"), "{out}");
    assert_eq!(proxy.handle.topology().nodes[1].config.weight, 3);
    let before = done.load(Ordering::Relaxed);
    assert!(progress(before + 200).await);

    // 3. Remove the added backend, through the in-process handle (SIGHUP's path).
    file.replace(&config_text(&cluster, &[1, 3, 1], &[], ""));
    let changes = proxy.handle.reload().await.unwrap().unwrap();
    assert!(changes.iter().any(|c| c.contains("backend extra removed")), "{changes:?}");
    assert_eq!(proxy.handle.topology().nodes.len(), 3);
    let before = done.load(Ordering::Relaxed);
    assert!(progress(before + 200).await);

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let errors = errors.lock().unwrap();
    assert!(errors.is_empty(), "{} client errors, first: {:?}", errors.len(), &errors[..errors.len().min(5)]);
    let samples = parse_prometheus(&proxy.handle.metrics_text().unwrap()).unwrap();
    assert_eq!(sum(&samples, "rwsplit_config_reloads_total", &[("result", "ok")]), 3.0);
    assert_eq!(sum(&samples, "rwsplit_config_reloads_total", &[("result", "error")]), 0.0);
}

#[tokio::test]
async fn a_bad_file_keeps_the_running_config_and_is_counted() {
    let cluster = Cluster::shared().await;
    let good = config_text(&cluster, &[], &[], "");
    let file = ConfigFile::new("reload-bad", &good);
    let handle = start_from(&file, false).await;
    let proxy = TestProxy { handle, cluster: cluster.clone() };
    let mut conn = proxy.connect().await;
    conn.query_drop("SELECT 1").await.unwrap();

    // A parse error names the key; a validation error names the key path and its line.
    file.replace(&format!("{good}\n[pool]\nbogus_key = 1\n"));
    let err = proxy.handle.reload().await.unwrap().unwrap_err();
    assert!(err.contains("bogus_key"), "{err}");
    file.replace(&good.replace(&format!("port = {}", cluster.ports[1]), "port = 0"));
    let err = proxy.handle.reload().await.unwrap().unwrap_err();
    assert!(err.contains("backends[1].port") && err.contains("line"), "{err}");
    // A non-reloadable key is refused by name.
    file.replace(&good.replace("mysql = \"127.0.0.1:0\"", "mysql = \"127.0.0.1:1\""));
    let (status, body) = http(proxy.handle.http_addr(), "POST", "/reload").await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("listen.mysql cannot change without a restart"), "{body}");

    conn.query_drop("SELECT 1").await.expect("the old session still works");
    let mut fresh = proxy.connect().await;
    fresh.query_drop("SELECT 1").await.expect("new sessions still work");
    let samples = parse_prometheus(&proxy.handle.metrics_text().unwrap()).unwrap();
    assert_eq!(sum(&samples, "rwsplit_config_reloads_total", &[("result", "error")]), 3.0);
    assert_eq!(sum(&samples, "rwsplit_config_reloads_total", &[("result", "ok")]), 0.0);
    assert_eq!(proxy.handle.topology().nodes[1].config.port, cluster.ports[1]);

    file.replace(&good);
    assert_eq!(proxy.handle.reload().await.unwrap().unwrap(), ["no changes"]);
    conn.disconnect().await.unwrap();
    fresh.disconnect().await.unwrap();
}

#[tokio::test]
async fn a_changed_file_is_reloaded_on_its_own() {
    let cluster = Cluster::shared().await;
    let file = ConfigFile::new("reload-watch", &config_text(&cluster, &[], &[], ""));
    let handle = start_from(&file, true).await;
    file.replace(&config_text(&cluster, &[1, 1, 4], &[], "[stats]\ndigests = 7\n"));
    let followed = eventually(Duration::from_secs(10), || async {
        handle.topology().nodes[2].config.weight == 4 && handle.metrics().digests.capacity() == 7
    })
    .await;
    assert!(followed, "the file change was applied");
    handle.shutdown().await;
}

#[tokio::test]
async fn a_new_log_level_reaches_the_log_filter() {
    let cluster = Cluster::shared().await;
    let file = ConfigFile::new("reload-log", &config_text(&cluster, &[], &[], ""));
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log: rwsplit::app::LogFilter = {
        let seen = seen.clone();
        Arc::new(move |level: &str| {
            seen.lock().unwrap().push(level.to_owned());
            Ok(())
        })
    };
    let options =
        rwsplit::app::Options { config_path: Some(file.path.clone()), watch_file: false, log_filter: Some(log) };
    let handle = rwsplit::app::start_with(file.config(), options).await.unwrap();
    file.replace(&config_text(&cluster, &[], &[], "[logging]\nlevel = \"debug,rwsplit::router=trace\"\n"));
    let changes = handle.reload().await.unwrap().unwrap();
    assert!(changes.iter().any(|c| c.starts_with("logging.level")), "{changes:?}");
    assert_eq!(*seen.lock().unwrap(), ["debug,rwsplit::router=trace"]);
    handle.shutdown().await;
}
