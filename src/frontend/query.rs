//! Running one statement: classify, route, check out (or reuse) a backend connection, align its
//! session state, forward the command, stream the response, then decide whether the session
//! keeps the connection (pins, transactions, "about the previous statement") or returns it.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::auth::Login;
use super::observe;
use super::previous;
use super::session::{ClientIo, Session, FLUSH_AT};
use super::ClientError;
use crate::backend::{self, BackendIndex, Lease, Node, Pool, PoolKey, Topology, Watch};
use crate::classify::{Classified, Flags, Kind, SqlMode};
use crate::config::{Config, UnknownFunctions};
use crate::protocol::handshake::semantic_capabilities;
use crate::protocol::okerr::{STATUS_AUTOCOMMIT, STATUS_IN_TRANS};
use crate::protocol::response::{self, Expect, Framing, Step, Tracker};
use crate::protocol::{CapabilityFlags, Error as WireError};
use crate::router::{self, Situation, Target};
use crate::shared::Shared;

/// `SERVER_STATUS_NO_BACKSLASH_ESCAPES`
const STATUS_NO_BACKSLASH_ESCAPES: u16 = 0x0200;
/// MariaDB's `SERVER_STATUS_ANSI_QUOTES`
const STATUS_ANSI_QUOTES: u16 = 0x8000;

/// Flags of statements that may ask about the session's previous statements.
const QUESTIONS: Flags = Flags::WARNINGS_QUERY.union(Flags::ROW_COUNT).union(Flags::FOUND_ROWS).union(Flags::SEQUENCE);

/// How long a backend whose connect failed stays out of replica rotation.
const DOWN_AFTER_FAILURE: Duration = Duration::from_secs(2);

/// A command to run.
pub(super) struct Exec<'a> {
    /// What to do once a backend connection is ready.
    pub work: Work<'a>,
    /// Sequence id of the client's (last) command frame.
    pub seq: u8,
    /// What the response can look like.
    pub expect: Expect,
}

/// The backend part of a command.
#[derive(Clone, Copy)]
pub(super) enum Work<'a> {
    /// Forward the command payload unchanged.
    Forward(&'a [u8]),
    /// Prepare this SQL and answer with the proxy's statement id.
    Prepare(&'a [u8]),
    /// A `COM_STMT_EXECUTE`/`FETCH`/`RESET` payload for the client's statement `id`.
    Statement {
        /// The client's statement id.
        id: u32,
        /// The client's payload (its statement id is rewritten).
        payload: &'a [u8],
    },
}

/// What the command loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Read the next command.
    Continue,
    /// Close the client connection (it went away, or its session state was lost).
    Close,
}

/// Why relaying a response failed.
pub(super) enum RelayError {
    /// The client went away or stopped reading.
    Client(WireError),
    /// The backend failed; `sent` tells whether any byte reached the client.
    Backend { err: backend::Error, sent: bool },
}

impl Session {
    /// The session's `autocommit`: as set in the session, else as the server's status says
    /// (a server whose global `autocommit` is 0 starts sessions with it off).
    fn autocommit(&self) -> bool {
        match self.state.vars.get(&b"autocommit"[..]) {
            Some(v) => !v.eq_ignore_ascii_case(b"OFF"),
            None => self.status & STATUS_AUTOCOMMIT != 0,
        }
    }

    pub(super) fn framing(&self) -> Framing {
        let caps = self.login.capabilities;
        Framing {
            deprecate_eof: caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF),
            session_track: caps.contains(CapabilityFlags::CLIENT_SESSION_TRACK),
            ps_multi_results: caps.contains(CapabilityFlags::CLIENT_PS_MULTI_RESULTS),
        }
    }

    pub(super) fn sql_mode(&self) -> SqlMode {
        SqlMode {
            no_backslash_escapes: self.status & STATUS_NO_BACKSLASH_ESCAPES != 0,
            ansi_quotes: self.status & STATUS_ANSI_QUOTES != 0,
        }
    }

    /// Classifies SQL text under the session's SQL mode; also tells whether a multi-statement
    /// packet holds only reads.
    /// With `routing.unknown_functions = "replica"`, calls of unknown functions do not keep a
    /// read off the replicas.
    pub(super) fn classify(&self, sql: &[u8], config: &Config) -> (Classified, bool) {
        let mode = self.sql_mode();
        let classifier = &self.shared.classifier;
        let mut stmt = classifier.classify_in(sql, mode);
        let ignore = if config.routing.unknown_functions == UnknownFunctions::Replica {
            Flags::UNKNOWN_FN
        } else {
            Flags::EMPTY
        };
        stmt.flags.remove(ignore);
        let all_reads = stmt.flags.contains(Flags::MULTI) && classifier.is_all_reads(sql, mode, ignore);
        (stmt, all_reads)
    }

    /// Runs one command end to end.
    pub(super) async fn execute(
        &mut self,
        exec: Exec<'_>,
        stmt: Classified,
        all_reads: bool,
        config: &Config,
    ) -> Outcome {
        let topology = self.shared.topology.load_full();
        if let Some(outcome) = self.leave_retired(exec.seq, config).await {
            return outcome;
        }
        if let Some(outcome) = self.left_by_server(exec.seq, &topology, config).await {
            return outcome;
        }
        // A question about the previous statement (answered per session): only statements whose
        // classification says so are looked at further, so ordinary statements pay nothing.
        let question = match exec.work {
            Work::Forward(payload) if !stmt.flags.contains(Flags::MULTI) && stmt.flags.intersects(QUESTIONS) => {
                previous::query_text(payload)
            }
            _ => None,
        };
        if let Some(kept) = question.and_then(|sql| self.previous.kept_answer(sql)) {
            let (timeout, framing, status) = (config.pool.query_timeout, self.framing(), self.status);
            return match previous::replay(&mut self.io, &kept, framing, exec.seq, status, timeout).await {
                Ok(_) => Outcome::Continue,
                Err(_) => Outcome::Close,
            };
        }
        // USE gives the connection a schema, so it must come from a pool for sessions with one.
        let with_schema = self.state.schema.is_some() || stmt.kind == Kind::Use;
        let situation = Situation { hold: self.binding.hold(), autocommit: self.autocommit() };
        let route = router::route(&stmt, all_reads, situation, &topology);
        let mut rec = observe::Statement::start(&self.observed, &exec, &stmt, route.target, &topology, config);
        tracing::debug!(target_ = ?route.target, reason = route.reason, kind = ?stmt.kind, "route");
        let timeout = config.pool.query_timeout;
        let mut excluded: Option<BackendIndex> = None;
        loop {
            let lease = match self.acquire(route.target, excluded, with_schema, config, &topology).await {
                Ok(lease) => lease,
                Err((err, failed)) => {
                    if let (Some(index), None, Target::Replica) = (failed, excluded, route.target) {
                        excluded = Some(index);
                        continue;
                    }
                    return self.reply_error(&err, exec.seq.wrapping_add(1), config).await;
                }
            };
            let mut lease = lease;
            // A read on a replica is bounded and given up when the monitor marks the replica
            // down; a statement on the primary is given up only when another primary is elected;
            // anything else on a held connection waits out query_timeout. A write held for a
            // failover got its connection from a primary elected after this statement's snapshot.
            let on_primary = topology.primary == Some(lease.backend())
                || (route.target != Target::Replica && self.shared.topology.load().primary == Some(lease.backend()));
            let watch = if on_primary {
                Watch::Primary
            } else if matches!(route.target, Target::Replica | Target::Backend(_)) {
                Watch::Read(config.pool.replica_read_timeout)
            } else {
                Watch::Off
            };
            lease.watch(watch);
            match lease.sync_to(&self.state, stmt.flags.contains(Flags::LAST_INSERT_ID), timeout).await {
                Ok(None) => {}
                Ok(Some(refusal)) => {
                    self.keep_if_held(lease, route.target);
                    return self
                        .reply_error(&ClientError::from_err_packet(&refusal), exec.seq.wrapping_add(1), config)
                        .await;
                }
                Err(err) => {
                    lease.broken = true;
                    if route.target == Target::Replica && excluded.is_none() {
                        mark_down(&topology, lease.backend());
                        excluded = Some(lease.backend());
                        continue;
                    }
                    return self.lost(&err, exec.seq.wrapping_add(1), config).await;
                }
            }
            self.slot.set_running(Some((lease.server(), lease.thread_id())));
            let mut tracker = Tracker::new(exec.expect, self.framing(), exec.seq, self.status);
            // Every result set of a CALL is followed by at least its closing OK.
            tracker.expect_more_results(stmt.kind == Kind::Call);
            let held = route.target == Target::Held;
            let values = question.and_then(|sql| match self.sequences.answer(sql).filter(|_| !held) {
                Some(lastval) => Some(vec![lastval]),
                None => previous::value_question(sql).and_then(|asked| self.previous.values(&asked, held)),
            });
            let result = match (exec.work, values) {
                (Work::Forward(payload), Some(values)) => {
                    let status = self.status;
                    previous::answer_value(&mut lease, &mut self.io, &mut tracker, payload, &values, status, timeout)
                        .await
                        .map_err(|err| RelayError::Backend { err, sent: false })
                }
                (Work::Forward(payload), None) => {
                    let restore = if question.is_some() && stmt.flags.contains(Flags::WARNINGS_QUERY) {
                        self.previous.restore()
                    } else {
                        None
                    };
                    match restore {
                        Some(prefix) => match lease.command_reply(&prefix, timeout).await {
                            Ok(_) => relay(&mut lease, &mut self.io, &mut tracker, &[], payload, timeout).await,
                            Err(err) => Err(RelayError::Backend { err, sent: false }),
                        },
                        None => relay(&mut lease, &mut self.io, &mut tracker, &[], payload, timeout).await,
                    }
                }
                (Work::Prepare(sql), _) => self.prepare_on(&mut lease, sql, stmt, exec.seq, timeout).await,
                (Work::Statement { id, payload }, _) => {
                    self.execute_on(&mut lease, id, payload, &mut tracker, timeout).await
                }
            };
            match result {
                Ok(outcome) => {
                    self.slot.set_running(None);
                    lease.answered();
                    let effect = match exec.work {
                        Work::Statement { id, payload } => {
                            self.track_cursor(id, payload, outcome.status);
                            stmt
                        }
                        // Preparing changes nothing; its effects come with each execute.
                        Work::Prepare(_) => super::commands::NO_STATEMENT,
                        Work::Forward(_) => stmt,
                    };
                    rec.done(&topology, lease.backend(), &outcome);
                    if !matches!(exec.work, Work::Prepare(_)) {
                        self.previous.record(&effect, sql_of(&exec), &outcome);
                        self.sequences.record(&effect, sql_of(&exec), outcome.error.is_none());
                    }
                    let in_transaction = self.after(&mut lease, &effect, sql_of(&exec), outcome);
                    if self.binding.needed(in_transaction).is_none() {
                        self.keep_what_the_connection_knows(&mut lease, timeout).await;
                    }
                    self.binding.settle(lease, in_transaction);
                    return Outcome::Continue;
                }
                Err(RelayError::Client(err)) => {
                    self.slot.set_running(None);
                    tracing::debug!(error = %err, "client went away mid-response");
                    lease.broken = true;
                    return Outcome::Close;
                }
                Err(RelayError::Backend { err, sent }) => {
                    self.slot.set_running(None);
                    lease.broken = true;
                    // Only a connection-level failure is retried: after a timeout the first copy
                    // may still be running on the server.
                    let retry = !sent
                        && !err.is_timeout()
                        && route.target == Target::Replica
                        && excluded.is_none()
                        && config.routing.retry_reads;
                    if retry {
                        tracing::warn!(backend = %lease.backend().0, error = %err, "read failed before any result; retrying elsewhere");
                        mark_down(&topology, lease.backend());
                        excluded = Some(lease.backend());
                        continue;
                    }
                    let seq = tracker.next_seq();
                    if let Some(outcome) =
                        self.lost_primary(&err, route.target, lease.backend(), &topology, seq, config).await
                    {
                        return outcome;
                    }
                    return self.lost(&err, seq, config).await;
                }
            }
        }
    }

    /// Before `lease` goes back to its pool: reads what only it knows about this session's
    /// previous statements (diagnostics, `FOUND_ROWS()`, sequence values). On failure the
    /// connection is dropped and the session forgets what was on it.
    async fn keep_what_the_connection_knows(&mut self, lease: &mut Lease, timeout: Duration) {
        let mut result = Ok(());
        if self.previous.needs_fetch() {
            result = self.previous.fetch(lease, timeout).await;
        }
        if result.is_ok() && self.sequences.needs_fetch() {
            result = self.sequences.fetch(lease, timeout).await;
        }
        if let Err(err) = result {
            tracing::debug!(error = %err, "reading the previous statement's state failed");
            lease.broken = true;
            self.previous.connection_lost();
            self.sequences.connection_lost();
        }
    }

    /// Puts a held connection back after a failure that left it usable.
    fn keep_if_held(&mut self, lease: Lease, target: Target) {
        if target == Target::Held {
            self.binding.restore(lease);
        }
    }

    /// The backend connection died mid-statement. A session whose transaction or pinned state
    /// lived on it cannot go on as if nothing happened, so it is closed after the error.
    async fn lost(&mut self, err: &backend::Error, seq: u8, config: &Config) -> Outcome {
        tracing::warn!(error = %err, "backend failed mid-statement");
        let had_state = self.binding.is_pinned() || self.status & STATUS_IN_TRANS != 0;
        self.binding.forget();
        self.previous.connection_lost();
        self.sequences.connection_lost();
        let sent = self.reply_error(&ClientError::lost_backend(err), seq, config).await == Outcome::Continue;
        if had_state || !sent {
            Outcome::Close
        } else {
            self.status &= !STATUS_IN_TRANS;
            Outcome::Continue
        }
    }

    /// Gets the connection for `target`. On failure returns the error and, when a specific
    /// backend failed to connect, its index (so a read can go elsewhere).
    async fn acquire(
        &mut self,
        target: Target,
        excluded: Option<BackendIndex>,
        with_schema: bool,
        config: &Config,
        topology: &Topology,
    ) -> Result<Lease, (ClientError, Option<BackendIndex>)> {
        let index = match target {
            Target::Held => {
                return self.binding.take().ok_or_else(|| (ClientError::no_primary(), None));
            }
            Target::Primary => return self.acquire_primary(with_schema, config, topology).await,
            Target::Backend(index) => index,
            Target::Replica => match self.pick_replica(topology, excluded, config) {
                Ok(Some(index)) => {
                    // Only a first attempt is retried elsewhere (see `execute`).
                    let retryable = config.routing.retry_reads && excluded.is_none();
                    return self.checkout(index, with_schema, config, topology, retryable).await;
                }
                Ok(None) => return self.acquire_primary(with_schema, config, topology).await,
                Err(err) => return Err((err, None)),
            },
        };
        self.checkout(index, with_schema, config, topology, false).await
    }

    /// Checks out a connection to the primary (login-time schema check).
    pub(super) async fn checkout_primary(&mut self, config: &Config) -> Result<Lease, ClientError> {
        let topology = self.shared.topology.load_full();
        self.acquire_primary(true, config, &topology).await.map_err(|(err, _)| err)
    }

    /// Checks out a connection to backend `index`; `retryable` tells whether the statement may go
    /// to another backend if the connection turns out dead after sending (see `Pools::checkout`).
    pub(super) async fn checkout(
        &mut self,
        index: BackendIndex,
        with_schema: bool,
        config: &Config,
        topology: &Topology,
        retryable: bool,
    ) -> Result<Lease, (ClientError, Option<BackendIndex>)> {
        let node = topology.node(index).ok_or_else(|| (ClientError::no_primary(), None))?;
        let pool = self.pools.get(&self.shared, &self.login, index, with_schema, node);
        let timeout = config.pool.checkout_timeout;
        match observe::checkout(&self.shared, &pool, index, node.name(), timeout, retryable).await {
            Ok(lease) => Ok(lease),
            Err(err) => {
                if err.is_login_refusal() {
                    // The pool logs it, once per few seconds.
                    tracing::debug!(backend = node.name(), error = %err, "backend checkout failed");
                } else {
                    tracing::warn!(backend = node.name(), error = %err, "backend checkout failed");
                }
                // A server that refused the login is up: it stays in rotation for everybody else,
                // and a write does not wait for a failover that will not come. One the monitor
                // drained while the checkout waited is its business: nothing failed here.
                let drained = matches!(err, backend::Error::Drained);
                let connect_failed =
                    !matches!(err, backend::Error::CheckoutTimeout { .. }) && !err.is_refusal() && !drained;
                if connect_failed {
                    node.mark_down(DOWN_AFTER_FAILURE);
                }
                // Nothing was sent, so a read may go elsewhere after a checkout timeout too (a
                // frozen replica accepts TCP but never logs in); the replica stays in rotation.
                // A write waits for the primary after a connect failure or a drain.
                let elsewhere = connect_failed || drained || retryable;
                let user = self.login.user.name.as_str();
                Err((ClientError::checkout_failed(node.name(), user, &err), elsewhere.then_some(index)))
            }
        }
    }

    /// Updates the session (state, status, pins) from a complete response; returns whether a
    /// transaction is open.
    fn after(&mut self, lease: &mut Lease, stmt: &Classified, sql: Option<&[u8]>, outcome: response::Outcome) -> bool {
        let session_state = outcome.session_state.as_deref();
        let applied = self.state.apply(session_state, outcome.last_insert_id);
        lease.state.apply(session_state, outcome.last_insert_id);
        if applied.malformed {
            lease.broken = true;
        }
        self.status = outcome.status;
        let in_transaction = self.status & STATUS_IN_TRANS != 0;
        let sql_mode = self.sql_mode();
        let parts = || match sql {
            Some(sql) => crate::classify::classify_all(sql, sql_mode)
                .with_ranges()
                .map(|(part, range)| (part, sql.get(range)))
                .collect(),
            None => Vec::new(),
        };
        let change =
            self.binding.apply(stmt, sql, outcome.error.is_some(), in_transaction, parts, applied.unexplained_change);
        if !change.added.is_empty() {
            tracing::debug!(reasons = ?change.added.labels().collect::<Vec<_>>(), "session pinned to its backend connection");
            self.shared.count_pins(change.added);
        }
        if !change.ended.is_empty() {
            tracing::debug!(reasons = ?change.ended.labels().collect::<Vec<_>>(), "pin ended");
        }
        // What the statement left for questions about it is kept by `self.previous`, so no
        // connection is held while the client is idle only for those.
        in_transaction
    }
}

/// The pools a session used, kept between statements so that a statement costs no lookup in the
/// shared pool map (a lock, a hashed key with the user name). Weak, and checked for being forgotten: a
/// pool the map forgot (reload, drain, failover) is looked up again, and an idle session keeps no
/// forgotten pool alive. Each handle remembers the whole key but the user (a change of user clears
/// them all), so `COM_SET_OPTION` or any other change of the result-changing flags finds the pool
/// of its new key.
#[derive(Debug, Default)]
pub(super) struct SessionPools {
    entries: Vec<(SessionPoolKey, Weak<Pool>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SessionPoolKey {
    backend: BackendIndex,
    with_schema: bool,
    capabilities: u32,
    extended: u32,
    collation: u8,
}

impl SessionPools {
    /// The pool for `index` and `with_schema`, from this session's handles or the shared map.
    fn get(
        &mut self,
        shared: &Shared,
        login: &Login,
        index: BackendIndex,
        with_schema: bool,
        node: &Node,
    ) -> Arc<Pool> {
        let wanted = SessionPoolKey {
            backend: index,
            with_schema,
            capabilities: (login.capabilities & semantic_capabilities()).bits(),
            extended: login.extended,
            collation: login.collation,
        };
        let found = self.entries.iter().position(|(key, _)| *key == wanted);
        let kept = found.and_then(|at| self.entries.get(at)).and_then(|(_, weak)| weak.upgrade());
        if let Some(pool) = kept.filter(|pool| !pool.is_forgotten()) {
            return pool;
        }
        let key = PoolKey {
            backend: index,
            user: login.user.name.as_str().to_owned(),
            capabilities: wanted.capabilities,
            extended: wanted.extended,
            collation: wanted.collation,
            with_schema,
        };
        // Credentials and pool settings from the config running now, not the `config` the command
        // loop loaded before it waited for this statement: a reload in between forgot the old pool,
        // and rebuilding it from the older snapshot would bring back what the reload changed.
        let live = shared.config.load();
        let user = live.user(login.user.name.as_str()).unwrap_or(&login.user);
        let pool = shared.pools.pool(&key, node, user, &live.pool);
        let weak = Arc::downgrade(&pool);
        match found.and_then(|at| self.entries.get_mut(at)) {
            Some(entry) => entry.1 = weak,
            None => self.entries.push((wanted, weak)),
        }
        pool
    }

    /// Forgets every handle (the session's user changed).
    pub(super) fn clear(&mut self) {
        self.entries.clear();
    }
}

/// The SQL text of a query command (`None` for other commands).
fn sql_of<'a>(exec: &Exec<'a>) -> Option<&'a [u8]> {
    match exec.work {
        Work::Forward(payload) => previous::query_text(payload),
        _ => None,
    }
}

fn mark_down(topology: &Topology, index: BackendIndex) {
    if let Some(node) = topology.node(index) {
        node.mark_down(DOWN_AFTER_FAILURE);
    }
}

/// Forwards `payload` (after the already framed packets in `framed`, which have no response)
/// and relays the response.
pub(super) async fn relay(
    backend: &mut Lease,
    io: &mut ClientIo,
    tracker: &mut Tracker,
    framed: &[u8],
    payload: &[u8],
    timeout: Duration,
) -> Result<response::Outcome, RelayError> {
    let first_seq = tracker.next_seq();
    let backend_err =
        |tracker: &Tracker, err: backend::Error| RelayError::Backend { err, sent: tracker.next_seq() != first_seq };
    tracker.pass_large_frames();
    backend.send_after(framed, payload, timeout).await.map_err(|e| backend_err(tracker, e))?;
    loop {
        let Some(frame) = backend.buffered_frame() else {
            // About to wait for the backend: let the client have what is ready (not a result
            // the tracker holds until its terminator; at most `hold::HOLD_LIMIT` bytes).
            if !tracker.is_holding() {
                io.flush(timeout).await.map_err(RelayError::Client)?;
            }
            backend.fill(timeout).await.map_err(|e| backend_err(tracker, e))?;
            continue;
        };
        let step = tracker.feed(frame, &mut io.out);
        if let Some(large) = tracker.take_through() {
            io.flush_then(large.as_bytes(), timeout).await.map_err(RelayError::Client)?;
        }
        match step {
            Ok(Step::More) => {
                if io.out.len() >= FLUSH_AT && !tracker.is_holding() {
                    io.flush(timeout).await.map_err(RelayError::Client)?;
                }
            }
            Ok(Step::Done(outcome)) => {
                io.flush(timeout).await.map_err(RelayError::Client)?;
                return Ok(outcome);
            }
            Ok(Step::LocalInfile) => {
                io.flush(timeout).await.map_err(RelayError::Client)?;
                relay_local_file(backend, io, tracker, timeout).await?;
            }
            Err(err) => return Err(backend_err(tracker, err.into())),
        }
    }
}

/// Streams a client's `LOCAL INFILE` data to the backend, packet by packet, until the empty
/// packet that ends it. A client that did not enable `CLIENT_LOCAL_FILES` never gets here: the
/// proxy refuses `LOAD DATA LOCAL` for it before sending anything.
async fn relay_local_file(
    backend: &mut Lease,
    io: &mut ClientIo,
    tracker: &mut Tracker,
    timeout: Duration,
) -> Result<(), RelayError> {
    let mut backend_seq = tracker.last_backend_seq().wrapping_add(1);
    let mut framed = bytes::BytesMut::new();
    loop {
        let (client_seq, data) =
            io.read_packet(timeout, crate::protocol::MAX_FRAME_PAYLOAD).await.map_err(RelayError::Client)?;
        framed.clear();
        backend_seq = crate::protocol::packet::put_packet(&mut framed, backend_seq, &data);
        backend.write_framed(&framed, timeout).await.map_err(|err| RelayError::Backend { err, sent: true })?;
        if data.is_empty() {
            tracker.resume_at(client_seq.wrapping_add(1));
            return Ok(());
        }
    }
}
