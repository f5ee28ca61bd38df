//! # Wire formats: every codec at the collector's edge
//!
//! | format | in | out |
//! |---|---|---|
//! | OTLP protobuf (`ExportTraceServiceRequest`) | [`otlp_proto`] | the ingest answer; `convert` (model ↔ OTLP messages, for the SQLite store) |
//! | OTLP JSON | [`otlp_json`] | the ingest answer; `otlp_json::encode_span` (Jaeger v3 API) |
//! | Zipkin v2 JSON | [`zipkin`] | |
//! | model → OTLP protobuf request | | [`otlp_export`] (forwarding to a peer collector) |
//! | the simple JSON array (DESIGN.md §4) | [`simple_json`] | [`simple_json::encode_span`] (native API) |
//!
//! Every decoder produces [`Span`](crate::model::Span)s through the same steps: validate the
//! ids (a bad one rejects its span alone, through OTLP partial success), convert, then
//! [`sanitize`](crate::sanitize::sanitize). The HTTP side (media types, gzip, limits, answers)
//! is in `ingest`.
//!
//! Adding a format means writing a decoder `fn(&[u8], &SpanLimits) -> Result<Decoded, Error>`
//! and one arm in [`decode`].

pub(crate) mod convert;
pub(crate) mod otlp;
pub(crate) mod otlp_export;
pub(crate) mod otlp_json;
pub(crate) mod otlp_proto;
pub(crate) mod proto_wire;
pub mod simple_json;
pub(crate) mod zipkin;

use crate::error::Error;
use crate::metrics::Protocol;
use crate::model::Span;
use crate::sanitize::SpanLimits;

/// Most messages quoted in a partial-success `error_message`.
const MAX_MESSAGES: usize = 20;
/// Longest partial-success `error_message`, bytes (responses stay far below 4 MiB).
const MAX_ERROR_MESSAGE_BYTES: usize = 4096;

/// The encoding of a request, and so of its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireFormat {
    Protobuf,
    Json,
}

/// What a decoder produced: accepted spans (already sanitized), plus rejections and warnings.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    pub(crate) spans: Vec<Span>,
    pub(crate) rejected: usize,
    /// `span <index>: <reason>` lines, rejections first, at most [`MAX_MESSAGES`].
    messages: Vec<String>,
    omitted_messages: usize,
}

impl Decoded {
    /// Records a rejected span; `index` counts spans in request order from 0.
    pub(crate) fn reject(&mut self, index: usize, reason: impl std::fmt::Display) {
        self.rejected += 1;
        self.message(format!("span {index}: {reason}"));
    }

    /// Records an accepted span, turning its sanitizer warnings into messages.
    pub(crate) fn accept(&mut self, index: usize, span: Span) {
        for warning in &span.warnings {
            self.message(format!("span {index}: {warning}"));
        }
        self.spans.push(span);
    }

    fn message(&mut self, text: String) {
        if self.messages.len() < MAX_MESSAGES {
            self.messages.push(text);
        } else {
            self.omitted_messages += 1;
        }
    }

    /// The partial-success message, or `None` when there is nothing to report.
    pub(crate) fn error_message(&self) -> Option<String> {
        if self.messages.is_empty() {
            return None;
        }
        let mut text = self.messages.join("; ");
        if self.omitted_messages > 0 {
            text.push_str(&format!("; and {} more", self.omitted_messages));
        }
        if text.len() > MAX_ERROR_MESSAGE_BYTES {
            let mut cut = MAX_ERROR_MESSAGE_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        Some(text)
    }
}

/// Entry points for the fuzz targets (`fuzz/`): each runs one decoder on arbitrary bytes
/// with the default span limits and returns how many spans it accepted, or `None` for an
/// error answer. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    use super::{Decoded, SpanLimits};

    fn accepted(result: Result<Decoded, crate::error::Error>) -> Option<usize> {
        result.ok().map(|d| d.spans.len())
    }

    /// OTLP protobuf (`ExportTraceServiceRequest`).
    pub fn otlp_proto(body: &[u8]) -> Option<usize> {
        accepted(super::otlp_proto::decode(body, &SpanLimits::default()))
    }

    /// OTLP protobuf (`ExportTraceServiceRequest`): the accepted spans (none for a malformed
    /// body), for benchmarks that carry them on (`collector/examples/request_bench.rs`).
    pub fn otlp_proto_spans(body: &[u8]) -> Vec<crate::model::Span> {
        super::otlp_proto::decode(body, &SpanLimits::default())
            .map(|d| d.spans)
            .unwrap_or_default()
    }

    /// OTLP JSON.
    pub fn otlp_json(body: &[u8]) -> Option<usize> {
        accepted(super::otlp_json::decode(body, &SpanLimits::default()))
    }

    /// Zipkin v2 JSON.
    pub fn zipkin(body: &[u8]) -> Option<usize> {
        accepted(super::zipkin::decode(body, &SpanLimits::default()))
    }

    /// The simple JSON array.
    pub fn simple_json(body: &[u8]) -> Option<usize> {
        accepted(super::simple_json::decode(body, &SpanLimits::default()))
    }
}

/// The UTF-8 byte order mark.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The answer to JSON that starts with a byte order mark (RFC 8259 §8.1: senders must not
/// add one), rather than a confusing "not JSON".
pub(crate) fn bom_error() -> Error {
    Error::BadRequest(
        "the JSON body starts with a UTF-8 byte order mark (EF BB BF); send it without one \
         (RFC 8259 §8.1)"
            .into(),
    )
}

/// Whether a JSON body starts with a UTF-8 byte order mark.
pub(crate) fn starts_with_bom(body: &[u8]) -> bool {
    body.starts_with(UTF8_BOM)
}

/// Decodes a `POST /v1/traces` body of the given encoding: protobuf is OTLP; JSON is an OTLP
/// request object (`{`) or an array of simple spans (`[`).
///
/// # Errors
/// [`Error::BadRequest`] when the body cannot be decoded at all.
pub(crate) fn decode(
    format: WireFormat,
    body: &[u8],
    limits: &SpanLimits,
) -> Result<(Protocol, Decoded), Error> {
    match format {
        WireFormat::Protobuf => Ok((Protocol::OtlpProto, otlp_proto::decode(body, limits)?)),
        WireFormat::Json if starts_with_bom(body) => Err(bom_error()),
        WireFormat::Json => match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => Ok((Protocol::SimpleJson, simple_json::decode(body, limits)?)),
            Some(b'{') => Ok((Protocol::OtlpJson, otlp_json::decode(body, limits)?)),
            Some(_) => Err(Error::BadRequest(
                "JSON body must be an OTLP request object or an array of simple spans".into(),
            )),
            None => Err(Error::BadRequest("empty JSON body".into())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_order_mark_gets_its_own_message() {
        for body in [&b"\xEF\xBB\xBF[]"[..], b"\xEF\xBB\xBF{}"] {
            let err = decode(WireFormat::Json, body, &SpanLimits::default()).unwrap_err();
            assert!(err.to_string().contains("byte order mark"), "{err}");
            let err = zipkin::decode(body, &SpanLimits::default()).unwrap_err();
            assert!(err.to_string().contains("byte order mark"), "{err}");
        }
    }
}
