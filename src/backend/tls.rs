//! TLS towards backends: the rustls client configuration built from `[tls]`, one certificate
//! verifier per mode, and the PEM loading shared with the client side (`frontend::tls`).
//!
//! Verification is explicit: with `tls.backend_ca` the chain is always verified (and the host name
//! too in `"verify_identity"`); without it nothing is verified, which only `"preferred"` and
//! `"required"` allow (encryption against passive listeners, no protection from an active one).
//! Builds happen at startup and reload; nothing here runs per connection except the handshake.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;

use crate::config::{BackendTlsMode, TlsConfig};
use crate::protocol::stream::Stream;

/// A backend connection's transport.
pub type BackendStream = Stream<tokio_rustls::client::TlsStream<TcpStream>>;

/// Why TLS material could not be loaded. Names the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The configured path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file holds no PEM item of the kind needed.
    #[error("{} contains no PEM {what}", path.display())]
    Empty {
        /// The configured path.
        path: PathBuf,
        /// What was looked for.
        what: &'static str,
    },
    /// rustls refused the material (key not matching the certificate, unsupported algorithm, ...).
    #[error("{what}: {source}")]
    Rustls {
        /// What was being built.
        what: &'static str,
        /// rustls' reason.
        source: rustls::Error,
    },
    /// The CA file's certificates are unusable as trust anchors.
    #[error("{}: {source}", path.display())]
    Verifier {
        /// The configured path.
        path: PathBuf,
        /// Why.
        source: rustls::client::VerifierBuilderError,
    },
    /// The RSA key file is not a usable RSA private key.
    #[error("{}: {source}", path.display())]
    Rsa {
        /// The configured path.
        path: PathBuf,
        /// Why.
        source: crate::protocol::sha2::RsaError,
    },
}

/// The crypto provider used on both sides (ring; no aws-lc).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    let bytes = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| LoadError::Read { path: path.to_owned(), source })?;
    if certs.is_empty() {
        return Err(LoadError::Empty { path: path.to_owned(), what: "certificate" });
    }
    Ok(certs)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, LoadError> {
    let bytes = read(path)?;
    rustls_pemfile::private_key(&mut bytes.as_slice())
        .map_err(|source| LoadError::Read { path: path.to_owned(), source })?
        .ok_or_else(|| LoadError::Empty { path: path.to_owned(), what: "private key" })
}

/// Reads a whole file, naming it on failure.
pub fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Read { path: path.to_owned(), source })
}

/// How backend connections do TLS; one immutable snapshot, swapped on reload.
#[derive(Clone, Default)]
pub struct Connector {
    mode: BackendTlsMode,
    config: Option<Arc<rustls::ClientConfig>>,
    public_key_retrieval: bool,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("mode", &self.mode)
            .field("public_key_retrieval", &self.public_key_retrieval)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Builds the connector for `tls.backend`, reading `tls.backend_ca` when set.
    pub fn from_config(tls: &TlsConfig) -> Result<Self, LoadError> {
        let public_key_retrieval = tls.backend_public_key_retrieval;
        if tls.backend == BackendTlsMode::Disabled {
            return Ok(Self { mode: tls.backend, config: None, public_key_retrieval });
        }
        let provider = provider();
        let verifier: Arc<dyn ServerCertVerifier> = match &tls.backend_ca {
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in load_certs(path)? {
                    roots
                        .add(cert)
                        .map_err(|source| LoadError::Rustls { what: "tls.backend_ca certificate", source })?;
                }
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|source| LoadError::Verifier { path: path.clone(), source })?;
                if tls.backend == BackendTlsMode::VerifyIdentity {
                    webpki
                } else {
                    Arc::new(ChainOnly(webpki))
                }
            }
            None => Arc::new(Unverified(provider.clone())),
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|source| LoadError::Rustls { what: "backend TLS versions", source })?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Self { mode: tls.backend, config: Some(Arc::new(config)), public_key_retrieval })
    }

    /// A connector for `mode` whose TLS material did not load: plain connections where the mode
    /// allows them, an error where it requires TLS (fail closed).
    pub fn unavailable(mode: BackendTlsMode) -> Self {
        Self { mode, config: None, public_key_retrieval: false }
    }

    /// The configured mode.
    pub fn mode(&self) -> BackendTlsMode {
        self.mode
    }

    /// True when TLS should be started with a server that offers it.
    pub fn is_enabled(&self) -> bool {
        self.config.is_some()
    }

    /// Whether a backend's RSA public key may be requested over a plain connection.
    pub fn allows_public_key_retrieval(&self) -> bool {
        self.public_key_retrieval
    }

    /// Runs the TLS handshake on `tcp` (after the `SSLRequest` was sent). `host` is the configured
    /// backend host: the SNI and, in `"verify_identity"`, the name the certificate must carry.
    pub async fn connect(&self, tcp: TcpStream, host: &str) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let Some(config) = &self.config else {
            return Err(io::Error::other("backend TLS is disabled"));
        };
        let name = ServerName::try_from(host.to_owned()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{host:?} is not a valid TLS server name"))
        })?;
        tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp).await
    }
}

/// Verifies the chain against the CA but accepts any host name (`"verify_ca"`, and
/// `"preferred"`/`"required"` with a CA).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Accepts any certificate (no CA configured, `"preferred"`/`"required"`); the handshake
/// signatures are still checked against the presented key.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
