//! A small scanner over statement text for the few statements whose names matter to session
//! state (lock names, temporary tables, prepared names, handlers, sequences): words, back-quoted
//! names, string literals and punctuation, comments skipped. Never on the path of ordinary
//! statements; callers run it only for statements whose classification says they need it.

/// A function call seen in the text: its upper-cased name and its first argument when that is a
/// string literal alone.
pub(super) struct Call {
    pub(super) name: Vec<u8>,
    pub(super) first_literal: Option<Box<[u8]>>,
}

/// Tokens of a statement: words (identifiers, keywords, back-quoted names without their quotes),
/// string literals and single punctuation bytes. Comments are skipped.
pub(super) struct Words<'a> {
    pub(super) tokens: Vec<Token<'a>>,
}

#[derive(Clone, Copy)]
pub(super) enum Token<'a> {
    Word(&'a [u8]),
    Quoted(&'a [u8]),
    Literal(&'a [u8]),
    Punct(u8),
}

impl<'a> Words<'a> {
    pub(super) fn new(sql: &'a [u8]) -> Self {
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < sql.len() {
            let b = sql[i];
            if b.is_ascii_whitespace() {
                i += 1;
            } else if b == b'#' || (b == b'-' && sql.get(i + 1) == Some(&b'-')) {
                while i < sql.len() && sql[i] != b'\n' {
                    i += 1;
                }
            } else if b == b'/' && sql.get(i + 1) == Some(&b'*') && sql.get(i + 2) != Some(&b'!') {
                i += 2;
                while i + 1 < sql.len() && !(sql[i] == b'*' && sql[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            } else if matches!(b, b'\'' | b'"' | b'`') {
                let start = i + 1;
                i += 1;
                while i < sql.len() && sql[i] != b {
                    i += if sql[i] == b'\\' && b != b'`' { 2 } else { 1 };
                }
                let body = sql.get(start..i.min(sql.len())).unwrap_or_default();
                tokens.push(if b == b'`' { Token::Quoted(body) } else { Token::Literal(body) });
                i += 1;
            } else if b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80 {
                let start = i;
                while i < sql.len()
                    && (sql[i].is_ascii_alphanumeric() || matches!(sql[i], b'_' | b'$') || sql[i] >= 0x80)
                {
                    i += 1;
                }
                tokens.push(Token::Word(&sql[start..i]));
            } else {
                tokens.push(Token::Punct(b));
                i += 1;
            }
        }
        Self { tokens }
    }

    pub(super) fn is_word(token: Option<&Token<'_>>, word: &[u8]) -> bool {
        matches!(token, Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    pub(super) fn has(&self, word: &[u8]) -> bool {
        self.tokens.iter().any(|t| Self::is_word(Some(t), word))
    }

    pub(super) fn starts_with(&self, words: &[&[u8]]) -> bool {
        words.iter().enumerate().all(|(i, w)| Self::is_word(self.tokens.get(i), w))
    }

    pub(super) fn has_sequence(&self, words: &[&[u8]]) -> bool {
        (0..self.tokens.len())
            .any(|at| words.iter().enumerate().all(|(i, w)| Self::is_word(self.tokens.get(at + i), w)))
    }

    /// The identifier at token `at` (plain or back-quoted, the last part of `db.name`), lower-cased.
    pub(super) fn name_at(&self, at: usize) -> Option<Box<[u8]>> {
        let mut at = at;
        let mut name = None;
        loop {
            name = match self.tokens.get(at)? {
                Token::Word(w) | Token::Quoted(w) => Some(w.to_ascii_lowercase().into_boxed_slice()),
                _ => return name,
            };
            match self.tokens.get(at + 1) {
                Some(Token::Punct(b'.')) => at += 2,
                _ => return name,
            }
        }
    }

    /// The name after the first occurrence of `keywords` (skipping `IF [NOT] EXISTS`).
    pub(super) fn name_after(&self, keywords: &[&[u8]]) -> Option<Box<[u8]>> {
        let at = (0..self.tokens.len())
            .find(|&at| keywords.iter().enumerate().all(|(i, w)| Self::is_word(self.tokens.get(at + i), w)))?;
        let mut next = at + keywords.len();
        if Self::is_word(self.tokens.get(next), b"IF") {
            next += if Self::is_word(self.tokens.get(next + 1), b"NOT") { 3 } else { 2 };
        }
        self.name_at(next)
    }

    /// Every name of the comma-separated list after `keyword` (`DROP TABLE a, b`).
    pub(super) fn names_after(&self, keyword: &[u8]) -> Vec<Box<[u8]>> {
        let mut names = Vec::new();
        let Some(at) = self.tokens.iter().position(|t| Self::is_word(Some(t), keyword)) else { return names };
        let mut next = at + 1;
        if Self::is_word(self.tokens.get(next), b"IF") {
            next += 2;
        }
        while let Some(name) = self.name_at(next) {
            names.push(name);
            // Skip `db.` parts, then expect a comma.
            while matches!(self.tokens.get(next + 1), Some(Token::Punct(b'.'))) {
                next += 2;
            }
            if !matches!(self.tokens.get(next + 1), Some(Token::Punct(b','))) {
                break;
            }
            next += 2;
        }
        names
    }

    /// The `n`-th token as a name, when it is one.
    pub(super) fn nth_name(&self, n: usize) -> Option<Box<[u8]>> {
        match self.tokens.get(n)? {
            Token::Word(w) | Token::Quoted(w) => Some(w.to_ascii_lowercase().into_boxed_slice()),
            _ => None,
        }
    }

    /// Function calls: a word or back-quoted name followed by `(`.
    pub(super) fn calls(&self) -> impl Iterator<Item = Call> + '_ {
        self.tokens.windows(2).enumerate().filter_map(move |(at, pair)| {
            let name = match pair {
                [Token::Word(w) | Token::Quoted(w), Token::Punct(b'(')] => w.to_ascii_uppercase(),
                _ => return None,
            };
            let first_literal = match (self.tokens.get(at + 2), self.tokens.get(at + 3)) {
                (Some(Token::Literal(l)), Some(Token::Punct(b',' | b')'))) => Some(l.to_vec().into_boxed_slice()),
                _ => None,
            };
            Some(Call { name, first_literal })
        })
    }
}
