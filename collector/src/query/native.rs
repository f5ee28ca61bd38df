//! The native query API (DESIGN.md §4, query port).
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/traces/{trace_id}/tree` | [`TraceTree`](crate::assemble::TraceTree) JSON; text with `?format=text` or `Accept: text/plain`; `?wait=SECONDS` (≤ 30, larger values are clamped) long-polls until the trace has a root and no orphans, then answers what it has; `?raw=true` skips the clock-skew adjustment |
//! | `GET /v1/traces/{trace_id}` | `{"trace_id", "spans": [simple spans], "metadata": {summary}}` |
//! | `GET /v1/traces` | summaries, newest first (filters below); a text list with `?format=text` or `Accept: text/plain` ([`super::summary_text`]) |
//! | `GET /v1/services` | sorted service names |
//! | `GET /health` | `{"status": "healthy", "metrics": {...}}`; 503 `"unhealthy"` when storage cannot commit |
//! | `GET /metrics` | Prometheus text format ([`crate::metrics`]) |
//! | `GET /healthz` | 200 |
//!
//! Trace ids are 32 hex digits (case-insensitive, not all zero): anything else is 400; a
//! well-formed id that is not stored is 404 `{"error"}`.
//!
//! Search filters (`GET /v1/traces`): `service`, `operation` (exact span name), `min_duration`,
//! `max_duration` (a number with a unit: `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`, e.g. `250ms`,
//! `1.5s`; a plain number means milliseconds), `start_time`, `end_time` (bounds on the trace
//! start, unix seconds, fractions allowed), `error=true|false`, `kind` (the trace has a span of
//! this kind: `server|client|internal|producer|consumer`), `status` (`ok|error|unset`: the
//! trace has a span with this status), `attr.KEY=VALUE` (repeatable: the trace has a span
//! whose attribute `KEY` equals `VALUE`; numbers and booleans compare by their text, e.g.
//! `attr.http.response.status_code=503`; string values over 256 bytes are not searchable),
//! `sort=newest|duration`, `limit` (default 100, clamped to 1000). Without `sort`, a search
//! with `min_duration` or `error=true` is ordered slowest first, any other newest first. Unknown
//! parameters are ignored; malformed values are 400. All filters must hold, and the span
//! conditions given together (`service`/`operation`, `kind`, `status`/`error`, each
//! `attr.KEY=VALUE`, and the duration bounds) must hold for **one** span, as in Jaeger:
//! `service=user&status=error` finds traces whose user span failed. A duration bound alone
//! applies to the trace's duration.
//!
//! A summary is `{"trace_id", "root_service", "root_operation", "services", "operations",
//! "start_time", "end_time" (unix seconds, float), "duration" (seconds, float), "span_count",
//! "error_count"}` plus the exact `start_time_unix_nano`, `end_time_unix_nano`, `duration_ns`,
//! and `truncated` / `spans_refused` (spans refused at `COLLECTOR_MAX_SPANS_PER_TRACE`; a
//! truncated trace's tree is never `complete` and carries a warning, as does its Jaeger trace).

use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::AppState;
use crate::assemble::completeness::{self, Shape};
use crate::assemble::{self, text};
use crate::error::{Error, ErrorFormat};
use crate::ingest::simple_json;
use crate::model::TraceId;
use crate::model::{SpanKind, StatusCode as SpanStatus};
use crate::store::{SortOrder, StoredTrace, TraceQuery, TraceSummary};

/// Most `attr.KEY=VALUE` filters in one search.
pub const MAX_ATTRIBUTE_FILTERS: usize = 16;
/// Longest `?wait=`, seconds.
pub const MAX_WAIT_S: f64 = 30.0;
/// Newest summaries looked at by `GET /v1/traces/latest/tree` for one with a root.
const LATEST_CANDIDATES: usize = 50;
/// Least time between two re-reads of a trace while long-polling.
const MIN_RECHECK: Duration = Duration::from_millis(25);
/// How long `/health` waits for a storage probe.
const HEALTH_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

fn params(p: Params) -> Result<Vec<(String, String)>, Error> {
    p.map(|Query(v)| v)
        .map_err(|_| Error::BadRequest("malformed query string".into()))
}

fn trace_id_param(p: Result<Path<String>, PathRejection>) -> Result<TraceId, Error> {
    let Path(text) = p.map_err(|_| Error::BadRequest("invalid trace id".into()))?;
    TraceId::from_hex(&text).map_err(|e| {
        let reason = match e {
            crate::model::IdError::NotHex => "must be 32 hex digits".to_owned(),
            other => other.to_string(),
        };
        Error::BadRequest(format!("invalid trace id: {reason}"))
    })
}

/// `true`/`1` or `false`/`0`/empty; anything else is 400.
pub(crate) fn parse_bool(key: &str, value: &str) -> Result<bool, Error> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        _ => Err(Error::BadRequest(format!("{key} must be true or false"))),
    }
}

fn not_found(trace_id: TraceId) -> Error {
    Error::NotFound(format!("trace {trace_id} not found"))
}

/// The parameters of the tree endpoints, parsed once.
#[derive(Debug, Clone, Default)]
pub(crate) struct TreeParams {
    /// Answer the text tree.
    pub(crate) as_text: bool,
    /// Longest wait for completeness.
    pub(crate) wait: Duration,
    /// Clock-skew adjustment on or off.
    pub(crate) options: assemble::AssembleOptions,
    /// Text: every event, not only exceptions.
    pub(crate) all_events: bool,
}

impl TreeParams {
    /// `format=json|text` (default from `Accept`), `wait=SECONDS` (≤ [`MAX_WAIT_S`]),
    /// `raw=BOOL`, `events=BOOL`; other keys are ignored, bad values are 400.
    pub(crate) fn parse(pairs: Vec<(String, String)>, headers: &HeaderMap) -> Result<Self, Error> {
        let mut p = Self {
            as_text: wants_text(headers),
            ..Self::default()
        };
        for (key, value) in pairs {
            match key.as_str() {
                "format" => {
                    p.as_text = match value.as_str() {
                        "text" => true,
                        "json" => false,
                        _ => {
                            return Err(Error::BadRequest(
                                "format must be `json` or `text`".into(),
                            ));
                        }
                    }
                }
                "wait" => {
                    let seconds: f64 = value
                        .trim()
                        .parse()
                        .ok()
                        .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                        .ok_or_else(|| {
                            Error::BadRequest("wait must be a number of seconds".into())
                        })?;
                    p.wait = Duration::from_secs_f64(seconds.min(MAX_WAIT_S));
                }
                "raw" if parse_bool(&key, &value)? => p.options = assemble::AssembleOptions::raw(),
                "events" => p.all_events = parse_bool(&key, &value)?,
                _ => {}
            }
        }
        Ok(p)
    }

    fn error_format(&self) -> ErrorFormat {
        if self.as_text {
            ErrorFormat::PlainText
        } else {
            ErrorFormat::Native
        }
    }
}

/// `GET /v1/traces/{trace_id}/tree`.
pub(crate) async fn get_tree(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Params,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let p = TreeParams::parse(params(query)?, &headers)?;
    let answer = async {
        let trace_id = trace_id_param(path)?;
        let trace = load_waiting(&state, trace_id, p.wait)
            .await?
            .ok_or_else(|| not_found(trace_id))?;
        Ok::<_, Error>(tree_response(&trace, &p, &headers))
    };
    Ok(answer
        .await
        .unwrap_or_else(|e| e.into_response_as(p.error_format())))
}

/// `GET /v1/traces/latest/tree`: the newest trace that has a root span.
pub(crate) async fn get_latest_tree(
    State(state): State<AppState>,
    query: Params,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let p = TreeParams::parse(params(query)?, &headers)?;
    let answer = async {
        let newest = state
            .store
            .find_traces(TraceQuery {
                limit: LATEST_CANDIDATES,
                sort: SortOrder::Newest,
                ..TraceQuery::default()
            })
            .await?;
        let trace_id = newest
            .iter()
            .find(|s| s.root_service.is_some())
            .map(|s| s.trace_id)
            .ok_or_else(|| Error::NotFound("no trace with a root span yet".into()))?;
        let trace = load_waiting(&state, trace_id, p.wait)
            .await?
            .ok_or_else(|| not_found(trace_id))?;
        Ok::<_, Error>(tree_response(&trace, &p, &headers))
    };
    Ok(answer
        .await
        .unwrap_or_else(|e| e.into_response_as(p.error_format())))
}

/// Assembles a stored trace and answers it as JSON or text.
fn tree_response(trace: &StoredTrace, p: &TreeParams, headers: &HeaderMap) -> Response {
    let mut tree = assemble::assemble_with(&trace.spans, &p.options);
    if trace.summary.span_count > tree.span_count as u64 {
        tree.complete = false;
        tree.warnings.push(format!(
            "the trace has {} spans; only the first {} by start time are shown",
            trace.summary.span_count, tree.span_count
        ));
    }
    if let Some(warning) = trace.summary.truncation_warning() {
        tree.complete = false;
        tree.warnings.push(warning);
    }
    if p.as_text {
        let options = text::TextOptions {
            ui_url: ui_base_url(headers),
            all_events: p.all_events,
        };
        (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            text::render_with(&tree, &options),
        )
            .into_response()
    } else {
        axum::Json(tree).into_response()
    }
}

/// `http://<Host>`: where the caller reached this port, so where the web UI is.
pub(crate) fn ui_base_url(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
    valid.then(|| format!("http://{host}"))
}

/// `Accept` asks for text and not for JSON.
fn wants_text(headers: &HeaderMap) -> bool {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(",");
    accept.contains("text/plain") && !accept.contains("application/json")
}

/// Reads the trace; with a non-zero `wait`, re-reads after each commit until the trace is
/// complete ([`completeness`]), the deadline passes, or the collector shuts down.
async fn load_waiting(
    state: &AppState,
    trace_id: TraceId,
    wait: Duration,
) -> Result<Option<StoredTrace>, Error> {
    let deadline = Instant::now() + wait;
    // A place among the bounded long-polls, held while waiting (none for a plain read).
    let _long_poll = if wait.is_zero() {
        None
    } else {
        Some(state.long_polls.enter()?)
    };
    let mut commits = state.store.subscribe_commits();
    let mut shutdown = state.shutdown_receiver();
    loop {
        commits.borrow_and_update();
        let trace = state.store.get_trace(trace_id).await?;
        let settled = trace.as_ref().is_some_and(|t| {
            let shapes: Vec<Shape> = t.spans.iter().map(Shape::of).collect();
            completeness::check(&shapes).is_complete()
        });
        if settled || Instant::now() >= deadline || *shutdown.borrow() {
            return Ok(trace);
        }
        let recheck_earliest = Instant::now() + MIN_RECHECK;
        tokio::select! {
            changed = commits.changed() => {
                if changed.is_err() {
                    // The writer is gone: no new data can arrive.
                    return Ok(trace);
                }
                tokio::time::sleep_until(recheck_earliest.min(deadline)).await;
            }
            () = tokio::time::sleep_until(deadline) => {}
            () = async { let _ = shutdown.wait_for(|stopping| *stopping).await; } => {
                return Ok(trace);
            }
        }
    }
}

/// `GET /v1/traces/{trace_id}`.
pub(crate) async fn get_trace(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Error> {
    let trace_id = trace_id_param(path)?;
    let trace = state
        .store
        .get_trace(trace_id)
        .await?
        .ok_or_else(|| not_found(trace_id))?;
    let spans: Vec<Value> = trace.spans.iter().map(simple_json::encode_span).collect();
    Ok(axum::Json(json!({
        "trace_id": trace_id.to_hex(),
        "spans": spans,
        "metadata": summary_json(&trace.summary),
    }))
    .into_response())
}

/// `GET /v1/traces`: JSON summaries, or the text list of [`super::summary_text`] with
/// `?format=text` or `Accept: text/plain`.
pub(crate) async fn search(
    State(state): State<AppState>,
    query: Params,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let params = params(query)?;
    let as_text = match params.iter().rev().find(|(k, _)| k == "format") {
        Some((_, v)) if v == "text" => true,
        Some((_, v)) if v == "json" => false,
        Some(_) => return Err(Error::BadRequest("format must be `json` or `text`".into())),
        None => wants_text(&headers),
    };
    let q = parse_search(params)?;
    let found = state.store.find_traces(q).await?;
    if as_text {
        return Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            super::summary_text::render(&found),
        )
            .into_response());
    }
    Ok(axum::Json(found.iter().map(summary_json).collect::<Vec<_>>()).into_response())
}

/// `GET /v1/services`.
pub(crate) async fn services(State(state): State<AppState>) -> Result<Response, Error> {
    Ok(axum::Json(state.store.services().await?).into_response())
}

/// `GET /health`.
pub(crate) async fn health(State(state): State<AppState>) -> Response {
    let mut metrics = state.metrics.snapshot();
    metrics.insert(
        "store_commits".into(),
        Value::from(*state.store.subscribe_commits().borrow()),
    );
    if let Some(bytes) = state.store.storage_bytes() {
        metrics.insert("storage_bytes".into(), Value::from(bytes));
    }
    match tokio::time::timeout(HEALTH_PROBE_TIMEOUT, state.store.check_writable()).await {
        Ok(Ok(())) => axum::Json(json!({"status": "healthy", "metrics": metrics})).into_response(),
        Ok(Err(e)) => unhealthy(&e.to_string(), metrics),
        Err(_) => unhealthy("storage did not answer within 2 s", metrics),
    }
}

/// `GET /metrics`: Prometheus text format (see [`crate::metrics`]).
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let commits = *state.store.subscribe_commits().borrow();
    let storage_bytes = state.store.storage_bytes();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render_prometheus(&state.metrics, storage_bytes, commits),
    )
        .into_response()
}

fn unhealthy(reason: &str, metrics: serde_json::Map<String, Value>) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"status": "unhealthy", "error": reason, "metrics": metrics})),
    )
        .into_response()
}

/// A summary as JSON (see the module docs).
pub fn summary_json(s: &TraceSummary) -> Value {
    json!({
        "trace_id": s.trace_id.to_hex(),
        "root_service": s.root_service,
        "root_operation": s.root_operation,
        "services": s.services,
        "operations": s.operations,
        "start_time": s.start_time_unix_nano as f64 / 1e9,
        "end_time": s.end_time_unix_nano as f64 / 1e9,
        "duration": s.duration_ns() as f64 / 1e9,
        "start_time_unix_nano": s.start_time_unix_nano,
        "end_time_unix_nano": s.end_time_unix_nano,
        "duration_ns": s.duration_ns(),
        "span_count": s.span_count,
        "error_count": s.error_count,
        "http_status": s.root_http_status,
        "truncated": s.is_truncated(),
        "spans_refused": s.spans_refused,
    })
}

/// The search filters of `GET /v1/traces` (see the module docs); 400 for a bad value.
pub(crate) fn parse_search(params: Vec<(String, String)>) -> Result<TraceQuery, Error> {
    let mut q = TraceQuery::default();
    let mut sort = None;
    for (key, value) in params {
        if let Some(attr) = key.strip_prefix("attr.") {
            if attr.is_empty() {
                return Err(Error::BadRequest(
                    "attr. needs a key: attr.KEY=VALUE".into(),
                ));
            }
            if q.attributes.len() >= MAX_ATTRIBUTE_FILTERS {
                return Err(Error::BadRequest(format!(
                    "at most {MAX_ATTRIBUTE_FILTERS} attribute filters"
                )));
            }
            q.attributes.push((attr.to_owned(), value));
            continue;
        }
        let bad = |what: &str| Error::BadRequest(format!("{key} must be {what}"));
        match key.as_str() {
            "service" if !value.is_empty() => q.service = Some(value),
            "operation" if !value.is_empty() => q.operation = Some(value),
            "min_duration" => {
                q.min_duration_ns =
                    Some(parse_duration_ns(&value).ok_or_else(|| bad("a duration such as 250ms"))?);
            }
            "max_duration" => {
                q.max_duration_ns =
                    Some(parse_duration_ns(&value).ok_or_else(|| bad("a duration such as 2s"))?);
            }
            "start_time" => {
                q.start_time_min_unix_nano =
                    Some(parse_unix_seconds(&value).ok_or_else(|| bad("unix seconds"))?);
            }
            "end_time" => {
                q.start_time_max_unix_nano =
                    Some(parse_unix_seconds(&value).ok_or_else(|| bad("unix seconds"))?);
            }
            "error" => q.errors_only = parse_bool(&key, &value)?,
            "kind" if !value.is_empty() => {
                q.kind = Some(
                    SpanKind::parse(&value)
                        .ok_or_else(|| bad("server, client, internal, producer or consumer"))?,
                );
            }
            "status" if !value.is_empty() => {
                q.status =
                    Some(SpanStatus::parse(&value).ok_or_else(|| bad("ok, error or unset"))?);
            }
            "sort" if !value.is_empty() => {
                sort = Some(match value.as_str() {
                    "newest" => SortOrder::Newest,
                    "duration" => SortOrder::Duration,
                    _ => return Err(bad("newest or duration")),
                });
            }
            "limit" => {
                q.limit = value
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| bad("a positive integer"))?
                    .min(crate::store::MAX_SEARCH_LIMIT as u64) as usize;
            }
            _ => {}
        }
    }
    if let (Some(min), Some(max)) = (q.min_duration_ns, q.max_duration_ns)
        && min > max
    {
        return Err(Error::BadRequest(
            "min_duration is larger than max_duration".into(),
        ));
    }
    q.sort = sort.unwrap_or(if q.min_duration_ns.is_some() || q.errors_only {
        SortOrder::Duration
    } else {
        SortOrder::Newest
    });
    if let (Some(start), Some(end)) = (q.start_time_min_unix_nano, q.start_time_max_unix_nano)
        && start > end
    {
        return Err(Error::BadRequest("start_time is after end_time".into()));
    }
    Ok(q)
}

/// Parses `250ms`, `1.5s`, `100us`, `100µs`, `20ns`, `2m`, `1h`; a plain number is
/// milliseconds. `None` for anything else (negative, NaN, unknown unit, overflow).
pub fn parse_duration_ns(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "" | "ms" => 1e6,
        "ns" => 1.0,
        "us" | "µs" | "μs" => 1e3,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return None,
    };
    let ns = value * scale;
    (ns.is_finite() && ns >= 0.0 && ns < u64::MAX as f64).then(|| ns.round() as u64)
}

pub(crate) fn parse_unix_seconds(text: &str) -> Option<u64> {
    let seconds: f64 = text.trim().parse().ok()?;
    let ns = seconds * 1e9;
    (ns.is_finite() && ns >= 0.0 && ns < u64::MAX as f64).then(|| ns.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ns("250ms"), Some(250_000_000));
        assert_eq!(parse_duration_ns("2s"), Some(2_000_000_000));
        assert_eq!(parse_duration_ns("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_duration_ns("100us"), Some(100_000));
        assert_eq!(parse_duration_ns("100µs"), Some(100_000));
        assert_eq!(parse_duration_ns("7"), Some(7_000_000));
        assert_eq!(parse_duration_ns("1m"), Some(60_000_000_000));
        for bad in ["", "-1s", "abc", "1 parsec", "1e400s", "NaN"] {
            assert_eq!(parse_duration_ns(bad), None, "{bad}");
        }
    }

    #[test]
    fn search_params() {
        let p = |pairs: &[(&str, &str)]| {
            parse_search(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let q = p(&[("service", "a"), ("limit", "5000"), ("error", "true")]).unwrap();
        assert_eq!(q.service.as_deref(), Some("a"));
        assert_eq!(q.limit, 1000);
        assert!(q.errors_only);
        assert!(p(&[("limit", "0")]).is_err());
        assert!(p(&[("min_duration", "2s"), ("max_duration", "1s")]).is_err());
        assert!(p(&[("start_time", "20"), ("end_time", "10")]).is_err());
        assert!(p(&[("error", "maybe")]).is_err());
        assert!(p(&[("whatever", "x")]).is_ok());
        let q = p(&[
            ("kind", "server"),
            ("status", "ERROR"),
            ("attr.http.route", "/orders"),
            ("attr.app.id", "7"),
        ])
        .unwrap();
        assert_eq!(q.kind, Some(SpanKind::Server));
        assert_eq!(q.status, Some(SpanStatus::Error));
        assert_eq!(q.attributes.len(), 2);
        assert_eq!(q.sort, SortOrder::Newest);
        assert_eq!(p(&[("error", "true")]).unwrap().sort, SortOrder::Duration);
        assert_eq!(
            p(&[("min_duration", "1s")]).unwrap().sort,
            SortOrder::Duration
        );
        let q = p(&[("min_duration", "1s"), ("sort", "newest")]).unwrap();
        assert_eq!(q.sort, SortOrder::Newest);
        assert!(p(&[("kind", "sideways")]).is_err());
        assert!(p(&[("sort", "random")]).is_err());
        assert!(p(&[("attr.", "x")]).is_err());
    }
}
