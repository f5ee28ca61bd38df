//! # The in-flight body budget
//!
//! One global budget (`COLLECTOR_MAX_INFLIGHT_BYTES`, default
//! [`DEFAULT_MAX_INFLIGHT_BYTES`]) for the request bodies the ingest port holds at once: the
//! raw bytes as they are read and the bytes a gzip body inflates to. Every request takes a
//! [`Reservation`] and grows it before each allocation; when a request would take the total
//! past the budget it is refused at once with 503 and `Retry-After` (which OTLP clients
//! retry), so twelve 59 KiB gzip bodies inflating to 60 MiB each cannot take the process to
//! 700 MB (issue 16 item 3). The reservation is held until the answer, so it also stands for
//! the decoded spans of the request.
//!
//! A request is never refused while it is alone in flight: a single body up to
//! `COLLECTOR_MAX_BODY_BYTES` always gets through, whatever the budget. The memory held by
//! bodies is therefore at most about `max(budget, body limit)`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::Error;

/// Default budget for request bodies in flight: 48 MiB, so the compose collector (128 MiB
/// memory limit) stays within its limit with room for the store and the runtime.
pub const DEFAULT_MAX_INFLIGHT_BYTES: u64 = 48 * 1024 * 1024;

/// The budget shared by every ingest request (see the module docs).
#[derive(Debug)]
pub struct InflightBudget {
    limit_bytes: usize,
    used_bytes: AtomicUsize,
    refused: AtomicU64,
    log: BoundLog,
}

impl InflightBudget {
    /// A budget of `limit_bytes`.
    pub fn new(limit_bytes: usize) -> Self {
        Self {
            limit_bytes,
            used_bytes: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            log: BoundLog::default(),
        }
    }

    /// Bytes reserved right now.
    pub fn used_bytes(&self) -> usize {
        self.used_bytes.load(Ordering::Relaxed)
    }

    /// Requests refused so far because the budget was spent.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// An empty reservation; grow it before allocating.
    pub fn reserve(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: Arc::clone(self),
            held_bytes: 0,
        }
    }
}

/// Bytes one request holds of an [`InflightBudget`]; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<InflightBudget>,
    held_bytes: usize,
}

impl Reservation {
    /// Takes `bytes` more of the budget.
    ///
    /// # Errors
    /// [`Error::Busy`] (503 with `Retry-After`) when that would take the total past the
    /// budget while other requests hold part of it.
    pub fn grow(&mut self, bytes: usize) -> Result<(), Error> {
        let budget = &self.budget;
        let mut current = budget.used_bytes.load(Ordering::Relaxed);
        loop {
            let wanted = current.saturating_add(bytes);
            let alone = current == self.held_bytes;
            if wanted > budget.limit_bytes && !alone {
                budget.refused.fetch_add(1, Ordering::Relaxed);
                budget.log.hit(&format!(
                    "in-flight body budget of {} bytes spent (COLLECTOR_MAX_INFLIGHT_BYTES); \
                     answering 503 with Retry-After",
                    budget.limit_bytes
                ));
                return Err(Error::Busy(
                    "too many request bodies in flight; retry later".into(),
                ));
            }
            match budget.used_bytes.compare_exchange_weak(
                current,
                wanted,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.held_bytes += bytes;
                    return Ok(());
                }
                Err(now) => current = now,
            }
        }
    }

    /// Bytes this reservation holds.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget
            .used_bytes
            .fetch_sub(self.held_bytes, Ordering::AcqRel);
    }
}

/// A log line for a bound that was hit, printed at most once per [`BoundLog::INTERVAL_S`]
/// seconds so a flood of refusals does not flood the log.
#[derive(Debug, Default)]
pub(crate) struct BoundLog {
    last_unix_s: AtomicU64,
    suppressed: AtomicU64,
}

impl BoundLog {
    /// Seconds between two lines of one bound.
    pub(crate) const INTERVAL_S: u64 = 10;

    /// Logs `message` (with the count of lines suppressed since the last one) unless a line
    /// was printed in the last [`Self::INTERVAL_S`] seconds.
    pub(crate) fn hit(&self, message: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_unix_s.load(Ordering::Relaxed);
        if now < last.saturating_add(Self::INTERVAL_S)
            || self
                .last_unix_s
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        if suppressed > 0 {
            eprintln!("collector: {message} ({suppressed} more since the last line)");
        } else {
            eprintln!("collector: {message}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_the_budget_and_give_it_back() {
        let budget = Arc::new(InflightBudget::new(100));
        let mut a = budget.reserve();
        a.grow(60).unwrap();
        let mut b = budget.reserve();
        b.grow(40).unwrap();
        assert!(matches!(b.grow(1), Err(Error::Busy(_))));
        assert_eq!(budget.refused(), 1);
        drop(a);
        b.grow(50).unwrap();
        assert_eq!(budget.used_bytes(), 90);
        drop(b);
        assert_eq!(budget.used_bytes(), 0);
    }

    #[test]
    fn a_request_alone_may_pass_the_budget() {
        let budget = Arc::new(InflightBudget::new(100));
        let mut a = budget.reserve();
        a.grow(80).unwrap();
        a.grow(80).unwrap();
        assert_eq!(a.held_bytes(), 160);
        let mut b = budget.reserve();
        assert!(b.grow(1).is_err());
    }
}
