//! One connection cap per backend, across every pool of that backend (pools multiply by user,
//! client flags, collation and schema-or-not), and optionally one per user per backend
//! (`[[users]] max_backend_connections`).
//!
//! A cap is a fair (FIFO) semaphore; every backend connection holds a permit for its life, so
//! the count covers idle connections, connections in use and those held by pinned sessions or
//! transactions. A connect that finds the cap reached first closes one idle connection of
//! another pool of the same backend (a cap must never starve a pool while idle connections sit
//! in its neighbours), then waits in line up to the checkout timeout. No task runs here.

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::pool::Pool;

/// How often a connect waiting for room looks for an idle connection in another pool.
const ROOM_RECHECK: Duration = Duration::from_millis(25);

/// A cap on open connections.
#[derive(Debug)]
pub struct Cap {
    permits: Arc<Semaphore>,
    limit: AtomicU32,
    /// Connects waiting for a permit now.
    waiting: AtomicI64,
    /// The pools whose connections count against this cap, by pool id.
    pools: Mutex<Vec<(u64, Weak<Pool>)>>,
}

/// Counts a waiting connect for as long as it waits.
struct Waiting<'a>(&'a AtomicI64);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Cap {
    /// A cap of `limit` connections (at least 1).
    pub fn new(limit: u32) -> Self {
        let limit = limit.max(1);
        Self {
            permits: Arc::new(Semaphore::new(usize::try_from(limit).unwrap_or(usize::MAX))),
            limit: AtomicU32::new(limit),
            waiting: AtomicI64::new(0),
            pools: Mutex::new(Vec::new()),
        }
    }

    /// The limit now.
    pub fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Connects waiting for room now.
    pub fn waiting(&self) -> i64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Changes the limit (a reload). Lowering it takes effect as connections close.
    pub fn resize(&self, limit: u32) {
        let limit = limit.max(1);
        let old = self.limit.swap(limit, Ordering::Relaxed);
        if limit > old {
            self.permits.add_permits(usize::try_from(limit - old).unwrap_or(0));
        } else if limit < old {
            let mut owed = usize::try_from(old - limit).unwrap_or(0);
            owed -= self.permits.forget_permits(owed);
            // Permits in use now come back one by one; keep them out as they do.
            if owed > 0 {
                let permits = self.permits.clone();
                tokio::spawn(async move {
                    for _ in 0..owed {
                        match permits.acquire().await {
                            Ok(permit) => permit.forget(),
                            Err(_) => return,
                        }
                    }
                });
            }
        }
    }

    /// Counts `pool`'s connections against this cap.
    pub fn register(&self, id: u64, pool: &Arc<Pool>) {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.retain(|(_, weak)| weak.strong_count() > 0);
        pools.push((id, Arc::downgrade(pool)));
    }

    /// A permit for one new connection of pool `own`: at once when there is room; otherwise
    /// after closing an idle connection of another pool, or after waiting in line up to
    /// `timeout`. `None` when no room was made in time.
    pub async fn acquire(&self, own: u64, timeout: Duration) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        let queued = self.permits.clone().acquire_owned();
        tokio::pin!(queued);
        // Queue first (FIFO), then make room: a permit freed by the close goes to the head of the line.
        if let Some(permit) = futures_poll_once(&mut queued).await {
            return permit.ok();
        }
        // Connections come back to their own pools, not to this cap: while waiting, look again
        // now and then for one that went idle elsewhere.
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.close_one_idle(own).await;
            let next = (tokio::time::Instant::now() + ROOM_RECHECK).min(deadline);
            tokio::select! {
                permit = &mut queued => return permit.ok(),
                () = tokio::time::sleep_until(next) => {
                    if next >= deadline {
                        return None;
                    }
                }
            }
        }
    }

    /// Closes one idle connection of a pool other than `own`, if any has one.
    async fn close_one_idle(&self, own: u64) {
        let others: Vec<Arc<Pool>> = {
            let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
            pools.iter().filter(|(id, _)| *id != own).filter_map(|(_, weak)| weak.upgrade()).collect()
        };
        for pool in others {
            if pool.close_idle_connection().await {
                return;
            }
        }
    }
}

/// Polls `fut` once: its output if it is ready at once.
async fn futures_poll_once<F: std::future::Future + Unpin>(fut: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| match std::pin::Pin::new(&mut *fut).poll(cx) {
        std::task::Poll::Ready(out) => std::task::Poll::Ready(Some(out)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_are_served_in_order_and_resizing_moves_the_limit() {
        let cap = Arc::new(Cap::new(1));
        let first = cap.acquire(1, Duration::from_millis(10)).await.expect("room for one");
        assert!(cap.acquire(1, Duration::from_millis(20)).await.is_none(), "full: the wait times out");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for n in 0..3 {
            let (mine, tx) = (cap.clone(), tx.clone());
            tokio::spawn(async move {
                let permit = mine.acquire(1, Duration::from_secs(5)).await;
                tx.send(n).ok();
                drop(permit);
            });
            // Let each one queue before the next.
            while cap.waiting() < n + 1 {
                tokio::task::yield_now().await;
            }
        }
        drop(first);
        let order: Vec<i64> = vec![rx.recv().await.unwrap(), rx.recv().await.unwrap(), rx.recv().await.unwrap()];
        assert_eq!(order, [0, 1, 2], "first come, first served");
        cap.resize(3);
        let held: Vec<_> = futures_all(&cap, 3).await;
        assert_eq!(held.len(), 3);
        assert_eq!(cap.limit(), 3);
    }

    async fn futures_all(cap: &Arc<Cap>, n: usize) -> Vec<OwnedSemaphorePermit> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.extend(cap.acquire(1, Duration::from_millis(100)).await);
        }
        out
    }
}
