//! Differential checks that change a global server setting (issue 12). They live in their own
//! test binary so that no other test runs while the global differs; each restores it.

mod common;

use common::raw::RawClient;
use common::{Cluster, TestProxy};
use mysql_async::prelude::Queryable;
use rwsplit::protocol::CapabilityFlags;

/// Restores the primary's global `autocommit` when dropped (also when the test fails).
struct RestoreAutocommit(Cluster);

impl Drop for RestoreAutocommit {
    fn drop(&mut self) {
        let cluster = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let mut conn = cluster.primary_conn().await;
                conn.query_drop("SET GLOBAL autocommit = 1").await.unwrap();
                conn.disconnect().await.unwrap();
            });
        })
        .join();
    }
}

/// Status flags of a login's OK (its affected rows and insert id are 0, one byte each).
fn status_of_ok(reply: &[u8]) -> u16 {
    assert_eq!(reply.first(), Some(&0x00), "login OK: {reply:?}");
    u16::from_le_bytes([reply[3], reply[4]])
}

/// With the server's global `autocommit = 0`, the first OK of a session lacks
/// `SERVER_STATUS_AUTOCOMMIT` through the proxy as directly, and reads stay in the session's
/// implicit transaction (on the primary) as they do directly.
#[tokio::test]
async fn the_first_ok_follows_the_servers_global_autocommit() {
    let cluster = Cluster::shared().await;
    let mut conn = cluster.primary_conn().await;
    conn.query_drop("SET GLOBAL autocommit = 0").await.unwrap();
    conn.disconnect().await.unwrap();
    let _restore = RestoreAutocommit(cluster.clone());
    let proxy = TestProxy::start(cluster).await;
    let login = |port| async move {
        let (client, reply) = RawClient::login_with(port, "app", "app", CapabilityFlags::CLIENT_DEPRECATE_EOF).await;
        (client, status_of_ok(&reply))
    };
    let (_, direct) = login(proxy.cluster.primary).await;
    let (_, proxied) = login(proxy.port()).await;
    assert_eq!(direct & 0x0002, 0, "premise: the server's first OK has no AUTOCOMMIT flag ({direct:#06x})");
    assert_eq!(proxied, direct, "first OK status: proxied {proxied:#06x}, direct {direct:#06x}");
    let mut client = proxy.connect().await;
    let read_only: Vec<i64> = client.query("SELECT @@read_only").await.unwrap();
    assert_eq!(read_only, vec![0], "with autocommit off a read runs in the session's transaction, on the primary");
}
