//! A socket half with a timeout on every read or write: opensrv-mysql awaits its socket without
//! one, so the admin port wraps both halves. A read that waits longer than its limit (the
//! handshake limit for the first read, the idle limit afterwards) fails with `TimedOut`, and so
//! does a write the peer does not accept in time.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `inner` with per-operation deadlines.
#[derive(Debug)]
pub struct Deadline<S> {
    inner: S,
    sleep: Pin<Box<Sleep>>,
    armed: bool,
    /// Limit of the first operation, then `limit`.
    first: Option<Duration>,
    limit: Duration,
}

impl<S> Deadline<S> {
    /// Wraps `inner`: the first operation may wait `first`, every later one `limit`.
    pub fn new(inner: S, first: Duration, limit: Duration) -> Self {
        Self { inner, sleep: Box::pin(tokio::time::sleep(first)), armed: false, first: Some(first), limit }
    }

    /// Runs one poll of the inner operation under the deadline.
    fn poll_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>>
    where
        S: Unpin,
    {
        match op(Pin::new(&mut self.inner), cx) {
            Poll::Ready(result) => {
                self.armed = false;
                self.first = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                if !self.armed {
                    let limit = self.first.unwrap_or(self.limit);
                    self.sleep.as_mut().reset(Instant::now() + limit);
                    self.armed = true;
                }
                match self.sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.armed = false;
                        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "admin connection timed out")))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadline<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.poll_with(cx, |inner, cx| inner.poll_read(cx, buf))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadline<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_with(cx, |inner, cx| inner.poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_with(cx, |inner, cx| inner.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_with(cx, |inner, cx| inner.poll_shutdown(cx))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_with(cx, |inner, cx| inner.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out() {
        let (client, server) = tokio::io::duplex(64);
        let mut reader = Deadline::new(server, Duration::from_secs(1), Duration::from_secs(5));
        let mut buf = [0u8; 4];
        let err = reader.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(client);
    }
}
