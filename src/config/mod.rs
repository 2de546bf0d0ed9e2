//! Configuration: the TOML schema, loading, validation and the reload diff.
//!
//! Owns the types every other module reads its settings from. It does no I/O beyond reading the
//! file in [`Config::load`], runs no tasks and holds no global state: `app` loads a [`Config`],
//! wraps it in a snapshot and hands it down; a reload loads a new one, asks
//! [`non_reloadable_changes`] and swaps it in.
//!
//! Loading happens in three steps, each usable alone:
//! 1. [`Config::from_toml`] deserializes with serde. Syntax errors, unknown keys (every struct
//!    denies them), wrong types and missing required keys stop here as one [`Error::Parse`] with
//!    line and column.
//! 2. [`Config::validate`] checks the typed config as a whole and returns every [`Problem`], each
//!    with its key path (`backends[1].port`) but without a line: the typed config has no spans.
//! 3. [`Config::parse_and_validate`] does both and fills in the lines by parsing the text once more
//!    into a tree of spans (`locate.rs`) and looking up each problem's path, or its nearest parent
//!    when the key itself is absent. Keeping spans out of the public types keeps them plain data.

mod locate;
mod members;
mod operations;
mod secrets;
mod sections;
mod tls;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, Serializer};

pub use members::{BackendConfig, BackendId, Role, UserConfig, UserName};
pub use operations::{ShutdownConfig, StatsConfig, MAX_DIGESTS};
pub use sections::{
    AdminConfig, Consistency, ListenConfig, LogFormat, LoggingConfig, MonitorConfig, NoReplica, PoolConfig,
    RoutingConfig, ServerConfig, UnknownFunctions,
};
pub use tls::{AuthPlugin, BackendTlsMode, ClientTlsMode, TlsConfig};

/// The whole config file. Every section may be omitted and then takes its defaults; `backends`
/// and `users` default to empty, which validation rejects, so `Config::default()` alone is not
/// a valid config. `Serialize` writes secrets as `"<redacted>"`, for display (`SHOW CONFIG`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[listen]`: bound sockets. Addresses not reloadable, limit reloadable.
    pub listen: ListenConfig,
    /// `[server]`: how the proxy presents itself to clients. Reloadable.
    pub server: ServerConfig,
    /// `[admin]`: admin interface credentials. Reloadable.
    pub admin: AdminConfig,
    /// `[[backends]]`: the MySQL servers, at least one, exactly one with `role = "primary"`.
    /// Default empty (invalid). Reloadable.
    pub backends: Vec<BackendConfig>,
    /// `[[users]]`: client accounts, at least one. Default empty (invalid). Reloadable.
    pub users: Vec<UserConfig>,
    /// `[pool]`: backend connection pools. Reloadable.
    pub pool: PoolConfig,
    /// `[monitor]`: backend probes. Reloadable.
    pub monitor: MonitorConfig,
    /// `[routing]`: read routing policy. Reloadable.
    pub routing: RoutingConfig,
    /// `[logging]`: log level (reloadable) and format (not reloadable).
    pub logging: LoggingConfig,
    /// `[stats]`: per-digest statistics. Reloadable.
    pub stats: StatsConfig,
    /// `[shutdown]`: graceful drain on SIGTERM / SIGINT. Reloadable.
    pub shutdown: ShutdownConfig,
    /// `[tls]`: TLS towards clients and backends, RSA key of `caching_sha2_password`. Reloadable.
    pub tls: TlsConfig,
}

impl Config {
    /// Deserializes `text` without validating it. Pure: no I/O, no environment.
    pub fn from_toml(text: &str) -> Result<Config, Error> {
        toml::from_str(text).map_err(|err| {
            let position = err.span().map(|span| locate::position(text, span.start));
            Error::Parse {
                file: None,
                line: position.map(|p| p.0),
                column: position.map(|p| p.1),
                message: err.message().to_owned(),
            }
        })
    }

    /// Checks the config as a whole and returns every problem found, not just the first.
    /// Problems carry key paths but no lines; [`Config::parse_and_validate`] adds the lines.
    pub fn validate(&self) -> Result<(), Vec<Problem>> {
        let problems = validate::problems(self);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// [`Config::from_toml`] then [`Config::validate`], with each problem's line looked up in
    /// `text`. Pure.
    pub fn parse_and_validate(text: &str) -> Result<Config, Error> {
        let config = Config::from_toml(text)?;
        config.validate().map_err(|problems| invalid(text, problems))?;
        Ok(config)
    }

    /// Reads, parses and validates the file at `path`, with the secrets given as `*_file` /
    /// `*_env` keys read in (`secrets.rs`); errors name the file.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        Config::parse_resolve_and_validate(&text).map_err(|err| err.in_file(path))
    }

    /// [`Config::parse_and_validate`] with the secret files and variables read in between.
    pub fn parse_resolve_and_validate(text: &str) -> Result<Config, Error> {
        let mut config = Config::from_toml(text)?;
        let mut problems = secrets::resolve(&mut config, text);
        if let Err(more) = config.validate() {
            problems.extend(more);
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(invalid(text, problems))
        }
    }

    /// The user a client logs in as, by name.
    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|user| user.name.as_str() == name)
    }

    /// The backend configured with `role = "primary"` (exactly one in a valid config).
    pub fn primary_hint(&self) -> Option<&BackendConfig> {
        self.backends.iter().find(|backend| backend.role == Role::Primary)
    }
}

/// Keys whose values differ between `old` and `new` but cannot change without a restart, for a
/// reload to reject by name: `listen.mysql`, `listen.admin`, `listen.http`, `logging.format`.
/// Empty when `new` can be applied live.
pub fn non_reloadable_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let checks = [
        ("listen.mysql", old.listen.mysql != new.listen.mysql),
        ("listen.admin", old.listen.admin != new.listen.admin),
        ("listen.http", old.listen.http != new.listen.http),
        ("listen.backlog", old.listen.backlog != new.listen.backlog),
        ("logging.format", old.logging.format != new.logging.format),
    ];
    checks.into_iter().filter(|(_, changed)| *changed).map(|(key, _)| key).collect()
}

/// One thing wrong with a config that parsed: which key, where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path such as `backends[1].port`, `monitor.timeout` or `users` (0-based indexes).
    pub path: String,
    /// 1-based line of the key in the file, or of its nearest parent present. `None` when neither
    /// appears (a missing section), when only [`Config::validate`] ran, or when the file spells a
    /// section with dotted keys (`monitor.timeout = "2s"`), which toml reports without spans.
    pub line: Option<usize>,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} (line {line}): {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Why a config could not be loaded. The proxy is at fault for none of these: the operator fixes
/// the file. During a reload the running config stays in force.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key, wrong type or missing required key.
    #[error("{}{}{message}", file_prefix(file.as_deref()), position_prefix(*line, *column))]
    Parse {
        /// The file, when the text came from one.
        file: Option<PathBuf>,
        /// 1-based line, when the TOML parser reported a location.
        line: Option<usize>,
        /// 1-based column (in characters), when the TOML parser reported a location.
        column: Option<usize>,
        /// The parser's description, naming the offending key or value.
        message: String,
    },
    /// The config parsed but is not usable; every problem is listed, one per line.
    #[error("{}invalid config:{}", file_prefix(file.as_deref()), problem_lines(problems))]
    Invalid {
        /// The file, when the text came from one.
        file: Option<PathBuf>,
        /// Every problem found, in file order of sections.
        problems: Vec<Problem>,
    },
}

impl Error {
    fn in_file(self, path: &Path) -> Error {
        match self {
            Error::Parse { line, column, message, .. } => {
                Error::Parse { file: Some(path.to_owned()), line, column, message }
            }
            Error::Invalid { problems, .. } => Error::Invalid { file: Some(path.to_owned()), problems },
            read @ Error::Read { .. } => read,
        }
    }
}

/// [`Error::Invalid`] with each problem's line looked up in `text`.
fn invalid(text: &str, mut problems: Vec<Problem>) -> Error {
    let lines = locate::Lines::index(text);
    for problem in &mut problems {
        problem.line = lines.line_of(&problem.path);
    }
    Error::Invalid { file: None, problems }
}

fn file_prefix(file: Option<&Path>) -> String {
    file.map(|path| format!("{}: ", path.display())).unwrap_or_default()
}

fn position_prefix(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!("line {line}, column {column}: "),
        _ => String::new(),
    }
}

fn problem_lines(problems: &[Problem]) -> String {
    problems.iter().map(|problem| format!("\n  {problem}")).collect()
}

/// Serializes a secret as `"<redacted>"`, so a serialized config is safe to show or log.
/// Optional secrets skip `None`, so this sees only values that are set.
fn redact<T: ?Sized, S: Serializer>(_secret: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str("<redacted>")
}
