//! # Input rules every format shares (reliability.md §7.2 O10–O14)
//!
//! Every decoder runs [`sanitize`] on each span it accepts (and [`sanitize_resource`],
//! [`sanitize_scope`] once per resource and scope): empty names and services get a
//! placeholder, an end before the start is clamped, suspicious start times are flagged, and
//! names, values and lists are bounded by [`SpanLimits`]. Every change is recorded in
//! `Span::warnings`, which the ingest answer reports through OTLP partial success.

use crate::model::{AttrValue, KeyValue, Resource, Scope, Span, UNKNOWN_SERVICE};

/// Span name used when a span arrives with an empty name (reliability.md §7.2 O14).
pub const EMPTY_SPAN_NAME: &str = "<empty-span-name>";

/// Size limits applied to every incoming span (reliability.md §7.2 O10, O11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanLimits {
    /// Longest span name, event name or status message kept, in bytes.
    pub max_name_bytes: usize,
    /// Longest string (or bytes) attribute value kept, in bytes; longer values are truncated.
    pub max_attribute_value_bytes: usize,
    /// Most attributes kept per span, event, link or resource.
    pub max_attributes: usize,
    /// Most events kept per span.
    pub max_events: usize,
    /// Most links kept per span.
    pub max_links: usize,
}

impl Default for SpanLimits {
    fn default() -> Self {
        Self {
            max_name_bytes: 1024,
            max_attribute_value_bytes: 8 * 1024,
            max_attributes: 128,
            max_events: 128,
            max_links: 128,
        }
    }
}

/// Start times further in the future than this are flagged (reliability.md §7.2 O13), ns.
const FUTURE_TOLERANCE_NS: u64 = 24 * 3600 * 1_000_000_000;

/// Applies the shared input rules to one span, recording each change in `span.warnings`:
///
/// - a start time of 0, or more than a day in the future, is kept and flagged (O13);
/// - empty name → [`EMPTY_SPAN_NAME`]; empty service → [`UNKNOWN_SERVICE`] (O14);
/// - end before start → end clamped to start, duration 0 (O12);
/// - names, messages and string/bytes values truncated to the limits on a UTF-8 boundary,
///   attribute/event/link lists capped, dropped counts incremented (O10, O11).
pub fn sanitize(span: &mut Span, limits: &SpanLimits) {
    if span.name.trim().is_empty() {
        span.name = EMPTY_SPAN_NAME.into();
    }
    if span.service_name.trim().is_empty() {
        span.service_name = UNKNOWN_SERVICE.into();
    }
    if span.start_time_unix_nano == 0 {
        span.warnings
            .push("start time is 0 (not set by the sender)".to_owned());
    } else if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        let now_ns = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        if span.start_time_unix_nano > now_ns.saturating_add(FUTURE_TOLERANCE_NS) {
            span.warnings.push(
                "start time is more than 1 day in the future (clock skew?); kept as sent"
                    .to_owned(),
            );
        }
    }
    if span.end_time_unix_nano < span.start_time_unix_nano {
        span.warnings.push(format!(
            "end time before start time by {} ns; duration clamped to 0",
            span.start_time_unix_nano - span.end_time_unix_nano
        ));
        span.end_time_unix_nano = span.start_time_unix_nano;
    }
    let mut truncated = 0usize;
    truncated += truncate_string(&mut span.name, limits.max_name_bytes);
    truncated += truncate_string(&mut span.service_name, limits.max_name_bytes);
    truncated += truncate_string(&mut span.trace_state, limits.max_name_bytes);
    truncated += truncate_string(&mut span.status.message, limits.max_name_bytes);
    let dropped = cap_attributes(&mut span.attributes, limits, &mut truncated);
    span.dropped_attributes_count = span.dropped_attributes_count.saturating_add(dropped);
    let extra = cap_list(
        &mut span.events,
        limits.max_events,
        "events",
        &mut span.warnings,
    );
    span.dropped_events_count = span.dropped_events_count.saturating_add(extra);
    for event in &mut span.events {
        truncated += truncate_string(&mut event.name, limits.max_name_bytes);
        cap_attributes(&mut event.attributes, limits, &mut truncated);
    }
    let extra = cap_list(
        &mut span.links,
        limits.max_links,
        "links",
        &mut span.warnings,
    );
    span.dropped_links_count = span.dropped_links_count.saturating_add(extra);
    for link in &mut span.links {
        cap_attributes(&mut link.attributes, limits, &mut truncated);
    }
    if dropped > 0 {
        span.warnings.push(format!(
            "{dropped} attributes dropped (limit {})",
            limits.max_attributes
        ));
    }
    if truncated > 0 {
        span.warnings.push(format!(
            "{truncated} values truncated (limit {} bytes)",
            limits.max_attribute_value_bytes
        ));
    }
}

/// Applies the attribute limits to a resource; returns how many values were changed.
pub fn sanitize_resource(resource: &mut Resource, limits: &SpanLimits) -> usize {
    let mut truncated = 0;
    let dropped = cap_attributes(&mut resource.attributes, limits, &mut truncated);
    truncated + dropped as usize
}

/// Applies the name limit to a scope's name and version.
pub fn sanitize_scope(scope: &mut Scope, limits: &SpanLimits) {
    truncate_string(&mut scope.name, limits.max_name_bytes);
    truncate_string(&mut scope.version, limits.max_name_bytes);
}

/// Keeps the first `max` of `items`; for the rest, a warning (`"<n> <what> dropped (limit
/// <max>)"`) and their number, saturated, as the answer.
fn cap_list<T>(items: &mut Vec<T>, max: usize, what: &str, warnings: &mut Vec<String>) -> u32 {
    if items.len() <= max {
        return 0;
    }
    let extra = items.len() - max;
    items.truncate(max);
    warnings.push(format!("{extra} {what} dropped (limit {max})"));
    saturate(extra)
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Caps the list length and truncates values; returns the number of dropped attributes.
fn cap_attributes(kvs: &mut Vec<KeyValue>, limits: &SpanLimits, truncated: &mut usize) -> u32 {
    let mut dropped = 0;
    if kvs.len() > limits.max_attributes {
        dropped = saturate(kvs.len() - limits.max_attributes);
        kvs.truncate(limits.max_attributes);
    }
    for kv in kvs.iter_mut() {
        *truncated += truncate_string(&mut kv.key, limits.max_name_bytes);
        *truncated += truncate_value(&mut kv.value, limits, 0);
    }
    dropped
}

fn truncate_value(value: &mut AttrValue, limits: &SpanLimits, depth: usize) -> usize {
    match value {
        AttrValue::String(s) => truncate_string(s, limits.max_attribute_value_bytes),
        AttrValue::Bytes(b) if b.len() > limits.max_attribute_value_bytes => {
            b.truncate(limits.max_attribute_value_bytes);
            1
        }
        AttrValue::Array(items) => {
            let mut n = 0;
            if items.len() > limits.max_attributes {
                items.truncate(limits.max_attributes);
                n += 1;
            }
            for item in items.iter_mut() {
                n += truncate_value(item, limits, depth + 1);
            }
            n
        }
        AttrValue::KvList(kvs) => {
            let mut n = 0;
            let dropped = cap_attributes_nested(kvs, limits, &mut n, depth + 1);
            n + usize::from(dropped)
        }
        _ => 0,
    }
}

fn cap_attributes_nested(
    kvs: &mut Vec<KeyValue>,
    limits: &SpanLimits,
    truncated: &mut usize,
    depth: usize,
) -> bool {
    let dropped = kvs.len() > limits.max_attributes;
    kvs.truncate(limits.max_attributes);
    for kv in kvs.iter_mut() {
        *truncated += truncate_string(&mut kv.key, limits.max_name_bytes);
        *truncated += truncate_value(&mut kv.value, limits, depth);
    }
    dropped
}

/// Truncates `s` to at most `max_bytes` on a char boundary; returns 1 if it changed.
pub(crate) fn truncate_string(s: &mut impl Truncate, max_bytes: usize) -> usize {
    if s.len() <= max_bytes {
        return 0;
    }
    let mut cut = max_bytes;
    while cut > 0 && !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate_to(cut);
    1
}

/// Text that [`truncate_string`] can cut: `String` and the model's [`Text`](crate::model::Text).
pub(crate) trait Truncate: std::ops::Deref<Target = str> {
    /// Keeps the first `len` bytes (`len` on a char boundary).
    fn truncate_to(&mut self, len: usize);
}

impl Truncate for String {
    fn truncate_to(&mut self, len: usize) {
        self.truncate(len);
    }
}

impl Truncate for crate::model::Text {
    fn truncate_to(&mut self, len: usize) {
        self.truncate(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SpanId, TraceId};

    #[test]
    fn sanitize_clamps_and_truncates() {
        let mut s = Span::new(
            TraceId::from_hex("0102030405060708090a0b0c0d0e0f10").unwrap(),
            SpanId::from_hex("0102030405060708").unwrap(),
            "",
        );
        s.start_time_unix_nano = 10;
        s.end_time_unix_nano = 5;
        s.attributes.push(KeyValue::new(
            "big",
            AttrValue::String("é".repeat(10).into()),
        ));
        let limits = SpanLimits {
            max_attribute_value_bytes: 5,
            ..SpanLimits::default()
        };
        sanitize(&mut s, &limits);
        assert_eq!(s.name, EMPTY_SPAN_NAME);
        assert_eq!(s.duration_ns(), 0);
        assert_eq!(s.attributes[0].value, AttrValue::String("éé".into()));
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
    }
}
