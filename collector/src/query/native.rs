//! The native query API (DESIGN.md §4, query port).
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/traces/{trace_id}/tree` | [`TraceTree`](crate::assemble::TraceTree) JSON; text with `?format=text` or `Accept: text/plain`; `?wait=SECONDS` (≤ 30, larger values are clamped) long-polls until the trace has a root and no orphans, then answers what it has; `?raw=true` skips the clock-skew adjustment; `?links=follow` adds the traces its spans link to and the traces whose spans link to it (`linked_traces`, each with `relation` `links_to` or `linked_from`, at most 10 in all) |
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

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::linked::{Relation, linked_traces};
use super::params::{Pairs, Param, pairs, parse_search, ui_base_url};
use super::stream;
use crate::AppState;
use crate::assemble::completeness::{self, Shape};
use crate::assemble::{self, page, text};
use crate::error::{Error, ErrorFormat};
use crate::format::simple_json;
use crate::model::TraceId;
use crate::store::{SortOrder, StoredTrace, TraceQuery, TraceSummary};

/// Longest `?wait=`, seconds.
pub const MAX_WAIT_S: f64 = 30.0;
/// Newest summaries looked at by `GET /v1/traces/latest/tree` for one with a root.
const LATEST_CANDIDATES: usize = 50;
/// Least time between two re-reads of a trace while long-polling.
const MIN_RECHECK: Duration = Duration::from_millis(25);
/// How long `/health` waits for a storage probe.
const HEALTH_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

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
    /// `links=follow`: add the traces this one's spans link to and those linking to it.
    pub(crate) follow_links: bool,
    /// `limit=N` (most spans, chosen breadth first) and `root=SPAN_ID` (start there).
    pub(crate) page: assemble::page::TreePage,
}

/// At most this many linked traces are stitched in by `links=follow`.
pub const MAX_FOLLOWED_TRACES: usize = 10;

impl TreeParams {
    /// `format=json|text` (default from `Accept`), `wait=SECONDS` (≤ [`MAX_WAIT_S`]),
    /// `raw=BOOL`, `events=BOOL`, `links=follow|none`, `limit=N`, `root=SPAN_ID`; other keys
    /// are ignored, bad values are 400.
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
                "raw" if Param::new(&key, &value).bool()? => {
                    p.options = assemble::AssembleOptions::raw();
                }
                "events" => p.all_events = Param::new(&key, &value).bool()?,
                "limit" => {
                    p.page.limit = Some(value.trim().parse().map_err(|_| {
                        Error::BadRequest("limit must be a non-negative integer".into())
                    })?);
                }
                "root" => {
                    p.page.root =
                        Some(crate::model::SpanId::from_hex(value.trim()).map_err(|_| {
                            Error::BadRequest("root must be a span id (16 hex digits)".into())
                        })?);
                }
                "links" => {
                    p.follow_links = match value.as_str() {
                        "follow" => true,
                        "none" | "" => false,
                        _ => {
                            return Err(Error::BadRequest(
                                "links must be `follow` or `none`".into(),
                            ));
                        }
                    }
                }
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
    query: Pairs,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let p = TreeParams::parse(pairs(query)?, &headers)?;
    let trace_id = trace_id_param(path);
    if let (Ok(id), Some(peers)) = (&trace_id, &state.peers)
        && let Some(answer) = peers.proxy_wait(id, p.wait, &uri, &headers).await
    {
        return Ok(answer);
    }
    Ok(tree_answer(&state, async { trace_id }, &p, &headers).await)
}

/// `GET /v1/traces/latest/tree`: the newest trace that has a root span.
pub(crate) async fn get_latest_tree(
    State(state): State<AppState>,
    query: Pairs,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let p = TreeParams::parse(pairs(query)?, &headers)?;
    let newest = async {
        let newest = state
            .store
            .find_traces(TraceQuery {
                limit: LATEST_CANDIDATES,
                sort: SortOrder::Newest,
                ..TraceQuery::default()
            })
            .await?;
        newest
            .iter()
            .find(|s| s.root_service.is_some())
            .map(|s| s.trace_id)
            .ok_or_else(|| Error::NotFound("no trace with a root span yet".into()))
    };
    Ok(tree_answer(&state, newest, &p, &headers).await)
}

/// The tree of the trace `trace_id` resolves to, waiting as asked; errors in the format the
/// caller asked for (text or JSON).
async fn tree_answer(
    state: &AppState,
    trace_id: impl Future<Output = Result<TraceId, Error>>,
    p: &TreeParams,
    headers: &HeaderMap,
) -> Response {
    let answer = async {
        let trace_id = trace_id.await?;
        let trace = load_waiting(state, trace_id, p.wait)
            .await?
            .ok_or_else(|| not_found(trace_id))?;
        let linked = if p.follow_links {
            linked_traces(state, &trace).await?
        } else {
            Vec::new()
        };
        tree_response(trace, &linked, p, headers)
    };
    answer
        .await
        .unwrap_or_else(|e| e.into_response_as(p.error_format()))
}

/// Assembles a stored trace (and, for `links=follow`, the `linked` traces it links to or is
/// linked from) and
/// answers the page `p` asks for, as JSON written node by node ([`assemble::page`]) or text.
///
/// # Errors
/// 404 when `root` names a span the trace does not have.
fn tree_response(
    trace: StoredTrace,
    linked: &[(Relation, StoredTrace)],
    p: &TreeParams,
    headers: &HeaderMap,
) -> Result<Response, Error> {
    let StoredTrace { summary, spans } = trace;
    let mut layout = assemble::Layout::new(assemble::adjust_owned(spans, &p.options));
    let tree = layout.header_mut();
    if summary.span_count > tree.span_count as u64 {
        tree.complete = false;
        tree.warnings.push(format!(
            "the trace has {} spans; only the first {} by start time are shown",
            summary.span_count, tree.span_count
        ));
    }
    if let Some(warning) = summary.truncation_warning() {
        tree.complete = false;
        tree.warnings.push(warning);
    }
    let selection =
        page::Selection::choose(&layout, &p.page).map_err(|e| Error::NotFound(e.to_string()))?;
    if p.as_text {
        let options = text::TextOptions {
            ui_url: ui_base_url(headers),
            all_events: p.all_events,
        };
        let mut out = text::render_page(&layout, &selection, &options);
        for (relation, t) in linked {
            let linked_tree = assemble::assemble_with(&t.spans, &p.options);
            out.push('\n');
            out.push_str(relation.heading());
            out.push('\n');
            out.push_str(&text::render_with(&linked_tree, &options));
        }
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], out).into_response());
    }
    let mut extra = Vec::new();
    if p.follow_links {
        let trees: Vec<Value> = linked
            .iter()
            .map(|(relation, t)| {
                json!({
                    "relation": relation.as_str(),
                    "tree": assemble::assemble_with(&t.spans, &p.options),
                })
            })
            .collect();
        extra.push(("linked_traces".to_owned(), Value::Array(trees)));
    }
    let mut writer = page::JsonTreeWriter::new(layout, selection, extra);
    Ok(stream::json_response(move |out: &mut Vec<u8>| {
        writer.next_piece(out)
    }))
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

/// `GET /v1/traces/{trace_id}`: the spans, streamed one by one ([`super::stream`]);
/// `?offset=N&limit=M` answers the spans `N..N+M` (by start time) of the trace, and the
/// metadata's `next_offset` says where the next page starts (`null` on the last page);
/// `?span=SPAN_ID` answers only that span (its copies of each kind).
pub(crate) async fn get_trace(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Pairs,
) -> Result<Response, Error> {
    let trace_id = trace_id_param(path)?;
    let page = SpanPage::parse(&pairs(query)?)?;
    let trace = state
        .store
        .get_trace(trace_id)
        .await?
        .ok_or_else(|| not_found(trace_id))?;
    let StoredTrace { summary, mut spans } = trace;
    if let Some(id) = page.span {
        spans.retain(|s| s.span_id == id);
    }
    let total = spans.len();
    let range = page.range(total);
    let mut metadata = summary_json(&summary);
    metadata["offset"] = Value::from(range.start);
    metadata["next_offset"] = if range.end < total {
        Value::from(range.end)
    } else {
        Value::Null
    };
    let mut prefix = br#"{"trace_id":"#.to_vec();
    stream::write_json(&mut prefix, &trace_id.to_hex());
    prefix.extend_from_slice(br#","spans":["#);
    let spans = spans.into_iter().skip(range.start).take(range.len());
    Ok(stream::json_response(stream::JsonArray::new(
        prefix,
        spans,
        |span, out| stream::write_json(out, &simple_json::encode_span(&span)),
        move |out| {
            out.extend_from_slice(br#"],"metadata":"#);
            stream::write_json(out, &metadata);
            out.push(b'}');
        },
    )))
}

/// `?offset=N&limit=M` of a span list (both optional, non-negative integers), and
/// `span=SPAN_ID` (only the copies of that span: what the UI's span details read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SpanPage {
    /// Only spans with this id.
    pub(crate) span: Option<crate::model::SpanId>,
    /// Spans skipped.
    pub(crate) offset: usize,
    /// Most spans answered; `None` for all.
    pub(crate) limit: Option<usize>,
}

impl SpanPage {
    /// Reads `offset` and `limit`; other keys are ignored, bad values are 400.
    pub(crate) fn parse(pairs: &[(String, String)]) -> Result<Self, Error> {
        let mut page = Self::default();
        for (key, value) in pairs {
            let number = || {
                value
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| Error::BadRequest(format!("{key} must be a non-negative integer")))
            };
            match key.as_str() {
                "offset" => page.offset = number()?,
                "limit" => page.limit = Some(number()?),
                "span" => {
                    page.span =
                        Some(crate::model::SpanId::from_hex(value.trim()).map_err(|_| {
                            Error::BadRequest("span must be a span id (16 hex digits)".into())
                        })?);
                }
                _ => {}
            }
        }
        Ok(page)
    }

    /// The indexes this page covers in a list of `total` items.
    pub(crate) fn range(&self, total: usize) -> std::ops::Range<usize> {
        let start = self.offset.min(total);
        let end = self
            .limit
            .map_or(total, |l| start.saturating_add(l).min(total));
        start..end
    }
}

/// `GET /v1/traces`: JSON summaries, or the text list of [`super::summary_text`] with
/// `?format=text` or `Accept: text/plain`.
pub(crate) async fn search(
    State(state): State<AppState>,
    query: Pairs,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let params = pairs(query)?;
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
    let mut body = crate::metrics::render_prometheus(&state.metrics, storage_bytes, commits);
    if let Some(tail) = &state.tail_sampler {
        tail.render_metrics(state.settler.pending(), &mut body);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
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
