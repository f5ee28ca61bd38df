//! [`SpanBuilder`]: the options of a span about to start, and starting it (the sampler's
//! decision, then a recycled record filled in for a sampled span).

use std::borrow::Cow;

use crate::clock;
use crate::context::Context;
use crate::id::{SpanId, TraceFlags, TraceId};
use crate::pool;
use crate::span::{
    KeyValue, Link, MAX_ATTRIBUTES, MAX_LINKS, Recording, SPARE_ATTRIBUTES, Span, SpanKind, Value,
};
use crate::span_context::SpanContext;
use crate::tracer::Tracer;

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

impl<'t> SpanBuilder<'t> {
    /// A builder for an INTERNAL span named `name`, a child of the current span.
    #[inline]
    pub(crate) fn new(tracer: &'t Tracer, name: Cow<'static, str>) -> SpanBuilder<'t> {
        SpanBuilder {
            tracer,
            name,
            kind: SpanKind::Internal,
            parent: Parent::Current,
            attributes: Vec::new(),
            links: Vec::new(),
            start_time_unix_nano: None,
        }
    }

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
        let decision = inner.sampler.decide(parent.as_ref(), trace_id, &self.name);
        let sampled = decision.sampled;
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
        // A root sampled by a rule says which (`sampler.type`, `sampler.param`).
        if let Some(rule) = decision.rule {
            self.attributes.extend(rule.attributes());
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
