//! The options of [`SqliteStore::open`](super::SqliteStore::open): sync mode, queue, checks
//! at open, and which attributes the search index keeps.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

/// Which span attributes the SQLite store indexes for attribute search.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AttributeIndex {
    /// Every searchable attribute ([`attr_index_text`](crate::store::attr_index_text)).
    #[default]
    All,
    /// None: fastest writes, no attribute search.
    None,
    /// Only these keys.
    Keys(HashSet<String>),
}

impl AttributeIndex {
    pub(super) fn wants(&self, key: &str) -> bool {
        match self {
            Self::All => true,
            Self::None => false,
            Self::Keys(keys) => keys.contains(key),
        }
    }
}

impl FromStr for AttributeIndex {
    type Err = String;
    /// `all`, `none`, or a comma-separated list of keys.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "all" => Ok(Self::All),
            "none" | "" => Ok(Self::None),
            list => Ok(Self::Keys(
                list.split(',')
                    .map(|k| k.trim().to_owned())
                    .filter(|k| !k.is_empty())
                    .collect(),
            )),
        }
    }
}

/// SQLite `synchronous` setting for the WAL (reliability.md §6 C2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Durable across process crashes; the last commits may roll back on power loss.
    #[default]
    Normal,
    /// Durable across power loss; slower commits.
    Full,
}

impl FromStr for Synchronous {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "normal" => Ok(Self::Normal),
            "full" => Ok(Self::Full),
            _ => Err("expected `normal` or `full`".to_owned()),
        }
    }
}

/// Options for [`SqliteStore::open`](super::SqliteStore::open).
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// WAL sync mode (default [`Synchronous::Normal`]).
    pub synchronous: Synchronous,
    /// Requests that may wait for the writer (default 1024).
    pub queue_capacity: usize,
    /// How long a request waits for room in the queue before failing with
    /// [`StoreError::Overloaded`](crate::store::StoreError::Overloaded) (default 5 s).
    pub enqueue_timeout: Duration,
    /// Run `PRAGMA quick_check` at open when the file is at most this big, bytes (default 256 MiB).
    pub quick_check_max_bytes: u64,
    /// Which span attributes go into the attribute search index (`attr_runs.rs`; default
    /// all). Attribute filters find nothing for attributes that were not indexed.
    pub index_attributes: AttributeIndex,
    /// Most spans stored per trace (default
    /// [`DEFAULT_MAX_SPANS_PER_TRACE`](crate::store::DEFAULT_MAX_SPANS_PER_TRACE)); later
    /// new spans of a full trace are refused.
    pub max_spans_per_trace: usize,
    /// Rows at which a run of the attribute index is closed and the next one started
    /// (default 2,000,000; `attr_runs.rs`):
    /// moving staged rows into a run costs more per row as the run grows, and a search or
    /// probe seeks once per run.
    pub attr_run_rows: u64,
    /// Rows (of `trace_operations` and `entry_spans`) at which the newest index bucket is
    /// closed and the next group starts a new one (default 8,192; `buckets.rs`): smaller
    /// buckets keep a commit's rows apart from the last commit's, larger ones make a search
    /// by operation seek fewer times.
    pub index_bucket_rows: u64,
    /// Whether moves of staged attribute rows write posting rows (`attr_postings.rs`; the
    /// default, since schema 17) rather than runs as schema 16 did (`attr_runs.rs`): `false`
    /// only for tests that make files with runs.
    #[doc(hidden)]
    pub attr_postings: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Normal,
            queue_capacity: 1024,
            enqueue_timeout: Duration::from_secs(5),
            quick_check_max_bytes: 256 * 1024 * 1024,
            index_attributes: AttributeIndex::All,
            max_spans_per_trace: crate::store::DEFAULT_MAX_SPANS_PER_TRACE,
            attr_run_rows: super::attr_runs::DEFAULT_ATTR_RUN_ROWS,
            index_bucket_rows: super::buckets::BUCKET_ROWS,
            attr_postings: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SpanStore, TraceQuery, conformance};

    #[tokio::test]
    async fn attribute_index_can_be_limited_to_keys() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteOptions {
            index_attributes: "app.user.id, other".parse().unwrap(),
            ..SqliteOptions::default()
        };
        let store =
            super::super::SqliteStore::open(dir.path().join("spanline.db"), options).unwrap();
        store
            .write_spans(conformance::demo_trace(1, true, 5.0))
            .await
            .unwrap();
        let find = |k: &str, v: &str| TraceQuery {
            attributes: vec![(k.into(), v.into())],
            ..TraceQuery::default()
        };
        assert_eq!(
            store
                .find_traces(find("app.user.id", "u1"))
                .await
                .unwrap()
                .len(),
            1
        );
        let unindexed = find("http.response.status_code", "503");
        assert!(store.find_traces(unindexed).await.unwrap().is_empty());
        assert_eq!("none".parse::<AttributeIndex>(), Ok(AttributeIndex::None));
        assert_eq!("all".parse::<AttributeIndex>(), Ok(AttributeIndex::All));
    }

    #[test]
    fn synchronous_parses() {
        assert_eq!("FULL".parse::<Synchronous>(), Ok(Synchronous::Full));
        assert!("fast".parse::<Synchronous>().is_err());
    }
}
