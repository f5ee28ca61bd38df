//! # Sampling: strategies served to the services, and tail sampling of finished traces
//!
//! - **Remote sampling** (Jaeger's remote sampling HTTP API, interop.md §3.9):
//!   `GET /api/sampling?service=NAME` and `GET /sampling?service=NAME` on the query port, and
//!   any path on the sampling port (`COLLECTOR_SAMPLING_ADDR`, default `0.0.0.0:5778`, where
//!   Jaeger serves it). The strategies come from a Jaeger-format file
//!   ([`strategies`], `COLLECTOR_SAMPLING_STRATEGIES`, re-read when its modification time or
//!   size changes, checked every [`RELOAD_EVERY`]) or are computed from the root spans received
//!   ([`adaptive`], `COLLECTOR_SAMPLING=adaptive`).
//! - **Tail sampling** ([`tail`], `COLLECTOR_TAIL_SAMPLING`): keeps or deletes each trace when
//!   the settler finishes it.

pub mod adaptive;
pub mod strategies;
pub mod tail;

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;

use crate::AppState;
use crate::error::Error;
use adaptive::{Adaptive, AdaptiveConfig};
use strategies::{StrategiesError, StrategiesFile, StrategyResponse};

/// How often the strategies file's modification time and size are checked.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// Where strategies come from (`COLLECTOR_SAMPLING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SamplingMode {
    /// The strategies file (or Jaeger's default, probability 0.001, without one).
    #[default]
    File,
    /// Computed per operation from the roots received.
    Adaptive,
}

#[derive(Debug)]
enum Source {
    File {
        path: Option<PathBuf>,
        current: RwLock<Arc<StrategiesFile>>,
        /// Modification time and size of the file last loaded.
        stamp: RwLock<Option<(SystemTime, u64)>>,
    },
    Adaptive(Adaptive),
}

/// The strategies the collector serves.
#[derive(Debug)]
pub struct Strategies {
    source: Source,
}

impl Default for Strategies {
    /// No file: Jaeger's default strategy for every service.
    fn default() -> Self {
        Self::file(StrategiesFile::default(), None)
    }
}

impl Strategies {
    fn file(file: StrategiesFile, path: Option<PathBuf>) -> Self {
        let stamp = path.as_deref().and_then(file_stamp);
        Self {
            source: Source::File {
                path,
                current: RwLock::new(Arc::new(file)),
                stamp: RwLock::new(stamp),
            },
        }
    }

    /// Strategies from the file at `path`.
    ///
    /// # Errors
    /// [`StrategiesError`] when it cannot be read or is not a valid strategies file.
    pub fn from_file(path: PathBuf) -> Result<Self, StrategiesError> {
        let file = StrategiesFile::load(&path)?;
        Ok(Self::file(file, Some(path)))
    }

    /// Adaptive strategies.
    pub fn adaptive(config: AdaptiveConfig) -> Self {
        Self {
            source: Source::Adaptive(Adaptive::new(config)),
        }
    }

    /// The answer for `service`.
    pub fn response_for(&self, service: &str) -> StrategyResponse {
        match &self.source {
            Source::File { current, .. } => current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .response_for(service),
            Source::Adaptive(a) => a.response_for(service),
        }
    }

    /// Re-reads the file if it changed since it was last loaded; returns whether a new
    /// version is in use. A file that became invalid is reported and the old one kept.
    pub fn reload_if_changed(&self) -> bool {
        let Source::File {
            path: Some(path),
            current,
            stamp,
        } = &self.source
        else {
            return false;
        };
        let now = file_stamp(path);
        if now.is_none() || now == *stamp.read().unwrap_or_else(PoisonError::into_inner) {
            return false;
        }
        *stamp.write().unwrap_or_else(PoisonError::into_inner) = now;
        match StrategiesFile::load(path) {
            Ok(file) => {
                *current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(file);
                eprintln!(
                    "collector: sampling strategies reloaded from {}",
                    path.display()
                );
                true
            }
            Err(e) => {
                eprintln!("collector: {e}; keeping the previous sampling strategies");
                false
            }
        }
    }

    /// Reloads the file, or recalculates adaptive probabilities, until shutdown.
    pub async fn maintain(state: AppState) {
        let strategies = Arc::clone(&state.strategies);
        let mut shutdown = state.shutdown_receiver();
        let every = match &strategies.source {
            Source::File { path: None, .. } => return,
            Source::File { .. } => RELOAD_EVERY,
            Source::Adaptive(a) => {
                state.metrics.roots.enable();
                a.config().interval
            }
        };
        let mut last = Instant::now();
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|stopping| *stopping) => return,
            }
            match &strategies.source {
                Source::File { .. } => {
                    strategies.reload_if_changed();
                }
                Source::Adaptive(a) => {
                    let counts = state.metrics.roots.take();
                    a.recalculate(counts, last.elapsed());
                    last = Instant::now();
                }
            }
        }
    }
}

fn file_stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// `GET /api/sampling?service=NAME` (and every path of the sampling port): the strategy for
/// `NAME` as Jaeger's JSON. `service` must be given exactly once (400 otherwise, with
/// Jaeger's message).
pub(crate) async fn get_strategy(
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, Error> {
    let pairs = query
        .map(|Query(v)| v)
        .map_err(|_| Error::BadRequest("malformed query string".into()))?;
    let mut services = pairs.into_iter().filter(|(k, _)| k == "service");
    let (Some((_, service)), None) = (services.next(), services.next()) else {
        return Err(Error::BadRequest(
            "'service' parameter must be provided once".into(),
        ));
    };
    Ok(axum::Json(state.strategies.response_for(&service)).into_response())
}

/// The sampling port's router: the strategy for `?service=NAME` at every path (as Jaeger v2
/// serves it).
pub fn sampling_app(state: AppState) -> Router {
    Router::new()
        .fallback(axum::routing::get(get_strategy))
        .with_state(state)
}

/// Serves [`sampling_app`] on `listener` until the collector shuts down.
///
/// # Errors
/// The server's I/O error.
pub async fn serve(state: AppState, listener: TcpListener) -> std::io::Result<()> {
    let mut stop = state.shutdown_receiver();
    axum::serve(listener, sampling_app(state))
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn send(app: Router, path: &str) -> (StatusCode, bytes::Bytes) {
        let response = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        (
            status,
            response.into_body().collect().await.unwrap().to_bytes(),
        )
    }

    #[tokio::test]
    async fn both_paths_and_the_sampling_port_answer_jaegers_shape() {
        let state = AppState::new(
            Arc::new(crate::MemoryStore::new()),
            crate::IngestLimits::default(),
        );
        for (app, path) in [
            (
                crate::query_app(state.clone()),
                "/api/sampling?service=frontend",
            ),
            (
                crate::query_app(state.clone()),
                "/sampling?service=frontend",
            ),
            (sampling_app(state.clone()), "/?service=frontend"),
            (
                sampling_app(state.clone()),
                "/api/sampling?service=frontend",
            ),
        ] {
            let (status, body) = send(app, path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["strategyType"], "PROBABILISTIC", "{path}");
            assert_eq!(v["probabilisticSampling"]["samplingRate"], 0.001, "{path}");
        }
        for path in ["/api/sampling", "/api/sampling?service=a&service=b"] {
            let (status, body) = send(crate::query_app(state.clone()), path).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
            assert!(String::from_utf8_lossy(&body).contains("provided once"));
        }
    }

    #[test]
    fn the_file_is_reloaded_when_it_changes_and_a_bad_edit_is_not_applied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strategies.json");
        let write = |text: &str| std::fs::write(&path, text).unwrap();
        write(r#"{"default_strategy": {"type": "probabilistic", "param": 0.5}}"#);
        let s = Strategies::from_file(path.clone()).unwrap();
        let rate = |s: &Strategies| {
            s.response_for("x")
                .probabilistic_sampling
                .map(|p| p.sampling_rate)
        };
        assert_eq!(rate(&s), Some(0.5));
        assert!(!s.reload_if_changed(), "unchanged");
        // A different size is a change even within the file system's time granularity.
        write(r#"{"default_strategy": {"type": "probabilistic", "param": 0.25}}"#);
        assert!(s.reload_if_changed());
        assert_eq!(rate(&s), Some(0.25));
        write(r#"{"default_strategy": {"type": "probabilistic", "param": 25}}"#);
        assert!(!s.reload_if_changed(), "invalid: kept");
        assert_eq!(rate(&s), Some(0.25));
        assert!(Strategies::from_file(dir.path().join("missing.json")).is_err());
    }
}
