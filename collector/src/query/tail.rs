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
//! With `COLLECTOR_PEERS` and `COLLECTOR_PEER_QUERY_URLS`, the stream also carries the other
//! collectors' finished traces (`query::tail_peers`), in either format: a text reader's
//! collector asks its peers for `format=text-lines` (each text tree as one JSON string per
//! line, so a tree's own blank lines cannot split it) and writes their trees out as text.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast;

use crate::AppState;
use crate::assemble::settle::Finish;
use crate::assemble::{self, TraceTree, text};
use crate::error::Error;
use crate::store::{StoredTrace, TraceQuery};

use super::params::{Pairs, pairs, parse_search, ui_base_url};
use super::tail_peers::{FORWARDED_HOST, PeerFeeds};
use crate::ingest::peers::PROXIED_HEADER;

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
    query: Pairs,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let mut format = TailFormat::Json;
    let mut filters = Vec::new();
    for (key, value) in pairs(query)? {
        match key.as_str() {
            "format" => format = TailFormat::parse(&value)?,
            _ => filters.push((key, value)),
        }
    }
    let query = parse_search(filters.clone())?;
    let text_options = text::TextOptions {
        ui_url: reader_ui_url(&headers),
        all_events: false,
    };
    let long_poll = state.long_polls.enter()?;
    let receiver = state.tail.sender.subscribe();
    let feeds = state.peers.as_ref().and_then(|peers| {
        filters.push(("format".to_owned(), format.asked_of_peers().to_owned()));
        PeerFeeds::start(peers, &filters, &headers)
    });
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
                let chunk = match reader.next().await? {
                    Next::Local(Ok(finished)) => {
                        if !matches(&query, &finished.trace) {
                            continue;
                        }
                        format.tree(&finished.tree, &text_options)
                    }
                    Next::Local(Err(broadcast::error::RecvError::Lagged(n)))
                    | Next::Peer(Err(broadcast::error::RecvError::Lagged(n))) => {
                        metrics.tail_traces_lost.fetch_add(n, Ordering::Relaxed);
                        format.lost(n)
                    }
                    Next::Local(Err(broadcast::error::RecvError::Closed)) => return None,
                    Next::Peer(Err(broadcast::error::RecvError::Closed)) => {
                        reader.feeds = None;
                        continue;
                    }
                    Next::Peer(Ok(line)) => match format.peer_line(line) {
                        Some(chunk) => chunk,
                        None => continue,
                    },
                };
                return Some((Ok::<_, Infallible>(chunk), reader));
            }
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// The `format` of a tail stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TailFormat {
    /// `json` (the default): one line of tree JSON per trace, NDJSON.
    Json,
    /// `text`: text trees, each followed by a blank line.
    Text,
    /// `text-lines`: each text tree as one JSON string on its own line (NDJSON), so that a
    /// program (a collector merging its peers' text tails) can cut the stream into trees.
    TextLines,
}

impl TailFormat {
    /// The `format` parameter's value.
    ///
    /// # Errors
    /// 400 for any other value than `json`, `text` or `text-lines`.
    fn parse(value: &str) -> Result<Self, Error> {
        match value {
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            "text-lines" => Ok(Self::TextLines),
            _ => Err(Error::BadRequest(
                "format must be `json`, `text` or `text-lines`".into(),
            )),
        }
    }

    /// The format this reader's collector asks its peers for.
    fn asked_of_peers(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Text | Self::TextLines => "text-lines",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Text => "text/plain; charset=utf-8",
            Self::Json | Self::TextLines => "application/x-ndjson",
        }
    }

    /// One finished tree in this format.
    fn tree(self, tree: &TraceTree, options: &text::TextOptions) -> Bytes {
        let line = match self {
            Self::Json => serde_json::to_string(tree).unwrap_or_default(),
            Self::Text => return Bytes::from(text::render_with(tree, options) + "\n"),
            Self::TextLines => {
                serde_json::to_string(&text::render_with(tree, options)).unwrap_or_default()
            }
        };
        Bytes::from(line + "\n")
    }

    /// The notice that this reader lost `lost` traces.
    fn lost(self, lost: u64) -> Bytes {
        Bytes::from(match self {
            Self::Text => format!("# {lost} traces lost: this reader is too slow\n\n"),
            Self::Json | Self::TextLines => format!("{{\"lost\": {lost}}}\n"),
        })
    }

    /// A peer's line (in [`Self::asked_of_peers`]'s format) in this format; `None` for a line
    /// that is not a tree or a loss (skipped).
    fn peer_line(self, line: Bytes) -> Option<Bytes> {
        if self != Self::Text {
            return Some(line);
        }
        match serde_json::from_slice::<serde_json::Value>(&line).ok()? {
            serde_json::Value::String(tree) => Some(Bytes::from(tree + "\n")),
            serde_json::Value::Object(notice) => notice
                .get("lost")
                .and_then(serde_json::Value::as_u64)
                .map(|lost| self.lost(lost)),
            _ => None,
        }
    }
}

/// The UI base URL for a reader's text trees: the reader's own `Host`, or for a peer's
/// request the `Host` its reader sent (carried as [`FORWARDED_HOST`]), so links in merged
/// trees point where the reader can follow them.
fn reader_ui_url(headers: &HeaderMap) -> Option<String> {
    match headers.get(FORWARDED_HOST) {
        Some(host) if headers.contains_key(PROXIED_HEADER) => {
            let mut forwarded = HeaderMap::new();
            forwarded.insert(header::HOST, host.clone());
            ui_base_url(&forwarded)
        }
        _ => ui_base_url(headers),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_reader_gets_the_peers_text_lines_back_as_text() {
        let text = TailFormat::Text;
        assert_eq!(text.asked_of_peers(), "text-lines");
        let tree = "trace 0af7  1 span\n└─ a: op\n\n(warning)\n";
        let line = Bytes::from(serde_json::to_string(tree).unwrap() + "\n");
        assert_eq!(text.peer_line(line), Some(Bytes::from(format!("{tree}\n"))));
        assert_eq!(
            text.peer_line(Bytes::from("{\"lost\": 3}\n")),
            Some(Bytes::from("# 3 traces lost: this reader is too slow\n\n"))
        );
        assert_eq!(text.peer_line(Bytes::from("{\"trace_id\":\"x\"}\n")), None);
        assert_eq!(text.peer_line(Bytes::from("not json\n")), None);
    }

    #[test]
    fn ndjson_readers_get_the_peers_lines_as_they_are() {
        for format in [TailFormat::Json, TailFormat::TextLines] {
            let line = Bytes::from("{\"lost\": 3}\n");
            assert_eq!(format.peer_line(line.clone()), Some(line));
        }
        assert_eq!(TailFormat::Json.asked_of_peers(), "json");
        assert_eq!(TailFormat::TextLines.asked_of_peers(), "text-lines");
        assert!(TailFormat::parse("xml").is_err());
    }

    #[test]
    fn a_peers_text_trees_link_to_the_readers_host() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "peer-b:16686".parse().unwrap());
        headers.insert(FORWARDED_HOST, "spanline.example:8080".parse().unwrap());
        // Only a peer's request (it carries the proxied header) is believed.
        assert_eq!(
            reader_ui_url(&headers).as_deref(),
            Some("http://peer-b:16686")
        );
        headers.insert(PROXIED_HEADER, "1".parse().unwrap());
        assert_eq!(
            reader_ui_url(&headers).as_deref(),
            Some("http://spanline.example:8080")
        );
    }
}
