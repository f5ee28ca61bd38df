#!/usr/bin/env python3
"""The compose end-to-end test (run by scripts/compose-e2e.sh; standard library only).

Starts the stack with the project's docker-compose.yml (`docker-compose up -d`, image
`spanline:latest` already built), places orders through localhost:8080 and asserts across
containers: complete trees at localhost:16686, a 30 s collector outage, a collector restart
(volume), a SIGKILL of the collector during a burst, a stopped payment container, and
`docker-compose down -v`. Measures the time from `up` to the first complete trace and the
memory of the whole stack under a light load.

Every wait polls with a deadline; the only fixed wait is the 30 s collector outage.
Prints `compose-e2e: N passed, M failed` last; exits 1 if anything failed.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT = os.environ.get("COMPOSE_PROJECT_NAME") or "spanline-e2e"
ENV = dict(os.environ, COMPOSE_PROJECT_NAME=PROJECT)
COMPOSE = os.environ.get("COMPOSE", "docker-compose").split()
FRONTEND = "http://127.0.0.1:8080"
QUERY = "http://127.0.0.1:16686"
INGEST = "http://127.0.0.1:4318"
SERVICES = ["collector", "user", "payment", "order", "notification", "frontend"]
OUTAGE_S = 30.0
# The sixteen spans of a successful order (DESIGN §3), its asynchronous tail included: payment
# publishes payments.completed, which order and notification consume: (service, name).
EXPECTED_SPANS = sorted(
    [
        ("frontend", "POST /orders"),
        ("frontend", "GET /users/{id}"),
        ("user", "GET /users/{id}"),
        ("user", "SELECT users"),
        ("frontend", "POST /orders"),
        ("order", "POST /orders"),
        ("order", "INSERT orders"),
        ("order", "POST /payments"),
        ("payment", "POST /payments"),
        ("payment", "charge card"),
        ("payment", "fraud check"),
        ("payment", "publish payments.completed"),
        ("order", "process payments.completed"),
        ("notification", "process payments.completed"),
        ("notification", "INSERT notifications"),
        ("notification", "send email"),
    ]
)
ORDER_SPANS = len(EXPECTED_SPANS)
ALL_SERVICES = ["frontend", "notification", "order", "payment", "user"]

# No proxy from the environment: every target is on loopback.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------
# HTTP


class Answer:
    def __init__(self, status, headers, body: bytes, seconds: float, error: str = ""):
        self.status = status
        self.headers = headers
        self.body = body
        self.seconds = seconds
        self.error = error

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def __repr__(self) -> str:
        text = self.body[:300].decode("utf-8", "replace")
        return f"<{self.status} {self.error} {self.seconds * 1000:.0f} ms {text}>"


def request(method: str, url: str, body=None, timeout: float = 10.0, ctype="application/json"):
    data = None
    headers = {}
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = ctype
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    start = time.monotonic()
    try:
        with OPENER.open(req, timeout=timeout) as r:
            return Answer(r.status, r.headers, r.read(), time.monotonic() - start)
    except urllib.error.HTTPError as e:
        return Answer(e.code, e.headers, e.read(), time.monotonic() - start)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        return Answer(None, {}, b"", time.monotonic() - start, error=f"{type(e).__name__}: {e}")


ORDER = {"user_id": "1", "product": "Laptop", "quantity": 1}


def place_order(query: str = "", timeout: float = 10.0) -> Answer:
    return request("POST", f"{FRONTEND}/orders{query}", ORDER, timeout=timeout)


def trace_id_of(a: Answer):
    j = a.json()
    if isinstance(j, dict) and isinstance(j.get("trace_id"), str):
        return j["trace_id"]
    return None


def get_tree(trace_id: str, wait: int = 0):
    a = request("GET", f"{QUERY}/v1/traces/{trace_id}/tree?wait={wait}", timeout=wait + 10)
    return a.json() if a.status == 200 else None


def walk(tree):
    out = []

    def go(n):
        out.append(n)
        for c in n.get("children", []):
            go(c)

    for r in (tree or {}).get("roots", []):
        go(r)
    return out


def tree_problem(tree) -> str:
    """Why `tree` is not the complete tree of a successful order ('' if it is)."""
    if not tree:
        return "no tree"
    spans = sorted((n.get("service"), n.get("name")) for n in walk(tree))
    if not tree.get("complete"):
        return f"not complete ({len(spans)} spans, warnings {tree.get('warnings')})"
    if len(tree.get("roots", [])) != 1:
        return f"{len(tree.get('roots', []))} roots"
    if tree.get("services") != ALL_SERVICES:
        return f"services {tree.get('services')}"
    if spans != EXPECTED_SPANS:
        return f"spans {spans}"
    root = tree["roots"][0]
    if (root.get("service"), root.get("name"), root.get("kind")) != ("frontend", "POST /orders", "server"):
        return f"root {root.get('service')} {root.get('name')} {root.get('kind')}"
    return ""


def wait_complete(trace_ids, timeout: float) -> dict:
    """Polls until every trace is complete; returns {trace_id: problem} for those that are not."""
    pending = {t: "never asked" for t in trace_ids}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for t in list(pending):
            p = tree_problem(get_tree(t, wait=0))
            if p:
                pending[t] = p
            else:
                del pending[t]
        if pending:
            time.sleep(0.25)
    return pending


# ------------------------------------------------------------------------------------------
# docker-compose


def run(cmd, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"`{' '.join(cmd)}` exited {p.returncode}:\n{p.stdout}{p.stderr}")
    return p


def compose(*args, timeout: float = 300, check: bool = True):
    return run(COMPOSE + list(args), timeout=timeout, check=check)


def container_id(service: str) -> str:
    """The service's container (running or not), found by compose's labels: `docker ps` is
    much quicker than `docker-compose ps`, which matters inside polling loops."""
    out = run(
        [
            "docker", "ps", "-aq", "--no-trunc",
            "--filter", f"label=com.docker.compose.project={PROJECT}",
            "--filter", f"label=com.docker.compose.service={service}",
        ]
    ).stdout.split()
    return out[0] if out else ""


def inspect(cid: str, fmt: str) -> str:
    return run(["docker", "inspect", "-f", fmt, cid]).stdout.strip()


def health(service: str) -> str:
    cid = container_id(service)
    if not cid:
        return "absent"
    return inspect(cid, "{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}")


def wait_healthy(services, timeout: float = 60):
    deadline = time.monotonic() + timeout
    states = {}
    while time.monotonic() < deadline:
        states = {s: health(s) for s in services}
        if all(v == "running/healthy" for v in states.values()):
            return
        time.sleep(0.2)
    raise AssertionError(f"not healthy after {timeout:.0f} s: {states}")


def port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def logs_tail(lines: int = 40) -> str:
    p = compose("logs", "--no-color", f"--tail={lines}", check=False, timeout=60)
    return p.stdout + p.stderr


# ------------------------------------------------------------------------------------------
# Test bookkeeping

RESULTS: list = []
MEASURED: dict = {}


def check(name: str):
    def wrap(fn):
        def runner():
            log(f"--- {name}")
            start = time.monotonic()
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - every failure is reported, then we go on
                RESULTS.append((name, False))
                detail = str(e) if isinstance(e, AssertionError) else traceback.format_exc()
                log(f"FAIL {name}: {detail}")
                print("--- container logs (last lines) ---\n" + logs_tail(), flush=True)
                recover()
                return
            RESULTS.append((name, True))
            log(f"ok   {name} ({time.monotonic() - start:.1f} s)")

        runner.__name__ = fn.__name__
        return runner

    return wrap


def recover():
    """After a failure: bring every container back so later checks test what they mean."""
    try:
        compose("up", "-d", timeout=180)
        wait_healthy(SERVICES, timeout=60)
    except Exception as e:  # noqa: BLE001
        log(f"could not bring the stack back: {e}")


def expect(cond: bool, msg: str):
    if not cond:
        raise AssertionError(msg)


# ------------------------------------------------------------------------------------------
# The checks, in order

SEEN_TRACES: dict = {}  # trace_id -> span count, every complete order trace so far


def record_complete(trace_ids):
    for t in trace_ids:
        SEEN_TRACES[t] = ORDER_SPANS


@check("image: spanline:latest is FROM scratch, small, user 10001")
def check_image():
    out = run(["docker", "image", "inspect", "spanline:latest", "-f", "{{.Config.User}} {{.Size}}"]).stdout
    user, size = out.split()
    size_mb = int(size) / 1e6
    MEASURED["image_mb"] = size_mb
    log(f"image spanline:latest: {size_mb:.1f} MB, user {user}")
    expect(user == "10001:10001", f"image user is {user!r}")
    expect(size_mb < 60, f"image is {size_mb:.1f} MB")
    # Nothing but our files: the layer list holds no base image.
    hist = run(["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", "spanline:latest"]).stdout
    expect("bookworm" not in hist and "apt-get" not in hist, f"unexpected base layers:\n{hist}")


@check("up: stack healthy; time from `up` to the first complete trace")
def check_up():
    t0 = time.monotonic()
    compose("up", "-d", timeout=180)
    t_up = time.monotonic() - t0
    log(f"`docker-compose up -d` returned after {t_up:.2f} s")
    first_ok = None
    trace_id = None
    deadline = t0 + 120
    while time.monotonic() < deadline:
        a = place_order(timeout=5)
        if a.status == 201:
            first_ok = time.monotonic() - t0
            trace_id = trace_id_of(a)
            break
        time.sleep(0.1)
    expect(trace_id is not None, f"no order succeeded within 120 s of `up`; last answer {a!r}")
    problem = "never asked"
    while time.monotonic() < deadline:
        problem = tree_problem(get_tree(trace_id, wait=0))
        if not problem:
            break
        time.sleep(0.05)
    expect(not problem, f"trace {trace_id} not complete within 120 s of `up`: {problem}")
    t_trace = time.monotonic() - t0
    MEASURED["up_s"] = t_up
    MEASURED["first_order_s"] = first_ok
    MEASURED["first_trace_s"] = t_trace
    log(f"first order answered {first_ok:.2f} s after `up`; its trace complete after {t_trace:.2f} s")
    record_complete([trace_id])
    wait_healthy(SERVICES, timeout=60)


@check("containers: non-root, memory limits, restart policy, health checks pass")
def check_containers():
    for s in SERVICES:
        cid = container_id(s)
        user, mem, restart = inspect(cid, "{{.Config.User}} {{.HostConfig.Memory}} {{.HostConfig.RestartPolicy.Name}}").split()
        pid = inspect(cid, "{{.State.Pid}}")
        with open(f"/proc/{pid}/status") as f:
            uid_line = next(line for line in f if line.startswith("Uid:"))
        uids = set(uid_line.split()[1:])
        expect(uids == {"10001"}, f"{s}: process runs with uids {uids}")
        expect(int(mem) > 0, f"{s}: no memory limit")
        expect(restart == "unless-stopped", f"{s}: restart policy {restart}")
        binary = "collector" if s == "collector" else ("frontend" if s == "frontend" else f"{s}-service")
        p = run(["docker", "exec", cid, binary, "--healthcheck"], check=False, timeout=30)
        expect(p.returncode == 0, f"{s}: `{binary} --healthcheck` exited {p.returncode}: {p.stderr}")
        log(f"{s}: uid 10001, memory limit {int(mem) // 2**20} MiB, {restart}, --healthcheck ok")
    # The probe fails when nothing listens (a wrong port), so a dead service shows unhealthy.
    user, coll = container_id("user"), container_id("collector")
    p = run(["docker", "exec", "-e", "LISTEN_ADDR=0.0.0.0:9", user, "user-service", "--healthcheck"], check=False, timeout=30)
    expect(p.returncode != 0, "user-service --healthcheck succeeded against a closed port")
    p = run(["docker", "exec", "-e", "COLLECTOR_QUERY_ADDR=0.0.0.0:9", coll, "collector", "--healthcheck"], check=False, timeout=30)
    expect(p.returncode != 0, "collector --healthcheck succeeded against a closed port")


@check("trees: orders through localhost:8080 give complete 5-service trees at localhost:16686")
def check_trees():
    ids = []
    for _ in range(5):
        a = place_order()
        expect(a.status == 201, f"order failed: {a!r}")
        body = a.json()
        tid = body["trace_id"]
        expect(re.fullmatch(r"[0-9a-f]{32}", tid) is not None, f"trace_id {tid!r}")
        expect(body.get("trace_url") == f"http://localhost:16686/trace/{tid}", f"trace_url {body.get('trace_url')}")
        tr = a.headers.get("traceresponse", "")
        expect(tr.startswith(f"00-{tid}-"), f"traceresponse {tr!r}")
        ids.append(tid)
    missing = wait_complete(ids, timeout=30)
    expect(not missing, f"incomplete trees: {missing}")
    record_complete(ids)
    tree = get_tree(ids[0])
    text = request("GET", f"{QUERY}/v1/traces/{ids[0]}/tree?format=text").body.decode()
    print(text, flush=True)
    expect("5 services" in text and f"{ORDER_SPANS} spans" in text, "text tree header")
    # Resource attributes from OTEL_RESOURCE_ATTRIBUTES reached the collector.
    raw = request("GET", f"{QUERY}/v1/traces/{ids[0]}").json()
    ns = {s["resource_attributes"].get("service.namespace") for s in raw["spans"]}
    expect(ns == {"spanline"}, f"service.namespace {ns}")
    # The UI page named by trace_url (once the collector build has the web UI), and the
    # service list.
    if request("GET", f"{QUERY}/").status == 404:
        log("note: this collector build serves no web UI at / yet; UI page not checked")
    else:
        ui = request("GET", f"{QUERY}/trace/{ids[0]}")
        ctype = ui.headers.get("content-type", "")
        expect(ui.status == 200 and "text/html" in ctype, f"UI page: {ui!r} {ctype}")
    svcs = request("GET", f"{QUERY}/v1/services").json()
    expect(set(ALL_SERVICES) <= set(svcs or []), f"services {svcs}")
    expect(tree["span_count"] == ORDER_SPANS, "span count")


def order_loop(stop: threading.Event, out: list, pause: float = 0.0):
    while not stop.is_set():
        out.append((time.monotonic(), place_order(timeout=10)))
        if pause:
            stop.wait(pause)


def memory_mib() -> dict:
    ids = {s: container_id(s) for s in SERVICES}
    out = run(["docker", "stats", "--no-stream", "--format", "{{.ID}} {{.MemUsage}}"] + list(ids.values())).stdout
    units = {"B": 1 / 2**20, "KiB": 1 / 1024, "kB": 1 / 1024, "MiB": 1, "MB": 1, "GiB": 1024, "GB": 1024}
    mem = {}
    for line in out.splitlines():
        cid, usage = line.split(" ", 1)
        m = re.match(r"([\d.]+)\s*([A-Za-z]+)", usage)
        name = next(s for s, i in ids.items() if i.startswith(cid))
        mem[name] = float(m.group(1)) * units[m.group(2)]
    return mem


@check("memory: the whole stack under a light load (4 orders/s)")
def check_memory():
    stop = threading.Event()
    results: list = []
    threads = [threading.Thread(target=order_loop, args=(stop, results, 0.5)) for _ in range(2)]
    for t in threads:
        t.start()
    samples = []
    try:
        end = time.monotonic() + 15
        while time.monotonic() < end:
            samples.append(memory_mib())
    finally:
        stop.set()
        for t in threads:
            t.join()
    failed = [a for _, a in results if a.status != 201]
    expect(not failed, f"{len(failed)} of {len(results)} orders failed: {failed[:3]}")
    peak = max(samples, key=lambda m: sum(m.values()))
    total = sum(peak.values())
    MEASURED["memory_mib"] = total
    MEASURED["memory_each"] = peak
    per = ", ".join(f"{s} {v:.1f}" for s, v in peak.items())
    log(f"memory under load ({len(results)} orders in 15 s): total {total:.1f} MiB ({per})")
    # DESIGN §6 targets the whole stack within 100 MiB. Memory is a measurement, reported
    # against its target, not a pass/fail condition of this test.
    if total > 100:
        log(f"NOTE: {total:.1f} MiB is over the 100 MiB target (DESIGN §6)")
    ids = [trace_id_of(a) for _, a in results]
    missing = wait_complete(ids, timeout=30)
    expect(not missing, f"incomplete trees: {list(missing.items())[:3]}")
    record_complete(ids)


def latencies(results) -> list:
    return sorted(a.seconds for _, a in results)


def pct(xs, p):
    return xs[min(len(xs) - 1, int(len(xs) * p))]


@check("collector stopped for 30 s: orders still succeed at normal latency; every span arrives after")
def check_outage():
    base: list = []
    for _ in range(20):
        base.append((time.monotonic(), place_order()))
    expect(all(a.status == 201 for _, a in base), f"baseline orders failed: {base}")
    compose("stop", "collector", timeout=60)
    expect(health("collector").startswith("exited"), f"collector is {health('collector')}")
    during: list = []
    stop = threading.Event()
    t = threading.Thread(target=order_loop, args=(stop, during, 0.2))
    t.start()
    # The one fixed wait of the test: the outage the issue asks for.
    time.sleep(OUTAGE_S)
    stop.set()
    t.join()
    compose("start", "collector", timeout=60)
    wait_healthy(["collector"], timeout=60)
    failed = [a for _, a in during if a.status != 201]
    expect(not failed, f"{len(failed)} of {len(during)} orders failed during the outage: {failed[:3]}")
    b, d = latencies(base), latencies(during)
    log(
        f"{len(during)} orders during the outage: latency median {statistics.median(d) * 1000:.0f} ms, "
        f"p95 {pct(d, 0.95) * 1000:.0f} ms, max {d[-1] * 1000:.0f} ms "
        f"(before: median {statistics.median(b) * 1000:.0f} ms, p95 {pct(b, 0.95) * 1000:.0f} ms)"
    )
    MEASURED["outage_latency_ms"] = (statistics.median(d) * 1000, pct(d, 0.95) * 1000)
    MEASURED["base_latency_ms"] = (statistics.median(b) * 1000, pct(b, 0.95) * 1000)
    expect(
        statistics.median(d) <= statistics.median(b) * 1.5 + 0.05,
        "median latency grew during the outage",
    )
    expect(pct(d, 0.95) <= pct(b, 0.95) * 2 + 0.1, "p95 latency grew during the outage")
    ids = [trace_id_of(a) for _, a in during]
    start = time.monotonic()
    missing = wait_complete(ids, timeout=90)
    expect(not missing, f"{len(missing)} of {len(ids)} traces incomplete after the outage: {list(missing.items())[:3]}")
    log(f"all {len(ids)} traces of the outage complete {time.monotonic() - start:.1f} s after the collector was healthy again")
    record_complete(ids + [trace_id_of(a) for _, a in base])


@check("`docker-compose restart collector` keeps the stored traces (named volume)")
def check_restart():
    ids = list(SEEN_TRACES)
    expect(len(ids) >= 20, f"only {len(ids)} traces seen so far")
    cid = container_id("collector")
    compose("restart", "collector", timeout=60)
    wait_healthy(["collector"], timeout=60)
    expect(container_id("collector") == cid, "restart replaced the container")
    missing = wait_complete(ids, timeout=30)
    expect(not missing, f"{len(missing)} of {len(ids)} traces lost or changed by the restart: {list(missing.items())[:3]}")
    log(f"all {len(ids)} traces still complete after the restart")


def probe_sender(stop: threading.Event, acked: list, failed: list):
    """Sends batches of 5 simple-JSON spans straight to the collector; keeps the acked ones."""
    while not stop.is_set():
        trace_id = secrets.token_hex(16)
        now = time.time()
        spans = []
        for i in range(5):
            spans.append(
                {
                    "trace_id": trace_id,
                    "span_id": secrets.token_hex(8),
                    "parent_span_id": spans[0]["span_id"] if spans else None,
                    "operation_name": f"probe {i}",
                    "start_time": now,
                    "duration": 0.001,
                    "kind": "internal",
                    "status": "ok",
                    "attributes": {"probe.index": i},
                    "resource_attributes": {"service.name": "compose-e2e-probe"},
                }
            )
        a = request("POST", f"{INGEST}/v1/traces", spans, timeout=5)
        if a.status == 200:
            acked.append((trace_id, {s["span_id"] for s in spans}))
        else:
            failed.append(a)
            stop.wait(0.05)


@check("`docker-compose kill -s KILL collector` during a burst loses no acknowledged span")
def check_kill():
    stop = threading.Event()
    orders: list = []
    acked: list = []
    refused: list = []
    threads = [threading.Thread(target=order_loop, args=(stop, orders)) for _ in range(3)]
    threads += [threading.Thread(target=probe_sender, args=(stop, acked, refused))]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 30
        while (len(acked) < 50 or len(orders) < 10) and time.monotonic() < deadline:
            time.sleep(0.05)
        acked_before = len(acked)
        compose("kill", "-s", "KILL", "collector", timeout=60)
        t_kill = time.monotonic()
        code = inspect(container_id("collector"), "{{.State.ExitCode}}")
        while time.monotonic() < t_kill + 2:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    log(
        f"killed the collector (exit code {code}) after {acked_before} acknowledged probe batches; "
        f"{len(acked)} acknowledged, {len(refused)} refused in all; {len(orders)} orders in the burst"
    )
    expect(acked_before >= 50, "the burst did not reach the collector before the kill")
    expect(refused, "no probe batch failed: the collector was not down during the burst")
    failed = [a for _, a in orders if a.status != 201]
    expect(not failed, f"{len(failed)} of {len(orders)} orders failed during the burst: {failed[:3]}")
    compose("start", "collector", timeout=60)
    wait_healthy(["collector"], timeout=60)
    lost = []
    for trace_id, span_ids in acked:
        raw = request("GET", f"{QUERY}/v1/traces/{trace_id}").json() or {}
        have = {s["span_id"] for s in raw.get("spans", [])}
        if not span_ids <= have:
            lost.append((trace_id, len(span_ids - have)))
    expect(not lost, f"{len(lost)} acknowledged batches lost spans after SIGKILL: {lost[:5]}")
    log(f"all {len(acked) * 5} acknowledged probe spans survived the SIGKILL")
    ids = [trace_id_of(a) for _, a in orders]
    missing = wait_complete(ids, timeout=90)
    expect(not missing, f"{len(missing)} of {len(ids)} order traces incomplete after the kill: {list(missing.items())[:3]}")
    log(f"all {len(ids)} order traces of the burst complete (exporter retry)")
    record_complete(ids)


@check("a collector that dies on its own is restarted by `restart: unless-stopped`")
def check_crash_restart():
    cid = container_id("collector")
    before = int(inspect(cid, "{{.RestartCount}}"))
    pid = int(inspect(cid, "{{.State.Pid}}"))
    # Not `docker kill`: Docker takes that for a manual stop and does not restart.
    os.kill(pid, 9)
    deadline = time.monotonic() + 30
    while int(inspect(cid, "{{.RestartCount}}")) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    expect(int(inspect(cid, "{{.RestartCount}}")) == before + 1, "the collector was not restarted")
    wait_healthy(["collector"], timeout=60)
    a = place_order()
    expect(a.status == 201, f"order after the crash: {a!r}")
    missing = wait_complete([trace_id_of(a)] + list(SEEN_TRACES)[:20], timeout=30)
    expect(not missing, f"traces incomplete after the crash: {missing}")
    log("the collector was restarted by Docker and kept its traces")


@check("payment container stopped: orders fail cleanly (5xx + trace id + error span), then recover")
def check_payment_down():
    compose("stop", "payment", timeout=60)
    answers = [place_order(timeout=15) for _ in range(3)]
    for a in answers:
        body = a.json() or {}
        expect(a.status in (502, 503), f"order with payment down: {a!r}")
        expect(isinstance(body.get("error"), str) and body["error"], f"no error message: {a!r}")
        tid = body.get("trace_id", "")
        expect(re.fullmatch(r"[0-9a-f]{32}", tid or "") is not None, f"no trace id: {a!r}")
        expect(a.headers.get("traceresponse", "").startswith(f"00-{tid}-"), "traceresponse header")
        expect(a.seconds < 10, f"the failure took {a.seconds:.1f} s")
    log(f"answer with payment down: {answers[0].status} {answers[0].body.decode()[:200]} ({answers[0].seconds * 1000:.0f} ms)")
    tid = trace_id_of(answers[0])
    deadline = time.monotonic() + 30
    span = None
    tree = None
    while time.monotonic() < deadline:
        tree = get_tree(tid, wait=2)
        nodes = walk(tree)
        found = [n for n in nodes if n["service"] == "order" and n["name"] == "POST /payments" and n["kind"] == "client"]
        if tree and tree.get("complete") and found:
            span = found[0]
            break
        time.sleep(0.2)
    expect(span is not None, f"no complete tree with the order's payment call: {json.dumps(tree)[:1500]}")
    expect(span["status"] == "error", f"payment call span status {span['status']}")
    etype = span["attributes"].get("error.type")
    expect(etype in ("connect", "timeout"), f"error.type {etype!r}")
    exc = [e for e in span.get("events", []) if e.get("name") == "exception"]
    expect(exc, f"no exception event on the payment call span: {span}")
    msg = exc[0].get("attributes", {}).get("exception.message", "")
    log(f"error span: order POST /payments error.type={etype} status_message={span.get('status_message')!r}; exception: {msg[:160]!r}")
    expect(not any(n["service"] == "payment" for n in walk(tree)), "payment spans while it was down")
    root = tree["roots"][0]
    expect(root["status"] == "error", "the frontend's server span is not an error")
    compose("start", "payment", timeout=60)
    wait_healthy(["payment"], timeout=60)
    deadline = time.monotonic() + 30
    a = place_order()
    while a.status != 201 and time.monotonic() < deadline:
        time.sleep(0.2)
        a = place_order()
    expect(a.status == 201, f"orders did not recover after payment returned: {a!r}")
    missing = wait_complete([trace_id_of(a)], timeout=30)
    expect(not missing, f"trace after recovery incomplete: {missing}")
    log("orders succeed again with payment back")


def consumed(tree, subject: str, service: str) -> bool:
    """Whether `tree` has `service`'s process span of `subject` under its publish span."""
    def go(n, parent):
        if (n.get("service"), n.get("name"), n.get("kind")) == (service, f"process {subject}", "consumer") \
                and parent is not None and parent.get("name") == f"publish {subject}":
            return True
        return any(go(c, n) for c in n.get("children", []))
    return any(go(r, None) for r in (tree or {}).get("roots", []))


@check("async order: 202 at once, GET /orders/{id} ends confirmed, one complete trace over both queue hops")
def check_async_order():
    a = place_order("?mode=async")
    expect(a.status == 202, f"async order: {a!r}")
    body = a.json()
    order_id, tid = body["order_id"], body["trace_id"]
    expect(body.get("status") == "pending", f"async answer {body}")
    deadline = time.monotonic() + 30
    status = None
    while time.monotonic() < deadline:
        status = request("GET", f"{FRONTEND}/orders/{order_id}").json().get("status")
        if status == "confirmed":
            break
        time.sleep(0.1)
    expect(status == "confirmed", f"order {order_id} is {status!r}")
    tree = None
    while time.monotonic() < deadline + 30:
        tree = get_tree(tid, wait=5)
        if tree and tree.get("complete") and all(
            consumed(tree, s, svc) for s, svc in [
                ("payments.requested", "payment"),
                ("payments.completed", "order"),
                ("payments.completed", "notification"),
            ]
        ):
            break
        time.sleep(0.2)
    else:
        expect(False, f"async trace {tid} not whole: {json.dumps(tree)[:1500]}")
    print(request("GET", f"{QUERY}/v1/traces/{tid}/tree?format=text").body.decode(), flush=True)
    deps = request("GET", f"{QUERY}/v1/dependencies").json()
    hops = {(e["parent"], e.get("via"), e["child"]) for e in deps["dependencies"]}
    expect(("payment", "payments.completed", "notification") in hops, f"no queue hop in {hops}")
    log(f"async order {order_id}: confirmed; trace {tid} whole across both hops")


@check("notification stopped for 20 s: orders succeed; the queued messages join their traces after")
def check_notification_outage():
    compose("stop", "notification", timeout=60)
    t0 = time.monotonic()
    ids = []
    while time.monotonic() - t0 < 20:
        a = place_order()
        expect(a.status == 201, f"order with notification down: {a!r}")
        ids.append(trace_id_of(a))
        time.sleep(2)
    compose("start", "notification", timeout=60)
    wait_healthy(["notification"], timeout=60)
    deadline = time.monotonic() + 60
    pending = set(ids)
    while pending and time.monotonic() < deadline:
        pending = {t for t in pending if not consumed(get_tree(t), "payments.completed", "notification")}
        time.sleep(0.5)
    expect(not pending, f"{len(pending)} of {len(ids)} traces never got their notification")
    log(f"{len(ids)} orders while notification was down; all processed from JetStream after its return")


@check("`docker-compose down -v` leaves nothing running")
def check_down():
    compose("down", "-v", timeout=120)
    label = f"label=com.docker.compose.project={PROJECT}"
    left = {
        "containers": run(["docker", "ps", "-aq", "--filter", label]).stdout.split(),
        "volumes": run(["docker", "volume", "ls", "-q", "--filter", label]).stdout.split(),
        "networks": run(["docker", "network", "ls", "-q", "--filter", label]).stdout.split(),
    }
    expect(not any(left.values()), f"left behind: {left}")
    open_ports = [p for p in (8080, 16686, 4318, 4317) if port_open(p)]
    expect(not open_ports, f"ports still open: {open_ports}")


def main() -> int:
    # Leftovers of an earlier, interrupted run of this project.
    compose("down", "-v", "--remove-orphans", timeout=120, check=False)
    busy = [p for p in (8080, 16686, 4318, 4317) if port_open(p)]
    if busy:
        print(f"compose-e2e: ports {busy} are in use; the stack publishes 8080, 16686, 4318 and 4317", file=sys.stderr)
        print("compose-e2e: 0 passed, 1 failed")
        return 1
    try:
        check_image()
        check_up()
        check_containers()
        check_trees()
        check_memory()
        check_outage()
        check_restart()
        check_kill()
        check_crash_restart()
        check_payment_down()
        check_async_order()
        check_notification_outage()
        check_down()
    finally:
        compose("down", "-v", "--remove-orphans", timeout=120, check=False)
    m = MEASURED
    print("\n==> measured", flush=True)
    if "image_mb" in m:
        print(f"  image spanline:latest: {m['image_mb']:.1f} MB")
    if "first_trace_s" in m:
        print(
            f"  `docker-compose up -d` returned after {m['up_s']:.1f} s; first order answered after "
            f"{m['first_order_s']:.1f} s; first complete trace after {m['first_trace_s']:.1f} s (target <= 10 s)"
        )
    if "memory_mib" in m:
        per = ", ".join(f"{s} {v:.1f}" for s, v in m["memory_each"].items())
        print(f"  memory under light load: {m['memory_mib']:.1f} MiB in all ({per}) (target <= 100 MiB)")
    if "base_latency_ms" in m:
        (bm, bp), (dm, dp) = m["base_latency_ms"], m["outage_latency_ms"]
        print(f"  order latency median/p95: {bm:.0f}/{bp:.0f} ms; with the collector down: {dm:.0f}/{dp:.0f} ms")
    sys.stdout.flush()
    passed = sum(1 for _, ok in RESULTS if ok)
    failed = [n for n, ok in RESULTS if not ok]
    for n in failed:
        print(f"  FAILED: {n}")
    print(f"compose-e2e: {passed} passed, {len(failed)} failed", flush=True)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
