//! Statement classification: what a `COM_QUERY` statement is, which flags matter for
//! routing, and its digest. No I/O, no tasks, no global state.
//!
//! * [`lex`] is the hot path: one pass over the bytes, no allocation, a few hundred
//!   nanoseconds for OLTP statements. It understands comments (including executable
//!   `/*!..*/` comments, whose contents count), strings, quoted identifiers, routing hints in
//!   leading comments, and the first keywords of every common statement.
//! * [`Classifier`] adds the sqlparser fallback for the rare statement the lexer cannot place
//!   ([`Flags::UNSURE`]), with verdicts cached by digest in a bounded [`DigestCache`].
//! * [`classify_all`] and [`multi_is_all_reads`] look at each statement of a multi-statement
//!   packet; [`normalize`] writes the text the digest is computed from.
//!
//! Anything not positively known to be a read stays off the replicas:
//! [`Classified::is_read_only`] is false for unknown, malformed or unterminated input.
//! Decisions taken conservatively (they send statements to the primary):
//! * `DO`, `CALL`, `HANDLER`, text-protocol `PREPARE`/`EXECUTE`, `CHECK/CHECKSUM TABLE`,
//!   `HELP`: not reads (procedures and prepared texts may write; maintenance reads are
//!   server-specific);
//! * `SHOW` of binary logs, replication status, the process list, engine status and
//!   `EXPLAIN FOR CONNECTION` ([`Flags::SERVER_SPECIFIC`]): the answer depends on the server;
//! * any `EXPLAIN` whose text contains a locking clause or a connection-bound function, and
//!   `EXPLAIN ANALYZE`/MariaDB `ANALYZE` of anything but a query;
//! * `SELECT ... INTO`, sequences and the lock functions even inside subqueries;
//! * `SHOW WARNINGS|ERRORS|PROFILE[S]`, `@@warning_count`, `@@error_count`, `GET DIAGNOSTICS`
//!   ([`Flags::WARNINGS_QUERY`]): they describe the previous statement's connection;
//! * `;;` (an empty statement after a `;`) makes a packet multi-statement;
//! * unbalanced parentheses, a bare `@` or `@@`, unterminated strings and comments
//!   ([`Flags::MALFORMED`]);
//! * executable comments are always taken as executed, whatever their version number, and
//!   MariaDB's `/*M!..*/` too, even against MySQL (more text can only add flags);
//! * `CREATE TABLE t (begin INT); ...`: only stored programs get `BEGIN ... END` bodies, so
//!   a `;` anywhere else splits statements;
//! * a call of any function that is not a known read-only builtin (a stored function, a
//!   schema-qualified or back-quoted name: [`Flags::UNKNOWN_FN`]), as MaxScale does; an operator
//!   who knows better sets `routing.unknown_functions = "replica"`.
//!
//! Deliberately *not* conservative, like MaxScale and ProxySQL: `SELECT @@var`,
//! `SHOW VARIABLES|STATUS`, `SELECT CONNECTION_ID()`, `SLEEP`, `UUID()` and `MASTER_POS_WAIT`
//! are reads; MariaDB `SET STATEMENT .. FOR stmt` is classified as `stmt`.

mod cache;
mod cursor;
mod digest;
mod fallback;
mod functions;
mod keyword;
mod kind;
mod lexer;
mod set;
mod statement;

#[cfg(test)]
mod cases;
#[cfg(test)]
mod tests;

use std::ops::Range;

pub use cache::{DigestCache, Identity};
pub use fallback::{analyze as fallback_analyze, Verdict, MAX_FALLBACK_LEN};
pub use kind::{BackendName, Classified, Flags, Hint, Isolation, Kind, SetInfo, SetTargets, XaKind};
pub use lexer::SqlMode;

use cursor::{Cursor, Part};
use digest::{Digest, Fnv, Sink, Text};

/// Classifies one statement and finishes it.
fn run<S: Sink>(c: &mut Cursor<'_, S>) -> (Kind, Part) {
    let kind = statement::statement(c, false);
    let mut part = c.finish_statement();
    if kind == Kind::Select && c.saw_into {
        part.flags |= Flags::INTO;
    }
    (kind, part)
}

/// Classifies a whole packet into `sink`: the first statement's kind and hint, flags of all.
fn run_packet<S: Sink>(sql: &[u8], mode: SqlMode, sink: S) -> (Kind, Part, S) {
    let mut c = Cursor::new(sql, mode, sink);
    let (kind, mut first) = run(&mut c);
    while c.next_statement() {
        c.digest.separator();
        let (_, part) = run(&mut c);
        first.flags |= part.flags | Flags::MULTI;
    }
    (kind, first, c.digest.sink)
}

/// Classifies `sql` with the default SQL mode (backslash escapes on, `"` quotes strings).
/// The lexer only: [`Flags::UNSURE`] statements stay [`Kind::Unknown`].
pub fn lex(sql: &[u8]) -> Classified {
    lex_in(sql, SqlMode::default())
}

/// Classifies `sql` lexed under the session's `mode`. For a multi-statement packet the kind
/// and hint are the first statement's, the flags the union of all plus [`Flags::MULTI`], and
/// the digest covers every statement.
pub fn lex_in(sql: &[u8], mode: SqlMode) -> Classified {
    let (kind, part, sink) = run_packet(sql, mode, Fnv::default());
    Classified { kind, flags: part.flags, digest: sink.0, hint: part.hint }
}

/// Writes the normalized text of `sql` into `out` (appending), e.g.
/// `SELECT c FROM sbtest1 WHERE id = ?`. Keywords are upper-cased, other words kept as
/// written; two statements have the same [`Classified::digest`] exactly when these texts are
/// equal ignoring the case of unquoted words. Invalid UTF-8 is replaced by U+FFFD.
pub fn normalize(sql: &[u8], out: &mut String) {
    normalize_in(sql, SqlMode::default(), out);
}

/// [`normalize`] under the session's `mode`.
pub fn normalize_in(sql: &[u8], mode: SqlMode, out: &mut String) {
    run_packet(sql, mode, Text::new(out));
}

/// Iterator over the statements of a packet, from [`classify_all`].
pub struct Statements<'a> {
    cursor: Cursor<'a, Fnv>,
    started: bool,
}

impl Statements<'_> {
    /// The next statement's classification and its byte range in the packet.
    fn next_part(&mut self) -> Option<(Classified, Range<usize>)> {
        if self.started && !self.cursor.next_statement() {
            return None;
        }
        self.started = true;
        self.cursor.digest = Digest::new(Fnv::default());
        let (kind, part) = run(&mut self.cursor);
        let digest = self.cursor.digest.sink.0;
        Some((Classified { kind, flags: part.flags, digest, hint: part.hint }, part.start..part.end))
    }
}

impl<'a> Statements<'a> {
    /// Each statement with its byte range in the packet.
    pub fn with_ranges(mut self) -> impl Iterator<Item = (Classified, Range<usize>)> + 'a {
        std::iter::from_fn(move || self.next_part())
    }
}

impl Iterator for Statements<'_> {
    type Item = Classified;

    fn next(&mut self) -> Option<Classified> {
        self.next_part().map(|(c, _)| c)
    }
}

impl std::fmt::Debug for Statements<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Statements").finish_non_exhaustive()
    }
}

/// Classifies each statement of a (possibly multi-statement) packet on its own: kind, flags
/// (never [`Flags::MULTI`]), per-statement digest and hint. Yields at least one item
/// ([`Kind::Empty`] for an empty packet); `;;` yields an empty statement in between.
pub fn classify_all(sql: &[u8], mode: SqlMode) -> Statements<'_> {
    Statements { cursor: Cursor::new(sql, mode, Fnv::default()), started: false }
}

/// True when every statement of the packet is [`Classified::is_read_only`] by the lexer
/// alone, so the whole packet may go to a replica. See [`Classifier::is_all_reads`] for the
/// variant that consults the fallback.
pub fn multi_is_all_reads(sql: &[u8], mode: SqlMode) -> bool {
    classify_all(sql, mode).all(|c| c.is_read_only())
}

/// Lexer plus sqlparser fallback plus a digest cache of fallback verdicts.
///
/// Share one per process (`Arc<Classifier>`): it is `Send + Sync`, and the cache is only
/// touched for [`Flags::UNSURE`] statements, so the common path takes no lock at all.
#[derive(Debug)]
pub struct Classifier {
    cache: DigestCache<Verdict>,
}

impl Classifier {
    /// A classifier whose verdict cache holds about `cache_capacity` digests.
    pub fn new(cache_capacity: usize) -> Self {
        Self { cache: DigestCache::new(cache_capacity) }
    }

    /// Classifies `sql` under the default SQL mode; see [`Classifier::classify_in`].
    pub fn classify(&self, sql: &[u8]) -> Classified {
        self.classify_in(sql, SqlMode::default())
    }

    /// Like [`lex_in`], but when the lexer is unsure ([`Kind::Unknown`] with
    /// [`Flags::UNSURE`]) the cached or freshly computed fallback verdict decides the kind.
    /// `UNSURE` stays set so the router can tell the fallback decided.
    pub fn classify_in(&self, sql: &[u8], mode: SqlMode) -> Classified {
        let mut c = lex_in(sql, mode);
        self.resolve(&mut c, sql);
        c
    }

    /// True when every statement of the packet is read-only, consulting the fallback for
    /// statements the lexer could not place.
    /// Flags in `ignore` are removed from each statement first (operator policy, e.g.
    /// [`Flags::UNKNOWN_FN`]).
    pub fn is_all_reads(&self, sql: &[u8], mode: SqlMode, ignore: Flags) -> bool {
        let mut parts = classify_all(sql, mode);
        while let Some((mut c, range)) = parts.next_part() {
            self.resolve(&mut c, sql.get(range).unwrap_or_default());
            c.flags.remove(ignore);
            if !c.is_read_only() {
                return false;
            }
        }
        true
    }

    /// The verdict cache, e.g. to report its size.
    pub fn cache(&self) -> &DigestCache<Verdict> {
        &self.cache
    }

    fn resolve(&self, c: &mut Classified, sql: &[u8]) {
        let needs = c.kind == Kind::Unknown && c.flags.contains(Flags::UNSURE);
        if !needs || c.flags.intersects(Flags::MULTI | Flags::MALFORMED) {
            return;
        }
        let verdict = self.cache.get(c.digest).unwrap_or_else(|| {
            let v = fallback::analyze(sql);
            self.cache.insert(c.digest, v);
            v
        });
        if let Verdict::Parsed { kind, flags } = verdict {
            c.kind = kind;
            c.flags |= flags;
        }
    }
}
