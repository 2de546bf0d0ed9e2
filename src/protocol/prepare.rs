//! Server-side prepared statements at the wire level: the `COM_STMT_PREPARE` response (kept by the
//! proxy and re-encoded for each client with the client's statement id and framing), and the
//! parts of `COM_STMT_EXECUTE` the proxy rewrites (statement id, parameter types).

use bytes::{BufMut, Bytes, BytesMut};

use super::okerr::encode_eof;
use super::packet::put_packet;
use super::wire::Reader;
use super::{Error, Result};

/// The metadata of a prepared statement, as the server returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The backend's statement id (only meaningful on the connection that prepared it).
    pub backend_id: u32,
    /// Number of `?` parameters.
    pub params: u16,
    /// Number of result columns.
    pub columns: u16,
    /// Warnings of the prepare.
    pub warnings: u16,
    /// Parameter definitions (column-definition packets).
    pub param_defs: Vec<Bytes>,
    /// Column definitions.
    pub column_defs: Vec<Bytes>,
}

impl Prepared {
    /// Parses the first packet (`COM_STMT_PREPARE_OK`); the definitions are added after.
    pub fn parse_ok(payload: &[u8]) -> Result<Self> {
        let mut r = Reader::new(payload, "COM_STMT_PREPARE_OK");
        if r.u8()? != 0 {
            return Err(Error::malformed("COM_STMT_PREPARE_OK"));
        }
        let backend_id = r.u32()?;
        let columns = r.u16()?;
        let params = r.u16()?;
        let warnings = if r.remaining().len() >= 3 {
            r.u8()?;
            r.u16()?
        } else {
            0
        };
        Ok(Self { backend_id, params, columns, warnings, param_defs: Vec::new(), column_defs: Vec::new() })
    }

    /// Definition packets still expected (backend connections use `DEPRECATE_EOF`, so no EOFs).
    pub fn defs_missing(&self) -> usize {
        usize::from(self.params) + usize::from(self.columns) - self.param_defs.len() - self.column_defs.len()
    }

    /// Adds the next definition packet, parameters first.
    pub fn push_def(&mut self, def: Bytes) {
        if self.param_defs.len() < usize::from(self.params) {
            self.param_defs.push(def);
        } else {
            self.column_defs.push(def);
        }
    }

    /// Appends the whole response for a client: the OK with `client_id`, the definitions, and the
    /// EOF packets a client without `DEPRECATE_EOF` expects. Returns the next sequence id.
    pub fn encode(&self, client_id: u32, seq: u8, deprecate_eof: bool, status: u16, out: &mut BytesMut) -> u8 {
        let mut ok = BytesMut::with_capacity(12);
        ok.put_u8(0);
        ok.put_u32_le(client_id);
        ok.put_u16_le(self.columns);
        ok.put_u16_le(self.params);
        ok.put_u8(0);
        ok.put_u16_le(self.warnings);
        let mut seq = put_packet(out, seq, &ok);
        for defs in [&self.param_defs, &self.column_defs] {
            if defs.is_empty() {
                continue;
            }
            for def in defs {
                seq = put_packet(out, seq, def);
            }
            if !deprecate_eof {
                let mut eof = BytesMut::with_capacity(5);
                encode_eof(0, status, &mut eof);
                seq = put_packet(out, seq, &eof);
            }
        }
        seq
    }
}

/// Offsets within a `COM_STMT_EXECUTE` payload.
const EXECUTE_FIXED: usize = 1 + 4 + 1 + 4;

/// The statement id a `COM_STMT_*` payload refers to (bytes 1..5).
pub fn statement_id(payload: &[u8]) -> Result<u32> {
    let mut r = Reader::new(payload, "statement command");
    r.u8()?;
    r.u32()
}

/// Rewrites the statement id of a `COM_STMT_*` payload in place.
pub fn set_statement_id(payload: &mut [u8], id: u32) -> Result<()> {
    let slot = payload.get_mut(1..5).ok_or(Error::malformed("statement command"))?;
    slot.copy_from_slice(&id.to_le_bytes());
    Ok(())
}

/// The parameter types of a `COM_STMT_EXECUTE`, if it binds new ones (`new_params_bound_flag`).
pub fn execute_types(payload: &[u8], params: u16) -> Result<Option<&[u8]>> {
    if params == 0 {
        return Ok(None);
    }
    let bitmap = usize::from(params).div_ceil(8);
    let mut r =
        Reader::new(payload.get(EXECUTE_FIXED..).ok_or(Error::malformed("COM_STMT_EXECUTE"))?, "COM_STMT_EXECUTE");
    r.bytes(bitmap)?;
    if r.u8()? != 1 {
        return Ok(None);
    }
    Ok(Some(r.bytes(2 * usize::from(params))?))
}

/// The cursor flags byte of a `COM_STMT_EXECUTE`.
pub fn execute_flags(payload: &[u8]) -> Result<u8> {
    payload.get(5).copied().ok_or(Error::malformed("COM_STMT_EXECUTE"))
}

/// Builds a `COM_STMT_EXECUTE` that binds `types` although the client's did not (it sent them on
/// an earlier execute, which ran on another backend connection).
pub fn execute_with_types(payload: &[u8], params: u16, types: &[u8]) -> Result<Bytes> {
    let bitmap = usize::from(params).div_ceil(8);
    let flag_at = EXECUTE_FIXED + bitmap;
    let head = payload.get(..flag_at).ok_or(Error::malformed("COM_STMT_EXECUTE"))?;
    let values = payload.get(flag_at + 1..).ok_or(Error::malformed("COM_STMT_EXECUTE"))?;
    if types.len() != 2 * usize::from(params) {
        return Err(Error::malformed("COM_STMT_EXECUTE parameter types"));
    }
    let mut out = BytesMut::with_capacity(payload.len() + types.len());
    out.put_slice(head);
    out.put_u8(1);
    out.put_slice(types);
    out.put_slice(values);
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn execute(id: u32, params: u16, types: Option<&[u8]>, values: &[u8]) -> Vec<u8> {
        let mut p = vec![0x17];
        p.extend_from_slice(&id.to_le_bytes());
        p.push(0);
        p.extend_from_slice(&1u32.to_le_bytes());
        if params > 0 {
            p.extend(std::iter::repeat_n(0u8, usize::from(params).div_ceil(8)));
            match types {
                Some(t) => {
                    p.push(1);
                    p.extend_from_slice(t);
                }
                None => p.push(0),
            }
        }
        p.extend_from_slice(values);
        p
    }

    #[test]
    fn execute_ids_and_types_are_found_and_rewritten() {
        let types = [8u8, 0, 253, 0];
        let mut with = execute(7, 2, Some(&types), b"vals");
        assert_eq!(statement_id(&with).unwrap(), 7);
        set_statement_id(&mut with, 99).unwrap();
        assert_eq!(statement_id(&with).unwrap(), 99);
        assert_eq!(execute_types(&with, 2).unwrap(), Some(&types[..]));
        let without = execute(7, 2, None, b"vals");
        assert_eq!(execute_types(&without, 2).unwrap(), None);
        let spliced = execute_with_types(&without, 2, &types).unwrap();
        assert_eq!(&spliced[..], &execute(7, 2, Some(&types), b"vals")[..]);
        assert!(execute_with_types(&without, 2, &types[..2]).is_err());
        assert!(execute_types(&without[..8], 2).is_err());
        assert_eq!(execute_types(&execute(1, 0, None, b""), 0).unwrap(), None);
    }

    #[test]
    fn prepare_responses_re_encode_for_each_framing() {
        let mut p = Prepared::parse_ok(&[0, 5, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0]).unwrap();
        assert_eq!((p.backend_id, p.columns, p.params, p.defs_missing()), (5, 1, 2, 3));
        for def in [&b"p1"[..], b"p2", b"c1"] {
            p.push_def(Bytes::copy_from_slice(def));
        }
        assert_eq!(p.defs_missing(), 0);
        let mut new = BytesMut::new();
        assert_eq!(p.encode(42, 1, true, 2, &mut new), 5);
        let mut old = BytesMut::new();
        assert_eq!(p.encode(42, 1, false, 2, &mut old), 7, "one EOF after params, one after columns");
        assert_eq!(&new[5..9], &42u32.to_le_bytes(), "the client's id replaces the backend's");
        assert!(Prepared::parse_ok(&[0xFF, 1]).is_err());
    }
}
