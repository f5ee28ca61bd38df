//! Tail sampling decisions and consumer groups (schema version 3; `store/durable.rs`).
//! Each write is one `INSERT` (`Shared::insert`: the main node, or with replication the
//! first reachable; through the `Distributed` tables on a
//! cluster, confirmed by every shard), outside the span writer's batches; a later decision
//! on a trace is another row, and reads take the latest. Decisions are deleted with their
//! trace (`retention.rs` lists their table among a trace's tables).

use super::codec::day_of;
use super::rowbinary::Reader;
use super::{Shared, sql};
use crate::model::TraceId;
use crate::store::{ConsumerGroupSeen, SamplingDecision, StoreError};

/// Inserts `decisions`.
///
/// # Errors
/// What the insert failed with.
pub(super) async fn record_decisions(
    shared: &Shared,
    decisions: &[SamplingDecision],
) -> Result<(), StoreError> {
    let sql = sql::insert_decisions(&shared.tables);
    shared
        .insert_rows(&sql, decisions, 64, |w, d| {
            let policies = serde_json::to_string(&d.policies)
                .map_err(|e| StoreError::Backend(e.to_string()))?;
            w.u16(day_of(d.decided_unix_nano));
            w.u64(d.decided_unix_nano);
            w.fixed(&d.trace_id.0);
            w.u8(u8::from(d.kept));
            w.bytes(policies.as_bytes());
            w.bytes(d.finish.as_bytes());
            Ok(())
        })
        .await
}

/// The latest decision on `trace_id`.
///
/// # Errors
/// What the query failed with.
pub(super) async fn decision(
    shared: &Shared,
    trace_id: TraceId,
) -> Result<Option<SamplingDecision>, StoreError> {
    let answer = shared
        .select(&sql::decision(&shared.tables, trace_id))
        .await?;
    let mut r = Reader::new(&answer);
    if r.is_empty() {
        return Ok(None);
    }
    let kept = r.u8()? != 0;
    let policies = r.string()?;
    let finish = r.string()?;
    let decided_unix_nano = r.u64()?;
    Ok(Some(SamplingDecision {
        trace_id,
        kept,
        policies: serde_json::from_str(&policies)
            .map_err(|e| StoreError::Backend(format!("stored decision policies: {e}")))?,
        finish,
        decided_unix_nano,
    }))
}

/// Inserts `seen` (reads fold a pair's rows by `max`).
///
/// # Errors
/// What the insert failed with.
pub(super) async fn record_groups(
    shared: &Shared,
    seen: &[ConsumerGroupSeen],
) -> Result<(), StoreError> {
    let sql = sql::insert_consumer_groups(&shared.tables);
    shared
        .insert_rows(&sql, seen, 48, |w, s| {
            w.bytes(s.destination.as_bytes());
            w.bytes(s.group.as_bytes());
            w.u64(s.last_seen_unix_nano);
            Ok(())
        })
        .await
}

/// The pairs last seen at or after `since_unix_nano`, sorted.
///
/// # Errors
/// What the query failed with.
pub(super) async fn groups(
    shared: &Shared,
    since_unix_nano: u64,
) -> Result<Vec<ConsumerGroupSeen>, StoreError> {
    shared
        .select_rows(
            &sql::consumer_groups(&shared.tables, since_unix_nano),
            |r| {
                Ok(ConsumerGroupSeen {
                    destination: r.string()?,
                    group: r.string()?,
                    last_seen_unix_nano: r.u64()?,
                })
            },
        )
        .await
}
