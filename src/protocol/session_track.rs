//! Decoding the session-state information carried by OK packets on connections with
//! `CLIENT_SESSION_TRACK` (schema changes, system variable changes, "state changed" markers,
//! GTIDs). The server reports what really happened; the proxy's session state follows it.

use super::wire::Reader;
use super::Result;

/// `SESSION_TRACK_SYSTEM_VARIABLES`
const SYSTEM_VARIABLES: u8 = 0;
/// `SESSION_TRACK_SCHEMA`
const SCHEMA: u8 = 1;
/// `SESSION_TRACK_STATE_CHANGE`
const STATE_CHANGE: u8 = 2;
/// `SESSION_TRACK_GTIDS`
const GTIDS: u8 = 3;

/// One reported change, borrowing from the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<'a> {
    /// A system variable now has this value.
    Variable {
        /// Variable name, as the server spells it (lower case).
        name: &'a [u8],
        /// New value as text.
        value: &'a [u8],
    },
    /// The default schema changed.
    Schema(&'a [u8]),
    /// Some session state changed (`true`), possibly something no other entry explains.
    StateChanged(bool),
    /// GTIDs of the transaction (MySQL's `session_track_gtids`), encoded as the server sent them.
    Gtids(&'a [u8]),
    /// Transaction characteristics or state, or a type this proxy does not know.
    Other(u8),
}

/// Iterates over the changes in a session-state information block (several blocks may be
/// concatenated). Stops at the first malformed entry with an error.
pub fn changes(mut data: &[u8]) -> impl Iterator<Item = Result<Change<'_>>> {
    std::iter::from_fn(move || {
        if data.is_empty() {
            return None;
        }
        let mut r = Reader::new(data, "session state");
        let parsed = (|| {
            let kind = r.u8()?;
            let entry = r.lenenc_bytes()?;
            let mut e = Reader::new(entry, "session state entry");
            Ok(match kind {
                SYSTEM_VARIABLES => Change::Variable { name: e.lenenc_bytes()?, value: e.lenenc_bytes()? },
                SCHEMA => Change::Schema(e.lenenc_bytes()?),
                // MariaDB sends the flag bare ("1"), MySQL as a length-encoded string.
                STATE_CHANGE => Change::StateChanged(entry.last() == Some(&b'1')),
                GTIDS => Change::Gtids(e.rest()),
                other => Change::Other(other),
            })
        })();
        match parsed {
            Ok(change) => {
                data = r.remaining();
                Some(Ok(change))
            }
            Err(err) => {
                data = &[];
                Some(Err(err))
            }
        }
    })
}

/// System variables a MariaDB server tracks by default (`session_track_system_variables`).
const DEFAULT_TRACKED: [&[u8]; 5] =
    [b"autocommit", b"character_set_client", b"character_set_connection", b"character_set_results", b"time_zone"];

/// A session-state entry reporting `schema` as the session's schema (what the server sends a
/// tracking client after a login, `COM_CHANGE_USER` or `COM_RESET_CONNECTION` with a schema).
pub fn schema_entry(schema: &[u8]) -> Vec<u8> {
    let mut name = bytes::BytesMut::new();
    super::wire::put_lenenc_bytes(&mut name, schema);
    let mut entry = bytes::BytesMut::from(&[SCHEMA][..]);
    super::wire::put_lenenc_bytes(&mut entry, &name);
    entry.to_vec()
}

/// Appends to `out` the entries of `data` a client sees from a server with default tracking
/// settings (schema changes and the default-tracked system variables); the backends track more
/// for the proxy itself (`last_gtid`, every variable, state-change markers), which a client never
/// asked for. Returns whether anything was kept. Malformed input keeps nothing after the error.
pub fn client_visible(mut data: &[u8], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    while !data.is_empty() {
        let mut r = Reader::new(data, "session state");
        let Ok(kind) = r.u8() else { break };
        let Ok(entry) = r.lenenc_bytes() else { break };
        let rest = r.remaining();
        let raw = &data[..data.len() - rest.len()];
        let keep = match kind {
            SCHEMA => true,
            SYSTEM_VARIABLES => {
                let mut e = Reader::new(entry, "session state entry");
                e.lenenc_bytes().is_ok_and(|name| DEFAULT_TRACKED.contains(&name))
            }
            _ => false,
        };
        if keep {
            out.extend_from_slice(raw);
        }
        data = rest;
    }
    out.len() > start
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::wire::put_lenenc_bytes;

    fn entry(kind: u8, parts: &[&[u8]]) -> Vec<u8> {
        let mut inner = Vec::new();
        for p in parts {
            put_lenenc_bytes(&mut inner, p);
        }
        let mut out = vec![kind];
        put_lenenc_bytes(&mut out, &inner);
        out
    }

    #[test]
    fn decodes_each_kind_in_order() {
        let mut data = entry(0, &[b"time_zone", b"+00:00"]);
        data.extend(entry(1, &[b"shop"]));
        data.extend(entry(2, &[b"1"]));
        data.extend([2, 1, b'1']);
        data.extend([5, 1, b'T']);
        let got: Vec<Change<'_>> = changes(&data).collect::<Result<_>>().unwrap();
        assert_eq!(
            got,
            vec![
                Change::Variable { name: b"time_zone", value: b"+00:00" },
                Change::Schema(b"shop"),
                Change::StateChanged(true),
                Change::StateChanged(true),
                Change::Other(5),
            ]
        );
    }

    #[test]
    fn malformed_data_yields_one_error_and_stops() {
        let data = [0u8, 9, 1, 2];
        let got: Vec<_> = changes(&data).collect();
        assert_eq!(got.len(), 1);
        assert!(got[0].is_err());
        let truncated_inner = entry(0, &[b"x"]);
        assert!(changes(&truncated_inner).next().unwrap().is_err(), "variable without a value");
    }
}
