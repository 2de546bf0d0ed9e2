use std::time::Duration;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn digest_store_stays_bounded_over_100k_distinct_statements() {
    let store = Digests::new(100);
    for i in 0..100_000u64 {
        // Two heavy hitters among a stream of one-off statements.
        store.record(i.wrapping_mul(0x9E37_79B9_7F4A_7C15), || format!("SELECT {i} FROM t{i}"), ms(1), 1, false);
        if i % 10 == 0 {
            store.record(1, || "SELECT a FROM hot WHERE id = ?".into(), ms(2), 3, false);
        }
        if i % 25 == 0 {
            store.record(2, || "UPDATE warm SET x = ? WHERE id = ?".into(), ms(20), 0, i % 50 == 0);
        }
        assert!(store.len() <= 100);
    }
    assert_eq!(store.len(), 100);
    assert!(store.text_bytes() <= 100 * TEXT_LIMIT);
    let top = store.top(2);
    assert_eq!((top[0].digest, top[0].count, top[0].rows), (1, 10_000, 30_000));
    assert_eq!(&*top[0].text, "SELECT a FROM hot WHERE id = ?");
    assert_eq!((top[1].digest, top[1].count, top[1].errors), (2, 4_000, 2_000));
    assert_eq!(top[1].quantile(0.99), Some(Duration::from_millis(50)));
    assert_eq!(top[0].quantile(0.5), Some(Duration::from_millis(5)));
}

#[test]
fn texts_are_cut_and_capacity_changes_keep_the_most_frequent() {
    let store = Digests::new(4);
    store.record(9, || "x".repeat(5000), ms(1), 0, false);
    assert!(store.top(1)[0].text.len() <= TEXT_LIMIT);
    for digest in 1..=4u64 {
        for _ in 0..digest * 10 {
            store.record(digest, || format!("q{digest}"), ms(1), 0, false);
        }
    }
    store.set_capacity(2);
    let kept: Vec<u64> = store.top(10).iter().map(|s| s.digest).collect();
    assert!(kept.len() <= 2 && kept.contains(&4), "{kept:?}");
    store.set_capacity(0);
    store.record(5, || "q5".into(), ms(1), 0, false);
    assert!(store.is_empty());
}

#[test]
fn registry_exports_the_core_names_with_the_prefix() {
    let reg = registry().unwrap();
    let config = crate::config::Config::default();
    let metrics = Metrics::register(&reg, &config).unwrap();
    metrics.clients.query(RouteLabel::Replica, QueryResult::Ok, ms(3));
    metrics.backends.set_backends(&["db1", "db2"]);
    metrics.backends.checkout(1, "db2", ms(1), Checkout::Timeout);
    metrics.backends.checkout(0, "renamed", ms(1), Checkout::Ok);
    metrics.ops.reload(ReloadResult::Error);
    metrics.digests.record(7, || "SELECT \"quoted\"\nnewline".into(), ms(2), 1, false);
    let text = encode(&reg).unwrap();
    for name in [
        "rwsplit_queries_total{result=\"ok\",route=\"replica\"} 1",
        "rwsplit_query_duration_seconds_bucket{route=\"replica\",le=\"0.0032\"} 1",
        "rwsplit_pool_checkout_timeouts_total{backend=\"db2\"} 1",
        "rwsplit_pool_checkout_wait_seconds_count{backend=\"renamed\"} 1",
        "rwsplit_config_reloads_total{result=\"error\"} 1",
        "rwsplit_digest_queries_total{digest=\"0000000000000007\"} 1",
        "rwsplit_digest_duration_seconds_bucket{digest=\"0000000000000007\",le=\"+Inf\"} 1",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    // Statement text is client input: never a label (it is on SHOW DIGESTS and GET /digests).
    assert!(!text.contains("quoted") && !text.contains("digest_info"), "digest text on /metrics:\n{text}");
}

#[test]
fn backend_refresh_replaces_roles_and_drops_removed_backends() {
    let reg = registry().unwrap();
    let metrics = BackendMetrics::register(&reg).unwrap();
    let row = |name: &str, role| BackendRow {
        name: name.into(),
        role,
        up: true,
        lag: Some(ms(1500)),
        weight: 1,
        open: 2,
        in_use: 1,
        max: 50,
        prepared: 7,
        waiting: 0,
        held: vec![("app".to_owned(), HeldCount { pinned: 1, transaction: 0 })],
    };
    metrics.refresh(&[row("a", "primary"), row("b", "replica")]);
    metrics.refresh(&[row("a", "replica")]);
    let text = encode(&reg).unwrap();
    assert!(text.contains("rwsplit_backend_up{backend=\"a\",role=\"replica\"} 1"), "{text}");
    assert!(!text.contains("role=\"primary\""), "{text}");
    assert!(!text.contains("backend=\"b\""), "{text}");
    assert!(text.contains("rwsplit_replica_lag_seconds{backend=\"a\"} 1.5"), "{text}");
    assert!(text.contains("rwsplit_pool_connections_held{backend=\"a\",hold=\"pinned\",user=\"app\"} 1"), "{text}");
    assert!(text.contains("rwsplit_prepared_statements{backend=\"a\"} 7"), "{text}");
}
