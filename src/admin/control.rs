//! `RELOAD`, `SET BACKEND name WEIGHT n` and `DRAIN BACKEND name`. Weights changed here live in
//! the running config only (`SHOW CONFIG` shows them; the file is not written): the next reload
//! applies the file's weights again. The monitor carries them into the topology within a second;
//! the commands wait for that.

use std::time::Duration;

use super::{Answer, Context, Table};
use crate::config::Config;
use crate::shared::Shared;

/// `RELOAD`: asks `app` to reload the config file and lists what changed.
pub async fn reload(ctx: &Context, wait: Duration) -> Answer {
    match ctx.reload.request(wait).await {
        Ok(Ok(changes)) => {
            let mut table = Table::new(&["change"]);
            for change in changes {
                table.push(vec![Some(change)]);
            }
            Answer::Table(table)
        }
        Ok(Err(why)) => Answer::Error(format!("reload rejected, the running config stays: {why}")),
        Err(err) => Answer::Error(err.to_string()),
    }
}

/// How long a runtime change waits for the monitor to carry it into the topology.
const TOPOLOGY_WAIT: Duration = Duration::from_secs(3);

/// Changes `backend`'s weight in the running config (not the file); the monitor, sole writer of
/// the topology, copies it into the next snapshot. Returns the weight before.
async fn reweight(shared: &Shared, backend: &str, weight: u32) -> Result<u32, String> {
    let unknown = || format!("no backend named {backend:?}");
    let current = shared.config.load_full();
    let before = current.backends.iter().find(|b| b.name.as_str() == backend).ok_or_else(unknown)?.weight;
    shared.config.rcu(|config| {
        let mut next: Config = (**config).clone();
        for b in next.backends.iter_mut().filter(|b| b.name.as_str() == backend) {
            b.weight = weight;
        }
        next
    });
    let deadline = tokio::time::Instant::now() + TOPOLOGY_WAIT;
    loop {
        let topology = shared.topology.load();
        if topology.nodes.iter().any(|n| n.name() == backend && n.config.weight == weight) {
            return Ok(before);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "weight of {backend} set in the running config, but the topology has not followed yet"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `SET BACKEND name WEIGHT n`: until the next reload, which applies the file's weight again.
pub async fn set_weight(shared: &Shared, backend: &str, weight: u32) -> Answer {
    match reweight(shared, backend, weight).await {
        Ok(before) => {
            tracing::info!(backend, before, weight, "backend weight changed at runtime");
            Answer::Done(format!("backend {backend} weight {before} -> {weight} (until the next reload)"))
        }
        Err(message) => Answer::Error(message),
    }
}

/// `DRAIN BACKEND name`: weight 0, then its pools are forgotten: statements and transactions in
/// flight finish on their connections, which then close; no new read goes there. The primary
/// cannot be drained (writes have nowhere else to go).
pub async fn drain(shared: &Shared, backend: &str) -> Answer {
    let topology = shared.topology.load_full();
    if let Some(index) = topology.by_name(backend.as_bytes()) {
        if topology.primary == Some(index) {
            return Answer::Error(format!("{backend} is the primary; it takes the writes and cannot be drained"));
        }
    }
    match reweight(shared, backend, 0).await {
        Ok(before) => {
            let Some(index) = shared.topology.load().by_name(backend.as_bytes()) else {
                return Answer::Error(format!("no backend named {backend:?}"));
            };
            let pools = shared.pools.forget(|key| key.backend == index);
            tracing::info!(backend, before, pools, "backend drained at runtime");
            Answer::Done(format!("backend {backend} drained: weight {before} -> 0, {pools} pools closing"))
        }
        Err(message) => Answer::Error(message),
    }
}
