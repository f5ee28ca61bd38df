//! Process-wide counters, served by `GET /health` (and later `GET /metrics`).
//!
//! Counters only grow; they are `Relaxed` atomics (exact totals, no ordering promises between
//! counters).

use std::sync::atomic::{AtomicU64, Ordering};

/// Ingest and storage counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// `POST` requests on the ingest port.
    pub ingest_requests: AtomicU64,
    /// Ingest requests answered with an error status.
    pub ingest_requests_failed: AtomicU64,
    /// Request body bytes read, before decompression.
    pub ingest_bytes: AtomicU64,
    /// Spans decoded from requests (accepted + rejected).
    pub spans_received: AtomicU64,
    /// Spans rejected individually (invalid ids, malformed elements).
    pub spans_rejected: AtomicU64,
    /// Spans newly committed to storage.
    pub spans_stored: AtomicU64,
    /// Spans ignored because the same `(trace_id, span_id, kind)` was already stored.
    pub spans_duplicate: AtomicU64,
}

impl Metrics {
    /// The counters as a JSON object (name → count).
    pub fn snapshot(&self) -> serde_json::Map<String, serde_json::Value> {
        let get = |c: &AtomicU64| serde_json::Value::from(c.load(Ordering::Relaxed));
        [
            ("ingest_requests", get(&self.ingest_requests)),
            ("ingest_requests_failed", get(&self.ingest_requests_failed)),
            ("ingest_bytes", get(&self.ingest_bytes)),
            ("spans_received", get(&self.spans_received)),
            ("spans_rejected", get(&self.spans_rejected)),
            ("spans_stored", get(&self.spans_stored)),
            ("spans_duplicate", get(&self.spans_duplicate)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}
