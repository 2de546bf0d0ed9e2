//! Prepared statements answer exactly what the server answers now, and one client's statement
//! never touches another's (issue 12, item 1): metadata after the table changed, errors and
//! warnings raised at prepare time, long data that puts a backend statement in error, and backend
//! statements closed once their client closed them.

mod common;

use common::raw::{err_code, RawClient};
use common::{direct_opts, fresh_db, Cluster, TestProxy};
use mysql_async::prelude::*;
use mysql_async::Conn;

/// `COM_STMT_*` payload: command, statement id, rest.
fn stmt_payload(cmd: u8, id: u32, rest: &[u8]) -> Vec<u8> {
    let mut p = vec![cmd];
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(rest);
    p
}

/// What a raw `COM_STMT_PREPARE` got: `Ok((id, columns, params, warnings))` or the ERR code.
async fn raw_prepare(client: &mut RawClient, sql: &str) -> Result<(u32, u16, u16, u16), u16> {
    let mut p = vec![0x16];
    p.extend_from_slice(sql.as_bytes());
    client.send_packet(0, &p).await;
    let (_, ok) = client.read_packet().await.expect("prepare reply");
    if ok[0] == 0xFF {
        return Err(err_code(&ok).expect("an ERR packet").0);
    }
    let id = u32::from_le_bytes([ok[1], ok[2], ok[3], ok[4]]);
    let columns = u16::from_le_bytes([ok[5], ok[6]]);
    let params = u16::from_le_bytes([ok[7], ok[8]]);
    let warnings = u16::from_le_bytes([ok[10], ok[11]]);
    // Deprecate-EOF clients (RawClient::login negotiates it): no EOF after the definitions.
    for _ in 0..(columns + params) {
        client.read_packet().await.expect("definition");
    }
    Ok((id, columns, params, warnings))
}

/// A `COM_STMT_EXECUTE` of a one-parameter statement binding a `LONGLONG` value.
fn execute_one_int(id: u32, value: i64) -> Vec<u8> {
    let mut rest = vec![0, 1, 0, 0, 0, 0, 1, 8, 0];
    rest.extend_from_slice(&value.to_le_bytes());
    stmt_payload(0x17, id, &rest)
}

/// A `COM_STMT_EXECUTE` of a one-parameter statement whose value was sent as long data.
fn execute_one_blob(id: u32) -> Vec<u8> {
    stmt_payload(0x17, id, &[0, 1, 0, 0, 0, 0, 1, 252, 0])
}

/// First byte of the reply (0x00 OK, 0xFF ERR) and the ERR code, if any.
async fn reply_code(client: &mut RawClient) -> Option<u16> {
    let packets = client.query_reply(true).await;
    let first = packets.first().expect("a reply");
    (first[0] == 0xFF).then(|| err_code(first).expect("ERR").0)
}

#[tokio::test]
async fn a_prepare_returns_the_metadata_the_server_has_now() {
    let cluster = Cluster::shared().await;
    let db = fresh_db(&cluster, "psmeta").await;
    let mut primary = cluster.primary_conn().await;
    primary.query_drop(format!("CREATE TABLE `{db}`.t (a INT, b INT)")).await.unwrap();
    cluster.wait_replicas().await;
    let proxy = TestProxy::start(cluster.clone()).await;
    let sql = format!("SELECT * FROM `{db}`.t");

    let mut first = proxy.connect().await;
    let stmt = first.prep(&sql).await.unwrap();
    assert_eq!(stmt.columns().len(), 2);
    first.close(stmt).await.unwrap();
    first.disconnect().await.unwrap();

    primary.query_drop(format!("DROP TABLE `{db}`.t")).await.unwrap();
    primary.query_drop(format!("CREATE TABLE `{db}`.t (a INT, b INT, c INT, d VARCHAR(5))")).await.unwrap();
    cluster.wait_replicas().await;

    let mut direct = Conn::new(direct_opts(cluster.primary, None)).await.unwrap();
    let want: Vec<String> =
        direct.prep(&sql).await.unwrap().columns().iter().map(|c| c.name_str().into_owned()).collect();
    let mut second = proxy.connect().await;
    let stmt = second.prep(&sql).await.unwrap();
    let got: Vec<String> = stmt.columns().iter().map(|c| c.name_str().into_owned()).collect();
    assert_eq!(got, want, "the prepare answers the table as it is now, like a direct connection");
    let row: Option<mysql_async::Row> = second.exec_first(&stmt, ()).await.unwrap();
    assert!(row.is_none(), "the new table is empty");
    primary.query_drop(format!("DROP DATABASE `{db}`")).await.unwrap();
}

#[tokio::test]
async fn prepare_errors_and_warnings_are_the_servers() {
    let cluster = Cluster::shared().await;
    let proxy = TestProxy::start(cluster.clone()).await;
    let (mut through, _) = RawClient::login(proxy.port(), "app", "app").await;
    let (mut direct, _) = RawClient::login(cluster.primary, "app", "app").await;
    for sql in ["CREATE TABLE BIT_AND (a int)", "SELECT 1 FROM dual WHERE 1/0", "SELECT ? + 1, 'x' AS y", "SELEC 1"] {
        // Twice each: the second prepare of the same text must not come from a cache.
        for round in 0..2 {
            let want = raw_prepare(&mut direct, sql).await.map(|(_, c, p, w)| (c, p, w));
            let got = raw_prepare(&mut through, sql).await.map(|(_, c, p, w)| (c, p, w));
            assert_eq!(got, want, "{sql} (prepare {round}): (columns, params, warnings) or the error code");
        }
    }
}

#[tokio::test]
async fn one_clients_long_data_never_breaks_another_clients_statement() {
    let cluster = Cluster::shared().await;
    let mut config = cluster.config();
    // One connection per backend: both clients' statements run on the same primary connection.
    config.pool.max_connections_per_backend = 1;
    let proxy = TestProxy::start_with(cluster.clone(), config).await;
    let sql = "DO LENGTH(?)";

    // What a direct connection does: long data for parameter 500, execute, then reset.
    let (mut direct, _) = RawClient::login(cluster.primary, "app", "app").await;
    let (did, ..) = raw_prepare(&mut direct, sql).await.unwrap();
    let (mut a, _) = RawClient::login(proxy.port(), "app", "app").await;
    let (mut b, _) = RawClient::login(proxy.port(), "app", "app").await;
    let (aid, ..) = raw_prepare(&mut a, sql).await.unwrap();
    let (bid, ..) = raw_prepare(&mut b, sql).await.unwrap();
    b.send_packet(0, &execute_one_int(bid, 7)).await;
    assert_eq!(reply_code(&mut b).await, None);

    let mut steps = Vec::new();
    for (client, id) in [(&mut direct, did), (&mut a, aid)] {
        let mut rest = 500u16.to_le_bytes().to_vec();
        rest.extend_from_slice(b"data");
        client.send_packet(0, &stmt_payload(0x18, id, &rest)).await;
        client.send_packet(0, &execute_one_blob(id)).await;
        let failed = reply_code(client).await;
        client.send_packet(0, &execute_one_int(id, 1)).await;
        let again = reply_code(client).await;
        steps.push((failed, again));
    }
    assert!(steps[0].0.is_some(), "the server refuses long data for parameter 500: {steps:?}");
    assert_eq!(steps[1], steps[0], "through the proxy the client sees what a direct client sees");

    // Another client's execute of the same SQL, on the same backend connection, is untouched.
    b.send_packet(0, &execute_one_int(bid, 7)).await;
    assert_eq!(reply_code(&mut b).await, None, "client B's statement is its own");

    // COM_STMT_RESET clears the statement as the server's reset does.
    for (client, id) in [(&mut direct, did), (&mut a, aid)] {
        client.send_packet(0, &stmt_payload(0x1A, id, &[])).await;
        assert_eq!(reply_code(client).await, None, "reset answers OK");
        client.send_packet(0, &execute_one_int(id, 3)).await;
        assert_eq!(reply_code(client).await, None, "after a reset the statement executes again");
    }
}

#[tokio::test]
async fn statements_a_client_closed_are_closed_on_the_backend() {
    let cluster = Cluster::shared().await;
    let mut config = cluster.config();
    config.pool.max_connections_per_backend = 1;
    let proxy = TestProxy::start_with(cluster, config).await;
    let mut conn = proxy.connect().await;
    for i in 0..40 {
        let stmt = conn.prep(format!("DO ? + {i}")).await.unwrap();
        conn.exec_drop(&stmt, (1,)).await.unwrap();
        conn.close(stmt).await.unwrap();
    }
    let stmt = conn.prep("DO ? + 1000").await.unwrap();
    conn.exec_drop(&stmt, (1,)).await.unwrap();
    // Prepared statements the proxy's backend connections hold, over every backend.
    let open = common::ops::metric(&proxy.handle, "rwsplit_prepared_statements", &[]);
    assert!(open <= 2.0, "{open} statements open on the backends after the client closed all but one");
}
