use std::collections::BTreeSet;
use std::time::Duration;

use super::*;

const RWSPLIT_TOML: &str = include_str!("../../config/rwsplit.toml");
const DEMO_TOML: &str = include_str!("../../config/demo.toml");

const MINIMAL: &str = r#"
[[backends]]
name = "db1"
host = "127.0.0.1"
role = "primary"

[[users]]
name = "app"
password = "app"
"#;

/// Problems of an invalid `text` as (path, line) pairs, panicking if it is valid or fails to parse.
fn problems(text: &str) -> Vec<(String, Option<usize>)> {
    match Config::parse_and_validate(text) {
        Err(Error::Invalid { problems, .. }) => problems.into_iter().map(|p| (p.path, p.line)).collect(),
        other => panic!("expected validation problems, got {other:?}"),
    }
}

fn owned(expected: &[(&str, Option<usize>)]) -> Vec<(String, Option<usize>)> {
    expected.iter().map(|(path, line)| (path.to_string(), *line)).collect()
}

#[test]
fn shipped_files_parse_and_validate() {
    for (name, text) in [("rwsplit.toml", RWSPLIT_TOML), ("demo.toml", DEMO_TOML)] {
        if let Err(err) = Config::parse_and_validate(text) {
            panic!("config/{name}: {err}");
        }
    }
}

#[test]
fn rwsplit_toml_shows_the_defaults() {
    let config = Config::parse_and_validate(RWSPLIT_TOML).unwrap();
    let defaults = Config::default();
    assert_eq!(config.listen, defaults.listen);
    assert_eq!(config.server, defaults.server);
    assert_eq!(config.admin, defaults.admin);
    assert_eq!(config.pool, defaults.pool);
    assert_eq!(config.monitor, defaults.monitor);
    assert_eq!(config.routing, defaults.routing);
    assert_eq!(config.logging, defaults.logging);
    assert_eq!(config.tls, defaults.tls);
    assert_eq!(config.stats, defaults.stats);
    assert_eq!(config.shutdown, defaults.shutdown);
    assert_eq!(config.backends.len(), 3);
    assert_eq!(config.primary_hint().map(|b| b.name.as_str()), Some("primary"));
}

/// rwsplit.toml shows every key of the schema (set, or commented out when it has no default) in
/// its own section, and no key the schema lacks.
#[test]
fn rwsplit_toml_documents_every_key() {
    let mut config = Config::parse_and_validate(RWSPLIT_TOML).unwrap();
    config.users[0].password_hash = Some("*5BCB3E6AC345B435C7C2E6B7949A04CE6F6563D3".into());
    config.users[0].backend_password = Some("app".into());
    config.tls.mode = Some(ClientTlsMode::Preferred);
    config.tls.cert = Some("certs/server-cert.pem".into());
    config.tls.key = Some("certs/server-key.pem".into());
    config.tls.rsa_private_key = Some("certs/rsa-private.pem".into());
    config.tls.backend_ca = Some("certs/ca.pem".into());
    // Secret sources (secrets.rs), documented commented out.
    for (file, env) in [
        (&mut config.admin.password_file, &mut config.admin.password_env),
        (&mut config.admin.http_token_file, &mut config.admin.http_token_env),
        (&mut config.monitor.password_file, &mut config.monitor.password_env),
    ] {
        *file = Some("/run/secrets/x".into());
        *env = Some("VAR".into());
    }
    let user = &mut config.users[0];
    for (file, env) in [
        (&mut user.password_file, &mut user.password_env),
        (&mut user.password_hash_file, &mut user.password_hash_env),
        (&mut user.backend_password_file, &mut user.backend_password_env),
    ] {
        *file = Some("/run/secrets/x".into());
        *env = Some("VAR".into());
    }
    let mut schema = BTreeSet::new();
    for (section, value) in toml::Value::try_from(&config).unwrap().as_table().unwrap() {
        let table = match value {
            toml::Value::Array(items) => items[0].as_table().unwrap(),
            other => other.as_table().unwrap(),
        };
        schema.extend(table.keys().map(|key| format!("{section}.{key}")));
    }

    let mut documented = BTreeSet::new();
    let mut section = "";
    for line in RWSPLIT_TOML.lines() {
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']);
        } else if let Some((key, _)) = line.trim_start_matches("# ").split_once(" = ") {
            documented.insert(format!("{section}.{key}"));
        }
    }
    assert_eq!(documented, schema);
}

#[test]
fn minimal_config_takes_defaults() {
    let config = Config::parse_and_validate(MINIMAL).unwrap();
    assert_eq!(config.listen.mysql, "127.0.0.1:6033".parse().unwrap());
    assert_eq!(config.listen.max_client_connections, 10_000);
    assert_eq!(config.server.idle_timeout, Duration::from_secs(8 * 3600));
    assert_eq!(config.server.max_packet_size, 67_108_864);
    assert_eq!(config.pool.query_timeout, Duration::from_secs(3600));
    assert_eq!(config.pool.replica_read_timeout, Duration::from_secs(30));
    assert_eq!(config.monitor.failure_threshold, 3);
    assert_eq!(config.routing.consistency, Consistency::Eventual);
    assert_eq!(config.routing.no_replica, NoReplica::Primary);
    assert!(config.routing.retry_reads);
    assert_eq!(config.logging.format, LogFormat::Pretty);
    let backend = &config.backends[0];
    assert_eq!((backend.port, backend.weight, backend.role), (3306, 1, Role::Primary));
    let user = config.user("app").unwrap();
    assert_eq!(user.backend_user(), "app");
    assert_eq!(user.backend_password(), Some("app"));
    assert_eq!(user.max_connections, 0);
    assert!(config.user("nobody").is_none());
}

#[test]
fn default_config_lacks_only_backends_and_users() {
    let problems = Config::default().validate().unwrap_err();
    let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["backends", "users"]);
}

#[test]
fn durations_are_humantime_strings() {
    let text = format!("{MINIMAL}\n[monitor]\ninterval = \"500ms\"\ntimeout = \"250ms\"\n");
    let config = Config::parse_and_validate(&text).unwrap();
    assert_eq!(config.monitor.interval, Duration::from_millis(500));
    assert_eq!(config.monitor.timeout, Duration::from_millis(250));
    let err = Config::from_toml(&format!("{MINIMAL}\n[pool]\nidle_timeout = 5\n")).unwrap_err();
    assert!(matches!(err, Error::Parse { line: Some(12), .. }), "{err}");
}

#[test]
fn unknown_key_is_rejected_with_name_and_line() {
    let text = format!("{MINIMAL}\n[pool]\nmax_conections = 5\n");
    let err = Config::from_toml(&text).unwrap_err();
    let Error::Parse { line, message, .. } = &err else { panic!("{err:?}") };
    assert_eq!(*line, Some(12));
    assert!(message.contains("max_conections"), "{message}");
    assert!(err.to_string().starts_with("line 12, column 1: "), "{err}");

    let err = Config::from_toml("[listner]\nmysql = \"127.0.0.1:1\"\n").unwrap_err();
    assert!(matches!(&err, Error::Parse { line: Some(1), message, .. } if message.contains("listner")), "{err}");
}

#[test]
fn wrong_types_and_missing_required_keys_are_parse_errors() {
    let err = Config::from_toml(&MINIMAL.replace("role = \"primary\"", "port = 70000")).unwrap_err();
    assert!(matches!(err, Error::Parse { line: Some(5), .. }), "{err}");
    let err = Config::from_toml(&MINIMAL.replace("role = \"primary\"", "role = \"leader\"")).unwrap_err();
    assert!(matches!(&err, Error::Parse { message, .. } if message.contains("leader")), "{err}");
    let err = Config::from_toml(&MINIMAL.replace("host = \"127.0.0.1\"", "")).unwrap_err();
    assert!(matches!(&err, Error::Parse { message, .. } if message.contains("host")), "{err}");
}

#[test]
fn every_problem_is_reported_with_path_and_line() {
    let text = r#"
[listen]
admin = "127.0.0.1:6033"
max_client_connections = 0

[server]
idle_timeout = "0s"
max_packet_size = 100

[[backends]]
name = "db1"
host = "127.0.0.1"
port = 0

[[backends]]
name = "db1"
host = ""

[[backends]]
name = "bad name"
host = "db3"

[[users]]
name = "app"
password_hash = "*1234"

[[users]]
name = "app"

[pool]
max_connections_per_backend = 4
min_idle = 5

[monitor]
interval = "1s"
timeout = "2s"
failure_threshold = 0

[logging]
level = " "
"#;
    let expected = [
        ("listen.max_client_connections", Some(4)),
        ("listen.admin", Some(3)),
        ("server.idle_timeout", Some(7)),
        ("server.max_packet_size", Some(8)),
        ("backends[0].port", Some(13)),
        ("backends[1].name", Some(16)),
        ("backends[1].host", Some(17)),
        ("backends[2].name", Some(20)),
        ("backends", Some(10)),
        ("users[0].backend_password", Some(23)),
        ("users[0].password_hash", Some(25)),
        ("users[1].name", Some(28)),
        ("users[1]", Some(27)),
        ("pool.min_idle", Some(32)),
        ("monitor.timeout", Some(36)),
        ("monitor.failure_threshold", Some(37)),
        ("logging.level", Some(40)),
    ];
    assert_eq!(problems(text), owned(&expected));
}

#[test]
fn missing_backends_and_users_are_problems_not_parse_errors() {
    let text = "[pool]\nmin_idle = 1\n";
    assert_eq!(problems(text), owned(&[("backends", None), ("users", None)]));
}

#[test]
fn problem_about_a_default_points_at_its_section() {
    let text = format!("{MINIMAL}\n[monitor]\ninterval = \"500ms\"\n");
    assert_eq!(problems(&text), owned(&[("monitor.timeout", Some(11))]));
}

#[test]
fn exactly_one_backend_hints_primary() {
    let replica_only = MINIMAL.replace("role = \"primary\"", "");
    assert_eq!(problems(&replica_only), owned(&[("backends", Some(2))]));
    let two = format!("{MINIMAL}\n[[backends]]\nname = \"db2\"\nhost = \"h\"\nrole = \"primary\"\n");
    let err = Config::parse_and_validate(&two).unwrap_err();
    let Error::Invalid { problems, .. } = &err else { panic!("{err:?}") };
    assert_eq!(problems.len(), 1);
    assert_eq!((problems[0].path.as_str(), problems[0].line), ("backends[1].role", Some(14)));
    assert!(problems[0].message.contains("backends[0] (db1)"), "{}", problems[0].message);
}

#[test]
fn user_passwords() {
    let hash = "*5BCB3E6AC345B435C7C2E6B7949A04CE6F6563D3";
    let hash_only = MINIMAL.replace("password = \"app\"", &format!("password_hash = \"{hash}\""));
    assert_eq!(problems(&hash_only), owned(&[("users[0].backend_password", Some(7))]));

    let with_backend = format!("{hash_only}backend_user = \"svc\"\nbackend_password = \"s3cret\"\n");
    let config = Config::parse_and_validate(&with_backend).unwrap();
    let user = &config.users[0];
    assert_eq!(user.password_hash.as_deref(), Some(hash));
    assert_eq!((user.backend_user(), user.backend_password()), ("svc", Some("s3cret")));

    let lowercase = with_backend.replace(hash, &hash.to_lowercase());
    Config::parse_and_validate(&lowercase).unwrap();
    let both = format!("{MINIMAL}password_hash = \"{hash}\"\n");
    assert_eq!(problems(&both), owned(&[("users[0].password_hash", Some(10))]));
    let empty = MINIMAL.replace("password = \"app\"", "password = \"\"");
    assert_eq!(Config::parse_and_validate(&empty).unwrap().users[0].backend_password(), Some(""));
}

#[test]
fn ephemeral_ports_never_collide() {
    let text = format!("[listen]\nmysql = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n{MINIMAL}");
    Config::parse_and_validate(&text).unwrap();
}

#[test]
fn dotted_keys_validate_without_lines() {
    let text = format!("monitor.timeout = \"5s\"\n{MINIMAL}");
    assert_eq!(problems(&text), owned(&[("monitor.timeout", None)]));
}

#[test]
fn load_names_the_file_and_lists_every_problem() {
    let dir = std::env::temp_dir().join(format!("rwsplit-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, MINIMAL.replace("role = \"primary\"", "port = 0")).unwrap();
    let shown = Config::load(&path).unwrap_err().to_string();
    let expected = format!(
        "{}: invalid config:\n  backends[0].port (line 5): must not be 0\n  backends (line 2): no backend has role = \"primary\"; mark the one writes should start on",
        path.display()
    );
    assert_eq!(shown, expected);

    std::fs::write(&path, MINIMAL).unwrap();
    assert_eq!(Config::load(&path).unwrap(), Config::from_toml(MINIMAL).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();

    let err = Config::load(&path).unwrap_err();
    assert!(matches!(&err, Error::Read { path: p, .. } if *p == path), "{err}");
}

#[test]
fn reload_diff_names_non_reloadable_keys() {
    let old = Config::parse_and_validate(RWSPLIT_TOML).unwrap();
    let mut new = old.clone();
    new.pool.max_connections_per_backend = 10;
    new.backends.pop();
    new.logging.level = "debug".into();
    assert!(non_reloadable_changes(&old, &new).is_empty());
    new.listen.mysql = "127.0.0.1:7033".parse().unwrap();
    new.listen.http = "0.0.0.0:6070".parse().unwrap();
    new.logging.format = LogFormat::Json;
    assert_eq!(non_reloadable_changes(&old, &new), ["listen.mysql", "listen.http", "logging.format"]);
}

#[test]
fn serialized_config_hides_secrets_and_reads_back() {
    let text = format!("{MINIMAL}backend_password = \"s3cret\"\n[admin]\npassword = \"adm1n\"\n");
    let config = Config::parse_and_validate(&text).unwrap();
    let shown = toml::to_string(&config).unwrap();
    for secret in ["s3cret", "adm1n", "password = \"app\"", "password = \"monitor\""] {
        assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
    }
    let mut back = Config::from_toml(&shown).unwrap();
    back.admin.password = config.admin.password.clone();
    back.admin.http_token = config.admin.http_token.clone();
    back.admin.http_token_file = config.admin.http_token_file.clone();
    back.admin.http_token_env = config.admin.http_token_env.clone();
    back.monitor.password = config.monitor.password.clone();
    back.users = config.users.clone();
    assert_eq!(back, config);
}

#[test]
fn operations_sections_take_defaults_and_are_checked() {
    let config = Config::parse_and_validate(MINIMAL).unwrap();
    assert_eq!(config.stats.digests, 100);
    assert_eq!(config.shutdown.grace, Duration::from_secs(30));
    let text = format!("{MINIMAL}\n[stats]\ndigests = 100001\n\n[shutdown]\ngrace = \"2s\"\n");
    assert_eq!(problems(&text), owned(&[("stats.digests", Some(12))]));
    let text = format!("{MINIMAL}\n[logging]\nlevel = \"info,=bad=\"\n");
    assert_eq!(problems(&text), owned(&[("logging.level", Some(12))]));
}

#[test]
fn exposed_control_surfaces_need_real_credentials() {
    let exposed = format!("[listen]\nadmin = \"0.0.0.0:6032\"\nhttp = \"0.0.0.0:6070\"\n{MINIMAL}");
    let paths: Vec<String> = problems(&exposed).into_iter().map(|(path, _)| path).collect();
    assert!(paths.contains(&"admin.password".to_owned()), "{paths:?}");
    assert!(paths.contains(&"admin.http_token".to_owned()), "{paths:?}");
    let secured = format!("[admin]\npassword = \"s3cret-admin\"\nhttp_token = \"t0ken\"\n{exposed}");
    assert!(Config::parse_and_validate(&secured).is_ok(), "credentials set: no problem");
    assert!(Config::parse_and_validate(MINIMAL).is_ok(), "loopback listeners keep the demo defaults");
}
