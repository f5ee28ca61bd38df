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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::rowbinary::Reader;
use super::{Shared, search_sql};
use crate::model::TraceId;
use crate::store::{StoreError, TraceQuery};

/// Rows walked per shard per result wanted, at first.
const WALK_PER_RESULT: usize = 4;

/// Most rows walked per shard before the full search answers: each costs a granule read of
/// `spans_local` (to check the span conditions of its trace).
pub(super) const MAX_WALK: usize = 5_000;

/// How deep, in rows per shard, the range a walk reads starts ([`Hint`]): twice the longest
/// walk, so that every walk stays inside it while no rows are deleted. Sorting a range this
/// size costs the server about a millisecond; sorting the whole table (18.16 cannot read a
/// key in descending order) about 200 ms per million rows.
pub(super) const HINT_ROWS: usize = 2 * MAX_WALK;

/// How long a hint serves before a search refreshes it (in the background): traces longer
/// than it keep arriving, and each makes the range read a row longer.
const HINT_FRESH_FOR: Duration = Duration::from_secs(60);

/// Where duration-sorted searches start reading `trace_duration_local`.
#[derive(Debug, Default)]
pub(super) struct Hint {
    /// `(duration_ns, trace_id)`: when set, each shard had at least [`HINT_ROWS`] rows at or
    /// after it when it was read; `None`: no shard had that many, or not read yet.
    row: Option<(u64, TraceId)>,
    /// When it was last read (or a read was last begun).
    read_at: Option<Instant>,
    /// A read is under way.
    reading: bool,
}

/// What duration-sorted searches did, since the store opened (tests read them).
#[derive(Debug, Default)]
pub(super) struct WalkCounts {
    /// Walks sent (one per try of a search).
    pub walks: AtomicU64,
    /// Walks that read and sorted the whole table (no hint, or its range ran short).
    pub whole_table: AtomicU64,
    /// Searches the walk could not answer: the full search answered them.
    pub gave_up: AtomicU64,
}

/// The hint and the counts, as [`Shared`] keeps them.
#[derive(Debug, Default)]
pub(super) struct Longest {
    hint: Mutex<Hint>,
    pub counts: WalkCounts,
}

/// The ids of the traces matching `query`, longest first (ties: larger trace id first), at
/// most its limit; `None` when the walk cannot answer (another order, a `max_duration`, or
/// matches too rare among the longest traces): the full search then.
///
/// Walks read the rows at or after the hint ([`Hint`], [`HINT_ROWS`] deep per shard), so a
/// walk sorts a short key range instead of the whole table; a walk that finds too few matches
/// walks further in the same range (up to [`MAX_WALK`] rows per shard). Only a range that
/// ran out of rows (rows deleted since the hint was read) is read again as the whole table:
/// the hint decides how much is read, never what is answered. A search finding the hint
/// missing or older than [`HINT_FRESH_FOR`] starts a new read of it in the background.
///
/// # Errors
/// What a query failed with.
pub(super) async fn longest_first(
    shared: &Arc<Shared>,
    query: &TraceQuery,
) -> Result<Option<Vec<TraceId>>, StoreError> {
    if !search_sql::walks_longest_first(query) {
        return Ok(None);
    }
    let limit = query.effective_limit();
    let mut walk = limit * WALK_PER_RESULT;
    let mut from = hint_for_search(shared);
    let counts = &shared.longest.counts;
    loop {
        counts.walks.fetch_add(1, Ordering::Relaxed);
        if from.is_none() {
            counts.whole_table.fetch_add(1, Ordering::Relaxed);
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
            return Ok(Some(found.iter().map(|(_, id)| *id).collect()));
        }
        if step.range_short {
            // The range ran out before the walk did (rows were deleted since the hint was
            // read): the whole table, the same walk; the next search reads a new hint.
            from = None;
            shared
                .longest
                .hint
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .read_at = None;
            continue;
        }
        // Walk far enough to fill the limit twice at the rate matches came so far (8 times
        // as far at least), up to the bound once, then the full search. When none came: the
        // full search at once if the query has a time window (it reads only the window's
        // rows, while each walk's row costs a granule of spans: a window that holds none of
        // the longest traces would otherwise walk 5,000 rows a shard, ~10 times the full
        // search's cost), 8 times as far if not (the full search would read every row).
        let windowed =
            query.start_time_min_unix_nano.is_some() || query.start_time_max_unix_nano.is_some();
        if walk >= MAX_WALK || (matches == 0 && windowed) {
            counts.gave_up.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        let at_rate = walk
            .checked_div(matches)
            .map_or(0, |per_match| per_match * limit * 2);
        walk = (walk * 8).max(at_rate).min(MAX_WALK);
    }
}

/// The hint's row for a search to start at; starts a read of the hint in the background when
/// there is none or it is older than [`HINT_FRESH_FOR`] (one read at a time). Also called
/// when the store opens, so the first search does not sort the whole table.
pub(super) fn hint_for_search(shared: &Arc<Shared>) -> Option<(u64, TraceId)> {
    let mut hint = shared
        .longest
        .hint
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let stale = hint.read_at.is_none_or(|at| at.elapsed() >= HINT_FRESH_FOR);
    if stale && !hint.reading {
        hint.reading = true;
        hint.read_at = Some(Instant::now());
        let shared = Arc::clone(shared);
        tokio::spawn(async move {
            // A failed read leaves the old hint; the next stale search tries again.
            let _ = read_hint(&shared, HINT_ROWS).await;
        });
    }
    hint.row
}

/// Reads the hint ([`Hint`]): the last of each shard's `rows` longest `trace_duration_local`
/// rows, the earliest of them (`None` when a shard has fewer rows: reading them all is cheap
/// then). Reads the range after the current hint when every shard still has `rows` rows there
/// (a short sort), the whole table otherwise. Run in the background when the store opens and
/// when a search finds the hint stale ([`longest_first`]); `rows` is [`HINT_ROWS`] but for
/// tests.
///
/// # Errors
/// What a query failed with (the hint is then left as it was).
pub(super) async fn read_hint(shared: &Shared, rows: usize) -> Result<(), StoreError> {
    let result = read_hint_rows(shared, rows).await;
    let mut hint = shared
        .longest
        .hint
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    hint.reading = false;
    hint.read_at = Some(Instant::now());
    hint.row = result?;
    Ok(())
}

async fn read_hint_rows(
    shared: &Shared,
    rows: usize,
) -> Result<Option<(u64, TraceId)>, StoreError> {
    let current = shared
        .longest
        .hint
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .row;
    for from in [current, None] {
        let sql = search_sql::longest_start(&shared.tables, rows, from);
        let answer = shared.select_per_shard(&sql).await?;
        let lasts = Reader::new(&answer).rows(|r| {
            let duration_ns = r.u64()?;
            let id = TraceId(r.fixed::<16>()?);
            Ok(((duration_ns, id), r.u64()?))
        })?;
        if lasts.iter().all(|(_, n)| *n >= rows as u64) {
            return Ok(lasts.into_iter().map(|(row, _)| row).min());
        }
        if from.is_none() {
            break;
        }
    }
    Ok(None)
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
}

impl Step {
    /// Reads the rows of [`search_sql::longest_walk`] run with `walk` and `from`.
    fn read(answer: &[u8], walk: usize, from: Option<(u64, TraceId)>) -> Result<Self, StoreError> {
        let mut r = Reader::new(answer);
        let mut step = Self {
            found: Vec::new(),
            bound: None,
            range_short: false,
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
                Some((duration_ns, id))
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

/// Reads the hint at `rows` per shard now, after any read under way (tests: their data sets
/// are smaller than [`HINT_ROWS`]).
#[cfg(test)]
pub(super) async fn read_hint_now(shared: &Shared, rows: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        {
            let mut hint = shared
                .longest
                .hint
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !hint.reading {
                hint.reading = true;
                break;
            }
        }
        assert!(Instant::now() < deadline, "a hint read did not end");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    read_hint(shared, rows).await.expect("hint read");
}

/// The hint's row (tests).
#[cfg(test)]
pub(super) fn hint_row(shared: &Shared) -> Option<(u64, TraceId)> {
    shared
        .longest
        .hint
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .row
}

/// Forgets the hint's row (tests: the next read sorts the whole table).
#[cfg(test)]
pub(super) fn forget_hint(shared: &Shared) {
    shared
        .longest
        .hint
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .row = None;
}
