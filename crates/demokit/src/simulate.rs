//! Simulated work: database queries and provider calls recorded as child spans with the
//! OpenTelemetry database semantic conventions (`db.system.name`, `db.operation.name`,
//! `db.collection.name`, `db.query.text`).

use std::time::Duration;

use tracekit::{SpanKind, Tracer};

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

/// Runs a simulated query as a CLIENT span named `OPERATION table`, child of the current
/// span, taking about `latency_ms` plus `extra_delay_ms` (injected faults).
pub async fn db_query(tracer: &Tracer, q: DbQuery, latency_ms: u64, extra_delay_ms: u64) {
    let span = tracer
        .span(format!("{} {}", q.operation, q.table))
        .kind(SpanKind::Client)
        .attribute("db.system.name", "postgresql")
        .attribute("db.operation.name", q.operation)
        .attribute("db.collection.name", q.table)
        .attribute("db.query.text", q.query_text)
        .attribute("server.address", "db")
        .start();
    tokio::time::sleep(jittered(latency_ms) + Duration::from_millis(extra_delay_ms)).await;
    span.end();
}
