//! Removing data. Retention ([`enforce`]) first drops whole `received_day` partitions older
//! than the cutoff's day on every node (cheap: files are unlinked), then deletes the traces of
//! the cutoff's own day first received before the cutoff, a batch at a time, with mutations.
//! [`delete_traces`] (tail sampling) is a mutation too. ClickHouse applies mutations in the
//! background; both wait until every node reports them done, so a read after the call does
//! not see the deleted traces.
//!
//! A trace's age is its first receipt (`min(received_ns)`), as in SQLite. When a whole day
//! is dropped, the later spans of a trace that began that day stay until their own day goes.

use std::collections::HashSet;
use std::time::Duration;

use super::codec::day_of;
use super::rowbinary::Reader;
use super::{Shared, sql};
use crate::model::TraceId;
use crate::store::{RetentionOutcome, RetentionPolicy, StoreError};

/// How long deletes wait for their mutations.
const MUTATION_DEADLINE: Duration = Duration::from_secs(120);
/// Pause between two looks at `system.mutations`.
const MUTATION_POLL: Duration = Duration::from_millis(20);

/// One retention step (see the module docs); `more` when another call has work.
///
/// # Errors
/// What a statement failed with.
pub(super) async fn enforce(
    shared: &Shared,
    policy: RetentionPolicy,
) -> Result<RetentionOutcome, StoreError> {
    let mut outcome = RetentionOutcome::default();
    let Some(cutoff) = policy.delete_before_unix_nano else {
        return Ok(outcome);
    };
    let cutoff_day = day_of(cutoff);
    let answer = shared
        .select(&sql::days_before(&shared.tables, cutoff_day))
        .await?;
    let mut r = Reader::new(&answer);
    let (days, traces, spans) = (r.u64()?, r.u64()?, r.u64()?);
    if days > 0 {
        for node in &shared.nodes {
            for table in shared.tables.local_tables() {
                let parts = node
                    .run(
                        &sql::partitions_before(&shared.tables, table, cutoff_day),
                        &[],
                        Vec::new(),
                    )
                    .await?;
                let mut r = Reader::new(&parts);
                while !r.is_empty() {
                    let partition = r.string()?;
                    node.run(
                        &sql::drop_partition(&shared.tables, table, &partition),
                        &[],
                        Vec::new(),
                    )
                    .await?;
                }
            }
        }
        outcome.traces_deleted = traces;
        outcome.spans_deleted = spans;
        outcome.more = true;
        return Ok(outcome);
    }
    let batch = policy.batch_traces.max(1);
    let oldest = shared
        .select_rows(
            &sql::oldest_traces(&shared.tables, cutoff, batch + 1),
            |r| {
                let id = TraceId(r.fixed::<16>()?);
                let _first = r.u64()?;
                let count = r.u64()?;
                Ok((id, count))
            },
        )
        .await?;
    let mut ids = Vec::new();
    for (id, count) in oldest {
        if ids.len() < batch {
            ids.push(id);
            outcome.spans_deleted += count;
        } else {
            outcome.more = true;
        }
    }
    outcome.traces_deleted = ids.len() as u64;
    mutate_delete(shared, &ids).await?;
    Ok(outcome)
}

/// Deletes the traces `ids` on every node; counts what was stored.
///
/// # Errors
/// What a statement failed with, or [`StoreError::Unwritable`] when the mutations did not
/// finish within the deadline.
pub(super) async fn delete_traces(
    shared: &Shared,
    ids: &[TraceId],
) -> Result<RetentionOutcome, StoreError> {
    let ids: Vec<TraceId> = ids
        .iter()
        .copied()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut outcome = RetentionOutcome::default();
    if ids.is_empty() {
        return Ok(outcome);
    }
    let counts = shared
        .select_rows(&sql::count_traces(&shared.tables, &ids), |r| {
            Ok((TraceId(r.fixed::<16>()?), r.u64()?))
        })
        .await?;
    let mut stored = Vec::new();
    for (id, spans) in counts {
        stored.push(id);
        outcome.spans_deleted += spans;
    }
    outcome.traces_deleted = stored.len() as u64;
    mutate_delete(shared, &stored).await?;
    Ok(outcome)
}

async fn mutate_delete(shared: &Shared, ids: &[TraceId]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    for node in &shared.nodes {
        for table in shared.tables.local_tables() {
            node.run(
                &sql::delete_traces(&shared.tables, table, ids),
                &[],
                Vec::new(),
            )
            .await?;
        }
    }
    let deadline = tokio::time::Instant::now() + MUTATION_DEADLINE;
    for node in &shared.nodes {
        loop {
            let answer = node
                .run(&sql::pending_mutations(&shared.tables), &[], Vec::new())
                .await?;
            if Reader::new(&answer).u64()? == 0 {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Unwritable(format!(
                    "ClickHouse at {}: deletes still running after {} s",
                    node.url(),
                    MUTATION_DEADLINE.as_secs()
                )));
            }
            tokio::time::sleep(MUTATION_POLL).await;
        }
    }
    Ok(())
}
