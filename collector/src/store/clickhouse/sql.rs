//! Every SQL statement of the ClickHouse backend but the searches' ([`super::search_sql`]),
//! the schema's ([`super::ddl`], re-exported here) and schema 6's migration (`schema.rs`),
//! in the dialect ClickHouse
//! 18.16 (Debian bookworm) and current ClickHouse both accept (checked on 18.16 by the
//! integration tests and on ClickHouse 26.9 through chDB by `scripts/check-clickhouse-sql.py`,
//! which runs what `dump_statements_for_the_chdb_check` writes).
//!
//! The subset, forced by 18.16 (docs/clickhouse.md): no `Map`, `DateTime64`, `TTL`, skip
//! indexes, codecs, `LowCardinality` or query parameters; ids are `FixedString`, times
//! `UInt64` unix nanoseconds, attributes parallel arrays (keys as `cityHash64` since schema 8,
//! values as text); values are
//! inlined as escaped literals ([`quote`], [`bytes_lit`]).
//!
//! Tables (per node; `*_dist` are the `Distributed` tables of a cluster, sharded by
//! `cityHash64(trace_id)` so a trace lives on one shard):
//!
//! | table | order | holds |
//! |---|---|---|
//! | `spans_local` | `(trace_id, start_ns)`, granularity 1024 | every span (trace by id; since schema 6 without the attribute arrays, which only `search_local` holds) |
//! | `search_local` | `(service, start_ns)` | the searchable columns of every span, the indexed attributes among them as parallel arrays `attr_key_hashes` (`cityHash64` of each key, schema 8; rows written before hold the keys in `attr_keys`, from which the column's `DEFAULT` computes the hashes) and `attr_values`; written by the inserter since schema 6 (before, copied from `spans_local` by the view `search_mv`) |
//! | `refusals_local` | `trace_id` | spans refused at the per-trace limit, per write |
//! | `links_local` | `(trace_id, source_trace_id)` | inbound links: `trace_id` is linked to by a span of `source_trace_id` (schema 2), written by the inserter for spans with links |
//! | `sampling_decisions_local` | `trace_id` | tail sampling decisions (schema 3; the latest row of a trace wins) |
//! | `consumer_groups_local` | `(destination, consumer_group)` | consumer groups learnt from CONSUMER spans (schema 3; `ReplacingMergeTree`, reads take `max(last_seen_ns)`) |
//! | `newest_local` | `service` | the newest span start per service, filled by `newest_mv` (schema 4; `ReplacingMergeTree`, reads take `max(start_ns)`): where newest-first searches start their windows |
//! | `trace_summary_local` | `trace_id` | per trace and received day the first span start and last span end as `min`/`max` states, filled by `trace_summary_mv` (schema 5; `AggregatingMergeTree`, reads fold with `minMerge`/`maxMerge`): what searches rank candidates by |
//! | `trace_duration_local` | `(duration_ns, trace_id)` | per trace, each time the writer stores spans of it, the trace's duration so far (schema 7): a trace's largest row is its duration, what duration-sorted searches walk, longest first (`longest.rs`) |
//! | `schema_version` | - | the applied schema versions |
//!
//! The tables holding rows of a trace are partitioned by `received_day`, the day the
//! collector received the span (decided, for a decision), so retention drops whole days.
//! `consumer_groups_local` holds one row per (destination, group), sharded by destination.

use crate::model::TraceId;
use crate::store::TimeWindow;

/// The schema this build writes and reads; a database with a newer version is refused.
pub(super) const SCHEMA_VERSION: u32 = 8;

pub(super) use super::ddl::{
    add_attribute_key_hashes, backfill_newest, backfill_trace_durations, backfill_trace_summaries,
    record_schema_version, schema, schema_version,
};

/// Columns of `spans_local` in insert order (see `codec::write_span`).
pub(super) const SPAN_COLUMNS: &str = "received_day, received_ns, trace_id, span_id, \
    parent_span_id, has_parent, kind, status, service, name, start_ns, end_ns, duration_ns, \
    http_status, has_http_status, detail";
/// Columns of `search_local` in insert order (see `codec::write_search`).
pub(super) const SEARCH_COLUMNS: &str = "received_day, service, start_ns, trace_id, name, \
    kind, status, duration_ns, attr_key_hashes, attr_values";
/// Columns read to rebuild a whole span (`codec::read_span`).
pub(super) const FULL_SPAN_COLUMNS: &str = "trace_id, span_id, parent_span_id, has_parent, \
    kind, status, service, name, start_ns, end_ns, detail";
/// Columns read to build a trace summary (`codec::read_summary_span`).
pub(super) const SUMMARY_COLUMNS: &str = "trace_id, span_id, has_parent, kind, status, \
    service, name, start_ns, end_ns, http_status, has_http_status";

/// Where the tables are: the database, and the cluster when the data is sharded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Tables {
    /// Database name (letters, digits, `_`).
    pub(super) db: String,
    /// Cluster name from the servers' `remote_servers`, for `Distributed` tables.
    pub(super) cluster: Option<String>,
    /// The per-node tables are `ReplicatedMergeTree` (see [`Tables::engine`]).
    pub(super) replicated: bool,
}

impl Tables {
    /// One node's tables of the database `d` (for tests of statement shapes).
    #[cfg(test)]
    pub(super) fn one_node_for_tests() -> Self {
        Self {
            db: "d".into(),
            cluster: None,
            replicated: false,
        }
    }

    pub(super) fn name(&self, table: &str) -> String {
        format!("`{}`.`{table}`", self.db)
    }

    fn shared(&self, base: &str) -> String {
        match self.cluster {
            Some(_) => self.name(&format!("{base}_dist")),
            None => self.name(&format!("{base}_local")),
        }
    }

    /// All spans (the `Distributed` table on a cluster).
    pub(super) fn spans(&self) -> String {
        self.shared("spans")
    }

    /// All search rows.
    pub(super) fn search(&self) -> String {
        self.shared("search")
    }

    /// All refusal rows.
    pub(super) fn refusals(&self) -> String {
        self.shared("refusals")
    }

    /// All inbound-link rows.
    pub(super) fn links(&self) -> String {
        self.shared("links")
    }

    /// All tail sampling decisions.
    pub(super) fn decisions(&self) -> String {
        self.shared("sampling_decisions")
    }

    /// All consumer groups.
    pub(super) fn consumer_groups(&self) -> String {
        self.shared("consumer_groups")
    }

    /// All per-trace summary rows (schema 5).
    pub(super) fn trace_summaries(&self) -> String {
        self.shared("trace_summary")
    }

    /// All trace duration rows (schema 7).
    pub(super) fn trace_durations(&self) -> String {
        self.shared("trace_duration")
    }

    /// This node's trace duration rows (inside `IN` subqueries, which every shard runs
    /// locally).
    pub(super) fn trace_durations_local(&self) -> String {
        self.name("trace_duration_local")
    }

    /// This node's search rows (inside `IN` subqueries, which every shard runs locally).
    pub(super) fn search_local(&self) -> String {
        self.name("search_local")
    }

    /// The engine clause of the per-node table `table`: `MergeTree`, or with replication
    /// `ReplicatedMergeTree('/clickhouse/tables/{shard}/<db>/<table>', '{replica}')`, where
    /// `{shard}` and `{replica}` are each server's macros (so the replicas of one shard
    /// share a ZooKeeper path, and each registers under its own name).
    pub(super) fn engine(&self, table: &str) -> String {
        self.family("MergeTree", table, None)
    }

    /// [`engine`](Self::engine)'s `ReplacingMergeTree` (rows of a key folded to the one with
    /// the largest `version` column when parts merge).
    pub(super) fn replacing_engine(&self, table: &str, version: &str) -> String {
        self.family("ReplacingMergeTree", table, Some(version))
    }

    /// [`engine`](Self::engine)'s `AggregatingMergeTree` (the aggregate states of rows of a
    /// key combined when parts merge).
    pub(super) fn aggregating_engine(&self, table: &str) -> String {
        self.family("AggregatingMergeTree", table, None)
    }

    /// `<family>(<arg>)`, or with replication `Replicated<family>(<path>, <replica>, <arg>)`.
    fn family(&self, family: &str, table: &str, arg: Option<&str>) -> String {
        match (self.replicated, arg) {
            (true, arg) => format!(
                "Replicated{family}('/clickhouse/tables/{{shard}}/{}/{table}', '{{replica}}'{})",
                self.db,
                arg.map_or(String::new(), |a| format!(", {a}"))
            ),
            (false, Some(arg)) => format!("{family}({arg})"),
            (false, None) => family.to_owned(),
        }
    }

    /// The per-node tables that hold rows of a trace (what deletes and drops touch).
    pub(super) fn local_tables(&self) -> [&'static str; 7] {
        [
            "spans_local",
            "search_local",
            "refusals_local",
            "links_local",
            "sampling_decisions_local",
            "trace_summary_local",
            "trace_duration_local",
        ]
    }
}

/// `s` as a ClickHouse string literal (backslash and quote escaped; any bytes allowed).
pub(super) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Raw bytes as a string literal of `\xHH` escapes (compares equal to a `FixedString`).
pub(super) fn bytes_lit(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len() * 4 + 2);
    out.push('\'');
    for byte in b {
        out.push_str(&format!("\\x{byte:02x}"));
    }
    out.push('\'');
    out
}

/// `(id, id, ...)` for `IN`; never empty (`('')` matches nothing).
pub(super) fn id_list(ids: &[TraceId]) -> String {
    if ids.is_empty() {
        return "('')".into();
    }
    let items: Vec<String> = ids.iter().map(|id| bytes_lit(&id.0)).collect();
    format!("({})", items.join(", "))
}

/// A `Date` literal `'YYYY-MM-DD'` for days since 1970-01-01 (proleptic Gregorian).
pub(super) fn date_lit(days: u16) -> String {
    let (y, m, d) = crate::time::civil_from_days(i64::from(days));
    format!("'{y:04}-{m:02}-{d:02}'")
}

/// `INSERT` of trace duration rows `(received_day, duration_ns, trace_id)` as `RowBinary`.
pub(super) fn insert_trace_durations(t: &Tables) -> String {
    format!(
        "INSERT INTO {} (received_day, duration_ns, trace_id) FORMAT RowBinary",
        t.trace_durations()
    )
}

/// `(service, newest span start)` of every service (rows not yet merged folded by `max`).
pub(super) fn newest_starts(t: &Tables) -> String {
    format!(
        "SELECT service, max(start_ns) FROM {} GROUP BY service FORMAT RowBinary",
        t.shared("newest")
    )
}

/// `INSERT` of span rows ([`SPAN_COLUMNS`]) as `RowBinary`.
pub(super) fn insert_spans(t: &Tables) -> String {
    format!(
        "INSERT INTO {} ({SPAN_COLUMNS}) FORMAT RowBinary",
        t.spans()
    )
}

/// `INSERT` of search rows ([`SEARCH_COLUMNS`]) as `RowBinary`.
pub(super) fn insert_search(t: &Tables) -> String {
    format!(
        "INSERT INTO {} ({SEARCH_COLUMNS}) FORMAT RowBinary",
        t.search()
    )
}

/// `INSERT` of refusal rows `(received_day, received_ns, trace_id, refused)` as `RowBinary`.
pub(super) fn insert_refusals(t: &Tables) -> String {
    format!(
        "INSERT INTO {} (received_day, received_ns, trace_id, refused) FORMAT RowBinary",
        t.refusals()
    )
}

/// `INSERT` of decision rows `(received_day, decided_ns, trace_id, kept, policies, finish)`
/// as `RowBinary` (`policies`: a JSON array of names).
pub(super) fn insert_decisions(t: &Tables) -> String {
    format!(
        "INSERT INTO {} (received_day, decided_ns, trace_id, kept, policies, finish) \
         FORMAT RowBinary",
        t.decisions()
    )
}

/// The latest decision on `id`: `(kept, policies, finish, decided_ns)`.
pub(super) fn decision(t: &Tables, id: TraceId) -> String {
    format!(
        "SELECT kept, policies, finish, decided_ns FROM {} WHERE trace_id = {} \
         ORDER BY decided_ns DESC LIMIT 1 FORMAT RowBinary",
        t.decisions(),
        bytes_lit(&id.0)
    )
}

/// `INSERT` of consumer group rows `(destination, consumer_group, last_seen_ns)` as
/// `RowBinary`.
pub(super) fn insert_consumer_groups(t: &Tables) -> String {
    format!(
        "INSERT INTO {} (destination, consumer_group, last_seen_ns) FORMAT RowBinary",
        t.consumer_groups()
    )
}

/// `(destination, consumer_group, last seen)` of the pairs last seen at or after `since_ns`,
/// sorted; rows not yet merged by `ReplacingMergeTree` are folded by `max`.
pub(super) fn consumer_groups(t: &Tables, since_ns: u64) -> String {
    format!(
        "SELECT destination, consumer_group, max(last_seen_ns) AS seen FROM {} \
         GROUP BY destination, consumer_group HAVING seen >= {since_ns} \
         ORDER BY destination, consumer_group FORMAT RowBinary",
        t.consumer_groups()
    )
}

/// The traces among `ids` with spans received on or after `since_day`, by their summary
/// rows (one per trace and insert, a tenth of the span rows): which traces the duplicate
/// check reads the spans of ([`existing_keys`]).
pub(super) fn stored_traces(t: &Tables, ids: &[TraceId], since_day: u16) -> String {
    format!(
        "SELECT DISTINCT trace_id FROM {} WHERE received_day >= {} AND trace_id IN {} \
         FORMAT RowBinary",
        t.trace_summaries(),
        date_lit(since_day),
        id_list(ids)
    )
}

/// `(trace_id, span_id, kind, start_ns, end_ns)` of the stored spans of `ids` received on or
/// after `since_day` (the duplicate and per-trace limit check before a write, and the trace's
/// duration so far).
pub(super) fn existing_keys(t: &Tables, ids: &[TraceId], since_day: u16) -> String {
    format!(
        "SELECT trace_id, span_id, kind, start_ns, end_ns FROM {} WHERE received_day >= {} AND trace_id IN {} \
         FORMAT RowBinary",
        t.spans(),
        date_lit(since_day),
        id_list(ids)
    )
}

/// Every span of one trace ([`FULL_SPAN_COLUMNS`]), each row followed by the trace's
/// count of spans refused at the per-trace limit (`UInt64`, the same in every row; a scalar
/// subquery, so one statement reads both). Over `Distributed` tables the count is 0: 18.16
/// cannot run a scalar subquery in a query over one, so it is read apart ([`refused`]).
pub(super) fn trace_spans(t: &Tables, id: TraceId) -> String {
    let id = bytes_lit(&id.0);
    let refused = match t.cluster {
        Some(_) => "toUInt64(0)".to_owned(),
        None => format!(
            "(SELECT toUInt64(sum(refused)) FROM {} WHERE trace_id = {id})",
            t.refusals()
        ),
    };
    format!(
        "SELECT {FULL_SPAN_COLUMNS}, {refused} FROM {} WHERE trace_id = {id} FORMAT RowBinary",
        t.spans(),
    )
}

/// `(trace_id, refused)` sums of the traces `ids` that had spans refused.
pub(super) fn refused(t: &Tables, ids: &[TraceId]) -> String {
    format!(
        "SELECT trace_id, toUInt64(sum(refused)) FROM {} WHERE trace_id IN {} \
         GROUP BY trace_id FORMAT RowBinary",
        t.refusals(),
        id_list(ids)
    )
}

/// The summary columns ([`SUMMARY_COLUMNS`]) of every span of `ids`. A `PREWHERE`: the key
/// selects a granule per trace and part, and only the trace id is read from each; the
/// other columns only from the granules that hold one of `ids` (BENCHMARKS.md §6.11).
pub(super) fn summary_rows(t: &Tables, ids: &[TraceId]) -> String {
    format!(
        "SELECT {SUMMARY_COLUMNS} FROM {} PREWHERE trace_id IN {} FORMAT RowBinary",
        t.spans(),
        id_list(ids)
    )
}

/// Every service name, sorted.
pub(super) fn services(t: &Tables) -> String {
    format!(
        "SELECT DISTINCT service FROM {} ORDER BY service FORMAT RowBinary",
        t.search()
    )
}

/// `(name, kind)` of every span of `service`.
pub(super) fn operations(t: &Tables, service: &str) -> String {
    format!(
        "SELECT DISTINCT name, kind FROM {} WHERE service = {} FORMAT RowBinary",
        t.search(),
        quote(service)
    )
}

/// The spans of every trace that has a SERVER or CONSUMER span starting in `w`:
/// `(trace_id, span_id, parent_span_id, has_parent, kind, status, service, name, start_ns)`.
pub(super) fn dependency_rows(t: &Tables, w: TimeWindow) -> String {
    format!(
        "SELECT trace_id, span_id, parent_span_id, has_parent, kind, status, service, name, \
         start_ns FROM {} WHERE trace_id IN (SELECT trace_id FROM {} WHERE kind IN (2, 5) \
         AND start_ns >= {} AND start_ns < {}) FORMAT RowBinary",
        t.spans(),
        t.search_local(),
        w.start_unix_nano,
        w.end_unix_nano
    )
}

/// `(service, name, duration_ns, status)` of the SERVER and CONSUMER spans starting in `w`.
pub(super) fn sample_rows(t: &Tables, w: TimeWindow, service: Option<&str>) -> String {
    let only = service.map_or(String::new(), |s| format!(" AND service = {}", quote(s)));
    format!(
        "SELECT service, name, duration_ns, status FROM {} WHERE kind IN (2, 5) \
         AND start_ns >= {} AND start_ns < {}{only} FORMAT RowBinary",
        t.search(),
        w.start_unix_nano,
        w.end_unix_nano
    )
}

/// `INSERT` of inbound-link rows `(received_day, trace_id, source_trace_id)` as
/// `RowBinary`.
pub(super) fn insert_links(t: &Tables) -> String {
    format!(
        "INSERT INTO {} (received_day, trace_id, source_trace_id) FORMAT RowBinary",
        t.links()
    )
}

/// The traces with a span linking to `id` (other traces), ascending, at most `limit`:
/// `source_trace_id` rows.
pub(super) fn traces_linking_to(t: &Tables, id: TraceId, limit: usize) -> String {
    let id = bytes_lit(&id.0);
    format!(
        "SELECT DISTINCT source_trace_id FROM {} WHERE trace_id = {id} \
         AND source_trace_id != {id} ORDER BY source_trace_id LIMIT {limit} FORMAT RowBinary",
        t.links()
    )
}

/// `(trace_id, spans)` of the stored traces among `ids`.
pub(super) fn count_traces(t: &Tables, ids: &[TraceId]) -> String {
    format!(
        "SELECT trace_id, count() FROM {} WHERE trace_id IN {} GROUP BY trace_id \
         FORMAT RowBinary",
        t.spans(),
        id_list(ids)
    )
}

/// The oldest traces by first receipt before `cutoff_ns`, at most `limit`:
/// `(trace_id, first received_ns, spans)`.
pub(super) fn oldest_traces(t: &Tables, cutoff_ns: u64, limit: usize) -> String {
    format!(
        "SELECT trace_id, min(received_ns) AS first, count() FROM {} WHERE received_day <= {} \
         GROUP BY trace_id HAVING first < {cutoff_ns} ORDER BY first, trace_id LIMIT {limit} \
         FORMAT RowBinary",
        t.spans(),
        date_lit(super::codec::day_of(cutoff_ns))
    )
}

/// `(days, traces, spans)` received before `day` (whole days retention drops).
pub(super) fn days_before(t: &Tables, day: u16) -> String {
    format!(
        "SELECT toUInt64(uniqExact(received_day)), toUInt64(uniqExact(trace_id)), count() \
         FROM {} WHERE received_day < {} FORMAT RowBinary",
        t.spans(),
        date_lit(day)
    )
}

/// This node's partitions (days) of `table` before `day`, as `'YYYY-MM-DD'` text.
pub(super) fn partitions_before(t: &Tables, table: &str, day: u16) -> String {
    format!(
        "SELECT DISTINCT partition FROM system.parts WHERE database = {} AND table = {} \
         AND active AND partition < {} FORMAT RowBinary",
        quote(&t.db),
        quote(table),
        date_lit(day)
    )
}

/// Drops one day partition of a node's `table` (`partition` as `partitions_before` gave it).
pub(super) fn drop_partition(t: &Tables, table: &str, partition: &str) -> String {
    format!(
        "ALTER TABLE {} DROP PARTITION {}",
        t.name(table),
        quote(partition)
    )
}

/// Deletes the rows of `ids` from a node's `table` (a mutation; see `pending_mutations`);
/// from `links_local`, the rows naming them as target or as source.
pub(super) fn delete_traces(t: &Tables, table: &str, ids: &[TraceId]) -> String {
    let ids = id_list(ids);
    let also = if table == "links_local" {
        format!(" OR source_trace_id IN {ids}")
    } else {
        String::new()
    };
    format!(
        "ALTER TABLE {} DELETE WHERE trace_id IN {ids}{also}",
        t.name(table)
    )
}

/// Mutations of this node's tables still running.
pub(super) fn pending_mutations(t: &Tables) -> String {
    format!(
        "SELECT count() FROM system.mutations WHERE database = {} AND is_done = 0 \
         FORMAT RowBinary",
        quote(&t.db)
    )
}
