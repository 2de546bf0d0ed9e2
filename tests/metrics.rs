//! `/metrics` of a running proxy: valid Prometheus text with the documented names, counts that
//! follow the traffic, per-digest statistics bounded by `stats.digests`, and a Grafana dashboard
//! that queries only metrics the proxy exports.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::ops::{http, parse_prometheus, sum, Sample};
use common::{eventually, fresh_db, Cluster, TestProxy};
use mysql_async::prelude::*;

async fn scrape(proxy: &TestProxy) -> Vec<Sample> {
    let (status, body) = http(proxy.handle.http_addr(), "GET", "/metrics").await;
    assert_eq!(status, 200, "{body}");
    parse_prometheus(&body).unwrap_or_else(|err| panic!("/metrics is not valid Prometheus text: {err}"))
}

/// The id `/metrics` uses for the digest whose normalized text is `text`, from `GET /digests`.
async fn digest_id(proxy: &TestProxy, text: &str) -> String {
    let (status, body) = http(proxy.handle.http_addr(), "GET", "/digests").await;
    assert_eq!(status, 200, "{body}");
    let rows: serde_json::Value = serde_json::from_str(&body).unwrap();
    let row = rows.as_array().expect("a JSON array").iter().find(|r| r["text"] == text);
    row.unwrap_or_else(|| panic!("no digest with text {text:?} in {body}"))["digest"].as_str().unwrap().to_owned()
}

fn names(samples: &[Sample]) -> BTreeSet<String> {
    samples.iter().map(|s| s.name.clone()).collect()
}

/// Every name the issue and STYLE.md list, plus the digest families.
const EXPECTED: &[&str] = &[
    "rwsplit_client_connections",
    "rwsplit_client_connections_accepted_total",
    "rwsplit_client_connections_rejected_total",
    "rwsplit_queries_total",
    "rwsplit_query_duration_seconds_bucket",
    "rwsplit_query_duration_seconds_sum",
    "rwsplit_query_duration_seconds_count",
    "rwsplit_pool_connections",
    "rwsplit_pool_connections_in_use",
    "rwsplit_pool_max_connections",
    "rwsplit_pool_checkout_wait_seconds_bucket",
    "rwsplit_pool_checkout_timeouts_total",
    "rwsplit_pool_connect_errors_total",
    "rwsplit_backend_up",
    "rwsplit_backend_weight",
    "rwsplit_replica_lag_seconds",
    "rwsplit_failovers_total",
    "rwsplit_pinned_sessions_total",
    "rwsplit_prepared_statements",
    "rwsplit_config_reloads_total",
    "rwsplit_client_received_bytes_total",
    "rwsplit_client_sent_bytes_total",
    "rwsplit_digest_queries_total",
    "rwsplit_digest_errors_total",
    "rwsplit_digest_rows_total",
    "rwsplit_digest_duration_seconds_bucket",
    "rwsplit_draining",
];

/// Runs reads, writes, an error, a transaction and a pin through the proxy.
async fn traffic(proxy: &TestProxy, db: &str) {
    let mut conn = proxy.connect_db(db).await;
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await.unwrap();
    for i in 0..10 {
        conn.exec_drop("INSERT INTO t VALUES (?, ?)", (i, i)).await.unwrap();
    }
    proxy.cluster.wait_replicas().await;
    for _ in 0..20 {
        let _: Vec<(i32, i32)> = conn.query("SELECT id, v FROM t").await.unwrap();
    }
    assert!(conn.query_drop("SELECT no_such_column FROM t").await.is_err());
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("UPDATE t SET v = v + 1 WHERE id = 1").await.unwrap();
    conn.query_drop("COMMIT").await.unwrap();
    conn.query_drop("SET @pinned = 1").await.unwrap();
    conn.disconnect().await.unwrap();
}

#[tokio::test]
async fn metrics_parse_and_follow_the_traffic() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let db = fresh_db(&proxy.cluster, "metrics").await;
    traffic(&proxy, &db).await;
    let wrong = proxy.opts(None);
    let wrong = mysql_async::OptsBuilder::from_opts(wrong).pass(Some("not-the-password"));
    let denied = mysql_async::Conn::new(wrong).await.expect_err("a wrong password is refused");
    assert!(matches!(&denied, mysql_async::Error::Server(e) if e.code == 1045), "{denied}");
    // A statement prepared through the proxy stays prepared on a pooled backend connection.
    let mut conn = proxy.connect_db(&db).await;
    let two: Option<i64> = conn.exec_first("SELECT ? + 1", (1,)).await.unwrap();
    assert_eq!(two, Some(2));
    let prepared = sum(&scrape(&proxy).await, "rwsplit_prepared_statements", &[]);
    assert!(prepared >= 1.0, "prepared statements open on the backends: {prepared}");
    conn.disconnect().await.unwrap();
    // Lag appears once the monitor measured the replicas.
    let lag_known = eventually(Duration::from_secs(10), || async {
        names(&scrape(&proxy).await).contains("rwsplit_replica_lag_seconds")
    })
    .await;
    assert!(lag_known, "the monitor never reported replica lag");
    let samples = scrape(&proxy).await;
    let present = names(&samples);
    let missing: Vec<_> = EXPECTED.iter().filter(|n| !present.contains(**n)).collect();
    assert!(missing.is_empty(), "missing from /metrics: {missing:?}");

    let replica_ok = sum(&samples, "rwsplit_queries_total", &[("route", "replica"), ("result", "ok")]);
    let primary_ok = sum(&samples, "rwsplit_queries_total", &[("route", "primary"), ("result", "ok")]);
    assert!(replica_ok >= 20.0, "20 reads went to replicas: {replica_ok}");
    assert!(primary_ok >= 14.0, "DDL, 10 inserts, a transaction and SET went to the primary: {primary_ok}");
    assert!(sum(&samples, "rwsplit_queries_total", &[("result", "error")]) >= 1.0);
    let count = sum(&samples, "rwsplit_query_duration_seconds_count", &[]);
    assert!(count >= replica_ok + primary_ok, "every statement has a latency sample");
    assert!(sum(&samples, "rwsplit_pinned_sessions_total", &[("reason", "user_var")]) >= 1.0);
    assert!(sum(&samples, "rwsplit_pool_checkout_wait_seconds_count", &[]) >= 30.0, "checkouts are timed");
    assert!(sum(&samples, "rwsplit_client_connections_accepted_total", &[]) >= 1.0);
    assert_eq!(sum(&samples, "rwsplit_client_connections_rejected_total", &[("reason", "access_denied")]), 1.0);
    assert!(sum(&samples, "rwsplit_client_sent_bytes_total", &[]) > 1000.0);
    assert!(sum(&samples, "rwsplit_client_received_bytes_total", &[]) > 500.0);
    let primary_up = samples.iter().any(|s| {
        s.name == "rwsplit_backend_up" && s.labels.get("role").map(String::as_str) == Some("primary") && s.value == 1.0
    });
    assert!(primary_up, "the primary is up with role primary");
    let digest = digest_id(&proxy, "SELECT id, v FROM t").await;
    assert_eq!(sum(&samples, "rwsplit_digest_queries_total", &[("digest", &digest)]), 20.0);
    assert_eq!(sum(&samples, "rwsplit_digest_rows_total", &[("digest", &digest)]), 200.0);
    assert_eq!(sum(&samples, "rwsplit_client_connections", &[]), 0.0, "the client disconnected");
}

#[tokio::test]
async fn slow_statements_are_counted() {
    let cluster = Cluster::shared().await;
    let mut config = cluster.config();
    config.logging.slow_query = Duration::from_millis(20);
    let proxy = TestProxy::start_with(cluster, config).await;
    let mut conn = proxy.connect().await;
    conn.query_drop("SELECT 1").await.unwrap();
    conn.query_drop("SELECT SLEEP(0.05)").await.unwrap();
    let samples = scrape(&proxy).await;
    assert_eq!(sum(&samples, "rwsplit_slow_queries_total", &[]), 1.0);
    conn.disconnect().await.unwrap();
}

#[tokio::test]
async fn digest_statistics_stay_bounded_end_to_end() {
    let cluster = Cluster::shared().await;
    let mut config = cluster.config();
    config.stats.digests = 50;
    let proxy = TestProxy::start_with(cluster, config).await;
    let mut conn = proxy.connect().await;
    for i in 0..2000 {
        // A distinct alias makes a distinct digest; every tenth statement is the same one.
        conn.query_drop(format!("SELECT {i} AS c{i}")).await.unwrap();
        if i % 10 == 0 {
            conn.query_drop("SELECT 1 AS hot").await.unwrap();
        }
    }
    let samples = scrape(&proxy).await;
    let series = samples.iter().filter(|s| s.name == "rwsplit_digest_queries_total").count();
    assert!(series <= 50, "{series} digest series");
    let hot = digest_id(&proxy, "SELECT ? AS hot").await;
    assert_eq!(sum(&samples, "rwsplit_digest_queries_total", &[("digest", &hot)]), 200.0);
    let kept = proxy.handle.metrics().digests.len();
    assert!(kept <= 50, "{kept} digests kept");
}

/// Every metric name the dashboard queries must be on `/metrics` of a running proxy.
#[tokio::test]
async fn dashboard_queries_only_exported_metrics() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/grafana/dashboards/rwsplit.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON parses");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 20, "the dashboard has queries: {}", exprs.len());
    let mut wanted = BTreeSet::new();
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("rwsplit_") {
            let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            rest = &rest[at + name.len()..];
            wanted.insert(name);
        }
    }
    for panel in ["Latency p50 / p95 / p99", "Read/write split", "Pool saturation", "Replica lag", "Failovers"] {
        assert!(text.contains(panel), "panel {panel:?}");
    }

    let proxy = TestProxy::start(Cluster::shared().await).await;
    let db = fresh_db(&proxy.cluster, "dashboard").await;
    traffic(&proxy, &db).await;
    let exported = eventually(Duration::from_secs(10), || async {
        let present = names(&scrape(&proxy).await);
        wanted.iter().all(|n| present.contains(n))
    })
    .await;
    let present = names(&scrape(&proxy).await);
    let missing: Vec<_> = wanted.iter().filter(|n| !present.contains(*n)).collect();
    assert!(exported, "the dashboard queries metrics /metrics lacks: {missing:?}");
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn http_endpoint_answers_health_and_rejects_bad_requests() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let addr = proxy.handle.http_addr();
    assert_eq!(http(addr, "GET", "/live").await.0, 200);
    let ready = eventually(Duration::from_secs(5), || async { http(addr, "GET", "/ready").await.0 == 200 }).await;
    assert!(ready, "ready once a primary is known");
    let (status, body) = http(addr, "GET", "/backends").await;
    assert_eq!(status, 200);
    let backends: serde_json::Value = serde_json::from_str(&body).unwrap();
    let backends = backends.as_array().expect("a JSON array");
    assert_eq!(backends.len(), 3);
    for key in ["name", "host", "port", "role", "up", "weight", "lag_seconds", "connections"] {
        assert!(backends[0].get(key).is_some(), "{key} in {body}");
    }
    assert!(backends.iter().any(|b| b["role"] == "primary"));
    assert_eq!(http(addr, "GET", "/nope").await.0, 404);
    assert_eq!(http(addr, "POST", "/metrics").await.0, 405);
    assert_eq!(http(addr, "GET", "/reload").await.0, 405);
    let (status, body) = http(addr, "POST", "/reload").await;
    assert_eq!(status, 422, "no config file to reload: {body}");
    assert!(body.contains("no config file"), "{body}");
}

/// `/metrics` carries digest ids only: no series has statement text in a label (client input),
/// and the text is on `GET /digests`, which needs the HTTP token when one is set.
#[tokio::test]
async fn digest_text_stays_off_metrics_and_needs_the_token() {
    let cluster = Cluster::shared().await;
    let mut config = cluster.config();
    config.admin.http_token = "digest-token".into();
    let proxy = TestProxy::start_with(cluster, config).await;
    let mut conn = proxy.connect().await;
    conn.query_drop("SELECT 'secret-literal' AS digest_probe_column").await.unwrap();
    conn.disconnect().await.unwrap();
    let samples = scrape(&proxy).await;
    let digest_series: Vec<_> = samples.iter().filter(|s| s.name.starts_with("rwsplit_digest_")).collect();
    assert!(!digest_series.is_empty(), "the digest families are exported");
    for s in &digest_series {
        let keys: Vec<&str> = s.labels.keys().map(String::as_str).filter(|k| *k != "le").collect();
        assert_eq!(keys, ["digest"], "{} has labels {:?}", s.name, s.labels);
        let id = &s.labels["digest"];
        assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()), "digest label {id:?} is not an id");
    }
    let (_, body) = http(proxy.handle.http_addr(), "GET", "/metrics").await;
    assert!(!body.contains("digest_probe_column"), "statement text leaked into /metrics");

    let addr = proxy.handle.http_addr();
    let get = |token: Option<&'static str>| async move {
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let raw = format!("GET /digests HTTP/1.1\r\nHost: rwsplit\r\n{auth}Connection: close\r\n\r\n");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stream, raw.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let read = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut out);
        tokio::time::timeout(Duration::from_secs(30), read).await.unwrap().unwrap();
        String::from_utf8(out).unwrap()
    };
    assert!(get(None).await.starts_with("HTTP/1.1 401"), "no token, no statement text");
    assert!(get(Some("wrong")).await.starts_with("HTTP/1.1 401"));
    let ok = get(Some("digest-token")).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let body = ok.split_once("\r\n\r\n").unwrap().1;
    let rows: serde_json::Value = serde_json::from_str(body).unwrap();
    let row = rows.as_array().unwrap().iter().find(|r| r["text"] == "SELECT ? AS digest_probe_column");
    let row = row.unwrap_or_else(|| panic!("the statement's digest in {body}"));
    assert_eq!(row["count"], 1);
    let id = row["digest"].as_str().unwrap();
    assert_eq!(
        sum(&samples, "rwsplit_digest_queries_total", &[("digest", id)]),
        1.0,
        "the JSON id is the metric label"
    );
}
