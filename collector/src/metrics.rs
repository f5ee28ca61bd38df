//! Process-wide counters, served by `GET /health` (JSON) and `GET /metrics` (Prometheus text).
//!
//! Counters only grow; they are `Relaxed` atomics (exact totals, no ordering promises between
//! counters). Each group of counters renders its own Prometheus section with a
//! `render_prometheus(&self, out: &mut String)` function; [`Metrics::render_prometheus`]
//! appends every section.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

/// Ingest and storage counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// `POST` requests on the ingest port.
    pub ingest_requests: AtomicU64,
    /// Ingest requests answered with an error status.
    pub ingest_requests_failed: AtomicU64,
    /// Request body bytes read, before decompression.
    pub ingest_bytes: AtomicU64,
    /// Spans decoded from requests (accepted + rejected).
    pub spans_received: AtomicU64,
    /// Spans rejected individually (invalid ids, malformed elements).
    pub spans_rejected: AtomicU64,
    /// Spans newly committed to storage.
    pub spans_stored: AtomicU64,
    /// Spans ignored because the same `(trace_id, span_id, kind)` was already stored.
    pub spans_duplicate: AtomicU64,
    /// The same span counters, per ingest protocol.
    pub ingest: IngestMetrics,
}

impl Metrics {
    /// The counters as a JSON object (name → count).
    pub fn snapshot(&self) -> serde_json::Map<String, serde_json::Value> {
        let get = |c: &AtomicU64| serde_json::Value::from(c.load(Ordering::Relaxed));
        [
            ("ingest_requests", get(&self.ingest_requests)),
            ("ingest_requests_failed", get(&self.ingest_requests_failed)),
            ("ingest_bytes", get(&self.ingest_bytes)),
            ("spans_received", get(&self.spans_received)),
            ("spans_rejected", get(&self.spans_rejected)),
            ("spans_stored", get(&self.spans_stored)),
            ("spans_duplicate", get(&self.spans_duplicate)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Appends every metrics group in the Prometheus text exposition format (0.0.4).
    pub fn render_prometheus(&self, out: &mut String) {
        self.ingest.render_prometheus(out);
    }
}

/// `GET /metrics` (query port, DESIGN.md §4): Prometheus text format.
pub(crate) async fn prometheus(State(state): State<crate::AppState>) -> impl IntoResponse {
    let mut out = String::with_capacity(4096);
    state.metrics.render_prometheus(&mut out);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}

/// The ingest protocols, each with its own counters (label `protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/HTTP protobuf (`POST /v1/traces`, `application/x-protobuf`).
    OtlpProto,
    /// OTLP/HTTP JSON (`POST /v1/traces`, `application/json` object).
    OtlpJson,
    /// Zipkin v2 JSON (`POST /api/v2/spans`).
    Zipkin,
    /// The simple JSON array of DESIGN.md §4 (`POST /v1/traces`, `application/json` array).
    SimpleJson,
}

impl Protocol {
    /// Every protocol, in label order.
    pub const ALL: [Self; 4] = [
        Self::OtlpProto,
        Self::OtlpJson,
        Self::Zipkin,
        Self::SimpleJson,
    ];

    /// The `protocol` label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::OtlpProto => "otlp_proto",
            Self::OtlpJson => "otlp_json",
            Self::Zipkin => "zipkin",
            Self::SimpleJson => "simple_json",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::OtlpProto => 0,
            Self::OtlpJson => 1,
            Self::Zipkin => 2,
            Self::SimpleJson => 3,
        }
    }
}

/// Span and batch counters of one protocol.
#[derive(Debug, Default)]
pub struct ProtocolCounters {
    /// Requests decoded (batches), whatever their outcome in storage.
    pub batches: AtomicU64,
    /// Spans decoded (accepted + rejected).
    pub spans_received: AtomicU64,
    /// Spans newly committed to storage.
    pub spans_stored: AtomicU64,
    /// Spans rejected individually (invalid ids, malformed elements).
    pub spans_rejected: AtomicU64,
    /// Spans whose `(trace_id, span_id, kind)` was already stored (re-sent; not stored again).
    pub spans_deduplicated: AtomicU64,
}

/// Ingest counters by protocol.
#[derive(Debug, Default)]
pub struct IngestMetrics {
    by_protocol: [ProtocolCounters; 4],
}

impl IngestMetrics {
    /// The counters of `protocol`.
    pub fn protocol(&self, protocol: Protocol) -> &ProtocolCounters {
        &self.by_protocol[protocol.index()]
    }

    /// Appends the `spanline_ingest_*` families.
    pub fn render_prometheus(&self, out: &mut String) {
        type Pick = fn(&ProtocolCounters) -> &AtomicU64;
        let families: [(&str, &str, Pick); 5] = [
            (
                "spanline_ingest_batches_total",
                "Ingest requests decoded, by protocol.",
                |c| &c.batches,
            ),
            (
                "spanline_ingest_spans_received_total",
                "Spans decoded from ingest requests (accepted and rejected), by protocol.",
                |c| &c.spans_received,
            ),
            (
                "spanline_ingest_spans_stored_total",
                "Spans newly committed to storage, by protocol.",
                |c| &c.spans_stored,
            ),
            (
                "spanline_ingest_spans_rejected_total",
                "Spans rejected individually (invalid ids, malformed elements), by protocol.",
                |c| &c.spans_rejected,
            ),
            (
                "spanline_ingest_spans_deduplicated_total",
                "Re-sent spans already stored (same trace id, span id and kind), by protocol.",
                |c| &c.spans_deduplicated,
            ),
        ];
        for (name, help, pick) in families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for p in Protocol::ALL {
                let _ = writeln!(
                    out,
                    "{name}{{protocol=\"{}\"}} {}",
                    p.label(),
                    pick(self.protocol(p)).load(Ordering::Relaxed)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_protocol() {
        let m = Metrics::default();
        m.ingest
            .protocol(Protocol::Zipkin)
            .spans_stored
            .fetch_add(3, Ordering::Relaxed);
        let mut out = String::new();
        m.render_prometheus(&mut out);
        assert!(out.contains("spanline_ingest_spans_stored_total{protocol=\"zipkin\"} 3\n"));
        assert!(out.contains("# TYPE spanline_ingest_batches_total counter\n"));
        assert_eq!(out.matches("protocol=\"otlp_json\"").count(), 5);
    }
}
