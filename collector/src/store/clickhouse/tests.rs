//! Tests against real ClickHouse servers started by `scripts/clickhouse.sh` (a single node,
//! a 2-shard cluster, and one shard of 2 replicas with a ZooKeeper from
//! `scripts/zookeeper.sh`, all on loopback ports). Without `clickhouse-server` (or
//! ZooKeeper) installed they skip with a message, unless `CI=true`, where they fail.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use super::{ClickHouseOptions, ClickHouseStore};
use crate::store::{SpanStore, StoreError};

/// Nodes started for one test; stopped (and their data removed) on drop.
pub(crate) struct Servers {
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT` of each node.
    pub(crate) urls: Vec<String>,
    /// The nodes are replicas of one shard (cluster `spanline_1s2r`), with a ZooKeeper.
    replicated: bool,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/clickhouse.sh")
}

fn zookeeper_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/zookeeper.sh")
}

/// `None` (skip) when a script exited 3 (its server is not installed) outside CI.
fn installed(out: &std::process::Output, what: &str) -> Option<()> {
    if out.status.code() == Some(3) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{what} is missing under CI=true: run scripts/{what}.sh install"
        );
        eprintln!("SKIP: {what} is not installed (scripts/{what}.sh install)");
        return None;
    }
    Some(())
}

impl Servers {
    /// Starts `nodes` nodes (2: the cluster `spanline_2s`); `None` when ClickHouse is not
    /// installed and `CI` is not `true`.
    pub(crate) async fn start(nodes: usize) -> Option<Self> {
        tokio::task::spawn_blocking(move || Self::start_blocking(nodes, false))
            .await
            .expect("start task")
    }

    /// Starts a ZooKeeper and 2 nodes that are the replicas of one shard (cluster
    /// `spanline_1s2r`); `None` as [`Servers::start`].
    pub(crate) async fn start_replicated() -> Option<Self> {
        tokio::task::spawn_blocking(|| Self::start_blocking(2, true))
            .await
            .expect("start task")
    }

    fn start_blocking(nodes: usize, replicated: bool) -> Option<Self> {
        let dir = tempfile::Builder::new()
            .prefix("spanline-ch-")
            .tempdir()
            .expect("temp dir");
        let mut args = vec![
            "start".to_owned(),
            dir.path().display().to_string(),
            nodes.to_string(),
        ];
        if replicated {
            let out = Command::new("bash")
                .arg(zookeeper_script())
                .arg("start")
                .arg(dir.path().join("zookeeper"))
                .output()
                .expect("run scripts/zookeeper.sh");
            installed(&out, "zookeeper")?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "scripts/zookeeper.sh start failed: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let address = stdout
                .lines()
                .find_map(|l| l.strip_prefix("zookeeper "))
                .and_then(|l| l.split_whitespace().next())
                .expect("zookeeper address")
                .to_owned();
            args.extend(["replicas".to_owned(), address]);
        }
        let out = Command::new("bash")
            .arg(script())
            .args(&args)
            .output()
            .expect("run scripts/clickhouse.sh");
        if installed(&out, "clickhouse").is_none() {
            Self::stop_zookeeper(dir.path());
            return None;
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "scripts/clickhouse.sh start failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let urls: Vec<String> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("node "))
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
            .collect();
        assert_eq!(urls.len(), nodes, "{stdout}");
        Some(Self {
            dir,
            urls,
            replicated,
        })
    }

    fn stop_zookeeper(dir: &std::path::Path) {
        let _ = Command::new("bash")
            .arg(zookeeper_script())
            .arg("stop")
            .arg(dir.join("zookeeper"))
            .output();
    }

    fn run(&self, args: &[&str]) {
        let out = Command::new("bash")
            .arg(script())
            .arg(args[0])
            .arg(self.dir.path())
            .args(&args[1..])
            .output()
            .expect("run scripts/clickhouse.sh");
        assert!(
            out.status.success(),
            "scripts/clickhouse.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops node `i` (1-based).
    pub(crate) fn stop_node(&self, i: usize) {
        self.run(&["stop", &i.to_string()]);
    }

    /// Starts node `i` again on its ports and data.
    pub(crate) fn restart_node(&self, i: usize) {
        self.run(&["restart", &i.to_string()]);
    }

    /// Options for a store over these nodes (a cluster when there are several).
    pub(crate) fn options(&self) -> ClickHouseOptions {
        let cluster = if self.replicated {
            "spanline_1s2r"
        } else {
            "spanline_2s"
        };
        ClickHouseOptions {
            urls: self.urls.clone(),
            cluster: (self.urls.len() > 1).then(|| cluster.to_owned()),
            replicated: self.replicated,
            database: "spanline_test".into(),
            ..ClickHouseOptions::default()
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        // The data goes with the temp dir: no need to wait for a clean shutdown (which an
        // idle keep-alive connection of a live store holds for 10 s).
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .env("CLICKHOUSE_STOP_GRACE_S", "0")
            .output();
        if self.replicated {
            Self::stop_zookeeper(self.dir.path());
        }
    }
}

pub(super) async fn store_on(nodes: usize) -> Option<(ClickHouseStore, Servers)> {
    let servers = Servers::start(nodes).await?;
    let store = ClickHouseStore::open(servers.options())
        .await
        .expect("open the store");
    Some((store, servers))
}

mod single_node {
    use super::store_on;
    crate::store::conformance::conformance_tests!(optional: store_on(1));
}

mod two_shards {
    use super::store_on;
    crate::store::conformance::conformance_tests!(optional: store_on(2));
}

async fn replicated_store() -> Option<(ClickHouseStore, Servers)> {
    let servers = Servers::start_replicated().await?;
    let store = ClickHouseStore::open(servers.options())
        .await
        .expect("open the store");
    Some((store, servers))
}

/// A store on `servers` in a database of its own, named after `case`.
async fn store_in(servers: &Servers, case: &str) -> ClickHouseStore {
    let options = ClickHouseOptions {
        database: format!("c_{case}"),
        ..servers.options()
    };
    ClickHouseStore::open(options)
        .await
        .expect("open the store")
}

/// The conformance suite on one shard of two replicas: one ZooKeeper and two servers for
/// every case (each in its own database), since starting them costs ~6 s on this machine.
mod one_shard_two_replicas {
    use super::{Servers, store_in};
    crate::store::conformance::conformance_tests!(shared: Servers::start_replicated(), store_in);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_is_idempotent_and_a_newer_version_is_refused() {
    let Some(servers) = Servers::start(1).await else {
        return;
    };
    let options = servers.options();
    let first = ClickHouseStore::open(options.clone()).await.unwrap();
    first
        .write_spans(crate::testing::sample_trace(1))
        .await
        .unwrap();
    first.shutdown().await;
    // Opening again keeps the data.
    let again = ClickHouseStore::open(options.clone()).await.unwrap();
    let id = crate::testing::sample_trace(1)[0].trace_id;
    assert!(again.get_trace(id).await.unwrap().is_some());
    again.shutdown().await;
    let node = super::http::Node::new(&servers.urls[0], None, None).unwrap();
    node.run(
        "INSERT INTO spanline_test.schema_version VALUES (99, 0)",
        &[],
        Vec::new(),
    )
    .await
    .unwrap();
    let err = ClickHouseStore::open(options).await.unwrap_err();
    assert!(matches!(err, StoreError::Incompatible { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_without_a_cluster_is_refused() {
    let options = ClickHouseOptions {
        replicated: true,
        ..ClickHouseOptions::default()
    };
    let err = ClickHouseStore::open(options).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Backend(m) if m.contains("COLLECTOR_CLICKHOUSE_CLUSTER")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_retryable_error() {
    let options = ClickHouseOptions {
        // A port nothing listens on: bound, then released.
        urls: vec![format!(
            "http://{}",
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        )],
        ..ClickHouseOptions::default()
    };
    let err = ClickHouseStore::open(options).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

/// Issue 15 item 6: a shard stopped and restarted under load. Writers retry retryable
/// errors (what ingest answers 503 + Retry-After for); every acknowledged span is readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_restarted_under_load_loses_no_acknowledged_span() {
    let Some((store, servers)) = store_on(2).await else {
        return;
    };
    let store: Arc<dyn SpanStore> = Arc::new(store);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers = spawn_writers(&store, &stop);
    // Load runs, then shard 2 goes away while writes continue, then comes back.
    wait_until(|| count_acked(&store), |n| n >= 20).await;
    servers.stop_node(2);
    let failing = {
        let store = Arc::clone(&store);
        async move {
            let probe = load_trace(99, 0);
            store.write_spans(probe).await.is_err()
        }
    };
    assert!(failing.await, "a write fails while a shard is down");
    servers.restart_node(2);
    let before = count_acked(&store).await;
    wait_until(|| count_acked(&store), |n| n >= before + 20).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (total, _, errors) = read_back(&store, writers).await;
    assert!(total >= 40, "{total} traces acknowledged");
    eprintln!("{total} traces acknowledged; {errors} retryable errors while shard 2 was down");
}

/// A `count()`-like `SELECT ... FORMAT RowBinary` straight on node `url` (its own tables).
async fn count_on(url: &str, sql: &str) -> u64 {
    let node = super::http::Node::new(url, None, None).unwrap();
    let answer = node.run(sql, &[], Vec::new()).await.unwrap();
    super::rowbinary::Reader::new(&answer).u64().unwrap()
}

/// Issue 15 item 3, replication: one shard of two replicas and a ZooKeeper. Writers run;
/// replica 1 (the store's first URL) stops, and writes and reads continue through replica 2;
/// replica 1 restarts and fetches what was written meanwhile. Every acknowledged span is
/// readable, and both replicas end with the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_under_load_loses_no_acknowledged_span_and_catches_up() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some((store, servers)) = replicated_store().await else {
        return;
    };
    let store: Arc<dyn SpanStore> = Arc::new(store);
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(&store, &stop);
    let t0 = std::time::Instant::now();
    let phase = |what: &str| eprintln!("{:>6} ms  {what}", t0.elapsed().as_millis());
    wait_until(|| count_acked(&store), |n| n >= 20).await;
    phase("20 traces; stopping replica 1");
    servers.stop_node(1);
    phase("replica 1 stopped");
    // Writes and reads go on through replica 2 alone.
    let before = count_acked(&store).await;
    wait_until(|| count_acked(&store), |n| n >= before + 40).await;
    let (r1, r2) = (servers.urls[0].clone(), servers.urls[1].clone());
    let spans_sql = "SELECT count() FROM spanline_test.spans_local FORMAT RowBinary";
    let on_2_while_1_down = count_on(&r2, spans_sql).await;
    phase("40 more traces through replica 2; restarting replica 1");
    servers.restart_node(1);
    phase("replica 1 restarted");
    let before = count_acked(&store).await;
    wait_until(|| count_acked(&store), |n| n >= before + 20).await;
    stop.store(true, Ordering::Relaxed);
    phase("20 more traces; writers stopping");
    let (traces, acked_spans, errors) = read_back(&store, writers).await;
    // Replica 1 catches up: it holds every acknowledged span, including the ones written
    // while it was down, and the same rows as replica 2 in both replicated tables.
    let distinct = "SELECT count() FROM (SELECT DISTINCT trace_id, span_id, kind \
                    FROM spanline_test.spans_local) FORMAT RowBinary";
    phase("every acknowledged trace read back");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let on_1 = count_on(&r1, distinct).await;
        let same = count_on(&r1, spans_sql).await == count_on(&r2, spans_sql).await;
        let search = "SELECT count() FROM spanline_test.search_local FORMAT RowBinary";
        let same_search = count_on(&r1, search).await == count_on(&r2, search).await;
        if on_1 >= acked_spans && same && same_search {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica 1 has {on_1} of {acked_spans} acknowledged spans after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    phase("replica 1 caught up");
    assert!(on_2_while_1_down > 0);
    eprintln!(
        "{traces} traces ({acked_spans} spans) acknowledged; {errors} retryable errors; \
         replica 2 held {on_2_while_1_down} spans while replica 1 was down"
    );
}

/// Four writers of [`load_trace`] traces until `stop`, each retrying retryable errors (what
/// ingest answers 503 + Retry-After for) every 50 ms; each ends with the traces it had
/// acknowledged and its count of retryable errors.
fn spawn_writers(
    store: &Arc<dyn SpanStore>,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(Vec<Vec<crate::model::Span>>, u32)>> {
    (0..4u32)
        .map(|w| {
            let store = Arc::clone(store);
            let stop = Arc::clone(stop);
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut retryable_errors = 0u32;
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let spans = load_trace(w, n);
                    loop {
                        match store.write_spans(spans.clone()).await {
                            Ok(_) => break,
                            Err(e) => {
                                assert!(e.is_retryable(), "{e:?}");
                                retryable_errors += 1;
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                    acked.push(spans);
                    n += 1;
                }
                (acked, retryable_errors)
            })
        })
        .collect()
}

/// Waits for the writers of [`spawn_writers`] and reads every trace they acknowledged back
/// whole; `(traces, spans, retryable errors)`.
///
/// # Panics
/// When an acknowledged trace is missing or lacks a span.
async fn read_back(
    store: &Arc<dyn SpanStore>,
    writers: Vec<tokio::task::JoinHandle<(Vec<Vec<crate::model::Span>>, u32)>>,
) -> (usize, u64, u32) {
    let (mut traces, mut spans_total, mut errors) = (0, 0u64, 0);
    for w in writers {
        let (acked, e) = w.await.unwrap();
        errors += e;
        for spans in acked {
            let got = store
                .get_trace(spans[0].trace_id)
                .await
                .unwrap()
                .expect("acknowledged trace stored");
            assert_eq!(got.spans.len(), spans.len(), "every acknowledged span");
            spans_total += spans.len() as u64;
            traces += 1;
        }
    }
    (traces, spans_total, errors)
}

/// How many traces a search finds (up to 1000; 0 while the store answers errors).
async fn count_acked(store: &Arc<dyn SpanStore>) -> usize {
    store
        .find_traces(crate::store::TraceQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .map(|v| v.len())
        .unwrap_or(0)
}

fn load_trace(writer: u32, n: u32) -> Vec<crate::model::Span> {
    let mut spans = crate::testing::sample_trace(0);
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&writer.to_be_bytes());
    id[4..8].copy_from_slice(&n.to_be_bytes());
    id[15] = 1;
    for s in &mut spans {
        s.trace_id = crate::model::TraceId(id);
    }
    spans
}

async fn wait_until<F, Fut>(mut probe: F, done: impl Fn(usize) -> bool)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let n = probe().await;
        if done(n) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "stuck at {n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes every statement shape the backend sends, rendered with sample values, to the file
/// named by `SPANLINE_CLICKHOUSE_SQL_OUT` (one statement per line): what
/// `scripts/check-clickhouse-sql.py` runs on current ClickHouse (chDB). Without the
/// variable it checks that every shape renders.
#[test]
fn dump_statements_for_the_chdb_check() {
    use super::search_sql;
    use super::sql::{self, Tables};
    use crate::model::{SpanKind, StatusCode};
    use crate::store::{SortOrder, TimeWindow, TraceQuery};
    let t = Tables {
        db: "spanline".into(),
        cluster: None,
        replicated: false,
    };
    let ids = [crate::testing::trace_id(1), crate::testing::trace_id(2)];
    let w = TimeWindow {
        start_unix_nano: 1,
        end_unix_nano: u64::MAX / 2,
    };
    let mut out: Vec<String> = sql::schema(&t);
    // The cluster and replicated shapes need remote servers and ZooKeeper, which chDB has
    // not: the check parses them (`PARSE ` lines) on the current parser.
    let replicated = Tables {
        cluster: Some("spanline_1s2r".into()),
        replicated: true,
        ..t.clone()
    };
    out.extend(
        sql::schema(&replicated)
            .into_iter()
            .filter(|s| s.contains("ENGINE = Replicated") || s.contains("ENGINE = Distributed"))
            .map(|s| format!("PARSE {s}")),
    );
    out.push(sql::schema_version(&t));
    out.push(sql::record_schema_version(&t, sql::SCHEMA_VERSION, 1));
    // The schema 6 migration: the ALTER is parsed only (the columns are gone here).
    out.push(super::schema::drop_search_view(&t));
    out.push(super::schema::span_attribute_columns(&t, "spans_local"));
    out.push(format!(
        "PARSE {}",
        super::schema::drop_columns(
            &t,
            "spans_local",
            &["attr_keys".into(), "attr_values".into()]
        )
    ));
    // The schema 8 migration: the ALTER is parsed only (the column is there here).
    out.push(super::schema::attribute_key_hash_column(&t, "search_local"));
    out.push(format!(
        "PARSE {}",
        sql::add_attribute_key_hashes(&t, "search_local")
    ));
    out.push(sql::stored_traces(&t, &ids, 20_000));
    out.push(sql::existing_keys(&t, &ids, 20_000));
    out.push(super::shards::local_shard_sql("spanline_2s"));
    out.push(super::shards::cluster_shards_sql("spanline_2s"));
    out.push(sql::trace_spans(&t, ids[0]));
    out.push(sql::refused(&t, &ids));
    out.push(sql::summary_rows(&t, &ids));
    let queries = [
        TraceQuery::default(),
        TraceQuery {
            service: Some("frontend".into()),
            min_duration_ns: Some(50_000_000),
            start_time_min_unix_nano: Some(1),
            start_time_max_unix_nano: Some(u64::MAX / 2),
            ..TraceQuery::default()
        },
        TraceQuery {
            attributes: vec![("http.response.status_code".into(), "500".into())],
            ..TraceQuery::default()
        },
        TraceQuery {
            service: Some("it's".into()),
            operation: Some("GET /".into()),
            kind: Some(SpanKind::Server),
            status: Some(StatusCode::Error),
            errors_only: true,
            max_duration_ns: Some(5),
            attributes: vec![("a".into(), "b".into())],
            sort: SortOrder::Duration,
            ..TraceQuery::default()
        },
        TraceQuery {
            min_duration_ns: Some(1),
            kind: None,
            errors_only: true,
            ..TraceQuery::default()
        },
    ];
    for q in &queries {
        out.push(search_sql::find_trace_ids(&t, q));
        out.push(search_sql::find_trace_ids_among(&t, q, &ids));
        out.extend(search_sql::window_candidates(&t, q, None, 80));
        out.extend(search_sql::window_step(&t, q, None, 40));
        out.extend(search_sql::window_step(
            &t,
            q,
            Some(1_764_000_000_000_000_000),
            40,
        ));
        out.extend(search_sql::window_candidates(
            &t,
            q,
            Some(1_764_000_000_000_000_000),
            80,
        ));
        out.extend(super::window_spans::window_spans(&t, q, None, 40));
        out.extend(super::window_spans::window_spans(
            &t,
            q,
            Some(1_764_000_000_000_000_000),
            40,
        ));
        let sorted = TraceQuery {
            sort: SortOrder::Duration,
            ..q.clone()
        };
        out.extend(search_sql::longest_walk(&t, &sorted, 80, None));
        out.extend(search_sql::longest_walk(
            &t,
            &sorted,
            640,
            Some((250_000, ids[1])),
        ));
    }
    out.push(sql::newest_starts(&t));
    out.push(sql::backfill_newest(&t));
    out.push(sql::backfill_trace_summaries(&t));
    out.push(sql::backfill_trace_durations(&t));
    out.push(search_sql::longest_start(&t, 10_000, None));
    out.push(search_sql::longest_start(
        &t,
        10_000,
        Some((250_000, ids[1])),
    ));
    out.push(sql::services(&t));
    out.push(sql::operations(&t, "frontend"));
    out.push(sql::dependency_rows(&t, w));
    out.push(sql::sample_rows(&t, w, Some("frontend")));
    out.push(sql::count_traces(&t, &ids));
    out.push(sql::oldest_traces(&t, 1_764_000_000_000_000_000, 10));
    out.push(sql::days_before(&t, 20_000));
    out.push(sql::partitions_before(&t, "spans_local", 20_000));
    out.push(sql::drop_partition(&t, "spans_local", "2024-01-01"));
    out.push(sql::delete_traces(&t, "spans_local", &ids));
    out.push(sql::delete_traces(&t, "links_local", &ids));
    out.push(sql::traces_linking_to(&t, ids[0], 10));
    out.push(sql::pending_mutations(&t));
    // The RowBinary inserts travel with a body (the script inserts these tables' rows).
    out.push(sql::decision(&t, ids[0]));
    out.push(sql::consumer_groups(&t, 1_764_000_000_000_000_000));
    out.push(sql::delete_traces(&t, "sampling_decisions_local", &ids));
    assert!(
        out.iter().all(|s| !s.contains('\n')),
        "one statement a line"
    );
    if let Ok(path) = std::env::var("SPANLINE_CLICKHOUSE_SQL_OUT") {
        std::fs::write(&path, out.join("\n") + "\n").expect("write the statements");
    }
}

/// Retention drops whole days as partitions (on every node), then trims the cutoff's day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_whole_days_as_partitions() {
    let Some((store, servers)) = store_on(2).await else {
        return;
    };
    let recent = crate::testing::sample_trace(1);
    store.write_spans(recent.clone()).await.unwrap();
    // A copy of the trace under another id, received on 2020-01-01 (written straight into
    // both shards' tables, as an old collector would have).
    for url in &servers.urls {
        let node = super::http::Node::new(url, None, None).unwrap();
        node.run(
            "INSERT INTO spanline_test.spans_local SELECT toDate('2020-01-01'), \
             1577836800000000000, unhex('0000000000000000000000000000beef'), span_id, \
             parent_span_id, has_parent, kind, status, service, name, start_ns, end_ns, \
             duration_ns, http_status, has_http_status, detail \
             FROM spanline_test.spans_local WHERE received_day = today() LIMIT 3",
            &[],
            Vec::new(),
        )
        .await
        .unwrap();
    }
    let mut old = [0u8; 16];
    old[14] = 0xbe;
    old[15] = 0xef;
    let old = crate::model::TraceId(old);
    assert!(store.get_trace(old).await.unwrap().is_some());
    let policy = crate::store::RetentionPolicy {
        delete_before_unix_nano: Some(crate::time::now_unix_nano() - 3_600_000_000_000),
        max_bytes: None,
        batch_traces: 10,
    };
    let first = store.enforce_retention(policy).await.unwrap();
    assert_eq!(first.traces_deleted, 1, "{first:?}");
    assert!(first.more);
    let second = store.enforce_retention(policy).await.unwrap();
    assert_eq!((second.traces_deleted, second.more), (0, false));
    assert!(store.get_trace(old).await.unwrap().is_none());
    let kept = store.get_trace(recent[0].trace_id).await.unwrap().unwrap();
    assert_eq!(kept.spans.len(), recent.len());
    // The old day's partition is gone from every node.
    for url in &servers.urls {
        let node = super::http::Node::new(url, None, None).unwrap();
        let parts = node
            .run(
                "SELECT count() FROM system.parts WHERE database = 'spanline_test' \
                 AND partition = '2020-01-01' AND active FORMAT RowBinary",
                &[],
                Vec::new(),
            )
            .await
            .unwrap();
        assert_eq!(super::rowbinary::Reader::new(&parts).u64().unwrap(), 0);
    }
}

/// Newest-first searches read a bounded candidate set when that is exact; they must find
/// what the memory store finds, also when a trace's matching span starts long after the
/// trace (its candidate rank and its result rank then differ).
async fn searches_agree_with_the_memory_store(nodes: usize) {
    use crate::model::SpanKind;
    use crate::store::{MemoryStore, TraceQuery};
    use crate::testing::{span, trace_id};
    let Some((store, _servers)) = store_on(nodes).await else {
        return;
    };
    let memory = MemoryStore::new();
    for n in 1..=60u8 {
        let t = trace_id(n);
        let start = f64::from(n) * 1000.0;
        // Every 7th trace's user span starts 100 s late: late candidate, early trace.
        let late = if n % 7 == 0 { 100_000.0 } else { 1.0 };
        let mut user = span(
            t,
            2,
            Some(1),
            "user",
            "GET /u",
            SpanKind::Server,
            start + late,
            10.0 + f64::from(n),
        );
        user.attributes.push(crate::model::KeyValue::new(
            "app.tier",
            crate::model::AttrValue::String(if n % 3 == 0 { "gold" } else { "basic" }.into()),
        ));
        let spans = vec![
            span(
                t,
                1,
                None,
                "frontend",
                "GET /",
                SpanKind::Server,
                start,
                200.0,
            ),
            user,
        ];
        store.write_spans(spans.clone()).await.unwrap();
        memory.write_spans(spans).await.unwrap();
    }
    // Every 5th trace gains a span in a later write (a second summary row for the trace,
    // folded at read) that ends after its other spans: a longer trace than it was.
    for n in (5..=60u8).step_by(5) {
        let late = vec![span(
            trace_id(n),
            3,
            Some(1),
            "tail",
            "flush",
            SpanKind::Internal,
            f64::from(n) * 1000.0 + 150.0,
            100.0 + f64::from(n),
        )];
        store.write_spans(late.clone()).await.unwrap();
        memory.write_spans(late).await.unwrap();
    }
    let ids = |v: Vec<crate::store::TraceSummary>| v.iter().map(|s| s.trace_id).collect::<Vec<_>>();
    let by_duration = |q: TraceQuery| TraceQuery {
        sort: crate::store::SortOrder::Duration,
        ..q
    };
    for limit in [1, 2, 3, 5, 20] {
        let queries = [
            TraceQuery {
                service: Some("user".into()),
                ..TraceQuery::default()
            },
            TraceQuery {
                service: Some("user".into()),
                min_duration_ns: Some(40 * crate::testing::MS),
                ..TraceQuery::default()
            },
            TraceQuery {
                attributes: vec![("app.tier".into(), "gold".into())],
                ..TraceQuery::default()
            },
            TraceQuery {
                operation: Some("GET /u".into()),
                start_time_min_unix_nano: Some(crate::testing::T0 + 20_000 * crate::testing::MS),
                ..TraceQuery::default()
            },
            by_duration(TraceQuery {
                service: Some("user".into()),
                min_duration_ns: Some(40 * crate::testing::MS),
                ..TraceQuery::default()
            }),
            by_duration(TraceQuery {
                attributes: vec![("app.tier".into(), "gold".into())],
                ..TraceQuery::default()
            }),
            by_duration(TraceQuery {
                min_duration_ns: Some(210 * crate::testing::MS),
                start_time_max_unix_nano: Some(crate::testing::T0 + 50_000 * crate::testing::MS),
                ..TraceQuery::default()
            }),
            by_duration(TraceQuery {
                service: Some("tail".into()),
                start_time_min_unix_nano: Some(crate::testing::T0 + 12_000 * crate::testing::MS),
                ..TraceQuery::default()
            }),
            by_duration(TraceQuery {
                service: Some("user".into()),
                kind: Some(SpanKind::Server),
                attributes: vec![("app.tier".into(), "basic".into())],
                ..TraceQuery::default()
            }),
        ];
        for q in queries {
            let q = TraceQuery { limit, ..q };
            let got = ids(store.find_traces(q.clone()).await.unwrap());
            let want = ids(memory.find_traces(q.clone()).await.unwrap());
            assert_eq!(got, want, "{q:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_agree_with_the_memory_store_on_one_node() {
    searches_agree_with_the_memory_store(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_agree_with_the_memory_store_on_two_shards() {
    searches_agree_with_the_memory_store(2).await;
}

/// Newest-first searches in time windows: traces starting at the same instant (ties broken
/// by trace id), traces whose matching span starts days after the trace (the newest span
/// start, where the windows begin, then belongs to an old trace), and time bounds; the
/// answers must be the memory store's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windowed_searches_agree_with_the_memory_store_on_ties_and_late_spans() {
    use crate::model::SpanKind;
    use crate::store::{MemoryStore, TraceQuery};
    use crate::testing::{MS, T0, span, trace_id};
    let Some((store, _servers)) = store_on(2).await else {
        return;
    };
    let memory = MemoryStore::new();
    let day_ms = 86_400_000.0;
    for n in 1..=45u8 {
        let t = trace_id(100 + n);
        // 1-40: all start at 500 s; 41-45 start at 400 s, their user span 10 days later.
        let (start, user_at) = if n <= 40 {
            (500_000.0, 500_000.0 + f64::from(n % 5))
        } else {
            (400_000.0, 10.0 * day_ms + f64::from(n))
        };
        let mut user = span(
            t,
            2,
            Some(1),
            "user",
            "GET /u",
            SpanKind::Server,
            user_at,
            10.0,
        );
        user.attributes.push(crate::model::KeyValue::new(
            "app.tier",
            crate::model::AttrValue::String(if n % 2 == 0 { "gold" } else { "basic" }.into()),
        ));
        let root = span(
            t,
            1,
            None,
            "frontend",
            "GET /",
            SpanKind::Server,
            start,
            20.0,
        );
        store
            .write_spans(vec![root.clone(), user.clone()])
            .await
            .unwrap();
        memory.write_spans(vec![root, user]).await.unwrap();
    }
    let ids = |v: Vec<crate::store::TraceSummary>| v.iter().map(|s| s.trace_id).collect::<Vec<_>>();
    for limit in [1, 3, 20, 50] {
        let queries = [
            TraceQuery::default(),
            TraceQuery {
                service: Some("user".into()),
                ..TraceQuery::default()
            },
            TraceQuery {
                attributes: vec![("app.tier".into(), "gold".into())],
                ..TraceQuery::default()
            },
            TraceQuery {
                service: Some("user".into()),
                start_time_max_unix_nano: Some(T0 + 450_000 * MS),
                ..TraceQuery::default()
            },
            TraceQuery {
                service: Some("frontend".into()),
                min_duration_ns: Some(15 * MS),
                start_time_min_unix_nano: Some(T0 + 450_000 * MS),
                ..TraceQuery::default()
            },
            TraceQuery {
                operation: Some("GET /u".into()),
                attributes: vec![("app.tier".into(), "basic".into())],
                ..TraceQuery::default()
            },
        ];
        for q in queries {
            let q = TraceQuery { limit, ..q };
            let got = ids(store.find_traces(q.clone()).await.unwrap());
            let want = ids(memory.find_traces(q.clone()).await.unwrap());
            assert!(!want.is_empty(), "{q:?}");
            assert_eq!(got, want, "{q:?}");
        }
    }
}

/// Newest-first searches of services with very different rates, one after another: the
/// window the last search of the same shape ended in holds many traces of the busy service
/// and none or one of the rare one (whose spans are older), and on two shards each shard
/// keeps and ranks its own candidates; every answer must be the memory store's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_first_searches_agree_across_services_of_different_rates() {
    use crate::model::SpanKind;
    use crate::store::{MemoryStore, TraceQuery};
    use crate::testing::{MS, span, trace_id};
    let Some((store, _servers)) = store_on(2).await else {
        return;
    };
    let memory = MemoryStore::new();
    let mut spans = Vec::new();
    // 80 busy traces 1 ms apart at 1000 s; 12 rare ones 10 s apart before them, the newest
    // also with a busy span (a trace of both services).
    for n in 1..=80u8 {
        let start = 1_000_000.0 + f64::from(n);
        spans.push(span(
            trace_id(n),
            1,
            None,
            "busy",
            "GET /b",
            SpanKind::Server,
            start,
            5.0 + f64::from(n % 7),
        ));
    }
    for n in 1..=12u8 {
        let start = 880_000.0 + f64::from(n) * 10_000.0;
        let t = trace_id(150 + n);
        spans.push(span(
            t,
            1,
            None,
            "rare",
            "GET /r",
            SpanKind::Server,
            start,
            2.0 + f64::from(n),
        ));
        if n == 12 {
            spans.push(span(
                t,
                2,
                Some(1),
                "busy",
                "GET /b",
                SpanKind::Client,
                start + 1.0,
                1.0,
            ));
        }
    }
    store.write_spans(spans.clone()).await.unwrap();
    memory.write_spans(spans).await.unwrap();
    let ids = |v: Vec<crate::store::TraceSummary>| v.iter().map(|s| s.trace_id).collect::<Vec<_>>();
    let query = |service: &str, limit: usize, min_ms: Option<u64>| TraceQuery {
        service: Some(service.into()),
        min_duration_ns: min_ms.map(|m| m * MS),
        limit,
        ..TraceQuery::default()
    };
    // Alternating, so each search starts at the window the other service's search left.
    for round in 0..2 {
        for (service, limit, min_ms) in [
            ("busy", 5, None),
            ("rare", 5, None),
            ("busy", 20, None),
            ("rare", 20, None),
            ("busy", 3, Some(10)),
            ("rare", 3, Some(10)),
            ("busy", 50, Some(6)),
            ("rare", 1, Some(14)),
        ] {
            let q = query(service, limit, min_ms);
            let got = ids(store.find_traces(q.clone()).await.unwrap());
            let want = ids(memory.find_traces(q.clone()).await.unwrap());
            assert_eq!(got, want, "round {round}: {q:?}");
            if service == "busy" || min_ms.is_none() {
                assert!(!want.is_empty(), "{q:?}");
            }
        }
    }
}

/// Takes the database `spanline_test` of every node of `servers` back to schema `version`
/// (as an older collector left it): drops `tables`, in order, and records `version` alone.
pub(super) async fn back_to_schema(servers: &Servers, tables: &[&str], version: u32) {
    for url in &servers.urls {
        let node = super::http::Node::new(url, None, None).unwrap();
        let drops = tables
            .iter()
            .chain(&["schema_version"])
            .map(|t| format!("DROP TABLE spanline_test.{t}"));
        let statements = drops.chain([
            "CREATE TABLE spanline_test.schema_version (version UInt32, applied_unix_ns \
             UInt64) ENGINE = TinyLog"
                .to_owned(),
            format!("INSERT INTO spanline_test.schema_version VALUES ({version}, 0)"),
        ]);
        for statement in statements {
            node.run(&statement, &[], Vec::new()).await.unwrap();
        }
    }
}

/// Runs a schema fill (`fill` of the 2-shard cluster's `spanline_test` tables) on every node
/// of `servers` again, as a second collector starting at the same time would.
pub(super) async fn fill_again(servers: &Servers, fill: fn(&super::sql::Tables) -> String) {
    let tables = super::sql::Tables {
        db: "spanline_test".into(),
        cluster: Some("spanline_2s".into()),
        replicated: false,
    };
    for url in &servers.urls {
        super::http::Node::new(url, None, None)
            .unwrap()
            .run(&fill(&tables), &[], Vec::new())
            .await
            .unwrap();
    }
}

/// Schema 4 on a database written by an older collector: `newest_local` is filled from the
/// stored spans at start (the materialized view sees only later inserts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_4_fills_newest_local_from_the_spans_of_an_older_database() {
    let Some(servers) = Servers::start(1).await else {
        return;
    };
    let options = servers.options();
    let store = ClickHouseStore::open(options.clone()).await.unwrap();
    let trace = crate::testing::sample_trace(1);
    store.write_spans(trace.clone()).await.unwrap();
    store.shutdown().await;
    // Back to schema 3: no view, no table, version 3.
    let node = super::http::Node::new(&servers.urls[0], None, None).unwrap();
    for statement in [
        "DROP TABLE spanline_test.newest_mv",
        "DROP TABLE spanline_test.newest_local",
        "DROP TABLE spanline_test.schema_version",
        "CREATE TABLE spanline_test.schema_version (version UInt32, applied_unix_ns UInt64) \
         ENGINE = TinyLog",
        "INSERT INTO spanline_test.schema_version VALUES (3, 0)",
    ] {
        node.run(statement, &[], Vec::new()).await.unwrap();
    }
    let store = ClickHouseStore::open(options).await.unwrap();
    let newest = |service: &str| {
        trace
            .iter()
            .filter(|s| s.service_name == service)
            .map(|s| s.start_time_unix_nano)
            .max()
            .unwrap()
    };
    let answer = node
        .run(
            "SELECT service, max(start_ns) FROM spanline_test.newest_local GROUP BY service \
             ORDER BY service FORMAT RowBinary",
            &[],
            Vec::new(),
        )
        .await
        .unwrap();
    let mut r = super::rowbinary::Reader::new(&answer);
    let mut got = Vec::new();
    while !r.is_empty() {
        let service = String::from_utf8(r.bytes().unwrap().to_vec()).unwrap();
        got.push((service, r.u64().unwrap()));
    }
    let mut services: Vec<String> = trace.iter().map(|s| s.service_name.to_string()).collect();
    services.sort();
    services.dedup();
    let want: Vec<(String, u64)> = services.iter().map(|s| (s.clone(), newest(s))).collect();
    assert_eq!(got, want);
    store.shutdown().await;
}

/// Schema 5 on a database written by an older collector: `trace_summary_local` is filled
/// from the stored spans at start (the view sees only later inserts), so duration-sorted
/// searches, which rank from it, find the traces stored before; starting again adds rows
/// that fold into the same summaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_5_fills_trace_summaries_from_the_spans_of_an_older_database() {
    use crate::store::{SortOrder, TraceQuery};
    let Some(servers) = Servers::start(2).await else {
        return;
    };
    let options = servers.options();
    let store = ClickHouseStore::open(options.clone()).await.unwrap();
    let traces: Vec<Vec<crate::model::Span>> = (1..=6).map(crate::testing::sample_trace).collect();
    for trace in &traces {
        store.write_spans(trace.clone()).await.unwrap();
    }
    store.shutdown().await;
    // Back to schema 4 on both shards: no view, no table, version 4.
    back_to_schema(
        &servers,
        &[
            "trace_summary_mv",
            "trace_summary_dist",
            "trace_summary_local",
        ],
        4,
    )
    .await;
    let want: Vec<(String, u64, u64)> = {
        let mut v: Vec<(String, u64, u64)> = traces
            .iter()
            .map(|t| {
                let start = t.iter().map(|s| s.start_time_unix_nano).min().unwrap();
                let end = t.iter().map(|s| s.end_time_unix_nano).max().unwrap();
                (t[0].trace_id.to_hex(), start, end)
            })
            .collect();
        v.sort();
        v
    };
    let store = ClickHouseStore::open(options.clone()).await.unwrap();
    let node = super::http::Node::new(&servers.urls[0], None, None).unwrap();
    let summaries = || async {
        let sql = "SELECT lower(hex(trace_id)) AS id, minMerge(start_state), \
                   maxMerge(end_state) FROM spanline_test.trace_summary_dist GROUP BY id \
                   ORDER BY id FORMAT RowBinary";
        let answer = node.run(sql, &[], Vec::new()).await.unwrap();
        super::rowbinary::Reader::new(&answer)
            .rows(|r| Ok((r.string()?, r.u64()?, r.u64()?)))
            .unwrap()
    };
    assert_eq!(summaries().await, want);
    // A second fill (a collector starting at the same time) folds into the same summaries.
    fill_again(&servers, super::sql::backfill_trace_summaries).await;
    assert_eq!(summaries().await, want);
    let longest = store
        .find_traces(TraceQuery {
            min_duration_ns: Some(1),
            sort: SortOrder::Duration,
            ..TraceQuery::default()
        })
        .await
        .unwrap();
    let mut ids: Vec<String> = longest.iter().map(|s| s.trace_id.to_hex()).collect();
    ids.sort();
    let want_ids: Vec<String> = want.iter().map(|w| w.0.clone()).collect();
    assert_eq!(ids, want_ids);
    store.shutdown().await;
}

/// A database of this schema on `servers` holding one trace (`sample_trace(1)`), before a
/// test takes it back to an older schema: the store's options, the trace, and the nodes.
async fn written_by_this_schema(
    servers: &Servers,
) -> (
    super::ClickHouseOptions,
    Vec<crate::model::Span>,
    Vec<super::http::Node>,
) {
    let options = servers.options();
    let store = ClickHouseStore::open(options.clone()).await.unwrap();
    let kept = crate::testing::sample_trace(1);
    store.write_spans(kept.clone()).await.unwrap();
    store.shutdown().await;
    let nodes = servers
        .urls
        .iter()
        .map(|u| super::http::Node::new(u, None, None).unwrap())
        .collect();
    (options, kept, nodes)
}

/// The search tables of a 2-shard `spanline_test` as schemas 1-7 made them (no attribute
/// key hashes), replacing today's (their rows go with them).
const SEARCH_TABLES_BEFORE_SCHEMA_8: [&str; 4] = [
    "DROP TABLE spanline_test.search_dist",
    "DROP TABLE spanline_test.search_local",
    "CREATE TABLE spanline_test.search_local (received_day Date, service String, \
     start_ns UInt64, trace_id FixedString(16), name String, kind UInt8, status UInt8, \
     duration_ns UInt64, attr_keys Array(String), attr_values Array(String)) \
     ENGINE = MergeTree PARTITION BY received_day ORDER BY (service, start_ns) \
     SETTINGS index_granularity = 8192",
    "CREATE TABLE spanline_test.search_dist AS spanline_test.search_local \
     ENGINE = Distributed(`spanline_2s`, `spanline_test`, `search_local`, \
     cityHash64(trace_id))",
];

/// Schema 6 on a database written by an older collector: the attribute arrays leave
/// `spans_local` (and `spans_dist`) and the view that copied them into `search_local` is
/// dropped, on every shard; the search rows the view wrote before still answer attribute
/// searches, new writes add exactly one search row per span, and opening again changes
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_6_drops_the_span_attribute_arrays_of_an_older_database() {
    use crate::store::TraceQuery;
    let Some(servers) = Servers::start(2).await else {
        return;
    };
    let (options, kept, nodes) = written_by_this_schema(&servers).await;
    // Back to schema 5 on both shards: the search tables of then (the rows of `kept` go
    // with them), the arrays in `spans_local` and `spans_dist`, the view, version 5.
    for node in &nodes {
        for statement in SEARCH_TABLES_BEFORE_SCHEMA_8.into_iter().chain([
            "ALTER TABLE spanline_test.spans_local ADD COLUMN attr_keys Array(String), \
             ADD COLUMN attr_values Array(String)",
            "ALTER TABLE spanline_test.spans_dist ADD COLUMN attr_keys Array(String), \
             ADD COLUMN attr_values Array(String)",
            "CREATE MATERIALIZED VIEW spanline_test.search_mv TO spanline_test.search_local \
             AS SELECT received_day, service, start_ns, trace_id, name, kind, status, \
             duration_ns, attr_keys, attr_values FROM spanline_test.spans_local",
            "DROP TABLE spanline_test.schema_version",
            "CREATE TABLE spanline_test.schema_version (version UInt32, \
             applied_unix_ns UInt64) ENGINE = TinyLog",
            "INSERT INTO spanline_test.schema_version VALUES (5, 0)",
        ]) {
            node.run(statement, &[], Vec::new()).await.unwrap();
        }
    }
    // What a schema 5 collector wrote: a copy of the trace under another id, with an
    // attribute in the arrays, through the view into `search_local`.
    let mut old = [0u8; 16];
    old[14] = 0x5c;
    old[15] = 0x05;
    let old = crate::model::TraceId(old);
    nodes[0]
        .run(
            &format!(
                "INSERT INTO spanline_test.spans_dist (received_day, received_ns, trace_id, \
                 span_id, parent_span_id, has_parent, kind, status, service, name, start_ns, \
                 end_ns, duration_ns, http_status, has_http_status, attr_keys, attr_values, \
                 detail) SELECT received_day, received_ns, {}, span_id, parent_span_id, \
                 has_parent, kind, status, service, name, start_ns, end_ns, duration_ns, \
                 http_status, has_http_status, ['schema'], ['five'], detail \
                 FROM spanline_test.spans_dist WHERE trace_id = {}",
                super::sql::bytes_lit(&old.0),
                super::sql::bytes_lit(&kept[0].trace_id.0)
            ),
            super::INSERT_SETTINGS,
            Vec::new(),
        )
        .await
        .unwrap();
    let store = ClickHouseStore::open(options.clone()).await.unwrap();
    for (node, url) in nodes.iter().zip(&servers.urls) {
        for table in ["spans_local", "spans_dist"] {
            let sql = super::schema::span_attribute_columns(&store.shared.tables, table);
            let answer = node.run(&sql, &[], Vec::new()).await.unwrap();
            let left = super::rowbinary::Reader::new(&answer)
                .rows(|r| r.string())
                .unwrap();
            assert!(left.is_empty(), "{table} still has {left:?}");
        }
        let views = count_on(
            url,
            "SELECT count() FROM system.tables WHERE database = 'spanline_test' \
             AND name = 'search_mv' FORMAT RowBinary",
        )
        .await;
        assert_eq!(views, 0);
    }
    let found = store
        .find_traces(TraceQuery {
            attributes: vec![("schema".into(), "five".into())],
            ..TraceQuery::default()
        })
        .await
        .unwrap();
    let found: Vec<_> = found.iter().map(|s| s.trace_id).collect();
    assert_eq!(found, vec![old]);
    let copy = store.get_trace(old).await.unwrap().unwrap();
    assert_eq!(copy.spans.len(), kept.len());
    // New writes: one search row per span, and the attribute search finds them.
    let new = crate::testing::sample_trace(2);
    store.write_spans(new.clone()).await.unwrap();
    let search_rows = count_on(
        &servers.urls[0],
        &format!(
            "SELECT count() FROM spanline_test.search_dist WHERE trace_id = {} \
             FORMAT RowBinary",
            super::sql::bytes_lit(&new[0].trace_id.0)
        ),
    )
    .await;
    assert_eq!(search_rows, new.len() as u64);
    let found = store
        .find_traces(TraceQuery {
            attributes: vec![("http.request.method".into(), "POST".into())],
            ..TraceQuery::default()
        })
        .await
        .unwrap();
    let mut found: Vec<_> = found.iter().map(|s| s.trace_id).collect();
    found.sort();
    // Not the old copy: its search rows hold only the attribute its collector wrote (and
    // `kept`'s went with the search tables of schema 8).
    assert_eq!(found, vec![new[0].trace_id]);
    store.shutdown().await;
    // Opening again (version 6 recorded) leaves the schema as it is.
    let again = ClickHouseStore::open(options).await.unwrap();
    assert!(again.get_trace(new[0].trace_id).await.unwrap().is_some());
    let version = count_on(
        &servers.urls[1],
        "SELECT toUInt64(max(version)) FROM spanline_test.schema_version FORMAT RowBinary",
    )
    .await;
    assert_eq!(version, u64::from(super::sql::SCHEMA_VERSION));
    again.shutdown().await;
}

/// Schema 8 on a database written by an older collector: `search_local` (and `search_dist`)
/// get the column of attribute key hashes; the rows written before keep their text keys and
/// are found through the column's `DEFAULT`, before and after a merge; new rows hold hashes
/// and no text keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_8_hashes_attribute_keys_and_finds_the_rows_of_an_older_database() {
    use crate::store::TraceQuery;
    let Some(servers) = Servers::start(2).await else {
        return;
    };
    let (options, kept, nodes) = written_by_this_schema(&servers).await;
    // Back to schema 7 on both shards: the search tables as schema 7 made them (no hash
    // column; the rows of `kept` gone with them), version 7.
    for node in &nodes {
        for statement in SEARCH_TABLES_BEFORE_SCHEMA_8 {
            node.run(statement, &[], Vec::new()).await.unwrap();
        }
    }
    back_to_schema(&servers, &[], 7).await;
    // What a schema 7 collector wrote: a copy of the trace under another id, its search rows
    // with text keys.
    let old = copied_with_text_keys(&nodes[0], kept[0].trace_id).await;
    let store = ClickHouseStore::open(options.clone()).await.unwrap();
    for node in &nodes {
        for table in ["search_local", "search_dist"] {
            let sql = super::schema::attribute_key_hash_column(&store.shared.tables, table);
            let answer = node.run(&sql, &[], Vec::new()).await.unwrap();
            let present = super::rowbinary::Reader::new(&answer)
                .rows(|r| r.string())
                .unwrap();
            assert_eq!(present, vec!["attr_key_hashes".to_owned()], "{table}");
        }
    }
    let new = crate::testing::sample_trace(2);
    store.write_spans(new.clone()).await.unwrap();
    let sorted = |mut v: Vec<crate::model::TraceId>| {
        v.sort();
        v
    };
    let find = |key: &str, value: &str| {
        let q = TraceQuery {
            attributes: vec![(key.into(), value.into())],
            ..TraceQuery::default()
        };
        let store = &store;
        async move {
            let found = store.find_traces(q).await.unwrap();
            sorted(found.iter().map(|s| s.trace_id).collect())
        }
    };
    let all_post = sorted(vec![old, new[0].trace_id]);
    assert_eq!(find("schema", "seven").await, vec![old]);
    assert_eq!(find("http.request.method", "POST").await, all_post);
    // The new rows: hashes, no text keys.
    let text_keys = format!(
        "SELECT toUInt64(countIf(notEmpty(attr_keys))) FROM spanline_test.search_dist \
         WHERE trace_id = {} FORMAT RowBinary",
        super::sql::bytes_lit(&new[0].trace_id.0)
    );
    assert_eq!(count_on(&servers.urls[0], &text_keys).await, 0);
    let hashed = text_keys.replace("notEmpty(attr_keys)", "notEmpty(attr_key_hashes)");
    let with_indexed = new
        .iter()
        .filter(|s| {
            s.attributes
                .iter()
                .any(|kv| crate::store::attr_index_text(&kv.value).is_some())
        })
        .count();
    assert!(with_indexed > 0);
    assert_eq!(
        count_on(&servers.urls[0], &hashed).await,
        with_indexed as u64
    );
    // After a merge of the old and new parts the old rows are found all the same.
    for node in &nodes {
        node.run(
            "OPTIMIZE TABLE spanline_test.search_local FINAL",
            &[],
            Vec::new(),
        )
        .await
        .unwrap();
    }
    assert_eq!(find("schema", "seven").await, vec![old]);
    assert_eq!(find("http.request.method", "POST").await, all_post);
    assert_eq!(find("schema", "eight").await, vec![]);
    store.shutdown().await;
    let version = count_on(
        &servers.urls[1],
        "SELECT toUInt64(max(version)) FROM spanline_test.schema_version FORMAT RowBinary",
    )
    .await;
    assert_eq!(version, u64::from(super::sql::SCHEMA_VERSION));
}

/// What a schema 7 collector wrote, made on `node` through the `Distributed` tables: a copy of
/// the stored trace `kept` under another id (returned), its search rows with text keys
/// (`schema` = `seven`, `http.request.method` = `POST`) and no key hashes.
async fn copied_with_text_keys(
    node: &super::http::Node,
    kept: crate::model::TraceId,
) -> crate::model::TraceId {
    let mut old = [0u8; 16];
    old[14] = 0x5c;
    old[15] = 0x07;
    let old = crate::model::TraceId(old);
    let copy = |table: &str, columns: &str, values: &str| {
        format!(
            "INSERT INTO spanline_test.{table}_dist ({columns}) SELECT {values} \
             FROM spanline_test.spans_dist WHERE trace_id = {}",
            super::sql::bytes_lit(&kept.0)
        )
        .replace("{old}", &super::sql::bytes_lit(&old.0))
    };
    let spans = super::sql::SPAN_COLUMNS;
    let search = "received_day, service, start_ns, trace_id, name, kind, status, duration_ns, \
                  attr_keys, attr_values";
    for statement in [
        copy("spans", spans, &spans.replace("trace_id", "{old}")),
        copy(
            "search",
            search,
            "received_day, service, start_ns, {old}, name, kind, status, duration_ns, \
             ['schema', 'http.request.method'], ['seven', 'POST']",
        ),
    ] {
        node.run(&statement, super::INSERT_SETTINGS, Vec::new())
            .await
            .unwrap();
    }
    old
}

/// Schema 8 on a replicated database written by schema 7, opened by two collectors at once,
/// each listing the other replica first: `search_local` is one replicated table, so the
/// `ALTER` of whichever collector ZooKeeper ordered first reaches the other replica, and the
/// other collector finds the column or, when its own `ALTER` raced that one, is refused and
/// retries (schema.rs, `alter_until_done`; the race is not forced: this checks the end state
/// of concurrent opens, however they interleave). Both open, every node's `search_local` and `search_dist` end with the hash column,
/// version 8 is recorded on both nodes, and the rows written before are found by their text
/// keys beside new rows, from either collector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_8_migrates_a_replicated_database_opened_by_two_collectors_at_once() {
    use crate::store::TraceQuery;
    let Some(servers) = Servers::start_replicated().await else {
        return;
    };
    let (options, kept, nodes) = written_by_this_schema(&servers).await;
    // Back to schema 7, on one replica of the replicated `search_local` (ZooKeeper carries
    // each change to the other: waited for): `kept`'s search rows (hash keys, which schema 7
    // never wrote) dropped with their day partitions, then the hash column; the column
    // dropped from each node's `search_dist` too, and version 7 on both nodes.
    let tables = super::sql::Tables {
        db: "spanline_test".into(),
        cluster: options.cluster.clone(),
        replicated: true,
    };
    async fn has_hashes(
        node: &super::http::Node,
        tables: &super::sql::Tables,
        table: &str,
    ) -> bool {
        let sql = super::schema::attribute_key_hash_column(tables, table);
        let answer = node.run(&sql, &[], Vec::new()).await.unwrap();
        let present = super::rowbinary::Reader::new(&answer)
            .rows(|r| r.string())
            .unwrap();
        !present.is_empty()
    }
    let days = nodes[0]
        .run(
            &super::sql::partitions_before(&tables, "search_local", u16::MAX),
            &[],
            Vec::new(),
        )
        .await
        .unwrap();
    let days = super::rowbinary::Reader::new(&days)
        .rows(|r| r.string())
        .unwrap();
    assert!(!days.is_empty());
    for day in days {
        let drop = super::sql::drop_partition(&tables, "search_local", &day);
        nodes[0].run(&drop, &[], Vec::new()).await.unwrap();
    }
    for url in &servers.urls {
        let rows = "SELECT count() FROM spanline_test.search_local FORMAT RowBinary";
        wait_until(|| async { count_on(url, rows).await as usize }, |n| n == 0).await;
    }
    nodes[0]
        .run(
            "ALTER TABLE spanline_test.search_local DROP COLUMN attr_key_hashes",
            &[],
            Vec::new(),
        )
        .await
        .unwrap();
    for node in &nodes {
        node.run(
            "ALTER TABLE spanline_test.search_dist DROP COLUMN attr_key_hashes",
            &[],
            Vec::new(),
        )
        .await
        .unwrap();
        wait_until(
            || async { usize::from(has_hashes(node, &tables, "search_local").await) },
            |n| n == 0,
        )
        .await;
    }
    back_to_schema(&servers, &[], 7).await;
    let old = copied_with_text_keys(&nodes[0], kept[0].trace_id).await;
    let mut other_first = options.clone();
    other_first.urls.reverse();
    let (a, b) = tokio::join!(
        ClickHouseStore::open(options),
        ClickHouseStore::open(other_first)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    for node in &nodes {
        for table in ["search_local", "search_dist"] {
            assert!(
                has_hashes(node, &tables, table).await,
                "{table} on {node:?}"
            );
        }
    }
    for url in &servers.urls {
        let version = count_on(
            url,
            "SELECT toUInt64(max(version)) FROM spanline_test.schema_version FORMAT RowBinary",
        )
        .await;
        assert_eq!(version, u64::from(super::sql::SCHEMA_VERSION), "{url}");
    }
    let new = crate::testing::sample_trace(2);
    a.write_spans(new.clone()).await.unwrap();
    let mut all_post = vec![old, new[0].trace_id];
    all_post.sort();
    for store in [&a, &b] {
        let find = |key: &str, value: &str| {
            let q = TraceQuery {
                attributes: vec![(key.into(), value.into())],
                ..TraceQuery::default()
            };
            async move {
                let mut found: Vec<_> = store
                    .find_traces(q)
                    .await
                    .unwrap()
                    .iter()
                    .map(|s| s.trace_id)
                    .collect();
                found.sort();
                found
            }
        };
        // A replica may not have fetched the newest parts yet: polled.
        wait_until(
            || async { usize::from(find("http.request.method", "POST").await == all_post) },
            |n| n == 1,
        )
        .await;
        assert_eq!(find("schema", "seven").await, vec![old]);
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// A span resent long after its first copy was stored (here: a copy received 30 days ago)
/// is still a duplicate: the check reaches back to the day before the span's own start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_span_resent_a_month_later_is_a_duplicate() {
    let Some((store, servers)) = store_on(1).await else {
        return;
    };
    let spans = crate::testing::sample_trace(3);
    store.write_spans(spans.clone()).await.unwrap();
    // The same spans under another trace id, as received 30 days ago.
    let mut old = [0u8; 16];
    old[14] = 0x0d;
    old[15] = 0x0d;
    let node = super::http::Node::new(&servers.urls[0], None, None).unwrap();
    node.run(
        &format!(
            "INSERT INTO spanline_test.spans_local SELECT today() - 30, \
             toUInt64(toDateTime(today() - 30)) * 1000000000, \
             unhex('0000000000000000000000000000{:02x}{:02x}'), span_id, parent_span_id, \
             has_parent, kind, status, service, name, start_ns, end_ns, duration_ns, \
             http_status, has_http_status, detail \
             FROM spanline_test.spans_local WHERE trace_id = {}",
            old[14],
            old[15],
            super::sql::bytes_lit(&spans[0].trace_id.0)
        ),
        &[],
        Vec::new(),
    )
    .await
    .unwrap();
    let resent: Vec<_> = spans
        .iter()
        .cloned()
        .map(|mut s| {
            s.trace_id = crate::model::TraceId(old);
            s
        })
        .collect();
    let outcome = store.write_spans(resent).await.unwrap();
    assert_eq!(
        (outcome.stored, outcome.duplicates),
        (0, spans.len()),
        "{outcome:?}"
    );
}

/// Two collectors over one database (a 2-shard cluster): the consumer groups one learns and
/// the decisions one takes are seen by the other (store/durable.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collectors_over_one_database_share_decisions_and_consumer_groups() {
    use crate::assemble::completeness::{ConsumerGroups, name_hash};
    use crate::assemble::consumer_sync::{flush, load};
    use std::time::Instant;
    let Some(servers) = Servers::start(2).await else {
        return;
    };
    let a = ClickHouseStore::open(servers.options()).await.unwrap();
    let b = ClickHouseStore::open(servers.options()).await.unwrap();
    let (learnt_by_a, learnt_by_b) = (ConsumerGroups::default(), ConsumerGroups::default());
    learnt_by_a.record(
        vec![
            ("payments.completed".into(), "notification".into()),
            ("payments.requested".into(), "payment".into()),
        ],
        Instant::now(),
    );
    assert_eq!(flush(&a, &learnt_by_a).await.unwrap(), 2);
    assert_eq!(load(&b, &learnt_by_b).await.unwrap(), 2);
    for (destination, group) in [
        ("payments.completed", "notification"),
        ("payments.requested", "payment"),
    ] {
        let expected = learnt_by_b.expected(name_hash(destination), Instant::now());
        assert_eq!(
            expected.into_iter().map(|(_, g)| g).collect::<Vec<_>>(),
            vec![group.to_owned()]
        );
    }
    let decisions: Vec<_> = (1..=4u8)
        .map(|n| crate::store::SamplingDecision {
            trace_id: crate::testing::trace_id(n),
            kept: true,
            policies: vec!["errors".into()],
            finish: "complete".into(),
            decided_unix_nano: crate::time::now_unix_nano(),
        })
        .collect();
    a.record_sampling_decisions(decisions.clone())
        .await
        .unwrap();
    for d in decisions {
        assert_eq!(b.sampling_decision(d.trace_id).await.unwrap(), Some(d));
    }
    a.shutdown().await;
    b.shutdown().await;
}
