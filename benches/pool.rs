//! Criterion benches of backend pool checkout and return.
//!
//! * `bb8_noop/*`: the bb8 machinery alone, with a no-op `ManageConnection` and the builder options
//!   `backend::Pools` uses (LIFO, no test on checkout, no retries). Always runs.
//! * `pools/lookup`: `Pools::pool` as `frontend::query` calls it per statement (build the
//!   `PoolKey`, which allocates the user name; lock the map; hash the key; clone the `Pool`).
//!   Needs no server: pools connect lazily.
//! * `pools/checkout_return_real`: `Pools::pool` + `Pools::checkout` + dropping the `Lease`, the
//!   whole per-statement pool path, with real backend connections to the cluster of
//!   `scripts/cluster.sh` (node1, `127.0.0.1:$RWSPLIT_CLUSTER_PORT_BASE`, default 13306, user
//!   app/app). Skipped with a message when that server is not reachable. No traffic goes over the
//!   connection between checkouts, so the "closed by peer" look at the socket costs no syscall
//!   here, unlike in the proxy where a response was just read (see RESULTS.md).
//!
//! Run: `cargo bench --bench pool`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use rwsplit::backend::{BackendIndex, PoolKey, Pools, Topology};
use rwsplit::config::Config;

/// A connection that costs nothing to make.
#[derive(Debug)]
struct Noop;

impl bb8::ManageConnection for Noop {
    type Connection = u64;
    type Error = std::io::Error;

    async fn connect(&self) -> Result<u64, std::io::Error> {
        Ok(0)
    }

    async fn is_valid(&self, _conn: &mut u64) -> Result<(), std::io::Error> {
        Ok(())
    }

    fn has_broken(&self, _conn: &mut u64) -> bool {
        false
    }
}

fn noop_pool(rt: &tokio::runtime::Runtime, size: u32) -> bb8::Pool<Noop> {
    rt.block_on(async {
        let pool = bb8::Pool::builder()
            .max_size(size)
            .test_on_check_out(false)
            .retry_connection(false)
            .queue_strategy(bb8::QueueStrategy::Lifo)
            .connection_timeout(Duration::from_secs(2))
            .build(Noop)
            .await
            .expect("no-op pool");
        // Warm: open every connection once.
        let held: Vec<_> = hold_all(&pool, size).await;
        drop(held);
        pool
    })
}

async fn hold_all(pool: &bb8::Pool<Noop>, n: u32) -> Vec<bb8::PooledConnection<'_, Noop>> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(pool.get().await.expect("no-op checkout"));
    }
    held
}

fn bb8_noop(c: &mut Criterion) {
    let mut g = c.benchmark_group("bb8_noop");
    g.warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let pool = noop_pool(&rt, 8);
    g.bench_function("get_owned_and_drop", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let conn = pool.get_owned().await.expect("checkout");
                    black_box(&conn);
                }
                start.elapsed()
            })
        })
    });
    // Two sessions checking out at once on a two-worker runtime (the pool's lock is shared).
    let rt2 = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let pool2 = noop_pool(&rt2, 8);
    g.bench_function("get_owned_and_drop/2_tasks", |b| {
        b.iter_custom(|iters| {
            rt2.block_on(async {
                let tasks: Vec<_> = (0..2)
                    .map(|_| {
                        let pool = pool2.clone();
                        tokio::spawn(async move {
                            let start = Instant::now();
                            for _ in 0..iters {
                                let conn = pool.get_owned().await.expect("checkout");
                                black_box(&conn);
                            }
                            start.elapsed()
                        })
                    })
                    .collect();
                let mut worst = Duration::ZERO;
                for t in tasks {
                    worst = worst.max(t.await.expect("bench task"));
                }
                worst
            })
        })
    });
    g.finish();
}

fn cluster_config() -> Config {
    let port: u16 = std::env::var("RWSPLIT_CLUSTER_PORT_BASE").ok().and_then(|v| v.parse().ok()).unwrap_or(13306);
    let text = format!(
        "[[backends]]\nname = \"node1\"\nhost = \"127.0.0.1\"\nport = {port}\nrole = \"primary\"\n\n\
         [[users]]\nname = \"app\"\npassword = \"app\"\n\n[pool]\nconnect_timeout = \"1s\"\n"
    );
    Config::from_toml(&text).expect("bench config parses")
}

fn pools(c: &mut Criterion) {
    // Every move of a checked-out connection (bb8 hands it around by value) copies this much.
    eprintln!(
        "size_of: backend::Conn {} bytes, backend::Lease {} bytes",
        std::mem::size_of::<rwsplit::backend::Conn>(),
        std::mem::size_of::<rwsplit::backend::Lease>()
    );
    let config = cluster_config();
    let topology = Topology::from_config(&config);
    let index = BackendIndex(0);
    let node = topology.node(index).expect("one backend");
    let user = config.user("app").expect("user app");
    let pools = Pools::default();
    let key = || PoolKey {
        extended: 0,
        backend: index,
        user: user.name.as_str().to_owned(),
        capabilities: 0,
        collation: 45,
        with_schema: false,
    };
    let mut g = c.benchmark_group("pools");
    g.warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    // bb8's builder spawns nothing for min_idle = 0, but must run inside a runtime.
    let _guard = rt.enter();
    g.bench_function("lookup", |b| b.iter(|| black_box(pools.pool(&key(), node, user, &config.pool))));

    let timeout = config.pool.checkout_timeout;
    let reachable = rt.block_on(async {
        let pool = pools.pool(&key(), node, user, &config.pool);
        match tokio::time::timeout(
            Duration::from_secs(3),
            Pools::checkout(&pool, node.name(), timeout, true, std::time::Instant::now()),
        )
        .await
        {
            Ok(Ok(lease)) => {
                drop(lease);
                Ok(())
            }
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err("timed out".to_owned()),
        }
    });
    match reachable {
        Ok(()) => {
            let pools = Arc::new(pools);
            g.bench_function("checkout_return_real", |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let pool = pools.pool(&key(), node, user, &config.pool);
                            let lease = Pools::checkout(&pool, node.name(), timeout, true, std::time::Instant::now())
                                .await
                                .expect("checkout");
                            black_box(&lease);
                        }
                        start.elapsed()
                    })
                })
            });
        }
        Err(err) => eprintln!(
            "pools/checkout_return_real skipped: no backend connection to {}:{} ({err}); \
             start the cluster with `scripts/cluster.sh up`",
            node.config.host, node.config.port
        ),
    }
    g.finish();
}

criterion_group!(benches, bb8_noop, pools);
criterion_main!(benches);
