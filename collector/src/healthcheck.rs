//! `collector --healthcheck`: a dependency-free HTTP/1.1 probe of `GET /health`, for container
//! images without curl; over TLS ([`check_tls`]) when `COLLECTOR_TLS_CERT` is set. The plain
//! probe is shared with the demo services ([`demokit::lifecycle`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use demokit::lifecycle::probe_addr;

/// Sends `GET /health` to `addr` and succeeds on a 200 answer within `timeout`.
///
/// # Errors
/// A readable reason: connection refused, timeout, or the status line received.
pub async fn check(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    demokit::lifecycle::probe_health(addr, "/health", timeout).await
}

/// [`check`] over TLS, for a collector started with `COLLECTOR_TLS_CERT` ([`crate::tls`]):
/// the probe trusts exactly the certificate in `cert` (the leaf the collector presents),
/// whatever names it carries, since it probes its own process on loopback.
///
/// # Errors
/// As [`check`]; also when `cert` cannot be read or the collector presents another
/// certificate.
pub async fn check_tls(
    addr: SocketAddr,
    cert: &std::path::Path,
    timeout: Duration,
) -> Result<(), String> {
    use rustls_pki_types::pem::PemObject;
    use tokio_rustls::rustls;

    let leaf = rustls_pki_types::CertificateDer::from_pem_file(cert)
        .map_err(|e| format!("TLS certificate {}: {e}", cert.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedLeaf {
        leaf,
        algorithms: provider.signature_verification_algorithms,
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    tokio::time::timeout(timeout, async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {addr}: {e}"))?;
        demokit::lifecycle::probe_health_on(tls, addr, "/health").await
    })
    .await
    .map_err(|_| format!("no answer from {addr} within {timeout:?}"))?
}

/// Accepts exactly one end-entity certificate (signatures are still checked).
#[derive(Debug)]
struct PinnedLeaf {
    leaf: rustls_pki_types::CertificateDer<'static>,
    algorithms: tokio_rustls::rustls::crypto::WebPkiSupportedAlgorithms,
}

impl tokio_rustls::rustls::client::danger::ServerCertVerifier for PinnedLeaf {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<tokio_rustls::rustls::client::danger::ServerCertVerified, tokio_rustls::rustls::Error>
    {
        if end_entity.as_ref() == self.leaf.as_ref() {
            Ok(tokio_rustls::rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(tokio_rustls::rustls::Error::General(
                "the collector presents another certificate than COLLECTOR_TLS_CERT".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<
        tokio_rustls::rustls::client::danger::HandshakeSignatureValid,
        tokio_rustls::rustls::Error,
    > {
        tokio_rustls::rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<
        tokio_rustls::rustls::client::danger::HandshakeSignatureValid,
        tokio_rustls::rustls::Error,
    > {
        tokio_rustls::rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<tokio_rustls::rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
