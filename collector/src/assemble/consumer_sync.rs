//! Keeps [`ConsumerGroups`] in the store, so the consumer groups a destination has had
//! survive a restart and are shared by collectors over one store (issue 12 §5).
//!
//! The hot path only queues a pair when it is new or was last queued
//! [`PERSIST_EVERY`](super::completeness::PERSIST_EVERY) ago
//! ([`ConsumerGroups::record`]); [`maintain`] writes the queue every [`FLUSH_EVERY`] in one
//! store call, and loads the pairs seen within
//! [`RECENT_CONSUMERS`](super::completeness::RECENT_CONSUMERS) at start and every
//! [`LOAD_EVERY`]. A failed write is logged and its pairs are queued again at their next
//! sighting; a failed load is logged and tried again at the next tick.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::completeness::{ConsumerGroups, RECENT_CONSUMERS};
use crate::store::{SpanStore, StoreError};

/// How often queued pairs are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often the store's pairs are loaded (what other collectors learnt).
pub const LOAD_EVERY: Duration = Duration::from_secs(30);

/// Writes the pairs `groups` has queued; `Ok(n)`: how many were written.
///
/// # Errors
/// What the store's write failed with (the pairs are queued again at their next sighting).
pub async fn flush(store: &dyn SpanStore, groups: &ConsumerGroups) -> Result<usize, StoreError> {
    let pending = groups.take_pending();
    if pending.is_empty() {
        return Ok(0);
    }
    let n = pending.len();
    match store.record_consumer_groups(pending.clone()).await {
        Ok(()) => Ok(n),
        Err(e) => {
            groups.unstore(&pending);
            Err(e)
        }
    }
}

/// Loads the pairs seen within [`RECENT_CONSUMERS`] into `groups`; `Ok(n)`: how many.
///
/// # Errors
/// What the store's read failed with.
pub async fn load(store: &dyn SpanStore, groups: &ConsumerGroups) -> Result<usize, StoreError> {
    let now_unix = crate::time::now_unix_nano();
    let since = now_unix.saturating_sub(u64::try_from(RECENT_CONSUMERS.as_nanos()).unwrap_or(0));
    let stored = store.consumer_groups(since).await?;
    let n = stored.len();
    groups.merge(stored, Instant::now(), now_unix);
    Ok(n)
}

/// Loads the store's recent pairs into [`ConsumerGroups::global`] (before the first span is
/// taken in), then spawns [`maintain`] on it; the task ends after its last write once
/// `state` shuts down: await it before shutting the store down.
pub async fn start(state: &crate::AppState) -> tokio::task::JoinHandle<()> {
    let groups = ConsumerGroups::global();
    if let Err(e) = load(state.store.as_ref(), groups).await {
        eprintln!("collector: could not load consumer groups: {e}");
    }
    tokio::spawn(maintain(
        Arc::clone(&state.store),
        groups,
        state.shutdown_receiver(),
    ))
}

/// Runs until `shutdown` turns true: flushes every [`FLUSH_EVERY`] and loads every
/// [`LOAD_EVERY`]; flushes once more before returning.
pub async fn maintain(
    store: Arc<dyn SpanStore>,
    groups: &'static ConsumerGroups,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut flush_tick = tokio::time::interval(FLUSH_EVERY);
    let mut load_tick =
        tokio::time::interval_at(tokio::time::Instant::now() + LOAD_EVERY, LOAD_EVERY);
    flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    load_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*shutdown.borrow_and_update() {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = flush_tick.tick() => {
                if let Err(e) = flush(store.as_ref(), groups).await {
                    eprintln!("collector: could not store consumer groups: {e}");
                }
            }
            _ = load_tick.tick() => {
                if let Err(e) = load(store.as_ref(), groups).await {
                    eprintln!("collector: could not load consumer groups: {e}");
                }
            }
        }
    }
    if let Err(e) = flush(store.as_ref(), groups).await {
        eprintln!("collector: could not store consumer groups at shutdown: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use crate::assemble::completeness::{PERSIST_EVERY, name_hash};

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(d, g)| ((*d).to_owned(), (*g).to_owned()))
            .collect()
    }

    /// Two collectors over one store: what one learns, the other expects after a load; a
    /// pair seen again within a minute is not written again.
    #[tokio::test]
    async fn collectors_sharing_a_store_learn_each_others_groups() {
        let store = MemoryStore::new();
        let (a, b) = (ConsumerGroups::default(), ConsumerGroups::default());
        let now = Instant::now();
        a.record(pairs(&[("p.done", "mail"), ("p.done", "order")]), now);
        assert_eq!(flush(&store, &a).await.unwrap(), 2);
        // Seen again at once, and again later within a minute: nothing new to write.
        a.record(pairs(&[("p.done", "mail")]), now);
        a.record(pairs(&[("p.done", "mail")]), now + PERSIST_EVERY / 2);
        assert_eq!(flush(&store, &a).await.unwrap(), 0);
        // A minute on, it is written again.
        a.record(pairs(&[("p.done", "mail")]), now + PERSIST_EVERY);
        assert_eq!(flush(&store, &a).await.unwrap(), 1);

        assert!(b.expected(name_hash("p.done"), Instant::now()).is_empty());
        assert_eq!(load(&store, &b).await.unwrap(), 2);
        let mut expected: Vec<String> = b
            .expected(name_hash("p.done"), Instant::now())
            .into_iter()
            .map(|(_, name)| name)
            .collect();
        expected.sort();
        assert_eq!(expected, vec!["mail".to_owned(), "order".to_owned()]);
        // What b loaded it does not write back.
        assert_eq!(flush(&store, &b).await.unwrap(), 0);
        // A pair last seen longer ago than RECENT_CONSUMERS is not loaded.
        let c = ConsumerGroups::default();
        let old =
            crate::time::now_unix_nano() - u64::try_from(RECENT_CONSUMERS.as_nanos()).unwrap() - 1;
        store
            .record_consumer_groups(vec![crate::store::ConsumerGroupSeen {
                destination: "old.queue".into(),
                group: "gone".into(),
                last_seen_unix_nano: old,
            }])
            .await
            .unwrap();
        load(&store, &c).await.unwrap();
        assert!(
            c.expected(name_hash("old.queue"), Instant::now())
                .is_empty()
        );
    }

    /// A write that fails queues its pairs again at their next sighting.
    #[tokio::test]
    async fn a_failed_write_is_queued_again() {
        let store = MemoryStore::new();
        let groups = ConsumerGroups::default();
        let now = Instant::now();
        groups.record(pairs(&[("q", "g")]), now);
        store.shutdown().await;
        assert!(flush(&store, &groups).await.is_err());
        groups.record(pairs(&[("q", "g")]), now);
        assert_eq!(groups.take_pending().len(), 1);
    }
}
