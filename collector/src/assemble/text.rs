//! The text tree of DESIGN.md §4 (`?format=text` or `Accept: text/plain`):
//!
//! ```text
//! trace 4bf92f3577b34da6a3ce929d0e0e4736  11 spans  4 services  412.3 ms  402  (◆ critical path)  http://localhost:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736
//! outcome: 402 payment declined: amount 6495.00 exceeds the limit 5000.00
//! └─ ◆ frontend POST /orders [server] 412.3 ms  self 2.1 ms  402
//!    ├─ frontend GET /users/{id} [client] 31.2 ms  +1.1 ms  200
//!    │  └─ user GET /users/{id} [server] 29.8 ms  +1.6 ms  200
//!    ...
//!             └─ ◆ payment POST /payments [server] 62.3 ms  +34.3 ms  503  ERROR
//!                ✗ injected fault (sim.fail.payment)
//!                · exception +96.5 ms
//! ```
//!
//! The header line: trace id, span and service counts, duration, the root's HTTP status,
//! `(incomplete)` when the trace is not known to be whole, the legend `(◆ critical path)`
//! when there is one, and the trace's web UI link when the caller knows it. An `outcome:` line
//! follows when the request failed or was refused, with the reason from the span that
//! decided it.
//!
//! Per span: `◆ ` when the span is on the critical path, service, name, `[kind]`, duration,
//! `self <time>` when the span has children and its own time is at least 10 % of its duration
//! and at least 1 ms, `+offset` from the trace start (every span but a parentless root), the
//! `http.response.status_code` (or legacy `http.status_code`), `ERROR` for error spans and
//! `(orphan: parent <id> not in trace)` for orphans. Under the span: `✗ <cause>` for an error
//! span (exception type and message, or status message), then its events as
//! `· <name> +<offset>` (exception events always, every event with
//! [`TextOptions::all_events`]). Warnings follow the tree as `warning: ...` lines, among them
//! what an incomplete trace still waits for. Control characters in names are escaped so a
//! span cannot break the layout.

use std::fmt::Write as _;

use super::page::Selection;
use super::{Layout, TraceTree, TreeNode};

/// Put before the service name of a span on the critical path.
pub const CRITICAL_MARK: &str = "◆ ";
/// Smallest self time shown, nanoseconds (1 ms).
pub const MIN_SELF_TIME_NS: u64 = 1_000_000;

/// What the text tree shows beyond the tree itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextOptions {
    /// The web UI's base URL (`http://localhost:16686`): the header links the trace page.
    pub ui_url: Option<String>,
    /// Every span event, not only exceptions (`?events=true`).
    pub all_events: bool,
}

/// Renders the text tree with the default options (ends with a newline).
pub fn render(tree: &TraceTree) -> String {
    render_with(tree, &TextOptions::default())
}

/// Renders the text tree (ends with a newline).
pub fn render_with(tree: &TraceTree, options: &TextOptions) -> String {
    let mut out = String::new();
    render_header(&mut out, tree, options);
    let count = tree.roots.len();
    for (i, root) in tree.roots.iter().enumerate() {
        render_node(&mut out, root, "", i + 1 == count, options);
    }
    render_warnings(&mut out, tree);
    out
}

/// Renders a page of a laid-out tree ([`super::page`]), one node built at a time: a trace
/// at the span limit costs its text, not its whole [`TraceTree`]. Spans the page left out
/// show as `… N child spans not shown` under their parent.
pub fn render_page(layout: &Layout, selection: &Selection, options: &TextOptions) -> String {
    let mut out = String::new();
    render_header(&mut out, layout.header(), options);
    // (span, prefix of its line, last among its siblings)
    let (tops, tops_omitted) = selection.split(selection.tops());
    let mut stack: Vec<Entry> = Vec::new();
    push_siblings(&mut stack, &tops, tops_omitted, "");
    while let Some(entry) = stack.pop() {
        match entry {
            Entry::More { count, prefix } => {
                let _ = writeln!(
                    out,
                    "{prefix}└─ … {} not shown",
                    plural(count, "child span")
                );
            }
            Entry::Node {
                index,
                prefix,
                last,
            } => {
                let node = layout.node(index);
                let (children, omitted) = selection.split(layout.children(index));
                let has_children = !children.is_empty() || omitted > 0;
                let child_prefix =
                    render_line(&mut out, &node, has_children, &prefix, last, options);
                push_siblings(&mut stack, &children, omitted, &child_prefix);
            }
        }
    }
    render_warnings(&mut out, layout.header());
    out
}

enum Entry {
    Node {
        index: usize,
        prefix: String,
        last: bool,
    },
    More {
        count: usize,
        prefix: String,
    },
}

/// Pushes siblings (and their `… N more` line) so they pop in order.
fn push_siblings(stack: &mut Vec<Entry>, nodes: &[usize], omitted: usize, prefix: &str) {
    if omitted > 0 {
        stack.push(Entry::More {
            count: omitted,
            prefix: prefix.to_owned(),
        });
    }
    for (k, &index) in nodes.iter().enumerate().rev() {
        stack.push(Entry::Node {
            index,
            prefix: prefix.to_owned(),
            last: k + 1 == nodes.len() && omitted == 0,
        });
    }
}

fn render_header(out: &mut String, tree: &TraceTree, options: &TextOptions) {
    let _ = write!(
        out,
        "trace {}  {}  {}  {}",
        tree.trace_id,
        plural(tree.span_count, "span"),
        plural(tree.service_count, "service"),
        format_duration_ns(tree.duration_ns)
    );
    if let Some(code) = tree.http_status {
        let _ = write!(out, "  {code}");
    }
    if !tree.complete {
        out.push_str("  (incomplete)");
    }
    if !tree.critical_path.is_empty() {
        out.push_str(&format!("  ({CRITICAL_MARK}critical path)"));
    }
    if let Some(base) = &options.ui_url {
        let _ = write!(
            out,
            "  {}/trace/{}",
            clean(base.trim_end_matches('/')),
            tree.trace_id
        );
    }
    out.push('\n');
    if let Some(reason) = &tree.outcome_reason {
        out.push_str("outcome: ");
        if let Some(code) = tree.http_status {
            let _ = write!(out, "{code} ");
        }
        let _ = writeln!(out, "{}", clean(reason));
    }
}

fn render_warnings(out: &mut String, tree: &TraceTree) {
    for warning in &tree.warnings {
        let _ = writeln!(out, "warning: {}", clean(warning));
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn render_node(out: &mut String, node: &TreeNode, prefix: &str, last: bool, options: &TextOptions) {
    let child_prefix = render_line(out, node, !node.children.is_empty(), prefix, last, options);
    let count = node.children.len();
    for (i, child) in node.children.iter().enumerate() {
        render_node(out, child, &child_prefix, i + 1 == count, options);
    }
}

/// Writes one span's line and the lines under it; returns the prefix of its children.
fn render_line(
    out: &mut String,
    node: &TreeNode,
    has_children: bool,
    prefix: &str,
    last: bool,
    options: &TextOptions,
) -> String {
    let _ = write!(
        out,
        "{prefix}{}{}{} {} [{}] {}",
        if last { "└─ " } else { "├─ " },
        if node.critical { CRITICAL_MARK } else { "" },
        clean(&node.service),
        clean(&node.name),
        node.kind,
        format_duration_ns(node.duration_ns)
    );
    if has_children && notable_self_time(node) {
        let _ = write!(out, "  self {}", format_duration_ns(node.self_time_ns));
    }
    if node.parent_span_id.is_some() {
        let _ = write!(out, "  +{}", format_duration_ns(node.offset_ns));
    }
    if let Some(code) = http_status(node) {
        let _ = write!(out, "  {code}");
    }
    if node.status == "error" {
        out.push_str("  ERROR");
    }
    if node.orphan
        && let Some(parent) = &node.parent_span_id
    {
        let _ = write!(out, "  (orphan: parent {parent} not in trace)");
    }
    out.push('\n');
    let child_prefix = format!("{prefix}{}", if last { "   " } else { "│  " });
    let detail_prefix = format!("{child_prefix}{}", if has_children { "│  " } else { "   " });
    if let Some(cause) = &node.cause {
        let _ = writeln!(out, "{detail_prefix}✗ {}", clean(cause));
    }
    for from in &node.linked_from {
        let _ = writeln!(
            out,
            "{detail_prefix}↩ linked from {} {} [{}] {}",
            clean(from["service"].as_str().unwrap_or("")),
            clean(from["name"].as_str().unwrap_or("")),
            clean(from["kind"].as_str().unwrap_or("")),
            clean(from["span_id"].as_str().unwrap_or(""))
        );
    }
    for event in &node.events {
        let name = event["name"].as_str().unwrap_or("");
        if options.all_events || name == "exception" {
            let offset = event["offset_ns"].as_u64().unwrap_or(0);
            let _ = writeln!(
                out,
                "{detail_prefix}· {} +{}",
                clean(name),
                format_duration_ns(offset)
            );
        }
    }
    child_prefix
}

/// Self time is shown for spans with children when it is at least 10 % of the span and at
/// least [`MIN_SELF_TIME_NS`]: then the span itself, not only its children, took time.
fn notable_self_time(node: &TreeNode) -> bool {
    let (own, total) = (u128::from(node.self_time_ns), u128::from(node.duration_ns));
    own * 10 >= total && node.self_time_ns >= MIN_SELF_TIME_NS
}

fn http_status(node: &TreeNode) -> Option<i64> {
    ["http.response.status_code", "http.status_code"]
        .iter()
        .find_map(|key| match node.attributes.get(*key)? {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        })
}

/// Escapes control characters (newlines, ANSI escapes) so one span stays on one line.
fn clean(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// A readable duration: `850 ns`, `1.5 µs`, `850 µs`, `31.2 ms`, `412.3 ms`, `1.20 s`, `153 s`.
pub fn format_duration_ns(ns: u64) -> String {
    let n = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 9_950 {
        format!("{:.1} µs", n / 1e3)
    } else if ns < 999_500 {
        format!("{:.0} µs", n / 1e3)
    } else if ns < 999_950_000 {
        format!("{:.1} ms", n / 1e6)
    } else if ns < 99_995_000_000 {
        format!("{:.2} s", n / 1e9)
    } else {
        format!("{:.0} s", n / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::assemble;
    use crate::testing::sample_trace;

    #[test]
    fn durations_read_well() {
        let cases: &[(u64, &str)] = &[
            (0, "0 ns"),
            (850, "850 ns"),
            (1_500, "1.5 µs"),
            (850_000, "850 µs"),
            (999_499, "999 µs"),
            (999_500, "1.0 ms"),
            (1_100_000, "1.1 ms"),
            (31_200_000, "31.2 ms"),
            (412_345_678, "412.3 ms"),
            (999_949_999, "999.9 ms"),
            (1_200_000_000, "1.20 s"),
            (153_000_000_000, "153 s"),
        ];
        for (ns, want) in cases {
            assert_eq!(format_duration_ns(*ns), *want, "{ns} ns");
        }
    }

    #[test]
    fn golden_tree() {
        let tree = assemble(&sample_trace(1));
        let want = "\
trace 4b0000000000001f0000000000000001  7 spans  3 services  1.23 s  201  (◆ critical path)
└─ ◆ frontend POST /orders [server] 412.3 ms  201
   ├─ ◆ frontend GET /users/{id} [client] 31.2 ms  +1.1 ms  200
   │  └─ ◆ user GET /users/{id} [server] 29.8 ms  self 28.9 ms  +1.6 ms  200
   │     └─ ◆ user SELECT users [client] 850 µs  +2.0 ms
   └─ ◆ frontend POST /orders [client] 370.0 ms  +33.0 ms  201
      └─ ◆ order POST /orders [server] 1.20 s  self 1.20 s  +34.0 ms  ERROR
         │  ✗ declined
         │  · exception +40.0 ms
         └─ ◆ order INSERT orders [client] 2.5 ms  +35.0 ms
warning: span 0100000000000006: clamped
";
        assert_eq!(render(&tree), want);
    }

    fn page_of(spans: &[crate::model::Span], page: &crate::assemble::page::TreePage) -> String {
        use crate::assemble::{AssembleOptions, adjust};
        let layout = Layout::new(adjust(spans, &AssembleOptions::default()));
        let selection = Selection::choose(&layout, page).unwrap();
        render_page(&layout, &selection, &TextOptions::default())
    }

    #[test]
    fn a_whole_page_renders_as_the_tree() {
        for seed in [1, 2] {
            let mut spans = sample_trace(seed);
            if seed == 2 {
                spans.remove(4); // an orphan: two roots
            }
            let whole = crate::assemble::page::TreePage::default();
            assert_eq!(page_of(&spans, &whole), render(&assemble(&spans)));
        }
    }

    #[test]
    fn a_limited_page_says_how_many_spans_it_left_out() {
        let page = crate::assemble::page::TreePage {
            limit: Some(3),
            root: None,
        };
        let text = page_of(&sample_trace(1), &page);
        assert!(
            text.contains("   ├─ ◆ frontend GET /users/{id} [client]"),
            "{text}"
        );
        assert!(
            text.contains("   │  └─ … 1 child span not shown\n"),
            "{text}"
        );
        assert!(
            text.contains("      └─ … 1 child span not shown\n"),
            "{text}"
        );
        assert!(!text.contains("user SELECT"), "{text}");
    }

    #[test]
    fn a_linked_span_names_the_spans_that_link_to_it() {
        let mut spans = sample_trace(3);
        let (target_trace, target) = (spans[1].trace_id, spans[1].span_id);
        spans[4].links.push(crate::model::Link {
            trace_id: target_trace,
            span_id: target,
            trace_state: String::new(),
            attributes: Vec::new(),
        });
        let tree = assemble(&spans);
        let text = render(&tree);
        let linker = &spans[4];
        assert!(
            text.contains(&format!(
                "↩ linked from {} {} [{}] {}",
                linker.service_name,
                linker.name,
                linker.kind.as_str(),
                linker.span_id
            )),
            "{text}"
        );
        let json = serde_json::to_value(&tree).unwrap();
        let target_hex = target.to_hex();
        let mut stack: Vec<&serde_json::Value> = json["roots"].as_array().unwrap().iter().collect();
        let node = std::iter::from_fn(|| {
            let n = stack.pop()?;
            stack.extend(n["children"].as_array().into_iter().flatten());
            Some(n)
        })
        .find(|n| n["span_id"] == target_hex.as_str())
        .unwrap();
        assert_eq!(node["linked_from"][0]["span_id"], linker.span_id.to_hex());
    }

    #[test]
    fn orphans_and_hostile_names_render_on_one_line() {
        let mut spans = sample_trace(2);
        spans.retain(|s| s.span_id != crate::testing::span_id(5));
        spans[0].name = "evil\n\x1b[31mname".into();
        let text = render(&assemble(&spans));
        assert!(
            text.contains("(orphan: parent 0100000000000005 not in trace)"),
            "{text}"
        );
        assert!(text.contains("evil\\n\\u{1b}[31mname"), "{text}");
        assert_eq!(text.lines().filter(|l| l.contains("evil")).count(), 1);
    }
}
