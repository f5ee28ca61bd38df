//! Duration-sorted searches (longest first) without ranking every candidate: each shard
//! walks its `trace_duration_local` rows longest first ([`search_sql::longest_walk`]) and
//! ranks only the traces of the rows walked, exactly (their summaries or spans, as the full
//! search ranks), keeping those that match.
//!
//! Why that is exact: the writer adds a row each time it stores spans of a trace, holding
//! the trace's duration over every span it knows of (`insert.rs`), so a trace's largest row
//! is at least its duration (more only when spans a row counted were later dropped, or
//! never stored after a failed insert). A trace not walked on a shard has every row, so its
//! duration too, sorting after that shard's last row walked, by `(duration, trace id)`. So
//! once the `limit`-th result sorts at or before every shard's last row walked (or a shard
//! walked all its rows), no trace left out can displace a result. Otherwise the walk is
//! longer, and past [`MAX_WALK`] rows (or when matches are too rare among the rows walked
//! to fill the limit within it) the full search answers.

use std::sync::PoisonError;

use super::rowbinary::Reader;
use super::{Shared, search_sql};
use crate::model::TraceId;
use crate::store::{StoreError, TraceQuery};

/// Rows walked per shard per result wanted, at first.
const WALK_PER_RESULT: usize = 4;

/// Most rows walked per shard before the full search answers: each costs a granule read of
/// `spans_local` (to check the span conditions of its trace).
pub(super) const MAX_WALK: usize = 5_000;

/// The ids of the traces matching `query`, longest first (ties: larger trace id first), at
/// most its limit; `None` when the walk cannot answer (another order, a `max_duration`, or
/// matches too rare among the longest traces): the full search then.
///
/// The first try reads only the rows at or after the last row of the previous walk that
/// answered (`Shared::longest_from`; a hint: a range too short costs a second try over the
/// whole table, never exactness).
///
/// # Errors
/// What a query failed with.
pub(super) async fn longest_first(
    shared: &Shared,
    query: &TraceQuery,
) -> Result<Option<Vec<TraceId>>, StoreError> {
    let limit = query.effective_limit();
    let mut walk = limit * WALK_PER_RESULT;
    let mut from = *shared
        .longest_from
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    loop {
        if search_sql::longest_walk(&shared.tables, query, walk, from).is_none() {
            return Ok(None);
        }
        // Every shard walks its own rows (one answer each, or one for all).
        let answer = shared
            .select_each_shard(|t| {
                search_sql::longest_walk(t, query, walk, from).unwrap_or_default()
            })
            .await?
            .concat();
        let step = Step::read(&answer, walk, from)?;
        let mut found = step.found;
        let matches = found.len();
        found.sort_by_key(|f| std::cmp::Reverse(*f));
        found.truncate(limit);
        let exact = match step.bound {
            None => true,
            Some(bound) => found.len() == limit && found.last().is_some_and(|f| *f >= bound),
        };
        if exact {
            if let Some(last) = step.shortest_walked {
                *shared
                    .longest_from
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(last);
            }
            return Ok(Some(found.iter().map(|(_, id)| *id).collect()));
        }
        if step.range_short {
            // Too few rows in the range read: the whole table, the same walk.
            from = None;
            continue;
        }
        // Walk far enough to fill the limit twice at the rate matches came so far (at least
        // 8 times as far), or give up when that is past the bound or nothing matched.
        if matches == 0 {
            return Ok(None);
        }
        walk = (walk * 8).max(walk / matches * limit * 2);
        from = None;
        if walk > MAX_WALK {
            return Ok(None);
        }
    }
}

/// Rows per shard [`prime`] reads up to: the first walk of a search of the default limit
/// with one match in four rows.
const PRIME_WALK: usize = crate::store::DEFAULT_SEARCH_LIMIT * WALK_PER_RESULT * 4;

/// Sets where the first duration-sorted search starts its walk (`Shared::longest_from`):
/// at the last of each shard's [`PRIME_WALK`] longest rows, the earliest of them, so that
/// search does not sort the whole table (run once, in the background, when the store
/// opens). Leaves it unset when a shard has fewer rows (reading them all is cheap then).
///
/// # Errors
/// What the query failed with.
pub(super) async fn prime(shared: &Shared) -> Result<(), StoreError> {
    let sql = search_sql::longest_start(&shared.tables, PRIME_WALK);
    let answer = shared.select_per_shard(&sql).await?;
    let rows = Reader::new(&answer).rows(|r| {
        let duration_ns = r.u64()?;
        let id = TraceId(r.fixed::<16>()?);
        Ok(((duration_ns, id), r.u64()?))
    })?;
    if rows.iter().all(|(_, n)| *n >= PRIME_WALK as u64) {
        let start = rows.into_iter().map(|(row, _)| row).min();
        let mut from = shared
            .longest_from
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A search that answered meanwhile knows better.
        if from.is_none() {
            *from = start;
        }
    }
    Ok(())
}

/// What one walk answered, every shard's rows together.
struct Step {
    /// `(duration_ns, trace_id)` of the matches.
    found: Vec<(u64, TraceId)>,
    /// What every trace left out sorts before, by `(duration_ns, trace_id)`: the largest of
    /// the shards' last rows walked (a shard that walked fewer rows than asked: the start of
    /// the range read, or, reading all, nothing); `None` when no trace was left out.
    bound: Option<(u64, TraceId)>,
    /// A shard walked fewer rows than asked in a range: it has rows before it.
    range_short: bool,
    /// The smallest of the shards' last rows walked, of the shards that walked every row
    /// asked: where the next search's range can start.
    shortest_walked: Option<(u64, TraceId)>,
}

impl Step {
    /// Reads the rows of [`search_sql::longest_walk`] run with `walk` and `from`.
    fn read(answer: &[u8], walk: usize, from: Option<(u64, TraceId)>) -> Result<Self, StoreError> {
        let mut r = Reader::new(answer);
        let mut step = Self {
            found: Vec::new(),
            bound: None,
            range_short: false,
            shortest_walked: None,
        };
        while !r.is_empty() {
            let last = r.u8()? == 1;
            let id = TraceId(r.fixed::<16>()?);
            let walked = r.u64()?;
            r.u64()?;
            let duration_ns = r.u64()?;
            if !last {
                step.found.push((duration_ns, id));
                continue;
            }
            let row = if walked >= walk as u64 {
                // Rows left: they sort after this one.
                let row = (duration_ns, id);
                step.shortest_walked = Some(step.shortest_walked.map_or(row, |s| s.min(row)));
                Some(row)
            } else {
                // Every row of the range walked: the rows left sort before its start.
                step.range_short |= from.is_some();
                from
            };
            if let Some(row) = row {
                step.bound = Some(step.bound.map_or(row, |b| b.max(row)));
            }
        }
        Ok(step)
    }
}
