//! The Jaeger `api_v3` subset the current Jaeger UI uses (interop.md §3.8); also what
//! Grafana calls for services, operations and trace-by-id with `jaegerEnableGrpcEndpoint`.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/v3/services` | `{"services": [...]}` |
//! | `GET /api/v3/operations?service=&spanKind=` | `{"operations": [{"name", "spanKind"}]}` (`span_kind` alias) |
//! | `GET /api/v3/traces/{traceID}` | `{"result": {"resourceSpans": [OTLP JSON]}}`; 404 unknown |
//! | `GET /api/v3/traces?query.…` | the same `{"result": …}` with every matching trace merged; 404 when none |
//! | `GET /api/v3/trace-summaries?query.…` | `{"summaries": [...]}`; 404 when none |
//!
//! Query parameters, camelCase or snake_case: `query.serviceName`, `query.operationName`,
//! `query.startTimeMin` and `query.startTimeMax` (RFC 3339, **required**, min < max),
//! `query.durationMin`, `query.durationMax` (`1.5s`, `100ms`), `query.searchDepth` (default
//! 100, at most 1000), `query.attributes` (a JSON object of strings), `query.rawTraces`.
//! `startTime` / `endTime` on trace-by-id are accepted and ignored.
//!
//! No v1 envelope: errors are `{"error": {"httpCode", "message"}}` with the same status.
//! OTLP JSON here uses hex ids, integer enums and decimal-string 64-bit integers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{apply_tags, find_traces, path_trace_id, tag_map};
use crate::AppState;
use crate::assemble::{self, AssembleOptions};
use crate::error::{Error, JaegerV3Error};
use crate::format::otlp_json;
use crate::model::Span;
use crate::query::params::{Pairs, Param, pairs};
use crate::query::stream;
use crate::store::{MAX_SEARCH_LIMIT, StoredTrace, TraceQuery};

type V3Result = Result<Response, JaegerV3Error>;

/// `GET /api/v3/services`.
pub(crate) async fn services(State(state): State<AppState>) -> V3Result {
    Ok(axum::Json(json!({"services": state.store.services().await?})).into_response())
}

/// `GET /api/v3/operations`.
pub(crate) async fn operations(State(state): State<AppState>, q: Pairs) -> V3Result {
    let p = pairs(q)?;
    let ops = super::operations(&state, &p).await?;
    Ok(axum::Json(json!({"operations": ops})).into_response())
}

/// `GET /api/v3/traces/{traceID}`.
pub(crate) async fn get_trace(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    q: Pairs,
) -> V3Result {
    let p = pairs(q)?;
    let trace_id = path_trace_id(path)?;
    let mut options = AssembleOptions::default();
    for (k, v) in &p {
        if (k == "rawTraces" || k == "raw_traces") && Param::new(k, v).bool()? {
            options = AssembleOptions::raw();
        }
    }
    let trace = super::get_trace(&state, trace_id)
        .await?
        .ok_or_else(|| Error::NotFound("No traces found".into()))?;
    Ok(streamed_trace(trace, &options))
}

struct Search {
    query: TraceQuery,
    options: AssembleOptions,
}

fn parse_search(p: Vec<(String, String)>) -> Result<Search, Error> {
    let mut q = TraceQuery::default();
    let mut options = AssembleOptions::default();
    let (mut min, mut max) = (None, None);
    for (k, v) in &p {
        let Some(name) = k.strip_prefix("query.") else {
            continue;
        };
        let p = Param::new(k, v);
        match name.replace('_', "").to_ascii_lowercase().as_str() {
            "servicename" if !v.is_empty() => q.service = Some(v.clone()),
            "operationname" if !v.is_empty() => q.operation = Some(v.clone()),
            "starttimemin" => min = Some(p.rfc3339_ns()?),
            "starttimemax" => max = Some(p.rfc3339_ns()?),
            "durationmin" if !v.is_empty() => q.min_duration_ns = Some(p.go_duration_ns("1.5s")?),
            "durationmax" if !v.is_empty() => q.max_duration_ns = Some(p.go_duration_ns("1.5s")?),
            "searchdepth" if !v.is_empty() => {
                let n = p.u64("a positive integer")?;
                q.limit = usize::try_from(n)
                    .unwrap_or(usize::MAX)
                    .clamp(1, MAX_SEARCH_LIMIT);
            }
            "attributes" if !v.is_empty() => apply_tags(&mut q, tag_map(p)?)?,
            "rawtraces" if p.bool()? => options = AssembleOptions::raw(),
            _ => {}
        }
    }
    let (Some(min), Some(max)) = (min, max) else {
        return Err(Error::BadRequest(
            "query.start_time_min and query.start_time_max are required".into(),
        ));
    };
    if min >= max {
        return Err(Error::BadRequest(
            "query.start_time_min must be before query.start_time_max".into(),
        ));
    }
    if let (Some(a), Some(b)) = (q.min_duration_ns, q.max_duration_ns)
        && b < a
    {
        return Err(Error::BadRequest(
            "query.duration_max must not be below query.duration_min".into(),
        ));
    }
    q.start_time_min_unix_nano = Some(min);
    q.start_time_max_unix_nano = Some(max);
    Ok(Search { query: q, options })
}

/// The traces of a search; 404 when none.
async fn search_traces(state: &AppState, query: TraceQuery) -> Result<Vec<StoredTrace>, Error> {
    let traces = find_traces(state, query).await?;
    if traces.is_empty() {
        return Err(Error::NotFound("No traces found".into()));
    }
    Ok(traces)
}

/// `GET /api/v3/traces?query.…`.
pub(crate) async fn search(State(state): State<AppState>, q: Pairs) -> V3Result {
    let s = parse_search(pairs(q)?)?;
    let traces = search_traces(&state, s.query).await?;
    Ok(axum::Json(json!({"result": traces_data(&traces, &s.options)})).into_response())
}

/// `GET /api/v3/trace-summaries?query.…`.
pub(crate) async fn summaries(State(state): State<AppState>, q: Pairs) -> V3Result {
    let s = parse_search(pairs(q)?)?;
    let traces = search_traces(&state, s.query).await?;
    let summaries: Vec<Value> = traces.iter().map(summary_json).collect();
    Ok(axum::Json(json!({"summaries": summaries})).into_response())
}

fn summary_json(t: &StoredTrace) -> Value {
    let tree = assemble::assemble(&t.spans);
    let mut per_service: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for s in &t.spans {
        let e = per_service.entry(&s.service_name).or_default();
        e.0 += 1;
        e.1 += u64::from(s.is_error());
    }
    let orphans = tree.roots.iter().filter(|r| r.orphan).count();
    json!({
        "traceId": t.summary.trace_id.to_hex(),
        "rootServiceName": t.summary.root_service.clone().unwrap_or_default(),
        "rootOperationName": t.summary.root_operation.clone().unwrap_or_default(),
        "minStartTimeUnixNano": t.summary.start_time_unix_nano.to_string(),
        "maxEndTimeUnixNano": t.summary.end_time_unix_nano.to_string(),
        "spanCount": t.summary.span_count,
        "truncated": t.summary.is_truncated(),
        "errorSpanCount": t.summary.error_count,
        "orphanSpanCount": orphans,
        "services": per_service
            .into_iter()
            .map(|(name, (n, e))| json!({"name": name, "spanCount": n, "errorSpanCount": e}))
            .collect::<Vec<_>>(),
    })
}

/// (scope name, scope version) and the spans of that scope, as (trace, span) indexes.
type ScopeGroup = ((String, String), Vec<(usize, usize)>);

/// The adjusted spans of `traces`, grouped by resource (by content: equal resources may be
/// distinct allocations), then scope: `(resource JSON, scopes)` in first-seen order.
fn group_spans(spans: &[Vec<Span>]) -> Vec<(Value, Vec<ScopeGroup>)> {
    let mut groups: Vec<(Value, Vec<ScopeGroup>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut by_ptr: HashMap<usize, usize> = HashMap::new();
    for (t, trace) in spans.iter().enumerate() {
        for (i, s) in trace.iter().enumerate() {
            let ptr = Arc::as_ptr(&s.resource) as usize;
            let g = match by_ptr.get(&ptr) {
                Some(g) => *g,
                None => {
                    let attrs = Value::Array(otlp_json::encode_attributes(&s.resource.attributes));
                    let g = *index.entry(attrs.to_string()).or_insert_with(|| {
                        groups.push((json!({"attributes": attrs}), Vec::new()));
                        groups.len() - 1
                    });
                    by_ptr.insert(ptr, g);
                    g
                }
            };
            let scopes = &mut groups[g].1;
            let found = scopes
                .iter_mut()
                .find(|((name, version), _)| *name == s.scope.name && *version == s.scope.version);
            match found {
                Some((_, members)) => members.push((t, i)),
                None => scopes.push((
                    (s.scope.name.clone(), s.scope.version.clone()),
                    vec![(t, i)],
                )),
            }
        }
    }
    groups
}

/// Traces as one OTLP JSON `TracesData`: spans grouped by resource, then scope.
fn traces_data(traces: &[StoredTrace], options: &AssembleOptions) -> Value {
    let spans: Vec<Vec<Span>> = traces
        .iter()
        .map(|t| assemble::adjust(&t.spans, options).spans)
        .collect();
    let resource_spans: Vec<Value> = group_spans(&spans)
        .into_iter()
        .map(|(resource, scopes)| {
            json!({
                "resource": resource,
                "scopeSpans": scopes.into_iter().map(|((name, version), members)| json!({
                    "scope": {"name": name, "version": version},
                    "spans": members
                        .into_iter()
                        .map(|(t, i)| otlp_json::encode_span(&spans[t][i]))
                        .collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"resourceSpans": resource_spans})
}

/// What [`streamed_trace`] writes next.
enum Step {
    /// Fixed JSON text (brackets, resource and scope objects).
    Text(Vec<u8>),
    /// The span at this index, preceded by a comma when not the first of its scope.
    Span(usize, bool),
}

/// `{"result": TracesData}` of one trace, written span by span ([`stream`]).
fn streamed_trace(trace: StoredTrace, options: &AssembleOptions) -> Response {
    let spans = vec![assemble::adjust_owned(trace.spans, options).spans];
    let mut steps = Vec::new();
    let mut text = br#"{"result":{"resourceSpans":["#.to_vec();
    for (g, (resource, scopes)) in group_spans(&spans).into_iter().enumerate() {
        if g > 0 {
            text.push(b',');
        }
        text.extend_from_slice(br#"{"resource":"#);
        stream::write_json(&mut text, &resource);
        text.extend_from_slice(br#","scopeSpans":["#);
        for (k, ((name, version), members)) in scopes.into_iter().enumerate() {
            if k > 0 {
                text.push(b',');
            }
            text.extend_from_slice(br#"{"scope":"#);
            stream::write_json(&mut text, &json!({"name": name, "version": version}));
            text.extend_from_slice(br#","spans":["#);
            steps.push(Step::Text(std::mem::take(&mut text)));
            steps.extend(
                members
                    .into_iter()
                    .enumerate()
                    .map(|(n, (_, i))| Step::Span(i, n > 0)),
            );
            text.extend_from_slice(b"]}");
        }
        text.extend_from_slice(b"]}");
    }
    text.extend_from_slice(b"]}}");
    steps.push(Step::Text(text));
    let spans = spans.into_iter().next().unwrap_or_default();
    let mut steps = steps.into_iter();
    stream::json_response(move |out: &mut Vec<u8>| match steps.next() {
        Some(Step::Text(t)) => {
            out.extend_from_slice(&t);
            true
        }
        Some(Step::Span(i, comma)) => {
            if comma {
                out.push(b',');
            }
            stream::write_json(out, &otlp_json::encode_span(&spans[i]));
            true
        }
        None => false,
    })
}
