//! OTLP/JSON (`application/json` with an `ExportTraceServiceRequest` object, interop.md §1.4).
//!
//! Not implemented yet: such requests are answered 415 with a message naming what works.
//! The decoder slots in here with the same signature as [`super::otlp_proto::decode`].

use super::Decoded;
use crate::error::Error;
use crate::model::SpanLimits;

/// Decodes an OTLP/JSON request (not yet supported).
///
/// # Errors
/// Always [`Error::UnsupportedMediaType`] for now.
pub(crate) fn decode(_body: &[u8], _limits: &SpanLimits) -> Result<Decoded, Error> {
    Err(Error::UnsupportedMediaType(
        "OTLP/JSON request objects are not supported yet; send OTLP as application/x-protobuf, \
         or a JSON array of simple spans (DESIGN.md §4)"
            .to_owned(),
    ))
}
