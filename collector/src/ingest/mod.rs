//! # Ingest: wire formats → [`Span`]s → store
//!
//! `POST /v1/traces` (DESIGN.md §4, interop.md §1) dispatches on the media type of
//! `Content-Type` (parameters are ignored, except a JSON `charset` other than UTF-8, which is
//! 415: JSON is UTF-8, RFC 8259 §8.1):
//!
//! | media type | body | decoder |
//! |---|---|---|
//! | `application/x-protobuf` (`application/protobuf`) | OTLP `ExportTraceServiceRequest` | `otlp_proto` |
//! | `application/json`, body starts with `[` | array of simple spans | [`simple_json`] |
//! | `application/json`, body starts with `{` | OTLP JSON | `otlp_json` |
//!
//! `POST /api/v2/spans` takes a Zipkin v2 JSON list (`zipkin`) and answers 202. OTLP/gRPC
//! (`TraceService/Export`, its own port) is [`grpc`].
//!
//! Steps, each with its answer (reliability.md §7.1/7.2): unknown media type → 415 listing the
//! supported ones (plain text); unsupported `Content-Encoding` → 415 + `Accept-Encoding: gzip`;
//! a declared `Content-Length` over the limit → 413 before the body is read; body over the
//! limit **after** decompression → 413 (a gzip bomb inflates at most `limit + 1` bytes); the
//! bodies of all requests in flight past their budget → 503 + `Retry-After` ([`budget`]);
//! undecodable → 400; spans with invalid ids, or new spans of a trace that holds
//! `COLLECTOR_MAX_SPANS_PER_TRACE` spans → rejected one by one through OTLP partial success
//! (and counted), the rest stored; storage trouble → 503 + `Retry-After`. Success is
//! answered only after the spans are committed, in the request's encoding: protobuf → an
//! `ExportTraceServiceResponse` (0 bytes when everything was accepted), JSON → `{}`.
//!
//! Adding a format means writing a decoder `fn(&[u8], &SpanLimits) -> Result<Decoded, Error>`
//! and one dispatch arm. Every request is counted per [`Protocol`] (batches, spans received,
//! stored, rejected, deduplicated; `GET /metrics`).

/// The simple JSON codec, also used by the native query API.
pub use crate::format::simple_json;
pub mod budget;
pub mod grpc;
pub mod grpc_guard;
pub mod peers;

use std::io::Read;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;

use crate::AppState;
use crate::assemble::completeness::{ConsumerGroups, Shape};
use crate::error::{Error, ErrorFormat, quote};
use crate::format::{self, Decoded, WireFormat, zipkin};
use crate::metrics::Protocol;
use crate::sanitize::SpanLimits;

/// The supported request media types, as listed in 415 answers.
pub const SUPPORTED_CONTENT_TYPES: &str = "application/x-protobuf, application/json";
/// Bodies larger than this (bytes) are decompressed and decoded on a blocking thread.
const BLOCKING_THRESHOLD_BYTES: usize = 256 * 1024;

/// The error encoding that goes with a request encoding.
fn error_format(format: WireFormat) -> ErrorFormat {
    match format {
        WireFormat::Protobuf => ErrorFormat::OtlpProtobuf,
        WireFormat::Json => ErrorFormat::OtlpJson,
    }
}

/// `POST /v1/traces`.
pub(crate) async fn post_traces(State(state): State<AppState>, request: Request) -> Response {
    let metrics = &state.metrics;
    metrics.ingest_requests.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = request.into_parts();
    let format = match request_format(&parts.headers) {
        Ok(f) => f,
        Err(e) => {
            metrics
                .ingest_requests_failed
                .fetch_add(1, Ordering::Relaxed);
            return e.into_response_as(ErrorFormat::PlainText);
        }
    };
    match ingest(&state, &parts.headers, body, format).await {
        Ok(response) => response,
        Err(e) => {
            metrics
                .ingest_requests_failed
                .fetch_add(1, Ordering::Relaxed);
            e.into_response_as(error_format(format))
        }
    }
}

async fn ingest(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    format: WireFormat,
) -> Result<Response, Error> {
    let (protocol, decoded, reservation) =
        read_and_decode(state, headers, body, move |plain, limits| {
            format::decode(format, plain, limits)
        })
        .await?;
    let origin = peers::Origin::of(headers);
    let (rejected, error_message) = store_from(state, protocol, decoded, origin).await?;
    drop(reservation);
    Ok(success_response(format, rejected, error_message))
}

/// Reads the body (413 over the limit, declared or read, after gzip decompression when
/// `Content-Encoding` says so) and runs `decoder` on it, on a blocking thread for large or
/// compressed bodies. The returned [`budget::Reservation`] holds the body's share of the
/// in-flight budget: keep it until the answer.
async fn read_and_decode<F>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    decoder: F,
) -> Result<(Protocol, Decoded, budget::Reservation), Error>
where
    F: FnOnce(&[u8], &SpanLimits) -> Result<(Protocol, Decoded), Error> + Send + 'static,
{
    let limit = state.limits.max_body_bytes;
    let gzip = content_encoding_is_gzip(headers)?;
    let declared = declared_length(headers);
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Error::PayloadTooLarge { limit_bytes: limit });
    }
    let mut reservation = state.inflight.reserve();
    let raw = crate::connections::body_deadline(
        state.connection_limits.body_read_timeout,
        read_limited(body, limit, declared, &mut reservation),
    )
    .await?;
    state
        .metrics
        .ingest_bytes
        .fetch_add(raw.len() as u64, Ordering::Relaxed);
    let span_limits = state.limits.span;
    let raw_len = raw.len();
    let decode = move || -> Result<(Protocol, Decoded, budget::Reservation), Error> {
        let (protocol, decoded) = if gzip {
            decoder(
                &gunzip_limited(&raw, limit, &mut reservation)?,
                &span_limits,
            )?
        } else {
            decoder(&raw, &span_limits)?
        };
        Ok((protocol, decoded, reservation))
    };
    if raw_len > BLOCKING_THRESHOLD_BYTES || gzip {
        tokio::task::spawn_blocking(decode)
            .await
            .map_err(|e| Error::Internal(format!("decoder task failed: {e}")))?
    } else {
        decode()
    }
}

/// The `Content-Length` a request declares, when it is a number.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// [`store_from`] a client.
async fn store(
    state: &AppState,
    protocol: Protocol,
    decoded: Decoded,
) -> Result<(usize, Option<String>), Error> {
    store_from(state, protocol, decoded, peers::Origin::Client).await
}

/// Counts the decoded spans, stores the accepted ones this collector owns and forwards the
/// others to their owners ([`peers`], with `COLLECTOR_PEERS`), resolving after the commit and
/// every owner's acknowledgement, and returns `(rejected, partial-success message)`.
async fn store_from(
    state: &AppState,
    protocol: Protocol,
    decoded: Decoded,
    origin: peers::Origin,
) -> Result<(usize, Option<String>), Error> {
    let metrics = &state.metrics;
    let per = metrics.ingest.protocol(protocol);
    let received = (decoded.spans.len() + decoded.rejected) as u64;
    let rejected = decoded.rejected;
    per.batches.fetch_add(1, Ordering::Relaxed);
    per.spans_received.fetch_add(received, Ordering::Relaxed);
    per.spans_rejected
        .fetch_add(rejected as u64, Ordering::Relaxed);
    metrics
        .spans_received
        .fetch_add(received, Ordering::Relaxed);
    metrics
        .spans_rejected
        .fetch_add(rejected as u64, Ordering::Relaxed);
    let mut error_message = decoded.error_message();
    let (own, forwards) = match (&state.peers, origin) {
        (Some(peers), peers::Origin::Client) => peers.split(decoded.spans),
        (Some(peers), peers::Origin::Peer) => {
            peers.count_from_peer(decoded.spans.len());
            (decoded.spans, Vec::new())
        }
        (None, _) => (decoded.spans, Vec::new()),
    };
    // Consumer groups are learnt from every span this collector receives, its own and those
    // it forwards: a trace's owner then expects a queue's consumers even when it has stored
    // none of their spans yet (docs/scale.md).
    let forwarded_consumers: Vec<_> = forwards
        .iter()
        .flat_map(|(_, spans)| ConsumerGroups::seen_in(spans))
        .collect();
    let forwarding = async {
        match &state.peers {
            Some(peers) if !forwards.is_empty() => peers.forward_all(forwards).await,
            _ => Ok(peers::Forwarded::default()),
        }
    };
    let (outcome, forwarded) = tokio::join!(commit(state, own), forwarding);
    let (outcome, forwarded) = (outcome?, forwarded?);
    if !forwarded_consumers.is_empty() {
        ConsumerGroups::global().record(forwarded_consumers, std::time::Instant::now());
    }
    if !forwarded.messages.is_empty() {
        let note = forwarded.messages.join("; ");
        error_message = Some(match error_message {
            Some(earlier) => format!("{earlier}; {note}"),
            None => note,
        });
    }
    let over_limit = outcome.over_limit as u64;
    if over_limit > 0 {
        per.spans_rejected.fetch_add(over_limit, Ordering::Relaxed);
        metrics
            .spans_rejected
            .fetch_add(over_limit, Ordering::Relaxed);
        let note = format!(
            "{over_limit} spans refused: their trace holds the most spans a trace may have \
             (COLLECTOR_MAX_SPANS_PER_TRACE)"
        );
        error_message = Some(match error_message {
            Some(earlier) => format!("{note}; {earlier}"),
            None => note,
        });
    }
    per.spans_stored
        .fetch_add(outcome.stored as u64, Ordering::Relaxed);
    per.spans_deduplicated
        .fetch_add(outcome.duplicates as u64, Ordering::Relaxed);
    metrics
        .spans_stored
        .fetch_add(outcome.stored as u64, Ordering::Relaxed);
    metrics
        .spans_duplicate
        .fetch_add(outcome.duplicates as u64, Ordering::Relaxed);
    Ok((
        rejected + outcome.over_limit + forwarded.rejected,
        error_message,
    ))
}

/// Commits `spans` (resolving after the commit) and tells the settler and the consumer-group
/// registry about them.
async fn commit(
    state: &AppState,
    spans: Vec<crate::model::Span>,
) -> Result<crate::store::WriteOutcome, Error> {
    if spans.is_empty() {
        return Ok(crate::store::WriteOutcome::default());
    }
    let shapes: Vec<_> = spans.iter().map(|s| (s.trace_id, Shape::of(s))).collect();
    let consumers = ConsumerGroups::seen_in(&spans);
    let outcome = state.store.write_spans(spans).await?;
    ConsumerGroups::global().record(consumers, std::time::Instant::now());
    state.settler.observe(shapes, std::time::Instant::now());
    Ok(outcome)
}

/// `POST /api/v2/spans` (Zipkin v2 JSON, interop.md §4.1): 202 with an empty body once the
/// valid spans are committed; errors as plain text (400 not a v2 list or no valid span, 413,
/// 415 for protobuf or another media type, 503 storage busy).
pub(crate) async fn post_zipkin(State(state): State<AppState>, request: Request) -> Response {
    let metrics = &state.metrics;
    metrics.ingest_requests.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = request.into_parts();
    let result = async {
        zipkin_content_type(&parts.headers)?;
        let (protocol, decoded, reservation) =
            read_and_decode(&state, &parts.headers, body, |plain, limits| {
                zipkin::decode(plain, limits).map(|d| (Protocol::Zipkin, d))
            })
            .await?;
        let stored = store(&state, protocol, decoded).await;
        drop(reservation);
        stored
    }
    .await;
    match result {
        Ok(_) => StatusCode::ACCEPTED.into_response(),
        Err(e) => {
            metrics
                .ingest_requests_failed
                .fetch_add(1, Ordering::Relaxed);
            e.into_response_as(ErrorFormat::PlainText)
        }
    }
}

/// The media type of a `Content-Type` value, lower-cased, without parameters (`""` when
/// empty).
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Zipkin accepts JSON, and treats a missing content type as JSON.
fn zipkin_content_type(headers: &HeaderMap) -> Result<(), Error> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let raw = String::from_utf8_lossy(value.as_bytes()).into_owned();
    match media_type(&raw).as_str() {
        "" => Ok(()),
        "application/json" => json_charset(&raw),
        "application/x-protobuf" | "application/protobuf" => Err(Error::UnsupportedMediaType(
            "Zipkin protobuf (ListOfSpans) is not supported; supported: application/json \
             (JSON_V2)"
                .into(),
        )),
        _ => Err(Error::UnsupportedMediaType(format!(
            "unsupported content type {}; supported: application/json (JSON_V2)",
            quote(&raw, 100)
        ))),
    }
}

/// Picks the decoder from `Content-Type`; 415 (plain text) when unsupported.
fn request_format(headers: &HeaderMap) -> Result<WireFormat, Error> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    match media_type(&raw).as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(WireFormat::Protobuf),
        "application/json" => json_charset(&raw).map(|()| WireFormat::Json),
        "" => Err(Error::UnsupportedMediaType(format!(
            "missing content type; supported: {SUPPORTED_CONTENT_TYPES}"
        ))),
        _ => Err(Error::UnsupportedMediaType(format!(
            "unsupported content type {}; supported: {SUPPORTED_CONTENT_TYPES}",
            quote(&raw, 100)
        ))),
    }
}

/// A JSON `Content-Type`'s `charset` parameter: none or UTF-8 (any case, `utf8` too), else
/// 415 (JSON exchanged between systems is UTF-8, RFC 8259 §8.1).
fn json_charset(content_type: &str) -> Result<(), Error> {
    for parameter in content_type.split(';').skip(1) {
        let Some((name, value)) = parameter.split_once('=') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("charset") {
            continue;
        }
        let value = value.trim().trim_matches('"');
        if !(value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8")) {
            return Err(Error::UnsupportedMediaType(format!(
                "unsupported charset {} for JSON; JSON must be UTF-8 (RFC 8259 §8.1)",
                quote(value, 40)
            )));
        }
    }
    Ok(())
}

/// `Content-Encoding`: none or `identity` → false, `gzip`/`x-gzip` → true, else 415.
fn content_encoding_is_gzip(headers: &HeaderMap) -> Result<bool, Error> {
    let mut gzip = false;
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let text = String::from_utf8_lossy(value.as_bytes());
        for coding in text.split(',').map(|c| c.trim().to_ascii_lowercase()) {
            match coding.as_str() {
                "" | "identity" => {}
                "gzip" | "x-gzip" if !gzip => gzip = true,
                _ => return Err(Error::UnsupportedEncoding(quote(&text, 100))),
            }
        }
    }
    Ok(gzip)
}

/// Reads the whole body, failing with 413 as soon as it exceeds `limit` bytes and with 503
/// when the in-flight budget cannot hold it. A declared length is reserved (and allocated)
/// at once; otherwise each frame is reserved as it arrives.
async fn read_limited(
    body: Body,
    limit: usize,
    declared: Option<u64>,
    reservation: &mut budget::Reservation,
) -> Result<Vec<u8>, Error> {
    let expected = declared.map_or(0, |n| usize::try_from(n).unwrap_or(limit).min(limit));
    reservation.grow(expected)?;
    let mut out: Vec<u8> = Vec::with_capacity(expected);
    let mut body = std::pin::pin!(Limited::new(body, limit));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if e.is::<LengthLimitError>() {
                Error::PayloadTooLarge { limit_bytes: limit }
            } else {
                Error::BadRequest(format!(
                    "failed to read the request body: {}",
                    quote(&e.to_string(), 200)
                ))
            }
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let spare = out.capacity() - out.len();
        if data.len() > spare {
            reservation.grow(data.len() - spare)?;
        }
        out.extend_from_slice(&data);
    }
    Ok(out)
}

/// Inflates gzip (several members allowed), never producing more than `limit + 1` bytes,
/// and reserving each growth of the output in the in-flight budget first.
fn gunzip_limited(
    compressed: &[u8],
    limit: usize,
    reservation: &mut budget::Reservation,
) -> Result<Vec<u8>, Error> {
    const CHUNK_BYTES: usize = 64 * 1024;
    let invalid = |e: std::io::Error| {
        Error::BadRequest(format!(
            "invalid gzip stream: {}",
            quote(&e.to_string(), 200)
        ))
    };
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; CHUNK_BYTES];
    let mut decoder = flate2::read::MultiGzDecoder::new(compressed).take(limit as u64 + 1);
    loop {
        let n = match decoder.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(invalid(e)),
        };
        if out.len() + n > out.capacity() {
            let capacity = (out.capacity() * 2)
                .max(out.len() + n)
                .max(CHUNK_BYTES)
                .min(limit + 1);
            reservation.grow(capacity - out.capacity())?;
            out.reserve_exact(capacity - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
    if out.len() > limit {
        return Err(Error::PayloadTooLarge { limit_bytes: limit });
    }
    Ok(out)
}

/// 200 with an OTLP `ExportTraceServiceResponse` in the request's encoding; `partial_success`
/// set only when spans were rejected or changed (interop.md §1.5).
fn success_response(format: WireFormat, rejected: usize, message: Option<String>) -> Response {
    let partial = message.map(|error_message| ExportTracePartialSuccess {
        rejected_spans: i64::try_from(rejected).unwrap_or(i64::MAX),
        error_message,
    });
    match format {
        WireFormat::Protobuf => {
            let body = ExportTraceServiceResponse {
                partial_success: partial,
            }
            .encode_to_vec();
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/x-protobuf")],
                body,
            )
                .into_response()
        }
        WireFormat::Json => {
            let body = match partial {
                None => serde_json::json!({}),
                Some(p) => serde_json::json!({
                    "partialSuccess": {
                        "rejectedSpans": p.rejected_spans.to_string(),
                        "errorMessage": p.error_message,
                    }
                }),
            };
            (StatusCode::OK, axum::Json(body)).into_response()
        }
    }
}

/// `GET /healthz` on either port: 200 while the process serves.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn content_type_dispatch() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert_eq!(request_format(&h).unwrap(), WireFormat::Json);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=\"UTF8\""),
        );
        assert_eq!(request_format(&h).unwrap(), WireFormat::Json);
        for other in [
            "application/json; charset=utf-16",
            "application/json;charset=ISO-8859-1",
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(other));
            let err = request_format(&h).unwrap_err();
            assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{other}");
            assert!(err.to_string().contains("UTF-8"), "{err}");
            assert!(zipkin_content_type(&h).is_err(), "{other}");
        }
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/<b>"));
        let msg = request_format(&h).unwrap_err().to_string();
        assert!(
            msg.contains(SUPPORTED_CONTENT_TYPES) && !msg.contains("<b>"),
            "{msg}"
        );
    }

    #[test]
    fn encodings() {
        let mut h = HeaderMap::new();
        assert!(!content_encoding_is_gzip(&h).unwrap());
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("GZIP"));
        assert!(content_encoding_is_gzip(&h).unwrap());
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static("gzip, gzip"),
        );
        assert!(content_encoding_is_gzip(&h).is_err());
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert!(content_encoding_is_gzip(&h).is_err());
    }

    #[test]
    fn gzip_bomb_stops_at_the_limit() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            enc.write_all(&zeros).unwrap();
        }
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 128 * 1024);
        let budget = std::sync::Arc::new(budget::InflightBudget::new(usize::MAX));
        let mut reservation = budget.reserve();
        let err = gunzip_limited(&bomb, 1 << 20, &mut reservation).unwrap_err();
        assert!(matches!(err, Error::PayloadTooLarge { .. }));
        assert!(reservation.held_bytes() <= (1 << 20) + 1);
        assert!(matches!(
            gunzip_limited(b"not gzip", 1 << 20, &mut reservation),
            Err(Error::BadRequest(_))
        ));
    }
}
