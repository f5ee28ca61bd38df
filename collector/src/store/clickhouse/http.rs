//! The HTTP interface of ClickHouse (port 8123), through reqwest: a statement is the POST
//! body, or, with data (`INSERT ... FORMAT RowBinary`), the `query` parameter and the rows
//! the body. Settings are URL parameters, one request
//! each, so both 18.16 and current servers read them the same way.
//!
//! Failure mapping: an unreachable server, a timeout, or a ClickHouse exception that says a
//! shard or the server is busy or unavailable is [`StoreError::Unwritable`] (retryable: 503
//! with `Retry-After` on ingest); any other exception is [`StoreError::Backend`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::Url;

use crate::store::StoreError;

/// Time allowed to open a connection to a node.
pub(super) const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Time allowed for one request (statement plus answer).
pub(super) const REQUEST_TIMEOUT_MS: u64 = 60_000;

/// ClickHouse exception codes that mean "try again later": UNEXPECTED_END_OF_FILE (32),
/// CANNOT_READ_FROM_SOCKET (95), CANNOT_WRITE_TO_SOCKET (96), TIMEOUT_EXCEEDED (159),
/// READONLY (164), CANNOT_ALLOCATE_MEMORY (173), TOO_MANY_SIMULTANEOUS_QUERIES (202),
/// SOCKET_TIMEOUT (209), NETWORK_ERROR (210), ABORTED (236), MEMORY_LIMIT_EXCEEDED (241),
/// TABLE_IS_READ_ONLY (242), NOT_ENOUGH_SPACE (243), TOO_MANY_PARTS (252),
/// ALL_CONNECTION_TRIES_FAILED (279), ALL_REPLICAS_ARE_STALE (285),
/// UNKNOWN_STATUS_OF_INSERT (319), QUERY_WAS_CANCELLED (394), KEEPER_EXCEPTION (999).
const RETRYABLE_CODES: &[u32] = &[
    32, 95, 96, 159, 164, 173, 202, 209, 210, 236, 241, 242, 243, 252, 279, 285, 319, 394, 999,
];

/// One ClickHouse node (or load balancer) over HTTP.
#[derive(Debug, Clone)]
pub(super) struct Node {
    http: reqwest::Client,
    url: Url,
    user: Option<String>,
    password: Option<String>,
}

impl Node {
    /// A node at `url` (e.g. `http://localhost:8123`).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the URL does not parse or the client cannot be built.
    pub(super) fn new(
        url: &str,
        user: Option<String>,
        password: Option<String>,
    ) -> Result<Self, StoreError> {
        let url = Url::parse(url)
            .map_err(|e| StoreError::Backend(format!("COLLECTOR_CLICKHOUSE_URL {url:?}: {e}")))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
            .pool_max_idle_per_host(16)
            .build()
            .map_err(|e| StoreError::Backend(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            url,
            user,
            password,
        })
    }

    /// The node's address, for messages.
    pub(super) fn url(&self) -> &Url {
        &self.url
    }

    fn request(
        &self,
        sql: &str,
        settings: &[(&str, &str)],
        body: Vec<u8>,
    ) -> reqwest::RequestBuilder {
        let mut url = self.url.clone();
        let body = {
            let mut q = url.query_pairs_mut();
            for (k, v) in settings {
                q.append_pair(k, v);
            }
            if body.is_empty() {
                // A statement without data travels as the body.
                sql.as_bytes().to_vec()
            } else {
                q.append_pair("query", sql);
                body
            }
        };
        let mut req = self.http.post(url).body(body);
        if let Some(user) = &self.user {
            req = req.basic_auth(user, self.password.as_deref());
        }
        req
    }

    /// Runs `sql` with `body` as its data (an `INSERT ... FORMAT RowBinary`, or empty) and
    /// returns the answer's bytes. `wait_end_of_query=1` makes the server buffer the answer,
    /// so an exception arrives as an HTTP error, never inside a 200 body.
    ///
    /// # Errors
    /// See the module docs.
    pub(super) async fn run(
        &self,
        sql: &str,
        settings: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        self.attempt(sql, settings, body).await.map_err(|f| f.error)
    }

    async fn attempt(
        &self,
        sql: &str,
        settings: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Vec<u8>, Failure> {
        // Statements carry their values inline: allow long `IN` lists (the default is 256 KiB).
        let mut all: Vec<(&str, &str)> =
            vec![("wait_end_of_query", "1"), ("max_query_size", "16777216")];
        all.extend_from_slice(settings);
        let response = self
            .request(sql, &all, body)
            .send()
            .await
            .map_err(|e| Failure {
                error: self.transport_error(&e),
                not_connected: e.is_connect(),
            })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| Failure {
            error: self.transport_error(&e),
            not_connected: false,
        })?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        Err(Failure {
            error: exception(&self.url, &String::from_utf8_lossy(&bytes)),
            not_connected: false,
        })
    }

    fn transport_error(&self, e: &reqwest::Error) -> StoreError {
        StoreError::Unwritable(format!("ClickHouse at {} unreachable: {e}", self.url))
    }
}

/// A failed attempt, and whether the node never got the request (so another may take it).
struct Failure {
    error: StoreError,
    not_connected: bool,
}

/// Runs `sql` (as [`Node::run`]) on the first of `nodes` that accepts a connection,
/// starting at index `preferred` and going round; the node that answered becomes
/// `preferred` (sticky, so after a failover the reads and writes stay on the node that has
/// every acknowledged span while the one that was down catches up). A node that refuses a
/// connection never saw the statement, so the next one may run it, even an insert; any
/// other failure (an exception, a timeout, a connection lost mid-request) is final.
///
/// # Errors
/// The last node's error when none accepted a connection, else the first answer's error;
/// [`StoreError::Backend`] for an empty `nodes`.
pub(super) async fn run_on_first_reachable(
    nodes: &[Node],
    preferred: &AtomicUsize,
    sql: &str,
    settings: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<Vec<u8>, StoreError> {
    let mut last = StoreError::Backend("no ClickHouse node configured".into());
    let first = preferred.load(Ordering::Relaxed);
    let mut body = Some(body);
    for i in 0..nodes.len() {
        let index = (first + i) % nodes.len();
        // The last attempt takes the rows; earlier ones copy them.
        let data = if i + 1 == nodes.len() {
            body.take().unwrap_or_default()
        } else {
            body.clone().unwrap_or_default()
        };
        match nodes[index].attempt(sql, settings, data).await {
            Ok(answer) => {
                preferred.store(index, Ordering::Relaxed);
                return Ok(answer);
            }
            Err(f) if f.not_connected => last = f.error,
            Err(f) => return Err(f.error),
        }
    }
    Err(last)
}

/// The code of a ClickHouse exception text (`Code: 279, e.displayText() = ...`).
pub(super) fn exception_code(text: &str) -> Option<u32> {
    let rest = text.trim_start().strip_prefix("Code: ")?;
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

fn exception(url: &Url, text: &str) -> StoreError {
    let text = text.trim();
    let short: String = text.chars().take(600).collect();
    let detail = format!("ClickHouse at {url}: {short}");
    match exception_code(text) {
        Some(code) if RETRYABLE_CODES.contains(&code) => StoreError::Unwritable(detail),
        _ => StoreError::Backend(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exceptions_map_to_retryable_or_not() {
        let url = Url::parse("http://127.0.0.1:8123").unwrap();
        let down = "Code: 279, e.displayText() = DB::NetException: All connection tries failed";
        assert_eq!(exception_code(down), Some(279));
        assert!(exception(&url, down).is_retryable());
        let syntax = "Code: 62, e.displayText() = DB::Exception: Syntax error";
        assert!(!exception(&url, syntax).is_retryable());
        assert!(!exception(&url, "garbage").is_retryable());
    }
}
