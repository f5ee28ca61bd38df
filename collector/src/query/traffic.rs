//! The part of a time window that had traffic, which request rates are computed over.
//!
//! A rate over the whole window reads wrong for a burst: 200 orders in 9 s, seen through a
//! 15-minute window, is 0.22/s. The traffic span is the start of the first trace that started
//! in the window (of `service`, when given) to the end of the newest one (at most the window's
//! end); rates divide by it, at least [`MIN_TRAFFIC_NS`] (so a lone request is not a huge
//! rate) and at most the window.
//!
//! Cost: one search for the newest trace, one for up to [`crate::store::MAX_SEARCH_LIMIT`]
//! traces; only when the window holds more traces than that, a bisection of at most
//! 16 one-row searches finds the first start (to within 1/65536 of the span
//! left to search, at least 1 ms).

use crate::store::{MAX_SEARCH_LIMIT, SortOrder, SpanStore, StoreError, TimeWindow, TraceQuery};

/// Shortest traffic span a rate is computed over: 1 s.
pub const MIN_TRAFFIC_NS: u64 = 1_000_000_000;
/// Most one-row searches of the bisection.
const BISECTION_STEPS: u32 = 16;

/// The traffic span of `window` ([`None`] without traffic), see the module docs.
///
/// # Errors
/// A storage error of the underlying searches.
pub(crate) async fn traffic_span(
    store: &dyn SpanStore,
    window: TimeWindow,
    service: Option<&str>,
) -> Result<Option<TimeWindow>, StoreError> {
    let query = |start_max: u64, limit: usize| TraceQuery {
        service: service.map(str::to_owned),
        start_time_min_unix_nano: Some(window.start_unix_nano),
        start_time_max_unix_nano: Some(start_max),
        sort: SortOrder::Newest,
        limit,
        ..TraceQuery::default()
    };
    let last_start = window.end_unix_nano.saturating_sub(1);
    let newest = store
        .find_traces(query(last_start, MAX_SEARCH_LIMIT))
        .await?;
    let (Some(first), Some(oldest)) = (newest.first(), newest.last()) else {
        return Ok(None);
    };
    let end = newest
        .iter()
        .map(|t| t.end_time_unix_nano)
        .max()
        .unwrap_or(first.end_time_unix_nano)
        .min(window.end_unix_nano);
    let mut start = oldest.start_time_unix_nano;
    if newest.len() >= MAX_SEARCH_LIMIT {
        // More traces than one search returns: bisect for the first start.
        let (mut lo, mut hi) = (window.start_unix_nano, start);
        let resolution = ((hi - lo) >> BISECTION_STEPS).max(1_000_000);
        while hi - lo > resolution {
            let mid = lo + (hi - lo) / 2;
            if store.find_traces(query(mid, 1)).await?.is_empty() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        start = hi;
    }
    Ok(Some(TimeWindow {
        start_unix_nano: start,
        end_unix_nano: end.max(start),
    }))
}

/// Seconds a rate is computed over: the traffic span clamped to
/// `[MIN_TRAFFIC_NS, window]`, or the window without traffic.
pub(crate) fn rate_window_s(window: TimeWindow, traffic: Option<TimeWindow>) -> f64 {
    let window_ns = window.end_unix_nano - window.start_unix_nano;
    let ns = traffic.map_or(window_ns, |t| {
        (t.end_unix_nano - t.start_unix_nano)
            .max(MIN_TRAFFIC_NS)
            .min(window_ns)
    });
    ns as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::MemoryStore;
    use crate::model::SpanKind;
    use crate::testing::{MS, T0, span, trace_id};

    const S: u64 = 1_000 * MS;

    #[tokio::test]
    async fn the_span_of_a_burst_not_the_window() {
        let store = Arc::new(MemoryStore::new());
        let window = TimeWindow {
            start_unix_nano: T0,
            end_unix_nano: T0 + 900 * S,
        };
        assert_eq!(
            traffic_span(store.as_ref(), window, None).await.unwrap(),
            None
        );
        assert_eq!(rate_window_s(window, None), 900.0);
        // Nine requests, one per second, from 100 s into the window.
        let spans = (0..9u8)
            .map(|i| {
                let at = 100_000.0 + f64::from(i) * 1_000.0;
                span(
                    trace_id(i + 1),
                    1,
                    None,
                    "api",
                    "GET /",
                    SpanKind::Server,
                    at,
                    500.0,
                )
            })
            .collect();
        store.write_spans(spans).await.unwrap();
        let traffic = traffic_span(store.as_ref(), window, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(traffic.start_unix_nano, T0 + 100 * S);
        assert_eq!(traffic.end_unix_nano, T0 + 108 * S + 500 * MS);
        assert_eq!(rate_window_s(window, Some(traffic)), 8.5);
        assert_eq!(
            traffic_span(store.as_ref(), window, Some("other"))
                .await
                .unwrap(),
            None
        );
        let lone = TimeWindow {
            start_unix_nano: T0 + 100 * S,
            end_unix_nano: T0 + 100 * S + 1,
        };
        assert_eq!(rate_window_s(window, Some(lone)), 1.0);
    }

    #[tokio::test]
    async fn bisection_past_one_search_page() {
        let store = Arc::new(MemoryStore::new());
        let n = MAX_SEARCH_LIMIT + 10;
        let spans = (0..n)
            .map(|i| {
                let mut s = span(
                    trace_id(1),
                    1,
                    None,
                    "api",
                    "GET /",
                    SpanKind::Server,
                    0.0,
                    1.0,
                );
                let mut id = [0x4b; 16];
                id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
                s.trace_id = crate::model::TraceId(id);
                s.start_time_unix_nano = T0 + 10 * S + i as u64 * 10 * MS;
                s.end_time_unix_nano = s.start_time_unix_nano + MS;
                s
            })
            .collect();
        store.write_spans(spans).await.unwrap();
        let window = TimeWindow {
            start_unix_nano: T0,
            end_unix_nano: T0 + 900 * S,
        };
        let traffic = traffic_span(store.as_ref(), window, None)
            .await
            .unwrap()
            .unwrap();
        let first = T0 + 10 * S;
        assert!(
            traffic.start_unix_nano >= first && traffic.start_unix_nano - first <= 20 * MS,
            "{traffic:?}"
        );
        assert_eq!(traffic.end_unix_nano, first + (n as u64 - 1) * 10 * MS + MS);
    }
}
