//! # tracekit
//!
//! Spanline's tracing library (crate docs completed with the API).

pub mod export;
pub mod id;
pub mod propagation;
pub mod resource;
pub mod span;
pub mod span_context;

pub use export::{ExportError, ExportOutcome, SpanExporter, SpanProcessor};
pub use id::{IdError, SpanId, TraceFlags, TraceId};
pub use resource::Resource;
pub use span::{Event, Key, KeyValue, Link, SpanData, SpanKind, Status, Value, now_unix_nano};
pub use span_context::SpanContext;
