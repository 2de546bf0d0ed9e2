//! The proxy's backend login against a scripted MySQL 8 stand-in (the test cluster is MariaDB,
//! which has no `caching_sha2_password`): fast and full authentication, the RSA key exchange,
//! TLS with certificate verification, and the refusals. Each fake server accepts one connection,
//! checks what the proxy sends and reports what it saw.

use std::sync::Arc;

use bytes::BytesMut;
use rwsplit::backend::tls::Connector;
use rwsplit::backend::{Conn, ConnectParams, Error};
use rwsplit::config::{BackendTlsMode, TlsConfig};
use rwsplit::protocol::handshake::{AuthSwitch, Response};
use rwsplit::protocol::packet::{flush, put_packet, FrameReader};
use rwsplit::protocol::sha2::{sha2_digest, verify_sha2, RsaKey};
use rwsplit::protocol::stream::Stream;
use rwsplit::protocol::CapabilityFlags;
use tokio::net::{TcpListener, TcpStream};

use super::{certs, T};

const NONCE: &[u8; 20] = b"0123456789abcdefghij";
const PASSWORD: &str = "s3cret";

/// How the stand-in behaves.
#[derive(Clone, Copy, Default)]
struct Script {
    /// Offer `CLIENT_SSL` and accept TLS with the demo server certificate.
    tls: bool,
    /// Greet with `mysql_native_password` and switch to `caching_sha2_password` afterwards.
    switch: bool,
    /// The account is in the server's cache: fast authentication.
    cached: bool,
}

/// What the stand-in saw.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    tls: bool,
    plugin: String,
    /// How the password arrived on the full path: "clear" or "rsa".
    full: Option<&'static str>,
    logged_in: bool,
}

type FakeStream = Stream<tokio_rustls::server::TlsStream<TcpStream>>;

async fn send(stream: &mut FakeStream, seq: u8, payload: &[u8]) {
    let mut out = BytesMut::new();
    put_packet(&mut out, seq, payload);
    flush(stream, &mut out, T).await.unwrap();
}

/// Serves one login, then OKs the proxy's session-tracking statement.
async fn serve(listener: TcpListener, script: Script) -> Seen {
    let (tcp, _) = listener.accept().await.unwrap();
    let mut stream = FakeStream::Plain(tcp);
    let mut reader = FrameReader::new();
    let mut seen = Seen::default();
    let mut caps = CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_CONNECT_ATTRS
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_MULTI_RESULTS
        | CapabilityFlags::CLIENT_DEPRECATE_EOF
        | CapabilityFlags::CLIENT_SESSION_TRACK;
    caps.set(CapabilityFlags::CLIENT_SSL, script.tls);
    let plugin: &str = if script.switch { "mysql_native_password" } else { "caching_sha2_password" };
    let greeting = rwsplit::protocol::handshake::Greeting {
        server_version: b"8.0.40-fake".to_vec(),
        connection_id: 7,
        scramble: NONCE.to_vec(),
        capabilities: caps,
        collation: 255,
        status: 2,
        auth_plugin: plugin.as_bytes().to_vec(),
        extended: 0,
    };
    let mut payload = BytesMut::new();
    greeting.encode(&mut payload);
    send(&mut stream, 0, &payload).await;
    // Read the first packet without buffering ahead: after an SSLRequest the TLS hello follows at once.
    let Ok((mut seq, mut packet)) = read_exact_packet(&mut stream).await else { return seen };
    if Response::is_ssl_request(&packet) {
        let Stream::Plain(tcp) = stream else { unreachable!() };
        let tls = tls_acceptor().accept(tcp).await;
        let Ok(tls) = tls else { return seen };
        stream = Stream::Tls(Box::new(tls));
        seen.tls = true;
        (seq, packet) = reader.packet(&mut stream, T, 1 << 20).await.unwrap();
    }
    let response = Response::parse(&packet).unwrap();
    assert_eq!(response.user, b"app");
    let mut answer = response.auth_response;
    seen.plugin = String::from_utf8(response.auth_plugin.unwrap()).unwrap();
    if script.switch {
        let mut payload = BytesMut::new();
        AuthSwitch { plugin: b"caching_sha2_password".to_vec(), data: NONCE.to_vec() }.encode(&mut payload);
        send(&mut stream, seq + 1, &payload).await;
        (seq, answer) = reader.packet(&mut stream, T, 1 << 20).await.map(|(s, p)| (s, p.to_vec())).unwrap();
        seen.plugin = "caching_sha2_password (switched)".into();
    }
    let ok = if script.cached {
        send(&mut stream, seq + 1, &[0x01, 0x03]).await;
        seq += 1;
        verify_sha2(NONCE, &answer, &sha2_digest(PASSWORD.as_bytes()))
    } else {
        send(&mut stream, seq + 1, &[0x01, 0x04]).await;
        let Ok((s, reply)) = reader.packet(&mut stream, T, 1 << 20).await else { return seen };
        seq = s;
        if seen.tls {
            seen.full = Some("clear");
            reply[..] == *format!("{PASSWORD}\0").as_bytes()
        } else {
            assert_eq!(&reply[..], [0x02], "the proxy asks for the public key");
            let key = rsa_key();
            let mut pem = vec![0x01];
            pem.extend_from_slice(key.public_pem().as_bytes());
            send(&mut stream, seq + 1, &pem).await;
            let (s, ciphertext) = reader.packet(&mut stream, T, 1 << 20).await.unwrap();
            seq = s;
            seen.full = Some("rsa");
            key.decrypt_password(&ciphertext, NONCE).unwrap().expose() == PASSWORD.as_bytes()
        }
    };
    assert!(ok, "the proxy proved the right password");
    send(&mut stream, seq + 1, &[0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00]).await;
    let (_, query) = reader.packet(&mut stream, T, 1 << 20).await.unwrap();
    assert_eq!(query[0], 0x03, "session tracking is set up after login");
    send(&mut stream, 1, &[0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00]).await;
    // Then the handshake's character set variables: four columns, one row, OK as terminator.
    let (_, query) = reader.packet(&mut stream, T, 1 << 20).await.unwrap();
    assert_eq!(query[0], 0x03, "the handshake's character set variables are read after login");
    send(&mut stream, 1, &[0x04]).await;
    for seq in 2..6 {
        send(&mut stream, seq, b"\x03def\x00\x00\x00\x01c\x00\x0c\x21\x00\x00\x01\x00\x00\xfd\x00\x00\x00\x00\x00")
            .await;
    }
    let mut row = Vec::new();
    for value in ["utf8mb4", "utf8mb4", "utf8mb4", "utf8mb4_general_ci"] {
        row.push(value.len() as u8);
        row.extend_from_slice(value.as_bytes());
    }
    send(&mut stream, 6, &row).await;
    send(&mut stream, 7, &[0xFE, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00]).await;
    seen.logged_in = true;
    seen
}

async fn read_exact_packet(stream: &mut FakeStream) -> std::io::Result<(u8, bytes::Bytes)> {
    use tokio::io::AsyncReadExt;
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).await?;
    let mut payload = vec![0u8; usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16];
    stream.read_exact(&mut payload).await?;
    Ok((header[3], payload.into()))
}

fn rsa_key() -> RsaKey {
    RsaKey::from_pem(&std::fs::read_to_string(certs().join("rsa-private.pem")).unwrap()).unwrap()
}

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    let dir = certs();
    let certs = rwsplit::backend::tls::load_certs(&dir.join("server-cert.pem")).unwrap();
    let key = rwsplit::backend::tls::load_key(&dir.join("server-key.pem")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(rwsplit::backend::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Runs the proxy's backend login against a stand-in following `script`.
async fn login(script: Script, tls: TlsConfig) -> (Result<(), Error>, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(serve(listener, script));
    let params = ConnectParams {
        host: "127.0.0.1",
        port,
        user: "app",
        password: PASSWORD,
        database: None,
        collation: 45,
        extra_capabilities: CapabilityFlags::empty(),
        extended: 0,
        connect_timeout: T,
        max_prepared: 4,
        tls: Arc::new(Connector::from_config(&tls).unwrap()),
    };
    let result = Conn::connect(&params).await.map(|_| ());
    let seen = tokio::time::timeout(T, server).await.unwrap().unwrap();
    (result, seen)
}

fn tls_config(mode: BackendTlsMode, ca: bool) -> TlsConfig {
    TlsConfig {
        backend: mode,
        backend_ca: ca.then(|| certs().join("ca.pem")),
        backend_public_key_retrieval: true,
        ..TlsConfig::default()
    }
}

#[tokio::test]
async fn caching_sha2_fast_path() {
    let (result, seen) = login(Script { cached: true, ..Script::default() }, TlsConfig::default()).await;
    result.unwrap();
    assert_eq!((seen.plugin.as_str(), seen.full, seen.logged_in), ("caching_sha2_password", None, true));
}

#[tokio::test]
async fn caching_sha2_full_path_with_the_servers_rsa_key() {
    let (result, seen) = login(Script::default(), tls_config(BackendTlsMode::Disabled, false)).await;
    result.unwrap();
    assert_eq!((seen.tls, seen.full, seen.logged_in), (false, Some("rsa"), true));
}

#[tokio::test]
async fn the_rsa_exchange_is_refused_unless_allowed() {
    let (result, seen) = login(Script::default(), TlsConfig::default()).await;
    assert!(matches!(result, Err(Error::AuthExchange(_))), "{result:?}");
    assert_eq!(seen.full, None, "no password left the proxy");
}

#[tokio::test]
async fn auth_switch_to_caching_sha2_then_full_path_over_verified_tls() {
    let script = Script { tls: true, switch: true, ..Script::default() };
    let (result, seen) = login(script, tls_config(BackendTlsMode::VerifyIdentity, true)).await;
    result.unwrap();
    let expected =
        Seen { tls: true, plugin: "caching_sha2_password (switched)".into(), full: Some("clear"), logged_in: true };
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn preferred_tls_without_a_ca_encrypts_without_verifying() {
    let script = Script { tls: true, cached: true, ..Script::default() };
    let (result, seen) = login(script, tls_config(BackendTlsMode::Preferred, false)).await;
    result.unwrap();
    assert!(seen.tls && seen.logged_in);
}

#[tokio::test]
async fn required_tls_fails_when_the_server_offers_none() {
    let (result, seen) = login(Script::default(), tls_config(BackendTlsMode::Required, false)).await;
    assert!(matches!(result, Err(Error::TlsRequired)), "{result:?}");
    assert!(!seen.logged_in);
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    // The demo CA's own certificate is not the CA of a fresh, unrelated one.
    let dir = std::env::temp_dir().join(format!("rwsplit-other-ca-{}", std::process::id()));
    let out = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/certs.sh"))
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut tls = tls_config(BackendTlsMode::VerifyCa, true);
    tls.backend_ca = Some(dir.join("ca.pem"));
    let (result, seen) = login(Script { tls: true, cached: true, ..Script::default() }, tls).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(matches!(result, Err(Error::TlsHandshake(_))), "{result:?}");
    assert!(!seen.logged_in);
}
