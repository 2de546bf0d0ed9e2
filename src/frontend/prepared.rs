//! Server-side prepared statements. Clients get statement ids from the proxy. The metadata of
//! each distinct (user, schema, SQL) is kept once in a [`Registry`]; every backend connection
//! prepares a statement lazily the first time it must execute it (see `backend::StmtCache`), so
//! a statement prepared once can execute on any replica or on the primary.
//!
//! `COM_STMT_SEND_LONG_DATA` is buffered here until the execute; `COM_STMT_CLOSE` and, without an
//! open cursor, `COM_STMT_RESET` are answered by the proxy alone. A cursor pins the session to
//! its connection until the statement is reset, closed or executed again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::query::{relay, RelayError};
use super::session::Session;
use crate::backend::{GlobalId, Lease};
use crate::classify::Classified;
use crate::protocol::packet::put_packet;
use crate::protocol::prepare::{execute_types, execute_with_types, set_statement_id, Prepared};
use crate::protocol::response::{self, Tracker};
use crate::protocol::{command, Error as WireError};

/// Distinct statements the registry keeps; beyond this the oldest entries are forgotten (clients
/// holding them keep working: they hold the metadata themselves).
const REGISTRY_CAPACITY: usize = 10_000;

/// `CURSOR_TYPE_READ_ONLY` in the `COM_STMT_EXECUTE` flags.
pub const CURSOR_READ_ONLY: u8 = 0x01;

/// What the proxy knows about one distinct prepared statement.
#[derive(Debug)]
pub struct StmtMeta {
    /// Proxy-wide id, the key in each backend connection's statement cache.
    pub id: GlobalId,
    /// The SQL text as the client sent it.
    pub sql: Bytes,
    /// Parameter and column definitions from the first prepare.
    pub prepared: Prepared,
    /// The statement's classification (routing of each execute).
    pub classified: Classified,
}

type Key = (String, Option<Bytes>, Bytes);

/// Prepared statement metadata shared by all sessions.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<RegistryInner>,
}

#[derive(Debug, Default)]
struct RegistryInner {
    by_key: HashMap<Key, Arc<StmtMeta>>,
    order: std::collections::VecDeque<Key>,
    next_id: GlobalId,
}

impl Registry {
    fn get(&self, key: &Key) -> Option<Arc<StmtMeta>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).by_key.get(key).cloned()
    }

    fn insert(&self, key: Key, prepared: Prepared, classified: Classified) -> Arc<StmtMeta> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.next_id += 1;
        let meta = Arc::new(StmtMeta { id: inner.next_id, sql: key.2.clone(), prepared, classified });
        if inner.by_key.insert(key.clone(), meta.clone()).is_none() {
            inner.order.push_back(key);
        }
        while inner.order.len() > REGISTRY_CAPACITY {
            if let Some(old) = inner.order.pop_front() {
                inner.by_key.remove(&old);
            }
        }
        meta
    }
}

/// One statement a client prepared.
#[derive(Debug)]
pub struct ClientStmt {
    /// The shared metadata.
    pub meta: Arc<StmtMeta>,
    /// `SEND_LONG_DATA` chunks waiting for the next execute: (parameter, data).
    long_data: Vec<(u16, Bytes)>,
    long_data_len: usize,
    /// Parameter types the client bound last (re-sent when an execute lands on a connection
    /// that has not seen them).
    types: Option<Bytes>,
    /// A cursor is open for it on the session's held connection.
    pub cursor_open: bool,
}

/// The statements of one session.
#[derive(Debug, Default)]
pub struct ClientStmts {
    map: HashMap<u32, ClientStmt>,
    next_id: u32,
}

impl ClientStmts {
    /// Looks a statement up by the client's id.
    pub fn get(&self, id: u32) -> Option<&ClientStmt> {
        self.map.get(&id)
    }

    /// Forgets every statement (reset connection, change user).
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Forgets every open cursor (their connection is gone).
    pub fn close_cursors(&mut self) {
        for stmt in self.map.values_mut() {
            stmt.cursor_open = false;
        }
    }

    /// True when any statement has an open cursor.
    pub fn any_cursor(&self) -> bool {
        self.map.values().any(|s| s.cursor_open)
    }

    fn add(&mut self, meta: Arc<StmtMeta>) -> u32 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let id = self.next_id;
        self.map
            .insert(id, ClientStmt { meta, long_data: Vec::new(), long_data_len: 0, types: None, cursor_open: false });
        id
    }

    /// Buffers a long-data chunk; false when the statement is unknown or the buffer would pass
    /// `limit` bytes (the chunk is dropped; the execute then fails).
    pub fn add_long_data(&mut self, id: u32, param: u16, data: Bytes, limit: usize) -> bool {
        let Some(stmt) = self.map.get_mut(&id) else { return false };
        if stmt.long_data_len + data.len() > limit {
            return false;
        }
        stmt.long_data_len += data.len();
        stmt.long_data.push((param, data));
        true
    }

    /// Removes a statement; returns whether it had an open cursor.
    pub fn close(&mut self, id: u32) -> Option<ClientStmt> {
        self.map.remove(&id)
    }

    /// Clears buffered long data and the cursor flag (`COM_STMT_RESET`); returns whether a cursor
    /// was open, or `None` for an unknown statement.
    pub fn reset(&mut self, id: u32) -> Option<bool> {
        let stmt = self.map.get_mut(&id)?;
        stmt.long_data.clear();
        stmt.long_data_len = 0;
        Some(std::mem::replace(&mut stmt.cursor_open, false))
    }

    /// Marks whether the last execute of `id` left a cursor open.
    pub fn set_cursor(&mut self, id: u32, open: bool) {
        if let Some(stmt) = self.map.get_mut(&id) {
            stmt.cursor_open = open;
        }
    }
}

impl Session {
    /// The registry key for `sql` in this session.
    fn key(&self, sql: &[u8]) -> Key {
        (self.login.user.name.as_str().to_owned(), self.state.schema.clone(), Bytes::copy_from_slice(sql))
    }

    /// Answers a `COM_STMT_PREPARE` from the registry when the statement is known; returns false
    /// when it must be prepared on a backend first.
    pub(super) fn prepare_from_registry(&mut self, sql: &[u8], seq: u8) -> bool {
        let Some(meta) = self.shared.prepared.get(&self.key(sql)) else { return false };
        let id = self.stmts.add(meta.clone());
        let deprecate_eof = self.framing().deprecate_eof;
        meta.prepared.encode(id, seq.wrapping_add(1), deprecate_eof, self.status, &mut self.io.out);
        true
    }

    /// Prepares `sql` on `lease` and answers the client (metadata or the server's error).
    pub(super) async fn prepare_on(
        &mut self,
        lease: &mut Lease,
        sql: &[u8],
        classified: Classified,
        seq: u8,
        timeout: Duration,
    ) -> Result<response::Outcome, RelayError> {
        let reply = lease.prepare(sql, timeout).await.map_err(|err| RelayError::Backend { err, sent: false })?;
        let mut outcome = response::Outcome { status: self.status, ..Default::default() };
        match reply {
            Ok(prepared) => {
                let backend_id = prepared.backend_id;
                let meta = self.shared.prepared.insert(self.key(sql), prepared, classified);
                lease.stmts.insert(meta.id, backend_id);
                let id = self.stmts.add(meta.clone());
                let deprecate_eof = self.framing().deprecate_eof;
                meta.prepared.encode(id, seq.wrapping_add(1), deprecate_eof, self.status, &mut self.io.out);
            }
            Err(err) => {
                outcome.error = err.get(1..3).map(|c| u16::from_le_bytes([c[0], c[1]]));
                put_packet(&mut self.io.out, seq.wrapping_add(1), &err);
            }
        }
        self.io.flush(timeout).await.map_err(RelayError::Client)?;
        Ok(outcome)
    }

    /// Runs a `COM_STMT_EXECUTE` (or a cursor's `COM_STMT_FETCH` / `COM_STMT_RESET`) of client
    /// statement `client_id` on `lease`: prepares it there if needed, sends buffered long data,
    /// rewrites the statement id (and parameter types), and relays the response.
    pub(super) async fn execute_on(
        &mut self,
        lease: &mut Lease,
        client_id: u32,
        payload: &[u8],
        tracker: &mut Tracker,
        timeout: Duration,
    ) -> Result<response::Outcome, RelayError> {
        let backend_err = |err| RelayError::Backend { err, sent: false };
        let Some(stmt) = self.stmts.map.get_mut(&client_id) else {
            return Err(backend_err(WireError::malformed("unknown statement").into()));
        };
        let meta = stmt.meta.clone();
        let is_execute = payload.first() == Some(&command::STMT_EXECUTE);
        let params = meta.prepared.params;
        if is_execute {
            if let Ok(Some(types)) = execute_types(payload, params) {
                stmt.types = Some(Bytes::copy_from_slice(types));
            }
        }
        let (backend_id, types_sent) = match lease.stmts.get(meta.id) {
            Some(found) => found,
            None => match lease.prepare(&meta.sql, timeout).await.map_err(backend_err)? {
                Ok(prepared) => {
                    lease.stmts.insert(meta.id, prepared.backend_id);
                    (prepared.backend_id, false)
                }
                Err(err) => {
                    // The statement no longer prepares here (a table was dropped, ...).
                    put_packet(&mut self.io.out, tracker.next_seq(), &err);
                    self.io.flush(timeout).await.map_err(RelayError::Client)?;
                    let code = err.get(1..3).map(|c| u16::from_le_bytes([c[0], c[1]]));
                    return Ok(response::Outcome { status: self.status, error: code, ..Default::default() });
                }
            },
        };
        let mut batch = BytesMut::new();
        if is_execute {
            for (param, data) in stmt.long_data.drain(..) {
                let mut chunk = BytesMut::with_capacity(7 + data.len());
                chunk.extend_from_slice(&[command::STMT_SEND_LONG_DATA]);
                chunk.extend_from_slice(&backend_id.to_le_bytes());
                chunk.extend_from_slice(&param.to_le_bytes());
                chunk.extend_from_slice(&data);
                put_packet(&mut batch, 0, &chunk);
            }
            stmt.long_data_len = 0;
        }
        let mut command = match (is_execute, execute_types(payload, params), &stmt.types) {
            (true, Ok(None), Some(types)) if !types_sent && params > 0 => {
                let spliced = execute_with_types(payload, params, types).map_err(|e| backend_err(e.into()))?;
                lease.stmts.mark_types_sent(meta.id);
                BytesMut::from(&spliced[..])
            }
            (true, Ok(Some(_)), _) => {
                lease.stmts.mark_types_sent(meta.id);
                BytesMut::from(payload)
            }
            _ => BytesMut::from(payload),
        };
        set_statement_id(&mut command, backend_id).map_err(|e| backend_err(e.into()))?;
        relay(lease, &mut self.io, tracker, &batch, &command, timeout).await
    }
}
