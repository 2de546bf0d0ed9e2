//! `SET` statements: which kinds of things they assign, `autocommit`'s new value when it is a
//! literal, and `SET [scope] TRANSACTION` characteristics.
//!
//! Values are not interpreted beyond that; the session learns the real new values from the
//! server's session-state tracking.

use super::cursor::{Cursor, Tok};
use super::digest::Sink;
use super::keyword::Kw;
use super::kind::{Flags, Isolation, Kind, SetInfo, SetTargets};
use super::lexer::TokKind;
use super::statement;

/// After `SET`.
pub(crate) fn set<S: Sink>(c: &mut Cursor<'_, S>, nested: bool) -> Kind {
    let mut info = SetInfo::default();
    match c.peek_kw() {
        Kw::Statement if !nested => {
            c.next();
            return set_statement(c);
        }
        Kw::Password | Kw::Role | Kw::Default => {
            c.accounts_ok = true;
            let target = if c.peek_kw() == Kw::Password { SetTargets::PASSWORD } else { SetTargets::ROLE };
            info.targets.insert(target);
            return Kind::Set(info);
        }
        Kw::Resource => {
            info.targets.insert(SetTargets::OTHER);
            return Kind::Set(info);
        }
        _ => {}
    }
    loop {
        item(c, &mut info);
        if !c.eat_byte(b',') {
            break;
        }
    }
    Kind::Set(info)
}

/// MariaDB `SET STATEMENT var = value [, ...] FOR stmt`: the variables last for `stmt` only,
/// so the statement is classified as `stmt`.
fn set_statement<S: Sink>(c: &mut Cursor<'_, S>) -> Kind {
    while let Some(t) = c.next() {
        if t.depth == 0 && t.kw == Kw::For {
            return statement::statement(c, true);
        }
    }
    statement::unsure(c)
}

/// One `target = value` item (or a TRANSACTION clause, which takes the rest).
fn item<S: Sink>(c: &mut Cursor<'_, S>, info: &mut SetInfo) {
    let Some(t) = c.peek() else { return };
    match (t.kind, t.kw) {
        (TokKind::Word, Kw::Global | Kw::Persist | Kw::PersistOnly) => {
            c.next();
            if c.eat(Kw::Transaction) {
                info.targets.insert(SetTargets::GLOBAL_TRANSACTION);
                transaction(c, info);
            } else {
                c.next_target();
                info.targets.insert(SetTargets::GLOBAL_VAR);
                value(c);
            }
        }
        (TokKind::Word, Kw::Session | Kw::Local) => {
            c.next();
            if c.eat(Kw::Transaction) {
                info.targets.insert(SetTargets::SESSION_TRANSACTION);
                transaction(c, info);
            } else if let Some(name) = c.next_target() {
                session_var(c, info, name);
            }
        }
        (TokKind::Word, Kw::Transaction) => {
            c.next();
            info.targets.insert(SetTargets::NEXT_TRANSACTION);
            transaction(c, info);
        }
        (TokKind::Word, Kw::Names) => {
            c.next();
            info.targets.insert(SetTargets::NAMES);
            value(c);
        }
        (TokKind::Word, Kw::Character | Kw::Charset) => {
            c.next();
            c.eat(Kw::Set);
            info.targets.insert(SetTargets::CHARSET);
            value(c);
        }
        (TokKind::UserVar, _) => {
            c.next_target();
            c.flags |= Flags::USER_VAR | Flags::USER_VAR_WRITE;
            info.targets.insert(SetTargets::USER_VAR);
            value(c);
        }
        (TokKind::SysVar, _) => {
            c.next_target();
            let scope = c.text(&t).get(2..).unwrap_or_default();
            let global = [&b"global."[..], b"persist.", b"persist_only."]
                .iter()
                .any(|p| scope.get(..p.len()).is_some_and(|s| s.eq_ignore_ascii_case(p)));
            if global {
                info.targets.insert(SetTargets::GLOBAL_VAR);
                value(c);
            } else {
                session_var(c, info, t);
            }
        }
        (TokKind::Word | TokKind::Ident, _) => {
            c.next_target();
            session_var(c, info, t);
        }
        _ => {
            info.targets.insert(SetTargets::OTHER);
            value(c);
        }
    }
}

/// A session variable item whose name token `name` was consumed.
fn session_var<S: Sink>(c: &mut Cursor<'_, S>, info: &mut SetInfo, name: Tok) {
    let text = c.text(&name);
    let bare = match text.iter().rposition(|&b| b == b'.' || b == b'@') {
        Some(i) => text.get(i + 1..).unwrap_or_default(),
        None => text,
    };
    let bare = bare.strip_prefix(b"`").and_then(|b| b.strip_suffix(b"`")).unwrap_or(bare);
    if bare.eq_ignore_ascii_case(b"autocommit") {
        info.targets.insert(SetTargets::AUTOCOMMIT);
        info.autocommit = value(c);
    } else {
        info.targets.insert(SetTargets::SESSION_VAR);
        value(c);
    }
}

/// Consumes `[= | :=] expr` up to a `,` outside parentheses; returns the boolean value when
/// the expression is a single `0`, `1`, `ON`, `OFF`, `TRUE` or `FALSE` (quoted or not).
fn value<S: Sink>(c: &mut Cursor<'_, S>) -> Option<bool> {
    if let Some(t) = c.peek() {
        if c.is(&t, b'=') || (t.kind == TokKind::Op && t.byte == b':') {
            c.next();
        }
    }
    let mut count = 0u32;
    let mut single = None;
    while let Some(t) = c.peek() {
        if t.depth == 0 && c.is(&t, b',') {
            break;
        }
        c.next();
        count += 1;
        if count == 1 {
            single = as_bool(c, &t);
        }
    }
    if count == 1 {
        single
    } else {
        None
    }
}

fn as_bool<S: Sink>(c: &Cursor<'_, S>, t: &Tok) -> Option<bool> {
    let text = c.text(t);
    let text = match (t.kind, text) {
        (TokKind::Literal, [q @ (b'\'' | b'"'), inner @ .., last]) if q == last => inner,
        (TokKind::Literal | TokKind::Word, _) => text,
        _ => return None,
    };
    if text == b"1" || text.eq_ignore_ascii_case(b"on") || text.eq_ignore_ascii_case(b"true") {
        Some(true)
    } else if text == b"0" || text.eq_ignore_ascii_case(b"off") || text.eq_ignore_ascii_case(b"false") {
        Some(false)
    } else {
        None
    }
}

/// `ISOLATION LEVEL ..` and `READ ONLY | READ WRITE`, comma-separated, to the end.
fn transaction<S: Sink>(c: &mut Cursor<'_, S>, info: &mut SetInfo) {
    while let Some(t) = c.next() {
        match t.kw {
            Kw::Level => {
                info.isolation = match (c.next().map(|t| t.kw), c.peek_kw()) {
                    (Some(Kw::Read), Kw::Uncommitted) => Some(Isolation::ReadUncommitted),
                    (Some(Kw::Read), Kw::Committed) => Some(Isolation::ReadCommitted),
                    (Some(Kw::Repeatable), _) => Some(Isolation::RepeatableRead),
                    (Some(Kw::Serializable), _) => Some(Isolation::Serializable),
                    _ => info.isolation,
                };
            }
            Kw::Read => match c.peek_kw() {
                Kw::Only => info.read_only = Some(true),
                Kw::Write => info.read_only = Some(false),
                _ => {}
            },
            _ => {}
        }
    }
}
