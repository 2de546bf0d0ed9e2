//! TLS towards clients and `caching_sha2_password`, through the real proxy in front of the real
//! cluster, with the `mysql` CLI, mysql_async and a hand-driven client that checks the exact
//! exchange (full authentication first, fast authentication afterwards). Backend-side TLS and
//! `caching_sha2_password` run against a scripted MySQL 8 stand-in in `tls_auth/backend.rs`, since
//! the test cluster is MariaDB.
//!
//! The certificates are the demo's: `scripts/certs.sh` writes them into `certs/` (idempotent),
//! where `config/demo.toml` points, so these tests also check the demo contract.

#[path = "tls_auth/backend.rs"]
mod backend;
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::BytesMut;
use common::{server_error, Cluster, TestProxy};
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder, SslOpts};
use rwsplit::config::{ClientTlsMode, Config};
use rwsplit::protocol::handshake::{Greeting, Response};
use rwsplit::protocol::packet::{put_packet, FrameReader};
use rwsplit::protocol::sha2::scramble_sha2;
use rwsplit::protocol::CapabilityFlags;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(20);

/// The demo certificates, made once per test process by `scripts/certs.sh`.
fn certs() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(root.join("scripts/certs.sh")).output().expect("run scripts/certs.sh");
        assert!(out.status.success(), "scripts/certs.sh failed: {}", String::from_utf8_lossy(&out.stderr));
        root.join("certs")
    })
    .clone()
}

/// The demo config (TLS `preferred`, user `app_sha2`) for the shared cluster, certificates made.
async fn demo_config() -> (Cluster, Config) {
    certs();
    let cluster = Cluster::shared().await;
    let config = cluster.config();
    assert_eq!(config.tls.client_mode(), ClientTlsMode::Preferred, "config/demo.toml enables client TLS");
    (cluster, config)
}

fn opts(port: u16, user: &str, password: &str, tls: bool) -> Opts {
    let mut builder = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(password))
        .prefer_socket(false);
    if tls {
        let ssl =
            SslOpts::default().with_root_certs(vec![certs().join("ca.pem").into()]).with_disable_built_in_roots(true);
        builder = builder.ssl_opts(ssl);
    }
    builder.into()
}

async fn current_user(opts: Opts) -> Result<String, mysql_async::Error> {
    let mut conn = tokio::time::timeout(T, Conn::new(opts)).await.expect("login within the timeout")?;
    let user: String = conn.query_first("SELECT CURRENT_USER()").await?.unwrap_or_default();
    conn.disconnect().await?;
    Ok(user)
}

/// Runs the mysql CLI against `port` with `args` on a blocking thread; (status ok, stdout, stderr).
async fn cli(port: u16, args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new("mysql");
    command.current_dir(env!("CARGO_MANIFEST_DIR")).args(["-h127.0.0.1", "-P", &port.to_string(), "--batch"]);
    command.args(args);
    let out = tokio::time::timeout(T, tokio::task::spawn_blocking(move || command.output()))
        .await
        .expect("the CLI finishes")
        .unwrap()
        .expect("the mysql CLI is installed (scripts/test.sh installs mariadb-client)");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test]
async fn demo_config_offers_tls_to_the_cli_and_keeps_plain_clients() {
    let (cluster, config) = demo_config().await;
    let proxy = TestProxy::start_with(cluster, config).await;
    let port = proxy.port();
    let (ok, out, err) =
        cli(port, &["-uapp", "-papp", "--ssl", "--ssl-ca=certs/ca.pem", "--ssl-verify-server-cert", "-e", "\\s"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("Cipher in use is TLS"), "the CLI sees TLS:\n{out}");
    // The MariaDB client uses TLS whenever the server offers it; --skip-ssl makes it a plain client.
    let (ok, out, err) = cli(port, &["-uapp", "-papp", "--skip-ssl", "-e", "\\s"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("SSL:\t\t\tNot in use"), "plain clients still work:\n{out}");
}

#[tokio::test]
async fn mysql_async_verifies_the_proxy_certificate() {
    let (cluster, config) = demo_config().await;
    let proxy = TestProxy::start_with(cluster, config).await;
    assert_eq!(current_user(opts(proxy.port(), "app", "app", true)).await.unwrap(), "app@%");
    // Without the CA the certificate does not verify: TLS is really in use.
    let untrusted: Opts = OptsBuilder::from_opts(opts(proxy.port(), "app", "app", false))
        .ssl_opts(SslOpts::default().with_disable_built_in_roots(true))
        .into();
    let err = current_user(untrusted).await.unwrap_err();
    assert!(matches!(err, mysql_async::Error::Io(_)), "certificate refused: {err:?}");
}

#[tokio::test]
async fn required_mode_refuses_plain_clients_with_3159() {
    let (cluster, mut config) = demo_config().await;
    config.tls.mode = Some(ClientTlsMode::Required);
    let proxy = TestProxy::start_with(cluster, config).await;
    let err = current_user(opts(proxy.port(), "app", "app", false)).await.unwrap_err();
    let (code, state, message) = server_error(&err);
    assert_eq!((code, state.as_str()), (3159, "HY000"), "{message}");
    assert!(message.contains("require_secure_transport"), "{message}");
    assert_eq!(current_user(opts(proxy.port(), "app", "app", true)).await.unwrap(), "app@%");
    let (ok, _, err) = cli(proxy.port(), &["-uapp", "-papp", "--skip-ssl", "-e", "SELECT 1"]).await;
    assert!(!ok && err.contains("ERROR 3159 (HY000)"), "{err}");
    let (ok, out, err) = cli(proxy.port(), &["-uapp", "-papp", "--ssl", "-e", "SELECT 2"]).await;
    assert!(ok && out.contains('2'), "{err}");
}

/// What the server sent during a hand-driven `caching_sha2_password` login.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    FastOk,
    FullAuth,
    PublicKey,
}

/// Logs in as `user` answering the greeting with `caching_sha2_password` directly, requesting the
/// RSA key when asked for the full password; returns the steps and then Ok or the ERR code.
async fn raw_sha2_login(port: u16, user: &str, password: &str) -> (Vec<Step>, Result<(), u16>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut reader = FrameReader::new();
    let (_, payload) = reader.packet(&mut stream, T, 1 << 20).await.unwrap();
    let greeting = Greeting::parse(&payload).unwrap();
    let response = Response {
        capabilities: CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_SECURE_CONNECTION
            | CapabilityFlags::CLIENT_PLUGIN_AUTH
            | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
            | CapabilityFlags::CLIENT_LONG_PASSWORD
            | CapabilityFlags::CLIENT_TRANSACTIONS
            | CapabilityFlags::CLIENT_DEPRECATE_EOF,
        max_packet: 1 << 24,
        collation: 45,
        user: user.as_bytes().to_vec(),
        auth_response: scramble_sha2(&greeting.scramble, password.as_bytes()),
        database: None,
        auth_plugin: Some(b"caching_sha2_password".to_vec()),
        extended: 0,
    };
    let mut out = BytesMut::new();
    let mut payload = BytesMut::new();
    response.encode(&mut payload);
    put_packet(&mut out, 1, &payload);
    let mut steps = Vec::new();
    loop {
        stream.write_all(&out).await.unwrap();
        out.clear();
        let (seq, packet) = reader.packet(&mut stream, T, 1 << 20).await.unwrap();
        let answer = match packet.first() {
            Some(0x00) => return (steps, Ok(())),
            Some(0xFF) => return (steps, Err(u16::from_le_bytes([packet[1], packet[2]]))),
            Some(0x01) if packet[1..] == [0x03] => {
                steps.push(Step::FastOk);
                continue;
            }
            Some(0x01) if packet[1..] == [0x04] => {
                steps.push(Step::FullAuth);
                vec![0x02]
            }
            Some(0x01) => {
                steps.push(Step::PublicKey);
                // mysql_common's client-side encryption, independent of the proxy's code.
                let mut plain = format!("{password}\0").into_bytes();
                for (i, b) in plain.iter_mut().enumerate() {
                    *b ^= greeting.scramble[i % greeting.scramble.len()];
                }
                mysql_common::crypto::encrypt(&plain, &packet[1..])
            }
            other => panic!("unexpected packet starting with {other:?}"),
        };
        put_packet(&mut out, seq.wrapping_add(1), &answer);
    }
}

#[tokio::test]
async fn sha2_first_login_is_full_then_fast_and_wrong_passwords_get_1045() {
    let (cluster, config) = demo_config().await;
    let proxy = TestProxy::start_with(cluster, config).await;
    let port = proxy.port();
    let (steps, wrong) = raw_sha2_login(port, "app_sha2", "nope").await;
    assert_eq!((steps, wrong), (vec![Step::FullAuth, Step::PublicKey], Err(1045)), "uncached: full auth, refused");
    let (steps, first) = raw_sha2_login(port, "app_sha2", "app").await;
    assert_eq!((steps, first), (vec![Step::FullAuth, Step::PublicKey], Ok(())), "first login: RSA full auth");
    let (steps, second) = raw_sha2_login(port, "app_sha2", "app").await;
    assert_eq!((steps, second), (vec![Step::FastOk], Ok(())), "then the fast path");
    let (steps, wrong) = raw_sha2_login(port, "app_sha2", "nope").await;
    assert_eq!((steps, wrong), (vec![], Err(1045)), "cached: a wrong scramble is refused at once");
    // A native user answering with sha2 is switched to its own plugin, and still gets in.
    assert_eq!(current_user(opts(port, "app", "app", false)).await.unwrap(), "app@%");
}

#[tokio::test]
async fn mysql_async_does_sha2_full_auth_over_tls_and_over_rsa() {
    let (cluster, config) = demo_config().await;
    let over_tls = TestProxy::start_with(cluster.clone(), config.clone()).await;
    assert_eq!(current_user(opts(over_tls.port(), "app_sha2", "app", true)).await.unwrap(), "app@%");
    assert_eq!(current_user(opts(over_tls.port(), "app_sha2", "app", false)).await.unwrap(), "app@%", "fast path");
    let err = current_user(opts(over_tls.port(), "app_sha2", "App", true)).await.unwrap_err();
    assert_eq!(server_error(&err).0, 1045);

    let over_rsa = TestProxy::start_with(cluster, config).await;
    let err = current_user(opts(over_rsa.port(), "app_sha2", "App", false)).await.unwrap_err();
    let (code, _, message) = server_error(&err);
    assert_eq!(code, 1045);
    assert!(message.contains("'app_sha2'@'127.0.0.1' (using password: YES)"), "{message}");
    assert_eq!(current_user(opts(over_rsa.port(), "app_sha2", "app", false)).await.unwrap(), "app@%", "RSA");
}

#[tokio::test]
async fn the_cli_does_sha2_with_rsa_and_tls() {
    let (cluster, config) = demo_config().await;
    let proxy = TestProxy::start_with(cluster, config).await;
    let sha2 = ["-uapp_sha2", "-papp", "--default-auth=caching_sha2_password", "--skip-ssl"];
    let (ok, out, err) = cli(proxy.port(), &[&sha2[..], &["-e", "SELECT CURRENT_USER()"]].concat()).await;
    assert!(ok && out.contains("app@%"), "full auth over RSA: {err}");
    let (ok, out, err) = cli(proxy.port(), &["-uapp_sha2", "-papp", "--skip-ssl", "-e", "SELECT CURRENT_USER()"]).await;
    assert!(ok && out.contains("app@%"), "fast path after an auth switch: {err}");
    let (ok, _, err) = cli(proxy.port(), &["-uapp_sha2", "-pnope", "--ssl", "-e", "SELECT 1"]).await;
    assert!(!ok && err.contains("ERROR 1045 (28000)"), "{err}");

    let fresh = TestProxy::start_with(proxy.cluster.clone(), proxy.cluster.config()).await;
    let over_tls = ["-uapp_sha2", "-papp", "--default-auth=caching_sha2_password", "--ssl", "-e", "\\s"];
    let (ok, out, err) = cli(fresh.port(), &over_tls).await;
    assert!(ok && out.contains("Cipher in use is TLS"), "full auth over TLS: {err}");
}

#[tokio::test]
async fn without_a_configured_key_one_is_generated_on_first_use() {
    let (cluster, mut config) = demo_config().await;
    config.tls.rsa_private_key = None;
    let proxy = TestProxy::start_with(cluster, config).await;
    assert_eq!(current_user(opts(proxy.port(), "app_sha2", "app", false)).await.unwrap(), "app@%");
}

#[tokio::test]
async fn reload_swaps_the_material_or_keeps_the_running_one() {
    let (_, config) = demo_config().await;
    let tls = rwsplit::frontend::tls::Tls::new(&config.tls);
    assert!(tls.acceptor().offers_tls());
    let mut broken = config.tls.clone();
    broken.cert = Some(certs().join("no-such-cert.pem"));
    let err = tls.reload(&broken).unwrap_err();
    assert!(err.to_string().contains("no-such-cert.pem"), "{err}");
    assert!(tls.acceptor().offers_tls(), "a failed reload keeps the running acceptor");
    let mut off = config.tls.clone();
    off.mode = Some(ClientTlsMode::Disabled);
    tls.reload(&off).unwrap();
    assert!(!tls.acceptor().offers_tls());
    tls.reload(&config.tls).unwrap();
    assert!(tls.acceptor().offers_tls());
}
