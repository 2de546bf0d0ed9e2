//! Backend connection pools: one bb8 pool per (backend, user, result-changing client flags,
//! collation, whether a schema is selected). A checkout is a [`Lease`]; dropping it returns the
//! connection unless it is broken or from an older generation.
//!
//! bb8 is configured as DESIGN.md asks: no ping on checkout (a ping per statement would double
//! latency), LIFO (warm connections first), no connect retries inside a checkout (a dead replica
//! must fail fast so the read can go elsewhere).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::conn::{Conn, ConnectParams};
use super::topology::{BackendIndex, Node};
use super::Error;
use crate::config::{PoolConfig, UserConfig};
use crate::protocol::CapabilityFlags;

/// What makes backend connections interchangeable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// The backend.
    pub backend: BackendIndex,
    /// The proxy user the connection logs in for.
    pub user: String,
    /// Result-changing client flags (`FOUND_ROWS`, `MULTI_STATEMENTS`, ...).
    pub capabilities: u32,
    /// Handshake collation.
    pub collation: u8,
    /// Whether sessions using it have a schema selected (a schema cannot be unselected, so
    /// schema-less sessions never get a connection that has one).
    pub with_schema: bool,
}

/// Connects backend connections for one pool.
#[derive(Debug)]
pub struct Manager {
    host: String,
    port: u16,
    user: String,
    password: String,
    capabilities: CapabilityFlags,
    collation: u8,
    with_schema: bool,
    connect_timeout: Duration,
    generation: Arc<AtomicU64>,
}

impl bb8::ManageConnection for Manager {
    type Connection = Conn;
    type Error = Error;

    async fn connect(&self) -> Result<Conn, Error> {
        let params = ConnectParams {
            host: &self.host,
            port: self.port,
            user: &self.user,
            password: &self.password,
            database: None,
            collation: self.collation,
            extra_capabilities: self.capabilities,
            connect_timeout: self.connect_timeout,
        };
        let mut conn = Conn::connect(&params).await?;
        conn.generation = self.generation.load(Ordering::Relaxed);
        Ok(conn)
    }

    async fn is_valid(&self, _conn: &mut Conn) -> Result<(), Error> {
        // Never called: test_on_check_out is off; the monitor knows backend health.
        Ok(())
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.broken
            || conn.generation != self.generation.load(Ordering::Relaxed)
            || (!self.with_schema && conn.state.schema.is_some())
    }
}

/// A checked-out backend connection; returns to its pool when dropped.
pub struct Lease {
    conn: bb8::PooledConnection<'static, Manager>,
    /// The backend it belongs to.
    pub backend: BackendIndex,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("backend", &self.backend).field("thread_id", &self.conn.thread_id()).finish()
    }
}

impl std::ops::Deref for Lease {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl std::ops::DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

/// All pools, created on first use.
#[derive(Debug, Default)]
pub struct Pools {
    pools: Mutex<HashMap<PoolKey, bb8::Pool<Manager>>>,
    generation: Arc<AtomicU64>,
}

impl Pools {
    /// The pool for `key`, creating it with `node`'s address and `user`'s backend credentials.
    pub fn pool(&self, key: &PoolKey, node: &Node, user: &UserConfig, config: &PoolConfig) -> bb8::Pool<Manager> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = pools.get(key) {
            return pool.clone();
        }
        let manager = Manager {
            host: node.config.host.clone(),
            port: node.config.port,
            user: user.backend_user().to_owned(),
            password: user.backend_password().unwrap_or_default().to_owned(),
            capabilities: CapabilityFlags::from_bits_truncate(key.capabilities),
            collation: key.collation,
            with_schema: key.with_schema,
            connect_timeout: config.connect_timeout,
            generation: self.generation.clone(),
        };
        let pool = bb8::Pool::builder()
            .max_size(config.max_connections_per_backend.max(1))
            .min_idle(Some(config.min_idle).filter(|&n| n > 0))
            .test_on_check_out(false)
            .retry_connection(false)
            .queue_strategy(bb8::QueueStrategy::Lifo)
            .connection_timeout(config.checkout_timeout)
            .idle_timeout(Some(config.idle_timeout))
            .max_lifetime(Some(config.max_lifetime))
            .build_unchecked(manager);
        pools.insert(key.clone(), pool.clone());
        pool
    }

    /// Checks a connection out of `pool` for backend `backend`.
    /// `timeout` is the pool's configured checkout timeout, reported in the error.
    pub async fn checkout(
        pool: &bb8::Pool<Manager>,
        backend: BackendIndex,
        name: &str,
        timeout: Duration,
    ) -> Result<Lease, Error> {
        match pool.get_owned().await {
            Ok(conn) => Ok(Lease { conn, backend }),
            Err(bb8::RunError::User(err)) => Err(err),
            Err(bb8::RunError::TimedOut) => Err(Error::CheckoutTimeout { backend: name.to_owned(), waited: timeout }),
        }
    }

    /// Backend connections open (idle and in use) across all pools of `backend`.
    pub fn open_connections(&self, backend: BackendIndex) -> u32 {
        let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.iter().filter(|(k, _)| k.backend == backend).map(|(_, p)| p.state().connections).sum()
    }
}
