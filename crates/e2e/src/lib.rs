//! End-to-end harness: starts the five real Spanline binaries (collector, frontend, user,
//! order, payment) as child processes on free loopback ports with a temporary data
//! directory, waits until each answers its health check, and stops them gracefully.
//!
//! Binaries are taken from `SPANLINE_BIN_DIR` if set, else from the Cargo target directory
//! this test binary runs from (`target/<profile>/`); missing ones are built with
//! `cargo build --bins` first.

pub mod browser;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binaries of the stack.
pub const BINARIES: [&str; 5] = [
    "collector",
    "frontend",
    "user-service",
    "order-service",
    "payment-service",
];

/// How long a process may take to become healthy.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The directory holding the binaries, building them once if any is missing.
///
/// # Panics
/// If the binaries cannot be found or built (the test cannot run without them).
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = match std::env::var_os("SPANLINE_BIN_DIR") {
            Some(d) => PathBuf::from(d),
            None => {
                // target/<profile>/deps/<test binary> -> target/<profile>
                let exe = std::env::current_exe().expect("current_exe");
                exe.parent()
                    .and_then(Path::parent)
                    .expect("test binary lives in target/<profile>/deps")
                    .to_path_buf()
            }
        };
        let missing = BINARIES.iter().any(|b| !dir.join(b).exists());
        if missing {
            let release = dir.ends_with("release");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--bins"]);
            for b in [
                "collector",
                "frontend",
                "user-service",
                "order-service",
                "payment-service",
            ] {
                cmd.args(["-p", b]);
            }
            if release {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build");
            assert!(status.success(), "cargo build --bins failed");
        }
        dir
    })
}

/// A free TCP port on 127.0.0.1 (bound and released; the OS does not hand it out again
/// immediately).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// One running child process.
pub struct Proc {
    /// Binary name.
    pub name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `name` with `env`, logging stdout and stderr to `<log_dir>/<name>.log`.
    pub fn spawn(name: &'static str, env: &[(&str, String)], log_dir: &Path) -> Proc {
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open log");
        let err = out.try_clone().expect("clone log handle");
        let mut cmd = Command::new(bin_dir().join(name));
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        // Start from a clean OTEL environment so a developer's shell cannot change the test.
        for (k, _) in std::env::vars() {
            if k.starts_with("OTEL_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc { name, child, log }
    }

    /// Sends SIGTERM and waits up to `timeout` for a clean exit; returns the exit status
    /// code, or kills the process and returns `None` if it did not stop in time.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// The process's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until `GET url` answers 200, or panics with the process log after `timeout`.
pub async fn wait_healthy(client: &reqwest::Client, url: &str, proc: &Proc, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} not healthy at {url} after {timeout:?}; log:\n{}",
            proc.name,
            proc.log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The whole stack on loopback.
pub struct Stack {
    /// A plain HTTP client for the test's own requests.
    pub client: reqwest::Client,
    /// The frontend's base URL.
    pub frontend_url: String,
    /// The collector's query base URL.
    pub query_url: String,
    /// The collector's ingest base URL.
    pub ingest_url: String,
    ingest_addr: SocketAddr,
    query_addr: SocketAddr,
    /// The collector's data directory (kept across collector restarts).
    pub data_dir: tempfile::TempDir,
    /// The processes: collector first.
    pub procs: Vec<Proc>,
    /// Extra variables of the collector (they win over the stack's).
    pub collector_env: Vec<(&'static str, String)>,
}

impl Stack {
    /// Starts the collector and the four services with a 100 ms batch delay, and waits
    /// until all are healthy.
    pub async fn start() -> Stack {
        Self::start_with(|_| Vec::new()).await
    }

    /// As [`start`](Self::start), with extra variables per service (`"user"`, `"order"`,
    /// `"payment"`, `"frontend"`), which win over the defaults (e.g. a later
    /// `OTEL_BSP_SCHEDULE_DELAY`, or an exporter endpoint nobody listens on).
    pub async fn start_with(extra_env: impl Fn(&str) -> Vec<(&'static str, String)>) -> Stack {
        Self::start_configured(Vec::new(), extra_env).await
    }

    /// As [`start_with`](Self::start_with), with extra variables for the collector too
    /// (e.g. `COLLECTOR_TAIL_SAMPLING`).
    pub async fn start_configured(
        collector_env: Vec<(&'static str, String)>,
        extra_env: impl Fn(&str) -> Vec<(&'static str, String)>,
    ) -> Stack {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(40))
            .build()
            .expect("client");
        let data_dir = tempfile::tempdir().expect("tempdir");
        let port = |_: u8| free_port();
        let ingest_addr: SocketAddr = ([127, 0, 0, 1], port(0)).into();
        let query_addr: SocketAddr = ([127, 0, 0, 1], port(1)).into();
        let [fe, us, os, ps] = [port(2), port(3), port(4), port(5)];
        let url = |p: u16| format!("http://127.0.0.1:{p}");
        let mut stack = Stack {
            client,
            frontend_url: url(fe),
            query_url: format!("http://{query_addr}"),
            ingest_url: format!("http://{ingest_addr}"),
            ingest_addr,
            query_addr,
            data_dir,
            procs: Vec::new(),
            collector_env,
        };
        stack.start_collector().await;
        let otel = |svc: &str| -> Vec<(&'static str, String)> {
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", stack.ingest_url.clone()),
                ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
                ("OTEL_SERVICE_NAME", svc.to_owned()),
            ]
        };
        type Env = Vec<(&'static str, String)>;
        let services: [(&'static str, &str, u16, Env); 4] = [
            ("user-service", "user", us, vec![]),
            ("payment-service", "payment", ps, vec![]),
            (
                "order-service",
                "order",
                os,
                vec![("PAYMENT_SERVICE_URL", url(ps))],
            ),
            (
                "frontend",
                "frontend",
                fe,
                vec![
                    ("USER_SERVICE_URL", url(us)),
                    ("ORDER_SERVICE_URL", url(os)),
                    ("COLLECTOR_UI_URL", stack.query_url.clone()),
                ],
            ),
        ];
        for (bin, svc, p, extra) in services {
            let mut env = otel(svc);
            env.push(("LISTEN_ADDR", format!("127.0.0.1:{p}")));
            env.extend(extra);
            env.extend(extra_env(svc));
            let proc = Proc::spawn(bin, &env, stack.data_dir.path());
            wait_healthy(
                &stack.client,
                &format!("{}/healthz", url(p)),
                &proc,
                START_TIMEOUT,
            )
            .await;
            stack.procs.push(proc);
        }
        stack
    }

    /// Starts (or restarts) the collector on the stack's fixed ports and data directory.
    pub async fn start_collector(&mut self) {
        let data = self.data_dir.path().join("collector");
        let mut env = vec![
            ("COLLECTOR_INGEST_ADDR", self.ingest_addr.to_string()),
            ("COLLECTOR_QUERY_ADDR", self.query_addr.to_string()),
            ("COLLECTOR_GRPC_ADDR", "127.0.0.1:0".to_owned()),
            ("COLLECTOR_SAMPLING_ADDR", "127.0.0.1:0".to_owned()),
            ("COLLECTOR_DATA_DIR", data.display().to_string()),
        ];
        env.extend(self.collector_env.iter().cloned());
        let proc = Proc::spawn("collector", &env, self.data_dir.path());
        wait_healthy(
            &self.client,
            &format!("{}/health", self.query_url),
            &proc,
            START_TIMEOUT,
        )
        .await;
        if self.procs.first().is_some_and(|p| p.name == "collector") {
            self.procs[0] = proc;
        } else {
            self.procs.insert(0, proc);
        }
    }

    /// Stops the collector gracefully; returns its exit code.
    pub fn stop_collector(&mut self) -> Option<i32> {
        let c = self
            .procs
            .iter_mut()
            .find(|p| p.name == "collector")
            .expect("collector running");
        c.terminate(Duration::from_secs(10))
    }

    /// `POST /orders<query>` on the frontend with `{"user_id", "product": "Laptop",
    /// "quantity"}`: the status and the JSON answer.
    pub async fn place_order(&self, query: &str, user_id: &str, quantity: u32) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}/orders{query}", self.frontend_url))
            .json(&serde_json::json!({
                "user_id": user_id, "product": "Laptop", "quantity": quantity
            }))
            .send()
            .await
            .expect("POST /orders");
        let status = r.status().as_u16();
        (status, r.json().await.expect("a JSON answer"))
    }

    /// `GET <query port><path>` answered as JSON (any status).
    pub async fn query_json(&self, path: &str) -> Value {
        self.client
            .get(format!("{}{path}", self.query_url))
            .send()
            .await
            .expect("query port")
            .json()
            .await
            .expect("a JSON answer")
    }

    /// `GET <query port><path>` answered as text (any status).
    pub async fn query_text(&self, path: &str) -> String {
        self.client
            .get(format!("{}{path}", self.query_url))
            .send()
            .await
            .expect("query port")
            .text()
            .await
            .expect("a text answer")
    }

    /// Polls the tree of `trace_id` until `done(tree)` holds, or panics after `timeout`
    /// with the last tree seen.
    pub async fn wait_for_tree(
        &self,
        trace_id: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        let url = format!("{}/v1/traces/{trace_id}/tree", self.query_url);
        let mut last = Value::Null;
        loop {
            if let Ok(r) = self.client.get(&url).send().await
                && r.status().is_success()
                && let Ok(tree) = r.json::<Value>().await
            {
                if done(&tree) {
                    return tree;
                }
                last = tree;
            }
            assert!(
                Instant::now() < deadline,
                "trace {trace_id} not as expected after {timeout:?}; last tree: {last:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// All logs, for failure messages.
    pub fn logs(&self) -> String {
        self.procs
            .iter()
            .map(|p| format!("--- {} ---\n{}", p.name, p.log()))
            .collect()
    }

    /// Stops the services (not the collector) with SIGTERM, so each flushes its spans;
    /// returns `(name, exit code)` of each.
    pub fn stop_services(&mut self) -> Vec<(&'static str, Option<i32>)> {
        let mut codes = Vec::new();
        for p in self.procs.iter_mut().skip(1).rev() {
            codes.push((p.name, p.terminate(Duration::from_secs(10))));
        }
        codes
    }

    /// Stops every process (services first, then the collector) with SIGTERM; returns
    /// `(name, exit code)` of each.
    pub fn shutdown(&mut self) -> Vec<(&'static str, Option<i32>)> {
        let mut codes = Vec::new();
        for p in self.procs.iter_mut().rev() {
            codes.push((p.name, p.terminate(Duration::from_secs(10))));
        }
        codes
    }
}

/// Every node of a tree, depth first, with its parent node.
pub fn walk(tree: &Value) -> Vec<(&Value, Option<&Value>)> {
    fn go<'a>(
        n: &'a Value,
        parent: Option<&'a Value>,
        out: &mut Vec<(&'a Value, Option<&'a Value>)>,
    ) {
        out.push((n, parent));
        if let Some(children) = n["children"].as_array() {
            for c in children {
                go(c, Some(n), out);
            }
        }
    }
    let mut out = Vec::new();
    if let Some(roots) = tree["roots"].as_array() {
        for r in roots {
            go(r, None, &mut out);
        }
    }
    out
}
