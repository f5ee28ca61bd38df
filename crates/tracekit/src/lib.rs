//! # tracekit
//!
//! Spanline's tracing library (placeholder crate docs; completed with the API).

pub mod id;
pub mod propagation;
pub mod span_context;

pub use id::{IdError, SpanId, TraceFlags, TraceId};
pub use span_context::SpanContext;
