//! TLS towards clients and the key material of client authentication: the rustls acceptor built
//! from `[tls]`, the RSA key of `caching_sha2_password`, the backend TLS connector handed to the
//! pools, and their reload.
//!
//! Everything is an immutable snapshot behind an `ArcSwap`: a handshake loads one [`Acceptor`]
//! and uses it throughout; [`Tls::reload`] builds new ones from the files and swaps them in (open
//! connections keep what they negotiated). Nothing here runs a task of its own; the one expensive
//! step, generating an RSA key when none is configured, runs once on a blocking thread the first
//! time a client needs it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::session::ClientIo;
use crate::backend::tls::{load_certs, load_key, provider, read, Connector, LoadError};
use crate::config::{ClientTlsMode, TlsConfig};
use crate::protocol::sha2::RsaKey;
use crate::protocol::stream::Stream;
use crate::protocol::Error as WireError;

/// A client connection's transport.
pub type ClientStream = Stream<tokio_rustls::server::TlsStream<Prefixed>>;

/// Bits of the RSA key generated when `tls.rsa_private_key` is not set.
const GENERATED_RSA_BITS: usize = 2048;

/// One snapshot of the client-side settings: the mode, the TLS acceptor when TLS can be offered,
/// and where the RSA key comes from.
pub struct Acceptor {
    mode: ClientTlsMode,
    tls: Option<tokio_rustls::TlsAcceptor>,
    rsa: RsaSource,
}

#[derive(Clone)]
enum RsaSource {
    /// Loaded from `tls.rsa_private_key`.
    Loaded(Arc<RsaKey>),
    /// Not configured: generated on first use.
    Generated,
    /// Configured but unloadable at startup: the RSA exchange is refused.
    Unavailable,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor").field("mode", &self.mode).field("offers_tls", &self.offers_tls()).finish()
    }
}

impl Acceptor {
    /// Builds everything from `tls`, failing on the first file that does not load.
    pub fn load(tls: &TlsConfig) -> Result<Self, LoadError> {
        Ok(Self { mode: tls.client_mode(), tls: load_tls(tls)?, rsa: load_rsa(tls)? })
    }

    /// True when the greeting offers `CLIENT_SSL`.
    pub fn offers_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// True when clients without TLS are refused (also when TLS could not be loaded: fail closed).
    pub fn is_required(&self) -> bool {
        self.mode == ClientTlsMode::Required
    }
}

fn load_tls(tls: &TlsConfig) -> Result<Option<tokio_rustls::TlsAcceptor>, LoadError> {
    let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else { return Ok(None) };
    if tls.client_mode() == ClientTlsMode::Disabled {
        return Ok(None);
    }
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| LoadError::Rustls { what: "client TLS versions", source })?
        .with_no_client_auth()
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|source| LoadError::Rustls { what: "tls.cert and tls.key", source })?;
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
}

fn load_rsa(tls: &TlsConfig) -> Result<RsaSource, LoadError> {
    let Some(path) = &tls.rsa_private_key else { return Ok(RsaSource::Generated) };
    let pem = read(path)?;
    let pem = String::from_utf8(pem).map_err(|_| LoadError::Empty { path: path.clone(), what: "RSA private key" })?;
    let key = RsaKey::from_pem(&pem).map_err(|source| LoadError::Rsa { path: path.clone(), source })?;
    Ok(RsaSource::Loaded(Arc::new(key)))
}

/// The TLS and key state shared by all sessions (a field of [`super::Front`]).
pub struct Tls {
    acceptor: ArcSwap<Acceptor>,
    backend: Arc<ArcSwap<Connector>>,
    generated: Arc<tokio::sync::OnceCell<Option<Arc<RsaKey>>>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("acceptor", &self.acceptor.load()).field("backend", &self.backend.load()).finish()
    }
}

impl Tls {
    /// The startup state. Never fails: what does not load is logged at `error` and left out, as
    /// MySQL does. Client TLS `"preferred"` then runs without TLS; `"required"` refuses every
    /// client; an unloadable RSA key refuses the RSA exchange; an unloadable backend CA makes
    /// backend connections fail in the modes that need TLS. [`Acceptor::load`] is the strict check.
    pub fn new(tls: &TlsConfig) -> Self {
        let client_tls = load_tls(tls).unwrap_or_else(|err| {
            tracing::error!(error = %err, mode = ?tls.client_mode(), "client TLS unavailable");
            None
        });
        let rsa = load_rsa(tls).unwrap_or_else(|err| {
            tracing::error!(error = %err, "caching_sha2_password RSA key unavailable; clients without TLS cannot do full authentication");
            RsaSource::Unavailable
        });
        let backend = Connector::from_config(tls).unwrap_or_else(|err| {
            tracing::error!(error = %err, mode = ?tls.backend, "backend TLS unavailable");
            Connector::unavailable(tls.backend)
        });
        Self {
            acceptor: ArcSwap::from_pointee(Acceptor { mode: tls.client_mode(), tls: client_tls, rsa }),
            backend: Arc::new(ArcSwap::from_pointee(backend)),
            generated: Arc::default(),
        }
    }

    /// Rebuilds the client acceptor, the RSA key and the backend connector from `tls` and swaps
    /// them in, all or nothing. On error the running ones stay and the error names the file.
    /// New connections use the new material; open ones keep theirs.
    pub fn reload(&self, tls: &TlsConfig) -> Result<(), LoadError> {
        let acceptor = Acceptor::load(tls)?;
        let backend = Connector::from_config(tls)?;
        self.acceptor.store(Arc::new(acceptor));
        self.backend.store(Arc::new(backend));
        tracing::debug!("TLS material reloaded");
        Ok(())
    }

    /// The client-side snapshot for one handshake.
    pub fn acceptor(&self) -> Arc<Acceptor> {
        self.acceptor.load_full()
    }

    /// The backend connector cell, shared with [`crate::backend::Pools::with_tls`].
    pub fn backend(&self) -> Arc<ArcSwap<Connector>> {
        self.backend.clone()
    }

    /// The RSA key for `acceptor`'s configuration: the loaded one, or one generated on first use
    /// (on a blocking thread; waits at most `timeout`, the generation itself finishes anyway).
    pub async fn rsa_key(&self, acceptor: &Acceptor, timeout: Duration) -> Option<Arc<RsaKey>> {
        match &acceptor.rsa {
            RsaSource::Loaded(key) => Some(key.clone()),
            RsaSource::Unavailable => None,
            RsaSource::Generated => {
                if let Some(done) = self.generated.get() {
                    return done.clone();
                }
                let cell = self.generated.clone();
                let task = tokio::spawn(async move { cell.get_or_init(generate).await.clone() });
                tokio::time::timeout(timeout, task).await.ok()?.ok()?
            }
        }
    }
}

async fn generate() -> Option<Arc<RsaKey>> {
    let started = Instant::now();
    match tokio::task::spawn_blocking(|| RsaKey::generate(GENERATED_RSA_BITS)).await {
        Ok(Ok(key)) => {
            tracing::info!(bits = GENERATED_RSA_BITS, took = ?started.elapsed(), "generated the caching_sha2_password RSA key (set tls.rsa_private_key to keep one)");
            Some(Arc::new(key))
        }
        Ok(Err(err)) => {
            tracing::error!(error = %err, "cannot generate the caching_sha2_password RSA key");
            None
        }
        Err(err) => {
            tracing::error!(error = %err, "RSA key generation task failed");
            None
        }
    }
}

impl ClientIo {
    /// True when the client's connection is TLS.
    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// Runs the TLS handshake after the client's `SSLRequest`, within `timeout`. Bytes the client
    /// sent right behind its request (the start of its TLS hello) are fed to the handshake first.
    pub(super) async fn start_tls(
        &mut self,
        acceptor: &tokio_rustls::TlsAcceptor,
        timeout: Duration,
    ) -> Result<(), WireError> {
        let Some(tcp) = self.stream.take_plain() else {
            return Err(WireError::malformed("SSL request (TLS already started)"));
        };
        let io = Prefixed { prefix: self.reader.take_buffered(), tcp };
        let tls =
            tokio::time::timeout(timeout, acceptor.accept(io)).await.map_err(|_| WireError::Timeout(timeout))??;
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }
}

impl Acceptor {
    /// The rustls acceptor, when TLS can be offered.
    pub(super) fn tls(&self) -> Option<&tokio_rustls::TlsAcceptor> {
        self.tls.as_ref()
    }
}

/// A TCP socket with bytes already read from it put back in front.
#[derive(Debug)]
pub struct Prefixed {
    prefix: BytesMut,
    tcp: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            return Pin::new(&mut this.tcp).poll_read(cx, buf);
        }
        let n = this.prefix.len().min(buf.remaining());
        buf.put_slice(&this.prefix[..n]);
        this.prefix.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}
