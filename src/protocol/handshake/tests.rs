//! Round trips and malformed input for the connection-phase packets.

use super::*;

fn greeting() -> Greeting {
    Greeting {
        server_version: b"5.5.5-10.11.19-MariaDB-log".to_vec(),
        connection_id: 42,
        scramble: b"abcdefghijklmnopqrst".to_vec(),
        capabilities: proxy_capabilities(),
        collation: 45,
        status: 2,
        auth_plugin: b"mysql_native_password".to_vec(),
        extended: 0,
    }
}

fn response(database: Option<&[u8]>) -> Response {
    Response {
        capabilities: backend_capabilities() | CapabilityFlags::CLIENT_PLUGIN_AUTH,
        max_packet: 1 << 30,
        collation: 224,
        user: b"app".to_vec(),
        auth_response: vec![7; 20],
        database: database.map(<[u8]>::to_vec),
        auth_plugin: Some(b"mysql_native_password".to_vec()),
        extended: 0,
    }
}

#[test]
fn mariadb_extended_capabilities_round_trip_only_without_client_mysql() {
    let mut g = greeting();
    g.capabilities.remove(CapabilityFlags::CLIENT_LONG_PASSWORD);
    g.extended = extended::RELAYED;
    let mut buf = BytesMut::new();
    g.encode(&mut buf);
    assert_eq!(Greeting::parse(&buf).unwrap(), g);
    let mut r = response(Some(b"shop"));
    r.capabilities.remove(CapabilityFlags::CLIENT_LONG_PASSWORD);
    r.extended = extended::EXTENDED_METADATA;
    let mut buf = BytesMut::new();
    r.encode(&mut buf);
    assert_eq!(Response::parse(&buf).unwrap().extended, extended::EXTENDED_METADATA);
    // A peer that sets CLIENT_MYSQL does not carry extended capabilities: the bytes are ignored.
    r.capabilities.insert(CapabilityFlags::CLIENT_LONG_PASSWORD);
    let mut buf = BytesMut::new();
    r.encode(&mut buf);
    assert_eq!(Response::parse(&buf).unwrap().extended, 0);
}

#[test]
fn greeting_round_trips() {
    let g = greeting();
    let mut buf = BytesMut::new();
    g.encode(&mut buf);
    assert_eq!(Greeting::parse(&buf).unwrap(), g);
}

#[test]
fn handshake_response_round_trips_with_and_without_database() {
    for db in [None, Some(&b"shop"[..])] {
        let resp = response(db);
        let mut buf = BytesMut::new();
        resp.encode(&mut buf);
        let mut parsed = Response::parse(&buf).unwrap();
        parsed.capabilities.remove(CapabilityFlags::CLIENT_CONNECT_WITH_DB);
        assert_eq!(parsed, resp);
    }
}

#[test]
fn old_style_auth_data_lengths_parse() {
    // CLIENT_SECURE_CONNECTION without LENENC_CLIENT_DATA: one length byte.
    let caps = CapabilityFlags::CLIENT_PROTOCOL_41 | CapabilityFlags::CLIENT_SECURE_CONNECTION;
    let mut buf = BytesMut::new();
    buf.put_u32_le(caps.bits());
    buf.put_u32_le(0);
    buf.put_u8(8);
    buf.put_slice(&[0; 23]);
    buf.put_slice(b"u\0");
    buf.put_u8(3);
    buf.put_slice(b"xyz");
    let r = Response::parse(&buf).unwrap();
    assert_eq!(
        (r.user.as_slice(), r.auth_response.as_slice(), r.database, r.auth_plugin),
        (&b"u"[..], &b"xyz"[..], None, None)
    );
}

#[test]
fn truncated_connection_packets_never_panic() {
    let mut g = BytesMut::new();
    greeting().encode(&mut g);
    let mut r = BytesMut::new();
    response(Some(b"db")).encode(&mut r);
    for cut in 0..g.len() {
        let _ = Greeting::parse(&g[..cut]);
    }
    for cut in 0..r.len() {
        let _ = Response::parse(&r[..cut]);
    }
    assert!(Response::parse(&r[..10]).is_err());
    assert!(Greeting::parse(b"\x09abc").is_err());
}

#[test]
fn auth_switch_round_trips_and_detects_ssl_requests() {
    let s = AuthSwitch { plugin: b"mysql_native_password".to_vec(), data: b"01234567890123456789".to_vec() };
    let mut buf = BytesMut::new();
    s.encode(&mut buf);
    assert_eq!(AuthSwitch::parse(&buf).unwrap(), s);
    let mut ssl = vec![0u8; 32];
    ssl[1] = 0x08;
    assert!(Response::is_ssl_request(&ssl));
    assert!(!Response::is_ssl_request(&ssl[..31]));
}
