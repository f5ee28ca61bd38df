//! A page of a trace tree (issue 16 item 2): which nodes an answer holds, and the JSON tree
//! written one node at a time from a [`Layout`].
//!
//! `GET /v1/traces/{trace_id}/tree?limit=N` holds at most `N` spans, chosen **breadth
//! first** from the roots, so a huge trace opens at its top; `root=SPAN_ID` starts the page
//! at that span (its subtree, fetched when the reader opens it). A node whose children were
//! left out says how many in `"children_omitted"`; the tree says how many spans the page
//! left out in `"spans_omitted"` (0 when it is whole). Without `limit` the page is the whole
//! tree, identical to [`super::assemble`]'s JSON plus `"spans_omitted": 0`.

use std::collections::VecDeque;

use serde_json::Value;

use super::Layout;
use crate::model::SpanId;

/// Which part of a tree to answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreePage {
    /// Most spans in the page; `None` for all.
    pub limit: Option<usize>,
    /// Start at this span instead of the roots.
    pub root: Option<SpanId>,
}

/// The spans a page holds.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Per span: in the page.
    included: Vec<bool>,
    /// Where the page starts (the roots, or the one span asked for).
    tops: Vec<usize>,
    /// Spans of the tree (below the tops) left out.
    omitted: usize,
}

/// Errors choosing a page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    /// `root` names a span the trace does not have.
    #[error("span {0} is not in the trace")]
    UnknownSpan(SpanId),
}

impl Selection {
    /// Chooses the spans of `page`, breadth first from its start.
    ///
    /// # Errors
    /// [`PageError::UnknownSpan`] when `page.root` is not in the trace.
    pub fn choose(layout: &Layout, page: &TreePage) -> Result<Self, PageError> {
        let n = layout.header().span_count;
        let tops: Vec<usize> = match page.root {
            Some(id) => vec![layout.index_of(id).ok_or(PageError::UnknownSpan(id))?],
            None => layout.roots().to_vec(),
        };
        let limit = page.limit.unwrap_or(usize::MAX);
        let mut included = vec![false; n];
        let (mut taken, mut seen) = (0usize, 0usize);
        let mut queue: VecDeque<usize> = tops.iter().copied().collect();
        while let Some(i) = queue.pop_front() {
            seen += 1;
            if taken < limit {
                included[i] = true;
                taken += 1;
            }
            queue.extend(layout.children(i));
        }
        Ok(Self {
            included,
            tops,
            omitted: seen - taken,
        })
    }

    /// Whether span `i` is in the page.
    pub fn includes(&self, i: usize) -> bool {
        self.included.get(i).copied().unwrap_or(false)
    }

    /// Spans left out.
    pub fn omitted(&self) -> usize {
        self.omitted
    }

    /// (the included ones of `list`, how many were left out).
    pub fn split(&self, list: &[usize]) -> (Vec<usize>, usize) {
        let kept: Vec<usize> = list.iter().copied().filter(|&i| self.includes(i)).collect();
        let left = list.len() - kept.len();
        (kept, left)
    }

    /// Where the page starts.
    pub fn tops(&self) -> &[usize] {
        &self.tops
    }
}

struct Frame {
    nodes: Vec<usize>,
    next: usize,
    omitted: usize,
}

/// Writes a page of the tree as JSON, one node per [`next_piece`](Self::next_piece).
pub struct JsonTreeWriter {
    layout: Layout,
    selection: Selection,
    /// Header fields added to the tree object (e.g. `linked_traces`).
    extra: Vec<(String, Value)>,
    stack: Vec<Frame>,
    started: bool,
}

impl JsonTreeWriter {
    /// A writer of `selection` of `layout`; `extra` fields are added to the tree object.
    pub fn new(layout: Layout, selection: Selection, extra: Vec<(String, Value)>) -> Self {
        Self {
            layout,
            selection,
            extra,
            stack: Vec::new(),
            started: false,
        }
    }

    /// Appends the next piece (the tree's fields, then one node, then a closing bracket);
    /// `false` once the tree is complete.
    pub fn next_piece(&mut self, out: &mut Vec<u8>) -> bool {
        if !self.started {
            self.started = true;
            self.write_header(out);
            let (nodes, omitted) = self.selection.split(self.selection.tops());
            self.stack.push(Frame {
                nodes,
                next: 0,
                omitted,
            });
            return true;
        }
        let Some(frame) = self.stack.last_mut() else {
            return false;
        };
        if let Some(&i) = frame.nodes.get(frame.next) {
            if frame.next > 0 {
                out.push(b',');
            }
            frame.next += 1;
            write_node_head(out, &self.layout, i);
            let (nodes, omitted) = self.selection.split(self.layout.children(i));
            self.stack.push(Frame {
                nodes,
                next: 0,
                omitted,
            });
            return true;
        }
        let omitted = frame.omitted;
        self.stack.pop();
        out.push(b']');
        if self.stack.is_empty() {
            out.push(b'}');
            return false;
        }
        if omitted > 0 {
            out.extend_from_slice(b",\"children_omitted\":");
            out.extend_from_slice(omitted.to_string().as_bytes());
        }
        out.push(b'}');
        true
    }

    /// `{` + every field but `roots` + `"roots":[`.
    fn write_header(&mut self, out: &mut Vec<u8>) {
        let mut header = match serde_json::to_value(self.layout.header()) {
            Ok(Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        header.remove("roots");
        header.insert(
            "spans_omitted".into(),
            Value::from(self.selection.omitted()),
        );
        for (key, value) in self.extra.drain(..) {
            header.insert(key, value);
        }
        out.push(b'{');
        for (key, value) in &header {
            let _ = serde_json::to_writer(&mut *out, key);
            out.push(b':');
            if serde_json::to_writer(&mut *out, value).is_err() {
                out.extend_from_slice(b"null");
            }
            out.push(b',');
        }
        out.extend_from_slice(b"\"roots\":[");
    }
}

/// Writes node `i` up to and including `"children":[` (its last field).
fn write_node_head(out: &mut Vec<u8>, layout: &Layout, i: usize) {
    let mark = out.len();
    let node = layout.node(i);
    if serde_json::to_writer(&mut *out, &node).is_ok() && out.ends_with(b"[]}") {
        out.truncate(out.len() - 2);
    } else {
        // Unreachable for TreeNode (children is its last field); keep the JSON valid.
        out.truncate(mark);
        out.extend_from_slice(b"{\"children\":[");
    }
}

#[cfg(test)]
mod tests;
