//! `SHOW BACKENDS`, `SHOW POOLS`, `SHOW CLIENTS`, `SHOW DIGESTS` and `SHOW CONFIG`, and the
//! backend view `/backends` serves as JSON. All read snapshots; none blocks a client.

use serde::Serialize;

use super::{Answer, Table};
use crate::shared::Shared;

/// One backend as `/backends` and `SHOW BACKENDS` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendView {
    /// Configured name.
    pub name: String,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `primary`, `replica` or `writable`.
    pub role: &'static str,
    /// Reachable and not marked down.
    pub up: bool,
    /// Current weight (runtime changes included; 0 drains it).
    pub weight: u32,
    /// Replication lag in seconds, when known.
    pub lag_seconds: Option<f64>,
    /// Out of read rotation for lag.
    pub lagging: bool,
    /// Pooled connections open (idle and in use).
    pub connections: u32,
    /// Pooled connections checked out.
    pub in_use: u32,
}

/// Every backend of the current topology.
pub fn backend_views(shared: &Shared) -> Vec<BackendView> {
    let topology = shared.topology.load_full();
    topology
        .nodes
        .iter()
        .map(|node| {
            let pools = shared.pools.backend_stats(node.index);
            BackendView {
                name: node.name().to_owned(),
                host: node.config.host.clone(),
                port: node.config.port,
                role: node.role.label(),
                up: node.is_up(),
                weight: node.config.weight,
                lag_seconds: node.lag.map(|d| d.as_secs_f64()),
                lagging: node.lagging,
                connections: pools.open,
                in_use: pools.in_use(),
            }
        })
        .collect()
}

fn text(value: impl ToString) -> Option<String> {
    Some(value.to_string())
}

fn yes_no(value: bool) -> Option<String> {
    text(if value { "yes" } else { "no" })
}

/// `SHOW BACKENDS`.
pub fn backends(shared: &Shared) -> Table {
    let mut table = Table::new(&[
        "name",
        "host",
        "port",
        "role",
        "up",
        "weight",
        "lag_seconds",
        "lagging",
        "connections",
        "in_use",
    ]);
    for b in backend_views(shared) {
        table.push(vec![
            text(&b.name),
            text(&b.host),
            text(b.port),
            text(b.role),
            yes_no(b.up),
            text(b.weight),
            b.lag_seconds.map(|s| format!("{s:.3}")),
            yes_no(b.lagging),
            text(b.connections),
            text(b.in_use),
        ]);
    }
    table
}

/// `SHOW POOLS`: one row per (backend, user, client flags, collation, schema) pool.
pub fn pools(shared: &Shared) -> Table {
    let topology = shared.topology.load_full();
    let mut table =
        Table::new(&["backend", "user", "with_schema", "collation", "connections", "idle", "in_use", "max"]);
    let mut pools = shared.pools.list();
    pools.sort_by(|(a, _), (b, _)| (a.backend, &a.user, a.with_schema).cmp(&(b.backend, &b.user, b.with_schema)));
    for (key, stats) in pools {
        let backend = topology.node(key.backend).map_or_else(|| format!("#{}", key.backend.0), |n| n.name().to_owned());
        table.push(vec![
            text(backend),
            text(&key.user),
            yes_no(key.with_schema),
            text(key.collation),
            text(stats.open),
            text(stats.idle),
            text(stats.in_use()),
            text(stats.max),
        ]);
    }
    table
}

/// `SHOW CLIENTS`.
pub fn clients(shared: &Shared) -> Table {
    let topology = shared.topology.load_full();
    let mut table = Table::new(&[
        "id",
        "user",
        "client",
        "connected_seconds",
        "backend",
        "holds",
        "in_transaction",
        "pins",
        "statements",
    ]);
    for c in shared.ops.clients.list() {
        let backend = c.backend.map(|b| match topology.node(b) {
            Some(node) => node.name().to_owned(),
            None if b == crate::backend::REMOVED => "(removed)".to_owned(),
            None => format!("#{}", b.0),
        });
        table.push(vec![
            text(c.id),
            text(&c.user),
            text(c.peer),
            text(c.connected.as_secs()),
            backend,
            c.hold.map(str::to_owned),
            yes_no(c.in_transaction),
            text(c.pins.join(",")),
            text(c.statements),
        ]);
    }
    table
}

/// `SHOW DIGESTS [LIMIT n]`, most frequent first. Latency quantiles are bucket upper bounds.
pub fn digests(shared: &Shared, limit: usize) -> Table {
    let mut table = Table::new(&["digest", "count", "errors", "rows", "avg_ms", "p50_ms", "p99_ms", "text"]);
    let ms = |d: Option<std::time::Duration>| d.map(|d| format!("{:.3}", d.as_secs_f64() * 1000.0));
    for d in shared.ops.metrics.digests.top(limit) {
        table.push(vec![
            text(d.id()),
            text(d.count),
            text(d.errors),
            text(d.rows),
            ms(d.mean()),
            ms(d.quantile(0.5)).or_else(|| text(">5000")),
            ms(d.quantile(0.99)).or_else(|| text(">5000")),
            text(&d.text),
        ]);
    }
    table
}

/// `SHOW CONFIG`: the running config flattened to `key | value` rows; secrets are redacted by
/// the config's `Serialize`.
pub fn config(shared: &Shared) -> Answer {
    let config = shared.config.load_full();
    let value = match toml::Value::try_from(&*config) {
        Ok(value) => value,
        Err(err) => return Answer::Error(format!("cannot serialize the config: {err}")),
    };
    let mut table = Table::new(&["key", "value"]);
    flatten("", &value, &mut table);
    Answer::Table(table)
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut Table) {
    match value {
        toml::Value::Table(map) => {
            for (key, value) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(&path, value, out);
            }
        }
        toml::Value::Array(items) if items.iter().all(toml::Value::is_table) => {
            for (i, item) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), item, out);
            }
        }
        other => out.push(vec![text(prefix), text(other)]),
    }
}
