//! The encoding of a span row: the columns a search or the index needs are plain SQL columns;
//! the rest is `detail` ([`SpanDetail`](crate::store::detail::SpanDetail), fields 1–10, shared
//! with the ClickHouse backend). A span's resource and instrumentation scope are stored once
//! per distinct pair in `resources` ([`encode_origin`]); `spans.scope_name` and
//! `spans.scope_version` hold the scope only in rows written before that (empty now).

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::resource::v1::Resource as PbResource;
use prost::Message;
use rusqlite::Row;

use super::{backend, to_u64};
use crate::format::convert;
use crate::model::{KeyValue, Resource, Scope, Span, SpanId, SpanKind, StatusCode, TraceId};
use crate::store::StoreError;
use crate::store::detail::SpanDetail;

/// The bytes of `spans.detail` for `span` (resource and scope live in their own tables).
pub(super) fn encode_detail(span: &Span) -> Vec<u8> {
    SpanDetail::encode(span, false)
}

/// The attributes of encoded detail bytes (index maintenance reads only these).
pub(super) fn detail_attributes(bytes: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
    SpanDetail::attributes_of(bytes)
}

/// The scope's part of `resources.encoded`: fields 100 and 101, which OTLP's `Resource` does
/// not use (a `Resource` decoder skips them; absent when empty).
#[derive(Clone, PartialEq, prost::Message)]
struct OriginScope {
    /// The instrumentation scope's name.
    #[prost(string, tag = "100")]
    scope_name: String,
    /// The instrumentation scope's version.
    #[prost(string, tag = "101")]
    scope_version: String,
}

/// The bytes of `resources.encoded` for a span's resource and scope: the OTLP `Resource`
/// message followed by [`OriginScope`]. Rows written before the scope moved here hold the
/// `Resource` alone (their spans keep the scope in `spans.scope_name`/`scope_version`).
pub(super) fn encode_origin(resource: &Resource, scope: &Scope) -> Vec<u8> {
    let mut bytes = convert::resource_to_pb(resource).encode_to_vec();
    OriginScope {
        scope_name: scope.name.clone(),
        scope_version: scope.version.clone(),
    }
    .encode_raw(&mut bytes);
    bytes
}

/// The resource and scope of `resources.encoded` bytes ([`encode_origin`]).
fn decode_origin(bytes: &[u8]) -> Result<(Resource, Scope), StoreError> {
    let resource = convert::resource_from_pb(Some(PbResource::decode(bytes).map_err(backend)?));
    let scope = OriginScope::decode(bytes).map_err(backend)?;
    Ok((
        resource,
        Scope {
            name: scope.scope_name,
            version: scope.scope_version,
        },
    ))
}

/// The resources and scopes already decoded while reading one trace's rows (its spans share
/// them).
#[derive(Default)]
pub(super) struct SharedOrigins {
    /// By `resources.id`: the resource, and the scope stored with it.
    origins: HashMap<i64, (Arc<Resource>, Arc<Scope>)>,
    /// Scopes of rows that carry theirs in `spans.scope_name`/`scope_version`.
    scopes: HashMap<(String, String), Arc<Scope>>,
}

/// A stored id blob as a fixed-size array.
pub(super) fn blob_array<const N: usize>(bytes: &[u8]) -> Result<[u8; N], StoreError> {
    bytes
        .try_into()
        .map_err(|_| backend(format!("stored id has {} bytes, expected {N}", bytes.len())))
}

/// A `spans` row joined to its resource (the columns of [`read_trace`](super::read::read_trace))
/// as a [`Span`]; `shared` holds the resources and scopes already decoded for the trace.
pub(super) fn row_to_span(
    row: &Row<'_>,
    trace_id: TraceId,
    shared: &mut SharedOrigins,
) -> Result<Span, StoreError> {
    let span_id: Vec<u8> = row.get(0).map_err(backend)?;
    let parent: Option<Vec<u8>> = row.get(2).map_err(backend)?;
    let resource_id: i64 = row.get(8).map_err(backend)?;
    let (resource, stored_scope) = match shared.origins.get(&resource_id) {
        Some((r, s)) => (Arc::clone(r), Arc::clone(s)),
        None => {
            let encoded: Option<Vec<u8>> = row.get(12).map_err(backend)?;
            let (r, s) = match encoded {
                Some(bytes) => decode_origin(&bytes)?,
                None => (convert::resource_from_pb(None), Scope::default()),
            };
            let (r, s) = (Arc::new(r), Arc::new(s));
            shared
                .origins
                .insert(resource_id, (Arc::clone(&r), Arc::clone(&s)));
            (r, s)
        }
    };
    let scope_key: (String, String) = (row.get(9).map_err(backend)?, row.get(10).map_err(backend)?);
    // A row written before the scope moved to `resources` has it in its own columns.
    let scope = if scope_key.0.is_empty() && scope_key.1.is_empty() {
        stored_scope
    } else {
        Arc::clone(shared.scopes.entry(scope_key.clone()).or_insert_with(|| {
            Arc::new(Scope {
                name: scope_key.0,
                version: scope_key.1,
            })
        }))
    };
    let detail_bytes: Vec<u8> = row.get(11).map_err(backend)?;
    let detail = SpanDetail::decode_bytes(&detail_bytes)?;
    let start = to_u64(row.get(5).map_err(backend)?);
    let duration = to_u64(row.get(6).map_err(backend)?);
    let mut span = Span::new(
        trace_id,
        SpanId(blob_array::<8>(&span_id)?),
        row.get::<_, String>(4).map_err(backend)?,
    );
    span.parent_span_id = match parent {
        Some(p) => Some(SpanId(blob_array::<8>(&p)?)),
        None => None,
    };
    span.kind = SpanKind::from_i32(row.get(1).map_err(backend)?);
    span.start_time_unix_nano = start;
    span.end_time_unix_nano = start.saturating_add(duration);
    span.status.code = StatusCode::from_i32(row.get(7).map_err(backend)?);
    span.resource = resource;
    span.scope = scope;
    span.service_name = row.get(3).map_err(backend)?;
    detail.fill(&mut span)?;
    Ok(span)
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;
    use crate::model::AttrValue;
    use crate::store::conformance::sample_trace;
    use crate::store::{SpanStore, SqliteOptions, SqliteStore};

    fn scope(name: &str, version: &str) -> Arc<Scope> {
        Arc::new(Scope {
            name: name.into(),
            version: version.into(),
        })
    }

    /// `sample_trace(seed)` with two scopes on one resource, and one span without a scope.
    fn spans_with_scopes(seed: u8) -> Vec<Span> {
        let mut spans = sample_trace(seed);
        let resource = Arc::clone(&spans[0].resource);
        for (i, span) in spans.iter_mut().enumerate() {
            span.resource = Arc::clone(&resource);
            span.scope = match i % 3 {
                0 => scope("lib.a", "1.0"),
                1 => scope("lib.b", ""),
                _ => scope("", ""),
            };
        }
        spans[1]
            .attributes
            .push(KeyValue::new("app.note", AttrValue::String("x".into())));
        spans
    }

    fn by_id(mut spans: Vec<Span>) -> Vec<Span> {
        spans.sort_by_key(|s| (s.span_id, s.kind.as_i32()));
        spans
    }

    /// The scope is stored once per (resource, scope) pair in `resources`; the span row's
    /// scope columns stay empty; reads give each span its own scope back.
    #[tokio::test]
    async fn scopes_are_stored_with_the_resource() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        let spans = spans_with_scopes(41);
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        store.write_spans(spans.clone()).await.unwrap();
        let got = store.get_trace(spans[0].trace_id).await.unwrap().unwrap();
        store.shutdown().await;
        let got = by_id(got.spans);
        let want = by_id(spans);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(*g.scope, *w.scope);
            assert_eq!(*g.resource, *w.resource);
            assert_eq!(g.attributes, w.attributes);
        }
        let conn = Connection::open(&path).unwrap();
        let filled: i64 = conn
            .query_row(
                "SELECT count(*) FROM spans WHERE scope_name != '' OR scope_version != ''",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(filled, 0);
        let origins: i64 = conn
            .query_row("SELECT count(*) FROM resources", [], |r| r.get(0))
            .unwrap();
        assert_eq!(origins, 3, "one row per (resource, scope) pair");
    }

    /// Rows as versions before this one wrote them (attributes and events in `detail` fields 1
    /// and 2, the scope
    /// in the span's columns, a resource row without a scope) read back as before.
    #[tokio::test]
    async fn rows_of_older_versions_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        let spans = spans_with_scopes(42);
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        store.write_spans(spans.clone()).await.unwrap();
        let before = store.get_trace(spans[0].trace_id).await.unwrap().unwrap();
        store.shutdown().await;
        {
            let conn = Connection::open(&path).unwrap();
            let resource = convert::resource_to_pb(&spans[0].resource).encode_to_vec();
            conn.execute(
                "INSERT OR IGNORE INTO resources (encoded) VALUES (?1)",
                [&resource],
            )
            .unwrap();
            let old_id: i64 = conn
                .query_row(
                    "SELECT id FROM resources WHERE encoded = ?1",
                    [&resource],
                    |r| r.get(0),
                )
                .unwrap();
            for span in &spans {
                let changed = conn
                    .execute(
                        "UPDATE spans SET detail = ?1, scope_name = ?2, scope_version = ?3, \
                         resource_id = ?4 WHERE span_id = ?5 AND kind = ?6",
                        rusqlite::params![
                            SpanDetail::encode_as_older_versions(span),
                            span.scope.name,
                            span.scope.version,
                            old_id,
                            &span.span_id.0[..],
                            span.kind.as_i32(),
                        ],
                    )
                    .unwrap();
                assert_eq!(changed, 1);
            }
            let compact: i64 = conn
                .query_row(
                    "SELECT count(*) FROM spans WHERE instr(detail, CAST('http.response.status_code' AS BLOB))",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert!(compact > 0, "the rows now hold keys as text");
        }
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let after = store.get_trace(spans[0].trace_id).await.unwrap().unwrap();
        store.shutdown().await;
        assert_eq!(by_id(after.spans), by_id(before.spans));
    }
}
