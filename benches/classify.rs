//! Criterion benches of statement classification: the one-pass lexer on sysbench-style OLTP
//! statements (the hot path, target ≤ 1 µs), the [`Classifier`] (lexer plus digest cache), and the
//! sqlparser fallback that runs once per digest for statements the lexer is unsure about.
//!
//! Run: `cargo bench --bench classify`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rwsplit::classify::{fallback_analyze, lex, Classifier, Flags, Kind};

/// sysbench's OLTP statements (oltp_common.lua), with typical literals.
const OLTP: [(&str, &str); 5] = [
    ("point_select", "SELECT c FROM sbtest1 WHERE id=5017"),
    ("range_order_by", "SELECT DISTINCT c FROM sbtest3 WHERE id BETWEEN 4926 AND 5025 ORDER BY c"),
    ("update_index", "UPDATE sbtest2 SET k=k+1 WHERE id=5018"),
    ("delete", "DELETE FROM sbtest4 WHERE id=5002"),
    (
        "insert",
        "INSERT INTO sbtest1 (id, k, c, pad) VALUES (5004, 4998, '68487932199-96439406143-93774651418-41631865787-\
         96406072701-20604855487-25459966574-28203206787-41238978918-19503783441', \
         '22195207048-70116052123-74140395089-76317954521-98694025897')",
    ),
];

/// A statement the lexer cannot place (flags `UNSURE`), so the Classifier asks the fallback.
const UNSURE: &str = "WITH x AS (SELECT 1)";

/// A 20-column join: the kind of statement where a full parse is most expensive.
const JOIN: &str = "SELECT o.id, o.user_id, o.status, o.total, o.currency, o.created_at, o.updated_at, \
    u.name, u.email, u.country, u.created_at, a.street, a.city, a.zip, a.country, p.method, p.status, \
    p.amount, p.paid_at, s.carrier FROM orders o JOIN users u ON u.id = o.user_id \
    LEFT JOIN addresses a ON a.id = o.address_id LEFT JOIN payments p ON p.order_id = o.id \
    LEFT JOIN shipments s ON s.order_id = o.id WHERE o.user_id = 42 AND o.status IN ('paid', 'shipped') \
    ORDER BY o.created_at DESC LIMIT 20";

fn lexer(c: &mut Criterion) {
    let mut g = c.benchmark_group("lex");
    g.warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    for (name, sql) in OLTP {
        g.throughput(Throughput::Bytes(sql.len() as u64));
        g.bench_function(name, |b| b.iter(|| lex(black_box(sql.as_bytes()))));
    }
    // One big statement: how long a worker is busy lexing it (issue 13 item 7).
    let mut big = b"SELECT LENGTH('".to_vec();
    big.resize(big.len() + (16 << 20), b'x');
    big.extend_from_slice(b"')");
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("select_16mib_string", |b| b.iter(|| lex(black_box(&big))));
    g.finish();
}

fn classifier(c: &mut Criterion) {
    let unsure = lex(UNSURE.as_bytes());
    assert!(
        unsure.kind == Kind::Unknown && unsure.flags.contains(Flags::UNSURE),
        "{UNSURE:?} is no longer UNSURE for the lexer; pick another statement for this bench"
    );
    let classifier = Classifier::new(4096);
    let mut g = c.benchmark_group("classifier");
    g.warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    let point = OLTP[0].1.as_bytes();
    g.bench_function("point_select", |b| b.iter(|| classifier.classify(black_box(point))));
    // First call computes and caches the verdict; the bench measures cache hits.
    classifier.classify(UNSURE.as_bytes());
    g.bench_function("unsure_cache_hit", |b| b.iter(|| classifier.classify(black_box(UNSURE.as_bytes()))));
    g.finish();

    let mut g = c.benchmark_group("fallback");
    g.warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2)).sample_size(30);
    // What a digest-cache miss costs: sqlparser on the statement itself (a parse error here).
    g.bench_function("sqlparser/unsure_stmt", |b| b.iter(|| fallback_analyze(black_box(UNSURE.as_bytes()))));
    // Reference costs of a full parse, had the lexer been unsure about these.
    g.bench_function("sqlparser/point_select", |b| b.iter(|| fallback_analyze(black_box(point))));
    g.bench_function("sqlparser/join_20_columns", |b| b.iter(|| fallback_analyze(black_box(JOIN.as_bytes()))));
    // The worst a client can hand the fallback per cache miss: an IN list at the length bound.
    let mut at_bound = String::from("WITH a AS (SELECT 1) SELECT * FROM a WHERE x IN (0");
    while at_bound.len() < rwsplit::classify::MAX_FALLBACK_LEN - 8 {
        at_bound.push_str(",1");
    }
    at_bound.push(')');
    g.bench_function("sqlparser/in_list_at_length_bound", |b| {
        b.iter(|| fallback_analyze(black_box(at_bound.as_bytes())))
    });
    g.finish();
}

criterion_group!(benches, lexer, classifier);
criterion_main!(benches);
