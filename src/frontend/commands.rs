//! Dispatch of client commands other than plain queries: prepared-statement commands, the
//! commands the proxy answers itself (`COM_PING`, `COM_RESET_CONNECTION`, `COM_SET_OPTION`,
//! `COM_CHANGE_USER`, `KILL`), and the read-only metadata commands.

use bytes::{Bytes, BytesMut};

use super::kill::{self, KillRequest, Plan};
use super::query::{Exec, Outcome, Work};
use super::session::Session;
use super::ClientError;
use crate::backend::{ConnectParams, State};
use crate::classify::{Classified, Flags, Kind};
use crate::config::Config;
use crate::protocol::handshake::extended;
use crate::protocol::okerr::{self, encode_ok, STATUS_IN_TRANS};
use crate::protocol::packet::put_packet;
use crate::protocol::prepare::statement_id;
use crate::protocol::response::{Expect, CURSOR_EXISTS};
use crate::protocol::{command, CapabilityFlags};
use crate::shared::Pins;
use crate::stats::ProtocolFault;

/// Digests of the commands that carry no SQL: a marker in the high bits and the command byte.
const COMMAND_DIGEST: u64 = 0xC0DE_0000_0000_0000;
/// `COM_INIT_DB`: like `USE` (the primary; it gives the connection a schema).
const INIT_DB: Classified = Classified::command(Kind::Use, COMMAND_DIGEST | command::INIT_DB as u64);
/// `COM_FIELD_LIST`: a read, like `SHOW COLUMNS`.
const FIELD_LIST: Classified = Classified::command(Kind::Show, COMMAND_DIGEST | command::FIELD_LIST as u64);
/// `COM_STATISTICS`: answered by the primary.
const STATISTICS: Classified = Classified::command(Kind::Do, COMMAND_DIGEST | command::STATISTICS as u64);
/// A command with no effect on routing or session state (a statement id the session lost).
pub(super) const NO_STATEMENT: Classified = Classified::command(Kind::Do, COMMAND_DIGEST);

impl Session {
    /// Runs one client command; `Outcome::Close` ends the session.
    pub(super) async fn dispatch(&mut self, seq: u8, payload: &Bytes, config: &Config) -> Outcome {
        let Some(&cmd) = payload.first() else {
            super::observe::bad_command(&self.shared, self.peer, ProtocolFault::Malformed, "empty command packet");
            return self.reply_error(&ClientError::unknown_command(), seq.wrapping_add(1), config).await;
        };
        let body = &payload[1..];
        match cmd {
            command::QUIT => Outcome::Close,
            command::PING => self.reply_ok(seq, config).await,
            command::QUERY => self.query(seq, payload, config).await,
            command::INIT_DB => self.forward(seq, payload, INIT_DB, Expect::OkOrErr, config).await,
            command::FIELD_LIST => self.forward(seq, payload, FIELD_LIST, Expect::Definitions, config).await,
            command::STATISTICS => self.forward(seq, payload, STATISTICS, Expect::Single, config).await,
            // Server administration: one OK, EOF or ERR packet; classified as a FLUSH so they run
            // on the primary, which checks the privilege (RELOAD, SUPER) like a direct connection.
            command::REFRESH | command::DEBUG => {
                let administration = Classified::command(Kind::Flush, COMMAND_DIGEST | u64::from(cmd));
                self.forward(seq, payload, administration, Expect::Single, config).await
            }
            command::STMT_PREPARE => {
                let limit = config.server.max_prepared_per_session;
                if self.stmts.len() >= usize::try_from(limit).unwrap_or(usize::MAX) {
                    let err = ClientError::too_many_prepared(limit);
                    return self.reply_error(&err, seq.wrapping_add(1), config).await;
                }
                let (stmt, _) = self.classify(body, config);
                if stmt.kind == Kind::Kill {
                    // Its id would reach the backend untranslated at execute.
                    return self.reply_error(&ClientError::kill_not_translated(), seq.wrapping_add(1), config).await;
                }
                let exec = Exec { work: Work::Prepare(body), seq, expect: Expect::OkOrErr };
                self.execute(exec, stmt, false, config).await
            }
            command::STMT_EXECUTE | command::STMT_FETCH => self.statement(seq, payload, cmd, config).await,
            // Only after the client and the proxy negotiated it (the backend connections of the
            // session's pools did too); otherwise unknown, as from a server that did not offer it.
            command::STMT_BULK_EXECUTE if self.login.extended & extended::STMT_BULK_OPERATIONS != 0 => {
                self.statement(seq, payload, cmd, config).await
            }
            command::STMT_SEND_LONG_DATA => {
                if let (Ok(id), Some(param)) = (statement_id(payload), body.get(4..6)) {
                    let data = payload.slice(7.min(payload.len())..);
                    let limit = usize::try_from(config.server.max_packet_size).unwrap_or(usize::MAX);
                    let session_limit = usize::try_from(config.server.max_session_long_data).unwrap_or(usize::MAX);
                    let param = u16::from_le_bytes([param[0], param[1]]);
                    if !self.stmts.add_long_data(id, param, data, limit, session_limit) {
                        tracing::debug!(statement = id, "long data dropped: over a limit; the next execute fails");
                    }
                }
                Outcome::Continue
            }
            command::STMT_CLOSE => {
                if let Ok(id) = statement_id(payload) {
                    if let Some(closed) = self.stmts.close(id) {
                        if closed.cursor_open {
                            self.close_cursor(closed.meta.id);
                        }
                    }
                }
                Outcome::Continue
            }
            command::STMT_RESET => {
                match statement_id(payload).ok().and_then(|id| Some((id, self.stmts.reset(id, &self.shared.prepared)?)))
                {
                    None => {
                        self.reply_error(
                            &ClientError::unknown_statement(payload, "mysqld_stmt_reset"),
                            seq.wrapping_add(1),
                            config,
                        )
                        .await
                    }
                    Some((id, true)) => {
                        let stmt = self.cursor_classification(id);
                        let exec = Exec { work: Work::Statement { id, payload }, seq, expect: Expect::OkOrErr };
                        let outcome = self.execute(exec, stmt, false, config).await;
                        self.update_cursor_pin();
                        outcome
                    }
                    Some((_, false)) => self.reply_ok(seq, config).await,
                }
            }
            command::RESET_CONNECTION => {
                self.reset_session();
                self.put_session_ok(seq.wrapping_add(1));
                self.flush_or_close(config).await
            }
            command::SET_OPTION => self.set_option(seq, body, config).await,
            command::CHANGE_USER => self.change_user(seq, body, config).await,
            command::PROCESS_KILL => match body.get(..4) {
                Some(id) => {
                    let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
                    self.kill(seq, KillRequest { query_only: false, id }, config).await
                }
                None => {
                    super::observe::bad_command(&self.shared, self.peer, ProtocolFault::Malformed, "COM_PROCESS_KILL");
                    self.reply_error(&ClientError::malformed_packet(), seq.wrapping_add(1), config).await
                }
            },
            _ => {
                super::observe::bad_command(&self.shared, self.peer, ProtocolFault::UnknownCommand, command::name(cmd));
                self.reply_error(&ClientError::unknown_command(), seq.wrapping_add(1), config).await
            }
        }
    }

    async fn query(&mut self, seq: u8, payload: &Bytes, config: &Config) -> Outcome {
        let sql = &payload[1..];
        let (stmt, all_reads) = self.classify(sql, config);
        if stmt.kind == crate::classify::Kind::Kill || stmt.flags.contains(Flags::MULTI) {
            match kill::plan(sql, self.sql_mode()) {
                Plan::Forward => {}
                Plan::Refuse => {
                    return self.reply_error(&ClientError::kill_not_translated(), seq.wrapping_add(1), config).await
                }
                Plan::Leading { kills, rest } => return self.kills(seq, &kills, rest, payload, config).await,
            }
        }
        if stmt.flags.contains(Flags::LOCAL) && !self.login.capabilities.contains(CapabilityFlags::CLIENT_LOCAL_FILES) {
            return self.reply_error(&ClientError::local_infile_refused(), seq.wrapping_add(1), config).await;
        }
        let exec = Exec { work: Work::Forward(payload), seq, expect: Expect::Results };
        self.execute(exec, stmt, all_reads, config).await
    }

    async fn forward(
        &mut self,
        seq: u8,
        payload: &[u8],
        stmt: crate::classify::Classified,
        expect: Expect,
        config: &Config,
    ) -> Outcome {
        let exec = Exec { work: Work::Forward(payload), seq, expect };
        self.execute(exec, stmt, false, config).await
    }

    async fn statement(&mut self, seq: u8, payload: &[u8], cmd: u8, config: &Config) -> Outcome {
        let name = match cmd {
            command::STMT_EXECUTE => "mysqld_stmt_execute",
            command::STMT_BULK_EXECUTE => "mysqld_stmt_bulk_execute",
            _ => "mysqld_stmt_fetch",
        };
        let Some(id) = statement_id(payload).ok().filter(|id| self.stmts.get(*id).is_some()) else {
            return self.reply_error(&ClientError::unknown_statement(payload, name), seq.wrapping_add(1), config).await;
        };
        let expect = if cmd == command::STMT_FETCH {
            if !self.stmts.get(id).is_some_and(|s| s.cursor_open) {
                return self.reply_error(&ClientError::no_open_cursor(id), seq.wrapping_add(1), config).await;
            }
            Expect::Rows
        } else {
            Expect::Results
        };
        if cmd == command::STMT_EXECUTE && self.stmts.has_dropped_long_data(id) {
            return self.reply_error(&ClientError::long_data_too_long(), seq.wrapping_add(1), config).await;
        }
        let stmt = self.cursor_classification(id);
        let exec = Exec { work: Work::Statement { id, payload }, seq, expect };
        self.execute(exec, stmt, false, config).await
    }

    /// The classification a statement command routes by.
    fn cursor_classification(&self, id: u32) -> crate::classify::Classified {
        self.stmts.get(id).map_or(NO_STATEMENT, |s| s.meta.classified)
    }

    /// After a statement command: remembers whether the execute opened a cursor and keeps the
    /// session pinned while any cursor is open.
    pub(super) fn track_cursor(&mut self, id: u32, payload: &[u8], status: u16) {
        if payload.first() == Some(&command::STMT_EXECUTE) {
            self.stmts.set_cursor(id, status & CURSOR_EXISTS != 0);
        } else if payload.first() == Some(&command::STMT_RESET) {
            self.stmts.set_cursor(id, false);
        }
        self.update_cursor_pin();
    }

    fn update_cursor_pin(&mut self) {
        let in_transaction = self.status & STATUS_IN_TRANS != 0;
        if self.binding.set_cursor(self.stmts.any_cursor(), in_transaction) {
            self.shared.count_pins(Pins::CURSOR);
        }
    }

    /// Closes a statement's cursor by closing the statement on the held connection (lazily,
    /// with the next command).
    fn close_cursor(&mut self, global: crate::backend::GlobalId) {
        if let Some(lease) = self.binding.lease_mut() {
            lease.stmts.evict(global);
        }
        self.update_cursor_pin();
    }

    /// `COM_RESET_CONNECTION`: the session starts over (the schema stays). A held connection
    /// carried unmovable state (temporary tables, locks, ...); it is reset in the background
    /// before another session may use it.
    pub(super) fn reset_session(&mut self) {
        let xa = self.binding.pins().contains(Pins::XA);
        if let Some(lease) = self.binding.release() {
            self.check_in_dirty(lease, xa);
        }
        self.state = State { schema: self.state.schema.clone(), ..State::default() };
        self.previous = Default::default();
        self.sequences.clear();
        self.stmts.clear();
        self.status = super::auth::initial_status(self.shared.primary_info.load().as_deref());
    }

    async fn set_option(&mut self, seq: u8, body: &[u8], config: &Config) -> Outcome {
        let on = match body.get(..2) {
            Some([0, 0]) => true,
            Some([1, 0]) => false,
            _ => return self.reply_error(&ClientError::unknown_command(), seq.wrapping_add(1), config).await,
        };
        self.login.capabilities.set(CapabilityFlags::CLIENT_MULTI_STATEMENTS, on);
        // A held connection was opened with the old flag; its state moves with the session
        // only if nothing is pinned to it, so keep it and let the next checkout use the new pool.
        let mut reply = BytesMut::new();
        if self.framing().deprecate_eof {
            let ok = okerr::Ok {
                header: okerr::EOF_HEADER,
                affected_rows: 0,
                last_insert_id: 0,
                status: self.status,
                warnings: 0,
                info: &[],
                session_state: &[],
            };
            ok.encode(false, &mut reply);
        } else {
            okerr::encode_eof(0, self.status, &mut reply);
        }
        put_packet(&mut self.io.out, seq.wrapping_add(1), &reply);
        self.flush_or_close(config).await
    }

    async fn kill(&mut self, seq: u8, request: KillRequest, config: &Config) -> Outcome {
        self.kills(seq, &[request], None, &Bytes::new(), config).await
    }

    /// Runs `requests` in order, each answered with an OK (`MORE_RESULTS_EXISTS` unless it is
    /// the last result), stopping at the first error as the server does; then forwards the rest
    /// of the query packet `payload` from SQL offset `rest` as its own query, continuing the
    /// sequence ids.
    async fn kills(
        &mut self,
        seq: u8,
        requests: &[KillRequest],
        rest: Option<usize>,
        payload: &Bytes,
        config: &Config,
    ) -> Outcome {
        let mut seq = seq;
        for (i, request) in requests.iter().enumerate() {
            if let Err(err) = self.kill_one(*request, config).await {
                return self.reply_error(&err, seq.wrapping_add(1), config).await;
            }
            if request.id == self.id.0 && !request.query_only {
                let _ = self.reply_error(&ClientError::connection_killed(), seq.wrapping_add(1), config).await;
                return Outcome::Close;
            }
            let more = i + 1 < requests.len() || rest.is_some();
            let mut ok = BytesMut::new();
            encode_ok(if more { self.status | okerr::MORE_RESULTS_EXISTS } else { self.status }, &mut ok);
            seq = seq.wrapping_add(1);
            put_packet(&mut self.io.out, seq, &ok);
        }
        let Some(at) = rest else { return self.flush_or_close(config).await };
        let mut rest = BytesMut::with_capacity(payload.len());
        rest.extend_from_slice(&[command::QUERY]);
        rest.extend_from_slice(payload.get(1 + at..).unwrap_or_default());
        let rest = rest.freeze();
        let sql = &rest[1..];
        let (stmt, all_reads) = self.classify(sql, config);
        if stmt.flags.contains(Flags::LOCAL) && !self.login.capabilities.contains(CapabilityFlags::CLIENT_LOCAL_FILES) {
            return self.reply_error(&ClientError::local_infile_refused(), seq.wrapping_add(1), config).await;
        }
        let exec = Exec { work: Work::Forward(&rest), seq, expect: Expect::Results };
        self.execute(exec, stmt, all_reads, config).await
    }

    /// Kills what `request` names (see [`kill`]); the caller answers the client.
    async fn kill_one(&mut self, request: KillRequest, config: &Config) -> Result<(), ClientError> {
        let Some(target) = self.shared.sessions.get(request.id) else {
            return Err(ClientError::unknown_thread(request.id));
        };
        if target.user != self.login.user.name.as_str() {
            return Err(ClientError::not_owner(request.id));
        }
        if !request.query_only {
            target.kill();
        }
        // The server the statement runs on, by the id its pools gave it: an index could name
        // another server after a reload that renumbered the backends.
        let running = target.running().and_then(|(server, thread)| Some((self.shared.pools.server(server)?, thread)));
        let Some((server, thread)) = running else { return Ok(()) };
        let user = &self.login.user;
        let params = ConnectParams {
            host: &server.host,
            port: server.port,
            user: user.backend_user(),
            password: user.backend_password().unwrap_or_default(),
            database: None,
            collation: self.login.collation,
            extra_capabilities: CapabilityFlags::empty(),
            extended: 0,
            connect_timeout: config.pool.connect_timeout,
            max_prepared: 1,
            tls: self.shared.pools.tls(),
        };
        let sql = format!("\x03KILL QUERY {thread}");
        let killed = async {
            let mut conn = crate::backend::Conn::connect(&params).await?;
            let reply = conn.command_reply(sql.as_bytes(), config.pool.connect_timeout).await?;
            conn.close().await;
            Ok::<_, crate::backend::Error>(reply)
        };
        match killed.await {
            Ok(reply) if reply.first() == Some(&okerr::ERR_HEADER) => {
                tracing::debug!(thread, "backend refused KILL QUERY (statement already finished?)");
            }
            Ok(_) => {}
            Err(err) => return Err(ClientError::checkout_failed(server.name.as_str(), user.name.as_str(), &err)),
        }
        Ok(())
    }

    /// The OK that ends a login, change of user or reset: reports the schema to a client that
    /// tracks session state, as the server does.
    pub(super) fn put_session_ok(&mut self, seq: u8) {
        let mut ok = BytesMut::new();
        let session_track = self.framing().session_track;
        okerr::encode_session_ok(self.status, self.state.schema.as_deref(), session_track, &mut ok);
        put_packet(&mut self.io.out, seq, &ok);
    }

    pub(super) async fn reply_ok(&mut self, seq: u8, config: &Config) -> Outcome {
        let mut ok = BytesMut::new();
        encode_ok(self.status, &mut ok);
        put_packet(&mut self.io.out, seq.wrapping_add(1), &ok);
        self.flush_or_close(config).await
    }

    pub(super) async fn flush_or_close(&mut self, config: &Config) -> Outcome {
        match self.io.flush(config.pool.query_timeout).await {
            Ok(()) => Outcome::Continue,
            Err(_) => Outcome::Close,
        }
    }
}
