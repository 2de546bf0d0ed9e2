//! The result types of classification: [`Classified`], [`Kind`], [`Flags`] and [`Hint`].
//!
//! Plain `Copy` data with no references into the statement, so a router can keep, compare and
//! log them freely. Nothing here inspects SQL; the lexer and the head parser fill these in.

use std::fmt;

bitset! {
    /// Properties of a statement that matter for routing, found anywhere in its text (outside
    /// strings and comments). For a multi-statement packet they are the union over all parts.
    Flags: u32 {
        /// `FOR UPDATE`, `FOR SHARE`, `LOCK IN SHARE MODE`: must run on the primary.
        LOCKING_READ = 0,
        /// `SELECT ... INTO @var | OUTFILE | DUMPFILE` (only set for query kinds).
        INTO = 1,
        /// Mentions a user variable `@name` (read or write). A read that only reads user
        /// variables is still [`Classified::is_read_only`], but it must run on the connection
        /// where the variable was set: the router sends it to the pinned connection.
        USER_VAR = 2,
        /// Assigns a user variable: `SET @a = ..`, `@a := ..`, `INTO @a`.
        USER_VAR_WRITE = 3,
        /// Reads a system variable `@@name` (not counting `SET @@x = ..` targets).
        SYS_VAR_READ = 4,
        /// Calls `LAST_INSERT_ID(..)`: connection-bound.
        LAST_INSERT_ID = 5,
        /// Calls `FOUND_ROWS()`: refers to the previous statement on the same connection.
        FOUND_ROWS = 6,
        /// Calls `ROW_COUNT()`: refers to the previous statement on the same connection.
        ROW_COUNT = 7,
        /// `SQL_CALC_FOUND_ROWS`: the following `FOUND_ROWS()` needs this connection.
        CALC_FOUND_ROWS = 8,
        /// `GET_LOCK`, `RELEASE_LOCK`, `RELEASE_ALL_LOCKS`, `IS_USED_LOCK`, `IS_FREE_LOCK`.
        LOCK_FN = 9,
        /// Sequences: `NEXTVAL(..)`, `LASTVAL(..)`, `SETVAL(..)`, `NEXT VALUE FOR`,
        /// `PREVIOUS VALUE FOR`, `seq.NEXTVAL`/`seq.CURRVAL`.
        SEQUENCE = 10,
        /// `CREATE [OR REPLACE] TEMPORARY TABLE` or `DROP TEMPORARY TABLE`.
        TEMP_TABLE = 11,
        /// More than one statement: a `;` followed by anything but whitespace and comments
        /// (compound `BEGIN ... END` bodies of stored programs are one statement).
        MULTI = 12,
        /// Calls a function with effects outside the statement or tied to one server:
        /// `LOAD_FILE`, `SYS_EXEC`, `SYS_EVAL`.
        SIDE_EFFECT_FN = 13,
        /// The lexer could not decide the kind and the sqlparser fallback was (or should be)
        /// consulted. With [`Kind::Unknown`] the fallback failed or was not run.
        UNSURE = 14,
        /// `LOAD DATA LOCAL` / `LOAD XML LOCAL`: the server asks the client for a file.
        LOCAL = 15,
        /// About the previous statement on this connection: `SHOW WARNINGS`, `SHOW ERRORS`,
        /// `SHOW COUNT(*) WARNINGS|ERRORS`, `SHOW PROFILE[S]`, `@@warning_count`,
        /// `@@error_count`, `GET DIAGNOSTICS`.
        WARNINGS_QUERY = 16,
        /// The answer describes one server (binary log, replication, process list, engine
        /// status, `EXPLAIN FOR CONNECTION`): never sent to a random replica.
        SERVER_SPECIFIC = 17,
        /// An unterminated string, quoted identifier or comment, unbalanced parentheses, or
        /// a bare `@`/`@@`: the server will reject it (or we cannot tell what it is).
        MALFORMED = 18,
        /// A leading comment started with `rwsplit` but was not a valid hint; it was ignored.
        HINT_INVALID = 19,
        /// Calls a function not known to be a read-only builtin: a stored or user-defined
        /// function, a schema-qualified or back-quoted name (see `classify::functions`).
        UNKNOWN_FN = 20,
    }
}

impl Flags {
    /// Flags that keep an otherwise read-only statement off the replicas.
    pub const NOT_REPLICA_SAFE: Self = Self(
        Self::LOCKING_READ.0
            | Self::INTO.0
            | Self::USER_VAR_WRITE.0
            | Self::LAST_INSERT_ID.0
            | Self::FOUND_ROWS.0
            | Self::ROW_COUNT.0
            | Self::CALC_FOUND_ROWS.0
            | Self::LOCK_FN.0
            | Self::SEQUENCE.0
            | Self::TEMP_TABLE.0
            | Self::MULTI.0
            | Self::SIDE_EFFECT_FN.0
            | Self::UNKNOWN_FN.0
            | Self::WARNINGS_QUERY.0
            | Self::SERVER_SPECIFIC.0
            | Self::MALFORMED.0,
    );
}

bitset! {
    /// What a `SET` statement assigns; one bit per kind of item (`SET a=1, @b=2` sets two).
    SetTargets: u16 {
        /// A session system variable: `x = ..`, `SESSION x`, `LOCAL x`, `@@x`, `@@session.x`.
        SESSION_VAR = 0,
        /// `GLOBAL x`, `PERSIST x`, `PERSIST_ONLY x`, `@@global.x`: affects other sessions.
        GLOBAL_VAR = 1,
        /// A user variable `@x`.
        USER_VAR = 2,
        /// `SET NAMES ..`.
        NAMES = 3,
        /// `SET CHARACTER SET ..` / `SET CHARSET ..`.
        CHARSET = 4,
        /// The session's `autocommit` (value in [`SetInfo::autocommit`]).
        AUTOCOMMIT = 5,
        /// `SET TRANSACTION ..`: applies to the next transaction only.
        NEXT_TRANSACTION = 6,
        /// `SET SESSION TRANSACTION ..`: applies to the rest of the session.
        SESSION_TRANSACTION = 7,
        /// `SET GLOBAL TRANSACTION ..`.
        GLOBAL_TRANSACTION = 8,
        /// `SET PASSWORD ..`.
        PASSWORD = 9,
        /// `SET ROLE ..` / `SET DEFAULT ROLE ..`.
        ROLE = 10,
        /// Anything else (`SET RESOURCE GROUP`, unrecognised items).
        OTHER = 11,
    }
}

/// Transaction isolation level named in `SET [SESSION] TRANSACTION ISOLATION LEVEL ..`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isolation {
    /// `READ UNCOMMITTED`.
    ReadUncommitted,
    /// `READ COMMITTED`.
    ReadCommitted,
    /// `REPEATABLE READ`.
    RepeatableRead,
    /// `SERIALIZABLE`.
    Serializable,
}

/// Details of a `SET` statement. The values of system variables are not parsed: the session
/// takes them from the server's session-state tracking in the OK packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SetInfo {
    /// Which kinds of items the statement assigns.
    pub targets: SetTargets,
    /// The new session `autocommit`, when [`SetTargets::AUTOCOMMIT`] is set and the value is a
    /// literal `0`/`1`/`ON`/`OFF`/`TRUE`/`FALSE`; `None` when unknown (an expression, `DEFAULT`).
    pub autocommit: Option<bool>,
    /// Isolation level from a `SET .. TRANSACTION ISOLATION LEVEL ..` item.
    pub isolation: Option<Isolation>,
    /// Access mode from a `SET .. TRANSACTION READ ONLY | READ WRITE` item.
    pub read_only: Option<bool>,
}

/// `XA` sub-command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XaKind {
    /// `XA START | BEGIN xid`: starts a distributed transaction.
    Start,
    /// `XA END xid`.
    End,
    /// `XA PREPARE xid`.
    Prepare,
    /// `XA COMMIT xid [ONE PHASE]`.
    Commit,
    /// `XA ROLLBACK xid`.
    Rollback,
    /// `XA RECOVER`.
    Recover,
}

/// What a statement is, as far as routing and session tracking care.
///
/// Reads are [`Kind::Select`] (also `WITH .. SELECT`, `(SELECT ..)`, `TABLE t`, `VALUES ..`),
/// [`Kind::Show`], [`Kind::Describe`] and [`Kind::Explain`]; everything else changes data or
/// session state, or is not understood. For a multi-statement packet this is the first
/// statement's kind; use [`super::classify_all`] for the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Nothing but whitespace and comments (or a bare `;`).
    Empty,
    /// A query: `SELECT`, `WITH .. SELECT`, parenthesised query, `TABLE t`, `VALUES ROW(..)`.
    Select,
    /// `SHOW ..`.
    Show,
    /// `DESCRIBE t`, `DESC t`, `EXPLAIN t` (table description).
    Describe,
    /// `EXPLAIN stmt`, `DESCRIBE stmt`, `EXPLAIN ANALYZE stmt`, MariaDB `ANALYZE stmt`.
    Explain {
        /// `EXPLAIN ANALYZE` / `ANALYZE stmt`: the statement is executed.
        analyze: bool,
        /// The explained statement is not a plain query (INSERT/UPDATE/DELETE/REPLACE or not
        /// understood).
        write: bool,
    },
    /// `SET ..` (MariaDB `SET STATEMENT .. FOR stmt` is classified as `stmt`).
    Set(SetInfo),
    /// `USE db`.
    Use,
    /// `BEGIN [WORK]`, `START TRANSACTION [READ ONLY | READ WRITE | WITH CONSISTENT SNAPSHOT]..`.
    Begin {
        /// `Some(true)` for `READ ONLY`, `Some(false)` for `READ WRITE`, `None` when not given.
        read_only: Option<bool>,
        /// `WITH CONSISTENT SNAPSHOT`.
        consistent_snapshot: bool,
    },
    /// `COMMIT [WORK] [AND [NO] CHAIN] [[NO] RELEASE]`.
    Commit {
        /// `AND CHAIN`: a new transaction starts at once.
        chain: bool,
        /// `RELEASE`: the server closes the connection.
        release: bool,
    },
    /// `ROLLBACK [WORK] [AND [NO] CHAIN] [[NO] RELEASE]` (not `ROLLBACK TO`).
    Rollback {
        /// `AND CHAIN`: a new transaction starts at once.
        chain: bool,
        /// `RELEASE`: the server closes the connection.
        release: bool,
    },
    /// `ROLLBACK [WORK] TO [SAVEPOINT] name`: the transaction stays open.
    RollbackToSavepoint,
    /// `SAVEPOINT name`.
    Savepoint,
    /// `RELEASE SAVEPOINT name`.
    ReleaseSavepoint,
    /// `XA ..`.
    Xa(XaKind),
    /// `INSERT ..` (also `WITH .. INSERT`).
    Insert,
    /// `UPDATE ..` (also `WITH .. UPDATE`).
    Update,
    /// `DELETE ..` (also `WITH .. DELETE`).
    Delete,
    /// `REPLACE ..`.
    Replace,
    /// `CREATE`, `ALTER`, `DROP`, `TRUNCATE`, `RENAME TABLE`, `IMPORT TABLE`; stored program
    /// bodies included.
    Ddl,
    /// `CALL proc(..)`.
    Call,
    /// `LOAD DATA | XML [LOCAL] INFILE ..` ([`Flags::LOCAL`] for `LOCAL`).
    Load,
    /// `LOCK TABLE[S] ..`.
    LockTables,
    /// `UNLOCK TABLE[S]`.
    UnlockTables,
    /// `PREPARE name FROM ..` (text-protocol prepared statement).
    Prepare,
    /// `EXECUTE name [USING ..]`, MariaDB `EXECUTE IMMEDIATE ..`.
    Execute,
    /// `DEALLOCATE PREPARE name`, `DROP PREPARE name`.
    Deallocate,
    /// `DO expr`.
    Do,
    /// `KILL [QUERY | CONNECTION] id`.
    Kill,
    /// `FLUSH ..`.
    Flush,
    /// Accounts, privileges, replication and maintenance: `GRANT`, `REVOKE`, `CREATE/ALTER/
    /// DROP/RENAME USER|ROLE`, `ANALYZE/OPTIMIZE/REPAIR/CHECK/CHECKSUM TABLE`, `RESET`, `PURGE`,
    /// `CHANGE MASTER|REPLICATION`, `START|STOP SLAVE|REPLICA`, `INSTALL`, `SHUTDOWN`, ...
    Admin,
    /// `HANDLER t OPEN | READ | CLOSE`.
    Handler,
    /// Recognised but needing no special routing: `HELP`, `SIGNAL`, `GET DIAGNOSTICS`,
    /// MariaDB `BEGIN NOT ATOMIC` blocks, statements the fallback parsed as non-queries.
    Other,
    /// Not understood (unknown first keyword, `WITH` without a main statement, fallback failed).
    Unknown,
}

/// A backend name from a `/* rwsplit:backend=NAME */` hint, stored inline so that
/// [`Classified`] stays `Copy` and does not borrow the statement.
///
/// Invariant: 1 to [`BackendName::MAX_LEN`] bytes, each ASCII alphanumeric, `_`, `-` or `.`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendName {
    len: u8,
    buf: [u8; BackendName::MAX_LEN],
}

impl BackendName {
    /// Longest accepted name; a longer one makes the hint invalid ([`Flags::HINT_INVALID`]).
    pub const MAX_LEN: usize = 64;

    /// Builds a name when `bytes` satisfies the invariant.
    pub fn new(bytes: &[u8]) -> Option<Self> {
        let ok = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
        if bytes.is_empty() || bytes.len() > Self::MAX_LEN || !bytes.iter().all(ok) {
            return None;
        }
        let mut buf = [0; Self::MAX_LEN];
        buf.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(Self { len: u8::try_from(bytes.len()).ok()?, buf })
    }

    /// The name as written in the hint.
    pub fn as_str(&self) -> &str {
        let bytes = self.buf.get(..usize::from(self.len)).unwrap_or_default();
        std::str::from_utf8(bytes).unwrap_or_default()
    }
}

impl fmt::Debug for BackendName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for BackendName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A routing hint from a comment before the first token of the statement:
/// `/* rwsplit:primary */`, `/* rwsplit:replica */`, `/* rwsplit:backend=NAME */`
/// (also as `-- ` or `#` comments; case-insensitive keywords; spaces allowed around `:` and `=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hint {
    /// Run on the primary.
    Primary,
    /// Run on a replica (the router may still refuse, e.g. inside a read-write transaction).
    Replica,
    /// Run on the named backend.
    Backend(BackendName),
}

/// The classification of one statement (or of a multi-statement packet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified {
    /// What the (first) statement is.
    pub kind: Kind,
    /// Properties found anywhere in the text.
    pub flags: Flags,
    /// FNV-1a 64 of the normalized token stream; equal for statements that differ only in
    /// literals, IN/VALUES list lengths, comments, whitespace and keyword case. See
    /// [`super::normalize`].
    pub digest: u64,
    /// The routing hint from a leading comment, if any.
    pub hint: Option<Hint>,
}

impl Classified {
    /// A protocol command that carries no SQL text (`COM_INIT_DB`, `COM_FIELD_LIST`,
    /// `COM_STATISTICS`, ...), classified as the statement it stands for, with no flags.
    /// `digest` identifies the command in statistics. Nothing is lexed.
    pub const fn command(kind: Kind, digest: u64) -> Self {
        Self { kind, flags: Flags::EMPTY, digest, hint: None }
    }

    /// True only when the statement is positively known to be a read that is safe on a
    /// replica outside a transaction: a [`Kind::Select`], [`Kind::Show`], [`Kind::Describe`],
    /// or an [`Kind::Explain`] that does not execute a write, without any of
    /// [`Flags::NOT_REPLICA_SAFE`].
    ///
    /// [`Flags::USER_VAR`] alone does not make a statement unsafe: `SELECT @a` is a read, but
    /// the router must send it to the connection where `@a` was set.
    pub fn is_read_only(&self) -> bool {
        let read_kind = match self.kind {
            Kind::Select | Kind::Show | Kind::Describe => true,
            Kind::Explain { analyze, write } => !(analyze && write),
            _ => false,
        };
        read_kind && !self.flags.intersects(Flags::NOT_REPLICA_SAFE)
    }
}
