//! W3C Trace Context Level 2 propagation: `traceparent` (interop.md §2.1, §2.7),
//! `tracestate` (interop.md §2.2), and W3C Baggage (interop.md §2.4).

mod baggage;
mod lines;
mod traceparent;
mod tracestate;

pub use baggage::{Baggage, BaggageError, BaggageMember};
pub use traceparent::{
    MAX_TRACEPARENT_LEN, ParsedTraceparent, TRACEPARENT_LEN, TraceparentError, format_traceparent,
    parse_traceparent, parse_traceparent_bytes, traceresponse_value,
};
pub use tracestate::{TraceState, TraceStateError};
