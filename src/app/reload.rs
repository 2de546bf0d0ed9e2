//! Config reload: parse → validate → refuse non-reloadable changes → apply. Triggered by a change
//! to the file, SIGHUP, `POST /reload` and admin `RELOAD`, all through one bounded channel served
//! by one task ([`serve`]), so reloads never overlap.
//!
//! Applying reloads the TLS material (certificates rotate with a reload), swaps `Shared.config`
//! (every statement loads it), applies the log level, resizes the digest store, and forgets the
//! pools whose settings changed (changed `[pool]`, changed backend credentials of a user, a backend
//! whose address or position changed) without retiring their connections: transactions in flight
//! finish where they are, and new checkouts build pools from the new config. The monitor, sole writer of the topology, follows the new backend list and
//! weights within a second; the reload waits for that snapshot before it answers.
//! A rejected file changes nothing; the reason (every problem, with key and line) is logged at
//! `warn` and counted in `rwsplit_config_reloads_total{result="error"}`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::LogFilter;
use crate::admin::ReloadRequest;
use crate::config::{self, non_reloadable_changes, BackendConfig, Config};
use crate::frontend::Front;
use crate::shared::Shared;
use crate::stats::ReloadResult;

/// Longest time reading and parsing the file may take.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest time a reload waits for the monitor to publish the new backend list.
const TOPOLOGY_WAIT: Duration = Duration::from_secs(5);

/// Why a reload was refused. The running config stays in every case.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The proxy was started without a config file (in-process tests, benches).
    #[error("no config file to reload: the proxy was started without one")]
    NoFile,
    /// The file could not be read, parsed or validated; lists every problem.
    #[error(transparent)]
    Config(#[from] config::Error),
    /// Keys that need a restart changed.
    #[error("{} cannot change without a restart", .0.join(", "))]
    NotReloadable(Vec<&'static str>),
    /// Reading the config or TLS files took too long (a hung network file system).
    #[error("reading the config or TLS files took longer than {0:?}")]
    Timeout(Duration),
    /// The task reading the files failed (a proxy bug).
    #[error("the file loader failed: {0}")]
    Loader(#[from] tokio::task::JoinError),
    /// The TLS material the new `[tls]` names could not be loaded; names the file.
    #[error("tls: {0}")]
    Tls(#[from] crate::backend::tls::LoadError),
    /// The new log filter could not be applied.
    #[error("logging.level: {0}")]
    LogLevel(String),
}

/// Performs reloads for the reload task.
pub(super) struct Reloader {
    /// The client side (its TLS material reloads) and, through it, the shared state.
    pub shared: Arc<Front>,
    pub path: Option<PathBuf>,
    pub log: Option<LogFilter>,
}

impl Reloader {
    /// Reloads the file; logs and counts the outcome.
    pub async fn reload(&self) -> Result<Vec<String>, ReloadError> {
        let result = self.try_reload().await;
        let metrics = &self.shared.ops.metrics;
        match &result {
            Ok(changes) => {
                metrics.ops.reload(ReloadResult::Ok);
                tracing::info!(changes = %changes.join("; "), "config reloaded");
            }
            Err(err) => {
                metrics.ops.reload(ReloadResult::Error);
                tracing::warn!(error = %err, "config reload rejected; the running config stays");
            }
        }
        result
    }

    async fn try_reload(&self) -> Result<Vec<String>, ReloadError> {
        let path = self.path.clone().ok_or(ReloadError::NoFile)?;
        let new = blocking(move || Config::load(&path)).await??;
        let old = self.shared.config.load_full();
        let fixed = non_reloadable_changes(&old, &new);
        if !fixed.is_empty() {
            return Err(ReloadError::NotReloadable(fixed));
        }
        // Certificates are read again on every reload (rotation), all or nothing, before anything
        // is swapped. A changed `[tls]` that does not load rejects the reload; unchanged settings
        // whose files do not load keep the running material (as at startup) and the reload goes on.
        let shared = self.shared.clone();
        let tls = new.tls.clone();
        let loaded = blocking(move || shared.tls.reload(&tls)).await?;
        match loaded {
            Err(err) if old.tls != new.tls => return Err(err.into()),
            Err(err) => tracing::warn!(error = %err, "TLS material not reloaded; the running material stays"),
            Ok(()) => {}
        }
        // The log filter was validated with the file.
        if old.logging.level != new.logging.level {
            if let Some(log) = &self.log {
                log(&new.logging.level).map_err(ReloadError::LogLevel)?;
            }
        }
        let changes = apply(&self.shared, &old, new);
        wait_for_topology(&self.shared).await;
        Ok(changes)
    }
}

/// Runs file I/O on a blocking thread, within [`READ_TIMEOUT`].
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ReloadError> {
    match tokio::time::timeout(READ_TIMEOUT, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(join)) => Err(ReloadError::Loader(join)),
        Err(_) => Err(ReloadError::Timeout(READ_TIMEOUT)),
    }
}

/// Serves reload requests until `stop` turns true or every sender is gone.
pub(super) async fn serve(
    reloader: Reloader,
    mut requests: mpsc::Receiver<ReloadRequest>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let request = tokio::select! {
            request = requests.recv() => request,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let Some(reply) = request else { return };
        let outcome = reloader.reload().await.map_err(|err| err.to_string());
        let _ = reply.send(outcome);
    }
}

/// Swaps in `new` and forgets the pools it changed; returns one line per change.
pub(super) fn apply(shared: &Shared, old: &Config, new: Config) -> Vec<String> {
    let changes = describe(old, &new);
    let digests = new.stats.digests as usize;
    let forget_all = old.pool != new.pool;
    let users: BTreeSet<String> = changed_users(old, &new);
    let new = Arc::new(new);
    // Before the swap: sessions still routing by the old topology must find the pools already
    // numbered the new way (the pools of backends whose position changed are forgotten there, and
    // such sessions get pools of their own), and the monitor must not see the new list before
    // the pools follow it.
    let moved = shared.pools.reindex(&new_positions(&old.backends, &new.backends), &new.backends);
    shared.config.store(new.clone());
    if old.backends != new.backends {
        // Wakes the monitor, which follows the new list before anything else: until it
        // publishes the renumbered topology, sessions routing by the old one get pools of their own.
        shared.topology.request_probe();
    }
    // After the swap, so that the next checkout builds each pool from the new config.
    let forgotten = moved + shared.pools.forget(|key| forget_all || users.contains(&key.user));
    if forgotten > 0 {
        tracing::info!(pools = forgotten, "pools rebuilt; their connections close once returned");
    }
    shared.ops.metrics.digests.set_capacity(digests);
    changes
}

/// Waits (bounded) until the topology lists the configured backends with their weights.
async fn wait_for_topology(shared: &Shared) {
    let deadline = tokio::time::Instant::now() + TOPOLOGY_WAIT;
    loop {
        let config = shared.config.load_full();
        let topology = shared.topology.load_full();
        let same = topology.nodes.len() == config.backends.len()
            && topology.nodes.iter().zip(&config.backends).all(|(n, b)| n.config == *b);
        if same {
            let names: Vec<&str> = config.backends.iter().map(|b| b.name.as_str()).collect();
            shared.ops.metrics.backends.set_backends(&names);
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("the monitor has not published the reloaded backend list yet");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Users whose backend login changed, or who are gone.
fn changed_users(old: &Config, new: &Config) -> BTreeSet<String> {
    old.users
        .iter()
        .filter(|u| {
            new.user(u.name.as_str())
                .is_none_or(|n| n.backend_user() != u.backend_user() || n.backend_password() != u.backend_password())
        })
        .map(|u| u.name.as_str().to_owned())
        .collect()
}

/// Where each old backend is in `new` (`None`: removed, replaced or re-addressed).
fn new_positions(old: &[BackendConfig], new: &[BackendConfig]) -> Vec<Option<usize>> {
    old.iter().map(|o| new.iter().position(|b| b.same_server(o))).collect()
}

/// One line per change, for the log and the reload's answer.
fn describe(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for b in &new.backends {
        match old.backends.iter().find(|o| o.name == b.name) {
            None => out.push(format!("backend {} added ({}:{}, weight {})", b.name, b.host, b.port, b.weight)),
            Some(o) if (&o.host, o.port) != (&b.host, b.port) => {
                out.push(format!("backend {} moved {}:{} -> {}:{}", b.name, o.host, o.port, b.host, b.port))
            }
            Some(o) if o.weight != b.weight => {
                out.push(format!("backend {} weight {} -> {}", b.name, o.weight, b.weight))
            }
            Some(_) => {}
        }
    }
    let kept = |list: &[BackendConfig], other: &[BackendConfig]| {
        list.iter().filter(|b| other.iter().any(|o| o.name == b.name)).map(|b| b.name.clone()).collect::<Vec<_>>()
    };
    if kept(&old.backends, &new.backends) != kept(&new.backends, &old.backends) {
        out.push("backends renumbered (listed in another order)".to_owned());
    }
    for o in old.backends.iter().filter(|o| !new.backends.iter().any(|b| b.name == o.name)) {
        out.push(format!("backend {} removed (its connections close once idle)", o.name));
    }
    for u in &new.users {
        match old.user(u.name.as_str()) {
            None => out.push(format!("user {} added", u.name)),
            Some(o) if o != u => out.push(format!("user {} changed", u.name)),
            Some(_) => {}
        }
    }
    for o in old.users.iter().filter(|o| new.user(o.name.as_str()).is_none()) {
        out.push(format!("user {} removed (its open sessions continue)", o.name));
    }
    if old.logging.level != new.logging.level {
        out.push(format!("logging.level {:?} -> {:?}", old.logging.level, new.logging.level));
    }
    let sections = [
        ("[listen] limits", old.listen != new.listen),
        ("[server]", old.server != new.server),
        ("[admin] credentials", old.admin != new.admin),
        ("[pool] (pools rebuilt)", old.pool != new.pool),
        ("[monitor]", old.monitor != new.monitor),
        ("[routing]", old.routing != new.routing),
        ("logging.slow_query", old.logging.slow_query != new.logging.slow_query),
        ("[tls]", old.tls != new.tls),
        ("[stats]", old.stats != new.stats),
        ("[shutdown]", old.shutdown != new.shutdown),
    ];
    out.extend(sections.iter().filter(|(_, changed)| *changed).map(|(name, _)| format!("{name} changed")));
    if out.is_empty() {
        out.push("no changes".to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[[backends]]\nname = \"a\"\nhost = \"127.0.0.1\"\nrole = \"primary\"\n\n\
             [[backends]]\nname = \"b\"\nhost = \"127.0.0.1\"\nport = 3307\n\n\
             [[users]]\nname = \"app\"\npassword = \"app\"\n{extra}"
        );
        Config::parse_and_validate(&text).unwrap()
    }

    #[test]
    fn changes_are_described_and_moved_positions_found() {
        let old = config("");
        let mut new = old.clone();
        new.backends[1].weight = 3;
        new.backends.push(BackendConfig { name: config::BackendId::new("c"), ..new.backends[1].clone() });
        new.logging.level = "debug".into();
        let lines = describe(&old, &new);
        assert_eq!(
            lines,
            [
                "backend b weight 1 -> 3",
                "backend c added (127.0.0.1:3307, weight 3)",
                "logging.level \"info\" -> \"debug\""
            ]
        );
        assert_eq!(new_positions(&old.backends, &new.backends), [Some(0), Some(1)], "appending moves nothing");
        new.backends.remove(0);
        assert_eq!(new_positions(&old.backends, &new.backends), [None, Some(0)], "both positions change");
        assert_eq!(describe(&old, &old), ["no changes"]);
    }

    #[test]
    fn users_with_new_backend_logins_are_found() {
        let old = config("backend_password = \"x\"\n");
        let mut new = old.clone();
        assert!(changed_users(&old, &new).is_empty());
        new.users[0].backend_password = Some("y".into());
        assert_eq!(changed_users(&old, &new), BTreeSet::from(["app".to_owned()]));
        new.users.clear();
        assert_eq!(changed_users(&old, &new), BTreeSet::from(["app".to_owned()]));
    }
}
