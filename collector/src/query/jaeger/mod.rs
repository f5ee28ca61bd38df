//! # The Jaeger-compatible query APIs
//!
//! - [`v1`]: the v1 "UI JSON" API (`/api/...`, interop.md §3.2–3.7) that Grafana's Jaeger data
//!   source and older Jaeger UIs call;
//! - [`ui_model`]: traces in the Jaeger UI model of v1, whole or written span by span;
//! - [`v3`]: the `api_v3` subset the current Jaeger UI uses (`/api/v3/...`, interop.md §3.8).
//!
//! Both read the same [`TraceQuery`] through the plumbing here: Jaeger trace ids, span kinds,
//! tag maps and the searches that load whole traces. They differ only in their parameter
//! names and answer shapes.

pub mod ui_model;
pub mod v1;
pub mod v3;

use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use serde_json::{Map, Value};

use super::params::Param;
use crate::AppState;
use crate::error::Error;
use crate::model::{SpanKind, StatusCode, TraceId};
use crate::store::{StoredTrace, TraceQuery};

/// Parses a Jaeger trace id: 1–32 hex digits, left-padded with zeros, any case.
///
/// # Errors
/// 400 for anything else.
pub fn parse_trace_id(text: &str) -> Result<TraceId, Error> {
    let invalid = || Error::BadRequest("invalid trace id (expected 1 to 32 hex digits)".into());
    if text.is_empty() || text.len() > 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    TraceId::from_hex(&format!("{text:0>32}")).map_err(|_| invalid())
}

/// The `{traceID}` path segment as a Jaeger trace id ([`parse_trace_id`]).
///
/// # Errors
/// 400 for a missing or invalid id.
pub(crate) fn path_trace_id(path: Result<Path<String>, PathRejection>) -> Result<TraceId, Error> {
    let Path(text) = path.map_err(|_| Error::BadRequest("invalid trace id".into()))?;
    parse_trace_id(&text)
}

/// A span kind parameter (`server`, `CLIENT`, ...).
fn span_kind(p: Param<'_>) -> Result<SpanKind, Error> {
    SpanKind::parse(p.value).ok_or_else(|| p.bad("server, client, producer, consumer or internal"))
}

/// A JSON object of tags (`{"error": "true", "http.status_code": 503}`): strings, numbers
/// and booleans, as `(key, text)` pairs.
pub(crate) fn tag_map(p: Param<'_>) -> Result<Vec<(String, String)>, Error> {
    let bad = || p.bad("a JSON object of strings, e.g. {\"error\":\"true\"}");
    let map: Map<String, Value> = serde_json::from_str(p.value).map_err(|_| bad())?;
    map.into_iter()
        .map(|(key, value)| match value {
            Value::String(s) => Ok((key, s)),
            Value::Number(n) => Ok((key, n.to_string())),
            Value::Bool(b) => Ok((key, b.to_string())),
            _ => Err(bad()),
        })
        .collect()
}

/// Puts Jaeger tags on a query: `error=true` → an error span, `span.kind=K` → a span of kind
/// K, `otel.status_code=OK|ERROR` → a span with that status, anything else → the span
/// attribute index (numbers and booleans compare by text).
///
/// # Errors
/// 400 for too many tags or a bad value of a special tag.
pub(crate) fn apply_tags(query: &mut TraceQuery, tags: Vec<(String, String)>) -> Result<(), Error> {
    if tags.len() > super::params::MAX_ATTRIBUTE_FILTERS {
        return Err(Error::BadRequest("too many tags".into()));
    }
    for (key, value) in tags {
        match key.as_str() {
            "error" => query.errors_only |= Param::new("tag error", &value).bool()?,
            "span.kind" => query.kind = Some(span_kind(Param::new("tag span.kind", &value))?),
            "otel.status_code" => {
                query.status = Some(StatusCode::parse(&value).ok_or_else(|| {
                    Error::BadRequest("tag otel.status_code must be OK or ERROR".into())
                })?);
            }
            _ => query.attributes.push((key, value)),
        }
    }
    Ok(())
}

/// The operations of the `service` parameter (required), of the kind `spanKind` (also
/// `span_kind`) names when given, as both APIs answer them: `{"name", "spanKind"}`.
pub(crate) async fn operations(
    state: &AppState,
    pairs: &[(String, String)],
) -> Result<Vec<Value>, Error> {
    let mut service = None;
    let mut kind = None;
    for (k, v) in pairs {
        match k.as_str() {
            "service" if !v.is_empty() => service = Some(v.clone()),
            "spanKind" | "span_kind" if !v.is_empty() => kind = Some(span_kind(Param::new(k, v))?),
            _ => {}
        }
    }
    let service =
        service.ok_or_else(|| Error::BadRequest("parameter 'service' is required".into()))?;
    Ok(state
        .store
        .operations(service)
        .await?
        .into_iter()
        .filter(|o| kind.is_none_or(|k| k == o.kind))
        .map(|o| serde_json::json!({"name": o.name, "spanKind": o.kind.as_str()}))
        .collect())
}

/// The whole traces a search finds, in its order (traces without spans left out).
pub(crate) async fn find_traces(
    state: &AppState,
    query: TraceQuery,
) -> Result<Vec<StoredTrace>, Error> {
    let mut traces = Vec::new();
    for summary in state.store.find_traces(query).await? {
        if let Some(t) = state.store.get_trace(summary.trace_id).await?
            && !t.spans.is_empty()
        {
            traces.push(t);
        }
    }
    Ok(traces)
}

/// One trace by id, `None` when unknown or empty.
pub(crate) async fn get_trace(
    state: &AppState,
    trace_id: TraceId,
) -> Result<Option<StoredTrace>, Error> {
    Ok(state
        .store
        .get_trace(trace_id)
        .await?
        .filter(|t| !t.spans.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_are_padded_and_validated() {
        assert_eq!(
            parse_trace_id("abc").unwrap().to_hex(),
            "00000000000000000000000000000abc"
        );
        assert!(parse_trace_id("").is_err());
        assert!(parse_trace_id("xyz").is_err());
        assert!(parse_trace_id(&"1".repeat(33)).is_err());
        assert!(parse_trace_id(&"0".repeat(32)).is_err());
    }

    #[test]
    fn tags_map_onto_the_query() {
        let mut q = TraceQuery::default();
        let tags = tag_map(Param::new(
            "tags",
            r#"{"error":"true","span.kind":"server","http.status_code":503,"ok":true}"#,
        ))
        .unwrap();
        apply_tags(&mut q, tags).unwrap();
        assert!(q.errors_only);
        assert_eq!(q.kind, Some(SpanKind::Server));
        assert_eq!(
            q.attributes,
            vec![
                ("http.status_code".to_owned(), "503".to_owned()),
                ("ok".to_owned(), "true".to_owned())
            ]
        );
        assert!(tag_map(Param::new("tags", "[1]")).is_err());
        assert!(tag_map(Param::new("tags", r#"{"a":{"b":1}}"#)).is_err());
        let mut q = TraceQuery::default();
        assert!(apply_tags(&mut q, vec![("error".into(), "maybe".into())]).is_err());
    }
}
