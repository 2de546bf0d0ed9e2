//! Pure bookkeeping of probe results, no I/O: the up/down verdict with its thresholds, the
//! lagging flag with its hysteresis, and the primary's GTID history that turns a replica's GTID
//! position into a lag estimate.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::backend::{Evidence, GtidPosition, Replication, STALLED_WAITS};

/// What one successful full probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Neither `@@read_only` nor `@@innodb_read_only` is set.
    pub writable: bool,
    /// Replica status, `None` when it replicates from nothing.
    pub replication: Option<Replication>,
    /// Executed GTIDs, when the server reported a parsable position.
    pub gtid: Option<GtidPosition>,
}

/// Consecutive results needed to flip a verdict (`monitor.failure_threshold`,
/// `monitor.success_threshold`; both at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Failed probes in a row before a backend is down.
    pub failures: u32,
    /// Good probes in a row before a down backend is up.
    pub successes: u32,
}

/// Probe results of one backend with hysteresis. A backend starts up (the configuration's word
/// is trusted until a probe says otherwise).
#[derive(Debug, Clone)]
pub struct Tracker {
    up: bool,
    oks: u32,
    fails: u32,
    /// The last successful probe, kept while later ones fail.
    pub observation: Option<Observation>,
    /// When the last successful probe started.
    last_ok: Option<Instant>,
    /// When the first of the successful probes that have seen it writable since it was last seen
    /// read-only started.
    writable_since: Option<Instant>,
    /// Statements answered as of the last look at the data path.
    answered: u64,
    /// When that count was last seen to grow.
    answered_at: Option<Instant>,
    /// Unanswered wait slices counted when it last grew.
    silent_at_answer: u64,
    /// Unanswered wait slices as of the last look.
    silent: u64,
    /// Statements waiting unanswered as of the last look ([`Evidence::waiting`]).
    waiting: u32,
    /// Failed probes discounted in a row.
    discounted: u32,
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            up: true,
            oks: 0,
            fails: 0,
            observation: None,
            last_ok: None,
            writable_since: None,
            answered: 0,
            answered_at: None,
            silent_at_answer: 0,
            silent: 0,
            waiting: 0,
            discounted: 0,
        }
    }
}

impl Tracker {
    /// Records one probe result of a probe started `at`; returns the new verdict when it flipped
    /// (`true` = up).
    pub fn record(&mut self, result: Option<Observation>, at: Instant, thresholds: Thresholds) -> Option<bool> {
        match result {
            Some(observation) => {
                if !observation.writable {
                    self.writable_since = None;
                } else if self.writable_since.is_none() {
                    self.writable_since = Some(at);
                }
                self.last_ok = Some(at);
                self.discounted = 0;
                self.observation = Some(observation);
                self.oks = self.oks.saturating_add(1);
                self.fails = 0;
                if !self.up && self.oks >= thresholds.successes.max(1) {
                    self.up = true;
                    return Some(true);
                }
            }
            None => {
                self.fails = self.fails.saturating_add(1);
                self.oks = 0;
                if self.up && self.fails >= thresholds.failures.max(1) {
                    self.up = false;
                    return Some(false);
                }
            }
        }
        None
    }

    /// Records a failed probe that the data path corroborates (statements wait on the backend
    /// without an answer): the backend is down now, whatever the threshold. Returns `Some(false)`
    /// when that flipped the verdict.
    pub fn record_corroborated_failure(&mut self, thresholds: Thresholds) -> Option<bool> {
        self.fails = self.fails.saturating_add(1).max(thresholds.failures);
        self.oks = 0;
        if self.up {
            self.up = false;
            return Some(false);
        }
        None
    }

    /// Notes a failed probe that was not counted; true for the first of a streak (worth a
    /// warning: a monitor that cannot probe a backend serving traffic is misconfigured or
    /// starved, and should be looked at).
    pub fn discount(&mut self) -> bool {
        self.discounted = self.discounted.saturating_add(1);
        self.discounted == 1
    }

    /// Takes in what the data path saw of the backend so far, looked at `now`.
    pub fn observe_data_path(&mut self, evidence: Evidence, now: Instant) {
        if evidence.answered != self.answered || self.answered_at.is_none() {
            self.answered = evidence.answered;
            self.answered_at = Some(now);
            self.silent_at_answer = evidence.silent;
        }
        self.silent = evidence.silent;
        self.waiting = evidence.waiting;
    }

    /// True when statements have waited on the backend without an answer since it last answered
    /// one. One long statement (a `SLEEP`, a lock wait, a report) on an otherwise idle backend
    /// is enough, so this alone only stops failed probes from being discounted.
    pub fn data_path_silent(&self) -> bool {
        self.silent > self.silent_at_answer
    }

    /// True when the data path is silent and at least [`STALLED_WAITS`] statements wait on the
    /// backend unanswered right now: the data path suspects it before its next probe can fail
    /// (which takes up to `monitor.timeout`). Two unrelated long statements and a failed probe
    /// at once on a backend that answers nothing else are taken for a frozen server.
    pub fn data_path_stalled(&self) -> bool {
        self.data_path_silent() && self.waiting >= STALLED_WAITS
    }

    /// How a probe that started at `started` and failed (seen at `now`) counts, given the data
    /// path:
    /// * decisive when it is stalled ([`Tracker::data_path_stalled`]);
    /// * counted when it is silent, when the failure is not a timeout (`timed_out` false: a
    ///   refused connection or login says something about the server or the monitor's account,
    ///   whatever the traffic), or when the last successful probe is older than
    ///   [`DISCOUNT_LIMIT`] (what the monitor knows of `read_only` and lag is that old);
    /// * otherwise discounted when the backend answered statements during the probe or in the
    ///   last `ANSWER_WINDOW`: every probe timing out while statements succeed says the proxy
    ///   is short of CPU, not that the servers failed.
    pub fn weigh_failure(&self, started: Instant, now: Instant, timed_out: bool) -> Weight {
        if self.data_path_stalled() {
            return Weight::Decisive;
        }
        let fresh = self.last_ok.is_some_and(|ok| now.saturating_duration_since(ok) <= DISCOUNT_LIMIT);
        if self.data_path_silent() || !timed_out || !fresh {
            return Weight::Counted;
        }
        let since = now.checked_sub(ANSWER_WINDOW).map_or(started, |recent| recent.min(started));
        if self.answered > 0 && self.answered_at.is_some_and(|at| at >= since) {
            Weight::Discounted
        } else {
            Weight::Counted
        }
    }

    /// The last moment it was known to be answering: its last successful probe, or the last look
    /// at the data path that found statements answered, whichever is later.
    pub fn last_alive(&self) -> Option<Instant> {
        self.last_ok.max(self.answered_at.filter(|_| self.answered > 0))
    }

    /// When it was first seen writable, in its current writable spell.
    pub fn writable_since(&self) -> Option<Instant> {
        self.writable_since
    }

    /// The verdict after the thresholds.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// True when the latest probe succeeded (or none ran yet).
    pub fn is_reachable(&self) -> bool {
        self.fails == 0
    }

    /// Writable at the last successful probe; `None` before the first one.
    pub fn writable(&self) -> Option<bool> {
        self.observation.as_ref().map(|o| o.writable)
    }
}

/// How much one failed probe counts ([`Tracker::weigh_failure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    /// Not at all: the backend answers statements.
    Discounted,
    /// One failure towards `monitor.failure_threshold`.
    Counted,
    /// Down at once: statements wait on it without an answer.
    Decisive,
}

/// Failed probes are discounted only this long after the last successful one: past it, what the
/// monitor knows of the backend (`read_only`, replication, lag) is too old to keep trusting, and
/// failures count whatever the traffic.
pub const DISCOUNT_LIMIT: Duration = Duration::from_secs(10);

/// Answers seen this recently discount a failed probe however short it was (the data path is
/// looked at every 100 ms).
const ANSWER_WINDOW: Duration = Duration::from_millis(250);

/// The new lagging flag: set above `max`, cleared at or below `max / 2`, unchanged in between
/// or when the lag is unknown.
pub fn lagging(was: bool, lag: Option<Duration>, max: Duration) -> bool {
    match lag {
        Some(lag) if lag > max => true,
        Some(lag) if lag <= max / 2 => false,
        _ => was,
    }
}

/// The larger of `Seconds_Behind_Master` and the GTID estimate, whichever are known.
pub fn combined_lag(seconds_behind: Option<u64>, gtid_lag: Option<Duration>) -> Option<Duration> {
    let sbm = seconds_behind.map(Duration::from_secs);
    match (sbm, gtid_lag) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Most samples kept, whatever the time window.
const MAX_SAMPLES: usize = 10_000;

/// The primary's GTID positions over time, each with the moment it was first seen. A replica
/// that lacks a position the primary had at time `t` is at least `now - t` behind; this needs
/// no heartbeat table and works whatever the replica's threads are doing (stopped SQL thread,
/// disconnected IO thread, no replication at all).
#[derive(Debug, Default)]
pub struct History {
    samples: VecDeque<(Instant, GtidPosition)>,
}

impl History {
    /// Records the primary's position seen at `at`, keeping samples for `keep`.
    pub fn record(&mut self, at: Instant, position: &GtidPosition, keep: Duration) {
        if self.samples.back().is_none_or(|(_, last)| last != position) {
            self.samples.push_back((at, position.clone()));
        }
        while self.samples.len() > MAX_SAMPLES
            || (self.samples.len() > 1
                && self.samples.front().is_some_and(|(t, _)| at.saturating_duration_since(*t) > keep))
        {
            self.samples.pop_front();
        }
    }

    /// How long the primary has had something `position` lacks, as of `at`: zero when it covers
    /// the newest sample taken by then, `None` with no sample at all.
    pub fn lag(&self, position: &GtidPosition, at: Instant) -> Option<Duration> {
        let mut first_missing: Option<Instant> = None;
        for (t, sample) in self.samples.iter().rev().filter(|(t, _)| *t <= at) {
            if position.covers_all(sample) {
                return Some(first_missing.map_or(Duration::ZERO, |t| at.saturating_duration_since(t)));
            }
            first_missing = Some(*t);
        }
        first_missing.map(|t| at.saturating_duration_since(t))
    }

    /// Forgets everything (the backend list changed).
    pub fn clear(&mut self) {
        self.samples.clear();
    }
}
