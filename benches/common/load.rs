//! What the harness-less load tools (`connscale`, `fairness`) share: settings from the
//! environment, the login, and sysbench point selects. Included with `#[path]`.

use anyhow::{Context, Result};
use mysql_async::{Opts, OptsBuilder};

/// The variable `name` parsed, or `default` when it is not set.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) => v.parse().ok().with_context(|| format!("{name}={v:?} is not valid")),
        Err(_) => Ok(default),
    }
}

/// Where and as whom the tool connects, and the sysbench tables it reads.
pub struct Login {
    pub port: u16,
    pub db: String,
    pub user: String,
    pub password: String,
    pub tables: u32,
    pub rows: u32,
}

impl Login {
    /// From `<PREFIX>_DB`, `_USER`, `_PASSWORD`, `_TABLES`, `_ROWS` (defaults sbtest, app, app, 4,
    /// 10000).
    pub fn from_env(prefix: &str, port: u16) -> Result<Self> {
        let var = |name: &str| format!("{prefix}_{name}");
        Ok(Self {
            port,
            db: env_or(&var("DB"), "sbtest".to_owned())?,
            user: env_or(&var("USER"), "app".to_owned())?,
            password: env_or(&var("PASSWORD"), "app".to_owned())?,
            tables: env_or(&var("TABLES"), 4)?,
            rows: env_or(&var("ROWS"), 10000)?,
        })
    }

    /// Connection options over TCP to 127.0.0.1, announcing `max_allowed_packet`.
    pub fn opts(&self, max_allowed_packet: usize) -> Opts {
        OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .user(Some(&self.user))
            .pass(Some(&self.password))
            .db_name(Some(&self.db))
            .prefer_socket(false)
            // Known values: mysql_async then skips its `SELECT @@max_allowed_packet, ...` at login.
            .max_allowed_packet(Some(max_allowed_packet))
            .wait_timeout(Some(28_800))
            .into()
    }

    /// A sysbench point select for the `n`th call.
    pub fn point_select(&self, n: u64) -> String {
        let table = n % u64::from(self.tables.max(1)) + 1;
        let id = n.wrapping_mul(2_654_435_761) % u64::from(self.rows.max(1)) + 1;
        format!("SELECT c FROM sbtest{table} WHERE id={id}")
    }
}
