//! The traces `GET /v1/traces/{id}/tree?links=follow` stitches in: those this trace's spans
//! link to, then those whose spans link to it (the store's inbound-link index,
//! [`SpanStore::traces_linking_to`](crate::store::SpanStore::traces_linking_to)).

use super::native::MAX_FOLLOWED_TRACES;
use crate::AppState;
use crate::error::Error;
use crate::model::TraceId;
use crate::store::StoredTrace;

/// How a trace stitched in by `links=follow` relates to the one asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Relation {
    /// A span of the trace asked for links to a span of it (`"relation": "links_to"`).
    LinksTo,
    /// A span of it links to a span of the trace asked for (`"relation": "linked_from"`).
    LinkedFrom,
}

impl Relation {
    /// The JSON value of `relation`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Relation::LinksTo => "links_to",
            Relation::LinkedFrom => "linked_from",
        }
    }

    /// The heading of such a trace in the text tree.
    pub(crate) fn heading(self) -> &'static str {
        match self {
            Relation::LinksTo => "linked trace (this trace links to it):",
            Relation::LinkedFrom => "linked trace (it links to this trace):",
        }
    }
}

/// The stored traces that spans of `trace` link to (in the order first linked), then those
/// whose spans link to it (ascending id, from the store's link index): other traces only,
/// each once (a trace both ways is `LinksTo`), at most [`MAX_FOLLOWED_TRACES`] in all;
/// traces not stored are left out.
pub(crate) async fn linked_traces(
    state: &AppState,
    trace: &StoredTrace,
) -> Result<Vec<(Relation, StoredTrace)>, Error> {
    let own = trace.summary.trace_id;
    let mut ids: Vec<(Relation, TraceId)> = Vec::new();
    let has = |ids: &[(Relation, TraceId)], id: TraceId| ids.iter().any(|(_, i)| *i == id);
    for l in trace.spans.iter().flat_map(|s| &s.links) {
        if l.trace_id != own && !has(&ids, l.trace_id) && ids.len() < MAX_FOLLOWED_TRACES {
            ids.push((Relation::LinksTo, l.trace_id));
        }
    }
    if ids.len() < MAX_FOLLOWED_TRACES {
        // Enough to fill the rest even when some are outbound already.
        let inbound = state
            .store
            .traces_linking_to(own, MAX_FOLLOWED_TRACES)
            .await?;
        for id in inbound {
            if id != own && !has(&ids, id) && ids.len() < MAX_FOLLOWED_TRACES {
                ids.push((Relation::LinkedFrom, id));
            }
        }
    }
    let mut found = Vec::with_capacity(ids.len());
    for (relation, id) in ids {
        if let Some(t) = state.store.get_trace(id).await? {
            found.push((relation, t));
        }
    }
    Ok(found)
}
