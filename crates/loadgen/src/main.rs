//! Load generator for Spanline benchmarks and demos (BENCHMARKS.md, `scripts/bench-ingest.sh`,
//! `scripts/bench-sampling.sh`).
//!
//! * `loadgen ingest`: posts OTLP/HTTP protobuf `ExportTraceServiceRequest`s (N spans × 10
//!   attributes, 10 spans per trace) with C concurrent connections, at saturation or at a fixed
//!   span rate, and counts the spans of acknowledged (2xx) requests. Bodies are encoded once;
//!   each send patches fresh trace and span ids into a copy, so no span is a duplicate. Works
//!   against any OTLP/HTTP receiver (our collector, rotel). With `--pid` it samples the target
//!   process: CPU, RSS, and the CPU of the collector's SQLite writer thread.
//! * `loadgen orders`: demo orders through the frontend at a rate, with a mix of faults, and a
//!   live summary ([`orders`]; `scripts/bench-sampling.sh`).
//! * `loadgen sqlite-ceiling`: inserts the same rows into a bare SQLite table (no index, one
//!   prepared statement, large transactions): the storage ceiling.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use prost::Message;

mod orders;

#[derive(Parser)]
#[command(about = "Spanline benchmark load generator")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// OTLP/HTTP protobuf load against a receiver.
    Ingest(IngestArgs),
    /// Raw SQLite insert rate of the same rows (no indexes).
    SqliteCeiling(CeilingArgs),
    /// Demo orders through the frontend at a rate, with faults, and a live summary.
    Orders(orders::OrdersArgs),
}

#[derive(clap::Args)]
struct IngestArgs {
    /// OTLP/HTTP traces endpoint.
    #[arg(long, default_value = "http://127.0.0.1:4318/v1/traces")]
    url: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Spans per request (a multiple of 10: 10 spans per trace).
    #[arg(long, default_value_t = 500)]
    spans_per_request: usize,
    /// Seconds of warm-up (not counted).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Target spans per second (0 = saturation).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Process id of the receiver to sample (CPU, RSS, writer thread CPU).
    #[arg(long)]
    pid: Option<u32>,
    /// Label printed with the result.
    #[arg(long, default_value = "target")]
    label: String,
    /// Trace ids that look random from the first byte (W3C style) instead of time-ordered
    /// (nonce + counter): inserts into B-trees keyed by trace id land all over them.
    #[arg(long)]
    random_trace_ids: bool,
    /// Reuse each template's start times in every request (16 templates of 50 traces: 800
    /// distinct trace starts in a run, all within 16 ms of the run's start) instead of
    /// stamping each request with the time it is sent. Before 2026-12-03 this was the only
    /// load; it makes every insert into an index ordered by start time land mid-tree, which
    /// live traffic does not. For comparisons with figures measured before then.
    #[arg(long)]
    fixed_start_times: bool,
    /// Traces lasting from 50 µs to 50 ms, log-uniformly (`loadgen::spread_duration_ns`),
    /// instead of every span lasting 250 µs: duration-sorted searches then have a ranking
    /// to walk, as with live traffic.
    #[arg(long, conflicts_with = "fixed_start_times")]
    spread_durations: bool,
}

#[derive(clap::Args)]
struct CeilingArgs {
    /// Database file (created; removed first if it exists).
    #[arg(long)]
    db: String,
    /// Rows to insert.
    #[arg(long, default_value_t = 500_000)]
    rows: usize,
    /// Rows per transaction.
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Also keep a UNIQUE (trace_id, span_id, kind) index, as the collector's dedupe needs.
    #[arg(long)]
    identity_index: bool,
}

/// An encoded request template and where its ids sit, to patch fresh ids per send.
struct Template {
    body: Vec<u8>,
    /// Offsets of each span's 16-byte trace id and 8-byte span id.
    ids: Vec<(usize, usize)>,
    /// Offsets of each span's start and end times (fixed64, little-endian), and its start's
    /// offset from the request's first start, ns.
    times: Vec<(usize, usize, u64)>,
}

fn template(n: usize, spans_per_request: usize) -> Template {
    let t0 = now_ns() + n as u64 * 1_000_000;
    let mut markers = Vec::with_capacity(spans_per_request);
    let spans = (0..spans_per_request)
        .map(|i| {
            let trace_id: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
            let span_id: [u8; 8] = std::array::from_fn(|_| fastrand::u8(..));
            markers.push((trace_id, span_id));
            loadgen::span(i, trace_id, span_id, t0 + i as u64 * 1000)
        })
        .collect();
    let body = loadgen::request(n, spans).encode_to_vec();
    let mut ids = Vec::with_capacity(spans_per_request);
    let mut times = Vec::with_capacity(spans_per_request);
    let mut from = 0;
    for (i, (trace_id, span_id)) in markers.iter().enumerate() {
        let find = |needle: &[u8], from: usize| {
            body[from..]
                .windows(needle.len())
                .position(|w| w == needle)
                .map(|p| p + from)
        };
        let offset_ns = i as u64 * 1000;
        let start = (t0 + offset_ns).to_le_bytes();
        let end = (t0 + offset_ns + loadgen::SPAN_DURATION_NS).to_le_bytes();
        let (Some(t), Some(s)) = (find(trace_id, from), find(span_id, from)) else {
            panic!("template id not found (encoding changed?)");
        };
        let (Some(st), Some(en)) = (find(&start, s + 8), find(&end, s + 8)) else {
            panic!("template time not found (encoding changed?)");
        };
        ids.push((t, s));
        times.push((st, en, offset_ns));
        from = en + 8;
    }
    Template { body, ids, times }
}

/// Stamps `body` (a copy of `t`) with start and end times from `first_start_ns` on, keeping
/// each span's offset; each span lasts [`loadgen::SPAN_DURATION_NS`], or with `spread`
/// (`Some(seq)`, the request number given to [`instantiate`]) its
/// [`loadgen::spread_duration_ns`].
fn stamp_times(t: &Template, body: &mut [u8], first_start_ns: u64, spread: Option<u64>) {
    let n = t.times.len() as u64;
    for (i, (start_at, end_at, offset_ns)) in t.times.iter().enumerate() {
        let start = first_start_ns + offset_ns;
        body[*start_at..*start_at + 8].copy_from_slice(&start.to_le_bytes());
        let duration_ns = spread.map_or(loadgen::SPAN_DURATION_NS, |seq| {
            loadgen::spread_duration_ns((seq * n + i as u64) / 10, i % 10)
        });
        let end = start + duration_ns;
        body[*end_at..*end_at + 8].copy_from_slice(&end.to_le_bytes());
    }
}

/// Now, unix nanoseconds.
fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

/// A copy of `t` with ids derived from `seq` (request number), unique within the run.
/// With `random`, the trace id's first 8 bytes are a hash of the trace number.
fn instantiate(t: &Template, nonce: u64, seq: u64, random: bool) -> Vec<u8> {
    let mut body = t.body.clone();
    let n = t.ids.len() as u64;
    for (i, (trace_at, span_at)) in t.ids.iter().enumerate() {
        let span_no = seq * n + i as u64 + 1;
        let trace_no = (seq * n + i as u64) / 10;
        let high = if random {
            (trace_no ^ nonce).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        } else {
            nonce
        };
        body[*trace_at..*trace_at + 8].copy_from_slice(&high.to_be_bytes());
        body[*trace_at + 8..*trace_at + 16].copy_from_slice(&trace_no.to_be_bytes());
        body[*span_at..*span_at + 8].copy_from_slice(&(span_no ^ (nonce << 40)).to_be_bytes());
    }
    body
}

/// CPU ticks of a process and of its threads named like the collector's writer.
fn proc_ticks(pid: u32) -> (f64, f64) {
    fn ticks(stat: &str) -> f64 {
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let f: Vec<&str> = rest.split_whitespace().collect();
        let get = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        get(11) + get(12)
    }
    let process = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| ticks(&s))
        .unwrap_or(0.0);
    let mut writer = 0.0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.trim().starts_with("spanline-sqlite") {
                writer += std::fs::read_to_string(t.path().join("stat"))
                    .map(|s| ticks(&s))
                    .unwrap_or(0.0);
            }
        }
    }
    (process / 100.0, writer / 100.0)
}

/// A `/proc/<pid>/status` field in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

async fn ingest(args: IngestArgs) {
    let spans_per_request = (args.spans_per_request / 10).max(1) * 10;
    let templates: Arc<Vec<Template>> =
        Arc::new((0..16).map(|n| template(n, spans_per_request)).collect());
    let nonce = fastrand::u64(1..u64::from(u32::MAX));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .build()
        .expect("http client");
    let seq = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
    let started = Instant::now();
    let interval = if args.rate > 0 {
        Some(Duration::from_secs_f64(
            spans_per_request as f64 / args.rate as f64,
        ))
    } else {
        None
    };
    let random_ids = args.random_trace_ids;
    let fixed_times = args.fixed_start_times;
    let spread = args.spread_durations;
    // How long before a request is sent its first span starts: its last span ends 1 ms ago
    // (with spread durations: at the latest).
    let longest_ns = if spread {
        loadgen::SPREAD_MAX_NS
    } else {
        loadgen::SPAN_DURATION_NS
    };
    let mut tasks = Vec::new();
    for _ in 0..args.connections.max(1) {
        let (client, templates, seq, measuring, stop, acked, failed, latencies, url) = (
            client.clone(),
            Arc::clone(&templates),
            Arc::clone(&seq),
            Arc::clone(&measuring),
            Arc::clone(&stop),
            Arc::clone(&acked),
            Arc::clone(&failed),
            Arc::clone(&latencies),
            args.url.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                if let Some(every) = interval {
                    let due = started + every.mul_f64(n as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let template = &templates[n as usize % templates.len()];
                let mut body = instantiate(template, nonce, n, random_ids);
                if !fixed_times {
                    // As live traffic: the request's spans ended just before it was sent
                    // (the last one ends 1 ms ago).
                    let last_end_ns = template.times.last().map_or(0, |t| t.2) + longest_ns;
                    let first_start_ns = now_ns() - 1_000_000 - last_end_ns;
                    stamp_times(template, &mut body, first_start_ns, spread.then_some(n));
                }
                let counted = measuring.load(Ordering::Relaxed);
                let t = Instant::now();
                let result = client
                    .post(&url)
                    .header("content-type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await;
                let ok = match result {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        let _ = resp.bytes().await;
                        ok
                    }
                    Err(_) => false,
                };
                if counted && measuring.load(Ordering::Relaxed) {
                    if ok {
                        acked.fetch_add(spans_per_request as u64, Ordering::Relaxed);
                        if let Ok(mut l) = latencies.lock() {
                            l.push(t.elapsed().as_secs_f64() * 1e3);
                        }
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let before = args.pid.map(proc_ticks);
    measuring.store(true, Ordering::Relaxed);
    let window = Instant::now();
    let mut rss_max_kib = 0;
    while window.elapsed().as_secs_f64() < args.duration {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(pid) = args.pid {
            rss_max_kib = rss_max_kib.max(status_kib(pid, "VmRSS:"));
        }
    }
    measuring.store(false, Ordering::Relaxed);
    let elapsed = window.elapsed().as_secs_f64();
    let after = args.pid.map(proc_ticks);
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let spans = acked.load(Ordering::Relaxed) as f64;
    let mut lat = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let mut line = format!(
        "RESULT label={} spans_per_s={:.0} acked_spans={} failed_requests={} seconds={:.2} \
         connections={} spans_per_request={} rate={} req_p50_ms={:.1} req_p99_ms={:.1}",
        args.label,
        spans / elapsed,
        spans,
        failed.load(Ordering::Relaxed),
        elapsed,
        args.connections,
        spans_per_request,
        args.rate,
        pct(0.5),
        pct(0.99),
    );
    if let (Some(pid), Some((p0, w0)), Some((p1, w1))) = (args.pid, before, after) {
        let cpu = p1 - p0;
        let writer = w1 - w0;
        line.push_str(&format!(
            " cpu_pct={:.0} cpu_us_per_span={:.2} writer_cpu_pct={:.0} writer_us_per_span={:.2} \
             rss_max_mib={:.1} hwm_mib={:.1}",
            cpu * 100.0 / elapsed,
            cpu * 1e6 / spans.max(1.0),
            writer * 100.0 / elapsed,
            writer * 1e6 / spans.max(1.0),
            rss_max_kib as f64 / 1024.0,
            status_kib(pid, "VmHWM:") as f64 / 1024.0,
        ));
    }
    println!("{line}");
}

fn ceiling(args: CeilingArgs) -> rusqlite::Result<()> {
    let _ = std::fs::remove_file(&args.db);
    let _ = std::fs::remove_file(format!("{}-wal", args.db));
    let _ = std::fs::remove_file(format!("{}-shm", args.db));
    let mut conn = rusqlite::Connection::open(&args.db)?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA cache_size = -16000;
         CREATE TABLE spans (id INTEGER PRIMARY KEY, trace_id BLOB NOT NULL,
           span_id BLOB NOT NULL, kind INTEGER NOT NULL, parent_span_id BLOB,
           service TEXT NOT NULL, name TEXT NOT NULL, start_ns INTEGER NOT NULL,
           duration_ns INTEGER NOT NULL, status_code INTEGER NOT NULL,
           resource_id INTEGER NOT NULL, scope_name TEXT NOT NULL,
           scope_version TEXT NOT NULL, detail BLOB NOT NULL);",
    )?;
    if args.identity_index {
        conn.execute_batch(
            "CREATE UNIQUE INDEX spans_identity ON spans (trace_id, span_id, kind);",
        )?;
    }
    // The same rows the load sends: 10 attributes encoded as the detail blob.
    let details: Vec<Vec<u8>> = (0..500)
        .map(|i| {
            let mut buf = Vec::new();
            for a in loadgen::attributes(i) {
                prost::encoding::message::encode(1, &a, &mut buf);
            }
            buf
        })
        .collect();
    let nonce = fastrand::u64(..);
    let started = Instant::now();
    let mut done = 0;
    while done < args.rows {
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO spans (trace_id, span_id, kind, parent_span_id, service, name, \
                 start_ns, duration_ns, status_code, resource_id, scope_name, scope_version, \
                 detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?;
            for _ in 0..args.batch.min(args.rows - done) {
                let i = done % 500;
                let mut trace_id = [0u8; 16];
                trace_id[..8].copy_from_slice(&nonce.to_be_bytes());
                trace_id[8..].copy_from_slice(&((done / 10) as u64).to_be_bytes());
                let t0 = 1_763_700_000_000_000_000i64 + done as i64 * 1000;
                insert.execute(rusqlite::params![
                    &trace_id[..],
                    &(done as u64 + 1).to_be_bytes()[..],
                    2 + (i % 2) as i64,
                    Option::<Vec<u8>>::None,
                    format!("svc-{}", (done / 500) % 4),
                    format!("GET /api/v1/items/{}", i % 20),
                    t0,
                    250_000i64,
                    0i64,
                    1i64,
                    "",
                    "",
                    &details[i],
                ])?;
                done += 1;
            }
        }
        tx.commit()?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "RESULT label=sqlite-ceiling{} rows_per_s={:.0} rows={} seconds={:.2} batch={}",
        if args.identity_index {
            "+identity-index"
        } else {
            ""
        },
        args.rows as f64 / elapsed,
        args.rows,
        elapsed,
        args.batch
    );
    Ok(())
}

/// The runtime of the network subcommands: two workers, as many as the benchmark machine's
/// CPUs.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn main() {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Ingest(args) => runtime().block_on(ingest(args)),
        Cmd::Orders(args) => {
            if let Err(e) = runtime().block_on(orders::run(args)) {
                eprintln!("orders: {e}");
                std::process::exit(64);
            }
        }
        Cmd::SqliteCeiling(args) => {
            if let Err(e) = ceiling(args) {
                eprintln!("sqlite-ceiling: {e}");
                std::process::exit(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

    #[test]
    fn stamped_requests_carry_the_new_times_and_ids() {
        let t = template(3, 20);
        let mut body = instantiate(&t, 7, 5, false);
        stamp_times(&t, &mut body, 1_000_000_000, None);
        let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("decodes");
        let spans = &request.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 20);
        for (i, span) in spans.iter().enumerate() {
            let start = 1_000_000_000 + i as u64 * 1000;
            assert_eq!(span.start_time_unix_nano, start);
            assert_eq!(span.end_time_unix_nano, start + loadgen::SPAN_DURATION_NS);
            let trace_no = (5 * 20 + i as u64) / 10;
            assert_eq!(span.trace_id[8..], trace_no.to_be_bytes());
        }
    }

    #[test]
    fn spread_durations_are_stamped_per_trace() {
        let t = template(3, 20);
        let mut body = instantiate(&t, 7, 5, false);
        stamp_times(&t, &mut body, 1_000_000_000, Some(5));
        let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("decodes");
        let spans = &request.resource_spans[0].scope_spans[0].spans;
        for (i, span) in spans.iter().enumerate() {
            let start = 1_000_000_000 + i as u64 * 1000;
            let trace_no = (5 * 20 + i as u64) / 10;
            assert_eq!(span.start_time_unix_nano, start);
            assert_eq!(
                span.end_time_unix_nano - start,
                loadgen::spread_duration_ns(trace_no, i % 10)
            );
        }
        // The request's two traces differ in length.
        assert_ne!(
            spans[0].end_time_unix_nano - spans[0].start_time_unix_nano,
            spans[10].end_time_unix_nano - spans[10].start_time_unix_nano
        );
    }
}
