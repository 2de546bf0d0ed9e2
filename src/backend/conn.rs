//! One backend connection: connect, log in, enable session tracking, send commands, read frames.

use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpStream;

use super::state::State;
use super::Error;
use crate::protocol::auth::{scramble_native, NATIVE_PASSWORD};
use crate::protocol::handshake::{backend_capabilities, AuthSwitch, Greeting, Response};
use crate::protocol::okerr::{self, ERR_HEADER, OK_HEADER};
use crate::protocol::packet::{flush, put_packet, Frame, FrameReader};
use crate::protocol::{CapabilityFlags, MAX_FRAME_PAYLOAD};

/// Statement run once per new connection so that every OK reports schema, variable and state
/// changes (the server is the source of truth for session state).
const SESSION_TRACKING: &[u8] =
    b"SET session_track_schema=ON, session_track_state_change=ON, session_track_system_variables='*'";

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
    /// Limit for TCP connect plus login.
    pub connect_timeout: Duration,
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
}

/// An authenticated backend connection.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
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
            stream,
            reader: FrameReader::new(),
            out: BytesMut::with_capacity(16 * 1024),
            thread_id: 0,
            info: ServerInfo { version: Vec::new(), capabilities: CapabilityFlags::empty(), collation: 0 },
            state: State { schema: params.database.map(bytes::Bytes::copy_from_slice), ..State::default() },
            broken: false,
            generation: 0,
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
        };
        let caps = (backend_capabilities() | params.extra_capabilities) & greeting.capabilities;
        let response = Response {
            capabilities: caps,
            max_packet: 1 << 30,
            collation: params.collation,
            user: params.user.as_bytes().to_vec(),
            auth_response: scramble_native(&greeting.scramble, params.password.as_bytes()),
            database: params.database.map(<[u8]>::to_vec),
            auth_plugin: Some(NATIVE_PASSWORD.as_bytes().to_vec()),
        };
        let mut buf = BytesMut::new();
        response.encode(&mut buf);
        let mut next = put_packet(&mut conn.out, seq.wrapping_add(1), &buf);
        flush(&mut conn.stream, &mut conn.out, timeout).await?;
        loop {
            let (seq, payload) = conn.reader.packet(&mut conn.stream, timeout, LOGIN_PACKET_LIMIT).await?;
            match payload.first() {
                Some(&OK_HEADER) => break,
                Some(&ERR_HEADER) => return Err(refused(&payload)),
                Some(0xFE) if next == seq => {
                    let switch = AuthSwitch::parse(&payload)?;
                    if switch.plugin != NATIVE_PASSWORD.as_bytes() {
                        return Err(Error::UnsupportedAuth(String::from_utf8_lossy(&switch.plugin).into_owned()));
                    }
                    let answer = scramble_native(&switch.data, params.password.as_bytes());
                    next = put_packet(&mut conn.out, seq.wrapping_add(1), &answer);
                    flush(&mut conn.stream, &mut conn.out, timeout).await?;
                }
                _ => return Err(crate::protocol::Error::malformed("login response").into()),
            }
        }
        conn.simple_command(crate::protocol::command::QUERY, SESSION_TRACKING, timeout).await?;
        Ok(conn)
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

    /// Sends one command packet (sequence id 0, split into frames as needed).
    pub async fn send(&mut self, payload: &[u8], timeout: Duration) -> Result<(), Error> {
        self.out.clear();
        self.out.reserve(payload.len() + 4 * (payload.len() / MAX_FRAME_PAYLOAD + 1));
        put_packet(&mut self.out, 0, payload);
        flush(&mut self.stream, &mut self.out, timeout).await?;
        Ok(())
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

fn refused(payload: &[u8]) -> Error {
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
