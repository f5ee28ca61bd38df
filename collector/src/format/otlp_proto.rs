//! OTLP/HTTP binary protobuf: `ExportTraceServiceRequest` → [`Span`](crate::model::Span)s
//! (interop.md §1.3).
//!
//! - A span whose trace id is not 16 non-zero bytes, whose span id is not 8 non-zero bytes, or
//!   whose parent id is neither empty nor 8 bytes, is rejected alone (partial success, §7.2 O5).
//!   An all-zero 8-byte parent id is read as "no parent".
//! - A link with invalid ids is dropped from its span with a warning; the span is kept.
//! - Unknown kind or status numbers become unspecified / unset.
//! - Invalid UTF-8 in a `string` field (§7.2 O8) does not fail the request: each string is
//!   checked on its own, bad sequences become U+FFFD and the span carries a warning
//!   (Jaeger-style).
//! - Nesting deeper than prost's recursion limit (100) fails the request with 400 (O9).
//!
//! The request is read by hand ([`proto_wire`](super::proto_wire)) straight into model
//! values (no intermediate message structs): strings and ids stay borrowed from the body until
//! their message ends (protobuf's last value wins), then are copied once, ids into arrays;
//! a scope's spans are counted before their `Vec` is made, a span's attributes gather in one
//! scratch `Vec` reused from span to span. Everything else is as prost reads the OTLP
//! messages: unknown fields and groups skipped, a repeated scalar's last value kept, repeated
//! messages merged, and a malformed request fails with prost's message. The prost-based
//! decoder this replaced is kept, for tests, as the reference (`reference::decode`) the
//! differential tests compare with.

#[cfg(test)]
mod differential;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

use super::Decoded;
use super::otlp::{self, IdNames, OtlpLink, OtlpResourceSpans, OtlpSpan, RawId, WireId};
use super::proto_wire::{RECURSION_LIMIT, Reader, Result, WireType};
use crate::error::Error;
use crate::model::{
    AttrValue, Event, KeyValue, Resource, Scope, SpanKind, Status, StatusCode, Text,
};
use crate::sanitize::{self, SpanLimits};

/// Decodes a protobuf `ExportTraceServiceRequest`.
///
/// # Errors
/// [`Error::BadRequest`] when the bytes are not a valid message (prost's message, cut to 256
/// bytes).
pub(crate) fn decode(body: &[u8], limits: &SpanLimits) -> std::result::Result<Decoded, Error> {
    let request = read_request(body).map_err(|e| {
        let mut msg = e.to_string();
        sanitize::truncate_string(&mut msg, 256);
        Error::BadRequest(format!("failed to decode ExportTraceServiceRequest: {msg}"))
    })?;
    let expected_spans = request
        .iter()
        .flat_map(|rs| &rs.scopes)
        .map(|ss| ss.spans.len())
        .sum();
    let resource_spans = request.into_iter().map(|rs| {
        let resource_bad = rs.bad;
        let scope_spans = rs.scopes.into_iter().map(move |ss| {
            let inherited_bad = resource_bad + ss.bad;
            let spans = ss.spans.into_iter().map(move |(mut span, own_bad)| {
                utf8_warning(&mut span.warnings, inherited_bad + own_bad);
                span
            });
            (ss.scope, spans)
        });
        OtlpResourceSpans {
            resource: rs.resource,
            warnings: Vec::new(),
            scope_spans,
        }
    });
    Ok(otlp::walk(
        resource_spans,
        PROTO_ID_NAMES,
        limits,
        expected_spans,
    ))
}

/// The id fields as the protobuf definition spells them, for messages.
const PROTO_ID_NAMES: IdNames = IdNames {
    trace_id: "trace_id",
    span_id: "span_id",
    parent_span_id: "parent_span_id",
};

/// The warning of a span whose strings (its own, its scope's and its resource's) held `bad`
/// invalid UTF-8 sequences, if any.
fn utf8_warning(warnings: &mut Vec<String>, bad: usize) {
    if bad > 0 {
        warnings.push(format!(
            "invalid UTF-8 in {bad} string(s) replaced with U+FFFD"
        ));
    }
}

/// One `ResourceSpans` as read: the resource's attributes and how many of its strings were
/// invalid UTF-8, and its scopes.
struct ResourceSpansIn {
    resource: Resource,
    bad: usize,
    scopes: Vec<ScopeSpansIn>,
}

/// One `ScopeSpans` as read: the scope, its invalid strings, its spans each with its own.
struct ScopeSpansIn {
    scope: Scope,
    bad: usize,
    spans: Vec<(OtlpSpan, usize)>,
}

/// UTF-8 text from a bytes field; invalid sequences become U+FFFD and bump `bad`.
fn text(bytes: &[u8], bad: &mut usize) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => {
            *bad += 1;
            String::from_utf8_lossy(bytes).into_owned()
        }
    }
}

/// [`text`] as model [`Text`]: up to 24 bytes inline, no allocation (attribute keys and
/// string values, span names).
fn short_text(bytes: &[u8], bad: &mut usize) -> Text {
    match std::str::from_utf8(bytes) {
        Ok(s) => Text::from(s),
        Err(_) => {
            *bad += 1;
            Text::from_utf8_lossy(bytes)
        }
    }
}

/// `ExportTraceServiceRequest`: field 1, `resource_spans`; the rest skipped.
fn read_request(body: &[u8]) -> Result<Vec<ResourceSpansIn>> {
    let mut r = Reader::new(body);
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    r.fields(body.len(), RECURSION_LIMIT, |r, tag, wire_type, depth| {
        match tag {
            1 => out.push(
                read_resource_spans(r, wire_type, depth, &mut scratch)
                    .map_err(|e| e.at("Request", "resource_spans"))?,
            ),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(out)
}

/// `ResourceSpans`: 1 `resource` (merged when repeated), 2 `scope_spans`. `scratch` is
/// where a span's attributes are collected (see [`read_span`]).
fn read_resource_spans(
    r: &mut Reader<'_>,
    wire_type: WireType,
    depth: u32,
    scratch: &mut Vec<KeyValue>,
) -> Result<ResourceSpansIn> {
    let end = r.message(wire_type, depth)?;
    let mut out = ResourceSpansIn {
        resource: Resource::default(),
        bad: 0,
        scopes: Vec::new(),
    };
    r.fields(end, depth - 1, |r, tag, wire_type, depth| {
        match tag {
            1 => read_resource(r, wire_type, depth, &mut out)
                .map_err(|e| e.at("ResourceSpans", "resource"))?,
            2 => out.scopes.push(
                read_scope_spans(r, wire_type, depth, scratch)
                    .map_err(|e| e.at("ResourceSpans", "scope_spans"))?,
            ),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(out)
}

/// `Resource`: 1 `attributes`, appended to those of earlier occurrences.
fn read_resource(
    r: &mut Reader<'_>,
    wire_type: WireType,
    depth: u32,
    out: &mut ResourceSpansIn,
) -> Result<()> {
    let end = r.message(wire_type, depth)?;
    r.fields(end, depth - 1, |r, tag, wire_type, depth| {
        match tag {
            1 => {
                let kv = read_key_value(r, wire_type, depth, &mut out.bad)
                    .map_err(|e| e.at("Resource", "attributes"))?;
                out.resource.attributes.push(kv);
            }
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// `ScopeSpans`: 1 `scope` (`InstrumentationScope`: 1 `name`, 2 `version`), 2 `spans`.
fn read_scope_spans(
    r: &mut Reader<'_>,
    wire_type: WireType,
    depth: u32,
    scratch: &mut Vec<KeyValue>,
) -> Result<ScopeSpansIn> {
    let end = r.message(wire_type, depth)?;
    let [spans] = r.count_fields(end, [2]);
    let mut spans = Vec::with_capacity(spans);
    let (mut name, mut version): (&[u8], &[u8]) = (b"", b"");
    r.fields(end, depth - 1, |r, tag, wire_type, depth| {
        match tag {
            1 => read_scope(r, wire_type, depth, &mut name, &mut version)
                .map_err(|e| e.at("ScopeSpans", "scope"))?,
            2 => spans.push(
                read_span(r, wire_type, depth, scratch).map_err(|e| e.at("ScopeSpans", "spans"))?,
            ),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let mut bad = 0;
    let scope = Scope {
        name: text(name, &mut bad),
        version: text(version, &mut bad),
    };
    Ok(ScopeSpansIn { scope, bad, spans })
}

/// `InstrumentationScope`'s name and version (the last of each wins).
fn read_scope<'a>(
    r: &mut Reader<'a>,
    wire_type: WireType,
    depth: u32,
    name: &mut &'a [u8],
    version: &mut &'a [u8],
) -> Result<()> {
    let end = r.message(wire_type, depth)?;
    r.fields(end, depth - 1, |r, tag, wire_type, _| {
        match tag {
            1 => *name = r.bytes(wire_type).map_err(|e| e.at("Scope", "name"))?,
            2 => *version = r.bytes(wire_type).map_err(|e| e.at("Scope", "version"))?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// The fields of a `Span` read so far that are converted when it ends.
#[derive(Default)]
struct SpanFields<'a> {
    trace_id: &'a [u8],
    span_id: &'a [u8],
    parent_span_id: &'a [u8],
    trace_state: &'a [u8],
    name: &'a [u8],
    kind: i32,
    status_message: &'a [u8],
    status_code: i32,
}

/// `Span` (opentelemetry-proto's field numbers), with the number of its invalid strings.
/// Its attributes are collected in `scratch` (kept from span to span, so that it does not
/// grow again for each), then moved into a `Vec` of their number.
fn read_span(
    r: &mut Reader<'_>,
    wire_type: WireType,
    depth: u32,
    scratch: &mut Vec<KeyValue>,
) -> Result<(OtlpSpan, usize)> {
    let end = r.message(wire_type, depth)?;
    scratch.clear();
    let mut f = SpanFields::default();
    let mut bad = 0usize;
    let mut span = OtlpSpan {
        trace_id: WireId::Bytes(RawId::new(b"")),
        span_id: WireId::Bytes(RawId::new(b"")),
        parent_span_id: WireId::Bytes(RawId::new(b"")),
        trace_state: String::new(),
        flags: 0,
        name: Text::const_new(""),
        kind: SpanKind::Unspecified,
        start_time_unix_nano: 0,
        end_time_unix_nano: 0,
        status: Status::default(),
        attributes: Vec::new(),
        events: Vec::new(),
        links: Vec::new(),
        dropped_attributes_count: 0,
        dropped_events_count: 0,
        dropped_links_count: 0,
        warnings: Vec::new(),
    };
    r.fields(end, depth - 1, |r, tag, wire_type, depth| {
        let at = |field| move |e: super::proto_wire::DecodeError| e.at("Span", field);
        match tag {
            1 => f.trace_id = r.bytes(wire_type).map_err(at("trace_id"))?,
            2 => f.span_id = r.bytes(wire_type).map_err(at("span_id"))?,
            3 => f.trace_state = r.bytes(wire_type).map_err(at("trace_state"))?,
            4 => f.parent_span_id = r.bytes(wire_type).map_err(at("parent_span_id"))?,
            5 => f.name = r.bytes(wire_type).map_err(at("name"))?,
            6 => f.kind = r.varint_field(wire_type).map_err(at("kind"))? as i32,
            7 => {
                span.start_time_unix_nano =
                    r.fixed64(wire_type).map_err(at("start_time_unix_nano"))?
            }
            8 => {
                span.end_time_unix_nano = r.fixed64(wire_type).map_err(at("end_time_unix_nano"))?
            }
            9 => scratch
                .push(read_key_value(r, wire_type, depth, &mut bad).map_err(at("attributes"))?),
            10 => {
                span.dropped_attributes_count =
                    r.varint_field(wire_type)
                        .map_err(at("dropped_attributes_count"))? as u32;
            }
            11 => span
                .events
                .push(read_event(r, wire_type, depth, &mut bad).map_err(at("events"))?),
            12 => {
                span.dropped_events_count =
                    r.varint_field(wire_type)
                        .map_err(at("dropped_events_count"))? as u32;
            }
            13 => span
                .links
                .push(read_link(r, wire_type, depth, &mut bad).map_err(at("links"))?),
            14 => {
                span.dropped_links_count =
                    r.varint_field(wire_type)
                        .map_err(at("dropped_links_count"))? as u32;
            }
            15 => read_status(r, wire_type, depth, &mut f).map_err(at("status"))?,
            16 => span.flags = r.fixed32(wire_type).map_err(at("flags"))?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    // Moved, not `mem::take`n: `scratch` keeps its capacity for the next span.
    span.attributes = Vec::with_capacity(scratch.len());
    span.attributes.append(scratch);
    span.trace_id = WireId::Bytes(RawId::new(f.trace_id));
    span.span_id = WireId::Bytes(RawId::new(f.span_id));
    span.parent_span_id = WireId::Bytes(RawId::new(f.parent_span_id));
    span.trace_state = text(f.trace_state, &mut bad);
    span.name = short_text(f.name, &mut bad);
    span.kind = SpanKind::from_i32(f.kind);
    span.status = Status {
        code: StatusCode::from_i32(f.status_code),
        message: text(f.status_message, &mut bad),
    };
    Ok((span, bad))
}

/// `Status`: 2 `message`, 3 `code` (merged into the span's when repeated).
fn read_status<'a>(
    r: &mut Reader<'a>,
    wire_type: WireType,
    depth: u32,
    f: &mut SpanFields<'a>,
) -> Result<()> {
    let end = r.message(wire_type, depth)?;
    r.fields(end, depth - 1, |r, tag, wire_type, _| {
        match tag {
            2 => f.status_message = r.bytes(wire_type).map_err(|e| e.at("Status", "message"))?,
            3 => {
                f.status_code = r
                    .varint_field(wire_type)
                    .map_err(|e| e.at("Status", "code"))? as i32;
            }
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// `Span.Event`: 1 `time_unix_nano`, 2 `name`, 3 `attributes`.
fn read_event(
    r: &mut Reader<'_>,
    wire_type: WireType,
    depth: u32,
    bad: &mut usize,
) -> Result<Event> {
    let end = r.message(wire_type, depth)?;
    let mut time_unix_nano = 0;
    let mut name: &[u8] = b"";
    let mut attributes = Vec::new();
    r.fields(end, depth - 1, |r, tag, wire_type, depth| {
        match tag {
            1 => {
                time_unix_nano = r
                    .fixed64(wire_type)
                    .map_err(|e| e.at("Event", "time_unix_nano"))?
            }
            2 => name = r.bytes(wire_type).map_err(|e| e.at("Event", "name"))?,
            3 => attributes.push(
                read_key_value(r, wire_type, depth, bad)
                    .map_err(|e| e.at("Event", "attributes"))?,
            ),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(Event {
        time_unix_nano,
        name: text(name, bad),
        attributes,
    })
}

/// `Span.Link`: 1 `trace_id`, 2 `span_id`, 3 `trace_state`, 4 `attributes`.
fn read_link(
    r: &mut Reader<'_>,
    wire_type: WireType,
    depth: u32,
    bad: &mut usize,
) -> Result<OtlpLink> {
    let end = r.message(wire_type, depth)?;
    let (mut trace_id, mut span_id, mut trace_state): (&[u8], &[u8], &[u8]) = (b"", b"", b"");
    let mut attributes = Vec::new();
    r.fields(end, depth - 1, |r, tag, wire_type, depth| {
        match tag {
            1 => trace_id = r.bytes(wire_type).map_err(|e| e.at("Link", "trace_id"))?,
            2 => span_id = r.bytes(wire_type).map_err(|e| e.at("Link", "span_id"))?,
            3 => {
                trace_state = r
                    .bytes(wire_type)
                    .map_err(|e| e.at("Link", "trace_state"))?
            }
            4 => attributes.push(
                read_key_value(r, wire_type, depth, bad).map_err(|e| e.at("Link", "attributes"))?,
            ),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(OtlpLink {
        trace_id: WireId::Bytes(RawId::new(trace_id)),
        span_id: WireId::Bytes(RawId::new(span_id)),
        trace_state: text(trace_state, bad),
        attributes,
    })
}

/// An `AnyValue`'s oneof as read so far: strings and bytes still borrowed (a later field of
/// the oneof may replace them), arrays and kvlists converted, with their invalid strings.
#[derive(Default)]
enum PendingValue<'a> {
    #[default]
    Unset,
    String(&'a [u8]),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    Array(Vec<AttrValue>, usize),
    KvList(Vec<KeyValue>, usize),
}

impl PendingValue<'_> {
    /// The model value, counting its invalid strings into `bad`.
    fn finish(self, bad: &mut usize) -> AttrValue {
        match self {
            Self::Unset => AttrValue::Empty,
            Self::String(s) => AttrValue::String(short_text(s, bad)),
            Self::Bool(b) => AttrValue::Bool(b),
            Self::Int(i) => AttrValue::Int(i),
            Self::Double(d) => AttrValue::Double(d),
            Self::Bytes(b) => AttrValue::Bytes(b.to_vec()),
            Self::Array(values, n) => {
                *bad += n;
                AttrValue::Array(values)
            }
            Self::KvList(values, n) => {
                *bad += n;
                AttrValue::KvList(values)
            }
        }
    }
}

/// `KeyValue`: 1 `key`, 2 `value` (an `AnyValue`, merged when repeated).
fn read_key_value(
    r: &mut Reader<'_>,
    wire_type: WireType,
    depth: u32,
    bad: &mut usize,
) -> Result<KeyValue> {
    let end = r.message(wire_type, depth)?;
    let mut key: &[u8] = b"";
    let mut value = PendingValue::Unset;
    r.fields(end, depth - 1, |r, tag, wire_type, depth| {
        match tag {
            1 => key = r.bytes(wire_type).map_err(|e| e.at("KeyValue", "key"))?,
            2 => read_any_value(r, wire_type, depth, &mut value)
                .map_err(|e| e.at("KeyValue", "value"))?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(KeyValue {
        key: short_text(key, bad),
        value: value.finish(bad),
    })
}

/// `AnyValue`, merged into `value`: 1 string, 2 bool, 3 int, 4 double, 5 array, 6 kvlist,
/// 7 bytes. A scalar replaces what was there; an array (kvlist) extends an array (kvlist)
/// read before and replaces anything else, as prost merges a oneof's message variant.
fn read_any_value<'a>(
    r: &mut Reader<'a>,
    wire_type: WireType,
    depth: u32,
    value: &mut PendingValue<'a>,
) -> Result<()> {
    let end = r.message(wire_type, depth)?;
    r.fields(end, depth - 1, |r, tag, wire_type, depth| {
        let at = |e: super::proto_wire::DecodeError| e.at("AnyValue", "value");
        match tag {
            1 => *value = PendingValue::String(r.bytes(wire_type).map_err(at)?),
            2 => *value = PendingValue::Bool(r.varint_field(wire_type).map_err(at)? != 0),
            3 => *value = PendingValue::Int(r.varint_field(wire_type).map_err(at)? as i64),
            4 => *value = PendingValue::Double(f64::from_bits(r.fixed64(wire_type).map_err(at)?)),
            5 => {
                let (mut values, mut n) = match std::mem::take(value) {
                    PendingValue::Array(values, n) => (values, n),
                    _ => (Vec::new(), 0),
                };
                read_array(r, wire_type, depth, &mut values, &mut n).map_err(at)?;
                *value = PendingValue::Array(values, n);
            }
            6 => {
                let (mut values, mut n) = match std::mem::take(value) {
                    PendingValue::KvList(values, n) => (values, n),
                    _ => (Vec::new(), 0),
                };
                read_kv_list(r, wire_type, depth, &mut values, &mut n).map_err(at)?;
                *value = PendingValue::KvList(values, n);
            }
            7 => *value = PendingValue::Bytes(r.bytes(wire_type).map_err(at)?),
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// `ArrayValue`: 1 `values`, appended to `values`.
fn read_array(
    r: &mut Reader<'_>,
    wire_type: WireType,
    depth: u32,
    values: &mut Vec<AttrValue>,
    bad: &mut usize,
) -> Result<()> {
    let end = r.message(wire_type, depth)?;
    r.fields(end, depth - 1, |r, tag, wire_type, depth| {
        match tag {
            1 => {
                let mut value = PendingValue::Unset;
                read_any_value(r, wire_type, depth, &mut value)
                    .map_err(|e| e.at("ArrayValue", "values"))?;
                values.push(value.finish(bad));
            }
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// `KeyValueList`: 1 `values`, appended to `values`.
fn read_kv_list(
    r: &mut Reader<'_>,
    wire_type: WireType,
    depth: u32,
    values: &mut Vec<KeyValue>,
    bad: &mut usize,
) -> Result<()> {
    let end = r.message(wire_type, depth)?;
    r.fields(end, depth - 1, |r, tag, wire_type, depth| {
        match tag {
            1 => values.push(
                read_key_value(r, wire_type, depth, bad)
                    .map_err(|e| e.at("KeyValueList", "values"))?,
            ),
            _ => return Ok(false),
        }
        Ok(true)
    })
}
