//! The MySQL-protocol admin port on opensrv-mysql: `mysql -h127.0.0.1 -P6032 -uadmin -padmin`.
//!
//! Login is `mysql_native_password` against `admin.user` / `admin.password` with a fresh random
//! scramble per connection (opensrv's default is constant; it asks for the scramble twice, so it
//! is drawn once and kept). Statements go to [`super::execute`]; every answer is text.
//! Prepared statements are refused. One task per connection; both socket halves have deadlines,
//! and every byte the client sends passes [`Guard`] (frame sizes, a whole-handshake deadline)
//! before opensrv-mysql reads it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opensrv_mysql::{
    AsyncMysqlIntermediary, AsyncMysqlShim, Column, ColumnFlags, ColumnType, ErrorKind, InitWriter, OkResponse,
    ParamParser, QueryResultWriter, StatementMetaWriter,
};
use tokio::io::AsyncWrite;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::deadline::Deadline;
use super::guard::Guard;
use super::{Answer, Context};
use crate::protocol::auth::{native_hash, new_scramble, verify_native};

/// How long a write to an admin client may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// One admin connection.
struct Shim {
    ctx: Arc<Context>,
    id: u32,
    scramble: [u8; 20],
    peer: std::net::SocketAddr,
}

#[async_trait::async_trait]
impl<W: AsyncWrite + Send + Unpin> AsyncMysqlShim<W> for Shim {
    type Error = std::io::Error;

    fn version(&self) -> String {
        format!("8.0.0-rwsplit-admin-{}", env!("CARGO_PKG_VERSION"))
    }

    fn connect_id(&self) -> u32 {
        self.id
    }

    fn salt(&self) -> [u8; 20] {
        self.scramble
    }

    async fn authenticate(&self, _plugin: &str, user: &[u8], salt: &[u8], auth_data: &[u8]) -> bool {
        let shared = &self.ctx.shared;
        if shared.is_login_blocked(self.peer) {
            shared.ops.metrics.clients.reject(crate::stats::Reject::Blocked);
            return false;
        }
        let config = shared.config.load();
        let expected = (!config.admin.password.is_empty()).then(|| native_hash(config.admin.password.as_bytes()));
        let ok = user == config.admin.user.as_bytes() && verify_native(salt, auth_data, expected.as_ref());
        if !ok {
            shared.login_failed(self.peer, "admin");
        }
        ok
    }

    async fn on_prepare<'a>(
        &'a mut self,
        _query: &'a str,
        info: StatementMetaWriter<'a, W>,
    ) -> Result<(), Self::Error> {
        info.error(ErrorKind::ER_NOT_SUPPORTED_YET, b"the admin interface has no prepared statements".as_slice()).await
    }

    async fn on_execute<'a>(
        &'a mut self,
        _id: u32,
        _params: ParamParser<'a>,
        results: QueryResultWriter<'a, W>,
    ) -> Result<(), Self::Error> {
        results
            .error(ErrorKind::ER_NOT_SUPPORTED_YET, b"the admin interface has no prepared statements".as_slice())
            .await
    }

    async fn on_close<'a>(&'a mut self, _stmt: u32)
    where
        W: 'async_trait,
    {
    }

    async fn on_query<'a>(&'a mut self, query: &'a str, results: QueryResultWriter<'a, W>) -> Result<(), Self::Error> {
        tracing::debug!(admin_conn = self.id, "admin statement");
        write_answer(super::execute(&self.ctx, query).await, results).await
    }

    async fn on_init<'a>(&'a mut self, _schema: &'a str, writer: InitWriter<'a, W>) -> Result<(), Self::Error> {
        // The admin interface has no schemas; `USE` and `mysql -D` are accepted and ignored.
        writer.ok().await
    }
}

async fn write_answer<W: AsyncWrite + Send + Unpin>(
    answer: Answer,
    results: QueryResultWriter<'_, W>,
) -> std::io::Result<()> {
    match answer {
        Answer::Table(table) => {
            let columns: Vec<Column> = table
                .columns
                .iter()
                .map(|name| Column {
                    table: String::new(),
                    column: (*name).to_owned(),
                    coltype: ColumnType::MYSQL_TYPE_VAR_STRING,
                    colflags: ColumnFlags::empty(),
                })
                .collect();
            let mut rows = results.start(&columns).await?;
            for row in table.rows {
                for cell in row {
                    rows.write_col(cell)?;
                }
                rows.end_row().await?;
            }
            rows.finish().await
        }
        Answer::Done(info) => results.completed(OkResponse { affected_rows: 0, info, ..OkResponse::default() }).await,
        Answer::Error(message) => results.error(ErrorKind::ER_UNKNOWN_ERROR, message.as_bytes()).await,
    }
}

/// Serves the admin port until `stop` turns true.
pub async fn serve(listener: TcpListener, ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    let ids = AtomicU32::new(1);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                tracing::warn!(error = %err, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if let Err(err) = connection(stream, peer, ctx, id).await {
                tracing::debug!(admin_conn = id, client_addr = %peer, error = %err, "admin connection ended");
            }
        });
    }
}

async fn connection(stream: TcpStream, peer: std::net::SocketAddr, ctx: Arc<Context>, id: u32) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (handshake, idle) = {
        let config = ctx.shared.config.load();
        (config.server.handshake_timeout, config.server.idle_timeout)
    };
    let (read, write) = stream.into_split();
    let read = Guard::new(Deadline::new(read, handshake, idle), handshake);
    let write = Deadline::new(write, WRITE_TIMEOUT, WRITE_TIMEOUT);
    let shim = Shim { ctx, id, scramble: new_scramble(), peer };
    AsyncMysqlIntermediary::run_on(shim, read, write).await
}
