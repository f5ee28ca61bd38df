//! [`SharedSpan`]: a span shared between the code that started it and the code running in
//! its scope.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

use tokio::task::futures::TaskLocalFuture;

use crate::context::Context;
use crate::span::{KeyValue, Span, Value};

/// A span shared between the code that started it and the code running inside it, so a
/// handler can annotate the SERVER span the middleware started
/// ([`current_span`](crate::current_span)).
/// Cheap to clone; every method is a no-op once the owner has ended the span.
#[derive(Clone, Debug)]
pub struct SharedSpan(Arc<std::sync::Mutex<Option<Span>>>);

impl SharedSpan {
    /// Shares `span`.
    pub fn new(span: Span) -> SharedSpan {
        SharedSpan(Arc::new(std::sync::Mutex::new(Some(span))))
    }

    /// Runs `f` on the span if it has not ended yet.
    pub fn with<R>(&self, f: impl FnOnce(&mut Span) -> R) -> Option<R> {
        // A poisoned lock only means another holder panicked mid-update; the span data is
        // still usable.
        let mut guard = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.as_mut().map(f)
    }

    /// Takes the span out (to end it); later calls to [`with`](SharedSpan::with) do nothing.
    pub fn take(&self) -> Option<Span> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Sets an attribute on the span.
    pub fn set_attribute(&self, key: impl Into<Cow<'static, str>>, value: impl Into<Value>) {
        self.with(|s| s.set_attribute(key, value));
    }

    /// Records a failure on the span (see [`Span::record_exception`]).
    pub fn record_exception(
        &self,
        exception_type: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) {
        self.with(|s| s.record_exception(exception_type, message));
    }

    /// Adds an event to the span.
    pub fn add_event(&self, name: impl Into<Cow<'static, str>>, attributes: Vec<KeyValue>) {
        self.with(|s| s.add_event(name, attributes));
    }

    /// Runs `f` with this span as the current span (see [`Span::scope`]); the span stays
    /// open afterwards. Keeps the current baggage.
    pub fn scope<F: Future>(&self, f: F) -> TaskLocalFuture<Context, F> {
        Context::current().with_span(self.clone()).scope(f)
    }

    /// Ends the span now; later calls do nothing.
    pub fn end(&self) {
        drop(self.take());
    }
}
