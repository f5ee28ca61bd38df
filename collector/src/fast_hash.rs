//! Hash maps and sets for the per-span work of ingest (grouping a commit's index rows, the
//! settler's pending traces, duplicate checks), hashed with foldhash instead of the standard
//! library's SipHash-1-3, which was 5-9% of the SQLite writer's and the ingest threads' CPU
//! (BENCHMARKS.md §3.2). foldhash's `RandomState` is seeded per process, so a client cannot
//! pick keys (trace ids, attribute values) that collide in every collector.

/// A `HashMap` with foldhash's per-process seeded hasher; make one with `default()` or
/// `with_capacity_and_hasher(n, Default::default())`.
pub type FastHashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A `HashSet` with foldhash's per-process seeded hasher.
pub type FastHashSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;
