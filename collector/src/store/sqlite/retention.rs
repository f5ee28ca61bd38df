//! # Retention
//!
//! [`SpanStore::enforce_retention`](crate::store::SpanStore::enforce_retention) runs in the
//! writer like a write: each call deletes at most one small batch of the oldest traces (by
//! age of receipt, `traces.received_ns`, never by a start a client claims; or while the live data, `(page_count - freelist_count) * page_size`, is above the size
//! limit) in one short transaction, so ingest waits for at most one batch (reliability.md §6
//! C10). A deleted trace's search-index rows are found by key ([`StoredRows`]); the oldest
//! index buckets left empty are removed (`buckets.rs`). Freed pages
//! are reused; the file does not shrink (no `VACUUM` while running).

use std::collections::HashSet;

use rusqlite::{Connection, Transaction, params};

use super::blocks::for_each_block;
use super::buckets::bucket_of;
use super::codec::blob_array;
use super::index::StoredRows;
use super::search::SLOW_SPAN_NS;
use super::{map_sql, to_i64, to_u64};
use crate::model::TraceId;
use crate::store::{RetentionOutcome, RetentionPolicy, StoreError};

/// Deletes one retention batch (see the module docs) inside the writer's transaction.
pub(super) fn retention_batch(
    tx: &mut Transaction<'_>,
    policy: &RetentionPolicy,
) -> Result<RetentionOutcome, StoreError> {
    let batch = policy.batch_traces.max(1);
    let sp = tx.savepoint().map_err(map_sql)?;
    let mut outcome = RetentionOutcome::default();
    // (trace id, start, min(start, received)).
    let mut victims: Vec<(Vec<u8>, i64, i64)> = Vec::new();
    if let Some(cutoff) = policy.delete_before_unix_nano {
        let mut stmt = sp
            .prepare_cached(
                "SELECT trace_id, start_ns, min(start_ns, received_ns) FROM traces \
                 WHERE received_ns < ?1 ORDER BY received_ns LIMIT ?2",
            )
            .map_err(map_sql)?;
        let rows = stmt
            .query_map(params![to_i64(cutoff), (batch + 1) as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(map_sql)?;
        victims = rows
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(map_sql)?;
        if victims.len() > batch {
            victims.truncate(batch);
            outcome.more = true;
        }
    }
    if victims.len() < batch
        && let Some(max) = policy.max_bytes
        && live_bytes(&sp)? > max
    {
        let mut stmt = sp
            .prepare_cached(
                "SELECT trace_id, start_ns, min(start_ns, received_ns) FROM traces \
                 ORDER BY received_ns LIMIT ?1",
            )
            .map_err(map_sql)?;
        let rows = stmt
            .query_map(params![batch as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(map_sql)?;
        let have: HashSet<Vec<u8>> = victims.iter().map(|(id, ..)| id.clone()).collect();
        for row in rows {
            let row: (Vec<u8>, i64, i64) = row.map_err(map_sql)?;
            if victims.len() < batch && !have.contains(&row.0) {
                victims.push(row);
            }
        }
    }
    // Entry rows (stats) are aged by their own start, up to the deleted traces' starts
    // clamped to their receipt, so a start claimed in the future cannot sweep them all.
    let mut entry_cutoff = policy.delete_before_unix_nano.map(to_i64);
    for (id, start, clamped) in &victims {
        let trace_id = TraceId(blob_array::<16>(id)?);
        outcome.spans_deleted += delete_trace(&sp, trace_id, *start)?;
        outcome.traces_deleted += 1;
        entry_cutoff = Some(entry_cutoff.unwrap_or(0).max(clamped.saturating_add(1)));
    }
    if let Some(cutoff) = entry_cutoff {
        let limit = (batch * 20) as i64;
        // Oldest buckets first (schema 18: the table is keyed by bucket, `buckets.rs`).
        let n = sp
            .prepare_cached(concat!(
                "DELETE FROM entry_spans WHERE (bucket, op, start_ns, trace_id, span_id, kind) \
                 IN (SELECT bucket, op, start_ns, trace_id, span_id, kind FROM entry_spans \
                 WHERE bucket <= ",
                bucket_of!("?1"),
                " AND start_ns < ?1 ORDER BY bucket LIMIT ?2)"
            ))
            .map_err(map_sql)?
            .execute(params![cutoff, limit])
            .map_err(map_sql)?;
        if n as i64 == limit {
            outcome.more = true;
        }
    }
    // The oldest index buckets left without rows (`buckets.rs`).
    if outcome.traces_deleted > 0 {
        super::buckets::prune(&sp)?;
        // The posting rows whose entries are all older than every stored trace.
        super::attr_postings::prune(&sp)?;
    }
    if let Some(max) = policy.max_bytes
        && outcome.traces_deleted > 0
        && live_bytes(&sp)? > max
    {
        outcome.more = true;
    }
    sp.commit().map_err(map_sql)?;
    Ok(outcome)
}

/// Deletes one trace's spans, summary, search-index rows and sampling decision; returns the
/// spans deleted.
fn delete_trace(conn: &Connection, trace_id: TraceId, start_ns: i64) -> Result<u64, StoreError> {
    let id = &trace_id.0[..];
    StoredRows::read(conn, trace_id)?.delete(conn, trace_id, start_ns)?;
    super::links::delete_links(conn, trace_id)?;
    super::durable::delete_decision(conn, trace_id)?;
    let spans: i64 = conn
        .prepare_cached("SELECT coalesce(sum(span_count), 0) FROM span_blocks WHERE trace_id = ?1")
        .map_err(map_sql)?
        .query_row([id], |r| r.get(0))
        .map_err(map_sql)?;
    delete_slow_spans(conn, trace_id)?;
    conn.prepare_cached("DELETE FROM span_blocks WHERE trace_id = ?1")
        .map_err(map_sql)?
        .execute([id])
        .map_err(map_sql)?;
    conn.prepare_cached("DELETE FROM traces WHERE trace_id = ?1")
        .map_err(map_sql)?
        .execute([id])
        .map_err(map_sql)?;
    Ok(to_u64(spans))
}

/// Deletes the `slow_spans` rows of the stored spans of `trace_id`, by their key (service,
/// start, duration, trace id: the table's primary key since schema 18, found in the trace's
/// blocks; no index by trace id).
fn delete_slow_spans(conn: &Connection, trace_id: TraceId) -> Result<(), StoreError> {
    let id = &trace_id.0[..];
    let mut delete = conn
        .prepare_cached(
            "DELETE FROM slow_spans WHERE service = ?1 \
             AND start_ns = ?2 AND duration_ns = ?3 AND trace_id = ?4",
        )
        .map_err(map_sql)?;
    for_each_block(conn, trace_id, |block| {
        for span in block.spans.iter().filter(|s| s.duration_ns >= SLOW_SPAN_NS) {
            delete
                .execute(params![
                    block.string(span.service),
                    to_i64(span.start_ns),
                    to_i64(span.duration_ns),
                    id
                ])
                .map_err(map_sql)?;
        }
        Ok(())
    })
}

/// Deletes whole traces by id, with their request samples (`entry_spans`), inside the
/// writer's transaction ([`SpanStore::delete_traces`](crate::store::SpanStore::delete_traces)).
pub(super) fn delete_traces(
    tx: &mut Transaction<'_>,
    trace_ids: &[TraceId],
) -> Result<RetentionOutcome, StoreError> {
    let sp = tx.savepoint().map_err(map_sql)?;
    let mut outcome = RetentionOutcome::default();
    for &trace_id in trace_ids {
        let id = &trace_id.0[..];
        let window: Option<(i64, i64)> = sp
            .prepare_cached("SELECT start_ns, duration_ns FROM traces WHERE trace_id = ?1")
            .map_err(map_sql)?
            .query_row([id], |r| {
                let start: i64 = r.get(0)?;
                Ok((start, start.saturating_add(r.get::<_, i64>(1)?.max(0))))
            })
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(map_sql(e)),
            })?;
        let Some((start, end)) = window else { continue };
        outcome.spans_deleted += delete_trace(&sp, trace_id, start)?;
        outcome.traces_deleted += 1;
        sp.prepare_cached(concat!(
            "DELETE FROM entry_spans WHERE bucket >= ",
            bucket_of!("?1"),
            " AND bucket <= ",
            bucket_of!("?2"),
            " AND start_ns BETWEEN ?1 AND ?2 AND trace_id = ?3"
        ))
        .map_err(map_sql)?
        .execute(params![start, end, id])
        .map_err(map_sql)?;
    }
    sp.commit().map_err(map_sql)?;
    Ok(outcome)
}

/// Bytes of live (non-free) pages.
fn live_bytes(conn: &Connection) -> Result<u64, StoreError> {
    let pragma = |name: &str| -> Result<i64, StoreError> {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .map_err(map_sql)
    };
    let pages = pragma("page_count")? - pragma("freelist_count")?;
    Ok(to_u64(pages.saturating_mul(pragma("page_size")?)))
}

#[cfg(test)]
mod tests {
    use super::super::tests::fresh;
    use super::*;
    use crate::store::{SpanStore, conformance};

    #[tokio::test]
    async fn retention_by_size_deletes_oldest_until_under_the_limit() {
        let (store, _dir) = fresh().await;
        for n in 1..=40u8 {
            store
                .write_spans(conformance::demo_trace(n, false, 1.0))
                .await
                .unwrap();
        }
        let policy = RetentionPolicy {
            delete_before_unix_nano: None,
            max_bytes: Some(1),
            batch_traces: 15,
        };
        let first = store.enforce_retention(policy).await.unwrap();
        assert_eq!(first.traces_deleted, 15);
        assert!(first.more, "still over the limit");
        // Oldest first.
        assert!(
            store
                .get_trace(crate::testing::trace_id(1))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .get_trace(crate::testing::trace_id(16))
                .await
                .unwrap()
                .is_some()
        );
        let unlimited = RetentionPolicy {
            max_bytes: Some(u64::MAX),
            ..policy
        };
        let none = store.enforce_retention(unlimited).await.unwrap();
        assert_eq!((none.traces_deleted, none.more), (0, false));
        assert!(store.storage_bytes().unwrap() > 0);
    }
}
