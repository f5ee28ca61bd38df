//! Spans: the live [`Span`] handle, how one starts ([`SpanBuilder`]), how code inside a span
//! reaches it ([`SharedSpan`], [`current_span`](crate::current_span)) and what a finished
//! span carries to the exporter ([`SpanData`] and its parts).
//!
//! A span that the sampler drops still gets a fresh span id so propagation works, but
//! records nothing: its handle carries only the [`SpanContext`].

mod builder;
mod data;
mod shared;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::future::Future;

use crate::clock;
use crate::span_context::SpanContext;
use crate::tracer::Tracer;

pub use builder::SpanBuilder;
pub use data::{Event, Key, KeyValue, Link, SpanData, SpanKind, Status, Value, now_unix_nano};
pub use shared::SharedSpan;

/// Per-span caps (OpenTelemetry SDK §Span limits defaults). Past a cap, items are dropped
/// and counted in the span's `dropped_*_count`.
pub(crate) const MAX_ATTRIBUTES: usize = 128;
const MAX_EVENTS: usize = 128;
pub(crate) const MAX_LINKS: usize = 128;

/// Free attribute slots a recording span starts with (one allocation for the usual case).
pub(crate) const SPARE_ATTRIBUTES: usize = 8;

pub(crate) struct Recording {
    /// Boxed so a finished span moves to the processor as one pointer.
    pub(crate) data: Box<SpanData>,
    pub(crate) tracer: Tracer,
    /// The clock reading the start time came from; `None` for an explicit start time.
    pub(crate) started: Option<clock::Stamp>,
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
    pub(crate) cx: SpanContext,
    pub(crate) rec: Option<Recording>,
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

    /// Runs `f` as this span's scope and ends the span when `f` completes: inside,
    /// [`current_span`](crate::current_span) returns this span, and spans and outgoing calls
    /// started there are its children. Keeps the current baggage.
    ///
    /// To keep using the span after `f`, share it ([`SharedSpan::new`]) and run `f` in
    /// [`SharedSpan::scope`], which does not end it.
    pub fn scope<F: Future>(self, f: F) -> impl Future<Output = F::Output> {
        let shared = SharedSpan::new(self);
        let scoped = shared.scope(f);
        async move {
            let output = scoped.await;
            shared.end();
            output
        }
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
