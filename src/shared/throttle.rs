//! A brake on password guessing, per source address, on the client and admin ports (MySQL's
//! `max_connect_errors` idea with a time decay instead of `FLUSH HOSTS`).
//!
//! Each failed login from an address adds one to its score; the score drains by one every
//! `listen.auth_failure_decay`. While an address's score is at `listen.max_auth_failures` or
//! more, its logins are refused before the password is checked (the client port answers
//! ERR 1129, as MySQL does for a blocked host; the admin port refuses the login). Failures are
//! logged at info for the first few of an address and then once per decay period, with how many
//! were not logged. One short lock per failed or blocked login; nothing on the statement path.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses remembered at most; beyond this the calmest are forgotten.
const MAX_SOURCES: usize = 10_000;
/// Failures of one address logged one by one before logging is rate-limited.
const LOGGED_ONE_BY_ONE: u32 = 3;

#[derive(Debug, Clone, Copy)]
struct Score {
    failures: f64,
    at: Instant,
    /// Failures since the last log line.
    unlogged: u32,
    logged_at: Option<Instant>,
    total: u32,
}

/// Failed logins per source address.
#[derive(Debug, Default)]
pub struct Throttle {
    scores: Mutex<HashMap<IpAddr, Score>>,
}

/// Whether to write a log line for a failure, and how many earlier ones it stands for.
pub struct LogLine {
    /// Failures of this address not logged since the last line.
    pub suppressed: u32,
}

fn drained(score: &Score, now: Instant, decay: Duration) -> f64 {
    let periods = now.saturating_duration_since(score.at).as_secs_f64() / decay.as_secs_f64().max(0.001);
    (score.failures - periods).max(0.0)
}

impl Throttle {
    /// True while `source` may not log in (`max` failures, draining one per `decay`).
    pub fn is_blocked(&self, source: IpAddr, max: u32, decay: Duration) -> bool {
        if max == 0 {
            return false;
        }
        let scores = self.scores.lock().unwrap_or_else(|p| p.into_inner());
        // Blocked until the failure that reached `max` has drained (a whole `decay`).
        scores.get(&source).is_some_and(|s| drained(s, Instant::now(), decay) > f64::from(max) - 1.0)
    }

    /// Counts a failed login from `source`; returns a log line when one is due.
    pub fn failed(&self, source: IpAddr, decay: Duration) -> Option<LogLine> {
        let now = Instant::now();
        let mut scores = self.scores.lock().unwrap_or_else(|p| p.into_inner());
        if scores.len() >= MAX_SOURCES && !scores.contains_key(&source) {
            // Forget the address with the lowest score.
            if let Some(calmest) = scores
                .iter()
                .min_by(|a, b| drained(a.1, now, decay).total_cmp(&drained(b.1, now, decay)))
                .map(|(ip, _)| *ip)
            {
                scores.remove(&calmest);
            }
        }
        let score =
            scores.entry(source).or_insert(Score { failures: 0.0, at: now, unlogged: 0, logged_at: None, total: 0 });
        score.failures = drained(score, now, decay) + 1.0;
        score.at = now;
        score.total = score.total.saturating_add(1);
        let due = score.total <= LOGGED_ONE_BY_ONE || score.logged_at.is_none_or(|at| now.duration_since(at) >= decay);
        if due {
            let suppressed = std::mem::take(&mut score.unlogged);
            score.logged_at = Some(now);
            Some(LogLine { suppressed })
        } else {
            score.unlogged = score.unlogged.saturating_add(1);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_after_max_failures_and_logged_sparingly() {
        let throttle = Throttle::default();
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let other: IpAddr = "10.1.2.4".parse().unwrap();
        let decay = Duration::from_secs(3600);
        let mut lines = 0;
        for _ in 0..5 {
            assert!(!throttle.is_blocked(ip, 5, decay));
            lines += usize::from(throttle.failed(ip, decay).is_some());
        }
        assert!(throttle.is_blocked(ip, 5, decay));
        assert!(!throttle.is_blocked(other, 5, decay), "per address");
        assert!(!throttle.is_blocked(ip, 0, decay), "0 turns the brake off");
        assert_eq!(lines, LOGGED_ONE_BY_ONE as usize, "then one line per decay period");
    }

    #[test]
    fn failures_drain_with_time() {
        let throttle = Throttle::default();
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        for _ in 0..3 {
            throttle.failed(ip, Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        assert!(!throttle.is_blocked(ip, 3, Duration::from_millis(1)), "drained");
    }
}
