//! W3C Trace Context Level 2 and W3C Baggage propagation (placeholder; replaced by the
//! propagation work).

/// Placeholder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceState(Option<std::sync::Arc<str>>);
