//! Secrets read from files or environment variables instead of the config text.
//!
//! Every secret key `K` — `admin.password`, `monitor.password`, `users[].password`,
//! `users[].password_hash`, `users[].backend_password` — may instead be written as
//! `K_file = "/run/secrets/x"` (the file's content, one trailing newline removed: what a mounted
//! Kubernetes Secret or a Docker secret holds) or `K_env = "VAR"` (the variable's value). At most
//! one of `K`, `K_file` and `K_env` may be set. [`resolve`] runs in [`super::Config::load`], so at
//! start and on every reload: a rotated secret file is picked up by the next reload. Errors name
//! the key, the file or the variable, never the secret.

use std::path::{Path, PathBuf};

use super::{Config, Problem};

/// Fills every secret given as `*_file` / `*_env` into its plain key; returns what went wrong.
/// `text` is the document `config` came from: it tells a key written explicitly from one left at
/// its default (`admin.password` defaults to `"admin"`).
pub(super) fn resolve(config: &mut Config, text: &str) -> Vec<Problem> {
    let doc: toml::Table = toml::from_str(text).unwrap_or_default();
    let written = |section: Option<&toml::Value>, key: &str| {
        section.and_then(toml::Value::as_table).is_some_and(|table| table.contains_key(key))
    };
    let mut out = Vec::new();
    let admin = &mut config.admin;
    let explicit = written(doc.get("admin"), "password");
    if let Some(secret) = read("admin", "password", explicit, &admin.password_file, &admin.password_env, &mut out) {
        admin.password = secret;
    }
    let explicit = written(doc.get("admin"), "http_token");
    if let Some(secret) = read("admin", "http_token", explicit, &admin.http_token_file, &admin.http_token_env, &mut out)
    {
        admin.http_token = secret;
    }
    let monitor = &mut config.monitor;
    let explicit = written(doc.get("monitor"), "password");
    if let Some(secret) = read("monitor", "password", explicit, &monitor.password_file, &monitor.password_env, &mut out)
    {
        monitor.password = secret;
    }
    let users = doc.get("users").and_then(toml::Value::as_array);
    for (index, user) in config.users.iter_mut().enumerate() {
        let entry = users.and_then(|users| users.get(index));
        let at = format!("users[{index}]");
        let slots = [
            ("password", &mut user.password, &user.password_file, &user.password_env),
            ("password_hash", &mut user.password_hash, &user.password_hash_file, &user.password_hash_env),
            ("backend_password", &mut user.backend_password, &user.backend_password_file, &user.backend_password_env),
        ];
        for (key, value, file, env) in slots {
            if let Some(secret) = read(&at, key, written(entry, key), file, env, &mut out) {
                *value = Some(secret);
            }
        }
    }
    out
}

/// The secret of `{section}.{key}` from its file or variable; `None` when neither is set or it
/// could not be read (a problem is added then).
fn read(
    section: &str,
    key: &str,
    explicit: bool,
    file: &Option<PathBuf>,
    env: &Option<String>,
    out: &mut Vec<Problem>,
) -> Option<String> {
    let problem =
        |suffix: &str, message: String| Problem { path: format!("{section}.{key}{suffix}"), line: None, message };
    if usize::from(explicit) + usize::from(file.is_some()) + usize::from(env.is_some()) > 1 {
        let suffix = if file.is_some() { "_file" } else { "_env" };
        out.push(problem(suffix, format!("set only one of {key}, {key}_file and {key}_env")));
        return None;
    }
    match (file, env) {
        (Some(path), _) => match read_file(path) {
            Ok(secret) => Some(secret),
            Err(message) => {
                out.push(problem("_file", message));
                None
            }
        },
        (None, Some(var)) => match std::env::var(var) {
            Ok(secret) => Some(secret),
            Err(std::env::VarError::NotPresent) => {
                out.push(problem("_env", format!("environment variable {var:?} is not set")));
                None
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                out.push(problem("_env", format!("environment variable {var:?} is not valid UTF-8")));
                None
            }
        },
        (None, None) => None,
    }
}

/// The file's content without one trailing newline (`\n` or `\r\n`).
fn read_file(path: &Path) -> Result<String, String> {
    let mut text = std::fs::read_to_string(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}
