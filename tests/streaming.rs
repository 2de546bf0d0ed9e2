//! Streaming through the real `rwsplit` binary: a million-row result passes with bounded proxy
//! memory, because the proxy forwards rows frame by frame and never holds a result set.

mod common;

use common::{Cluster, ProxyProcess};
use mysql_async::prelude::*;

#[tokio::test]
async fn a_million_rows_stream_with_bounded_proxy_memory() {
    let cluster = Cluster::shared().await;
    let proxy = ProxyProcess::start(&cluster).await;
    let mut conn = mysql_async::Conn::new(proxy.opts()).await.unwrap();
    let _: Option<u8> = conn.query_first("SELECT 1").await.unwrap();
    let baseline_kib = proxy.status_kib("VmRSS");

    // About 230 MB of rows: far more than the bound below.
    let mut result = conn.query_iter("SELECT seq, REPEAT('r', 200) FROM mysql.seq_1_to_1000000").await.unwrap();
    let mut count = 0u64;
    let mut sum = 0u64;
    result
        .for_each(|row: mysql_async::Row| {
            let (seq, pad): (u64, String) = mysql_async::from_row(row);
            assert_eq!(pad.len(), 200);
            count += 1;
            sum += seq;
        })
        .await
        .unwrap();
    drop(result);
    assert_eq!(count, 1_000_000);
    assert_eq!(sum, 1_000_000 * 1_000_001 / 2, "every row arrived intact and in order");

    let peak_kib = proxy.status_kib("VmHWM");
    eprintln!("proxy RSS: {baseline_kib} KiB before, peak {peak_kib} KiB");
    assert!(
        peak_kib < baseline_kib + 32 * 1024,
        "proxy peak RSS grew from {baseline_kib} KiB to {peak_kib} KiB while streaming 230 MB"
    );
}
