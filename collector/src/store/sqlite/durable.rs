//! The rows of what the collector learns besides spans (schema version 7): tail sampling
//! decisions (`sampling_decisions`, one row per trace, deleted with the trace by
//! `retention.rs`) and consumer groups (`consumer_groups`, one row per (destination, group)).
//!
//! Writes run in the writer thread as requests of their own (never inside a span insert),
//! each in a savepoint so a request is all or nothing; reads use the reader pool.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{backend, map_sql, to_i64, to_u64};
use crate::model::TraceId;
use crate::store::{ConsumerGroupSeen, SamplingDecision, StoreError};

/// Upserts `decisions` (a later decision on a trace replaces an earlier one).
pub(super) fn record_decisions(
    tx: &mut Transaction<'_>,
    decisions: &[SamplingDecision],
) -> Result<(), StoreError> {
    let sp = tx.savepoint().map_err(map_sql)?;
    {
        let mut stmt = sp
            .prepare_cached(
                "INSERT INTO sampling_decisions (trace_id, kept, policies, finish, decided_ns) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (trace_id) DO UPDATE SET \
                 kept = excluded.kept, policies = excluded.policies, finish = excluded.finish, \
                 decided_ns = excluded.decided_ns \
                 WHERE excluded.decided_ns >= sampling_decisions.decided_ns",
            )
            .map_err(map_sql)?;
        for d in decisions {
            let policies = serde_json::to_string(&d.policies).map_err(backend)?;
            stmt.execute(params![
                &d.trace_id.0[..],
                i64::from(d.kept),
                policies,
                d.finish,
                to_i64(d.decided_unix_nano)
            ])
            .map_err(map_sql)?;
        }
    }
    sp.commit().map_err(map_sql)
}

/// Upserts `seen` (a stored pair keeps the later time).
pub(super) fn record_groups(
    tx: &mut Transaction<'_>,
    seen: &[ConsumerGroupSeen],
) -> Result<(), StoreError> {
    let sp = tx.savepoint().map_err(map_sql)?;
    {
        let mut stmt = sp
            .prepare_cached(
                "INSERT INTO consumer_groups (destination, consumer_group, last_seen_ns) \
                 VALUES (?1, ?2, ?3) ON CONFLICT (destination, consumer_group) DO UPDATE SET \
                 last_seen_ns = max(last_seen_ns, excluded.last_seen_ns)",
            )
            .map_err(map_sql)?;
        for s in seen {
            stmt.execute(params![
                s.destination,
                s.group,
                to_i64(s.last_seen_unix_nano)
            ])
            .map_err(map_sql)?;
        }
    }
    sp.commit().map_err(map_sql)
}

/// The stored decision on `trace_id`.
pub(super) fn read_decision(
    conn: &Connection,
    trace_id: TraceId,
) -> Result<Option<SamplingDecision>, StoreError> {
    let row: Option<(i64, String, String, i64)> = conn
        .prepare_cached(
            "SELECT kept, policies, finish, decided_ns FROM sampling_decisions \
             WHERE trace_id = ?1",
        )
        .map_err(backend)?
        .query_row([&trace_id.0[..]], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()
        .map_err(backend)?;
    let Some((kept, policies, finish, decided)) = row else {
        return Ok(None);
    };
    Ok(Some(SamplingDecision {
        trace_id,
        kept: kept != 0,
        policies: serde_json::from_str(&policies).map_err(backend)?,
        finish,
        decided_unix_nano: to_u64(decided),
    }))
}

/// The pairs last seen at or after `since_unix_nano`, sorted.
pub(super) fn read_groups(
    conn: &Connection,
    since_unix_nano: u64,
) -> Result<Vec<ConsumerGroupSeen>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT destination, consumer_group, last_seen_ns FROM consumer_groups \
             WHERE last_seen_ns >= ?1 ORDER BY destination, consumer_group",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map([to_i64(since_unix_nano)], |r| {
            Ok(ConsumerGroupSeen {
                destination: r.get(0)?,
                group: r.get(1)?,
                last_seen_unix_nano: to_u64(r.get(2)?),
            })
        })
        .map_err(backend)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
}

/// Deletes the decision on one trace (with the trace itself, `retention.rs`).
pub(super) fn delete_decision(conn: &Connection, trace_id: TraceId) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM sampling_decisions WHERE trace_id = ?1")
        .map_err(map_sql)?
        .execute([&trace_id.0[..]])
        .map_err(map_sql)?;
    Ok(())
}
