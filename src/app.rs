//! Wiring: binds the listeners (MySQL, admin, HTTP), builds the metrics registry and the shared
//! state, spawns the named background tasks (monitor, admin, HTTP, reload, config-file watcher),
//! and runs the signal loop: SIGHUP reloads, SIGTERM/SIGINT drain gracefully, a second one forces.
//! Tests and benches use [`start`] / [`start_with`] to run the real proxy in-process.
//!
//! Two stop signals: `listeners` closes the MySQL and admin listeners (the first step of a
//! drain); `shutdown` stops everything else once the drain is over.

pub mod alloc;
mod drain;
mod reload;
mod watch;

pub use drain::Drained;
pub use reload::ReloadError;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch as channel};
use tokio::task::JoinHandle;

use crate::admin::{self, ReloadOutcome};
use crate::backend::ServerInfo;
use crate::config::Config;
use crate::frontend::{self, Front};
use crate::protocol::handshake::Greeting;
use crate::protocol::packet::FrameReader;
use crate::shared::Shared;
use crate::stats::{self, Metrics};

/// Failures while starting the proxy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// The metrics could not be registered (a proxy bug).
    #[error(transparent)]
    Metrics(#[from] stats::Error),
}

/// Applies new `tracing` filter directives (`logging.level`) to the running subscriber; set up by
/// the binary, which owns the subscriber. Returns the reason when the directives are refused.
pub type LogFilter = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// How to start the proxy beyond its config.
#[derive(Clone, Default)]
pub struct Options {
    /// The file the config came from: reloads read it again, and it is watched for changes.
    pub config_path: Option<PathBuf>,
    /// Watch `config_path` and reload when it changes. Default off (the binary turns it on).
    pub watch_file: bool,
    /// Where a reloaded `logging.level` goes; without it a level change is accepted but only
    /// takes effect at the next start.
    pub log_filter: Option<LogFilter>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("config_path", &self.config_path)
            .field("watch_file", &self.watch_file)
            .field("log_filter", &self.log_filter.is_some())
            .finish()
    }
}

/// A running proxy.
#[derive(Debug)]
pub struct Handle {
    mysql_addr: SocketAddr,
    admin_addr: SocketAddr,
    http_addr: SocketAddr,
    shared: Arc<Shared>,
    admin: Arc<admin::Context>,
    listeners: channel::Sender<bool>,
    shutdown: channel::Sender<bool>,
    accept: JoinHandle<()>,
    /// The health monitor (issue 5); stops with `shutdown`.
    monitor: JoinHandle<()>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Handle {
    /// Where the MySQL-protocol listener is bound (useful with port 0).
    pub fn mysql_addr(&self) -> SocketAddr {
        self.mysql_addr
    }

    /// Where the MySQL-protocol admin interface is bound.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Where the HTTP endpoint is bound.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Client connections currently open.
    pub fn client_count(&self) -> u32 {
        self.shared.client_count()
    }

    /// Backend connections open in all pools (idle and in use).
    pub fn backend_connections(&self) -> u32 {
        let topology = self.shared.topology.load();
        topology.nodes.iter().map(|n| self.shared.pools.open_connections(n.index)).sum()
    }

    /// How many sessions were pinned for each reason, as (label, count).
    pub fn pin_counts(&self) -> Vec<(&'static str, u64)> {
        self.shared.pin_counts()
    }

    /// The metrics, for tests and benches that read them without HTTP.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.ops.metrics
    }

    /// The Prometheus text `/metrics` would serve now.
    pub fn metrics_text(&self) -> Result<String, admin::Error> {
        self.admin.metrics_text()
    }

    /// Reloads the config file, as SIGHUP does, and waits for the outcome.
    pub async fn reload(&self) -> Result<ReloadOutcome, admin::Error> {
        self.admin.reload.request(Duration::from_secs(30)).await
    }

    /// Drains gracefully (see [`Drained`]), then stops everything. `force` ends the grace period
    /// early (the binary passes "a second signal").
    pub async fn drain(self, grace: Duration, force: impl std::future::Future<Output = ()>) -> Drained {
        let drained = drain::drain(&self.shared, &self.listeners, grace, force).await;
        self.shutdown().await;
        drained
    }

    /// Stops accepting new clients and waits for the background tasks to end. Sessions already
    /// running finish on their own.
    pub async fn shutdown(self) {
        let _ = self.listeners.send(true);
        let _ = self.shutdown.send(true);
        let _ = self.accept.await;
        let _ = self.monitor.await;
        for (name, task) in self.tasks {
            if let Err(err) = task.await {
                tracing::error!(task = name, error = %err, "background task failed");
            }
        }
    }

    /// The current topology snapshot (roles, health, lag) as the monitor last published it.
    pub fn topology(&self) -> Arc<crate::backend::Topology> {
        self.shared.topology.load_full()
    }
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), Error> {
    let listener = TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| Error::Bind { addr, source })?;
    Ok((listener, bound))
}

/// Binds the client listener with a listen backlog of `backlog` (bursts of connections queue in
/// the kernel instead of being refused).
fn bind_with_backlog(addr: SocketAddr, backlog: u32) -> Result<(TcpListener, SocketAddr), Error> {
    let bind_error = |source| Error::Bind { addr, source };
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
        .map_err(bind_error)?;
    socket.set_reuseaddr(true).map_err(bind_error)?;
    socket.bind(addr).map_err(bind_error)?;
    let listener = socket.listen(backlog).map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    Ok((listener, bound))
}

/// Binds the listeners and starts serving, without a config file. Returns once the proxy
/// accepts connections.
pub async fn start(config: Config) -> Result<Handle, Error> {
    start_with(config, Options::default()).await
}

/// Binds the listeners and starts serving with `options`.
pub async fn start_with(config: Config, options: Options) -> Result<Handle, Error> {
    let (listener, mysql_addr) = bind_with_backlog(config.listen.mysql, config.listen.backlog)?;
    let (admin_listener, admin_addr) = bind(config.listen.admin).await?;
    let (http_listener, http_addr) = bind(config.listen.http).await?;
    let registry = stats::registry()?;
    let metrics = Arc::new(Metrics::register(&registry, &config)?);
    let names: Vec<&str> = config.backends.iter().map(|b| b.name.as_str()).collect();
    metrics.backends.set_backends(&names);
    let front = Arc::new(Front::build(config, metrics));
    let shared = front.shared.clone();
    let (shutdown, stop) = channel::channel(false);
    let (listeners, stop_listening) = channel::channel(false);
    tokio::spawn(learn_primary(shared.clone()));
    let monitor = crate::monitor::spawn(shared.clone(), stop.clone());
    let accept = tokio::spawn(frontend::serve(listener, front.clone(), stop_listening.clone()));
    let (requests, inbox) = mpsc::channel(admin::RELOAD_QUEUE);
    let reload = admin::Reload::new(requests);
    let ctx = Arc::new(admin::Context::new(shared.clone(), registry, reload.clone()));
    let config_path = options.config_path.as_deref().map(watch::absolute);
    let reloader = reload::Reloader { shared: front, path: config_path.clone(), log: options.log_filter };
    let mut tasks = vec![
        ("reload", tokio::spawn(reload::serve(reloader, inbox, stop.clone()))),
        ("admin", tokio::spawn(admin::serve_mysql(admin_listener, ctx.clone(), stop_listening))),
        ("http", tokio::spawn(admin::serve_http(http_listener, ctx.clone(), stop.clone()))),
    ];
    if let (Some(path), true) = (config_path, options.watch_file) {
        if let Some(task) = watch::file(path, reload, stop) {
            tasks.push(("config-watch", task));
        }
    }
    tracing::info!(mysql = %mysql_addr, admin = %admin_addr, http = %http_addr, "accepting clients");
    Ok(Handle { mysql_addr, admin_addr, http_addr, shared, admin: ctx, listeners, shutdown, accept, monitor, tasks })
}

/// Runs the proxy until SIGTERM or SIGINT, then drains within `shutdown.grace` (a second signal
/// forces the end); SIGHUP reloads the config file.
pub async fn run(config: Config, options: Options) -> Result<(), Error> {
    let mut signals = watch::Signals::new();
    let handle = start_with(config, Options { watch_file: true, ..options }).await?;
    let reload = handle.admin.reload.clone();
    signals.next_stop(&reload).await;
    let grace = handle.shared.config.load().shutdown.grace;
    tracing::info!(grace = ?grace, "shutting down (a second signal forces it)");
    let drained = handle.drain(grace, signals.next_stop(&reload)).await;
    if drained.remaining > 0 {
        tracing::warn!(clients = drained.remaining, "exiting with clients still mid-statement");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Reads the primary's greeting once at startup so that the very first client sees the
/// primary's version and capabilities. No login is needed for that.
async fn learn_primary(shared: Arc<Shared>) {
    let config = shared.config.load_full();
    let Some(primary) = config.primary_hint() else { return };
    let addr = format!("{}:{}", primary.host, primary.port);
    let timeout = config.pool.connect_timeout;
    let greeting = async {
        let mut stream = TcpStream::connect(&addr).await.ok()?;
        let (_, payload) = FrameReader::new().packet(&mut stream, timeout, 64 * 1024).await.ok()?;
        Greeting::parse(&payload).ok()
    };
    match tokio::time::timeout(timeout + Duration::from_millis(100), greeting).await {
        Ok(Some(g)) => {
            let info = ServerInfo {
                version: g.server_version,
                capabilities: g.capabilities,
                collation: g.collation,
                status: g.status,
                extended: g.extended,
            };
            shared.primary_info.store(Some(Arc::new(info)));
        }
        _ => {
            tracing::warn!(backend = %primary.name, "primary unreachable at startup; using default greeting until it answers")
        }
    }
}

// --- monitor wiring (issue 5) ---------------------------------------------------------------------

impl crate::monitor::Host for Shared {
    fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    fn topology(&self) -> &crate::backend::TopologyCell {
        &self.topology
    }

    fn pools(&self) -> &crate::backend::Pools {
        &self.pools
    }
}
