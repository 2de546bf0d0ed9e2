//! Probing one backend over mysql_async: one long-lived monitor connection, reconnected (and the
//! host name resolved again) after any failure. Every probe, connect included, runs under the
//! `monitor.timeout` deadline.
//!
//! A full probe reads `@@read_only` and `@@innodb_read_only` in a statement of their own (MariaDB
//! 10.11 returns a wrong `@@read_only` when it shares a statement with a table read), the replica
//! status (`SHOW SLAVE STATUS` on MariaDB and MySQL before 8.0.22, `SHOW REPLICA STATUS` after)
//! and the executed GTIDs (`@@gtid_current_pos` on MariaDB, `@@gtid_executed` on MySQL).
//!
//! [`probe_loop`] is the task that drives one prober on the coordinator's [`Cadence`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row, Value};
use tokio::sync::{mpsc, watch};

use super::coordinator::{Kind, Report};
use super::health::Observation;
use super::{Error, Host, RECHECK};
use crate::backend::{BackendIndex, GtidPosition, Replication};
use crate::config::{BackendConfig, Consistency, MonitorConfig};

/// Server family, decided once per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    MariaDb,
    /// MySQL; `replica_keyword` from 8.0.22 on (`SHOW REPLICA STATUS`, `Source_*`/`Replica_*`).
    MySql {
        replica_keyword: bool,
    },
}

impl Flavor {
    fn status_sql(self) -> &'static str {
        match self {
            Flavor::MySql { replica_keyword: true } => "SHOW REPLICA STATUS",
            _ => "SHOW SLAVE STATUS",
        }
    }

    fn gtid_sql(self) -> &'static str {
        match self {
            Flavor::MariaDb => "SELECT @@global.gtid_current_pos",
            Flavor::MySql { .. } => "SELECT @@global.gtid_executed",
        }
    }
}

/// The monitor's connection to one backend.
#[derive(Debug)]
pub struct Prober {
    host: String,
    port: u16,
    conn: Option<(Conn, Flavor)>,
}

impl Prober {
    /// A prober for `host:port`; it connects on its first probe.
    pub fn new(host: String, port: u16) -> Self {
        Self { host, port, conn: None }
    }

    /// Reachability, read-only flags, replica status and GTID position, within `settings.timeout`.
    pub async fn full(&mut self, settings: &MonitorConfig) -> Result<Observation, Error> {
        let result = tokio::time::timeout(settings.timeout, self.full_inner(settings)).await;
        self.settle(result, settings.timeout)
    }

    /// Only the GTID position (the fast poll for read-your-writes), within `settings.timeout`.
    /// `Ok(None)` when there is no connection to ask on (the next full probe reconnects).
    pub async fn gtid(&mut self, settings: &MonitorConfig) -> Result<Option<GtidPosition>, Error> {
        let Some((conn, flavor)) = self.conn.as_mut() else { return Ok(None) };
        let flavor = *flavor;
        let result = tokio::time::timeout(settings.timeout, read_gtid(conn, flavor)).await;
        self.settle(result, settings.timeout)
    }

    /// Drops the connection after any failure, so the next probe starts afresh.
    fn settle<T>(
        &mut self,
        result: Result<Result<T, Error>, tokio::time::error::Elapsed>,
        after: Duration,
    ) -> Result<T, Error> {
        let result = result.unwrap_or(Err(Error::Timeout { after }));
        if result.is_err() {
            self.close(after);
        }
        result
    }

    async fn full_inner(&mut self, settings: &MonitorConfig) -> Result<Observation, Error> {
        if self.conn.is_none() {
            self.conn = Some(self.connect(settings).await?);
        }
        let Some((conn, flavor)) = self.conn.as_mut() else { return Err(Error::NotConnected) };
        let flavor = *flavor;
        let flags: Option<Row> = conn.query_first("SELECT @@global.read_only, @@global.innodb_read_only").await?;
        let flags = flags.ok_or(Error::Malformed("no row for the read-only flags"))?;
        let read_only = number(flags.as_ref(0)).ok_or(Error::Malformed("@@read_only"))? != 0;
        let innodb_read_only = number(flags.as_ref(1)).unwrap_or(0) != 0;
        let status: Option<Row> = conn.query_first(flavor.status_sql()).await?;
        let replication = status.as_ref().map(replication);
        let gtid = read_gtid(conn, flavor).await?;
        Ok(Observation { writable: !read_only && !innodb_read_only, replication, gtid })
    }

    async fn connect(&self, settings: &MonitorConfig) -> Result<(Conn, Flavor), Error> {
        let opts = OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(settings.user.clone()))
            .pass(Some(settings.password.clone()))
            .prefer_socket(false)
            .stmt_cache_size(0)
            .tcp_keepalive(Some(Duration::from_secs(10)));
        let mut conn = Conn::new(opts).await?;
        let version: Option<String> = conn.query_first("SELECT @@version").await?;
        let (major, minor, patch) = conn.server_version();
        let flavor = if version.is_some_and(|v| v.contains("MariaDB")) || major >= 10 {
            Flavor::MariaDb
        } else {
            Flavor::MySql { replica_keyword: (major, minor, patch) >= (8, 0, 22) }
        };
        Ok((conn, flavor))
    }

    /// Closes the connection in the background, bounded by `after`.
    fn close(&mut self, after: Duration) {
        if let Some((conn, _)) = self.conn.take() {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(after, conn.disconnect()).await;
            });
        }
    }
}

async fn read_gtid(conn: &mut Conn, flavor: Flavor) -> Result<Option<GtidPosition>, Error> {
    let text: Option<Option<String>> = conn.query_first(flavor.gtid_sql()).await?;
    // An unparsable position only disables what needs it (read-your-writes, the GTID lag
    // estimate); the probe itself stays good.
    Ok(text.flatten().and_then(|t| GtidPosition::parse(&t).ok()))
}

/// Reads a `SHOW SLAVE STATUS` / `SHOW REPLICA STATUS` row by column name.
fn replication(row: &Row) -> Replication {
    let column = |names: &[&str]| {
        let index =
            row.columns_ref().iter().position(|c| names.iter().any(|n| c.name_str().eq_ignore_ascii_case(n)))?;
        row.as_ref(index)
    };
    let yes = |names: &[&str]| text(column(names)).is_some_and(|v| v.eq_ignore_ascii_case("Yes"));
    Replication {
        io_running: yes(&["Slave_IO_Running", "Replica_IO_Running"]),
        sql_running: yes(&["Slave_SQL_Running", "Replica_SQL_Running"]),
        seconds_behind: number(column(&["Seconds_Behind_Master", "Seconds_Behind_Source"])),
        sql_error: number(column(&["Last_SQL_Errno"])).and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
    }
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Bytes(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::Int(n) => Some(n.to_string()),
        Value::UInt(n) => Some(n.to_string()),
        _ => None,
    }
}

fn number(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Bytes(bytes) => std::str::from_utf8(bytes).ok()?.trim().parse().ok(),
        Value::Int(n) => u64::try_from(*n).ok(),
        Value::UInt(n) => Some(*n),
        _ => None,
    }
}

/// What the probers are told about their cadence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Cadence {
    /// Probe every [`RECHECK`] instead of every `monitor.interval`.
    pub fast: bool,
    /// Bumped to ask for a probe right now.
    pub probe_now: u64,
}

/// One backend's prober: full probes on the cadence, GTID-only polls in between when session
/// consistency needs fresh positions.
pub(super) async fn probe_loop(
    index: BackendIndex,
    generation: u64,
    backend: BackendConfig,
    host: Arc<dyn Host>,
    tx: mpsc::Sender<Report>,
    mut cadence: watch::Receiver<Cadence>,
) {
    let mut prober = Prober::new(backend.host.clone(), backend.port);
    let mut next_full = Instant::now();
    let mut next_gtid: Option<Instant> = None;
    loop {
        let config = host.config();
        let settings = &config.monitor;
        let seen = *cadence.borrow_and_update();
        let now = Instant::now();
        let gtid_every =
            (config.routing.consistency == Consistency::Session && RECHECK < settings.interval).then_some(RECHECK);
        if now >= next_full {
            let result = prober.full(settings).await;
            let failing = result.is_err();
            if tx.send(Report { generation, index, at: now, kind: Kind::Full(result) }).await.is_err() {
                return;
            }
            let fast = seen.fast || failing;
            next_full = now + if fast { settings.interval.min(RECHECK) } else { settings.interval };
            next_gtid = gtid_every.map(|every| now + every);
        } else if next_gtid.is_some_and(|at| now >= at) {
            match prober.gtid(settings).await {
                Ok(Some(position)) => {
                    if tx.send(Report { generation, index, at: now, kind: Kind::Gtid(position) }).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(_) => next_full = now,
            }
            next_gtid = gtid_every.map(|every| now + every);
        }
        let wake = next_gtid.map_or(next_full, |at| at.min(next_full));
        tokio::select! {
            () = tokio::time::sleep_until(wake.into()) => {}
            changed = cadence.changed() => {
                if changed.is_err() {
                    return;
                }
                let now_cadence = *cadence.borrow();
                if now_cadence.probe_now != seen.probe_now {
                    next_full = Instant::now();
                } else if now_cadence.fast && !seen.fast {
                    next_full = next_full.min(Instant::now() + RECHECK);
                }
            }
        }
    }
}
