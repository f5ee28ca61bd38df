//! Assembly tests: tree shape, critical path, skew, duplicates.

use super::*;
use crate::model::SpanKind::*;
use crate::testing::{MS, T0, sample_trace, span, trace_id};

fn names(nodes: &[TreeNode]) -> Vec<String> {
    nodes.iter().map(|n| n.name.clone()).collect()
}

#[test]
fn single_root_tree_is_complete_and_ordered() {
    let mut spans = sample_trace(1);
    spans.reverse(); // arrival order must not matter
    let tree = assemble(&spans);
    assert!(tree.complete, "{:?}", tree.warnings);
    assert_eq!(tree.span_count, 7);
    assert_eq!(tree.services, vec!["frontend", "order", "user"]);
    assert_eq!(tree.service_count, 3);
    assert_eq!(tree.start_time_unix_nano, T0);
    assert_eq!(tree.duration_ns, 1234 * MS);
    assert_eq!(tree.roots.len(), 1);
    let root = &tree.roots[0];
    assert_eq!(root.offset_ns, 0);
    assert_eq!(root.parent_span_id, None);
    assert_eq!(
        names(&root.children),
        vec!["GET /users/{id}", "POST /orders"]
    );
    let user = &root.children[0].children[0];
    assert_eq!(user.service, "user");
    assert_eq!(user.offset_ns, 1_600_000);
    assert_eq!(user.duration_ns, 29_800_000);
    assert_eq!(root.attributes["http.response.status_code"], 201);
    // The ingest warning of the order span is surfaced.
    assert!(tree.warnings.iter().any(|w| w.ends_with("clamped")));
}

#[test]
fn missing_parent_makes_a_flagged_orphan_root() {
    let spans = sample_trace(2);
    // Drop "frontend POST /orders" client span (id 5): order's server span is orphaned.
    let spans: Vec<_> = spans
        .into_iter()
        .filter(|s| s.span_id != crate::testing::span_id(5))
        .collect();
    let tree = assemble(&spans);
    assert!(!tree.complete);
    assert_eq!(tree.roots.len(), 2);
    assert!(!tree.roots[0].orphan);
    assert!(tree.roots[1].orphan);
    assert_eq!(tree.roots[1].service, "order");
    assert_eq!(tree.roots[1].children.len(), 1);
    assert!(tree.warnings.iter().any(|w| w.contains("not in the trace")));
}

#[test]
fn no_root_yet_is_incomplete() {
    let spans = sample_trace(3)[1..].to_vec();
    let tree = assemble(&spans);
    assert!(!tree.complete);
    assert!(tree.roots.iter().all(|r| r.orphan));
    assert_eq!(
        tree.missing.len(),
        1,
        "the root is awaited: {:?}",
        tree.missing
    );
    assert_eq!(tree.missing[0].parent_span_id, None);
    assert!(assemble(&sample_trace(3)).complete);
}

#[test]
fn two_parentless_spans_are_incomplete() {
    let t = trace_id(4);
    let spans = vec![
        span(t, 1, None, "a", "x", Server, 0.0, 1.0),
        span(t, 2, None, "a", "y", Server, 2.0, 1.0),
    ];
    let tree = assemble(&spans);
    assert!(!tree.complete);
    assert_eq!(names(&tree.roots), vec!["x", "y"]);
}

#[test]
fn cycles_and_self_parents_terminate() {
    let t = trace_id(5);
    let spans = vec![
        span(t, 1, Some(2), "a", "x", Server, 0.0, 1.0),
        span(t, 2, Some(1), "a", "y", Server, 1.0, 1.0),
        span(t, 3, Some(3), "a", "self", Server, 2.0, 1.0),
    ];
    let tree = assemble(&spans);
    assert!(!tree.complete);
    let total: usize = tree.roots.iter().map(|r| 1 + r.children.len()).sum();
    assert_eq!(total, 3);
    assert!(tree.warnings.iter().any(|w| w.contains("cycle")));
}

#[test]
fn very_deep_chains_are_cut_not_overflowed() {
    let t = trace_id(6);
    let spans: Vec<_> = (1..=2000u64)
        .map(|i| {
            span(
                t,
                i,
                (i > 1).then(|| i - 1),
                "a",
                "n",
                Internal,
                i as f64,
                1.0,
            )
        })
        .collect();
    let tree = assemble(&spans);
    assert!(!tree.complete);
    assert!(tree.roots.len() >= 2000 / MAX_DEPTH);
    assert!(serde_json::to_string(&tree).is_ok());
    assert!(!text::render(&tree).is_empty());
}

#[test]
fn shared_span_ids_link_server_under_client() {
    // Zipkin's shape: the shared SERVER span carries the CLIENT's parent id, and the
    // server's own work names the shared id as its parent.
    let t = trace_id(7);
    let spans = vec![
        span(t, 1, None, "a", "root", Server, 0.0, 10.0),
        span(t, 2, Some(1), "a", "call", Client, 1.0, 8.0),
        span(t, 2, Some(1), "b", "call", Server, 2.0, 6.0),
        span(t, 3, Some(2), "b", "query", Client, 3.0, 4.0),
    ];
    let tree = assemble(&spans);
    assert!(tree.complete, "{:?}", tree.warnings);
    assert_eq!(tree.roots.len(), 1);
    let client = &tree.roots[0].children[0];
    assert_eq!(client.service, "a");
    assert_eq!(
        client.children.len(),
        1,
        "the server is the client's only child"
    );
    let server = &client.children[0];
    assert_eq!(server.service, "b");
    assert_eq!(server.children[0].name, "query");
}

#[test]
fn json_has_exactly_the_contract_fields() {
    let tree = assemble(&sample_trace(8));
    let v = serde_json::to_value(&tree).unwrap();
    let mut top: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    top.sort();
    assert_eq!(
        top,
        [
            "complete",
            "critical_path",
            "depth",
            "duration_ns",
            "http_status",
            "missing",
            "outcome_reason",
            "roots",
            "service_count",
            "services",
            "span_count",
            "start_time_unix_nano",
            "trace_id",
            "warnings"
        ]
    );
    let mut node: Vec<_> = v["roots"][0].as_object().unwrap().keys().cloned().collect();
    node.sort();
    assert_eq!(
        node,
        [
            "attributes",
            "cause",
            "children",
            "critical",
            "duration_ns",
            "events",
            "kind",
            "linked_from",
            "links",
            "name",
            "offset_ns",
            "orphan",
            "parent_span_id",
            "self_time_ns",
            "service",
            "span_id",
            "start_time_unix_nano",
            "status",
            "status_message",
            "warnings"
        ]
    );
}

fn find(nodes: &[TreeNode], id: u64) -> Option<&TreeNode> {
    let want = crate::testing::span_id(id).to_hex();
    let mut stack: Vec<&TreeNode> = nodes.iter().collect();
    while let Some(n) = stack.pop() {
        if n.span_id == want {
            return Some(n);
        }
        stack.extend(n.children.iter());
    }
    None
}

fn hex(ids: &[u64]) -> Vec<String> {
    ids.iter()
        .map(|&i| crate::testing::span_id(i).to_hex())
        .collect()
}

#[test]
fn sequential_calls_are_all_critical_and_self_time_subtracts_children() {
    let tree = assemble(&sample_trace(9));
    assert_eq!(tree.depth, 4);
    assert_eq!(tree.critical_path, hex(&[1, 2, 3, 4, 5, 6, 7]));
    let root = &tree.roots[0];
    assert!(root.critical);
    // 412.3 ms minus the two calls (31.2 ms and 370 ms).
    assert_eq!(root.self_time_ns, 11_100_000);
    let db = find(&tree.roots, 4).unwrap();
    assert_eq!(db.self_time_ns, db.duration_ns, "leaf: all self");
    // order (34 ms .. 1234 ms) overruns its parent; its own child is clipped to it.
    let order = find(&tree.roots, 6).unwrap();
    assert_eq!(order.self_time_ns, 1200 * MS - 2_500_000);
    assert!(order.warnings.contains(&"clamped".to_owned()));
    assert!(find(&tree.roots, 2).unwrap().warnings.is_empty());
}

#[test]
fn parallel_children_only_the_last_finishing_chain_is_critical() {
    let t = trace_id(20);
    // root 0..100; a 10..40 and b 10..90 in parallel; c 92..95 after them; b has child
    // b1 20..80; a has child a1 15..35 (not critical: a finished before b).
    let spans = vec![
        span(t, 1, None, "fe", "root", Server, 0.0, 100.0),
        span(t, 2, Some(1), "fe", "a", Client, 10.0, 30.0),
        span(t, 3, Some(1), "fe", "b", Client, 10.0, 80.0),
        span(t, 4, Some(1), "fe", "c", Internal, 92.0, 3.0),
        span(t, 5, Some(3), "be", "b1", Server, 20.0, 60.0),
        span(t, 6, Some(2), "be", "a1", Server, 15.0, 20.0),
    ];
    let tree = assemble(&spans);
    assert_eq!(tree.critical_path, hex(&[1, 3, 5, 4]));
    assert!(!find(&tree.roots, 2).unwrap().critical);
    assert!(!find(&tree.roots, 6).unwrap().critical);
    // root: 100 - union(10..90, 92..95) = 100 - 83 = 17 ms.
    assert_eq!(tree.roots[0].self_time_ns, 17 * MS);
    // b: 80 - 60.
    assert_eq!(find(&tree.roots, 3).unwrap().self_time_ns, 20 * MS);
    assert_eq!(tree.depth, 3);
    let text = text::render(&tree);
    assert!(text.contains("(◆ critical path)"), "{text}");
    assert!(text.contains("├─ ◆ fe b [client]"), "{text}");
    assert!(text.contains("├─ fe a [client]"), "{text}");
    // root: 17 of 100 ms is its own work; b: 20 of 80 ms.
    assert!(
        text.contains("fe root [server] 100.0 ms  self 17.0 ms"),
        "{text}"
    );
    assert!(
        text.contains("fe b [client] 80.0 ms  self 20.0 ms"),
        "{text}"
    );
}

fn on_host(mut s: Span, host: &str) -> Span {
    let mut r = (*s.resource).clone();
    r.attributes.retain(|kv| kv.key != "host.name");
    r.attributes.push(model::KeyValue::new(
        "host.name",
        AttrValue::String(host.into()),
    ));
    s.resource = std::sync::Arc::new(r);
    s
}

#[test]
fn clock_skew_on_another_host_is_corrected_with_a_warning() {
    let t = trace_id(21);
    // The child host's clock is 5 s ahead: its server span starts after the client ends.
    let spans = vec![
        on_host(span(t, 1, None, "fe", "root", Server, 0.0, 100.0), "a"),
        on_host(span(t, 2, Some(1), "fe", "call", Client, 10.0, 50.0), "a"),
        on_host(
            span(t, 3, Some(2), "be", "handle", Server, 5015.0, 40.0),
            "b",
        ),
        on_host(span(t, 4, Some(3), "be", "db", Client, 5020.0, 10.0), "b"),
    ];
    let tree = assemble(&spans);
    assert!(tree.complete);
    let server = find(&tree.roots, 3).unwrap();
    // Moved back to end with its parent (10..60): starts at 20 ms.
    assert_eq!(server.offset_ns, 20 * MS);
    assert_eq!(server.duration_ns, 40 * MS);
    assert!(
        server.warnings[0].contains("clock skew adjusted"),
        "{:?}",
        server.warnings
    );
    // Its child on the same host moves with it, without a warning of its own.
    let db = find(&tree.roots, 4).unwrap();
    assert_eq!(db.offset_ns, 25 * MS);
    assert!(db.warnings.is_empty());
    assert_eq!(tree.duration_ns, 100 * MS, "no span sticks out any more");
    assert!(tree.warnings.iter().any(|w| w.contains("clock skew")));

    // raw: nothing moves.
    let raw = assemble_with(&spans, &AssembleOptions::raw());
    assert_eq!(find(&raw.roots, 3).unwrap().offset_ns, 5015 * MS);
    // Over the maximum delta: not applied, but reported.
    let small = AssembleOptions {
        clock_skew_max_delta_ns: Some(1000 * MS),
    };
    let capped = assemble_with(&spans, &small);
    let server = find(&capped.roots, 3).unwrap();
    assert_eq!(server.offset_ns, 5015 * MS);
    assert!(
        server.warnings[0].contains("exceeded"),
        "{:?}",
        server.warnings
    );
}

#[test]
fn child_starting_early_on_another_host_is_moved_forward() {
    let t = trace_id(22);
    let spans = vec![
        on_host(span(t, 1, None, "fe", "root", Server, 100.0, 100.0), "a"),
        on_host(span(t, 2, Some(1), "be", "early", Server, 90.0, 20.0), "b"),
        // Same host as the parent: never adjusted even when outside.
        on_host(
            span(t, 3, Some(1), "fe", "async", Internal, 150.0, 100.0),
            "a",
        ),
    ];
    let tree = assemble(&spans);
    assert_eq!(find(&tree.roots, 2).unwrap().offset_ns, 0);
    assert_eq!(find(&tree.roots, 3).unwrap().offset_ns, 50 * MS);
    assert!(find(&tree.roots, 3).unwrap().warnings.is_empty());
}

#[test]
fn duplicate_copies_are_merged_with_a_warning() {
    let mut spans = sample_trace(23);
    let mut richer = spans[2].clone();
    richer
        .attributes
        .push(model::KeyValue::new("extra", AttrValue::Bool(true)));
    spans.push(spans[2].clone());
    spans.push(richer);
    let tree = assemble(&spans);
    assert_eq!(tree.span_count, 7);
    assert!(tree.complete);
    let user = find(&tree.roots, 3).unwrap();
    assert!(
        user.attributes.contains_key("extra"),
        "the richest copy wins"
    );
    assert!(user.warnings[0].contains("3 copies"), "{:?}", user.warnings);
    assert!(tree.warnings.iter().any(|w| w.contains("3 copies")));
}
