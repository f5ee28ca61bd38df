//! The `jaeger_remote` sampler (OpenTelemetry SDK environment variable specification,
//! `OTEL_TRACES_SAMPLER=jaeger_remote`): follows the strategy a Jaeger remote sampling
//! endpoint serves for this service ([`super::strategy`]).
//!
//! `OTEL_TRACES_SAMPLER_ARG=endpoint=…,pollingIntervalMs=…,initialSamplingRate=…`:
//! `endpoint` is the full URL of the strategies endpoint (default
//! `http://localhost:5778/api/sampling`) to which the sampler adds `?service=<name>`;
//! `pollingIntervalMs` defaults to 60000 and `initialSamplingRate` to 0.001. The initial rate
//! applies until the first answer and again whenever a poll fails (the endpoint is away or
//! answers something that is not a strategy).
//!
//! Polling runs on its own thread (`tracekit-sampling`, with a current-thread runtime),
//! started by the first decision and ended when the sampler is dropped. Span creation only
//! reads the current strategy behind a read lock that the poller holds for a pointer swap.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use super::Decision;
use super::strategy::{Strategy, StrategyResponse};
use crate::id::TraceId;

/// Default strategies endpoint: Jaeger's sampling port.
pub(crate) const DEFAULT_SAMPLING_ENDPOINT: &str = "http://localhost:5778/api/sampling";
/// Default polling interval, ms (the specification's default).
pub(crate) const DEFAULT_POLLING_INTERVAL_MS: u64 = 60_000;
/// Default probability before the first answer (the specification's default).
pub(crate) const DEFAULT_INITIAL_SAMPLING_RATE: f64 = 0.001;
/// How long one poll may take.
const POLL_TIMEOUT: Duration = Duration::from_secs(5);

/// What a `jaeger_remote` sampler polls and how.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteConfig {
    /// The service whose strategy is asked for (`service.name`).
    pub service_name: String,
    /// The strategies endpoint, without the `service` parameter.
    pub endpoint: String,
    /// Time between polls.
    pub polling_interval: Duration,
    /// Probability used before the first answer and while polls fail, 0.0..=1.0.
    pub initial_sampling_rate: f64,
}

impl RemoteConfig {
    /// Parses `OTEL_TRACES_SAMPLER_ARG` (`key=value` pairs separated by commas; unknown keys
    /// and bad values are reported in the second element and replaced by defaults).
    pub fn from_arg(service_name: &str, arg: Option<&str>) -> (RemoteConfig, Vec<String>) {
        let mut config = RemoteConfig {
            service_name: service_name.to_owned(),
            endpoint: DEFAULT_SAMPLING_ENDPOINT.to_owned(),
            polling_interval: Duration::from_millis(DEFAULT_POLLING_INTERVAL_MS),
            initial_sampling_rate: DEFAULT_INITIAL_SAMPLING_RATE,
        };
        let mut warnings = Vec::new();
        for pair in arg.unwrap_or("").split(',').map(str::trim) {
            if pair.is_empty() {
                continue;
            }
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = value.trim();
            match key.trim() {
                "endpoint" if value.starts_with("http://") || value.starts_with("https://") => {
                    config.endpoint = value.to_owned();
                }
                "pollingIntervalMs" if value.parse::<u64>().is_ok_and(|ms| ms > 0) => {
                    config.polling_interval = Duration::from_millis(value.parse().unwrap_or(1));
                }
                "initialSamplingRate"
                    if value.parse::<f64>().is_ok_and(|r| (0.0..=1.0).contains(&r)) =>
                {
                    config.initial_sampling_rate = value.parse().unwrap_or(0.0);
                }
                _ => warnings.push(format!(
                    "OTEL_TRACES_SAMPLER_ARG member {pair:?} is not a valid jaeger_remote \
                     setting (endpoint=<http URL>, pollingIntervalMs=<ms>, \
                     initialSamplingRate=<0..1>); ignored"
                )),
            }
        }
        (config, warnings)
    }

    /// The URL polled: the endpoint with `service=<name>` added, percent-encoded.
    pub fn url(&self) -> String {
        let sep = if self.endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        let mut url = format!("{}{sep}service=", self.endpoint);
        for b in self.service_name.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                url.push(char::from(b));
            } else {
                url.push_str(&format!("%{b:02X}"));
            }
        }
        url
    }
}

/// A sampler following a remote strategy. Clones share the strategy and the poller;
/// equal when configured alike.
#[derive(Clone, Debug)]
pub struct JaegerRemote {
    inner: Arc<Remote>,
}

#[derive(Debug)]
struct Remote {
    config: RemoteConfig,
    strategy: RwLock<Arc<Strategy>>,
    poller_started: AtomicBool,
}

impl PartialEq for JaegerRemote {
    fn eq(&self, other: &Self) -> bool {
        self.inner.config == other.inner.config
    }
}

impl JaegerRemote {
    /// A sampler polling as `config` says, from its first decision on.
    pub fn new(config: RemoteConfig) -> JaegerRemote {
        let initial = Strategy::probabilistic(config.initial_sampling_rate);
        JaegerRemote {
            inner: Arc::new(Remote {
                config,
                strategy: RwLock::new(Arc::new(initial)),
                poller_started: AtomicBool::new(false),
            }),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &RemoteConfig {
        &self.inner.config
    }

    /// The decision for a root span named `operation`.
    pub(crate) fn decide(&self, trace_id: TraceId, operation: &str) -> Decision {
        if !self.inner.poller_started.load(Relaxed) {
            self.start_poller();
        }
        let strategy = Arc::clone(
            &self
                .inner
                .strategy
                .read()
                .unwrap_or_else(|e| e.into_inner()),
        );
        strategy.decide(trace_id, operation)
    }

    #[cold]
    fn start_poller(&self) {
        if self.inner.poller_started.swap(true, Relaxed) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("tracekit-sampling".to_owned())
            .spawn(move || poll_until_dropped(weak));
        if let Err(e) = spawned {
            eprintln!(
                "tracekit: cannot start the sampling strategy poller ({e}); \
                 using the initial sampling rate"
            );
        }
    }

    /// Asks the endpoint once and applies the answer, or the initial rate when there is
    /// none. Returns whether a strategy was received.
    pub async fn poll_once(&self, client: &reqwest::Client) -> bool {
        self.inner.poll_once(client).await
    }
}

impl Remote {
    async fn poll_once(&self, client: &reqwest::Client) -> bool {
        let answer = async {
            let response = client.get(self.config.url()).send().await.ok()?;
            if !response.status().is_success() {
                return None;
            }
            let body = response.bytes().await.ok()?;
            StrategyResponse::parse(&body).ok()
        }
        .await;
        let mut current = self.strategy.write().unwrap_or_else(|e| e.into_inner());
        let received = answer.is_some();
        let next = match answer {
            Some(r) => Strategy::from_response(&r, &current),
            None => Strategy::probabilistic(self.config.initial_sampling_rate),
        };
        *current = Arc::new(next);
        received
    }
}

/// The poller thread: polls every interval while the sampler lives.
fn poll_until_dropped(remote: Weak<Remote>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let (Ok(runtime), Ok(client)) = (
        runtime,
        reqwest::Client::builder().timeout(POLL_TIMEOUT).build(),
    ) else {
        eprintln!("tracekit: cannot start the sampling strategy poller; using the initial rate");
        return;
    };
    loop {
        let Some(r) = remote.upgrade() else { return };
        let interval = r.config.polling_interval;
        runtime.block_on(r.poll_once(&client));
        drop(r);
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arg_parsing_follows_the_specification() {
        let (c, w) = RemoteConfig::from_arg("order", None);
        assert!(w.is_empty());
        assert_eq!(c.endpoint, DEFAULT_SAMPLING_ENDPOINT);
        assert_eq!(c.polling_interval, Duration::from_secs(60));
        assert_eq!(c.initial_sampling_rate, 0.001);
        assert_eq!(c.url(), "http://localhost:5778/api/sampling?service=order");

        let (c, w) = RemoteConfig::from_arg(
            "my svc",
            Some(
                "endpoint=http://collector:5778/sampling, pollingIntervalMs=5000,initialSamplingRate=0.25",
            ),
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.polling_interval, Duration::from_millis(5000));
        assert_eq!(c.initial_sampling_rate, 0.25);
        assert_eq!(c.url(), "http://collector:5778/sampling?service=my%20svc");

        let (c, w) = RemoteConfig::from_arg(
            "x",
            Some("endpoint=collector:5778,pollingIntervalMs=0,initialSamplingRate=2,colour=red"),
        );
        assert_eq!(w.len(), 4, "{w:?}");
        assert_eq!(c, RemoteConfig::from_arg("x", None).0);
    }

    /// A strategies endpoint whose answer the test sets; `None` answers 503.
    async fn endpoint(answer: Arc<std::sync::Mutex<Option<&'static str>>>) -> String {
        let app = axum::Router::new().route(
            "/api/sampling",
            axum::routing::get(
                move |axum::extract::RawQuery(q): axum::extract::RawQuery| async move {
                    assert_eq!(q.as_deref(), Some("service=order"));
                    match *answer.lock().unwrap_or_else(|e| e.into_inner()) {
                        Some(body) => (http::StatusCode::OK, body),
                        None => (http::StatusCode::SERVICE_UNAVAILABLE, ""),
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/api/sampling")
    }

    fn sampled_fraction(s: &JaegerRemote, op: &str) -> f64 {
        let n = 4000;
        let hits = (0..n)
            .filter(|_| s.decide(TraceId::random(), op).sampled)
            .count();
        hits as f64 / f64::from(n)
    }

    #[tokio::test]
    async fn follows_the_served_strategy_and_falls_back_while_the_endpoint_is_away() {
        let answer = Arc::new(std::sync::Mutex::new(None));
        let url = endpoint(Arc::clone(&answer)).await;
        let (config, _) = RemoteConfig::from_arg(
            "order",
            Some(&format!("endpoint={url},initialSamplingRate=0")),
        );
        let s = JaegerRemote::new(config);
        // Tests poll by hand: mark the background poller as running.
        s.inner.poller_started.store(true, Relaxed);
        let client = reqwest::Client::new();
        // Before any answer: the initial rate (0 here).
        assert_eq!(sampled_fraction(&s, "GET /"), 0.0);
        assert!(!s.poll_once(&client).await);
        assert_eq!(sampled_fraction(&s, "GET /"), 0.0);

        *answer.lock().unwrap() = Some(
            r#"{"strategyType":"PROBABILISTIC","probabilisticSampling":{"samplingRate":1},
            "operationSampling":{"defaultSamplingProbability":1,"defaultLowerBoundTracesPerSecond":0,
            "perOperationStrategies":[{"operation":"GET /healthz","probabilisticSampling":{"samplingRate":0}}]}}"#,
        );
        assert!(s.poll_once(&client).await);
        assert_eq!(sampled_fraction(&s, "GET /healthz"), 0.0);
        assert_eq!(sampled_fraction(&s, "POST /orders"), 1.0);
        assert_eq!(
            s.decide(TraceId::random(), "POST /orders").rule,
            Some(super::super::Rule::Probabilistic(1.0))
        );

        // The collector goes away: back to the initial rate.
        *answer.lock().unwrap() = None;
        assert!(!s.poll_once(&client).await);
        assert_eq!(sampled_fraction(&s, "POST /orders"), 0.0);
    }

    #[test]
    fn the_background_poller_applies_the_first_answer() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let answer = Arc::new(std::sync::Mutex::new(Some(
            r#"{"strategyType":"PROBABILISTIC","probabilisticSampling":{"samplingRate":1}}"#,
        )));
        let url = runtime.block_on(endpoint(answer));
        let (config, _) = RemoteConfig::from_arg(
            "order",
            Some(&format!(
                "endpoint={url},initialSamplingRate=0,pollingIntervalMs=50"
            )),
        );
        let s = JaegerRemote::new(config);
        // The first decision starts the poller and never waits for it.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !s.decide(TraceId::random(), "x").sampled {
            assert!(std::time::Instant::now() < deadline, "no strategy applied");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
