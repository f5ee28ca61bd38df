//! Creating the schema at start, on every node: every statement of [`sql::schema`] is
//! idempotent (`IF NOT EXISTS`), and `schema_version` records what was applied. A node whose
//! database carries a newer version than [`sql::SCHEMA_VERSION`] is refused (a newer
//! collector wrote it); an older one is brought up to date: the `IF NOT EXISTS` statements
//! add the newer tables, and the tables that materialized views keep are filled from the
//! stored spans once (a view sees only later inserts): `newest_local` from version 4 on,
//! `trace_summary_local` from version 5 on; likewise `trace_duration_local` (version 7,
//! written by the span writer) from the summaries. Each fill is keyed on the recorded
//! version alone, so a database of any older version gets every fill it lacks.

use super::http::Node;
use super::rowbinary::Reader;
use super::sql::{self, SCHEMA_VERSION, Tables};
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
        if applied < 7 {
            // Schema 7's `trace_duration_local`: the writer adds rows only for traces it
            // stores spans of from now on. Rows it adds meanwhile hold durations so far of
            // the same traces (reads take each trace's largest).
            node.run(&sql::backfill_trace_durations(tables), &[], Vec::new())
                .await?;
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
