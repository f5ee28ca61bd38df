//! Conformance tests: every row of interop.md §2.6 (the W3C trace-context suite at
//! acab820, Level 2 key grammar), reliability.md §7.4 P1-P8, the baggage rules, and
//! randomised never-panic / round-trip properties.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::*;
use crate::id::{SpanId, TraceFlags, TraceId};

const T: &str = "12345678901234567890123456789012";
const P: &str = "1234567890123456";

/// `00-T-P-<flags>` etc.
fn tp(version: &str, trace: &str, parent: &str, flags: &str) -> String {
    format!("{version}-{trace}-{parent}-{flags}")
}

/// A header map with these lines, appended in order (names parsed case-insensitively,
/// as an HTTP server would).
fn headers(pairs: &[(&str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    h
}

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The service of interop.md §2.5: extract, start a server span (a child of the remote
/// parent, or a new root), then one client span per callback, each injected into its
/// own outgoing request.
fn service(incoming: &HeaderMap, callbacks: usize) -> Vec<HeaderMap> {
    let propagator = Propagator::default();
    let extracted = propagator.extract(incoming);
    let server = match &extracted.parent {
        Some(parent) => SpanContext {
            span_id: SpanId::random(),
            is_remote: false,
            ..parent.clone()
        },
        None => SpanContext {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            trace_flags: TraceFlags::SAMPLED.with_random(true),
            trace_state: TraceState::default(),
            is_remote: false,
        },
    };
    (0..callbacks)
        .map(|_| {
            let client = SpanContext {
                span_id: SpanId::random(),
                ..server.clone()
            };
            let mut out = HeaderMap::new();
            propagator.inject(&client, &extracted.baggage, &mut out);
            out
        })
        .collect()
}

/// The harness's tracestate key and value regexes (reliability.md §5.3), written
/// independently of the implementation.
fn harness_member_ok(member: &str) -> bool {
    let Some((k, v)) = member.split_once('=') else {
        return false;
    };
    let kb = k.as_bytes();
    let vb = v.as_bytes();
    let key_ok = (1..=256).contains(&kb.len())
        && (kb[0].is_ascii_digit() || kb[0].is_ascii_lowercase())
        && kb[1..]
            .iter()
            .all(|&c| c.is_ascii_digit() || c.is_ascii_lowercase() || b"_-*/@".contains(&c));
    let chr = |c: u8| {
        (0x20..=0x2b).contains(&c) || (0x2d..=0x3c).contains(&c) || (0x3e..=0x7e).contains(&c)
    };
    let value_ok =
        (1..=256).contains(&vb.len()) && vb.iter().all(|&c| chr(c)) && vb[vb.len() - 1] != b' ';
    key_ok && value_ok
}

/// What the harness reads back from one callback: the single traceparent (checked
/// strictly) and the combined tracestate (every member checked strictly).
struct Callback {
    trace_id: String,
    parent_id: String,
    flags: u8,
    tracestate: String,
}

fn harness_read(out: &HeaderMap) -> Callback {
    let tps: Vec<&HeaderValue> = out.get_all("traceparent").iter().collect();
    assert_eq!(tps.len(), 1, "exactly one traceparent: {out:?}");
    let tp = tps[0].to_str().unwrap();
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    let lower_hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    };
    assert!(parts[0] == "00", "{tp}");
    assert!(
        lower_hex(parts[1], 32) && parts[1] != "0".repeat(32),
        "{tp}"
    );
    assert!(
        lower_hex(parts[2], 16) && parts[2] != "0".repeat(16),
        "{tp}"
    );
    assert!(lower_hex(parts[3], 2), "{tp}");
    let lines: Vec<&str> = out
        .get_all("tracestate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(lines.len() <= 1, "tracestate written once: {lines:?}");
    let tracestate = lines.join(",");
    for m in tracestate.split(',').filter(|m| !m.is_empty()) {
        assert!(harness_member_ok(m), "harness would raise on {m:?}");
    }
    assert!(tracestate.split(',').count() <= 32);
    Callback {
        trace_id: parts[1].to_owned(),
        parent_id: parts[2].to_owned(),
        flags: u8::from_str_radix(parts[3], 16).unwrap(),
        tracestate,
    }
}

#[derive(Debug)]
enum Expect {
    /// New trace-id (none of the input's), no inherited tracestate.
    Restart,
    /// Same trace-id T, a parent-id other than P, these flags and exactly this outgoing
    /// tracestate (`""`: no tracestate header).
    Keep { flags: u8, tracestate: String },
}

fn keep(flags: u8, tracestate: &str) -> Expect {
    Expect::Keep {
        flags,
        tracestate: tracestate.to_owned(),
    }
}

fn check(name: &str, input: &[(String, String)], expect: &Expect) {
    let pairs: Vec<(&str, String)> = input.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let incoming = headers(&pairs);
    let out = harness_read(&service(&incoming, 1)[0]);
    match expect {
        Expect::Restart => {
            for (_, v) in input {
                assert!(
                    !v.contains(&out.trace_id),
                    "{name}: restart expected, got trace id {} from {input:?}",
                    out.trace_id
                );
            }
            assert_eq!(
                out.tracestate, "",
                "{name}: tracestate must not be inherited"
            );
            assert_eq!(out.flags, 0x03, "{name}: our own root flags");
        }
        Expect::Keep { flags, tracestate } => {
            assert_eq!(out.trace_id, T, "{name}: {input:?}");
            assert_ne!(out.parent_id, P, "{name}");
            assert_eq!(out.flags, *flags, "{name}");
            assert_eq!(&out.tracestate, tracestate, "{name}: {input:?}");
        }
    }
}

/// A conformance row: name, header lines in order, expected outcome.
type Row = (&'static str, Vec<(String, String)>, Expect);

/// interop.md §2.6, one row per harness request. Header values use `T` and `P`.
#[rustfmt::skip]
fn suite_rows() -> Vec<Row> {
    let tp00 = |flags: &str| tp("00", T, P, flags);
    let ok = tp00("01");
    let ok0 = tp00("00");
    vec![
        ("both_traceparent_and_tracestate_missing", h(&[]), Expect::Restart),
        ("traceparent_included_tracestate_missing", h(&[("traceparent", &ok)]), keep(1, "")),
        ("traceparent_duplicated", h(&[("traceparent", &tp("00", "12345678901234567890123456789011", P, "01")), ("traceparent", &ok)]), Expect::Restart),
        ("traceparent_header_name/trace-parent", h(&[("trace-parent", &ok)]), Expect::Restart),
        ("traceparent_header_name/trace.parent", h(&[("trace.parent", &ok)]), Expect::Restart),
        ("traceparent_header_name_valid_casing/TraceParent", h(&[("TraceParent", &ok)]), keep(1, "")),
        ("traceparent_header_name_valid_casing/TrAcEpArEnT", h(&[("TrAcEpArEnT", &ok)]), keep(1, "")),
        ("traceparent_header_name_valid_casing/TRACEPARENT", h(&[("TRACEPARENT", &ok)]), keep(1, "")),
        ("traceparent_version_0x00/dot", h(&[("traceparent", &(ok.clone() + "."))]), Expect::Restart),
        ("traceparent_version_0x00/future-tail", h(&[("traceparent", &(ok.clone() + "-what-the-future-will-be-like"))]), Expect::Restart),
        ("traceparent_version_0xcc", h(&[("traceparent", &tp("cc", T, P, "01"))]), keep(1, "")),
        ("traceparent_version_0xcc/dash-tail", h(&[("traceparent", &(tp("cc", T, P, "01") + "-what-the-future-will-be-like"))]), keep(1, "")),
        ("traceparent_version_0xcc/dot-tail", h(&[("traceparent", &(tp("cc", T, P, "01") + ".what-the-future-will-be-like"))]), Expect::Restart),
        ("traceparent_version_0xff", h(&[("traceparent", &tp("ff", T, P, "01"))]), Expect::Restart),
        ("traceparent_version_illegal_characters/.0", h(&[("traceparent", &tp(".0", T, P, "01"))]), Expect::Restart),
        ("traceparent_version_illegal_characters/0.", h(&[("traceparent", &tp("0.", T, P, "01"))]), Expect::Restart),
        ("traceparent_version_too_long/000", h(&[("traceparent", &tp("000", T, P, "01"))]), Expect::Restart),
        ("traceparent_version_too_long/0000", h(&[("traceparent", &tp("0000", T, P, "01"))]), Expect::Restart),
        ("traceparent_version_too_short", h(&[("traceparent", &tp("0", T, P, "01"))]), Expect::Restart),
        ("traceparent_trace_id_all_zero", h(&[("traceparent", &tp("00", &"0".repeat(32), P, "01"))]), Expect::Restart),
        ("traceparent_trace_id_illegal_characters/first", h(&[("traceparent", &tp("00", ".2345678901234567890123456789012", P, "01"))]), Expect::Restart),
        ("traceparent_trace_id_illegal_characters/last", h(&[("traceparent", &tp("00", "1234567890123456789012345678901.", P, "01"))]), Expect::Restart),
        ("traceparent_trace_id_too_long", h(&[("traceparent", &tp("00", "123456789012345678901234567890123", P, "01"))]), Expect::Restart),
        ("traceparent_trace_id_too_short", h(&[("traceparent", &tp("00", "1234567890123456789012345678901", P, "01"))]), Expect::Restart),
        ("traceparent_parent_id_all_zero", h(&[("traceparent", &tp("00", T, "0000000000000000", "01"))]), Expect::Restart),
        ("traceparent_parent_id_illegal_characters/first", h(&[("traceparent", &tp("00", T, ".234567890123456", "01"))]), Expect::Restart),
        ("traceparent_parent_id_illegal_characters/last", h(&[("traceparent", &tp("00", T, "123456789012345.", "01"))]), Expect::Restart),
        ("traceparent_parent_id_too_long", h(&[("traceparent", &tp("00", T, "12345678901234567", "01"))]), Expect::Restart),
        ("traceparent_parent_id_too_short", h(&[("traceparent", &tp("00", T, "123456789012345", "01"))]), Expect::Restart),
        ("traceparent_trace_flags_illegal_characters/.0", h(&[("traceparent", &tp00(".0"))]), Expect::Restart),
        ("traceparent_trace_flags_illegal_characters/0.", h(&[("traceparent", &tp00("0."))]), Expect::Restart),
        ("traceparent_trace_flags_too_long", h(&[("traceparent", &tp00("001"))]), Expect::Restart),
        ("traceparent_trace_flags_too_short", h(&[("traceparent", &tp00("1"))]), Expect::Restart),
        ("traceparent_ows_handling/space", h(&[("traceparent", &format!(" {ok}"))]), keep(1, "")),
        ("traceparent_ows_handling/tab", h(&[("traceparent", &format!("\t{ok}"))]), keep(1, "")),
        ("traceparent_ows_handling/trailing-space", h(&[("traceparent", &format!("{ok} "))]), keep(1, "")),
        ("traceparent_ows_handling/trailing-tab", h(&[("traceparent", &format!("{ok}\t"))]), keep(1, "")),
        ("traceparent_ows_handling/both", h(&[("traceparent", &format!("\t {ok} \t"))]), keep(1, "")),
        ("tracestate_included_traceparent_missing/1", h(&[("tracestate", "foo=1")]), Expect::Restart),
        ("tracestate_included_traceparent_missing/2", h(&[("tracestate", "foo=1,bar=2")]), Expect::Restart),
        ("tracestate_included_traceparent_included", h(&[("traceparent", &ok0), ("tracestate", "foo=1,bar=2")]), keep(0, "foo=1,bar=2")),
        ("tracestate_header_name/trace-state", h(&[("traceparent", &ok0), ("trace-state", "foo=1")]), keep(0, "")),
        ("tracestate_header_name/trace.state", h(&[("traceparent", &ok0), ("trace.state", "foo=1")]), keep(0, "")),
        ("tracestate_header_name_valid_casing/TraceState", h(&[("traceparent", &ok0), ("TraceState", "foo=1")]), keep(0, "foo=1")),
        ("tracestate_header_name_valid_casing/TrAcEsTaTe", h(&[("traceparent", &ok0), ("TrAcEsTaTe", "foo=1")]), keep(0, "foo=1")),
        ("tracestate_header_name_valid_casing/TRACESTATE", h(&[("traceparent", &ok0), ("TRACESTATE", "foo=1")]), keep(0, "foo=1")),
        ("tracestate_empty_header/only", h(&[("traceparent", &ok0), ("tracestate", "")]), keep(0, "")),
        ("tracestate_empty_header/after", h(&[("traceparent", &ok0), ("tracestate", "foo=1"), ("tracestate", "")]), keep(0, "foo=1")),
        ("tracestate_empty_header/before", h(&[("traceparent", &ok0), ("tracestate", ""), ("tracestate", "foo=1")]), keep(0, "foo=1")),
        ("tracestate_multiple_headers_different_keys", h(&[("traceparent", &ok0), ("tracestate", "foo=1,bar=2"), ("tracestate", "rojo=1,congo=2"), ("tracestate", "baz=3")]), keep(0, "foo=1,bar=2,rojo=1,congo=2,baz=3")),
        ("tracestate_duplicated_keys/same", h(&[("traceparent", &ok0), ("tracestate", "foo=1,foo=1")]), keep(0, "foo=1")),
        ("tracestate_duplicated_keys/different", h(&[("traceparent", &ok0), ("tracestate", "foo=1,foo=2")]), keep(0, "foo=1")),
        ("tracestate_duplicated_keys/lines-same", h(&[("traceparent", &ok0), ("tracestate", "foo=1"), ("tracestate", "foo=1")]), keep(0, "foo=1")),
        ("tracestate_duplicated_keys/lines-different", h(&[("traceparent", &ok0), ("tracestate", "foo=1"), ("tracestate", "foo=2")]), keep(0, "foo=1")),
        ("tracestate_ows_handling/spaces-tabs", h(&[("traceparent", &ok0), ("tracestate", "foo=1 \t , \t bar=2, \t baz=3")]), keep(0, "foo=1,bar=2,baz=3")),
        ("tracestate_ows_handling/tabs-spaces", h(&[("traceparent", &ok0), ("tracestate", "foo=1\t \t,\t \tbar=2,\t \tbaz=3")]), keep(0, "foo=1,bar=2,baz=3")),
        ("tracestate_ows_handling/leading-space", h(&[("traceparent", &ok0), ("tracestate", " foo=1")]), keep(0, "foo=1")),
        ("tracestate_ows_handling/leading-tab", h(&[("traceparent", &ok0), ("tracestate", "\tfoo=1")]), keep(0, "foo=1")),
        ("tracestate_ows_handling/trailing-space", h(&[("traceparent", &ok0), ("tracestate", "foo=1 ")]), keep(0, "foo=1")),
        ("tracestate_ows_handling/trailing-tab", h(&[("traceparent", &ok0), ("tracestate", "foo=1\t")]), keep(0, "foo=1")),
        ("tracestate_ows_handling/both", h(&[("traceparent", &ok0), ("tracestate", "\t foo=1 \t")]), keep(0, "foo=1")),
        ("tracestate_key_illegal_characters/space", h(&[("traceparent", &ok0), ("tracestate", "foo =1")]), keep(0, "")),
        ("tracestate_key_illegal_characters/upper", h(&[("traceparent", &ok0), ("tracestate", "FOO=1")]), keep(0, "")),
        ("tracestate_key_illegal_characters/dot", h(&[("traceparent", &ok0), ("tracestate", "foo.bar=1")]), keep(0, "")),
        ("tracestate_key_illegal_vendor_format/trailing-at", h(&[("traceparent", &ok0), ("tracestate", "foo@=1,bar=2")]), keep(0, "foo@=1,bar=2")),
        ("tracestate_key_illegal_vendor_format/leading-at", h(&[("traceparent", &ok0), ("tracestate", "@foo=1,bar=2")]), keep(0, "")),
        ("tracestate_key_illegal_vendor_format/double-at", h(&[("traceparent", &ok0), ("tracestate", "foo@@bar=1,bar=2")]), keep(0, "foo@@bar=1,bar=2")),
        ("tracestate_key_illegal_vendor_format/two-ats", h(&[("traceparent", &ok0), ("tracestate", "foo@bar@baz=1,bar=2")]), keep(0, "foo@bar@baz=1,bar=2")),
        ("tracestate_value_illegal_characters/equals", h(&[("traceparent", &ok0), ("tracestate", "foo=bar=baz")]), keep(0, "")),
        ("tracestate_value_illegal_characters/empty", h(&[("traceparent", &ok0), ("tracestate", "foo=,bar=3")]), keep(0, "")),
        ("TraceContext2Test.propagates_random_flag", h(&[("traceparent", &tp00("02"))]), keep(2, "")),
        ("random_and_sampled", h(&[("traceparent", &tp00("03"))]), keep(3, "")),
        ("unknown_flags_zeroed", h(&[("traceparent", &tp00("ff"))]), keep(3, "")),
    ]
}

/// The rows whose inputs are generated: all allowed characters, member count and key
/// length limits.
#[rustfmt::skip]
fn generated_rows() -> Vec<Row> {
    let ok0 = tp("00", T, P, "00");
    let key_without_vendor: String = ('a'..='z').chain('0'..='9').chain("_-*/".chars()).collect();
    let key_with_vendor = format!("{key_without_vendor}@a-z0-9_-*/");
    let value: String = (0x20u8..=0x7e).filter(|&c| c != b',' && c != b'=').map(char::from).collect();
    assert!(value.starts_with(' '));
    let all1 = format!("{key_without_vendor}={value}");
    let all2 = format!("{key_with_vendor}={value}");
    let lines32: Vec<String> = [1..=10, 11..=20, 21..=30, 31..=32]
        .into_iter()
        .map(|r| r.map(|i| format!("bar{i:02}={i:02}")).collect::<Vec<_>>().join(","))
        .collect();
    let all32 = lines32.join(",");
    let mut lines33 = lines32.clone();
    lines33[3].push_str(",bar33=33");
    let ts = |lines: &[String]| -> Vec<(String, String)> {
        std::iter::once(("traceparent".to_owned(), ok0.clone()))
            .chain(lines.iter().map(|l| ("tracestate".to_owned(), l.clone())))
            .collect()
    };
    let z256 = format!("{}=1", "z".repeat(256));
    let z257 = format!("{}=1", "z".repeat(257));
    let tenant = format!("{}@{}=1", "t".repeat(241), "v".repeat(14));
    let tenant242 = format!("{}@v=1", "t".repeat(242));
    let vendor15 = format!("t@{}=1", "v".repeat(15));
    vec![
        ("tracestate_all_allowed_characters/without_vendor", ts(std::slice::from_ref(&all1)), keep(0, &all1)),
        ("tracestate_all_allowed_characters/with_vendor", ts(std::slice::from_ref(&all2)), keep(0, &all2)),
        ("tracestate_member_count_limit/32", ts(&lines32), keep(0, &all32)),
        ("tracestate_member_count_limit/33", ts(&lines33), keep(0, "")),
        ("tracestate_key_length_limit/256", ts(&["foo=1".into(), z256.clone()]), keep(0, &format!("foo=1,{z256}"))),
        ("tracestate_key_length_limit/257", ts(&["foo=1".into(), z257]), keep(0, "")),
        ("tracestate_key_length_limit/t241@v14", ts(&["foo=1".into(), tenant.clone()]), keep(0, &format!("foo=1,{tenant}"))),
        ("tracestate_key_length_limit/t242@v", ts(&["foo=1".into(), tenant242.clone()]), keep(0, &format!("foo=1,{tenant242}"))),
        ("tracestate_key_length_limit/t@v15", ts(&["foo=1".into(), vendor15.clone()]), keep(0, &format!("foo=1,{vendor15}"))),
    ]
}

#[test]
fn w3c_suite_rows() {
    let rows = suite_rows();
    assert!(rows.len() > 60);
    for (name, input, expect) in &rows {
        check(name, input, expect);
    }
}

#[test]
fn w3c_suite_generated_rows() {
    for (name, input, expect) in &generated_rows() {
        check(name, input, expect);
    }
}

#[test]
fn all_allowed_characters_keep_the_leading_space_byte_exact() {
    let value: String = (0x20u8..=0x7e)
        .filter(|&c| c != b',' && c != b'=')
        .map(char::from)
        .collect();
    let incoming = headers(&[
        ("traceparent", tp("00", T, P, "00")),
        ("tracestate", format!("abc={value}")),
    ]);
    let parent = Propagator::default().extract(&incoming).parent.unwrap();
    assert_eq!(parent.trace_state.get("abc"), Some(value.as_str()));
    assert_eq!(parent.trace_state.get("abc").unwrap().as_bytes()[0], b' ');
}

/// `AdvancedTest`: three callbacks, three distinct parent-ids, the same trace-id when the
/// input is valid, never an all-zero trace-id.
#[test]
fn advanced_multiple_callbacks() {
    let valid = headers(&[("traceparent", tp("00", T, P, "01"))]);
    let absent = HeaderMap::new();
    let zero = headers(&[("traceparent", tp("00", &"0".repeat(32), P, "01"))]);
    for (incoming, same_trace) in [(valid, Some(T)), (absent, None), (zero, None)] {
        let outs: Vec<Callback> = service(&incoming, 3).iter().map(harness_read).collect();
        let parents: std::collections::HashSet<&str> =
            outs.iter().map(|c| c.parent_id.as_str()).collect();
        assert_eq!(parents.len(), 3);
        let traces: std::collections::HashSet<&str> =
            outs.iter().map(|c| c.trace_id.as_str()).collect();
        assert_eq!(traces.len(), 1);
        if let Some(t) = same_trace {
            assert!(traces.contains(t));
        }
        assert!(!traces.contains("0".repeat(32).as_str()));
    }
}

// ---------------------------------------------------------------------------------
// reliability.md §7.4
// ---------------------------------------------------------------------------------

/// P1: every invalid traceparent restarts the trace, and the tracestate next to it is not
/// parsed (a valid `foo=1` must not come through). The error is available for logging.
#[test]
fn an_invalid_traceparent_restarts_the_trace_and_discards_tracestate() {
    let mut tested = 0;
    for (name, input, expect) in suite_rows().into_iter().chain(generated_rows()) {
        let has_tp = input
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("traceparent"));
        if !matches!(expect, Expect::Restart) || !has_tp {
            continue;
        }
        let mut with_ts = input.clone();
        with_ts.push(("tracestate".to_owned(), "foo=1".to_owned()));
        check(name, &with_ts, &Expect::Restart);
        let pairs: Vec<(&str, String)> = with_ts
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let map = headers(&pairs);
        if map.contains_key("traceparent") {
            assert!(extract_trace_context(&map).is_err(), "{name}");
        }
        tested += 1;
    }
    assert!(tested >= 24, "{tested}");
}

/// P2: the inputs opentelemetry-rust 0.33.1 accepts, plus its `extract_data_invalid`
/// seeds (reliability.md §5.2-§5.3).
#[rustfmt::skip]
#[test]
fn cases_lenient_parsers_accept_are_rejected() {
    let cases = [
        tp("00", "1234567890123456789012345678901", P, "01"),
        tp("00", "123456789012345678901234567890123", P, "01"),
        "00-1-1-01".to_owned(),
        tp("00", "+234567890123456789012345678901", P, "01"),
        tp("00", "+2345678901234567890123456789012", P, "01"),
        tp("00", T, "+234567890123456", "01"),
        tp("00", T, "123456789012345", "01"),
        tp("00", T, P, "1"),
        tp("00", T, P, "+1"),
        tp("0000", T, P, "01"),
        tp("00", "1234567890123456789012345678901234", P, "01"),
        tp("00", T, "123456789012345678", "01"),
        tp("00", T, P, "0100"),
        tp("qw", T, P, "01"),
        tp("00", "qw345678901234567890123456789012", P, "01"),
        tp("00", T, "qw34567890123456", "01"),
        tp("00", T, P, "qw"),
        tp("00", "ABCDEF78901234567890123456789012", P, "01"),
        tp("00", T, "ABCDEF7890123456", "01"),
        tp("00", T, P, "0A"),
        tp("00", &"0".repeat(32), &"0".repeat(16), "01"),
        format!("00-{T}-{P}"),
        format!("00-{T}-{P}-"),
        String::new(),
    ];
    for case in &cases {
        assert!(parse_traceparent(case).is_err(), "{case:?}");
        check(case, &[("traceparent".to_owned(), case.clone())], &Expect::Restart);
    }
}

/// P3: duplicated traceparent lines restart, even when both lines are identical.
#[test]
fn a_duplicated_traceparent_restarts_the_trace() {
    let ok = tp("00", T, P, "01");
    let input = [("traceparent", ok.clone()), ("traceparent", ok.clone())];
    let map = headers(&input);
    assert_eq!(extract_trace_context(&map), Err(ExtractError::Duplicated));
    assert_eq!(Propagator::default().extract(&map).parent, None);
    check(
        "p3",
        &h(&[("traceparent", &ok), ("traceparent", &ok)]),
        &Expect::Restart,
    );
}

/// P4: a value over 512 bytes is rejected by its length alone.
#[test]
fn a_traceparent_over_512_bytes_is_rejected_by_its_length() {
    let huge = format!("cc-{T}-{P}-01-{}", "x".repeat(1 << 20));
    assert_eq!(
        parse_traceparent(&huge),
        Err(TraceparentError::TooLong { len: huge.len() })
    );
    let just_over = format!("cc-{T}-{P}-01-{}", "x".repeat(MAX_TRACEPARENT_LEN - 55));
    assert_eq!(just_over.len(), MAX_TRACEPARENT_LEN + 1);
    check(
        "p4",
        &[("traceparent".to_owned(), just_over)],
        &Expect::Restart,
    );
    let at_cap = format!("cc-{T}-{P}-01-{}", "x".repeat(MAX_TRACEPARENT_LEN - 56));
    check(
        "p4/at-cap",
        &[("traceparent".to_owned(), at_cap)],
        &keep(1, ""),
    );
}

/// P5: a bad tracestate is dropped whole; the traceparent is kept.
#[test]
fn a_bad_tracestate_is_dropped_whole_and_the_traceparent_kept() {
    let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
    let cases = [
        many.join(","),
        format!("foo=1,{}=1", "k".repeat(257)),
        "foo=1,bar=\u{7f}".to_owned(),
        "foo=1,bar=a\tb".to_owned(),
        "foo=1,bar".to_owned(),
        "foo=1,=2".to_owned(),
        format!("foo=1,bar={}", "v".repeat(257)),
    ];
    for ts in cases {
        assert!(TraceState::parse(&ts).is_empty(), "{ts:?}");
        // DEL cannot even be put in a HeaderValue; the rest go through extract.
        let Ok(value) = HeaderValue::from_bytes(ts.as_bytes()) else {
            continue;
        };
        let mut map = headers(&[("traceparent", tp("00", T, P, "01"))]);
        map.append("tracestate", value);
        let cx = Propagator::default().extract(&map).parent.unwrap();
        assert_eq!(cx.trace_id.to_string(), T);
        assert!(cx.trace_state.is_empty(), "{ts:?}");
    }
    // Non-UTF-8 bytes in a header line are simply invalid characters.
    let mut map = headers(&[("traceparent", tp("00", T, P, "01"))]);
    map.append("tracestate", HeaderValue::from_bytes(b"foo=\xff").unwrap());
    assert!(
        Propagator::default()
            .extract(&map)
            .parent
            .unwrap()
            .trace_state
            .is_empty()
    );
}

/// P6: over the length cap, whole members go: those over 128 characters first (right-most
/// first), then from the right.
#[test]
fn a_long_tracestate_is_truncated_by_whole_members() {
    let member = |key: &str, len: usize| format!("{key}={}", "v".repeat(len - key.len() - 1));
    let a = member("a", 100);
    let big1 = member("big1", 200);
    let b = member("b", 100);
    let big2 = member("big2", 150);
    let c = member("c", 100);
    let d = member("d", 100);
    // 100+200+100+150+100+100 + 5 commas = 755 > 512.
    let input = [
        a.clone(),
        big1.clone(),
        b.clone(),
        big2,
        c.clone(),
        d.clone(),
    ]
    .join(",");
    let ts = TraceState::parse(&input);
    // Dropping big2 leaves 604; dropping big1 too leaves 403: done, nothing else goes.
    assert_eq!(
        ts.as_str(),
        [a.clone(), b.clone(), c.clone(), d.clone()].join(",")
    );
    assert!(ts.as_str().len() <= TraceState::MAX_LEN);

    // No large members: from the right.
    let small: Vec<String> = (0..6).map(|i| member(&format!("s{i}"), 100)).collect();
    let ts = TraceState::parse(&small.join(","));
    assert_eq!(ts.as_str(), small[..5].join(","));

    // A single member over the cap cannot be kept.
    let ts = TraceState::parse(&format!("{}={}", "k".repeat(256), "v".repeat(256)));
    assert!(ts.is_empty());

    // Exactly at the cap: untouched.
    let exact = format!(
        "{},{},{}",
        member("x", 200),
        member("y", 200),
        member("z", 110)
    );
    assert_eq!(exact.len(), TraceState::MAX_LEN);
    assert_eq!(TraceState::parse(&exact).as_str(), exact);

    // Inserting our own entry truncates the others, never the new one.
    let ts = TraceState::parse(&[a.clone(), b.clone(), c.clone(), d.clone()].join(","));
    let ts = ts.insert("ours", &"o".repeat(200)).unwrap();
    assert!(ts.as_str().starts_with("ours="));
    assert!(ts.as_str().len() <= TraceState::MAX_LEN);
    assert_eq!(ts.len(), 4);
    assert_eq!(ts.get("d"), None);
}

/// P7: baggage limits apply to the combined header, checked before parsing.
#[test]
fn a_baggage_line_over_8192_bytes_is_dropped_whole() {
    // One line over 8192 bytes: dropped whole.
    let long = format!("k={}", "v".repeat(Baggage::MAX_LEN));
    assert!(Baggage::parse(&long).is_empty());
    // At exactly 8192 bytes: kept.
    let exact = format!("k={}", "v".repeat(Baggage::MAX_LEN - 2));
    assert_eq!(
        Baggage::parse(&exact).get("k").map(str::len),
        Some(Baggage::MAX_LEN - 2)
    );
}

/// P7: 100 lines, each small, combined over 8192 bytes: all dropped (CVE-2026-29181).
#[test]
fn baggage_lines_combined_over_8192_bytes_are_dropped() {
    let line = format!("k={}", "v".repeat(98));
    let lines: Vec<&[u8]> = (0..100).map(|_| line.as_bytes()).collect();
    assert!(Baggage::parse_lines(lines.iter().copied()).is_empty());
    let map = {
        let mut m = HeaderMap::new();
        for _ in 0..100 {
            m.append("baggage", HeaderValue::from_str(&line).unwrap());
        }
        m
    };
    assert!(Propagator::default().extract(&map).baggage.is_empty());
}

/// P7: of 100 short members (combined under 8192 bytes), the first 64 valid ones are kept.
#[test]
fn only_the_first_64_valid_baggage_members_are_kept() {
    let lines: Vec<String> = (0..100).map(|i| format!("k{i}=v{i}")).collect();
    let b = Baggage::parse_lines(lines.iter().map(|l| l.as_bytes()));
    assert_eq!(b.len(), Baggage::MAX_MEMBERS);
    assert_eq!(b.iter().last().unwrap().key(), "k63");
    // Same in one line; invalid members do not count toward the 64.
    let one = std::iter::once("bad key=1".to_owned())
        .chain(lines.iter().cloned())
        .collect::<Vec<_>>()
        .join(",");
    let b = Baggage::parse(&one);
    assert_eq!(b.len(), 64);
    assert_eq!(b.iter().next().unwrap().key(), "k0");
}

/// P8: invalid percent-encoding becomes U+FFFD; the other members are kept.
#[rustfmt::skip]
/// Found by `cargo fuzz` (fuzz/seeds/baggage/grows-past-8192-when-encoded): a header well
/// under 8192 bytes whose invalid `%` escapes decode to U+FFFD grows ninefold when sent
/// (`%EF%BF%BD`); the header sent keeps whole members from the front within 8192 bytes, and
/// what it carries survives a round trip.
#[test]
fn members_whose_encoding_passes_8192_bytes_are_dropped_whole_when_sent() {
    let first = format!("a={}", "%".repeat(800));
    let second = format!("b={}", "%".repeat(200));
    let baggage = Baggage::parse(&format!("{first},{second}"));
    assert_eq!(baggage.len(), 2);
    let header = baggage.header_value().expect("the first member fits");
    let text = header.to_str().expect("ascii");
    assert!(text.len() <= Baggage::MAX_LEN, "{}", text.len());
    assert!(!text.contains(','), "the second member would pass 8192 bytes");
    let again = Baggage::parse(text);
    assert_eq!(again.len(), 1);
    assert_eq!(again.get("a"), baggage.get("a"));
}

#[test]
fn invalid_percent_encoding_in_baggage_becomes_the_replacement_character() {
    let cases = [
        ("a=%zz,b=ok", "\u{FFFD}zz"),
        ("a=%4,b=ok", "\u{FFFD}4"),
        ("a=abc%,b=ok", "abc\u{FFFD}"),
        ("a=%C3%28,b=ok", "\u{FFFD}("),
        ("a=%E2%82,b=ok", "\u{FFFD}"),
        ("a=%FF%FE,b=ok", "\u{FFFD}\u{FFFD}"),
        ("a=%e2%82%ac,b=ok", "\u{20AC}"),
    ];
    for (input, a) in cases {
        let b = Baggage::parse(input);
        assert_eq!(b.get("a"), Some(a), "{input}");
        assert_eq!(b.get("b"), Some("ok"), "{input}");
    }
}

// ---------------------------------------------------------------------------------
// Baggage rules
// ---------------------------------------------------------------------------------

#[test]
fn baggage_lines_are_combined_in_order_and_duplicates_kept() {
    let map = headers(&[
        ("baggage", "a=1,b=2".to_owned()),
        ("Baggage", "c=3".to_owned()),
        ("BAGGAGE", "a=4".to_owned()),
    ]);
    let b = Propagator::default().extract(&map).baggage;
    let got: Vec<(&str, &str)> = b.iter().map(|m| (m.key(), m.value())).collect();
    assert_eq!(got, [("a", "1"), ("b", "2"), ("c", "3"), ("a", "4")]);
    assert_eq!(b.get("a"), Some("1"));
    let mut out = HeaderMap::new();
    Propagator::default().inject(&ctx(), &b, &mut out);
    assert_eq!(out.get_all("baggage").iter().count(), 1);
    assert_eq!(out["baggage"], "a=1,b=2,c=3,a=4");
}

#[test]
fn empty_baggage_and_tracestate_are_not_sent() {
    assert_eq!(Baggage::parse("").header_value(), None);
    assert_eq!(Baggage::parse(" , ,").header_value(), None);
    assert_eq!(TraceState::parse("").header_value(), None);
    assert_eq!(TraceState::default().header_value(), None);
    let mut out = HeaderMap::new();
    Propagator::default().inject(&ctx(), &Baggage::default(), &mut out);
    assert!(out.contains_key("traceparent") && out.contains_key("tracestate"));
    assert!(!out.contains_key("baggage"));
}

// ---------------------------------------------------------------------------------
// TraceState API
// ---------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------
// Propagator
// ---------------------------------------------------------------------------------

fn ctx() -> SpanContext {
    SpanContext {
        trace_id: TraceId::from_hex(T).unwrap(),
        span_id: SpanId::from_hex(P).unwrap(),
        trace_flags: TraceFlags::SAMPLED,
        trace_state: TraceState::parse("congo=t61rcWkgMzE"),
        is_remote: false,
    }
}

#[test]
fn extract_gives_a_remote_context() {
    let map = headers(&[
        ("traceparent", tp("00", T, P, "01")),
        ("tracestate", "congo=t61rcWkgMzE".to_owned()),
        ("baggage", "k=v".to_owned()),
    ]);
    let e = Propagator::default().extract(&map);
    let parent = e.parent.unwrap();
    assert!(parent.is_remote);
    assert_eq!(parent.span_id.to_string(), P);
    assert_eq!(parent.trace_state.as_str(), "congo=t61rcWkgMzE");
    assert_eq!(e.baggage.get("k"), Some("v"));
    assert_eq!(
        Propagator::default().extract(&HeaderMap::new()),
        Extracted::default()
    );
}

#[test]
fn header_name_casing_is_irrelevant() {
    for name in ["traceparent", "TraceParent", "TRACEPARENT", "tRaCePaReNt"] {
        let map = headers(&[(name, tp("00", T, P, "01"))]);
        assert!(
            Propagator::default().extract(&map).parent.is_some(),
            "{name}"
        );
    }
}

#[test]
fn inject_writes_exactly_one_of_each() {
    let mut out = HeaderMap::new();
    out.append("traceparent", HeaderValue::from_static("stale-1"));
    out.append("traceparent", HeaderValue::from_static("stale-2"));
    out.append("tracestate", HeaderValue::from_static("old=1"));
    out.append("baggage", HeaderValue::from_static("old=1"));
    let baggage = Baggage::parse("k=v");
    Propagator::default().inject(&ctx(), &baggage, &mut out);
    assert_eq!(out.get_all("traceparent").iter().count(), 1);
    assert_eq!(out["traceparent"], tp("00", T, P, "01").as_str());
    assert_eq!(out.get_all("tracestate").iter().count(), 1);
    assert_eq!(out["tracestate"], "congo=t61rcWkgMzE");
    assert_eq!(out["baggage"], "k=v");

    // Empty state and baggage: stale lines are removed, not left behind.
    let cx = SpanContext {
        trace_state: TraceState::default(),
        ..ctx()
    };
    Propagator::default().inject(&cx, &Baggage::default(), &mut out);
    assert_eq!(out.len(), 1);

    // An invalid context propagates nothing.
    let cx = SpanContext {
        trace_id: TraceId::INVALID,
        ..ctx()
    };
    Propagator::default().inject(&cx, &Baggage::default(), &mut out);
    assert!(out.is_empty());
}

#[test]
fn switched_off_formats_are_neither_read_nor_written() {
    let map = headers(&[
        ("traceparent", tp("00", T, P, "01")),
        ("baggage", "k=v".to_owned()),
    ]);
    let e = Propagator::new(false, true).extract(&map);
    assert!(e.parent.is_none() && !e.baggage.is_empty());
    let e = Propagator::new(true, false).extract(&map);
    assert!(e.parent.is_some() && e.baggage.is_empty());
    let mut out = HeaderMap::new();
    Propagator::NONE.inject(&ctx(), &Baggage::parse("k=v"), &mut out);
    assert!(out.is_empty());
    Propagator::new(false, true).inject(&ctx(), &Baggage::parse("k=v"), &mut out);
    assert_eq!(out.keys().collect::<Vec<_>>(), ["baggage"]);
}

#[rustfmt::skip]
#[test]
fn otel_propagators_values() {
    let both = Propagator::default();
    let cases: &[(&str, Propagator, &[&str])] = &[
        ("",                             both,                          &[]),
        (" , ",                          both,                          &[]),
        ("tracecontext,baggage",         both,                          &[]),
        ("baggage",                      Propagator::new(false, true),  &[]),
        ("TRACECONTEXT",                 Propagator::new(true, false),  &[]),
        (" tracecontext , b3 ",          Propagator::new(true, false),  &["b3"]),
        ("b3multi,jaeger",               Propagator::NONE,              &["b3multi", "jaeger"]),
        ("none",                         Propagator::NONE,              &[]),
        ("tracecontext,none,xray",       Propagator::NONE,              &["xray"]),
    ];
    for (value, p, unknown) in cases {
        let (got, got_unknown) = Propagator::from_env_value(value);
        assert_eq!(got, *p, "{value:?}");
        assert_eq!(got_unknown, *unknown, "{value:?}");
    }
    assert!(both.trace_context() && both.baggage());
}

// ---------------------------------------------------------------------------------
// Randomised properties (reliability.md §5.4): never panic, outputs within bounds,
// format -> parse round trips.
// ---------------------------------------------------------------------------------

/// The traceparent acceptance rule, written independently as a regex-like check:
/// `^[ \t]*VV-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?[ \t]*$` with the version rules.
fn oracle_accepts(raw: &[u8]) -> bool {
    if raw.len() > MAX_TRACEPARENT_LEN {
        return false;
    }
    let mut v = raw;
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    let hex = |s: &[u8]| s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let nonzero = |s: &[u8]| s.iter().any(|&c| c != b'0');
    v.len() >= 55
        && hex(&v[0..2])
        && &v[0..2] != b"ff"
        && v[2] == b'-'
        && hex(&v[3..35])
        && nonzero(&v[3..35])
        && v[35] == b'-'
        && hex(&v[36..52])
        && nonzero(&v[36..52])
        && v[52] == b'-'
        && hex(&v[53..55])
        && if &v[0..2] == b"00" {
            v.len() == 55
        } else {
            v.len() == 55 || v[55] == b'-'
        }
}

#[test]
fn random_traceparents_never_panic_and_agree_with_the_oracle() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_0001);
    let alphabet = b"0123456789abcdefABCDEF-. \t+x";
    for round in 0..50_000 {
        let cx = SpanContext {
            trace_id: TraceId::from_u128(rng.u128(..)),
            span_id: SpanId::from_u64(rng.u64(..)),
            trace_flags: TraceFlags::from_u8(rng.u8(..)),
            trace_state: TraceState::default(),
            is_remote: false,
        };
        let mut bytes = format_traceparent(&cx).as_bytes().to_vec();
        // Round trip of the unmodified value.
        match parse_traceparent_bytes(&bytes) {
            Ok(p) => {
                assert_eq!(p.trace_id, cx.trace_id);
                assert_eq!(p.parent_id, cx.span_id);
                assert_eq!(p.trace_flags, cx.trace_flags.known());
                assert_eq!(p.version, 0);
            }
            Err(_) => assert!(!cx.trace_id.is_valid() || !cx.span_id.is_valid()),
        }
        // Mutations: replace, insert, delete, append a tail, change the version.
        for _ in 0..rng.usize(1..4) {
            match rng.u8(0..6) {
                0 if !bytes.is_empty() => {
                    let i = rng.usize(..bytes.len());
                    bytes[i] = alphabet[rng.usize(..alphabet.len())];
                }
                1 => {
                    let i = rng.usize(..=bytes.len());
                    bytes.insert(i, alphabet[rng.usize(..alphabet.len())]);
                }
                2 if !bytes.is_empty() => {
                    let i = rng.usize(..bytes.len());
                    bytes.remove(i);
                }
                3 => bytes.extend(std::iter::repeat_n(b'-', rng.usize(0..3))),
                4 if bytes.len() >= 2 => {
                    bytes[0] = b"0cf"[rng.usize(..3)];
                    bytes[1] = b"0cf"[rng.usize(..3)];
                }
                _ => {
                    let i = rng.usize(..=bytes.len());
                    bytes.insert(i, rng.u8(..));
                }
            }
        }
        let got = parse_traceparent_bytes(&bytes);
        assert_eq!(
            got.is_ok(),
            oracle_accepts(&bytes),
            "round {round}: {bytes:?} -> {got:?}"
        );
        if let Ok(p) = got {
            assert!(p.trace_id.is_valid() && p.parent_id.is_valid());
            assert_eq!(p.trace_flags.to_u8() & !TraceFlags::KNOWN_MASK, 0);
        }
    }
    // Pure noise.
    for _ in 0..20_000 {
        let len = rng.usize(0..700);
        let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        assert_eq!(
            parse_traceparent_bytes(&bytes).is_ok(),
            oracle_accepts(&bytes)
        );
    }
}

fn random_key(rng: &mut fastrand::Rng) -> String {
    const FIRST: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    const REST: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789_-*/@";
    let len = rng.usize(0..12);
    std::iter::once(FIRST[rng.usize(..FIRST.len())])
        .chain((0..len).map(|_| REST[rng.usize(..REST.len())]))
        .map(char::from)
        .collect()
}

fn random_value(rng: &mut fastrand::Rng) -> String {
    let len = rng.usize(1..20);
    let mut v: Vec<u8> = (0..len)
        .map(|_| {
            loop {
                let c = rng.u8(0x20..=0x7e);
                if c != b',' && c != b'=' {
                    break c;
                }
            }
        })
        .collect();
    while v.last() == Some(&b' ') {
        v.pop();
    }
    if v.is_empty() {
        v.push(b'x');
    }
    String::from_utf8(v).unwrap()
}

#[test]
fn random_tracestates_stay_within_bounds_and_round_trip() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_0002);
    let ows = |rng: &mut fastrand::Rng| -> String {
        (0..rng.usize(0..3))
            .map(|_| if rng.bool() { ' ' } else { '\t' })
            .collect()
    };
    for _ in 0..5_000 {
        let n = rng.usize(0..40);
        let members: Vec<(String, String)> = (0..n)
            .map(|_| (random_key(&mut rng), random_value(&mut rng)))
            .collect();
        let corrupt = rng.u8(0..8) == 0 && n > 0;
        let mut lines = vec![String::new()];
        for (i, (k, v)) in members.iter().enumerate() {
            let line = lines.last_mut().unwrap();
            if !line.is_empty() || rng.bool() {
                line.push(',');
            }
            line.push_str(&ows(&mut rng));
            if corrupt && i == n - 1 {
                line.push_str(&format!("{}={v}", k.to_uppercase() + "Q"));
            } else {
                line.push_str(&format!("{k}={v}"));
            }
            line.push_str(&ows(&mut rng));
            if rng.u8(0..4) == 0 {
                lines.push(String::new());
            }
        }
        let ts = TraceState::parse_lines(lines.iter().map(|l| l.as_bytes()));
        // Bounds.
        assert!(ts.len() <= TraceState::MAX_MEMBERS);
        assert!(ts.as_str().len() <= TraceState::MAX_LEN);
        for m in ts.as_str().split(',').filter(|m| !m.is_empty()) {
            assert!(harness_member_ok(m), "{m:?}");
        }
        // Expected: dedup keep-first, unless corrupt or over 32.
        let mut expected: Vec<(String, String)> = Vec::new();
        for (k, v) in &members {
            if !expected.iter().any(|(ek, _)| ek == k) {
                expected.push((k.clone(), v.clone()));
            }
        }
        let joined = expected
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        if corrupt || n > 32 {
            assert!(ts.is_empty(), "{lines:?}");
        } else if joined.len() <= TraceState::MAX_LEN {
            assert_eq!(ts.as_str(), joined, "{lines:?}");
            // Formatting and parsing again is the identity.
            let header = ts.header_value();
            let again = TraceState::parse(header.as_ref().map_or("", |v| v.to_str().unwrap()));
            assert_eq!(again, ts);
        }
    }
    // Noise never panics and stays within bounds.
    for _ in 0..5_000 {
        let len = rng.usize(0..600);
        let bytes: Vec<u8> = (0..len).map(|_| b"a=1, \t@Z,="[rng.usize(..10)]).collect();
        let ts = TraceState::parse_lines(std::iter::once(bytes.as_slice()));
        assert!(ts.len() <= TraceState::MAX_MEMBERS);
    }
}

#[test]
fn random_baggage_round_trips_and_never_panics() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_0003);
    const TCHARS: &[u8] =
        b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    for _ in 0..3_000 {
        let mut b = Baggage::default();
        for _ in 0..rng.usize(0..10) {
            let key: String = (0..rng.usize(1..10))
                .map(|_| char::from(TCHARS[rng.usize(..TCHARS.len())]))
                .collect();
            let value: String = (0..rng.usize(0..12)).map(|_| rng.char(..)).collect();
            b = b.insert(&key, &value).unwrap();
        }
        let Some(header) = b.header_value() else {
            assert!(b.is_empty());
            continue;
        };
        assert!(header.len() <= Baggage::MAX_LEN);
        let parsed = Baggage::parse(header.to_str().unwrap());
        assert_eq!(parsed, b);
    }
    for _ in 0..3_000 {
        let len = rng.usize(0..400);
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                if rng.bool() {
                    b"k=v%;,= \t"[rng.usize(..9)]
                } else {
                    rng.u8(..)
                }
            })
            .collect();
        let b = Baggage::parse_lines(std::iter::once(bytes.as_slice()));
        assert!(b.len() <= Baggage::MAX_MEMBERS);
        if let Some(v) = b.header_value() {
            // Whatever came in, what goes out parses back to the same members.
            assert_eq!(Baggage::parse(v.to_str().unwrap()), b);
        }
    }
}
