//! One client session: the command loop, forwarding commands to the session's backend connection
//! and streaming responses back through the response tracker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;

use super::auth::{self, Login};
use super::{ClientError, ClientSlot, ConnId, Shared};
use crate::backend::{self, Conn, ConnectParams};
use crate::config::Config;
use crate::protocol::handshake::semantic_capabilities;
use crate::protocol::okerr::{encode_ok, STATUS_AUTOCOMMIT, STATUS_IN_TRANS};
use crate::protocol::packet::{flush, put_packet, FrameReader};
use crate::protocol::response::{Expect, Framing, Step, Tracker};
use crate::protocol::{command, CapabilityFlags, Error as WireError};

/// Flush the client buffer once this much is pending, even mid-response.
const FLUSH_AT: usize = 64 * 1024;

/// The client's socket with its read and write buffers.
#[derive(Debug)]
pub struct ClientIo {
    stream: TcpStream,
    reader: FrameReader,
    /// Bytes waiting to be written to the client.
    pub out: BytesMut,
}

impl ClientIo {
    fn new(stream: TcpStream) -> Self {
        Self { stream, reader: FrameReader::new(), out: BytesMut::with_capacity(FLUSH_AT * 2) }
    }

    /// Writes everything pending within `timeout`.
    pub async fn flush(&mut self, timeout: Duration) -> Result<(), WireError> {
        flush(&mut self.stream, &mut self.out, timeout).await
    }

    /// Reads one logical packet.
    pub async fn read_packet(&mut self, timeout: Duration, limit: usize) -> Result<(u8, Bytes), WireError> {
        self.reader.packet(&mut self.stream, timeout, limit).await
    }
}

/// Why a forwarded command did not complete normally.
enum ForwardError {
    /// The client went away or stopped reading; nothing more can be sent to it.
    Client(WireError),
    /// The backend failed mid-response; the client was sent an ERR.
    Backend(backend::Error),
}

/// Runs a client connection from greeting to close.
pub(super) async fn run(stream: TcpStream, peer: SocketAddr, id: ConnId, slot: ClientSlot, over_limit: bool) {
    let shared = slot.0.clone();
    let mut io = ClientIo::new(stream);
    let Some(login) = auth::handshake(&mut io, &shared, id, peer, over_limit).await else {
        return;
    };
    let user_name = login.user.name.as_str().to_owned();
    if !shared.admit_user(&user_name, login.user.max_connections) {
        ClientError::too_many_user_connections(&user_name).write(login.last_seq.wrapping_add(1), &mut io.out);
        let _ = io.flush(shared.config.load().server.handshake_timeout).await;
        return;
    }
    let mut session = Session { shared: shared.clone(), io, login, backend: None, status: STATUS_AUTOCOMMIT };
    if session.start().await {
        tracing::debug!("client logged in");
        session.command_loop().await;
    }
    if let Some(backend) = session.backend.take() {
        backend.close().await;
    }
    shared.release_user(&user_name);
    drop(slot);
    tracing::debug!("client disconnected");
}

/// A logged-in client and the backend connection serving it.
struct Session {
    shared: Arc<Shared>,
    io: ClientIo,
    login: Login,
    backend: Option<Conn>,
    /// Status flags of the last response (transaction, autocommit).
    status: u16,
}

impl Session {
    fn framing(&self) -> Framing {
        let caps = self.login.capabilities;
        Framing {
            deprecate_eof: caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF),
            session_track: caps.contains(CapabilityFlags::CLIENT_SESSION_TRACK),
        }
    }

    /// Connects the backend and completes the login with OK, or sends the ERR and returns false.
    async fn start(&mut self) -> bool {
        let config = self.shared.config.load_full();
        let seq = self.login.last_seq.wrapping_add(1);
        match self.connect_backend(&config).await {
            Ok(conn) => {
                self.backend = Some(conn);
                let mut ok = BytesMut::new();
                encode_ok(self.status, &mut ok);
                put_packet(&mut self.io.out, seq, &ok);
            }
            Err(err) => err.write(seq, &mut self.io.out),
        }
        self.io.flush(config.server.handshake_timeout).await.is_ok() && self.backend.is_some()
    }

    async fn connect_backend(&self, config: &Config) -> Result<Conn, ClientError> {
        let Some(primary) = config.primary_hint() else {
            return Err(ClientError::backend_unavailable(
                "primary",
                &backend::Error::MissingCapability("a configured primary"),
            ));
        };
        let user = &self.login.user;
        let params = ConnectParams {
            host: &primary.host,
            port: primary.port,
            user: user.backend_user(),
            password: user.backend_password().unwrap_or_default(),
            database: self.login.database.as_deref(),
            collation: self.login.collation,
            extra_capabilities: self.login.capabilities & semantic_capabilities(),
            connect_timeout: config.pool.connect_timeout,
        };
        match Conn::connect(&params).await {
            Ok(conn) => {
                self.shared.primary_info.store(Some(Arc::new(conn.info().clone())));
                Ok(conn)
            }
            Err(err) => {
                tracing::warn!(backend = %primary.name, error = %err, "backend connect failed");
                Err(ClientError::backend_unavailable(primary.name.as_str(), &err))
            }
        }
    }

    async fn command_loop(&mut self) {
        loop {
            let config = self.shared.config.load_full();
            let limit = usize::try_from(config.server.max_packet_size).unwrap_or(usize::MAX);
            let (seq, payload) = match self.io.read_packet(config.server.idle_timeout, limit).await {
                Ok(packet) => packet,
                Err(WireError::TooLarge { .. }) => {
                    self.reply_error(&ClientError::packet_too_large(), 1, &config).await;
                    return;
                }
                Err(WireError::Closed) => return,
                Err(err) => {
                    tracing::debug!(error = %err, "client read failed");
                    return;
                }
            };
            let command = payload.first().copied();
            tracing::trace!(command = command::name(command.unwrap_or(0)), len = payload.len(), "command");
            let expect = match command {
                Some(command::QUIT) => return,
                Some(command::QUERY) => Expect::Results,
                Some(command::INIT_DB | command::PING) => Expect::OkOrErr,
                _ => {
                    if !self.reply_error(&ClientError::unknown_command(), seq.wrapping_add(1), &config).await {
                        return;
                    }
                    continue;
                }
            };
            match self.forward(&payload, seq, expect, &config).await {
                Ok(()) => {}
                Err(ForwardError::Client(err)) => {
                    tracing::debug!(error = %err, "client went away mid-response");
                    return;
                }
                Err(ForwardError::Backend(err)) => {
                    // The backend connection held this session's state (schema, variables,
                    // transaction); it is gone, so the session ends after the ERR already sent.
                    tracing::warn!(error = %err, "backend failed mid-statement; closing client");
                    return;
                }
            }
        }
    }

    /// Sends an ERR; returns false when the client cannot be written to.
    async fn reply_error(&mut self, err: &ClientError, seq: u8, config: &Config) -> bool {
        err.write(seq, &mut self.io.out);
        self.io.flush(config.pool.query_timeout).await.is_ok()
    }

    /// Sends one command to the backend and streams the response to the client.
    async fn forward(&mut self, payload: &[u8], seq: u8, expect: Expect, config: &Config) -> Result<(), ForwardError> {
        let timeout = config.pool.query_timeout;
        let framing = self.framing();
        let Some(backend) = self.backend.as_mut() else {
            return Err(ForwardError::Backend(backend::Error::MissingCapability("a backend connection")));
        };
        let mut tracker = Tracker::new(expect, framing, seq, self.status);
        let result = relay(backend, &mut self.io, &mut tracker, payload, timeout).await;
        match result {
            Ok(status) => {
                self.status = status;
                Ok(())
            }
            Err(ForwardError::Backend(err)) => {
                self.backend = None;
                let _ = self.reply_error(&ClientError::lost_backend(&err), tracker.next_seq(), config).await;
                Err(ForwardError::Backend(err))
            }
            Err(client_err) => {
                // The response was cut off: the backend connection is in an unknown state.
                self.backend = None;
                Err(client_err)
            }
        }
    }
}

/// Forwards `payload` and relays the response; returns the final status flags.
async fn relay(
    backend: &mut Conn,
    io: &mut ClientIo,
    tracker: &mut Tracker,
    payload: &[u8],
    timeout: Duration,
) -> Result<u16, ForwardError> {
    backend.send(payload, timeout).await.map_err(ForwardError::Backend)?;
    loop {
        let Some(frame) = backend.buffered_frame() else {
            // About to wait for the backend: let the client have what is ready.
            io.flush(timeout).await.map_err(ForwardError::Client)?;
            backend.fill(timeout).await.map_err(ForwardError::Backend)?;
            continue;
        };
        match tracker.feed(frame, &mut io.out) {
            Ok(Step::More) => {
                if io.out.len() >= FLUSH_AT {
                    io.flush(timeout).await.map_err(ForwardError::Client)?;
                }
            }
            Ok(Step::Done(outcome)) => {
                io.flush(timeout).await.map_err(ForwardError::Client)?;
                let in_trans = outcome.status & STATUS_IN_TRANS != 0;
                tracing::trace!(rows = outcome.rows, error = ?outcome.error, in_trans, "response complete");
                return Ok(outcome.status);
            }
            Ok(Step::LocalInfile) => {
                // Backends are never offered LOCAL INFILE yet, so a request is a protocol violation.
                return Err(ForwardError::Backend(WireError::malformed("unexpected LOCAL INFILE request").into()));
            }
            Err(err) => return Err(ForwardError::Backend(err.into())),
        }
    }
}
