//! Several collectors in front of storage (`COLLECTOR_PEERS`, collector/src/ingest/peers.rs):
//! spans of one trace that reach different collectors all end up at the trace's owner, `?wait=`
//! on the other collector answers the owner's complete tree, a demo order whose services send
//! to two collectors is whole at its owner, and an owner that is down makes the answer 503.
//! Each collector has its own SQLite file here, so "found at the owner only" shows the routing;
//! with a shared store (ClickHouse) both collectors find every trace (the last test).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spanline_e2e::demo_services;
use spanline_e2e::peer_group::{PeerCollector as Collector, client, logs, start_group};

/// A simple-JSON span of service `service`.
fn span(trace: &str, id: &str, parent: Option<&str>, service: &str, start_s: f64) -> Value {
    json!({
        "trace_id": trace, "span_id": id, "parent_span_id": parent,
        "operation_name": format!("op {id}"), "start_time": start_s, "end_time": start_s + 0.5,
        "kind": if parent.is_none() { "server" } else { "internal" }, "status": "ok",
        "attributes": {}, "resource_attributes": {"service.name": service},
    })
}

/// `POST /v1/traces` with a simple-JSON array: the status.
async fn post(client: &reqwest::Client, ingest_url: &str, spans: &[Value]) -> reqwest::Response {
    client
        .post(format!("{ingest_url}/v1/traces"))
        .json(&spans)
        .send()
        .await
        .expect("POST /v1/traces")
}

/// `GET <query>/v1/traces/<id>`: the number of spans, or `None` on 404.
async fn span_count(client: &reqwest::Client, query_url: &str, trace: &str) -> Option<usize> {
    let r = client
        .get(format!("{query_url}/v1/traces/{trace}"))
        .send()
        .await
        .expect("GET trace");
    if r.status() == 404 {
        return None;
    }
    assert!(r.status().is_success(), "{}", r.status());
    let v: Value = r.json().await.expect("json");
    v["spans"].as_array().map(Vec::len)
}

async fn metric(client: &reqwest::Client, query_url: &str, name: &str) -> u64 {
    let text = client
        .get(format!("{query_url}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

/// The sum of the counter `name` over the collectors of `group`.
async fn metric_total(client: &reqwest::Client, group: &[Collector], name: &str) -> u64 {
    let mut total = 0;
    for c in group {
        total += metric(client, &c.query_url, name).await;
    }
    total
}

/// `GET <query>/v1/traces/<id>/tree?wait=<wait_s>`: the tree as JSON.
async fn get_tree(client: &reqwest::Client, query_url: &str, trace: &str, wait_s: u32) -> Value {
    client
        .get(format!("{query_url}/v1/traces/{trace}/tree?wait={wait_s}"))
        .send()
        .await
        .expect("tree")
        .json()
        .await
        .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_of_a_trace_sent_to_two_collectors_meet_at_the_owner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let group = start_group(2, dir.path(), &[]).await;
    let client = client();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    // 16 traces of 6 spans; the root and two children go to collector 0, three children to 1.
    let traces: Vec<String> = (0..16)
        .map(|_| format!("{:032x}", fastrand::u128(1..)))
        .collect();
    for t in &traces {
        let root = "00000000000000a1";
        let spans: Vec<Value> = (0..6)
            .map(|i| {
                if i == 0 {
                    span(t, root, None, "frontend", now)
                } else {
                    span(
                        t,
                        &format!("00000000000000b{i}"),
                        Some(root),
                        "worker",
                        now + 0.1,
                    )
                }
            })
            .collect();
        let (first, second) = spans.split_at(3);
        let (a, b) = (
            post(&client, &group[0].ingest_url, first).await,
            post(&client, &group[1].ingest_url, second).await,
        );
        assert_eq!(
            (a.status().as_u16(), b.status().as_u16()),
            (200, 200),
            "{}",
            logs(&group)
        );
    }
    // Acknowledged means committed at the owner: no polling needed.
    let mut owned = [0usize; 2];
    for t in &traces {
        let counts = [
            span_count(&client, &group[0].query_url, t).await,
            span_count(&client, &group[1].query_url, t).await,
        ];
        let owner = match counts {
            [Some(6), None] => 0,
            [None, Some(6)] => 1,
            other => panic!("trace {t}: want 6 spans at one collector, got {other:?}"),
        };
        owned[owner] += 1;
        // ?wait= on the other collector is answered by the owner: the whole, complete tree.
        let other = &group[1 - owner];
        let tree = get_tree(&client, &other.query_url, t, 5).await;
        assert_eq!(tree["span_count"], 6, "{tree:#}");
        assert_eq!(tree["complete"], true, "{tree:#}");
    }
    assert!(
        owned.iter().all(|&n| n > 0),
        "both collectors own traces: {owned:?}"
    );
    let forwarded = metric_total(&client, &group, "spanline_peer_spans_forwarded_total").await;
    assert_eq!(
        forwarded,
        16 * 3,
        "half of each trace was sent to the wrong collector"
    );
    let proxied = metric_total(&client, &group, "spanline_peer_waits_proxied_total").await;
    assert_eq!(proxied, 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_that_is_down_makes_the_answer_503_and_nothing_is_stored_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = start_group(
        2,
        dir.path(),
        &[("COLLECTOR_PEER_TIMEOUT", "2s".to_owned())],
    )
    .await;
    let client = client();
    assert_eq!(group[1].proc.terminate(Duration::from_secs(10)), Some(0));
    // Find a trace collector 1 owns: collector 0 forwards it, and fails.
    let mut refused = None;
    for _ in 0..64 {
        let t = format!("{:032x}", fastrand::u128(1..));
        let r = post(
            &client,
            &group[0].ingest_url,
            &[span(&t, "00000000000000a1", None, "svc", 1.0)],
        )
        .await;
        match r.status().as_u16() {
            200 => assert_eq!(span_count(&client, &group[0].query_url, &t).await, Some(1)),
            503 => {
                assert!(r.headers().contains_key("retry-after"));
                refused = Some(t);
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    let t = refused.expect("some trace among 64 is owned by the stopped collector");
    assert_eq!(span_count(&client, &group[0].query_url, &t).await, None);
    assert!(
        metric(
            &client,
            &group[0].query_url,
            "spanline_peer_forward_failures_total"
        )
        .await
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_order_through_two_collectors_is_whole_at_its_owner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let group = start_group(2, dir.path(), &[]).await;
    let client = client();
    // frontend and order send to collector 0, user and payment to collector 1.
    let services = demo_services(
        |svc| {
            let to = usize::from(matches!(svc, "user" | "payment"));
            group[to].ingest_url.clone()
        },
        &group[0].query_url,
        None,
        |_| Vec::new(),
    );
    let mut procs = Vec::new();
    for spec in &services {
        procs.push(spec.start(&client, dir.path()).await);
    }
    let frontend = services
        .iter()
        .find(|s| s.bin == "frontend")
        .expect("frontend");
    let order: Value = client
        .post(format!("{}/orders", frontend.url()))
        .json(&json!({"user_id": "1", "product": "Laptop", "quantity": 1}))
        .send()
        .await
        .expect("POST /orders")
        .json()
        .await
        .expect("json");
    let trace = order["trace_id"].as_str().expect("trace_id").to_owned();
    // The tree from either collector (the non-owner proxies ?wait= to the owner).
    for c in &group {
        let tree = get_tree(&client, &c.query_url, &trace, 20).await;
        assert_eq!(tree["complete"], true, "{tree:#}\n{}", logs(&group));
        let services: Vec<&str> = tree["services"]
            .as_array()
            .expect("services")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(
            services,
            ["frontend", "order", "payment", "user"],
            "{tree:#}"
        );
        assert_eq!(tree["roots"].as_array().map(Vec::len), Some(1), "{tree:#}");
    }
    // The owner stored every span; the other collector none.
    let deadline = Instant::now() + Duration::from_secs(10);
    let counts = loop {
        let counts = [
            span_count(&client, &group[0].query_url, &trace).await,
            span_count(&client, &group[1].query_url, &trace).await,
        ];
        if counts.iter().any(Option::is_some) || Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        matches!(counts, [Some(n), None] | [None, Some(n)] if n >= 8),
        "want the whole trace at one collector: {counts:?}"
    );
    for mut p in procs {
        p.terminate(Duration::from_secs(10));
    }
}

/// The ClickHouse variant: two collectors on one ClickHouse store find every trace from either
/// collector. Runs when the collector has the ClickHouse backend and scripts/clickhouse.sh exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_clickhouse_either_collector_finds_the_trace() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("scripts/clickhouse.sh");
    let help = Command::new(spanline_e2e::bin_dir().join("collector"))
        .arg("--help")
        .output()
        .expect("collector --help");
    let has_backend = String::from_utf8_lossy(&help.stdout).contains("clickhouse");
    if !script.exists() || !has_backend {
        eprintln!(
            "skipped: the ClickHouse backend (COLLECTOR_STORAGE=clickhouse, scripts/clickhouse.sh) \
             is not in this build yet"
        );
        return;
    }
    let ci = std::env::var("CI").as_deref() == Ok("true");
    if ci {
        let installed = Command::new("bash").arg(&script).arg("install").status();
        assert!(
            installed.is_ok_and(|s| s.success()),
            "scripts/clickhouse.sh install failed"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ch_dir = dir.path().join("clickhouse");
    let started = Command::new("bash")
        .arg(&script)
        .arg("start")
        .arg(&ch_dir)
        .arg("1")
        .output()
        .expect("scripts/clickhouse.sh start");
    if started.status.code() == Some(3) && !ci {
        eprintln!("skipped: clickhouse-server is not installed (scripts/clickhouse.sh install)");
        return;
    }
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let out = String::from_utf8_lossy(&started.stdout).into_owned();
    let ch_url = out
        .lines()
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("http://")))
        .unwrap_or_else(|| panic!("no node URL in {out:?}"))
        .to_owned();
    struct Stop<'a>(&'a Path, &'a Path);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = Command::new("bash")
                .arg(self.0)
                .arg("stop")
                .arg(self.1)
                .status();
        }
    }
    let _stop = Stop(&script, &ch_dir);
    let database = format!("peers_{}", fastrand::u32(..));
    let group = start_group(
        2,
        dir.path(),
        &[
            ("COLLECTOR_STORAGE", "clickhouse".to_owned()),
            ("COLLECTOR_CLICKHOUSE_URL", ch_url),
            ("COLLECTOR_CLICKHOUSE_DATABASE", database),
        ],
    )
    .await;
    let client = client();
    let t = format!("{:032x}", fastrand::u128(1..));
    let root = "00000000000000a1";
    let spans: Vec<Value> = (0..4)
        .map(|i| match i {
            0 => span(&t, root, None, "frontend", 1_700_000_000.0),
            i => span(
                &t,
                &format!("00000000000000b{i}"),
                Some(root),
                "worker",
                1_700_000_000.1,
            ),
        })
        .collect();
    assert_eq!(
        post(&client, &group[0].ingest_url, &spans[..2])
            .await
            .status(),
        200
    );
    assert_eq!(
        post(&client, &group[1].ingest_url, &spans[2..])
            .await
            .status(),
        200
    );
    for c in &group {
        assert_eq!(
            span_count(&client, &c.query_url, &t).await,
            Some(4),
            "{}",
            logs(&group)
        );
        let tree = get_tree(&client, &c.query_url, &t, 5).await;
        assert_eq!(tree["complete"], true, "{tree:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owners_partial_success_reaches_the_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limit = [("COLLECTOR_MAX_SPANS_PER_TRACE", "2".to_owned())];
    let group = start_group(2, dir.path(), &limit).await;
    let client = client();
    // A trace collector 1 owns: its first span, sent to collector 0, is not stored there.
    let mut owned_by_1 = None;
    for _ in 0..64 {
        let t = format!("{:032x}", fastrand::u128(1..));
        let first = [span(&t, "00000000000000a1", None, "svc", 1.0)];
        assert_eq!(
            post(&client, &group[0].ingest_url, &first)
                .await
                .status()
                .as_u16(),
            200
        );
        if span_count(&client, &group[0].query_url, &t).await.is_none() {
            owned_by_1 = Some(t);
            break;
        }
    }
    let t = owned_by_1.expect("some trace among 64 is owned by collector 1");
    let more: Vec<Value> = (2..5)
        .map(|i| {
            span(
                &t,
                &format!("00000000000000b{i}"),
                Some("00000000000000a1"),
                "svc",
                1.1,
            )
        })
        .collect();
    let answer: Value = post(&client, &group[0].ingest_url, &more)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(answer["partialSuccess"]["rejectedSpans"], "2", "{answer}");
    let message = answer["partialSuccess"]["errorMessage"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("COLLECTOR_MAX_SPANS_PER_TRACE"),
        "{message}"
    );
    assert_eq!(span_count(&client, &group[1].query_url, &t).await, Some(2));
}

/// A trace id (from fresh random ones) whose owner is collector `want`: found by storing a
/// probe span of it through collector 0 and seeing where it lands.
async fn trace_owned_by(client: &reqwest::Client, group: &[Collector], want: usize) -> String {
    for _ in 0..64 {
        let t = format!("{:032x}", fastrand::u128(1..));
        let probe = span(&t, "00000000000000f1", None, "probe", 1_700_000_000.0);
        assert_eq!(
            post(client, &group[0].ingest_url, &[probe]).await.status(),
            200
        );
        if span_count(client, &group[want].query_url, &t)
            .await
            .is_some()
        {
            return t;
        }
    }
    panic!("no trace id owned by collector {want} in 64 tries");
}

/// A simple-JSON messaging span on destination `orders.placed`.
fn messaging_span(trace: &str, id: &str, parent: &str, kind: &str, service: &str) -> Value {
    let mut attributes =
        json!({"messaging.system": "nats", "messaging.destination.name": "orders.placed"});
    if kind == "consumer" {
        attributes["messaging.consumer.group.name"] = json!("mailer");
    }
    json!({
        "trace_id": trace, "span_id": id, "parent_span_id": parent,
        "operation_name": format!("{} orders.placed", if kind == "consumer" { "process" } else { "publish" }),
        "start_time": 1_700_000_000.1, "end_time": 1_700_000_000.2,
        "kind": kind, "status": "ok", "attributes": attributes,
        "resource_attributes": {"service.name": service},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_group_seen_in_forwarded_spans_is_expected_by_the_forwarder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let group = start_group(2, dir.path(), &[]).await;
    let client = client();
    // Collector 0 receives a queue hop (publish + process by group `mailer`) of a trace that
    // collector 1 owns: it forwards every span and stores none of them.
    let forwarded = trace_owned_by(&client, &group, 1).await;
    let hop = [
        messaging_span(
            &forwarded,
            "00000000000000c1",
            "00000000000000f1",
            "producer",
            "shop",
        ),
        messaging_span(
            &forwarded,
            "00000000000000c2",
            "00000000000000c1",
            "consumer",
            "mailer",
        ),
    ];
    assert_eq!(
        post(&client, &group[0].ingest_url, &hop).await.status(),
        200
    );
    assert_eq!(
        span_count(&client, &group[0].query_url, &forwarded).await,
        None
    );
    // A trace collector 0 owns publishes to the same destination; its consumer never comes.
    // Collector 0 learnt the group from the spans it forwarded, so the trace is not complete.
    let own = trace_owned_by(&client, &group, 0).await;
    let publish = messaging_span(
        &own,
        "00000000000000d1",
        "00000000000000f1",
        "producer",
        "shop",
    );
    assert_eq!(
        post(&client, &group[0].ingest_url, &[publish])
            .await
            .status(),
        200
    );
    let tree = get_tree(&client, &group[0].query_url, &own, 1).await;
    assert_eq!(tree["complete"], false, "{tree:#}\n{}", logs(&group));
    let missing = tree["missing"].as_array().expect("missing");
    assert!(
        missing
            .iter()
            .any(|m| m["parent_span_id"] == "00000000000000d1"),
        "{tree:#}"
    );
}
