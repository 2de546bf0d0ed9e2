//! The repeated tables of the config file: `[[backends]]` and `[[users]]`, and their name types.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::redact;
use super::tls::AuthPlugin;

/// Name of a backend, unique in the config: `[A-Za-z0-9_.-]+`. Used in logs, metric labels,
/// routing hints (`/* rwsplit:backend=NAME */`) and the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(transparent)]
pub struct BackendId(String);

/// Name a client logs in with, unique in the config.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(transparent)]
pub struct UserName(String);

macro_rules! name_type {
    ($ty:ident) => {
        impl $ty {
            /// Wraps a name; it is checked only when a whole config is validated.
            pub fn new(name: impl Into<String>) -> Self {
                Self(name.into())
            }

            /// The name as written in the config.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(BackendId);
name_type!(UserName);

/// One `[[backends]]` entry: a MySQL server the proxy may route to. Backends are reloadable:
/// added, removed or changed backends get new pools and the old ones are drained.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Unique name, `[A-Za-z0-9_.-]+`. Required.
    pub name: BackendId,
    /// Host name or IP address, re-resolved on every connect. Required, must not be empty.
    pub host: String,
    /// TCP port, must not be 0. Default `3306`.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Share of replica reads relative to the other replicas; `0` drains the backend. Default `1`.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Role assumed at startup, before the first probe; afterwards the monitor decides from
    /// `read_only`, so a changed value is accepted on reload but has no effect. Exactly one backend
    /// must say `"primary"`. Default `"replica"`.
    #[serde(default)]
    pub role: Role,
}

impl BackendConfig {
    /// True when `other` is the same server under the same name (what a reload keeps).
    pub fn same_server(&self, other: &BackendConfig) -> bool {
        self.name == other.name && self.host == other.host && self.port == other.port
    }
}

fn default_port() -> u16 {
    3306
}

fn default_weight() -> u32 {
    1
}

/// Role of a backend (`backends[].role`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// `"primary"`: takes writes.
    Primary,
    /// `"replica"`: takes reads.
    #[default]
    Replica,
}

/// One `[[users]]` entry: an account clients log in with, and the account the proxy uses for
/// them on the backends. Users are reloadable (pools of changed users are rebuilt).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Client login name, unique. Required.
    pub name: UserName,
    /// Client password in plain text (may be `""`). Exactly one of `password` and `password_hash`
    /// must be set. Default unset. Serialized as `"<redacted>"`.
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "redact")]
    pub password: Option<String>,
    /// Client password as a `mysql_native_password` hash: `*` and 40 hex digits of
    /// SHA1(SHA1(password)), as in `mysql.user.authentication_string`. With only a hash, clients
    /// can authenticate with `mysql_native_password` only, and `backend_password` is required.
    /// Default unset. Serialized as `"<redacted>"`.
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "redact")]
    pub password_hash: Option<String>,
    /// Backend login name; `""` means the same as `name`. Default `""`. Use [`Self::backend_user`].
    #[serde(default)]
    pub backend_user: String,
    /// Backend password; unset means the same as `password`. Required when only `password_hash`
    /// is given. Default unset. Use [`Self::backend_password`]. Serialized as `"<redacted>"`.
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "redact")]
    pub backend_password: Option<String>,
    /// File holding `password` (one trailing newline removed), instead of `password`. Default unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<std::path::PathBuf>,
    /// Environment variable holding `password`, instead of `password`. Default unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// File holding `password_hash`, instead of `password_hash`. Default unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash_file: Option<std::path::PathBuf>,
    /// Environment variable holding `password_hash`, instead of `password_hash`. Default unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash_env: Option<String>,
    /// File holding `backend_password`, instead of `backend_password`. Default unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_password_file: Option<std::path::PathBuf>,
    /// Environment variable holding `backend_password`, instead of `backend_password`. Default unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_password_env: Option<String>,
    /// Schema selected when the client names none; `""` selects none. Default `""`.
    #[serde(default)]
    pub default_schema: String,
    /// Client connections this user may hold at once; `0` means unlimited. Default `0`.
    #[serde(default)]
    pub max_connections: u32,
    /// Backend connections this user's pools may open to each backend, all pools together;
    /// `0` means only `pool.max_connections_per_backend` applies. Default `0`. Reloadable.
    #[serde(default)]
    pub max_backend_connections: u32,
    /// How clients authenticate as this user. `"caching_sha2_password"` needs `password`.
    /// Default `"mysql_native_password"`. Reloadable (a changed password or plugin makes the
    /// next `caching_sha2_password` login a full authentication).
    #[serde(default)]
    pub auth_plugin: AuthPlugin,
}

impl UserConfig {
    /// The user name the proxy logs into backends with.
    pub fn backend_user(&self) -> &str {
        if self.backend_user.is_empty() {
            self.name.as_str()
        } else {
            &self.backend_user
        }
    }

    /// The password the proxy logs into backends with. `None` only for a hash-only user without
    /// `backend_password`, which validation rejects.
    pub fn backend_password(&self) -> Option<&str> {
        self.backend_password.as_deref().or(self.password.as_deref())
    }
}
