//! Wiring: binds the listeners, builds the shared state, runs the accept loop, and handles
//! signals. Tests and benches use [`start`] to run the real proxy in-process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backend::ServerInfo;
use crate::config::Config;
use crate::frontend::{self, Shared};
use crate::protocol::handshake::Greeting;
use crate::protocol::packet::FrameReader;

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
}

/// A running proxy.
#[derive(Debug)]
pub struct Handle {
    mysql_addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl Handle {
    /// Where the MySQL-protocol listener is bound (useful with port 0).
    pub fn mysql_addr(&self) -> SocketAddr {
        self.mysql_addr
    }

    /// Client connections currently open.
    pub fn client_count(&self) -> u32 {
        self.shared.client_count()
    }

    /// Stops accepting new clients and waits for the accept loop to end. Sessions already running
    /// finish on their own.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.accept.await;
    }
}

/// Binds the listeners and starts serving. Returns once the proxy accepts connections.
pub async fn start(config: Config) -> Result<Handle, Error> {
    let addr = config.listen.mysql;
    let listener = TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })?;
    let mysql_addr = listener.local_addr().map_err(|source| Error::Bind { addr, source })?;
    let shared = Arc::new(Shared::new(config));
    let (shutdown, stop) = watch::channel(false);
    tokio::spawn(learn_primary(shared.clone()));
    let accept = tokio::spawn(frontend::serve(listener, shared.clone(), stop));
    tracing::info!(addr = %mysql_addr, "accepting MySQL clients");
    Ok(Handle { mysql_addr, shared, shutdown, accept })
}

/// Runs the proxy until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), Error> {
    let handle = start(config).await?;
    wait_for_signal().await;
    tracing::info!("shutting down");
    handle.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot watch SIGTERM; only Ctrl-C stops the proxy");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
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
            let info = ServerInfo { version: g.server_version, capabilities: g.capabilities, collation: g.collation };
            shared.primary_info.store(Some(Arc::new(info)));
        }
        _ => {
            tracing::warn!(backend = %primary.name, "primary unreachable at startup; using default greeting until it answers")
        }
    }
}
