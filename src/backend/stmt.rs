//! The prepared statements one backend connection holds: proxy statement id → backend
//! statement id, bounded. When full, the least recently used statement is evicted and closed on
//! the server (lazily: the `COM_STMT_CLOSE` rides along with the next command, it has no
//! response), so `max_prepared_stmt_count` is never exhausted by the proxy.
//!
//! Each entry belongs to one client statement (a proxy id is never shared between clients, so
//! one client's statement state, such as a failed long-data send, never reaches another's) and
//! holds a weak [`Owner`] token of it. Once the client closes its statement the token dies, and
//! the connection closes its copy before its next prepare ([`StmtCache::close_dead`]) or when
//! the entry is evicted, whichever comes first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};

/// Proxy-wide id of a prepared statement (one per client `COM_STMT_PREPARE`).
pub type GlobalId = u64;

/// Held by the client statement a cache entry belongs to; the entry is dead once it is gone.
#[derive(Debug, Default)]
pub struct Owner(());

#[derive(Debug, Clone)]
struct Entry {
    backend_id: u32,
    types_sent: bool,
    last_used: u64,
    owner: Weak<Owner>,
}

/// Statements prepared on one connection.
#[derive(Debug)]
pub struct StmtCache {
    entries: HashMap<GlobalId, Entry>,
    capacity: usize,
    clock: u64,
    to_close: Vec<u32>,
    /// Statements open on the backend across its connections (`rwsplit_prepared_statements`).
    open: Option<Arc<AtomicI64>>,
}

impl StmtCache {
    /// A cache holding at most `capacity` statements (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self { entries: HashMap::new(), capacity: capacity.max(1), clock: 0, to_close: Vec::new(), open: None }
    }

    /// Counts this connection's statements in `open`, the backend's total, from now on.
    pub fn count_in(&mut self, open: Arc<AtomicI64>) {
        open.fetch_add(self.entries.len() as i64, Ordering::Relaxed);
        self.open = Some(open);
    }

    fn counted(&self, delta: i64) {
        if let Some(open) = &self.open {
            open.fetch_add(delta, Ordering::Relaxed);
        }
    }

    /// The backend id of `id` on this connection, and whether parameter types were already sent
    /// to it; marks it recently used.
    pub fn get(&mut self, id: GlobalId) -> Option<(u32, bool)> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(&id).map(|e| {
            e.last_used = clock;
            (e.backend_id, e.types_sent)
        })
    }

    /// Records that parameter types were sent for `id`.
    pub fn mark_types_sent(&mut self, id: GlobalId) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.types_sent = true;
        }
    }

    /// Queues the close of every statement whose client statement is gone. Costs a scan of
    /// the entries (at most the capacity): call it where a round trip follows anyway (before a
    /// prepare, whose `COM_STMT_CLOSE`s then ride along in the same write).
    pub fn close_dead(&mut self) {
        let before = self.entries.len();
        let to_close = &mut self.to_close;
        self.entries.retain(|_, e| {
            let alive = e.owner.strong_count() > 0;
            if !alive {
                to_close.push(e.backend_id);
            }
            alive
        });
        self.counted(-((before - self.entries.len()) as i64));
    }

    /// Records a new statement owned by `owner`, evicting the least recently used one when full.
    pub fn insert(&mut self, id: GlobalId, backend_id: u32, owner: &Arc<Owner>) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&id) {
            if let Some((&old, _)) = self.entries.iter().min_by_key(|(_, e)| e.last_used) {
                if let Some(e) = self.entries.remove(&old) {
                    self.to_close.push(e.backend_id);
                    self.counted(-1);
                }
            }
        }
        self.clock += 1;
        let entry = Entry { backend_id, types_sent: false, last_used: self.clock, owner: Arc::downgrade(owner) };
        if let Some(old) = self.entries.insert(id, entry) {
            // Prepared again on the same connection (it should not be): close the older copy.
            self.to_close.push(old.backend_id);
        } else {
            self.counted(1);
        }
    }

    /// Forgets `id` and queues its close on the server (closing a statement also closes its
    /// cursor).
    pub fn evict(&mut self, id: GlobalId) {
        if let Some(e) = self.entries.remove(&id) {
            self.to_close.push(e.backend_id);
            self.counted(-1);
        }
    }

    /// Backend ids to close before the next command.
    pub fn take_to_close(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.to_close)
    }

    /// Statements currently open on the server for this connection.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no statement is open.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets everything (the server dropped the statements, e.g. after `COM_RESET_CONNECTION`).
    pub fn clear(&mut self) {
        self.counted(-(self.entries.len() as i64));
        self.entries.clear();
        self.to_close.clear();
    }
}

impl Drop for StmtCache {
    fn drop(&mut self) {
        // The connection is closing: the server drops its statements with it.
        self.counted(-(self.entries.len() as i64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used_and_queues_its_close() {
        let owner = Arc::new(Owner::default());
        let mut c = StmtCache::new(2);
        c.insert(1, 10, &owner);
        c.insert(2, 20, &owner);
        assert_eq!(c.get(1), Some((10, false)));
        c.insert(3, 30, &owner);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(2), None, "2 was least recently used");
        assert_eq!(c.take_to_close(), vec![20]);
        assert!(c.take_to_close().is_empty());
        c.mark_types_sent(3);
        assert_eq!(c.get(3), Some((30, true)));
    }

    #[test]
    fn counts_open_statements_in_the_backend_total() {
        let owner = Arc::new(Owner::default());
        let open = Arc::new(AtomicI64::new(5));
        let mut c = StmtCache::new(2);
        c.insert(1, 10, &owner);
        c.count_in(open.clone());
        assert_eq!(open.load(Ordering::Relaxed), 6, "statements already open count once adopted");
        c.insert(2, 20, &owner);
        c.insert(2, 21, &owner);
        assert_eq!(c.take_to_close(), vec![20], "a second copy on one connection replaces the first");
        c.insert(3, 30, &owner);
        assert_eq!(open.load(Ordering::Relaxed), 7, "re-insert counts nothing, eviction gives one back");
        c.evict(3);
        assert_eq!(open.load(Ordering::Relaxed), 6);
        c.insert(4, 40, &owner);
        drop(c);
        assert_eq!(open.load(Ordering::Relaxed), 5, "a closed connection's statements are gone");
    }

    #[test]
    fn statements_of_closed_client_statements_are_closed_before_the_next_prepare() {
        let open = Arc::new(AtomicI64::new(0));
        let kept = Arc::new(Owner::default());
        let closed = Arc::new(Owner::default());
        let mut c = StmtCache::new(8);
        c.count_in(open.clone());
        c.insert(1, 10, &kept);
        c.insert(2, 20, &closed);
        c.insert(3, 30, &closed);
        c.close_dead();
        assert!(c.take_to_close().is_empty(), "nothing closed while the client statements live");
        drop(closed);
        c.close_dead();
        let mut gone = c.take_to_close();
        gone.sort_unstable();
        assert_eq!(gone, vec![20, 30]);
        assert_eq!((c.len(), open.load(Ordering::Relaxed)), (1, 1));
        assert_eq!(c.get(1), Some((10, false)));
    }
}
