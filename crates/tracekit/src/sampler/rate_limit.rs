//! A lock-free token bucket, in its GCRA form (the generic cell rate algorithm, ITU-T
//! I.371): one atomic "theoretical arrival time" instead of a balance and a refill stamp,
//! so taking a token is one clock read and one compare-and-swap.
//!
//! Semantics are Jaeger's client rate limiter (`utils.RateLimiter`): credits accrue at
//! `rate` per second up to a balance of `max(rate, 1)`, the bucket starts full, and each
//! sampled trace spends one credit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// A shared token bucket: clones spend from the same credits. Equal when the rates are.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    inner: Arc<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// The configured rate, credits per second.
    rate_per_s: f64,
    /// Nanoseconds between two credits (`u64::MAX` for rate 0: never).
    interval_ns: u64,
    /// How far ahead of now the arrival time may run: `(burst - 1) * interval_ns`.
    tolerance_ns: u64,
    /// The theoretical arrival time of the next credit, ns since `epoch`.
    tat_ns: AtomicU64,
    epoch: Instant,
}

impl PartialEq for RateLimiter {
    fn eq(&self, other: &Self) -> bool {
        self.inner.rate_per_s == other.inner.rate_per_s
    }
}

impl RateLimiter {
    /// A bucket refilled at `rate_per_s` credits per second, holding at most
    /// `max(rate_per_s, 1)`; negative or NaN rates count as 0 (nothing passes).
    pub fn new(rate_per_s: f64) -> RateLimiter {
        let rate_per_s = if rate_per_s.is_nan() {
            0.0
        } else {
            rate_per_s.max(0.0)
        };
        let (interval_ns, tolerance_ns) = if rate_per_s > 0.0 {
            let interval = (1e9 / rate_per_s).clamp(1.0, u64::MAX as f64 / 4.0);
            let burst = rate_per_s.max(1.0);
            (interval as u64, ((burst - 1.0) * interval) as u64)
        } else {
            (u64::MAX, 0)
        };
        RateLimiter {
            inner: Arc::new(Bucket {
                rate_per_s,
                interval_ns,
                tolerance_ns,
                tat_ns: AtomicU64::new(0),
                epoch: Instant::now(),
            }),
        }
    }

    /// The configured rate, credits per second.
    pub fn rate_per_s(&self) -> f64 {
        self.inner.rate_per_s
    }

    /// Spends one credit if there is one. Lock-free; never blocks.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        let now_ns = u64::try_from(self.inner.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.try_acquire_at(now_ns)
    }

    /// [`try_acquire`](Self::try_acquire) at `now_ns` nanoseconds after the bucket was made.
    pub(crate) fn try_acquire_at(&self, now_ns: u64) -> bool {
        let b = &*self.inner;
        if b.interval_ns == u64::MAX {
            return false;
        }
        // The bucket starts full: arrival time 0 is `burst` credits in the past.
        let now_ns = now_ns.saturating_add(b.tolerance_ns + b.interval_ns);
        let mut tat = b.tat_ns.load(Relaxed);
        loop {
            let base = tat.max(now_ns);
            if base - now_ns > b.tolerance_ns {
                return false;
            }
            match b
                .tat_ns
                .compare_exchange_weak(tat, base + b.interval_ns, Relaxed, Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => tat = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn passed(l: &RateLimiter, at_ns: u64, tries: usize) -> usize {
        (0..tries).filter(|_| l.try_acquire_at(at_ns)).count()
    }

    #[test]
    fn starts_full_then_refills_at_the_rate() {
        let l = RateLimiter::new(10.0);
        // A full bucket: exactly `burst` = 10 credits at once.
        assert_eq!(passed(&l, 0, 100), 10);
        // Empty: nothing more at the same instant.
        assert_eq!(passed(&l, 0, 5), 0);
        // 100 ms later one credit has accrued; 1 s later, ten.
        assert_eq!(passed(&l, S / 10, 5), 1);
        assert_eq!(passed(&l, S + S / 10, 100), 10);
        // Balance never exceeds the burst, however long the pause.
        assert_eq!(passed(&l, 3600 * S, 100), 10);
    }

    #[test]
    fn steady_rate_over_a_simulated_minute() {
        let l = RateLimiter::new(50.0);
        // Ask 1000 times per second for 60 s: 50/s pass, plus the initial burst.
        let mut n = 0;
        for ms in 0..60_000u64 {
            n += passed(&l, ms * 1_000_000, 1);
        }
        assert!((3_000..=3_051).contains(&n), "{n}");
    }

    #[test]
    fn fractional_and_zero_rates() {
        let half = RateLimiter::new(0.5);
        assert_eq!(passed(&half, 0, 10), 1);
        assert_eq!(passed(&half, S, 10), 0);
        assert_eq!(passed(&half, 2 * S, 10), 1);
        for r in [0.0, -3.0, f64::NAN] {
            let l = RateLimiter::new(r);
            assert_eq!(passed(&l, 10 * S, 10), 0, "{r}");
        }
    }

    #[test]
    fn concurrent_takers_never_overspend() {
        let l = RateLimiter::new(1000.0);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || passed(&l, 0, 1000))
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
        assert_eq!(total, 1000);
    }
}
