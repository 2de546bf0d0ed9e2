//! Why a session is pinned to its backend connection: state that cannot be moved to another
//! connection. A pinned session keeps its connection until the pin ends (see
//! `frontend::pin_ends`), `COM_RESET_CONNECTION`, `COM_CHANGE_USER` or the session's end.

use crate::classify::{Classified, Flags, Kind, SetTargets, XaKind};

bitset! {
    /// Pin reasons, one bit each.
    Pins: u16 {
        /// `CREATE TEMPORARY TABLE`.
        TEMP_TABLE = 0,
        /// User variables assigned.
        USER_VAR = 1,
        /// `GET_LOCK` and friends.
        LOCK_FN = 2,
        /// `LOCK TABLES`.
        LOCK_TABLES = 3,
        /// Text-protocol `PREPARE`.
        TEXT_PREPARE = 4,
        /// `XA START`.
        XA = 5,
        /// `HANDLER ... OPEN`.
        HANDLER = 6,
        /// `SET TRANSACTION` (applies to the next transaction on this connection only).
        NEXT_TRANSACTION = 7,
        /// The server reported a state change the proxy cannot replay.
        STATE_CHANGE = 8,
        /// A prepared statement's cursor is open (released when it is closed or reset).
        CURSOR = 9,
    }
}

/// Every pin reason with its metric label.
pub const REASONS: [(Pins, &str); 10] = [
    (Pins::TEMP_TABLE, "temp_table"),
    (Pins::USER_VAR, "user_var"),
    (Pins::LOCK_FN, "get_lock"),
    (Pins::LOCK_TABLES, "lock_tables"),
    (Pins::TEXT_PREPARE, "text_prepare"),
    (Pins::XA, "xa"),
    (Pins::HANDLER, "handler"),
    (Pins::NEXT_TRANSACTION, "set_transaction"),
    (Pins::STATE_CHANGE, "state_change"),
    (Pins::CURSOR, "cursor"),
];

impl Pins {
    /// Reasons set in `self` but not in `before`.
    pub fn added_since(self, before: Pins) -> Pins {
        Pins(self.0 & !before.0)
    }

    /// Labels of the reasons set.
    pub fn labels(self) -> impl Iterator<Item = &'static str> {
        REASONS.into_iter().filter(move |(p, _)| self.contains(*p)).map(|(_, l)| l)
    }

    /// Pin reasons a statement creates, known before it runs.
    pub fn from_statement(stmt: &Classified) -> Pins {
        let mut pins = Pins::default();
        let f = stmt.flags;
        if f.contains(Flags::TEMP_TABLE) {
            pins.insert(Pins::TEMP_TABLE);
        }
        if f.contains(Flags::USER_VAR_WRITE) {
            pins.insert(Pins::USER_VAR);
        }
        if f.contains(Flags::LOCK_FN) {
            pins.insert(Pins::LOCK_FN);
        }
        match stmt.kind {
            Kind::LockTables => pins.insert(Pins::LOCK_TABLES),
            Kind::Prepare => pins.insert(Pins::TEXT_PREPARE),
            Kind::Xa(XaKind::Start) => pins.insert(Pins::XA),
            Kind::Handler => pins.insert(Pins::HANDLER),
            Kind::Set(info) if info.targets.contains(SetTargets::NEXT_TRANSACTION) => {
                pins.insert(Pins::NEXT_TRANSACTION)
            }
            Kind::Set(info) if info.targets.contains(SetTargets::USER_VAR) => pins.insert(Pins::USER_VAR),
            _ => {}
        }
        pins
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::lex;

    #[test]
    fn statements_that_create_unmovable_state_pin() {
        let cases = [
            ("CREATE TEMPORARY TABLE t (i INT)", "temp_table"),
            ("SET @a = 1", "user_var"),
            ("SELECT 1 INTO @b", "user_var"),
            ("SELECT @c := 5", "user_var"),
            ("SELECT GET_LOCK('x', 1)", "get_lock"),
            ("LOCK TABLES t WRITE", "lock_tables"),
            ("PREPARE s FROM 'SELECT 1'", "text_prepare"),
            ("XA START 'x'", "xa"),
            ("SET TRANSACTION ISOLATION LEVEL READ COMMITTED", "set_transaction"),
        ];
        for (sql, label) in cases {
            let pins = Pins::from_statement(&lex(sql.as_bytes()));
            assert_eq!(pins.labels().collect::<Vec<_>>(), vec![label], "{sql}");
        }
        for sql in [
            "SELECT @a",
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            "SET time_zone = '+00:00'",
            "SELECT 1",
        ] {
            assert!(Pins::from_statement(&lex(sql.as_bytes())).is_empty(), "{sql}");
        }
    }
}
