//! `GET /v1/stats`: request rate, error rate and latency percentiles per service and per
//! (service, operation), from the SERVER and CONSUMER spans that started in the window.
//!
//! Parameters: `window` (a duration, default `15m`, at most 30 days), `end_time` (unix
//! seconds, default now), `service` (optional: only that service).
//!
//! ```json
//! {"window_s": 900, "start_time_unix_nano": ..., "end_time_unix_nano": ...,
//!  "rate_window_s": 8.5, "traffic_start_unix_nano": ..., "traffic_end_unix_nano": ...,
//!  "services": [{"service", "request_count", "error_count", "error_rate", "rate_per_s",
//!                "p50_ns", "p95_ns", "p99_ns"}],
//!  "operations": [{"service", "operation", ...the same fields}]}
//! ```
//!
//! `error_rate` is errors / requests (0 without requests); `rate_per_s` is requests /
//! `rate_window_s`, the seconds of the window that had traffic ([`super::traffic`]: from the
//! first trace's start to the newest one's end, at least 1 s; the whole window without
//! traffic, when `traffic_*` are null); percentiles are nearest-rank over the exact durations. Rows are sorted by service
//! (then operation).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::params::{Pairs, Param, pairs};
use crate::AppState;
use crate::error::Error;
use crate::store::OperationSamples;

/// Default window: 15 minutes.
pub const DEFAULT_WINDOW_NS: u64 = 15 * 60 * 1_000_000_000;

/// `GET /v1/stats`.
pub(crate) async fn get_stats(
    State(state): State<AppState>,
    query: Pairs,
) -> Result<Response, Error> {
    let params = pairs(query)?;
    let (mut length, mut end, mut service) = (None, None, None);
    for (key, value) in params {
        let p = Param::new(&key, &value);
        match key.as_str() {
            "window" if !value.is_empty() => {
                length = Some(
                    Some(p.duration_ns("15m")?)
                        .filter(|n| *n > 0)
                        .ok_or_else(|| p.bad("a duration such as 15m"))?,
                );
            }
            "end_time" if !value.is_empty() => {
                end = Some(p.unix_seconds()?);
            }
            "service" if !value.is_empty() => service = Some(value.clone()),
            _ => {}
        }
    }
    let window = super::window(None, end, length, DEFAULT_WINDOW_NS)?;
    let traffic =
        super::traffic::traffic_span(state.store.as_ref(), window, service.as_deref()).await?;
    let samples = state.store.operation_samples(window, service).await?;
    let window_s = (window.end_unix_nano - window.start_unix_nano) as f64 / 1e9;
    let rate_window_s = super::traffic::rate_window_s(window, traffic);
    let operations: Vec<Value> = samples
        .iter()
        .map(|s| {
            let mut v = stats_json(&s.durations_ns, s.error_count, rate_window_s);
            v["service"] = json!(s.service);
            v["operation"] = json!(s.operation);
            v
        })
        .collect();
    let services: Vec<Value> = by_service(&samples)
        .into_iter()
        .map(|(service, durations, errors)| {
            let mut v = stats_json(&durations, errors, rate_window_s);
            v["service"] = json!(service);
            v
        })
        .collect();
    Ok(axum::Json(json!({
        "window_s": window_s,
        "start_time_unix_nano": window.start_unix_nano,
        "end_time_unix_nano": window.end_unix_nano,
        "rate_window_s": rate_window_s,
        "traffic_start_unix_nano": traffic.map(|t| t.start_unix_nano),
        "traffic_end_unix_nano": traffic.map(|t| t.end_unix_nano),
        "services": services,
        "operations": operations,
    }))
    .into_response())
}

/// Merges the per-operation samples (sorted by service) into per-service ones.
fn by_service(samples: &[OperationSamples]) -> Vec<(String, Vec<u64>, u64)> {
    let mut out: Vec<(String, Vec<u64>, u64)> = Vec::new();
    for s in samples {
        match out.last_mut() {
            Some(last) if last.0 == s.service => {
                last.1.extend_from_slice(&s.durations_ns);
                last.2 += s.error_count;
            }
            _ => out.push((s.service.clone(), s.durations_ns.clone(), s.error_count)),
        }
    }
    for entry in &mut out {
        entry.1.sort_unstable();
    }
    out
}

fn stats_json(sorted: &[u64], errors: u64, rate_window_s: f64) -> Value {
    let count = sorted.len() as u64;
    json!({
        "request_count": count,
        "error_count": errors,
        "error_rate": if count == 0 { 0.0 } else { errors as f64 / count as f64 },
        "rate_per_s": if rate_window_s > 0.0 { count as f64 / rate_window_s } else { 0.0 },
        "p50_ns": percentile(sorted, 50),
        "p95_ns": percentile(sorted, 95),
        "p99_ns": percentile(sorted, 99),
    })
}

/// Nearest-rank percentile of sorted values (0 when empty).
pub fn percentile(sorted: &[u64], p: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let n = sorted.len() as u64;
    let rank = (p * n).div_ceil(100).clamp(1, n);
    sorted[usize::try_from(rank - 1).unwrap_or(0)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), 50);
        assert_eq!(percentile(&v, 95), 95);
        assert_eq!(percentile(&v, 99), 99);
        assert_eq!(percentile(&[7], 99), 7);
        assert_eq!(percentile(&[], 50), 0);
        assert_eq!(percentile(&[1, 2, 3, 4], 50), 2);
    }
}
