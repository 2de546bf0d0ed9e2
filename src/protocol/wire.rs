//! Little-endian integers and length-encoded values, read from untrusted byte slices without
//! panicking, and written into growable buffers.

use bytes::BufMut;

use super::{Error, Result};

/// A forward-only reader over a packet payload. Every read checks bounds and reports the packet
/// kind given at construction when the payload is too short.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`; `what` names the packet kind in errors.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> &'a [u8] {
        self.buf
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn err(&self) -> Error {
        Error::malformed(self.what)
    }

    /// Reads exactly `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(self.err());
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8> {
        let (&first, rest) = self.buf.split_first().ok_or_else(|| self.err())?;
        self.buf = rest;
        Ok(first)
    }

    /// Reads a little-endian u16.
    pub fn u16(&mut self) -> Result<u16> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    /// Reads a little-endian u24.
    pub fn u24(&mut self) -> Result<u32> {
        let b = self.bytes(3)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], 0]))
    }

    /// Reads a little-endian u32.
    pub fn u32(&mut self) -> Result<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a length-encoded integer. `0xFB` (NULL) and `0xFF` are not integers and fail.
    pub fn lenenc_int(&mut self) -> Result<u64> {
        match self.u8()? {
            n @ 0..=0xFA => Ok(u64::from(n)),
            0xFC => self.u16().map(u64::from),
            0xFD => self.u24().map(u64::from),
            0xFE => {
                let b = self.bytes(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Ok(u64::from_le_bytes(a))
            }
            _ => Err(self.err()),
        }
    }

    /// Reads a length-encoded string.
    pub fn lenenc_bytes(&mut self) -> Result<&'a [u8]> {
        let len = self.lenenc_int()?;
        let len = usize::try_from(len).map_err(|_| self.err())?;
        self.bytes(len)
    }

    /// Reads a NUL-terminated string (without the NUL). A missing NUL fails.
    pub fn null_terminated(&mut self) -> Result<&'a [u8]> {
        let pos = self.buf.iter().position(|&b| b == 0).ok_or_else(|| self.err())?;
        let s = self.bytes(pos)?;
        self.bytes(1)?;
        Ok(s)
    }

    /// Reads everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

/// Appends a length-encoded integer.
pub fn put_lenenc_int(out: &mut impl BufMut, n: u64) {
    match n {
        0..=0xFA => out.put_u8(n as u8),
        0xFB..=0xFFFF => {
            out.put_u8(0xFC);
            out.put_u16_le(n as u16);
        }
        0x1_0000..=0xFF_FFFF => {
            out.put_u8(0xFD);
            out.put_uint_le(n, 3);
        }
        _ => {
            out.put_u8(0xFE);
            out.put_u64_le(n);
        }
    }
}

/// Appends a length-encoded string.
pub fn put_lenenc_bytes(out: &mut impl BufMut, s: &[u8]) {
    put_lenenc_int(out, s.len() as u64);
    out.put_slice(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenenc_round_trips_at_every_width_boundary() {
        for n in [0u64, 1, 250, 251, 0xFFFF, 0x1_0000, 0xFF_FFFF, 0x100_0000, u64::MAX] {
            let mut buf = Vec::new();
            put_lenenc_int(&mut buf, n);
            let mut r = Reader::new(&buf, "test");
            assert_eq!(r.lenenc_int().unwrap(), n, "value {n}");
            assert!(r.is_empty());
        }
    }

    #[test]
    fn short_input_is_an_error_not_a_panic() {
        for buf in [&[][..], &[0xFC, 1], &[0xFD, 1, 2], &[0xFE, 1, 2, 3], &[0xFF], &[0xFB]] {
            assert!(Reader::new(buf, "test").lenenc_int().is_err(), "{buf:?}");
        }
        assert!(Reader::new(&[5, b'a'], "t").lenenc_bytes().is_err());
        assert!(Reader::new(b"abc", "t").null_terminated().is_err());
        assert_eq!(Reader::new(b"abc\0d", "t").null_terminated().unwrap(), b"abc");
    }
}
