//! Fairness load tool for `scripts/bench.sh fairness` (not a criterion bench): small clients run
//! point selects while big clients move 16 MiB packets through the same target, and the small
//! queries' latency percentiles are printed. Run once against the primary directly and once
//! through the proxy, with and without the big clients, to see whether one big packet makes
//! everybody else wait (issue 13 item 7).
//!
//! `cargo bench` runs every bench target, so without `FAIRNESS_PORT` this prints how to use it and
//! exits successfully. Configuration, all from the environment:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `FAIRNESS_PORT` | target port on 127.0.0.1 (required) | |
//! | `FAIRNESS_SMALL` | clients running point selects | 8 |
//! | `FAIRNESS_BIG` | clients sending 16 MiB queries (`SELECT LENGTH('x...')`) | 1 |
//! | `FAIRNESS_BIG_RESULTS` | clients reading 16 MiB results (`SELECT REPEAT('x', ...)`) | 1 |
//! | `FAIRNESS_BYTES` | size of a big query or result | 16777216 |
//! | `FAIRNESS_SECS` | seconds measured | 10 |
//! | `FAIRNESS_DB`, `FAIRNESS_USER`, `FAIRNESS_PASSWORD` | login | sbtest, app, app |
//! | `FAIRNESS_TABLES`, `FAIRNESS_ROWS` | sysbench tables to point-select from | 4, 10000 |
//!
//! Output: `key=value` lines on stdout: small queries done, p50/p99/p999/max in microseconds, and
//! the big packets moved.
//!
//! Run by hand: `FAIRNESS_PORT=6033 cargo bench --bench fairness`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};

#[path = "common/load.rs"]
mod load;
use load::{env_or, Login};

struct Settings {
    login: Login,
    small: usize,
    big: usize,
    big_results: usize,
    bytes: usize,
    secs: u64,
}

impl Settings {
    fn from_env(port: u16) -> Result<Self> {
        Ok(Self {
            login: Login::from_env("FAIRNESS", port)?,
            small: env_or("FAIRNESS_SMALL", 8)?,
            big: env_or("FAIRNESS_BIG", 1)?,
            big_results: env_or("FAIRNESS_BIG_RESULTS", 1)?,
            bytes: env_or("FAIRNESS_BYTES", 16 << 20)?,
            secs: env_or("FAIRNESS_SECS", 10)?,
        })
    }

    fn opts(&self) -> Opts {
        self.login.opts(1 << 30)
    }
}

/// Point selects until `stop`; returns each one's latency in microseconds.
async fn small_client(settings: Arc<Settings>, i: u64, stop: Arc<AtomicBool>) -> Result<Vec<u32>> {
    let mut conn = Conn::new(settings.opts()).await?;
    let mut latencies = Vec::with_capacity(100_000);
    let mut n = i.wrapping_mul(7919);
    while !stop.load(Ordering::Relaxed) {
        n = n.wrapping_add(1);
        let sql = settings.login.point_select(n);
        let started = Instant::now();
        let _: Option<String> = conn.query_first(sql).await?;
        latencies.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    Ok(latencies)
}

/// Sends (`results` false) or reads (`results` true) big packets until `stop`.
async fn big_client(
    settings: Arc<Settings>,
    results: bool,
    stop: Arc<AtomicBool>,
    moved: Arc<AtomicU64>,
) -> Result<()> {
    let mut conn = Conn::new(settings.opts()).await?;
    let sql = if results {
        format!("SELECT REPEAT('x', {})", settings.bytes)
    } else {
        let mut sql = String::with_capacity(settings.bytes + 32);
        sql.push_str("SELECT LENGTH('");
        sql.extend(std::iter::repeat_n('x', settings.bytes));
        sql.push_str("')");
        sql
    };
    while !stop.load(Ordering::Relaxed) {
        if results {
            let value: Option<Vec<u8>> = conn.query_first(sql.as_str()).await?;
            anyhow::ensure!(value.is_some_and(|v| v.len() == settings.bytes), "short result");
        } else {
            let length: Option<u64> = conn.query_first(sql.as_str()).await?;
            anyhow::ensure!(length == Some(settings.bytes as u64), "wrong length {length:?}");
        }
        moved.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> Result<()> {
    let Ok(port) = std::env::var("FAIRNESS_PORT") else {
        println!("fairness: set FAIRNESS_PORT (see benches/fairness.rs); scripts/bench.sh fairness runs it");
        return Ok(());
    };
    let settings = Arc::new(Settings::from_env(port.parse().context("FAIRNESS_PORT")?)?);
    let stop = Arc::new(AtomicBool::new(false));
    let moved = Arc::new(AtomicU64::new(0));
    let mut bigs = Vec::new();
    for i in 0..settings.big + settings.big_results {
        let results = i >= settings.big;
        bigs.push(tokio::spawn(big_client(settings.clone(), results, stop.clone(), moved.clone())));
    }
    // Let the big clients get going before measuring.
    if !bigs.is_empty() {
        let started = Instant::now();
        while moved.load(Ordering::Relaxed) == 0 && started.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let small_stop = Arc::new(AtomicBool::new(false));
    let smalls: Vec<_> = (0..settings.small)
        .map(|i| tokio::spawn(small_client(settings.clone(), i as u64, small_stop.clone())))
        .collect();
    let moved_before = moved.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(settings.secs)).await;
    small_stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for s in smalls {
        all.extend(s.await??);
    }
    let moved_during = moved.load(Ordering::Relaxed) - moved_before;
    stop.store(true, Ordering::Relaxed);
    for b in bigs {
        b.await??;
    }
    all.sort_unstable();
    println!("small_queries={}", all.len());
    println!("qps={:.0}", all.len() as f64 / settings.secs as f64);
    println!("p50_us={}", percentile(&all, 0.50));
    println!("p99_us={}", percentile(&all, 0.99));
    println!("p999_us={}", percentile(&all, 0.999));
    println!("max_us={}", all.last().copied().unwrap_or(0));
    println!("big_packets={moved_during}");
    Ok(())
}
