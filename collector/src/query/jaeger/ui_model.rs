//! Traces in the Jaeger UI model (interop.md §3.4, §3.5), as the v1 API answers them: after
//! the adjusters (merged duplicates, clock skew) plus Jaeger's client/server span-id
//! de-duplication. [`trace_json`] builds one trace whole (small answers, `prettyPrint`);
//! `streamed_trace` and `streamed_search` write the answers span by span and trace by trace
//! ([`crate::query::stream`]), so reading large traces costs one trace, never the answer.

use std::collections::{HashMap, HashSet};

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::assemble::{self, AssembleOptions};
use crate::model::{AttrValue, KeyValue, Span, SpanId, SpanKind, StatusCode};
use crate::query::stream;
use crate::store::StoredTrace;

/// Largest integer a JSON number carries exactly (2^53 − 1).
const MAX_SAFE_INT: i64 = 9_007_199_254_740_991;

/// A stored trace in the Jaeger UI model, after the adjusters.
pub fn trace_json(trace: StoredTrace, options: &AssembleOptions) -> Value {
    let t = JaegerTrace::new(trace, options);
    let spans: Vec<Value> = (0..t.spans.len()).map(|i| t.span_value(i)).collect();
    json!({
        "traceID": t.trace_hex,
        "spans": spans,
        "processes": t.processes_value(),
        "warnings": t.warnings_value(),
    })
}

/// A trace prepared for the Jaeger UI model: adjusted spans, their Jaeger ids and process
/// ids; each span's JSON is made when asked for ([`span_value`](Self::span_value)), so a
/// large trace can be written span by span.
struct JaegerTrace {
    trace_hex: String,
    spans: Vec<Span>,
    span_warnings: Vec<Vec<String>>,
    ids: Vec<(SpanId, Option<SpanId>)>,
    /// Per span: its index in `processes`.
    pids: Vec<usize>,
    /// `{"serviceName", "tags"}`, named `p1`, `p2`, ... in order.
    processes: Vec<Value>,
    warnings: Vec<String>,
}

impl JaegerTrace {
    fn new(trace: StoredTrace, options: &AssembleOptions) -> Self {
        let StoredTrace { summary, spans } = trace;
        let stored = spans.len();
        let adjusted = assemble::adjust_owned(spans, options);
        let mut spans = adjusted.spans;
        let mut span_warnings = adjusted.span_warnings;
        let mut warnings = adjusted.warnings;
        let ids = unique_span_ids(&mut spans, &mut span_warnings);
        let mut processes: Vec<Value> = Vec::new();
        let mut by_content: HashMap<(String, String), usize> = HashMap::new();
        // Spans of one batch share their resource: its tags are written once.
        let mut by_resource: HashMap<(usize, String), usize> = HashMap::new();
        let pids = spans
            .iter()
            .map(|span| {
                let ptr = std::sync::Arc::as_ptr(&span.resource) as usize;
                if let Some(&pid) = by_resource.get(&(ptr, span.service_name.to_string())) {
                    return pid;
                }
                let tags: Vec<Value> = span
                    .resource
                    .attributes
                    .iter()
                    .filter(|kv| kv.key != "service.name")
                    .map(tag)
                    .collect();
                let key = (
                    span.service_name.to_string(),
                    serde_json::to_string(&tags).unwrap_or_default(),
                );
                let pid = *by_content.entry(key).or_insert_with(|| {
                    processes.push(json!({"serviceName": span.service_name, "tags": tags}));
                    processes.len() - 1
                });
                by_resource.insert((ptr, span.service_name.to_string()), pid);
                pid
            })
            .collect();
        if summary.span_count > stored as u64 {
            warnings.push(format!(
                "the trace has {} spans; only the first {stored} by start time are returned",
                summary.span_count,
            ));
        }
        warnings.extend(summary.truncation_warning());
        Self {
            trace_hex: summary.trace_id.to_hex(),
            spans,
            span_warnings,
            ids,
            pids,
            processes,
            warnings,
        }
    }

    /// The JSON of span `i` (`i` below the span count).
    fn span_value(&self, i: usize) -> Value {
        let span = &self.spans[i];
        let warnings: Vec<&String> = span.warnings.iter().chain(&self.span_warnings[i]).collect();
        let mut v = span_json(span, &self.trace_hex, self.ids[i]);
        v["processID"] = json!(format!("p{}", self.pids[i] + 1));
        v["warnings"] = if warnings.is_empty() {
            Value::Null
        } else {
            json!(warnings)
        };
        v
    }

    fn processes_value(&self) -> Value {
        let map: Map<String, Value> = self
            .processes
            .iter()
            .enumerate()
            .map(|(k, p)| (format!("p{}", k + 1), p.clone()))
            .collect();
        Value::Object(map)
    }

    fn warnings_value(&self) -> Value {
        if self.warnings.is_empty() {
            Value::Null
        } else {
            json!(self.warnings)
        }
    }
}

/// `GET /api/traces/{traceID}` without `prettyPrint`: the envelope of one trace, written
/// span by span ([`stream`]).
pub(super) fn streamed_trace(trace: StoredTrace, options: &AssembleOptions) -> Response {
    let t = JaegerTrace::new(trace, options);
    let mut prefix = br#"{"data":[{"traceID":"#.to_vec();
    stream::write_json(&mut prefix, &t.trace_hex);
    prefix.extend_from_slice(br#","spans":["#);
    let t = std::sync::Arc::new(t);
    let (items, suffix) = (std::sync::Arc::clone(&t), t);
    stream::json_response(stream::JsonArray::new(
        prefix,
        0..items.spans.len(),
        move |i, out| stream::write_json(out, &items.span_value(i)),
        move |out| {
            out.extend_from_slice(br#"],"processes":"#);
            stream::write_json(out, &suffix.processes_value());
            out.extend_from_slice(br#","warnings":"#);
            stream::write_json(out, &suffix.warnings_value());
            out.extend_from_slice(br#"}],"total":0,"limit":0,"offset":0,"errors":null}"#);
        },
    ))
}

/// Writes one trace's JSON (as [`trace_json`]) span by span, without a `Value` tree.
fn write_trace(t: &JaegerTrace, out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"traceID":"#);
    stream::write_json(out, &t.trace_hex);
    out.extend_from_slice(br#","spans":["#);
    for i in 0..t.spans.len() {
        if i > 0 {
            out.push(b',');
        }
        stream::write_json(out, &t.span_value(i));
    }
    out.extend_from_slice(br#"],"processes":"#);
    stream::write_json(out, &t.processes_value());
    out.extend_from_slice(br#","warnings":"#);
    stream::write_json(out, &t.warnings_value());
    out.push(b'}');
}

/// `GET /api/traces?…` (a search, without `prettyPrint`): the envelope written one trace at
/// a time, each loaded only when the previous one was sent, so a search for many large
/// traces holds one of them at a time. A storage failure after the answer began cuts the
/// answer short (the client sees invalid JSON, not a partial success).
pub(super) fn streamed_search(
    state: &AppState,
    found: Vec<crate::store::TraceSummary>,
    options: AssembleOptions,
) -> Response {
    enum Step {
        Start,
        Traces { first: bool },
        Done,
    }
    let store = std::sync::Arc::clone(&state.store);
    let ids = found.into_iter().map(|s| s.trace_id);
    let chunks = futures_util::stream::unfold((Step::Start, ids), move |(step, mut ids)| {
        let store = std::sync::Arc::clone(&store);
        async move {
            match step {
                Step::Start => Some((
                    Ok(bytes::Bytes::from_static(br#"{"data":["#)),
                    (Step::Traces { first: true }, ids),
                )),
                Step::Traces { first } => loop {
                    let Some(id) = ids.next() else {
                        let end = br#"],"total":0,"limit":0,"offset":0,"errors":null}"#;
                        return Some((Ok(bytes::Bytes::from_static(end)), (Step::Done, ids)));
                    };
                    match store.get_trace(id).await {
                        Ok(Some(t)) if !t.spans.is_empty() => {
                            let mut out = Vec::new();
                            if !first {
                                out.push(b',');
                            }
                            write_trace(&JaegerTrace::new(t, &options), &mut out);
                            let next = (Step::Traces { first: false }, ids);
                            return Some((Ok(bytes::Bytes::from(out)), next));
                        }
                        Ok(_) => {}
                        Err(e) => {
                            return Some((
                                Err(std::io::Error::other(e.to_string())),
                                (Step::Done, ids),
                            ));
                        }
                    }
                },
                Step::Done => None,
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(chunks),
    )
        .into_response()
}

/// Per span: (its id, its parent id) as written to JSON, after Jaeger's
/// `DeduplicateClientServerSpanIDs`.
fn unique_span_ids(
    spans: &mut [Span],
    warnings: &mut [Vec<String>],
) -> Vec<(SpanId, Option<SpanId>)> {
    let mut ids: Vec<(SpanId, Option<SpanId>)> = spans
        .iter()
        .map(|s| (s.span_id, s.parent_span_id))
        .collect();
    let mut used: HashSet<SpanId> = HashSet::new();
    let mut count: HashMap<SpanId, usize> = HashMap::new();
    for s in spans.iter() {
        used.insert(s.span_id);
        *count.entry(s.span_id).or_default() += 1;
    }
    // (old id, new id) of re-IDed server spans.
    let mut renamed: Vec<(SpanId, SpanId, usize)> = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        if s.kind != SpanKind::Server || count.get(&s.span_id).copied().unwrap_or(0) < 2 {
            continue;
        }
        let mut candidate = u64::from_be_bytes(s.span_id.0);
        let fresh = loop {
            candidate = candidate.wrapping_add(1);
            let id = SpanId(candidate.to_be_bytes());
            if candidate != 0 && !used.contains(&id) {
                break id;
            }
        };
        used.insert(fresh);
        ids[i] = (fresh, Some(s.span_id));
        warnings[i].push(format!(
            "span id {} is shared with another span (Zipkin-style); shown as {fresh}",
            s.span_id
        ));
        renamed.push((s.span_id, fresh, i));
    }
    // Children of a re-IDed server span point at its new id (Jaeger's swapParentIDs); the
    // span that kept the id (the client) stays where it was.
    for (old, fresh, server) in renamed {
        for (j, s) in spans.iter().enumerate() {
            if j != server && s.parent_span_id == Some(old) && s.span_id != old {
                ids[j].1 = Some(fresh);
            }
        }
    }
    ids
}

fn span_json(s: &Span, trace_hex: &str, (id, parent): (SpanId, Option<SpanId>)) -> Value {
    let mut references = Vec::new();
    if let Some(p) = parent {
        references.push(json!({"refType": "CHILD_OF", "traceID": trace_hex, "spanID": p.to_hex()}));
    }
    for l in &s.links {
        references.push(json!({
            "refType": "FOLLOWS_FROM", "traceID": l.trace_id.to_hex(), "spanID": l.span_id.to_hex(),
        }));
    }
    let mut tags: Vec<Value> = s
        .attributes
        .iter()
        .filter(|kv| kv.key != "error")
        .map(tag)
        .collect();
    if let Some(existing_error) = s.attributes.iter().find(|kv| kv.key == "error")
        && !s.is_error()
    {
        tags.push(tag(existing_error));
    }
    let mut push = |key: &str, value: AttrValue| tags.push(tag(&KeyValue::new(key, value)));
    if !matches!(s.kind, SpanKind::Internal | SpanKind::Unspecified) {
        push("span.kind", AttrValue::String(s.kind.as_str().into()));
    }
    match s.status.code {
        StatusCode::Ok => push("otel.status_code", AttrValue::String("OK".into())),
        StatusCode::Error => {
            push("otel.status_code", AttrValue::String("ERROR".into()));
            push("error", AttrValue::Bool(true));
        }
        StatusCode::Unset => {}
    }
    if !s.status.message.is_empty() {
        push(
            "otel.status_description",
            AttrValue::String(s.status.message.as_str().into()),
        );
    }
    if !s.scope.name.is_empty() {
        push(
            "otel.scope.name",
            AttrValue::String(s.scope.name.as_str().into()),
        );
    }
    if !s.scope.version.is_empty() {
        push(
            "otel.scope.version",
            AttrValue::String(s.scope.version.as_str().into()),
        );
    }
    for (key, n) in [
        ("otel.dropped_attributes_count", s.dropped_attributes_count),
        ("otel.dropped_events_count", s.dropped_events_count),
        ("otel.dropped_links_count", s.dropped_links_count),
    ] {
        if n > 0 {
            push(key, AttrValue::Int(i64::from(n)));
        }
    }
    if !s.trace_state.is_empty() {
        push(
            "w3c.tracestate",
            AttrValue::String(s.trace_state.as_str().into()),
        );
    }
    let logs: Vec<Value> = s
        .events
        .iter()
        .map(|e| {
            let mut fields: Vec<Value> = e.attributes.iter().map(tag).collect();
            if !e.attributes.iter().any(|kv| kv.key == "event") {
                fields.push(tag(&KeyValue::new(
                    "event",
                    AttrValue::String(e.name.as_str().into()),
                )));
            }
            json!({"timestamp": e.time_unix_nano / 1000, "fields": fields})
        })
        .collect();
    let mut v = json!({
        "traceID": trace_hex,
        "spanID": id.to_hex(),
        "operationName": s.name,
        "references": references,
        "startTime": s.start_time_unix_nano / 1000,
        "duration": s.duration_ns() / 1000,
        "tags": tags,
        "logs": logs,
    });
    let flags = s.flags & 0xff;
    if flags != 0 {
        v["flags"] = json!(flags);
    }
    v
}

/// One typed tag (interop.md §3.4).
fn tag(kv: &KeyValue) -> Value {
    let (kind, value) = match &kv.value {
        AttrValue::String(s) => ("string", json!(s)),
        AttrValue::Bool(b) => ("bool", json!(b)),
        AttrValue::Int(i) if (-MAX_SAFE_INT..=MAX_SAFE_INT).contains(i) => ("int64", json!(i)),
        AttrValue::Int(i) => ("int64", json!(i.to_string())),
        AttrValue::Double(d) if d.is_finite() => ("float64", json!(d)),
        AttrValue::Double(d) => ("string", json!(d.to_string())),
        AttrValue::Bytes(b) => ("binary", json!(crate::model::base64_encode(b))),
        AttrValue::Empty => ("string", json!("")),
        other @ (AttrValue::Array(_) | AttrValue::KvList(_)) => {
            ("string", json!(other.to_json().to_string()))
        }
    };
    json!({"key": kv.key, "type": kind, "value": value})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_tags() {
        let t = |v: AttrValue| tag(&KeyValue::new("k", v));
        assert_eq!(t(AttrValue::Int(200))["type"], "int64");
        assert_eq!(t(AttrValue::Int(i64::MAX))["value"], "9223372036854775807");
        assert_eq!(t(AttrValue::Bytes(vec![0, 1]))["type"], "binary");
        assert_eq!(t(AttrValue::Array(vec![AttrValue::Int(1)]))["value"], "[1]");
        assert_eq!(t(AttrValue::Double(0.5))["type"], "float64");
    }
}
