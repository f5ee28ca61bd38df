//! # The one internal span type
//!
//! Every ingest format (OTLP protobuf, the simple JSON array, later OTLP JSON and Zipkin) is
//! converted into [`Span`]; every store keeps [`Span`]s; assembly and the query API read them.
//!
//! Ids are fixed-size byte arrays in network (big-endian) order, printed as lowercase hex.
//! Times are unix nanoseconds (`u64`). Resource and scope are shared between the spans of one
//! OTLP `ResourceSpans` / `ScopeSpans` through [`Arc`], so a batch does not copy them per span.
//!
//! [`crate::sanitize`] applies the input rules of reliability.md §7.2 (O10–O14) that every format
//! shares.

use std::fmt;
use std::sync::Arc;

/// Text of the span model (names, attribute keys, string values, service names): up to 24
/// bytes inline, longer on the heap; derefs to `str`. Most of OTLP's short strings then cost no
/// allocation to decode or to drop.
pub type Text = compact_str::CompactString;

/// Service name used when a resource has no (or an empty) `service.name` (OTel convention).
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// A W3C / OTLP trace id: 16 bytes, never all zero once validated.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(pub [u8; 16]);

/// A W3C / OTLP span id: 8 bytes, never all zero once validated.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(pub [u8; 8]);

/// Why an id could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id has the wrong length (in bytes, or in hex digits for text).
    #[error("must be {expected} {unit}, got {actual}")]
    Length {
        /// Expected length.
        expected: usize,
        /// Actual length.
        actual: usize,
        /// `"bytes"` or `"hex digits"`.
        unit: &'static str,
    },
    /// The text contains a character that is not a hex digit.
    #[error("must be hex digits")]
    NotHex,
    /// All bytes are zero, which OTLP and W3C define as invalid.
    #[error("must not be all zeros")]
    AllZero,
}

macro_rules! impl_id {
    ($name:ident, $len:expr) => {
        impl $name {
            /// Length of the id in bytes.
            pub const LEN: usize = $len;

            /// Builds an id from raw bytes (OTLP protobuf form).
            ///
            /// # Errors
            /// [`IdError::Length`] for a slice of another length, [`IdError::AllZero`] for zeros.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, IdError> {
                let arr: [u8; $len] = bytes.try_into().map_err(|_| IdError::Length {
                    expected: $len,
                    actual: bytes.len(),
                    unit: "bytes",
                })?;
                if arr.iter().all(|b| *b == 0) {
                    return Err(IdError::AllZero);
                }
                Ok(Self(arr))
            }

            /// Parses hex text (case-insensitive, exactly `2 * LEN` digits).
            ///
            /// # Errors
            /// [`IdError::Length`], [`IdError::NotHex`] or [`IdError::AllZero`].
            pub fn from_hex(text: &str) -> Result<Self, IdError> {
                let bytes = text.as_bytes();
                if bytes.len() != $len * 2 {
                    return Err(IdError::Length {
                        expected: $len * 2,
                        actual: text.chars().count(),
                        unit: "hex digits",
                    });
                }
                let mut arr = [0u8; $len];
                for (i, pair) in bytes.chunks_exact(2).enumerate() {
                    let hi = hex_val(pair[0]).ok_or(IdError::NotHex)?;
                    let lo = hex_val(pair[1]).ok_or(IdError::NotHex)?;
                    arr[i] = (hi << 4) | lo;
                }
                if arr.iter().all(|b| *b == 0) {
                    return Err(IdError::AllZero);
                }
                Ok(Self(arr))
            }

            /// The lowercase hex form (`2 * LEN` digits).
            pub fn to_hex(&self) -> String {
                self.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for b in self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }
    };
}

impl_id!(TraceId, 16);
impl_id!(SpanId, 8);

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Span kind (OTLP `SpanKind`; interop.md §1.3). Stored as its OTLP number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum SpanKind {
    /// 0: not specified; shown as `internal`.
    #[default]
    Unspecified,
    /// 1: internal operation.
    Internal,
    /// 2: server side of a synchronous request.
    Server,
    /// 3: client side of a synchronous request.
    Client,
    /// 4: producer of an asynchronous message.
    Producer,
    /// 5: consumer of an asynchronous message.
    Consumer,
}

impl SpanKind {
    /// The OTLP enum number (0–5).
    pub fn as_i32(self) -> i32 {
        match self {
            Self::Unspecified => 0,
            Self::Internal => 1,
            Self::Server => 2,
            Self::Client => 3,
            Self::Producer => 4,
            Self::Consumer => 5,
        }
    }

    /// From the OTLP enum number; unknown numbers become [`SpanKind::Unspecified`].
    pub fn from_i32(n: i32) -> Self {
        match n {
            1 => Self::Internal,
            2 => Self::Server,
            3 => Self::Client,
            4 => Self::Producer,
            5 => Self::Consumer,
            _ => Self::Unspecified,
        }
    }

    /// The DESIGN.md §4 name: `server|client|internal|producer|consumer`
    /// (unspecified is shown as `internal`, as OTLP allows).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified | Self::Internal => "internal",
            Self::Server => "server",
            Self::Client => "client",
            Self::Producer => "producer",
            Self::Consumer => "consumer",
        }
    }

    /// Parses `server`, `SERVER`, `SPAN_KIND_SERVER`, ... (case-insensitive);
    /// `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        let t = t
            .strip_prefix("SPAN_KIND_")
            .or_else(|| t.strip_prefix("span_kind_"))
            .unwrap_or(t);
        Some(match t.to_ascii_lowercase().as_str() {
            "" | "unspecified" => Self::Unspecified,
            "internal" => Self::Internal,
            "server" => Self::Server,
            "client" => Self::Client,
            "producer" => Self::Producer,
            "consumer" => Self::Consumer,
            _ => return None,
        })
    }
}

/// Span status code (OTLP `Status.code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StatusCode {
    /// 0: unset (also the meaning of an absent status).
    #[default]
    Unset,
    /// 1: explicitly OK.
    Ok,
    /// 2: error.
    Error,
}

impl StatusCode {
    /// The OTLP enum number (0–2).
    pub fn as_i32(self) -> i32 {
        match self {
            Self::Unset => 0,
            Self::Ok => 1,
            Self::Error => 2,
        }
    }

    /// From the OTLP enum number; unknown numbers become [`StatusCode::Unset`].
    pub fn from_i32(n: i32) -> Self {
        match n {
            1 => Self::Ok,
            2 => Self::Error,
            _ => Self::Unset,
        }
    }

    /// `unset|ok|error` (DESIGN.md §4).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unset => "unset",
            Self::Ok => "ok",
            Self::Error => "error",
        }
    }

    /// Parses `ok`, `OK`, `STATUS_CODE_OK`, ... (case-insensitive); `None` otherwise.
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        let t = t
            .strip_prefix("STATUS_CODE_")
            .or_else(|| t.strip_prefix("status_code_"))
            .unwrap_or(t);
        Some(match t.to_ascii_lowercase().as_str() {
            "" | "unset" => Self::Unset,
            "ok" => Self::Ok,
            "error" => Self::Error,
            _ => return None,
        })
    }
}

/// A typed attribute value (OTLP `AnyValue`). Arrays may mix types (OTLP ≥ 1.9 allows it).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum AttrValue {
    /// An empty value (OTLP `AnyValue` with nothing set, JSON `null`).
    #[default]
    Empty,
    /// UTF-8 text.
    String(Text),
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float (may be NaN or infinite).
    Double(f64),
    /// Raw bytes (shown as base64 in JSON, like OTLP JSON).
    Bytes(Vec<u8>),
    /// A list of values.
    Array(Vec<AttrValue>),
    /// A nested list of key/value pairs.
    KvList(Vec<KeyValue>),
}

impl AttrValue {
    /// The value as JSON: strings, booleans and numbers as scalars, arrays as arrays, kvlists
    /// as objects, bytes as base64 text, non-finite doubles as the strings `"NaN"`,
    /// `"Infinity"`, `"-Infinity"`, empty as `null`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Self::Empty => J::Null,
            Self::String(s) => J::String(s.to_string()),
            Self::Bool(b) => J::Bool(*b),
            Self::Int(i) => J::from(*i),
            Self::Double(d) => match serde_json::Number::from_f64(*d) {
                Some(n) => J::Number(n),
                None if d.is_nan() => J::String("NaN".into()),
                None if *d > 0.0 => J::String("Infinity".into()),
                None => J::String("-Infinity".into()),
            },
            Self::Bytes(b) => J::String(base64_encode(b)),
            Self::Array(items) => J::Array(items.iter().map(Self::to_json).collect()),
            Self::KvList(kvs) => J::Object(attributes_to_json(kvs)),
        }
    }

    /// Converts a JSON value: `null` → empty, integers that fit `i64` → int, other numbers →
    /// double, arrays → array, objects → kvlist.
    pub fn from_json(value: &serde_json::Value) -> Self {
        use serde_json::Value as J;
        match value {
            J::Null => Self::Empty,
            J::Bool(b) => Self::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Self::Int(i),
                None => Self::Double(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Self::String(s.as_str().into()),
            J::Array(items) => Self::Array(items.iter().map(Self::from_json).collect()),
            J::Object(map) => Self::KvList(
                map.iter()
                    .map(|(k, v)| KeyValue::new(k.as_str(), Self::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// The string, if this is a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an int, or a string holding an integer.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            Self::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// A key and its value; span, event, link and resource attributes are ordered lists of these.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue {
    /// The attribute key, e.g. `http.response.status_code`.
    pub key: Text,
    /// The typed value.
    pub value: AttrValue,
}

impl KeyValue {
    /// Builds a key/value pair.
    pub fn new(key: impl Into<Text>, value: AttrValue) -> Self {
        Self {
            key: key.into(),
            value,
        }
    }
}

/// Attributes as a JSON object (later keys win on duplicates; keys come out sorted).
pub fn attributes_to_json(kvs: &[KeyValue]) -> serde_json::Map<String, serde_json::Value> {
    kvs.iter()
        .map(|kv| (kv.key.to_string(), kv.value.to_json()))
        .collect()
}

/// Looks up the first attribute with `key`.
pub fn find_attribute<'a>(kvs: &'a [KeyValue], key: &str) -> Option<&'a AttrValue> {
    kvs.iter().find(|kv| kv.key == key).map(|kv| &kv.value)
}

/// Status of a span: code plus message (the message is meaningful for errors).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Status {
    /// The status code.
    pub code: StatusCode,
    /// Developer-facing message (may be empty).
    pub message: String,
}

/// A timestamped annotation on a span (OTLP `Span.Event`).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Time of the event, unix nanoseconds.
    pub time_unix_nano: u64,
    /// Event name, e.g. `exception`.
    pub name: String,
    /// Event attributes, e.g. `exception.type`.
    pub attributes: Vec<KeyValue>,
}

/// A link to a span in the same or another trace (OTLP `Span.Link`).
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// Trace of the linked span.
    pub trace_id: TraceId,
    /// The linked span.
    pub span_id: SpanId,
    /// W3C `tracestate` of the link (may be empty).
    pub trace_state: String,
    /// Link attributes.
    pub attributes: Vec<KeyValue>,
}

/// The entity that produced spans (OTLP `Resource`), shared by the spans of a batch.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resource {
    /// Resource attributes, e.g. `service.name`, `host.name`.
    pub attributes: Vec<KeyValue>,
}

impl Resource {
    /// `service.name` if it is a non-empty string, else [`UNKNOWN_SERVICE`].
    pub fn service_name(&self) -> &str {
        match find_attribute(&self.attributes, "service.name") {
            Some(AttrValue::String(s)) if !s.trim().is_empty() => s,
            _ => UNKNOWN_SERVICE,
        }
    }
}

/// The instrumentation scope (library) that produced spans (OTLP `InstrumentationScope`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scope {
    /// Scope name, e.g. `tracekit`.
    pub name: String,
    /// Scope version (may be empty).
    pub version: String,
}

/// One span: the internal representation every ingest format produces and every store keeps.
///
/// Identity for storage is `(trace_id, span_id, kind)` (reliability.md §6 C5: Zipkin shared
/// spans reuse the client's id for the server span, so kind is part of the key).
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// Trace this span belongs to.
    pub trace_id: TraceId,
    /// This span's id.
    pub span_id: SpanId,
    /// Parent span id; `None` for a root span.
    pub parent_span_id: Option<SpanId>,
    /// W3C `tracestate` (may be empty).
    pub trace_state: String,
    /// OTLP `Span.flags` (W3C trace flags in bits 0–7, is-remote bits 8–9).
    pub flags: u32,
    /// Span name (never empty after [`sanitize`](crate::sanitize::sanitize)).
    pub name: Text,
    /// Span kind.
    pub kind: SpanKind,
    /// Start time, unix nanoseconds.
    pub start_time_unix_nano: u64,
    /// End time, unix nanoseconds (never before the start after [`sanitize`](crate::sanitize::sanitize)).
    pub end_time_unix_nano: u64,
    /// Status code and message.
    pub status: Status,
    /// Span attributes, in arrival order.
    pub attributes: Vec<KeyValue>,
    /// Events, in arrival order.
    pub events: Vec<Event>,
    /// Links, in arrival order.
    pub links: Vec<Link>,
    /// Attributes the sender dropped (OTLP `dropped_attributes_count`) plus ours.
    pub dropped_attributes_count: u32,
    /// Events the sender dropped plus ours.
    pub dropped_events_count: u32,
    /// Links the sender dropped plus ours.
    pub dropped_links_count: u32,
    /// The producing resource (shared by the spans of one batch).
    pub resource: Arc<Resource>,
    /// The instrumentation scope (shared by the spans of one scope).
    pub scope: Arc<Scope>,
    /// `service.name` of the resource, or [`UNKNOWN_SERVICE`].
    pub service_name: Text,
    /// What the collector changed on the way in (clamped times, truncated values, ...).
    pub warnings: Vec<String>,
}

impl Span {
    /// A minimal span with the given ids and name, no attributes, service
    /// [`UNKNOWN_SERVICE`] and zero times; callers fill in the rest.
    pub fn new(trace_id: TraceId, span_id: SpanId, name: impl Into<Text>) -> Self {
        Self {
            trace_id,
            span_id,
            parent_span_id: None,
            trace_state: String::new(),
            flags: 0,
            name: name.into(),
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
            resource: Arc::new(Resource::default()),
            scope: Arc::new(Scope::default()),
            service_name: Text::const_new(UNKNOWN_SERVICE),
            warnings: Vec::new(),
        }
    }

    /// `end - start` in nanoseconds (0 if the end is before the start).
    pub fn duration_ns(&self) -> u64 {
        self.end_time_unix_nano
            .saturating_sub(self.start_time_unix_nano)
    }

    /// True when the status code is error.
    pub fn is_error(&self) -> bool {
        self.status.code == StatusCode::Error
    }

    /// The HTTP status of the exchange: `http.response.status_code` (semantic conventions),
    /// or the older `http.status_code`; an integer or a numeric string.
    pub fn http_status(&self) -> Option<i64> {
        ["http.response.status_code", "http.status_code"]
            .iter()
            .find_map(|key| match find_attribute(&self.attributes, key)? {
                AttrValue::Int(n) => Some(*n),
                AttrValue::String(v) => v.trim().parse().ok(),
                _ => None,
            })
    }
}

/// Standard base64 (RFC 4648, with padding), as OTLP JSON uses for `bytesValue`.
pub fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_and_print_lowercase_hex() {
        let t = TraceId::from_hex("4BF92F3577B34DA6A3CE929D0E0E4736").unwrap();
        assert_eq!(t.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            TraceId::from_hex("00000000000000000000000000000000"),
            Err(IdError::AllZero)
        );
        assert!(matches!(
            TraceId::from_hex("abc"),
            Err(IdError::Length { .. })
        ));
        assert_eq!(SpanId::from_hex("00f067aa0ba902bz"), Err(IdError::NotHex));
        assert!(SpanId::from_slice(&[1, 2, 3]).is_err());
        assert_eq!(
            SpanId::from_slice(&[0, 0, 0, 0, 0, 0, 0, 1])
                .unwrap()
                .to_hex(),
            "0000000000000001"
        );
    }

    #[test]
    fn kind_and_status_parse_all_spellings() {
        assert_eq!(SpanKind::parse("SPAN_KIND_SERVER"), Some(SpanKind::Server));
        assert_eq!(SpanKind::parse("client"), Some(SpanKind::Client));
        assert_eq!(SpanKind::parse("bogus"), None);
        assert_eq!(
            StatusCode::parse("STATUS_CODE_ERROR"),
            Some(StatusCode::Error)
        );
        assert_eq!(StatusCode::parse("Ok"), Some(StatusCode::Ok));
        assert_eq!(SpanKind::Unspecified.as_str(), "internal");
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn attr_json_round_trip() {
        let json = serde_json::json!({"a": 1, "b": [true, 1.5, "x"], "c": {"d": null}});
        let v = AttrValue::from_json(&json);
        assert_eq!(v.to_json(), json);
        assert_eq!(AttrValue::Double(f64::NAN).to_json(), "NaN");
    }
}
