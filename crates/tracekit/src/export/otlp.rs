//! [`OtlpHttpExporter`]: OTLP/HTTP with binary protobuf (`POST /v1/traces`,
//! `Content-Type: application/x-protobuf`), classified for the batch processor's retries.
//!
//! Classification follows the OTLP specification (§OTLP/HTTP Response, §Failures,
//! §Retryable Response Codes): 2xx is success (a populated `partial_success` reports
//! rejected spans); 429, 502, 503 and 504 are retryable, honouring `Retry-After` given as
//! delta-seconds or an HTTP-date, capped at 600 s; connection failures and timeouts are
//! retryable; every other status is permanent.

use std::fmt;
use std::time::{Duration, SystemTime};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};

use crate::export::{ExportError, ExportOutcome, SpanExporter};
use crate::resource::Resource;
use crate::span::SpanData;

mod encode;

#[cfg(test)]
mod tests;

use encode::RequestTemplate;

/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: the full traces URL, used as is.
pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_ENDPOINT`: the base URL; `/v1/traces` is appended.
pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_HEADERS`: headers sent with every export request, `key=value` pairs
/// separated by commas, values percent-decoded (e.g. `Authorization=Bearer%20abc`).
pub const OTEL_EXPORTER_OTLP_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
/// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`: as [`OTEL_EXPORTER_OTLP_HEADERS`], for traces only;
/// its keys win over the same keys there.
pub const OTEL_EXPORTER_OTLP_TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
/// The traces URL when neither variable is set.
pub const DEFAULT_TRACES_ENDPOINT: &str = "http://localhost:4318/v1/traces";

/// The longest `Retry-After` honoured (opentelemetry-rust uses the same cap).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// Requests larger than this are not sent (the OTLP recommended server limit).
const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;
/// The most of a success response read (the OTLP client response limit).
const MAX_SUCCESS_BODY_BYTES: usize = 4 * 1024 * 1024;
/// The most of an error response read, for the error message.
const MAX_ERROR_BODY_BYTES: usize = 4 * 1024;
/// Characters of an error body quoted in [`ExportError`] reasons.
const ERROR_EXCERPT_CHARS: usize = 200;

const PROTOBUF: &str = "application/x-protobuf";

/// Why an [`OtlpHttpExporter`] could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OtlpConfigError {
    /// The endpoint is not a usable `http://` URL.
    #[error("invalid OTLP endpoint {url:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be created.
    #[error("cannot build the OTLP HTTP client: {0}")]
    Client(String),
    /// A header of `OTEL_EXPORTER_OTLP_HEADERS` is not a valid HTTP header.
    #[error("invalid OTLP header {name:?}: not a valid HTTP header name or value")]
    InvalidHeader {
        /// The header name given.
        name: String,
    },
}

/// Parses an `OTEL_EXPORTER_OTLP_HEADERS` value (OpenTelemetry SDK environment variable
/// specification, "Specifying headers via environment variables": the W3C Baggage format
/// without properties): `key=value` members separated by commas, whitespace around them
/// trimmed, values percent-decoded. Returns the pairs and the members that are not
/// `key=value` (for warnings).
///
/// # Examples
/// ```
/// let (headers, bad) = tracekit::export::parse_otlp_headers("Authorization=Bearer%20abc, x");
/// assert_eq!(headers, vec![("Authorization".to_owned(), "Bearer abc".to_owned())]);
/// assert_eq!(bad, vec!["x".to_owned()]);
/// ```
pub fn parse_otlp_headers(value: &str) -> (Vec<(String, String)>, Vec<String>) {
    let mut headers = Vec::new();
    let mut bad = Vec::new();
    for member in value.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        match member.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => headers.push((
                key.trim().to_owned(),
                crate::propagation::percent_decode(value.trim().as_bytes()),
            )),
            _ => bad.push(member.to_owned()),
        }
    }
    (headers, bad)
}

/// Exports batches as OTLP/HTTP binary protobuf to one endpoint.
///
/// Each batch becomes one `ExportTraceServiceRequest` with one `ResourceSpans` (the
/// resource given at construction, converted once) and one `ScopeSpans` (scope
/// `tracekit` and the crate version). The HTTP client is built once, keeps connections
/// alive, ignores proxy environment variables, follows no redirects and does not retry on
/// its own: the [`BatchSpanProcessor`](crate::export::BatchSpanProcessor) owns retries.
/// Its requests carry no trace context and are never traced.
///
/// Only plain `http://` endpoints are supported (the crate is built without TLS).
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use tracekit::Resource;
/// use tracekit::export::{BatchConfig, BatchSpanProcessor, OtlpHttpExporter};
///
/// let endpoint = OtlpHttpExporter::traces_endpoint_from_lookup(|k| std::env::var(k).ok());
/// let resource = Resource::new("checkout", Some("1.0.0"), []);
/// let exporter = OtlpHttpExporter::new(endpoint, resource, Duration::from_secs(10))?;
/// let processor = BatchSpanProcessor::new(exporter, BatchConfig::default());
/// # drop(processor);
/// # Ok::<(), tracekit::export::OtlpConfigError>(())
/// ```
pub struct OtlpHttpExporter {
    client: reqwest::Client,
    endpoint: Url,
    template: RequestTemplate,
    headers: HeaderMap,
}

impl OtlpHttpExporter {
    /// An exporter posting to `endpoint_url` (the full URL, including `/v1/traces`), with
    /// each request limited to `timeout` (connect, send and read; [`Duration::ZERO`] means
    /// no limit, as `OTEL_EXPORTER_OTLP_TIMEOUT=0` does).
    ///
    /// # Errors
    /// [`OtlpConfigError::InvalidEndpoint`] unless the URL parses, is `http://` and has a
    /// host; [`OtlpConfigError::Client`] if the HTTP client cannot be created.
    pub fn new(
        endpoint_url: String,
        resource: Resource,
        timeout: Duration,
    ) -> Result<OtlpHttpExporter, OtlpConfigError> {
        let invalid = |reason: &str| OtlpConfigError::InvalidEndpoint {
            url: endpoint_url.clone(),
            reason: reason.to_owned(),
        };
        let endpoint = Url::parse(endpoint_url.trim()).map_err(|e| invalid(&e.to_string()))?;
        match endpoint.scheme() {
            "http" => {}
            "https" => {
                return Err(invalid(
                    "https needs TLS, which this build does not include",
                ));
            }
            _ => return Err(invalid("the scheme must be http")),
        }
        if endpoint.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host"));
        }
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            .user_agent(concat!("tracekit/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(60));
        if !timeout.is_zero() {
            builder = builder.timeout(timeout);
        }
        let client = builder
            .build()
            .map_err(|e| OtlpConfigError::Client(error_chain(&e)))?;
        Ok(OtlpHttpExporter {
            client,
            endpoint,
            template: RequestTemplate::new(&resource),
            headers: HeaderMap::new(),
        })
    }

    /// The same exporter, sending `headers` (name, value) with every request (e.g. from
    /// [`parse_otlp_headers`]: `Authorization: Bearer …`).
    ///
    /// # Errors
    /// [`OtlpConfigError::InvalidHeader`] for a name or value HTTP does not allow.
    pub fn with_headers(
        mut self,
        headers: &[(String, String)],
    ) -> Result<OtlpHttpExporter, OtlpConfigError> {
        for (name, value) in headers {
            let invalid = || OtlpConfigError::InvalidHeader { name: name.clone() };
            let header_name =
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
            let mut header_value =
                reqwest::header::HeaderValue::from_str(value).map_err(|_| invalid())?;
            header_value.set_sensitive(true);
            self.headers.insert(header_name, header_value);
        }
        Ok(self)
    }

    /// The traces URL from the OTLP exporter environment variables, read through `lookup`:
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as is; else `OTEL_EXPORTER_OTLP_ENDPOINT` with
    /// `/v1/traces` appended (one slash either way); else [`DEFAULT_TRACES_ENDPOINT`].
    /// Empty values count as unset.
    ///
    /// # Examples
    /// ```
    /// use tracekit::export::OtlpHttpExporter;
    ///
    /// let url = OtlpHttpExporter::traces_endpoint_from_lookup(|k| {
    ///     (k == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://collector:4318/".to_owned())
    /// });
    /// assert_eq!(url, "http://collector:4318/v1/traces");
    /// ```
    pub fn traces_endpoint_from_lookup(lookup: impl Fn(&str) -> Option<String>) -> String {
        let get = |key: &str| {
            lookup(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if let Some(url) = get(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) {
            return url;
        }
        if let Some(base) = get(OTEL_EXPORTER_OTLP_ENDPOINT) {
            let sep = if base.ends_with('/') { "" } else { "/" };
            return format!("{base}{sep}v1/traces");
        }
        DEFAULT_TRACES_ENDPOINT.to_owned()
    }

    /// The URL batches are posted to.
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }
}

impl fmt::Debug for OtlpHttpExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpHttpExporter")
            .field("endpoint", &self.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

impl SpanExporter for OtlpHttpExporter {
    fn export(
        &mut self,
        batch: &[Box<SpanData>],
    ) -> impl Future<Output = Result<ExportOutcome, ExportError>> + Send {
        let body = (!batch.is_empty()).then(|| self.template.encode(batch));
        let client = &self.client;
        let endpoint = &self.endpoint;
        let headers = &self.headers;
        async move {
            let Some(body) = body else {
                return Ok(ExportOutcome::Accepted);
            };
            if body.len() > MAX_REQUEST_BYTES {
                return Err(ExportError::Rejected {
                    reason: format!(
                        "request of {} bytes exceeds the {MAX_REQUEST_BYTES}-byte limit",
                        body.len()
                    ),
                });
            }
            post(client, endpoint, headers, body).await
        }
    }
}

async fn post(
    client: &reqwest::Client,
    url: &Url,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> Result<ExportOutcome, ExportError> {
    let mut response = client
        .post(url.clone())
        .headers(headers.clone())
        .header(CONTENT_TYPE, PROTOBUF)
        .body(body)
        .send()
        .await
        .map_err(|e| transport_error(&e))?;
    let status = response.status();
    let headers = response.headers().clone();
    let limit = if status.is_success() {
        MAX_SUCCESS_BODY_BYTES
    } else {
        MAX_ERROR_BODY_BYTES
    };
    // A body that cannot be read in full is classified from what arrived: the status has
    // already decided the outcome.
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(limit);
    classify(status, &headers, &body, SystemTime::now())
}

/// Classifies a response (see the module docs). `now` dates an HTTP-date `Retry-After`.
fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<ExportOutcome, ExportError> {
    if status.is_success() {
        // An undecodable body on 2xx still means the data was accepted.
        let partial = ExportTraceServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success);
        return Ok(match partial {
            Some(p) if p.rejected_spans > 0 => ExportOutcome::PartiallyRejected {
                rejected: u64::try_from(p.rejected_spans).unwrap_or(0),
                message: p.error_message,
            },
            _ => ExportOutcome::Accepted,
        });
    }
    let excerpt = error_excerpt(headers, body);
    let reason = if excerpt.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {excerpt}")
    };
    match status.as_u16() {
        429 | 502 | 503 | 504 => Err(ExportError::Retryable {
            reason,
            retry_after: headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, now)),
        }),
        _ => Err(ExportError::Rejected { reason }),
    }
}

/// `Retry-After` as delta-seconds or an HTTP-date, capped at 600 s; a date in the past is 0.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let delay = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: only overflow can fail, which is "very long".
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// `google.rpc.Status`, the OTLP error body (only the fields we read).
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// A short, printable description of an error body: the `google.rpc.Status` message of a
/// protobuf body, else the start of the body as text.
fn error_excerpt(headers: &HeaderMap, body: &[u8]) -> String {
    let is_protobuf = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with(PROTOBUF));
    let text = if is_protobuf {
        match RpcStatus::decode(body) {
            Ok(s) => s.message,
            Err(_) => String::from_utf8_lossy(body).into_owned(),
        }
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    let text = text.trim();
    let mut out: String = text
        .chars()
        .take(ERROR_EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(ERROR_EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// No response: connection refused or reset, timeout, DNS... all retryable, except a
/// request that could not even be built.
fn transport_error(e: &reqwest::Error) -> ExportError {
    let reason = error_chain(e);
    if e.is_builder() {
        ExportError::Rejected { reason }
    } else {
        ExportError::Retryable {
            reason,
            retry_after: None,
        }
    }
}

/// An error and its sources, `": "`-separated (skipping a source already quoted).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
