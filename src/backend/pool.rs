//! Backend connection pools: one bb8 pool per (backend, user, result-changing client flags,
//! collation, whether a schema is selected). A checkout is a [`Lease`]; dropping it returns the
//! connection unless it is broken or from an older generation.
//!
//! bb8 is configured as DESIGN.md asks: no ping on checkout (a ping per statement would double
//! latency), LIFO (warm connections first), no connect retries inside a checkout (a dead replica
//! must fail fast so the read can go elsewhere). Instead of a ping, a checkout skips idle
//! connections the server already closed (a non-blocking look at the socket, no round trip).
//!
//! Each backend has a generation. [`Pools::drain`] (a failover, a backend marked down) bumps it and
//! forgets the backend's pools: idle connections close as soon as no checkout holds the pool, and
//! connections in use are dropped when returned; a session holding one sees [`Lease::is_retired`].
//! [`Pools::forget`] is the gentle variant for reloads and `DRAIN BACKEND`: the pools are forgotten but
//! their connections are not retired, so held transactions finish where they are.

mod watch;

use std::collections::HashMap;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cap::Cap;
use super::conn::{Conn, ConnectParams};
use super::tls::Connector;
use super::topology::{BackendIndex, Node};
use super::Error;
use crate::config::{BackendConfig, PoolConfig, UserConfig};
use crate::protocol::CapabilityFlags;

use watch::Marks;
pub use watch::{Evidence, Watch, STALLED_WAITS};

/// What makes backend connections interchangeable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// The backend.
    pub backend: BackendIndex,
    /// The proxy user the connection logs in for.
    pub user: String,
    /// Result-changing client flags (`FOUND_ROWS`, `MULTI_STATEMENTS`, ...).
    pub capabilities: u32,
    /// MariaDB extended capabilities the clients negotiated (they change column definitions and
    /// allow bulk execute, so connections with different ones are never shared).
    pub extended: u32,
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
    extended: u32,
    collation: u8,
    with_schema: bool,
    connect_timeout: Duration,
    max_prepared: usize,
    /// The backend's generation (see [`Pools::drain`]).
    marks: Arc<Marks>,
    /// Prepared statements open on the backend, over all its connections.
    prepared: Arc<AtomicI64>,
    /// bb8 never hands a connect error to a waiting checkout (it only times out), so failures
    /// are announced here and a waiting checkout gives up at once instead of waiting out its
    /// timeout on a dead backend.
    failures: Arc<Failures>,
    /// Backend TLS, loaded at each connect so a reload applies to new connections at once.
    tls: Arc<arc_swap::ArcSwap<Connector>>,
    /// The backend's name, for errors.
    name: String,
    /// The caps every connection must fit under: the backend's, then the user's on it.
    caps: Vec<Arc<Cap>>,
    /// The id of the pool this manager fills (see [`Cap::register`]).
    pool_id: u64,
    /// How long a connect waits for room under the caps.
    checkout_timeout: Duration,
}

/// Connect failures of one pool, for checkouts waiting on it. Waiting costs nothing until a
/// checkout really has to wait: a [`tokio::sync::Notified`] is created without taking a lock and
/// still sees a failure announced after its creation.
#[derive(Debug, Default)]
struct Failures {
    notify: tokio::sync::Notify,
    last: Mutex<Option<Error>>,
    /// The server's last refusal of the pool's login, and when.
    refusal: Mutex<Option<(Instant, Error)>>,
}

/// How long a pool answers the checkouts that would have to log in with the server's refusal of
/// its login instead of logging in again: a misconfigured user's every statement would otherwise cost the backend a failed
/// login (which may lock the account under `FAILED_LOGIN_ATTEMPTS`, or block the proxy's host
/// under `max_connect_errors`) and the log a line. A reload that changes the user's backend
/// credentials makes a new pool, which tries at once. Idle connections the pool logged in
/// before the refusal are still handed out meanwhile.
const REFUSAL_MEMORY: Duration = Duration::from_secs(5);

impl Failures {
    fn announce(&self, err: &Error) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(err.for_waiters());
        self.notify.notify_waiters();
    }

    /// Remembers a refused login (see [`REFUSAL_MEMORY`]).
    fn refused(&self, err: &Error) {
        *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), err.for_waiters()));
    }

    /// The server's refusal of this pool's login if it came within [`REFUSAL_MEMORY`] of `now`.
    fn recent_refusal(&self, now: Instant) -> Option<Error> {
        let refusal = self.refusal.lock().unwrap_or_else(|p| p.into_inner());
        match &*refusal {
            Some((at, err)) if now.saturating_duration_since(*at) < REFUSAL_MEMORY => Some(err.for_waiters()),
            _ => None,
        }
    }

    fn last(&self, name: &str) -> Error {
        match &*self.last.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(err) => err.for_waiters(),
            None => Error::ConnectFailed(format!("backend {name}: new connections are failing")),
        }
    }
}

impl bb8::ManageConnection for Manager {
    // Boxed: bb8 and the session move a checked-out connection by value several times per
    // statement, and a pointer is cheaper to move than the connection with its buffers.
    type Connection = Box<Conn>;
    type Error = Error;

    async fn connect(&self) -> Result<Box<Conn>, Error> {
        // No login while a refusal is remembered: the checkout waiting for this connection (or
        // bb8 refilling `min_idle`) gets the refusal. Idle connections logged in before it (a
        // password changed on the server, an account at its connection limit) still serve, as
        // bb8 hands them out without calling this.
        if let Some(refusal) = self.failures.recent_refusal(Instant::now()) {
            self.failures.announce(&refusal);
            return Err(refusal);
        }
        let mut permits = Vec::with_capacity(self.caps.len());
        for cap in &self.caps {
            match cap.acquire(self.pool_id, self.checkout_timeout).await {
                Some(permit) => permits.push(permit),
                // Not a backend failure: nothing is announced, the backend stays up.
                None => {
                    return Err(Error::CheckoutTimeout {
                        backend: self.name.clone(),
                        waited: self.checkout_timeout,
                        connecting: false,
                    })
                }
            }
        }
        let params = ConnectParams {
            host: &self.host,
            port: self.port,
            user: &self.user,
            password: &self.password,
            database: None,
            collation: self.collation,
            extra_capabilities: self.capabilities,
            extended: self.extended,
            connect_timeout: self.connect_timeout,
            max_prepared: self.max_prepared,
            tls: self.tls.load_full(),
        };
        // Read before connecting: a drain while the login runs retires this connection too.
        let generation = self.marks.generation.load(Ordering::Relaxed);
        match Conn::connect(&params).await {
            Ok(mut conn) => {
                conn.permits = permits;
                conn.generation = generation;
                conn.stmts.count_in(self.prepared.clone());
                Ok(Box::new(conn))
            }
            Err(err) => {
                if err.is_login_refusal() {
                    // Logged here, once per REFUSAL_MEMORY, rather than per statement.
                    tracing::warn!(backend = %self.name, user = %self.user, error = %err, "the backend refused the proxy's login; statements of this user fail with the server's answer for the next {REFUSAL_MEMORY:?}");
                    self.failures.refused(&err);
                }
                self.failures.announce(&err);
                Err(err)
            }
        }
    }

    async fn is_valid(&self, _conn: &mut Box<Conn>) -> Result<(), Error> {
        // Never called: test_on_check_out is off; the monitor knows backend health.
        Ok(())
    }

    fn has_broken(&self, conn: &mut Box<Conn>) -> bool {
        conn.broken
            || conn.generation != self.marks.generation.load(Ordering::Relaxed)
            || (!self.with_schema && conn.state.schema.is_some())
    }
}

/// A checked-out backend connection; returns to its pool when dropped.
pub struct Lease {
    conn: bb8::PooledConnection<'static, Manager>,
    marks: Arc<Marks>,
    /// What a wait for the server gives up on (see [`Lease::watch`]).
    watch: Watch,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("backend", &self.backend()).field("thread_id", &self.conn.thread_id()).finish()
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

/// One pool: the bb8 pool plus its manager's failure announcements. Shared as `Arc<Pool>`.
#[derive(Debug)]
pub struct Pool {
    inner: bb8::Pool<Manager>,
    /// Its id under the backend's caps.
    id: u64,
    failures: Arc<Failures>,
    marks: Arc<Marks>,
    /// `pool.max_connections_per_backend` when the pool was built.
    max: u32,
    /// Set when [`Pools`] forgets it: a session still holding a handle must look up the current
    /// pool instead (a reload may have changed the backend's address or the user's credentials).
    forgotten: AtomicBool,
}

/// Connection counts of one pool, or summed over several.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Pools counted.
    pub pools: u32,
    /// Connections open (idle and in use).
    pub open: u32,
    /// Connections idle in the pool.
    pub idle: u32,
    /// Most connections the pools may open (for a backend: its cap).
    pub max: u32,
    /// Connects waiting for room under the backend's cap.
    pub waiting: i64,
}

impl PoolStats {
    /// Connections checked out.
    pub fn in_use(&self) -> u32 {
        self.open.saturating_sub(self.idle)
    }
}

impl Pool {
    /// True once the pool map forgot this pool (reload, drain, failover).
    pub fn is_forgotten(&self) -> bool {
        self.forgotten.load(Ordering::Acquire)
    }

    fn mark_forgotten(&self) {
        self.forgotten.store(true, Ordering::Release);
    }

    /// Counts of this pool.
    pub fn stats(&self) -> PoolStats {
        let state = self.inner.state();
        PoolStats { pools: 1, open: state.connections, idle: state.idle_connections, max: self.max, waiting: 0 }
    }

    /// Connections open (idle and in use).
    pub fn connections(&self) -> u32 {
        self.inner.state().connections
    }

    /// Closes one idle connection to make room under a cap; false when none was idle.
    pub(super) async fn close_idle_connection(&self) -> bool {
        if self.inner.state().idle_connections == 0 {
            return false;
        }
        // An idle connection is handed out at once; anything slower means it went in between,
        // and waiting for a new one here would defeat the purpose.
        match tokio::time::timeout(Duration::from_millis(20), self.inner.get()).await {
            Ok(Ok(mut conn)) => {
                conn.broken = true;
                true
            }
            _ => false,
        }
    }
}

/// All pools, created on first use.
#[derive(Debug, Default)]
pub struct Pools {
    inner: Mutex<Inner>,
    /// Backend TLS for every new connection; swapped by `frontend::tls` on reload.
    tls: Arc<arc_swap::ArcSwap<Connector>>,
    /// Background resets of connections sessions left dirty.
    resets: Resets,
    /// See [`Marks::stalls`].
    stalls: Arc<tokio::sync::Notify>,
}

/// Connections being reset in the background, bounded, and how resets ended.
#[derive(Debug)]
struct Resets {
    slots: Arc<tokio::sync::Semaphore>,
    counts: Arc<ResetCounts>,
}

/// How many background resets succeeded and failed.
#[derive(Debug, Default)]
pub struct ResetCounts {
    /// Connections reset and returned to their pool.
    pub ok: AtomicU64,
    /// Resets that failed (the connection was closed instead), or were not tried because too
    /// many were running.
    pub failed: AtomicU64,
}

/// Resets running at once at most; beyond this a dirty connection is simply closed.
const MAX_RESETS: usize = 32;

impl Default for Resets {
    fn default() -> Self {
        Self { slots: Arc::new(tokio::sync::Semaphore::new(MAX_RESETS)), counts: Arc::default() }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Sessions keep `Weak` references between statements: a forgotten pool is gone for them
    /// too, and an idle session does not keep a forgotten pool's connections open.
    pools: HashMap<PoolKey, Arc<Pool>>,
    /// Per backend; never removed, so a drained backend's new pools continue its count.
    generations: HashMap<BackendIndex, Arc<Marks>>,
    /// Prepared statements open per backend (connections of forgotten pools included).
    prepared: HashMap<BackendIndex, Arc<AtomicI64>>,
    /// `pool.max_connections_per_backend`, per backend, over all its pools (forgotten ones too).
    caps: HashMap<BackendIndex, Arc<Cap>>,
    /// `[[users]] max_backend_connections`, per backend and user.
    user_caps: HashMap<(BackendIndex, String), Arc<Cap>>,
    /// The running backend list, as the last reload numbered it; empty until
    /// [`Pools::set_layout`] (then every caller's node is taken as current).
    layout: Vec<BackendConfig>,
    next_pool_id: u64,
    /// The last [`Marks::uid`] given.
    last_uid: u32,
}

impl Inner {
    /// A fresh [`Marks::uid`].
    fn uid(&mut self) -> u32 {
        self.last_uid = self.last_uid.checked_add(1).unwrap_or(1);
        self.last_uid
    }

    /// Where `backend` is in the running layout.
    fn place_of(&self, backend: &BackendConfig, asked: BackendIndex) -> Option<BackendIndex> {
        if self.layout.is_empty() {
            return Some(asked);
        }
        if self.layout.get(asked.0).is_some_and(|b| b.same_server(backend)) {
            return Some(asked);
        }
        self.layout.iter().position(|b| b.same_server(backend)).map(BackendIndex)
    }
}

/// The index of a backend a reload removed, in leases still holding one of its connections.
pub const REMOVED: BackendIndex = BackendIndex(usize::MAX);

/// Idle connections a checkout may find closed by the server before it gives up on the pool's
/// idle list (each one found is dropped, so this only bounds pathological cases).
const MAX_DEAD_IDLE: usize = 64;

/// For a retryable checkout (a read), a connection last checked out at least this long ago is checked with a
/// `recv(MSG_PEEK)` (the kernel's view); one used more recently is checked against tokio's
/// readiness, which costs no system call. A read sent on a connection the server closed within
/// the last moments fails before any result and is retried on another backend.
const PEEK_AFTER_IDLE: Duration = Duration::from_secs(1);

impl Pools {
    /// Pools whose connections use (and follow swaps of) `tls`.
    pub fn with_tls(tls: Arc<arc_swap::ArcSwap<Connector>>) -> Self {
        Self { tls, ..Self::default() }
    }

    /// The backend TLS settings new connections use now.
    pub fn tls(&self) -> Arc<Connector> {
        self.tls.load_full()
    }

    /// The pool for `key`, creating it with `node`'s address and `user`'s backend credentials.
    ///
    /// A caller still routing by the topology from before a reload that renumbered the backends
    /// (until the monitor publishes the new one, moments later) names a backend that is not at
    /// `key.backend` any more. It gets a pool of its own for the server it chose, already
    /// forgotten (its connections close once returned) and sharing the marks of that server's
    /// new index, so that it neither takes nor leaves behind a pool the index's new backend
    /// would use.
    pub fn pool(&self, key: &PoolKey, node: &Node, user: &UserConfig, config: &PoolConfig) -> Arc<Pool> {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let place = map.place_of(&node.config, key.backend);
        let current = place == Some(key.backend);
        if current {
            if let Some(pool) = map.pools.get(key) {
                return pool.clone();
            }
        }
        let per_backend = config.max_connections_per_backend.max(1);
        let (marks, prepared, cap) = match place {
            Some(backend) => (
                self.marks(&mut map, backend),
                map.prepared.entry(backend).or_default().clone(),
                map.caps.entry(backend).or_insert_with(|| Arc::new(Cap::new(per_backend))).clone(),
            ),
            // Removed by the reload: nothing the monitor drains refers to it any more.
            None => (self.new_marks(&mut map, REMOVED), Arc::default(), Arc::new(Cap::new(per_backend))),
        };
        cap.resize(per_backend);
        let mut caps = vec![cap.clone()];
        if let (Some(backend), true) = (place, user.max_backend_connections > 0) {
            let user_cap = map
                .user_caps
                .entry((backend, key.user.clone()))
                .or_insert_with(|| Arc::new(Cap::new(user.max_backend_connections)))
                .clone();
            user_cap.resize(user.max_backend_connections);
            caps.insert(0, user_cap);
        }
        map.next_pool_id += 1;
        let pool_id = map.next_pool_id;
        let failures = Arc::new(Failures::default());
        let manager = Manager {
            host: node.config.host.clone(),
            port: node.config.port,
            user: user.backend_user().to_owned(),
            password: user.backend_password().unwrap_or_default().to_owned(),
            capabilities: CapabilityFlags::from_bits_truncate(key.capabilities),
            extended: key.extended,
            collation: key.collation,
            with_schema: key.with_schema,
            connect_timeout: config.connect_timeout,
            max_prepared: usize::try_from(config.max_prepared_per_connection).unwrap_or(256),
            marks: marks.clone(),
            prepared,
            failures: failures.clone(),
            tls: self.tls.clone(),
            name: node.name().to_owned(),
            caps: caps.clone(),
            pool_id,
            checkout_timeout: config.checkout_timeout,
        };
        let inner = bb8::Pool::builder()
            .max_size(config.max_connections_per_backend.max(1))
            .min_idle(Some(config.min_idle).filter(|&n| n > 0 && current))
            .test_on_check_out(false)
            .retry_connection(false)
            .queue_strategy(bb8::QueueStrategy::Lifo)
            .connection_timeout(config.checkout_timeout)
            .idle_timeout(Some(config.idle_timeout))
            .max_lifetime(Some(config.max_lifetime))
            .build_unchecked(manager);
        let max = config.max_connections_per_backend.max(1);
        let pool = Arc::new(Pool { inner, id: pool_id, failures, marks, max, forgotten: AtomicBool::new(!current) });
        for cap in &caps {
            cap.register(pool.id, &pool);
        }
        if current {
            map.pools.insert(key.clone(), pool.clone());
        } else {
            tracing::debug!(backend = %node.name(), "a session routing by the topology before the reload got a pool of its own");
        }
        pool
    }

    /// Checks a connection out of `pool` for backend `backend`.
    /// `timeout` is the pool's configured checkout timeout, reported in the error; `now` is the
    /// time of the checkout (the caller reads the clock anyway). `retryable`
    /// says the statement may go elsewhere if the connection turns out dead after it was sent (a
    /// read); otherwise (a write) every idle connection is checked against the kernel first, so
    /// that right after a server died nothing is sent on a connection already known closed.
    pub async fn checkout(
        pool: &Pool,
        name: &str,
        timeout: Duration,
        retryable: bool,
        now: Instant,
    ) -> Result<Lease, Error> {
        // Created before asking bb8, so that a connect failure announced while this checkout
        // waits is seen; creating it takes no lock, and it is only polled when bb8 has to wait.
        let failed = pool.failures.notify.notified();
        tokio::pin!(failed);
        for _ in 0..MAX_DEAD_IDLE {
            let mut conn = tokio::select! {
                biased;
                got = pool.inner.get_owned() => match got {
                    Ok(conn) => conn,
                    Err(bb8::RunError::User(err)) => return Err(err),
                    Err(bb8::RunError::TimedOut) => {
                        let connecting = pool.inner.state().connections < pool.max;
                        return Err(Error::CheckoutTimeout { backend: name.to_owned(), waited: timeout, connecting })
                    }
                },
                () = &mut failed => return Err(pool.failures.last(name)),
            };
            let thorough = !retryable || now.saturating_duration_since(conn.last_checkout) >= PEEK_AFTER_IDLE;
            if conn.is_closed_by_peer(thorough) || conn.generation != pool.marks.generation.load(Ordering::Relaxed) {
                // The server went away while it sat idle (restart, failover, wait_timeout), or the
                // backend was drained after this pool handle was taken.
                conn.broken = true;
                continue;
            }
            conn.last_checkout = now;
            return Ok(Lease { conn, marks: pool.marks.clone(), watch: Watch::Off });
        }
        Err(Error::ConnectFailed(format!("backend {name}: every idle connection was closed by the server")))
    }

    /// Retires every connection to `backend`: its pools are forgotten (idle connections close once
    /// no checkout still holds them), connections in use are dropped when returned, and held ones
    /// report [`Lease::is_retired`]. The next checkout opens fresh connections.
    pub fn drain(&self, backend: BackendIndex) {
        self.retire(backend, false);
    }

    /// [`Pools::drain`] for a backend that stopped being the primary: besides, statements still
    /// waiting on it under [`Watch::Primary`] give up ([`Error::Demoted`]).
    pub fn demote(&self, backend: BackendIndex) {
        self.retire(backend, true);
    }

    /// What the data path saw of `backend` so far.
    pub fn evidence(&self, backend: BackendIndex) -> Evidence {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.generations.get(&backend).map_or_else(Evidence::default, |marks| Evidence {
            answered: marks.answered.load(Ordering::Relaxed),
            silent: marks.silent.load(Ordering::Relaxed),
            waiting: marks.waiting.load(Ordering::Relaxed),
        })
    }

    /// Completes when a statement has waited on some backend without an answer for a while
    /// (or at once if one did since the last call).
    pub async fn stall_noticed(&self) {
        self.stalls.notified().await;
    }

    fn marks(&self, map: &mut Inner, backend: BackendIndex) -> Arc<Marks> {
        if let Some(marks) = map.generations.get(&backend) {
            return marks.clone();
        }
        let marks = self.new_marks(map, backend);
        map.generations.insert(backend, marks.clone());
        marks
    }

    /// Fresh marks for the backend at `index`, with a new id.
    fn new_marks(&self, map: &mut Inner, index: BackendIndex) -> Arc<Marks> {
        Arc::new(Marks { index: index.0.into(), uid: map.uid(), stalls: self.stalls.clone(), ..Marks::default() })
    }

    /// The backend with id `uid` ([`Lease::server`]); `None` once a reload removed it.
    pub fn server(&self, uid: u32) -> Option<BackendConfig> {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (index, _) = map.generations.iter().find(|(_, marks)| marks.uid == uid)?;
        map.layout.get(index.0).cloned()
    }

    fn retire(&self, backend: BackendIndex, demoted: bool) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let marks = self.marks(&mut map, backend);
        let generation = marks.generation.fetch_add(1, Ordering::Relaxed) + 1;
        if demoted {
            marks.demoted.store(generation, Ordering::Relaxed);
        }
        map.pools.retain(|key, pool| {
            let keep = key.backend != backend;
            if !keep {
                pool.mark_forgotten();
                // Checkouts waiting for a connection to it (a frozen server never finishes a
                // login) give up now: a read goes elsewhere, a write waits for a primary.
                pool.failures.announce(&Error::Drained);
            }
            keep
        });
    }

    /// Follows a reload that changed the backend list: what is kept per backend (generation and
    /// data-path evidence, open prepared statements, connection caps) moves with each backend to
    /// its new index (`new_index[old]`, `None` when it was removed), so that the monitor's drains
    /// and evidence at an index keep meaning the backend there, also for connections sessions
    /// still hold. A removed backend's entries go (connections still held keep theirs); a new
    /// one gets fresh entries on first use.
    ///
    /// Under the same lock, the pools at every index whose backend changes are forgotten (without
    /// retiring their connections, as [`Pools::forget`] does), so that no session finds one at an
    /// index that now means another server, and the layout [`Pools::pool`] checks callers' nodes
    /// against becomes `backends`. Returns how many pools were forgotten.
    pub fn reindex(&self, new_index: &[Option<usize>], backends: &[BackendConfig]) -> usize {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.layout = backends.to_vec();
        let before = map.pools.len();
        map.pools.retain(|key, pool| {
            let keep = new_index.get(key.backend.0).is_none_or(|to| *to == Some(key.backend.0));
            if !keep {
                pool.mark_forgotten();
            }
            keep
        });
        let to = |b: &BackendIndex| new_index.get(b.0).copied().flatten().map(BackendIndex);
        let (kept, removed): (Vec<_>, Vec<_>) = map.generations.drain().partition(|(b, _)| to(b).is_some());
        map.generations = kept.into_iter().filter_map(|(b, v)| Some((to(&b)?, v))).collect();
        for (b, marks) in &map.generations {
            marks.index.store(b.0, Ordering::Relaxed);
        }
        for (old, marks) in removed {
            marks.index.store(REMOVED.0, Ordering::Relaxed);
            tracing::debug!(backend = old.0, "a removed backend's held connections keep their own marks");
        }
        map.prepared = map.prepared.drain().filter_map(|(b, v)| Some((to(&b)?, v))).collect();
        map.caps = map.caps.drain().filter_map(|(b, v)| Some((to(&b)?, v))).collect();
        map.user_caps = map.user_caps.drain().filter_map(|((b, u), v)| Some(((to(&b)?, u), v))).collect();
        before - map.pools.len()
    }

    /// Where the pools number `backend`, which the caller knows at `index` (the monitor's
    /// topology may still follow the backend list from before a reload); `None` when it is not
    /// listed any more.
    pub fn place(&self, backend: &BackendConfig, index: BackendIndex) -> Option<BackendIndex> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).place_of(backend, index)
    }

    /// Records the backend list pools are numbered by (at startup; reloads use [`Pools::reindex`]).
    pub fn set_layout(&self, backends: &[BackendConfig]) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).layout = backends.to_vec();
    }

    /// Forgets the pools `pred` selects without retiring their connections (a reload that changed
    /// a backend, a user or the pool settings; `DRAIN BACKEND`). Connections in use, including those
    /// sessions hold for a transaction, keep working; each returns to its old pool, which closes its
    /// idle connections once the last one is back. The next checkout builds a new pool from the
    /// current config. Returns how many pools were forgotten.
    pub fn forget(&self, pred: impl Fn(&PoolKey) -> bool) -> usize {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let before = map.pools.len();
        map.pools.retain(|key, pool| {
            let keep = !pred(key);
            if !keep {
                pool.mark_forgotten();
            }
            keep
        });
        before - map.pools.len()
    }

    /// Every pool with its key and counts, for the admin interface.
    pub fn list(&self) -> Vec<(PoolKey, PoolStats)> {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.pools.iter().map(|(key, pool)| (key.clone(), pool.stats())).collect()
    }

    /// Counts summed over the pools of `backend`.
    pub fn backend_stats(&self, backend: BackendIndex) -> PoolStats {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut stats =
            map.pools.iter().filter(|(k, _)| k.backend == backend).fold(PoolStats::default(), |sum, (_, pool)| {
                let one = pool.stats();
                PoolStats {
                    pools: sum.pools + 1,
                    open: sum.open + one.open,
                    idle: sum.idle + one.idle,
                    max: sum.max + one.max,
                    waiting: 0,
                }
            });
        if let Some(cap) = map.caps.get(&backend) {
            stats.max = cap.limit();
            stats.waiting = cap.waiting();
        }
        stats
    }

    /// Gives back a connection a session left with a transaction or pinned state: it is reset in
    /// the background (`COM_RESET_CONNECTION`, bounded by `timeout`) and returns to its pool, or is
    /// closed when the reset fails or too many resets are running.
    pub fn check_in_dirty(&self, mut lease: Lease, timeout: Duration) {
        let counts = self.resets.counts.clone();
        let Ok(slot) = self.resets.slots.clone().try_acquire_owned() else {
            lease.broken = true;
            counts.failed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        tokio::spawn(async move {
            let _slot = slot;
            match lease.reset(timeout).await {
                Ok(()) => {
                    // Back in its pool before it is counted: a reset counted is a reusable connection.
                    drop(lease);
                    counts.ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => {
                    tracing::debug!(backend = lease.backend().0, error = %err, "resetting a returned connection failed");
                    lease.broken = true;
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }

    /// Background resets so far.
    pub fn reset_counts(&self) -> &ResetCounts {
        &self.resets.counts
    }

    /// Prepared statements open on `backend`, over all its pooled connections.
    pub fn prepared_open(&self, backend: BackendIndex) -> i64 {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.prepared.get(&backend).map_or(0, |open| open.load(Ordering::Relaxed))
    }

    /// Backend connections open (idle and in use) across all pools of `backend`.
    pub fn open_connections(&self, backend: BackendIndex) -> u32 {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.pools.iter().filter(|(k, _)| k.backend == backend).map(|(_, p)| p.connections()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generation(pools: &Pools, b: usize) -> u64 {
        let mut map = pools.inner.lock().unwrap();
        pools.marks(&mut map, BackendIndex(b)).generation.load(Ordering::Relaxed)
    }

    /// Between a reload that renumbers the backends and the monitor's new topology, a session
    /// asks for the pool at an index by a node from the old numbering.
    #[tokio::test]
    async fn a_node_from_the_old_numbering_gets_a_pool_of_its_own() {
        let text = "[[backends]]\nname = \"a\"\nhost = \"127.0.0.1\"\nport = 1\nrole = \"primary\"\n\
                    [[backends]]\nname = \"b\"\nhost = \"127.0.0.1\"\nport = 2\n\
                    [[users]]\nname = \"u\"\npassword = \"p\"\n";
        let config = crate::config::Config::from_toml(text).unwrap();
        let old = crate::backend::Topology::from_config(&config);
        let pools = Pools::default();
        pools.set_layout(&config.backends);
        let user = &config.users[0];
        let key = |b: usize| PoolKey {
            backend: BackendIndex(b),
            user: "u".into(),
            capabilities: 0,
            extended: 0,
            collation: 0,
            with_schema: false,
        };
        let b_at_1 = pools.pool(&key(1), &old.nodes[1], user, &config.pool);
        assert!(Arc::ptr_eq(&b_at_1, &pools.pool(&key(1), &old.nodes[1], user, &config.pool)));

        let b_id = b_at_1.marks.uid;
        assert_eq!(pools.server(b_id).map(|s| s.port), Some(2));

        // The two swap places.
        let mut swapped = config.backends.clone();
        swapped.reverse();
        pools.reindex(&[Some(1), Some(0)], &swapped);
        assert!(b_at_1.is_forgotten(), "the pool at an index that changed is forgotten with the renumbering");
        assert_eq!(b_at_1.marks.index.load(Ordering::Relaxed), 0, "its connections follow b to index 0");
        assert_eq!(pools.server(b_id).map(|s| s.port), Some(2), "b's id still names b");
        let stale = pools.pool(&key(1), &old.nodes[1], user, &config.pool);
        assert!(stale.is_forgotten(), "b, asked for at its old index, is not kept there");
        assert!(pools.list().is_empty(), "nothing is left at index 1 for a");
        let current = pools.pool(&key(1), &old.nodes[0], user, &config.pool);
        assert!(!current.is_forgotten() && !Arc::ptr_eq(&current, &stale));
        assert!(Arc::ptr_eq(&current, &pools.pool(&key(1), &old.nodes[0], user, &config.pool)));
        // The stale pool shares the marks of b's new index: a drain of b reaches its connections.
        pools.drain(BackendIndex(0));
        assert_eq!(stale.marks.generation.load(Ordering::Relaxed), 1);
        assert_eq!(current.marks.generation.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn what_is_kept_per_backend_follows_it_to_its_new_index() {
        let pools = Pools::default();
        pools.drain(BackendIndex(0));
        pools.drain(BackendIndex(0));
        pools.drain(BackendIndex(1));
        pools.drain(BackendIndex(2));
        let held = {
            let mut map = pools.inner.lock().unwrap();
            pools.marks(&mut map, BackendIndex(0))
        };
        let removed = {
            let mut map = pools.inner.lock().unwrap();
            pools.marks(&mut map, BackendIndex(2))
        };
        // Backends 0 and 1 swap places, 2 is removed, a new one takes index 2.
        pools.reindex(&[Some(1), Some(0), None], &[]);
        assert_eq!(removed.index.load(Ordering::Relaxed), REMOVED.0, "held connections of 2 name no backend");
        assert_eq!((generation(&pools, 0), generation(&pools, 1)), (1, 2));
        assert_eq!(generation(&pools, 2), 0, "a new backend starts afresh");
        // A drain of the first backend at its new index reaches connections held from before.
        pools.drain(BackendIndex(1));
        assert_eq!(held.generation.load(Ordering::Relaxed), 3);
        assert_eq!(generation(&pools, 0), 1, "the other backend is untouched");
    }
}
