//! Process metrics, served by `GET /health` (counters as JSON) and `GET /metrics`
//! (Prometheus text format 0.0.4).
//!
//! Counters only grow; they are `Relaxed` atomics (exact totals, no ordering promises between
//! counters).
//!
//! `/metrics` is composed of sections: each group of metrics renders its own block of
//! `# HELP` / `# TYPE` / samples into the output string ([`Metrics::render_counters`],
//! [`IngestMetrics::render_prometheus`], [`RedMetrics::render`],
//! [`LatencyHistograms::render`], [`render_storage`]), and
//! [`render_prometheus`] concatenates them. A new group adds one function and one call.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `spanline_ingest_requests_total`, `..._failed_total`, `spanline_ingest_bytes_total`, `spanline_spans_{received,rejected,stored,duplicate}_total` | counter | – |
//! | `spanline_traces_finished_{complete,incomplete,evicted}_total`, `spanline_tail_traces_lost_total` | counter | – (finished traces: [`crate::assemble::settle`], `GET /v1/tail`) |
//! | `spanline_ingest_batches_total`, `spanline_ingest_spans_{received,stored,rejected,deduplicated}_total` | counter | `protocol`: `otlp_proto`, `otlp_json`, `zipkin`, `simple_json`, `otlp_grpc` |
//! | `spanline_requests_total` | counter | `service`, `operation`: SERVER and CONSUMER spans stored (RED: rate) |
//! | `spanline_request_errors_total` | counter | `service`, `operation`: those with status error (RED: errors) |
//! | `spanline_request_duration_seconds` | histogram | `service`, `operation` (RED: duration) |
//! | `spanline_query_request_duration_seconds` | histogram | `route` (the route template), `status` (HTTP status class, `2xx`...) |
//! | `spanline_peer_{spans_forwarded,forward_failures,spans_from_peers,waits_proxied,wait_proxy_failures}_total` | counter | – (routing between collectors, [`crate::ingest::peers`]) |
//! | `spanline_storage_bytes` | gauge | – (database plus WAL files; absent for the memory store) |
//! | `spanline_store_commits_total` | counter | – |
//!
//! RED series are capped at [`MAX_RED_SERIES`] (service, operation) pairs; spans of further
//! pairs are counted under `operation="__other__"` of their service. Spans are counted when
//! their batch is committed (a retried batch whose spans were already stored counts again).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::fast_hash::FastHashMap;
use crate::model::{Span, SpanKind};

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
    /// Traces finished complete ([`crate::assemble::settle`]).
    pub traces_finished_complete: AtomicU64,
    /// Traces finished incomplete, after the settle time.
    pub traces_finished_incomplete: AtomicU64,
    /// Traces finished early to keep the settler's memory bounded.
    pub traces_finished_evicted: AtomicU64,
    /// Finished traces a slow `GET /v1/tail` reader lost.
    pub tail_traces_lost: AtomicU64,
    /// The same span counters, and batches, per ingest protocol.
    pub ingest: IngestMetrics,
    // --- query side ---
    /// RED metrics per (service, operation), from SERVER and CONSUMER spans.
    pub red: RedMetrics,
    /// Latency of the query API per route.
    pub query_latency: LatencyHistograms,
    /// Routing between collectors ([`crate::ingest::peers`]).
    pub peers: crate::ingest::peers::PeerMetrics,
    /// Root spans per (service, operation) for adaptive sampling ([`crate::sampling::adaptive`]).
    pub roots: crate::sampling::adaptive::RootThroughput,
}

impl Metrics {
    /// The counters as a JSON object (name → count).
    pub fn snapshot(&self) -> serde_json::Map<String, serde_json::Value> {
        self.counters()
            .into_iter()
            .map(|(k, _, v)| (k.to_owned(), serde_json::Value::from(v)))
            .collect()
    }

    fn counters(&self) -> [(&'static str, &'static str, u64); 11] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            (
                "ingest_requests",
                "POST requests on the ingest port",
                get(&self.ingest_requests),
            ),
            (
                "ingest_requests_failed",
                "ingest requests answered with an error status",
                get(&self.ingest_requests_failed),
            ),
            (
                "ingest_bytes",
                "request body bytes read, before decompression",
                get(&self.ingest_bytes),
            ),
            (
                "spans_received",
                "spans decoded from requests",
                get(&self.spans_received),
            ),
            (
                "spans_rejected",
                "spans rejected individually",
                get(&self.spans_rejected),
            ),
            (
                "spans_stored",
                "spans newly committed to storage",
                get(&self.spans_stored),
            ),
            (
                "spans_duplicate",
                "spans ignored as already stored",
                get(&self.spans_duplicate),
            ),
            (
                "traces_finished_complete",
                "traces finished complete",
                get(&self.traces_finished_complete),
            ),
            (
                "traces_finished_incomplete",
                "traces finished incomplete after the settle time",
                get(&self.traces_finished_incomplete),
            ),
            (
                "traces_finished_evicted",
                "traces finished early to bound memory",
                get(&self.traces_finished_evicted),
            ),
            (
                "tail_traces_lost",
                "finished traces lost by slow /v1/tail readers",
                get(&self.tail_traces_lost),
            ),
        ]
    }

    /// The ingest/storage counters section (`spanline_<name>_total`).
    pub fn render_counters(&self, out: &mut String) {
        for (name, help, value) in self.counters() {
            let _ = writeln!(out, "# HELP spanline_{name}_total Spanline: {help}.");
            let _ = writeln!(out, "# TYPE spanline_{name}_total counter");
            let _ = writeln!(out, "spanline_{name}_total {value}");
        }
    }
}

/// Histogram bucket bounds, seconds (shared by every histogram here).
pub const BUCKETS_S: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Most (service, operation) RED series kept.
pub const MAX_RED_SERIES: usize = 2000;

/// One histogram: per-bucket counts (not cumulative), the sum and the count.
#[derive(Debug, Clone, Default)]
struct Histogram {
    buckets: [u64; BUCKETS_S.len()],
    sum_ns: u128,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, ns: u64) {
        let seconds = ns as f64 / 1e9;
        if let Some(i) = BUCKETS_S.iter().position(|b| seconds <= *b) {
            self.buckets[i] += 1;
        }
        self.sum_ns += u128::from(ns);
        self.count += 1;
    }

    fn add(&mut self, other: &Histogram) {
        for (n, m) in self.buckets.iter_mut().zip(other.buckets) {
            *n += m;
        }
        self.sum_ns += other.sum_ns;
        self.count += other.count;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, n) in BUCKETS_S.iter().zip(self.buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum_ns as f64 / 1e9);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Debug, Clone, Default)]
struct Red {
    requests: u64,
    errors: u64,
    duration: Histogram,
}

impl Red {
    fn add(&mut self, other: &Red) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.duration.add(&other.duration);
    }
}

/// A batch's RED samples, per (service, operation) ([`RedMetrics::samples`]).
#[derive(Debug, Default)]
pub struct RedBatch(Vec<((String, String), Red)>);

/// Rate, errors and duration per (service, operation), from SERVER and CONSUMER spans.
#[derive(Debug, Default)]
pub struct RedMetrics {
    series: Mutex<FastHashMap<(String, String), Red>>,
}

impl RedMetrics {
    /// The SERVER and CONSUMER spans of a batch, counted per (service, operation) before the
    /// batch is handed to the store: one entry per distinct pair (a request's spans repeat a
    /// few pairs), so neither the strings nor the series' lock are taken per span.
    pub fn samples(spans: &[Span]) -> RedBatch {
        let mut by_pair: FastHashMap<(&str, &str), Red> = FastHashMap::default();
        for s in spans
            .iter()
            .filter(|s| matches!(s.kind, SpanKind::Server | SpanKind::Consumer))
        {
            let red = by_pair
                .entry((s.service_name.as_str(), s.name.as_str()))
                .or_default();
            red.requests += 1;
            red.errors += u64::from(s.is_error());
            red.duration.observe(s.duration_ns());
        }
        RedBatch(
            by_pair
                .into_iter()
                .map(|((service, operation), red)| {
                    ((service.to_owned(), operation.to_owned()), red)
                })
                .collect(),
        )
    }

    /// Counts the samples of a committed batch (see [`RedMetrics::samples`]).
    pub fn record(&self, batch: RedBatch) {
        if batch.0.is_empty() {
            return;
        }
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        for (mut key, add) in batch.0 {
            if !series.contains_key(&key) && series.len() >= MAX_RED_SERIES {
                key.1 = "__other__".to_owned();
            }
            series.entry(key).or_default().add(&add);
        }
    }

    /// The RED section.
    pub fn render(&self, out: &mut String) {
        let mut series: Vec<((String, String), Red)> = self
            .series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        let labels = |(service, operation): &(String, String)| {
            format!(
                "service=\"{}\",operation=\"{}\"",
                escape_label(service),
                escape_label(operation)
            )
        };
        out.push_str(
            "# HELP spanline_requests_total Spanline: SERVER and CONSUMER spans stored, by service and operation.\n\
             # TYPE spanline_requests_total counter\n",
        );
        for (key, red) in &series {
            let _ = writeln!(
                out,
                "spanline_requests_total{{{}}} {}",
                labels(key),
                red.requests
            );
        }
        out.push_str(
            "# HELP spanline_request_errors_total Spanline: SERVER and CONSUMER spans with status error.\n\
             # TYPE spanline_request_errors_total counter\n",
        );
        for (key, red) in &series {
            let _ = writeln!(
                out,
                "spanline_request_errors_total{{{}}} {}",
                labels(key),
                red.errors
            );
        }
        out.push_str(
            "# HELP spanline_request_duration_seconds Spanline: duration of SERVER and CONSUMER spans.\n\
             # TYPE spanline_request_duration_seconds histogram\n",
        );
        for (key, red) in &series {
            red.duration
                .render(out, "spanline_request_duration_seconds", &labels(key));
        }
    }
}

/// Latency histograms of the query API, by route template and status class.
#[derive(Debug, Default)]
pub struct LatencyHistograms {
    series: Mutex<HashMap<(String, &'static str), Histogram>>,
}

impl LatencyHistograms {
    /// Records one request.
    pub fn observe(&self, route: &str, status: u16, ns: u64) {
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((route.to_owned(), class))
            .or_default()
            .observe(ns);
    }

    /// The query-latency section.
    pub fn render(&self, out: &mut String) {
        let mut series: Vec<((String, &'static str), Histogram)> = self
            .series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        out.push_str(
            "# HELP spanline_query_request_duration_seconds Spanline: query API request latency.\n\
             # TYPE spanline_query_request_duration_seconds histogram\n",
        );
        for ((route, class), h) in &series {
            h.render(
                out,
                "spanline_query_request_duration_seconds",
                &format!("route=\"{}\",status=\"{class}\"", escape_label(route)),
            );
        }
    }
}

/// The storage section: size in bytes (when measurable) and the commit counter.
pub fn render_storage(out: &mut String, storage_bytes: Option<u64>, commits: u64) {
    if let Some(bytes) = storage_bytes {
        out.push_str(
            "# HELP spanline_storage_bytes Spanline: bytes used by the database and its WAL.\n\
             # TYPE spanline_storage_bytes gauge\n",
        );
        let _ = writeln!(out, "spanline_storage_bytes {bytes}");
    }
    out.push_str(
        "# HELP spanline_store_commits_total Spanline: storage commits.\n\
         # TYPE spanline_store_commits_total counter\n",
    );
    let _ = writeln!(out, "spanline_store_commits_total {commits}");
}

/// The whole `/metrics` page: every section in turn.
pub fn render_prometheus(metrics: &Metrics, storage_bytes: Option<u64>, commits: u64) -> String {
    let mut out = String::new();
    metrics.render_counters(&mut out);
    metrics.ingest.render_prometheus(&mut out);
    metrics.peers.render(&mut out);
    metrics.red.render(&mut out);
    metrics.query_latency.render(&mut out);
    render_storage(&mut out, storage_bytes, commits);
    out
}

/// Escapes a label value (backslash, double quote, newline).
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
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
    /// OTLP/gRPC (`TraceService/Export` on the gRPC port).
    OtlpGrpc,
}

impl Protocol {
    /// Every protocol, in label order.
    pub const ALL: [Self; 5] = [
        Self::OtlpProto,
        Self::OtlpJson,
        Self::Zipkin,
        Self::SimpleJson,
        Self::OtlpGrpc,
    ];

    /// The `protocol` label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::OtlpProto => "otlp_proto",
            Self::OtlpJson => "otlp_json",
            Self::Zipkin => "zipkin",
            Self::SimpleJson => "simple_json",
            Self::OtlpGrpc => "otlp_grpc",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::OtlpProto => 0,
            Self::OtlpJson => 1,
            Self::Zipkin => 2,
            Self::SimpleJson => 3,
            Self::OtlpGrpc => 4,
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
    by_protocol: [ProtocolCounters; 5],
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
    use crate::testing::sample_trace;

    #[test]
    fn red_and_latency_render_as_prometheus_text() {
        let m = Metrics::default();
        let mut spans = sample_trace(1);
        spans[2].name = "GET \"/users\"\n".into();
        m.red.record(RedMetrics::samples(&spans));
        m.query_latency.observe("/api/traces", 200, 3_000_000);
        m.query_latency.observe("/api/traces", 404, 1_000);
        let text = render_prometheus(&m, Some(4096), 7);
        assert!(
            text.contains(
                "spanline_requests_total{service=\"order\",operation=\"POST /orders\"} 1\n"
            )
        );
        assert!(text.contains(
            "spanline_request_errors_total{service=\"order\",operation=\"POST /orders\"} 1\n"
        ));
        assert!(
            text.contains("operation=\"GET \\\"/users\\\"\\n\""),
            "{text}"
        );
        // order POST /orders took 1.2 s.
        assert!(text.contains(
            "spanline_request_duration_seconds_bucket{service=\"order\",operation=\"POST /orders\",le=\"1\"} 0\n"
        ));
        assert!(text.contains(
            "spanline_request_duration_seconds_bucket{service=\"order\",operation=\"POST /orders\",le=\"2.5\"} 1\n"
        ));
        assert!(text.contains(
            "spanline_query_request_duration_seconds_count{route=\"/api/traces\",status=\"2xx\"} 1\n"
        ));
        assert!(text.contains("spanline_storage_bytes 4096\n"));
        assert!(text.contains("spanline_spans_stored_total 0\n"));
        // Client spans are not requests.
        assert!(!text.contains("SELECT users"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn a_batch_counts_each_pair_once_with_all_its_spans() {
        let m = Metrics::default();
        let mut spans = sample_trace(1);
        let server = spans
            .iter()
            .position(|s| s.kind == SpanKind::Server && s.service_name == "order")
            .expect("order's server span");
        let mut again = spans[server].clone();
        again.span_id = crate::model::SpanId([9; 8]);
        again.status.code = crate::model::StatusCode::Ok;
        again.end_time_unix_nano = again.start_time_unix_nano + 2_000_000;
        spans.push(again);
        m.red.record(RedMetrics::samples(&spans));
        m.red.record(RedMetrics::samples(&spans[server..=server]));
        let text = render_prometheus(&m, None, 0);
        let series = "service=\"order\",operation=\"POST /orders\"";
        assert!(
            text.contains(&format!("spanline_requests_total{{{series}}} 3\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("spanline_request_errors_total{{{series}}} 2\n")),
            "{text}"
        );
        // 2 ms falls in the 2.5 ms bucket; the two 1.2 s spans from 2.5 s up.
        assert!(text.contains(&format!(
            "spanline_request_duration_seconds_bucket{{{series},le=\"0.0025\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "spanline_request_duration_seconds_bucket{{{series},le=\"2.5\"}} 3\n"
        )));
        assert!(text.contains(&format!(
            "spanline_request_duration_seconds_count{{{series}}} 3\n"
        )));
    }

    #[test]
    fn red_series_are_capped() {
        let m = RedMetrics::default();
        let base = sample_trace(2);
        let spans: Vec<Span> = (0..MAX_RED_SERIES + 10)
            .map(|i| {
                let mut s = base[0].clone();
                s.name = format!("op-{i}").into();
                s
            })
            .collect();
        m.record(RedMetrics::samples(&spans));
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("operation=\"__other__\"} 10\n"), "capped");
    }
}

#[cfg(test)]
mod ingest_tests {
    use super::*;

    #[test]
    fn renders_every_protocol() {
        let m = Metrics::default();
        m.ingest
            .protocol(Protocol::Zipkin)
            .spans_stored
            .fetch_add(3, Ordering::Relaxed);
        let out = render_prometheus(&m, None, 0);
        assert!(out.contains("spanline_ingest_spans_stored_total{protocol=\"zipkin\"} 3\n"));
        assert!(out.contains("# TYPE spanline_ingest_batches_total counter\n"));
        assert_eq!(out.matches("protocol=\"otlp_json\"").count(), 5);
    }
}
