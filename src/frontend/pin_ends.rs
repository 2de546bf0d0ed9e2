//! When each pin ends. [`Pins::from_statement`] says which statements create unmovable state;
//! the [`Ledger`] remembers enough of it (lock names, temporary tables, prepared names, open
//! handlers, a pending `SET TRANSACTION`) to see the statement that removes the last of it, so a
//! pin lasts exactly as long as its state does:
//!
//! | pin | ends with |
//! |---|---|
//! | `get_lock` | the last named lock released (`RELEASE_LOCK` per name and count, `RELEASE_ALL_LOCKS`); a lock whose name is not a literal: `RELEASE_ALL_LOCKS` |
//! | `lock_tables` | `UNLOCK TABLES`, or `START TRANSACTION`/`BEGIN` (an implicit unlock) |
//! | `temp_table` | the last temporary table dropped (`DROP [TEMPORARY] TABLE`) |
//! | `set_transaction` | the end of the next transaction (or the next statement that reads or writes a table outside one) |
//! | `text_prepare` | `DEALLOCATE`/`DROP PREPARE` of the last prepared name |
//! | `handler` | `HANDLER .. CLOSE` of the last open handler |
//! | `xa` | `XA COMMIT` / `XA ROLLBACK` |
//! | `user_var`, `state_change` | `COM_RESET_CONNECTION` or `COM_CHANGE_USER` (the values are not visible to the proxy) |
//!
//! Every pin also ends with `COM_RESET_CONNECTION`, `COM_CHANGE_USER` and the session. Names are
//! read from the statement text with a small scanner (string literals and plain or back-quoted
//! identifiers); whatever it cannot read keeps the pin until a reset, which is always safe.
//! `IS_FREE_LOCK` and `IS_USED_LOCK` take nothing and pin nothing.

use std::collections::{HashMap, HashSet};

use super::sqltext::Words;
use crate::classify::{Classified, Kind, SetTargets, XaKind};
use crate::shared::Pins;

/// What the session's pinned state consists of.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    /// Named locks held, by name, with how many times each was taken.
    locks: HashMap<Box<[u8]>, u32>,
    /// A lock was taken under a name that is not a literal.
    unnamed_lock: bool,
    /// Temporary tables, by lower-cased name.
    temp_tables: HashSet<Box<[u8]>>,
    unnamed_temp: bool,
    /// Text-protocol prepared statement names.
    prepared: HashSet<Box<[u8]>>,
    unnamed_prepared: bool,
    /// Open `HANDLER`s.
    handlers: HashSet<Box<[u8]>>,
    unnamed_handler: bool,
    /// A `SET TRANSACTION` waits for its transaction; `true` once the transaction began.
    next_transaction: Option<bool>,
}

impl Ledger {
    /// Forgets everything (reset, change user, the connection is gone).
    pub(super) fn clear(&mut self) {
        *self = Self::default();
    }

    /// Applies one statement that completed without error (`sql` its text, when known) and
    /// returns the pins the session has afterwards. `in_transaction` is the status after it.
    pub(super) fn apply(
        &mut self,
        mut pins: Pins,
        stmt: &Classified,
        sql: Option<&[u8]>,
        in_transaction: bool,
    ) -> Pins {
        // Read the text only for the few statements that create or end named state (no cost for
        // ordinary statements).
        let needs_words =
            stmt.flags.intersects(crate::classify::Flags::LOCK_FN.union(crate::classify::Flags::TEMP_TABLE))
                || matches!(stmt.kind, Kind::Flush | Kind::Prepare | Kind::Deallocate | Kind::Handler)
                || (stmt.kind == Kind::Ddl && !self.temp_tables.is_empty());
        let words = sql.filter(|_| needs_words).map(Words::new);
        pins.insert(Pins::from_statement(stmt));
        if stmt.flags.contains(crate::classify::Flags::LOCK_FN) {
            match &words {
                Some(words) => self.locks(words),
                None => self.unnamed_lock = true,
            }
        }
        set_if(&mut pins, Pins::LOCK_FN, self.unnamed_lock || !self.locks.is_empty());

        match stmt.kind {
            Kind::UnlockTables | Kind::Begin { .. } => pins.remove(Pins::LOCK_TABLES),
            Kind::Flush if words.as_ref().is_some_and(|w| w.has_sequence(&[b"WITH", b"READ", b"LOCK"])) => {
                pins.insert(Pins::LOCK_TABLES)
            }
            Kind::Xa(XaKind::Commit | XaKind::Rollback) => pins.remove(Pins::XA),
            _ => {}
        }

        let creates_temp = stmt.flags.contains(crate::classify::Flags::TEMP_TABLE)
            && words.as_ref().is_none_or(|w| w.starts_with(&[b"CREATE"]));
        if creates_temp {
            match words.as_ref().and_then(|w| w.name_after(&[b"TABLE"])) {
                Some(name) => {
                    self.temp_tables.insert(name);
                }
                None => self.unnamed_temp = true,
            }
        } else if stmt.kind == Kind::Ddl {
            if let Some(w) = words.as_ref().filter(|w| w.starts_with(&[b"DROP"]) && w.has(b"TABLE")) {
                for name in w.names_after(b"TABLE") {
                    self.temp_tables.remove(&name);
                }
            }
        }
        set_if(&mut pins, Pins::TEMP_TABLE, self.unnamed_temp || !self.temp_tables.is_empty());

        match (stmt.kind, words.as_ref()) {
            (Kind::Prepare, Some(w)) => match w.name_after(&[b"PREPARE"]) {
                Some(name) => {
                    self.prepared.insert(name);
                }
                None => self.unnamed_prepared = true,
            },
            (Kind::Prepare, None) => self.unnamed_prepared = true,
            (Kind::Handler, None) => self.unnamed_handler = true,
            (Kind::Deallocate, Some(w)) => {
                if let Some(name) = w.name_after(&[b"PREPARE"]) {
                    self.prepared.remove(&name);
                }
            }
            (Kind::Handler, Some(w)) => {
                let name = w.nth_name(1);
                if w.has(b"OPEN") {
                    // `HANDLER t OPEN [AS] alias`: later statements use the alias.
                    match w.name_after(&[b"AS"]).or_else(|| w.nth_name(3)).or(name) {
                        Some(alias) => {
                            self.handlers.insert(alias);
                        }
                        None => self.unnamed_handler = true,
                    }
                } else if w.has(b"CLOSE") {
                    if let Some(name) = name {
                        self.handlers.remove(&name);
                    }
                }
            }
            _ => {}
        }
        set_if(&mut pins, Pins::TEXT_PREPARE, self.unnamed_prepared || !self.prepared.is_empty());
        set_if(&mut pins, Pins::HANDLER, self.unnamed_handler || !self.handlers.is_empty());

        let sets_next = matches!(stmt.kind, Kind::Set(info) if info.targets.contains(SetTargets::NEXT_TRANSACTION));
        if sets_next {
            self.next_transaction = Some(false);
        } else if let Some(began) = self.next_transaction {
            let uses_table = match stmt.kind {
                Kind::Insert | Kind::Update | Kind::Delete | Kind::Replace | Kind::Load | Kind::Call => true,
                Kind::Select => sql.is_none_or(super::previous::has_from_table),
                _ => false,
            };
            if in_transaction {
                self.next_transaction = Some(true);
            } else if began || uses_table {
                self.next_transaction = None;
            }
        }
        set_if(&mut pins, Pins::NEXT_TRANSACTION, self.next_transaction.is_some());
        pins
    }

    /// A multi-statement packet failed part-way: which statements ran is unknown, so whatever
    /// state any of them could create is taken as created and unnamed (it ends only with a
    /// reset), and nothing ends.
    pub(super) fn failed_part_way(&mut self, mut pins: Pins, stmt: &Classified) -> Pins {
        let created = Pins::from_statement(stmt);
        self.unnamed_lock |= stmt.flags.contains(crate::classify::Flags::LOCK_FN);
        self.unnamed_temp |= created.contains(Pins::TEMP_TABLE);
        self.unnamed_prepared |= created.contains(Pins::TEXT_PREPARE);
        self.unnamed_handler |= created.contains(Pins::HANDLER);
        pins.insert(created);
        set_if(&mut pins, Pins::LOCK_FN, self.unnamed_lock || !self.locks.is_empty());
        pins
    }

    /// True when the statement's own kind explains a "session state changed" report (user
    /// variables, temporary tables, locks, prepared names, handlers), so it needs no pin of its own.
    pub(super) fn explains_state_change(stmt: &Classified) -> bool {
        !Pins::from_statement(stmt).is_empty()
            || stmt.flags.contains(crate::classify::Flags::LOCK_FN)
            || stmt.flags.contains(crate::classify::Flags::TEMP_TABLE)
            || matches!(stmt.kind, Kind::Ddl | Kind::Deallocate | Kind::Handler | Kind::UnlockTables)
    }

    fn locks(&mut self, words: &Words<'_>) {
        for call in words.calls() {
            match call.name.as_slice() {
                b"GET_LOCK" => match call.first_literal {
                    Some(name) => *self.locks.entry(name).or_insert(0) += 1,
                    None => self.unnamed_lock = true,
                },
                b"RELEASE_LOCK" => {
                    if let Some(name) = call.first_literal {
                        if let Some(count) = self.locks.get_mut(&name) {
                            *count -= 1;
                            if *count == 0 {
                                self.locks.remove(&name);
                            }
                        }
                    }
                }
                b"RELEASE_ALL_LOCKS" => {
                    self.locks.clear();
                    self.unnamed_lock = false;
                }
                _ => {}
            }
        }
    }
}

fn set_if(pins: &mut Pins, pin: Pins, on: bool) {
    if on {
        pins.insert(pin);
    } else {
        pins.remove(pin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::lex;

    fn run(ledger: &mut Ledger, pins: Pins, sql: &str, in_transaction: bool) -> Pins {
        ledger.apply(pins, &lex(sql.as_bytes()), Some(sql.as_bytes()), in_transaction)
    }

    fn labels(pins: Pins) -> Vec<&'static str> {
        pins.labels().collect()
    }

    #[test]
    fn named_locks_are_counted_per_name() {
        let mut l = Ledger::default();
        let mut p = run(&mut l, Pins::default(), "SELECT GET_LOCK('a', 1), GET_LOCK(\"b\", 1)", false);
        p = run(&mut l, p, "SELECT `GET_LOCK`('a', 0)", false);
        assert_eq!(labels(p), ["get_lock"]);
        p = run(&mut l, p, "SELECT RELEASE_LOCK('a'), RELEASE_LOCK('b'), RELEASE_LOCK('zzz')", false);
        assert_eq!(labels(p), ["get_lock"], "'a' was taken twice");
        p = run(&mut l, p, "DO RELEASE_LOCK('a')", false);
        assert!(p.is_empty());
        p = run(&mut l, p, "SELECT IS_FREE_LOCK('a'), IS_USED_LOCK('a')", false);
        assert!(p.is_empty(), "looking at a lock takes none");
        p = run(&mut l, p, "SELECT GET_LOCK(CONCAT('x', id), 1) FROM t", false);
        p = run(&mut l, p, "SELECT RELEASE_LOCK('x1')", false);
        assert_eq!(labels(p), ["get_lock"], "a computed name is only released by RELEASE_ALL_LOCKS");
        p = run(&mut l, p, "SELECT RELEASE_ALL_LOCKS()", false);
        assert!(p.is_empty());
    }

    #[test]
    fn table_locks_temporary_tables_prepared_names_and_handlers_end() {
        let mut l = Ledger::default();
        let mut p = run(&mut l, Pins::default(), "LOCK TABLES t WRITE", false);
        p = run(&mut l, p, "UNLOCK TABLES", false);
        assert!(p.is_empty());
        p = run(&mut l, p, "FLUSH TABLES WITH READ LOCK", false);
        p = run(&mut l, p, "BEGIN", true);
        assert!(p.is_empty(), "START TRANSACTION unlocks tables");
        p = run(&mut l, p, "CREATE TEMPORARY TABLE IF NOT EXISTS `Tmp1` (a INT)", false);
        p = run(&mut l, p, "CREATE TEMPORARY TABLE db.tmp2 (a INT)", false);
        p = run(&mut l, p, "DROP TEMPORARY TABLE tmp1", false);
        assert_eq!(labels(p), ["temp_table"]);
        p = run(&mut l, p, "DROP TABLE IF EXISTS other, db.`tmp2`", false);
        assert!(p.is_empty());
        p = run(&mut l, p, "PREPARE s1 FROM 'SELECT 1'", false);
        p = run(&mut l, p, "PREPARE s2 FROM 'SELECT 2'", false);
        p = run(&mut l, p, "DEALLOCATE PREPARE s1", false);
        assert_eq!(labels(p), ["text_prepare"]);
        p = run(&mut l, p, "DROP PREPARE s2", false);
        assert!(p.is_empty());
        p = run(&mut l, p, "HANDLER t OPEN AS h", false);
        p = run(&mut l, p, "HANDLER h READ FIRST", false);
        assert_eq!(labels(p), ["handler"]);
        p = run(&mut l, p, "HANDLER h CLOSE", false);
        assert!(p.is_empty());
        p = run(&mut l, p, "XA START 'x'", true);
        p = run(&mut l, p, "XA END 'x'", true);
        assert_eq!(labels(p), ["xa"]);
        p = run(&mut l, p, "XA COMMIT 'x' ONE PHASE", false);
        assert!(p.is_empty());
    }

    #[test]
    fn set_transaction_lasts_until_its_transaction_ends() {
        let mut l = Ledger::default();
        let mut p = run(&mut l, Pins::default(), "SET TRANSACTION ISOLATION LEVEL READ COMMITTED", false);
        p = run(&mut l, p, "SET @@session.sql_mode = 'ANSI'", false);
        p = run(&mut l, p, "SELECT 1", false);
        assert_eq!(labels(p), ["set_transaction"], "table-less statements do not use it up");
        p = run(&mut l, p, "START TRANSACTION", true);
        p = run(&mut l, p, "SELECT * FROM t", true);
        assert_eq!(labels(p), ["set_transaction"]);
        p = run(&mut l, p, "COMMIT", false);
        assert!(p.is_empty());
        p = run(&mut l, p, "SET TRANSACTION READ ONLY", false);
        p = run(&mut l, p, "SELECT a FROM t", false);
        assert!(p.is_empty(), "an autocommit statement is the next transaction");
        p = run(&mut l, p, "SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE", false);
        assert!(p.is_empty(), "the session level is tracked like a variable");
    }
}
