//! `GET /v1/tail` across collectors (collector/src/query/tail_peers.rs): a reader of one
//! collector's NDJSON tail receives every finished trace of the group exactly once, those this
//! collector owns and those its peer owns, with the reader's filters applied by the peer too.
//! A peer that stops and starts again is followed again, and the reader's stream never breaks.
//! A `format=text` reader gets the peer's trees too, as text.
//! Each collector has its own SQLite file, so where a trace is stored tells its owner.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spanline_e2e::peer_group::{PeerCollector as Collector, client, logs, start_group};

/// Posts a one-span trace of `service` through `ingest_url`; its fresh trace id.
async fn post_trace(client: &reqwest::Client, ingest_url: &str, service: &str) -> String {
    let trace = format!("{:032x}", fastrand::u128(1..));
    let span = json!({
        "trace_id": trace, "span_id": "00000000000000a1", "parent_span_id": null,
        "operation_name": "tail op", "start_time": 1_700_000_000.0, "end_time": 1_700_000_000.5,
        "kind": "server", "status": "ok",
        "attributes": {}, "resource_attributes": {"service.name": service},
    });
    let status = client
        .post(format!("{ingest_url}/v1/traces"))
        .json(&[span])
        .send()
        .await
        .expect("POST /v1/traces")
        .status();
    assert_eq!(status, 200, "POST /v1/traces");
    trace
}

/// Whether collector `c` stored `trace` (with one SQLite file each: whether it owns it).
async fn stored_at(client: &reqwest::Client, c: &Collector, trace: &str) -> bool {
    let r = client
        .get(format!("{}/v1/traces/{trace}", c.query_url))
        .send()
        .await
        .expect("GET trace");
    match r.status().as_u16() {
        200 => true,
        404 => false,
        other => panic!("GET trace answered {other}"),
    }
}

/// An open `GET /v1/tail`, read line by line: NDJSON, or with `format=text` in the query one
/// `{"trace_id", "text"}` per tree header line (`trace <id>  …`) and `{"lost": n}` per loss.
struct Tail {
    response: reqwest::Response,
    partial: Vec<u8>,
    lines: std::collections::VecDeque<Value>,
    text: bool,
}

/// A text tail's line as [`Tail::next`] gives it; `None` for the lines inside a tree.
fn text_line(line: &str) -> Option<Value> {
    if let Some(header) = line.strip_prefix("trace ") {
        let id = header.split_whitespace().next().expect("trace id");
        return Some(json!({"trace_id": id, "text": line}));
    }
    let lost = line
        .strip_prefix("# ")?
        .strip_suffix(" traces lost: this reader is too slow")?;
    Some(json!({"lost": lost}))
}

impl Tail {
    async fn open(query_url: &str, query: &str) -> Tail {
        let streaming = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let response = streaming
            .get(format!("{query_url}/v1/tail?{query}"))
            .send()
            .await
            .expect("GET /v1/tail");
        assert_eq!(response.status(), 200, "GET /v1/tail");
        Tail {
            response,
            partial: Vec::new(),
            lines: Default::default(),
            text: query.split('&').any(|p| p == "format=text"),
        }
    }

    /// The next line as JSON, or `None` once `deadline` has passed.
    async fn next(&mut self, deadline: Instant) -> Option<Value> {
        loop {
            if let Some(line) = self.lines.pop_front() {
                return Some(line);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .ok()?;
            let chunk = chunk.expect("tail stream").expect("tail stream ended");
            self.partial.extend_from_slice(&chunk);
            while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.partial.drain(..=end).collect();
                if self.text {
                    let line = String::from_utf8(line).expect("text tail is UTF-8");
                    self.lines.extend(text_line(line.trim_end()));
                    continue;
                }
                let value = serde_json::from_slice(&line).unwrap_or_else(|e| {
                    panic!(
                        "tail line is not JSON ({e}): {}",
                        String::from_utf8_lossy(&line)
                    )
                });
                self.lines.push_back(value);
            }
        }
    }

    /// Reads until every id of `want` was seen or `deadline`; counts each trace id seen.
    async fn read_until_seen(
        &mut self,
        want: &[String],
        deadline: Instant,
        seen: &mut std::collections::HashMap<String, usize>,
    ) -> bool {
        while want.iter().any(|t| !seen.contains_key(t)) {
            let Some(line) = self.next(deadline).await else {
                return false;
            };
            assert!(line.get("lost").is_none(), "the reader lost traces: {line}");
            let id = line["trace_id"].as_str().expect("trace_id").to_owned();
            if !self.text {
                let services = line["services"].clone();
                assert_eq!(services, json!(["tailtest"]), "filter not applied: {line}");
            }
            *seen.entry(id).or_default() += 1;
        }
        true
    }
}

/// Posts one-span `tailtest` traces through collector 0 until each collector owns at least
/// one of them: the ids, and which collector owns each.
async fn traces_on_both(client: &reqwest::Client, group: &[Collector]) -> Vec<(String, usize)> {
    let mut posted: Vec<(String, usize)> = Vec::new();
    for _ in 0..64 {
        let t = post_trace(client, &group[0].ingest_url, "tailtest").await;
        let owner = usize::from(stored_at(client, &group[1], &t).await);
        posted.push((t, owner));
        if (0..2).all(|o| posted.iter().any(|(_, w)| *w == o)) {
            return posted;
        }
    }
    panic!("64 traces and one collector owns none of them");
}

/// Untimed start: the collector follows its peer's tail soon after the reader connects (or
/// the peer is back). Posts `tailtest` traces through collector 1 until one that collector 1
/// owns has come through collector 0's tail (earlier ones may be missed).
async fn reaches_the_tail_from_the_peer(
    client: &reqwest::Client,
    group: &[Collector],
    tail: &mut Tail,
) {
    let warm_deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = std::collections::HashMap::new();
    loop {
        let t = post_trace(client, &group[1].ingest_url, "tailtest").await;
        let owned_by_peer = stored_at(client, &group[1], &t).await;
        let settle = (Instant::now() + Duration::from_secs(4)).min(warm_deadline);
        let came = tail.read_until_seen(&[t], settle, &mut seen).await;
        if came && owned_by_peer {
            return;
        }
        assert!(
            Instant::now() < warm_deadline,
            "no trace of collector 1 reached collector 0's tail in 60 s\n{}",
            logs(group)
        );
    }
}

/// Two collectors on `dir` (traces settle after 1 s), a client, and a reader of collector 0's
/// tail for `query` (`service=tailtest`, and maybe a format) that has already received a
/// trace its peer owns.
async fn tailed_group(
    dir: &std::path::Path,
    query: &str,
) -> (Vec<Collector>, reqwest::Client, Tail) {
    let group = start_group(2, dir, &[("COLLECTOR_TRACE_SETTLE", "1s".to_owned())]).await;
    let client = client();
    let mut tail = Tail::open(&group[0].query_url, query).await;
    reaches_the_tail_from_the_peer(&client, &group, &mut tail).await;
    (group, client, tail)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_reader_of_one_collector_sees_the_traces_its_peer_owns_exactly_once() {
    sees_the_traces_its_peer_owns_exactly_once("service=tailtest").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_tail_reader_of_one_collector_sees_the_traces_its_peer_owns_exactly_once() {
    sees_the_traces_its_peer_owns_exactly_once("service=tailtest&format=text").await;
}

async fn sees_the_traces_its_peer_owns_exactly_once(query: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (group, client, mut tail) = tailed_group(dir.path(), query).await;
    // Also traces nobody reads for: another service, filtered out at both collectors.
    let others = [
        post_trace(&client, &group[0].ingest_url, "other").await,
        post_trace(&client, &group[1].ingest_url, "other").await,
    ];

    // Now every trace arrives, exactly once, whichever collector owns it.
    let mut seen = std::collections::HashMap::new();
    let measured = traces_on_both(&client, &group).await;
    let ids: Vec<String> = measured.iter().map(|(t, _)| t.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let all = tail.read_until_seen(&ids, deadline, &mut seen).await;
    assert!(
        all,
        "missing from the tail: {measured:?}, seen {seen:?}\n{}",
        logs(&group)
    );
    // Markers after them on both collectors: a duplicate would come before its collector's.
    let markers: Vec<String> = traces_on_both(&client, &group)
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let all = tail.read_until_seen(&markers, deadline, &mut seen).await;
    assert!(all, "markers missing from the tail\n{}", logs(&group));
    for (t, owner) in &measured {
        assert_eq!(
            seen[t], 1,
            "trace {t} of collector {owner} seen {} times",
            seen[t]
        );
    }
    for t in &others {
        assert!(!seen.contains_key(t), "filter not applied to {t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_restarts_is_followed_again_and_the_reader_keeps_its_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut group, client, mut tail) = tailed_group(dir.path(), "service=tailtest").await;

    group[1].restart().await;
    // The same stream (a break would panic in `Tail::next`) carries collector 1's traces again.
    reaches_the_tail_from_the_peer(&client, &group, &mut tail).await;
    let mut seen = std::collections::HashMap::new();
    let after = post_trace(&client, &group[0].ingest_url, "tailtest").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    assert!(tail.read_until_seen(&[after], deadline, &mut seen).await);
    let log = group[0].proc.log();
    assert!(
        log.contains("retrying with backoff"),
        "no retry logged:\n{log}"
    );
}
