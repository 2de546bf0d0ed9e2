//! `LASTVAL(s)` / `PREVIOUS VALUE FOR s` per session. MariaDB keeps the last value a sequence
//! generated for each connection; with pooled connections that would be whichever session used
//! the connection last. After a statement that generates values (`NEXTVAL(s)`, `NEXT VALUE FOR s`,
//! `SETVAL(s, ..)`, `s.NEXTVAL`) the proxy asks the same connection for `LASTVAL` of those
//! sequences before it goes back (one extra round trip, only after such statements) and keeps
//! the values; the plain question `SELECT LASTVAL(s)` / `SELECT PREVIOUS VALUE FOR s` is then
//! answered with the server's column metadata and this session's value (NULL when the session
//! never generated one). Inside a transaction or a pin the held connection answers itself.
//! Other statements that read `LASTVAL` (inside expressions) run as they are: a known difference.

use std::collections::HashMap;
use std::time::Duration;

use bytes::BytesMut;

use super::sqltext::{Token, Words};
use crate::backend::{Error as BackendError, Lease};
use crate::classify::{Classified, Flags};

/// A sequence name as written (schema-qualified or not), without back-quotes.
type Name = Box<[u8]>;

/// The session's last generated value of each sequence it used.
#[derive(Debug, Default)]
pub(super) struct Sequences {
    last: HashMap<Name, Option<i64>>,
    /// Sequences the last statement generated values of, still to be read from its connection.
    pending: Vec<Name>,
}

impl Sequences {
    /// Takes note of a statement that completed (`ok`: without error).
    pub(super) fn record(&mut self, stmt: &Classified, sql: Option<&[u8]>, ok: bool) {
        if !ok || !stmt.flags.contains(Flags::SEQUENCE) {
            return;
        }
        if let Some(sql) = sql {
            for name in generated(&Words::new(sql)) {
                if !self.pending.contains(&name) {
                    self.pending.push(name);
                }
            }
        }
    }

    /// True when values are still only on the connection.
    pub(super) fn needs_fetch(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Reads `LASTVAL` of the pending sequences on `lease`, the connection that generated them.
    pub(super) async fn fetch(&mut self, lease: &mut Lease, timeout: Duration) -> Result<(), BackendError> {
        let names = std::mem::take(&mut self.pending);
        let mut sql = BytesMut::from(&b"\x03SELECT "[..]);
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                sql.extend_from_slice(b", ");
            }
            sql.extend_from_slice(b"LASTVAL(");
            for (j, part) in name.split(|b| *b == b'.').enumerate() {
                if j > 0 {
                    sql.extend_from_slice(b".");
                }
                sql.extend_from_slice(b"`");
                for &b in part {
                    sql.extend_from_slice(if b == b'`' { b"``" } else { std::slice::from_ref(&b) });
                }
                sql.extend_from_slice(b"`");
            }
            sql.extend_from_slice(b")");
        }
        let cells = super::previous::fetch_row(lease, &sql, timeout).await?;
        for (name, cell) in names.into_iter().zip(cells) {
            self.last.insert(name, cell);
        }
        Ok(())
    }

    /// The session's value for a plain `SELECT LASTVAL(s)` / `SELECT PREVIOUS VALUE FOR s`
    /// (`Some(None)`: SQL NULL), or `None` when `sql` is not such a question.
    pub(super) fn answer(&self, sql: &[u8]) -> Option<Option<i64>> {
        if sql.len() > 300 {
            return None;
        }
        let words = Words::new(sql);
        let tokens: Vec<Token<'_>> = match words.tokens.as_slice() {
            [rest @ .., Token::Punct(b';')] => rest.to_vec(),
            all => all.to_vec(),
        };
        if !Words::is_word(tokens.first(), b"SELECT") {
            return None;
        }
        let (name, used) =
            if Words::is_word(tokens.get(1), b"LASTVAL") && matches!(tokens.get(2), Some(Token::Punct(b'('))) {
                let (name, next) = qualified(&tokens, 3)?;
                matches!(tokens.get(next), Some(Token::Punct(b')'))).then_some((name, next + 1))?
            } else if Words::is_word(tokens.get(1), b"PREVIOUS")
                && Words::is_word(tokens.get(2), b"VALUE")
                && Words::is_word(tokens.get(3), b"FOR")
            {
                qualified(&tokens, 4)?
            } else {
                return None;
            };
        // Nothing else but an optional alias.
        let alias_ok = match &tokens[used..] {
            [] => true,
            [Token::Word(_) | Token::Quoted(_)] => true,
            [as_, Token::Word(_) | Token::Quoted(_)] => Words::is_word(Some(as_), b"AS"),
            _ => false,
        };
        alias_ok.then(|| self.last.get(&name).copied().flatten())
    }

    /// Forgets everything (reset, change user).
    pub(super) fn clear(&mut self) {
        *self = Self::default();
    }

    /// The connection that held pending values is gone.
    pub(super) fn connection_lost(&mut self) {
        self.pending.clear();
    }
}

/// A possibly schema-qualified name starting at token `at`: the name and the next position.
fn qualified(tokens: &[Token<'_>], at: usize) -> Option<(Name, usize)> {
    let mut name = Vec::new();
    let mut at = at;
    loop {
        match tokens.get(at)? {
            Token::Word(w) | Token::Quoted(w) => name.extend_from_slice(w),
            _ => return None,
        }
        if matches!(tokens.get(at + 1), Some(Token::Punct(b'.')))
            && matches!(tokens.get(at + 2), Some(Token::Word(_) | Token::Quoted(_)))
            && !matches!(tokens.get(at + 2), Some(Token::Word(w)) if is_pseudo_column(w))
        {
            name.push(b'.');
            at += 2;
        } else {
            return Some((name.into_boxed_slice(), at + 1));
        }
    }
}

fn is_pseudo_column(word: &[u8]) -> bool {
    word.eq_ignore_ascii_case(b"NEXTVAL") || word.eq_ignore_ascii_case(b"CURRVAL")
}

/// Sequences a statement generates values of.
fn generated(words: &Words<'_>) -> Vec<Name> {
    let tokens = &words.tokens;
    let mut names = Vec::new();
    for at in 0..tokens.len() {
        let word = |i: usize, w: &[u8]| Words::is_word(tokens.get(i), w);
        let call = matches!(tokens.get(at + 1), Some(Token::Punct(b'(')));
        let found = if (word(at, b"NEXTVAL") || word(at, b"SETVAL")) && call {
            qualified(tokens, at + 2).map(|(n, _)| n)
        } else if word(at, b"NEXT") && word(at + 1, b"VALUE") && word(at + 2, b"FOR") {
            qualified(tokens, at + 3).map(|(n, _)| n)
        } else if word(at, b"NEXTVAL") && at >= 2 && matches!(tokens.get(at - 1), Some(Token::Punct(b'.'))) {
            // `s.NEXTVAL` (or `db.s.NEXTVAL`): the name ends before the dot.
            let mut start = at - 2;
            while start >= 2
                && matches!(tokens.get(start - 1), Some(Token::Punct(b'.')))
                && matches!(tokens.get(start - 2), Some(Token::Word(_) | Token::Quoted(_)))
            {
                start -= 2;
            }
            qualified(tokens, start).map(|(n, _)| n)
        } else {
            None
        };
        if let Some(name) = found {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sql: &str) -> Vec<String> {
        generated(&Words::new(sql.as_bytes())).iter().map(|n| String::from_utf8_lossy(n).into_owned()).collect()
    }

    #[test]
    fn generating_statements_name_their_sequences() {
        assert_eq!(names("SELECT NEXTVAL(s), nextval(`db`.`s2`), NEXTVAL(s)"), ["s", "db.s2"]);
        assert_eq!(names("INSERT INTO t VALUES (NEXT VALUE FOR s3, 1)"), ["s3"]);
        assert_eq!(names("SELECT SETVAL(s4, 100)"), ["s4"]);
        assert_eq!(names("SELECT db.s5.nextval"), ["db.s5"]);
        assert!(names("SELECT LASTVAL(s)").is_empty());
    }

    #[test]
    fn plain_questions_are_answered_from_the_sessions_values() {
        let mut seq = Sequences::default();
        seq.last.insert(b"s".to_vec().into_boxed_slice(), Some(7));
        assert_eq!(seq.answer(b"SELECT LASTVAL(s)"), Some(Some(7)));
        assert_eq!(seq.answer(b"select previous value for `s` AS v;"), Some(Some(7)));
        assert_eq!(seq.answer(b"SELECT LASTVAL(other)"), Some(None), "never generated here: NULL");
        assert_eq!(seq.answer(b"SELECT LASTVAL(s) + 1"), None);
        assert_eq!(seq.answer(b"SELECT NEXTVAL(s)"), None);
    }
}
