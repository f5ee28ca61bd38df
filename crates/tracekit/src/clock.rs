//! The span clock: wall-clock unix nanoseconds without a system call per reading.
//!
//! A span reads the clock twice. `SystemTime::now` costs 40-60 ns on the project's VMs
//! (`clock_gettime` through the vDSO), which alone would spend most of the 100 ns budget
//! of a sampled span (DESIGN.md §6). This clock reads the CPU's time-stamp counter instead
//! ([`fastant`], the TiKV/fastrace clock: about half the cost, falling back to
//! `SystemTime` where there is no stable TSC) and converts it to unix time through a
//! per-thread anchor, a (`SystemTime`, TSC) pair taken at most [`REANCHOR`] ago.
//!
//! Accuracy: a start time is within the TSC calibration error times [`REANCHOR`] of
//! `SystemTime::now` (about 60 ppm × 50 ms = 3 µs measured on the project's VM), and a
//! wall-clock step is picked up within [`REANCHOR`]. A span's end is its start plus the
//! TSC interval (monotonic, so `end >= start` always), except for spans longer than
//! [`LONG_SPAN`], whose end is converted through the anchor like a start so calibration
//! error cannot accumulate.

use std::cell::Cell;
use std::time::Duration;

use fastant::{Anchor, Instant};

/// How long a thread converts through one anchor before taking a fresh one (about 60 ns).
const REANCHOR: Duration = Duration::from_millis(50);

/// Spans at least this long take their end from the anchor rather than start + interval.
const LONG_SPAN: Duration = Duration::from_secs(1);

thread_local! {
    /// This thread's anchor and the instant it expires.
    static ANCHOR: Cell<Option<(Anchor, Instant)>> = const { Cell::new(None) };
}

/// A clock reading: the unix time and the TSC instant it was taken at.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stamp {
    at: Instant,
    unix_nano: u64,
}

impl Stamp {
    /// The unix time of this reading, nanoseconds.
    #[inline]
    pub(crate) fn unix_nano(self) -> u64 {
        self.unix_nano
    }

    /// The unix time, nanoseconds, of a reading taken now, at least this stamp's.
    #[inline]
    pub(crate) fn unix_nano_now(self) -> u64 {
        let end = Instant::now();
        let elapsed = end.saturating_duration_since(self.at);
        if elapsed < LONG_SPAN {
            // Below a second the cast cannot truncate.
            self.unix_nano.saturating_add(elapsed.as_nanos() as u64)
        } else {
            to_unix(end).max(self.unix_nano)
        }
    }
}

/// Reads the clock.
#[inline]
pub(crate) fn now() -> Stamp {
    let at = Instant::now();
    Stamp {
        at,
        unix_nano: to_unix(at),
    }
}

/// Unix nanoseconds for `at`, through this thread's anchor (refreshed when stale).
#[inline]
fn to_unix(at: Instant) -> u64 {
    ANCHOR.with(|cell| {
        let anchor = match cell.get() {
            Some((anchor, expires)) if at < expires => anchor,
            _ => reanchor(cell, at),
        };
        at.as_unix_nanos(&anchor)
    })
}

#[cold]
#[inline(never)]
fn reanchor(cell: &Cell<Option<(Anchor, Instant)>>, at: Instant) -> Anchor {
    let anchor = Anchor::new();
    let expires = at.checked_add(REANCHOR).unwrap_or(at);
    cell.set(Some((anchor, expires)));
    anchor
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::now_unix_nano;

    #[test]
    fn readings_track_the_system_clock() {
        for _ in 0..5 {
            let before = now_unix_nano();
            let stamp = now();
            let after = now_unix_nano();
            // A few microseconds of calibration error at most, plus scheduling noise.
            let slack = 2_000_000;
            assert!(stamp.unix_nano() + slack >= before, "{stamp:?} vs {before}");
            assert!(stamp.unix_nano() <= after + slack, "{stamp:?} vs {after}");
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    #[test]
    fn an_end_is_never_before_its_start_and_measures_the_interval() {
        let start = now();
        assert!(start.unix_nano_now() >= start.unix_nano());
        std::thread::sleep(Duration::from_millis(20));
        let end = start.unix_nano_now();
        let d = end - start.unix_nano();
        assert!((19_000_000..1_000_000_000).contains(&d), "{d}");
    }
}
