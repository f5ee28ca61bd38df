//! Simulated work: database queries and provider calls recorded as child spans with the
//! OpenTelemetry database semantic conventions (`db.system.name`, `db.operation.name`,
//! `db.collection.name`, `db.query.text`).
//!
//! Each query's text carries an sqlcommenter comment with the query span's `traceparent`
//! (sqlcommenter specification: `key='url-encoded value'` pairs in one trailing `/*...*/`),
//! so a database's own logs can be joined to the trace.

use std::time::Duration;

use tracekit::propagation::format_traceparent;
use tracekit::{SpanContext, SpanKind, Tracer};

/// A simulated database call.
#[derive(Debug, Clone, Copy)]
pub struct DbQuery {
    /// The operation, e.g. `SELECT` (`db.operation.name`).
    pub operation: &'static str,
    /// The table (`db.collection.name`).
    pub table: &'static str,
    /// The parameterised query text (`db.query.text`).
    pub query_text: &'static str,
}

/// `latency_ms` with ±20 % jitter, so traces look like real ones.
pub fn jittered(latency_ms: u64) -> Duration {
    let ms = latency_ms as f64 * (0.8 + 0.4 * fastrand::f64());
    Duration::from_micros((ms * 1000.0) as u64)
}

/// `query` with an sqlcommenter comment naming `cx` as the `traceparent`:
/// `SELECT 1 /*traceparent='00-<trace-id>-<span-id>-01'*/`. A trailing `;` stays last.
/// (The traceparent's characters need no URL encoding.)
pub fn sqlcommenter(query: &str, cx: &SpanContext) -> String {
    let traceparent = format_traceparent(cx);
    let tp = String::from_utf8_lossy(traceparent.as_bytes());
    match query.strip_suffix(';') {
        Some(q) => format!("{q} /*traceparent='{tp}'*/;"),
        None => format!("{query} /*traceparent='{tp}'*/"),
    }
}

/// Runs a simulated query as a CLIENT span named `OPERATION table`, child of the current
/// span, taking about `latency_ms` plus `extra_delay_ms` (injected faults). Its
/// `db.query.text` carries the span's `traceparent` ([`sqlcommenter`]).
pub async fn db_query(tracer: &Tracer, q: DbQuery, latency_ms: u64, extra_delay_ms: u64) {
    let mut span = tracer
        .span(format!("{} {}", q.operation, q.table))
        .kind(SpanKind::Client)
        .attribute("db.system.name", "postgresql")
        .attribute("db.operation.name", q.operation)
        .attribute("db.collection.name", q.table)
        .attribute("server.address", "db")
        .start();
    if span.is_recording() {
        let text = sqlcommenter(q.query_text, span.context());
        span.set_attribute("db.query.text", text);
    }
    tokio::time::sleep(jittered(latency_ms) + Duration::from_millis(extra_delay_ms)).await;
    span.end();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracekit::{SpanId, TraceFlags, TraceId};

    #[test]
    fn the_comment_names_the_query_span_as_traceparent() {
        let cx = SpanContext {
            trace_id: TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            trace_flags: TraceFlags::SAMPLED,
            trace_state: Default::default(),
            is_remote: false,
        };
        assert_eq!(
            sqlcommenter("SELECT * FROM users WHERE id = $1", &cx),
            "SELECT * FROM users WHERE id = $1 \
             /*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/"
        );
        assert_eq!(
            sqlcommenter("SELECT 1;", &cx),
            "SELECT 1 /*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/;"
        );
    }

    #[tokio::test]
    async fn a_simulated_query_carries_its_own_traceparent() {
        let (telemetry, exporter) = crate::Telemetry::in_memory("user");
        let q = DbQuery {
            operation: "SELECT",
            table: "users",
            query_text: "SELECT 1",
        };
        db_query(&telemetry.tracer, q, 0, 0).await;
        let spans = exporter.finished_spans();
        let Some(tracekit::Value::Str(text)) = spans[0].attribute("db.query.text") else {
            panic!("no db.query.text");
        };
        // The flags are the span's own (sampled, and random for a new trace).
        let expected = format!(
            "SELECT 1 /*traceparent='00-{}-{}-",
            spans[0].trace_id, spans[0].span_id
        );
        assert!(
            text.starts_with(&expected) && text.ends_with("'*/"),
            "{text}"
        );
    }
}
