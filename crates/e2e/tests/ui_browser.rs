//! The web UI in a real browser (Debian `chromium` driven through `chromedriver`): the real
//! stack, real orders, the search page, the waterfall of a failed trace, the span details,
//! the service map; hostile span data rendered as text; a 5,000-span trace opened and timed.
//!
//! Screenshots go to `target/ui-artifacts/` (see [`browser::artifacts_dir`]). Without
//! chromium the tests skip with a message, except under `CI=true`, where they fail:
//! `scripts/test.sh` installs `chromium` and `chromium-driver` first.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spanline_e2e::Stack;
use spanline_e2e::browser::{self, Browser};

const TREE_TIMEOUT: Duration = Duration::from_secs(20);
const UI_TIMEOUT: Duration = Duration::from_secs(20);

/// Hooks `alert`, `confirm` and `prompt` before any page script runs: a payload that manages
/// to execute records itself in `window.__alerts`.
const ALERT_HOOK: &str = "window.__alerts = [];\
    window.alert = function (m) { window.__alerts.push('alert:' + m); };\
    window.confirm = function (m) { window.__alerts.push('confirm:' + m); return false; };\
    window.prompt = function (m) { window.__alerts.push('prompt:' + m); return null; };";

/// The browser binaries, or `None` (skip) off CI. Panics under CI.
fn browser_or_skip(test: &str) -> Option<(PathBuf, PathBuf)> {
    match browser::find_browser() {
        Ok(b) => Some(b),
        Err(why) => {
            assert!(
                std::env::var("CI").map(|v| v != "true").unwrap_or(true),
                "{test}: the browser test must run in CI, but {why}"
            );
            eprintln!("SKIPPED {test}: {why}");
            None
        }
    }
}

async fn open_browser(chromium: &std::path::Path, driver: &std::path::Path) -> Browser {
    let b = Browser::start(chromium, driver)
        .await
        .unwrap_or_else(|e| panic!("start the browser: {e}"));
    b.cdp(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({ "source": ALERT_HOOK }),
    )
    .await
    .unwrap();
    b
}

async fn place_order(stack: &Stack, query: &str) -> (u16, Value) {
    stack.place_order(query, "1", 1).await
}

/// Waits up to [`UI_TIMEOUT`] for `script` to return `true`; panics naming `what`.
async fn see(b: &Browser, what: &str, script: &str) {
    b.wait_for(what, script, UI_TIMEOUT).await.unwrap();
}

async fn visible_rows(b: &Browser) -> u64 {
    b.exec(
        "return [...document.querySelectorAll('#wf-body .wf-row')].filter(r => !r.hidden).length;",
        vec![],
    )
    .await
    .unwrap()
    .as_u64()
    .unwrap()
}

async fn no_script_ran(b: &Browser, page: &str) {
    let state = b
        .exec(
            "return {alerts: window.__alerts || null, xss: window.__xss === undefined ? null : String(window.__xss),
                     imgs: document.querySelectorAll('img').length,
                     scripts: [...document.querySelectorAll('script')].map(s => s.getAttribute('src')),
                     badLinks: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))
                         .filter(h => !(h.startsWith('/') || h === '#' || /^https?:/i.test(h)))};",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(state["alerts"], json!([]), "{page}: a payload ran: {state}");
    assert_eq!(state["xss"], Value::Null, "{page}: a payload ran: {state}");
    assert_eq!(state["imgs"], 0, "{page}: data became an <img>: {state}");
    assert_eq!(
        state["scripts"],
        json!(["/ui/app.js"]),
        "{page}: data became a <script>: {state}"
    );
    assert_eq!(
        state["badLinks"],
        json!([]),
        "{page}: unsafe link from data: {state}"
    );
}

/// The newcomer's path: orders placed with the real stack (one failing), the failed trace found
/// on the search page and opened, a subtree collapsed and expanded, a span's attribute read,
/// the service map opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_demo_flow() {
    let Some((chromium, driver)) = browser_or_skip("browser_demo_flow") else {
        return;
    };
    let started = Instant::now();
    let art = browser::artifacts_dir();
    let mut stack = Stack::start().await;

    let mut ok_ids = Vec::new();
    for _ in 0..3 {
        let (status, body) = place_order(&stack, "").await;
        assert_eq!(status, 201, "{body}");
        ok_ids.push(body["trace_id"].as_str().unwrap().to_owned());
    }
    let (status, failed) = place_order(&stack, "?fail=payment").await;
    assert!(status >= 500, "{status} {failed}");
    let failed_id = failed["trace_id"].as_str().unwrap().to_owned();
    let mut failed_tree = Value::Null;
    for id in ok_ids.iter().chain([&failed_id]) {
        failed_tree = stack
            .wait_for_tree(id, TREE_TIMEOUT, |t| {
                t["complete"] == true && t["service_count"] == 4
            })
            .await;
    }
    // The exception the failing payment server span recorded.
    let exception_message = spanline_e2e::walk(&failed_tree)
        .into_iter()
        .map(|(node, _)| node)
        .find(|n| n["service"] == "payment" && n["kind"] == "server")
        .and_then(|n| {
            n["events"]
                .as_array()?
                .iter()
                .find(|e| e["name"] == "exception")
                .map(|e| {
                    e["attributes"]["exception.message"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned()
                })
        })
        .expect("the failed payment span records an exception");

    let b = open_browser(&chromium, &driver).await;

    // Search page: all four traces, the failed one marked.
    b.goto(&format!("{}/", stack.query_url)).await.unwrap();
    see(
        &b,
        "4 traces listed",
        "return document.querySelectorAll('#trace-list .trace-row').length >= 4;",
    )
    .await;
    see(
        &b,
        "the scatter plot",
        "return document.querySelectorAll('#scatter circle.dot').length >= 4;",
    )
    .await;
    let marked = b
        .exec(
            "return [...document.querySelectorAll('#trace-list .trace-row.has-error')].map(r => r.dataset.traceId);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        marked,
        json!([failed_id]),
        "only the failed trace is marked"
    );
    b.screenshot(&art.join("search.png")).await.unwrap();

    // Errors only: the failed trace alone.
    b.click_css("#f-error").await.unwrap();
    b.click_css("#f-submit").await.unwrap();
    see(
        &b,
        "the errors-only search",
        "return location.search.includes('error=true') && document.querySelectorAll('#trace-list .trace-row').length === 1;",
    )
    .await;
    b.click_css(&format!(
        "#trace-list .trace-row[data-trace-id='{failed_id}'] a"
    ))
    .await
    .unwrap();

    // Trace page.
    see(
        &b,
        "the trace page",
        &format!("return document.body.dataset.traceReady === '{failed_id}';"),
    )
    .await;
    assert_eq!(
        b.exec("return location.pathname;", vec![]).await.unwrap(),
        json!(format!("/trace/{failed_id}"))
    );
    let header = b.text("#trace-stats").await.unwrap();
    assert!(
        header.contains("4") && header.to_lowercase().contains("services"),
        "{header}"
    );
    let why = b.text("#failure").await.unwrap();
    assert!(
        why.contains("payment") && why.contains("injected fault"),
        "the failure box names the failing service and why: {why}"
    );
    b.screenshot_full(&art.join("trace-failed.png"))
        .await
        .unwrap();

    // Collapse and expand the order service's subtree.
    let before = visible_rows(&b).await;
    let toggle = ".wf-row[data-service='order'] .toggle:not(.leaf)";
    b.click_css(toggle).await.unwrap();
    let collapsed = visible_rows(&b).await;
    assert!(
        collapsed < before,
        "collapsing hides the subtree: {before} -> {collapsed}"
    );
    b.screenshot(&art.join("trace-collapsed.png"))
        .await
        .unwrap();
    b.click_css(toggle).await.unwrap();
    assert_eq!(visible_rows(&b).await, before, "expanding shows it again");

    // Click the payment server span and read an attribute.
    b.click_css(".wf-row[data-service='payment'][data-index] .op")
        .await
        .unwrap();
    see(
        &b,
        "the span detail",
        "return document.querySelector('#span-detail') !== null;",
    )
    .await;
    let code = b
        .text("#span-attributes tr[data-key='http.response.status_code'] td")
        .await
        .unwrap();
    assert_eq!(code, "503");
    let detail = b.text("#span-detail").await.unwrap();
    assert!(!exception_message.is_empty());
    assert_eq!(
        detail.matches(exception_message.as_str()).count(),
        1,
        "the exception's message is said once in the span detail:\n{detail}"
    );
    let search = b.exec("return location.search;", vec![]).await.unwrap();
    assert!(
        search.as_str().unwrap().starts_with("?span="),
        "deep link: {search}"
    );
    see(
        &b,
        "the span's resource",
        "return document.querySelector('#span-resource') !== null;",
    )
    .await;
    b.screenshot(&art.join("trace-span-detail.png"))
        .await
        .unwrap();

    // A deep link opens with the span selected.
    let deep = format!(
        "{}/trace/{failed_id}{}",
        stack.query_url,
        search.as_str().unwrap()
    );
    b.goto(&deep).await.unwrap();
    see(
        &b,
        "the deep-linked span",
        "return document.querySelector('#span-detail .svc')?.textContent === 'payment';",
    )
    .await;

    // Text tree toggle.
    b.click_css("#toggle-text").await.unwrap();
    see(
        &b,
        "the text tree",
        "return document.querySelector('#text-tree').textContent.includes('frontend POST /orders') && document.querySelector('#text-tree').textContent.startsWith('trace ');",
    )
    .await;

    // Service map.
    b.click_css("#nav-map").await.unwrap();
    see(
        &b,
        "the dependency graph",
        "return document.querySelectorAll('#dependency-graph .node').length === 4 && document.querySelectorAll('#services-table tbody tr').length === 4;",
    )
    .await;
    let edges = b
        .exec(
            "return [...document.querySelectorAll('#dependency-graph .edge')].map(e => e.dataset.parent + '>' + e.dataset.child).sort();",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        edges,
        json!(["frontend>order", "frontend>user", "order>payment"])
    );
    let err_edge = b
        .exec(
            "return document.querySelector(\"#dependency-graph .edge[data-child='payment']\").classList.contains('err');",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(err_edge, json!(true), "the failing call is marked");
    let conflicts = b.exec(MAP_LABEL_CONFLICTS, vec![]).await.unwrap();
    assert_eq!(conflicts["bad"], json!([]), "{conflicts}");
    b.screenshot_full(&art.join("service-map.png"))
        .await
        .unwrap();

    no_script_ran(&b, "demo flow").await;
    b.quit().await;
    stack.shutdown();
    eprintln!(
        "browser_demo_flow: {:.1} s (screenshots in {})",
        started.elapsed().as_secs_f64(),
        art.display()
    );
}

fn simple_span(
    trace_id: &str,
    span_id: &str,
    parent: Option<&str>,
    service: &str,
    name: &str,
    start_ns: u64,
    dur_ns: u64,
) -> Value {
    json!({
        "trace_id": trace_id, "span_id": span_id, "parent_span_id": parent,
        "operation_name": name, "kind": "server", "status": "ok",
        "start_time_unix_nano": start_ns, "end_time_unix_nano": start_ns + dur_ns,
        "attributes": {}, "resource_attributes": {"service.name": service},
        "events": [], "links": [],
    })
}

async fn ingest(stack: &Stack, spans: &[Value]) {
    let r = stack
        .client
        .post(format!("{}/v1/traces", stack.ingest_url))
        .json(&spans)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert!(status.is_success(), "{status} {body}");
    let rejected = &body["partialSuccess"]["rejectedSpans"];
    assert!(
        rejected.is_null() || rejected == "0" || rejected == 0,
        "spans rejected: {body}"
    );
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Every span string is untrusted (reliability.md §4.3, §7.5 Q8): script and HTML payloads
/// in service names, span names, attribute keys and values, status messages and event fields
/// show as literal text on every page, nothing runs, `javascript:` never becomes a link.
/// Then a 5,000-span trace is opened and the time to a painted waterfall is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_hostile_data_and_large_trace() {
    let Some((chromium, driver)) = browser_or_skip("browser_hostile_data_and_large_trace") else {
        return;
    };
    let art = browser::artifacts_dir();
    let mut stack = Stack::start().await;

    // The headers first (no browser needed).
    let r = stack
        .client
        .get(format!(
            "{}/trace/{}",
            stack.query_url,
            "0".repeat(31) + "1"
        ))
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");

    const SCRIPT: &str = "<script>window.__xss='script';alert(1)</script>";
    const IMG: &str = "<img src=x onerror=alert(1)>";
    const IMG_FLAG: &str = "<img src=x onerror=\"window.__xss='img'\">";
    const JAEGER_POC: &str = "{\"<img src=x onerror=alert(1)>\":\"test\"}";
    let tid = "7e57000000000000000000000000a115";
    let t0 = now_ns() - 5_000_000_000;
    let mut root = simple_span(tid, "00000000000000a1", None, SCRIPT, IMG, t0, 50_000_000);
    root["attributes"] = json!({
        "sampler.type": JAEGER_POC,
        "http.url": "javascript:alert(1)",
        "url.full": "jaVasCript:alert(1)",
        IMG: SCRIPT,
    });
    let mut child = simple_span(
        tid,
        "00000000000000a2",
        Some("00000000000000a1"),
        IMG_FLAG,
        SCRIPT,
        t0 + 5_000_000,
        30_000_000,
    );
    child["status"] = json!("error");
    child["status_message"] = json!(IMG);
    child["attributes"] = json!({"sampler.type": JAEGER_POC, "http.url": "javascript:alert(1)"});
    child["events"] = json!([{
        "name": IMG,
        "timestamp": (t0 + 20_000_000) as f64 / 1e9,
        "attributes": {"exception.type": SCRIPT, "exception.message": IMG, IMG_FLAG: JAEGER_POC},
    }]);
    // An orphan: its parent never arrives.
    let orphan = simple_span(
        tid,
        "00000000000000a3",
        Some("00000000000000ff"),
        IMG_FLAG,
        "late <b>orphan</b>",
        t0 + 10_000_000,
        10_000_000,
    );
    ingest(&stack, &[root, child, orphan]).await;
    stack
        .wait_for_tree(tid, TREE_TIMEOUT, |t| t["span_count"] == 3)
        .await;

    let b = open_browser(&chromium, &driver).await;
    b.goto(&format!("{}/trace/{tid}", stack.query_url))
        .await
        .unwrap();
    see(
        &b,
        "the hostile trace",
        &format!("return document.body.dataset.traceReady === '{tid}';"),
    )
    .await;
    let orphan_badge = b
        .text(".wf-row.orphan[data-span-id='00000000000000a3'] .badge")
        .await
        .unwrap();
    assert_eq!(orphan_badge, "orphan");
    let warnings = b.text("#trace-warnings").await.unwrap();
    assert!(warnings.contains("00000000000000ff"), "{warnings}");
    let title = b.text("#trace-title").await.unwrap();
    assert!(
        title.contains(SCRIPT) && title.contains(IMG),
        "title shows the payloads as text: {title}"
    );
    // Open both spans' details.
    b.click_css(".wf-row[data-span-id='00000000000000a2'] .op")
        .await
        .unwrap();
    see(
        &b,
        "the child's details",
        "return document.querySelector('#span-events') !== null;",
    )
    .await;
    let poc = b
        .text("#span-attributes tr[data-key='sampler.type'] td")
        .await
        .unwrap();
    assert_eq!(poc, JAEGER_POC);
    let url_cell_links = b
        .exec(
            "return document.querySelectorAll(\"#span-attributes tr[data-key='http.url'] a\").length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(url_cell_links, 0, "javascript: is not a link");
    let events = b.text("#span-events").await.unwrap();
    assert!(events.contains(IMG) && events.contains(SCRIPT), "{events}");
    b.screenshot_full(&art.join("xss-trace.png")).await.unwrap();
    no_script_ran(&b, "trace page").await;
    b.click_css(".wf-row[data-span-id='00000000000000a1'] .op")
        .await
        .unwrap();
    let key = b
        .exec(
            "return [...document.querySelectorAll('#span-attributes th')].map(t => t.textContent);",
            vec![],
        )
        .await
        .unwrap();
    assert!(key.as_array().unwrap().contains(&json!(IMG)), "{key}");
    no_script_ran(&b, "trace page, root details").await;

    // Search page (service names in the dropdown, chips, tooltips) and the map (SVG text).
    b.goto(&format!("{}/", stack.query_url)).await.unwrap();
    see(
        &b,
        "the search results",
        &format!("return document.querySelector(\"#trace-list .trace-row[data-trace-id='{tid}']\") !== null;"),
    )
    .await;
    let options = b
        .exec(
            "return [...document.querySelectorAll('#f-service option')].map(o => o.textContent);",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        options.as_array().unwrap().contains(&json!(SCRIPT)),
        "{options}"
    );
    b.screenshot(&art.join("xss-search.png")).await.unwrap();
    no_script_ran(&b, "search page").await;
    b.goto(&format!("{}/map", stack.query_url)).await.unwrap();
    see(
        &b,
        "the map",
        "return document.querySelectorAll('#dependency-graph .node').length >= 2;",
    )
    .await;
    let labels = b
        .exec(
            "return [...document.querySelectorAll('#dependency-graph .node title')].map(t => t.textContent);",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        labels
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().starts_with(IMG_FLAG)),
        "{labels}"
    );
    b.screenshot(&art.join("xss-map.png")).await.unwrap();
    no_script_ran(&b, "service map").await;

    // A 5,000-span trace: 8 services, fan-out 10/10/10/~4, children inside their parents.
    let big = "b16b16b16b16b16b16b16b16b16b1600";
    let n = 5_000usize;
    let t0 = now_ns() - 3_000_000_000;
    let mut spans: Vec<Value> = Vec::with_capacity(n);
    // (span id, start, duration) per span, built breadth first.
    let mut info: Vec<(String, u64, u64)> = vec![(format!("{:016x}", 1), t0, 2_000_000_000)];
    spans.push(simple_span(
        big,
        &info[0].0,
        None,
        "gateway",
        "GET /big",
        t0,
        2_000_000_000,
    ));
    let mut parent = 0usize;
    while spans.len() < n {
        let fan = if parent == 0 {
            10
        } else {
            10.min(n - spans.len())
        };
        let (pid, pstart, pdur) = info[parent].clone();
        let slot = pdur / (fan as u64 + 1);
        for k in 0..fan {
            if spans.len() >= n {
                break;
            }
            let i = spans.len();
            let id = format!("{:016x}", i + 1);
            let start = pstart + slot / 2 + k as u64 * slot;
            let dur = slot * 9 / 10;
            let service = format!("svc-{}", i % 8);
            let mut sp = simple_span(
                big,
                &id,
                Some(&pid),
                &service,
                &format!("op {}", i % 37),
                start,
                dur,
            );
            sp["attributes"] = json!({"app.index": i, "http.route": format!("/items/{}", i % 50)});
            if i.is_multiple_of(997) {
                sp["status"] = json!("error");
                sp["status_message"] = json!("synthetic failure");
            }
            spans.push(sp);
            info.push((id, start, dur));
        }
        parent += 1;
    }
    for chunk in spans.chunks(1_000) {
        ingest(&stack, chunk).await;
    }
    stack
        .wait_for_tree(big, TREE_TIMEOUT, |t| t["span_count"] == 5_000)
        .await;
    b.goto(&format!("{}/", stack.query_url)).await.unwrap();
    let mut figures = Vec::new();
    for run in 0..3 {
        let nav = Instant::now();
        b.goto(&format!("{}/trace/{big}", stack.query_url))
            .await
            .unwrap();
        let ready = b
            .wait_for(
                "the 5,000-span trace",
                &format!(
                    "return document.body.dataset.traceReady === '{big}' && \
                     {{fetch: +document.body.dataset.traceFetchMs, render: +document.body.dataset.traceRenderMs, \
                      prepare: +document.body.dataset.tracePrepareMs, build: +document.body.dataset.traceBuildMs, \
                      ready: +document.body.dataset.traceReadyMs, sinceNavigation: +document.body.dataset.traceSinceNavigationMs, \
                      rows: document.querySelectorAll('#wf-body .wf-row').length}};"
                ),
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert!(ready["rows"].as_u64().unwrap() > 1_000, "{ready}");
        let line = format!(
            "run {run}: API fetch {} ms, build+layout+paint {} ms (tree walk {} ms, DOM build {} ms), script start to painted {} ms, navigation start to painted {:.0} ms, driver round trip {} ms, {} rows built",
            ready["fetch"],
            ready["render"],
            ready["prepare"],
            ready["build"],
            ready["ready"],
            ready["sinceNavigation"].as_f64().unwrap_or(0.0),
            nav.elapsed().as_millis(),
            ready["rows"]
        );
        eprintln!("5k-span trace {line}");
        figures.push(line);
    }
    b.screenshot(&art.join("trace-5000-spans.png"))
        .await
        .unwrap();
    // Expanding everything on the big trace still works.
    let t = Instant::now();
    b.click_css("#expand-all").await.unwrap();
    let shown = visible_rows(&b).await;
    figures.push(format!(
        "expand all: {} ms (driver round trip), {shown} rows visible",
        t.elapsed().as_millis()
    ));
    assert_eq!(shown, 5_000);
    std::fs::write(art.join("perf-5000-spans.txt"), figures.join("\n") + "\n").unwrap();
    no_script_ran(&b, "big trace").await;

    b.quit().await;
    stack.shutdown();
}

/// Label boxes of the service map that overlap one another, or that a line of another edge
/// passes through (sampled every 1/400 of each path): `{"edges": n, "bad": [...]}`.
const MAP_LABEL_CONFLICTS: &str = r#"
const edges = [...document.querySelectorAll('#dependency-graph .edge')];
const boxes = edges.map((g) => g.querySelector('text.edge-label').getBBox());
const overlaps = (a, b) => a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
const name = (g) => g.dataset.parent + '>' + g.dataset.child;
const bad = [];
boxes.forEach((a, i) => boxes.forEach((b, j) => { if (i < j && overlaps(a, b)) bad.push('label ' + name(edges[i]) + ' overlaps label ' + name(edges[j])); }));
boxes.forEach((box, i) => edges.forEach((other, j) => {
  if (i === j) return;
  const path = other.querySelector('path');
  const total = path.getTotalLength();
  for (let k = 0; k <= 400; k++) {
    const p = path.getPointAtLength((total * k) / 400);
    if (p.x > box.x && p.x < box.x + box.width && p.y > box.y && p.y < box.y + box.height) {
      bad.push('line ' + name(other) + ' crosses label ' + name(edges[i]));
      break;
    }
  }
}));
return { edges: edges.length, bad };
"#;

/// Service colour of every node of the map, by service name.
const MAP_COLOURS: &str = "return Object.fromEntries([...document.querySelectorAll('#dependency-graph .node')].map((n) => [n.dataset.service, n.querySelector('rect.node-colour').getAttribute('fill')]));";

/// A dense service map (10 calls between 7 services, with crossing lines): no edge label
/// overlaps another or sits on another edge's line. Service colours stay the same when a
/// service that sorts first appears (they come from the name, not from the order of the
/// services seen). The "go to trace" box takes a short id; an unknown path shows a page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_map_labels_and_stable_colours() {
    let Some((chromium, driver)) = browser_or_skip("browser_map_labels_and_stable_colours") else {
        return;
    };
    let art = browser::artifacts_dir();
    let mut stack = Stack::start().await;
    let tid = "5ca1ab1e00000000000000000000c0de";
    let t0 = now_ns() - 5_000_000_000;
    let ms = 1_000_000;
    let calls: [(&str, &str, Option<&str>, &str); 10] = [
        ("01", "gateway", None, "GET /"),
        ("02", "svc-a", Some("01"), "GET /a"),
        ("03", "svc-b", Some("01"), "GET /b"),
        ("04", "svc-c", Some("01"), "GET /c"),
        ("05", "svc-d", Some("01"), "GET /d"),
        ("06", "db", Some("02"), "SELECT"),
        ("07", "db", Some("03"), "SELECT"),
        ("08", "cache", Some("04"), "GET"),
        ("09", "cache", Some("05"), "GET"),
        ("0a", "cache", Some("02"), "GET"),
    ];
    let mut spans: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, (id, service, parent, name))| {
            let sid = format!("00000000000000{id}");
            let parent = parent.map(|p| format!("00000000000000{p}"));
            simple_span(
                tid,
                &sid,
                parent.as_deref(),
                service,
                name,
                t0 + i as u64 * ms,
                50 * ms,
            )
        })
        .collect();
    // svc-d also calls db: a line crossing svc-c's call to cache.
    spans.push(simple_span(
        tid,
        "000000000000000b",
        Some("0000000000000005"),
        "db",
        "SELECT",
        t0 + 11 * ms,
        5 * ms,
    ));
    ingest(&stack, &spans).await;

    let b = open_browser(&chromium, &driver).await;
    b.goto(&format!("{}/map", stack.query_url)).await.unwrap();
    see(
        &b,
        "the dense map",
        "return document.querySelectorAll('#dependency-graph .edge').length === 10;",
    )
    .await;
    b.screenshot_full(&art.join("service-map-dense.png"))
        .await
        .unwrap();
    let conflicts = b.exec(MAP_LABEL_CONFLICTS, vec![]).await.unwrap();
    assert_eq!(conflicts["edges"], 10, "{conflicts}");
    assert_eq!(conflicts["bad"], json!([]), "{conflicts}");
    let before = b.exec(MAP_COLOURS, vec![]).await.unwrap();
    assert_eq!(before.as_object().unwrap().len(), 7, "{before}");

    // A service that sorts before all others appears: nobody's colour changes.
    let newcomer = simple_span(
        "0ddba11000000000000000000000c0df",
        "00000000000000f1",
        None,
        "aaa-newcomer",
        "GET /new",
        t0 + 20 * ms,
        5 * ms,
    );
    ingest(&stack, &[newcomer]).await;
    b.goto(&format!("{}/map", stack.query_url)).await.unwrap();
    see(
        &b,
        "the map with the newcomer",
        "return document.querySelector(\"#dependency-graph .node[data-service='aaa-newcomer']\") !== null;",
    )
    .await;
    let after = b.exec(MAP_COLOURS, vec![]).await.unwrap();
    for (service, colour) in before.as_object().unwrap() {
        assert_eq!(&after[service], colour, "{service} changed colour: {after}");
    }

    // "Go to trace" with the short id the search list shows.
    b.goto(&format!("{}/", stack.query_url)).await.unwrap();
    see(
        &b,
        "the search list",
        &format!("return document.querySelector(\"#trace-list .trace-row[data-trace-id='{tid}'] code.tid\") !== null;"),
    )
    .await;
    let short = b
        .text(&format!(
            "#trace-list .trace-row[data-trace-id='{tid}'] code.tid"
        ))
        .await
        .unwrap();
    assert!(short.len() < 32 && tid.starts_with(&short), "{short}");
    b.type_into("#jump-id", &short).await.unwrap();
    b.exec("document.getElementById('jump').requestSubmit();", vec![])
        .await
        .unwrap();
    see(
        &b,
        "the trace opened from its short id",
        &format!("return document.body.dataset.traceReady === '{tid}';"),
    )
    .await;

    // An unknown path is a page, not JSON.
    b.goto(&format!("{}/no/such/page", stack.query_url))
        .await
        .unwrap();
    see(
        &b,
        "the not-found page",
        "return document.querySelector('#not-found') !== null;",
    )
    .await;

    no_script_ran(&b, "map labels").await;
    b.quit().await;
    stack.shutdown();
}

/// A declined order (402) on the search page and its trace page: the status is shown for what
/// it is, with the reason from the payment service; an incomplete trace says what it waits for;
/// two traces joined by a span link list each other under "Linked traces", marked by direction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_declined_order_and_waiting_trace() {
    let Some((chromium, driver)) = browser_or_skip("browser_declined_order_and_waiting_trace")
    else {
        return;
    };
    let art = browser::artifacts_dir();
    let mut stack = Stack::start().await;
    let (status, body) = stack.place_order("", "1", 5).await;
    assert_eq!(status, 402, "{body}");
    let declined = body["trace_id"].as_str().unwrap().to_owned();
    stack
        .wait_for_tree(&declined, TREE_TIMEOUT, |t| t["complete"] == true)
        .await;

    let b = open_browser(&chromium, &driver).await;
    b.goto(&format!("{}/", stack.query_url)).await.unwrap();
    see(
        &b,
        "the declined order's status in the list",
        &format!(
        "const r = document.querySelector(\"#trace-list .trace-row[data-trace-id='{declined}'] .http-status\");\
        return !!r && r.textContent === '402';"
        ),
    )
    .await;
    b.goto(&format!("{}/trace/{declined}", stack.query_url))
        .await
        .unwrap();
    see(
        &b,
        "the trace page",
        &format!("return document.body.dataset.traceReady === '{declined}';"),
    )
    .await;
    let stats = b.text("#trace-stats").await.unwrap();
    assert!(stats.contains("402"), "{stats}");
    let outcome = b.text("#trace-outcome").await.unwrap();
    assert!(
        outcome.contains("402") && outcome.contains("payment declined"),
        "{outcome}"
    );
    b.screenshot_full(&art.join("trace-declined.png"))
        .await
        .unwrap();

    // A trace whose server span never comes: the page says what it waits for.
    let waiting = "0af7651916cd43dd8448eb211c8031aa";
    let now = now_ns();
    let spans = vec![
        json!({"trace_id": waiting, "span_id": "00000000000000a1", "operation_name": "GET /",
               "start_time": now as f64 / 1e9 - 1.0, "end_time": now as f64 / 1e9 - 0.5,
               "kind": "server", "resource_attributes": {"service.name": "gateway"}}),
        json!({"trace_id": waiting, "span_id": "00000000000000a2", "parent_span_id": "00000000000000a1",
               "operation_name": "GET /x", "start_time": now as f64 / 1e9 - 0.9,
               "end_time": now as f64 / 1e9 - 0.6, "kind": "client",
               "resource_attributes": {"service.name": "gateway"},
               "attributes": {"peer.service": "backend",
                   "http.response.header.traceresponse": [format!("00-{waiting}-00000000000000a3-01")]}}),
    ];
    ingest(&stack, &spans).await;
    b.goto(&format!("{}/trace/{waiting}", stack.query_url))
        .await
        .unwrap();
    see(
        &b,
        "the waiting box",
        "const w = document.querySelector('#trace-waiting'); return !!w && w.textContent.includes('backend');",
    )
    .await;
    b.screenshot(&art.join("trace-waiting.png")).await.unwrap();

    // Links across traces, both ways (links-only messaging, as the OpenTelemetry Demo does):
    // the producer's page lists the consumer's trace that links to it, and the other way.
    let producer = "0af7651916cd43dd8448eb211c8031b0";
    let consumer = "0af7651916cd43dd8448eb211c8031b1";
    let t0 = now_ns() - 2_000_000_000;
    let mut process = simple_span(
        consumer,
        "00000000000000b2",
        None,
        "notification",
        "process payments.completed",
        t0 + 5_000_000,
        3_000_000,
    );
    process["kind"] = json!("consumer");
    process["links"] = json!([{"trace_id": producer, "span_id": "00000000000000b1"}]);
    let mut publish = simple_span(
        producer,
        "00000000000000b1",
        None,
        "payment",
        "publish payments.completed",
        t0,
        1_000_000,
    );
    publish["kind"] = json!("producer");
    ingest(&stack, &[publish, process]).await;
    for (page, other, relation) in [
        (producer, consumer, "linked_from"),
        (consumer, producer, "links_to"),
    ] {
        b.goto(&format!("{}/trace/{page}", stack.query_url))
            .await
            .unwrap();
        see(
            &b,
            &format!("the linked trace {other} ({relation}) on {page}'s page"),
            &format!(
                "const li = document.querySelector(\"#linked-traces li[data-relation='{relation}'] a[href='/trace/{other}']\");\
                 return !!li && !document.querySelector('#linked-traces').hidden;"
            ),
        )
        .await;
    }
    b.screenshot(&art.join("trace-linked.png")).await.unwrap();
    b.quit().await;
    stack.shutdown();
}
