//! The resource: the entity producing spans (OpenTelemetry resource semantic conventions).
//!
//! Built once per process: `service.name`, `service.version`, `service.instance.id`,
//! `telemetry.sdk.name`, `telemetry.sdk.language`, `telemetry.sdk.version`, plus anything
//! from `OTEL_RESOURCE_ATTRIBUTES`. `OTEL_SERVICE_NAME` wins over a `service.name` given there.

use std::borrow::Cow;
use std::sync::Arc;

use crate::span::{KeyValue, Value};

/// Attributes describing the process that produces spans. Cheap to clone.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    attributes: Arc<[KeyValue]>,
}

impl Resource {
    /// A resource for `service_name` with the SDK attributes, a random `service.instance.id`
    /// and `extra` attributes (a key given twice keeps its last value; `service.name` in
    /// `extra` is ignored in favour of `service_name`).
    pub fn new(
        service_name: impl Into<Cow<'static, str>>,
        service_version: Option<&str>,
        extra: impl IntoIterator<Item = KeyValue>,
    ) -> Resource {
        let mut attrs: Vec<KeyValue> = vec![
            KeyValue::new("service.name", Value::Str(service_name.into())),
            KeyValue::new(
                "service.instance.id",
                format!("{:032x}", fastrand::u128(..)),
            ),
            KeyValue::new("telemetry.sdk.name", "tracekit"),
            KeyValue::new("telemetry.sdk.language", "rust"),
            KeyValue::new("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
        ];
        if let Some(v) = service_version {
            attrs.push(KeyValue::new("service.version", v.to_owned()));
        }
        for kv in extra {
            if kv.key == "service.name" {
                continue;
            }
            match attrs.iter_mut().find(|a| a.key == kv.key) {
                Some(existing) => existing.value = kv.value,
                None => attrs.push(kv),
            }
        }
        Resource {
            attributes: attrs.into(),
        }
    }

    /// Parses `OTEL_RESOURCE_ATTRIBUTES`: `key1=value1,key2=value2`, values percent-decoded,
    /// surrounding spaces trimmed. Malformed members (no `=`, empty key) are skipped and
    /// returned as the second element so the caller can report them.
    pub fn parse_env_attributes(value: &str) -> (Vec<KeyValue>, Vec<String>) {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for member in value.split(',') {
            let member = member.trim();
            if member.is_empty() {
                continue;
            }
            match member.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    ok.push(KeyValue::new(k.trim().to_owned(), percent_decode(v.trim())))
                }
                _ => bad.push(member.to_owned()),
            }
        }
        (ok, bad)
    }

    /// The attributes, `service.name` first.
    pub fn attributes(&self) -> &[KeyValue] {
        &self.attributes
    }

    /// The `service.name` value.
    pub fn service_name(&self) -> &str {
        match self.attributes.first().map(|kv| &kv.value) {
            Some(Value::Str(s)) => s,
            _ => "unknown_service",
        }
    }
}

/// Decodes `%XX` escapes; a malformed escape is kept literally. Invalid UTF-8 becomes U+FFFD.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_name_wins_and_env_attributes_apply() {
        let (extra, bad) = Resource::parse_env_attributes(
            "service.name=ignored, deployment.environment.name=dev%20box,broken,=x",
        );
        assert_eq!(bad, vec!["broken".to_owned(), "=x".to_owned()]);
        let r = Resource::new("order", Some("1.2.3"), extra);
        assert_eq!(r.service_name(), "order");
        let get = |k: &str| {
            r.attributes()
                .iter()
                .find(|kv| kv.key == k)
                .map(|kv| kv.value.clone())
        };
        assert_eq!(
            get("deployment.environment.name"),
            Some(Value::from("dev box".to_owned()))
        );
        assert_eq!(
            get("service.version"),
            Some(Value::from("1.2.3".to_owned()))
        );
        assert_eq!(get("telemetry.sdk.language"), Some(Value::from("rust")));
        assert!(get("service.instance.id").is_some());
    }
}
