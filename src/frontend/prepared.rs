//! Server-side prepared statements. Clients get statement ids from the proxy. Every
//! `COM_STMT_PREPARE` is prepared on a backend and answered with what the server said then
//! (parameters, columns, warnings, or its error), never from a cache: a table altered or a view
//! replaced since, or a `SET NAMES` in between, shows exactly as on a direct connection.
//!
//! Each client statement gets its own proxy id ([`StmtMeta`]); backend connections prepare it
//! lazily the first time it must execute there (see `backend::StmtCache`), so it can run on any
//! replica or on the primary, and no backend statement is ever shared by two client statements:
//! one client's long data or statement errors never reach another client. A statement the
//! client closed is closed on each connection that had it before that connection's next prepare
//! (or when evicted, or with the connection).
//!
//! `COM_STMT_SEND_LONG_DATA` is buffered here until the execute; `COM_STMT_CLOSE` and, without an
//! open cursor, `COM_STMT_RESET` are answered by the proxy alone (a reset after long data reached
//! a backend gives the statement a fresh id, so the backend copies that saw it are closed). A
//! cursor pins the session to its connection until the statement is reset, closed or executed
//! again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::query::{relay, RelayError};
use super::session::Session;
use crate::backend::{GlobalId, Lease, Owner};
use crate::classify::Classified;
use crate::protocol::packet::put_packet;
use crate::protocol::prepare::{execute_types, execute_with_types, set_statement_id, Prepared};
use crate::protocol::response::{self, Tracker};
use crate::protocol::{command, Error as WireError};

/// `CURSOR_TYPE_READ_ONLY` in the `COM_STMT_EXECUTE` flags.
pub const CURSOR_READ_ONLY: u8 = 0x01;

/// What the proxy knows about one client statement.
#[derive(Debug)]
pub struct StmtMeta {
    /// Proxy-wide id, the key in each backend connection's statement cache.
    pub id: GlobalId,
    /// The SQL text as the client sent it.
    pub sql: Bytes,
    /// Parameter and column definitions the server returned to the client's prepare.
    pub prepared: Prepared,
    /// The statement's classification (routing of each execute).
    pub classified: Classified,
    /// Alive while the client keeps the statement; backend copies die with it.
    owner: Arc<Owner>,
}

/// Hands out proxy-wide statement ids.
#[derive(Debug, Default)]
pub struct Registry {
    next_id: AtomicU64,
}

impl Registry {
    fn meta(&self, sql: Bytes, prepared: Prepared, classified: Classified) -> Arc<StmtMeta> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        Arc::new(StmtMeta { id, sql, prepared, classified, owner: Arc::new(Owner::default()) })
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
    /// Long data reached a backend copy since the last reset (a failed send leaves state there).
    long_data_sent: bool,
    /// A long-data chunk was dropped (a limit was passed): executes fail until a reset.
    long_data_dropped: bool,
}

/// The statements of one session.
#[derive(Debug, Default)]
pub struct ClientStmts {
    map: HashMap<u32, ClientStmt>,
    next_id: u32,
    /// Long-data bytes buffered over all statements (`server.max_session_long_data`).
    long_data_total: usize,
}

impl ClientStmts {
    /// Looks a statement up by the client's id.
    pub fn get(&self, id: u32) -> Option<&ClientStmt> {
        self.map.get(&id)
    }

    /// Forgets every statement (reset connection, change user).
    pub fn clear(&mut self) {
        self.map.clear();
        self.long_data_total = 0;
    }

    /// Statements open.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no statement is open.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// True when a long-data chunk of statement `id` was dropped since its last reset.
    pub fn has_dropped_long_data(&self, id: u32) -> bool {
        self.map.get(&id).is_some_and(|s| s.long_data_dropped)
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
        self.map.insert(
            id,
            ClientStmt {
                meta,
                long_data: Vec::new(),
                long_data_len: 0,
                types: None,
                cursor_open: false,
                long_data_sent: false,
                long_data_dropped: false,
            },
        );
        id
    }

    /// Buffers a long-data chunk; false when the statement is unknown or the chunk would pass
    /// `limit` bytes for the statement or `session_limit` for the whole session. A chunk that
    /// passes a limit frees what the statement had buffered and makes its executes fail until a
    /// reset (never an execute with part of its data).
    pub fn add_long_data(&mut self, id: u32, param: u16, data: Bytes, limit: usize, session_limit: usize) -> bool {
        let Some(stmt) = self.map.get_mut(&id) else { return false };
        if stmt.long_data_dropped {
            return false;
        }
        let over_statement = stmt.long_data_len.saturating_add(data.len()) > limit;
        let over_session = self.long_data_total.saturating_add(data.len()) > session_limit;
        if over_statement || over_session {
            self.long_data_total -= stmt.long_data_len;
            stmt.long_data = Vec::new();
            stmt.long_data_len = 0;
            stmt.long_data_dropped = true;
            return false;
        }
        stmt.long_data_len += data.len();
        self.long_data_total += data.len();
        stmt.long_data.push((param, data));
        true
    }

    /// Removes a statement; returns whether it had an open cursor.
    pub fn close(&mut self, id: u32) -> Option<ClientStmt> {
        let stmt = self.map.remove(&id)?;
        self.long_data_total -= stmt.long_data_len;
        Some(stmt)
    }

    /// Clears buffered long data and the cursor flag (`COM_STMT_RESET`); returns whether a cursor
    /// was open, or `None` for an unknown statement. When long data reached a backend copy since
    /// the last reset, the statement moves to a fresh id from `registry`: the copies that saw it
    /// are closed, and the next execute prepares a clean one, as the server's own reset would
    /// leave it.
    pub fn reset(&mut self, id: u32, registry: &Registry) -> Option<bool> {
        let stmt = self.map.get_mut(&id)?;
        self.long_data_total -= stmt.long_data_len;
        stmt.long_data.clear();
        stmt.long_data_len = 0;
        stmt.long_data_dropped = false;
        // With a cursor open the reset goes to the backend copy itself, which clears it there.
        if !stmt.cursor_open && std::mem::take(&mut stmt.long_data_sent) {
            let old = &stmt.meta;
            stmt.meta = registry.meta(old.sql.clone(), old.prepared.clone(), old.classified);
            stmt.types = None;
        }
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
    /// Prepares `sql` on `lease` and answers the client (metadata or the server's error).
    pub(super) async fn prepare_on(
        &mut self,
        lease: &mut Lease,
        sql: &[u8],
        classified: Classified,
        seq: u8,
        timeout: Duration,
    ) -> Result<response::Outcome, RelayError> {
        lease.stmts.close_dead();
        let reply = lease.prepare(sql, timeout).await.map_err(|err| RelayError::Backend { err, sent: false })?;
        let mut outcome = response::Outcome { status: self.status, ..Default::default() };
        match reply {
            Ok(prepared) => {
                let backend_id = prepared.backend_id;
                let meta = self.shared.prepared.meta(Bytes::copy_from_slice(sql), prepared, classified);
                lease.stmts.insert(meta.id, backend_id, &meta.owner);
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
        let (backend_id, types_sent) = if let Some(found) = lease.stmts.get(meta.id) {
            found
        } else {
            lease.stmts.close_dead();
            match lease.prepare(&meta.sql, timeout).await.map_err(backend_err)? {
                Ok(prepared) => {
                    lease.stmts.insert(meta.id, prepared.backend_id, &meta.owner);
                    (prepared.backend_id, false)
                }
                Err(err) => {
                    // The statement no longer prepares here (a table was dropped, ...).
                    put_packet(&mut self.io.out, tracker.next_seq(), &err);
                    self.io.flush(timeout).await.map_err(RelayError::Client)?;
                    let code = err.get(1..3).map(|c| u16::from_le_bytes([c[0], c[1]]));
                    return Ok(response::Outcome { status: self.status, error: code, ..Default::default() });
                }
            }
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
            self.stmts.long_data_total -= stmt.long_data_len;
            stmt.long_data_len = 0;
            stmt.long_data_sent |= !batch.is_empty();
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
