//! OK, ERR and EOF packets: parsing what backends send, encoding what the proxy sends itself, and
//! re-encoding terminators for clients that negotiated less than the backend connection
//! (no `CLIENT_SESSION_TRACK`, no `CLIENT_DEPRECATE_EOF`).

use bytes::{BufMut, BytesMut};

use super::wire::{put_lenenc_bytes, put_lenenc_int, Reader};
use super::{Result, StatusFlags};

/// First byte of an OK packet.
pub const OK_HEADER: u8 = 0x00;
/// First byte of an EOF packet, and of the OK packet that replaces it under `CLIENT_DEPRECATE_EOF`.
pub const EOF_HEADER: u8 = 0xFE;
/// First byte of an ERR packet.
pub const ERR_HEADER: u8 = 0xFF;
/// First byte of a `LOCAL INFILE` request.
pub const LOCAL_INFILE_HEADER: u8 = 0xFB;

/// `SERVER_SESSION_STATE_CHANGED`: the OK packet carries session-state information.
pub const SESSION_STATE_CHANGED: u16 = 0x4000;
/// `SERVER_MORE_RESULTS_EXISTS`: another result follows this one.
pub const MORE_RESULTS_EXISTS: u16 = 0x0008;
/// `SERVER_STATUS_IN_TRANS`.
pub const STATUS_IN_TRANS: u16 = 0x0001;
/// `SERVER_STATUS_AUTOCOMMIT`.
pub const STATUS_AUTOCOMMIT: u16 = 0x0002;

/// A parsed OK packet (or the OK-form terminator of a result set), borrowing from the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ok<'a> {
    /// 0x00 for a plain OK, 0xFE for a result-set terminator.
    pub header: u8,
    /// Rows changed by the statement.
    pub affected_rows: u64,
    /// `LAST_INSERT_ID()` produced by the statement.
    pub last_insert_id: u64,
    /// Server status flags.
    pub status: u16,
    /// Number of warnings.
    pub warnings: u16,
    /// Human-readable info (e.g. "Rows matched: 1 Changed: 1").
    pub info: &'a [u8],
    /// Raw session-state information (present only with `SESSION_STATE_CHANGED`).
    pub session_state: &'a [u8],
}

impl<'a> Ok<'a> {
    /// Parses an OK packet sent on a connection that negotiated `CLIENT_SESSION_TRACK`.
    /// Trailing fields the server omitted (info, session state) parse as empty.
    pub fn parse(payload: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(payload, "OK");
        let header = r.u8()?;
        let affected_rows = r.lenenc_int()?;
        let last_insert_id = r.lenenc_int()?;
        let status = r.u16()?;
        let warnings = r.u16()?;
        let info = if r.is_empty() { &[][..] } else { r.lenenc_bytes()? };
        let session_state =
            if status & SESSION_STATE_CHANGED != 0 && !r.is_empty() { r.lenenc_bytes()? } else { &[][..] };
        Ok(Self { header, affected_rows, last_insert_id, status, warnings, info, session_state })
    }

    /// Encodes this OK packet for a client. With `session_track` the layout of
    /// `CLIENT_SESSION_TRACK` is used (session state kept); without it, the session-state flag is
    /// cleared and the state dropped. The info is length-encoded either way: the protocol
    /// documentation says `string<EOF>` for old clients, but MySQL and MariaDB servers send (and
    /// their client libraries read) a length-encoded string, omitted when empty.
    pub fn encode(&self, session_track: bool, out: &mut BytesMut) {
        out.put_u8(self.header);
        put_lenenc_int(out, self.affected_rows);
        put_lenenc_int(out, self.last_insert_id);
        if session_track {
            // Only what a client with default tracking would see (allocates only when the server
            // reported a change).
            let mut visible = Vec::new();
            let changed = self.status & SESSION_STATE_CHANGED != 0
                && super::session_track::client_visible(self.session_state, &mut visible);
            let status = if changed { self.status } else { self.status & !SESSION_STATE_CHANGED };
            out.put_u16_le(status);
            out.put_u16_le(self.warnings);
            if !self.info.is_empty() || changed {
                put_lenenc_bytes(out, self.info);
            }
            if changed {
                put_lenenc_bytes(out, &visible);
            }
        } else {
            out.put_u16_le(self.status & !SESSION_STATE_CHANGED);
            out.put_u16_le(self.warnings);
            if !self.info.is_empty() {
                put_lenenc_bytes(out, self.info);
            }
        }
    }
}

/// Encodes a classic 5-byte EOF packet payload.
pub fn encode_eof(warnings: u16, status: u16, out: &mut BytesMut) {
    out.put_u8(EOF_HEADER);
    out.put_u16_le(warnings);
    out.put_u16_le(status & !SESSION_STATE_CHANGED);
}

/// Status flags of a classic EOF packet payload, if it is one.
pub fn eof_status(payload: &[u8]) -> Option<u16> {
    match payload {
        [EOF_HEADER, _, _, s0, s1] => Some(u16::from_le_bytes([*s0, *s1])),
        _ => None,
    }
}

/// A parsed ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Err<'a> {
    /// MySQL error code.
    pub code: u16,
    /// Five-character SQLSTATE (`HY000` when the server sent none).
    pub sqlstate: [u8; 5],
    /// Error message.
    pub message: &'a [u8],
}

impl<'a> Err<'a> {
    /// Parses an ERR packet sent on a `CLIENT_PROTOCOL_41` connection.
    pub fn parse(payload: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(payload, "ERR");
        if r.u8()? != ERR_HEADER {
            return Err(super::Error::malformed("ERR"));
        }
        let code = r.u16()?;
        let mut sqlstate = *b"HY000";
        if r.remaining().first() == Some(&b'#') && r.remaining().len() >= 6 {
            r.u8()?;
            sqlstate.copy_from_slice(r.bytes(5)?);
        }
        Ok(Self { code, sqlstate, message: r.rest() })
    }
}

/// Encodes an ERR packet payload.
pub fn encode_err(code: u16, sqlstate: &[u8; 5], message: &str, out: &mut BytesMut) {
    out.put_u8(ERR_HEADER);
    out.put_u16_le(code);
    out.put_u8(b'#');
    out.put_slice(sqlstate);
    out.put_slice(message.as_bytes());
}

/// Encodes a plain OK packet payload with no rows affected.
pub fn encode_ok(status: u16, out: &mut BytesMut) {
    let ok = Ok {
        header: OK_HEADER,
        affected_rows: 0,
        last_insert_id: 0,
        status,
        warnings: 0,
        info: &[],
        session_state: &[],
    };
    ok.encode(false, out);
}

/// Encodes the OK that ends a login, `COM_CHANGE_USER` or `COM_RESET_CONNECTION`: like the
/// server's, it reports the session's schema (and sets `SERVER_SESSION_STATE_CHANGED`) to a
/// client with `CLIENT_SESSION_TRACK` when a schema is selected.
pub fn encode_session_ok(status: u16, schema: Option<&[u8]>, session_track: bool, out: &mut BytesMut) {
    let entry = match schema {
        Some(schema) if session_track => super::session_track::schema_entry(schema),
        _ => return encode_ok(status, out),
    };
    let ok = Ok {
        header: OK_HEADER,
        affected_rows: 0,
        last_insert_id: 0,
        status: status | SESSION_STATE_CHANGED,
        warnings: 0,
        info: &[],
        session_state: &entry,
    };
    ok.encode(true, out);
}

/// True when `status` says another result follows.
pub fn has_more_results(status: u16) -> bool {
    StatusFlags::from_bits_retain(status).contains(StatusFlags::SERVER_MORE_RESULTS_EXISTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_with_session_state_strips_for_old_clients_and_round_trips_for_new() {
        let mut raw = BytesMut::new();
        let ok = Ok {
            header: 0,
            affected_rows: 300,
            last_insert_id: 70_000,
            status: STATUS_AUTOCOMMIT | SESSION_STATE_CHANGED,
            warnings: 2,
            info: b"Rows matched: 1",
            session_state: b"\x01\x05\x04test",
        };
        ok.encode(true, &mut raw);
        let parsed = Ok::parse(&raw).unwrap();
        assert_eq!(parsed, ok);

        let mut old = BytesMut::new();
        parsed.encode(false, &mut old);
        let mut r = Reader::new(&old, "t");
        assert_eq!(r.u8().unwrap(), 0);
        assert_eq!(r.lenenc_int().unwrap(), 300);
        assert_eq!(r.lenenc_int().unwrap(), 70_000);
        assert_eq!(r.u16().unwrap(), STATUS_AUTOCOMMIT);
        assert_eq!(r.u16().unwrap(), 2);
        assert_eq!(r.lenenc_bytes().unwrap(), b"Rows matched: 1");
        assert!(r.is_empty());
    }

    #[test]
    fn minimal_ok_and_eof_and_err_parse() {
        let ok = Ok::parse(&[0xFE, 0, 0, 0x22, 0, 0, 0]).unwrap();
        assert_eq!((ok.header, ok.status, ok.info), (0xFE, 0x22, &b""[..]));
        assert_eq!(eof_status(&[0xFE, 0, 0, 0x0A, 0]), Some(0x0A));
        assert_eq!(eof_status(&[0xFE, 0, 0]), None);

        let mut buf = BytesMut::new();
        encode_err(1045, b"28000", "Access denied", &mut buf);
        let err = Err::parse(&buf).unwrap();
        assert_eq!((err.code, &err.sqlstate, err.message), (1045, b"28000", &b"Access denied"[..]));
        let bare = Err::parse(&[0xFF, 0x10, 0x04, b'x']).unwrap();
        assert_eq!((bare.code, &bare.sqlstate, bare.message), (1040, b"HY000", &b"x"[..]));
    }

    #[test]
    fn truncated_packets_are_errors() {
        for p in [&[][..], &[0], &[0, 1], &[0, 1, 1, 2], &[0, 1, 1, 2, 0, 0], &[0, 0, 0, 0, 0, 0, 0, 5, b'a']] {
            assert!(Ok::parse(p).is_err(), "{p:?}");
        }
        assert!(Err::parse(&[0xFF, 1]).is_err());
        assert!(Err::parse(&[0x00, 1, 1]).is_err());
    }

    #[test]
    fn a_session_ok_reports_the_schema_only_to_tracking_clients() {
        let mut out = BytesMut::new();
        encode_session_ok(STATUS_AUTOCOMMIT, Some(b"app"), true, &mut out);
        let ok = Ok::parse(&out).unwrap();
        assert_eq!(ok.status, STATUS_AUTOCOMMIT | SESSION_STATE_CHANGED);
        let changes: Vec<_> = super::super::session_track::changes(ok.session_state).map(|c| c.ok()).collect();
        assert_eq!(changes, [Some(super::super::session_track::Change::Schema(b"app"))]);

        for (schema, track) in [(None, true), (Some(&b"app"[..]), false)] {
            let mut plain = BytesMut::new();
            encode_session_ok(STATUS_AUTOCOMMIT, schema, track, &mut plain);
            let mut expected = BytesMut::new();
            encode_ok(STATUS_AUTOCOMMIT, &mut expected);
            assert_eq!(plain, expected, "schema {schema:?}, tracking {track}");
        }
    }
}
