//! Criterion benches of the routing decision: [`router::route`] alone for the common cases, and the
//! per-statement sequence `frontend::query` runs around it (load the topology snapshot from its
//! `ArcSwap`, route, pick a replica with the smooth weighted round-robin [`Balancer`]), on one
//! thread and on two threads at once (the `Balancer` mutex and the snapshot's reference count are
//! shared by every session).
//!
//! Run: `cargo bench --bench routing`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use criterion::{criterion_group, criterion_main, Criterion};
use rwsplit::backend::{Balancer, Topology};
use rwsplit::classify::{lex, Classified};
use rwsplit::config::Config;
use rwsplit::router::{self, Hold, Situation, Target};

const CONFIG: &str = r#"
[[backends]]
name = "node1"
host = "127.0.0.1"
port = 13306
role = "primary"

[[backends]]
name = "node2"
host = "127.0.0.1"
port = 13307
role = "replica"

[[backends]]
name = "node3"
host = "127.0.0.1"
port = 13308
role = "replica"

[[users]]
name = "app"
password = "app"
"#;

const FREE: Situation = Situation { hold: None, autocommit: true };

fn topology() -> Topology {
    Topology::from_config(&Config::from_toml(CONFIG).expect("bench config parses"))
}

/// What `frontend::query::Session::execute` does per statement before the checkout.
fn decide(cell: &ArcSwap<Topology>, balancer: &Balancer, stmt: &Classified) -> Target {
    let topology = cell.load_full();
    let route = router::route(stmt, false, FREE, &topology);
    if route.target == Target::Replica {
        if let Some(index) = balancer.pick(&topology, None, None) {
            return Target::Backend(index);
        }
    }
    route.target
}

fn route(c: &mut Criterion) {
    let topology = topology();
    let select = lex(b"SELECT c FROM sbtest1 WHERE id=5017");
    let update = lex(b"UPDATE sbtest1 SET k=k+1 WHERE id=5018");
    let hinted = lex(b"/* rwsplit:backend=node3 */ SELECT c FROM sbtest1 WHERE id=5017");
    assert_eq!(router::route(&select, false, FREE, &topology).target, Target::Replica);
    let mut g = c.benchmark_group("route");
    g.warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    g.bench_function("read", |b| b.iter(|| router::route(black_box(&select), false, FREE, &topology)));
    g.bench_function("write", |b| b.iter(|| router::route(black_box(&update), false, FREE, &topology)));
    g.bench_function("backend_hint", |b| b.iter(|| router::route(black_box(&hinted), false, FREE, &topology)));
    let in_trx = Situation { hold: Some(Hold::Transaction), autocommit: true };
    g.bench_function("in_transaction", |b| b.iter(|| router::route(black_box(&select), false, in_trx, &topology)));
    g.finish();

    let cell = Arc::new(ArcSwap::from_pointee(topology));
    let balancer = Arc::new(Balancer::default());
    let mut g = c.benchmark_group("per_statement");
    g.warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    g.bench_function("snapshot_load_full", |b| b.iter(|| black_box(cell.load_full())));
    g.bench_function("snapshot_load_guard", |b| b.iter(|| black_box(cell.load().nodes.len())));
    g.bench_function("balancer_pick", |b| {
        let topology = cell.load_full();
        b.iter(|| balancer.pick(black_box(&topology), None, None))
    });
    g.bench_function("decide_read/1_thread", |b| b.iter(|| decide(&cell, &balancer, black_box(&select))));
    // Two threads deciding at once: the time per decision as seen by each thread.
    g.bench_function("decide_read/2_threads", |b| {
        b.iter_custom(|iters| {
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let (cell, balancer) = (cell.clone(), balancer.clone());
                    std::thread::spawn(move || {
                        let start = Instant::now();
                        for _ in 0..iters {
                            black_box(decide(&cell, &balancer, black_box(&select)));
                        }
                        start.elapsed()
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().expect("bench thread")).max().unwrap_or_default()
        })
    });
    g.finish();
}

criterion_group!(benches, route);
criterion_main!(benches);
