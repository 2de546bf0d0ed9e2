//! One-pass byte lexer for MySQL/MariaDB SQL.
//!
//! Yields tokens as byte ranges into the statement; never allocates and never panics, whatever
//! the bytes (invalid UTF-8 included: bytes >= 0x80 are identifier bytes, as for MySQL's
//! multi-byte identifiers). Comments are skipped here, except that:
//! * `/*!NNNNN ... */`, `/*! ... */` and MariaDB `/*M!NNNNNN ... */` are *executable*
//!   comments: their contents are lexed as part of the statement, whatever the version (we do
//!   not know the server's version; modern servers run all of them);
//! * `/*+ ... */` optimizer hints are skipped like plain comments;
//! * plain comments before the first token are checked for a routing hint.
//!
//! Strings follow the session's [`SqlMode`]: backslash escapes unless `NO_BACKSLASH_ESCAPES`,
//! doubled quotes always; `"..."` is a string unless `ANSI_QUOTES`. Getting this wrong would
//! put statement boundaries in the wrong place, so the frontend passes the mode it tracks
//! (`SERVER_STATUS_NO_BACKSLASH_ESCAPES`, `sql_mode`).

use super::kind::{BackendName, Hint};

/// The parts of the session's `sql_mode` that change how statements are lexed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SqlMode {
    /// `NO_BACKSLASH_ESCAPES`: `\` is an ordinary character inside strings.
    pub no_backslash_escapes: bool,
    /// `ANSI_QUOTES`: `"..."` quotes an identifier, not a string.
    pub ansi_quotes: bool,
}

/// Token classes; the text is `src[start..end]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokKind {
    /// Unquoted identifier or keyword.
    Word,
    /// Back-quoted identifier (or double-quoted under `ANSI_QUOTES`).
    Ident,
    /// String, number, hex/bit literal, `N'..'`, `_charset'..'`.
    Literal,
    /// `?` placeholder.
    Param,
    /// `@name`, `@'name'`, `@"name"`, `` @`name` `` (may also be the host part of an account).
    UserVar,
    /// The host part of an account (`'u'@'h'`): never produced by the lexer; the cursor
    /// re-labels a [`TokKind::UserVar`] it recognises as a host, for the digest.
    Host,
    /// `@@name`, `@@scope.name`.
    SysVar,
    /// A multi-byte operator such as `:=`, `<=>`, `->>`.
    Op,
    /// Any other single byte.
    Punct,
    /// `;`.
    Semi,
}

/// One token: a byte range (`u32` keeps tokens small: statements are far below 4 GiB, and
/// longer input is refused as malformed), its first byte, and whether it touches the previous
/// token (no space or comment between).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Token {
    pub(crate) start: u32,
    pub(crate) end: u32,
    pub(crate) kind: TokKind,
    pub(crate) glued: bool,
    pub(crate) byte: u8,
}

/// A position as `u32`; only called on positions within a source of at most `u32::MAX` bytes.
fn pos32(p: usize) -> u32 {
    u32::try_from(p).unwrap_or(u32::MAX)
}

/// The lexer state: a position, whether it is inside an executable comment, and what the
/// leading comments said.
pub(crate) struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    mode: SqlMode,
    in_exec: bool,
    /// Set when a string, quoted identifier or comment is not terminated.
    pub(crate) malformed: bool,
    /// While true (no token yet in this statement), plain comments are checked for hints.
    pub(crate) scan_hints: bool,
    /// The first valid hint seen while `scan_hints` was true.
    pub(crate) hint: Option<Hint>,
    /// A comment looked like a hint (`rwsplit...`) but was not valid.
    pub(crate) bad_hint: bool,
}

const SPACE: u8 = 1;
const IDENT: u8 = 2;
/// Bytes that may start a comment (`#`, `-`, `/`) or end an executable one (`*`).
const COMMENTISH: u8 = 3;

/// Byte classes, so the hot loops do one table load per byte.
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
            SPACE
        } else if b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80 {
            IDENT
        } else if matches!(b, b'#' | b'-' | b'/' | b'*') {
            COMMENTISH
        } else {
            0
        };
        i += 1;
    }
    t
};

fn class(b: u8) -> u8 {
    CLASS.get(usize::from(b)).copied().unwrap_or(0)
}

fn is_space(b: u8) -> bool {
    class(b) == SPACE
}

fn is_ident(b: u8) -> bool {
    class(b) == IDENT
}

/// Charset introducers that may be separated from their string by spaces (`_binary 'x'`).
const INTRODUCERS: [&[u8]; 6] = [b"_binary", b"_utf8mb4", b"_utf8mb3", b"_utf8", b"_latin1", b"_ascii"];

impl<'a> Lexer<'a> {
    pub(crate) fn new(src: &'a [u8], mode: SqlMode) -> Self {
        let (src, malformed) = if u32::try_from(src.len()).is_ok() { (src, false) } else { (&[][..], true) };
        Self { src, pos: 0, mode, in_exec: false, malformed, scan_hints: true, hint: None, bad_hint: false }
    }

    fn at(&self, i: usize) -> Option<u8> {
        self.src.get(i).copied()
    }

    /// The next token, or `None` at the end of the input.
    #[inline(always)]
    pub(crate) fn next_token(&mut self) -> Option<Token> {
        let glued = self.skip_trivia();
        let start = self.pos;
        let Some(b) = self.at(start) else {
            if self.in_exec {
                self.malformed = true;
                self.in_exec = false;
            }
            return None;
        };
        self.scan_hints = false;
        let kind = match b {
            b'\'' => self.quoted(b'\'', !self.mode.no_backslash_escapes, TokKind::Literal),
            b'"' if self.mode.ansi_quotes => self.quoted(b'"', false, TokKind::Ident),
            b'"' => self.quoted(b'"', !self.mode.no_backslash_escapes, TokKind::Literal),
            b'`' => self.quoted(b'`', false, TokKind::Ident),
            b'0'..=b'9' => self.number(),
            b'?' => self.single(TokKind::Param),
            b'@' => self.variable(),
            b';' => self.single(TokKind::Semi),
            _ if is_ident(b) => self.word(),
            _ => self.operator(b),
        };
        Some(Token { start: pos32(start), end: pos32(self.pos), kind, glued, byte: b })
    }

    /// Skips whitespace and comments; returns true when nothing was skipped.
    fn skip_trivia(&mut self) -> bool {
        let mut glued = true;
        while let Some(b) = self.at(self.pos) {
            match class(b) {
                SPACE => {
                    self.pos += 1;
                    glued = false;
                    continue;
                }
                COMMENTISH => {}
                _ => return glued,
            }
            let next = self.at(self.pos + 1);
            match b {
                b'#' => self.line_comment(self.pos + 1),
                b'-' if next == Some(b'-') && self.at(self.pos + 2).is_none_or(|c| c <= b' ') => {
                    self.line_comment(self.pos + 2);
                }
                b'/' if next == Some(b'*') => self.block_comment(),
                b'*' if next == Some(b'/') && self.in_exec => {
                    self.in_exec = false;
                    self.pos += 2;
                }
                _ => return glued,
            }
            glued = false;
        }
        glued
    }

    fn line_comment(&mut self, body: usize) {
        let rest = self.src.get(body..).unwrap_or_default();
        let len = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        self.check_hint(rest.get(..len).unwrap_or_default());
        self.pos = body + len;
    }

    fn block_comment(&mut self) {
        let third = self.at(self.pos + 2);
        let exec_at = match (third, self.at(self.pos + 3)) {
            (Some(b'!'), _) => Some(self.pos + 3),
            (Some(b'M'), Some(b'!')) => Some(self.pos + 4),
            _ => None,
        };
        if let Some(mut p) = exec_at {
            // Version number: 5 digits (MySQL) or 6 (MySQL 8.0+, MariaDB).
            let mut digits = 0;
            while digits < 6 && self.at(p).is_some_and(|b| b.is_ascii_digit()) {
                p += 1;
                digits += 1;
            }
            self.in_exec = true;
            self.pos = p;
            return;
        }
        let body = self.pos + 2;
        let rest = self.src.get(body..).unwrap_or_default();
        match rest.windows(2).position(|w| w == b"*/") {
            Some(len) => {
                if third != Some(b'+') {
                    self.check_hint(rest.get(..len).unwrap_or_default());
                }
                self.pos = body + len + 2;
            }
            None => {
                self.malformed = true;
                self.pos = self.src.len();
            }
        }
    }

    fn check_hint(&mut self, body: &[u8]) {
        if !self.scan_hints {
            return;
        }
        match parse_hint(body) {
            HintParse::NotHint => {}
            HintParse::Invalid => self.bad_hint = true,
            HintParse::Hint(h) => {
                self.hint.get_or_insert(h);
            }
        }
    }

    fn single(&mut self, kind: TokKind) -> TokKind {
        self.pos += 1;
        kind
    }

    /// A quoted string or identifier starting at `self.pos`; doubled quotes always escape.
    fn quoted(&mut self, quote: u8, backslash: bool, kind: TokKind) -> TokKind {
        let escape = if backslash { b'\\' } else { quote };
        let mut p = self.pos + 1;
        loop {
            let rest = self.src.get(p..).unwrap_or_default();
            let Some(i) = find2(rest, quote, escape) else {
                self.malformed = true;
                p = self.src.len();
                break;
            };
            p += i;
            if self.at(p) != Some(quote) {
                p += 2; // backslash and the escaped byte
            } else if self.at(p + 1) == Some(quote) {
                p += 2;
            } else {
                p += 1;
                break;
            }
        }
        self.pos = p.min(self.src.len());
        kind
    }

    fn skip_while(&mut self, pred: impl Fn(u8) -> bool) {
        while self.at(self.pos).is_some_and(&pred) {
            self.pos += 1;
        }
    }

    fn number(&mut self) -> TokKind {
        let radix_digit = match (self.at(self.pos), self.at(self.pos + 1)) {
            (Some(b'0'), Some(b'x' | b'X')) => Some(u8::is_ascii_hexdigit as fn(&u8) -> bool),
            (Some(b'0'), Some(b'b' | b'B')) => Some((|b: &u8| matches!(b, b'0' | b'1')) as fn(&u8) -> bool),
            _ => None,
        };
        if let Some(digit) = radix_digit.filter(|d| self.at(self.pos + 2).is_some_and(|b| d(&b))) {
            self.pos += 2;
            self.skip_while(|b| digit(&b));
        } else {
            self.skip_while(|b| b.is_ascii_digit());
            if self.at(self.pos) == Some(b'.') {
                self.pos += 1;
                self.skip_while(|b| b.is_ascii_digit());
            }
            if matches!(self.at(self.pos), Some(b'e' | b'E')) {
                let sign = usize::from(matches!(self.at(self.pos + 1), Some(b'+' | b'-')));
                if self.at(self.pos + 1 + sign).is_some_and(|b| b.is_ascii_digit()) {
                    self.pos += 1 + sign;
                    self.skip_while(|b| b.is_ascii_digit());
                }
            }
        }
        if self.at(self.pos).is_some_and(is_ident) {
            // `1abc` and `0xZZ` are identifiers in MySQL.
            self.skip_while(is_ident);
            return TokKind::Word;
        }
        TokKind::Literal
    }

    fn word(&mut self) -> TokKind {
        let start = self.pos;
        self.skip_while(is_ident);
        let word = self.src.get(start..self.pos).unwrap_or_default();
        let next = self.at(self.pos);
        let string_quote = |q: Option<u8>, ansi: bool| q == Some(b'\'') || (q == Some(b'"') && !ansi);
        let ansi = self.mode.ansi_quotes;
        let prefix = matches!(word, [b'n' | b'N' | b'x' | b'X' | b'b' | b'B']) && next == Some(b'\'');
        let introducer = word.first() == Some(&b'_') && string_quote(next, ansi);
        if prefix || introducer {
            return self.literal_at(self.pos);
        }
        if word.first() == Some(&b'_') && INTRODUCERS.iter().any(|i| i.eq_ignore_ascii_case(word)) {
            let mut p = self.pos;
            while self.at(p).is_some_and(is_space) {
                p += 1;
            }
            if string_quote(self.at(p), ansi) {
                return self.literal_at(p);
            }
        }
        TokKind::Word
    }

    /// Lexes the string starting at `p` as the tail of the current literal token.
    fn literal_at(&mut self, p: usize) -> TokKind {
        self.pos = p;
        let quote = self.at(p).unwrap_or(b'\'');
        self.quoted(quote, !self.mode.no_backslash_escapes, TokKind::Literal)
    }

    fn variable(&mut self) -> TokKind {
        let (kind, mut p) = match self.at(self.pos + 1) {
            Some(b'@') => (TokKind::SysVar, self.pos + 2),
            _ => (TokKind::UserVar, self.pos + 1),
        };
        match self.at(p) {
            Some(q @ (b'\'' | b'"' | b'`')) => {
                self.pos = p;
                let backslash = q != b'`' && !self.mode.no_backslash_escapes;
                self.quoted(q, backslash, kind)
            }
            Some(b) if is_ident(b) || b == b'.' => {
                while self.at(p).is_some_and(|b| is_ident(b) || b == b'.') {
                    p += 1;
                }
                self.pos = p;
                kind
            }
            _ => {
                // `@@` without a name, or a lone `@` (`'u' @ 'h'` with spaces): the server
                // rejects the first and we cannot tell what the second is.
                self.malformed = true;
                self.pos = p;
                if kind == TokKind::SysVar {
                    kind
                } else {
                    TokKind::Punct
                }
            }
        }
    }

    fn operator(&mut self, b: u8) -> TokKind {
        let n1 = self.at(self.pos + 1);
        let n2 = self.at(self.pos + 2);
        let len = match (b, n1, n2) {
            (b'<', Some(b'='), Some(b'>')) | (b'-', Some(b'>'), Some(b'>')) => 3,
            (b':', Some(b'='), _)
            | (b'<', Some(b'=' | b'>' | b'<'), _)
            | (b'>', Some(b'=' | b'>'), _)
            | (b'!', Some(b'='), _)
            | (b'-', Some(b'>'), _)
            | (b'|', Some(b'|'), _)
            | (b'&', Some(b'&'), _) => 2,
            _ => return self.single(TokKind::Punct),
        };
        self.pos += len;
        TokKind::Op
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;

/// True when some byte of `v` is zero.
fn has_zero_byte(v: u64) -> bool {
    v.wrapping_sub(ONES) & !v & (ONES << 7) != 0
}

/// Index of the first byte equal to `a` or `b`, eight bytes at a time (long string literals
/// in INSERTs dominate lexing time otherwise).
fn find2(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    let (wa, wb) = (ONES * u64::from(a), ONES * u64::from(b));
    let mut i = 0;
    while let Some(chunk) = hay.get(i..i + 8) {
        let x = <[u8; 8]>::try_from(chunk).map_or(0, u64::from_le_bytes);
        if has_zero_byte(x ^ wa) || has_zero_byte(x ^ wb) {
            break;
        }
        i += 8;
    }
    let tail = hay.get(i..)?;
    tail.iter().position(|&c| c == a || c == b).map(|p| p + i)
}

/// Outcome of reading one comment body as a routing hint.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HintParse {
    /// The comment is not about rwsplit.
    NotHint,
    /// It starts with `rwsplit` but does not parse.
    Invalid,
    /// A valid hint.
    Hint(Hint),
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_space(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_space(b)).map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or_default()
}

/// Strips a case-insensitive `prefix` and the spaces after it.
fn strip<'s>(s: &'s [u8], prefix: &[u8]) -> Option<&'s [u8]> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| trim(s.get(prefix.len()..).unwrap_or_default()))
}

/// Parses `rwsplit:primary`, `rwsplit:replica` or `rwsplit:backend=NAME` (spaces allowed
/// around `:` and `=`, keywords case-insensitive), the whole comment body being the hint.
pub(crate) fn parse_hint(body: &[u8]) -> HintParse {
    let body = trim(body);
    let Some(after) = body.get(7..) else { return HintParse::NotHint };
    let named = body.get(..7).is_some_and(|p| p.eq_ignore_ascii_case(b"rwsplit"));
    if !named || after.first().is_some_and(|&b| !is_space(b) && b != b':') {
        return HintParse::NotHint;
    }
    let Some(rest) = strip(trim(after), b":") else { return HintParse::Invalid };
    let hint = if rest.eq_ignore_ascii_case(b"primary") {
        Some(Hint::Primary)
    } else if rest.eq_ignore_ascii_case(b"replica") {
        Some(Hint::Replica)
    } else {
        strip(rest, b"backend").and_then(|r| strip(r, b"=")).and_then(BackendName::new).map(Hint::Backend)
    };
    hint.map_or(HintParse::Invalid, HintParse::Hint)
}
