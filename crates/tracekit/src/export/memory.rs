//! [`InMemoryExporter`]: keeps finished spans in memory so tests can assert on them.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::export::{ExportError, ExportOutcome, FlushError, SpanExporter, SpanProcessor};
use crate::span::SpanData;

/// Records spans in memory; clones share the same storage.
///
/// It is both a [`SpanExporter`] (put it behind a
/// [`BatchSpanProcessor`](crate::export::BatchSpanProcessor) to test the real pipeline,
/// then [`wait_for`](InMemoryExporter::wait_for) the spans) and a [`SpanProcessor`] that
/// records synchronously in `on_end`, so a test can assert right after the span ends.
/// Its `force_flush` and `shutdown` do nothing: spans stay readable and recording continues.
///
/// # Examples
/// ```
/// use tracekit::export::InMemoryExporter;
///
/// let exporter = InMemoryExporter::default();
/// let handle = exporter.clone(); // give one clone to the tracer, keep one
/// assert!(handle.finished_spans().is_empty());
/// ```
#[derive(Clone, Debug, Default)]
pub struct InMemoryExporter {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    spans: Mutex<Vec<SpanData>>,
    added: Condvar,
}

impl InMemoryExporter {
    /// A new, empty exporter.
    pub fn new() -> InMemoryExporter {
        InMemoryExporter::default()
    }

    /// A copy of every span recorded so far, in the order received.
    pub fn finished_spans(&self) -> Vec<SpanData> {
        self.lock().clone()
    }

    /// Forgets every recorded span.
    pub fn reset(&self) {
        self.lock().clear();
    }

    /// Waits until at least `n` spans are recorded or `timeout` passes, and returns the
    /// spans recorded by then (fewer than `n` on timeout: assert on the length).
    ///
    /// Blocks the calling thread: do not call it from a single-threaded runtime whose own
    /// tasks are supposed to end the spans.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<SpanData> {
        let deadline = Instant::now().checked_add(timeout);
        let mut spans = self.lock();
        while spans.len() < n {
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                break;
            }
            spans = match self.inner.added.wait_timeout(spans, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        spans.clone()
    }

    fn record(&self, batch: impl IntoIterator<Item = SpanData>) {
        self.lock().extend(batch);
        self.inner.added.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, Vec<SpanData>> {
        self.inner
            .spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl SpanExporter for InMemoryExporter {
    fn export(
        &mut self,
        batch: &[Box<SpanData>],
    ) -> impl Future<Output = Result<ExportOutcome, ExportError>> + Send {
        self.record(batch.iter().map(|s| SpanData::clone(s)));
        std::future::ready(Ok(ExportOutcome::Accepted))
    }
}

impl SpanProcessor for InMemoryExporter {
    fn on_end(&self, span: Box<SpanData>) {
        self.record([*span]);
    }

    fn force_flush(&self, _timeout: Duration) -> Result<(), FlushError> {
        Ok(())
    }

    fn shutdown(&self, _timeout: Duration) -> Result<(), FlushError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::id::{SpanId, TraceFlags, TraceId};

    fn span(name: &'static str) -> SpanData {
        SpanData {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            trace_flags: TraceFlags::SAMPLED,
            name: Cow::Borrowed(name),
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            ..SpanData::default()
        }
    }

    #[test]
    fn processor_records_synchronously_and_clones_share_storage() {
        let exporter = InMemoryExporter::new();
        let clone = exporter.clone();
        clone.on_end(Box::new(span("a")));
        clone.on_end(Box::new(span("b")));
        let names: Vec<_> = exporter
            .finished_spans()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(clone.shutdown(Duration::ZERO), Ok(()));
        exporter.reset();
        assert!(clone.finished_spans().is_empty());
    }

    #[tokio::test]
    async fn exporter_records_batches() {
        let mut exporter = InMemoryExporter::new();
        let outcome = exporter
            .export(&[Box::new(span("x")), Box::new(span("y"))])
            .await;
        assert_eq!(outcome, Ok(ExportOutcome::Accepted));
        assert_eq!(exporter.finished_spans().len(), 2);
    }

    #[test]
    fn wait_for_returns_when_spans_arrive_or_at_the_deadline() {
        let exporter = InMemoryExporter::new();
        let writer = exporter.clone();
        let t = std::thread::spawn(move || {
            for _ in 0..3 {
                writer.on_end(Box::new(span("t")));
            }
        });
        let got = exporter.wait_for(3, Duration::from_secs(10));
        assert_eq!(got.len(), 3);
        t.join().unwrap();

        let start = Instant::now();
        let got = exporter.wait_for(4, Duration::from_millis(50));
        assert_eq!(got.len(), 3);
        assert!(start.elapsed() >= Duration::from_millis(50));
    }
}
