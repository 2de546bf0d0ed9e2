//! Framing: the 4-byte header (24-bit payload length, 8-bit sequence id), reassembly of payloads
//! of 16 MiB and more from several frames, and splitting them again when writing.
//!
//! [`FrameReader`] buffers socket reads and hands out whole frames without copying their bytes
//! (each frame is split off the read buffer). Response streaming works frame by frame so that a
//! huge row is never held twice; commands and handshake packets are reassembled into one payload,
//! bounded by a limit the caller passes.

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Error, Result, MAX_FRAME_PAYLOAD};

/// Length of a frame header.
pub const HEADER_LEN: usize = 4;

/// Most free space asked for per socket read (large results are read in chunks of this size).
const READ_CHUNK: usize = 64 * 1024;

/// A buffer that grew beyond this for one large packet is given back once it is empty, so one big
/// query does not keep megabytes per connection for the rest of its life.
pub const KEEP_AT_MOST: usize = 1024 * 1024;

/// Most bytes one socket read takes: a read into a large reserved frame would otherwise copy
/// whatever the kernel holds (megabytes) in one go.
const READ_AT_MOST: usize = 256 * 1024;

/// A task moving a large packet yields after this many bytes (read, or written by
/// [`write_all`]), so that small statements on the same worker are not held behind it: tokio's
/// cooperative budget alone allows 128 socket operations, megabytes, per turn.
const YIELD_EVERY: usize = 512 * 1024;

/// Bytes of a frame that must have arrived before the reader reserves the rest of it at once
/// (see [`FrameReader::next_buffered`]). A peer makes the reader hold at most 16x what it sent.
const RESERVE_REST_AFTER: usize = 1024 * 1024;

/// Free space a new reader starts with: an idle client costs this much, not [`READ_CHUNK`].
/// The chunk doubles each time a read fills it, up to [`READ_CHUNK`].
const FIRST_CHUNK: usize = 4 * 1024;

/// One frame, header included, split off the read buffer.
#[derive(Debug)]
pub struct Frame {
    bytes: BytesMut,
}

impl Frame {
    /// The sequence id in the header.
    pub fn seq(&self) -> u8 {
        self.bytes[3]
    }

    /// The payload (without header).
    pub fn payload(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..]
    }

    /// True when the payload fills the frame, meaning the logical packet continues in the next frame.
    pub fn is_continued(&self) -> bool {
        self.payload().len() == MAX_FRAME_PAYLOAD
    }

    /// Header and payload, as they were on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Mutable access for rewriting the sequence id in place before forwarding.
    pub fn set_seq(&mut self, seq: u8) {
        self.bytes[3] = seq;
    }
}

/// A buffered frame reader over any byte stream.
#[derive(Debug)]
pub struct FrameReader {
    buf: BytesMut,
    /// Free space to make before a read; grows while reads fill it.
    chunk: usize,
    /// Bytes read since this reader last let other tasks run (see [`YIELD_EVERY`]).
    since_yield: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> Self {
        Self { buf: BytesMut::with_capacity(FIRST_CHUNK), chunk: FIRST_CHUNK, since_yield: 0 }
    }

    /// Splits one complete frame off the buffer, if one is there.
    pub fn next_buffered(&mut self) -> Option<Frame> {
        if self.buf.len() < HEADER_LEN {
            return None;
        }
        let len = usize::from(self.buf[0]) | usize::from(self.buf[1]) << 8 | usize::from(self.buf[2]) << 16;
        if self.buf.len() < HEADER_LEN + len {
            // Grow towards the whole frame, but by at most what has arrived (or one read chunk): a
            // header alone must not make the reader allocate the 16 MiB it claims.
            // Once a peer has sent a good part of a large frame, the rest is reserved at once:
            // growing by doubling would copy the frame over and over (and fault in fresh pages each
            // time), holding the worker for milliseconds per big packet.
            let missing = HEADER_LEN + len - self.buf.len();
            let step = if self.buf.len() >= RESERVE_REST_AFTER { missing } else { self.buf.len().max(self.chunk) };
            self.buf.reserve(missing.min(step));
            return None;
        }
        let frame = Frame { bytes: self.buf.split_to(HEADER_LEN + len) };
        if self.buf.is_empty() && self.buf.capacity() > KEEP_AT_MOST {
            // The frames already split off keep their bytes; only the spare room goes.
            self.buf = BytesMut::with_capacity(self.chunk);
        }
        Some(frame)
    }

    /// Bytes the read buffer holds room for (what a peer made this reader allocate).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// True when no unread byte is buffered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Takes the bytes read from the socket but not yet handed out: after an `SSLRequest` they
    /// are the start of the peer's TLS handshake.
    pub fn take_buffered(&mut self) -> BytesMut {
        std::mem::take(&mut self.buf)
    }

    /// Reads more bytes from `io`, waiting at most `timeout`. Returns an error on EOF: `Closed` when
    /// the buffer held no partial frame, `Truncated` otherwise.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, io: &mut R, timeout: Duration) -> Result<()> {
        if self.buf.capacity() - self.buf.len() < self.chunk / 4 {
            self.buf.reserve(self.chunk);
        }
        let room = self.buf.capacity() - self.buf.len();
        let n = if room > READ_AT_MOST {
            within(timeout, io.read_buf(&mut (&mut self.buf).limit(READ_AT_MOST))).await??
        } else {
            within(timeout, io.read_buf(&mut self.buf)).await??
        };
        if n == 0 {
            return Err(if self.buf.is_empty() { Error::Closed } else { Error::Truncated });
        }
        self.since_yield += n;
        if self.since_yield >= YIELD_EVERY {
            // A large packet arrives in many reads that may all complete at once: let the other
            // tasks on this worker run between pieces of it.
            self.since_yield = 0;
            tokio::task::yield_now().await;
        }
        if n >= room && self.chunk < READ_CHUNK {
            // The peer had more to say than fitted: read bigger pieces from now on.
            self.chunk = (self.chunk * 2).min(READ_CHUNK);
        }
        Ok(())
    }

    /// Reads the next frame, waiting at most `timeout` for each socket read.
    pub async fn next<R: AsyncRead + Unpin>(&mut self, io: &mut R, timeout: Duration) -> Result<Frame> {
        loop {
            if let Some(frame) = self.next_buffered() {
                return Ok(frame);
            }
            self.fill(io, timeout).await?;
        }
    }

    /// Reads one logical packet, joining continuation frames, and returns the sequence id of its
    /// last frame with the payload. Fails with [`Error::TooLarge`] past `limit` payload bytes
    /// (the oversized packet is consumed up to the limit only; the caller should close).
    pub async fn packet<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        timeout: Duration,
        limit: usize,
    ) -> Result<(u8, Bytes)> {
        // Refuse an oversized single frame from its header, before buffering its body.
        loop {
            if self.buf.len() >= HEADER_LEN {
                let len = usize::from(self.buf[0]) | usize::from(self.buf[1]) << 8 | usize::from(self.buf[2]) << 16;
                if len > limit {
                    return Err(Error::TooLarge { size: len, limit });
                }
                break;
            }
            self.fill(io, timeout).await?;
        }
        let first = self.next(io, timeout).await?;
        if !first.is_continued() {
            let seq = first.seq();
            let mut bytes = first.bytes;
            let _ = bytes.split_to(HEADER_LEN);
            return Ok((seq, bytes.freeze()));
        }
        // Copied in pieces with a yield between them: a 16 MiB copy into fresh pages in one go
        // holds the worker for milliseconds.
        let mut payload = BytesMut::with_capacity(first.payload().len() + MAX_FRAME_PAYLOAD.min(limit) / 16);
        for piece in first.payload().chunks(YIELD_EVERY) {
            payload.extend_from_slice(piece);
            if piece.len() == YIELD_EVERY {
                tokio::task::yield_now().await;
            }
        }
        let mut expected = first.seq().wrapping_add(1);
        loop {
            if payload.len() > limit {
                return Err(Error::TooLarge { size: payload.len(), limit });
            }
            let frame = self.next(io, timeout).await?;
            if frame.seq() != expected {
                return Err(Error::OutOfOrder { expected, got: frame.seq() });
            }
            payload.extend_from_slice(frame.payload());
            if !frame.is_continued() {
                if payload.len() > limit {
                    return Err(Error::TooLarge { size: payload.len(), limit });
                }
                return Ok((expected, payload.freeze()));
            }
            expected = expected.wrapping_add(1);
        }
    }
}

/// Appends `payload` as one logical packet, split into frames as needed, starting at sequence id
/// `seq`. Returns the sequence id the next packet must use.
pub fn put_packet(out: &mut BytesMut, mut seq: u8, payload: &[u8]) -> u8 {
    let mut chunks = payload.chunks(MAX_FRAME_PAYLOAD);
    loop {
        let chunk = chunks.next().unwrap_or(&[]);
        out.reserve(HEADER_LEN + chunk.len());
        out.put_uint_le(chunk.len() as u64, 3);
        out.put_u8(seq);
        out.put_slice(chunk);
        seq = seq.wrapping_add(1);
        // A payload that is an exact multiple of the frame size ends with an empty frame.
        if chunk.len() < MAX_FRAME_PAYLOAD {
            return seq;
        }
    }
}

/// Writes all of `buf` to `io` within `timeout` and clears it. The stream is flushed too: a TLS
/// stream may keep encrypted bytes buffered after `write_all` (free for plain TCP).
pub async fn flush<W: AsyncWrite + Unpin>(io: &mut W, buf: &mut BytesMut, timeout: Duration) -> Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    write_all(io, buf, timeout).await?;
    buf.clear();
    if buf.capacity() > KEEP_AT_MOST {
        *buf = BytesMut::new();
    }
    Ok(())
}

/// Writes `bytes` as they are, within `timeout`.
pub async fn write_all<W: AsyncWrite + Unpin>(io: &mut W, bytes: &[u8], timeout: Duration) -> Result<()> {
    let write = async {
        for piece in bytes.chunks(YIELD_EVERY) {
            io.write_all(piece).await?;
            if piece.len() == YIELD_EVERY {
                tokio::task::yield_now().await;
            }
        }
        io.flush().await
    };
    within(timeout, write).await??;
    Ok(())
}

/// Runs `fut` for at most `timeout`. A future that completes at its first poll (a write the socket
/// takes at once, a read of bytes already there) never arms a timer, and so reads no clock and
/// touches no timer wheel: most socket calls on the data path are like that.
pub async fn within<F: Future>(timeout: Duration, fut: F) -> Result<F::Output> {
    let mut fut = std::pin::pin!(fut);
    if let Poll::Ready(out) = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
        return Ok(out);
    }
    tokio::time::timeout(timeout, fut).await.map_err(|_| Error::Timeout(timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn payloads_round_trip_across_the_frame_size_boundary() {
        let sizes =
            [0, 1, 100, MAX_FRAME_PAYLOAD - 1, MAX_FRAME_PAYLOAD, MAX_FRAME_PAYLOAD + 1, 2 * MAX_FRAME_PAYLOAD + 7];
        for size in sizes {
            let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let mut wire = BytesMut::new();
            let next = put_packet(&mut wire, 3, &payload);
            let frames = size / MAX_FRAME_PAYLOAD + 1;
            assert_eq!(next, 3 + frames as u8, "size {size}");
            assert_eq!(wire.len(), size + frames * HEADER_LEN);
            let mut reader = FrameReader::new();
            let mut io = &wire[..];
            let (seq, got) = reader.packet(&mut io, T, usize::MAX).await.unwrap();
            assert_eq!(seq, next - 1);
            assert_eq!(got.len(), payload.len());
            assert!(got[..] == payload[..], "size {size}");
            assert!(matches!(reader.packet(&mut io, T, usize::MAX).await, Err(Error::Closed)));
        }
    }

    #[tokio::test]
    async fn oversized_and_out_of_order_and_truncated_are_errors() {
        let payload = vec![7u8; MAX_FRAME_PAYLOAD + 10];
        let mut wire = BytesMut::new();
        put_packet(&mut wire, 0, &payload);
        let mut io = &wire[..];
        let err = FrameReader::new().packet(&mut io, T, 1024).await.unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");

        let mut bad = wire.clone();
        bad[HEADER_LEN + MAX_FRAME_PAYLOAD + 3] = 9;
        let mut io = &bad[..];
        let err = FrameReader::new().packet(&mut io, T, usize::MAX).await.unwrap_err();
        assert!(matches!(err, Error::OutOfOrder { expected: 1, got: 9 }), "{err}");

        let mut io = &wire[..100];
        let err = FrameReader::new().packet(&mut io, T, usize::MAX).await.unwrap_err();
        assert!(matches!(err, Error::Truncated), "{err}");
    }

    #[tokio::test]
    async fn frames_split_without_copy_and_keep_their_header() {
        let mut wire = BytesMut::new();
        put_packet(&mut wire, 1, b"abc");
        put_packet(&mut wire, 2, b"");
        let mut reader = FrameReader::new();
        let mut io = &wire[..];
        let mut f = reader.next(&mut io, T).await.unwrap();
        assert_eq!((f.seq(), f.payload()), (1, &b"abc"[..]));
        f.set_seq(9);
        assert_eq!(f.as_bytes(), &[3, 0, 0, 9, b'a', b'b', b'c']);
        let f = reader.next(&mut io, T).await.unwrap();
        assert_eq!((f.seq(), f.payload().len(), f.is_continued()), (2, 0, false));
    }

    #[tokio::test]
    async fn buffers_grown_for_one_large_packet_are_given_back() {
        let payload = vec![7u8; 3 * KEEP_AT_MOST];
        let mut wire = BytesMut::new();
        put_packet(&mut wire, 0, &payload);
        put_packet(&mut wire, 1, b"small");
        let mut reader = FrameReader::new();
        let mut source: &[u8] = &wire;
        let (_, big) = reader.packet(&mut source, T, usize::MAX).await.unwrap();
        assert_eq!(big.len(), payload.len());
        let (_, small) = reader.packet(&mut source, T, usize::MAX).await.unwrap();
        assert_eq!(&small[..], b"small");
        assert!(reader.buf.capacity() <= KEEP_AT_MOST, "the reader kept {} bytes", reader.buf.capacity());

        let mut out = BytesMut::from(&payload[..]);
        let mut sink = Vec::new();
        flush(&mut sink, &mut out, T).await.unwrap();
        assert_eq!(sink.len(), payload.len());
        assert!(out.capacity() <= KEEP_AT_MOST, "the write buffer kept {} bytes", out.capacity());
    }
}
