//! `GET /v1/dependencies`: the service dependency graph.
//!
//! Parameters: `lookback` (a duration such as `1h`, default 1 h) or `start_time` /
//! `end_time` (unix seconds; `end_time` defaults to now); `service` keeps only the edges that
//! touch that service. The window is at most 30 days; an empty or reversed one is 400.
//!
//! ```json
//! {"dependencies": [{"parent": "frontend", "child": "order", "call_count": 3, "error_count": 1}],
//!  "services": ["frontend", "order", "payment", "user"],
//!  "start_time_unix_nano": 1763700000000000000, "end_time_unix_nano": 1763703600000000000}
//! ```
//!
//! An edge is a SERVER or CONSUMER span whose parent span belongs to another service (a
//! CLIENT → SERVER or PRODUCER → CONSUMER call), counted by the child span's start;
//! `error_count` counts calls where either side has status error. `services` lists every
//! known service (edges' ends included), so services without calls show as lone nodes.
//!
//! A queue hop (PRODUCER → CONSUMER) carries `"via"`: the destination its messages went
//! through, e.g. `{"parent": "payment", "child": "notification", "via": "payments.completed",
//! "call_count": 1, "error_count": 0}` (here `call_count` counts processed messages, each
//! delivery once). Direct calls have no `via`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::params::{Pairs, Param, pairs};
use crate::AppState;
use crate::error::Error;
use crate::store::DependencyEdge;

/// Default window: 1 hour.
pub const DEFAULT_LOOKBACK_NS: u64 = 3600 * 1_000_000_000;

/// `GET /v1/dependencies`.
pub(crate) async fn get_dependencies(
    State(state): State<AppState>,
    query: Pairs,
) -> Result<Response, Error> {
    let params = pairs(query)?;
    let (mut start, mut end, mut lookback, mut service) = (None, None, None, None);
    for (key, value) in params {
        let p = Param::new(&key, &value);
        match key.as_str() {
            "lookback" if !value.is_empty() => {
                lookback = Some(p.duration_ns("1h")?);
            }
            "start_time" if !value.is_empty() => {
                start = Some(p.unix_seconds()?);
            }
            "end_time" if !value.is_empty() => {
                end = Some(p.unix_seconds()?);
            }
            "service" if !value.is_empty() => service = Some(value.clone()),
            _ => {}
        }
    }
    let window = super::window(start, end, lookback, DEFAULT_LOOKBACK_NS)?;
    let mut edges = state.store.dependencies(window).await?;
    if let Some(s) = &service {
        edges.retain(|e| &e.parent == s || &e.child == s);
    }
    let mut services = state.store.services().await?;
    for e in &edges {
        services.push(e.parent.clone());
        services.push(e.child.clone());
    }
    services.sort();
    services.dedup();
    Ok(axum::Json(json!({
        "dependencies": edges.iter().map(edge_json).collect::<Vec<_>>(),
        "services": services,
        "start_time_unix_nano": window.start_unix_nano,
        "end_time_unix_nano": window.end_unix_nano,
    }))
    .into_response())
}

fn edge_json(e: &DependencyEdge) -> serde_json::Value {
    let mut edge = json!({
        "parent": e.parent,
        "child": e.child,
        "call_count": e.call_count,
        "error_count": e.error_count,
    });
    if let Some(via) = &e.via {
        edge["via"] = json!(via);
    }
    edge
}
