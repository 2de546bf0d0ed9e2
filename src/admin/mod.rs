//! The operator interfaces: the HTTP endpoint (`/metrics`, `/live`, `/ready`, `/backends`,
//! `POST /reload`) and the MySQL-protocol admin port (opensrv-mysql, like ProxySQL's 6032) with
//! `SHOW BACKENDS | POOLS | CLIENTS | DIGESTS | CONFIG`, `RELOAD`, `SET BACKEND .. WEIGHT`,
//! `DRAIN BACKEND` and `EXPLAIN ROUTE`.
//!
//! Both answer from the proxy's own state ([`Context`]) and never touch client traffic. Reloads
//! are asked of `app` through a bounded channel ([`Reload`]), because `app` owns the config file;
//! runtime-only changes (weights, draining a backend) change the running config, which the
//! monitor (sole writer of the topology) follows. Each
//! listener runs as one task started by `app`, with one task per connection; every read and write
//! has a timeout.
//!
//! `admin` reads [`crate::shared::Shared`] (the bundle of snapshots every component shares); it
//! does not depend on `frontend`.

mod command;
mod control;
mod deadline;
mod explain;
pub mod guard;
mod http;
mod mysql;
mod show;

pub use command::Command;
pub use http::serve as serve_http;
pub use mysql::serve as serve_mysql;
pub use show::BackendView;

use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use tokio::sync::{mpsc, oneshot};

use crate::shared::Shared;

/// Failures of the admin interfaces themselves (a command's own failure is an [`Answer::Error`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The metrics could not be encoded.
    #[error(transparent)]
    Stats(#[from] crate::stats::Error),
    /// The reload task did not answer (the proxy is stopping) or took too long.
    #[error("the reload did not complete: {0}")]
    ReloadUnavailable(&'static str),
}

/// What a reload changed (one line per change), or why it was refused (the full text, every
/// problem with its key and line).
pub type ReloadOutcome = Result<Vec<String>, String>;

/// One reload request: the reload task answers on the enclosed channel.
pub type ReloadRequest = oneshot::Sender<ReloadOutcome>;

/// Most reload requests waiting at once; more are refused (a reload is already queued).
pub const RELOAD_QUEUE: usize = 4;

/// How long an admin command waits for a reload to finish.
const RELOAD_WAIT: Duration = Duration::from_secs(30);

/// A handle that asks `app`'s reload task to reload the config file.
#[derive(Debug, Clone)]
pub struct Reload {
    requests: mpsc::Sender<ReloadRequest>,
}

impl Reload {
    /// A handle sending on `requests` (the receiving end belongs to the reload task).
    pub fn new(requests: mpsc::Sender<ReloadRequest>) -> Self {
        Self { requests }
    }

    /// Asks for a reload and waits for its outcome, up to `wait`.
    pub async fn request(&self, wait: Duration) -> Result<ReloadOutcome, Error> {
        let (reply, answer) = oneshot::channel();
        self.requests.try_send(reply).map_err(|_| Error::ReloadUnavailable("too many reloads queued"))?;
        match tokio::time::timeout(wait, answer).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => Err(Error::ReloadUnavailable("the proxy is stopping")),
            Err(_) => Err(Error::ReloadUnavailable("timed out")),
        }
    }
}

/// Everything the admin interfaces read or change.
#[derive(Debug)]
pub struct Context {
    /// The proxy's shared state.
    pub shared: Arc<Shared>,
    /// The metrics registry `/metrics` encodes.
    pub registry: Registry,
    /// Reload requests to `app`.
    pub reload: Reload,
    /// Serializes scrapes: copying shared state into the registry must not interleave.
    scrape: std::sync::Mutex<()>,
}

impl Context {
    /// The admin context over the proxy's state, its metrics registry and the reload channel.
    pub fn new(shared: Arc<Shared>, registry: Registry, reload: Reload) -> Self {
        Self { shared, registry, reload, scrape: std::sync::Mutex::new(()) }
    }

    /// The Prometheus text of every metric, with scrape-time values copied in first.
    pub fn metrics_text(&self) -> Result<String, Error> {
        let _scrape = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        crate::shared::refresh_metrics(&self.shared);
        Ok(crate::stats::encode(&self.registry)?)
    }
}

/// A command's answer, written as a result set, an OK or an ERR by the MySQL admin port.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A result set; every cell is text or NULL.
    Table(Table),
    /// Success without rows; the message goes in the OK packet's info.
    Done(String),
    /// The command failed; the message says why.
    Error(String),
}

/// Column names and text rows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    /// Column names.
    pub columns: Vec<&'static str>,
    /// Rows, each as long as `columns`; `None` is NULL.
    pub rows: Vec<Vec<Option<String>>>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(columns: &[&'static str]) -> Self {
        Self { columns: columns.to_vec(), rows: Vec::new() }
    }

    /// Appends a row.
    pub fn push(&mut self, row: Vec<Option<String>>) {
        self.rows.push(row);
    }
}

/// Runs one admin statement.
pub async fn execute(ctx: &Context, sql: &str) -> Answer {
    match Command::parse(sql) {
        Ok(command) => run(ctx, command).await,
        Err(message) => Answer::Error(message),
    }
}

async fn run(ctx: &Context, command: Command) -> Answer {
    match command {
        Command::ShowBackends => Answer::Table(show::backends(&ctx.shared)),
        Command::ShowPools => Answer::Table(show::pools(&ctx.shared)),
        Command::ShowClients => Answer::Table(show::clients(&ctx.shared)),
        Command::ShowDigests { limit } => Answer::Table(show::digests(&ctx.shared, limit)),
        Command::ShowConfig => show::config(&ctx.shared),
        Command::Reload => control::reload(ctx, RELOAD_WAIT).await,
        Command::SetWeight { backend, weight } => control::set_weight(&ctx.shared, &backend, weight).await,
        Command::DrainBackend { backend } => control::drain(&ctx.shared, &backend).await,
        Command::ExplainRoute { sql } => explain::route(&ctx.shared, &sql),
        Command::SessionSetting => Answer::Done(String::new()),
        Command::VersionComment => {
            let mut table = Table::new(&["@@version_comment"]);
            table.push(vec![Some("rwsplit admin interface".into())]);
            Answer::Table(table)
        }
    }
}
