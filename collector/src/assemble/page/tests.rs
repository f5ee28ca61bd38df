//! Pages of a tree: the whole page is the assembled tree; limits choose breadth first.

use serde_json::Value;

use super::*;
use crate::assemble::{AssembleOptions, adjust, assemble};
use crate::model::Span;
use crate::model::SpanKind::{Internal, Server};
use crate::testing::{sample_trace, span, span_id, trace_id};

fn write_all(spans: &[Span], page: &TreePage) -> Value {
    let layout = Layout::new(adjust(spans, &AssembleOptions::default()));
    let selection = Selection::choose(&layout, page).unwrap();
    let mut writer = JsonTreeWriter::new(layout, selection, Vec::new());
    let mut out = Vec::new();
    let mut pieces = 0;
    while writer.next_piece(&mut out) {
        pieces += 1;
    }
    assert!(pieces > 1, "written piece by piece");
    serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
}

/// Root 1 with children 2..=4; 2 has children 5, 6; 5 has child 7.
fn small_tree() -> Vec<Span> {
    let t = trace_id(9);
    let s = |id, parent, start| {
        span(
            t,
            id,
            parent,
            "svc",
            &format!("op{id}"),
            Internal,
            start,
            1.0,
        )
    };
    vec![
        span(t, 1, None, "svc", "root", Server, 0.0, 100.0),
        s(2, Some(1), 1.0),
        s(3, Some(1), 2.0),
        s(4, Some(1), 3.0),
        s(5, Some(2), 4.0),
        s(6, Some(2), 5.0),
        s(7, Some(5), 6.0),
    ]
}

#[test]
fn the_whole_page_is_the_assembled_tree() {
    for spans in [sample_trace(4), small_tree()] {
        let mut expected = serde_json::to_value(assemble(&spans)).unwrap();
        expected["spans_omitted"] = Value::from(0);
        assert_eq!(write_all(&spans, &TreePage::default()), expected);
    }
}

#[test]
fn a_limit_keeps_the_top_levels_and_counts_what_it_left_out() {
    let page = write_all(
        &small_tree(),
        &TreePage {
            limit: Some(4),
            root: None,
        },
    );
    assert_eq!(page["spans_omitted"], 3);
    let root = &page["roots"][0];
    assert_eq!(root["name"], "root");
    let children = root["children"].as_array().unwrap();
    assert_eq!(children.len(), 3, "breadth first: all of the second level");
    assert!(root.get("children_omitted").is_none());
    assert_eq!(children[0]["name"], "op2");
    assert_eq!(children[0]["children"], serde_json::json!([]));
    assert_eq!(children[0]["children_omitted"], 2);
}

#[test]
fn a_page_can_start_at_a_span() {
    let page = write_all(
        &small_tree(),
        &TreePage {
            limit: Some(2),
            root: Some(span_id(2)),
        },
    );
    let roots = page["roots"].as_array().unwrap();
    assert_eq!(roots.len(), 1);
    assert_eq!(roots[0]["name"], "op2");
    assert_eq!(roots[0]["children"][0]["name"], "op5");
    assert_eq!(roots[0]["children_omitted"], 1);
    assert_eq!(roots[0]["children"][0]["children_omitted"], 1);
    assert_eq!(page["spans_omitted"], 2);
    assert_eq!(
        page["span_count"], 7,
        "the header describes the whole trace"
    );

    let layout = Layout::new(adjust(&small_tree(), &AssembleOptions::default()));
    let unknown = TreePage {
        limit: None,
        root: Some(span_id(99)),
    };
    assert!(matches!(
        Selection::choose(&layout, &unknown),
        Err(PageError::UnknownSpan(_))
    ));
}
