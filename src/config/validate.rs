//! Whole-config checks: every rule the types alone cannot express. Each check adds to one list
//! instead of returning early, so an operator sees everything wrong with a file at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use humantime_serde::re::humantime::format_duration;

use super::{
    AdminConfig, BackendConfig, Config, ListenConfig, LoggingConfig, MonitorConfig, PoolConfig, Problem, Role,
    ServerConfig, UserConfig,
};

/// Smallest and largest accepted `server.max_packet_size`, as MySQL's `max_allowed_packet`.
const PACKET_SIZE_RANGE: std::ops::RangeInclusive<u64> = 1024..=1024 * 1024 * 1024;

/// Every problem in `config`, in section order; empty when it is valid.
pub(super) fn problems(config: &Config) -> Vec<Problem> {
    let mut out = Problems::default();
    listen(&config.listen, &mut out);
    server(&config.server, &mut out);
    admin(&config.admin, &config.listen, &mut out);
    backends(&config.backends, &mut out);
    users(&config.users, &mut out);
    pool(&config.pool, &mut out);
    monitor(&config.monitor, &mut out);
    logging(&config.logging, &mut out);
    stats(&config.stats, &mut out);
    for (path, message) in super::tls::problems(&config.tls, &config.users) {
        out.add(path, message);
    }
    out.0
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem { path: path.into(), line: None, message: message.into() });
    }

    fn not_empty(&mut self, path: impl Into<String>, value: &str) {
        if value.trim().is_empty() {
            self.add(path, "must not be empty");
        }
    }

    fn positive(&mut self, path: impl Into<String>, value: Duration) {
        if value.is_zero() {
            self.add(path, "must be longer than 0s");
        }
    }

    fn at_least_one(&mut self, path: impl Into<String>, value: u32) {
        if value == 0 {
            self.add(path, "must be at least 1");
        }
    }
}

fn listen(listen: &ListenConfig, out: &mut Problems) {
    out.at_least_one("listen.max_client_connections", listen.max_client_connections);
    out.at_least_one("listen.max_handshakes", listen.max_handshakes);
    out.at_least_one("listen.backlog", listen.backlog);
    if listen.auth_failure_decay.is_zero() {
        out.add("listen.auth_failure_decay", "must be greater than 0");
    }
    // Port 0 asks the OS for a free port (tests do this), so only fixed ports can collide.
    let addresses = [("listen.mysql", listen.mysql), ("listen.admin", listen.admin), ("listen.http", listen.http)];
    for (index, (path, address)) in addresses.iter().enumerate() {
        let earlier = addresses.iter().take(index).find(|(_, other)| collides(*address, *other));
        if let Some((other_path, _)) = earlier {
            out.add(*path, format!("{address} is already used by {other_path}"));
        }
    }
}

fn collides(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0 && a == b
}

fn server(server: &ServerConfig, out: &mut Problems) {
    if server.version.contains('\0') {
        out.add("server.version", "must not contain a NUL character");
    }
    out.positive("server.handshake_timeout", server.handshake_timeout);
    out.positive("server.idle_timeout", server.idle_timeout);
    if server.max_prepared_per_session == 0 {
        out.add("server.max_prepared_per_session", "must be > 0".to_string());
    }
    if !PACKET_SIZE_RANGE.contains(&server.max_packet_size) {
        out.add(
            "server.max_packet_size",
            format!(
                "must be between {} and {} bytes, not {}",
                PACKET_SIZE_RANGE.start(),
                PACKET_SIZE_RANGE.end(),
                server.max_packet_size
            ),
        );
    }
}

fn admin(admin: &AdminConfig, listen: &ListenConfig, out: &mut Problems) {
    out.not_empty("admin.user", &admin.user);
    if !listen.admin.ip().is_loopback() && (admin.password.is_empty() || admin.password == "admin") {
        out.add(
            "admin.password",
            format!(
                "the admin port listens on {} (not loopback): set a password other than \"admin\" or \"\"",
                listen.admin
            ),
        );
    }
    if !listen.http.ip().is_loopback() && admin.http_token.is_empty() {
        out.add(
            "admin.http_token",
            format!(
                "the HTTP endpoint listens on {} (not loopback): set a token for POST /reload and GET /backends",
                listen.http
            ),
        );
    }
}

fn backends(backends: &[BackendConfig], out: &mut Problems) {
    if backends.is_empty() {
        out.add("backends", "at least one [[backends]] entry is required");
        return;
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut primary: Option<(usize, &BackendConfig)> = None;
    for (index, backend) in backends.iter().enumerate() {
        let at = |key: &str| format!("backends[{index}].{key}");
        let name = backend.name.as_str();
        if name.is_empty() {
            out.add(at("name"), "must not be empty");
        } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
            out.add(at("name"), format!("{name:?} may contain only letters, digits, '_', '.' and '-'"));
        }
        match names.get(name) {
            Some(first) => {
                out.add(at("name"), format!("duplicate backend name {name:?}, first used by backends[{first}]"))
            }
            None => {
                names.insert(name, index);
            }
        }
        out.not_empty(at("host"), &backend.host);
        if backend.port == 0 {
            out.add(at("port"), "must not be 0");
        }
        if backend.role == Role::Primary {
            match primary {
                Some((first, other)) => out.add(
                    at("role"),
                    format!(
                        "only one backend may have role = \"primary\"; backends[{first}] ({}) already has it",
                        other.name
                    ),
                ),
                None => primary = Some((index, backend)),
            }
        }
    }
    if primary.is_none() {
        out.add("backends", "no backend has role = \"primary\"; mark the one writes should start on");
    }
}

fn users(users: &[UserConfig], out: &mut Problems) {
    if users.is_empty() {
        out.add("users", "at least one [[users]] entry is required");
        return;
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (index, user) in users.iter().enumerate() {
        let at = |key: &str| format!("users[{index}].{key}");
        let name = user.name.as_str();
        out.not_empty(at("name"), name);
        match names.get(name) {
            Some(first) => out.add(at("name"), format!("duplicate user name {name:?}, first used by users[{first}]")),
            None => {
                names.insert(name, index);
            }
        }
        match (&user.password, &user.password_hash) {
            (Some(_), Some(_)) => out.add(at("password_hash"), "set either password or password_hash, not both"),
            (None, None) => out.add(format!("users[{index}]"), "one of password or password_hash is required"),
            (None, Some(_)) if user.backend_password.is_none() => out.add(
                at("backend_password"),
                "required when only password_hash is set: backends need a plain-text password",
            ),
            _ => {}
        }
        // The hash is a secret too, so the message describes the format instead of echoing it.
        if user.password_hash.as_deref().is_some_and(|hash| !is_native_hash(hash)) {
            out.add(
                at("password_hash"),
                "must be '*' followed by 40 hex digits, the mysql_native_password hash SHA1(SHA1(password))",
            );
        }
    }
}

fn is_native_hash(hash: &str) -> bool {
    hash.strip_prefix('*').is_some_and(|hex| hex.len() == 40 && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

fn pool(pool: &PoolConfig, out: &mut Problems) {
    out.at_least_one("pool.max_connections_per_backend", pool.max_connections_per_backend);
    if pool.min_idle > pool.max_connections_per_backend {
        out.add(
            "pool.min_idle",
            format!(
                "{} exceeds pool.max_connections_per_backend ({})",
                pool.min_idle, pool.max_connections_per_backend
            ),
        );
    }
    out.positive("pool.connect_timeout", pool.connect_timeout);
    out.positive("pool.checkout_timeout", pool.checkout_timeout);
    out.positive("pool.idle_timeout", pool.idle_timeout);
    out.positive("pool.max_lifetime", pool.max_lifetime);
    out.positive("pool.query_timeout", pool.query_timeout);
    out.positive("pool.replica_read_timeout", pool.replica_read_timeout);
    if !(1..=65536).contains(&pool.max_prepared_per_connection) {
        out.add("pool.max_prepared_per_connection", "must be between 1 and 65536".to_string());
    }
}

fn monitor(monitor: &MonitorConfig, out: &mut Problems) {
    out.not_empty("monitor.user", &monitor.user);
    out.positive("monitor.interval", monitor.interval);
    out.positive("monitor.timeout", monitor.timeout);
    if monitor.timeout > monitor.interval {
        out.add(
            "monitor.timeout",
            format!(
                "{} exceeds monitor.interval ({}); a probe must finish before the next one starts",
                format_duration(monitor.timeout),
                format_duration(monitor.interval)
            ),
        );
    }
    out.at_least_one("monitor.failure_threshold", monitor.failure_threshold);
    out.at_least_one("monitor.success_threshold", monitor.success_threshold);
}

fn logging(logging: &LoggingConfig, out: &mut Problems) {
    out.not_empty("logging.level", &logging.level);
    if !logging.level.trim().is_empty() {
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&logging.level) {
            out.add("logging.level", format!("not a valid tracing filter: {err}"));
        }
    }
}

fn stats(stats: &super::StatsConfig, out: &mut Problems) {
    if stats.digests > super::MAX_DIGESTS {
        out.add("stats.digests", format!("must be at most {}, not {}", super::MAX_DIGESTS, stats.digests));
    }
}
