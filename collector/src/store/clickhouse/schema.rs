//! Creating the schema at start, on every node: every statement of [`sql::schema`] is
//! idempotent (`IF NOT EXISTS`), and `schema_version` records what was applied. A node whose
//! database carries a newer version than [`sql::SCHEMA_VERSION`] is refused (a newer
//! collector wrote it); an older one is brought up to date: the `IF NOT EXISTS` statements
//! add the newer tables, and the tables that materialized views keep are filled from the
//! stored spans once (a view sees only later inserts): `newest_local` from version 4 on,
//! `trace_summary_local` from version 5 on; likewise `trace_duration_local` (version 7,
//! written by the span writer) from the summaries. Each fill is keyed on the recorded
//! version alone, so a database of any older version gets every fill it lacks. Version 6
//! drops the attribute arrays from `spans_local` (and the view `search_mv` that copied them
//! into `search_local`, which the writer now fills itself): [`drop_span_attribute_arrays`].
//! Version 8 adds `search_local`'s attribute key hashes ([`add_attribute_key_hashes`]): rows
//! written before it keep their text keys, from which the column's `DEFAULT` computes them.

use std::time::{Duration, Instant};

use super::http::Node;
use super::rowbinary::Reader;
use super::sql::{self, SCHEMA_VERSION, Tables, quote};
use crate::store::StoreError;

/// Applies the schema on each node (in order: on a cluster the `Distributed` tables need
/// the local tables of their own node only, so nodes are independent).
///
/// # Errors
/// [`StoreError::Unwritable`] when a node is unreachable, [`StoreError::Incompatible`] for
/// a newer schema, [`StoreError::Backend`] when a statement is refused.
pub(super) async fn apply(nodes: &[Node], tables: &Tables) -> Result<(), StoreError> {
    for node in nodes {
        for statement in sql::schema(tables) {
            node.run(&statement, &[], Vec::new()).await?;
        }
        let answer = node
            .run(&sql::schema_version(tables), &[], Vec::new())
            .await?;
        let applied = Reader::new(&answer).u64()?;
        if applied > u64::from(SCHEMA_VERSION) {
            return Err(StoreError::Incompatible {
                path: format!("{} database {}", node.url(), tables.db),
                detail: format!(
                    "schema version {applied} is newer than this collector's \
                     {SCHEMA_VERSION}; run a newer collector"
                ),
            });
        }
        if applied < 4 {
            // Schema 4's `newest_local` on a database with spans: the view fills it only
            // from later inserts. Rows the view adds meanwhile fold with these (max).
            node.run(&sql::backfill_newest(tables), &[], Vec::new())
                .await?;
        }
        if applied < 5 {
            // Schema 5's `trace_summary_local`, likewise (`min`/`max` states: rows the view
            // adds meanwhile fold with these).
            node.run(&sql::backfill_trace_summaries(tables), &[], Vec::new())
                .await?;
        }
        if applied < 6 {
            drop_span_attribute_arrays(node, tables).await?;
        }
        if applied < 7 {
            // Schema 7's `trace_duration_local`: the writer adds rows only for traces it
            // stores spans of from now on. Rows it adds meanwhile hold durations so far of
            // the same traces (reads take each trace's largest).
            node.run(&sql::backfill_trace_durations(tables), &[], Vec::new())
                .await?;
        }
        if applied < 8 {
            add_attribute_key_hashes(node, tables).await?;
        }
        if applied < u64::from(SCHEMA_VERSION) {
            let now = crate::time::now_unix_nano();
            node.run(
                &sql::record_schema_version(tables, SCHEMA_VERSION, now),
                &[],
                Vec::new(),
            )
            .await?;
        }
    }
    Ok(())
}

/// How long [`drop_span_attribute_arrays`] waits for a replica to apply the drop another
/// replica made.
const REPLICA_ALTER_WAIT: Duration = Duration::from_secs(30);

/// Schema 6 on one node: drops the view `search_mv` (before 6 it copied each span's search
/// columns from `spans_local` into `search_local`; the writer now inserts those rows
/// itself), then the columns `attr_keys` and `attr_values` from `spans_local` and, on a
/// cluster, `spans_dist` (attribute searches read `search_local`'s copy, and a whole span
/// takes its attributes from `detail`). Idempotent: only the columns still there are
/// dropped (18.16 has no `DROP COLUMN IF EXISTS`). With replication, a drop made on another
/// replica reaches this one through ZooKeeper: until it has, this node's own drop may be
/// refused, so it retries until the columns are gone or [`REPLICA_ALTER_WAIT`] passed.
///
/// # Errors
/// [`StoreError::Unwritable`] when the node is unreachable, [`StoreError::Backend`] when a
/// drop is refused and the columns stay.
async fn drop_span_attribute_arrays(node: &Node, tables: &Tables) -> Result<(), StoreError> {
    node.run(&drop_search_view(tables), &[], Vec::new()).await?;
    for table in ["spans_local", "spans_dist"] {
        alter_until_done(node, &span_attribute_columns(tables, table), |present| {
            (!present.is_empty()).then(|| drop_columns(tables, table, present))
        })
        .await?;
    }
    Ok(())
}

/// Schema 8 on one node: adds `search_local`'s (and on a cluster `search_dist`'s) column of
/// attribute key hashes (`ddl.rs`'s `ATTR_KEY_HASHES`) where it is missing. Idempotent (18.16
/// has no `ADD COLUMN IF NOT EXISTS`); with replication, retried as
/// [`drop_span_attribute_arrays`] is.
///
/// # Errors
/// As [`drop_span_attribute_arrays`].
async fn add_attribute_key_hashes(node: &Node, tables: &Tables) -> Result<(), StoreError> {
    let search_tables: &[&str] = if tables.cluster.is_some() {
        &["search_local", "search_dist"]
    } else {
        &["search_local"]
    };
    for table in search_tables {
        alter_until_done(node, &attribute_key_hash_column(tables, table), |present| {
            present
                .is_empty()
                .then(|| sql::add_attribute_key_hashes(tables, table))
        })
        .await?;
    }
    Ok(())
}

/// Runs `columns` (a query answering column names, `RowBinary`) and the `ALTER` that
/// `alter` makes of its answer, until `alter` has none to make (done) or one was accepted.
/// A refusal is retried until [`REPLICA_ALTER_WAIT`] passed: with replication, the same
/// change made on another replica may reach this one meanwhile.
async fn alter_until_done(
    node: &Node,
    columns: &str,
    alter: impl Fn(&[String]) -> Option<String>,
) -> Result<(), StoreError> {
    let deadline = Instant::now() + REPLICA_ALTER_WAIT;
    loop {
        let answer = node.run(columns, &[], Vec::new()).await?;
        let present = Reader::new(&answer).rows(|r| r.string())?;
        let Some(statement) = alter(&present) else {
            return Ok(());
        };
        match node.run(&statement, &[], Vec::new()).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Whether this node's `table` has the column `attr_key_hashes` (schema 8): its name, or no
/// row.
pub(super) fn attribute_key_hash_column(t: &Tables, table: &str) -> String {
    format!(
        "SELECT name FROM system.columns WHERE database = {} AND table = {} \
         AND name = 'attr_key_hashes' FORMAT RowBinary",
        quote(&t.db),
        quote(table)
    )
}

/// Drops the view that filled `search_local` before schema 6 (when it exists).
pub(super) fn drop_search_view(t: &Tables) -> String {
    format!("DROP TABLE IF EXISTS `{}`.`search_mv`", t.db)
}

/// Which of `attr_keys`, `attr_values` this node's `table` still has (before schema 6).
pub(super) fn span_attribute_columns(t: &Tables, table: &str) -> String {
    format!(
        "SELECT name FROM system.columns WHERE database = {} AND table = {} \
         AND name IN ('attr_keys', 'attr_values') ORDER BY name FORMAT RowBinary",
        quote(&t.db),
        quote(table)
    )
}

/// Drops `columns` (names the backend chose, not user input) from this node's `table`.
pub(super) fn drop_columns(t: &Tables, table: &str, columns: &[String]) -> String {
    let drops: Vec<String> = columns
        .iter()
        .map(|c| format!("DROP COLUMN `{c}`"))
        .collect();
    format!("ALTER TABLE `{}`.`{table}` {}", t.db, drops.join(", "))
}
