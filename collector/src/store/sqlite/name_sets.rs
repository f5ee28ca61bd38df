//! # Trace name sets (schema version 18)
//!
//! A trace's summary names its root span (service and operation) and lists its services and
//! span names. Until schema 17 a `traces` row held them as four columns, the two lists as JSON
//! text: about 260 bytes a trace of the ingest benchmark's load (10 span names), two thirds of
//! the row. Traces of one kind of request share them, so since schema 18 a row holds one value,
//! `traces.names`: the id of the set in `trace_name_sets` (one row per distinct set, the set as
//! the JSON text `[root_service, root_operation, [services], [operations]]`, unique), or, once
//! the dictionary holds [`MAX_NAME_SETS`] sets, that text itself (a load whose traces rarely
//! share their names keeps today's row size, and the dictionary stays bounded). The benchmark's
//! load has 8 sets; the demo's a few dozen.
//!
//! Reads take the text with a correlated primary-key read (`names_text!`, part of every
//! summary's columns); the writer resolves each distinct set of a flush once ([`NameSets`]),
//! with no memory across flushes (a rolled-back group leaves no id behind). Sets are never
//! deleted, like `operation_ids`. The migration (`migrate_v18.rs`) writes the sets with
//! SQLite's `json_array`, whose text is the one this module writes for the same names (a
//! string escaped differently would only make a second set with the same names).

use std::collections::HashMap;

use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension};

use super::{backend, map_sql};
use crate::store::{StoreError, TraceSummary};

/// Most rows of `trace_name_sets`: past it, new sets are stored in their `traces` rows.
pub(super) const MAX_NAME_SETS: i64 = 16_384;

/// The text of a `traces` row's name set, as an SQL expression over `traces t` (a string
/// literal, for `concat!`).
macro_rules! names_text {
    () => {
        "CASE WHEN typeof(t.names) = 'integer' \
         THEN (SELECT n.names FROM trace_name_sets n WHERE n.id = t.names) ELSE t.names END"
    };
}
pub(super) use names_text;

/// The names of a summary: root service, root operation, services, operations.
pub(super) type Names = (Option<String>, Option<String>, Vec<String>, Vec<String>);

/// The set text of `summary`'s names.
fn encode(summary: &TraceSummary) -> Result<String, StoreError> {
    serde_json::to_string(&(
        &summary.root_service,
        &summary.root_operation,
        &summary.services,
        &summary.operations,
    ))
    .map_err(backend)
}

/// The names in a set's text.
///
/// # Errors
/// The JSON error of a text that is not a set.
pub(super) fn decode(text: &str) -> serde_json::Result<Names> {
    serde_json::from_str(text)
}

/// What `traces.names` holds: a set's id, or (the dictionary full) its text.
#[derive(Debug, Clone)]
pub(super) enum NamesValue {
    Id(i64),
    Text(String),
}

impl ToSql for NamesValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Self::Id(id) => ToSqlOutput::Borrowed(ValueRef::Integer(*id)),
            Self::Text(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
        })
    }
}

/// The sets one flush resolved, by text.
#[derive(Default)]
pub(super) struct NameSets {
    resolved: HashMap<String, NamesValue>,
}

impl NameSets {
    /// The `traces.names` value of `summary`, its set added to `trace_name_sets` when new and
    /// the dictionary has room, inside the caller's transaction.
    ///
    /// # Errors
    /// [`StoreError`] from SQLite.
    pub(super) fn value(
        &mut self,
        conn: &Connection,
        summary: &TraceSummary,
    ) -> Result<NamesValue, StoreError> {
        let text = encode(summary)?;
        if let Some(value) = self.resolved.get(&text) {
            return Ok(value.clone());
        }
        let found: Option<i64> = conn
            .prepare_cached("SELECT id FROM trace_name_sets WHERE names = ?1")
            .map_err(map_sql)?
            .query_row([&text], |r| r.get(0))
            .optional()
            .map_err(map_sql)?;
        let value = match found {
            Some(id) => NamesValue::Id(id),
            None => {
                let sets: i64 = conn
                    .prepare_cached("SELECT coalesce(max(id), 0) FROM trace_name_sets")
                    .map_err(map_sql)?
                    .query_row([], |r| r.get(0))
                    .map_err(map_sql)?;
                if sets < MAX_NAME_SETS {
                    conn.prepare_cached("INSERT INTO trace_name_sets (names) VALUES (?1)")
                        .map_err(map_sql)?
                        .execute([&text])
                        .map_err(map_sql)?;
                    NamesValue::Id(conn.last_insert_rowid())
                } else {
                    NamesValue::Text(text.clone())
                }
            }
        };
        self.resolved.insert(text, value.clone());
        Ok(value)
    }
}
