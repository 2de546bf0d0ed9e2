//! Routing: one pure decision per statement from its classification, the session's situation and
//! the topology snapshot. No I/O and no state; unit-tested on its own.
//!
//! Safe by default: only statements positively known to be reads leave the primary, and only
//! outside transactions, with `autocommit` on and no pinned state.

use crate::backend::{BackendIndex, Topology};
use crate::classify::{Classified, Flags, Hint, Kind};

/// Where a statement goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The current primary.
    Primary,
    /// A replica chosen by weight (the primary when none is usable, per `routing.no_replica`).
    Replica,
    /// A named backend (hint).
    Backend(BackendIndex),
    /// The backend connection the session already holds.
    Held,
}

/// A routing decision and the reason, for logs, metrics and `EXPLAIN ROUTE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Where to.
    pub target: Target,
    /// Why, as a short fixed phrase.
    pub reason: &'static str,
}

/// Why the session already holds a backend connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Session state lives on that connection (temporary tables, user variables, locks, ...).
    Pinned,
    /// A transaction is open on it.
    Transaction,
}

/// What the router needs to know about the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Situation {
    /// The connection the session holds, and why.
    pub hold: Option<Hold>,
    /// `autocommit` is on.
    pub autocommit: bool,
}

/// Decides where one statement runs. `all_reads` tells, for a multi-statement packet, whether
/// every statement in it is a read.
pub fn route(stmt: &Classified, all_reads: bool, situation: Situation, topology: &Topology) -> Route {
    let to = |target, reason| Route { target, reason };
    match situation.hold {
        Some(Hold::Pinned) => return to(Target::Held, "session pinned to its connection"),
        Some(Hold::Transaction) => return to(Target::Held, "inside a transaction"),
        _ => {}
    }
    match stmt.hint {
        Some(Hint::Primary) => return to(Target::Primary, "hint"),
        Some(Hint::Replica) => return to(Target::Replica, "hint"),
        Some(Hint::Backend(name)) => {
            return match topology.by_name(name.as_str().as_bytes()) {
                Some(index) => to(Target::Backend(index), "hint"),
                None => to(Target::Primary, "hint names an unknown backend"),
            }
        }
        None => {}
    }
    if !situation.autocommit {
        return to(Target::Primary, "autocommit is off");
    }
    if let Kind::Begin { read_only: Some(true), .. } = stmt.kind {
        return to(Target::Replica, "read-only transaction");
    }
    if stmt.flags.contains(Flags::MULTI) {
        return if all_reads {
            to(Target::Replica, "multi-statement of reads")
        } else {
            to(Target::Primary, "multi-statement with a write")
        };
    }
    if stmt.is_read_only() {
        return to(Target::Replica, "read");
    }
    let reason = match stmt.kind {
        Kind::Select | Kind::Show | Kind::Describe | Kind::Explain { .. } => {
            if stmt.flags.contains(Flags::LOCKING_READ) {
                "locking read"
            } else {
                "read bound to the primary"
            }
        }
        Kind::Unknown => "not understood",
        _ => "write or session statement",
    };
    to(Target::Primary, reason)
}

#[cfg(test)]
mod tests;
