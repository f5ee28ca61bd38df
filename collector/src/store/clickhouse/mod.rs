//! # The ClickHouse backend
//!
//! A [`SpanStore`] over ClickHouse's HTTP interface, for deployments that outgrow one SQLite
//! file: one node, or a cluster whose `Distributed` tables shard spans by
//! `cityHash64(trace_id)`, optionally over `ReplicatedMergeTree` tables
//! ([`ClickHouseOptions::replicated`]; docs/clickhouse.md). It passes the same conformance
//! suite as SQLite and memory.
//!
//! | module | concept |
//! |---|---|
//! | [`sql`] | every statement (inserts, query shapes), in the 18.16 + current dialect, but the searches' and the schema's |
//! | [`ddl`] | the schema's statements: tables and views, the version record, the fills of newer tables (re-exported by `sql`) |
//! | [`search_sql`] | the search statements: prefilter, per-trace aggregate (over the per-trace summaries of schema 5 when they suffice, else the spans), windowed candidates |
//! | [`schema`] | creating the schema at start: idempotent, versioned, on every node; filling the tables newer views keep; schema 6's column drops |
//! | [`insert`] | the writer task: requests coalesce into one `INSERT` per table (spans, their search rows, links, refusals), answered after it |
//! | [`search`] | trace search (`find_traces`: newest-first in widening time windows) and summaries |
//! | [`window_spans`] | a newest-first search's first try by service, the shards apart: the candidates' spans with the window step, ranked here |
//! | [`longest`] | duration-sorted search: the traces walked longest first (`trace_duration_local`, schema 7), ranked until exact |
//! | [`read`] | trace by id, services, operations, dependencies, request samples |
//! | [`retention`] | dropping day partitions; deleting traces by id (mutations) |
//! | [`durable`] | tail sampling decisions and consumer groups (schema version 3) |
//! | [`shards`], [`cityhash`] | where the writer sends a batch: each shard's local tables, the shard picked by ClickHouse's `cityHash64` |
//! | [`codec`], [`rowbinary`], [`http`] | a span as a row; the `RowBinary` format; the HTTP client |
//!
//! Consistency: one writer task per collector checks each batch against the stored keys
//! (duplicates, the per-trace span limit) and answers every request only after ClickHouse
//! confirmed the insert (on a cluster, every shard confirmed its rows: the writer inserts
//! into each shard's local tables itself, picking the shard as the `Distributed` tables do,
//! `shards.rs`, or, when a shard has no listed node, through them with
//! `insert_distributed_sync=1`).
//! The duplicate check reads, per trace, the spans received since the day before the
//! earliest start among its spans in the batch (at most back to yesterday for current
//! spans): a resent span is found as long as its first copy is retained (see
//! `insert::lookup_since`; reads drop a copy that slipped through anyway). It first asks the
//! per-trace summaries (`trace_summary_local`, a row per trace and insert) which of the
//! batch's traces have stored spans at all, and reads the span keys of those only.

mod cityhash;
mod codec;
mod ddl;
mod durable;
mod http;
mod insert;
mod longest;
mod read;
mod retention;
mod rowbinary;
mod schema;
mod search;
mod search_sql;
mod shards;
pub(crate) mod sql;
mod window_spans;

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, oneshot, watch};

use super::{
    BoxFuture, ConsumerGroupSeen, DependencyEdge, Operation, OperationSamples, RetentionOutcome,
    RetentionPolicy, SamplingDecision, SpanStore, StoreError, StoredTrace, TimeWindow, TraceQuery,
    TraceSummary, WriteOutcome,
};
use crate::model::{Span, TraceId};

/// Where and how to reach ClickHouse (`COLLECTOR_CLICKHOUSE_*`, docs/configuration.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseOptions {
    /// HTTP URLs of the nodes, e.g. `http://localhost:8123`. Queries and inserts go to the
    /// first, but spans on a cluster go to each shard's own node; schema statements, deletes
    /// and partition drops go to every one (so with a cluster, list every node).
    pub urls: Vec<String>,
    /// Database, created when missing (letters, digits, `_`).
    pub database: String,
    /// User (HTTP basic auth); `None` for the server's default user.
    pub user: Option<String>,
    /// Password of `user`.
    pub password: Option<String>,
    /// Cluster name (from the servers' `remote_servers`): reads and writes go through
    /// `Distributed` tables over it. `None`: one node.
    pub cluster: Option<String>,
    /// The per-node tables are `ReplicatedMergeTree` (the servers need ZooKeeper and the
    /// `{shard}` and `{replica}` macros; needs `cluster`). Queries and inserts then go to the
    /// node of `urls` that answered last, or the next that accepts a connection, and reads
    /// pass over replicas that are behind (docs/clickhouse.md, "Replication").
    pub replicated: bool,
    /// Most spans stored per trace (`COLLECTOR_MAX_SPANS_PER_TRACE`).
    pub max_spans_per_trace: usize,
    /// Most spans in one `INSERT`; more queued requests wait for the next one.
    pub max_batch_spans: usize,
    /// How long the writer waits for more requests before an `INSERT` that is not full, ms
    /// (default 30: fewer, larger batches cost ClickHouse less per span, since each batch
    /// costs a duplicate-check read and new parts per shard; BENCHMARKS.md §6.4). While the
    /// previous batch's insert runs, the writer keeps gathering until it ended (§6.15).
    pub batch_linger_ms: u64,
}

impl Default for ClickHouseOptions {
    fn default() -> Self {
        Self {
            urls: vec!["http://localhost:8123".into()],
            database: "spanline".into(),
            user: None,
            password: None,
            cluster: None,
            replicated: false,
            max_spans_per_trace: super::DEFAULT_MAX_SPANS_PER_TRACE,
            max_batch_spans: 50_000,
            batch_linger_ms: 30,
        }
    }
}

/// Checks a database or cluster name: 1 to 64 letters, digits or `_`, not starting with a digit.
///
/// # Errors
/// A message naming the variable.
pub fn check_identifier(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?}: use 1-64 letters, digits or _ (not starting with a digit)"
        ))
    }
}

/// What the store's parts share.
#[derive(Debug)]
struct Shared {
    /// Queries and inserts go here.
    main: http::Node,
    /// Every node (schema, deletes, partition drops).
    nodes: Vec<http::Node>,
    /// With replication: the index in `nodes` that queries and inserts go to first (the
    /// last one that accepted a connection).
    preferred: std::sync::atomic::AtomicUsize,
    tables: sql::Tables,
    /// Where the span writer sends its batches (per shard on a cluster, `shards.rs`).
    writes: shards::Writes,
    options: ClickHouseOptions,
    commits: watch::Sender<u64>,
    /// The last read of `newest_local` (newest span start per service) and when it was
    /// read or a reread began: where newest-first searches start their windows
    /// (`search.rs`).
    newest: Mutex<Option<(std::time::Instant, std::collections::HashMap<String, u64>)>>,
    /// Per search shape and service, the index of the time window newest-first searches
    /// start at (`search.rs`): where the last result of the previous search of that shape
    /// and service was (under the service `None`: of that shape, any service).
    window_hints: Mutex<search::WindowHints>,
    /// Where duration-sorted searches start reading `trace_duration_local`, and what they
    /// did (`longest.rs`).
    longest: longest::Longest,
}

/// Settings of a write: on a cluster, the insert returns only once every shard has its rows
/// (with replication: once one replica of every shard has them).
const INSERT_SETTINGS: &[(&str, &str)] = &[("insert_distributed_sync", "1")];

/// Settings of a read with replication: a replica more than 1 s behind (one that was down
/// and is still fetching the parts written meanwhile) is passed over for an up-to-date one,
/// so a replica catching up does not answer reads or the duplicate check (if every replica
/// of a shard is behind, the least stale answers, ClickHouse's default).
const REPLICATED_SELECT_SETTINGS: &[(&str, &str)] =
    &[("max_replica_delay_for_distributed_queries", "1")];

/// [`REPLICATED_SELECT_SETTINGS`] with [`search_sql::PER_SHARD`].
const REPLICATED_PER_SHARD_SETTINGS: &[(&str, &str)] = &[
    ("max_replica_delay_for_distributed_queries", "1"),
    ("distributed_group_by_no_merge", "1"),
];

impl Shared {
    /// Runs `sql` with `body` on the main node (with replication: the preferred node, or the
    /// next that accepts a connection, with `replicated_settings` instead of `settings`; see
    /// [`http::run_on_first_reachable`]).
    async fn run(
        &self,
        sql: &str,
        settings: &[(&str, &str)],
        replicated_settings: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        if self.options.replicated {
            http::run_on_first_reachable(
                &self.nodes,
                &self.preferred,
                sql,
                replicated_settings,
                body,
            )
            .await
        } else {
            self.main.run(sql, settings, body).await
        }
    }

    /// Runs a `SELECT ... FORMAT RowBinary` (see [`Shared::run`] for where).
    async fn select(&self, sql: &str) -> Result<Vec<u8>, StoreError> {
        self.run(sql, &[], REPLICATED_SELECT_SETTINGS, Vec::new())
            .await
    }

    /// [`Shared::select`] of a per-trace aggregate that each shard answers alone
    /// ([`search_sql::PER_SHARD`]): the rows of the shards one after the other.
    async fn select_per_shard(&self, sql: &str) -> Result<Vec<u8>, StoreError> {
        self.run(
            sql,
            search_sql::PER_SHARD,
            REPLICATED_PER_SHARD_SETTINGS,
            Vec::new(),
        )
        .await
    }

    /// A `SELECT` of rows of the traces `ids`, built by `sql` for the tables to name and the
    /// ids to ask: without replication, each shard's statement names only its own traces
    /// and runs on its node over its `*_local` tables (the shard the writer and the
    /// `Distributed` tables pick, `shards.rs`; on one node, that node), the shards at once,
    /// so no server asks another and none looks up a trace it does not hold; with
    /// replication, as [`Shared::select`] (a replica behind is passed over there), or as
    /// [`Shared::select_per_shard`] when `aggregate` (a per-trace aggregate). The answers
    /// follow each other (`RowBinary` rows; none for no ids).
    ///
    /// # Errors
    /// The first error a shard's statement failed with.
    async fn select_traces(
        &self,
        ids: &[TraceId],
        aggregate: bool,
        sql: impl Fn(&sql::Tables, &[TraceId]) -> String,
    ) -> Result<Vec<u8>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let shards = &self.writes.shards;
        if self.options.replicated || shards.is_empty() {
            let sql = sql(&self.tables, ids);
            return match aggregate {
                true => self.select_per_shard(&sql).await,
                false => self.select(&sql).await,
            };
        }
        let mut per_shard: Vec<Vec<TraceId>> = vec![Vec::new(); shards.len()];
        for id in ids {
            let i = self.writes.shard_of(id).min(shards.len() - 1);
            per_shard[i].push(*id);
        }
        let reads = shards
            .iter()
            .zip(&per_shard)
            .filter(|(_, ids)| !ids.is_empty())
            .map(|(shard, ids)| {
                let sql = sql(&self.writes.tables, ids);
                let settings = if aggregate {
                    search_sql::PER_SHARD
                } else {
                    &[]
                };
                async move { shard.run(&sql, settings, Vec::new()).await }
            });
        let mut out = Vec::new();
        for answer in futures_util::future::join_all(reads).await {
            out.extend(answer?);
        }
        Ok(out)
    }

    /// How many shards [`Shared::select_each_shard`] answers for one by one (one answer per
    /// shard, over each one's `*_local` tables): `None` when it answers for all at once.
    fn shards_apart(&self) -> Option<usize> {
        let apart = !self.options.replicated && self.writes.tables.cluster.is_none();
        Some(self.writes.shards.len()).filter(|n| apart && *n > 0)
    }

    /// Whether a trace [`Shared::select_traces`] did not find on its shard may still have
    /// rows on another (written there by hand, or under another cluster layout): then a
    /// read that misses asks every shard through the store's tables.
    fn may_miss_by_shard(&self) -> bool {
        self.shards_apart().is_some_and(|n| n > 1)
    }

    /// A per-trace aggregate that each shard answers alone, built by `sql` for the tables to
    /// name: without replication, run on every shard's node over its `*_local` tables, the
    /// shards at once; with replication (or when the writer writes through the
    /// `Distributed` tables), one [`Shared::select_per_shard`] over the store's tables. One
    /// answer per shard in cluster order, or one answer holding every shard's rows.
    ///
    /// # Errors
    /// The first error a shard's statement failed with.
    async fn select_each_shard(
        &self,
        sql: impl Fn(&sql::Tables) -> String,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let shards = &self.writes.shards;
        if self.options.replicated || shards.is_empty() {
            return Ok(vec![self.select_per_shard(&sql(&self.tables)).await?]);
        }
        let sql = sql(&self.writes.tables);
        let reads = shards
            .iter()
            .map(|shard| shard.run(&sql, search_sql::PER_SHARD, Vec::new()));
        futures_util::future::join_all(reads)
            .await
            .into_iter()
            .collect()
    }

    /// [`Shared::select`], each row of the answer read by `row`.
    async fn select_rows<T>(
        &self,
        sql: &str,
        row: impl FnMut(&mut rowbinary::Reader<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        rowbinary::Reader::new(&self.select(sql).await?).rows(row)
    }

    /// Runs an `INSERT ... FORMAT RowBinary` with `rows` (see [`Shared::run`] for where).
    async fn insert(&self, sql: &str, rows: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        self.run(sql, INSERT_SETTINGS, INSERT_SETTINGS, rows).await
    }

    /// [`Shared::insert`] of `items`, each written as one row by `row` (about `row_bytes`
    /// bytes each, to size the buffer); nothing is sent for no items.
    ///
    /// # Errors
    /// The first error `row` answers, or what the insert failed with.
    async fn insert_rows<T>(
        &self,
        sql: &str,
        items: &[T],
        row_bytes: usize,
        mut row: impl FnMut(&mut rowbinary::Writer, &T) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let mut w = rowbinary::Writer::with_capacity(items.len() * row_bytes);
        for item in items {
            row(&mut w, item)?;
        }
        self.insert(sql, w.buf).await.map(|_| ())
    }
}

/// A [`SpanStore`] in ClickHouse (see the module docs).
#[derive(Debug)]
pub struct ClickHouseStore {
    shared: Arc<Shared>,
    sender: Mutex<Option<mpsc::Sender<insert::WriteRequest>>>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ClickHouseStore {
    /// Connects, creates or checks the schema on every node, and starts the writer task.
    ///
    /// # Errors
    /// [`StoreError::Unwritable`] when a node cannot be reached (retry later),
    /// [`StoreError::Incompatible`] for a database of a newer schema version,
    /// [`StoreError::Backend`] for bad options or refused statements.
    pub async fn open(options: ClickHouseOptions) -> Result<Self, StoreError> {
        check_identifier("COLLECTOR_CLICKHOUSE_DATABASE", &options.database)
            .map_err(StoreError::Backend)?;
        if let Some(c) = &options.cluster {
            check_identifier("COLLECTOR_CLICKHOUSE_CLUSTER", c).map_err(StoreError::Backend)?;
        }
        if options.replicated && options.cluster.is_none() {
            return Err(StoreError::Backend(
                "COLLECTOR_CLICKHOUSE_REPLICATED needs COLLECTOR_CLICKHOUSE_CLUSTER (the \
                 cluster whose shards hold the replicas)"
                    .into(),
            ));
        }
        let nodes = options
            .urls
            .iter()
            .map(|u| http::Node::new(u, options.user.clone(), options.password.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let main = nodes
            .first()
            .cloned()
            .ok_or_else(|| StoreError::Backend("COLLECTOR_CLICKHOUSE_URL is empty".into()))?;
        let tables = sql::Tables {
            db: options.database.clone(),
            cluster: options.cluster.clone(),
            replicated: options.replicated,
        };
        schema::apply(&nodes, &tables).await?;
        let writes = shards::discover(&tables, &nodes).await?;
        let shared = Arc::new(Shared {
            main,
            nodes,
            preferred: std::sync::atomic::AtomicUsize::new(0),
            tables,
            writes,
            options,
            commits: watch::Sender::new(0),
            newest: Mutex::new(None),
            window_hints: Mutex::new(search::WindowHints::new()),
            longest: longest::Longest::default(),
        });
        // Read in the background: without it the first duration-sorted search reads more.
        longest::hint_for_search(&shared);
        let (sender, receiver) = mpsc::channel(insert::QUEUE_REQUESTS);
        let writer = tokio::spawn(insert::run(Arc::clone(&shared), receiver));
        Ok(Self {
            shared,
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
        })
    }

    fn sender(&self) -> Option<mpsc::Sender<insert::WriteRequest>> {
        self.sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `Err(`[`StoreError::Closed`]`)` once [`SpanStore::shutdown`] has begun: writes,
    /// deletes and the writability check refuse from then on.
    fn check_open(&self) -> Result<(), StoreError> {
        self.sender().map(|_| ()).ok_or(StoreError::Closed)
    }
}

impl SpanStore for ClickHouseStore {
    fn write_spans(&self, spans: Vec<Span>) -> BoxFuture<'_, Result<WriteOutcome, StoreError>> {
        Box::pin(async move {
            if spans.is_empty() {
                return Ok(WriteOutcome::default());
            }
            let sender = self.sender().ok_or(StoreError::Closed)?;
            let (reply, answer) = oneshot::channel();
            let request = insert::WriteRequest::new(spans, reply);
            match tokio::time::timeout(insert::QUEUE_WAIT, sender.send(request)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(StoreError::Closed),
                Err(_) => return Err(StoreError::Overloaded),
            }
            answer.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn get_trace(
        &self,
        trace_id: TraceId,
    ) -> BoxFuture<'_, Result<Option<StoredTrace>, StoreError>> {
        Box::pin(read::get_trace(&self.shared, trace_id))
    }

    fn find_traces(
        &self,
        query: TraceQuery,
    ) -> BoxFuture<'_, Result<Vec<TraceSummary>, StoreError>> {
        Box::pin(async move { search::find_traces(&self.shared, &query).await })
    }

    fn traces_linking_to(
        &self,
        trace_id: TraceId,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<TraceId>, StoreError>> {
        Box::pin(read::traces_linking_to(&self.shared, trace_id, limit))
    }

    fn services(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(read::services(&self.shared))
    }

    fn operations(&self, service: String) -> BoxFuture<'_, Result<Vec<Operation>, StoreError>> {
        Box::pin(async move { read::operations(&self.shared, &service).await })
    }

    fn dependencies(
        &self,
        window: TimeWindow,
    ) -> BoxFuture<'_, Result<Vec<DependencyEdge>, StoreError>> {
        Box::pin(read::dependencies(&self.shared, window))
    }

    fn operation_samples(
        &self,
        window: TimeWindow,
        service: Option<String>,
    ) -> BoxFuture<'_, Result<Vec<OperationSamples>, StoreError>> {
        Box::pin(async move { read::samples(&self.shared, window, service.as_deref()).await })
    }

    fn enforce_retention(
        &self,
        policy: RetentionPolicy,
    ) -> BoxFuture<'_, Result<RetentionOutcome, StoreError>> {
        Box::pin(async move {
            self.check_open()?;
            retention::enforce(&self.shared, policy).await
        })
    }

    fn delete_traces(
        &self,
        trace_ids: Vec<TraceId>,
    ) -> BoxFuture<'_, Result<RetentionOutcome, StoreError>> {
        Box::pin(async move {
            self.check_open()?;
            retention::delete_traces(&self.shared, &trace_ids).await
        })
    }

    fn record_sampling_decisions(
        &self,
        decisions: Vec<SamplingDecision>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.check_open()?;
            durable::record_decisions(&self.shared, &decisions).await
        })
    }

    fn sampling_decision(
        &self,
        trace_id: TraceId,
    ) -> BoxFuture<'_, Result<Option<SamplingDecision>, StoreError>> {
        Box::pin(durable::decision(&self.shared, trace_id))
    }

    fn record_consumer_groups(
        &self,
        seen: Vec<ConsumerGroupSeen>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.check_open()?;
            durable::record_groups(&self.shared, &seen).await
        })
    }

    fn consumer_groups(
        &self,
        since_unix_nano: u64,
    ) -> BoxFuture<'_, Result<Vec<ConsumerGroupSeen>, StoreError>> {
        Box::pin(durable::groups(&self.shared, since_unix_nano))
    }

    fn storage_bytes(&self) -> Option<u64> {
        None
    }

    fn check_writable(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.check_open()?;
            self.shared
                .select("SELECT 1 FORMAT RowBinary")
                .await
                .map(|_| ())
        })
    }

    fn subscribe_commits(&self) -> watch::Receiver<u64> {
        self.shared.commits.subscribe()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            drop(
                self.sender
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take(),
            );
            let writer = self
                .writer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(writer) = writer {
                // The writer answers every queued request, then ends with the channel.
                let _ = writer.await;
            }
        })
    }
}

#[cfg(test)]
mod longest_tests;
#[cfg(test)]
mod shard_tests;
#[cfg(test)]
mod tests;
