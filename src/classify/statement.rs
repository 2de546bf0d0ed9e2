//! The head parser: decides a statement's [`Kind`] from its first few tokens.
//!
//! It reads as little as it must (usually one or two tokens); the cursor scans whatever it
//! leaves for flags. When it cannot decide, it returns [`Kind::Unknown`] with
//! [`Flags::UNSURE`] and the caller may ask the sqlparser fallback.

use super::cursor::Cursor;
use super::digest::Sink;
use super::keyword::Kw;
use super::kind::{Flags, Kind, XaKind};
use super::lexer::TokKind;
use super::set;

/// Classifies one statement; `nested` is true for the statement after `SET STATEMENT .. FOR`.
pub(crate) fn statement<S: Sink>(c: &mut Cursor<'_, S>, nested: bool) -> Kind {
    let Some(t) = c.next() else { return Kind::Empty };
    if t.kind == TokKind::Word {
        return word(c, t.kw, nested);
    }
    if c.is(&t, b'(') {
        return parenthesised(c);
    }
    unsure(c)
}

pub(crate) fn unsure<S: Sink>(c: &mut Cursor<'_, S>) -> Kind {
    c.flags |= Flags::UNSURE;
    Kind::Unknown
}

fn word<S: Sink>(c: &mut Cursor<'_, S>, kw: Kw, nested: bool) -> Kind {
    match kw {
        Kw::Select | Kw::Table | Kw::Values => Kind::Select,
        Kw::With => with_main(c).unwrap_or_else(|| unsure(c)),
        Kw::Insert => Kind::Insert,
        Kw::Update => Kind::Update,
        Kw::Delete => Kind::Delete,
        Kw::Replace => Kind::Replace,
        Kw::Show => show(c),
        Kw::Describe | Kw::Desc | Kw::Explain => explain(c),
        Kw::Analyze => analyze(c),
        Kw::Set => set::set(c, nested),
        Kw::Use => Kind::Use,
        Kw::Begin => begin(c),
        Kw::Start => start(c),
        Kw::Commit => {
            let (chain, release) = end_options(c);
            Kind::Commit { chain, release }
        }
        Kw::Rollback => rollback(c),
        Kw::Savepoint => Kind::Savepoint,
        Kw::Release if c.eat(Kw::Savepoint) => Kind::ReleaseSavepoint,
        Kw::Xa => xa(c),
        Kw::Create | Kw::Alter | Kw::Drop => ddl(c, kw),
        Kw::Truncate | Kw::Import => Kind::Ddl,
        Kw::Rename => {
            c.accounts_ok = true;
            if c.peek_kw() == Kw::User {
                Kind::Admin
            } else {
                Kind::Ddl
            }
        }
        Kw::Call => Kind::Call,
        Kw::Do => Kind::Do,
        Kw::Load => load(c),
        Kw::Lock | Kw::Unlock => match (c.peek_kw(), kw) {
            (Kw::Table | Kw::Tables, Kw::Lock) => Kind::LockTables,
            (Kw::Table | Kw::Tables, _) => Kind::UnlockTables,
            (Kw::Instance, _) => Kind::Admin,
            _ => unsure(c),
        },
        Kw::Prepare => Kind::Prepare,
        Kw::Execute => Kind::Execute,
        Kw::Deallocate => Kind::Deallocate,
        Kw::Handler => Kind::Handler,
        Kw::Kill => Kind::Kill,
        Kw::Flush => Kind::Flush,
        Kw::Grant | Kw::Revoke => {
            c.accounts_ok = true;
            Kind::Admin
        }
        Kw::Optimize
        | Kw::Repair
        | Kw::Check
        | Kw::Checksum
        | Kw::Cache
        | Kw::Install
        | Kw::Uninstall
        | Kw::Reset
        | Kw::Purge
        | Kw::Change
        | Kw::Stop
        | Kw::Shutdown
        | Kw::Restart
        | Kw::Binlog
        | Kw::Clone
        | Kw::Backup => Kind::Admin,
        Kw::Get if matches!(c.peek_kw(), Kw::Diagnostics | Kw::Current | Kw::Stacked) => {
            c.flags |= Flags::WARNINGS_QUERY;
            Kind::Other
        }
        Kw::Help | Kw::Signal | Kw::Resignal => Kind::Other,
        _ => unsure(c),
    }
}

/// `(SELECT ..) UNION (SELECT ..)`, `((WITH .. SELECT ..))`.
fn parenthesised<S: Sink>(c: &mut Cursor<'_, S>) -> Kind {
    loop {
        match c.next() {
            Some(t) if c.is(&t, b'(') => {}
            Some(t) if matches!(t.kw, Kw::Select | Kw::Table | Kw::Values) => return Kind::Select,
            Some(t) if t.kw == Kw::With => return with_main(c).unwrap_or_else(|| unsure(c)),
            _ => return unsure(c),
        }
    }
}

/// After `WITH`: finds the main statement, the first SELECT/TABLE/VALUES/INSERT/UPDATE/
/// DELETE/REPLACE outside parentheses (all reserved words, so never a CTE name), or a `(`
/// right after a CTE body's `)`.
fn with_main<S: Sink>(c: &mut Cursor<'_, S>) -> Option<Kind> {
    let mut after_body = false;
    while let Some(t) = c.next() {
        if t.depth == 0 {
            let kind = match t.kw {
                Kw::Select | Kw::Table | Kw::Values => Some(Kind::Select),
                Kw::Insert => Some(Kind::Insert),
                Kw::Update => Some(Kind::Update),
                Kw::Delete => Some(Kind::Delete),
                Kw::Replace => Some(Kind::Replace),
                _ if after_body && c.is(&t, b'(') => Some(Kind::Select),
                _ => None,
            };
            if kind.is_some() {
                return kind;
            }
        }
        after_body = t.depth == 0 && c.is(&t, b')');
    }
    None
}

fn show<S: Sink>(c: &mut Cursor<'_, S>) -> Kind {
    c.accounts_ok = true;
    let kw = c.peek_kw();
    match kw {
        Kw::Warnings | Kw::Errors | Kw::Profile | Kw::Profiles | Kw::Count => c.flags |= Flags::WARNINGS_QUERY,
        Kw::Master
        | Kw::Binary
        | Kw::Slave
        | Kw::Replica
        | Kw::Replicas
        | Kw::Binlog
        | Kw::Relaylog
        | Kw::Processlist
        | Kw::Engine
        | Kw::Explain
        | Kw::Analyze
        | Kw::All => c.flags |= Flags::SERVER_SPECIFIC,
        Kw::Full => {
            c.next();
            if c.peek_kw() == Kw::Processlist {
                c.flags |= Flags::SERVER_SPECIFIC;
            }
        }
        _ => {}
    }
    Kind::Show
}

/// Skips `FORMAT = name` / `FORMAT=name`.
fn skip_format<S: Sink>(c: &mut Cursor<'_, S>) {
    if c.eat(Kw::Format) {
        c.eat_byte(b'=');
        c.next();
    }
}

/// `EXPLAIN | DESCRIBE | DESC ...`.
fn explain<S: Sink>(c: &mut Cursor<'_, S>) -> Kind {
    let mut analyze = false;
    loop {
        match c.peek_kw() {
            Kw::Analyze => analyze = true,
            Kw::Extended | Kw::Partitions => {}
            Kw::Format => {
                skip_format(c);
                continue;
            }
            _ => break,
        }
        c.next();
    }
    explained(c, analyze, true)
}

/// MariaDB `ANALYZE [FORMAT=JSON] stmt` runs the statement; `ANALYZE TABLE` is maintenance.
fn analyze<S: Sink>(c: &mut Cursor<'_, S>) -> Kind {
    skip_format(c);
    match c.peek_kw() {
        Kw::Table | Kw::Tables | Kw::NoWriteToBinlog | Kw::Local => Kind::Admin,
        _ => explained(c, true, false),
    }
}

/// The statement after EXPLAIN/ANALYZE; a plain name means a table description.
fn explained<S: Sink>(c: &mut Cursor<'_, S>, analyze: bool, describe_ok: bool) -> Kind {
    let write = |write| Kind::Explain { analyze, write };
    let Some(t) = c.peek() else { return unsure(c) };
    match t.kw {
        Kw::Select | Kw::Table | Kw::Values => write(false),
        Kw::Insert | Kw::Update | Kw::Delete | Kw::Replace => write(true),
        Kw::With => {
            c.next();
            write(with_main(c) != Some(Kind::Select))
        }
        Kw::For => {
            c.flags |= Flags::SERVER_SPECIFIC;
            write(false)
        }
        _ if c.is(&t, b'(') => write(false),
        _ if describe_ok && !analyze && matches!(t.kind, TokKind::Word | TokKind::Ident) => Kind::Describe,
        _ => write(true),
    }
}

fn begin<S: Sink>(c: &mut Cursor<'_, S>) -> Kind {
    let plain = Kind::Begin { read_only: None, consistent_snapshot: false };
    match c.peek_kw() {
        _ if c.peek().is_none() => plain,
        Kw::Work => plain,
        Kw::Not => {
            c.next();
            if c.eat(Kw::Atomic) {
                c.enter_compound(1);
                Kind::Other
            } else {
                unsure(c)
            }
        }
        _ => unsure(c),
    }
}

/// `START TRANSACTION [READ ONLY | READ WRITE | WITH CONSISTENT SNAPSHOT] [, ...]`; any other
/// `START ..` (SLAVE, REPLICA, GROUP_REPLICATION) is administration.
fn start<S: Sink>(c: &mut Cursor<'_, S>) -> Kind {
    if !c.eat(Kw::Transaction) {
        return Kind::Admin;
    }
    let (mut read_only, mut consistent_snapshot) = (None, false);
    while let Some(t) = c.next() {
        match t.kw {
            Kw::Read => match c.peek_kw() {
                Kw::Only => read_only = Some(true),
                Kw::Write => read_only = Some(false),
                _ => {}
            },
            Kw::Snapshot => consistent_snapshot = true,
            _ => {}
        }
    }
    Kind::Begin { read_only, consistent_snapshot }
}

/// `[WORK] [AND [NO] CHAIN] [[NO] RELEASE]` after COMMIT or ROLLBACK.
fn end_options<S: Sink>(c: &mut Cursor<'_, S>) -> (bool, bool) {
    c.eat(Kw::Work);
    let mut chain = false;
    if c.eat(Kw::And) {
        let no = c.eat(Kw::No);
        chain = c.eat(Kw::Chain) && !no;
    }
    let no = c.eat(Kw::No);
    let release = c.eat(Kw::Release) && !no;
    (chain, release)
}

fn rollback<S: Sink>(c: &mut Cursor<'_, S>) -> Kind {
    c.eat(Kw::Work);
    if c.eat(Kw::To) {
        return Kind::RollbackToSavepoint;
    }
    let (chain, release) = end_options(c);
    Kind::Rollback { chain, release }
}

fn xa<S: Sink>(c: &mut Cursor<'_, S>) -> Kind {
    let kind = match c.peek_kw() {
        Kw::Start | Kw::Begin => XaKind::Start,
        Kw::End => XaKind::End,
        Kw::Prepare => XaKind::Prepare,
        Kw::Commit => XaKind::Commit,
        Kw::Rollback => XaKind::Rollback,
        Kw::Recover => XaKind::Recover,
        _ => return unsure(c),
    };
    Kind::Xa(kind)
}

/// CREATE / ALTER / DROP: finds the object type among the first tokens.
fn ddl<S: Sink>(c: &mut Cursor<'_, S>, head: Kw) -> Kind {
    c.accounts_ok = true;
    for _ in 0..24 {
        let Some(t) = c.peek() else { break };
        match t.kw {
            Kw::Temporary => c.flags |= Flags::TEMP_TABLE,
            Kw::User | Kw::Role => return Kind::Admin,
            Kw::Prepare if head == Kw::Drop => return Kind::Deallocate,
            Kw::Procedure | Kw::Function | Kw::Trigger | Kw::Event => {
                c.next();
                if head != Kw::Drop {
                    c.enter_compound(0);
                }
                return Kind::Ddl;
            }
            Kw::Table | Kw::View | Kw::Index | Kw::Database | Kw::Schema => return Kind::Ddl,
            _ => {}
        }
        c.next();
    }
    Kind::Ddl
}

/// `LOAD DATA | XML [LOW_PRIORITY | CONCURRENT] [LOCAL] INFILE ..`; `LOAD INDEX` is admin.
fn load<S: Sink>(c: &mut Cursor<'_, S>) -> Kind {
    match c.peek_kw() {
        Kw::Index => Kind::Admin,
        Kw::Data | Kw::Xml => {
            c.next();
            while matches!(c.peek_kw(), Kw::LowPriority | Kw::Concurrent) {
                c.next();
            }
            if c.eat(Kw::Local) {
                c.flags |= Flags::LOCAL;
            }
            Kind::Load
        }
        _ => unsure(c),
    }
}
