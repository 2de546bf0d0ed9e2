//! Table-driven routing decisions.

use super::*;
use crate::classify::lex;
use crate::config::{BackendConfig, BackendId, Config, Role};

fn topology() -> Topology {
    let mut config = Config::default();
    for (name, role) in [("db1", Role::Primary), ("db2", Role::Replica)] {
        config.backends.push(BackendConfig { name: BackendId::new(name), host: "h".into(), port: 1, weight: 1, role });
    }
    Topology::from_config(&config)
}

const FREE: Situation = Situation { hold: None, autocommit: true };

#[test]
fn statements_route_by_class_and_situation() {
    let t = topology();
    let cases: &[(&str, Situation, Target)] = &[
        ("SELECT * FROM t", FREE, Target::Replica),
        ("select 1", FREE, Target::Replica),
        ("SHOW TABLES", FREE, Target::Replica),
        ("INSERT INTO t VALUES (1)", FREE, Target::Primary),
        ("SELECT * FROM t FOR UPDATE", FREE, Target::Primary),
        ("SELECT LAST_INSERT_ID()", FREE, Target::Primary),
        ("SELECT GET_LOCK('a', 1)", FREE, Target::Primary),
        ("BEGIN", FREE, Target::Primary),
        ("START TRANSACTION READ ONLY", FREE, Target::Replica),
        ("SELECT 1; SELECT 2", FREE, Target::Replica),
        ("SELECT 1; DELETE FROM t", FREE, Target::Primary),
        ("FROBNICATE the widgets", FREE, Target::Primary),
        ("/* rwsplit:primary */ SELECT 1", FREE, Target::Primary),
        ("/* rwsplit:replica */ SELECT 1", FREE, Target::Replica),
        ("/* rwsplit:backend=db2 */ SELECT 1", FREE, Target::Backend(BackendIndex(1))),
        ("/* rwsplit:backend=nope */ SELECT 1", FREE, Target::Primary),
        ("SELECT 1", Situation { hold: None, autocommit: false }, Target::Primary),
        ("SELECT 1", Situation { hold: Some(Hold::Transaction), autocommit: true }, Target::Held),
        ("/* rwsplit:replica */ SELECT 1", Situation { hold: Some(Hold::Pinned), autocommit: true }, Target::Held),
    ];
    for (sql, situation, expected) in cases {
        let stmt = lex(sql.as_bytes());
        let all_reads = crate::classify::multi_is_all_reads(sql.as_bytes(), Default::default());
        let route = route(&stmt, all_reads, *situation, &t);
        assert_eq!(route.target, *expected, "{sql} in {situation:?}: {}", route.reason);
    }
}
