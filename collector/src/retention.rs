//! Retention: a background task that deletes old data by age and by size.
//!
//! | variable | flag | default | meaning |
//! |---|---|---|---|
//! | `COLLECTOR_RETENTION` | `--retention` | `7d` | delete traces first received longer ago than this (`s`, `m`, `h`, `d`; `0` keeps everything) |
//! | `COLLECTOR_MAX_DISK_BYTES` | `--max-disk-bytes` | `0` (no limit) | while the live data of the database is larger, delete the oldest traces (SQLite only) |
//!
//! Every [`RETENTION_INTERVAL`] (and once at start), the task calls
//! [`SpanStore::enforce_retention`] until nothing more matches. Each call deletes at most
//! [`RETENTION_BATCH_TRACES`] traces in one short transaction of the single writer, and the
//! task pauses [`RETENTION_PAUSE`] between calls, so ingest is never held up by more than one
//! small batch (reliability.md §6 C10).
//!
//! A trace's age is the time the collector first received one of its spans, never a start
//! time a client claims: trace ids are public, and one span with a victim's trace id and
//! `startTimeUnixNano = 1` must not get the victim's trace deleted (issue 16). Spans with
//! odd timestamps are still stored (with the usual warning); they cannot move a trace's age. The size limit counts live pages; SQLite reuses freed
//! pages, so the file stops growing rather than shrinking.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::store::{RetentionPolicy, SpanStore};

/// Time between retention passes.
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(60);
/// Traces deleted per transaction.
pub const RETENTION_BATCH_TRACES: usize = 500;
/// Pause between two batches of one pass (lets queued writes through).
pub const RETENTION_PAUSE: Duration = Duration::from_millis(20);

/// What the retention task enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Keep traces first received within this age; `None` keeps them regardless of age.
    pub max_age: Option<Duration>,
    /// Keep the live data under this many bytes; `None` for no limit.
    pub max_bytes: Option<u64>,
}

impl RetentionConfig {
    /// Whether there is anything to enforce.
    pub fn is_enabled(&self) -> bool {
        self.max_age.is_some() || self.max_bytes.is_some()
    }
}

/// Runs one retention pass: batches until nothing more matches. Returns the traces deleted.
pub async fn run_pass(store: &dyn SpanStore, config: &RetentionConfig) -> u64 {
    run_pass_at(store, config, crate::time::now_unix_nano).await
}

/// [`run_pass`] with `now` (unix ns) as the clock.
async fn run_pass_at(
    store: &dyn SpanStore,
    config: &RetentionConfig,
    now: impl Fn() -> u64,
) -> u64 {
    let mut deleted = 0;
    loop {
        let cutoff = config
            .max_age
            .map(|age| now().saturating_sub(duration_ns(age)));
        let policy = RetentionPolicy {
            delete_before_unix_nano: cutoff,
            max_bytes: config.max_bytes,
            batch_traces: RETENTION_BATCH_TRACES,
        };
        match store.enforce_retention(policy).await {
            Ok(outcome) => {
                deleted += outcome.traces_deleted;
                if !outcome.more {
                    return deleted;
                }
            }
            Err(e) => {
                eprintln!("collector: retention pass stopped: {e}");
                return deleted;
            }
        }
        tokio::time::sleep(RETENTION_PAUSE).await;
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Runs retention passes every [`RETENTION_INTERVAL`] until `shutdown` turns true.
pub async fn run(
    store: Arc<dyn SpanStore>,
    config: RetentionConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    if !config.is_enabled() {
        return;
    }
    loop {
        let deleted = run_pass(store.as_ref(), &config).await;
        if deleted > 0 {
            eprintln!("collector: retention deleted {deleted} traces");
        }
        tokio::select! {
            () = tokio::time::sleep(RETENTION_INTERVAL) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, TraceQuery};

    #[tokio::test]
    async fn a_pass_deletes_everything_too_old_in_batches() {
        let store = MemoryStore::new();
        // The fixtures start in 2025, but were received just now: no trace is a day old.
        for n in 0..3u8 {
            store
                .write_spans(crate::testing::sample_trace(n))
                .await
                .unwrap();
        }
        let config = RetentionConfig {
            max_age: Some(Duration::from_secs(86_400)),
            max_bytes: None,
        };
        assert_eq!(run_pass(&store, &config).await, 0);
        // Two days later, all three are.
        let later = || crate::time::now_unix_nano() + 2 * 86_400 * 1_000_000_000;
        assert_eq!(run_pass_at(&store, &config, later).await, 3);
        assert!(
            store
                .find_traces(TraceQuery::default())
                .await
                .unwrap()
                .is_empty()
        );
        let keep = RetentionConfig {
            max_age: Some(Duration::from_secs(86_400 * 365 * 100)),
            max_bytes: None,
        };
        store
            .write_spans(crate::testing::sample_trace(9))
            .await
            .unwrap();
        assert_eq!(run_pass(&store, &keep).await, 0);
    }
}
