//! Statement digests: the normalized token stream, hashed ([`Fnv`]) or written out ([`Text`]).
//!
//! Normalization: comments and whitespace are dropped; every literal (string, number, hex,
//! `?`) becomes `?`; a unary sign before a number is dropped; a parenthesised list of
//! literals after `IN`, `VALUES`, `VALUE` or `ROW` becomes `(?)`, and further literal rows of
//! a `VALUES` list are merged into it, so `IN (1,2,3)` equals `IN (?)` and a 1-row insert
//! equals a 100-row one. Inside such lists `NULL`, `TRUE` and `FALSE` count as literals.
//!
//! The digest is a 64-bit FNV-1a-style hash (xor, then multiply by the FNV prime) over the
//! normalized pieces, taken eight bytes at a time, each piece's length mixed in after it;
//! unquoted words and variable names are upper-cased first. [`Text`] writes the same pieces
//! with cosmetic spacing and upper-cases only keywords, so two statements share a digest
//! (barring hash collisions) exactly when their normalized texts are equal ignoring the case
//! of unquoted words.

use super::keyword::{load_le, Kw};
use super::lexer::TokKind;

/// One normalized piece.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Piece<'a> {
    /// Unquoted word with its keyword (case-insensitive).
    Word(&'a [u8], Kw),
    /// `@var` / `@@var` (case-insensitive name).
    Var(&'a [u8]),
    /// Quoted identifier, kept verbatim.
    Ident(&'a [u8]),
    /// A literal, written `?`.
    Lit,
    /// Punctuation or operator, verbatim.
    Sym(&'a [u8]),
    /// The host part of an account, written `@?` right after the user name.
    Host,
}

/// Receives normalized pieces.
pub(crate) trait Sink {
    fn piece(&mut self, piece: Piece<'_>);
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The hasher sink (the hot path): FNV-1a over 8-byte chunks rather than single bytes,
/// which costs one multiply per chunk instead of one per byte.
pub(crate) struct Fnv(pub(crate) u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(FNV_OFFSET)
    }
}

const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Upper-cases the ASCII letters among eight bytes; other bytes (non-ASCII included) stay.
fn upper8(x: u64) -> u64 {
    let low7 = x & !HIGH_BITS;
    let at_least_a = low7 + 0x1f1f_1f1f_1f1f_1f1f;
    let above_z = low7 + 0x0505_0505_0505_0505;
    let lower = at_least_a & !above_z & !x & HIGH_BITS;
    x - (lower >> 2)
}

impl Fnv {
    fn mix(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(FNV_PRIME);
    }

    fn bytes(&mut self, bytes: &[u8], fold: bool) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let v = <[u8; 8]>::try_from(chunk).map_or(0, u64::from_le_bytes);
            self.mix(if fold { upper8(v) } else { v });
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            let v = load_le(tail);
            self.mix(if fold { upper8(v) } else { v });
        }
        self.mix(u64::try_from(bytes.len()).unwrap_or(u64::MAX) | 1 << 63);
    }
}

impl Sink for Fnv {
    #[inline]
    fn piece(&mut self, piece: Piece<'_>) {
        match piece {
            Piece::Word(b, _) | Piece::Var(b) => self.bytes(b, true),
            Piece::Ident(b) | Piece::Sym(b) => self.bytes(b, false),
            Piece::Lit => self.bytes(b"?", false),
            Piece::Host => self.bytes(b"@?", false),
        }
    }
}

/// Writes the normalized text (for per-digest statistics and logs).
pub(crate) struct Text<'o> {
    out: &'o mut String,
    /// No space before the next piece (start, after `(`, `.`).
    tight: bool,
    /// The previous piece was a name that a following `(` attaches to (a function call).
    callable: bool,
}

impl<'o> Text<'o> {
    pub(crate) fn new(out: &'o mut String) -> Self {
        Self { out, tight: true, callable: false }
    }

    fn push_lossy(&mut self, bytes: &[u8]) {
        self.out.push_str(&String::from_utf8_lossy(bytes));
    }
}

impl Sink for Text<'_> {
    fn piece(&mut self, piece: Piece<'_>) {
        let sym = match piece {
            Piece::Sym(s) => s,
            _ => b"",
        };
        let attach =
            matches!(sym, b")" | b"," | b"." | b";") || (sym == b"(" && self.callable) || matches!(piece, Piece::Host);
        if !self.tight && !attach {
            self.out.push(' ');
        }
        match piece {
            Piece::Word(b, kw) if kw != Kw::None => self.out.push_str(&String::from_utf8_lossy(b).to_ascii_uppercase()),
            Piece::Word(b, _) | Piece::Var(b) | Piece::Ident(b) | Piece::Sym(b) => self.push_lossy(b),
            Piece::Lit => self.out.push('?'),
            Piece::Host => self.out.push_str("@?"),
        }
        self.tight = matches!(sym, b"(" | b".");
        self.callable = match piece {
            Piece::Word(_, kw) => kw.attaches_paren(),
            Piece::Ident(_) => true,
            _ => false,
        };
    }
}

/// A candidate literal list being collapsed: `(` seen after IN/VALUES/VALUE/ROW (or after a
/// `,` following a collapsed VALUES row), nothing emitted yet.
#[derive(Clone, Copy, Debug)]
struct Group {
    items: u32,
    commas: u32,
    /// A unary sign (`-`/`+`) seen before the next item, or 0.
    sign: u8,
    /// A further row of a VALUES list: merged into the previous `(?)` when it collapses.
    continuation: bool,
    /// A VALUES row (further rows may follow), as opposed to an IN list.
    row: bool,
}

/// Normalizes the token stream into a [`Sink`].
pub(crate) struct Digest<S> {
    pub(crate) sink: S,
    prev_kw: Kw,
    /// A unary sign may follow (start, operator, `(`, `,`, keyword).
    operator_ctx: bool,
    /// A held unary sign (`-`/`+`), or 0.
    sign: u8,
    group: Option<Group>,
    /// A collapsed VALUES row was just closed; a `,` after it is held back.
    after_row: bool,
    held_comma: bool,
}

/// Piece classes as the collapsing logic sees them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Lit,
    /// NULL/TRUE/FALSE: a literal inside a list, a word elsewhere.
    LitWord,
    Other,
}

/// The text of a sign byte.
fn sign_text(sign: u8) -> &'static [u8] {
    if sign == b'-' {
        b"-"
    } else {
        b"+"
    }
}

impl<S: Sink> Digest<S> {
    pub(crate) fn new(sink: S) -> Self {
        Self { sink, prev_kw: Kw::None, operator_ctx: true, sign: 0, group: None, after_row: false, held_comma: false }
    }

    /// Emits a piece; `sym` is its punctuation byte (0 for non-punctuation).
    #[inline]
    fn emit(&mut self, piece: Piece<'_>, sym: u8) {
        self.operator_ctx = match piece {
            Piece::Sym(_) => sym != b')',
            Piece::Word(_, kw) => kw != Kw::None && !matches!(kw, Kw::Null | Kw::True | Kw::False),
            _ => false,
        };
        self.prev_kw = match piece {
            Piece::Word(_, kw) => kw,
            _ => Kw::None,
        };
        self.sink.piece(piece);
    }

    /// Emits one punctuation byte such as `(`.
    fn punct(&mut self, text: &'static [u8]) {
        self.emit(Piece::Sym(text), text.first().copied().unwrap_or(0));
    }

    /// Feeds one token; `byte` is its first byte.
    #[inline]
    pub(crate) fn feed(&mut self, kind: TokKind, kw: Kw, byte: u8, text: &[u8]) {
        let (piece, sym) = match kind {
            TokKind::Word => (Piece::Word(text, kw), 0),
            TokKind::Ident => (Piece::Ident(text), 0),
            TokKind::Literal | TokKind::Param => (Piece::Lit, 0),
            TokKind::UserVar | TokKind::SysVar => (Piece::Var(text), 0),
            TokKind::Host => (Piece::Host, 0),
            TokKind::Op => (Piece::Sym(text), 0),
            TokKind::Punct | TokKind::Semi => (Piece::Sym(text), byte),
        };
        let class = match piece {
            Piece::Lit => Class::Lit,
            Piece::Word(_, Kw::Null | Kw::True | Kw::False) => Class::LitWord,
            _ => Class::Other,
        };
        if let Some(mut g) = self.group.take() {
            let expecting = g.items == g.commas;
            match (class, sym) {
                (Class::Lit | Class::LitWord, _) if expecting => {
                    g.items += 1;
                    g.sign = 0;
                    self.group = Some(g);
                    return;
                }
                (_, b',') if !expecting => g.commas += 1,
                (_, b'-' | b'+') if expecting && g.sign == 0 => g.sign = sym,
                (_, b')') if !expecting && g.sign == 0 => {
                    if !g.continuation {
                        self.punct(b"(");
                        self.emit(Piece::Lit, 0);
                        self.punct(b")");
                    }
                    self.after_row = g.row;
                    return;
                }
                _ => {
                    self.replay(g);
                    return self.normal(piece, class, sym);
                }
            }
            self.group = Some(g);
            return;
        }
        if std::mem::take(&mut self.held_comma) {
            if sym == b'(' {
                self.group = Some(Group { items: 0, commas: 0, sign: 0, continuation: true, row: true });
                return;
            }
            self.punct(b",");
        }
        if std::mem::take(&mut self.after_row) && sym == b',' {
            self.held_comma = true;
            return;
        }
        self.normal(piece, class, sym);
    }

    #[inline]
    fn normal(&mut self, piece: Piece<'_>, class: Class, sym: u8) {
        let sign = std::mem::take(&mut self.sign);
        if sign != 0 {
            if class == Class::Lit {
                return self.emit(Piece::Lit, 0);
            }
            self.punct(sign_text(sign));
        }
        if sym == b'(' && matches!(self.prev_kw, Kw::In | Kw::Values | Kw::Value | Kw::Row) {
            let row = self.prev_kw != Kw::In;
            self.group = Some(Group { items: 0, commas: 0, sign: 0, continuation: false, row });
            return;
        }
        if matches!(sym, b'-' | b'+') && self.operator_ctx {
            self.sign = sym;
            return;
        }
        self.emit(piece, sym);
    }

    /// Emits what an abandoned group swallowed, exactly as normal processing would have.
    fn replay(&mut self, g: Group) {
        if g.continuation {
            self.punct(b",");
        }
        self.punct(b"(");
        for i in 0..g.items {
            self.emit(Piece::Lit, 0);
            if i < g.commas {
                self.punct(b",");
            }
        }
        self.sign = g.sign;
    }

    /// Flushes anything held back at the end of a statement.
    pub(crate) fn end_statement(&mut self) {
        if let Some(g) = self.group.take() {
            self.replay(g);
        }
        if std::mem::take(&mut self.held_comma) {
            self.punct(b",");
        }
        let sign = std::mem::take(&mut self.sign);
        if sign != 0 {
            self.punct(sign_text(sign));
        }
        self.after_row = false;
    }

    /// Separates two statements of one packet.
    pub(crate) fn separator(&mut self) {
        self.end_statement();
        self.punct(b";");
        self.operator_ctx = true;
    }
}
