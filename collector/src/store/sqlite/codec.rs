//! The encoding of a span: the columns a search or the index needs are columns of its block
//! (`blocks.rs`); the rest is its `detail` ([`SpanDetail`](crate::store::detail::SpanDetail),
//! fields 1–10, shared with the ClickHouse backend). A span's resource and instrumentation
//! scope are stored once per distinct pair in `resources` ([`encode_origin`]). (Before schema
//! 15, `spans` rows held the same columns and detail; some, older still, the scope in
//! `spans.scope_name`/`scope_version`: the migration to 15 moves it into `resources`.)

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::resource::v1::Resource as PbResource;
use prost::Message;
use rusqlite::{Connection, OptionalExtension};

use super::backend;
use super::blocks::Block;
use crate::format::convert;
use crate::model::{KeyValue, Resource, Scope, Span, SpanId, SpanKind, StatusCode, TraceId};
use crate::store::StoreError;
use crate::store::detail::SpanDetail;

/// Appends the `SpanDetail` bytes of `span` to `buf` (resource and scope live in their own
/// table).
pub(super) fn encode_detail_into(span: &Span, buf: &mut Vec<u8>) {
    SpanDetail::encode_into(span, buf);
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
pub(super) fn decode_origin(bytes: &[u8]) -> Result<(Resource, Scope), StoreError> {
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

/// The resources and scopes already decoded while reading one trace's blocks (its spans
/// share them).
#[derive(Default)]
pub(super) struct SharedOrigins {
    /// By `resources.id`: the resource, and the scope stored with it.
    origins: HashMap<i64, (Arc<Resource>, Arc<Scope>)>,
}

impl SharedOrigins {
    /// The resource and scope of `resources.id` `id` (defaults when the row is missing).
    pub(super) fn get(
        &mut self,
        conn: &Connection,
        id: i64,
    ) -> Result<(Arc<Resource>, Arc<Scope>), StoreError> {
        if let Some((r, s)) = self.origins.get(&id) {
            return Ok((Arc::clone(r), Arc::clone(s)));
        }
        let encoded: Option<Vec<u8>> = conn
            .prepare_cached("SELECT encoded FROM resources WHERE id = ?1")
            .map_err(backend)?
            .query_row([id], |r| r.get(0))
            .optional()
            .map_err(backend)?;
        let (r, s) = match encoded {
            Some(bytes) => decode_origin(&bytes)?,
            None => (convert::resource_from_pb(None), Scope::default()),
        };
        let (r, s) = (Arc::new(r), Arc::new(s));
        self.origins.insert(id, (Arc::clone(&r), Arc::clone(&s)));
        Ok((r, s))
    }
}

/// A stored id blob as a fixed-size array.
pub(super) fn blob_array<const N: usize>(bytes: &[u8]) -> Result<[u8; N], StoreError> {
    bytes
        .try_into()
        .map_err(|_| backend(format!("stored id has {} bytes, expected {N}", bytes.len())))
}

/// The spans of a `span_blocks` row of `trace_id` (`data` decoded as `block`, `origins` its
/// `resources.id`s) as [`Span`]s, in block order; `shared` holds the resources and scopes
/// already decoded for the trace.
pub(super) fn block_spans(
    conn: &Connection,
    block: &Block,
    origins: &[i64],
    trace_id: TraceId,
    shared: &mut SharedOrigins,
) -> Result<Vec<Span>, StoreError> {
    let mut spans = Vec::with_capacity(block.spans.len());
    for stored in &block.spans {
        let origin = *origins
            .get(stored.origin)
            .ok_or_else(|| backend("a span block's origin index is out of range"))?;
        let (resource, scope) = shared.get(conn, origin)?;
        let mut span = Span::new(trace_id, SpanId(stored.span_id), block.string(stored.name));
        span.parent_span_id = stored.parent.map(SpanId);
        span.kind = SpanKind::from_i32(stored.kind);
        span.start_time_unix_nano = stored.start_ns;
        span.end_time_unix_nano = stored.start_ns.saturating_add(stored.duration_ns);
        span.status.code = StatusCode::from_i32(stored.status);
        span.resource = resource;
        span.scope = scope;
        span.service_name = block.string(stored.service).into();
        SpanDetail::decode_bytes(block.detail(stored))?.fill(&mut span)?;
        spans.push(span);
    }
    Ok(spans)
}

#[cfg(test)]
pub(super) mod tests {
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
    pub(crate) fn spans_with_scopes(seed: u8) -> Vec<Span> {
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

    pub(crate) fn by_id(mut spans: Vec<Span>) -> Vec<Span> {
        spans.sort_by_key(|s| (s.span_id, s.kind.as_i32()));
        spans
    }

    /// The scope is stored once per (resource, scope) pair in `resources`; reads give each
    /// span its own scope back.
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
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM spans", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0, "the spans are in blocks");
        let origins: i64 = conn
            .query_row("SELECT count(*) FROM resources", [], |r| r.get(0))
            .unwrap();
        assert_eq!(origins, 3, "one row per (resource, scope) pair");
    }
}
