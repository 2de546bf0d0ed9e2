//! One backend connection: connect, log in, enable session tracking, send commands, read frames.

use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpStream;

use super::login;
use super::state::State;
use super::stmt::StmtCache;
use super::tls::{BackendStream, Connector};
use super::Error;
use crate::protocol::handshake::Greeting;
use crate::protocol::okerr::{self, ERR_HEADER, OK_HEADER};
use crate::protocol::packet::{flush, put_packet, write_all, Frame, FrameReader};
use crate::protocol::prepare::Prepared;
use crate::protocol::response::PASS_THROUGH;
use crate::protocol::stream::Stream;
use crate::protocol::{CapabilityFlags, MAX_FRAME_PAYLOAD};

/// Statement run once per new connection so that every OK reports schema, variable and state
/// changes (the server is the source of truth for session state).
const SESSION_TRACKING: &[u8] =
    b"SET session_track_schema=ON, session_track_state_change=ON, session_track_system_variables='*'";

/// The variables the handshake collation sets (not the server's global defaults), read once per
/// new connection: the values a session that never changed them expects.
const HANDSHAKE_VARIABLES: [&[u8]; 4] =
    [b"character_set_client", b"character_set_connection", b"character_set_results", b"collation_connection"];

/// Largest response packet accepted during login and setup.
const LOGIN_PACKET_LIMIT: usize = 1 << 20;

/// What to log in with.
#[derive(Debug, Clone)]
pub struct ConnectParams<'a> {
    /// Host name or address; resolved again on every connect.
    pub host: &'a str,
    /// TCP port.
    pub port: u16,
    /// Backend user.
    pub user: &'a str,
    /// Backend password (plain text).
    pub password: &'a str,
    /// Initial schema.
    pub database: Option<&'a [u8]>,
    /// Connection collation id.
    pub collation: u8,
    /// Result-changing client flags to carry (`FOUND_ROWS`, `MULTI_STATEMENTS`, ...).
    pub extra_capabilities: CapabilityFlags,
    /// MariaDB extended capabilities the client negotiated (what the server also offers is asked
    /// for).
    pub extended: u32,
    /// Limit for TCP connect plus login.
    pub connect_timeout: Duration,
    /// Prepared statements kept open on the connection at most.
    pub max_prepared: usize,
    /// TLS towards the backend (`[tls] backend`), and whether its RSA key may be requested.
    pub tls: std::sync::Arc<Connector>,
}

/// What a backend told about itself in its greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// Version string, as sent.
    pub version: Vec<u8>,
    /// Capabilities the server offers.
    pub capabilities: CapabilityFlags,
    /// Default collation id.
    pub collation: u8,
    /// Status flags of the greeting (`SERVER_STATUS_AUTOCOMMIT` follows the global `autocommit`).
    pub status: u16,
    /// MariaDB extended capabilities of the greeting (`protocol::handshake::extended`).
    pub extended: u32,
}

/// An authenticated backend connection.
#[derive(Debug)]
pub struct Conn {
    stream: BackendStream,
    reader: FrameReader,
    out: BytesMut,
    thread_id: u32,
    info: ServerInfo,
    /// Session state of this connection, kept from the server's reports.
    pub state: State,
    /// Set when a response was cut off or the connection failed: its state is unknown and it
    /// must not be reused.
    pub broken: bool,
    /// Generation of the pool that created it; an older generation is dropped on return.
    pub generation: u64,
    /// Prepared statements open on this connection.
    pub stmts: StmtCache,
    /// When it was last checked out of its pool (or made).
    pub last_checkout: std::time::Instant,
    /// Its places under the backend's (and the user's) connection caps, given back when it closes.
    pub permits: Vec<tokio::sync::OwnedSemaphorePermit>,
}

impl Conn {
    /// Connects, logs in and enables session tracking, all within `params.connect_timeout`.
    pub async fn connect(params: &ConnectParams<'_>) -> Result<Self, Error> {
        let addr = format!("{}:{}", params.host, params.port);
        let after = params.connect_timeout;
        match tokio::time::timeout(after, Self::connect_inner(&addr, params)).await {
            Ok(result) => result,
            Err(_) => Err(Error::ConnectTimeout { addr, after }),
        }
    }

    async fn connect_inner(addr: &str, params: &ConnectParams<'_>) -> Result<Self, Error> {
        let stream =
            TcpStream::connect(addr).await.map_err(|source| Error::Connect { addr: addr.to_owned(), source })?;
        stream.set_nodelay(true).map_err(|source| Error::Connect { addr: addr.to_owned(), source })?;
        let mut conn = Self {
            stream: Stream::Plain(stream),
            reader: FrameReader::new(),
            out: BytesMut::with_capacity(16 * 1024),
            thread_id: 0,
            info: ServerInfo {
                version: Vec::new(),
                capabilities: CapabilityFlags::empty(),
                collation: 0,
                status: 0,
                extended: 0,
            },
            state: State { schema: params.database.map(bytes::Bytes::copy_from_slice), ..State::default() },
            broken: false,
            generation: 0,
            stmts: StmtCache::new(params.max_prepared),
            last_checkout: std::time::Instant::now(),
            permits: Vec::new(),
        };
        let timeout = params.connect_timeout;
        let (seq, payload) = conn.reader.packet(&mut conn.stream, timeout, LOGIN_PACKET_LIMIT).await?;
        if payload.first() == Some(&ERR_HEADER) {
            return Err(refused(&payload));
        }
        let greeting = Greeting::parse(&payload)?;
        for (flag, name) in [
            (CapabilityFlags::CLIENT_PROTOCOL_41, "CLIENT_PROTOCOL_41"),
            (CapabilityFlags::CLIENT_DEPRECATE_EOF, "CLIENT_DEPRECATE_EOF"),
            (CapabilityFlags::CLIENT_SESSION_TRACK, "CLIENT_SESSION_TRACK"),
            (CapabilityFlags::CLIENT_PLUGIN_AUTH, "CLIENT_PLUGIN_AUTH"),
        ] {
            if !greeting.capabilities.contains(flag) {
                return Err(Error::MissingCapability(name));
            }
        }
        conn.thread_id = greeting.connection_id;
        conn.info = ServerInfo {
            version: greeting.server_version.clone(),
            capabilities: greeting.capabilities,
            collation: greeting.collation,
            status: greeting.status,
            extended: greeting.extended,
        };
        let mut io = login::Io { stream: &mut conn.stream, reader: &mut conn.reader, out: &mut conn.out, timeout };
        login::login(&mut io, seq, &greeting, params).await?;
        conn.simple_command(crate::protocol::command::QUERY, SESSION_TRACKING, timeout).await?;
        conn.state.baseline = conn.handshake_values(timeout).await?;
        Ok(conn)
    }

    /// True when the server already ended this connection while no command was outstanding:
    /// it closed it, or (plain TCP) sent something nobody asked for, such as an error before
    /// closing. Never waits and consumes nothing (a peek). Over TLS only a closed socket counts:
    /// unread bytes may be a TLS record the server may send at any time (a session ticket).
    pub fn is_closed_by_server(&self) -> bool {
        if !self.reader.is_empty() {
            return true;
        }
        let (tcp, any_byte_counts) = match &self.stream {
            crate::protocol::stream::Stream::Plain(tcp) => (tcp, true),
            crate::protocol::stream::Stream::Tls(tls) => (tls.get_ref().0, false),
            crate::protocol::stream::Stream::Detached => return true,
        };
        let mut byte = [0u8; 1];
        let mut buf = tokio::io::ReadBuf::new(&mut byte);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match tcp.poll_peek(&mut cx, &mut buf) {
            std::task::Poll::Pending => false,
            std::task::Poll::Ready(Ok(0)) => true,
            std::task::Poll::Ready(Ok(_)) => any_byte_counts,
            std::task::Poll::Ready(Err(_)) => true,
        }
    }

    /// The server's address this connection was made to (`None` once the socket can no longer
    /// say, for example after a reset).
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        match &self.stream {
            crate::protocol::stream::Stream::Plain(tcp) => tcp.peer_addr().ok(),
            crate::protocol::stream::Stream::Tls(tls) => tls.get_ref().0.peer_addr().ok(),
            crate::protocol::stream::Stream::Detached => None,
        }
    }

    /// Reads the values of [`HANDSHAKE_VARIABLES`] (one text-protocol `SELECT`).
    async fn handshake_values(
        &mut self,
        timeout: Duration,
    ) -> Result<std::collections::BTreeMap<Box<[u8]>, Box<[u8]>>, Error> {
        let mut sql = b"\x03SELECT ".to_vec();
        for (i, name) in HANDSHAKE_VARIABLES.iter().enumerate() {
            sql.extend_from_slice(if i == 0 { b"@@" } else { b", @@" });
            sql.extend_from_slice(name);
        }
        self.send(&sql, timeout).await?;
        let malformed = || crate::protocol::Error::malformed("handshake variables");
        // Column count, the definitions, one row, the terminator (an OK under DEPRECATE_EOF).
        let mut packets = Vec::with_capacity(HANDSHAKE_VARIABLES.len() + 3);
        while packets.len() < HANDSHAKE_VARIABLES.len() + 3 {
            let (_, packet) = self.reader.packet(&mut self.stream, timeout, LOGIN_PACKET_LIMIT).await?;
            if packet.first() == Some(&ERR_HEADER) {
                return Err(refused(&packet));
            }
            packets.push(packet);
        }
        if packets.last().and_then(|p| p.first()) != Some(&okerr::EOF_HEADER) {
            return Err(malformed().into());
        }
        let row = packets.get(HANDSHAKE_VARIABLES.len() + 1).ok_or_else(malformed)?;
        let mut reader = crate::protocol::wire::Reader::new(row, "handshake variables");
        let mut values = std::collections::BTreeMap::new();
        for name in HANDSHAKE_VARIABLES {
            if reader.remaining().first() == Some(&0xFB) {
                reader.u8()?;
                values.insert(name.into(), b"NULL"[..].into());
            } else {
                values.insert(name.into(), reader.lenenc_bytes()?.into());
            }
        }
        Ok(values)
    }

    /// `COM_RESET_CONNECTION`, then the session-tracking setup again: the connection is as new
    /// (no transaction, temporary tables, locks, user variables or prepared statements; session
    /// variables at their defaults; the handshake character set; the schema kept).
    pub async fn reset(&mut self, timeout: Duration) -> Result<(), Error> {
        self.simple_command(crate::protocol::command::RESET_CONNECTION, &[], timeout).await?;
        self.stmts.clear();
        let baseline = std::mem::take(&mut self.state.baseline);
        self.state = State { schema: self.state.schema.clone(), baseline, ..State::default() };
        self.simple_command(crate::protocol::command::QUERY, SESSION_TRACKING, timeout).await
    }

    /// Runs a command that must answer with OK (setup statements), failing on ERR.
    async fn simple_command(&mut self, command: u8, arg: &[u8], timeout: Duration) -> Result<(), Error> {
        let mut payload = Vec::with_capacity(1 + arg.len());
        payload.push(command);
        payload.extend_from_slice(arg);
        self.send(&payload, timeout).await?;
        let (_, reply) = self.reader.packet(&mut self.stream, timeout, LOGIN_PACKET_LIMIT).await?;
        match reply.first() {
            Some(&OK_HEADER) => Ok(()),
            Some(&ERR_HEADER) => Err(refused(&reply)),
            _ => Err(crate::protocol::Error::malformed("setup response").into()),
        }
    }

    /// Sends one command packet (sequence id 0, split into frames as needed), preceded by the
    /// `COM_STMT_CLOSE` of statements evicted from the statement cache (they have no response).
    pub async fn send(&mut self, payload: &[u8], timeout: Duration) -> Result<(), Error> {
        self.send_after(&[], payload, timeout).await
    }

    /// Like [`Conn::send`], with already framed packets that have no response (e.g.
    /// `COM_STMT_SEND_LONG_DATA`) written just before the command, in the same write.
    pub async fn send_after(&mut self, framed: &[u8], payload: &[u8], timeout: Duration) -> Result<(), Error> {
        self.out.clear();
        self.out.extend_from_slice(framed);
        for id in self.stmts.take_to_close() {
            let mut close = [crate::protocol::command::STMT_CLOSE, 0, 0, 0, 0];
            close[1..].copy_from_slice(&id.to_le_bytes());
            put_packet(&mut self.out, 0, &close);
        }
        if payload.len() < PASS_THROUGH {
            self.out.reserve(payload.len() + 4 * (payload.len() / MAX_FRAME_PAYLOAD + 1));
            put_packet(&mut self.out, 0, payload);
            flush(&mut self.stream, &mut self.out, timeout).await?;
            return Ok(());
        }
        // A large packet is written from the client's buffer, frame by frame, instead of being
        // copied behind the frame headers (see `PASS_THROUGH`).
        let (mut rest, mut seq) = (payload, 0u8);
        loop {
            let n = rest.len().min(MAX_FRAME_PAYLOAD);
            let (chunk, tail) = rest.split_at(n);
            let len = u32::try_from(n).unwrap_or(0).to_le_bytes();
            self.out.extend_from_slice(&[len[0], len[1], len[2], seq]);
            flush(&mut self.stream, &mut self.out, timeout).await?;
            write_all(&mut self.stream, chunk, timeout).await?;
            if n < MAX_FRAME_PAYLOAD {
                return Ok(());
            }
            (rest, seq) = (tail, seq.wrapping_add(1));
        }
    }

    /// The next response frame already buffered, if any (no I/O).
    pub fn buffered_frame(&mut self) -> Option<Frame> {
        self.reader.next_buffered()
    }

    /// Waits up to `timeout` for more response bytes from the server.
    pub async fn fill(&mut self, timeout: Duration) -> Result<(), Error> {
        self.reader.fill(&mut self.stream, timeout).await.map_err(Error::from)
    }

    /// The server's thread id for this connection (what `KILL` takes).
    pub fn thread_id(&self) -> u32 {
        self.thread_id
    }

    /// What the server said about itself.
    pub fn info(&self) -> &ServerInfo {
        &self.info
    }
}

impl Conn {
    /// Brings this connection's schema and variables to `target` with one pipelined round trip
    /// (`COM_INIT_DB` and/or one `SET`), or none when they already match. A server refusal (for
    /// example an unknown database) comes back as `Ok(Some(err_payload))` to relay to the client;
    /// a `SET` refusal also marks the connection broken, since part of it may have applied.
    pub async fn sync_to(
        &mut self,
        target: &State,
        need_insert_id: bool,
        timeout: Duration,
    ) -> Result<Option<bytes::Bytes>, Error> {
        let init_db = match &target.schema {
            Some(schema) if self.state.schema.as_ref() != Some(schema) => Some(schema.clone()),
            _ => None,
        };
        let set = self.state.variables_sync(target, need_insert_id);
        if init_db.is_none() && set.is_none() {
            return Ok(None);
        }
        self.out.clear();
        if let Some(schema) = &init_db {
            let mut payload = Vec::with_capacity(1 + schema.len());
            payload.push(crate::protocol::command::INIT_DB);
            payload.extend_from_slice(schema);
            put_packet(&mut self.out, 0, &payload);
        }
        if let Some(set) = &set {
            put_packet(&mut self.out, 0, set);
        }
        flush(&mut self.stream, &mut self.out, timeout).await?;
        let mut refusal = None;
        for is_set in [false, true] {
            if (is_set && set.is_none()) || (!is_set && init_db.is_none()) {
                continue;
            }
            let (_, reply) = self.reader.packet(&mut self.stream, timeout, LOGIN_PACKET_LIMIT).await?;
            match reply.first() {
                Some(&OK_HEADER) => {
                    let ok = okerr::Ok::parse(&reply)?;
                    self.state.apply(Some(ok.session_state).filter(|s| !s.is_empty()), 0);
                    if is_set {
                        // Variables the target does not have were reset to what a new
                        // connection has: as good as never set.
                        self.state.vars.retain(|name, _| target.vars.contains_key(name));
                    }
                    if is_set && need_insert_id {
                        self.state.last_insert_id = target.last_insert_id;
                    }
                }
                Some(&ERR_HEADER) => {
                    if is_set {
                        self.broken = true;
                    }
                    refusal.get_or_insert(reply);
                }
                _ => return Err(crate::protocol::Error::malformed("state sync response").into()),
            }
        }
        Ok(refusal)
    }
}

impl Conn {
    /// Sends a command and returns its single reply packet (OK or ERR), for the proxy's own
    /// statements (e.g. `KILL QUERY`).
    pub async fn command_reply(&mut self, payload: &[u8], timeout: Duration) -> Result<bytes::Bytes, Error> {
        self.send(payload, timeout).await?;
        let (_, reply) = self.reader.packet(&mut self.stream, timeout, LOGIN_PACKET_LIMIT).await?;
        Ok(reply)
    }

    /// Writes already framed bytes (client `LOCAL INFILE` data relayed to the server).
    pub async fn write_framed(&mut self, framed: &[u8], timeout: Duration) -> Result<(), Error> {
        self.out.clear();
        self.out.extend_from_slice(framed);
        flush(&mut self.stream, &mut self.out, timeout).await?;
        Ok(())
    }

    /// Prepares `sql` on this connection and reads the whole response. A server refusal comes back
    /// as `Ok(Err(err_payload))`.
    pub async fn prepare(&mut self, sql: &[u8], timeout: Duration) -> Result<Result<Prepared, bytes::Bytes>, Error> {
        let mut payload = Vec::with_capacity(1 + sql.len());
        payload.push(crate::protocol::command::STMT_PREPARE);
        payload.extend_from_slice(sql);
        self.send(&payload, timeout).await?;
        let (_, first) = self.reader.packet(&mut self.stream, timeout, LOGIN_PACKET_LIMIT).await?;
        if first.first() == Some(&ERR_HEADER) {
            return Ok(Err(first));
        }
        let mut prepared = Prepared::parse_ok(&first)?;
        while prepared.defs_missing() > 0 {
            let (_, def) = self.reader.packet(&mut self.stream, timeout, LOGIN_PACKET_LIMIT).await?;
            prepared.push_def(def);
        }
        Ok(Ok(prepared))
    }
}

pub(super) fn refused(payload: &[u8]) -> Error {
    match okerr::Err::parse(payload) {
        Ok(e) => Error::Refused {
            code: e.code,
            sqlstate: String::from_utf8_lossy(&e.sqlstate).into_owned(),
            message: String::from_utf8_lossy(e.message).into_owned(),
        },
        Err(e) => e.into(),
    }
}

impl Conn {
    /// Says goodbye with `COM_QUIT` (best effort, bounded) and closes the socket.
    pub async fn close(mut self) {
        let _ = self.send(&[crate::protocol::command::QUIT], Duration::from_millis(100)).await;
    }
}

impl Conn {
    /// True when the server closed this idle connection (or sent something unasked, which leaves
    /// it unusable too). No round trip. `thorough` peeks a plain socket with one non-blocking `recv`
    /// (`MSG_PEEK`, about a microsecond), the kernel's view; otherwise tokio's readiness is asked,
    /// which costs no system call but can trail the kernel by milliseconds under load. The pool
    /// asks for the thorough look when the connection sat idle long enough for the server to
    /// have gone away meanwhile.
    pub fn is_closed_by_peer(&mut self, thorough: bool) -> bool {
        if let (true, Stream::Plain(tcp)) = (thorough, &self.stream) {
            let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
            return match socket2::SockRef::from(tcp).peek(&mut byte) {
                Err(err) => err.kind() != std::io::ErrorKind::WouldBlock,
                Ok(_) => true,
            };
        }
        self.stream.is_closed_by_peer()
    }
}
