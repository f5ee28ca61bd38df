//! Issue 16 item 7: TLS on the ingest, gRPC and query ports with a certificate made in the
//! test (rcgen, self-signed for `localhost`): HTTPS and gRPC over TLS work; plaintext
//! clients get no answer; unusable certificate settings are clear errors.

// Test helpers panic on failure by design (clippy only exempts `#[test]` bodies).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use collector::tls::{TlsAcceptors, TlsError};
use collector::{AppState, IngestLimits, MemoryStore};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

const TRACE_HEX: &str = "8bf92f3577b34da6a3ce929d0e0e4736";

struct Certificate {
    _dir: tempfile::TempDir,
    cert_path: std::path::PathBuf,
    key_path: std::path::PathBuf,
    cert_pem: String,
    cert_der: rustls::pki_types::CertificateDer<'static>,
}

fn self_signed() -> Certificate {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, made.cert.pem()).unwrap();
    std::fs::write(&key_path, made.signing_key.serialize_pem()).unwrap();
    Certificate {
        _dir: dir,
        cert_path,
        key_path,
        cert_pem: made.cert.pem(),
        cert_der: made.cert.der().clone(),
    }
}

async fn start(cert: &Certificate) -> common::WithGrpc {
    let tls = TlsAcceptors::from_pem_files(&cert.cert_path, &cert.key_path).unwrap();
    let state = AppState::new(Arc::new(MemoryStore::new()), IngestLimits::default()).with_tls(tls);
    common::serve_with_grpc_on_loopback(state).await
}

/// One HTTP/1.1 exchange over TLS, trusting only `cert`: the raw answer.
async fn https(cert: &Certificate, addr: SocketAddr, head: &str, body: &[u8]) -> String {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert_der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    // The server may close without a TLS close_notify after `Connection: close`.
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut raw)).await;
    String::from_utf8_lossy(&raw).into_owned()
}

/// What a plaintext HTTP client gets: never an HTTP answer, and the connection is closed.
async fn plaintext_answer(addr: SocketAddr) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw)).await;
    assert!(
        read.is_ok(),
        "the plaintext connection is closed within 10 s"
    );
    raw
}

fn export_request() -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![0x9b; 16],
                    span_id: vec![1; 8],
                    name: "over tls".into(),
                    kind: 2,
                    start_time_unix_nano: 1_763_700_000_000_000_000,
                    end_time_unix_nano: 1_763_700_000_050_000_000,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_port_speaks_tls_and_refuses_plaintext() {
    let cert = self_signed();
    let running = start(&cert).await;

    // Ingest and query over HTTPS.
    let span = format!(
        r#"[{{"trace_id": "{TRACE_HEX}", "span_id": "00f067aa0ba902b7", "operation_name": "op",
            "start_time": 1763700000.0, "end_time": 1763700000.5,
            "resource_attributes": {{"service.name": "tls"}}}}]"#
    );
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        span.len()
    );
    let answer = https(&cert, running.ingest, &head, span.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let read = https(
        &cert,
        running.query,
        &format!(
            "GET /v1/traces/{TRACE_HEX} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        ),
        b"",
    )
    .await;
    assert!(read.starts_with("HTTP/1.1 200"), "{read}");
    assert!(read.contains("00f067aa0ba902b7"), "{read}");

    // Plaintext HTTP gets no HTTP answer on either port.
    for addr in [running.ingest, running.query] {
        let raw = plaintext_answer(addr).await;
        assert!(
            !raw.starts_with(b"HTTP/"),
            "{}",
            String::from_utf8_lossy(&raw)
        );
    }

    // `collector --healthcheck` over TLS trusts exactly the configured certificate.
    let probe = |cert: std::path::PathBuf| async move {
        collector::healthcheck::check_tls(running.query, &cert, Duration::from_secs(5)).await
    };
    probe(cert.cert_path.clone()).await.unwrap();
    let other = self_signed();
    assert!(probe(other.cert_path.clone()).await.is_err());
    assert!(
        collector::healthcheck::check(running.query, Duration::from_secs(5))
            .await
            .is_err(),
        "the plain probe gets no HTTP answer"
    );

    // gRPC over TLS trusting the certificate; plaintext gRPC fails.
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&cert.cert_pem))
        .domain_name("localhost");
    let channel = tonic::transport::Channel::from_shared(format!("https://{}", running.grpc))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    TraceServiceClient::new(channel)
        .export(export_request())
        .await
        .unwrap();
    let plain = async {
        let Ok(mut client) = TraceServiceClient::connect(format!("http://{}", running.grpc)).await
        else {
            return false;
        };
        client.export(export_request()).await.is_ok()
    };
    let plain = tokio::time::timeout(Duration::from_secs(15), plain).await;
    assert!(
        !matches!(plain, Ok(true)),
        "a plaintext gRPC export must not succeed"
    );
}

#[test]
fn unusable_certificate_settings_are_clear_errors() {
    let cert = self_signed();
    assert!(matches!(
        TlsAcceptors::from_config(Some(&cert.cert_path), None),
        Err(TlsError::Incomplete)
    ));
    assert!(matches!(TlsAcceptors::from_config(None, None), Ok(None)));
    // The key where the certificate belongs: no certificate in the file.
    let err = TlsAcceptors::from_pem_files(&cert.key_path, &cert.key_path).unwrap_err();
    assert!(matches!(err, TlsError::Certificate { .. }), "{err}");
    assert!(err.to_string().contains("key.pem"), "{err}");
    let missing = cert.cert_path.with_file_name("missing.pem");
    let err = TlsAcceptors::from_pem_files(&cert.cert_path, &missing).unwrap_err();
    assert!(matches!(err, TlsError::Key { .. }), "{err}");
    // A key that does not belong to the certificate.
    let other = self_signed();
    let err = TlsAcceptors::from_pem_files(&cert.cert_path, &other.key_path).unwrap_err();
    assert!(matches!(err, TlsError::Config(_)), "{err}");
}
