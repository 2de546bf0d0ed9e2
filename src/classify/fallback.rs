//! The slow path: asks sqlparser (MySQL dialect) about a statement the lexer could not place.
//!
//! Runs only on a digest-cache miss for statements flagged [`Flags::UNSURE`] with
//! [`Kind::Unknown`], so its cost (micro- to milliseconds) is paid once per digest. Only one
//! question matters for routing: is this a plain query? A parse failure, several statements or
//! anything but a query without locking clauses or `INTO` keeps the statement off the replicas.

use sqlparser::ast::{Query, SetExpr, Statement};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use super::kind::{Flags, Kind};

/// Statements longer than this are not handed to sqlparser (they go to the primary): parsing
/// cost grows with length and the client controls the length.
pub const MAX_FALLBACK_LEN: usize = 64 * 1024;

/// What the fallback concluded; cached per digest by [`super::Classifier`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// sqlparser parsed exactly one statement: its kind, plus flags it found (locking, INTO).
    Parsed {
        /// [`Kind::Select`] for a query, the matching kind for INSERT/UPDATE/DELETE, else
        /// [`Kind::Other`].
        kind: Kind,
        /// [`Flags::LOCKING_READ`] and [`Flags::INTO`] as seen in the AST.
        flags: Flags,
    },
    /// sqlparser failed (or was not run): the statement stays [`Kind::Unknown`].
    Failed,
}

/// Parses `sql` (lossy UTF-8) and maps the result to a [`Verdict`].
pub fn analyze(sql: &[u8]) -> Verdict {
    if sql.len() > MAX_FALLBACK_LEN {
        return Verdict::Failed;
    }
    let text = String::from_utf8_lossy(sql);
    // sqlparser has a recursion limit, but it is a large third-party parser fed untrusted
    // text: a panic in it must not take the connection task down.
    let parsed = std::panic::catch_unwind(|| Parser::parse_sql(&MySqlDialect {}, &text));
    match parsed {
        Ok(Ok(statements)) => match statements.as_slice() {
            [one] => map(one),
            _ => Verdict::Failed,
        },
        _ => Verdict::Failed,
    }
}

fn map(statement: &Statement) -> Verdict {
    let mut flags = Flags::EMPTY;
    let kind = match statement {
        Statement::Query(q) if query_is_read(q, &mut flags) => Kind::Select,
        Statement::Insert(_) => Kind::Insert,
        Statement::Update(_) => Kind::Update,
        Statement::Delete(_) => Kind::Delete,
        _ => Kind::Other,
    };
    Verdict::Parsed { kind, flags }
}

/// True when the query and all its CTEs only read; records locking clauses and `INTO`.
fn query_is_read(q: &Query, flags: &mut Flags) -> bool {
    if !q.locks.is_empty() {
        *flags |= Flags::LOCKING_READ;
    }
    let ctes = q.with.iter().flat_map(|w| &w.cte_tables).all(|cte| query_is_read(&cte.query, flags));
    ctes && body_is_read(&q.body, flags)
}

fn body_is_read(body: &SetExpr, flags: &mut Flags) -> bool {
    match body {
        SetExpr::Select(s) => {
            if s.into.is_some() {
                *flags |= Flags::INTO;
            }
            true
        }
        SetExpr::Query(q) => query_is_read(q, flags),
        SetExpr::SetOperation { left, right, .. } => body_is_read(left, flags) && body_is_read(right, flags),
        SetExpr::Values(_) | SetExpr::Table(_) => true,
        _ => false,
    }
}
