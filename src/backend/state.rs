//! Session state that can move between backend connections: default schema, system variables
//! changed from their defaults, and the last insert id. Both a client session (the target) and
//! each backend connection (the actual state) keep one; a checkout compares them and runs at most
//! one combined round trip (`COM_INIT_DB` and one `SET`, pipelined) to align the connection.
//!
//! Values come from the server's session-tracking reports, never from parsing the client's SQL.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::session_track::{changes, Change};

/// Variables that are reported by session tracking but must never be replayed: they are
/// read-only, derived from other state, or handled separately.
const NOT_REPLAYED: &[&[u8]] = &[
    b"last_gtid",
    b"last_insert_id",
    b"gtid_seq_no",
    b"timestamp",
    b"insert_id",
    b"rand_seed1",
    b"rand_seed2",
    b"warning_count",
    b"error_count",
];

/// Movable session state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The default schema (`USE`), if one is selected.
    pub schema: Option<Bytes>,
    /// System variables set in this session, name → value as the server reported them.
    pub vars: BTreeMap<Box<[u8]>, Box<[u8]>>,
    /// Value `LAST_INSERT_ID()` returns.
    pub last_insert_id: u64,
    /// GTID of the session's last write (MariaDB `last_gtid`), if reported.
    pub last_gtid: Option<Bytes>,
    /// Backend connections only: values a new connection starts with that come from the
    /// handshake, not from the server's global defaults (its character set variables). A
    /// variable the target does not have is reset to this value rather than to `DEFAULT`.
    pub baseline: BTreeMap<Box<[u8]>, Box<[u8]>>,
}

/// What one response's session-state information changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// The server reported a state change that no variable or schema change explains (user
    /// variables, temporary tables, prepared statements): the state cannot be moved.
    pub unexplained_change: bool,
    /// The session-state information was malformed.
    pub malformed: bool,
}

impl State {
    /// Applies a response's session-state information and last insert id.
    pub fn apply(&mut self, session_state: Option<&[u8]>, last_insert_id: u64) -> Applied {
        if last_insert_id != 0 {
            self.last_insert_id = last_insert_id;
        }
        let mut applied = Applied::default();
        let Some(data) = session_state else { return applied };
        let mut explained = false;
        let mut changed = false;
        for change in changes(data) {
            match change {
                Ok(Change::Variable { name, value }) => {
                    if name == b"last_gtid" {
                        self.last_gtid = Some(Bytes::copy_from_slice(value));
                    } else if name == b"last_insert_id" {
                        if let Some(n) = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
                            self.last_insert_id = n;
                        }
                        explained = true;
                    } else if !NOT_REPLAYED.contains(&name) {
                        self.vars.insert(name.into(), value.into());
                        explained = true;
                    }
                }
                Ok(Change::Schema(name)) => {
                    // An empty name: the session's schema was dropped (`DROP DATABASE` of the
                    // current one), which leaves MariaDB sessions with none selected.
                    self.schema = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
                    explained = true;
                }
                Ok(Change::StateChanged(true)) => changed = true,
                Ok(_) => {}
                Err(_) => applied.malformed = true,
            }
        }
        applied.unexplained_change = changed && !explained;
        applied
    }

    /// True when `self` (a connection) already has everything `target` (a session) needs.
    /// `need_insert_id` asks for `LAST_INSERT_ID()` to match too.
    pub fn matches(&self, target: &State, need_insert_id: bool) -> bool {
        self.schema == target.schema
            && self.vars == target.vars
            && (!need_insert_id || self.last_insert_id == target.last_insert_id)
    }

    /// The `SET` statement (a complete `COM_QUERY` payload) that brings `self`'s variables to
    /// `target`'s, or `None` when they already match. Variables only `self` has are reset to
    /// their [`State::baseline`] value, others with `DEFAULT`.
    pub fn variables_sync(&self, target: &State, need_insert_id: bool) -> Option<Bytes> {
        let mut sql = BytesMut::new();
        let mut add = |name: &[u8], value: Option<&[u8]>| {
            sql.put_slice(if sql.is_empty() { b"\x03SET SESSION " } else { b", " });
            sql.put_slice(name);
            sql.put_slice(b" = ");
            match value {
                None => sql.put_slice(b"DEFAULT"),
                Some(v) => put_value(&mut sql, v),
            }
        };
        for (name, value) in &target.vars {
            if self.vars.get(name) != Some(value) {
                add(name, Some(value));
            }
        }
        for name in self.vars.keys() {
            if !target.vars.contains_key(name) {
                add(name, self.baseline.get(name).map(|v| &v[..]));
            }
        }
        if need_insert_id && self.last_insert_id != target.last_insert_id {
            add(b"last_insert_id", Some(target.last_insert_id.to_string().as_bytes()));
        }
        (!sql.is_empty()).then(|| sql.freeze())
    }
}

/// Writes a variable value as SQL: numbers bare, `NULL` bare, everything else as a quoted string.
fn put_value(sql: &mut BytesMut, value: &[u8]) {
    let numeric = {
        let digits = value.strip_prefix(b"-").unwrap_or(value);
        !digits.is_empty()
            && digits.iter().all(|b| b.is_ascii_digit() || *b == b'.')
            && digits.iter().filter(|b| **b == b'.').count() <= 1
            && digits.first().is_some_and(u8::is_ascii_digit)
    };
    if numeric || value == b"NULL" {
        sql.put_slice(value);
        return;
    }
    sql.put_u8(b'\'');
    for &b in value {
        match b {
            b'\'' => sql.put_slice(b"''"),
            b'\\' => sql.put_slice(b"\\\\"),
            0 => sql.put_slice(b"\\0"),
            _ => sql.put_u8(b),
        }
    }
    sql.put_u8(b'\'');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::wire::put_lenenc_bytes;

    fn var(name: &str, value: &str) -> Vec<u8> {
        let mut inner = Vec::new();
        put_lenenc_bytes(&mut inner, name.as_bytes());
        put_lenenc_bytes(&mut inner, value.as_bytes());
        let mut out = vec![0];
        put_lenenc_bytes(&mut out, &inner);
        out
    }

    #[test]
    fn tracked_changes_update_state_and_unexplained_changes_are_flagged() {
        let mut s = State::default();
        let mut data = var("time_zone", "+01:00");
        data.extend([2, 1, b'1']);
        assert_eq!(s.apply(Some(&data), 0), Applied::default());
        assert_eq!(s.vars.get(&b"time_zone"[..]).map(|v| &v[..]), Some(&b"+01:00"[..]));

        let applied = s.apply(Some(&[2, 1, b'1']), 5);
        assert!(applied.unexplained_change, "SET @a = 1 reports only 'state changed'");
        assert_eq!(s.last_insert_id, 5);

        let applied = s.apply(Some(&var("last_gtid", "0-1-9")), 0);
        assert!(!applied.unexplained_change);
        assert_eq!(s.last_gtid.as_deref(), Some(&b"0-1-9"[..]));
        assert_eq!(s.vars.len(), 1, "last_gtid is never replayed");
    }

    #[test]
    fn sync_sets_differences_and_resets_extras() {
        let mut conn = State::default();
        conn.apply(Some(&var("sql_mode", "ANSI")), 0);
        conn.apply(Some(&var("time_zone", "+01:00")), 0);
        let mut session = State::default();
        session.apply(Some(&var("time_zone", "+02:00")), 0);
        session.apply(Some(&var("max_statement_time", "5.000000")), 0);
        session.apply(Some(&var("character_set_results", "NULL")), 0);
        session.apply(Some(&var("init_connect", "it's \\ odd")), 0);
        session.last_insert_id = 42;
        let sql = conn.variables_sync(&session, true).unwrap();
        assert_eq!(
            std::str::from_utf8(&sql[1..]).unwrap(),
            "SET SESSION character_set_results = NULL, init_connect = 'it''s \\\\ odd', \
             max_statement_time = 5.000000, time_zone = '+02:00', sql_mode = DEFAULT, last_insert_id = 42"
        );
        assert!(conn.variables_sync(&conn.clone(), true).is_none());
        assert!(!conn.matches(&session, false));
        assert!(conn.matches(&conn.clone(), true));
    }

    #[test]
    fn handshake_variables_are_reset_to_the_handshake_value() {
        let mut conn = State::default();
        conn.baseline.insert(b"character_set_client"[..].into(), b"utf8mb4"[..].into());
        conn.apply(Some(&var("character_set_client", "latin1")), 0);
        conn.apply(Some(&var("time_zone", "+01:00")), 0);
        let sql = conn.variables_sync(&State::default(), false).unwrap();
        assert_eq!(
            std::str::from_utf8(&sql[1..]).unwrap(),
            "SET SESSION character_set_client = 'utf8mb4', time_zone = DEFAULT"
        );
    }
}
