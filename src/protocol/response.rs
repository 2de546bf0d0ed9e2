//! The response boundary tracker: finds where a backend's response to one command ends, without
//! decoding rows, and re-frames it for the client.
//!
//! Backend connections always negotiate `CLIENT_DEPRECATE_EOF` and `CLIENT_SESSION_TRACK`. The
//! tracker forwards every frame with a renumbered sequence id and rewrites only terminators:
//! - a client without `DEPRECATE_EOF` gets an EOF packet after the column definitions and an EOF
//!   instead of the OK that ends the rows;
//! - a client without `SESSION_TRACK` gets OK packets in the pre-4.1-tracking layout;
//! - a client without `PS_MULTI_RESULTS` does not get the OUT-parameter result set of a `CALL`
//!   (the server does not send it to such a client).
//!
//! For the first two rewrites a result set's start is held back until its terminator (see
//! [`hold`]), so the EOF the proxy inserts carries the server's flags.
//!
//! Rows, column definitions and ERR packets pass byte for byte. A row of 16 MiB or more spans
//! several frames; continuation frames are forwarded without being looked at.

use bytes::{BufMut, Bytes, BytesMut};

use super::okerr::{self, encode_eof, has_more_results, Ok, EOF_HEADER, ERR_HEADER, LOCAL_INFILE_HEADER, OK_HEADER};
use super::packet::{Frame, HEADER_LEN};
use super::wire::Reader;
use super::{Error, Result, MAX_FRAME_PAYLOAD};

/// What the client negotiated, as far as response framing is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// The client set `CLIENT_DEPRECATE_EOF`.
    pub deprecate_eof: bool,
    /// The client set `CLIENT_SESSION_TRACK`.
    pub session_track: bool,
    /// The client set `CLIENT_PS_MULTI_RESULTS` (it may receive OUT parameters of a `CALL`).
    pub ps_multi_results: bool,
}

/// The shape of response a command can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// OK or ERR only (`COM_PING`, `COM_INIT_DB`, ...).
    OkOrErr,
    /// OK, ERR, `LOCAL INFILE` request or result sets, possibly several (`COM_QUERY`,
    /// `COM_STMT_EXECUTE`).
    Results,
    /// Rows of an open cursor and a terminator, or ERR (`COM_STMT_FETCH`).
    Rows,
    /// Column definitions and a terminator, or ERR (`COM_FIELD_LIST`).
    Definitions,
    /// Exactly one packet of any kind (`COM_STATISTICS`).
    Single,
}

/// What the caller must do after feeding a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The response continues: feed the next frame.
    More,
    /// The server asked for a local file: relay the client's file packets to the backend, then
    /// keep feeding the backend's frames.
    LocalInfile,
    /// The response is complete.
    Done(Outcome),
}

/// `SERVER_STATUS_CURSOR_EXISTS`: a cursor was opened; rows come with `COM_STMT_FETCH`.
pub const CURSOR_EXISTS: u16 = 0x0040;

/// Parses a terminator in either form: the OK that replaces EOF under `DEPRECATE_EOF`, or a
/// classic 5-byte EOF (some commands, e.g. `COM_FIELD_LIST` on some servers, still send it).
fn terminator(payload: &[u8]) -> Result<Ok<'_>> {
    match okerr::eof_status(payload) {
        Some(status) => {
            let warnings = u16::from_le_bytes([payload[1], payload[2]]);
            Ok(Ok {
                header: EOF_HEADER,
                affected_rows: 0,
                last_insert_id: 0,
                status,
                warnings,
                info: &[],
                session_state: &[],
            })
        }
        None => Ok::parse(payload),
    }
}

/// Summary of a complete response, taken from its last OK/EOF/ERR.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Status flags of the last OK/terminator (unchanged by an ERR).
    pub status: u16,
    /// Rows changed (last OK).
    pub affected_rows: u64,
    /// Last insert id (last OK).
    pub last_insert_id: u64,
    /// Warnings of the last OK or terminator.
    pub warnings: u16,
    /// Rows forwarded over all result sets.
    pub rows: u64,
    /// Rows of the last result set.
    pub last_result_rows: u64,
    /// The response had a result set (as opposed to only OK/ERR).
    pub result_set: bool,
    /// The error code if the response ended with an ERR packet.
    pub error: Option<u16>,
    /// Session-state information of every OK in the response, concatenated.
    pub session_state: Option<Bytes>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting the first packet of a result: OK, ERR, LOCAL INFILE or a column count.
    First,
    /// Expecting this many more column definitions.
    Columns(u64),
    /// Expecting rows or the terminator; `eof_due` when a client without `DEPRECATE_EOF` still
    /// needs the EOF that ends the column definitions (sent once the next packet shows whether
    /// the result is a cursor).
    Rows {
        /// An EOF after the column definitions is still owed to the client.
        eof_due: bool,
    },
    /// Expecting `COM_FIELD_LIST` definitions or their terminator.
    Definitions,
    /// The response has ended; nothing more may arrive.
    Finished,
}

/// Tracks one response from a backend. Create one per command.
#[derive(Debug)]
pub struct Tracker {
    expect: Expect,
    framing: Framing,
    state: State,
    continuation: bool,
    seq: u8,
    backend_seq: u8,
    outcome: Outcome,
    /// The current result set, while the client must not see it yet (see [`hold`]).
    held: Option<hold::Pending>,
    /// More results are known to follow the current one (a `CALL`): used when a result too
    /// large to hold needs its EOF before its terminator is known.
    more_expected: bool,
    /// Whether frames of [`PASS_THROUGH`] bytes or more are handed back instead of copied (see
    /// [`Tracker::pass_large_frames`]).
    pass_large: bool,
    /// A large frame to write after what `feed` put in `out`.
    through: Option<Frame>,
}

/// A frame this large is not copied into the client's write buffer when the caller allows it: a
/// copy of a 16 MiB row into fresh pages holds a worker for milliseconds, and everybody else on
/// that worker waits.
pub const PASS_THROUGH: usize = 256 * 1024;

impl Tracker {
    /// A tracker for the response to a command the client sent with last sequence id
    /// `client_seq`; the first packet to the client gets `client_seq + 1`. `status` is the
    /// session's last known status, used for EOF packets inserted before any terminator.
    pub fn new(expect: Expect, framing: Framing, client_seq: u8, status: u16) -> Self {
        let state = match expect {
            Expect::Rows => State::Rows { eof_due: false },
            Expect::Definitions => State::Definitions,
            Expect::OkOrErr | Expect::Results | Expect::Single => State::First,
        };
        Self {
            expect,
            framing,
            state,
            continuation: false,
            seq: client_seq.wrapping_add(1),
            backend_seq: 0,
            outcome: Outcome { status, ..Outcome::default() },
            held: None,
            more_expected: false,
            pass_large: false,
            through: None,
        }
    }

    /// Lets [`Tracker::feed`] hand back frames of [`PASS_THROUGH`] bytes or more (renumbered, and
    /// always the last thing for the client from that `feed`) instead of copying them into `out`;
    /// the caller then writes `out` and [`Tracker::take_through`]'s frame, in that order.
    pub fn pass_large_frames(&mut self) {
        self.pass_large = true;
    }

    /// The large frame the last [`Tracker::feed`] handed back, if any.
    pub fn take_through(&mut self) -> Option<Frame> {
        self.through.take()
    }

    /// Tells the tracker that every result set of this response is followed by another (the
    /// response to a `CALL` ends with an OK after its result sets).
    pub fn expect_more_results(&mut self, more: bool) {
        self.more_expected = more;
    }

    /// The sequence id the next packet to the client must carry (for an ERR the proxy sends
    /// itself when the backend fails mid-response).
    pub fn next_seq(&self) -> u8 {
        self.seq
    }

    /// The client's framing this tracker writes.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The backend's sequence id of the last frame forwarded (the `LOCAL INFILE` request before
    /// the client's data is relayed).
    pub fn last_backend_seq(&self) -> u8 {
        self.backend_seq
    }

    /// Sets the client sequence id after the client sent packets in the middle of the response
    /// (`LOCAL INFILE` data); the backend's next packet goes out with `seq`.
    pub fn resume_at(&mut self, seq: u8) {
        self.seq = seq;
    }

    /// Consumes one backend frame, appending what the client must receive to `out`.
    pub fn feed(&mut self, frame: Frame, out: &mut BytesMut) -> Result<Step> {
        if self.continuation {
            self.continuation = frame.is_continued();
            self.forward(frame, out);
            return Ok(Step::More);
        }
        let payload = frame.payload();
        let first = payload.first().copied();
        let is_terminator_sized = payload.len() < MAX_FRAME_PAYLOAD;
        if self.expect == Expect::Single {
            self.forward(frame, out);
            self.state = State::Finished;
            return Ok(Step::Done(std::mem::take(&mut self.outcome)));
        }
        match (self.state, first) {
            (State::Finished, _) => Err(Error::malformed("response (data after the end)")),
            (_, None) => Err(Error::malformed("response (empty packet)")),
            // A MariaDB progress report (`MARIADB_CLIENT_PROGRESS`, error code 0xFFFF) comes before
            // the real response of a long statement: relayed, and the response goes on.
            (State::First, Some(ERR_HEADER)) if payload.get(1..3) == Some(&[0xFF, 0xFF][..]) => {
                self.forward(frame, out);
                Ok(Step::More)
            }
            (State::First | State::Rows { .. } | State::Definitions, Some(ERR_HEADER)) => {
                let err = okerr::Err::parse(payload)?;
                self.outcome.error = Some(err.code);
                self.held = None;
                if let State::Rows { eof_due: true } = self.state {
                    let status = hold::guess_status(self.outcome.status, self.more_expected);
                    self.emit_with(out, |b| encode_eof(0, status, b));
                }
                self.forward(frame, out);
                self.state = State::Finished;
                Ok(Step::Done(std::mem::take(&mut self.outcome)))
            }
            (State::First, Some(OK_HEADER)) => {
                let ok = Ok::parse(payload)?;
                self.emit_ok(&ok, out);
                self.after_terminator(&ok)
            }
            (State::First, Some(LOCAL_INFILE_HEADER)) if self.expect == Expect::Results => {
                self.forward(frame, out);
                Ok(Step::LocalInfile)
            }
            (State::First, Some(_)) if self.expect == Expect::Results => {
                let columns = Reader::new(payload, "column count").lenenc_int()?;
                if columns == 0 {
                    return Err(Error::malformed("column count"));
                }
                if !self.framing.deprecate_eof || !self.framing.ps_multi_results {
                    self.held = Some(hold::Pending { start: out.len(), start_seq: self.seq, eof_status_at: None });
                }
                self.forward(frame, out);
                self.outcome.result_set = true;
                self.outcome.last_result_rows = 0;
                self.state = State::Columns(columns);
                Ok(Step::More)
            }
            (State::Columns(left), Some(_)) => {
                self.continuation = frame.is_continued();
                self.forward(frame, out);
                self.state = if left > 1 {
                    State::Columns(left - 1)
                } else {
                    State::Rows { eof_due: !self.framing.deprecate_eof }
                };
                Ok(Step::More)
            }
            (state @ (State::Rows { .. } | State::Definitions), Some(EOF_HEADER)) if is_terminator_sized => {
                let eof_due = matches!(state, State::Rows { eof_due: true });
                let ok = terminator(payload)?;
                if let Some(held) = self.held.take() {
                    if ok.status & hold::PS_OUT_PARAMS != 0 && !self.framing.ps_multi_results {
                        // The server sends OUT parameters only to clients that can take them.
                        out.truncate(held.start);
                        self.seq = held.start_seq;
                        let mut ok = ok;
                        ok.status &= !hold::PS_OUT_PARAMS;
                        self.outcome.result_set = false;
                        return self.after_terminator(&ok);
                    }
                    if let Some(at) = held.eof_status_at {
                        // The EOF written before the rows gets the server's flags now.
                        let status = hold::definitions_status(ok.status).to_le_bytes();
                        if let Some(slot) = out.get_mut(at..at + 2) {
                            slot.copy_from_slice(&status);
                        }
                    }
                }
                if eof_due && ok.status & CURSOR_EXISTS == 0 {
                    // An ordinary empty result: the EOF after the definitions, then the closing one.
                    let status = ok.status;
                    self.emit_with(out, |b| encode_eof(0, status, b));
                }
                if self.framing.deprecate_eof {
                    self.emit_ok(&ok, out);
                } else {
                    self.emit_with(out, |b| encode_eof(ok.warnings, ok.status, b));
                }
                self.after_terminator(&ok)
            }
            (State::Rows { eof_due }, Some(_)) => {
                if eof_due {
                    // Before the first row. While the result is held, its flags are patched in
                    // at the terminator; otherwise they stay a guess.
                    let status = hold::guess_status(self.outcome.status, self.more_expected);
                    let at = out.len() + HEADER_LEN + 3;
                    self.emit_with(out, |b| encode_eof(0, status, b));
                    if let Some(held) = &mut self.held {
                        held.eof_status_at = Some(at);
                    }
                    self.state = State::Rows { eof_due: false };
                }
                self.outcome.rows += 1;
                self.outcome.last_result_rows += 1;
                self.continuation = frame.is_continued();
                self.forward(frame, out);
                Ok(Step::More)
            }
            (State::Definitions, Some(_)) => {
                self.continuation = frame.is_continued();
                self.forward(frame, out);
                Ok(Step::More)
            }
            (State::First, Some(_)) => Err(Error::malformed("response (unexpected result set)")),
        }
    }

    fn after_terminator(&mut self, ok: &Ok<'_>) -> Result<Step> {
        self.outcome.status = ok.status;
        self.outcome.warnings = ok.warnings;
        if ok.header == OK_HEADER {
            self.outcome.affected_rows = ok.affected_rows;
            self.outcome.last_insert_id = ok.last_insert_id;
        }
        if !ok.session_state.is_empty() {
            let mut all = BytesMut::new();
            if let Some(prev) = self.outcome.session_state.take() {
                all.extend_from_slice(&prev);
            }
            all.extend_from_slice(ok.session_state);
            self.outcome.session_state = Some(all.freeze());
        }
        if has_more_results(ok.status) {
            self.state = State::First;
            Ok(Step::More)
        } else {
            self.state = State::Finished;
            Ok(Step::Done(std::mem::take(&mut self.outcome)))
        }
    }

    fn forward(&mut self, mut frame: Frame, out: &mut BytesMut) {
        self.backend_seq = frame.seq();
        frame.set_seq(self.seq);
        self.seq = self.seq.wrapping_add(1);
        if self.pass_large && frame.as_bytes().len() >= PASS_THROUGH && self.through.is_none() {
            // Too large to hold (as below), and written by the caller after `out`.
            self.held = None;
            self.through = Some(frame);
            return;
        }
        out.extend_from_slice(frame.as_bytes());
        if self.held.as_ref().is_some_and(|held| out.len().saturating_sub(held.start) > hold::HOLD_LIMIT) {
            // Too large to hold: it streams, and the EOF before its rows keeps a guess.
            self.held = None;
        }
    }

    /// True while a result set is held: the client must not be sent what is buffered for it
    /// yet (the relay does not flush). Bounded by [`hold::HOLD_LIMIT`].
    pub fn is_holding(&self) -> bool {
        self.held.is_some()
    }

    fn emit_ok(&mut self, ok: &Ok<'_>, out: &mut BytesMut) {
        let track = self.framing.session_track;
        self.emit_with(out, |b| ok.encode(track, b));
    }

    /// Appends one small packet (under 16 MiB) whose payload `encode` writes.
    fn emit_with(&mut self, out: &mut BytesMut, encode: impl FnOnce(&mut BytesMut)) {
        let start = out.len();
        out.put_slice(&[0, 0, 0, self.seq]);
        encode(out);
        let len = out.len() - start - HEADER_LEN;
        out[start..start + 3].copy_from_slice(&(len as u32).to_le_bytes()[..3]);
        self.seq = self.seq.wrapping_add(1);
    }
}

pub mod hold;
#[cfg(test)]
mod tests;
