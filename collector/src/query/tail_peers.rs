//! # `GET /v1/tail` across collectors: the peers' finished traces in one stream
//!
//! With `COLLECTOR_PEERS` each finished trace is published only by its owner
//! ([`crate::ingest::peers`]). So that a reader behind a proxy sees every collector's traces,
//! an NDJSON `GET /v1/tail` on a collector that has `COLLECTOR_PEER_QUERY_URLS` also follows
//! every other peer's `/v1/tail` ([`PeerFeeds::start`]): one streaming `GET
//! <peer query URL>/v1/tail?<the reader's filters>&format=<json or text-lines>` per peer,
//! carrying [`PROXIED_HEADER`] (the peer answers with the traces it owns and never fans out
//! again, so there are no loops), the reader's `Authorization` and `Cookie`, and its `Host`
//! as [`FORWARDED_HOST`] (for the UI links of text trees). Each peer line (one whole tree, or
//! a peer's `{"lost": n}`) goes to the reader between the local trees (`query::tail` turns
//! `text-lines` back into text for a text reader); the peer applies the filters.
//!
//! A peer that cannot be reached, answers an error, or ends its stream is asked again after
//! [`BACKOFF_MIN`], doubling up to [`BACKOFF_MAX`], for as long as the reader stays connected;
//! it is never an error for the reader (the collector logs the first failure of a run). The
//! peers' lines wait for the reader in a ring of [`TAIL_BUFFER`] lines shared by the peers of
//! one reader: a reader that falls behind loses the oldest ones, is told `{"lost": n}` and
//! the loss is counted in `spanline_tail_traces_lost_total`, as with the local ring. The peer
//! connections end when the reader goes away.
//!

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::tail::TAIL_BUFFER;
use crate::ingest::peers::{PROXIED_HEADER, Peers};

/// First wait before asking a failed peer again.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between two attempts on a failed peer.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The header that carries the reader's `Host` to a peer (whose text trees link to the UI).
pub(crate) const FORWARDED_HOST: &str = "x-forwarded-host";
/// Longest line (one tree) taken from a peer: 64 MiB; a longer one ends that connection.
pub(crate) const MAX_LINE_BYTES: usize = 64 << 20;

/// The peers one reader follows: their lines, and the tasks reading them (stopped on drop).
#[derive(Debug)]
pub(crate) struct PeerFeeds {
    receiver: broadcast::Receiver<Bytes>,
    tasks: Vec<JoinHandle<()>>,
}

impl PeerFeeds {
    /// Follows every other peer that has a query URL with the query `pairs`, or `None` when
    /// there is none or the request itself comes from a peer (it carries [`PROXIED_HEADER`]).
    pub(crate) fn start(
        peers: &Peers,
        pairs: &[(String, String)],
        headers: &HeaderMap,
    ) -> Option<Self> {
        if headers.contains_key(PROXIED_HEADER) {
            return None;
        }
        let config = peers.config();
        let urls: Vec<String> = config
            .peers
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != config.self_index)
            .filter_map(|(_, peer)| peer.query_url.as_ref())
            .filter_map(|base| {
                let mut url = reqwest::Url::parse(&format!("{base}/v1/tail")).ok()?;
                url.query_pairs_mut().extend_pairs(pairs);
                Some(url.to_string())
            })
            .collect();
        if urls.is_empty() {
            return None;
        }
        let mut passed: Vec<(HeaderName, HeaderValue)> = vec![(
            HeaderName::from_static(PROXIED_HEADER),
            HeaderValue::from_static("1"),
        )];
        for name in [header::AUTHORIZATION, header::COOKIE] {
            if let Some(value) = headers.get(&name) {
                passed.push((name, value.clone()));
            }
        }
        if let Some(host) = headers.get(header::HOST) {
            passed.push((HeaderName::from_static(FORWARDED_HOST), host.clone()));
        }
        let (sender, receiver) = broadcast::channel(TAIL_BUFFER);
        let tasks = urls
            .into_iter()
            .map(|url| {
                tokio::spawn(follow(
                    peers.client().clone(),
                    url,
                    passed.clone(),
                    sender.clone(),
                ))
            })
            .collect();
        Some(Self { receiver, tasks })
    }

    /// The next line from any peer (with its `\n`); `Err(Lagged(n))` when the reader lost
    /// `n` lines. Never ends while the reader is connected.
    pub(crate) async fn recv(&mut self) -> Result<Bytes, broadcast::error::RecvError> {
        self.receiver.recv().await
    }
}

impl Drop for PeerFeeds {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Why one connection to a peer's tail ended.
#[derive(Debug, thiserror::Error)]
enum FeedError {
    /// The request failed or the stream broke.
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    /// The peer answered another status than 2xx.
    #[error("answered {0}")]
    Status(reqwest::StatusCode),
    /// The peer closed its stream (it is shutting down, for instance).
    #[error("ended its stream")]
    Ended,
    /// A line longer than [`MAX_LINE_BYTES`].
    #[error("sent a line over {MAX_LINE_BYTES} bytes")]
    LineTooLong,
}

/// Reads `url` into `sender` line by line, again and again with backoff, until aborted.
async fn follow(
    client: reqwest::Client,
    url: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    sender: broadcast::Sender<Bytes>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut failing = false;
    loop {
        let mut connected = false;
        let error = read_once(&client, &url, &headers, &sender, &mut connected).await;
        if connected {
            backoff = BACKOFF_MIN;
            failing = false;
        }
        if !failing {
            eprintln!("collector: /v1/tail of peer {url} {error}; retrying with backoff");
            failing = true;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection: its lines go to `sender` until it ends; `connected` is set on a 2xx answer.
async fn read_once(
    client: &reqwest::Client,
    url: &str,
    headers: &[(HeaderName, HeaderValue)],
    sender: &broadcast::Sender<Bytes>,
    connected: &mut bool,
) -> FeedError {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let mut response = match request.send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => return FeedError::Status(r.status()),
        Err(e) => return e.into(),
    };
    *connected = true;
    let mut lines = LineSplitter::default();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let complete = match lines.push(&chunk) {
                    Ok(complete) => complete,
                    Err(e) => return e,
                };
                for line in complete {
                    // No receiver only while the reader's stream is being dropped.
                    let _ = sender.send(line);
                }
            }
            Ok(None) => return FeedError::Ended,
            Err(e) => return e.into(),
        }
    }
}

/// Cuts a byte stream into whole `\n`-terminated lines (blank lines dropped).
#[derive(Debug, Default)]
struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// The lines completed by `chunk`, each with its `\n`.
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, FeedError> {
        let mut complete = Vec::new();
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            self.partial.extend_from_slice(&rest[..=end]);
            rest = &rest[end + 1..];
            let line = std::mem::take(&mut self.partial);
            if line.iter().any(|b| !b.is_ascii_whitespace()) {
                complete.push(Bytes::from(line));
            }
        }
        if self.partial.len() + rest.len() > MAX_LINE_BYTES {
            return Err(FeedError::LineTooLong);
        }
        self.partial.extend_from_slice(rest);
        Ok(complete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks_come_out_whole() {
        let mut s = LineSplitter::default();
        assert!(s.push(b"{\"a\":").unwrap().is_empty());
        let out = s.push(b"1}\n\n{\"b\":2}\n{\"c\"").unwrap();
        assert_eq!(
            out,
            vec![Bytes::from("{\"a\":1}\n"), Bytes::from("{\"b\":2}\n")]
        );
        assert_eq!(s.push(b":3}\n").unwrap(), vec![Bytes::from("{\"c\":3}\n")]);
        assert!(s.push(b"").unwrap().is_empty());
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut s = LineSplitter::default();
        let big = vec![b'x'; MAX_LINE_BYTES];
        assert!(s.push(&big).is_ok());
        assert!(matches!(s.push(b"x"), Err(FeedError::LineTooLong)));
    }
}
