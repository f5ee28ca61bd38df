//! The OTLP/JSON mirror structs and the lenient scalars they are read with (see the parent
//! module for the rules): 64-bit integers as numbers or strings, doubles as numbers or
//! `"NaN"`/`"Infinity"`, enums as numbers or names, `null` as an omitted field.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::model::{SpanKind, StatusCode};

/// `null` → default, like an omitted field.
pub(super) fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct JRequest {
    #[serde(
        rename = "resourceSpans",
        alias = "resource_spans",
        deserialize_with = "nullable"
    )]
    pub(super) resource_spans: Vec<JResourceSpans>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct JResourceSpans {
    pub(super) resource: Option<JResource>,
    #[serde(
        rename = "scopeSpans",
        alias = "scope_spans",
        deserialize_with = "nullable"
    )]
    pub(super) scope_spans: Vec<JScopeSpans>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct JResource {
    #[serde(deserialize_with = "nullable")]
    pub(super) attributes: Vec<JKeyValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct JScopeSpans {
    pub(super) scope: Option<JScope>,
    #[serde(deserialize_with = "nullable")]
    pub(super) spans: Vec<JSpan>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct JScope {
    #[serde(deserialize_with = "nullable")]
    pub(super) name: String,
    #[serde(deserialize_with = "nullable")]
    pub(super) version: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct JSpan {
    #[serde(rename = "traceId", alias = "trace_id", deserialize_with = "nullable")]
    pub(super) trace_id: String,
    #[serde(rename = "spanId", alias = "span_id", deserialize_with = "nullable")]
    pub(super) span_id: String,
    #[serde(
        rename = "traceState",
        alias = "trace_state",
        deserialize_with = "nullable"
    )]
    pub(super) trace_state: String,
    #[serde(
        rename = "parentSpanId",
        alias = "parent_span_id",
        deserialize_with = "nullable"
    )]
    pub(super) parent_span_id: String,
    #[serde(deserialize_with = "nullable")]
    pub(super) flags: Num<u32>,
    #[serde(deserialize_with = "nullable")]
    pub(super) name: String,
    #[serde(deserialize_with = "nullable")]
    pub(super) kind: JEnum,
    #[serde(
        rename = "startTimeUnixNano",
        alias = "start_time_unix_nano",
        deserialize_with = "nullable"
    )]
    pub(super) start_time_unix_nano: Num<u64>,
    #[serde(
        rename = "endTimeUnixNano",
        alias = "end_time_unix_nano",
        deserialize_with = "nullable"
    )]
    pub(super) end_time_unix_nano: Num<u64>,
    #[serde(deserialize_with = "nullable")]
    pub(super) attributes: Vec<JKeyValue>,
    #[serde(
        rename = "droppedAttributesCount",
        alias = "dropped_attributes_count",
        deserialize_with = "nullable"
    )]
    pub(super) dropped_attributes_count: Num<u32>,
    #[serde(deserialize_with = "nullable")]
    pub(super) events: Vec<JEvent>,
    #[serde(
        rename = "droppedEventsCount",
        alias = "dropped_events_count",
        deserialize_with = "nullable"
    )]
    pub(super) dropped_events_count: Num<u32>,
    #[serde(deserialize_with = "nullable")]
    pub(super) links: Vec<JLink>,
    #[serde(
        rename = "droppedLinksCount",
        alias = "dropped_links_count",
        deserialize_with = "nullable"
    )]
    pub(super) dropped_links_count: Num<u32>,
    pub(super) status: Option<JStatus>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct JEvent {
    #[serde(
        rename = "timeUnixNano",
        alias = "time_unix_nano",
        deserialize_with = "nullable"
    )]
    pub(super) time_unix_nano: Num<u64>,
    #[serde(deserialize_with = "nullable")]
    pub(super) name: String,
    #[serde(deserialize_with = "nullable")]
    pub(super) attributes: Vec<JKeyValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct JLink {
    #[serde(rename = "traceId", alias = "trace_id", deserialize_with = "nullable")]
    pub(super) trace_id: String,
    #[serde(rename = "spanId", alias = "span_id", deserialize_with = "nullable")]
    pub(super) span_id: String,
    #[serde(
        rename = "traceState",
        alias = "trace_state",
        deserialize_with = "nullable"
    )]
    pub(super) trace_state: String,
    #[serde(deserialize_with = "nullable")]
    pub(super) attributes: Vec<JKeyValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct JStatus {
    #[serde(deserialize_with = "nullable")]
    pub(super) message: String,
    #[serde(deserialize_with = "nullable")]
    pub(super) code: JEnum,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct JKeyValue {
    #[serde(deserialize_with = "nullable")]
    pub(super) key: String,
    pub(super) value: Option<JAnyValue>,
}

/// `AnyValue`: at most one of the keys is expected; the first set one (in this order) wins.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct JAnyValue {
    #[serde(rename = "stringValue", alias = "string_value")]
    pub(super) string_value: Option<String>,
    #[serde(rename = "boolValue", alias = "bool_value")]
    pub(super) bool_value: Option<bool>,
    #[serde(rename = "intValue", alias = "int_value")]
    pub(super) int_value: Option<Num<i64>>,
    #[serde(rename = "doubleValue", alias = "double_value")]
    pub(super) double_value: Option<JDouble>,
    #[serde(rename = "arrayValue", alias = "array_value")]
    pub(super) array_value: Option<JArrayValue>,
    #[serde(rename = "kvlistValue", alias = "kvlist_value")]
    pub(super) kvlist_value: Option<JKvList>,
    #[serde(rename = "bytesValue", alias = "bytes_value")]
    pub(super) bytes_value: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct JArrayValue {
    #[serde(deserialize_with = "nullable")]
    pub(super) values: Vec<JAnyValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct JKvList {
    #[serde(deserialize_with = "nullable")]
    pub(super) values: Vec<JKeyValue>,
}

/// An integer written as a JSON number or a decimal string (§1.4 rule 4).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct Num<T>(pub(super) T);

pub(super) trait FromNum: Sized + Copy {
    const WHAT: &'static str;
    fn from_i128(v: i128) -> Option<Self>;
}

impl FromNum for u64 {
    const WHAT: &'static str = "an unsigned 64-bit integer (number or string)";
    fn from_i128(v: i128) -> Option<Self> {
        Self::try_from(v).ok()
    }
}
impl FromNum for i64 {
    const WHAT: &'static str = "a 64-bit integer (number or string)";
    fn from_i128(v: i128) -> Option<Self> {
        Self::try_from(v).ok()
    }
}
impl FromNum for u32 {
    const WHAT: &'static str = "an unsigned 32-bit integer (number or string)";
    fn from_i128(v: i128) -> Option<Self> {
        Self::try_from(v).ok()
    }
}

impl<'de, T: FromNum> Deserialize<'de> for Num<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<T: FromNum> V<T> {
            fn out<E: de::Error>(v: i128) -> Result<Num<T>, E> {
                T::from_i128(v)
                    .map(Num)
                    .ok_or_else(|| E::custom(format!("{v} is out of range for {}", T::WHAT)))
            }
        }
        impl<T: FromNum> Visitor<'_> for V<T> {
            type Value = Num<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(T::WHAT)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Self::out(i128::from(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Self::out(i128::from(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                // 1.5e18 style numbers from JavaScript senders: accept integral values.
                if v.fract() == 0.0 && v.is_finite() && v.abs() < 1.7e38 {
                    #[allow(clippy::cast_possible_truncation)]
                    Self::out(v as i128)
                } else {
                    Err(E::custom(format!("{v} is not an integer")))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                let t = v.trim();
                match t.parse::<i128>() {
                    Ok(n) => Self::out(n),
                    Err(_) => Err(E::custom(format!(
                        "{} is not {}",
                        crate::error::quote(v, 40),
                        T::WHAT
                    ))),
                }
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A double as a number or one of `"NaN"`, `"Infinity"`, `"-Infinity"` (or a numeric string).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct JDouble(pub(super) f64);

impl<'de> Deserialize<'de> for JDouble {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = JDouble;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, \"NaN\", \"Infinity\" or \"-Infinity\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<JDouble, E> {
                Ok(JDouble(v))
            }
            #[allow(clippy::cast_precision_loss)]
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<JDouble, E> {
                Ok(JDouble(v as f64))
            }
            #[allow(clippy::cast_precision_loss)]
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<JDouble, E> {
                Ok(JDouble(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<JDouble, E> {
                match v.trim() {
                    "NaN" => Ok(JDouble(f64::NAN)),
                    "Infinity" => Ok(JDouble(f64::INFINITY)),
                    "-Infinity" => Ok(JDouble(f64::NEG_INFINITY)),
                    t => t.parse::<f64>().map(JDouble).map_err(|_| {
                        E::custom(format!("{} is not a double", crate::error::quote(v, 40)))
                    }),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// An enum as its number or its name (`2`, `"SPAN_KIND_SERVER"`, `"server"`).
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) enum JEnum {
    #[default]
    Absent,
    Number(i64),
    Name(String),
}

impl<'de> Deserialize<'de> for JEnum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = JEnum;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an enum number or name")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<JEnum, E> {
                Ok(JEnum::Number(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<JEnum, E> {
                Ok(JEnum::Number(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<JEnum, E> {
                match v.trim().parse::<i64>() {
                    Ok(n) => Ok(JEnum::Number(n)),
                    Err(_) => Ok(JEnum::Name(v.to_owned())),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl JEnum {
    pub(super) fn kind(&self) -> SpanKind {
        match self {
            Self::Absent => SpanKind::Unspecified,
            Self::Number(n) => SpanKind::from_i32(i32::try_from(*n).unwrap_or(0)),
            Self::Name(s) => SpanKind::parse(s).unwrap_or_default(),
        }
    }

    pub(super) fn status(&self) -> StatusCode {
        match self {
            Self::Absent => StatusCode::Unset,
            Self::Number(n) => StatusCode::from_i32(i32::try_from(*n).unwrap_or(0)),
            Self::Name(s) => StatusCode::parse(s).unwrap_or_default(),
        }
    }
}
