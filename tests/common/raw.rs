//! A minimal hand-driven protocol client for sending what real drivers never send: malformed
//! packets, unknown commands, oversized packets, and abrupt disconnects mid-result.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rwsplit::protocol::auth::scramble_native;
use rwsplit::protocol::handshake::{Greeting, Response};
use rwsplit::protocol::packet::{put_packet, FrameReader};
use rwsplit::protocol::CapabilityFlags;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(10);

/// A raw connection.
pub struct RawClient {
    pub stream: TcpStream,
    reader: FrameReader,
    pub greeting: Greeting,
}

impl RawClient {
    /// Connects and reads the greeting, without logging in.
    pub async fn open(port: u16) -> RawClient {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut reader = FrameReader::new();
        let (_, payload) = reader.packet(&mut stream, T, 1 << 20).await.unwrap();
        let greeting = Greeting::parse(&payload).unwrap();
        RawClient { stream, reader, greeting }
    }

    /// Connects and logs in with `mysql_native_password`; returns the login reply's payload.
    pub async fn login(port: u16, user: &str, password: &str) -> (RawClient, Bytes) {
        Self::login_with(port, user, password, CapabilityFlags::CLIENT_DEPRECATE_EOF).await
    }

    /// Logs in with the basic 4.1 capabilities plus `extra`.
    pub async fn login_with(port: u16, user: &str, password: &str, extra: CapabilityFlags) -> (RawClient, Bytes) {
        Self::login_as(port, user, password, extra, 45).await
    }

    /// Logs in with the basic 4.1 capabilities plus `extra`, asking for handshake `collation`.
    pub async fn login_as(
        port: u16,
        user: &str,
        password: &str,
        extra: CapabilityFlags,
        collation: u8,
    ) -> (RawClient, Bytes) {
        let mut client = Self::open(port).await;
        let caps = CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_SECURE_CONNECTION
            | CapabilityFlags::CLIENT_PLUGIN_AUTH
            | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
            | CapabilityFlags::CLIENT_TRANSACTIONS
            | CapabilityFlags::CLIENT_LONG_PASSWORD
            | extra;
        let response = Response {
            capabilities: caps,
            max_packet: 1 << 24,
            collation,
            user: user.as_bytes().to_vec(),
            auth_response: scramble_native(&client.greeting.scramble, password.as_bytes()),
            database: None,
            auth_plugin: Some(b"mysql_native_password".to_vec()),
            extended: 0,
        };
        let mut payload = BytesMut::new();
        response.encode(&mut payload);
        client.send_packet(1, &payload).await;
        let (_, reply) = client.read_packet().await.expect("login reply");
        (client, reply)
    }

    /// Sends one logical packet with the given sequence id.
    pub async fn send_packet(&mut self, seq: u8, payload: &[u8]) {
        let mut wire = BytesMut::new();
        put_packet(&mut wire, seq, payload);
        self.stream.write_all(&wire).await.unwrap();
    }

    /// Sends bytes exactly as given.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads one logical packet; `None` when the proxy closed the connection.
    pub async fn read_packet(&mut self) -> Option<(u8, Bytes)> {
        self.reader.packet(&mut self.stream, T, 1 << 30).await.ok()
    }

    /// Sends a `COM_QUERY` and collects every packet of the response up to the end of the
    /// first result set (or an OK/ERR), as payloads.
    pub async fn query_packets(&mut self, sql: &str, deprecate_eof: bool) -> Vec<Bytes> {
        let mut payload = vec![0x03];
        payload.extend_from_slice(sql.as_bytes());
        self.send_packet(0, &payload).await;
        let mut packets = Vec::new();
        let mut eofs = 0;
        while let Some((_, p)) = self.read_packet().await {
            let first = p.first().copied();
            packets.push(p.clone());
            if packets.len() == 1 && matches!(first, Some(0x00 | 0xFF)) {
                break;
            }
            if first == Some(0xFF) {
                break;
            }
            if first == Some(0xFE) && p.len() < 0xFF_FFFF {
                eofs += 1;
                if deprecate_eof || eofs == 2 {
                    break;
                }
            }
        }
        packets
    }

    /// Reads the packets of one reply up to its terminator (OK/EOF/ERR), as payloads.
    pub async fn query_reply(&mut self, deprecate_eof: bool) -> Vec<Bytes> {
        let mut packets = Vec::new();
        while let Some((_, p)) = self.read_packet().await {
            let first = p.first().copied();
            packets.push(p.clone());
            let only = packets.len() == 1 && matches!(first, Some(0x00 | 0xFF));
            let end = first == Some(0xFF) || (first == Some(0xFE) && p.len() < 0xFF_FFFF);
            if only || (end && (deprecate_eof || packets.len() > 1)) {
                break;
            }
        }
        packets
    }

    /// Reads packets until the connection closes; returns how many arrived.
    pub async fn drain_until_closed(&mut self) -> usize {
        let mut n = 0;
        while self.read_packet().await.is_some() {
            n += 1;
        }
        n
    }
}

/// The (code, SQLSTATE) of an ERR payload.
pub fn err_code(payload: &[u8]) -> Option<(u16, String)> {
    let err = rwsplit::protocol::okerr::Err::parse(payload).ok()?;
    Some((err.code, String::from_utf8_lossy(&err.sqlstate).into_owned()))
}
