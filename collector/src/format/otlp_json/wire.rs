//! The OTLP/JSON mirror structs and the lenient scalars they are read with (see the parent
//! module for the rules): 64-bit integers as numbers or strings, doubles as numbers or
//! `"NaN"`/`"Infinity"`, enums as numbers or names. Keys are the structs' lowerCamelCase
//! field names; snake_case keys and `null` members are normalised once, for every struct,
//! by [`super::keys`].

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::model::{SpanKind, StatusCode};

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct JRequest {
    pub(super) resource_spans: Vec<JResourceSpans>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct JResourceSpans {
    pub(super) resource: Option<JResource>,
    pub(super) scope_spans: Vec<JScopeSpans>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct JResource {
    pub(super) attributes: Vec<JKeyValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct JScopeSpans {
    pub(super) scope: Option<JScope>,
    pub(super) spans: Vec<JSpan>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct JScope {
    pub(super) name: String,
    pub(super) version: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct JSpan {
    pub(super) trace_id: String,
    pub(super) span_id: String,
    pub(super) trace_state: String,
    pub(super) parent_span_id: String,
    pub(super) flags: Num<u32>,
    pub(super) name: String,
    pub(super) kind: JEnum,
    pub(super) start_time_unix_nano: Num<u64>,
    pub(super) end_time_unix_nano: Num<u64>,
    pub(super) attributes: Vec<JKeyValue>,
    pub(super) dropped_attributes_count: Num<u32>,
    pub(super) events: Vec<JEvent>,
    pub(super) dropped_events_count: Num<u32>,
    pub(super) links: Vec<JLink>,
    pub(super) dropped_links_count: Num<u32>,
    pub(super) status: Option<JStatus>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct JEvent {
    pub(super) time_unix_nano: Num<u64>,
    pub(super) name: String,
    pub(super) attributes: Vec<JKeyValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct JLink {
    pub(super) trace_id: String,
    pub(super) span_id: String,
    pub(super) trace_state: String,
    pub(super) attributes: Vec<JKeyValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct JStatus {
    pub(super) message: String,
    pub(super) code: JEnum,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct JKeyValue {
    pub(super) key: String,
    pub(super) value: Option<JAnyValue>,
}

/// `AnyValue`: at most one of the keys is expected; the first set one (in this order) wins.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct JAnyValue {
    pub(super) string_value: Option<String>,
    pub(super) bool_value: Option<bool>,
    pub(super) int_value: Option<Num<i64>>,
    pub(super) double_value: Option<JDouble>,
    pub(super) array_value: Option<JArrayValue>,
    pub(super) kvlist_value: Option<JKvList>,
    pub(super) bytes_value: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct JArrayValue {
    pub(super) values: Vec<JAnyValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct JKvList {
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
            /// `null` as a member (see [`super::keys`]): zero, like an omitted field.
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Self::out(0)
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
            /// `null` as a member (see [`super::keys`]): absent, like an omitted field.
            fn visit_unit<E: de::Error>(self) -> Result<JEnum, E> {
                Ok(JEnum::Absent)
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
