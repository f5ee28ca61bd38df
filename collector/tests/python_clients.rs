//! Real third-party clients against the real `collector` binary: the Python OpenTelemetry SDK
//! (OTLP/HTTP protobuf with gzip, OTLP/HTTP JSON through the official
//! `opentelemetry-exporter-otlp-json-http` package, and OTLP/gRPC with gzip through
//! `opentelemetry-exporter-otlp-proto-grpc`) and `py_zipkin` (Zipkin v2 JSON, with a
//! shared client/server span id). The traces are then read back whole through
//! `GET /v1/traces/{id}/tree`, and through the Jaeger-compatible `GET /api/traces/{id}` when
//! the query port serves `/api/services`.
//!
//! Needs `python3` with `venv` and PyPI access. The virtualenv is cached under the target
//! directory, keyed by the hash of `tests/python/requirements.txt`. Without Python or pip the
//! test is skipped with a message, unless `CI=true`: then it fails.

// Test helpers panic on failure by design (clippy only exempts `#[test]` bodies).
#![allow(clippy::unwrap_used)]

mod common;

use common::free_port;

use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Skips (returns `None`) outside CI, panics in CI.
fn unavailable(why: &str) -> Option<PathBuf> {
    assert!(
        !in_ci(),
        "python client test cannot run under CI=true: {why}"
    );
    eprintln!("SKIPPED python_clients: {why} (set CI=true to make this a failure)");
    None
}

/// The cached venv's python, creating it and installing the requirements when needed.
fn python_env() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let requirements = dir.join("requirements.txt");
    let text = std::fs::read(&requirements).unwrap();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    let venv =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("pyvenv-{:016x}", hasher.finish()));
    let python = venv.join("bin/python");
    let ready = venv.join(".installed");
    if ready.exists() {
        return Some(python);
    }
    let python3 = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    match Command::new(&python3).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => return unavailable(&format!("{python3} is not available")),
    }
    let _ = std::fs::remove_dir_all(&venv);
    let status = Command::new(&python3)
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .unwrap();
    if !status.success() {
        return unavailable("`python3 -m venv` failed (install python3-venv)");
    }
    let out = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            "-r",
        ])
        .arg(&requirements)
        .output()
        .unwrap();
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&venv);
        return unavailable(&format!(
            "pip install failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::write(&ready, b"ok").unwrap();
    Some(python)
}

/// A minimal blocking HTTP/1.1 GET: (status, body).
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(40)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

struct Collector {
    child: Child,
    ingest: SocketAddr,
    grpc: SocketAddr,
    query: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_collector() -> Collector {
    let dir = tempfile::tempdir().unwrap();
    let ingest: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let query: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = common::child::command(dir.path())
        .env("COLLECTOR_INGEST_ADDR", ingest.to_string())
        .env("COLLECTOR_GRPC_ADDR", grpc.to_string())
        .env("COLLECTOR_QUERY_ADDR", query.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let c = Collector {
        child,
        ingest,
        grpc,
        query,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(http_get(c.ingest, "/healthz"), Ok((200, _)))
        || !matches!(http_get(c.query, "/healthz"), Ok((200, _)))
    {
        assert!(
            Instant::now() < deadline,
            "collector did not become healthy"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    c
}

fn tree(c: &Collector, trace_id: &str) -> Value {
    let (status, body) = http_get(c.query, &format!("/v1/traces/{trace_id}/tree?wait=10")).unwrap();
    assert_eq!(status, 200, "tree of {trace_id}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Every node of a tree, depth first.
fn nodes(tree: &Value) -> Vec<&Value> {
    fn walk<'a>(n: &'a Value, out: &mut Vec<&'a Value>) {
        out.push(n);
        for c in n["children"].as_array().unwrap() {
            walk(c, out);
        }
    }
    let mut out = Vec::new();
    for r in tree["roots"].as_array().unwrap() {
        walk(r, &mut out);
    }
    out
}

fn named<'a>(all: &[&'a Value], name: &str, kind: &str) -> &'a Value {
    all.iter()
        .find(|n| n["name"] == name && n["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} span {name}"))
}

fn check_otel_tree(t: &Value, service: &str) {
    assert_eq!(t["complete"], true, "{t}");
    assert_eq!(t["span_count"], 3, "{t}");
    assert_eq!(t["services"], serde_json::json!([service]));
    let roots = t["roots"].as_array().unwrap();
    assert_eq!(roots.len(), 1);
    let root = &roots[0];
    assert_eq!(root["name"], "GET /checkout");
    assert_eq!(root["kind"], "server");
    assert_eq!(root["attributes"]["http.response.status_code"], 200);
    assert_eq!(root["attributes"]["app.ratio"], 0.5);
    assert_eq!(
        root["attributes"]["app.flags"],
        serde_json::json!([true, false])
    );
    let children: Vec<&str> = root["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(children, ["SELECT carts", "charge card"]);
    let db = &root["children"][0];
    assert_eq!(db["kind"], "client");
    assert_eq!(db["attributes"]["db.system.name"], "sqlite");
    assert_eq!(db["events"][0]["name"], "rows");
    assert_eq!(db["events"][0]["attributes"]["count"], 3);
    let charge = &root["children"][1];
    assert_eq!(charge["status"], "error");
    assert_eq!(charge["status_message"], "card declined");
    assert_eq!(charge["events"][0]["name"], "exception");
    assert_eq!(
        charge["events"][0]["attributes"]["exception.type"],
        "ValueError"
    );
}

fn check_jaeger(c: &Collector, trace_id: &str, spans: usize) {
    let (status, _) = http_get(c.query, "/api/services").unwrap();
    if status != 200 {
        eprintln!("SKIPPED Jaeger check for {trace_id}: GET /api/services answered {status}");
        return;
    }
    let (status, body) = http_get(c.query, &format!("/api/traces/{trace_id}")).unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["data"][0]["spans"].as_array().unwrap().len(),
        spans,
        "{v}"
    );
}

#[test]
fn python_sdk_and_py_zipkin_traces_read_back_whole() {
    let Some(python) = python_env() else {
        return;
    };
    let c = start_collector();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/send_traces.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(format!("http://{}", c.ingest))
        .arg(format!("http://{}", c.grpc))
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env("OTEL_BSP_SCHEDULE_DELAY", "50")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "send_traces.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Value = serde_json::from_slice(&out.stdout).unwrap();

    for (key, service) in [
        ("otlp_proto", "py-proto"),
        ("otlp_json", "py-json"),
        ("otlp_grpc", "py-grpc"),
    ] {
        let id = ids[key].as_str().unwrap();
        check_otel_tree(&tree(&c, id), service);
        check_jaeger(&c, id, 3);
    }

    // py_zipkin sends 64-bit trace ids: stored left-padded to 32 hex digits.
    let zipkin = &ids["zipkin"];
    let short = zipkin["trace_id"].as_str().unwrap();
    assert_eq!(short.len(), 16);
    let full = format!("{short:0>32}");
    let t = tree(&c, &full);
    assert_eq!(t["span_count"], 4, "{t}");
    assert_eq!(t["services"], serde_json::json!(["zk-back", "zk-front"]));
    let all = nodes(&t);
    let root = named(&all, "get /checkout", "server");
    assert_eq!(root["parent_span_id"], Value::Null);
    assert_eq!(root["attributes"]["http.path"], "/checkout");
    let client = named(&all, "post /cart", "client");
    let server = named(&all, "post /cart", "server");
    let shared = zipkin["shared_span_id"].as_str().unwrap();
    assert_eq!(client["span_id"], shared);
    assert_eq!(
        server["span_id"], shared,
        "the shared server span keeps the client's id"
    );
    assert_eq!(server["service"], "zk-back");
    assert_eq!(server["attributes"]["zipkin.shared"], true);
    assert_eq!(client["attributes"]["peer.service"], "zk-back");
    assert_eq!(client["events"][0]["name"], "ws");
    let insert = named(&all, "insert cart", "internal");
    assert_eq!(insert["parent_span_id"], shared);
    check_jaeger(&c, &full, 4);

    let (status, metrics) = http_get(c.query, "/metrics").unwrap();
    assert_eq!(status, 200);
    for protocol in ["otlp_proto", "otlp_json", "otlp_grpc", "zipkin"] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "spanline_ingest_spans_stored_total{{protocol=\"{protocol}\"}}"
                ))
            })
            .unwrap();
        let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n >= 3, "{line}");
    }
}
