//! Connections still in the handshake (not logged in yet), kept apart from client slots so that
//! sockets that never log in cannot take the places of real clients.
//!
//! At most `listen.max_handshakes` connections handshake at once. When one more arrives, the
//! oldest handshake is cut off: a real client finishes its handshake within milliseconds, so the
//! oldest ones are the silent or trickling sockets of a flood (slowloris), whatever address they
//! come from. Every handshake is also bounded in total by `server.handshake_timeout`. No task
//! runs here; entering and leaving take one short lock.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::ConnId;

/// The handshakes under way, oldest first.
#[derive(Debug, Default)]
pub struct Handshakes {
    queue: Mutex<VecDeque<(ConnId, Arc<Notify>)>>,
}

/// One connection's place among the handshakes; leaves when dropped.
#[derive(Debug)]
pub(super) struct Ticket {
    id: ConnId,
    evicted: Arc<Notify>,
    handshakes: Arc<Handshakes>,
}

impl Handshakes {
    /// Enters connection `id`, cutting off the oldest handshake when `max` are under way.
    /// Returns whether one was cut off.
    pub(super) fn enter(self: &Arc<Self>, id: ConnId, max: u32) -> (Ticket, bool) {
        let evicted = Arc::new(Notify::new());
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let mut cut = false;
        while queue.len() >= usize::try_from(max.max(1)).unwrap_or(usize::MAX) {
            match queue.pop_front() {
                Some((_, oldest)) => {
                    // `notify_one` stores a permit, so the handshake sees it even if it is not
                    // waiting at this instant.
                    oldest.notify_one();
                    cut = true;
                }
                None => break,
            }
        }
        queue.push_back((id, evicted.clone()));
        (Ticket { id, evicted, handshakes: self.clone() }, cut)
    }

    /// Handshakes under way now.
    pub fn len(&self) -> usize {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no handshake is under way.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Ticket {
    /// Completes when a newer connection cut this handshake off.
    pub(super) async fn evicted(&self) {
        self.evicted.notified().await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut queue = self.handshakes.queue.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = queue.iter().position(|(id, _)| *id == self.id) {
            queue.remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oldest_handshake_makes_room_and_tickets_leave_when_dropped() {
        let handshakes = Arc::new(Handshakes::default());
        let (first, cut) = handshakes.enter(ConnId(1), 2);
        assert!(!cut);
        let (second, _) = handshakes.enter(ConnId(2), 2);
        let (third, cut) = handshakes.enter(ConnId(3), 2);
        assert!(cut, "the third pushes the first out");
        tokio::time::timeout(std::time::Duration::from_secs(1), first.evicted()).await.expect("first was told");
        assert_eq!(handshakes.len(), 2);
        drop(second);
        drop(first);
        assert_eq!(handshakes.len(), 1, "only the third is left");
        drop(third);
        assert!(handshakes.is_empty());
    }
}
