//! The admin port's front door: a reader between the client's socket and opensrv-mysql that
//! checks the MySQL framing of every byte before opensrv sees it. opensrv joins continuation
//! frames without a limit and asserts on their sequence ids, so a hostile peer could make it
//! buffer gigabytes or panic its task before logging in. The guard closes the connection (an
//! I/O error to opensrv, which then drops it) when:
//!
//! * a frame is longer than [`HANDSHAKE_FRAME_LIMIT`] before the first command, or longer than
//!   [`FRAME_LIMIT`] after it: admin statements are short, so no continuation frame (16 MiB) ever
//!   reaches opensrv;
//! * the handshake (everything before the first command) takes longer than its budget in total,
//!   however slowly the bytes trickle in.
//!
//! No task runs here; the checks cost a few comparisons per frame header.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Instant;

/// Longest frame before the first command (handshake response, auth switch answer).
pub const HANDSHAKE_FRAME_LIMIT: usize = 16 * 1024;
/// Longest frame afterwards (an admin statement).
pub const FRAME_LIMIT: usize = 1024 * 1024;

/// `inner` with its MySQL framing checked.
#[derive(Debug)]
pub struct Guard<R> {
    inner: R,
    header: [u8; 4],
    header_len: usize,
    /// Payload bytes of the current frame still to pass.
    payload_left: usize,
    frames: u64,
    /// Until the first command: when the handshake must be over.
    handshake_until: Option<Instant>,
}

impl<R> Guard<R> {
    /// Guards `inner`; the handshake must be complete within `handshake` from now.
    pub fn new(inner: R, handshake: Duration) -> Self {
        Self {
            inner,
            header: [0; 4],
            header_len: 0,
            payload_left: 0,
            frames: 0,
            handshake_until: Some(Instant::now() + handshake),
        }
    }

    /// Checks bytes that just arrived.
    fn inspect(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = bytes.get(n..).unwrap_or_default();
                continue;
            }
            let n = (4 - self.header_len).min(bytes.len());
            if let (Some(slot), Some(src)) = (self.header.get_mut(self.header_len..self.header_len + n), bytes.get(..n))
            {
                slot.copy_from_slice(src);
            }
            self.header_len += n;
            bytes = bytes.get(n..).unwrap_or_default();
            if self.header_len < 4 {
                continue;
            }
            self.header_len = 0;
            let [a, b, c, seq] = self.header;
            let len = usize::from(a) | usize::from(b) << 8 | usize::from(c) << 16;
            if self.handshake_until.is_some() && seq == 0 && self.frames > 0 {
                // A command (sequence id 0) after the handshake response: logged in.
                self.handshake_until = None;
            }
            let limit = if self.handshake_until.is_some() { HANDSHAKE_FRAME_LIMIT } else { FRAME_LIMIT };
            if len > limit {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("admin frame of {len} bytes (limit {limit})"),
                ));
            }
            self.frames += 1;
            self.payload_left = len;
        }
        Ok(())
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Guard<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.handshake_until.is_some_and(|until| Instant::now() >= until) {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "admin handshake took too long")));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &result {
            let fresh = buf.filled().get(before..).unwrap_or_default();
            self.inspect(fresh)?;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize, seq: u8) -> Vec<u8> {
        let mut f = vec![(len & 0xFF) as u8, ((len >> 8) & 0xFF) as u8, ((len >> 16) & 0xFF) as u8, seq];
        f.resize(4 + len, b'x');
        f
    }

    #[test]
    fn oversized_frames_are_refused_before_and_after_login() {
        let mut g = Guard::new((), Duration::from_secs(5));
        assert!(g.inspect(&frame(100, 1)).is_ok(), "handshake response");
        let huge = [0xFF, 0xFF, 0xFF, 7];
        assert!(g.inspect(&huge).is_err(), "a 16 MiB frame during the handshake");
        let mut g = Guard::new((), Duration::from_secs(5));
        g.inspect(&frame(100, 1)).unwrap();
        g.inspect(&frame(20_000, 0)).unwrap();
        assert!(g.inspect(&[0xFF, 0xFF, 0xFF, 1]).is_err(), "a continuation frame after login");
    }

    #[test]
    fn headers_split_anywhere_are_read_whole() {
        let mut g = Guard::new((), Duration::from_secs(5));
        let bytes: Vec<u8> = [frame(3, 1), frame(5, 0), frame(2, 0)].concat();
        for chunk in bytes.chunks(1) {
            g.inspect(chunk).unwrap();
        }
        assert_eq!(g.frames, 3);
        assert!(g.handshake_until.is_none());
    }

    #[test]
    fn random_bytes_never_panic() {
        // A deterministic xorshift stream: whatever arrives, the guard answers Ok or Err.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for round in 0..2_000 {
            let mut g = Guard::new((), Duration::from_secs(5));
            for _ in 0..64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let len = (x % 64) as usize + round % 3;
                let chunk: Vec<u8> = (0..len).map(|i| (x >> (i % 8 * 8)) as u8).collect();
                if g.inspect(&chunk).is_err() {
                    break;
                }
            }
        }
    }
}
