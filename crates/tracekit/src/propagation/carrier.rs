//! Propagation over any carrier: the [`Injector`]/[`Extractor`] pair (the OpenTelemetry
//! propagators API's "carrier" with its `Set`, `Get` and `GetAll` operations), so message
//! headers, string maps or a queue's properties carry `traceparent`, `tracestate` and
//! `baggage` as an [`http::HeaderMap`] does.
//!
//! Extraction treats names case-insensitively (the API spec asks `Get` to be
//! case-insensitive for HTTP-like carriers; message headers keep whatever case a producer
//! wrote). The rules are the same as on a header map: exactly one valid `traceparent` or
//! none; `tracestate` read only with a valid `traceparent`; every line of a list header
//! combined in order under the same caps.
//!
//! # Examples
//! ```
//! use std::collections::HashMap;
//! use tracekit::propagation::{Baggage, Propagator};
//!
//! let mut carrier: HashMap<String, String> = HashMap::new();
//! carrier.insert("TraceParent".into(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
//! let extracted = Propagator::default().extract_from(&carrier);
//! let parent = extracted.parent.expect("case-insensitive");
//!
//! let mut out: Vec<(String, String)> = Vec::new();
//! Propagator::default().inject_into(&parent, &Baggage::default(), &mut out);
//! assert_eq!(out[0].0, "traceparent");
//! ```

use std::collections::{BTreeMap, HashMap};

use http::HeaderMap;

use super::{BAGGAGE, Baggage, Extracted, Propagator, TRACEPARENT, TRACESTATE, TraceState};
use super::{ExtractError, format_traceparent, parse_traceparent_bytes};
use crate::span_context::SpanContext;

/// A carrier propagation headers are written to (the API's `Set`).
pub trait Injector {
    /// Sets `name` to `value`, replacing every value `name` had. `name` is one of the
    /// lowercase propagation header names.
    fn set(&mut self, name: &str, value: &str);

    /// Removes every value of `name` (so an emptied baggage leaves no stale header).
    fn remove(&mut self, name: &str);
}

/// A carrier propagation headers are read from (the API's `Get`/`GetAll`).
pub trait Extractor {
    /// Every value of `name`, compared ignoring ASCII case, in the carrier's order. `name`
    /// is one of the lowercase propagation header names.
    fn get_all(&self, name: &str) -> Vec<&[u8]>;
}

impl Propagator {
    /// [`Propagator::extract`] over any [`Extractor`]: the same rules, names compared
    /// ignoring case. Never fails.
    pub fn extract_from<E: Extractor + ?Sized>(&self, carrier: &E) -> Extracted {
        let parent = if self.trace_context() {
            trace_context_from_carrier(carrier).ok().flatten()
        } else {
            None
        };
        let baggage = if self.baggage() {
            let lines = carrier.get_all(BAGGAGE.as_str());
            if lines.is_empty() {
                Baggage::default()
            } else {
                Baggage::parse_lines(lines.into_iter())
            }
        } else {
            Baggage::default()
        };
        Extracted { parent, baggage }
    }

    /// [`Propagator::inject`] over any [`Injector`]: one `traceparent` for a valid `cx`,
    /// `tracestate` only when non-empty, `baggage` only when non-empty; stale values of a
    /// header this propagator owns are removed.
    pub fn inject_into<I: Injector + ?Sized>(
        &self,
        cx: &SpanContext,
        baggage: &Baggage,
        carrier: &mut I,
    ) {
        if self.trace_context() {
            if cx.trace_id.is_valid() && cx.span_id.is_valid() {
                set_value(carrier, TRACEPARENT.as_str(), &format_traceparent(cx));
                match cx.trace_state.header_value() {
                    Some(v) => set_value(carrier, TRACESTATE.as_str(), &v),
                    None => carrier.remove(TRACESTATE.as_str()),
                }
            } else {
                carrier.remove(TRACEPARENT.as_str());
                carrier.remove(TRACESTATE.as_str());
            }
        }
        if self.baggage() {
            match baggage.header_value() {
                Some(v) => set_value(carrier, BAGGAGE.as_str(), &v),
                None => carrier.remove(BAGGAGE.as_str()),
            }
        }
    }
}

/// [`extract_trace_context`](super::extract_trace_context) over any [`Extractor`].
///
/// # Errors
/// [`ExtractError::Duplicated`] for more than one `traceparent` value, or
/// [`ExtractError::Invalid`] for an invalid one.
pub fn extract_trace_context_from<E: Extractor + ?Sized>(
    carrier: &E,
) -> Result<Option<SpanContext>, ExtractError> {
    trace_context_from_carrier(carrier)
}

fn trace_context_from_carrier<E: Extractor + ?Sized>(
    carrier: &E,
) -> Result<Option<SpanContext>, ExtractError> {
    let lines = carrier.get_all(TRACEPARENT.as_str());
    let line = match lines.as_slice() {
        [] => return Ok(None),
        [one] => *one,
        _ => return Err(ExtractError::Duplicated),
    };
    let parsed = parse_traceparent_bytes(line)?;
    let states = carrier.get_all(TRACESTATE.as_str());
    let trace_state = if states.is_empty() {
        TraceState::default()
    } else {
        TraceState::parse_lines(states.into_iter())
    };
    Ok(Some(parsed.into_remote_context(trace_state)))
}

/// Writes a header value built by the parsers' formatters (always visible ASCII).
fn set_value<I: Injector + ?Sized>(carrier: &mut I, name: &str, value: &http::HeaderValue) {
    if let Ok(v) = value.to_str() {
        carrier.set(name, v);
    }
}

impl Injector for HeaderMap {
    fn set(&mut self, name: &str, value: &str) {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            self.insert(n, v);
        }
    }

    fn remove(&mut self, name: &str) {
        HeaderMap::remove(self, name);
    }
}

impl Extractor for HeaderMap {
    fn get_all(&self, name: &str) -> Vec<&[u8]> {
        // `HeaderMap` names are lowercase already.
        HeaderMap::get_all(self, name)
            .iter()
            .map(http::HeaderValue::as_bytes)
            .collect()
    }
}

/// A list of `(name, value)` pairs, e.g. a queue's message properties.
impl Injector for Vec<(String, String)> {
    fn set(&mut self, name: &str, value: &str) {
        Injector::remove(self, name);
        self.push((name.to_owned(), value.to_owned()));
    }

    fn remove(&mut self, name: &str) {
        self.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }
}

impl Extractor for Vec<(String, String)> {
    fn get_all(&self, name: &str) -> Vec<&[u8]> {
        self.iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
            .collect()
    }
}

/// Both string maps: names compared ignoring case on every operation.
macro_rules! string_map_carrier {
    ([$($generics:tt)*] $map:ty) => {
        impl<$($generics)*> Injector for $map {
            fn set(&mut self, name: &str, value: &str) {
                Injector::remove(self, name);
                self.insert(name.to_owned(), value.to_owned());
            }

            fn remove(&mut self, name: &str) {
                self.retain(|n, _| !n.eq_ignore_ascii_case(name));
            }
        }

        impl<$($generics)*> Extractor for $map {
            fn get_all(&self, name: &str) -> Vec<&[u8]> {
                self.iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_bytes())
                    .collect()
            }
        }
    };
}

string_map_carrier!([S: std::hash::BuildHasher] HashMap<String, String, S>);
string_map_carrier!([] BTreeMap<String, String>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{SpanId, TraceFlags, TraceId};

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn cx() -> SpanContext {
        SpanContext {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            trace_flags: TraceFlags::SAMPLED,
            trace_state: TraceState::default().insert("congo", "t61").unwrap(),
            is_remote: false,
        }
    }

    #[test]
    fn round_trip_through_a_pair_list_keeps_context_state_and_baggage() {
        let sent = cx();
        let baggage = Baggage::default().insert("sim.fail.payment", "1").unwrap();
        let mut carrier: Vec<(String, String)> = Vec::new();
        Propagator::default().inject_into(&sent, &baggage, &mut carrier);
        let got = Propagator::default().extract_from(&carrier);
        let parent = got.parent.unwrap();
        assert_eq!(
            (parent.trace_id, parent.span_id),
            (sent.trace_id, sent.span_id)
        );
        assert!(parent.is_remote);
        assert_eq!(parent.trace_state.get("congo"), Some("t61"));
        assert_eq!(got.baggage.get("sim.fail.payment"), Some("1"));
    }

    #[test]
    fn extraction_ignores_the_case_of_header_names() {
        let mut carrier: HashMap<String, String> = HashMap::new();
        carrier.insert("TRACEPARENT".into(), TP.into());
        carrier.insert("TraceState".into(), "a=b".into());
        carrier.insert("Baggage".into(), "k=v".into());
        let got = Propagator::default().extract_from(&carrier);
        let parent = got.parent.unwrap();
        assert_eq!(parent.trace_state.get("a"), Some("b"));
        assert_eq!(got.baggage.get("k"), Some("v"));
    }

    #[test]
    fn two_traceparents_differing_only_in_case_are_a_duplicate() {
        let carrier = vec![
            ("traceparent".to_owned(), TP.to_owned()),
            ("TraceParent".to_owned(), TP.to_owned()),
        ];
        assert_eq!(
            extract_trace_context_from(&carrier),
            Err(ExtractError::Duplicated)
        );
        assert!(
            Propagator::default()
                .extract_from(&carrier)
                .parent
                .is_none()
        );
    }

    #[test]
    fn an_invalid_traceparent_drops_the_tracestate_but_not_the_baggage() {
        let mut carrier = BTreeMap::new();
        carrier.insert("traceparent".to_owned(), "00-zz".to_owned());
        carrier.insert("tracestate".to_owned(), "a=b".to_owned());
        carrier.insert("baggage".to_owned(), "k=v".to_owned());
        let got = Propagator::default().extract_from(&carrier);
        assert!(got.parent.is_none());
        assert_eq!(got.baggage.get("k"), Some("v"));
    }

    #[test]
    fn injecting_replaces_stale_values_whatever_their_case() {
        let mut carrier = vec![
            ("TraceParent".to_owned(), TP.to_owned()),
            ("BAGGAGE".to_owned(), "old=1".to_owned()),
        ];
        let sent = cx();
        Propagator::default().inject_into(&sent, &Baggage::default(), &mut carrier);
        let names: Vec<&str> = carrier.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["traceparent", "tracestate"]);
        assert!(carrier[0].1.contains(&sent.span_id.to_string()));
    }

    #[test]
    fn a_header_map_carrier_agrees_with_the_header_map_api() {
        let sent = cx();
        let mut via_trait = HeaderMap::new();
        Propagator::default().inject_into(&sent, &Baggage::default(), &mut via_trait);
        let mut direct = HeaderMap::new();
        Propagator::default().inject(&sent, &Baggage::default(), &mut direct);
        assert_eq!(via_trait, direct);
        assert_eq!(
            Propagator::default().extract_from(&via_trait),
            Propagator::default().extract(&direct)
        );
    }
}
