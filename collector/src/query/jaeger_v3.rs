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

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::jaeger::{parse_go_duration_ns, parse_trace_id};
use super::native::parse_bool;
use crate::AppState;
use crate::assemble::{self, AssembleOptions};
use crate::error::{Error, JaegerV3Error};
use crate::format::otlp_json;
use crate::model::SpanKind;
use crate::store::{MAX_SEARCH_LIMIT, StoredTrace, TraceQuery};

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;
type V3Result = Result<Response, JaegerV3Error>;

fn params(p: Params) -> Result<Vec<(String, String)>, Error> {
    p.map(|Query(v)| v)
        .map_err(|_| Error::BadRequest("malformed query string".into()))
}

/// `GET /api/v3/services`.
pub(crate) async fn services(State(state): State<AppState>) -> V3Result {
    Ok(axum::Json(json!({"services": state.store.services().await?})).into_response())
}

/// `GET /api/v3/operations`.
pub(crate) async fn operations(State(state): State<AppState>, q: Params) -> V3Result {
    let p = params(q)?;
    let mut service = None;
    let mut kind = None;
    for (k, v) in p {
        match k.as_str() {
            "service" if !v.is_empty() => service = Some(v),
            "spanKind" | "span_kind" if !v.is_empty() => {
                kind = Some(
                    SpanKind::parse(&v)
                        .ok_or_else(|| Error::BadRequest("spanKind is not a span kind".into()))?,
                );
            }
            _ => {}
        }
    }
    let service =
        service.ok_or_else(|| Error::BadRequest("parameter 'service' is required".into()))?;
    let ops: Vec<Value> = state
        .store
        .operations(service)
        .await?
        .into_iter()
        .filter(|o| kind.is_none_or(|k| k.as_str() == o.kind.as_str()))
        .map(|o| json!({"name": o.name, "spanKind": o.kind.as_str()}))
        .collect();
    Ok(axum::Json(json!({"operations": ops})).into_response())
}

/// `GET /api/v3/traces/{traceID}`.
pub(crate) async fn get_trace(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    q: Params,
) -> V3Result {
    let p = params(q)?;
    let Path(text) = path.map_err(|_| Error::BadRequest("invalid trace id".into()))?;
    let trace_id = parse_trace_id(&text)?;
    let mut options = AssembleOptions::default();
    for (k, v) in &p {
        if (k == "rawTraces" || k == "raw_traces") && parse_bool(k, v)? {
            options = AssembleOptions::raw();
        }
    }
    let trace = state
        .store
        .get_trace(trace_id)
        .await?
        .filter(|t| !t.spans.is_empty())
        .ok_or_else(|| Error::NotFound("No traces found".into()))?;
    Ok(axum::Json(json!({"result": traces_data(&[trace], &options)})).into_response())
}

struct Search {
    query: TraceQuery,
    options: AssembleOptions,
}

fn parse_search(p: Vec<(String, String)>) -> Result<Search, Error> {
    let mut q = TraceQuery::default();
    let mut options = AssembleOptions::default();
    let (mut min, mut max) = (None, None);
    for (k, v) in p {
        let Some(name) = k.strip_prefix("query.") else {
            continue;
        };
        let bad = |what: &str| Error::BadRequest(format!("{k} must be {what}"));
        let name = name.replace('_', "").to_ascii_lowercase();
        match name.as_str() {
            "servicename" if !v.is_empty() => q.service = Some(v),
            "operationname" if !v.is_empty() => q.operation = Some(v),
            "starttimemin" => {
                min = Some(parse_rfc3339_ns(&v).ok_or_else(|| bad("an RFC 3339 time"))?);
            }
            "starttimemax" => {
                max = Some(parse_rfc3339_ns(&v).ok_or_else(|| bad("an RFC 3339 time"))?);
            }
            "durationmin" if !v.is_empty() => {
                q.min_duration_ns =
                    Some(parse_go_duration_ns(&v).ok_or_else(|| bad("a duration such as 1.5s"))?);
            }
            "durationmax" if !v.is_empty() => {
                q.max_duration_ns =
                    Some(parse_go_duration_ns(&v).ok_or_else(|| bad("a duration such as 1.5s"))?);
            }
            "searchdepth" if !v.is_empty() => {
                let n: usize = v.trim().parse().map_err(|_| bad("a positive integer"))?;
                q.limit = n.clamp(1, MAX_SEARCH_LIMIT);
            }
            "attributes" if !v.is_empty() => {
                let map: Map<String, Value> =
                    serde_json::from_str(&v).map_err(|_| bad("a JSON object of strings"))?;
                for (key, value) in map {
                    let value = match value {
                        Value::String(s) => s,
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => return Err(bad("a JSON object of strings")),
                    };
                    if key == "error" && value == "true" {
                        q.errors_only = true;
                    } else {
                        q.attributes.push((key, value));
                    }
                }
            }
            "rawtraces" if parse_bool(&k, &v)? => options = AssembleOptions::raw(),
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

async fn search_traces(state: &AppState, query: TraceQuery) -> Result<Vec<StoredTrace>, Error> {
    let mut traces = Vec::new();
    for summary in state.store.find_traces(query).await? {
        if let Some(t) = state.store.get_trace(summary.trace_id).await?
            && !t.spans.is_empty()
        {
            traces.push(t);
        }
    }
    if traces.is_empty() {
        return Err(Error::NotFound("No traces found".into()));
    }
    Ok(traces)
}

/// `GET /api/v3/traces?query.…`.
pub(crate) async fn search(State(state): State<AppState>, q: Params) -> V3Result {
    let s = parse_search(params(q)?)?;
    let traces = search_traces(&state, s.query).await?;
    Ok(axum::Json(json!({"result": traces_data(&traces, &s.options)})).into_response())
}

/// `GET /api/v3/trace-summaries?query.…`.
pub(crate) async fn summaries(State(state): State<AppState>, q: Params) -> V3Result {
    let s = parse_search(params(q)?)?;
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

/// (scope name, scope version) and the spans of that scope.
type ScopeGroup = ((String, String), Vec<Value>);

/// Traces as one OTLP JSON `TracesData`: spans grouped by resource, then scope.
fn traces_data(traces: &[StoredTrace], options: &AssembleOptions) -> Value {
    // Resources are grouped by content (equal resources may be distinct allocations).
    let mut groups: Vec<(Value, Vec<ScopeGroup>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut by_ptr: HashMap<usize, usize> = HashMap::new();
    for t in traces {
        let adjusted = assemble::adjust(&t.spans, options);
        for s in &adjusted.spans {
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
            let scope = (s.scope.name.clone(), s.scope.version.clone());
            let scopes = &mut groups[g].1;
            match scopes.iter_mut().find(|(k, _)| *k == scope) {
                Some((_, spans)) => spans.push(otlp_json::encode_span(s)),
                None => scopes.push((scope, vec![otlp_json::encode_span(s)])),
            }
        }
    }
    let resource_spans: Vec<Value> = groups
        .into_iter()
        .map(|(resource, scopes)| {
            json!({
                "resource": resource,
                "scopeSpans": scopes.into_iter().map(|((name, version), spans)| json!({
                    "scope": {"name": name, "version": version},
                    "spans": spans,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"resourceSpans": resource_spans})
}

/// Parses an RFC 3339 time (`2026-08-01T10:00:00Z`, fractions up to ns, `±hh:mm` offsets) to
/// unix nanoseconds. A space where the offset's `+` should be (an unescaped `+` in a query
/// string) is read as `+`.
pub fn parse_rfc3339_ns(text: &str) -> Option<u64> {
    let t = text.trim().replace(' ', "+");
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(range)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = t.get(start..i)?;
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        nanos = format!("{digits:0<9}").parse().ok()?;
    }
    let offset_s: i64 = match t.get(i..)? {
        "Z" | "z" => 0,
        rest if rest.len() == 6 && matches!(&rest[..1], "+" | "-") && &rest[3..4] == ":" => {
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let m: i64 = rest.get(4..6)?.parse().ok()?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    // Days from civil (H. Hinnant).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    let ns = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
    u64::try_from(ns).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ns("2025-11-21T04:40:00Z"),
            Some(1_763_700_000_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_ns("2025-11-21T05:40:00.5+01:00"),
            Some(1_763_700_000_500_000_000)
        );
        // An unescaped '+' arrives as a space.
        assert_eq!(
            parse_rfc3339_ns("2025-11-21T05:40:00.000000001 01:00"),
            Some(1_763_700_000_000_000_001)
        );
        for bad in [
            "",
            "2025-11-21",
            "2025-13-01T00:00:00Z",
            "yesterday",
            "2025-11-21T04:40:00",
        ] {
            assert_eq!(parse_rfc3339_ns(bad), None, "{bad}");
        }
    }
}
