//! The span data model: what a finished span carries to the exporter.
//!
//! Mirrors the OpenTelemetry trace data model (OTLP `trace.proto` `Span`): name, [`SpanKind`],
//! start and end in unix nanoseconds, [`Status`], typed attributes, [`Event`]s and [`Link`]s.
//! The [`Resource`](crate::Resource) is per tracer and is attached at export time.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::id::{SpanId, TraceFlags, TraceId};
use crate::propagation::TraceState;

/// An attribute key. Static strings cost nothing to record.
pub type Key = Cow<'static, str>;

/// The role of a span in a trace (OTLP `Span.SpanKind`, OpenTelemetry trace API §SpanKind).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SpanKind {
    /// An operation inside one process (OTLP 1).
    #[default]
    Internal,
    /// The server side of a synchronous request (OTLP 2).
    Server,
    /// The client side of a synchronous request, or a call to a database (OTLP 3).
    Client,
    /// The sender of an asynchronous message (OTLP 4).
    Producer,
    /// The receiver of an asynchronous message (OTLP 5).
    Consumer,
}

impl SpanKind {
    /// The OTLP enum number (1 internal .. 5 consumer).
    pub const fn otlp_code(self) -> i32 {
        match self {
            SpanKind::Internal => 1,
            SpanKind::Server => 2,
            SpanKind::Client => 3,
            SpanKind::Producer => 4,
            SpanKind::Consumer => 5,
        }
    }

    /// The lowercase name used in Spanline's JSON (`"server"`, `"client"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }
}

/// The outcome of a span (OpenTelemetry trace API §Set Status).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Status {
    /// No status was set (OTLP 0).
    #[default]
    Unset,
    /// Explicitly successful (OTLP 1). Final: a later `Error` does not override it.
    Ok,
    /// The operation failed (OTLP 2), with a human-readable description.
    Error {
        /// What went wrong.
        message: Cow<'static, str>,
    },
}

impl Status {
    /// An error status with `message`.
    pub fn error(message: impl Into<Cow<'static, str>>) -> Status {
        Status::Error {
            message: message.into(),
        }
    }

    /// Whether this is an error status.
    pub fn is_error(&self) -> bool {
        matches!(self, Status::Error { .. })
    }
}

/// A typed attribute value (OTLP `AnyValue`, the scalar and array subset).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    I64(i64),
    /// A 64-bit float.
    F64(f64),
    /// A UTF-8 string.
    Str(Cow<'static, str>),
    /// A homogeneous array of strings.
    StrArray(Vec<Cow<'static, str>>),
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::I64(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::I64(i64::from(v))
    }
}
impl From<u16> for Value {
    fn from(v: u16) -> Self {
        Value::I64(i64::from(v))
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::I64(i64::from(v))
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::F64(v)
    }
}
impl From<&'static str> for Value {
    fn from(v: &'static str) -> Self {
        Value::Str(Cow::Borrowed(v))
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(Cow::Owned(v))
    }
}
impl From<Cow<'static, str>> for Value {
    fn from(v: Cow<'static, str>) -> Self {
        Value::Str(v)
    }
}

/// One attribute: a key and a typed value.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyValue {
    /// The attribute name, following the OpenTelemetry semantic conventions where one applies.
    pub key: Key,
    /// The value.
    pub value: Value,
}

impl KeyValue {
    /// A new attribute.
    pub fn new(key: impl Into<Key>, value: impl Into<Value>) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// A timestamped annotation on a span (OTLP `Span.Event`), e.g. an `exception`.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The event name (`exception` for recorded errors).
    pub name: Cow<'static, str>,
    /// When it happened, unix nanoseconds.
    pub time_unix_nano: u64,
    /// Event attributes.
    pub attributes: Vec<KeyValue>,
}

/// A reference to another span, possibly in another trace (OTLP `Span.Link`).
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    /// The linked trace.
    pub trace_id: TraceId,
    /// The linked span.
    pub span_id: SpanId,
    /// The linked span's trace state.
    pub trace_state: TraceState,
    /// The linked span's flags.
    pub trace_flags: TraceFlags,
    /// Link attributes.
    pub attributes: Vec<KeyValue>,
}

/// A finished, sampled span as handed to a [`SpanProcessor`](crate::export::SpanProcessor).
///
/// The default value is an empty record (invalid ids, no name, no attributes).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpanData {
    /// The trace id.
    pub trace_id: TraceId,
    /// This span's id.
    pub span_id: SpanId,
    /// The parent's span id; [`SpanId::INVALID`] for a root span.
    pub parent_span_id: SpanId,
    /// Whether the parent was in another process (OTLP `flags` bits 8-9).
    pub parent_is_remote: bool,
    /// The trace flags this span was started with.
    pub trace_flags: TraceFlags,
    /// The trace state this span was started with.
    pub trace_state: TraceState,
    /// Low-cardinality name: `METHOD /route/template` for HTTP, `OPERATION table` for DB.
    pub name: Cow<'static, str>,
    /// The span's role.
    pub kind: SpanKind,
    /// Start, unix nanoseconds.
    pub start_time_unix_nano: u64,
    /// End, unix nanoseconds (>= start).
    pub end_time_unix_nano: u64,
    /// Attributes, in the order they were set (a later value for the same key replaces).
    pub attributes: Vec<KeyValue>,
    /// Attributes dropped by the per-span limit.
    pub dropped_attributes_count: u32,
    /// Events, in time order.
    pub events: Vec<Event>,
    /// Events dropped by the per-span limit.
    pub dropped_events_count: u32,
    /// Links.
    pub links: Vec<Link>,
    /// The outcome.
    pub status: Status,
}

impl SpanData {
    /// The span's duration in nanoseconds (0 if the clock went backwards).
    pub fn duration_ns(&self) -> u64 {
        self.end_time_unix_nano
            .saturating_sub(self.start_time_unix_nano)
    }

    /// Empties the record for reuse by another span, keeping the attribute, event and link
    /// lists' memory (up to [`KEPT_ATTRIBUTE_CAPACITY`] attribute slots; a list that grew
    /// larger is freed so one huge span does not pin memory in the pool).
    pub(crate) fn clear_for_reuse(&mut self) {
        self.trace_id = TraceId::INVALID;
        self.span_id = SpanId::INVALID;
        self.parent_span_id = SpanId::INVALID;
        self.parent_is_remote = false;
        self.trace_flags = TraceFlags::default();
        self.trace_state = TraceState::default();
        self.name = Cow::Borrowed("");
        self.kind = SpanKind::Internal;
        self.start_time_unix_nano = 0;
        self.end_time_unix_nano = 0;
        if self.attributes.capacity() > KEPT_ATTRIBUTE_CAPACITY {
            self.attributes = Vec::new();
        } else {
            self.attributes.clear();
        }
        self.dropped_attributes_count = 0;
        self.events = Vec::new();
        self.dropped_events_count = 0;
        self.links = Vec::new();
        self.status = Status::Unset;
    }

    /// The value of attribute `key`, if set.
    pub fn attribute(&self, key: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| &kv.value)
    }
}

/// The most attribute slots a recycled record keeps (see `SpanData::clear_for_reuse`).
pub(crate) const KEPT_ATTRIBUTE_CAPACITY: usize = 32;

/// The current wall-clock time in unix nanoseconds (0 if the clock is before 1970).
#[inline]
pub fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
