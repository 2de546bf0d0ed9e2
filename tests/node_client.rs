//! node-mysql2 sees the same through the proxy as directly (issue 12): tests/clients/node/client.js
//! runs one script (text and prepared statements, multiple results, warnings, JSON, charsets,
//! transactions, change user) against the primary and through rwsplit, and every difference must
//! be listed below with its reason. `scripts/test.sh` installs Node.js and the client's locked
//! dependencies (`npm ci`); a missing installation fails the test.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::differential::{blocking, run, unexplained};
use common::{fresh_db, Cluster, TestProxy};

/// Steps whose output may differ through the proxy, each with the reason. Deliberate differences.
const ALLOWED: &[(&str, &str)] = &[];

/// Steps that differ today because of open items of issue 12; remove an entry when it is fixed.
const KNOWN_BUGS: &[(&str, &str)] = &[];

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/node")
}

fn node_client(port: u16, db: String) -> String {
    let dir = client_dir();
    assert!(
        dir.join("node_modules/mysql2").is_dir(),
        "tests/clients/node/node_modules is missing: run `npm ci` there (scripts/test.sh does)"
    );
    let mut cmd = Command::new("node");
    cmd.current_dir(&dir).args(["client.js", "127.0.0.1", &port.to_string(), "app", "app", &db]);
    run(cmd, &format!("node client on port {port}"))
}

#[tokio::test]
async fn node_mysql2_sees_the_same_through_the_proxy_as_directly() {
    let cluster = Cluster::shared().await;
    let mut config = cluster.config();
    // Read-your-writes, so a read right after the script's own write sees it (as directly).
    config.routing.consistency = rwsplit::config::Consistency::Session;
    let proxy = TestProxy::start_with(cluster, config).await;
    let (d, db) = (fresh_db(&proxy.cluster, "nodec").await, fresh_db(&proxy.cluster, "nodec").await);
    let (port, primary) = (proxy.port(), proxy.cluster.primary);
    let direct = blocking(move || node_client(primary, d)).await;
    let proxied = blocking(move || node_client(port, db)).await;
    assert!(direct.ends_with("done: ok\n"), "direct run incomplete:\n{direct}");
    let bad = unexplained(&direct, &proxied, &[ALLOWED, KNOWN_BUGS]);
    assert!(bad.is_empty(), "{} unexplained differences:\n{}", bad.len(), bad.join("\n"));
}
