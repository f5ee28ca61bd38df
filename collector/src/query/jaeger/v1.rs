//! The Jaeger-compatible query API, v1 "UI JSON" (interop.md §3.2–3.7): what Grafana's
//! Jaeger data source and older Jaeger UIs call. Point Grafana's Jaeger data source at the
//! query port (`http://<host>:16686`).
//!
//! | route | `data` |
//! |---|---|
//! | `GET /api/services` | service names (`total` = count) |
//! | `GET /api/services/{service}/operations` | operation names, all kinds (`total` = count) |
//! | `GET /api/operations?service=&spanKind=` | `[{"name", "spanKind"}]`; `service` required |
//! | `GET /api/traces?…` | full traces matching the search (below) |
//! | `GET /api/traces/{traceID}` | `[trace]`; 400 malformed id, 404 unknown |
//! | `GET /api/dependencies?endTs=&lookback=` | `[{"parent", "child", "callCount"}]` (ms) |
//! | `POST /api/archive/{traceID}` | `[]` (everything is kept until retention) |
//!
//! Every answer is the envelope `{"data", "total", "limit": 0, "offset": 0, "errors"}`; errors
//! carry the HTTP status and `{"data": null, ..., "errors": [{"code", "msg"}]}`.
//! `prettyPrint=true` indents.
//!
//! Search (`/api/traces`): `service`, `operation`, `tags` (a JSON object, repeatable) and
//! `tag=key:value` (repeatable), `start`/`end` (epoch **µs**; default the last 2 days),
//! `minDuration`/`maxDuration` (Go durations such as `100ms`, `1.5s`, `1m30s`; 400 when max <
//! min), `limit` (default 100, clamped to 1000), `lookback` (ignored: the UI already turned it
//! into start/end), `traceID` (repeatable: fetch these instead; missing ones are reported in
//! `errors` with their `traceID`), `raw=true` (skip the adjusters). Tags map onto the native
//! filters: `error=true` → traces with an error span, `span.kind=K` → a span of kind K,
//! `otel.status_code=OK|ERROR` → a span with that status, anything else → the span attribute
//! //! index (numbers and booleans compare by text). As in Jaeger, the criteria given together must
//! hold for one span. Process (resource) tags and log fields are not searched.
//!
//! Trace ids are accepted with 1–32 hex digits (left-padded with zeros), any case; they are
//! always written with 32. Traces pass through the same adjusters as the tree (merged
//! duplicates, clock skew), plus Jaeger's client/server span-id de-duplication: a server span
//! sharing its id with another span of the trace (Zipkin B3) gets a fresh id and becomes the
//! `CHILD_OF` the original. The mapping of spans follows interop.md §3.4–3.5.

use std::collections::{HashMap, HashSet};

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{apply_tags, find_traces, parse_trace_id, path_trace_id, tag_map};
use crate::AppState;
use crate::assemble::{self, AssembleOptions};
use crate::error::{Error, JaegerError};
use crate::model::{AttrValue, KeyValue, Span, SpanId, SpanKind, StatusCode, TraceId};
use crate::query::params::{Pairs, Param, pairs};
use crate::store::{MAX_SEARCH_LIMIT, StoredTrace, TraceQuery};

type JResult = Result<Response, JaegerError>;

/// Default search range when `start` is missing: 2 days before `end`.
const DEFAULT_SEARCH_RANGE_US: u64 = 2 * 24 * 3600 * 1_000_000;
/// Default `lookback` of `/api/dependencies`: 24 hours, in ms.
const DEFAULT_DEPENDENCY_LOOKBACK_MS: u64 = 24 * 3600 * 1000;
/// Largest integer a JSON number carries exactly (2^53 − 1).
const MAX_SAFE_INT: i64 = 9_007_199_254_740_991;

fn pretty(params: &[(String, String)]) -> bool {
    params
        .iter()
        .any(|(k, v)| k == "prettyPrint" && (v == "true" || v == "1"))
}

/// The v1 envelope.
fn envelope(data: Value, total: usize, errors: Option<Vec<Value>>, pretty: bool) -> Response {
    let body = json!({
        "data": data,
        "total": total,
        "limit": 0,
        "offset": 0,
        "errors": errors,
    });
    let text = if pretty {
        serde_json::to_string_pretty(&body)
    } else {
        serde_json::to_string(&body)
    }
    .unwrap_or_else(|_| "null".to_owned());
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// `GET /api/services`.
pub(crate) async fn services(State(state): State<AppState>, q: Pairs) -> JResult {
    let p = pairs(q)?;
    let services = state.store.services().await?;
    let total = services.len();
    Ok(envelope(json!(services), total, None, pretty(&p)))
}

/// `GET /api/services/{service}/operations`.
pub(crate) async fn service_operations(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    q: Pairs,
) -> JResult {
    let p = pairs(q)?;
    let Path(service) = path.map_err(|_| Error::BadRequest("invalid service name".into()))?;
    let mut names: Vec<String> = state
        .store
        .operations(service)
        .await?
        .into_iter()
        .map(|o| o.name)
        .collect();
    names.dedup();
    let total = names.len();
    Ok(envelope(json!(names), total, None, pretty(&p)))
}

/// `GET /api/operations?service=&spanKind=`.
pub(crate) async fn operations(State(state): State<AppState>, q: Pairs) -> JResult {
    let p = pairs(q)?;
    let ops = super::operations(&state, &p).await?;
    let total = ops.len();
    Ok(envelope(Value::Array(ops), total, None, pretty(&p)))
}

/// `GET /api/traces/{traceID}`.
pub(crate) async fn get_trace(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    q: Pairs,
) -> JResult {
    let p = pairs(q)?;
    let trace_id = path_trace_id(path)?;
    let options = adjust_options(&p)?;
    // `start` / `end` are only hints (Grafana sends ms, Jaeger reads µs): ignored.
    let trace = super::get_trace(&state, trace_id)
        .await?
        .ok_or_else(|| Error::NotFound("trace not found".into()))?;
    Ok(envelope(
        json!([trace_json(&trace, &options)]),
        0,
        None,
        pretty(&p),
    ))
}

fn adjust_options(p: &[(String, String)]) -> Result<AssembleOptions, Error> {
    for (k, v) in p {
        if k == "raw" && Param::new(k, v).bool()? {
            return Ok(AssembleOptions::raw());
        }
    }
    Ok(AssembleOptions::default())
}

/// `POST /api/archive/{traceID}`: nothing to do, everything is kept until retention.
pub(crate) async fn archive(path: Result<Path<String>, PathRejection>) -> JResult {
    path_trace_id(path)?;
    Ok(envelope(json!([]), 0, None, false))
}

/// `GET /api/dependencies?endTs=&lookback=&service=` (ms).
pub(crate) async fn dependencies(State(state): State<AppState>, q: Pairs) -> JResult {
    let p = pairs(q)?;
    let (mut end_ms, mut lookback_ms, mut service) = (None, None, None);
    for (k, v) in &p {
        let p = Param::new(k, v);
        match k.as_str() {
            "endTs" if !v.is_empty() => end_ms = Some(p.u64("milliseconds")?),
            "lookback" if !v.is_empty() => lookback_ms = Some(p.u64("milliseconds")?),
            "service" if !v.is_empty() => service = Some(v.clone()),
            _ => {}
        }
    }
    let ms_to_ns = |ms: u64| ms.saturating_mul(1_000_000);
    let window = crate::query::window(
        None,
        end_ms.map(ms_to_ns),
        Some(ms_to_ns(
            lookback_ms.unwrap_or(DEFAULT_DEPENDENCY_LOOKBACK_MS),
        )),
        0,
    )?;
    let edges: Vec<Value> = state
        .store
        .dependencies(window)
        .await?
        .into_iter()
        .filter(|e| {
            service
                .as_ref()
                .is_none_or(|s| &e.parent == s || &e.child == s)
        })
        .map(|e| json!({"parent": e.parent, "child": e.child, "callCount": e.call_count}))
        .collect();
    Ok(envelope(Value::Array(edges), 0, None, pretty(&p)))
}

/// The parsed `/api/traces` search.
#[derive(Debug, Default)]
struct Search {
    query: TraceQuery,
    trace_ids: Vec<TraceId>,
    options: AssembleOptions,
}

fn parse_search(p: &[(String, String)]) -> Result<Search, Error> {
    let mut s = Search::default();
    let (mut start_us, mut end_us) = (None, None);
    let mut tags: Vec<(String, String)> = Vec::new();
    for (k, v) in p {
        let p = Param::new(k, v);
        match k.as_str() {
            "service" if !v.is_empty() => s.query.service = Some(v.clone()),
            "operation" if !v.is_empty() => s.query.operation = Some(v.clone()),
            "start" if !v.is_empty() => start_us = Some(p.u64("epoch microseconds")?),
            "end" if !v.is_empty() => end_us = Some(p.u64("epoch microseconds")?),
            "minDuration" if !v.is_empty() => {
                s.query.min_duration_ns = Some(p.go_duration_ns("100ms")?);
            }
            "maxDuration" if !v.is_empty() => {
                s.query.max_duration_ns = Some(p.go_duration_ns("1.2s")?);
            }
            "limit" if !v.is_empty() => {
                let n = p.u64("a non-negative integer")?;
                s.query.limit = if n == 0 {
                    crate::store::DEFAULT_SEARCH_LIMIT
                } else {
                    usize::try_from(n.min(MAX_SEARCH_LIMIT as u64)).unwrap_or(MAX_SEARCH_LIMIT)
                };
            }
            "tags" if !v.is_empty() => tags.extend(tag_map(p)?),
            "tag" if !v.is_empty() => {
                let (key, value) = v.split_once(':').ok_or_else(|| p.bad("key:value"))?;
                tags.push((key.to_owned(), value.to_owned()));
            }
            "traceID" if !v.is_empty() => s.trace_ids.push(parse_trace_id(v)?),
            "raw" if p.bool()? => s.options = AssembleOptions::raw(),
            _ => {}
        }
    }
    apply_tags(&mut s.query, tags)?;
    if let (Some(min), Some(max)) = (s.query.min_duration_ns, s.query.max_duration_ns)
        && max < min
    {
        return Err(Error::BadRequest(
            "maxDuration must be greater than minDuration".into(),
        ));
    }
    let end_us = end_us.unwrap_or_else(|| crate::time::now_unix_nano() / 1000);
    let start_us = start_us.unwrap_or_else(|| end_us.saturating_sub(DEFAULT_SEARCH_RANGE_US));
    if start_us > end_us {
        return Err(Error::BadRequest("start must not be after end".into()));
    }
    s.query.start_time_min_unix_nano = Some(start_us.saturating_mul(1000));
    s.query.start_time_max_unix_nano = Some(end_us.saturating_mul(1000));
    Ok(s)
}

/// `GET /api/traces?…` (search).
pub(crate) async fn search(State(state): State<AppState>, q: Pairs) -> JResult {
    let p = pairs(q)?;
    let search = parse_search(&p)?;
    let mut traces = Vec::new();
    let mut errors = Vec::new();
    if search.trace_ids.is_empty() {
        for t in find_traces(&state, search.query).await? {
            traces.push(trace_json(&t, &search.options));
        }
    } else {
        let mut seen = HashSet::new();
        for id in search.trace_ids {
            if !seen.insert(id) {
                continue;
            }
            match super::get_trace(&state, id).await? {
                Some(t) => traces.push(trace_json(&t, &search.options)),
                _ => errors.push(json!({
                    "code": 404, "msg": "trace not found", "traceID": id.to_hex(),
                })),
            }
        }
    }
    let errors = (!errors.is_empty()).then_some(errors);
    Ok(envelope(Value::Array(traces), 0, errors, pretty(&p)))
}

// ---------------------------------------------------------------------------------------------
// Trace JSON (interop.md §3.4, §3.5)
// ---------------------------------------------------------------------------------------------

/// A stored trace in the Jaeger UI model, after the adjusters.
pub fn trace_json(trace: &StoredTrace, options: &AssembleOptions) -> Value {
    let adjusted = assemble::adjust(&trace.spans, options);
    let mut spans = adjusted.spans;
    let mut span_warnings = adjusted.span_warnings;
    let mut trace_warnings = adjusted.warnings;
    let ids = unique_span_ids(&mut spans, &mut span_warnings);
    let trace_hex = trace.summary.trace_id.to_hex();
    let mut processes: Vec<(String, Vec<Value>, Value)> = Vec::new();
    let mut process_ids: HashMap<(String, String), String> = HashMap::new();
    let mut out = Vec::with_capacity(spans.len());
    for (i, span) in spans.iter().enumerate() {
        let tags: Vec<Value> = span
            .resource
            .attributes
            .iter()
            .filter(|kv| kv.key != "service.name")
            .map(tag)
            .collect();
        let tags_text = serde_json::to_string(&tags).unwrap_or_default();
        let key = (span.service_name.clone(), tags_text);
        let pid = match process_ids.get(&key) {
            Some(p) => p.clone(),
            None => {
                let p = format!("p{}", processes.len() + 1);
                processes.push((
                    p.clone(),
                    tags.clone(),
                    json!({"serviceName": span.service_name, "tags": tags}),
                ));
                process_ids.insert(key, p.clone());
                p
            }
        };
        let warnings: Vec<&String> = span.warnings.iter().chain(&span_warnings[i]).collect();
        let mut v = span_json(span, &trace_hex, ids[i]);
        v["processID"] = json!(pid);
        v["warnings"] = if warnings.is_empty() {
            Value::Null
        } else {
            json!(warnings)
        };
        out.push(v);
    }
    if trace.summary.span_count > trace.spans.len() as u64 {
        trace_warnings.push(format!(
            "the trace has {} spans; only the first {} by start time are returned",
            trace.summary.span_count,
            trace.spans.len()
        ));
    }
    trace_warnings.extend(trace.summary.truncation_warning());
    let processes: Map<String, Value> = processes.into_iter().map(|(k, _, v)| (k, v)).collect();
    json!({
        "traceID": trace_hex,
        "spans": out,
        "processes": processes,
        "warnings": if trace_warnings.is_empty() { Value::Null } else { json!(trace_warnings) },
    })
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
            AttrValue::String(s.status.message.clone()),
        );
    }
    if !s.scope.name.is_empty() {
        push("otel.scope.name", AttrValue::String(s.scope.name.clone()));
    }
    if !s.scope.version.is_empty() {
        push(
            "otel.scope.version",
            AttrValue::String(s.scope.version.clone()),
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
        push("w3c.tracestate", AttrValue::String(s.trace_state.clone()));
    }
    let logs: Vec<Value> = s
        .events
        .iter()
        .map(|e| {
            let mut fields: Vec<Value> = e.attributes.iter().map(tag).collect();
            if !e.attributes.iter().any(|kv| kv.key == "event") {
                fields.push(tag(&KeyValue::new(
                    "event",
                    AttrValue::String(e.name.clone()),
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
