//! # Several collectors in front of one store: routing spans by TraceId
//!
//! With `COLLECTOR_PEERS` set, the collectors listed there share the work by trace: each
//! TraceId has one **owner**, chosen by rendezvous (highest-random-weight) hashing of the
//! TraceId over the peer list, so every collector computes the same owner without talking to
//! the others, and adding or removing a peer moves only the traces that peer gains or loses.
//! This is what the OpenTelemetry Collector's `loadbalancing` exporter does with `routing_key:
//! traceID` (it uses a ring; rendezvous hashing gives the same stability with no ring to build).
//!
//! On ingest ([`Peers::split`]) the spans a collector owns are committed as before; the others
//! are sent to their owner as one OTLP/HTTP protobuf request per owner (`POST /v1/traces`,
//! encoded by [`crate::format::otlp_export`]) carrying [`FORWARDED_HEADER`], so the owner
//! stores them and never forwards them again. The client's request is answered only when its
//! own spans are committed **and** every owner has acknowledged its share (acknowledged means
//! committed, at the owner). If an owner cannot be reached, or answers an error, the answer is
//! 503 with `Retry-After` (the client retries the whole batch; spans already committed are
//! deduplicated by `(trace_id, span_id, kind)`). Spans are never stored at a collector that
//! does not own their trace: the owner alone sees all spans of its traces, so completeness,
//! settling (`GET /v1/tail`, `COLLECTOR_LOG_TREES`) and tail sampling run there unchanged.
//!
//! On the query side, `GET /v1/traces/{trace_id}/tree?wait=` on a collector that does not own
//! the trace is proxied to the owner's query URL ([`proxy_wait`], `COLLECTOR_PEER_QUERY_URLS`)
//! with [`PROXIED_HEADER`], because only the owner is told of each commit of that trace; when
//! the owner cannot be reached it is answered locally. Everything else reads the store (a shared
//! store such as ClickHouse answers the same on every collector). `GET /v1/tail` (NDJSON) also
//! follows the other peers' tails (`query::tail_peers`). docs/scale.md has the whole picture.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;

use crate::auth::Token;
use crate::error::{Error, quote};
use crate::model::{Span, TraceId};

/// Marks a `POST /v1/traces` sent by a peer collector: store, never forward again.
pub const FORWARDED_HEADER: &str = "x-spanline-forwarded";
/// Marks a query proxied from a peer collector: answer locally, never proxy again.
pub const PROXIED_HEADER: &str = "x-spanline-proxied";

/// Why the peer configuration is unusable (exit code 64 at start).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerConfigError {
    /// A peer URL is not `http://host:port` (or https).
    #[error("COLLECTOR_PEERS: {0:?} is not an http:// or https:// URL")]
    BadUrl(String),
    /// A URL is listed twice.
    #[error("COLLECTOR_PEERS lists {0:?} twice")]
    Duplicate(String),
    /// `COLLECTOR_PEER_SELF` is missing or not one of the peers.
    #[error("COLLECTOR_PEER_SELF must be one of COLLECTOR_PEERS ({0})")]
    SelfNotListed(String),
    /// `COLLECTOR_PEER_QUERY_URLS` has another length than `COLLECTOR_PEERS`.
    #[error(
        "COLLECTOR_PEER_QUERY_URLS has {got} URLs, COLLECTOR_PEERS {want}: give one per peer, in the same order"
    )]
    QueryUrls {
        /// URLs given.
        got: usize,
        /// Peers listed.
        want: usize,
    },
}

/// One collector of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// OTLP/HTTP ingest base URL as listed (no trailing `/`), e.g. `http://collector-1:4318`;
    /// also the peer's name in the hash.
    pub ingest_url: String,
    /// Query base URL, e.g. `http://collector-1:16686`, for proxied `?wait=`; `None`: not proxied.
    pub query_url: Option<String>,
}

/// The typed peer configuration (from `COLLECTOR_PEERS`, `COLLECTOR_PEER_SELF`,
/// `COLLECTOR_PEER_QUERY_URLS`, `COLLECTOR_PEER_TIMEOUT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// Every collector of the group, this one included, in the configured order.
    pub peers: Vec<Peer>,
    /// The index of this collector in `peers`.
    pub self_index: usize,
    /// Longest time one forward (or the connection for a proxied `?wait=`) may take.
    pub timeout: Duration,
}

impl PeerConfig {
    /// Validates the lists: `None` when `peers` is empty (a collector alone).
    ///
    /// # Errors
    /// See [`PeerConfigError`].
    pub fn new(
        peers: &[String],
        self_url: Option<&str>,
        query_urls: &[String],
        timeout: Duration,
    ) -> Result<Option<Self>, PeerConfigError> {
        let clean = |list: &[String]| -> Vec<String> {
            list.iter()
                .map(|u| u.trim().trim_end_matches('/').to_owned())
                .filter(|u| !u.is_empty())
                .collect()
        };
        let urls = clean(peers);
        if urls.is_empty() {
            return Ok(None);
        }
        let queries = clean(query_urls);
        if !queries.is_empty() && queries.len() != urls.len() {
            return Err(PeerConfigError::QueryUrls {
                got: queries.len(),
                want: urls.len(),
            });
        }
        for (i, url) in urls.iter().chain(&queries).enumerate() {
            let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
            if !scheme_ok || url.parse::<Uri>().is_err() {
                return Err(PeerConfigError::BadUrl(url.clone()));
            }
            if i < urls.len() && urls[..i].contains(url) {
                return Err(PeerConfigError::Duplicate(url.clone()));
            }
        }
        let me = self_url
            .map(|s| s.trim().trim_end_matches('/'))
            .unwrap_or("");
        let self_index = urls
            .iter()
            .position(|u| u == me)
            .ok_or_else(|| PeerConfigError::SelfNotListed(urls.join(",")))?;
        let peers = urls
            .into_iter()
            .enumerate()
            .map(|(i, ingest_url)| Peer {
                ingest_url,
                query_url: queries.get(i).cloned(),
            })
            .collect();
        Ok(Some(Self {
            peers,
            self_index,
            timeout,
        }))
    }

    /// The index in `peers` of the owner of `trace_id`: the peer with the highest
    /// rendezvous score `mix(seed(peer) ^ fnv1a(trace_id))`. Every collector with the same
    /// list computes the same owner.
    pub fn owner(&self, trace_id: &TraceId) -> usize {
        let key = fnv1a(&trace_id.0, FNV_OFFSET);
        let mut best = (0, 0u64);
        for (i, peer) in self.peers.iter().enumerate() {
            let score = mix64(fnv1a(peer.ingest_url.as_bytes(), FNV_OFFSET) ^ key);
            if i == 0 || score > best.1 {
                best = (i, score);
            }
        }
        best.0
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv1a(bytes: &[u8], mut hash: u64) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The splitmix64 finalizer: a bijection that spreads every input bit over the output.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Counters of the routing between collectors (`GET /metrics`, `spanline_peer_*_total`).
#[derive(Debug, Default)]
pub struct PeerMetrics {
    /// Spans sent to the peer that owns their trace, and acknowledged.
    pub spans_forwarded: AtomicU64,
    /// Forward requests that failed (peer unreachable or answering an error).
    pub forward_failures: AtomicU64,
    /// Spans received from peers (requests with [`FORWARDED_HEADER`]).
    pub spans_from_peers: AtomicU64,
    /// `?wait=` requests answered by the owning peer.
    pub waits_proxied: AtomicU64,
    /// `?wait=` requests whose owner could not be reached (answered locally).
    pub wait_proxy_failures: AtomicU64,
}

impl PeerMetrics {
    /// Appends the `spanline_peer_*_total` counters in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        for (name, help, c) in [
            (
                "spans_forwarded",
                "spans forwarded to the collector owning their trace and acknowledged",
                &self.spans_forwarded,
            ),
            (
                "forward_failures",
                "forward requests to peers that failed",
                &self.forward_failures,
            ),
            (
                "spans_from_peers",
                "spans received from peer collectors",
                &self.spans_from_peers,
            ),
            (
                "waits_proxied",
                "?wait= tree requests answered by the owning peer",
                &self.waits_proxied,
            ),
            (
                "wait_proxy_failures",
                "?wait= tree requests whose owner could not be reached",
                &self.wait_proxy_failures,
            ),
        ] {
            let _ = writeln!(out, "# HELP spanline_peer_{name}_total Spanline: {help}.");
            let _ = writeln!(out, "# TYPE spanline_peer_{name}_total counter");
            let _ = writeln!(
                out,
                "spanline_peer_{name}_total {}",
                c.load(Ordering::Relaxed)
            );
        }
    }
}

/// Where an ingest request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A client (a service, an agent): route by owner.
    Client,
    /// A peer collector forwarding spans this collector owns: store them.
    Peer,
}

impl Origin {
    /// [`Origin::Peer`] when the request carries [`FORWARDED_HEADER`].
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        if headers.contains_key(FORWARDED_HEADER) {
            Self::Peer
        } else {
            Self::Client
        }
    }
}

/// What owners answered for the spans forwarded to them (OTLP partial success, summed).
#[derive(Debug, Default)]
pub(crate) struct Forwarded {
    /// Spans an owner refused (e.g. its trace is full).
    pub(crate) rejected: usize,
    /// The owners' partial-success messages.
    pub(crate) messages: Vec<String>,
}

/// The routing state: the peer list, an HTTP client, the token peers ask for, counters.
#[derive(Debug)]
pub struct Peers {
    config: PeerConfig,
    client: reqwest::Client,
    ingest_token: Option<Token>,
    metrics: Arc<crate::Metrics>,
}

impl Peers {
    /// Routing by `config`; forwards carry `ingest_token` (the group shares one) and are
    /// counted in `metrics.peers`.
    ///
    /// # Errors
    /// The HTTP client cannot be built (no TLS backend, for instance).
    pub fn new(
        config: PeerConfig,
        ingest_token: Option<Token>,
        metrics: Arc<crate::Metrics>,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot build the peer HTTP client: {e}"))?;
        Ok(Self {
            config,
            client,
            ingest_token,
            metrics,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &PeerConfig {
        &self.config
    }

    /// The HTTP client for peers (no proxy, `COLLECTOR_PEER_TIMEOUT` to connect), shared by
    /// forwards, proxied `?wait=` and the merged `GET /v1/tail`.
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Splits a batch: the spans this collector owns, and the others grouped by owner index.
    pub(crate) fn split(&self, spans: Vec<Span>) -> (Vec<Span>, Vec<(usize, Vec<Span>)>) {
        let me = self.config.self_index;
        let mut own = Vec::with_capacity(spans.len());
        let mut others: Vec<(usize, Vec<Span>)> = Vec::new();
        let mut last: Option<(TraceId, usize)> = None;
        for span in spans {
            let owner = match last {
                Some((t, o)) if t == span.trace_id => o,
                _ => self.config.owner(&span.trace_id),
            };
            last = Some((span.trace_id, owner));
            if owner == me {
                own.push(span);
            } else if let Some((_, list)) = others.iter_mut().find(|(o, _)| *o == owner) {
                list.push(span);
            } else {
                others.push((owner, vec![span]));
            }
        }
        (own, others)
    }

    /// Counts spans that arrived from a peer.
    pub(crate) fn count_from_peer(&self, spans: usize) {
        self.metrics
            .peers
            .spans_from_peers
            .fetch_add(spans as u64, Ordering::Relaxed);
    }

    /// Sends every group to its owner at once and waits for all acknowledgements.
    ///
    /// # Errors
    /// [`Error::Busy`] (503 + `Retry-After`) naming the first owner that failed.
    pub(crate) async fn forward_all(
        &self,
        groups: Vec<(usize, Vec<Span>)>,
    ) -> Result<Forwarded, Error> {
        let results = futures_util::future::join_all(
            groups
                .iter()
                .map(|(owner, spans)| self.forward(*owner, spans)),
        )
        .await;
        let mut out = Forwarded::default();
        let mut first_error = None;
        for result in results {
            match result {
                Ok((rejected, message)) => {
                    out.rejected += rejected;
                    out.messages.extend(message);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// One forward: `POST <owner>/v1/traces` (OTLP protobuf), then the owner's partial success.
    async fn forward(
        &self,
        owner: usize,
        spans: &[Span],
    ) -> Result<(usize, Option<String>), Error> {
        let peer = &self.config.peers[owner];
        let body = crate::format::otlp_export::export_request(spans).encode_to_vec();
        let mut request = self
            .client
            .post(format!("{}/v1/traces", peer.ingest_url))
            .timeout(self.config.timeout)
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .header(FORWARDED_HEADER, "1")
            .body(body);
        if let Some(token) = &self.ingest_token {
            request = request.bearer_auth(token.as_str());
        }
        let failed = |why: String| {
            self.metrics
                .peers
                .forward_failures
                .fetch_add(1, Ordering::Relaxed);
            eprintln!("collector: forward to {} failed: {why}", peer.ingest_url);
            Error::Busy(format!(
                "the collector owning {} of these spans ({}) did not accept them: {}; retry later",
                spans.len(),
                peer.ingest_url,
                quote(&why, 200)
            ))
        };
        let response = request.send().await.map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| failed(e.to_string()))?;
        if !status.is_success() {
            return Err(failed(format!(
                "answered {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            )));
        }
        let partial = ExportTraceServiceResponse::decode(&bytes[..])
            .ok()
            .and_then(|r| r.partial_success);
        let rejected = partial
            .as_ref()
            .map_or(0, |p| usize::try_from(p.rejected_spans).unwrap_or(0));
        self.metrics.peers.spans_forwarded.fetch_add(
            (spans.len() - rejected.min(spans.len())) as u64,
            Ordering::Relaxed,
        );
        Ok((
            rejected,
            partial.map(|p| p.error_message).filter(|m| !m.is_empty()),
        ))
    }

    /// For `GET /v1/traces/{trace_id}/tree?wait=` on a collector that does not own the trace:
    /// the owner's answer to the same request, or `None` to answer locally (this collector
    /// owns the trace, there is no wait, the request was already proxied, the owner has no
    /// query URL or cannot be reached).
    pub(crate) async fn proxy_wait(
        &self,
        trace_id: &TraceId,
        wait: Duration,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Option<Response> {
        if wait.is_zero() || headers.contains_key(PROXIED_HEADER) {
            return None;
        }
        let owner = self.config.owner(trace_id);
        if owner == self.config.self_index {
            return None;
        }
        let base = self.config.peers[owner].query_url.as_ref()?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = self
            .client
            .get(format!("{base}{path}"))
            .timeout(wait + self.config.timeout)
            .header(PROXIED_HEADER, "1");
        for name in [header::ACCEPT, header::AUTHORIZATION, header::COOKIE] {
            if let Some(value) = headers.get(&name) {
                request = request.header(name, value);
            }
        }
        let counters = &self.metrics.peers;
        let answer = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, content_type, body))
        }
        .await;
        match answer {
            Ok((status, content_type, body)) => {
                counters.waits_proxied.fetch_add(1, Ordering::Relaxed);
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                let mut response = (status, body).into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    content_type.unwrap_or(HeaderValue::from_static("application/json")),
                );
                Some(response)
            }
            Err(e) => {
                counters.wait_proxy_failures.fetch_add(1, Ordering::Relaxed);
                eprintln!("collector: ?wait= proxy to {base} failed ({e}); answering locally");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(n: usize, me: usize) -> PeerConfig {
        let urls: Vec<String> = (0..n).map(|i| format!("http://c{i}:4318")).collect();
        PeerConfig::new(&urls, Some(&urls[me]), &[], Duration::from_secs(1))
            .unwrap()
            .unwrap()
    }

    fn trace(i: u64) -> TraceId {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&mix64(i + 1).to_be_bytes());
        b[8..].copy_from_slice(&mix64(i + 1000).to_be_bytes());
        TraceId(b)
    }

    #[test]
    fn owners_agree_and_spread() {
        let (a, b) = (config(2, 0), config(2, 1));
        let mut counts = [0usize; 2];
        for i in 0..10_000 {
            let t = trace(i);
            assert_eq!(a.owner(&t), b.owner(&t), "every peer picks the same owner");
            counts[a.owner(&t)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (4_500..=5_500).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn adding_a_peer_moves_only_its_share() {
        let (two, three) = (config(2, 0), config(3, 0));
        let mut moved = 0;
        for i in 0..9_000 {
            let t = trace(i);
            let after = three.owner(&t);
            if after != two.owner(&t) {
                assert_eq!(after, 2, "a trace moves only to the new peer");
                moved += 1;
            }
        }
        assert!((2_500..=3_500).contains(&moved), "{moved}");
    }

    #[test]
    fn bad_configurations_are_named() {
        let urls = vec!["http://a:4318".to_owned(), "http://b:4318/".to_owned()];
        let t = Duration::from_secs(1);
        assert_eq!(PeerConfig::new(&[String::new()], None, &[], t), Ok(None));
        assert!(matches!(
            PeerConfig::new(&urls, Some("http://c:4318"), &[], t),
            Err(PeerConfigError::SelfNotListed(_))
        ));
        assert!(matches!(
            PeerConfig::new(&urls, None, &[], t),
            Err(PeerConfigError::SelfNotListed(_))
        ));
        let ok = PeerConfig::new(&urls, Some("http://b:4318"), &[], t)
            .unwrap()
            .unwrap();
        assert_eq!(ok.self_index, 1, "a trailing / does not matter");
        assert!(matches!(
            PeerConfig::new(&["a:4318".to_owned()], Some("a:4318"), &[], t),
            Err(PeerConfigError::BadUrl(_))
        ));
        assert!(matches!(
            PeerConfig::new(
                &[urls[0].clone(), urls[0].clone()],
                Some("http://a:4318"),
                &[],
                t
            ),
            Err(PeerConfigError::Duplicate(_))
        ));
        assert!(matches!(
            PeerConfig::new(
                &urls,
                Some("http://a:4318"),
                &["http://a:16686".to_owned()],
                t
            ),
            Err(PeerConfigError::QueryUrls { got: 1, want: 2 })
        ));
    }
}
