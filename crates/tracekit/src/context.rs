//! The current context: the current span and the baggage of the task that is running.
//!
//! Stored in a tokio task-local, so handler code and the traced client find their parent
//! without passing ids by hand. There is one notion of the current span: the live span of
//! this process whose scope the code runs in ([`current_span`]); new spans are its
//! children. The server middleware makes the SERVER span current for the handler; code that
//! wants a child span to be the parent of further work runs that work in the child's scope
//! ([`Span::scope`](crate::Span::scope), [`SharedSpan::scope`]). A context built from an
//! extracted remote parent ([`Context::new`]) has a parent for new spans but no current
//! span: that span lives in another process.

use std::future::Future;

use tokio::task::futures::TaskLocalFuture;

use crate::propagation::Baggage;
use crate::span::SharedSpan;
use crate::span_context::SpanContext;

tokio::task_local! {
    static CURRENT: Context;
}

/// The current span and baggage. Cheap to clone (`Arc`s inside).
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// The parent of spans started now: the current span's context, or a remote parent.
    /// Kept beside `active` so starting a span reads it without taking the span's lock.
    span: Option<SpanContext>,
    baggage: Baggage,
    /// The current span, when it lives in this process.
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

    /// A context whose new spans are children of `remote_parent` (a span of another
    /// process, e.g. extracted from `traceparent`; `None` starts a new trace), with `baggage`.
    /// It has no current span.
    pub fn new(remote_parent: Option<SpanContext>, baggage: Baggage) -> Context {
        Context {
            span: remote_parent,
            baggage,
            active: None,
        }
    }

    /// This context with `span` as the current span: new spans are its children and
    /// [`current_span`] returns it. Keeps the baggage.
    #[must_use]
    pub fn with_span(mut self, span: SharedSpan) -> Context {
        self.span = span.with(|s| s.context().clone());
        self.active = Some(span);
        self
    }

    /// The current span, if it lives in this process.
    pub fn active_span(&self) -> Option<&SharedSpan> {
        self.active.as_ref()
    }

    /// The parent of spans started in this context: the current span's context, or the
    /// remote parent of [`Context::new`].
    pub fn span_context(&self) -> Option<&SpanContext> {
        self.span.as_ref()
    }

    /// The baggage, propagated on outgoing requests.
    pub fn baggage(&self) -> &Baggage {
        &self.baggage
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

/// The current span (see the module docs), if any, so code can add attributes
/// (`app.order.id`) or record an error on it: in a handler, the SERVER span the middleware
/// started; inside [`Span::scope`](crate::Span::scope), that span.
pub fn current_span() -> Option<SharedSpan> {
    Context::with_current(|cx| cx.active_span().cloned())
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
        let cx = Context::new(Some(sc.clone()), Baggage::default());
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
