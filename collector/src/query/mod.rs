//! # Query API (query port, DESIGN.md §4)
//!
//! - [`native`]: Spanline's own API (`/v1/traces...`, `/v1/services`, `/health`);
//! - [`stats`]: `GET /v1/stats` (request rate, error rate, latency percentiles);
//! - [`traffic`]: the part of a window that had traffic, which rates are computed over;
//! - [`summary_text`]: the text list of `GET /v1/traces?format=text`;
//! - [`dependencies`]: `GET /v1/dependencies` (the service graph);
//! - [`tail`]: `GET /v1/tail` (a live stream of finished traces), merged across collectors by
//!   `tail_peers`;
//! - [`stream`]: answers written piece by piece, with memory bounded by a chunk;
//! - [`jaeger`]: the Jaeger-compatible APIs, v1 (`/api/...`, interop.md §3.2–3.7) and
//!   `api_v3` (`/api/v3/...`, interop.md §3.8), on shared plumbing;

pub mod dependencies;
pub mod jaeger;
mod linked;
pub mod native;
pub(crate) mod params;
pub mod stats;
pub(crate) mod stream;
pub mod summary_text;
pub mod tail;
mod tail_peers;
pub mod traffic;

use crate::error::Error;
use crate::store::TimeWindow;

/// Longest time window a stats or dependency query may cover: 30 days.
pub const MAX_WINDOW_NS: u64 = 30 * 24 * 3600 * 1_000_000_000;

/// A window ending at `end` (default now) and lasting `length` (default `default_ns`):
/// 400 when it is empty, reversed or longer than [`MAX_WINDOW_NS`].
pub(crate) fn window(
    start: Option<u64>,
    end: Option<u64>,
    length: Option<u64>,
    default_ns: u64,
) -> Result<TimeWindow, Error> {
    let end = end.unwrap_or_else(crate::time::now_unix_nano);
    let start = match (start, length) {
        (Some(s), _) => s,
        (None, l) => end.saturating_sub(l.unwrap_or(default_ns)),
    };
    if start >= end {
        return Err(Error::BadRequest(
            "the time window is empty: start must be before end".into(),
        ));
    }
    if end - start > MAX_WINDOW_NS {
        return Err(Error::BadRequest(
            "the time window is longer than the maximum of 30 days".into(),
        ));
    }
    Ok(TimeWindow {
        start_unix_nano: start,
        end_unix_nano: end,
    })
}
