//! # `GET /v1/tail`: a live stream of finished traces
//!
//! `curl -N localhost:16686/v1/tail?format=text` prints each trace once, when it is finished
//! ([`crate::assemble::settle`]: complete, or `COLLECTOR_TRACE_SETTLE` after its last span,
//! then with `"complete": false` and its `missing`). Without `format=text` each trace is one
//! line of tree JSON (NDJSON, `application/x-ndjson`); text trees are separated by a blank
//! line. The filters of `GET /v1/traces` apply (`service`, `operation`, `error`, `kind`,
//! `status`, `attr.KEY=VALUE`, `min_duration`, `max_duration`; `limit` and `sort` mean nothing
//! here), with the same meaning: the span conditions must hold for one span.
//!
//! The [`publish`] task takes finished traces from the settler, loads and assembles each once
//! (only while someone listens, or with `COLLECTOR_LOG_TREES`, which prints each text tree to
//! stdout), and broadcasts it. Each subscriber reads from a ring of the last
//! [`TAIL_BUFFER`] trees: a reader that falls behind loses the oldest, is told so in its
//! stream (`# 12 traces lost: this reader is too slow` in text, `{"lost": 12}` in NDJSON), and
//! the loss is counted (`spanline_tail_traces_lost_total`). Publishing never waits for a
//! reader, so no reader slows ingest or another reader.
//!
//! With `COLLECTOR_PEERS` and `COLLECTOR_PEER_QUERY_URLS`, an NDJSON stream also carries the
//! other collectors' finished traces (`query::tail_peers`); `format=text` shows this
//! collector's share.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast;

use crate::AppState;
use crate::assemble::settle::Finish;
use crate::assemble::{self, TraceTree, text};
use crate::error::Error;
use crate::store::{StoredTrace, TraceQuery};

use super::params::{Pairs, pairs, parse_search, ui_base_url};
use super::tail_peers::PeerFeeds;

/// Finished trees each subscriber may fall behind by before it loses the oldest.
pub const TAIL_BUFFER: usize = 256;
/// How often the publisher looks for traces whose settle time has passed.
const SWEEP_EVERY: Duration = Duration::from_millis(200);

/// A finished trace as published to subscribers.
#[derive(Debug)]
pub struct FinishedTrace {
    /// The stored trace (for the span filters).
    pub trace: StoredTrace,
    /// Its assembled tree.
    pub tree: TraceTree,
}

/// The broadcast side of the stream (one per collector).
#[derive(Debug, Clone)]
pub struct TailHub {
    sender: broadcast::Sender<Arc<FinishedTrace>>,
    log_trees: bool,
}

impl TailHub {
    /// A hub; with `log_trees`, every finished tree is also printed to stdout.
    pub fn new(log_trees: bool) -> Self {
        Self {
            sender: broadcast::Sender::new(TAIL_BUFFER),
            log_trees,
        }
    }

    /// Connected `GET /v1/tail` readers.
    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
    }

    fn wanted(&self) -> bool {
        self.log_trees || self.sender.receiver_count() > 0
    }
}

/// Publishes finished traces until the collector shuts down (see the module docs).
pub async fn publish(state: AppState) {
    let mut shutdown = state.shutdown_receiver();
    loop {
        tokio::select! {
            () = state.settler.finished_some() => {}
            () = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
        let finished = state.settler.take_finished(Instant::now());
        for f in &finished {
            let counter = match f.finish {
                Finish::Complete => &state.metrics.traces_finished_complete,
                Finish::Settled => &state.metrics.traces_finished_incomplete,
                Finish::Evicted => &state.metrics.traces_finished_evicted,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        // Tail sampling decides here (and deletes what it drops); only kept traces go on.
        for (finished, loaded) in crate::sampling::tail::judge(&state, finished).await {
            if !state.tail.wanted() {
                continue;
            }
            let trace = match loaded {
                Some(trace) => trace,
                None => match state.store.get_trace(finished.trace_id).await {
                    Ok(Some(trace)) => trace,
                    _ => continue,
                },
            };
            let tree = assemble::assemble(&trace.spans);
            if state.tail.log_trees {
                println!("{}", text::render(&tree));
            }
            let _ = state
                .tail
                .sender
                .send(Arc::new(FinishedTrace { trace, tree }));
        }
    }
}

/// `GET /v1/tail` (see the module docs).
pub(crate) async fn get_tail(
    State(state): State<AppState>,
    uri: Uri,
    query: Pairs,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let mut as_text = false;
    let mut filters = Vec::new();
    for (key, value) in pairs(query)? {
        match key.as_str() {
            "format" => {
                as_text = match value.as_str() {
                    "text" => true,
                    "json" => false,
                    _ => return Err(Error::BadRequest("format must be `json` or `text`".into())),
                }
            }
            _ => filters.push((key, value)),
        }
    }
    let query = parse_search(filters)?;
    let text_options = text::TextOptions {
        ui_url: ui_base_url(&headers),
        all_events: false,
    };
    let long_poll = state.long_polls.enter()?;
    let receiver = state.tail.sender.subscribe();
    let feeds = match &state.peers {
        Some(peers) if !as_text => PeerFeeds::start(peers, uri.query(), &headers),
        _ => None,
    };
    let metrics = Arc::clone(&state.metrics);
    let shutdown = state.shutdown_receiver();
    let reader = Reader {
        receiver,
        feeds,
        shutdown,
    };
    let stream = futures_util::stream::unfold(reader, move |mut reader| {
        // The place among the bounded long-polls lives as long as the stream.
        let _held = &long_poll;
        let query = query.clone();
        let text_options = text_options.clone();
        let metrics = Arc::clone(&metrics);
        async move {
            loop {
                let lost = |lost: u64| {
                    metrics.tail_traces_lost.fetch_add(lost, Ordering::Relaxed);
                    if as_text {
                        format!("# {lost} traces lost: this reader is too slow\n\n")
                    } else {
                        format!("{{\"lost\": {lost}}}\n")
                    }
                };
                let chunk = match reader.next().await? {
                    Next::Local(Ok(finished)) => {
                        if !matches(&query, &finished.trace) {
                            continue;
                        }
                        let chunk = if as_text {
                            text::render_with(&finished.tree, &text_options) + "\n"
                        } else {
                            let mut line =
                                serde_json::to_string(&finished.tree).unwrap_or_default();
                            line.push('\n');
                            line
                        };
                        Bytes::from(chunk)
                    }
                    Next::Local(Err(broadcast::error::RecvError::Lagged(n)))
                    | Next::Peer(Err(broadcast::error::RecvError::Lagged(n))) => {
                        Bytes::from(lost(n))
                    }
                    Next::Local(Err(broadcast::error::RecvError::Closed)) => return None,
                    Next::Peer(Err(broadcast::error::RecvError::Closed)) => {
                        reader.feeds = None;
                        continue;
                    }
                    Next::Peer(Ok(line)) => line,
                };
                return Some((Ok::<_, Infallible>(chunk), reader));
            }
        }
    });
    let content_type = if as_text {
        "text/plain; charset=utf-8"
    } else {
        "application/x-ndjson"
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// What one reader listens to: the local ring, the peers' lines, shutdown.
struct Reader {
    receiver: broadcast::Receiver<Arc<FinishedTrace>>,
    feeds: Option<PeerFeeds>,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

/// The next thing for a reader.
enum Next {
    /// A tree (or a loss) from this collector.
    Local(Result<Arc<FinishedTrace>, broadcast::error::RecvError>),
    /// A line (or a loss) from a peer.
    Peer(Result<Bytes, broadcast::error::RecvError>),
}

impl Reader {
    /// The next local tree or peer line; `None` when the collector shuts down.
    async fn next(&mut self) -> Option<Next> {
        let peer = async {
            match &mut self.feeds {
                Some(feeds) => feeds.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = self.receiver.recv() => Some(Next::Local(r)),
            r = peer => Some(Next::Peer(r)),
            _ = self.shutdown.wait_for(|stopping| *stopping) => None,
        }
    }
}

/// Whether a finished trace passes the search filters (span conditions on one span).
fn matches(query: &TraceQuery, trace: &StoredTrace) -> bool {
    query.matches_trace(&trace.summary, &trace.spans)
}
