//! # The search-index rows
//!
//! `traces` holds one summary row per trace, maintained on write, so search never scans
//! `spans` (since schema 18 its root names and name lists as one id: `name_sets.rs`). `trace_services`, `trace_operations` and `span_attrs` (schema version 3) are one
//! B-tree each (`WITHOUT ROWID`), keyed by what a search walks and ending in
//! `(start_ns, trace_id)`; version 2 had a second B-tree per table keyed by trace id, which
//! doubled the index work of every write. Every row carries its trace's current start
//! (`traces.start_ns`), so a probe for one trace is an exact key lookup
//! (`… AND start_ns = t.start_ns AND trace_id = t.trace_id`), and `INSERT OR IGNORE` on that
//! key deduplicates rows across groups. When a late span moves a trace's start earlier, or
//! retention deletes a trace, the trace's rows are recomputed from its stored spans
//! ([`StoredRows`]: services, names and the attributes in `detail`) and deleted by key.
//!
//! The attribute index carries the attributes chosen by [`AttributeIndex`] (strings up to 256
//! bytes, ints, bools, doubles: [`attr_index_text`]). Since schema version 8 it has two
//! levels: each flush appends its rows as a new segment of `span_attrs_new`, and the writer
//! moves the segments into a run every ~100k rows (`attr_stage.rs`, `attr_runs.rs`); since
//! version 14 the rows name their key by its id (`attr_keys.rs`).
//! Which pairs a request's spans have is worked out on the request's thread before it is
//! queued (`attr_plan.rs`); the flush adds each pair's rows at its traces' starts.
//!
//! Since schema version 10, `trace_operations` is one B-tree only, keyed by
//! `(service, operation, start_ns, trace_id)`: version 3's second B-tree,
//! `trace_operations_by_name (operation, start_ns, trace_id)`, cost one more insert and about
//! 63 bytes per span on the ingest benchmark's load, for searches by an operation without a
//! service. Those now walk the operation's rows of each service that has it, merged in start
//! order (`search.rs`). Since schema version 12 the rows are `(op, start_ns, trace_id)`, the
//! pair as its id in `operation_ids` (`operation_ids.rs`), which also lists the services of an
//! operation. Since schema version 15 they are `(bucket, op, start_ns, trace_id)`, a bucket
//! of start times first (`buckets.rs`), so that a commit's rows are adjacent; the bucket is a
//! function of the start, so a row is still found by recomputing its key.

use crate::fast_hash::{FastHashMap as HashMap, FastHashSet as HashSet};
use std::borrow::Cow;

use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, Statement, params};

use super::attr_keys;
use super::attr_plan::{AttrPlan, PairHashState, PairKey, PairMap};
use super::attr_stage::{self, AttrRow};
use super::buckets::{Buckets, bucket_of};
use super::codec::detail_attributes;
use super::name_sets::NameSets;
use super::operation_ids;
use super::options::AttributeIndex;
use super::read::read_summary;
use super::{map_sql, to_i64};
use crate::model::{Span, TraceId};
use crate::store::{StoreError, TraceSummary, attr_index_text};

/// Version 9 → 10 (also run on a new file): `trace_operations` without its index by operation
/// alone, and `operations` with one by name (see the module docs). Nothing is copied.
pub(super) const SCHEMA_V10: &str = "
DROP INDEX IF EXISTS trace_operations_by_name;
CREATE INDEX IF NOT EXISTS operations_by_name ON operations (name, service);
";

/// What the writer indexes, from [`SqliteOptions`](super::SqliteOptions).
#[derive(Debug, Clone)]
pub(super) struct IndexSettings {
    /// Which span attributes go into the attribute index.
    pub attributes: AttributeIndex,
    /// Rows at which an attribute-index run is closed (`attr_runs.rs`).
    pub attr_run_rows: u64,
    /// Whether moves write posting rows (else runs): [`SqliteOptions::attr_postings`](super::SqliteOptions::attr_postings).
    pub attr_postings: bool,
    /// Rows at which the newest index bucket is closed (`buckets.rs`).
    pub bucket_rows: u64,
    /// The hasher of attribute (key, value) pairs, shared by the requests' plans and the
    /// writer (`attr_plan.rs`).
    pub pair_hash: PairHashState,
}

impl From<&super::SqliteOptions> for IndexSettings {
    fn from(options: &super::SqliteOptions) -> Self {
        Self {
            attributes: options.index_attributes.clone(),
            attr_run_rows: options.attr_run_rows,
            attr_postings: options.attr_postings,
            bucket_rows: options.index_bucket_rows,
            pair_hash: PairHashState::default(),
        }
    }
}

/// The search-index work for the spans a group stored, folded per trace and written once
/// before the commit, in trace-id order: one summary upsert per trace per group, not one per
/// request.
#[derive(Default)]
pub(super) struct GroupIndex<'a> {
    traces: std::collections::BTreeMap<TraceId, Vec<&'a Span>>,
    /// New spans refused at the per-trace limit, per trace.
    refused: HashMap<TraceId, u64>,
    operations: HashSet<(&'a str, &'a str, i32)>,
    /// The attribute-index entries of requests that stored all their spans, worked out
    /// before they were queued (`attr_plan.rs`).
    plans: Vec<(&'a AttrPlan, &'a [Span])>,
    /// The stored spans of the other requests, whose attributes the flush reads itself.
    unplanned: Vec<&'a Span>,
    /// Traces with no stored span before this group's first request that had spans of
    /// them (`Inserted::unseen`): their summary is inserted without reading `traces` first.
    unseen: HashSet<TraceId>,
}

impl<'a> GroupIndex<'a> {
    /// Adds the spans one request stored, the trace of each span it refused, the traces it
    /// found no stored span of, and the request's attribute plan (with the spans it was made
    /// of) if those are exactly the stored spans.
    pub(super) fn add(
        &mut self,
        inserted: Vec<&'a Span>,
        refused: Vec<TraceId>,
        unseen: &[TraceId],
        plan: Option<(&'a AttrPlan, &'a [Span])>,
    ) {
        // Only the first request of the flush with spans of a trace saw the store without
        // them; a later one counted the spans this group stored before it.
        for trace_id in unseen {
            if !self.traces.contains_key(trace_id) {
                self.unseen.insert(*trace_id);
            }
        }
        for trace_id in refused {
            *self.refused.entry(trace_id).or_default() += 1;
            self.traces.entry(trace_id).or_default();
        }
        match plan {
            Some(plan) => self.plans.push(plan),
            None => self.unplanned.extend(inserted.iter().copied()),
        }
        for span in inserted {
            self.operations
                .insert((&span.service_name, &span.name, span.kind.as_i32()));
            self.traces.entry(span.trace_id).or_default().push(span);
        }
    }

    /// Writes the index rows of every span added since the last flush.
    pub(super) fn flush(
        &mut self,
        conn: &Connection,
        settings: &IndexSettings,
        buckets: &mut Buckets,
    ) -> Result<(), StoreError> {
        let which = &settings.attributes;
        let traces = std::mem::take(&mut self.traces);
        let refused = std::mem::take(&mut self.refused);
        let plans = std::mem::take(&mut self.plans);
        let unplanned = std::mem::take(&mut self.unplanned);
        let unseen = std::mem::take(&mut self.unseen);
        let mut names = NameSets::default();
        // Summaries first. A trace whose start moved had its index rows deleted and read back
        // from its stored spans (`rebuilt`); they are inserted again below at the new start.
        let mut starts: Vec<(i64, bool)> = Vec::with_capacity(traces.len());
        let mut rebuilt: Vec<(TraceId, i64, StoredRows)> = Vec::new();
        // Traces stored before this flush whose index rows were not rebuilt: their new
        // attribute rows may already be in the index (see `attr_stage::retain_new`).
        let mut stored_before: HashSet<TraceId> = HashSet::default();
        for (trace_id, spans) in &traces {
            let refused = refused.get(trace_id).copied().unwrap_or(0);
            let (start, existed, rows) = update_trace(
                conn,
                &mut names,
                *trace_id,
                spans,
                refused,
                unseen.contains(trace_id),
            )?;
            starts.push((start, rows.is_some()));
            if existed && rows.is_none() {
                stored_before.insert(*trace_id);
            }
            if let Some(rows) = rows {
                rebuilt.push((*trace_id, start, rows));
            }
        }
        let mut services: Vec<(&str, i64, TraceId)> = Vec::new();
        let mut pairs: Vec<(&str, &str, i64, TraceId)> = Vec::new();
        for ((trace_id, spans), &(start, was_rebuilt)) in traces.iter().zip(&starts) {
            if was_rebuilt {
                continue;
            }
            for span in spans {
                services.push((&span.service_name, start, *trace_id));
                pairs.push((&span.service_name, &span.name, start, *trace_id));
            }
        }
        // Attribute rows grouped by (key, value): sorting the few distinct pairs and then each
        // pair's (start, trace) list is much cheaper than sorting every row by its strings.
        let mut attrs: PairMap<'_, Vec<(i64, TraceId)>> = PairMap::default();
        if *which != AttributeIndex::None {
            // Each trace's start, `None` for a rebuilt trace (its rows come from `rebuilt`).
            let start_of: HashMap<TraceId, Option<i64>> = traces
                .keys()
                .zip(&starts)
                .map(|(id, &(start, was_rebuilt))| (*id, (!was_rebuilt).then_some(start)))
                .collect();
            for (plan, spans) in &plans {
                let rows: Vec<Option<(i64, TraceId)>> = plan
                    .traces
                    .iter()
                    .map(|id| {
                        start_of
                            .get(id)
                            .copied()
                            .flatten()
                            .map(|start| (start, *id))
                    })
                    .collect();
                plan.for_each_pair(spans, |pair, traces| {
                    attrs
                        .entry(pair)
                        .or_default()
                        .extend(traces.filter_map(|t| rows.get(t).copied().flatten()));
                });
            }
            for span in &unplanned {
                let Some(start) = start_of.get(&span.trace_id).copied().flatten() else {
                    continue;
                };
                for kv in span.attributes.iter().filter(|kv| which.wants(&kv.key)) {
                    if let Some(text) = attr_index_text(&kv.value) {
                        attrs
                            .entry(PairKey::new(&settings.pair_hash, &kv.key, text))
                            .or_default()
                            .push((start, span.trace_id));
                    }
                }
            }
        }
        for (trace_id, start, rows) in &rebuilt {
            for service in &rows.services {
                services.push((service, *start, *trace_id));
            }
            for (service, operation) in &rows.pairs {
                pairs.push((service, operation, *start, *trace_id));
            }
            for (key, value) in rows.attrs.iter().filter(|(k, _)| which.wants(k)) {
                attrs
                    .entry(PairKey::new(
                        &settings.pair_hash,
                        key,
                        Cow::Borrowed(value.as_str()),
                    ))
                    .or_default()
                    .push((*start, *trace_id));
            }
        }
        // In key order (each table is one B-tree), once per trace: neighbouring inserts touch
        // the same pages, and a trace's rows go to the end of each (key, value) run.
        services.sort_unstable();
        services.dedup();
        insert_rows(
            conn,
            "trace_services (service, start_ns, trace_id)",
            &services,
        )?;
        pairs.sort_unstable();
        pairs.dedup();
        let ids = operation_ids::resolve(conn, pairs.iter().map(|&(s, o, _, _)| (s, o)))?;
        let mut operations: Vec<(i64, i64, i64, TraceId)> = pairs
            .iter()
            .map(|&(service, operation, start, id)| {
                Ok((
                    buckets.place(conn, start)?,
                    ids[&(service, operation)],
                    start,
                    id,
                ))
            })
            .collect::<Result<_, StoreError>>()?;
        operations.sort_unstable();
        insert_rows(
            conn,
            "trace_operations (bucket, op, start_ns, trace_id)",
            &operations,
        )?;
        // Keys as their ids (`attr_keys.rs`); rows staged in (key id, value) order.
        let key_ids = attr_keys::resolve(conn, attrs.keys().map(|pair| pair.key))?;
        let mut pairs_of_attrs: Vec<_> = attrs
            .into_iter()
            .map(|(pair, rows)| (key_ids[pair.key], pair, rows))
            .collect();
        pairs_of_attrs.sort_unstable_by(|a, b| (a.0, &a.1.value).cmp(&(b.0, &b.1.value)));
        let mut attrs: Vec<AttrRow<'_>> = Vec::new();
        for (_, _, rows) in &mut pairs_of_attrs {
            if !rows.is_sorted() {
                rows.sort_unstable();
            }
            rows.dedup();
        }
        for (key_id, pair, rows) in &pairs_of_attrs {
            attrs.extend(
                rows.iter()
                    .map(|&(start, id)| (pair.key, *key_id, pair.value.as_ref(), start, id)),
            );
        }
        if !stored_before.is_empty() {
            attr_stage::retain_new(conn, &mut attrs, |id| stored_before.contains(id))?;
        }
        attr_stage::stage(conn, &attrs, settings)?;
        if !self.operations.is_empty() {
            let mut insert_op = conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO operations (service, name, kind) VALUES (?1, ?2, ?3)",
                )
                .map_err(map_sql)?;
            for (service, name, kind) in std::mem::take(&mut self.operations) {
                insert_op
                    .execute(params![service, name, kind])
                    .map_err(map_sql)?;
            }
        }
        Ok(())
    }
}

/// Rows per multi-row `INSERT` into the search-index tables.
const ROWS_PER_INSERT: usize = 32;

/// One row of a search-index table: a tuple of SQL values, bound column by column into a
/// multi-row `INSERT`.
pub(super) trait IndexRow {
    /// Columns per row.
    const COLUMNS: usize;
    /// Binds the row's values to parameters `at`, `at + 1`, ...
    fn bind(&self, stmt: &mut Statement<'_>, at: usize) -> rusqlite::Result<()>;
}

/// [`IndexRow`] for a tuple of `COLUMNS` values, bound in order.
macro_rules! index_row {
    ($columns:literal: $($t:ident $i:tt),+) => {
        impl<$($t: ToSql),+> IndexRow for ($($t,)+) {
            const COLUMNS: usize = $columns;
            fn bind(&self, stmt: &mut Statement<'_>, at: usize) -> rusqlite::Result<()> {
                $(stmt.raw_bind_parameter(at + $i, &self.$i)?;)+
                Ok(())
            }
        }
    };
}

index_row!(3: A 0, B 1, C 2);
index_row!(4: A 0, B 1, C 2, D 3);
index_row!(5: A 0, B 1, C 2, D 3, E 4);
index_row!(7: A 0, B 1, C 2, D 3, E 4, F 5, G 6);
index_row!(8: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
index_row!(9: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);

/// A trace id binds as its 16-byte blob.
impl ToSql for TraceId {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Blob(&self.0)))
    }
}

/// `INSERT OR IGNORE INTO <into> VALUES (...), ...`: chunks of [`ROWS_PER_INSERT`] rows in
/// one statement each, the rest one row per statement (two cached statements per table).
pub(super) fn insert_rows<R: IndexRow>(
    conn: &Connection,
    into: &str,
    rows: &[R],
) -> Result<(), StoreError> {
    let columns = R::COLUMNS;
    let sql = |n: usize| {
        let one = format!("({})", vec!["?"; columns].join(", "));
        format!(
            "INSERT OR IGNORE INTO {into} VALUES {}",
            vec![one; n].join(", ")
        )
    };
    let mut chunks = rows.chunks_exact(ROWS_PER_INSERT);
    if chunks.len() > 0 {
        let mut stmt = conn
            .prepare_cached(&sql(ROWS_PER_INSERT))
            .map_err(map_sql)?;
        for chunk in &mut chunks {
            for (i, row) in chunk.iter().enumerate() {
                row.bind(&mut stmt, i * columns + 1).map_err(map_sql)?;
            }
            stmt.raw_execute().map_err(map_sql)?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut stmt = conn.prepare_cached(&sql(1)).map_err(map_sql)?;
        for row in rest {
            row.bind(&mut stmt, 1).map_err(map_sql)?;
            stmt.raw_execute().map_err(map_sql)?;
        }
    }
    Ok(())
}

/// The columns of a `traces` row written by [`update_trace`], and their parameters (a macro,
/// so that the statements below are constants: no SQL text is built per trace). Since schema
/// 18 the root's names and the name lists are one value, `names` (`name_sets.rs`), the end is
/// the start plus the duration, and the root's start is an offset from the trace start.
macro_rules! trace_row {
    () => {
        "INSERT INTO traces (trace_id, start_ns, duration_ns, names, root_offset_ns, \
         span_count, error_count, span_mask, root_http_status, received_ns, spans_refused) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    };
}

/// A new trace's summary; nothing when a row is there.
const INSERT_NEW_TRACE: &str = concat!(trace_row!(), " ON CONFLICT (trace_id) DO NOTHING");

/// A trace's summary, replacing the row that is there.
const UPSERT_TRACE: &str = concat!(
    trace_row!(),
    " ON CONFLICT (trace_id) DO UPDATE SET start_ns = excluded.start_ns, \
     duration_ns = excluded.duration_ns, names = excluded.names, \
     root_offset_ns = excluded.root_offset_ns, span_count = excluded.span_count, \
     error_count = excluded.error_count, span_mask = excluded.span_mask, \
     root_http_status = excluded.root_http_status, \
     spans_refused = excluded.spans_refused"
);

/// Folds newly inserted spans into the trace's summary row; returns the trace start (as
/// stored) and whether the trace was stored before. When an existing trace's start moved,
/// its index rows at the old start are deleted and returned (read back from all its stored
/// spans, the new ones included) so the caller inserts them at the new start.
///
/// `unseen`: no span of the trace was stored before this group. Then the summary of `spans`
/// alone is inserted without reading `traces` first; should a row be there all the same, the
/// insert does nothing and the trace takes the path of a stored one.
fn update_trace(
    conn: &Connection,
    names: &mut NameSets,
    trace_id: TraceId,
    spans: &[&Span],
    refused: u64,
    unseen: bool,
) -> Result<(i64, bool, Option<StoredRows>), StoreError> {
    if unseen {
        let mut summary = TraceSummary::new(trace_id);
        summary.spans_refused += refused;
        for span in spans {
            summary.add_span(span);
        }
        if write_summary(conn, names, INSERT_NEW_TRACE, &summary)? == 1 {
            return Ok((to_i64(summary.start_time_unix_nano), false, None));
        }
    }
    let existing = read_summary(conn, trace_id).map_err(map_sql)?;
    let existed = existing.is_some();
    let mut summary = existing.unwrap_or_else(|| TraceSummary::new(trace_id));
    summary.spans_refused += refused;
    let old_start = summary.start_time_unix_nano;
    for span in spans {
        summary.add_span(span);
    }
    let start = to_i64(summary.start_time_unix_nano);
    write_summary(conn, names, UPSERT_TRACE, &summary)?;
    if existed && old_start != summary.start_time_unix_nano {
        let rows = StoredRows::read(conn, trace_id)?;
        rows.delete(conn, trace_id, to_i64(old_start))?;
        return Ok((start, true, Some(rows)));
    }
    Ok((start, existed, None))
}

/// Runs `sql` ([`INSERT_NEW_TRACE`] or [`UPSERT_TRACE`]) with `summary`'s values, its names
/// as their set (`names`); returns the rows changed.
fn write_summary(
    conn: &Connection,
    names: &mut NameSets,
    sql: &str,
    summary: &TraceSummary,
) -> Result<usize, StoreError> {
    let start = to_i64(summary.start_time_unix_nano);
    let names = names.value(conn, summary)?;
    conn.prepare_cached(sql)
        .map_err(map_sql)?
        .execute(params![
            &summary.trace_id.0[..],
            start,
            to_i64(summary.duration_ns()),
            names,
            summary
                .root_start_time_unix_nano
                .map(|root| to_i64(root).saturating_sub(start)),
            to_i64(summary.span_count),
            to_i64(summary.error_count),
            i64::from(summary.span_mask),
            summary.root_http_status,
            // Set when the trace is first stored, never updated: retention ages by it.
            to_i64(crate::time::now_unix_nano()),
            to_i64(summary.spans_refused),
        ])
        .map_err(map_sql)
}

/// The search-index rows of one trace (`trace_services`, `trace_operations`, `span_attrs`),
/// computed from its stored spans. The index tables are keyed by what a search walks, with no
/// trace-id key, so a trace's rows are found by recomputing their keys: every row of a trace
/// carries the trace's current start (`traces.start_ns`).
#[derive(Default)]
pub(super) struct StoredRows {
    services: Vec<String>,
    pairs: Vec<(String, String)>,
    /// Every indexable attribute, whatever [`AttributeIndex`] says (deleting a row that was
    /// never written is harmless; the option may have changed since).
    attrs: Vec<(String, String)>,
}

impl StoredRows {
    /// Recomputes the rows of `trace_id` from its stored spans.
    pub(super) fn read(conn: &Connection, trace_id: TraceId) -> Result<Self, StoreError> {
        let mut out = Self::default();
        super::blocks::for_each_block(conn, trace_id, |block| {
            for span in &block.spans {
                for kv in detail_attributes(block.detail(span))? {
                    if let Some(text) = attr_index_text(&kv.value) {
                        out.attrs.push((kv.key.into(), text.into_owned()));
                    }
                }
                let service = block.string(span.service);
                out.pairs
                    .push((service.to_owned(), block.string(span.name).to_owned()));
                out.services.push(service.to_owned());
            }
            Ok(())
        })?;
        out.services.sort_unstable();
        out.services.dedup();
        out.pairs.sort_unstable();
        out.pairs.dedup();
        out.attrs.sort_unstable();
        out.attrs.dedup();
        Ok(out)
    }

    /// Deletes these rows of `trace_id` at trace start `start`.
    pub(super) fn delete(
        &self,
        conn: &Connection,
        trace_id: TraceId,
        start: i64,
    ) -> Result<(), StoreError> {
        let id = &trace_id.0[..];
        let mut stmt = conn
            .prepare_cached(
                "DELETE FROM trace_services WHERE service = ?1 AND start_ns = ?2 AND trace_id = ?3",
            )
            .map_err(map_sql)?;
        for service in &self.services {
            stmt.execute(params![service, start, id]).map_err(map_sql)?;
        }
        let mut stmt = conn
            .prepare_cached(concat!(
                "DELETE FROM trace_operations WHERE bucket = ",
                bucket_of!("?3"),
                " AND op = (SELECT id FROM operation_ids WHERE service = ?1 AND name = ?2) \
                 AND start_ns = ?3 AND trace_id = ?4"
            ))
            .map_err(map_sql)?;
        for (service, operation) in &self.pairs {
            stmt.execute(params![service, operation, start, id])
                .map_err(map_sql)?;
        }
        attr_stage::delete_rows(conn, trace_id, start, &self.attrs)
    }
}

// Write-path additions of schema version 2 (kept apart from the span insert above).

#[cfg(test)]
mod tests {
    use super::super::tests::fresh;
    use crate::store::{SpanStore, TraceQuery, conformance};
    use rusqlite::Connection;

    #[tokio::test]
    async fn index_rows_follow_a_trace_whose_start_moves_earlier() {
        let (store, dir) = fresh().await;
        let mut spans = conformance::demo_trace(6, true, 5.0);
        spans.sort_by_key(|s| s.start_time_unix_nano);
        let root = spans.remove(0);
        store.write_spans(spans.clone()).await.unwrap();
        store.write_spans(vec![root.clone()]).await.unwrap();
        let q = TraceQuery {
            service: Some(root.service_name.to_string()),
            attributes: vec![("http.response.status_code".into(), "503".into())],
            ..TraceQuery::default()
        };
        let found = store.find_traces(q).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].start_time_unix_nano, root.start_time_unix_nano);
        // Every index row carries the new start; none is left at the old one.
        let conn = Connection::open(dir.path().join("spanline.db")).unwrap();
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        // The attribute rows: both levels (`attr_stage.rs`).
        let attrs = "(SELECT key, value, start_ns, trace_id FROM span_attrs UNION ALL \
                     SELECT key, value, start_ns, trace_id FROM span_attrs_new)";
        for table in ["trace_services", "trace_operations", attrs] {
            assert!(
                count(&format!("SELECT count(*) FROM {table}")) > 0,
                "{table}"
            );
            let stale = count(&format!(
                "SELECT count(*) FROM {table} x JOIN traces t \
                 ON t.trace_id = x.trace_id WHERE x.start_ns != t.start_ns"
            ));
            assert_eq!(stale, 0, "{table}");
        }
        // Retention finds the moved rows by their key.
        assert_eq!(super::super::tests::delete_every_trace(&store).await, 1);
        store.shutdown().await;
        for table in ["trace_services", "trace_operations", attrs] {
            assert_eq!(
                count(&format!("SELECT count(*) FROM {table}")),
                0,
                "{table}"
            );
        }
    }

    /// A `traces` row with no stored span left (here its span deleted by hand): the next
    /// write counts no span of the trace, so the writer takes it for a new one, finds the row
    /// at its insert, and folds the spans into it rather than replacing it.
    #[tokio::test]
    async fn a_summary_without_stored_spans_is_folded_into_not_replaced() {
        let (store, dir) = fresh().await;
        let spans = conformance::demo_trace(7, false, 1.0);
        let trace_id = spans[0].trace_id;
        assert!(spans.iter().all(|s| s.trace_id == trace_id) && spans.len() > 2);
        store.write_spans(spans[..1].to_vec()).await.unwrap();
        let conn = Connection::open(dir.path().join("spanline.db")).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        conn.execute_batch(&format!(
            "DELETE FROM span_blocks; UPDATE traces SET spans_refused = 3 WHERE trace_id = x'{}';",
            trace_id.to_hex()
        ))
        .unwrap();
        store.write_spans(spans[1..].to_vec()).await.unwrap();
        let (count, refused): (i64, i64) = conn
            .query_row(
                "SELECT span_count, spans_refused FROM traces WHERE trace_id = ?1",
                [&trace_id.0[..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(refused, 3, "the stored row was kept");
        assert_eq!(count, i64::try_from(spans.len()).unwrap());
        store.shutdown().await;
    }

    /// Version 8 → 9: `trace_operations_by_name` is dropped and `operations_by_name` made;
    /// searches by an operation alone answer as before.
    #[tokio::test]
    async fn version_8_file_is_migrated_in_place() {
        let (_dir, path) = super::super::tests::two_demo_traces().await;
        Connection::open(&path)
            .unwrap()
            .execute_batch(&format!(
                "BEGIN; {} DROP INDEX operations_by_name;
                 CREATE INDEX trace_operations_by_name
                     ON trace_operations (operation, start_ns, trace_id);
                 PRAGMA user_version = 8; COMMIT;",
                super::super::operation_ids::BACK_TO_V11
            ))
            .unwrap();
        let store = crate::store::sqlite::SqliteStore::open(&path, Default::default()).unwrap();
        let by_op = TraceQuery {
            operation: Some("charge card".into()),
            ..TraceQuery::default()
        };
        assert_eq!(store.find_traces(by_op).await.unwrap().len(), 2);
        store.shutdown().await;
        let conn = Connection::open(&path).unwrap();
        let names: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE name LIKE '%by_name' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(names, ["operations_by_name"]);
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, crate::store::sqlite::schema::SCHEMA_VERSION);
    }
}
