//! [`CompactAttribute`]: one span attribute as `SpanDetail` field 14 stores it. The key is a
//! number when it is in the static table of semantic-convention keys ([`keys`](super::keys)),
//! its text otherwise; the value is the `AnyValue` oneof flattened into the attribute (one
//! message level less than OTLP's `KeyValue`), with integers zigzag-encoded.
//!
//! ```proto
//! message CompactAttribute {
//!   oneof value {                 // none set: an empty value
//!     string string_value = 1;
//!     bool bool_value = 2;
//!     sint64 int_value = 3;
//!     double double_value = 4;
//!     opentelemetry.proto.common.v1.ArrayValue array_value = 5;
//!     opentelemetry.proto.common.v1.KeyValueList kvlist_value = 6;
//!     bytes bytes_value = 7;
//!   }
//!   uint32 key_code = 8;          // 1-based code in the key table; 0: the key is `key`
//!   string key = 9;
//! }
//!
//! message CompactEvent {          // OTLP's `Event`, attributes as above
//!   fixed64 time_unix_nano = 1;
//!   string name = 2;
//!   repeated CompactAttribute attributes = 3;
//! }
//! ```

use opentelemetry_proto::tonic::common::v1 as pb;

use super::keys;
use crate::format::convert;
use crate::model::{AttrValue, Event, KeyValue};

/// One attribute of `SpanDetail.compact_attributes` (field 14).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct CompactAttribute {
    /// The value; `None` is an empty value.
    #[prost(oneof = "CompactValue", tags = "1, 2, 3, 4, 5, 6, 7")]
    value: Option<CompactValue>,
    /// The key's code in [`keys::KEYS`] (1-based); 0 when the key is in `key`.
    #[prost(uint32, tag = "8")]
    key_code: u32,
    /// The key's text when it has no code.
    #[prost(string, tag = "9")]
    key: String,
}

/// The value of a [`CompactAttribute`].
#[derive(Clone, PartialEq, prost::Oneof)]
enum CompactValue {
    #[prost(string, tag = "1")]
    String(String),
    #[prost(bool, tag = "2")]
    Bool(bool),
    #[prost(sint64, tag = "3")]
    Int(i64),
    #[prost(double, tag = "4")]
    Double(f64),
    #[prost(message, tag = "5")]
    Array(pb::ArrayValue),
    #[prost(message, tag = "6")]
    KvList(pb::KeyValueList),
    #[prost(bytes = "vec", tag = "7")]
    Bytes(Vec<u8>),
}

impl CompactAttribute {
    /// The compact form of `kv` (the encoder writes it from `kv` directly: `encode.rs`).
    #[cfg(test)]
    pub(crate) fn from_model(kv: &KeyValue) -> Self {
        let (key_code, key) = match keys::code_of(&kv.key) {
            Some(code) => (code, String::new()),
            None => (0, kv.key.to_string()),
        };
        let value = match &kv.value {
            AttrValue::Empty => None,
            AttrValue::String(s) => Some(CompactValue::String(s.to_string())),
            AttrValue::Bool(b) => Some(CompactValue::Bool(*b)),
            AttrValue::Int(i) => Some(CompactValue::Int(*i)),
            AttrValue::Double(d) => Some(CompactValue::Double(*d)),
            AttrValue::Bytes(b) => Some(CompactValue::Bytes(b.clone())),
            AttrValue::Array(items) => Some(CompactValue::Array(pb::ArrayValue {
                values: items.iter().map(convert::value_to_pb).collect(),
            })),
            AttrValue::KvList(kvs) => Some(CompactValue::KvList(pb::KeyValueList {
                values: convert::attributes_to_pb(kvs),
            })),
        };
        Self {
            value,
            key_code,
            key,
        }
    }

    /// The attribute as the model has it. A code this collector's table does not have (a row
    /// written by a newer version) becomes the key `spanline.unknown_key_code.<code>`.
    pub(crate) fn into_model(self) -> KeyValue {
        let key = match self.key_code {
            0 => self.key,
            code => keys::key_of(code).map_or_else(
                || format!("spanline.unknown_key_code.{code}"),
                str::to_owned,
            ),
        };
        let value = match self.value {
            None => AttrValue::Empty,
            Some(CompactValue::String(s)) => AttrValue::String(s.into()),
            Some(CompactValue::Bool(b)) => AttrValue::Bool(b),
            Some(CompactValue::Int(i)) => AttrValue::Int(i),
            Some(CompactValue::Double(d)) => AttrValue::Double(d),
            Some(CompactValue::Bytes(b)) => AttrValue::Bytes(b),
            Some(CompactValue::Array(a)) => convert::value_from_pb(Some(pb::AnyValue {
                value: Some(pb::any_value::Value::ArrayValue(a)),
            })),
            Some(CompactValue::KvList(kv)) => {
                AttrValue::KvList(convert::attributes_from_pb(kv.values))
            }
        };
        KeyValue {
            key: key.into(),
            value,
        }
    }
}

/// One event of `SpanDetail.compact_events` (field 15): OTLP's `Event` with its attributes as
/// [`CompactAttribute`]s.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct CompactEvent {
    /// When the event happened, unix nanoseconds.
    #[prost(fixed64, tag = "1")]
    time_unix_nano: u64,
    /// The event's name.
    #[prost(string, tag = "2")]
    name: String,
    /// The event's attributes, in order.
    #[prost(message, repeated, tag = "3")]
    attributes: Vec<CompactAttribute>,
}

impl CompactEvent {
    /// The compact form of `event` (likewise).
    #[cfg(test)]
    pub(crate) fn from_model(event: &Event) -> Self {
        Self {
            time_unix_nano: event.time_unix_nano,
            name: event.name.clone(),
            attributes: event
                .attributes
                .iter()
                .map(CompactAttribute::from_model)
                .collect(),
        }
    }

    /// The event as the model has it.
    pub(crate) fn into_model(self) -> Event {
        Event {
            time_unix_nano: self.time_unix_nano,
            name: self.name,
            attributes: self
                .attributes
                .into_iter()
                .map(CompactAttribute::into_model)
                .collect(),
        }
    }
}
