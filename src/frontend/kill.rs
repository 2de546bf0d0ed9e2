//! `KILL [QUERY | CONNECTION] n` and `COM_PROCESS_KILL`: `n` is the connection id the proxy gave
//! a client in its handshake. The proxy finds the backend thread currently serving that client
//! and kills that statement with a fresh backend connection; `CONNECTION` also closes the
//! client's session. Only the same user may kill a session.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::ConnId;

/// What a running session exposes to `KILL`.
#[derive(Debug)]
pub struct Slot {
    /// The session's proxy user.
    pub user: String,
    /// Backend index + 1 in the high half and thread id in the low half while a statement runs
    /// (or a connection is held); 0 when the session holds no backend connection.
    running: AtomicU64,
    killed: AtomicBool,
    /// Woken when the session is killed.
    pub wake: Notify,
}

impl Slot {
    /// Records the backend thread now serving the session (`None`: none).
    pub fn set_running(&self, at: Option<(usize, u32)>) {
        let packed = at.map_or(0, |(backend, thread)| ((backend as u64 + 1) << 32) | u64::from(thread));
        self.running.store(packed, Ordering::Relaxed);
    }

    /// The backend index and thread id serving the session, if any.
    pub fn running(&self) -> Option<(usize, u32)> {
        let packed = self.running.load(Ordering::Relaxed);
        let backend = (packed >> 32) as usize;
        (backend != 0).then(|| (backend - 1, packed as u32))
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
    fn running_packs_backend_and_thread() {
        let r = Registry::default();
        let slot = r.register(ConnId(3), "app");
        assert_eq!(slot.running(), None);
        slot.set_running(Some((0, 77)));
        assert_eq!(slot.running(), Some((0, 77)));
        slot.set_running(None);
        assert_eq!(slot.running(), None);
        assert!(r.get(3).is_some());
        r.unregister(ConnId(3));
        assert!(r.get(3).is_none());
    }
}
