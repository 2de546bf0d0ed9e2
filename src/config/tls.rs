//! The `[tls]` section: TLS towards clients and backends, and the RSA key pair of
//! `caching_sha2_password`, plus the per-user authentication plugin choice.
//!
//! Only paths live here. Whether the files exist and parse is checked when the proxy starts and on
//! every reload (`frontend::tls`), never in [`super::Config::validate`], which stays pure so that
//! `check-config` and the config tests work on a machine without the files. Relative paths are
//! resolved against the proxy's working directory.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[tls]`: certificates, modes and keys. Every key is reloadable: a reload rebuilds the client
/// acceptor and the backend connector from the files (new connections use them; open ones keep
/// theirs), and a reload whose files do not load keeps the running ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// TLS towards clients. Default: `"preferred"` when `cert` and `key` are set, else
    /// `"disabled"`. Use [`Self::client_mode`]. Reloadable (new connections).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<ClientTlsMode>,
    /// PEM certificate chain presented to clients (leaf first). Required unless the client mode is
    /// `"disabled"`. Default unset. Reloadable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert` (PKCS#8, PKCS#1 or SEC1). Default unset. Reloadable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// PEM RSA private key (PKCS#8 or PKCS#1, 2048 bits or more) used by `caching_sha2_password`
    /// for the password exchange of clients without TLS; its public half is sent to clients that
    /// ask. Unset: a 2048-bit key is generated the first time a client needs it and kept until
    /// the process exits. Default unset. Reloadable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rsa_private_key: Option<PathBuf>,
    /// TLS towards backends. Default `"disabled"`. Reloadable (new backend connections).
    pub backend: BackendTlsMode,
    /// PEM CA certificates that backend certificates must chain to. When set, backend
    /// certificates are verified in every TLS mode; when unset they are not verified at all
    /// (the connection is encrypted but not authenticated). Required by `"verify_ca"` and
    /// `"verify_identity"`. Default unset. Reloadable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_ca: Option<PathBuf>,
    /// Whether the proxy may ask a backend for its RSA public key to send a
    /// `caching_sha2_password`/`sha256_password` password over a connection without TLS. Whoever
    /// can intercept the connection can substitute the key and read the password, so this is off
    /// unless the network to the backends is trusted; with TLS it is never needed. Default
    /// `false`. Reloadable.
    pub backend_public_key_retrieval: bool,
}

impl TlsConfig {
    /// The effective client mode: the configured one, or `"preferred"` when a certificate and
    /// key are configured and `"disabled"` otherwise.
    pub fn client_mode(&self) -> ClientTlsMode {
        self.mode.unwrap_or(if self.cert.is_some() && self.key.is_some() {
            ClientTlsMode::Preferred
        } else {
            ClientTlsMode::Disabled
        })
    }
}

/// TLS towards clients (`tls.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientTlsMode {
    /// `"disabled"`: `CLIENT_SSL` is not offered.
    Disabled,
    /// `"preferred"`: offered; clients choose. If the certificate cannot be loaded at startup the
    /// proxy runs without TLS and logs an error (as MySQL does).
    Preferred,
    /// `"required"`: offered, and clients without TLS are refused with ERR 3159
    /// (`ER_SECURE_TRANSPORT_REQUIRED`, like MySQL's `require_secure_transport=ON`). If the
    /// certificate cannot be loaded every client is refused.
    Required,
}

/// TLS towards backends (`tls.backend`), named after MySQL clients' `--ssl-mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendTlsMode {
    /// `"disabled"`: never.
    #[default]
    Disabled,
    /// `"preferred"`: when the server offers it; plain otherwise.
    Preferred,
    /// `"required"`: always; a server without TLS is an error.
    Required,
    /// `"verify_ca"`: required, and the certificate must chain to `backend_ca` (the host name is
    /// not checked).
    VerifyCa,
    /// `"verify_identity"`: `"verify_ca"`, and the certificate must name the backend's `host`.
    VerifyIdentity,
}

impl BackendTlsMode {
    /// True when a server without TLS must be refused.
    pub fn is_required(self) -> bool {
        !matches!(self, Self::Disabled | Self::Preferred)
    }
}

/// Authentication plugin of a `[[users]]` entry (`users[].auth_plugin`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthPlugin {
    /// `"mysql_native_password"`: SHA1 challenge-response.
    #[default]
    MysqlNativePassword,
    /// `"caching_sha2_password"`: SHA256 challenge-response once the user is in the proxy's
    /// cache; the first login after start (or after the password changed) sends the password
    /// itself, over TLS or RSA-encrypted. Needs `password` (not `password_hash`).
    CachingSha2Password,
}

impl AuthPlugin {
    /// The plugin's protocol name.
    pub fn name(self) -> &'static str {
        match self {
            Self::MysqlNativePassword => "mysql_native_password",
            Self::CachingSha2Password => "caching_sha2_password",
        }
    }
}

/// Problems of the `[tls]` section and of users' `auth_plugin`, as (key path, message). File
/// paths are checked only for presence: loading them is the proxy's job at startup and reload.
pub(super) fn problems(tls: &TlsConfig, users: &[super::UserConfig]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut add = |path: &str, message: &str| out.push((path.to_owned(), message.to_owned()));
    match (&tls.cert, &tls.key) {
        (Some(_), None) => add("tls.key", "required when tls.cert is set"),
        (None, Some(_)) => add("tls.cert", "required when tls.key is set"),
        (None, None) if tls.client_mode() != ClientTlsMode::Disabled => {
            add("tls.cert", "tls.mode other than \"disabled\" needs tls.cert and tls.key")
        }
        _ => {}
    }
    let paths = [
        ("tls.cert", &tls.cert),
        ("tls.key", &tls.key),
        ("tls.rsa_private_key", &tls.rsa_private_key),
        ("tls.backend_ca", &tls.backend_ca),
    ];
    for (path, value) in paths {
        if value.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            add(path, "must not be empty; leave the key out instead");
        }
    }
    if tls.backend_ca.is_none() && matches!(tls.backend, BackendTlsMode::VerifyCa | BackendTlsMode::VerifyIdentity) {
        add("tls.backend_ca", "required when tls.backend is \"verify_ca\" or \"verify_identity\"");
    }
    for (index, user) in users.iter().enumerate() {
        if user.auth_plugin == AuthPlugin::CachingSha2Password && user.password.is_none() {
            add(
                &format!("users[{index}].auth_plugin"),
                "\"caching_sha2_password\" needs password: a mysql_native_password hash cannot verify it",
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Config, Error};
    use super::*;

    const BASE: &str = "[[backends]]\nname = \"db1\"\nhost = \"127.0.0.1\"\nrole = \"primary\"\n\n[[users]]\nname = \"app\"\npassword = \"app\"\n";

    fn problem_paths(text: &str) -> Vec<String> {
        match Config::parse_and_validate(text) {
            Err(Error::Invalid { problems, .. }) => problems.into_iter().map(|p| p.path).collect(),
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn client_mode_defaults_to_preferred_only_with_a_certificate() {
        let config = Config::parse_and_validate(BASE).unwrap();
        assert_eq!(config.tls.client_mode(), ClientTlsMode::Disabled);
        assert_eq!(config.tls.backend, BackendTlsMode::Disabled);
        assert!(!config.tls.backend_public_key_retrieval);
        assert_eq!(config.users[0].auth_plugin, AuthPlugin::MysqlNativePassword);
        let with_cert = format!("{BASE}\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n");
        assert_eq!(Config::parse_and_validate(&with_cert).unwrap().tls.client_mode(), ClientTlsMode::Preferred);
        let disabled = format!("{with_cert}mode = \"disabled\"\n");
        assert_eq!(Config::parse_and_validate(&disabled).unwrap().tls.client_mode(), ClientTlsMode::Disabled);
    }

    #[test]
    fn files_are_not_read_by_validation() {
        let text = format!(
            "{BASE}auth_plugin = \"caching_sha2_password\"\n\n[tls]\nmode = \"required\"\ncert = \"/nonexistent/c.pem\"\n\
             key = \"/nonexistent/k.pem\"\nrsa_private_key = \"/nonexistent/r.pem\"\nbackend = \"verify_identity\"\n\
             backend_ca = \"/nonexistent/ca.pem\"\nbackend_public_key_retrieval = true\n"
        );
        let config = Config::parse_and_validate(&text).unwrap();
        assert_eq!(config.tls.client_mode(), ClientTlsMode::Required);
        assert!(config.tls.backend.is_required());
        assert_eq!(config.users[0].auth_plugin.name(), "caching_sha2_password");
    }

    #[test]
    fn inconsistent_settings_are_problems() {
        let text = format!("{BASE}\n[tls]\nmode = \"preferred\"\n");
        assert_eq!(problem_paths(&text), ["tls.cert"]);
        let text = format!("{BASE}\n[tls]\ncert = \"c.pem\"\nbackend = \"verify_ca\"\nrsa_private_key = \"\"\n");
        assert_eq!(problem_paths(&text), ["tls.key", "tls.rsa_private_key", "tls.backend_ca"]);
        let hash_only = BASE.replace(
            "password = \"app\"",
            "password_hash = \"*5BCB3E6AC345B435C7C2E6B7949A04CE6F6563D3\"\nbackend_password = \"app\"\nauth_plugin = \"caching_sha2_password\"",
        );
        assert_eq!(problem_paths(&hash_only), ["users[0].auth_plugin"]);
        let err = Config::from_toml(&format!("{BASE}\n[tls]\nmode = \"on\"\n")).unwrap_err();
        assert!(err.to_string().contains("on"), "{err}");
    }
}
