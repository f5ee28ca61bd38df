//! Starting and ending spans: [`Tracer`], [`SpanBuilder`] and the live [`Span`] handle.
//!
//! A tracer holds the process-wide parts (resource, sampler, processor). It is cheap to
//! clone and is passed through application state: no global singleton. A span that the
//! sampler drops still gets a fresh span id so propagation works, but records nothing:
//! its handle carries only the [`SpanContext`].

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::futures::TaskLocalFuture;

use crate::clock;
use crate::context::Context;
use crate::export::{ExportError, SpanProcessor};
use crate::id::{SpanId, TraceFlags, TraceId};
use crate::pool;
use crate::resource::Resource;
use crate::sampler::Sampler;
use crate::span::{Event, KeyValue, Link, SpanData, SpanKind, Status, Value};
use crate::span_context::SpanContext;

/// Per-span caps (OpenTelemetry SDK §Span limits defaults). Past a cap, items are dropped
/// and counted in the span's `dropped_*_count`.
const MAX_ATTRIBUTES: usize = 128;
const MAX_EVENTS: usize = 128;
const MAX_LINKS: usize = 128;

/// Free attribute slots a recording span starts with (one allocation for the usual case).
const SPARE_ATTRIBUTES: usize = 8;

struct Inner {
    resource: Resource,
    sampler: Sampler,
    processor: Option<Box<dyn SpanProcessor>>,
}

/// Starts spans. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct Tracer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("service", &self.inner.resource.service_name())
            .field("sampler", &self.inner.sampler)
            .field("exporting", &self.inner.processor.is_some())
            .finish()
    }
}

/// Builds a [`Tracer`].
pub struct TracerBuilder {
    resource: Resource,
    sampler: Sampler,
    processor: Option<Box<dyn SpanProcessor>>,
}

impl TracerBuilder {
    /// Sets the sampler (default `parentbased_always_on`).
    #[must_use]
    pub fn with_sampler(mut self, sampler: Sampler) -> Self {
        self.sampler = sampler;
        self
    }

    /// Sets the processor that receives finished sampled spans.
    #[must_use]
    pub fn with_processor(mut self, processor: impl SpanProcessor) -> Self {
        self.processor = Some(Box::new(processor));
        self
    }

    /// Builds the tracer.
    pub fn build(self) -> Tracer {
        Tracer {
            inner: Arc::new(Inner {
                resource: self.resource,
                sampler: self.sampler,
                processor: self.processor,
            }),
        }
    }
}

impl Tracer {
    /// A builder for a tracer describing `resource`.
    pub fn builder(resource: Resource) -> TracerBuilder {
        TracerBuilder {
            resource,
            sampler: Sampler::default(),
            processor: None,
        }
    }

    /// A tracer that records nothing but still propagates context (and passes a caller's
    /// sampled flag on unchanged).
    pub fn noop(service_name: &'static str) -> Tracer {
        Tracer::builder(Resource::new(service_name, None, []))
            .with_sampler(Sampler::parent_based(Sampler::AlwaysOff))
            .build()
    }

    /// The resource this tracer reports.
    pub fn resource(&self) -> &Resource {
        &self.inner.resource
    }

    /// Starts building a span named `name`, by default an INTERNAL child of the current span.
    pub fn span(&self, name: impl Into<Cow<'static, str>>) -> SpanBuilder<'_> {
        SpanBuilder {
            tracer: self,
            name: name.into(),
            kind: SpanKind::Internal,
            parent: Parent::Current,
            attributes: Vec::new(),
            links: Vec::new(),
            start_time_unix_nano: None,
        }
    }

    /// Exports every span ended so far, waiting at most `timeout`.
    ///
    /// # Errors
    /// The processor's [`ExportError`]; `Ok` when there is no processor.
    pub fn force_flush(&self, timeout: Duration) -> Result<(), ExportError> {
        match &self.inner.processor {
            Some(p) => p.force_flush(timeout),
            None => Ok(()),
        }
    }

    /// Flushes and stops the processor, waiting at most `timeout`. Call once at exit.
    ///
    /// # Errors
    /// The processor's [`ExportError`]; `Ok` when there is no processor.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), ExportError> {
        match &self.inner.processor {
            Some(p) => p.shutdown(timeout),
            None => Ok(()),
        }
    }
}

enum Parent {
    Current,
    Explicit(Option<SpanContext>),
}

/// Options for a span about to start. Created by [`Tracer::span`].
#[must_use = "a span builder does nothing until .start()"]
pub struct SpanBuilder<'t> {
    tracer: &'t Tracer,
    name: Cow<'static, str>,
    kind: SpanKind,
    parent: Parent,
    attributes: Vec<KeyValue>,
    links: Vec<Link>,
    start_time_unix_nano: Option<u64>,
}

impl SpanBuilder<'_> {
    /// Sets the span kind (default INTERNAL).
    pub fn kind(mut self, kind: SpanKind) -> Self {
        self.kind = kind;
        self
    }

    /// Uses `parent` as the parent instead of the current span; `None` starts a new trace.
    pub fn parent(mut self, parent: Option<SpanContext>) -> Self {
        self.parent = Parent::Explicit(parent);
        self
    }

    /// Adds an attribute known at start (samplers and readers see it from the beginning).
    pub fn attribute(mut self, key: impl Into<Cow<'static, str>>, value: impl Into<Value>) -> Self {
        self.attributes.push(KeyValue::new(key, value));
        self
    }

    /// Adds a link to another span.
    pub fn link(mut self, link: Link) -> Self {
        self.links.push(link);
        self
    }

    /// Sets the start time, unix nanoseconds (default: now).
    pub fn start_time_unix_nano(mut self, t: u64) -> Self {
        self.start_time_unix_nano = Some(t);
        self
    }

    /// Starts the span.
    ///
    /// A span that is not sampled costs its ids and the sampler's decision: nothing is
    /// allocated and the clock is not read.
    #[inline]
    pub fn start(mut self) -> Span {
        let parent = match std::mem::replace(&mut self.parent, Parent::Current) {
            Parent::Current => Context::current_span_context(),
            Parent::Explicit(p) => p,
        };
        let (trace_id, flags, trace_state, parent_span_id, parent_is_remote) = match &parent {
            Some(p) => (
                p.trace_id,
                p.trace_flags.known(),
                p.trace_state.clone(),
                p.span_id,
                p.is_remote,
            ),
            // A trace we start has a fully random id: set the W3C Level 2 random flag.
            None => (
                TraceId::random(),
                TraceFlags::RANDOM,
                Default::default(),
                SpanId::INVALID,
                false,
            ),
        };
        let inner = &self.tracer.inner;
        let sampled = inner.sampler.should_sample(parent.as_ref(), trace_id);
        // The sampled flag tells downstream services what we decided, even when this
        // tracer has no processor and so records nothing itself.
        let flags = flags.with_sampled(sampled);
        let recording = sampled && inner.processor.is_some();
        let cx = SpanContext {
            trace_id,
            span_id: SpanId::random(),
            trace_flags: flags,
            trace_state,
            is_remote: false,
        };
        if !recording {
            return Span { cx, rec: None };
        }
        let rec = self.record(&cx, parent_span_id, parent_is_remote);
        Span { cx, rec: Some(rec) }
    }

    /// The recording half of [`start`](SpanBuilder::start): fills a recycled record.
    /// Inlined: out of line, the builder (160 bytes) was copied into the call and the
    /// returned record read back through a stalled store-to-load forward.
    #[inline]
    fn record(self, cx: &SpanContext, parent_span_id: SpanId, parent_is_remote: bool) -> Recording {
        // A recycled record (crate::pool): no allocation, and the attribute list keeps
        // the capacity an earlier span gave it.
        let mut data = pool::take();
        let (started, start_time_unix_nano) = match self.start_time_unix_nano {
            Some(t) => (None, t),
            None => {
                let now = clock::now();
                (Some(now), now.unix_nano())
            }
        };
        data.trace_id = cx.trace_id;
        data.span_id = cx.span_id;
        data.parent_span_id = parent_span_id;
        data.parent_is_remote = parent_is_remote;
        data.trace_flags = cx.trace_flags;
        // The trace state is filled in from `cx` when the span ends: no reference-count
        // traffic here.
        data.name = self.name;
        data.kind = self.kind;
        data.start_time_unix_nano = start_time_unix_nano;
        if !self.attributes.is_empty() {
            let mut attributes = self.attributes;
            if attributes.len() > MAX_ATTRIBUTES {
                data.dropped_attributes_count = (attributes.len() - MAX_ATTRIBUTES) as u32;
                attributes.truncate(MAX_ATTRIBUTES);
            }
            data.attributes.append(&mut attributes);
        }
        // Room for the attributes a span typically gets after start, so a fresh record
        // allocates its list once.
        if data.attributes.capacity() - data.attributes.len() < SPARE_ATTRIBUTES {
            data.attributes.reserve(SPARE_ATTRIBUTES);
        }
        if !self.links.is_empty() {
            let mut links = self.links;
            links.truncate(MAX_LINKS);
            data.links = links;
        }
        Recording {
            data,
            tracer: self.tracer.clone(),
            started,
        }
    }
}

struct Recording {
    /// Boxed so a finished span moves to the processor as one pointer.
    data: Box<SpanData>,
    tracer: Tracer,
    /// The clock reading the start time came from; `None` for an explicit start time.
    started: Option<clock::Stamp>,
}

impl Recording {
    /// The index of the attribute named `key`, if it is set.
    #[inline(never)]
    fn position(&self, key: &str) -> Option<usize> {
        self.data
            .attributes
            .iter()
            .position(|kv| same_key(&kv.key, key))
    }

    /// Sets an attribute, replacing one with the same key.
    #[inline]
    fn set_attribute(&mut self, key: Cow<'static, str>, value: impl Into<Value>) {
        match self.position(&key) {
            Some(i) => {
                if let Some(kv) = self.data.attributes.get_mut(i) {
                    kv.value = value.into();
                }
            }
            None => self.append(key, value),
        }
    }

    /// Appends an attribute (counted as dropped past the cap). Inlined into the caller so
    /// the key and value are stored straight into the list's slot: with room known,
    /// `push`'s growth call is dead code. Otherwise rustc builds the 56-byte `KeyValue` on
    /// the stack first, to keep it live across that call, and the copy's mixed store and
    /// load widths stall store-to-load forwarding (a third of the sampled-span time in a
    /// profile).
    #[inline]
    fn append(&mut self, key: Cow<'static, str>, value: impl Into<Value>) {
        let attrs = &mut self.data.attributes;
        if attrs.len() >= MAX_ATTRIBUTES {
            self.data.dropped_attributes_count += 1;
            return;
        }
        let kv = KeyValue {
            key,
            value: value.into(),
        };
        if attrs.len() < attrs.capacity() {
            attrs.push(kv);
        } else {
            push_growing(attrs, kv);
        }
    }
}

/// Appends to a full attribute list (kept out of line: a recycled list rarely is full).
#[cold]
#[inline(never)]
fn push_growing(attrs: &mut Vec<KeyValue>, kv: KeyValue) {
    attrs.reserve(SPARE_ATTRIBUTES);
    attrs.push(kv);
}

/// Key equality with the cheap tests first: different lengths, the same `&'static str`,
/// different last bytes (`key1`/`key2`, `net.peer.port`/`net.peer.name`), then the bytes.
#[inline]
fn same_key(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && (std::ptr::eq(a.as_ptr(), b.as_ptr())
            || (a.as_bytes().last() == b.as_bytes().last() && a.as_bytes() == b.as_bytes()))
}

/// A started span. Ends when [`end`](Span::end) is called or when dropped.
///
/// Every method is a cheap no-op on a span that is not recording (not sampled).
pub struct Span {
    cx: SpanContext,
    rec: Option<Recording>,
}

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Span")
            .field("context", &self.cx)
            .field("recording", &self.rec.is_some())
            .finish()
    }
}

impl Span {
    /// This span's identity, for propagation and for making it a parent.
    pub fn context(&self) -> &SpanContext {
        &self.cx
    }

    /// Whether this span records data (it was sampled and has not ended).
    pub fn is_recording(&self) -> bool {
        self.rec.is_some()
    }

    /// Sets an attribute; a later value for the same key replaces the earlier one.
    #[inline]
    pub fn set_attribute(&mut self, key: impl Into<Cow<'static, str>>, value: impl Into<Value>) {
        // Inlined so that a span that does not record costs one test at the call site.
        if let Some(rec) = self.rec.as_mut() {
            rec.set_attribute(key.into(), value);
        }
    }

    /// Appends an attribute whose key the caller knows is not set yet (no replace scan).
    /// For the HTTP middleware, which records a fixed set of distinct keys at start.
    #[inline]
    pub(crate) fn push_attribute(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(rec) = self.rec.as_mut() {
            rec.append(Cow::Borrowed(key), value);
        }
    }

    /// Adds a timestamped event.
    pub fn add_event(&mut self, name: impl Into<Cow<'static, str>>, attributes: Vec<KeyValue>) {
        let Some(rec) = self.rec.as_mut() else {
            return;
        };
        if rec.data.events.len() < MAX_EVENTS {
            rec.data.events.push(Event {
                name: name.into(),
                time_unix_nano: clock::now().unix_nano(),
                attributes,
            });
        } else {
            rec.data.dropped_events_count += 1;
        }
    }

    /// Sets the status. `Ok` is final (OpenTelemetry trace API §Set Status): a later
    /// `Error` or `Unset` does not replace it; `Unset` never replaces anything.
    pub fn set_status(&mut self, status: Status) {
        let Some(rec) = self.rec.as_mut() else {
            return;
        };
        match (&rec.data.status, &status) {
            (Status::Ok, _) | (_, Status::Unset) => {}
            _ => rec.data.status = status,
        }
    }

    /// Whether the span records and its status is already ERROR.
    pub(crate) fn has_error_status(&self) -> bool {
        self.rec.as_ref().is_some_and(|r| r.data.status.is_error())
    }

    /// Records a failure: status ERROR with `message`, and an `exception` event with
    /// `exception.type` and `exception.message` (OpenTelemetry semantic conventions for
    /// exceptions).
    pub fn record_exception(
        &mut self,
        exception_type: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) {
        if self.rec.is_none() {
            return;
        }
        let message = message.into();
        self.add_event(
            "exception",
            vec![
                KeyValue::new("exception.type", Value::Str(exception_type.into())),
                KeyValue::new("exception.message", Value::Str(message.clone())),
            ],
        );
        self.set_status(Status::Error { message });
    }

    /// Records an error value: like [`record_exception`](Span::record_exception) with the
    /// error's type name and its `Display` text (including its sources).
    pub fn record_error<E: std::error::Error + ?Sized>(&mut self, err: &E) {
        if self.rec.is_none() {
            return;
        }
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        self.record_exception(std::any::type_name::<E>(), message);
    }

    /// Renames the span (e.g. once the route is known).
    pub fn update_name(&mut self, name: impl Into<Cow<'static, str>>) {
        if let Some(rec) = self.rec.as_mut() {
            rec.data.name = name.into();
        }
    }

    /// Runs `f` with this span as the current span (its children and outgoing calls made
    /// inside `f` have it as their parent). Keeps the current baggage.
    pub fn scope<F: Future>(&self, f: F) -> TaskLocalFuture<Context, F> {
        Context::current()
            .with_span_context(self.cx.clone())
            .scope(f)
    }

    /// Ends the span now and hands it to the processor.
    pub fn end(self) {
        // Drop does the work.
    }

    /// Ends the span at `end_time_unix_nano`.
    pub fn end_at(mut self, end_time_unix_nano: u64) {
        if let Some(rec) = self.rec.take() {
            self.finish(rec, Some(end_time_unix_nano));
        }
    }

    /// Hands the finished span to the processor; `end` is now when `None`.
    #[inline(never)]
    fn finish(&mut self, rec: Recording, end: Option<u64>) {
        let Recording {
            mut data,
            tracer,
            started,
        } = rec;
        let end = match (end, started) {
            (Some(t), _) => t,
            (None, Some(stamp)) => stamp.unix_nano_now(),
            (None, None) => clock::now().unix_nano(),
        };
        data.end_time_unix_nano = end.max(data.start_time_unix_nano);
        // The span is over, so its trace state moves rather than being cloned.
        data.trace_state = std::mem::take(&mut self.cx.trace_state);
        // A recording span always has a processor (see `start`).
        if let Some(p) = &tracer.inner.processor {
            p.on_end(data);
        }
    }
}

impl Drop for Span {
    #[inline]
    fn drop(&mut self) {
        if let Some(rec) = self.rec.take() {
            self.finish(rec, None);
        }
    }
}

/// A span shared between the code that started it and the code running inside it, so a
/// handler can annotate the SERVER span the middleware started ([`current_span`]).
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
}

/// The span the current request's middleware started (the SERVER span), if any, so handler
/// code can add business attributes (`app.order.id`) or record an error on it.
pub fn current_span() -> Option<SharedSpan> {
    Context::with_current(|cx| cx.active_span().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::InMemoryExporter;
    use crate::propagation::TraceState;

    fn tracer(sampler: Sampler) -> (Tracer, InMemoryExporter) {
        let exporter = InMemoryExporter::default();
        let t = Tracer::builder(Resource::new("svc", None, []))
            .with_sampler(sampler)
            .with_processor(exporter.clone())
            .build();
        (t, exporter)
    }

    #[test]
    fn a_root_span_starts_a_trace_with_the_random_flag() {
        let (t, exp) = tracer(Sampler::default());
        let s = t.span("root").start();
        let cx = s.context().clone();
        assert!(cx.trace_flags.is_sampled() && cx.trace_flags.is_random());
        s.end();
        let spans = exp.finished_spans();
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].trace_id, cx.trace_id);
        assert_eq!(spans[0].span_id, cx.span_id);
        assert!(!spans[0].parent_span_id.is_valid());
        assert!(spans[0].end_time_unix_nano >= spans[0].start_time_unix_nano);
    }

    #[tokio::test]
    async fn children_follow_the_current_span_or_an_explicit_parent() {
        let (t, exp) = tracer(Sampler::default());
        let parent = t.span("parent").start();
        let pcx = parent.context().clone();
        let child_cx = parent
            .scope(async { t.span("child").start().context().clone() })
            .await;
        assert_eq!(child_cx.trace_id, pcx.trace_id);
        let explicit_root = t.span("other").parent(None).start();
        assert_ne!(explicit_root.context().trace_id, pcx.trace_id);
        drop(explicit_root);
        parent.end();
        let spans = exp.finished_spans();
        let child = spans.iter().find(|s| s.name == "child").unwrap();
        assert_eq!(child.parent_span_id, pcx.span_id);
        assert!(!child.parent_is_remote);
    }

    #[test]
    fn unsampled_spans_record_nothing() {
        let (t, exp) = tracer(Sampler::AlwaysOff);
        let mut s = t.span("x").attribute("a", 1i64).start();
        assert!(!s.is_recording());
        assert!(!s.context().is_sampled());
        s.set_attribute("b", 2i64);
        s.record_exception("E", "boom");
        s.end();
        assert!(exp.finished_spans().is_empty());
    }

    #[test]
    fn status_ok_is_final_and_errors_record_an_exception_event() {
        let (t, exp) = tracer(Sampler::AlwaysOn);
        let mut a = t.span("a").start();
        a.set_status(Status::Ok);
        a.set_status(Status::error("late"));
        a.end();
        let mut b = t.span("b").start();
        let err = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        b.record_error(&err);
        b.set_status(Status::Unset);
        b.end();
        let spans = exp.finished_spans();
        assert_eq!(spans[0].status, Status::Ok);
        assert_eq!(spans[1].status, Status::error("refused"));
        let ev = &spans[1].events[0];
        assert_eq!(ev.name, "exception");
        assert_eq!(ev.attributes[0].key, "exception.type");
        assert_eq!(ev.attributes[0].value, Value::from("std::io::error::Error"));
        assert_eq!(ev.attributes[1].value, Value::from("refused".to_owned()));
    }

    #[test]
    fn attributes_replace_by_key_and_are_capped() {
        let (t, exp) = tracer(Sampler::AlwaysOn);
        let mut s = t.span("a").start();
        s.set_attribute("k", 1i64);
        s.set_attribute("k", 2i64);
        for i in 0..200 {
            s.set_attribute(format!("k{i}"), i64::from(i));
        }
        s.end();
        let span = &exp.finished_spans()[0];
        assert_eq!(span.attribute("k"), Some(&Value::I64(2)));
        assert_eq!(span.attributes.len(), MAX_ATTRIBUTES);
        assert_eq!(span.dropped_attributes_count, 201 - MAX_ATTRIBUTES as u32);
    }

    #[test]
    fn recycled_records_carry_nothing_over_from_earlier_spans() {
        use crate::export::{BatchConfig, BatchSpanProcessor};
        let exporter = InMemoryExporter::default();
        let t = Tracer::builder(Resource::new("svc", None, []))
            .with_sampler(Sampler::AlwaysOn)
            .with_processor(BatchSpanProcessor::new(
                exporter.clone(),
                BatchConfig::default(),
            ))
            .build();
        let state = TraceState::parse("k=v");
        let linked = SpanContext {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            trace_flags: TraceFlags::SAMPLED,
            trace_state: state.clone(),
            is_remote: true,
        };
        // Enough rich spans to fill every pool stack, so plain spans reuse their records.
        for i in 0..600 {
            let mut s = t
                .span(format!("rich {i}"))
                .kind(SpanKind::Server)
                .parent(Some(linked.clone()))
                .link(Link {
                    trace_id: linked.trace_id,
                    span_id: linked.span_id,
                    trace_state: state.clone(),
                    trace_flags: TraceFlags::SAMPLED,
                    attributes: vec![],
                })
                .start();
            for k in 0..10 {
                s.set_attribute(format!("k{k}"), format!("v{k}"));
            }
            s.record_exception("E", "boom");
        }
        t.force_flush(Duration::from_secs(10)).unwrap();
        exporter.reset();
        for _ in 0..600 {
            t.span("plain").start().end();
        }
        t.force_flush(Duration::from_secs(10)).unwrap();
        let spans = exporter.finished_spans();
        assert_eq!(spans.len(), 600);
        for s in &spans {
            assert_eq!(s.name, "plain");
            assert_eq!(s.kind, SpanKind::Internal);
            assert!(!s.parent_span_id.is_valid() && !s.parent_is_remote);
            assert!(s.trace_state.is_empty());
            assert!(s.attributes.is_empty() && s.events.is_empty() && s.links.is_empty());
            assert_eq!(s.dropped_attributes_count + s.dropped_events_count, 0);
            assert_eq!(s.status, Status::Unset);
            assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
        }
        t.shutdown(Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn a_remote_parent_decides_for_parent_based_samplers() {
        let (t, exp) = tracer(Sampler::default());
        let remote = SpanContext {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            trace_flags: TraceFlags::default(),
            trace_state: Default::default(),
            is_remote: true,
        };
        let s = t.span("x").parent(Some(remote.clone())).start();
        assert!(!s.is_recording());
        assert_eq!(s.context().trace_id, remote.trace_id);
        assert_ne!(s.context().span_id, remote.span_id);
        drop(s);
        let sampled = SpanContext {
            trace_flags: TraceFlags::SAMPLED,
            ..remote
        };
        t.span("y").parent(Some(sampled)).start().end();
        let spans = exp.finished_spans();
        assert_eq!(spans.len(), 1);
        assert!(spans[0].parent_is_remote);
    }
}
