//! The SQL function searches call on span blocks (`blocks.rs`): whether one span of a block
//! meets a search's span conditions (the same-span probe of `search.rs`). Registered on every
//! connection that searches ([`register`]).

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Error};

use super::blocks::{Block, BlockSpan};
use super::to_i64;

/// The function's name and its arguments: `spanline_block_has(data, service, name, kind,
/// status, status, min_duration_ns, max_duration_ns)`, each condition `NULL` when absent
/// (two status arguments: a search may ask for a status and for errors at once).
pub(super) const BLOCK_HAS: &str = "spanline_block_has";

/// A search's span conditions, as bound to [`BLOCK_HAS`].
#[derive(Debug, Default)]
struct Conditions<'a> {
    service: Option<&'a str>,
    name: Option<&'a str>,
    kind: Option<i64>,
    status: [Option<i64>; 2],
    min_duration_ns: Option<i64>,
    max_duration_ns: Option<i64>,
}

impl Conditions<'_> {
    /// Whether a span of `block` meets every condition: the service and name are looked up
    /// once (a block that does not name them has no such span), then the spans compared.
    fn met_in(&self, block: &Block) -> bool {
        let service = match self.service {
            Some(s) => match block.index_of(s) {
                Some(i) => Some(i),
                None => return false,
            },
            None => None,
        };
        let name = match self.name {
            Some(n) => match block.index_of(n) {
                Some(i) => Some(i),
                None => return false,
            },
            None => None,
        };
        block.spans.iter().any(|span| {
            service.is_none_or(|i| span.service == i)
                && name.is_none_or(|i| span.name == i)
                && self.met_by(span)
        })
    }

    /// Whether `span` meets the conditions other than service and name.
    fn met_by(&self, span: &BlockSpan) -> bool {
        let duration = to_i64(span.duration_ns);
        self.kind.is_none_or(|k| i64::from(span.kind) == k)
            && self
                .status
                .iter()
                .flatten()
                .all(|&s| i64::from(span.status) == s)
            && self.min_duration_ns.is_none_or(|m| duration >= m)
            && self.max_duration_ns.is_none_or(|m| duration <= m)
    }
}

/// Registers [`BLOCK_HAS`] (and `posting_list::POSTING_HAS`) on `conn`. Errors: SQLite's.
pub(super) fn register(conn: &Connection) -> rusqlite::Result<()> {
    // And the posting-list lookup of the attribute index's conditions (`posting_list.rs`).
    super::posting_list::register(conn)?;
    conn.create_scalar_function(
        BLOCK_HAS,
        8,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        block_has,
    )
}

fn user_error(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::UserFunctionError(Box::new(e))
}

/// [`BLOCK_HAS`]: 1 when a span of the block meets every condition given, else 0.
fn block_has(ctx: &Context<'_>) -> rusqlite::Result<i64> {
    let text = |i: usize| -> rusqlite::Result<Option<&str>> {
        match ctx.get_raw(i) {
            ValueRef::Null => Ok(None),
            v => v.as_str().map(Some).map_err(user_error),
        }
    };
    let int = |i: usize| -> rusqlite::Result<Option<i64>> {
        match ctx.get_raw(i) {
            ValueRef::Null => Ok(None),
            v => v.as_i64().map(Some).map_err(user_error),
        }
    };
    let conditions = Conditions {
        service: text(1)?,
        name: text(2)?,
        kind: int(3)?,
        status: [int(4)?, int(5)?],
        min_duration_ns: int(6)?,
        max_duration_ns: int(7)?,
    };
    let data = ctx.get_raw(0).as_blob().map_err(user_error)?;
    let block = Block::decode(data).map_err(user_error)?;
    Ok(i64::from(conditions.met_in(&block)))
}

#[cfg(test)]
mod tests {
    use rusqlite::types::Value;

    use super::*;
    use crate::store::conformance;
    use crate::store::sqlite::blocks::{self, SpanColumns};

    /// Each condition alone and together: 1 only when one span meets all of them.
    #[test]
    fn a_block_has_a_span_meeting_every_condition() {
        let spans = conformance::demo_trace(9, true, 5.0);
        let columns: Vec<_> = spans.iter().map(|s| SpanColumns::of(s, 0)).collect();
        let data = blocks::encode(&columns, &[], &vec![0; spans.len()]);
        let conn = Connection::open_in_memory().unwrap();
        register(&conn).unwrap();
        let has = |args: [Value; 7]| -> i64 {
            let mut all = vec![Value::Blob(data.clone())];
            all.extend(args);
            conn.query_row(
                &format!("SELECT {BLOCK_HAS}(?, ?, ?, ?, ?, ?, ?, ?)"),
                rusqlite::params_from_iter(all),
                |r| r.get(0),
            )
            .unwrap()
        };
        let text = |s: &str| Some(Value::Text(s.to_owned()));
        let int = |v: i64| Some(Value::Integer(v));
        // (service, name, kind, status, status, min, max), and whether a span meets them.
        let cases: [([Option<Value>; 7], i64); 9] = [
            ([text("payment"), None, None, None, None, None, None], 1),
            ([text("nobody"), None, None, None, None, None, None], 0),
            (
                [
                    text("user"),
                    text("SELECT users"),
                    None,
                    None,
                    None,
                    None,
                    None,
                ],
                1,
            ),
            // A name of another service's span: no span of `user` has it.
            (
                [
                    text("user"),
                    text("POST /payments"),
                    None,
                    None,
                    None,
                    None,
                    None,
                ],
                0,
            ),
            ([text("user"), None, int(2), None, None, None, None], 1),
            ([None, None, None, int(2), int(2), None, None], 1),
            ([text("user"), None, None, int(2), None, None, None], 0),
            ([None, None, None, None, None, int(i64::MAX), None], 0),
            ([None, None, None, None, None, None, int(0)], 0),
        ];
        for (args, want) in cases {
            let args = args.map(|a| a.unwrap_or(Value::Null));
            assert_eq!(has(args.clone()), want, "{args:?}");
        }
    }
}
