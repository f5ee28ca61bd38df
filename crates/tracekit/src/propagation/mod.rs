//! W3C Trace Context Level 2 and W3C Baggage propagation over HTTP headers.
//!
//! * [`traceparent`](parse_traceparent) — interop.md §2.1 and §2.7: strict parsing
//!   (lowercase hex, exact lengths, non-zero ids, future-version rule, OWS), formatting
//!   as version `00` with only the known flags (`0x01` sampled, `0x02` random).
//! * [`TraceState`] — interop.md §2.2: Level 2 key grammar, lines combined in order, the
//!   whole state dropped on any invalid member or more than 32 members.
//! * [`Baggage`] — interop.md §2.4: combined length checked first (8192 bytes), at most
//!   64 members, invalid members dropped, values percent-decoded.
//! * [`Propagator`] — reads and writes all three on an [`http::HeaderMap`], configured
//!   from `OTEL_PROPAGATORS`, or on any carrier ([`Injector`], [`Extractor`]: message
//!   headers, string maps; names read ignoring case).
//!
//! The behaviour is the truth table of interop.md §2.6 (the W3C trace-context
//! conformance suite, pinned at or after acab820) and reliability.md §7.4 P1-P8: a
//! request never fails because of its tracing headers; anything invalid is ignored and
//! the trace restarts.
//!
//! Cost: extracting or injecting a `traceparent` allocates only the [`HeaderValue`]
//! written; empty `tracestate` and `baggage` allocate nothing.
//!
//! # Examples
//! ```
//! use http::HeaderMap;
//! use tracekit::propagation::{Baggage, Propagator};
//! use tracekit::{SpanContext, SpanId};
//!
//! let mut incoming = HeaderMap::new();
//! incoming.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
//! incoming.insert("tracestate", "congo=t61rcWkgMzE".parse().unwrap());
//!
//! let propagator = Propagator::default();
//! let extracted = propagator.extract(&incoming);
//! let parent = extracted.parent.expect("valid traceparent");
//! assert!(parent.is_remote && parent.is_sampled());
//!
//! // A child span of our own, then the outgoing request's headers.
//! let child = SpanContext { span_id: SpanId::random(), is_remote: false, ..parent };
//! let mut outgoing = HeaderMap::new();
//! propagator.inject(&child, &extracted.baggage, &mut outgoing);
//! assert_eq!(outgoing["tracestate"], "congo=t61rcWkgMzE");
//! assert!(outgoing["traceparent"].to_str().unwrap().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
//! assert!(outgoing.get("baggage").is_none());
//! ```

mod baggage;
mod carrier;
mod lines;
mod traceparent;
mod tracestate;

#[cfg(test)]
mod tests;

use http::{HeaderMap, HeaderName, HeaderValue};

pub(crate) use baggage::percent_decode;
pub use baggage::{Baggage, BaggageError, BaggageMember};
pub use carrier::{Extractor, Injector, extract_trace_context_from};
pub use traceparent::{
    MAX_TRACEPARENT_LEN, ParsedTraceparent, TRACEPARENT_LEN, TraceparentError, format_traceparent,
    parse_traceparent, parse_traceparent_bytes, traceresponse_value,
};
pub use tracestate::{TraceState, TraceStateError};

use crate::span_context::SpanContext;

// Constants, not statics: inserting a constant name is a bitwise copy of a value built at
// compile time, where cloning a static `HeaderName` calls through `Bytes`' vtable and
// copies it at odd offsets (a quarter of `inject`'s time in a profile).
/// The `traceparent` header name.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The `tracestate` header name.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// The `baggage` header name.
pub const BAGGAGE: HeaderName = HeaderName::from_static("baggage");
/// The `traceresponse` response header name (W3C Trace Context Level 2 §traceresponse): the
/// server middleware writes it (see [`traceresponse_value`]) and the traced client records
/// it on its CLIENT span as `http.response.header.traceresponse`.
pub const TRACERESPONSE: HeaderName = HeaderName::from_static("traceresponse");

/// Why a request's trace context was not used: what [`extract_trace_context`] can return.
/// Every variant means "restart the trace".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    /// More than one `traceparent` header line was received (interop.md §2.1).
    #[error("more than one traceparent header line")]
    Duplicated,
    /// The one `traceparent` line is invalid.
    #[error(transparent)]
    Invalid(#[from] TraceparentError),
}

/// What [`Propagator::extract`] found on an incoming request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extracted {
    /// The caller's span (`is_remote: true`, carrying the `tracestate`), or `None` when
    /// there was no valid `traceparent` (or trace context is off): start a new trace.
    pub parent: Option<SpanContext>,
    /// The request's baggage (empty when absent, invalid, or baggage is off).
    pub baggage: Baggage,
}

/// Reads the trace context of a request: its single `traceparent` line and, only when
/// that is valid, its `tracestate` lines.
///
/// `Ok(None)`: no `traceparent` at all. `Ok(Some(cx))`: a valid remote context.
/// [`Propagator::extract`] maps errors to `None`; call this directly to log why a
/// trace restarted (reliability.md §7.4 P1: debug level, rate-limited).
///
/// # Errors
/// [`ExtractError::Duplicated`] for more than one `traceparent` line, or
/// [`ExtractError::Invalid`] with the [`parse_traceparent`] error of the one line.
pub fn extract_trace_context(headers: &HeaderMap) -> Result<Option<SpanContext>, ExtractError> {
    trace_context_from(headers, &Found::scan(headers))
}

/// Header maps with at most this many values are scanned once for all three propagation
/// headers instead of looked up by name three times. An `http` lookup by a custom name
/// hashes the name (FNV: one multiplication per byte, each waiting for the last), about
/// 10-15 ns each; comparing a few names by length first is cheaper for the usual request.
const SCAN_MAX_VALUES: usize = 24;

/// Where one propagation header's lines are: the first line and whether there are more.
#[derive(Default)]
struct Lines<'h> {
    first: Option<&'h HeaderValue>,
    more: bool,
}

impl<'h> Lines<'h> {
    fn add(&mut self, value: &'h HeaderValue) {
        if self.first.is_none() {
            self.first = Some(value);
        } else {
            self.more = true;
        }
    }

    /// Every line in order: from the scan when there is at most one, else from the map.
    fn all(&self, headers: &'h HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'h [u8]> {
        let (one, many) = if self.more {
            (None, Some(headers.get_all(name).iter()))
        } else {
            (self.first, None)
        };
        one.into_iter()
            .chain(many.into_iter().flatten())
            .map(HeaderValue::as_bytes)
    }
}

/// The result of one pass over a request's headers (or, for a large map, of three lookups).
struct Found<'h> {
    traceparent: Lines<'h>,
    tracestate: Lines<'h>,
    baggage: Lines<'h>,
}

impl<'h> Found<'h> {
    #[inline]
    fn scan(headers: &'h HeaderMap) -> Found<'h> {
        let mut f = Found {
            traceparent: Lines::default(),
            tracestate: Lines::default(),
            baggage: Lines::default(),
        };
        if headers.len() > SCAN_MAX_VALUES {
            for (lines, name) in [
                (&mut f.traceparent, &TRACEPARENT),
                (&mut f.tracestate, &TRACESTATE),
                (&mut f.baggage, &BAGGAGE),
            ] {
                let mut values = headers.get_all(name).iter();
                lines.first = values.next();
                lines.more = values.next().is_some();
            }
            return f;
        }
        for (name, value) in headers {
            // Lengths first: most names are ruled out by one comparison.
            let lines = match name.as_str().as_bytes() {
                n if n.len() == 11 && n == b"traceparent" => &mut f.traceparent,
                n if n.len() == 10 && n == b"tracestate" => &mut f.tracestate,
                n if n.len() == 7 && n == b"baggage" => &mut f.baggage,
                _ => continue,
            };
            lines.add(value);
        }
        f
    }
}

#[inline]
fn trace_context_from(
    headers: &HeaderMap,
    found: &Found<'_>,
) -> Result<Option<SpanContext>, ExtractError> {
    let Some(line) = found.traceparent.first else {
        return Ok(None);
    };
    if found.traceparent.more {
        return Err(ExtractError::Duplicated);
    }
    let parsed = parse_traceparent_bytes(line.as_bytes())?;
    let trace_state = if found.tracestate.first.is_some() {
        TraceState::parse_lines(found.tracestate.all(headers, &TRACESTATE))
    } else {
        TraceState::default()
    };
    Ok(Some(parsed.into_remote_context(trace_state)))
}

/// Removes every `name` line, looking it up only when it may be there (a small map is
/// scanned instead: see [`SCAN_MAX_VALUES`]).
fn remove_all(headers: &mut HeaderMap, name: &HeaderName) {
    let present = headers.len() > SCAN_MAX_VALUES || headers.keys().any(|k| k == name);
    if present {
        headers.remove(name);
    }
}

/// Which propagation formats are on. `Copy`; the default has both on (the OpenTelemetry
/// default `OTEL_PROPAGATORS=tracecontext,baggage`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Propagator {
    trace_context: bool,
    baggage: bool,
}

impl Default for Propagator {
    fn default() -> Propagator {
        Propagator::new(true, true)
    }
}

impl Propagator {
    /// Nothing is extracted or injected (`OTEL_PROPAGATORS=none`).
    pub const NONE: Propagator = Propagator::new(false, false);

    /// A propagator with W3C Trace Context and W3C Baggage each on or off.
    pub const fn new(trace_context: bool, baggage: bool) -> Propagator {
        Propagator {
            trace_context,
            baggage,
        }
    }

    /// Whether `traceparent`/`tracestate` are read and written.
    pub const fn trace_context(self) -> bool {
        self.trace_context
    }

    /// Whether `baggage` is read and written.
    pub const fn baggage(self) -> bool {
        self.baggage
    }

    /// Configuration from an `OTEL_PROPAGATORS` value, plus the names it did not know.
    ///
    /// The value is a comma-separated list; names are trimmed and compared ignoring ASCII
    /// case. `tracecontext` and `baggage` turn the formats on; `none` turns everything
    /// off and wins over any other name. An empty value (or only commas and spaces) means
    /// "unset": both on. Any other name (e.g. `b3`, `jaeger`) is not supported here: it
    /// is returned, as written, for the caller to warn about, and otherwise ignored, so
    /// `OTEL_PROPAGATORS=b3` propagates nothing.
    ///
    /// # Examples
    /// ```
    /// use tracekit::propagation::Propagator;
    /// assert_eq!(Propagator::from_env_value(""), (Propagator::default(), vec![]));
    /// assert_eq!(Propagator::from_env_value(" TraceContext "), (Propagator::new(true, false), vec![]));
    /// assert_eq!(
    ///     Propagator::from_env_value("tracecontext,b3,baggage"),
    ///     (Propagator::new(true, true), vec!["b3".to_owned()])
    /// );
    /// assert_eq!(Propagator::from_env_value("none,baggage").0, Propagator::NONE);
    /// ```
    pub fn from_env_value(value: &str) -> (Propagator, Vec<String>) {
        let mut p = Propagator::NONE;
        let mut unknown = Vec::new();
        let mut any = false;
        let mut none = false;
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            any = true;
            if name.eq_ignore_ascii_case("tracecontext") {
                p.trace_context = true;
            } else if name.eq_ignore_ascii_case("baggage") {
                p.baggage = true;
            } else if name.eq_ignore_ascii_case("none") {
                none = true;
            } else {
                unknown.push(name.to_owned());
            }
        }
        if !any {
            p = Propagator::default();
        } else if none {
            p = Propagator::NONE;
        }
        (p, unknown)
    }

    /// [`Propagator::from_env_value`] on the `OTEL_PROPAGATORS` environment variable;
    /// unset (or not Unicode) means the default.
    pub fn from_env() -> (Propagator, Vec<String>) {
        match std::env::var("OTEL_PROPAGATORS") {
            Ok(v) => Propagator::from_env_value(&v),
            Err(_) => (Propagator::default(), Vec::new()),
        }
    }

    /// Reads the trace context and baggage of an incoming request.
    ///
    /// All lines of each header are read (`get_all`). More than one `traceparent` line,
    /// or an invalid one, gives `parent: None` and the `tracestate` is not parsed; a valid
    /// one gives a context with `is_remote: true`. Baggage does not depend on the trace
    /// context. Never fails.
    #[inline]
    pub fn extract(&self, headers: &HeaderMap) -> Extracted {
        if !self.trace_context && !self.baggage {
            return Extracted::default();
        }
        let found = Found::scan(headers);
        let parent = if self.trace_context {
            trace_context_from(headers, &found).ok().flatten()
        } else {
            None
        };
        let baggage = if self.baggage && found.baggage.first.is_some() {
            Baggage::parse_lines(found.baggage.all(headers, &BAGGAGE))
        } else {
            Baggage::default()
        };
        Extracted { parent, baggage }
    }

    /// Writes the trace context of `cx` and `baggage` onto an outgoing request.
    ///
    /// With trace context on: exactly one `traceparent` (replacing any already there),
    /// and `tracestate` only when `cx.trace_state` is non-empty (any other `tracestate`
    /// line is removed). If `cx` has an all-zero id nothing is propagated and existing
    /// `traceparent`/`tracestate` lines are removed. With baggage on: one `baggage` line
    /// when `baggage` is non-empty, otherwise any existing `baggage` line is removed, so
    /// an emptied baggage never leaks a stale header.
    pub fn inject(&self, cx: &SpanContext, baggage: &Baggage, headers: &mut HeaderMap) {
        if self.trace_context {
            if cx.trace_id.is_valid() && cx.span_id.is_valid() {
                headers.insert(TRACEPARENT, format_traceparent(cx));
                match cx.trace_state.header_value() {
                    Some(v) => {
                        headers.insert(TRACESTATE, v);
                    }
                    None => remove_all(headers, &TRACESTATE),
                }
            } else {
                remove_all(headers, &TRACEPARENT);
                remove_all(headers, &TRACESTATE);
            }
        }
        if self.baggage {
            match baggage.header_value() {
                Some(v) => {
                    headers.insert(BAGGAGE, v);
                }
                None => remove_all(headers, &BAGGAGE),
            }
        }
    }
}
