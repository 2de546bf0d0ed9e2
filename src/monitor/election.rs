//! Primary election from the monitor's verdicts, as one pure function.
//!
//! The rule: the single reachable writable backend is the primary, whatever the configuration
//! hinted. The monitor never guesses: with two writable backends it keeps the current primary if
//! it is one of them, and otherwise names none (writes wait).

use std::time::Instant;

use crate::backend::BackendIndex;

/// What the election needs to know about one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Which backend.
    pub index: BackendIndex,
    /// Up after the thresholds.
    pub up: bool,
    /// The latest probe succeeded.
    pub reachable: bool,
    /// Several statements wait on it without an answer since it last answered one (the data
    /// path's suspicion, before a probe can fail; see `Tracker::data_path_stalled`).
    pub stalled: bool,
    /// Writable at the last successful probe; `None` before the first one.
    pub writable: Option<bool>,
    /// The last moment it was known to answer (a successful probe, or statements answered).
    pub last_alive: Option<Instant>,
    /// When it was first seen writable in its current writable spell.
    pub writable_since: Option<Instant>,
}

/// The outcome of one election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Election {
    /// The primary, if one can be named.
    pub primary: Option<BackendIndex>,
    /// Two or more reachable backends are writable.
    pub split_brain: bool,
}

/// Elects the primary given the `current` one.
///
/// * Two or more reachable writable backends: split brain; keep `current` if it is one of them,
///   else none.
/// * Exactly one, `W`: it is the primary, unless another backend that was writable is still up
///   but failed its latest probe (a primary dying, not yet confirmed down), was last seen
///   answering after `W` turned writable, and `W` is not `current`; then none until that one is
///   confirmed down or answers again. A suspect last seen before `W` turned writable does not
///   hold `W` back: `W` was promoted after the suspect went silent, which is what a failover
///   looks like (an orchestrator promoting a replica of a frozen or partitioned primary). A
///   writer whose probe still passes but whose data path fell silent before `W` turned writable
///   counts as such a suspect; one merely busy with a long statement does not (it answered after
///   `W` turned writable, or nobody else turned writable).
/// * None reachable: keep `current` while it is up and was writable at its last probe (or was
///   never probed: the configuration's hint); else none.
pub fn elect(current: Option<BackendIndex>, candidates: &[Candidate]) -> Election {
    let writers = || candidates.iter().filter(|c| c.up && c.writable == Some(true));
    // `c` was last seen answering before `w` turned writable.
    let silent_before = |c: &Candidate, w: &Candidate| matches!((c.last_alive, w.writable_since), (Some(ok), Some(since)) if ok < since);
    // A probe-reachable writer whose data path stalled before another, answering writer turned
    // writable has been replaced (a promotion away from a frozen primary whose probe has not
    // failed yet). A stall alone changes nothing.
    let replaced = |c: &Candidate| {
        c.stalled && writers().any(|w| w.index != c.index && w.reachable && !w.stalled && silent_before(c, w))
    };
    let live = |c: &Candidate| c.reachable && !replaced(c);
    let reachable: Vec<BackendIndex> = writers().filter(|c| live(c)).map(|c| c.index).collect();
    let suspects = |w: BackendIndex| {
        let Some(w) = candidates.iter().find(|c| c.index == w) else { return 0 };
        writers().filter(|c| !live(c) && !silent_before(c, w)).count()
    };
    match reachable.as_slice() {
        [] => {
            let keep = current
                .and_then(|index| candidates.iter().find(|c| c.index == index))
                .filter(|c| c.up && c.writable != Some(false))
                .map(|c| c.index);
            Election { primary: keep, split_brain: false }
        }
        [only] if current == Some(*only) || suspects(*only) == 0 => {
            Election { primary: Some(*only), split_brain: false }
        }
        [_] => Election { primary: None, split_brain: false },
        many => {
            let keep = current.filter(|c| many.contains(c));
            Election { primary: keep, split_brain: true }
        }
    }
}
