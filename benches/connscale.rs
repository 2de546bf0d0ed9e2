//! Connection-scale load tool for `scripts/bench.sh` (not a criterion bench): opens many idle
//! client connections through the proxy plus a few active ones, and reports the proxy's resident
//! memory per client connection and the backend connections it uses.
//!
//! `cargo bench` runs every bench target, so without `CONNSCALE_PORT` this prints how to use it
//! and exits successfully. Configuration, all from the environment:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `CONNSCALE_PORT` | proxy port on 127.0.0.1 (required) | |
//! | `CONNSCALE_PID` | proxy pid, for `/proc/<pid>/status` and its sockets (required) | |
//! | `CONNSCALE_BACKEND_PORTS` | comma-separated backend ports whose connections are counted | 13306,13307,13308 |
//! | `CONNSCALE_IDLE` | idle clients | 5000 |
//! | `CONNSCALE_ACTIVE` | active clients | 64 |
//! | `CONNSCALE_SECS` | seconds of active load | 10 |
//! | `CONNSCALE_DB`, `CONNSCALE_USER`, `CONNSCALE_PASSWORD` | login | sbtest, app, app |
//! | `CONNSCALE_TABLES`, `CONNSCALE_ROWS` | sysbench tables to point-select from | 4, 10000 |
//!
//! Phases: warm the proxy with the active clients for 2 s and close them, measure RSS; open the
//! idle clients (each logs in and runs one point select, like a pooled application connection,
//! then stays idle), measure RSS; run the active clients for `CONNSCALE_SECS` while sampling RSS
//! and backend connections. Output: `key=value` lines on stdout.
//!
//! Run by hand: `CONNSCALE_PORT=6033 CONNSCALE_PID=$(pgrep -n rwsplit) cargo bench --bench connscale`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};

#[path = "common/load.rs"]
mod load;
use load::{env_or, Login};

struct Settings {
    login: Login,
    pid: u32,
    backend_ports: Vec<u16>,
    idle: usize,
    active: usize,
    secs: u64,
}

impl Settings {
    fn from_env(port: u16) -> Result<Self> {
        let pid = std::env::var("CONNSCALE_PID").context("CONNSCALE_PID is required")?.parse()?;
        let backend_ports = std::env::var("CONNSCALE_BACKEND_PORTS")
            .unwrap_or_else(|_| "13306,13307,13308".into())
            .split(',')
            .map(|p| p.trim().parse().context("CONNSCALE_BACKEND_PORTS"))
            .collect::<Result<_>>()?;
        Ok(Self {
            login: Login::from_env("CONNSCALE", port)?,
            pid,
            backend_ports,
            idle: env_or("CONNSCALE_IDLE", 5000)?,
            active: env_or("CONNSCALE_ACTIVE", 64)?,
            secs: env_or("CONNSCALE_SECS", 10)?,
        })
    }

    fn opts(&self) -> Opts {
        self.login.opts(64 << 20)
    }

    fn point_select(&self, n: u64) -> String {
        self.login.point_select(n)
    }
}

/// `VmRSS` of `pid` in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// Number of memory mappings of `pid` (each malloc'd block above glibc's mmap threshold is one;
/// `vm.max_map_count` caps them).
fn maps_count(pid: u32) -> Result<usize> {
    Ok(std::fs::read_to_string(format!("/proc/{pid}/maps"))?.lines().count())
}

/// Established TCP connections owned by `pid` whose remote port is one of `ports`.
fn backend_connections(pid: u32, ports: &[u16]) -> Result<usize> {
    let mut inodes = HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(link) = std::fs::read_link(entry?.path()) else { continue };
        let link = link.to_string_lossy();
        if let Some(inode) = link.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
            inodes.insert(inode.to_owned());
        }
    }
    let mut count = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(remote), Some(state), Some(inode)) = (fields.get(2), fields.get(3), fields.get(9)) else {
                continue;
            };
            let port = remote.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            if *state == "01" && port.is_some_and(|p| ports.contains(&p)) && inodes.contains(*inode) {
                count += 1;
            }
        }
    }
    Ok(count)
}

/// Opens `n` connections, `parallel` at a time, each running one point select.
async fn open_idle(s: &Arc<Settings>, n: usize, parallel: usize) -> (Vec<Conn>, usize) {
    let mut conns = Vec::with_capacity(n);
    let mut errors = 0;
    let mut next = 0;
    while next < n {
        let batch = parallel.min(n - next);
        let tasks: Vec<_> = (0..batch)
            .map(|i| {
                let s = s.clone();
                let k = (next + i) as u64;
                tokio::spawn(async move {
                    let mut conn = Conn::new(s.opts()).await?;
                    conn.query_drop(s.point_select(k)).await?;
                    Ok::<_, mysql_async::Error>(conn)
                })
            })
            .collect();
        for t in tasks {
            match t.await {
                Ok(Ok(conn)) => conns.push(conn),
                Ok(Err(err)) => {
                    if errors < 3 {
                        eprintln!("connscale: idle connection failed: {err}");
                    }
                    errors += 1;
                }
                Err(err) => {
                    eprintln!("connscale: task failed: {err}");
                    errors += 1;
                }
            }
        }
        next += batch;
    }
    (conns, errors)
}

/// Runs `s.active` clients doing point selects for `secs`; returns (queries, errors).
async fn run_active(s: &Arc<Settings>, secs: u64, samples: Option<&mut Vec<(u64, usize)>>) -> Result<(u64, u64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let queries = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut conns = Vec::new();
    for _ in 0..s.active {
        conns.push(Conn::new(s.opts()).await.context("active connection")?);
    }
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, mut conn)| {
            let (s, stop, queries, errors) = (s.clone(), stop.clone(), queries.clone(), errors.clone());
            tokio::spawn(async move {
                let mut n = (i as u64) << 32;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    match conn.query_first::<String, _>(s.point_select(n)).await {
                        Ok(_) => queries.fetch_add(1, Ordering::Relaxed),
                        Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
                let _ = conn.disconnect().await;
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut samples = samples;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(samples) = samples.as_deref_mut() {
            samples.push((rss_kib(s.pid)?, backend_connections(s.pid, &s.backend_ports)?));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    Ok((queries.load(Ordering::Relaxed), errors.load(Ordering::Relaxed)))
}

async fn run(s: Settings) -> Result<()> {
    let s = Arc::new(s);
    let pid = s.pid;
    println!("idle_clients_requested={}", s.idle);
    println!("active_clients={}", s.active);
    run_active(&s, 2, None).await.context("warm-up")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(pid)?;
    println!("rss_before_kib={rss_before}");
    println!("maps_before={}", maps_count(pid)?);
    println!("backend_conns_before={}", backend_connections(pid, &s.backend_ports)?);

    let start = Instant::now();
    let (idle, errors) = open_idle(&s, s.idle, 32).await;
    println!("idle_connect_secs={:.1}", start.elapsed().as_secs_f64());
    println!("idle_clients={}", idle.len());
    println!("idle_errors={errors}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = rss_kib(pid)?;
    println!("rss_idle_kib={rss_idle}");
    println!("maps_idle={}", maps_count(pid)?);
    println!("backend_conns_idle={}", backend_connections(pid, &s.backend_ports)?);
    if !idle.is_empty() {
        let per = (rss_idle.saturating_sub(rss_before)) as f64 * 1024.0 / idle.len() as f64;
        println!("rss_per_idle_client_bytes={per:.0}");
    }

    let mut samples = Vec::new();
    let (queries, qerrors) = run_active(&s, s.secs, Some(&mut samples)).await?;
    println!("active_queries={queries}");
    println!("active_errors={qerrors}");
    println!("active_qps={:.0}", queries as f64 / s.secs.max(1) as f64);
    println!("rss_active_max_kib={}", samples.iter().map(|x| x.0).max().unwrap_or(0));
    println!("backend_conns_active_max={}", samples.iter().map(|x| x.1).max().unwrap_or(0));
    let still_open = idle.len();
    // Closing 5000 connections politely takes a while; dropping them is enough here.
    drop(idle);
    println!("idle_clients_held_through_active_phase={still_open}");
    Ok(())
}

fn main() -> Result<()> {
    let Some(port) = std::env::var("CONNSCALE_PORT").ok() else {
        println!(
            "connscale: connection-scale load tool for scripts/bench.sh; set CONNSCALE_PORT and CONNSCALE_PID to run"
        );
        return Ok(());
    };
    let port: u16 = port.parse().context("CONNSCALE_PORT")?;
    let settings = Settings::from_env(port)?;
    if settings.idle + settings.active + 64 > 20_000 {
        bail!("too many connections for one process");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(run(settings))
}
