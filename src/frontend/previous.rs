//! What a session's previous statement left behind, kept by the proxy so that no backend
//! connection is held while the client is idle: its warnings and errors (the server's diagnostics
//! area), `ROW_COUNT()` and `FOUND_ROWS()`. (`LAST_INSERT_ID()`, `@@identity` and
//! `@@last_insert_id` travel with the session state and are set on the connection by the state
//! sync; see `backend::State`.)
//!
//! Design. A statement that ends with warnings or an error leaves its conditions in the
//! diagnostics area of the connection it ran on. Before that connection goes back to the pool the
//! proxy runs `SHOW WARNINGS` on it (one extra round trip, only after such statements, or after a
//! transaction or pin that had them ends) and keeps the response. A statement that opens a table
//! clears the area; a table-less one (`SELECT 1`, `DO`, `SET`, `BEGIN`, `USE`, the diagnostics
//! statements themselves) leaves it as it was, exactly as MariaDB does. A question about the
//! diagnostics (`SHOW WARNINGS|ERRORS`, `SHOW COUNT(*) ...`, `@@warning_count`, `@@error_count`,
//! `GET DIAGNOSTICS`) then sees this session's conditions and never another session's:
//! * plain `SHOW WARNINGS` is answered from the kept response (the server's own bytes);
//! * any other form runs on a connection after a statement that puts this session's conditions in
//!   its diagnostics area: one that clears it when there were none, or a `SIGNAL` of the single
//!   warning or error there was. With several conditions (or a note) only the last one can be
//!   raised again this way: README "Multiplexing" lists that as a known difference.
//!
//! `ROW_COUNT()` and `FOUND_ROWS()` are recorded from each response (affected rows of the OK,
//! -1 after a result set or an error, the rows of the last result, and after
//! `SQL_CALC_FOUND_ROWS` the server's `FOUND_ROWS()` fetched on the same connection); the plain
//! questions `SELECT ROW_COUNT()` / `SELECT FOUND_ROWS()` are answered with the server's column
//! metadata and this session's value.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::session::ClientIo;
use crate::backend::{Error as BackendError, Lease};
use crate::classify::{Classified, Flags, Kind};
use crate::protocol::packet::FrameReader;
use crate::protocol::response::{Expect, Framing, Outcome, Step, Tracker};
use crate::protocol::wire::{put_lenenc_bytes, Reader};
use crate::protocol::{command, Error as WireError};

/// Framing of the proxy's own backend connections.
const BACKEND_FRAMING: Framing = Framing { deprecate_eof: true, session_track: true, ps_multi_results: true };

/// A statement that opens a table, has no result and no cost: it clears the diagnostics area.
const CLEAR: &[u8] = b"\x03DO (SELECT 1 FROM information_schema.CHARACTER_SETS LIMIT 0)";

/// Where this session's diagnostics are.
#[derive(Debug, Clone, Default)]
enum Diagnostics {
    /// None: the last statement that touched the area cleared it (or the session is new).
    #[default]
    Empty,
    /// In the diagnostics area of the connection the last statement ran on, still in hand.
    OnConnection,
    /// Fetched before that connection went back to its pool.
    Kept(Kept),
}

#[derive(Debug, Clone)]
struct Kept {
    /// The `SHOW WARNINGS` response as the server sent it (frames from sequence id 1).
    response: Bytes,
    /// Its rows.
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Condition {
    level: Bytes,
    code: u16,
    message: Bytes,
}

/// What the session's previous statements left behind.
#[derive(Debug, Default)]
pub(super) struct Previous {
    diagnostics: Diagnostics,
    /// `ROW_COUNT()`.
    row_count: i64,
    /// `FOUND_ROWS()`, once known.
    found_rows: u64,
    /// The last statement had `SQL_CALC_FOUND_ROWS`: the count is on its connection.
    found_rows_pending: bool,
}

/// A value a question about the previous statement asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Value {
    /// `ROW_COUNT()`.
    RowCount,
    /// `FOUND_ROWS()`.
    FoundRows,
    /// `@@warning_count`, `SHOW COUNT(*) WARNINGS`.
    WarningCount,
    /// `@@error_count`, `SHOW COUNT(*) ERRORS`.
    ErrorCount,
}

impl Previous {
    /// Takes note of a complete response to `stmt` (its SQL text when it was a query).
    pub(super) fn record(&mut self, stmt: &Classified, sql: Option<&[u8]>, outcome: &Outcome) {
        let question = stmt.flags.contains(Flags::WARNINGS_QUERY);
        if outcome.error.is_some() || (outcome.warnings > 0 && !question) {
            self.diagnostics = Diagnostics::OnConnection;
        } else if !question && !matches!(self.diagnostics, Diagnostics::Empty) && opens_a_table(stmt, sql) {
            self.diagnostics = Diagnostics::Empty;
        }
        self.row_count = if outcome.error.is_some() || outcome.result_set {
            -1
        } else if matches!(stmt.kind, Kind::Insert | Kind::Update | Kind::Delete | Kind::Replace | Kind::Load) {
            i64::try_from(outcome.affected_rows).unwrap_or(i64::MAX)
        } else {
            0
        };
        self.found_rows_pending = stmt.flags.contains(Flags::CALC_FOUND_ROWS) && outcome.error.is_none();
        if outcome.result_set && !self.found_rows_pending {
            self.found_rows = outcome.last_result_rows;
        }
    }

    /// True when something must be fetched from the connection before it goes back.
    pub(super) fn needs_fetch(&self) -> bool {
        matches!(self.diagnostics, Diagnostics::OnConnection) || self.found_rows_pending
    }

    /// Fetches what is still only on `lease` (the connection the last statement ran on, about
    /// to go back to its pool).
    pub(super) async fn fetch(&mut self, lease: &mut Lease, timeout: Duration) -> Result<(), BackendError> {
        if self.found_rows_pending {
            // Table-less, so it leaves the diagnostics area alone.
            let response = capture(lease, b"\x03SELECT FOUND_ROWS()", timeout).await?;
            self.found_rows = first_value(&response).unwrap_or(0);
            self.found_rows_pending = false;
        }
        if matches!(self.diagnostics, Diagnostics::OnConnection) {
            let response = capture(lease, b"\x03SHOW WARNINGS", timeout).await?;
            let conditions = conditions(&response);
            self.diagnostics = Diagnostics::Kept(Kept { response, conditions });
        }
        Ok(())
    }

    /// The connection the diagnostics were on is gone: a new connection starts with none.
    pub(super) fn connection_lost(&mut self) {
        if matches!(self.diagnostics, Diagnostics::OnConnection) {
            self.diagnostics = Diagnostics::Empty;
        }
        self.found_rows_pending = false;
    }

    /// The answer to `SHOW WARNINGS` or `SHOW ERRORS` (exactly those) from the kept response.
    pub(super) fn kept_answer(&self, sql: &[u8]) -> Option<Bytes> {
        let Diagnostics::Kept(kept) = &self.diagnostics else { return None };
        if is_exactly(sql, &[b"SHOW", b"WARNINGS"]) {
            return Some(kept.response.clone());
        }
        if !is_exactly(sql, &[b"SHOW", b"ERRORS"]) {
            return None;
        }
        // Same columns as SHOW WARNINGS; only the rows at level Error.
        let mut out = BytesMut::with_capacity(kept.response.len());
        let mut seq = 1u8;
        let mut columns = None;
        for (index, payload) in payloads(&kept.response).enumerate() {
            let keep = match columns {
                None => {
                    columns = Reader::new(payload, "column count").lenenc_int().ok();
                    true
                }
                Some(n) if (index as u64) <= n => true,
                Some(_) if payload.first() == Some(&0xFE) => true,
                Some(_) => Reader::new(payload, "row").lenenc_bytes().is_ok_and(|l| l.eq_ignore_ascii_case(b"Error")),
            };
            if keep {
                seq = crate::protocol::packet::put_packet(&mut out, seq, payload);
            }
        }
        Some(out.freeze())
    }

    /// The statement (a `COM_QUERY` payload) to run before a diagnostics question on a connection
    /// other than the one the conditions are on, so that the server answers with this session's.
    pub(super) fn restore(&self) -> Option<Bytes> {
        match &self.diagnostics {
            Diagnostics::OnConnection => None,
            Diagnostics::Empty => Some(Bytes::from_static(CLEAR)),
            Diagnostics::Kept(kept) => match kept.conditions.last() {
                None => Some(Bytes::from_static(CLEAR)),
                Some(last) => Some(signal(last)),
            },
        }
    }

    /// The session's values for a recognised question, or `None` when the question must run as
    /// it is (the diagnostics are on the held connection, or there are none to substitute).
    pub(super) fn values(&self, question: &[Value], held: bool) -> Option<Vec<Option<i64>>> {
        let kept = match &self.diagnostics {
            Diagnostics::Kept(kept) => Some(kept),
            _ => None,
        };
        question
            .iter()
            .map(|value| match value {
                Value::RowCount | Value::FoundRows if held => None,
                Value::RowCount => Some(Some(self.row_count)),
                Value::FoundRows => Some(Some(i64::try_from(self.found_rows).unwrap_or(i64::MAX))),
                Value::WarningCount => kept.map(|k| Some(k.conditions.len() as i64)),
                Value::ErrorCount => kept.map(|k| {
                    Some(k.conditions.iter().filter(|c| c.level.eq_ignore_ascii_case(b"Error")).count() as i64)
                }),
            })
            .collect()
    }
}

/// The values a plain question asks for, in column order: `SELECT` of a list of `ROW_COUNT()`,
/// `FOUND_ROWS()`, `@@[session.]warning_count`, `@@[session.]error_count` (a single item may
/// carry an alias), or `SHOW COUNT(*) WARNINGS|ERRORS`. Anything else: `None`.
pub(super) fn value_question(sql: &[u8]) -> Option<Vec<Value>> {
    let words = words(sql)?;
    let (first, rest) = words.split_first()?;
    if first.eq_ignore_ascii_case(b"SHOW") {
        return match rest {
            [count, what] if count.eq_ignore_ascii_case(b"COUNT(*)") => {
                if what.eq_ignore_ascii_case(b"WARNINGS") {
                    Some(vec![Value::WarningCount])
                } else if what.eq_ignore_ascii_case(b"ERRORS") {
                    Some(vec![Value::ErrorCount])
                } else {
                    None
                }
            }
            _ => None,
        };
    }
    if !first.eq_ignore_ascii_case(b"SELECT") {
        return None;
    }
    let item = |word: &[u8]| -> Option<Value> {
        let word = word.to_ascii_lowercase();
        let var = word.strip_prefix(b"@@session.").or_else(|| word.strip_prefix(b"@@"));
        match (var, &word[..]) {
            (Some(b"warning_count"), _) => Some(Value::WarningCount),
            (Some(b"error_count"), _) => Some(Value::ErrorCount),
            (None, b"row_count()") => Some(Value::RowCount),
            (None, b"found_rows()") => Some(Value::FoundRows),
            _ => None,
        }
    };
    match rest {
        [one] if !one.contains(&b',') => Some(vec![item(one)?]),
        [one, alias] if is_plain_name(alias) => Some(vec![item(one)?]),
        [one, as_, alias] if as_.eq_ignore_ascii_case(b"AS") && is_plain_name(alias) => Some(vec![item(one)?]),
        _ => {
            let list = rest.concat();
            list.split(|b| *b == b',').map(item).collect()
        }
    }
}

fn is_plain_name(word: &[u8]) -> bool {
    word.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_') || (word.len() > 2 && word.starts_with(b"`"))
}

/// Whitespace-separated words of a short statement without a trailing `;`, with `( )` kept glued
/// (`ROW_COUNT ( )` becomes `ROW_COUNT()`); `None` for anything with comments or quotes but
/// back-quoted names.
fn words(sql: &[u8]) -> Option<Vec<Vec<u8>>> {
    if sql.len() > 200 || sql.iter().any(|b| matches!(b, b'\'' | b'"' | b'#' | b'/' | b'-')) {
        return None;
    }
    let trimmed = sql.trim_ascii();
    let trimmed = trimmed.strip_suffix(b";").unwrap_or(trimmed).trim_ascii();
    let mut out: Vec<Vec<u8>> = Vec::new();
    for word in trimmed.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()) {
        match out.last_mut() {
            Some(last) if word.starts_with(b"(") || last.ends_with(b"(") => last.extend_from_slice(word),
            _ => out.push(word.to_vec()),
        }
    }
    Some(out)
}

fn is_exactly(sql: &[u8], wanted: &[&[u8]]) -> bool {
    words(sql).is_some_and(|w| w.len() == wanted.len() && w.iter().zip(wanted).all(|(a, b)| a.eq_ignore_ascii_case(b)))
}

/// A `SIGNAL` that raises `condition` again (warnings as SQLSTATE '01000', errors as 'HY000').
fn signal(condition: &Condition) -> Bytes {
    let mut sql = BytesMut::new();
    sql.extend_from_slice(b"\x03SIGNAL SQLSTATE '");
    sql.extend_from_slice(if condition.level.eq_ignore_ascii_case(b"Error") { b"HY000" } else { b"01000" });
    sql.extend_from_slice(format!("' SET MYSQL_ERRNO = {}, MESSAGE_TEXT = '", condition.code.max(1)).as_bytes());
    for &b in condition.message.iter() {
        match b {
            b'\'' => sql.extend_from_slice(b"''"),
            b'\\' => sql.extend_from_slice(b"\\\\"),
            0 => sql.extend_from_slice(b"\\0"),
            _ => sql.extend_from_slice(&[b]),
        }
    }
    sql.extend_from_slice(b"'");
    sql.freeze()
}

/// Whether a statement without warnings clears the diagnostics area: MariaDB clears it for
/// every statement that opens a table. Table-less ones leave it.
fn opens_a_table(stmt: &Classified, sql: Option<&[u8]>) -> bool {
    match stmt.kind {
        Kind::Set(_)
        | Kind::Use
        | Kind::Begin { .. }
        | Kind::Commit { .. }
        | Kind::Rollback { .. }
        | Kind::Savepoint
        | Kind::ReleaseSavepoint
        | Kind::RollbackToSavepoint
        | Kind::Empty => false,
        Kind::Select | Kind::Explain { .. } => sql.is_none_or(has_from_table),
        Kind::Do => sql.is_some_and(has_from_table),
        _ => true,
    }
}

/// True when `FROM` (outside quotes) is followed by something other than `DUAL`.
pub(super) fn has_from_table(sql: &[u8]) -> bool {
    let mut i = 0;
    while i < sql.len() {
        match sql[i] {
            quote @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < sql.len() && sql[i] != quote {
                    i += if sql[i] == b'\\' && quote != b'`' { 2 } else { 1 };
                }
                i += 1;
            }
            b if b.is_ascii_alphabetic() || b == b'_' => {
                let start = i;
                while i < sql.len() && (sql[i].is_ascii_alphanumeric() || sql[i] == b'_' || sql[i] == b'$') {
                    i += 1;
                }
                if sql[start..i].eq_ignore_ascii_case(b"FROM") {
                    let rest = sql[i..].trim_ascii_start();
                    let dual = rest.len() >= 4
                        && rest[..4].eq_ignore_ascii_case(b"DUAL")
                        && rest.get(4).is_none_or(|b| !b.is_ascii_alphanumeric() && *b != b'_');
                    if !dual {
                        return true;
                    }
                }
            }
            _ => i += 1,
        }
    }
    false
}

/// Runs `payload` on `lease` and returns its whole response as wire frames (sequence ids from 1).
async fn capture(lease: &mut Lease, payload: &[u8], timeout: Duration) -> Result<Bytes, BackendError> {
    lease.send(payload, timeout).await?;
    let mut tracker = Tracker::new(Expect::Results, BACKEND_FRAMING, 0, 0);
    let mut out = BytesMut::new();
    loop {
        let Some(frame) = lease.buffered_frame() else {
            lease.fill(timeout).await?;
            continue;
        };
        match tracker.feed(frame, &mut out)? {
            Step::More => {}
            Step::Done(_) => return Ok(out.freeze()),
            Step::LocalInfile => return Err(WireError::malformed("LOCAL INFILE in a proxy query").into()),
        }
    }
}

/// The payloads of the frames in `response` (small responses: no continuation frames).
fn payloads(response: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = response;
    std::iter::from_fn(move || {
        let header = rest.get(..4)?;
        let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
        let payload = rest.get(4..4 + len)?;
        rest = &rest[4 + len..];
        Some(payload)
    })
}

/// The rows of a text result set: (column count, rows), skipping the definitions.
fn rows(response: &[u8]) -> Vec<&[u8]> {
    let mut packets = payloads(response);
    let columns = packets.next().and_then(|p| Reader::new(p, "column count").lenenc_int().ok()).unwrap_or(0);
    packets
        .skip(usize::try_from(columns).unwrap_or(usize::MAX))
        .take_while(|p| !(p.first() == Some(&0xFE) && p.len() < 0xFF_FFFF) && p.first() != Some(&0xFF))
        .collect()
}

fn conditions(response: &[u8]) -> Vec<Condition> {
    rows(response)
        .into_iter()
        .filter_map(|row| {
            let mut r = Reader::new(row, "SHOW WARNINGS row");
            let level = Bytes::copy_from_slice(r.lenenc_bytes().ok()?);
            let code = std::str::from_utf8(r.lenenc_bytes().ok()?).ok()?.parse().ok()?;
            let message = Bytes::copy_from_slice(r.lenenc_bytes().ok()?);
            Some(Condition { level, code, message })
        })
        .collect()
}

/// Runs a one-row query on `lease` and returns its cells as integers (`None`: NULL or not a
/// number).
pub(super) async fn fetch_row(
    lease: &mut Lease,
    payload: &[u8],
    timeout: Duration,
) -> Result<Vec<Option<i64>>, BackendError> {
    let response = capture(lease, payload, timeout).await?;
    let Some(row) = rows(&response).first().copied() else { return Ok(Vec::new()) };
    let mut r = Reader::new(row, "row");
    let mut cells = Vec::new();
    while !r.is_empty() {
        if r.remaining().first() == Some(&0xFB) {
            r.u8().map_err(BackendError::from)?;
            cells.push(None);
        } else {
            let text = r.lenenc_bytes().map_err(BackendError::from)?;
            cells.push(std::str::from_utf8(text).ok().and_then(|t| t.parse().ok()));
        }
    }
    Ok(cells)
}

fn first_value(response: &[u8]) -> Option<u64> {
    let row = *rows(response).first()?;
    std::str::from_utf8(Reader::new(row, "row").lenenc_bytes().ok()?).ok()?.parse().ok()
}

/// Sends a kept response to the client as the answer to its command of sequence id `seq`.
pub(super) async fn replay(
    io: &mut ClientIo,
    response: &Bytes,
    framing: Framing,
    seq: u8,
    status: u16,
    timeout: Duration,
) -> Result<Outcome, WireError> {
    let mut tracker = Tracker::new(Expect::Results, framing, seq, status);
    let mut reader = FrameReader::new();
    let mut source: &[u8] = response;
    loop {
        let frame = reader.next(&mut source, timeout).await?;
        match tracker.feed(frame, &mut io.out)? {
            Step::More => {}
            Step::Done(outcome) => {
                io.flush(timeout).await?;
                return Ok(outcome);
            }
            Step::LocalInfile => return Err(WireError::malformed("kept response")),
        }
    }
}

/// Runs a recognised value question on `lease` and relays the server's answer with the single
/// row's cells replaced by `values`: the column metadata, status and framing are the server's.
pub(super) async fn answer_value(
    lease: &mut Lease,
    io: &mut ClientIo,
    tracker: &mut Tracker,
    payload: &[u8],
    values: &[Option<i64>],
    status: u16,
    timeout: Duration,
) -> Result<Outcome, BackendError> {
    let response = capture(lease, payload, timeout).await?;
    let mut rewritten = BytesMut::with_capacity(response.len() + 8);
    let mut seen_columns = None;
    let mut index = 0usize;
    for payload in payloads(&response) {
        let is_row = match seen_columns {
            None => {
                seen_columns = Reader::new(payload, "column count").lenenc_int().ok();
                false
            }
            Some(columns) => {
                index > usize::try_from(columns).unwrap_or(usize::MAX)
                    && !(payload.first() == Some(&0xFE) || payload.first() == Some(&0xFF))
            }
        };
        index += 1;
        let seq = u8::try_from(index & 0xFF).unwrap_or(0);
        if is_row {
            let mut row = BytesMut::new();
            for value in values {
                match value {
                    Some(value) => put_lenenc_bytes(&mut row, value.to_string().as_bytes()),
                    None => row.extend_from_slice(&[0xFB]),
                }
            }
            crate::protocol::packet::put_packet(&mut rewritten, seq, &row);
        } else {
            crate::protocol::packet::put_packet(&mut rewritten, seq, payload);
        }
    }
    let framing = tracker.framing();
    let seq = tracker.next_seq().wrapping_sub(1);
    Ok(replay(io, &rewritten.freeze(), framing, seq, status, timeout).await?)
}

/// True when `payload` is a `COM_QUERY`.
pub(super) fn query_text(payload: &[u8]) -> Option<&[u8]> {
    (payload.first() == Some(&command::QUERY)).then(|| payload.get(1..)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::lex;

    #[test]
    fn table_less_statements_keep_the_diagnostics_and_table_reads_clear_them() {
        for sql in ["SELECT 1", "SELECT NOW() FROM dual", "DO 1", "SET @a = 1", "BEGIN", "USE x", "SELECT 'from t'"] {
            assert!(!opens_a_table(&lex(sql.as_bytes()), Some(sql.as_bytes())), "{sql}");
        }
        for sql in [
            "SELECT COUNT(*) FROM t",
            "select * from (select 1) d",
            "SHOW VARIABLES LIKE 'x'",
            "INSERT INTO t VALUES (1)",
            "DO (SELECT 1 FROM information_schema.CHARACTER_SETS LIMIT 0)",
        ] {
            assert!(opens_a_table(&lex(sql.as_bytes()), Some(sql.as_bytes())), "{sql}");
        }
    }

    #[test]
    fn value_questions_are_recognised_only_in_their_plain_forms() {
        use Value::*;
        assert_eq!(value_question(b"SELECT ROW_COUNT()"), Some(vec![RowCount]));
        assert_eq!(value_question(b" select found_rows ( ) ; "), Some(vec![FoundRows]));
        assert_eq!(value_question(b"SELECT ROW_COUNT() AS n"), Some(vec![RowCount]));
        assert_eq!(
            value_question(b"SELECT @@warning_count, @@session.error_count"),
            Some(vec![WarningCount, ErrorCount])
        );
        assert_eq!(value_question(b"show count(*) errors"), Some(vec![ErrorCount]));
        assert_eq!(value_question(b"SELECT ROW_COUNT(), 1"), None);
        assert_eq!(value_question(b"SELECT ROW_COUNT() FROM t"), None);
        assert_eq!(value_question(b"SELECT /* x */ ROW_COUNT()"), None);
        assert!(is_exactly(b"show  warnings;", &[b"SHOW", b"WARNINGS"]));
        assert!(!is_exactly(b"SHOW WARNINGS LIMIT 1", &[b"SHOW", b"WARNINGS"]));
    }

    #[test]
    fn a_condition_is_raised_again_with_its_code_and_quoted_message() {
        let c = Condition { level: Bytes::from_static(b"Warning"), code: 1062, message: Bytes::from_static(b"it's") };
        assert_eq!(&signal(&c)[1..], b"SIGNAL SQLSTATE '01000' SET MYSQL_ERRNO = 1062, MESSAGE_TEXT = 'it''s'");
    }
}
