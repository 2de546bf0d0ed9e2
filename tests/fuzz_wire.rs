//! Protocol errors from clients against the running proxy: each kind is answered or the
//! connection closed, and counted by reason in `rwsplit_client_protocol_errors_total` (the info
//! log line beside it is rate-limited per address by the same brake as failed logins). The
//! parsers themselves are fuzzed by tests/fuzz.rs.

mod common;

use common::ops::metric;
use common::raw::{err_code, RawClient};
use common::{Cluster, TestProxy};
use tokio::io::AsyncWriteExt;

const METRIC: &str = "rwsplit_client_protocol_errors_total";

fn count(proxy: &TestProxy, reason: &str) -> f64 {
    metric(&proxy.handle, METRIC, &[("reason", reason)])
}

#[tokio::test]
async fn client_protocol_errors_are_counted_by_reason() {
    let proxy = TestProxy::start(Cluster::shared().await).await;
    let port = proxy.port();
    for reason in ["malformed", "too_large", "out_of_order", "truncated", "unknown_command"] {
        assert_eq!(count(&proxy, reason), 0.0, "{reason} starts at zero (the series exists)");
    }

    // Before login: a handshake response that does not parse gets an ERR.
    let mut c = RawClient::open(port).await;
    c.send_packet(1, &[0x00, 0x00, 0x01]).await;
    let (_, reply) = c.read_packet().await.expect("an ERR for the bad handshake response");
    assert!(err_code(&reply).is_some(), "{reply:?}");
    assert_eq!(count(&proxy, "malformed"), 1.0);

    // Before login: a frame header claiming 16 MiB is refused from the header.
    let mut c = RawClient::open(port).await;
    c.send_raw(&[0xFF, 0xFF, 0xFF, 0x01, b'x']).await;
    assert_eq!(c.drain_until_closed().await, 0, "closed without a reply");
    assert_eq!(count(&proxy, "too_large"), 1.0);

    // Before login: the connection closes in the middle of a packet.
    let mut c = RawClient::open(port).await;
    c.send_raw(&[100, 0, 0, 0x01, 1, 2, 3]).await;
    c.stream.shutdown().await.ok();
    c.drain_until_closed().await;
    let counted =
        common::eventually(std::time::Duration::from_secs(5), || async { count(&proxy, "truncated") == 1.0 }).await;
    assert!(counted, "truncated: {}", count(&proxy, "truncated"));

    // After login: an unknown command byte, then a COM_PROCESS_KILL without its id.
    let (mut c, ok) = RawClient::login(port, "app", "app").await;
    assert_eq!(ok.first(), Some(&0x00), "logged in: {ok:?}");
    c.send_packet(0, &[0x7F, 1, 2]).await;
    let (_, reply) = c.read_packet().await.expect("ERR for an unknown command");
    assert_eq!(err_code(&reply).map(|e| e.0), Some(1047), "{reply:?}");
    assert_eq!(count(&proxy, "unknown_command"), 1.0);
    c.send_packet(0, &[0x0C, 1]).await;
    let (_, reply) = c.read_packet().await.expect("ERR for a short COM_PROCESS_KILL");
    assert!(err_code(&reply).is_some(), "{reply:?}");
    assert_eq!(count(&proxy, "malformed"), 2.0);

    // After login: a full frame (a continuation follows) and then a frame with the wrong sequence id.
    let mut frame = vec![0xFF, 0xFF, 0xFF, 0x00, 0x03];
    frame.resize(4 + 0xFF_FFFF, b' ');
    c.send_raw(&frame).await;
    c.send_raw(&[1, 0, 0, 0x07, b'1']).await;
    c.drain_until_closed().await;
    assert_eq!(count(&proxy, "out_of_order"), 1.0);
}
