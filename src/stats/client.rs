//! Client-side metrics: connections, statements by route and result, latency, bytes.
//! Every per-statement handle is resolved at registration, so recording a statement is a few
//! atomic adds.

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::Error;

/// Where a statement ran (`route` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteLabel {
    /// On the primary.
    Primary = 0,
    /// On a replica.
    Replica = 1,
}

impl RouteLabel {
    /// Both routes, in index order.
    pub const ALL: [RouteLabel; 2] = [RouteLabel::Primary, RouteLabel::Replica];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            RouteLabel::Primary => "primary",
            RouteLabel::Replica => "replica",
        }
    }
}

/// How a statement ended (`result` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryResult {
    /// A complete response without error reached the client.
    Ok = 0,
    /// The server answered with an error (bad SQL, duplicate key, ...).
    Error = 1,
    /// No complete response reached the client: no backend, checkout failure, backend lost, or
    /// the client went away.
    Failed = 2,
}

impl QueryResult {
    /// Every result, in index order.
    pub const ALL: [QueryResult; 3] = [QueryResult::Ok, QueryResult::Error, QueryResult::Failed];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            QueryResult::Ok => "ok",
            QueryResult::Error => "error",
            QueryResult::Failed => "failed",
        }
    }
}

/// Why a client connection was refused before its session started (`reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// `listen.max_client_connections` reached.
    MaxConnections = 0,
    /// The user's `max_connections` reached.
    UserLimit = 1,
    /// Unknown user or wrong password (the client got ERR 1045).
    AccessDenied = 2,
    /// `tls.mode = "required"` and the client did not start TLS (ERR 3159).
    TlsRequired = 3,
    /// Cut off in the handshake to make room for a newer connection (`listen.max_handshakes`).
    HandshakeEvicted = 4,
    /// Too many failed logins from the address (`listen.max_auth_failures`, ERR 1129).
    Blocked = 5,
}

impl Reject {
    /// Every reason, in index order.
    pub const ALL: [Reject; 6] = [
        Reject::MaxConnections,
        Reject::UserLimit,
        Reject::AccessDenied,
        Reject::TlsRequired,
        Reject::HandshakeEvicted,
        Reject::Blocked,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Reject::MaxConnections => "max_connections",
            Reject::UserLimit => "user_limit",
            Reject::AccessDenied => "access_denied",
            Reject::TlsRequired => "tls_required",
            Reject::HandshakeEvicted => "handshake_evicted",
            Reject::Blocked => "blocked",
        }
    }
}

/// How a client broke the protocol (`reason` label of `rwsplit_client_protocol_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolFault {
    /// A packet that does not parse (handshake response, `COM_CHANGE_USER`, `COM_PROCESS_KILL`).
    Malformed = 0,
    /// A packet over `server.max_packet_size` (or the handshake limit).
    TooLarge = 1,
    /// A continuation frame with the wrong sequence id.
    OutOfOrder = 2,
    /// The connection closed in the middle of a packet.
    Truncated = 3,
    /// A command byte the proxy does not know.
    UnknownCommand = 4,
}

impl ProtocolFault {
    /// Every reason, in index order.
    pub const ALL: [ProtocolFault; 5] = [
        ProtocolFault::Malformed,
        ProtocolFault::TooLarge,
        ProtocolFault::OutOfOrder,
        ProtocolFault::Truncated,
        ProtocolFault::UnknownCommand,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            ProtocolFault::Malformed => "malformed",
            ProtocolFault::TooLarge => "too_large",
            ProtocolFault::OutOfOrder => "out_of_order",
            ProtocolFault::Truncated => "truncated",
            ProtocolFault::UnknownCommand => "unknown_command",
        }
    }
}

/// Latency buckets in seconds: 100 µs to about 26 s, doubling.
fn latency_buckets() -> Result<Vec<f64>, Error> {
    Ok(prometheus::exponential_buckets(0.0001, 2.0, 18)?)
}

/// Client connection and statement metrics.
#[derive(Debug)]
pub struct ClientMetrics {
    /// `rwsplit_client_connections`: open now (set at scrape time from the frontend's count).
    pub connections: IntGauge,
    /// `rwsplit_client_connections_accepted_total`: TCP connections accepted.
    pub accepted: IntCounter,
    rejected: [IntCounter; Reject::ALL.len()],
    protocol_errors: [IntCounter; ProtocolFault::ALL.len()],
    queries: [[IntCounter; 3]; 2],
    latency: [Histogram; 2],
    /// `rwsplit_client_received_bytes_total`: command bytes read from clients.
    pub received_bytes: IntCounter,
    /// `rwsplit_client_sent_bytes_total`: bytes written to clients.
    pub sent_bytes: IntCounter,
    /// `rwsplit_slow_queries_total`: statements slower than `logging.slow_query`.
    pub slow_queries: IntCounter,
}

impl ClientMetrics {
    /// Registers the client metrics on `reg`.
    pub fn register(reg: &Registry) -> Result<Self, Error> {
        let connections = IntGauge::new("client_connections", "Client connections open")?;
        let accepted = IntCounter::new("client_connections_accepted_total", "Client TCP connections accepted")?;
        let rejected = IntCounterVec::new(
            Opts::new("client_connections_rejected_total", "Client connections refused before their session started"),
            &["reason"],
        )?;
        let protocol_errors = IntCounterVec::new(
            Opts::new("client_protocol_errors_total", "Client packets that broke the protocol, by reason"),
            &["reason"],
        )?;
        let queries = IntCounterVec::new(
            Opts::new(
                "queries_total",
                "Statements proxied, by route (primary, replica) and result (ok, error, failed)",
            ),
            &["route", "result"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("query_duration_seconds", "Statement latency seen by clients, by route")
                .buckets(latency_buckets()?),
            &["route"],
        )?;
        let received_bytes = IntCounter::new("client_received_bytes_total", "Command bytes read from clients")?;
        let sent_bytes = IntCounter::new("client_sent_bytes_total", "Bytes written to clients")?;
        let slow_queries = IntCounter::new("slow_queries_total", "Statements slower than logging.slow_query")?;
        reg.register(Box::new(connections.clone()))?;
        reg.register(Box::new(accepted.clone()))?;
        reg.register(Box::new(rejected.clone()))?;
        reg.register(Box::new(protocol_errors.clone()))?;
        reg.register(Box::new(queries.clone()))?;
        reg.register(Box::new(latency.clone()))?;
        reg.register(Box::new(received_bytes.clone()))?;
        reg.register(Box::new(sent_bytes.clone()))?;
        reg.register(Box::new(slow_queries.clone()))?;
        let rejected = Reject::ALL.map(|r| rejected.with_label_values(&[r.label()]));
        let protocol_errors = ProtocolFault::ALL.map(|f| protocol_errors.with_label_values(&[f.label()]));
        let queries = RouteLabel::ALL
            .map(|route| QueryResult::ALL.map(|res| queries.with_label_values(&[route.label(), res.label()])));
        let latency = RouteLabel::ALL.map(|route| latency.with_label_values(&[route.label()]));
        Ok(Self {
            connections,
            accepted,
            rejected,
            protocol_errors,
            queries,
            latency,
            received_bytes,
            sent_bytes,
            slow_queries,
        })
    }

    /// Records one statement, whatever its result (a checkout timeout is latency a client saw).
    pub fn query(&self, route: RouteLabel, result: QueryResult, elapsed: Duration) {
        self.queries[route as usize][result as usize].inc();
        self.latency[route as usize].observe(elapsed.as_secs_f64());
    }

    /// Statements counted so far for `route` and `result`.
    pub fn queries(&self, route: RouteLabel, result: QueryResult) -> u64 {
        self.queries[route as usize][result as usize].get()
    }

    /// Counts one refused connection.
    pub fn reject(&self, reason: Reject) {
        self.rejected[reason as usize].inc();
    }

    /// Counts one protocol error of a client.
    pub fn protocol_error(&self, fault: ProtocolFault) {
        self.protocol_errors[fault as usize].inc();
    }

    /// Protocol errors counted so far for `fault`.
    pub fn protocol_errors(&self, fault: ProtocolFault) -> u64 {
        self.protocol_errors[fault as usize].get()
    }
}
