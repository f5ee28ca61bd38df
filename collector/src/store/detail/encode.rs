//! [`SpanDetail`](super::SpanDetail) written straight from a borrowed [`Span`]: the same bytes
//! prost's derived encoder writes for the owned message (fields in tag order, proto3 defaults
//! left out, a oneof written whenever set), without first copying every attribute key and
//! value into an owned `CompactAttribute` (one allocation each, which was most of the cost of
//! encoding a span: BENCHMARKS.md §6.12). The owned messages stay the decoder's types and this
//! module's test oracle (`tests.rs`).
//!
//! Links, a resource, and array or kvlist attribute values (rare on the ingest path) go
//! through their OTLP messages and prost, as before.

use opentelemetry_proto::tonic::common::v1 as pb;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use super::keys;
use crate::format::convert;
use crate::model::{AttrValue, Event, KeyValue, Span};

/// Appends the detail bytes of `span` (fields 1-10, 14, 15; the resource and scope are not
/// this function's: see `SpanDetail::encode_resource_and_scope`) to `buf`.
pub(crate) fn write_detail(span: &Span, buf: &mut Vec<u8>) {
    for link in &span.links {
        prost::encoding::message::encode(3, &convert::link_to_pb(link), buf);
    }
    write_str(4, &span.status.message, buf);
    write_str(5, &span.trace_state, buf);
    if span.flags != 0 {
        encode_key(6, WireType::ThirtyTwoBit, buf);
        buf.extend_from_slice(&span.flags.to_le_bytes());
    }
    write_u32(7, span.dropped_attributes_count, buf);
    write_u32(8, span.dropped_events_count, buf);
    write_u32(9, span.dropped_links_count, buf);
    for warning in &span.warnings {
        write_str_always(10, warning, buf);
    }
    for kv in &span.attributes {
        write_attribute(14, kv, buf);
    }
    for event in &span.events {
        encode_key(15, WireType::LengthDelimited, buf);
        encode_varint(event_len(event) as u64, buf);
        if event.time_unix_nano != 0 {
            encode_key(1, WireType::SixtyFourBit, buf);
            buf.extend_from_slice(&event.time_unix_nano.to_le_bytes());
        }
        write_str(2, &event.name, buf);
        for kv in &event.attributes {
            write_attribute(3, kv, buf);
        }
    }
}

/// A `CompactEvent`'s length, bytes.
fn event_len(event: &Event) -> usize {
    let time = if event.time_unix_nano == 0 {
        0
    } else {
        key_len(1) + 8
    };
    time + str_len(2, &event.name)
        + event
            .attributes
            .iter()
            .map(|kv| delimited_len(3, attribute_len(kv, keys::code_of(&kv.key))))
            .sum::<usize>()
}

/// Field `tag` holding `kv` as a `CompactAttribute`.
fn write_attribute(tag: u32, kv: &KeyValue, buf: &mut Vec<u8>) {
    let code = keys::code_of(&kv.key);
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(attribute_len(kv, code) as u64, buf);
    match &kv.value {
        AttrValue::Empty => {}
        AttrValue::String(s) => write_str_always(1, s, buf),
        AttrValue::Bool(b) => {
            encode_key(2, WireType::Varint, buf);
            encode_varint(u64::from(*b), buf);
        }
        AttrValue::Int(i) => {
            encode_key(3, WireType::Varint, buf);
            encode_varint(zigzag(*i), buf);
        }
        AttrValue::Double(d) => {
            encode_key(4, WireType::SixtyFourBit, buf);
            buf.extend_from_slice(&d.to_le_bytes());
        }
        AttrValue::Bytes(b) => write_bytes_always(7, b, buf),
        AttrValue::Array(items) => {
            let array = pb::ArrayValue {
                values: items.iter().map(convert::value_to_pb).collect(),
            };
            prost::encoding::message::encode(5, &array, buf);
        }
        AttrValue::KvList(kvs) => {
            let list = pb::KeyValueList {
                values: convert::attributes_to_pb(kvs),
            };
            prost::encoding::message::encode(6, &list, buf);
        }
    }
    match code {
        Some(code) => write_u32(8, code, buf),
        None => write_str(9, &kv.key, buf),
    }
}

/// A `CompactAttribute`'s length, bytes; `code` is the key's ([`keys::code_of`]).
fn attribute_len(kv: &KeyValue, code: Option<u32>) -> usize {
    let value = match &kv.value {
        AttrValue::Empty => 0,
        AttrValue::String(s) => delimited_len(1, s.len()),
        AttrValue::Bool(_) => key_len(2) + 1,
        AttrValue::Int(i) => key_len(3) + encoded_len_varint(zigzag(*i)),
        AttrValue::Double(_) => key_len(4) + 8,
        AttrValue::Bytes(b) => delimited_len(7, b.len()),
        AttrValue::Array(items) => delimited_len(
            5,
            pb::ArrayValue {
                values: items.iter().map(convert::value_to_pb).collect(),
            }
            .encoded_len(),
        ),
        AttrValue::KvList(kvs) => delimited_len(
            6,
            pb::KeyValueList {
                values: convert::attributes_to_pb(kvs),
            }
            .encoded_len(),
        ),
    };
    let key = match code {
        Some(code) => u32_len(8, code),
        None => str_len(9, &kv.key),
    };
    value + key
}

/// `sint64`'s zigzag encoding.
fn zigzag(i: i64) -> u64 {
    ((i << 1) ^ (i >> 63)) as u64
}

/// A length-delimited field of `len` bytes, key and length prefix included.
fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// A proto3 `string` field: left out when empty.
fn str_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        delimited_len(tag, s.len())
    }
}

fn write_str(tag: u32, s: &str, buf: &mut Vec<u8>) {
    if !s.is_empty() {
        write_str_always(tag, s, buf);
    }
}

/// A string written even when empty (a set oneof, an element of a repeated field).
fn write_str_always(tag: u32, s: &str, buf: &mut Vec<u8>) {
    write_bytes_always(tag, s.as_bytes(), buf);
}

fn write_bytes_always(tag: u32, b: &[u8], buf: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(b.len() as u64, buf);
    buf.extend_from_slice(b);
}

/// A proto3 `uint32` field: left out when 0.
fn u32_len(tag: u32, v: u32) -> usize {
    if v == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(u64::from(v))
    }
}

fn write_u32(tag: u32, v: u32, buf: &mut Vec<u8>) {
    if v != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(u64::from(v), buf);
    }
}
