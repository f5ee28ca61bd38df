//! The OTLP request of the ingest benchmarks, shared by `loadgen ingest` and the collector's
//! in-process benchmark (`collector/tests/ingest_bench.rs`), so both measure the same bytes:
//! one resource (`service.name` `svc-<n mod 4>`, `host.name`) with spans of 10 attributes
//! each, 250 µs long, SERVER and CLIENT in turn.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

/// How long each span lasts, ns (unless `loadgen ingest --spread-durations`).
pub const SPAN_DURATION_NS: u64 = 250_000;

/// Shortest trace of [`spread_duration_ns`], ns.
pub const SPREAD_MIN_NS: u64 = 50_000;

/// Longest trace of [`spread_duration_ns`], ns (under the collector's 100 ms slow-span
/// threshold, so the SQLite store's slow-span indexes stay empty as with fixed durations).
pub const SPREAD_MAX_NS: u64 = 50_000_000;

/// How long span `j` (0-9) of trace number `trace_no` lasts under `loadgen ingest
/// --spread-durations`, ns: the trace lasts from [`SPREAD_MIN_NS`] to [`SPREAD_MAX_NS`],
/// log-uniformly, picked by a hash of `trace_no` (so every service and request template has
/// short and long traces, and traces seldom tie), and its span `j` lasts `(10 - j) / 10` of
/// that (span 0, the first to start, is the longest and ends last).
pub fn spread_duration_ns(trace_no: u64, j: usize) -> u64 {
    let hash = (trace_no ^ 0x5bd1_e995).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // The top 53 bits as a fraction in [0, 1).
    let unit = (hash >> 11) as f64 / (1u64 << 53) as f64;
    let range = (SPREAD_MAX_NS / SPREAD_MIN_NS) as f64;
    let trace_ns = SPREAD_MIN_NS as f64 * range.powf(unit);
    (trace_ns * (10 - j % 10) as f64 / 10.0) as u64
}

/// An OTLP attribute.
pub fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// The ten attributes of span `i` of a request (HTTP server semantic conventions, and two
/// application attributes that vary with `i`).
pub fn attributes(i: usize) -> Vec<KeyValue> {
    use any_value::Value::{BoolValue, IntValue, StringValue};
    vec![
        kv("http.request.method", StringValue("GET".into())),
        kv("http.route", StringValue("/api/v1/items/{id}".into())),
        kv("url.path", StringValue(format!("/api/v1/items/{i}"))),
        kv("http.response.status_code", IntValue(200)),
        kv("server.address", StringValue("items.internal".into())),
        kv("server.port", IntValue(8080)),
        kv("client.address", StringValue("10.1.2.3".into())),
        kv("user_agent.original", StringValue("bench/1.0".into())),
        kv(
            "app.item.id",
            IntValue(i64::try_from(i).unwrap_or(i64::MAX)),
        ),
        kv("app.cache.hit", BoolValue(i.is_multiple_of(3))),
    ]
}

/// Span `i` of a request, with these ids, starting at `start_unix_nano` and lasting
/// [`SPAN_DURATION_NS`].
pub fn span(i: usize, trace_id: [u8; 16], span_id: [u8; 8], start_unix_nano: u64) -> Span {
    Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        name: format!("GET /api/v1/items/{}", i % 20),
        kind: if i.is_multiple_of(2) { 2 } else { 3 },
        start_time_unix_nano: start_unix_nano,
        end_time_unix_nano: start_unix_nano + SPAN_DURATION_NS,
        attributes: attributes(i),
        ..Default::default()
    }
}

/// Request number `n` holding `spans` (its resource is service `svc-<n mod 4>`).
pub fn request(n: usize, spans: Vec<Span>) -> ExportTraceServiceRequest {
    use any_value::Value::StringValue;
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", StringValue(format!("svc-{}", n % 4))),
                    kv("host.name", StringValue("bench-host".into())),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Request `n` of the collector's in-process benchmarks (`collector/examples`): `count` spans
/// (`span(i, ..)`), 10 per trace, with trace ids, span ids and start times of its own (trace
/// ids count up from 1 over all requests, span ids likewise; starts `n` ms apart, 1 µs between
/// spans).
pub fn numbered_request(n: usize, count: usize) -> ExportTraceServiceRequest {
    let t0 = 1_763_700_000_000_000_000u64 + n as u64 * 1_000_000;
    let spans = (0..count)
        .map(|i| {
            let trace = (n * count + i) / 10 + 1;
            let mut trace_id = [0u8; 16];
            trace_id[8..].copy_from_slice(&(trace as u64).to_be_bytes());
            let span_id = ((n * count + i + 1) as u64).to_be_bytes();
            span(i, trace_id, span_id, t0 + i as u64 * 1000)
        })
        .collect();
    request(n, spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_durations_cover_their_range_and_span_0_is_the_longest() {
        let traces: Vec<u64> = (0..10_000).map(|n| spread_duration_ns(n, 0)).collect();
        assert!(
            traces
                .iter()
                .all(|d| (SPREAD_MIN_NS..SPREAD_MAX_NS).contains(d))
        );
        // Log-uniform: about a third of the traces in each decade.
        let under_500us = traces.iter().filter(|d| **d < 500_000).count();
        let over_5ms = traces.iter().filter(|d| **d >= 5_000_000).count();
        assert!((2_800..3_900).contains(&under_500us), "{under_500us}");
        assert!((2_800..3_900).contains(&over_5ms), "{over_5ms}");
        let mut distinct = traces.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() > 9_900);
        assert!((1..10).all(|j| spread_duration_ns(7, j) < spread_duration_ns(7, j - 1)));
    }

    #[test]
    fn span_i_has_ten_attributes_and_alternates_server_and_client() {
        let s = span(3, [1; 16], [2; 8], 1_000);
        assert_eq!(s.attributes.len(), 10);
        assert_eq!((s.kind, span(4, [1; 16], [2; 8], 0).kind), (3, 2));
        assert_eq!(
            s.end_time_unix_nano - s.start_time_unix_nano,
            SPAN_DURATION_NS
        );
        assert_eq!(s.name, "GET /api/v1/items/3");
        let r = request(5, vec![s]);
        let resource = r.resource_spans[0].resource.as_ref().expect("resource");
        assert_eq!(
            resource.attributes[0].value,
            Some(AnyValue {
                value: Some(any_value::Value::StringValue("svc-1".into()))
            })
        );
    }
}
