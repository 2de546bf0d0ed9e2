//! A socket that is plain TCP or TLS over TCP, switchable in place after the MySQL `SSLRequest`.
//!
//! Both the client side (a rustls server stream) and the backend side (a rustls client stream)
//! use it with their own TLS type. It only dispatches reads and writes; building TLS sessions is
//! the job of `frontend::tls` and `backend::tls`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A connection's transport.
#[derive(Debug)]
pub enum Stream<T> {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (boxed: the TLS state is large and most traffic does not need the indirection
    /// to be small).
    Tls(Box<T>),
    /// Taken out for the TLS handshake; every operation fails. Seen only if that handshake failed,
    /// after which the connection is closed.
    Detached,
}

impl<T> Stream<T> {
    /// True when the transport is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }

    /// Takes the plain TCP socket out for a TLS handshake, leaving [`Stream::Detached`]; `None`
    /// (and nothing changed) when the stream is not plain.
    pub fn take_plain(&mut self) -> Option<TcpStream> {
        match std::mem::replace(self, Self::Detached) {
            Self::Plain(tcp) => Some(tcp),
            other => {
                *self = other;
                None
            }
        }
    }
}

fn detached() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection lost during the TLS handshake")
}

impl<T: AsyncRead + Unpin> Stream<T> {
    /// True when the peer closed this idle connection or sent something unasked (either leaves it
    /// unusable). Never blocks: plain sockets are peeked with `try_read`; TLS streams are polled
    /// once without a waker, which also consumes TLS-only records (session tickets) that carry no
    /// data.
    pub fn is_closed_by_peer(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self {
            Self::Plain(tcp) => match tcp.try_read(&mut byte) {
                Err(err) => err.kind() != io::ErrorKind::WouldBlock,
                Ok(_) => true,
            },
            Self::Tls(tls) => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut buf = ReadBuf::new(&mut byte);
                !matches!(Pin::new(tls.as_mut()).poll_read(&mut cx, &mut buf), Poll::Pending)
            }
            Self::Detached => true,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Stream<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
            Self::Detached => Poll::Ready(Err(detached())),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Stream<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
            Self::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
            Self::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(tcp) => tcp.is_write_vectored(),
            Self::Tls(tls) => tls.is_write_vectored(),
            Self::Detached => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
            Self::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
            Self::Detached => Poll::Ready(Err(detached())),
        }
    }
}
