//! The span rows: `span_blocks` (one compressed block per trace and request, `blocks.rs`;
//! resources and scopes in `resources`), `slow_spans` and `entry_spans`, written by the
//! writer thread for each request of a group; the blocks are encoded before the writer.

use crate::fast_hash::{FastHashMap as HashMap, FastHashSet as HashSet};
use std::collections::hash_map::Entry;
use std::sync::Arc;

use rusqlite::{Connection, params};

use super::attr_plan::{AttrPlan, PairHashState};
use super::blocks::{self, SpanColumns, encode_origins};
use super::buckets::Buckets;
use super::codec::{encode_detail_into, encode_origin};
use super::operation_ids;
use super::options::AttributeIndex;
use super::search::SLOW_SPAN_NS;
use super::{backend, map_sql, to_i64};
use crate::model::{Span, SpanId, TraceId};
use crate::store::{StoreError, WriteOutcome};

/// Batches larger than this (spans) are encoded on a blocking thread.
pub(super) const PREPARE_INLINE_MAX_SPANS: usize = 2048;

/// A batch with its blocks already encoded and compressed (`blocks.rs`), so the single
/// writer thread only runs SQL.
#[derive(Debug)]
pub(super) struct Prepared {
    pub(super) spans: Vec<Span>,
    /// One block per trace of the batch, in the order each trace first appears.
    blocks: Vec<PreparedBlock>,
    /// Encoded resource and scope pairs, keyed by their `Arc` addresses (the spans keep the
    /// `Arc`s alive).
    origins: HashMap<(usize, usize), Vec<u8>>,
    /// Most spans stored per trace.
    max_spans_per_trace: usize,
    /// The attribute-index entries of `spans`, worked out before queueing
    /// ([`Prepared::with_attr_plan`]); without one the writer reads the attributes itself.
    pub(super) attr_plan: Option<AttrPlan>,
}

/// The spans of one trace within a batch, encoded as one `span_blocks` row.
#[derive(Debug)]
struct PreparedBlock {
    trace_id: TraceId,
    /// Indices into [`Prepared::spans`] of the block's spans: the first of each (span id,
    /// kind) in the batch, in batch order.
    members: Vec<u32>,
    /// For each later copy in the batch of a member, the member's position in `members`.
    copies: Vec<u32>,
    /// The block's origins (resource and scope `Arc` addresses) by origin index.
    origin_keys: Vec<(usize, usize)>,
    /// `span_blocks.data` of all the members.
    data: Vec<u8>,
}

impl Prepared {
    /// Groups `spans` by trace and encodes each group as a compressed block.
    pub(super) fn new(spans: Vec<Span>) -> Self {
        let mut origins: HashMap<(usize, usize), Vec<u8>> = HashMap::default();
        for span in &spans {
            origins
                .entry(origin_key(span))
                .or_insert_with(|| encode_origin(&span.resource, &span.scope));
        }
        let mut group_of: HashMap<TraceId, usize> = HashMap::default();
        let mut groups: Vec<(TraceId, Vec<u32>)> = Vec::new();
        for (i, span) in spans.iter().enumerate() {
            let g = *group_of.entry(span.trace_id).or_insert_with(|| {
                groups.push((span.trace_id, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(i as u32);
        }
        let mut seen: HashMap<(SpanId, i32), u32> = HashMap::default();
        let blocks = groups
            .into_iter()
            .map(|(trace_id, all)| {
                seen.clear();
                let mut members = Vec::with_capacity(all.len());
                let mut copies = Vec::new();
                for i in all {
                    let span = &spans[i as usize];
                    match seen.entry((span.span_id, span.kind.as_i32())) {
                        Entry::Occupied(first) => copies.push(*first.get()),
                        Entry::Vacant(slot) => {
                            slot.insert(members.len() as u32);
                            members.push(i);
                        }
                    }
                }
                let (origin_keys, data) = encode_block(members.iter().map(|&i| &spans[i as usize]));
                PreparedBlock {
                    trace_id,
                    members,
                    copies,
                    origin_keys,
                    data,
                }
            })
            .collect();
        Self {
            spans,
            blocks,
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

/// The origins (by key, in origin-index order) and `span_blocks.data` of `spans`, all of
/// one trace.
fn encode_block<'a>(spans: impl Iterator<Item = &'a Span>) -> (Vec<(usize, usize)>, Vec<u8>) {
    let mut origin_keys: Vec<(usize, usize)> = Vec::new();
    let mut columns = Vec::new();
    let mut details = Vec::new();
    let mut lens = Vec::new();
    for span in spans {
        let key = origin_key(span);
        // A trace's spans come from a few resources: a linear search beats a map.
        let origin = match origin_keys.iter().position(|k| *k == key) {
            Some(i) => i,
            None => {
                origin_keys.push(key);
                origin_keys.len() - 1
            }
        };
        let before = details.len();
        encode_detail_into(span, &mut details);
        lens.push(details.len() - before);
        columns.push(SpanColumns::of(span, origin as u32));
    }
    let data = blocks::encode(&columns, &details, &lens);
    (origin_keys, data)
}

/// The key of a span's resource and scope in [`Prepared::origins`]: their `Arc` addresses.
fn origin_key(span: &Span) -> (usize, usize) {
    (
        Arc::as_ptr(&span.resource) as usize,
        Arc::as_ptr(&span.scope) as usize,
    )
}

/// The spans stored of `trace_id` (the sum of its blocks' counts; 0 for a new trace).
fn stored_count(conn: &Connection, trace_id: TraceId) -> Result<usize, StoreError> {
    let n: i64 = conn
        .prepare_cached("SELECT coalesce(sum(span_count), 0) FROM span_blocks WHERE trace_id = ?1")
        .map_err(map_sql)?
        .query_row([&trace_id.0[..]], |r| r.get(0))
        .map_err(map_sql)?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// The (span id, kind) of every stored span of `trace_id`.
fn stored_ids(conn: &Connection, trace_id: TraceId) -> Result<HashSet<([u8; 8], i32)>, StoreError> {
    let mut ids = HashSet::default();
    blocks::for_each_block(conn, trace_id, |block| {
        ids.extend(block.spans.iter().map(|s| (s.span_id, s.kind)));
        Ok(())
    })?;
    Ok(ids)
}

const INSERT_BLOCK: &str =
    "INSERT INTO span_blocks (trace_id, span_count, origins, data) VALUES (?1, ?2, ?3, ?4)";

/// `OR IGNORE`: two slow spans of one trace with the same service, start and duration are
/// one key (`WITHOUT ROWID`, schema 18), which finds the trace as well as two.
const INSERT_SLOW_SPAN: &str = "INSERT OR IGNORE INTO slow_spans (trace_id, service, start_ns, \
     duration_ns) VALUES (?1, ?2, ?3, ?4)";

/// What [`insert_spans`] stored of one request.
pub(super) struct Inserted<'a> {
    /// Spans stored, duplicates and refusals.
    pub outcome: WriteOutcome,
    /// The spans that were new (not duplicates).
    pub spans: Vec<&'a Span>,
    /// The trace of each span refused at the per-trace limit.
    pub refused: Vec<TraceId>,
    /// Traces that had no stored span before this request (so no `traces` row either).
    pub unseen: Vec<TraceId>,
}

/// What became of one member of a block.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    Stored,
    Duplicate,
    Refused,
}

/// Inserts one request's blocks (and their `slow_spans`, `entry_spans` and link rows).
///
/// A block goes in as the request's thread encoded it when its trace has no stored span
/// and the block is within the per-trace limit. Otherwise the spans already stored (same
/// trace id, span id and kind) are duplicates, the new ones past the limit are refused,
/// and, if that leaves out any, the rest is encoded again here.
pub(super) fn insert_spans<'a>(
    conn: &Connection,
    batch: &'a Prepared,
    buckets: &mut Buckets,
) -> Result<Inserted<'a>, StoreError> {
    let spans = &batch.spans;
    let max = batch.max_spans_per_trace;
    let mut outcome = WriteOutcome::default();
    let mut refused = Vec::new();
    let mut unseen = Vec::new();
    let mut insert = conn.prepare_cached(INSERT_BLOCK).map_err(map_sql)?;
    let mut resource_ids: HashMap<(usize, usize), i64> = HashMap::default();
    let mut inserted: Vec<&Span> = Vec::with_capacity(spans.len());
    let mut fates: Vec<Fate> = Vec::new();
    for block in &batch.blocks {
        let trace_id = block.trace_id;
        let stored = stored_count(conn, trace_id)?;
        if stored == 0 {
            unseen.push(trace_id);
        }
        let member = |i: u32| &spans[i as usize];
        fates.clear();
        if stored == 0 && block.members.len() <= max {
            fates.resize(block.members.len(), Fate::Stored);
        } else {
            let ids = if stored > 0 {
                stored_ids(conn, trace_id)?
            } else {
                HashSet::default()
            };
            let mut count = stored;
            for &i in &block.members {
                let span = member(i);
                fates.push(if ids.contains(&(span.span_id.0, span.kind.as_i32())) {
                    Fate::Duplicate
                } else if count >= max {
                    Fate::Refused
                } else {
                    count += 1;
                    Fate::Stored
                });
            }
        }
        for &k in &block.copies {
            match fates[k as usize] {
                Fate::Refused => {
                    outcome.over_limit += 1;
                    refused.push(trace_id);
                }
                Fate::Stored | Fate::Duplicate => outcome.duplicates += 1,
            }
        }
        let before = inserted.len();
        for (&i, fate) in block.members.iter().zip(&fates) {
            match fate {
                Fate::Stored => inserted.push(member(i)),
                Fate::Duplicate => outcome.duplicates += 1,
                Fate::Refused => {
                    outcome.over_limit += 1;
                    refused.push(trace_id);
                }
            }
        }
        let new = &inserted[before..];
        if new.is_empty() {
            continue;
        }
        let re_encoded;
        let (origin_keys, data) = if new.len() == block.members.len() {
            (&block.origin_keys, &block.data)
        } else {
            re_encoded = encode_block(new.iter().copied());
            (&re_encoded.0, &re_encoded.1)
        };
        let mut ids = Vec::with_capacity(origin_keys.len());
        for key in origin_keys {
            let id = match resource_ids.get(key) {
                Some(id) => *id,
                None => {
                    let id = match batch.origins.get(key) {
                        Some(bytes) => resource_id(conn, bytes)?,
                        None => {
                            let span = new
                                .iter()
                                .find(|s| origin_key(s) == *key)
                                .ok_or_else(|| backend("a block's origin has no span"))?;
                            resource_id(conn, &encode_origin(&span.resource, &span.scope))?
                        }
                    };
                    resource_ids.insert(*key, id);
                    id
                }
            };
            ids.push(id);
        }
        insert
            .execute(params![
                &trace_id.0[..],
                new.len() as i64,
                encode_origins(&ids),
                data,
            ])
            .map_err(map_sql)?;
        insert_slow_spans(conn, new)?;
    }
    outcome.stored = inserted.len();
    insert_entry_spans(conn, &inserted, buckets)?;
    super::links::insert_links(conn, &inserted)?;
    Ok(Inserted {
        outcome,
        spans: inserted,
        refused,
        unseen,
    })
}

/// One `slow_spans` row per new span of [`SLOW_SPAN_NS`] or longer (`search.rs`,
/// `slow_walk.rs`).
fn insert_slow_spans(conn: &Connection, spans: &[&Span]) -> Result<(), StoreError> {
    for span in spans.iter().filter(|s| s.duration_ns() >= SLOW_SPAN_NS) {
        conn.prepare_cached(INSERT_SLOW_SPAN)
            .map_err(map_sql)?
            .execute(params![
                &span.trace_id.0[..],
                span.service_name.as_str(),
                to_i64(span.start_time_unix_nano),
                to_i64(span.duration_ns()),
            ])
            .map_err(map_sql)?;
    }
    Ok(())
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

/// An `entry_spans` row: bucket (`buckets.rs`), operation id, start, trace id, span id (as
/// an integer), kind, duration, error, parent span id (schema 18: the first six are the key).
type EntryRow<'a> = (i64, i64, i64, TraceId, i64, i32, i64, i64, Option<&'a [u8]>);

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
    let mut rows: Vec<EntryRow<'_>> = entries
        .iter()
        .map(|span| {
            let start = to_i64(span.start_time_unix_nano);
            Ok((
                buckets.place(conn, start)?,
                ids[&(span.service_name.as_str(), span.name.as_str())],
                start,
                span.trace_id,
                i64::from_be_bytes(span.span_id.0),
                span.kind.as_i32(),
                to_i64(span.duration_ns()),
                i64::from(span.is_error()),
                span.parent_span_id.as_ref().map(|p| &p.0[..]),
            ))
        })
        .collect::<Result<_, StoreError>>()?;
    // In key order: neighbouring inserts touch the same leaves.
    rows.sort_unstable_by_key(|r| (r.0, r.1, r.2, r.3, r.4, r.5));
    super::index::insert_rows(
        conn,
        "entry_spans (bucket, op, start_ns, trace_id, span_id, kind, duration_ns, error, \
         parent_span_id)",
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;
    use crate::store::SpanStore;
    use crate::store::conformance;
    use crate::store::sqlite::{SqliteOptions, SqliteStore};

    /// (span count, data) of each stored block of `trace_id`, in insert order.
    fn blocks_of(path: &std::path::Path, trace_id: TraceId) -> Vec<(i64, Vec<u8>)> {
        Connection::open(path)
            .unwrap()
            .prepare("SELECT span_count, data FROM span_blocks WHERE trace_id = ?1 ORDER BY id")
            .unwrap()
            .query_map([&trace_id.0[..]], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// A request's spans of one trace are one block, which decodes to their columns.
    #[tokio::test]
    async fn a_trace_of_one_request_is_one_block_that_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        let spans = conformance::demo_trace(5, true, 3.0);
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let done = store.write_spans(spans.clone()).await.unwrap();
        assert_eq!(done.stored, spans.len());
        store.shutdown().await;
        let blocks = blocks_of(&path, spans[0].trace_id);
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].0, spans.len() as i64);
        let block = blocks::Block::decode(&blocks[0].1).unwrap();
        assert_eq!(block.spans.len(), spans.len());
        for (got, want) in block.spans.iter().zip(&spans) {
            assert_eq!(got.span_id, want.span_id.0);
            assert_eq!(got.parent, want.parent_span_id.map(|p| p.0));
            assert_eq!(block.string(got.service), want.service_name);
            assert_eq!(block.string(got.name), want.name);
            assert_eq!(got.start_ns, want.start_time_unix_nano);
            assert_eq!(got.duration_ns, want.duration_ns());
            assert_eq!(got.status, want.status.code.as_i32());
        }
    }

    /// A client resending spans: those already stored (same trace, span id and kind) are
    /// duplicates, in a later request or in the same one; the new ones go into a block of
    /// their own; the trace reads back with every span once.
    #[tokio::test]
    async fn duplicates_across_requests_are_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        let spans = conformance::demo_trace(6, false, 1.0);
        let trace_id = spans[0].trace_id;
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let first = store.write_spans(spans[..3].to_vec()).await.unwrap();
        assert_eq!((first.stored, first.duplicates), (3, 0));
        // The request holds spans 1.. and span 1 twice.
        let mut resent = spans[1..].to_vec();
        resent.push(spans[1].clone());
        let second = store.write_spans(resent).await.unwrap();
        assert_eq!((second.stored, second.duplicates), (spans.len() - 3, 3));
        // Another trace with the same span ids is not a duplicate.
        let other = conformance::demo_trace(7, false, 1.0);
        assert_eq!(other[0].span_id, spans[0].span_id);
        let third = store.write_spans(other.clone()).await.unwrap();
        assert_eq!(third.stored, other.len());
        let got = store.get_trace(trace_id).await.unwrap().unwrap();
        assert_eq!(got.spans.len(), spans.len());
        assert_eq!(got.summary.span_count, spans.len() as u64);
        store.shutdown().await;
        let counts: Vec<i64> = blocks_of(&path, trace_id).iter().map(|b| b.0).collect();
        assert_eq!(counts, vec![3, spans.len() as i64 - 3]);
    }

    /// At the per-trace limit, a resent span is a duplicate, a new one refused; a copy of a
    /// refused span within the request is refused too.
    #[tokio::test]
    async fn the_span_limit_counts_stored_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        let spans = conformance::demo_trace(8, false, 1.0);
        assert!(spans.len() > 5);
        let options = SqliteOptions {
            max_spans_per_trace: 4,
            ..SqliteOptions::default()
        };
        let store = SqliteStore::open(&path, options).unwrap();
        let first = store.write_spans(spans[..3].to_vec()).await.unwrap();
        assert_eq!(first.stored, 3);
        let mut all = spans.clone();
        all.push(spans[5].clone());
        let second = store.write_spans(all).await.unwrap();
        assert_eq!(second.stored, 1);
        assert_eq!(second.duplicates, 3);
        assert_eq!(second.over_limit, spans.len() - 4 + 1);
        let got = store.get_trace(spans[0].trace_id).await.unwrap().unwrap();
        assert_eq!(got.spans.len(), 4);
        store.shutdown().await;
    }
}
