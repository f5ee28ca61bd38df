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

use std::collections::HashSet;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::ui_model::{streamed_search, streamed_trace, trace_json};
use super::{apply_tags, find_traces, parse_trace_id, path_trace_id, tag_map};
use crate::AppState;
use crate::assemble::AssembleOptions;
use crate::error::{Error, JaegerError};
use crate::model::TraceId;
use crate::query::params::{Pairs, Param, pairs};
use crate::store::{MAX_SEARCH_LIMIT, TraceQuery};

type JResult = Result<Response, JaegerError>;

/// Default search range when `start` is missing: 2 days before `end`.
const DEFAULT_SEARCH_RANGE_US: u64 = 2 * 24 * 3600 * 1_000_000;
/// Default `lookback` of `/api/dependencies`: 24 hours, in ms.
const DEFAULT_DEPENDENCY_LOOKBACK_MS: u64 = 24 * 3600 * 1000;

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
    if pretty(&p) {
        return Ok(envelope(
            json!([trace_json(trace, &options)]),
            0,
            None,
            true,
        ));
    }
    Ok(streamed_trace(trace, &options))
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
    if search.trace_ids.is_empty() && !pretty(&p) {
        let found = state.store.find_traces(search.query).await?;
        return Ok(streamed_search(&state, found, search.options));
    }
    if search.trace_ids.is_empty() {
        for t in find_traces(&state, search.query).await? {
            traces.push(trace_json(t, &search.options));
        }
    } else {
        let mut seen = HashSet::new();
        for id in search.trace_ids {
            if !seen.insert(id) {
                continue;
            }
            match super::get_trace(&state, id).await? {
                Some(t) => traces.push(trace_json(t, &search.options)),
                _ => errors.push(json!({
                    "code": 404, "msg": "trace not found", "traceID": id.to_hex(),
                })),
            }
        }
    }
    let errors = (!errors.is_empty()).then_some(errors);
    Ok(envelope(Value::Array(traces), 0, errors, pretty(&p)))
}
