//! What ties a session to one backend connection between statements: the held connection and why
//! it is held ([`Hold`]), the pin reasons, and the ledger that sees each pin end.
//!
//! Fields are private: a connection is held only while the session is pinned or in a
//! transaction ([`Binding::settle`]), and the pins change only through statements' effects
//! ([`Binding::apply`]), cursors ([`Binding::set_cursor`]) or the connection's loss
//! ([`Binding::forget`]). No task runs here.

use crate::backend::{BackendIndex, Lease};
use crate::classify::{Classified, Flags};
use crate::router::Hold;
use crate::shared::Pins;

use super::pin_ends::Ledger;

/// The held backend connection, the pins that hold it and their ledger.
#[derive(Default)]
pub(super) struct Binding {
    held: Option<(Lease, Hold)>,
    pins: Pins,
    ledger: Ledger,
}

/// What a statement's effects did to the pins.
pub(super) struct PinChange {
    /// Reasons the session took.
    pub added: Pins,
    /// Reasons that ended.
    pub ended: Pins,
}

impl Binding {
    /// Why a connection is held, if one is.
    pub(super) fn hold(&self) -> Option<Hold> {
        self.held.as_ref().map(|(_, hold)| *hold)
    }

    /// The held connection, if any.
    pub(super) fn lease(&self) -> Option<&Lease> {
        self.held.as_ref().map(|(lease, _)| lease)
    }

    /// The held connection, if any, to act on it in place.
    pub(super) fn lease_mut(&mut self) -> Option<&mut Lease> {
        self.held.as_mut().map(|(lease, _)| lease)
    }

    /// The held connection's backend and why it is held (`SHOW CLIENTS`).
    pub(super) fn seen(&self) -> Option<(BackendIndex, Hold)> {
        self.held.as_ref().map(|(lease, hold)| (lease.backend(), *hold))
    }

    /// Why the session is pinned (empty when it is not).
    pub(super) fn pins(&self) -> Pins {
        self.pins
    }

    /// True when the session has state only its connection carries.
    pub(super) fn is_pinned(&self) -> bool {
        !self.pins.is_empty()
    }

    /// Takes the held connection to run a statement on it; [`Binding::settle`] decides afterwards
    /// whether it stays.
    pub(super) fn take(&mut self) -> Option<Lease> {
        self.held.take().map(|(lease, _)| lease)
    }

    /// Why a connection would be held now, given whether a transaction is open.
    pub(super) fn needed(&self, in_transaction: bool) -> Option<Hold> {
        if !self.pins.is_empty() {
            Some(Hold::Pinned)
        } else if in_transaction {
            Some(Hold::Transaction)
        } else {
            None
        }
    }

    /// After a statement: keeps `lease` while the session is pinned or in a transaction, else
    /// lets it go back to its pool (by dropping it).
    pub(super) fn settle(&mut self, lease: Lease, in_transaction: bool) {
        self.held = self.needed(in_transaction).map(|hold| (lease, hold));
    }

    /// Keeps `lease` after a failure that left it usable, when the statement ran on the held
    /// connection (its transaction or pins live on it, whatever the statement did).
    pub(super) fn restore(&mut self, lease: Lease) {
        let hold = if self.pins.is_empty() { Hold::Transaction } else { Hold::Pinned };
        self.held = Some((lease, hold));
    }

    /// The session lets go of its connection (reset, change of user, end): the caller resets or
    /// closes what is returned; pins and ledger start over.
    pub(super) fn release(&mut self) -> Option<Lease> {
        self.pins = Pins::default();
        self.ledger.clear();
        self.take()
    }

    /// The held connection is gone (failover, failure): pins and ledger lived on it.
    pub(super) fn forget(&mut self) {
        self.held = None;
        self.pins = Pins::default();
        self.ledger.clear();
    }

    /// Applies a completed statement's effects to the pins: every statement of a multi-statement
    /// packet counts, in order (`parts`); a failed packet keeps what its first statements may have
    /// taken. `state_change` is a session-state change the ledger cannot explain.
    pub(super) fn apply<'a>(
        &mut self,
        stmt: &Classified,
        sql: Option<&[u8]>,
        failed: bool,
        in_transaction: bool,
        parts: impl FnOnce() -> Vec<(Classified, Option<&'a [u8]>)>,
        state_change: bool,
    ) -> PinChange {
        let mut pins = self.pins;
        let multi = stmt.flags.contains(Flags::MULTI);
        match (failed, sql) {
            (false, Some(_)) if multi => {
                for (part, text) in parts() {
                    pins = self.ledger.apply(pins, &part, text, in_transaction);
                }
            }
            (false, _) => pins = self.ledger.apply(pins, stmt, sql, in_transaction),
            (true, _) if multi => pins = self.ledger.failed_part_way(pins, stmt),
            (true, _) => {}
        }
        if state_change && !Ledger::explains_state_change(stmt) {
            pins.insert(Pins::STATE_CHANGE);
        }
        let change = PinChange { added: pins.added_since(self.pins), ended: self.pins.added_since(pins) };
        self.pins = pins;
        if self.pins.is_empty() {
            if let Some((_, hold)) = &mut self.held {
                *hold = Hold::Transaction;
            }
        }
        change
    }

    /// Opens or closes the cursor pin; `true` when it was just taken. Closing the last pin
    /// outside a transaction lets the connection go.
    pub(super) fn set_cursor(&mut self, open: bool, in_transaction: bool) -> bool {
        if open == self.pins.contains(Pins::CURSOR) {
            return false;
        }
        if open {
            self.pins.insert(Pins::CURSOR);
            return true;
        }
        self.pins.remove(Pins::CURSOR);
        match self.needed(in_transaction) {
            None => self.held = None,
            Some(hold) => {
                if let Some((_, held)) = &mut self.held {
                    *held = hold;
                }
            }
        }
        false
    }
}
