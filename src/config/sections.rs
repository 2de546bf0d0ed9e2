//! The single-table sections of the config file: `[listen]`, `[server]`, `[admin]`, `[pool]`,
//! `[monitor]`, `[routing]` and `[logging]`.
//!
//! Every section may be left out and every key in it is optional: a missing key takes the value of
//! the section's `Default` impl, which is the one place each default is written down.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::redact;

/// `[listen]`: the sockets the proxy binds.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenConfig {
    /// Address of the MySQL-protocol listener for clients. Default `"127.0.0.1:6033"`. Not reloadable.
    pub mysql: SocketAddr,
    /// Address of the MySQL-protocol admin interface. Default `"127.0.0.1:6032"`. Not reloadable.
    pub admin: SocketAddr,
    /// Address of the HTTP endpoint (`/metrics`, `/live`, `/ready`, `/backends`, `POST /reload`).
    /// Default `"127.0.0.1:6070"`. Not reloadable.
    pub http: SocketAddr,
    /// Logged-in client sessions at once; a login beyond it is refused with ERR 1040. Connections
    /// still in the handshake do not count (see `max_handshakes`). Must be > 0. Default `10000`.
    /// Reloadable.
    pub max_client_connections: u32,
    /// Connections in the handshake (not logged in yet) at once; one more cuts off the oldest
    /// (silent or trickling sockets, never a client that logs in promptly). Must be > 0.
    /// Default `256`. Reloadable.
    pub max_handshakes: u32,
    /// Listen backlog of the client listener (connections the kernel queues before they are
    /// accepted, for bursts). Must be > 0. Default `1024`. Not reloadable.
    pub backlog: u32,
    /// Failed logins from one address (client and admin ports together) after which its logins
    /// are refused (ERR 1129) until failures drain; `0` turns the brake off. Default `20`.
    /// Reloadable.
    pub max_auth_failures: u32,
    /// Time for one failed login to be forgiven. Must be > 0. Default `"30s"`. Reloadable.
    #[serde(with = "humantime_serde")]
    pub auth_failure_decay: Duration,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            mysql: localhost(6033),
            admin: localhost(6032),
            http: localhost(6070),
            max_client_connections: 10_000,
            max_handshakes: 256,
            backlog: 1024,
            max_auth_failures: 20,
            auth_failure_decay: Duration::from_secs(30),
        }
    }
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// `[server]`: how the proxy presents itself to clients.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Server version string sent in the handshake; `""` mirrors the primary's. Must not contain
    /// NUL. Default `""`. Reloadable (new connections).
    pub version: String,
    /// Time a client has to finish handshake and authentication. Must be > 0. Default `"10s"`.
    /// Reloadable (new connections).
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Idle client connections are closed after this, like MySQL's `wait_timeout`. Must be > 0.
    /// Default `"8h"`. Reloadable.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Largest client command payload in bytes (`max_allowed_packet`), 1024..=1073741824.
    /// Default `67108864` (64 MiB). Reloadable (new connections).
    pub max_packet_size: u64,
    /// `SEND_LONG_DATA` bytes one session may have buffered at once, over all its statements
    /// (each statement is also limited to `max_packet_size`). A chunk beyond it is dropped and the
    /// statement's next execute fails, as the server fails one whose long data passed
    /// `max_allowed_packet`. Default `134217728` (128 MiB). Reloadable.
    pub max_session_long_data: u64,
    /// Prepared statements one session may keep open, like the server's
    /// `max_prepared_stmt_count` (ERR 1461 beyond it). Default `1024`. Reloadable.
    pub max_prepared_per_session: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            version: String::new(),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(8 * 3600),
            max_packet_size: 64 * 1024 * 1024,
            max_session_long_data: 128 * 1024 * 1024,
            max_prepared_per_session: 1024,
        }
    }
}

/// `[admin]`: credentials of the MySQL-protocol admin interface.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Admin user name. Must not be empty. Default `"admin"`. Reloadable.
    pub user: String,
    /// Admin password, plain text. Default `"admin"`, refused (with `""`) when `listen.admin`
    /// is not a loopback address. Reloadable. Serialized as `"<redacted>"`.
    #[serde(serialize_with = "redact")]
    pub password: String,
    /// Bearer token the HTTP control endpoints (`POST /reload`, `GET /backends`) require in an
    /// `Authorization: Bearer ..` header; `/metrics`, `/live` and `/ready` stay open. `""` leaves
    /// them open, which is refused when `listen.http` is not a loopback address. Default `""`.
    /// Reloadable. Serialized as `"<redacted>"`.
    #[serde(serialize_with = "redact")]
    pub http_token: String,
    /// File holding `http_token` (one trailing newline removed), instead of `http_token`.
    /// Default unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_token_file: Option<std::path::PathBuf>,
    /// Environment variable holding `http_token`, instead of `http_token`. Default unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_token_env: Option<String>,
    /// File holding `password` (one trailing newline removed), instead of `password`. Default unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<std::path::PathBuf>,
    /// Environment variable holding `password`, instead of `password`. Default unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            user: "admin".into(),
            password: "admin".into(),
            http_token: String::new(),
            http_token_file: None,
            http_token_env: None,
            password_file: None,
            password_env: None,
        }
    }
}

/// `[pool]`: backend connection pools, one per (backend, user).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Most connections to one backend over all of its pools (every user, client flags,
    /// collation, schema or not), idle or in use. Must be > 0. Default `50`. Reloadable.
    pub max_connections_per_backend: u32,
    /// Idle connections each pool keeps open. Must be <= `max_connections_per_backend`.
    /// Default `0`. Reloadable (pools are rebuilt).
    pub min_idle: u32,
    /// Time allowed to connect and authenticate to a backend. Must be > 0. Default `"2s"`. Reloadable.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time a statement waits for a free pooled connection before failing. Must be > 0.
    /// Default `"2s"`. Reloadable.
    #[serde(with = "humantime_serde")]
    pub checkout_timeout: Duration,
    /// Idle pooled connections are closed after this. Must be > 0. Default `"10m"`. Reloadable.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Pooled connections are closed once this old (when next idle). Must be > 0. Default `"30m"`.
    /// Reloadable.
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// How long the proxy waits for a backend's next response packet before giving up on the
    /// connection. Must be > 0. Default `"1h"`. Reloadable.
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    /// How long a read sent to a replica may wait for the replica's next response packet before
    /// the proxy gives up on that connection (the client gets ERR 1158 (08S01), the connection is closed,
    /// not pooled). A replica the monitor marks down meanwhile is given up at once (a read that sent
    /// nothing to the client yet is retried on another replica). Bounded by `query_timeout`. Must be
    /// > 0. Default `"30s"`. Reloadable.
    #[serde(with = "humantime_serde")]
    pub replica_read_timeout: Duration,
    /// Prepared statements each backend connection keeps open at most; the least recently used is
    /// closed beyond this (keep it well below the server's `max_prepared_stmt_count` divided by
    /// the number of connections). 1..=65536. Default `256`. Reloadable (new connections).
    pub max_prepared_per_connection: u32,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections_per_backend: 50,
            min_idle: 0,
            connect_timeout: Duration::from_secs(2),
            checkout_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10 * 60),
            max_lifetime: Duration::from_secs(30 * 60),
            query_timeout: Duration::from_secs(3600),
            replica_read_timeout: Duration::from_secs(30),
            max_prepared_per_connection: 256,
        }
    }
}

/// `[monitor]`: health and role probes of every backend.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// MySQL user for probes; needs `REPLICATION CLIENT` (or `SLAVE MONITOR`/`REPLICA MONITOR` on
    /// MariaDB). Must not be empty. Default `"monitor"`. Reloadable.
    pub user: String,
    /// Password of the monitor user. Default `"monitor"`. Reloadable. Serialized as `"<redacted>"`.
    #[serde(serialize_with = "redact")]
    pub password: String,
    /// File holding `password` (one trailing newline removed), instead of `password`. Default unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<std::path::PathBuf>,
    /// Environment variable holding `password`, instead of `password`. Default unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// Time between two probes of one backend. Must be > 0. Default `"1s"`. Reloadable.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Time one probe may take. Must be > 0 and <= `interval`. Default `"1s"`. Reloadable.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive failed probes before a backend is marked down. Must be >= 1. Default `3`. Reloadable.
    pub failure_threshold: u32,
    /// Consecutive good probes before a down backend is marked up. Must be >= 1. Default `1`. Reloadable.
    pub success_threshold: u32,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            user: "monitor".into(),
            password: "monitor".into(),
            password_file: None,
            password_env: None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            failure_threshold: 3,
            success_threshold: 1,
        }
    }
}

/// `[routing]`: where reads may go.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Replicas lagging more than this leave read rotation (they return at or below half of it).
    /// Default `"10s"`. Reloadable.
    #[serde(with = "humantime_serde")]
    pub max_replication_lag: Duration,
    /// Read consistency. Default `"eventual"`. Reloadable (from the next statement).
    pub consistency: Consistency,
    /// How long a statement bound for the primary waits while none is known, or the known one
    /// refuses connections (failover), before failing. Default `"5s"`. Reloadable.
    #[serde(with = "humantime_serde")]
    pub failover_hold: Duration,
    /// What a read does when no replica is usable. Default `"primary"`. Reloadable.
    pub no_replica: NoReplica,
    /// Retry a read once on another replica when it failed before any response byte reached the
    /// client. Default `true`. Reloadable.
    pub retry_reads: bool,
    /// Where a read that calls a function not known to be a read-only builtin (a stored
    /// function, a schema-qualified or back-quoted name) goes. Default `"primary"`. Reloadable.
    pub unknown_functions: UnknownFunctions,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            max_replication_lag: Duration::from_secs(10),
            consistency: Consistency::Eventual,
            failover_hold: Duration::from_secs(5),
            no_replica: NoReplica::Primary,
            retry_reads: true,
            unknown_functions: UnknownFunctions::Primary,
        }
    }
}

/// Read consistency offered to client sessions (`routing.consistency`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// `"eventual"`: reads go to any replica within `max_replication_lag`.
    Eventual,
    /// `"session"`: read-your-writes; after a write, reads go only to replicas whose GTID position
    /// covers the session's last write, else to the primary.
    Session,
}

/// What a read does when no replica is usable (`routing.no_replica`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoReplica {
    /// `"primary"`: run it on the primary.
    Primary,
    /// `"error"`: fail it with an error to the client.
    Error,
}

/// Where reads calling unknown functions go (`routing.unknown_functions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownFunctions {
    /// `"primary"`: such a function may write (a stored function that inserts), so the read runs
    /// on the primary.
    Primary,
    /// `"replica"`: the operator knows every stored function is read-only; such reads may run on
    /// replicas like any other.
    Replica,
}

/// `[logging]`: the `tracing` subscriber.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// `tracing` `EnvFilter` directives, e.g. `"info"` or `"info,rwsplit::router=debug"`. Must not
    /// be empty. Default `"info"`. Reloadable.
    pub level: String,
    /// Output format. Default `"pretty"`. Not reloadable.
    pub format: LogFormat,
    /// Statements slower than this are logged; `"0s"` disables. Default `"1s"`. Reloadable.
    #[serde(with = "humantime_serde")]
    pub slow_query: Duration,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self { level: "info".into(), format: LogFormat::Pretty, slow_query: Duration::from_secs(1) }
    }
}

/// Log output format (`logging.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// `"pretty"`: human-readable lines.
    Pretty,
    /// `"json"`: one JSON object per line.
    Json,
}
