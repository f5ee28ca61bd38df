//! The current context: the active span and the baggage of the task that is running.
//!
//! Stored in a tokio task-local, so handler code and the traced client find their parent
//! without passing ids by hand. The server middleware sets it for the handler; code that
//! wants a child span to be the parent of further work wraps that work in [`Context::scope`]
//! (or [`Span::scope`](crate::Span::scope)).

use std::future::Future;

use tokio::task::futures::TaskLocalFuture;

use crate::propagation::Baggage;
use crate::span_context::SpanContext;
use crate::tracer::SharedSpan;

tokio::task_local! {
    static CURRENT: Context;
}

/// The active span context and baggage. Cheap to clone (two `Arc`s inside).
#[derive(Clone, Debug, Default)]
pub struct Context {
    span: Option<SpanContext>,
    baggage: Baggage,
    active: Option<SharedSpan>,
}

impl Context {
    /// The context of the running task; an empty context outside any scope.
    pub fn current() -> Context {
        CURRENT.try_with(Context::clone).unwrap_or_default()
    }

    /// Runs `f` with a reference to the current context without cloning it.
    pub fn with_current<R>(f: impl FnOnce(&Context) -> R) -> R {
        let mut f = Some(f);
        let inside = CURRENT.try_with(|cx| f.take().map(|f| f(cx)));
        match (inside, f) {
            (Ok(Some(r)), _) => r,
            // Outside any scope `f` was not called: call it with the empty context.
            (_, Some(f)) => f(&Context::default()),
            // Unreachable: `f` is taken only when it runs.
            (_, None) => unreachable_empty(),
        }
    }

    /// The current span context (the parent of a span started now), without building an
    /// empty context outside any scope.
    #[inline]
    pub(crate) fn current_span_context() -> Option<SpanContext> {
        CURRENT.try_with(|cx| cx.span.clone()).unwrap_or(None)
    }

    /// A context with the given span and baggage.
    pub fn new(span: Option<SpanContext>, baggage: Baggage) -> Context {
        Context {
            span,
            baggage,
            active: None,
        }
    }

    /// This context with `span` as the active span, shared so code inside can annotate it.
    #[must_use]
    pub fn with_active_span(mut self, span: SharedSpan) -> Context {
        self.span = span.with(|s| s.context().clone());
        self.active = Some(span);
        self
    }

    /// The shared active span set by [`with_active_span`](Context::with_active_span).
    pub fn active_span(&self) -> Option<&SharedSpan> {
        self.active.as_ref()
    }

    /// The active span, if any: the parent of spans started in this context.
    pub fn span_context(&self) -> Option<&SpanContext> {
        self.span.as_ref()
    }

    /// The baggage, propagated on outgoing requests.
    pub fn baggage(&self) -> &Baggage {
        &self.baggage
    }

    /// This context with `span` as the active span.
    #[must_use]
    pub fn with_span_context(mut self, span: SpanContext) -> Context {
        self.span = Some(span);
        self.active = None;
        self
    }

    /// This context with `baggage` replacing the baggage.
    #[must_use]
    pub fn with_baggage(mut self, baggage: Baggage) -> Context {
        self.baggage = baggage;
        self
    }

    /// Runs the future `f` with this context as the current one.
    pub fn scope<F: Future>(self, f: F) -> TaskLocalFuture<Context, F> {
        CURRENT.scope(self, f)
    }

    /// Runs the closure `f` with this context as the current one.
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, f)
    }
}

#[cold]
fn unreachable_empty<R>() -> R {
    unreachable!("with_current: closure neither ran nor remained")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{SpanId, TraceFlags, TraceId};

    #[tokio::test]
    async fn scope_sets_and_restores_the_current_context() {
        assert!(Context::current().span_context().is_none());
        let sc = SpanContext {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            trace_flags: TraceFlags::SAMPLED,
            trace_state: Default::default(),
            is_remote: false,
        };
        let cx = Context::default().with_span_context(sc.clone());
        let seen = cx
            .scope(async {
                tokio::task::yield_now().await;
                Context::current().span_context().cloned()
            })
            .await;
        assert_eq!(seen, Some(sc));
        assert_eq!(Context::current().span_context(), None);
    }
}
