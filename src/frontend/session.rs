//! One client session: login completion, the command loop, and the session's movable state.
//! Statements themselves run in [`super::query`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;

use super::auth::{self, Login};
use super::binding::Binding;
use super::handshakes::Ticket;
use super::kill::Slot;
use super::observe;
use super::prepared::ClientStmts;
use super::query::{Outcome, SessionPools};
use super::{ClientError, ConnId, Front};
use crate::backend::{Lease, State};
use crate::config::Config;
use crate::protocol::packet::{flush, FrameReader};
use crate::protocol::{command, Error as WireError};
use crate::shared::Pins;

/// Flush the client buffer once this much is pending, even mid-response.
pub(super) const FLUSH_AT: usize = 64 * 1024;

/// The client's socket with its read and write buffers.
#[derive(Debug)]
pub struct ClientIo {
    pub(super) stream: super::tls::ClientStream,
    pub(super) reader: FrameReader,
    /// Bytes waiting to be written to the client.
    pub out: BytesMut,
    /// Bytes written and read since `observe::between_commands` last counted them.
    pub(super) sent: u64,
    pub(super) received: u64,
}

impl ClientIo {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream: crate::protocol::stream::Stream::Plain(stream),
            reader: FrameReader::new(),
            // Grows on demand (up to about FLUSH_AT plus a row while streaming); an idle client
            // costs a few KiB.
            out: BytesMut::with_capacity(8 * 1024),
            sent: 0,
            received: 0,
        }
    }

    /// Writes everything pending within `timeout`.
    pub async fn flush(&mut self, timeout: Duration) -> Result<(), WireError> {
        self.sent += self.out.len() as u64;
        flush(&mut self.stream, &mut self.out, timeout).await
    }

    /// Writes everything pending, then `frame` as it is, within `timeout` each (a large frame is
    /// written from where it was read instead of being copied behind the pending bytes).
    pub async fn flush_then(&mut self, frame: &[u8], timeout: Duration) -> Result<(), WireError> {
        self.flush(timeout).await?;
        self.sent += frame.len() as u64;
        crate::protocol::packet::write_all(&mut self.stream, frame, timeout).await
    }

    /// Reads one logical packet.
    pub async fn read_packet(&mut self, timeout: Duration, limit: usize) -> Result<(u8, Bytes), WireError> {
        let packet = self.reader.packet(&mut self.stream, timeout, limit).await?;
        self.received += packet.1.len() as u64 + 4;
        Ok(packet)
    }
}

/// Runs a client connection from greeting to close.
pub(super) async fn run(stream: TcpStream, peer: SocketAddr, id: ConnId, shared: Arc<Front>, ticket: Ticket) {
    let mut io = ClientIo::new(stream);
    let login = tokio::select! {
        login = auth::handshake(&mut io, &shared, id, peer) => login,
        () = ticket.evicted() => {
            tracing::debug!("handshake cut off to make room for a newer connection");
            None
        }
    };
    drop(ticket);
    let Some(login) = login else {
        return;
    };
    let Some(slot) = shared.shared.take_client_slot() else {
        observe::rejected(&shared, crate::stats::Reject::MaxConnections);
        ClientError::too_many_connections().write(login.last_seq.wrapping_add(1), &mut io.out);
        let _ = io.flush(shared.config.load().server.handshake_timeout).await;
        return;
    };
    let user_name = login.user.name.as_str().to_owned();
    if !shared.admit_user(&user_name, login.user.max_connections) {
        observe::rejected(&shared, crate::stats::Reject::UserLimit);
        ClientError::too_many_user_connections(&user_name).write(login.last_seq.wrapping_add(1), &mut io.out);
        let _ = io.flush(shared.config.load().server.handshake_timeout).await;
        return;
    }
    let state = State { schema: login.database.clone(), ..State::default() };
    let kill_slot = shared.sessions.register(id, &user_name);
    let mut session = Session {
        shared: shared.clone(),
        io,
        login,
        state,
        status: super::auth::initial_status(shared.primary_info.load().as_deref()),
        binding: Binding::default(),
        id,
        peer,
        slot: kill_slot,
        stmts: ClientStmts::default(),
        observed: observe::join(&shared, id, peer, &user_name),
        pools: SessionPools::default(),
        previous: Default::default(),
        sequences: Default::default(),
    };
    if session.finish_login().await {
        tracing::debug!("client logged in");
        session.command_loop().await;
    }
    // A connection kept for a transaction or pinned state carries this client's open transaction,
    // temporary tables, locks...: it must never go back to the pool.
    let xa = session.binding.pins().contains(Pins::XA);
    if let Some(lease) = session.binding.release() {
        session.check_in_dirty(lease, xa);
    }
    shared.sessions.unregister(id);
    shared.release_user(session.login.user.name.as_str());
    drop(session);
    drop(slot);
    tracing::debug!("client disconnected");
}

/// A logged-in client.
pub(super) struct Session {
    pub(super) shared: Arc<Front>,
    pub(super) io: ClientIo,
    pub(super) login: Login,
    /// The state every backend connection must have before running this session's statements.
    pub(super) state: State,
    /// Status flags of the last response (transaction, autocommit, SQL mode bits).
    pub(super) status: u16,
    /// The backend connection this session keeps between statements, why, and its pins.
    pub(super) binding: Binding,
    /// The connection id the client was given.
    pub(super) id: ConnId,
    /// The client's address.
    pub(super) peer: SocketAddr,
    /// What `KILL` sees of this session.
    pub(super) slot: Arc<Slot>,
    /// Its entry in the client registry (`SHOW CLIENTS`); leaves it when dropped.
    pub(super) observed: observe::Client,
    /// The client's prepared statements.
    pub(super) stmts: ClientStmts,
    /// The pools this session used.
    pub(super) pools: SessionPools,
    /// What the previous statements left for questions about them.
    pub(super) previous: super::previous::Previous,
    /// Last values of the sequences the session used (`LASTVAL`).
    pub(super) sequences: super::sequences::Sequences,
}

impl Session {
    /// Completes the login with OK, after checking that the client's schema exists (which needs
    /// a backend connection); or sends the ERR and returns false.
    async fn finish_login(&mut self) -> bool {
        let config = self.shared.config.load_full();
        let seq = self.login.last_seq.wrapping_add(1);
        if self.state.schema.is_some() {
            match self.check_schema(&config).await {
                Ok(()) => {}
                Err(err) => {
                    err.write(seq, &mut self.io.out);
                    let _ = self.io.flush(config.server.handshake_timeout).await;
                    return false;
                }
            }
        }
        self.put_session_ok(seq);
        self.io.flush(config.server.handshake_timeout).await.is_ok()
    }

    pub(super) async fn check_schema(&mut self, config: &Config) -> Result<(), ClientError> {
        let mut lease = self.checkout_primary(config).await?;
        match lease.sync_to(&self.state, false, config.pool.query_timeout).await {
            Ok(None) => Ok(()),
            Ok(Some(err)) => Err(ClientError::from_err_packet(&err)),
            Err(err) => {
                lease.broken = true;
                Err(ClientError::lost_backend(&err))
            }
        }
    }

    async fn command_loop(&mut self) {
        loop {
            let config = self.shared.config.load_full();
            let limit = usize::try_from(config.server.max_packet_size).unwrap_or(usize::MAX);
            let slot = self.slot.clone();
            observe::between_commands(self);
            let read = tokio::select! {
                read = self.io.read_packet(super::timeouts::idle_limit(&self.state, config.server.idle_timeout), limit) => read,
                _ = slot.wake.notified() => return,
                _ = observe::until_close(&self.shared, self.status) => return,
            };
            let (seq, payload) = match read {
                Ok(packet) => packet,
                Err(err @ WireError::TooLarge { .. }) => {
                    observe::protocol(&self.shared, self.peer, &err);
                    self.reply_error(&ClientError::packet_too_large(), 1, &config).await;
                    return;
                }
                Err(WireError::Closed) => return,
                Err(err) => {
                    observe::protocol(&self.shared, self.peer, &err);
                    tracing::debug!(error = %err, "client read failed");
                    return;
                }
            };
            tracing::trace!(
                command = command::name(payload.first().copied().unwrap_or(0)),
                len = payload.len(),
                "command"
            );
            match self.dispatch(seq, &payload, &config).await {
                Outcome::Continue if !self.slot.is_killed() => {}
                _ => return,
            }
        }
    }

    /// Gives back a connection this session leaves with a transaction or pinned state: reset in
    /// the background and returned to its pool, or closed when it cannot be reset (an XA
    /// transaction lives on it, or the reset fails).
    pub(super) fn check_in_dirty(&self, mut lease: Lease, xa: bool) {
        if xa || lease.is_retired() {
            lease.broken = true;
            return;
        }
        let timeout = self.shared.config.load().pool.connect_timeout;
        self.shared.pools.check_in_dirty(lease, timeout);
    }

    /// Sends an ERR as the packet of sequence id `seq`; the one place errors reach the client
    /// after login. The session goes on unless the client cannot be written to.
    pub(super) async fn reply_error(&mut self, err: &ClientError, seq: u8, config: &Config) -> Outcome {
        err.write(seq, &mut self.io.out);
        match self.io.flush(config.pool.query_timeout).await {
            Ok(()) => Outcome::Continue,
            Err(_) => Outcome::Close,
        }
    }
}
