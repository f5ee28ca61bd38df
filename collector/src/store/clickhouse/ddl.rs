//! The schema's statements for one node: the tables and views (`CREATE … IF NOT EXISTS`, in
//! order), the applied-version record, and the fills that bring a table a materialized view
//! or the writer keeps up to date on a database written before it existed (`schema.rs` runs
//! them). Re-exported by [`super::sql`], where the tables are described; the same 18.16 and
//! current-ClickHouse dialect.

use super::sql::Tables;

/// Schema 8: `search_local`'s attribute keys as `cityHash64` of the key (the writer's
/// `codec::write_search` computes the same hash: `cityhash.rs`), not as text, in the
/// position of a parallel array to `attr_values`. Rows written before schema 8 hold their keys in
/// `attr_keys` and no hashes: the `DEFAULT` computes them when such a row is read or merged,
/// so every row answers the one predicate on the hashes. New rows leave `attr_keys` empty.
/// Why: the key strings were two thirds of the attribute bytes that every insert and merge
/// of `search_local` copies (BENCHMARKS.md §6.14).
pub(super) const ATTR_KEY_HASHES: &str =
    "attr_key_hashes Array(UInt64) DEFAULT arrayMap(k -> cityHash64(k), attr_keys)";

/// The DDL for one node, in order; every statement is idempotent (`IF NOT EXISTS`).
pub(super) fn schema(t: &Tables) -> Vec<String> {
    let db = &t.db;
    let mut ddl = vec![
        format!("CREATE DATABASE IF NOT EXISTS `{db}`"),
        format!(
            "CREATE TABLE IF NOT EXISTS `{db}`.`schema_version` (version UInt32, \
             applied_unix_ns UInt64) ENGINE = TinyLog"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS `{db}`.`spans_local` (received_day Date, \
             received_ns UInt64, trace_id FixedString(16), span_id FixedString(8), \
             parent_span_id FixedString(8), has_parent UInt8, kind UInt8, status UInt8, \
             service String, name String, start_ns UInt64, end_ns UInt64, duration_ns UInt64, \
             http_status Int64, has_http_status UInt8, detail String) ENGINE = {} \
             PARTITION BY received_day ORDER BY (trace_id, start_ns) \
             SETTINGS index_granularity = 1024",
            t.engine("spans_local")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS `{db}`.`search_local` (received_day Date, \
             service String, start_ns UInt64, trace_id FixedString(16), name String, \
             kind UInt8, status UInt8, duration_ns UInt64, attr_keys Array(String), \
             {ATTR_KEY_HASHES}, attr_values Array(String)) ENGINE = {} \
             PARTITION BY received_day \
             ORDER BY (service, start_ns) SETTINGS index_granularity = 8192",
            t.engine("search_local")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS `{db}`.`refusals_local` (received_day Date, \
             received_ns UInt64, trace_id FixedString(16), refused UInt64) ENGINE = {} \
             PARTITION BY received_day ORDER BY trace_id",
            t.engine("refusals_local")
        ),
        // Schema 2: inbound links, keyed (and sharded) by the trace linked to.
        format!(
            "CREATE TABLE IF NOT EXISTS `{db}`.`links_local` (received_day Date, \
             trace_id FixedString(16), source_trace_id FixedString(16)) ENGINE = {} \
             PARTITION BY received_day ORDER BY (trace_id, source_trace_id)",
            t.engine("links_local")
        ),
        // Schema 3: what the collector learns besides spans (store/durable.rs).
        format!(
            "CREATE TABLE IF NOT EXISTS `{db}`.`sampling_decisions_local` (received_day Date, \
             decided_ns UInt64, trace_id FixedString(16), kept UInt8, policies String, \
             finish String) ENGINE = {} PARTITION BY received_day ORDER BY trace_id",
            t.engine("sampling_decisions_local")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS `{db}`.`consumer_groups_local` (destination String, \
             consumer_group String, last_seen_ns UInt64) ENGINE = {} \
             ORDER BY (destination, consumer_group)",
            t.replacing_engine("consumer_groups_local", "last_seen_ns")
        ),
        // Schema 4: the newest span start per service, where newest-first searches start
        // their time windows (search.rs). A hint only: never deleted, never exact.
        format!(
            "CREATE TABLE IF NOT EXISTS `{db}`.`newest_local` (service String, \
             start_ns UInt64) ENGINE = {} ORDER BY service",
            t.replacing_engine("newest_local", "start_ns")
        ),
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS `{db}`.`newest_mv` TO `{db}`.`newest_local` \
             AS SELECT service, max(start_ns) AS start_ns FROM `{db}`.`spans_local` \
             GROUP BY service"
        ),
        // Schema 5: per trace (and received day) its first span start and last span end,
        // what searches rank by (search_sql.rs) instead of aggregating the spans. The column
        // names differ from the source's: 18.16 refuses a view whose alias is one.
        format!(
            "CREATE TABLE IF NOT EXISTS `{db}`.`trace_summary_local` (received_day Date, \
             trace_id FixedString(16), start_state AggregateFunction(min, UInt64), \
             end_state AggregateFunction(max, UInt64)) ENGINE = {} PARTITION BY received_day \
             ORDER BY trace_id SETTINGS index_granularity = 256",
            t.aggregating_engine("trace_summary_local")
        ),
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS `{db}`.`trace_summary_mv` TO \
             `{db}`.`trace_summary_local` AS {}",
            summarize_spans(t)
        ),
        // Schema 7: per trace, each time the writer stores spans of it, its duration so far
        // (insert.rs), ordered by duration: what duration-sorted searches walk (longest.rs).
        format!(
            "CREATE TABLE IF NOT EXISTS `{db}`.`trace_duration_local` (received_day Date, \
             duration_ns UInt64, trace_id FixedString(16)) ENGINE = {} \
             PARTITION BY received_day ORDER BY (duration_ns, trace_id)",
            t.engine("trace_duration_local")
        ),
    ];
    if let Some(cluster) = &t.cluster {
        for (base, key) in [
            ("spans", "trace_id"),
            ("search", "trace_id"),
            ("refusals", "trace_id"),
            ("links", "trace_id"),
            ("sampling_decisions", "trace_id"),
            ("consumer_groups", "destination"),
            ("newest", "service"),
            ("trace_summary", "trace_id"),
            ("trace_duration", "trace_id"),
        ] {
            ddl.push(format!(
                "CREATE TABLE IF NOT EXISTS `{db}`.`{base}_dist` AS `{db}`.`{base}_local` \
                 ENGINE = Distributed(`{cluster}`, `{db}`, `{base}_local`, cityHash64({key}))"
            ));
        }
    }
    ddl
}

/// Adds [`ATTR_KEY_HASHES`] to this node's `table` (`search_local` or `search_dist`), after
/// `attr_keys` (schema 8 on a database written before).
pub(super) fn add_attribute_key_hashes(t: &Tables, table: &str) -> String {
    format!(
        "ALTER TABLE `{}`.`{table}` ADD COLUMN {ATTR_KEY_HASHES} AFTER attr_keys",
        t.db
    )
}

/// The highest applied schema version (0 when none).
pub(super) fn schema_version(t: &Tables) -> String {
    format!(
        "SELECT toUInt64(max(version)) FROM {} FORMAT RowBinary",
        t.name("schema_version")
    )
}

/// Records `version` as applied.
pub(super) fn record_schema_version(t: &Tables, version: u32, now_ns: u64) -> String {
    format!(
        "INSERT INTO {} (version, applied_unix_ns) VALUES ({version}, {now_ns})",
        t.name("schema_version")
    )
}

/// Fills this node's `newest_local` from its spans (schema 4 on a database written before:
/// the materialized view only sees later inserts).
pub(super) fn backfill_newest(t: &Tables) -> String {
    format!(
        "INSERT INTO {} (service, start_ns) SELECT service, max(start_ns) FROM {} \
         GROUP BY service",
        t.name("newest_local"),
        t.name("spans_local")
    )
}

/// The `trace_summary_local` rows of this node's spans: one per trace and received day.
fn summarize_spans(t: &Tables) -> String {
    format!(
        "SELECT received_day, trace_id, minState(start_ns) AS start_state, \
         maxState(end_ns) AS end_state FROM {} GROUP BY received_day, trace_id",
        t.name("spans_local")
    )
}

/// Fills this node's `trace_summary_local` from its spans (schema 5 on a database written
/// before). Rows the view adds meanwhile only repeat a `min`/`max`: folding them is harmless.
pub(super) fn backfill_trace_summaries(t: &Tables) -> String {
    format!(
        "INSERT INTO {} (received_day, trace_id, start_state, end_state) {}",
        t.name("trace_summary_local"),
        summarize_spans(t)
    )
}

/// Fills this node's `trace_duration_local` from its summaries (schema 7 on a database
/// written before; run after [`backfill_trace_summaries`]): one row per trace that has none
/// yet, its duration, in the partition of its latest received day (a second fill adds
/// nothing: repeated rows would make walks longer).
pub(super) fn backfill_trace_durations(t: &Tables) -> String {
    let durations = t.name("trace_duration_local");
    format!(
        "INSERT INTO {durations} (received_day, duration_ns, trace_id) SELECT \
         max(received_day), if(maxMerge(end_state) > minMerge(start_state), \
         maxMerge(end_state) - minMerge(start_state), 0), trace_id FROM {} \
         WHERE trace_id NOT IN (SELECT trace_id FROM {durations}) GROUP BY trace_id",
        t.name("trace_summary_local")
    )
}
