//! The span rows: `spans` (with their resource and scope in `resources`) and `entry_spans`,
//! written by the writer thread for each request of a group.

use crate::fast_hash::FastHashMap as HashMap;
use std::sync::Arc;

use rusqlite::{Connection, params};

use super::attr_plan::{AttrPlan, PairHashState};
use super::buckets::Buckets;
use super::codec::{encode_detail, encode_origin};
use super::operation_ids;
use super::options::AttributeIndex;
use super::{map_sql, to_i64};
use crate::model::{Span, TraceId};
use crate::store::{StoreError, WriteOutcome};

/// Batches larger than this (spans) are encoded on a blocking thread.
pub(super) const PREPARE_INLINE_MAX_SPANS: usize = 2048;

/// A batch with its blobs already encoded, so the single writer thread only runs SQL.
#[derive(Debug)]
pub(super) struct Prepared {
    pub(super) spans: Vec<Span>,
    /// `SpanDetail` bytes, one per span.
    details: Vec<Vec<u8>>,
    /// Encoded resource and scope pairs, keyed by their `Arc` addresses (the spans keep the
    /// `Arc`s alive).
    origins: HashMap<(usize, usize), Vec<u8>>,
    /// Most spans stored per trace.
    max_spans_per_trace: usize,
    /// The attribute-index entries of `spans`, worked out before queueing
    /// ([`Prepared::with_attr_plan`]); without one the writer reads the attributes itself.
    pub(super) attr_plan: Option<AttrPlan>,
}

impl Prepared {
    /// Encodes the blobs of `spans`.
    pub(super) fn new(spans: Vec<Span>) -> Self {
        let details = spans.iter().map(encode_detail).collect();
        let mut origins: HashMap<(usize, usize), Vec<u8>> = HashMap::default();
        for span in &spans {
            origins
                .entry(origin_key(span))
                .or_insert_with(|| encode_origin(&span.resource, &span.scope));
        }
        Self {
            spans,
            details,
            origins,
            max_spans_per_trace: usize::MAX,
            attr_plan: None,
        }
    }

    /// The same batch with its attribute-index entries worked out ([`AttrPlan`]): the
    /// attributes `which` selects, pairs hashed with `state` (the writer's).
    pub(super) fn with_attr_plan(mut self, which: &AttributeIndex, state: &PairHashState) -> Self {
        self.attr_plan = Some(AttrPlan::new(&self.spans, which, state));
        self
    }

    /// The same batch, refusing new spans of traces that hold `max` spans.
    pub(super) fn with_trace_limit(mut self, max: usize) -> Self {
        self.max_spans_per_trace = max;
        self
    }
}

/// The key of a span's resource and scope in [`Prepared::origins`]: their `Arc` addresses.
fn origin_key(span: &Span) -> (usize, usize) {
    (
        Arc::as_ptr(&span.resource) as usize,
        Arc::as_ptr(&span.scope) as usize,
    )
}

/// Spans stored per trace so far (counted once per trace and request, then followed).
struct TraceCounts {
    max: usize,
    counts: HashMap<TraceId, usize>,
    /// Traces of which the count found no stored span, in the order first probed.
    unseen: Vec<TraceId>,
}

impl TraceCounts {
    /// Whether `span` may be stored: its trace holds fewer than the limit, or the span is
    /// already stored (then it is a duplicate, not a refusal).
    fn admits(&mut self, conn: &Connection, span: &Span) -> Result<bool, StoreError> {
        if self.max == usize::MAX {
            return Ok(true);
        }
        let count = match self.counts.get(&span.trace_id) {
            Some(n) => *n,
            None => {
                let n: i64 = conn
                    .prepare_cached("SELECT count(*) FROM spans WHERE trace_id = ?1")
                    .map_err(map_sql)?
                    .query_row([&span.trace_id.0[..]], |r| r.get(0))
                    .map_err(map_sql)?;
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                if n == 0 {
                    self.unseen.push(span.trace_id);
                }
                self.counts.insert(span.trace_id, n);
                n
            }
        };
        if count < self.max {
            return Ok(true);
        }
        let stored = conn
            .prepare_cached(
                "SELECT 1 FROM spans WHERE trace_id = ?1 AND span_id = ?2 AND kind = ?3",
            )
            .map_err(map_sql)?
            .exists(params![
                &span.trace_id.0[..],
                &span.span_id.0[..],
                span.kind.as_i32()
            ])
            .map_err(map_sql)?;
        Ok(stored)
    }

    fn stored(&mut self, trace_id: TraceId) {
        if let Some(n) = self.counts.get_mut(&trace_id) {
            *n += 1;
        }
    }
}

const INSERT_SPAN: &str = "INSERT OR IGNORE INTO spans (trace_id, span_id, kind, parent_span_id, \
     service, name, start_ns, duration_ns, status_code, resource_id, scope_name, scope_version, \
     detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";

/// What [`insert_spans`] stored of one request.
pub(super) struct Inserted<'a> {
    /// Spans stored, duplicates and refusals.
    pub outcome: WriteOutcome,
    /// The spans that were new (not duplicates).
    pub spans: Vec<&'a Span>,
    /// The trace of each span refused at the per-trace limit.
    pub refused: Vec<TraceId>,
    /// Traces that had no stored span before this request (so no `traces` row either);
    /// empty when the per-trace limit is off (nothing was counted).
    pub unseen: Vec<TraceId>,
}

/// Inserts one request's spans (and their `entry_spans` rows).
pub(super) fn insert_spans<'a>(
    conn: &Connection,
    batch: &'a Prepared,
    buckets: &mut Buckets,
) -> Result<Inserted<'a>, StoreError> {
    let spans = &batch.spans;
    let mut outcome = WriteOutcome::default();
    let mut counts = TraceCounts {
        max: batch.max_spans_per_trace,
        counts: HashMap::default(),
        unseen: Vec::new(),
    };
    let mut refused = Vec::new();
    let mut insert = conn.prepare_cached(INSERT_SPAN).map_err(map_sql)?;
    let mut resource_ids: HashMap<(usize, usize), i64> = HashMap::default();
    let mut inserted: Vec<&Span> = Vec::with_capacity(spans.len());
    for (span, detail) in spans.iter().zip(&batch.details) {
        if !counts.admits(conn, span)? {
            outcome.over_limit += 1;
            refused.push(span.trace_id);
            continue;
        }
        let key = origin_key(span);
        let resource_id = match resource_ids.get(&key) {
            Some(id) => *id,
            None => {
                let id = match batch.origins.get(&key) {
                    Some(bytes) => resource_id(conn, bytes)?,
                    None => resource_id(conn, &encode_origin(&span.resource, &span.scope))?,
                };
                resource_ids.insert(key, id);
                id
            }
        };
        let changed = insert
            .execute(params![
                &span.trace_id.0[..],
                &span.span_id.0[..],
                span.kind.as_i32(),
                span.parent_span_id.as_ref().map(|p| &p.0[..]),
                span.service_name,
                span.name,
                to_i64(span.start_time_unix_nano),
                to_i64(span.duration_ns()),
                span.status.code.as_i32(),
                resource_id,
                // The scope is in `resources` (`encode_origin`); the columns stay for older rows.
                "",
                "",
                detail,
            ])
            .map_err(map_sql)?;
        if changed == 1 {
            outcome.stored += 1;
            counts.stored(span.trace_id);
            inserted.push(span);
        } else {
            outcome.duplicates += 1;
        }
    }
    insert_entry_spans(conn, &inserted, buckets)?;
    super::links::insert_links(conn, &inserted)?;
    Ok(Inserted {
        outcome,
        spans: inserted,
        refused,
        unseen: counts.unseen,
    })
}

/// The id of an encoded resource and scope ([`encode_origin`]), inserted if new.
fn resource_id(conn: &Connection, encoded: &[u8]) -> Result<i64, StoreError> {
    let mut insert = conn
        .prepare_cached("INSERT OR IGNORE INTO resources (encoded) VALUES (?1)")
        .map_err(map_sql)?;
    if insert.execute([encoded]).map_err(map_sql)? == 1 {
        return Ok(conn.last_insert_rowid());
    }
    conn.prepare_cached("SELECT id FROM resources WHERE encoded = ?1")
        .map_err(map_sql)?
        .query_row([encoded], |r| r.get(0))
        .map_err(map_sql)
}

/// An `entry_spans` row: start, operation id, duration, error, trace id, parent span id,
/// kind, bucket (`buckets.rs`).
type EntryRow<'a> = (i64, i64, i64, i64, TraceId, Option<&'a [u8]>, i32, i64);

/// One `entry_spans` row per newly stored SERVER or CONSUMER span (stats, dependencies),
/// several rows per `INSERT` statement.
fn insert_entry_spans(
    conn: &Connection,
    inserted: &[&Span],
    buckets: &mut Buckets,
) -> Result<(), StoreError> {
    let entries: Vec<&Span> = inserted
        .iter()
        .copied()
        .filter(|s| crate::store::memory::is_entry(s))
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    let ids = operation_ids::resolve(
        conn,
        entries
            .iter()
            .map(|s| (s.service_name.as_str(), s.name.as_str())),
    )?;
    let rows: Vec<EntryRow<'_>> = entries
        .iter()
        .map(|span| {
            let start = to_i64(span.start_time_unix_nano);
            Ok((
                start,
                ids[&(span.service_name.as_str(), span.name.as_str())],
                to_i64(span.duration_ns()),
                i64::from(span.is_error()),
                span.trace_id,
                span.parent_span_id.as_ref().map(|p| &p.0[..]),
                span.kind.as_i32(),
                buckets.place(conn, start)?,
            ))
        })
        .collect::<Result<_, StoreError>>()?;
    super::index::insert_rows(
        conn,
        "entry_spans (start_ns, op, duration_ns, error, trace_id, parent_span_id, kind, bucket)",
        &rows,
    )
}
