//! # TLS on the collector's ports (issue 16 item 7)
//!
//! With `COLLECTOR_TLS_CERT` and `COLLECTOR_TLS_KEY` (PEM files: the certificate chain, leaf
//! first, and its private key in PKCS#8, PKCS#1 or SEC1 form), the ingest, OTLP/gRPC and
//! query ports speak TLS only (TLS 1.2 and 1.3, rustls with the ring provider): a plaintext
//! client gets no answer but a closed connection. The handshake must finish within
//! `COLLECTOR_HEADER_READ_TIMEOUT`, and it happens after a connection took its place among
//! `COLLECTOR_MAX_CONNECTIONS`. ALPN offers `http/1.1` on the HTTP ports and `h2` on the gRPC
//! port. The files are read once, at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Only one of the two files was given.
    #[error("COLLECTOR_TLS_CERT and COLLECTOR_TLS_KEY must be set together")]
    Incomplete,
    /// The certificate file cannot be read or holds no PEM certificate.
    #[error("TLS certificate {path}: {detail}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The key file cannot be read or holds no PEM private key.
    #[error("TLS key {path}: {detail}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("TLS certificate and key cannot be used together: {0}")]
    Config(String),
}

/// The acceptors of the three ports, made from one certificate and key.
#[derive(Clone)]
pub struct TlsAcceptors {
    /// For the HTTP/1.1 ports (ingest, query): ALPN `http/1.1`.
    pub http1: TlsAcceptor,
    /// For the OTLP/gRPC port: ALPN `h2`.
    pub h2: TlsAcceptor,
}

impl std::fmt::Debug for TlsAcceptors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsAcceptors")
    }
}

impl TlsAcceptors {
    /// Reads the PEM certificate chain at `cert` and the private key at `key`.
    ///
    /// # Errors
    /// [`TlsError`] when a file cannot be read, holds nothing usable, or the pair does not fit.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| TlsError::Certificate {
                path: cert.to_owned(),
                detail: e.to_string(),
            })?
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::Certificate {
                path: cert.to_owned(),
                detail: e.to_string(),
            })?;
        if chain.is_empty() {
            return Err(TlsError::Certificate {
                path: cert.to_owned(),
                detail: "no PEM certificate in the file".into(),
            });
        }
        let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
            path: key.to_owned(),
            detail: e.to_string(),
        })?;
        let config = |alpn: &[u8]| -> Result<TlsAcceptor, TlsError> {
            let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
            let mut config = ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError::Config(e.to_string()))?
                .with_no_client_auth()
                .with_single_cert(chain.clone(), private_key.clone_key())
                .map_err(|e| TlsError::Config(e.to_string()))?;
            config.alpn_protocols = vec![alpn.to_vec()];
            Ok(TlsAcceptor::from(Arc::new(config)))
        };
        Ok(Self {
            http1: config(b"http/1.1")?,
            h2: config(b"h2")?,
        })
    }

    /// The acceptors for `cert` and `key` when both are set, `None` when neither is.
    ///
    /// # Errors
    /// [`TlsError::Incomplete`] when only one is set; otherwise as
    /// [`from_pem_files`](Self::from_pem_files).
    pub fn from_config(cert: Option<&Path>, key: Option<&Path>) -> Result<Option<Self>, TlsError> {
        match (cert, key) {
            (Some(cert), Some(key)) => Self::from_pem_files(cert, key).map(Some),
            (None, None) => Ok(None),
            _ => Err(TlsError::Incomplete),
        }
    }
}
