//! What a statement's wait for the server gives up on ([`Watch`]), and what those waits tell the
//! monitor about each backend ([`Marks`], [`Evidence`]): the lease methods that wait for a server
//! run here, under the lease's watch.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{BackendIndex, Error, Lease};
use crate::protocol::packet::within;

/// A backend's generation, its last demotion and what the data path saw of it, shared by its
/// pools and their leases.
#[derive(Debug, Default)]
pub(super) struct Marks {
    /// The backend's index in the running backend list; a reload that renumbers the backends
    /// moves it ([`Pools::reindex`]), so that leases held across it keep naming their server.
    pub(super) index: AtomicUsize,
    /// The backend's id for `KILL QUERY` ([`Lease::server`]), unique among the pools' backends
    /// and never 0; it stays with the backend when a reload renumbers the list.
    pub(super) uid: u32,
    /// Bumped by every [`Pools::drain`].
    pub(super) generation: AtomicU64,
    /// The generation [`Pools::demote`] set when the backend last stopped being the primary (0 =
    /// never): connections made before it belong to a former primary.
    pub(super) demoted: AtomicU64,
    /// Statements the backend answered ([`Lease::answered`]).
    pub(super) answered: AtomicU64,
    /// [`RETIRE_CHECK`] slices a watched statement waited on it without a byte.
    pub(super) silent: AtomicU64,
    /// Watched waits going on now that have gone at least one [`RETIRE_CHECK`] slice without a
    /// byte ([`Waiting`]).
    pub(super) waiting: AtomicU32,
    /// Woken when a watched statement has waited [`STALL_NOTICE`] without a byte (the monitor
    /// probes at once); shared by every backend of one [`Pools`].
    pub(super) stalls: Arc<tokio::sync::Notify>,
}

impl Marks {
    /// Counts a wait as unanswered until the guard drops.
    fn waiting(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(self)
    }

    /// One more slice of a wait went by without a byte; the wait has now lasted `waited`. The
    /// monitor is nudged when it crosses [`STALL_NOTICE`] with another wait unanswered too: one
    /// slow statement (a report, a lock wait) is no reason to probe everything at once.
    fn silent_slice(&self, waited: Duration, slice: Duration) {
        self.silent.fetch_add(1, Ordering::Relaxed);
        if waited >= STALL_NOTICE
            && waited.saturating_sub(slice) < STALL_NOTICE
            && self.waiting.load(Ordering::Relaxed) >= STALLED_WAITS
        {
            self.stalls.notify_one();
        }
    }
}

/// One watched wait that has gone a slice without a byte, counted in [`Marks::waiting`] while it
/// lasts (however it ends: an answer, an error, or the session dropping the future).
struct Waiting<'a>(&'a Marks);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the data path saw of one backend, for the monitor: a failed probe means little while
/// statements are being answered (the proxy itself may be starved of CPU), and much while
/// statements wait on the backend without an answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evidence {
    /// Statements answered so far.
    pub answered: u64,
    /// 200 ms slices (`RETIRE_CHECK`) that watched statements waited without a byte, so far.
    pub silent: u64,
    /// Watched statements waiting now that have gone at least one slice without a byte.
    pub waiting: u32,
}

/// What a statement's wait for its answer gives up on, besides the caller's timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// Nothing: the wait lasts the caller's whole timeout.
    Off,
    /// A read on a replica: gives up after the bound without an answer ([`Error::Stalled`]) and
    /// as soon as the backend's pools are drained ([`Error::Abandoned`]: the monitor marked it
    /// down).
    Read(Duration),
    /// A statement on the primary: gives up only when the backend stops being the primary
    /// ([`Error::Demoted`]: the monitor elected another one). Marked down alone is not enough:
    /// a primary that is merely slow, or frozen with no replacement, keeps its statements, whose
    /// outcome must not be left unknown on a probe's opinion.
    Primary,
}

/// While a watched statement waits, how often it looks whether its backend was drained or
/// demoted. Only a wait this long costs an extra timer; a fast answer costs nothing more.
const RETIRE_CHECK: Duration = Duration::from_millis(200);

/// A watched statement that has waited this long without a byte asks the monitor to probe its
/// backend at once (once per statement), when another one waits unanswered too.
const STALL_NOTICE: Duration = Duration::from_millis(400);

/// Sends up to this size fit a TCP socket's smallest default send buffer (`net.ipv4.tcp_wmem`'s
/// 16 KiB), so they complete without waiting on the server.
const SMALL_SEND: usize = 16 << 10;

/// Statements waiting unanswered on one backend at once that make its silence a stall: the
/// monitor is nudged, and a failed probe is decisive (`monitor::health::Tracker`).
pub const STALLED_WAITS: u32 = 2;

impl Lease {
    /// The backend it belongs to, by its index in the running backend list
    /// ([`super::REMOVED`] once a reload removed it).
    pub fn backend(&self) -> BackendIndex {
        BackendIndex(self.marks.index.load(Ordering::Relaxed))
    }

    /// The backend's id, for [`super::Pools::server`]: unlike its index, it cannot come to
    /// name another server.
    pub fn server(&self) -> u32 {
        self.marks.uid
    }

    /// True when the backend's pools were drained after this connection was made (failover,
    /// backend down): whatever the session kept on it (a transaction, pinned state) is gone.
    pub fn is_retired(&self) -> bool {
        self.conn.generation != self.marks.generation.load(Ordering::Relaxed)
    }

    /// Sets what the next waits for the server give up on (until changed); see [`Watch`].
    pub fn watch(&mut self, watch: Watch) {
        self.watch = watch;
    }

    /// Counts a statement the backend answered, as health evidence for the monitor.
    pub fn answered(&self) {
        self.marks.answered.fetch_add(1, Ordering::Relaxed);
    }

    /// Waits up to `timeout` for more response bytes, within what [`Lease::watch`] set. Shadows
    /// [`Conn::fill`](super::Conn::fill) for leases. A timed-out socket read loses nothing (`read_buf` is
    /// cancel-safe), so waiting in slices is exact and costs one timer, as one whole wait does.
    pub async fn fill(&mut self, timeout: Duration) -> Result<(), Error> {
        let limit = match self.watch {
            Watch::Off => return self.conn.fill(timeout).await,
            Watch::Read(stall) => timeout.min(stall),
            Watch::Primary => timeout,
        };
        let mut waited = Duration::ZERO;
        let mut unanswered = None;
        loop {
            let slice = RETIRE_CHECK.min(limit.saturating_sub(waited));
            match self.conn.fill(slice).await {
                Err(err) if err.is_timeout() => {
                    waited += slice;
                    unanswered.get_or_insert_with(|| self.marks.waiting());
                    self.marks.silent_slice(waited, slice);
                    if let Some(given_up) = given_up(self.watch, &self.marks, self.conn.generation, waited) {
                        return Err(given_up);
                    }
                    if waited >= limit {
                        return Err(if limit < timeout { Error::Stalled { after: limit } } else { err });
                    }
                }
                other => return other,
            }
        }
    }

    /// [`Conn::send_after`](super::Conn::send_after) within what [`Lease::watch`] set: a send that a frozen server's full
    /// socket buffer blocks (a large statement) is bounded and given up like the wait for its
    /// answer. Shadows [`Conn::send_after`](super::Conn::send_after) for leases.
    pub async fn send_after(&mut self, framed: &[u8], payload: &[u8], timeout: Duration) -> Result<(), Error> {
        let (watch, mine, limit) = (self.watch, self.conn.generation, self.limit(timeout));
        if framed.len() + payload.len() <= SMALL_SEND {
            // Fits the socket's send buffer, empty between statements: it never waits, and the
            // watch would only cost the common statement its bookkeeping.
            return self.conn.send_after(framed, payload, limit).await;
        }
        let work = self.conn.send_after(framed, payload, limit);
        watched(work, watch, &self.marks, mine, timeout, Evidential::No).await
    }

    /// [`Lease::send_after`] with nothing framed before. Shadows [`Conn::send`](super::Conn::send) for leases.
    pub async fn send(&mut self, payload: &[u8], timeout: Duration) -> Result<(), Error> {
        self.send_after(&[], payload, timeout).await
    }

    /// [`Conn::sync_to`](super::Conn::sync_to) within what [`Lease::watch`] set. After [`Error::Abandoned`] or
    /// [`Error::Demoted`] the connection is in an unknown state, and the caller drops it.
    pub async fn sync_to(
        &mut self,
        target: &crate::backend::State,
        need_insert_id: bool,
        timeout: Duration,
    ) -> Result<Option<bytes::Bytes>, Error> {
        let (watch, mine, limit) = (self.watch, self.conn.generation, self.limit(timeout));
        let work = self.conn.sync_to(target, need_insert_id, limit);
        watched(work, watch, &self.marks, mine, timeout, Evidential::Yes).await
    }

    /// [`Conn::prepare`](super::Conn::prepare) within what [`Lease::watch`] set.
    pub async fn prepare(
        &mut self,
        sql: &[u8],
        timeout: Duration,
    ) -> Result<Result<crate::protocol::prepare::Prepared, bytes::Bytes>, Error> {
        let (watch, mine, limit) = (self.watch, self.conn.generation, self.limit(timeout));
        let work = self.conn.prepare(sql, limit);
        watched(work, watch, &self.marks, mine, timeout, Evidential::Yes).await
    }

    /// [`Conn::command_reply`](super::Conn::command_reply) within what [`Lease::watch`] set.
    pub async fn command_reply(&mut self, payload: &[u8], timeout: Duration) -> Result<bytes::Bytes, Error> {
        let (watch, mine, limit) = (self.watch, self.conn.generation, self.limit(timeout));
        let work = self.conn.command_reply(payload, limit);
        watched(work, watch, &self.marks, mine, timeout, Evidential::Yes).await
    }

    /// The whole wait allowed under the watch.
    fn limit(&self, timeout: Duration) -> Duration {
        match self.watch {
            Watch::Read(stall) => timeout.min(stall),
            Watch::Off | Watch::Primary => timeout,
        }
    }
}

/// Why a watched wait gives up now, after `waited` without an answer on a connection of
/// generation `mine`; `None` to go on waiting.
fn given_up(watch: Watch, marks: &Marks, mine: u64, waited: Duration) -> Option<Error> {
    match watch {
        Watch::Off => None,
        Watch::Read(_) => (mine != marks.generation.load(Ordering::Relaxed)).then_some(Error::Abandoned { waited }),
        Watch::Primary => (marks.demoted.load(Ordering::Relaxed) > mine).then_some(Error::Demoted { waited }),
    }
}

/// Whether a watched wait's silence tells the monitor something about the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Evidential {
    /// A wait for an answer: its silent slices count ([`Marks::silent_slice`], [`Waiting`]).
    Yes,
    /// A large send: it takes as long as the bytes take to go out, which on a slow link or
    /// under a bulk load is no sign of a frozen server (the wait for its answer is watched).
    No,
}

/// Runs `work` (already bounded by the watch's limit) and looks every [`RETIRE_CHECK`] whether
/// the watch gives up on it; a timeout under a read's stall bound becomes [`Error::Stalled`].
async fn watched<T>(
    work: impl std::future::Future<Output = Result<T, Error>>,
    watch: Watch,
    marks: &Marks,
    mine: u64,
    timeout: Duration,
    evidential: Evidential,
) -> Result<T, Error> {
    if watch == Watch::Off {
        return work.await;
    }
    tokio::pin!(work);
    let mut waited = Duration::ZERO;
    let mut unanswered = None;
    loop {
        // `within` arms no timer (and reads no clock) when the work completes at once, as a state
        // sync with nothing to change does on every statement.
        match within(RETIRE_CHECK, &mut work).await {
            Ok(Err(err)) if err.is_timeout() => {
                return Err(match watch {
                    Watch::Read(stall) if stall < timeout => Error::Stalled { after: stall },
                    _ => err,
                })
            }
            Ok(result) => return result,
            Err(_) => {
                waited += RETIRE_CHECK;
                if evidential == Evidential::Yes {
                    unanswered.get_or_insert_with(|| marks.waiting());
                    marks.silent_slice(waited, RETIRE_CHECK);
                }
                if let Some(given_up) = given_up(watch, marks, mine, waited) {
                    return Err(given_up);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wait of `long` under a replica read's watch; what it leaves in the backend's marks,
    /// and how many waits were unanswered while it ran.
    async fn silence_of(evidential: Evidential, long: Duration) -> (u64, u32) {
        let marks = Marks::default();
        let work = async {
            tokio::time::sleep(long).await;
            Ok::<_, Error>(marks.waiting.load(Ordering::Relaxed))
        };
        let waiting =
            watched(work, Watch::Read(Duration::from_secs(10)), &marks, 0, Duration::from_secs(60), evidential)
                .await
                .unwrap();
        assert_eq!(marks.waiting.load(Ordering::Relaxed), 0, "the guard is gone with the wait");
        (marks.silent.load(Ordering::Relaxed), waiting)
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_send_is_no_evidence_but_a_slow_answer_is() {
        let long = Duration::from_millis(700);
        assert_eq!(silence_of(Evidential::Yes, long).await, (3, 1));
        assert_eq!(silence_of(Evidential::No, long).await, (0, 0), "two bulk sends must not make a stall");
    }
}
