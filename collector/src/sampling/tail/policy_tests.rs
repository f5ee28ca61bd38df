//! Tests of the tail sampling policies.

use super::*;
use crate::model::{SpanKind, Status};
use crate::testing::{span, trace_id};

fn policy(yaml: &str) -> Policy {
    let c: PolicyConfig = serde_yaml::from_str(yaml).unwrap();
    Policy::compile(&c).unwrap()
}

/// A two-span trace: root of `duration_ms`, a child with `status` and attributes.
fn trace(seed: u8, duration_ms: f64, status: StatusCode, attrs: Vec<KeyValue>) -> Vec<Span> {
    let t = trace_id(seed);
    let root = span(
        t,
        1,
        None,
        "frontend",
        "POST /orders",
        SpanKind::Server,
        0.0,
        duration_ms,
    );
    let mut child = span(t, 2, Some(1), "order", "INSERT", SpanKind::Client, 1.0, 1.0);
    child.status = Status {
        code: status,
        message: String::new(),
    };
    child.attributes = attrs;
    vec![root, child]
}

fn verdict(p: &Policy, spans: &[Span]) -> Verdict {
    p.evaluate(&TraceView::new(spans[0].trace_id, spans), 1)
}

fn kv(key: &str, value: AttrValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value,
    }
}

#[test]
fn status_latency_and_always() {
    let errors = policy("{name: e, type: status_code, status_code: {status_codes: [ERROR]}}");
    assert!(verdict(&errors, &trace(1, 5.0, StatusCode::Error, vec![])).keeps());
    assert!(!verdict(&errors, &trace(1, 5.0, StatusCode::Ok, vec![])).keeps());
    let slow = policy("{name: s, type: latency, latency: {threshold_ms: 500}}");
    assert!(verdict(&slow, &trace(1, 500.0, StatusCode::Unset, vec![])).keeps());
    assert!(!verdict(&slow, &trace(1, 499.0, StatusCode::Unset, vec![])).keeps());
    let band =
        policy("{name: b, type: latency, latency: {threshold_ms: 100, upper_threshold_ms: 200}}");
    assert!(!verdict(&band, &trace(1, 300.0, StatusCode::Unset, vec![])).keeps());
    let always = policy("{name: a, type: always_sample}");
    assert!(verdict(&always, &trace(1, 1.0, StatusCode::Unset, vec![])).keeps());
}

#[test]
fn probabilistic_is_by_trace_id_and_near_its_percentage() {
    let p = policy("{name: p, type: probabilistic, probabilistic: {sampling_percentage: 20}}");
    let mut kept = 0;
    for i in 0..20_000u32 {
        let spans = trace(0, 1.0, StatusCode::Unset, vec![]);
        let id = TraceId(
            u128::from(i)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
                .to_be_bytes(),
        );
        let v = p.evaluate(&TraceView::new(id, &spans), 1);
        assert_eq!(
            v,
            p.evaluate(&TraceView::new(id, &spans), 9),
            "same id, same answer"
        );
        kept += usize::from(v.keeps());
    }
    // 20k at p=0.2: mean 4000, sd ~57; six sigma.
    assert!((3_660..=4_340).contains(&kept), "{kept}");
    let none = policy("{name: p, type: probabilistic, probabilistic: {sampling_percentage: 0}}");
    assert!(!verdict(&none, &trace(1, 1.0, StatusCode::Unset, vec![])).keeps());
}

#[test]
fn rate_limiting_spends_spans_per_second() {
    let p = policy("{name: r, type: rate_limiting, rate_limiting: {spans_per_second: 5}}");
    let t = trace(1, 1.0, StatusCode::Unset, vec![]);
    let view = TraceView::new(t[0].trace_id, &t);
    let kept: Vec<bool> = (0..4).map(|_| p.evaluate(&view, 7).keeps()).collect();
    assert_eq!(
        kept,
        [true, true, false, false],
        "2 spans each, 5 per second"
    );
    assert!(p.evaluate(&view, 8).keeps(), "a new second, a new budget");
}

#[test]
fn attributes_with_inversion_and_regexes() {
    let route = policy(
        "{name: r, type: string_attribute, string_attribute: {key: http.route, values: ['/orders.*'], enabled_regex_matching: true}}",
    );
    let t = trace(
        1,
        1.0,
        StatusCode::Unset,
        vec![kv("http.route", AttrValue::String("/orders/{id}".into()))],
    );
    assert_eq!(verdict(&route, &t), Verdict::Sampled);
    let not_health = policy(
        "{name: h, type: string_attribute, string_attribute: {key: http.route, values: [/healthz], invert_match: true}}",
    );
    let health = trace(
        2,
        1.0,
        StatusCode::Unset,
        vec![kv("http.route", AttrValue::String("/healthz".into()))],
    );
    assert_eq!(verdict(&not_health, &health), Verdict::InvertNotSampled);
    assert_eq!(verdict(&not_health, &t), Verdict::InvertSampled);
    let status5xx = policy(
        "{name: n, type: numeric_attribute, numeric_attribute: {key: http.response.status_code, min_value: 500, max_value: 599}}",
    );
    let failed = trace(
        3,
        1.0,
        StatusCode::Unset,
        vec![kv("http.response.status_code", AttrValue::Int(502))],
    );
    assert!(verdict(&status5xx, &failed).keeps());
    assert!(!verdict(&status5xx, &t).keeps());
    // Resource attributes count too.
    let env = policy(
        "{name: e, type: string_attribute, string_attribute: {key: service.name, values: [order]}}",
    );
    assert!(verdict(&env, &t).keeps());
    let flag =
        policy("{name: f, type: boolean_attribute, boolean_attribute: {key: retry, value: true}}");
    let retried = trace(
        4,
        1.0,
        StatusCode::Unset,
        vec![kv("retry", AttrValue::Bool(true))],
    );
    assert!(verdict(&flag, &retried).keeps());
    assert!(!verdict(&flag, &t).keeps());
}

#[test]
fn and_composite_and_combination() {
    let both = policy(
        "name: slow-errors
type: and
and: {and_sub_policy: [
  {name: e, type: status_code, status_code: {status_codes: [ERROR]}},
  {name: s, type: latency, latency: {threshold_ms: 100}}]}",
    );
    assert!(verdict(&both, &trace(1, 150.0, StatusCode::Error, vec![])).keeps());
    assert!(!verdict(&both, &trace(1, 50.0, StatusCode::Error, vec![])).keeps());
    let composite = policy(
        "name: c
type: composite
composite:
  max_total_spans_per_second: 10
  policy_order: [errors, everything]
  composite_sub_policy:
    - {name: everything, type: always_sample}
    - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
  rate_allocation:
    - {policy: errors, percent: 60}",
    );
    let err = trace(1, 1.0, StatusCode::Error, vec![]);
    let view = TraceView::new(err[0].trace_id, &err);
    // errors: 6 spans/s (3 traces); then everything: 4 spans/s (2 more traces).
    let kept = (0..8)
        .filter(|_| composite.evaluate(&view, 1).keeps())
        .count();
    assert_eq!(kept, 5);
    use Verdict::*;
    assert_eq!(combine(&[NotSampled, Sampled, InvertSampled]), Some(1));
    assert_eq!(combine(&[Sampled, InvertNotSampled]), None);
    assert_eq!(combine(&[NotSampled]), None);
}

#[test]
fn bad_policies_and_durations_are_refused() {
    for bad in [
        "{name: x, type: ottl_condition}",
        "{name: x, type: latency}",
        "{name: x, type: probabilistic, probabilistic: {sampling_percentage: 120}}",
        "{name: x, type: status_code, status_code: {status_codes: [BROKEN]}}",
        "{name: x, type: string_attribute, string_attribute: {key: k, values: ['('], enabled_regex_matching: true}}",
        "{name: x, type: composite, composite: {max_total_spans_per_second: 1, policy_order: [y], composite_sub_policy: []}}",
    ] {
        let c: PolicyConfig = serde_yaml::from_str(bad).unwrap();
        assert!(Policy::compile(&c).is_err(), "{bad}");
    }
}
