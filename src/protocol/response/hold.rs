//! Holding back the start of a result set until its terminator shows what the server's own
//! framing would have said about it.
//!
//! Backends run with `CLIENT_DEPRECATE_EOF`, so the EOF a server puts after the column
//! definitions (carrying its status flags at that moment: `MORE_RESULTS_EXISTS` inside a `CALL`,
//! `PS_OUT_PARAMS` for OUT parameters, `NO_INDEX_USED`...) never arrives; the proxy must write it
//! before the rows. The tracker writes the result into the client's buffer as usual, with that
//! EOF in place and its flags guessed ([`guess_status`]); while the result is held
//! ([`Pending`]) the relay does not flush, and at the terminator the EOF's flags are patched to
//! the server's, or the whole result is cut off again when the client must not see it (OUT
//! parameters for a client without `CLIENT_PS_MULTI_RESULTS`). Nothing is copied or renumbered.
//! A result larger than [`HOLD_LIMIT`] stops being held and keeps the guess.

use crate::protocol::okerr::MORE_RESULTS_EXISTS;

/// Bytes of one result set held back at most; above it the result streams (the relay flushes
/// at 64 KiB anyway, so holding this much adds no round trip).
pub const HOLD_LIMIT: usize = 64 * 1024;

/// `SERVER_PS_OUT_PARAMS`: the result set holds a procedure's OUT parameters.
pub const PS_OUT_PARAMS: u16 = 0x1000;

/// `SERVER_STATUS_LAST_ROW_SENT`: only in the terminator of a cursor's last fetch.
const LAST_ROW_SENT: u16 = 0x0080;

/// Flags that describe one statement's execution or its end rather than the session; a guessed
/// EOF before rows does not inherit them from the previous statement.
const PER_STATEMENT: u16 = 0x0010 // NO_GOOD_INDEX_USED
    | 0x0020 // NO_INDEX_USED
    | 0x0040 // CURSOR_EXISTS
    | LAST_ROW_SENT
    | 0x0100 // DB_DROPPED
    | 0x0400 // METADATA_CHANGED
    | 0x0800 // QUERY_WAS_SLOW
    | PS_OUT_PARAMS
    | 0x4000; // SESSION_STATE_CHANGED

/// The flags of the EOF after the column definitions when the result's terminator is known:
/// the server's flags do not change between the two within one result set, except the flag
/// that marks a cursor's end.
pub fn definitions_status(terminator: u16) -> u16 {
    terminator & !LAST_ROW_SENT
}

/// The flags of the EOF after the column definitions of a result too large to hold: the
/// session flags known so far (`previous`: the last terminator of this response, or the
/// session's status), with `MORE_RESULTS_EXISTS` when the caller knows more results follow.
pub fn guess_status(previous: u16, more: bool) -> u16 {
    let more = if more { MORE_RESULTS_EXISTS } else { 0 };
    (previous & !PER_STATEMENT) | more
}

/// A result set being held: where it starts in the client's buffer, and where the flags of the
/// EOF before its rows are, once written.
#[derive(Debug, Clone, Copy)]
pub struct Pending {
    /// Offset of the result's first byte (its column-count packet) in the client's buffer.
    pub start: usize,
    /// The client sequence id of that packet.
    pub start_seq: u8,
    /// Offset of the status flags of the EOF written before the first row, if written.
    pub eof_status_at: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guess_keeps_session_flags_only() {
        assert_eq!(guess_status(0x0002 | 0x0020 | 0x1000, false), 0x0002);
        assert_eq!(guess_status(0x0001, true), 0x0009);
        assert_eq!(definitions_status(0x0080 | 0x0042), 0x0042);
    }
}
