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
/// runs inline on a worker thread, its cost grows with length, and the client controls the
/// length. The statements the lexer is unsure of are short OLTP shapes (cost at the bound:
/// `sqlparser/in_list_at_length_bound` in benches/classify.rs). Stack: the deepest shapes at the
/// bound parse, fail and drop within 512 KiB, a quarter of a worker's stack, in a debug build
/// (`fallback_worst_shapes_fit_a_quarter_of_a_worker_stack`; 256 KiB is not enough).
pub const MAX_FALLBACK_LEN: usize = 8 * 1024;

/// Deepest bracket nesting handed to sqlparser: recursive descent pays per level, and nesting is
/// the cheapest way to make a short statement expensive. Counted without regard to quotes, so a
/// string full of brackets goes to the primary too (safe by default).
pub const MAX_FALLBACK_DEPTH: usize = 24;

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
    if sql.len() > MAX_FALLBACK_LEN || nesting(sql) > MAX_FALLBACK_DEPTH {
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

/// Deepest `(`/`[`/`{` nesting of `sql`, counting every bracket byte.
fn nesting(sql: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for &b in sql {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
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

#[cfg(test)]
mod tests {
    use super::*;

    const UNSURE_READ: &str = "WITH a AS (SELECT 1) SELECT * FROM a";

    #[test]
    fn statements_within_the_bounds_are_parsed() {
        assert!(matches!(analyze(UNSURE_READ.as_bytes()), Verdict::Parsed { kind: Kind::Select, .. }));
        let nested = format!("SELECT {}1{}", "(".repeat(MAX_FALLBACK_DEPTH), ")".repeat(MAX_FALLBACK_DEPTH));
        assert!(matches!(analyze(nested.as_bytes()), Verdict::Parsed { kind: Kind::Select, .. }));
        let mut long = String::from("SELECT 1 FROM t WHERE a IN (0");
        while long.len() < MAX_FALLBACK_LEN - 8 {
            long.push_str(",1");
        }
        long.push(')');
        assert!(long.len() <= MAX_FALLBACK_LEN);
        assert!(matches!(analyze(long.as_bytes()), Verdict::Parsed { kind: Kind::Select, .. }));
    }

    #[test]
    fn statements_past_the_bounds_are_not_parsed() {
        let mut long = String::from("SELECT 1 FROM t WHERE a IN (0");
        while long.len() <= MAX_FALLBACK_LEN {
            long.push_str(",1");
        }
        long.push(')');
        assert_eq!(analyze(long.as_bytes()), Verdict::Failed, "over the length bound");
        let deep = MAX_FALLBACK_DEPTH + 1;
        let nested = format!("SELECT {}1{}", "(".repeat(deep), ")".repeat(deep));
        assert_eq!(analyze(nested.as_bytes()), Verdict::Failed, "over the nesting bound");
        // Unbalanced closers do not hide depth.
        let sneaky = format!("SELECT ){}1", "(".repeat(deep));
        assert_eq!(nesting(sneaky.as_bytes()), deep);
    }

    #[test]
    fn unparsed_statements_stay_on_the_primary() {
        let classifier = crate::classify::Classifier::new(16);
        let deep = MAX_FALLBACK_DEPTH + 1;
        // An unknown leading keyword makes the lexer unsure: the fallback is asked and, past the
        // bound, declines without parsing; the statement stays Unknown, which routes to the primary.
        let sql = format!("FOO {}1{}", "(".repeat(deep), ")".repeat(deep));
        let c = classifier.classify(sql.as_bytes());
        assert_eq!(c.kind, Kind::Unknown);
        assert!(!c.is_read_only(), "unclassified goes to the primary: {c:?}");
        assert_eq!(classifier.cache().len(), 1, "the refusal is cached like a verdict");
    }
}
