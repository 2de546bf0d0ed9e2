//! Logging in to a backend after its greeting: the optional TLS upgrade (`SSLRequest`, then the
//! handshake on the same socket), the handshake response, and the authentication exchange for
//! `mysql_native_password`, `caching_sha2_password` (fast path, full path over TLS or with the
//! server's RSA key) and `sha256_password`, including one auth switch.
//!
//! Every read and write is bounded by the connect timeout (and the whole login by
//! [`super::Conn::connect`]'s). The password is never logged and leaves the proxy in clear text
//! only inside TLS.

use std::time::Duration;

use bytes::{BufMut, BytesMut};

use super::conn::{refused, ConnectParams};
use super::tls::BackendStream;
use super::Error;
use crate::protocol::auth::{scramble_native, NATIVE_PASSWORD};
use crate::protocol::handshake::{backend_capabilities, AuthSwitch, Greeting, Response};
use crate::protocol::okerr::{ERR_HEADER, OK_HEADER};
use crate::protocol::packet::{flush, put_packet, FrameReader};
use crate::protocol::sha2::{
    encrypt_password, scramble_sha2, CACHING_SHA2, FAST_AUTH_OK, FULL_AUTH, MORE_DATA, REQUEST_PUBLIC_KEY,
    SHA256_PASSWORD,
};
use crate::protocol::stream::Stream;
use crate::protocol::CapabilityFlags;

/// Largest packet accepted during login.
const LOGIN_PACKET_LIMIT: usize = 1 << 20;

/// The socket and buffers of a connection being logged in.
pub(super) struct Io<'a> {
    pub stream: &'a mut BackendStream,
    pub reader: &'a mut FrameReader,
    pub out: &'a mut BytesMut,
    pub timeout: Duration,
}

impl Io<'_> {
    async fn send(&mut self, seq: u8, payload: &[u8]) -> Result<(), Error> {
        put_packet(self.out, seq, payload);
        flush(self.stream, self.out, self.timeout).await?;
        Ok(())
    }
}

/// Where the authentication exchange stands.
struct Exchange<'p> {
    plugin: Vec<u8>,
    nonce: Vec<u8>,
    password: &'p [u8],
    is_tls: bool,
    switched: bool,
    /// A public key was requested; the next `AuthMoreData` carries it.
    awaiting_key: bool,
    public_key_retrieval: bool,
}

/// Upgrades to TLS when configured and offered, sends the handshake response for `greeting`
/// (received with sequence id `greeting_seq`) and runs the exchange until the server's OK.
pub(super) async fn login(
    io: &mut Io<'_>,
    greeting_seq: u8,
    greeting: &Greeting,
    params: &ConnectParams<'_>,
) -> Result<(), Error> {
    let mut caps = (backend_capabilities() | params.extra_capabilities) & greeting.capabilities;
    let mut seq = greeting_seq.wrapping_add(1);
    let offered = greeting.capabilities.contains(CapabilityFlags::CLIENT_SSL);
    if params.tls.is_enabled() && offered {
        caps |= CapabilityFlags::CLIENT_SSL;
        io.send(seq, &ssl_request(caps, params.collation)).await?;
        seq = seq.wrapping_add(1);
        start_tls(io, params).await?;
    } else if params.tls.mode().is_required() {
        return Err(Error::TlsRequired);
    }
    let mut exchange = Exchange {
        plugin: greeting.auth_plugin.clone(),
        nonce: greeting.scramble.clone(),
        password: params.password.as_bytes(),
        is_tls: io.stream.is_tls(),
        switched: false,
        awaiting_key: false,
        public_key_retrieval: params.tls.allows_public_key_retrieval(),
    };
    if !is_supported(&exchange.plugin) {
        // Answer for the native plugin; the server switches us to the account's plugin.
        exchange.plugin = NATIVE_PASSWORD.as_bytes().to_vec();
    }
    let response = Response {
        capabilities: caps,
        max_packet: 1 << 30,
        collation: params.collation,
        user: params.user.as_bytes().to_vec(),
        auth_response: exchange.first_answer(),
        database: params.database.map(<[u8]>::to_vec),
        auth_plugin: Some(exchange.plugin.clone()),
        // Only a MariaDB greeting (without CLIENT_MYSQL) carries extended capabilities.
        extended: params.extended & greeting.extended,
    };
    let mut buf = BytesMut::new();
    response.encode(&mut buf);
    io.send(seq, &buf).await?;
    loop {
        let (seq, payload) = io.reader.packet(&mut *io.stream, io.timeout, LOGIN_PACKET_LIMIT).await?;
        let answer = match payload.first() {
            Some(&OK_HEADER) => return Ok(()),
            Some(&ERR_HEADER) => return Err(refused(&payload)),
            Some(0xFE) if !exchange.switched => {
                let switch = AuthSwitch::parse(&payload)?;
                if !is_supported(&switch.plugin) {
                    return Err(Error::UnsupportedAuth(String::from_utf8_lossy(&switch.plugin).into_owned()));
                }
                exchange.switched = true;
                exchange.plugin = switch.plugin;
                exchange.nonce = switch.data;
                Some(exchange.first_answer())
            }
            Some(&MORE_DATA) => exchange.more_data(&payload[1..])?,
            _ => return Err(crate::protocol::Error::malformed("login response").into()),
        };
        if let Some(answer) = answer {
            io.send(seq.wrapping_add(1), &answer).await?;
        }
    }
}

/// The TLS handshake on the plain socket, after the `SSLRequest`.
async fn start_tls(io: &mut Io<'_>, params: &ConnectParams<'_>) -> Result<(), Error> {
    if !io.reader.is_empty() {
        // The server must wait for our TLS hello; bytes before it mean a confused peer.
        return Err(crate::protocol::Error::malformed("data before the TLS handshake").into());
    }
    let Some(tcp) = io.stream.take_plain() else {
        return Err(crate::protocol::Error::malformed("TLS requested twice").into());
    };
    let tls = params.tls.connect(tcp, params.host).await.map_err(Error::TlsHandshake)?;
    *io.stream = Stream::Tls(Box::new(tls));
    Ok(())
}

/// The 32-byte `SSLRequest`: the first fields of a handshake response, with `CLIENT_SSL`.
fn ssl_request(caps: CapabilityFlags, collation: u8) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut buf = &mut out[..];
    buf.put_u32_le(caps.bits());
    buf.put_u32_le(1 << 30);
    buf.put_u8(collation);
    out
}

fn is_supported(plugin: &[u8]) -> bool {
    [NATIVE_PASSWORD, CACHING_SHA2, SHA256_PASSWORD].iter().any(|p| p.as_bytes() == plugin)
}

impl Exchange<'_> {
    fn is(&self, plugin: &str) -> bool {
        self.plugin == plugin.as_bytes()
    }

    /// The first answer for the current plugin and nonce.
    fn first_answer(&mut self) -> Vec<u8> {
        if self.is(CACHING_SHA2) {
            scramble_sha2(&self.nonce, self.password)
        } else if self.is(SHA256_PASSWORD) {
            if self.password.is_empty() {
                vec![0]
            } else if self.is_tls {
                self.cleartext()
            } else {
                // Ask for the public key; refused below when retrieval is off.
                self.awaiting_key = true;
                vec![1]
            }
        } else {
            scramble_native(&self.nonce, self.password)
        }
    }

    fn cleartext(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.password.len() + 1);
        out.extend_from_slice(self.password);
        out.push(0);
        out
    }

    /// The answer to an `AuthMoreData` payload (without its 0x01 byte); `None` when the server
    /// sends another packet next without waiting for us.
    fn more_data(&mut self, data: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        if self.awaiting_key {
            if !self.public_key_retrieval {
                return Err(Error::AuthExchange(
                    "the backend needs the password RSA-encrypted over a connection without TLS; enable \
                     tls.backend or set tls.backend_public_key_retrieval = true",
                ));
            }
            self.awaiting_key = false;
            let encrypted = encrypt_password(data, self.password, &self.nonce)
                .map_err(|_| Error::AuthExchange("the backend sent an unusable RSA public key"))?;
            return Ok(Some(encrypted));
        }
        if !self.is(CACHING_SHA2) {
            return Err(crate::protocol::Error::malformed("unexpected AuthMoreData").into());
        }
        match data {
            [FAST_AUTH_OK] => Ok(None),
            [FULL_AUTH] if self.is_tls => Ok(Some(self.cleartext())),
            [FULL_AUTH] if self.public_key_retrieval => {
                self.awaiting_key = true;
                Ok(Some(vec![REQUEST_PUBLIC_KEY]))
            }
            [FULL_AUTH] => Err(Error::AuthExchange(
                "the backend asks for full caching_sha2_password authentication over a connection without TLS; \
                 enable tls.backend or set tls.backend_public_key_retrieval = true",
            )),
            _ => Err(crate::protocol::Error::malformed("caching_sha2_password status").into()),
        }
    }
}
