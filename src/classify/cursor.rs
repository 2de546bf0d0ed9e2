//! Token cursor for the head parser: one token of look-ahead, statement boundaries, and the
//! flag scan that every consumed token goes through.
//!
//! Boundaries: a `;` ends the statement unless the statement is a stored program (`CREATE
//! PROCEDURE|FUNCTION|TRIGGER|EVENT`, `ALTER EVENT`, MariaDB `BEGIN NOT ATOMIC`) and the `;`
//! sits inside its `BEGIN ... END` body. Block depth counts `BEGIN` and `CASE` up and `END`
//! down; `END IF|LOOP|WHILE|REPEAT|FOR` close statements that never counted up.
//!
//! Scanning happens when the head parser *consumes* a token (not when it peeks), so the SET
//! parser can consume an assignment target without it counting as a variable read.

use super::digest::{Digest, Sink};
use super::keyword::{self, Kw};
use super::kind::{Flags, Hint};
use super::lexer::{Lexer, SqlMode, TokKind};

/// A token with its keyword and the parenthesis depth it sits at (for `(` and `)`: the depth
/// outside them). 16 bytes, so it moves in registers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tok {
    pub(crate) start: u32,
    pub(crate) end: u32,
    pub(crate) depth: u32,
    pub(crate) kind: TokKind,
    pub(crate) kw: Kw,
    pub(crate) glued: bool,
    /// The first byte (for punctuation, the whole token).
    pub(crate) byte: u8,
}

fn ix(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// What one statement came to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Part {
    pub(crate) flags: Flags,
    pub(crate) hint: Option<Hint>,
    /// Byte range from the first to the last token (empty for an empty statement).
    pub(crate) start: usize,
    pub(crate) end: usize,
}

pub(crate) struct Cursor<'a, S> {
    src: &'a [u8],
    lx: Lexer<'a>,
    peeked: Option<Tok>,
    at_end: bool,
    saw_semi: bool,
    paren: u32,
    /// A `)` closed nothing.
    unbalanced: bool,
    compound: bool,
    block: u32,
    pending_end: bool,
    /// Flags of the current statement.
    pub(crate) flags: Flags,
    /// Kind, keyword and first byte of the previous token, and the keyword before it.
    prev_kind: Option<TokKind>,
    prev_kw: Kw,
    prev_byte: u8,
    prev2_kw: Kw,
    /// Where the previous token is, and whether it followed a `.` (a qualified name).
    prev_span: (u32, u32),
    prev_qualified: bool,
    into_list: bool,
    /// The current statement has an `INTO` word (turned into [`Flags::INTO`] for queries).
    pub(crate) saw_into: bool,
    /// `name@host` account syntax may appear (GRANT, CREATE USER, DEFINER=, ...).
    pub(crate) accounts_ok: bool,
    range: Option<(u32, u32)>,
    pub(crate) digest: Digest<S>,
}

impl<'a, S: Sink> Cursor<'a, S> {
    pub(crate) fn new(src: &'a [u8], mode: SqlMode, sink: S) -> Self {
        Self {
            src,
            lx: Lexer::new(src, mode),
            peeked: None,
            at_end: false,
            saw_semi: false,
            paren: 0,
            unbalanced: false,
            compound: false,
            block: 0,
            pending_end: false,
            flags: Flags::EMPTY,
            prev_kind: None,
            prev_kw: Kw::None,
            prev_byte: 0,
            prev2_kw: Kw::None,
            prev_span: (0, 0),
            prev_qualified: false,
            into_list: false,
            saw_into: false,
            accounts_ok: false,
            range: None,
            digest: Digest::new(sink),
        }
    }

    pub(crate) fn text(&self, t: &Tok) -> &'a [u8] {
        self.src.get(ix(t.start)..ix(t.end)).unwrap_or_default()
    }

    /// True when `t` is the single byte `b`.
    pub(crate) fn is(&self, t: &Tok, b: u8) -> bool {
        matches!(t.kind, TokKind::Punct | TokKind::Semi) && t.byte == b
    }

    fn fill(&mut self) {
        if self.peeked.is_none() && !self.at_end {
            self.peeked = self.pull();
        }
    }

    /// The next token from the lexer, or `None` at the end of the statement. Consuming
    /// straight from here (not through `peeked`) keeps the token in registers.
    #[inline(always)]
    fn pull(&mut self) -> Option<Tok> {
        if self.at_end {
            return None;
        }
        let Some(t) = self.lx.next_token() else {
            self.at_end = true;
            return None;
        };
        let kw = if t.kind == TokKind::Word { keyword::lookup_in(self.src, ix(t.start), ix(t.end)) } else { Kw::None };
        if self.compound {
            let mut counts = true;
            // `END IF|LOOP|WHILE|REPEAT|FOR` closes a block that never counted up.
            if std::mem::take(&mut self.pending_end)
                && !matches!(kw, Kw::If | Kw::Loop | Kw::While | Kw::Repeat | Kw::For)
            {
                self.block = self.block.saturating_sub(1);
                counts = kw != Kw::Case;
            }
            match kw {
                Kw::Begin | Kw::Case if counts => self.block += 1,
                Kw::End => self.pending_end = true,
                _ => {}
            }
        }
        if t.kind == TokKind::Semi && !(self.compound && self.block > 0) {
            self.at_end = true;
            self.saw_semi = true;
            return None;
        }
        let mut depth = self.paren;
        if t.kind == TokKind::Punct {
            match t.byte {
                b'(' => self.paren += 1,
                b')' => {
                    self.unbalanced |= self.paren == 0;
                    self.paren = self.paren.saturating_sub(1);
                    depth = self.paren;
                }
                _ => {}
            }
        }
        Some(Tok { start: t.start, end: t.end, depth, kind: t.kind, kw, glued: t.glued, byte: t.byte })
    }

    /// The next token of this statement, without consuming it.
    pub(crate) fn peek(&mut self) -> Option<Tok> {
        self.fill();
        self.peeked
    }

    /// The keyword of the next token ([`Kw::None`] at the end or for non-words).
    pub(crate) fn peek_kw(&mut self) -> Kw {
        self.peek().map_or(Kw::None, |t| t.kw)
    }

    /// True (and consumed) when the next token is the keyword `kw`.
    pub(crate) fn eat(&mut self, kw: Kw) -> bool {
        let hit = self.peek_kw() == kw;
        if hit {
            self.next();
        }
        hit
    }

    /// True (and consumed) when the next token is the single byte `b`.
    pub(crate) fn eat_byte(&mut self, b: u8) -> bool {
        let hit = self.peek().is_some_and(|t| self.is(&t, b));
        if hit {
            self.next();
        }
        hit
    }

    /// Consumes the next token, scanning it for flags.
    pub(crate) fn next(&mut self) -> Option<Tok> {
        self.consume(true)
    }

    /// Consumes an assignment target: a `@@var` here is not a read.
    pub(crate) fn next_target(&mut self) -> Option<Tok> {
        self.consume(false)
    }

    /// Consumes the rest of the statement.
    pub(crate) fn skip_rest(&mut self) {
        while self.next().is_some() {}
    }

    /// Turns on stored-program boundaries; `open` blocks are already open.
    pub(crate) fn enter_compound(&mut self, open: u32) {
        self.compound = true;
        self.block = open;
    }

    // Inlined so that the token never goes through a stack slot (a measurable store-forwarding
    // stall per token otherwise).
    #[inline(always)]
    fn consume(&mut self, reads: bool) -> Option<Tok> {
        let t = match self.peeked {
            Some(t) => {
                self.peeked = None;
                t
            }
            None => self.pull()?,
        };
        let host = self.scan(&t, reads);
        let text = self.text(&t);
        let kind = if host { TokKind::Host } else { t.kind };
        self.digest.feed(kind, t.kw, t.byte, text);
        let start = self.range.map_or(t.start, |r| r.0);
        self.range = Some((start, t.end));
        self.prev2_kw = self.prev_kw;
        self.prev_qualified = self.prev_kind == Some(TokKind::Punct) && self.prev_byte == b'.';
        self.prev_span = (t.start, t.end);
        self.prev_kw = t.kw;
        self.prev_kind = Some(t.kind);
        self.prev_byte = t.byte;
        Some(t)
    }

    /// Sets flags for `t`; returns true when `t` is the host part of an account name.
    fn scan(&mut self, t: &Tok, reads: bool) -> bool {
        let (prev_kind, prev_kw) = (self.prev_kind, self.prev_kw);
        let prev_dot = prev_kind == Some(TokKind::Punct) && self.prev_byte == b'.';
        let mut keep_into = false;
        let mut host = false;
        match t.kind {
            TokKind::Word => match t.kw {
                Kw::Into => {
                    self.saw_into = true;
                    keep_into = true;
                }
                Kw::Update | Kw::Share if prev_kw == Kw::For => self.flags |= Flags::LOCKING_READ,
                Kw::Share if prev_kw == Kw::In && self.prev2_kw == Kw::Lock => self.flags |= Flags::LOCKING_READ,
                Kw::Value if matches!(prev_kw, Kw::Next | Kw::Previous) => self.flags |= Flags::SEQUENCE,
                Kw::Nextval | Kw::Currval | Kw::Lastval | Kw::Setval if prev_dot => self.flags |= Flags::SEQUENCE,
                Kw::SqlCalcFoundRows => self.flags |= Flags::CALC_FOUND_ROWS,
                _ => {}
            },
            TokKind::Punct if self.is(t, b'(') && prev_kind == Some(TokKind::Ident) => {
                let name = self.src.get(ix(self.prev_span.0) + 1..ix(self.prev_span.1).saturating_sub(1));
                self.flags |= super::functions::call_flags(name.unwrap_or_default(), true, self.prev_qualified);
            }
            TokKind::Punct if self.is(t, b'(') && prev_kind == Some(TokKind::Word) => {
                self.flags |= match prev_kw {
                    Kw::LastInsertId => Flags::LAST_INSERT_ID,
                    Kw::FoundRows => Flags::FOUND_ROWS,
                    Kw::RowCount => Flags::ROW_COUNT,
                    Kw::GetLock | Kw::ReleaseLock | Kw::ReleaseAllLocks | Kw::IsUsedLock | Kw::IsFreeLock => {
                        Flags::LOCK_FN
                    }
                    Kw::Nextval | Kw::Lastval | Kw::Setval => Flags::SEQUENCE,
                    Kw::LoadFile | Kw::SysExec | Kw::SysEval => Flags::SIDE_EFFECT_FN,
                    // `WITH [RECURSIVE] cte (a, b) AS (..)`: a column list, not a call.
                    _ if matches!(self.prev2_kw, Kw::With | Kw::Recursive) => Flags::EMPTY,
                    _ => {
                        let name = self.src.get(ix(self.prev_span.0)..ix(self.prev_span.1));
                        super::functions::call_flags(name.unwrap_or_default(), false, self.prev_qualified)
                    }
                };
            }
            TokKind::Punct => keep_into = self.is(t, b','),
            TokKind::UserVar => {
                host = t.glued
                    && match prev_kind {
                        Some(TokKind::Literal | TokKind::Ident) => true,
                        Some(TokKind::Word) => self.accounts_ok,
                        _ => false,
                    };
                if !host {
                    self.flags |= Flags::USER_VAR;
                    if self.into_list {
                        self.flags |= Flags::USER_VAR_WRITE;
                    }
                    keep_into = true;
                }
            }
            TokKind::SysVar => {
                if reads {
                    self.flags |= Flags::SYS_VAR_READ;
                }
                let name = sysvar_name(self.text(t));
                if name.eq_ignore_ascii_case(b"warning_count") || name.eq_ignore_ascii_case(b"error_count") {
                    self.flags |= Flags::WARNINGS_QUERY;
                } else if name.eq_ignore_ascii_case(b"identity") || name.eq_ignore_ascii_case(b"last_insert_id") {
                    // Both are `LAST_INSERT_ID()` under another name.
                    self.flags |= Flags::LAST_INSERT_ID;
                }
            }
            TokKind::Op if t.byte == b':' && prev_kind == Some(TokKind::UserVar) => {
                self.flags |= Flags::USER_VAR_WRITE;
            }
            _ => {}
        }
        self.into_list = keep_into && (self.into_list || t.kw == Kw::Into);
        host
    }

    /// After a statement: starts the next one if the packet has more. Returns false at the end.
    pub(crate) fn next_statement(&mut self) -> bool {
        if !self.saw_semi {
            return false;
        }
        self.reset();
        self.fill();
        self.peeked.is_some() || self.saw_semi
    }

    fn reset(&mut self) {
        self.at_end = false;
        self.saw_semi = false;
        self.paren = 0;
        self.unbalanced = false;
        self.compound = false;
        self.block = 0;
        self.pending_end = false;
        self.flags = Flags::EMPTY;
        self.prev_kind = None;
        self.prev_kw = Kw::None;
        self.prev_byte = 0;
        self.prev2_kw = Kw::None;
        self.prev_qualified = false;
        self.into_list = false;
        self.saw_into = false;
        self.accounts_ok = false;
        self.range = None;
        self.lx.scan_hints = true;
        self.lx.hint = None;
        self.lx.bad_hint = false;
    }

    /// Closes the current statement (consuming what the head parser left).
    pub(crate) fn finish_statement(&mut self) -> Part {
        self.skip_rest();
        self.digest.end_statement();
        let mut flags = self.flags;
        if self.lx.malformed || self.paren > 0 || self.unbalanced {
            flags |= Flags::MALFORMED;
        }
        if self.lx.bad_hint {
            flags |= Flags::HINT_INVALID;
        }
        let (start, end) = self.range.unwrap_or((0, 0));
        Part { flags, hint: self.lx.hint, start: ix(start), end: ix(end) }
    }
}

/// The bare name of `@@[scope.]name`.
fn sysvar_name(text: &[u8]) -> &[u8] {
    let name = text.get(2..).unwrap_or_default();
    match name.iter().rposition(|&b| b == b'.') {
        Some(dot) => name.get(dot + 1..).unwrap_or_default(),
        None => name,
    }
}
