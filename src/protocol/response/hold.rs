//! Holding back the start of a result set until its terminator shows what the server's own
//! framing would have said about it.
//!
//! Backends run with `CLIENT_DEPRECATE_EOF`, so the EOF a server puts after the column
//! definitions (carrying its status flags at that moment: `MORE_RESULTS_EXISTS` inside a `CALL`,
//! `PS_OUT_PARAMS` for OUT parameters) never arrives; the proxy must write it before the rows.
//! The tracker keeps the column count, the definitions and the first rows here, up to
//! [`HOLD_LIMIT`] bytes, and writes them once the terminator is known: the inserted EOF then
//! carries the terminator's flags, and a result the client must not see (OUT parameters for a
//! client without `CLIENT_PS_MULTI_RESULTS`) is dropped whole. A larger result is released at
//! the limit with an EOF whose flags are a guess ([`guess_status`]).

use bytes::{BufMut, BytesMut};

use crate::protocol::okerr::MORE_RESULTS_EXISTS;
use crate::protocol::packet::HEADER_LEN;

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

/// The packets of one result set held so far, framed with placeholder sequence ids.
#[derive(Debug, Default)]
pub struct Held {
    /// Column count and column definitions.
    pub head: BytesMut,
    /// Rows.
    pub body: BytesMut,
}

impl Held {
    /// Bytes held.
    pub fn size(&self) -> usize {
        self.head.len() + self.body.len()
    }
}

/// Appends the framed packets of `packets` to `out`, numbering them from `*seq` on.
pub fn renumber_into(packets: &[u8], seq: &mut u8, out: &mut BytesMut) {
    let start = out.len();
    out.put_slice(packets);
    let mut at = start;
    while at + HEADER_LEN <= out.len() {
        let len = u32::from_le_bytes([out[at], out[at + 1], out[at + 2], 0]) as usize;
        out[at + 3] = *seq;
        *seq = seq.wrapping_add(1);
        at += HEADER_LEN + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renumbering_walks_every_packet() {
        let mut packets = BytesMut::new();
        packets.put_slice(&[1, 0, 0, 9, 0xAA, 2, 0, 0, 9, 0xBB, 0xCC, 0, 0, 0, 9]);
        let (mut out, mut seq) = (BytesMut::new(), 5u8);
        renumber_into(&packets, &mut seq, &mut out);
        assert_eq!(&out[..], &[1, 0, 0, 5, 0xAA, 2, 0, 0, 6, 0xBB, 0xCC, 0, 0, 0, 7]);
        assert_eq!(seq, 8);
    }

    #[test]
    fn a_guess_keeps_session_flags_only() {
        assert_eq!(guess_status(0x0002 | 0x0020 | 0x1000, false), 0x0002);
        assert_eq!(guess_status(0x0001, true), 0x0009);
        assert_eq!(definitions_status(0x0080 | 0x0042), 0x0042);
    }
}
