//! `KILL [QUERY | CONNECTION] n` and `COM_PROCESS_KILL`: `n` is the connection id the proxy gave
//! a client in its handshake. The proxy finds the backend thread currently serving that client
//! and kills that statement with a fresh backend connection; `CONNECTION` also closes the
//! client's session. Only the same user may kill a session.
//!
//! In a multi-statement packet, leading `KILL n` statements are run by the proxy (each answered
//! with an OK carrying `MORE_RESULTS_EXISTS`) and the rest of the packet is forwarded. A `KILL`
//! the proxy cannot translate (after another statement, in an executable comment, `KILL USER`,
//! `KILL QUERY ID`) is refused with an ERR and nothing runs: the id means nothing to a backend.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::ConnId;
use crate::classify::{classify_all, Kind, SqlMode};

/// What a running session exposes to `KILL`.
#[derive(Debug)]
pub struct Slot {
    /// The session's proxy user.
    pub user: String,
    /// The serving backend's id ([`crate::backend::Lease::server`], never 0) in the high half
    /// and the thread id in the low half while a statement runs; 0 when none runs.
    running: AtomicU64,
    killed: AtomicBool,
    /// Woken when the session is killed.
    pub wake: Notify,
}

impl Slot {
    /// Records the backend (by its id) and thread now serving the session (`None`: none).
    pub fn set_running(&self, at: Option<(u32, u32)>) {
        let packed = at.map_or(0, |(server, thread)| (u64::from(server) << 32) | u64::from(thread));
        self.running.store(packed, Ordering::Relaxed);
    }

    /// The backend id and thread id serving the session, if any.
    pub fn running(&self) -> Option<(u32, u32)> {
        let packed = self.running.load(Ordering::Relaxed);
        let server = (packed >> 32) as u32;
        (server != 0).then_some((server, packed as u32))
    }

    /// True once `KILL CONNECTION` targeted this session.
    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }

    /// Marks the session killed and wakes it.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }
}

/// All sessions by connection id.
#[derive(Debug, Default)]
pub struct Registry {
    slots: Mutex<HashMap<u32, Arc<Slot>>>,
}

impl Registry {
    /// Registers a logged-in session.
    pub fn register(&self, id: ConnId, user: &str) -> Arc<Slot> {
        let slot = Arc::new(Slot {
            user: user.to_owned(),
            running: AtomicU64::new(0),
            killed: AtomicBool::new(false),
            wake: Notify::new(),
        });
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).insert(id.0, slot.clone());
        slot
    }

    /// Removes a session when it ends.
    pub fn unregister(&self, id: ConnId) {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).remove(&id.0);
    }

    /// Looks a session up.
    pub fn get(&self, id: u32) -> Option<Arc<Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
    }
}

/// A parsed `KILL` statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillRequest {
    /// Only the running statement (`KILL QUERY`), not the connection.
    pub query_only: bool,
    /// The target connection id.
    pub id: u32,
}

/// Parses `KILL [HARD | SOFT] [QUERY | CONNECTION] n`, with comments anywhere (`/* c */ KILL 5`);
/// other forms such as `KILL USER`, `KILL QUERY ID`, or text with quotes or executable comments
/// return `None` and go to the server.
pub fn parse(sql: &[u8]) -> Option<KillRequest> {
    let text = without_comments(std::str::from_utf8(sql).ok()?)?;
    let mut words = text.trim().trim_end_matches(';').split_ascii_whitespace();
    if !words.next()?.eq_ignore_ascii_case("KILL") {
        return None;
    }
    let mut query_only = false;
    let mut word = words.next()?;
    if word.eq_ignore_ascii_case("HARD") || word.eq_ignore_ascii_case("SOFT") {
        word = words.next()?;
    }
    if word.eq_ignore_ascii_case("QUERY") {
        query_only = true;
        word = words.next()?;
    } else if word.eq_ignore_ascii_case("CONNECTION") {
        word = words.next()?;
    }
    let id = word.parse().ok()?;
    words.next().is_none().then_some(KillRequest { query_only, id })
}

/// How the proxy runs a query packet whose statements include a `KILL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// No `KILL` statement: forward the packet as usual.
    Forward,
    /// `KILL` statements the packet starts with, run by the proxy; then the rest of the packet
    /// from this byte offset (the statement after the last `KILL`'s `;`), if any.
    Leading {
        /// The leading `KILL`s, in order.
        kills: Vec<KillRequest>,
        /// Where the forwarded remainder starts.
        rest: Option<usize>,
    },
    /// A `KILL` the proxy cannot translate: answer an ERR, run nothing.
    Refuse,
}

/// Plans a query packet: see [`Plan`]. `KILL` is found by the statement classifier, so one in a
/// string or a comment is no `KILL`.
pub fn plan(sql: &[u8], mode: SqlMode) -> Plan {
    let mut kills = Vec::new();
    let mut rest = None;
    let mut previous_end = 0;
    for (statement, range) in classify_all(sql, mode).with_ranges() {
        match (statement.kind, rest) {
            (Kind::Kill, Some(_)) => return Plan::Refuse,
            (Kind::Kill, None) => {
                let Some(request) = sql.get(range.clone()).and_then(parse) else { return Plan::Refuse };
                kills.push(request);
                previous_end = range.end;
            }
            (_, Some(_)) => {}
            // A statement before any KILL: a later KILL is refused.
            (_, None) if kills.is_empty() => rest = Some(0),
            (Kind::Empty, None) => {}
            (_, None) => {
                // From just after the last KILL's `;`, so comments (hints) stay with the rest.
                let semicolon = sql.get(previous_end..).and_then(|s| s.iter().position(|&b| b == b';'));
                rest = Some(semicolon.map_or(range.start, |at| previous_end + at + 1));
            }
        }
    }
    match (kills.is_empty(), rest) {
        (true, _) => Plan::Forward,
        (false, rest) => Plan::Leading { kills, rest },
    }
}

/// `sql` with its plain comments (`/* */`, `-- `, `#`) replaced by spaces; `None` when it has
/// quotes, an executable comment (`/*!`, `/*M!`) or an unterminated comment, which are no KILL the
/// proxy translates.
fn without_comments(sql: &str) -> Option<String> {
    if sql.contains(['\'', '"', '`']) {
        return None;
    }
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(c) = rest.chars().next() {
        if let Some(body) = rest.strip_prefix("/*") {
            if body.starts_with('!') || body.starts_with("M!") {
                return None;
            }
            rest = &body[body.find("*/")? + 2..];
            out.push(' ');
        } else if rest.starts_with('#') || rest.starts_with("-- ") || rest.starts_with("--\t") || rest == "--" {
            rest = rest.find('\n').map_or("", |end| &rest[end..]);
            out.push(' ');
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_forms_parse() {
        assert_eq!(parse(b"KILL 5"), Some(KillRequest { query_only: false, id: 5 }));
        assert_eq!(parse(b"kill query 7;"), Some(KillRequest { query_only: true, id: 7 }));
        assert_eq!(parse(b"KILL HARD CONNECTION 9"), Some(KillRequest { query_only: false, id: 9 }));
        assert_eq!(parse(b"KILL USER app"), None);
        assert_eq!(parse(b"KILL QUERY ID 5"), None);
        assert_eq!(parse(b"SELECT 1"), None);
        assert_eq!(parse(b"/* c */ KILL 5"), Some(KillRequest { query_only: false, id: 5 }));
        assert_eq!(parse(b"KILL /* q */ QUERY 6 -- why\n"), Some(KillRequest { query_only: true, id: 6 }));
        assert_eq!(parse(b"# note\nKILL 7 ;"), Some(KillRequest { query_only: false, id: 7 }));
        assert_eq!(parse(b"/*! KILL */ 5"), None);
        assert_eq!(parse(b"/* open KILL 5"), None);
    }

    #[test]
    fn multi_statements_run_leading_kills_and_refuse_later_ones() {
        let mode = SqlMode::default();
        let kill = |id| KillRequest { query_only: false, id };
        assert_eq!(plan(b"SELECT 1; SELECT 2", mode), Plan::Forward);
        assert_eq!(plan(b"SELECT 'KILL 5'; SELECT 2", mode), Plan::Forward);
        assert_eq!(plan(b"KILL 5", mode), Plan::Leading { kills: vec![kill(5)], rest: None });
        assert_eq!(plan(b"KILL 5;", mode), Plan::Leading { kills: vec![kill(5)], rest: None });
        let sql = b"KILL 5; /* c */ KILL QUERY 6;/* hint */ SELECT 1; SELECT 2";
        match plan(sql, mode) {
            Plan::Leading { kills, rest: Some(at) } => {
                assert_eq!(kills, vec![kill(5), KillRequest { query_only: true, id: 6 }]);
                assert_eq!(&sql[at..], b"/* hint */ SELECT 1; SELECT 2");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(plan(b"SELECT 1; KILL 5", mode), Plan::Refuse);
        assert_eq!(plan(b"KILL USER app; SELECT 1", mode), Plan::Refuse);
        assert_eq!(plan(b"KILL 5; SELECT 1; KILL 6", mode), Plan::Refuse);
    }

    #[test]
    fn running_packs_backend_and_thread() {
        let r = Registry::default();
        let slot = r.register(ConnId(3), "app");
        assert_eq!(slot.running(), None);
        slot.set_running(Some((1, 77)));
        assert_eq!(slot.running(), Some((1, 77)));
        slot.set_running(None);
        assert_eq!(slot.running(), None);
        assert!(r.get(3).is_some());
        r.unregister(ConnId(3));
        assert!(r.get(3).is_none());
    }
}
