//! [`BatchConfig`]: queue, batch and retry settings of the [`BatchSpanProcessor`], from code
//! or from the `OTEL_BSP_*` environment variables.
//!
//! [`BatchSpanProcessor`]: super::BatchSpanProcessor

use std::time::Duration;

/// `OTEL_BSP_SCHEDULE_DELAY`: milliseconds between two exports of a partial batch.
pub const OTEL_BSP_SCHEDULE_DELAY: &str = "OTEL_BSP_SCHEDULE_DELAY";
/// `OTEL_BSP_MAX_QUEUE_SIZE`: spans buffered before new ones are dropped.
pub const OTEL_BSP_MAX_QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";
/// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`: spans per export request.
pub const OTEL_BSP_MAX_EXPORT_BATCH_SIZE: &str = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE";
/// `OTEL_BSP_EXPORT_TIMEOUT`: milliseconds one export attempt may run; `0` means no limit.
pub const OTEL_BSP_EXPORT_TIMEOUT: &str = "OTEL_BSP_EXPORT_TIMEOUT";

/// The largest queue accepted; larger values are clamped. The queue's slots are allocated
/// up front (16 bytes each: 16 MiB at this limit), and a full queue this size already holds
/// about a gigabyte of spans.
const MAX_QUEUE_SIZE_LIMIT: usize = 1 << 20;

/// Settings of the [`BatchSpanProcessor`](super::BatchSpanProcessor).
///
/// Defaults follow the OpenTelemetry SDK specification (§Batching processor): queue 2048
/// spans, batches of at most 512, a 5 s scheduled delay and a 30 s export timeout. Retry
/// settings (not in the specification, which leaves retry to the exporter) default to a
/// 1 s initial backoff doubling up to 5 s, each delay scaled by a random factor in
/// [0.5, 1.5), for at most 300 s per batch.
///
/// Build one with [`BatchConfig::builder`], or start from the environment with
/// [`BatchConfig::from_lookup`] and override in code with [`BatchConfig::into_builder`].
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use tracekit::export::BatchConfig;
///
/// let cfg = BatchConfig::builder()
///     .with_max_queue_size(100)
///     .with_max_export_batch_size(1000) // clamped to the queue size
///     .with_scheduled_delay(Duration::from_millis(200))
///     .build();
/// assert_eq!(cfg.max_export_batch_size(), 100);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    max_queue_size: usize,
    scheduled_delay: Duration,
    max_export_batch_size: usize,
    export_timeout: Duration,
    max_retry_elapsed: Duration,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_queue_size: 2048,
            scheduled_delay: Duration::from_millis(5000),
            max_export_batch_size: 512,
            export_timeout: Duration::from_millis(30_000),
            max_retry_elapsed: Duration::from_secs(300),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl BatchConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> BatchConfigBuilder {
        BatchConfigBuilder {
            config: BatchConfig::default(),
        }
    }

    /// A builder starting from this configuration, so code can override values read from
    /// the environment.
    pub fn into_builder(self) -> BatchConfigBuilder {
        BatchConfigBuilder { config: self }
    }

    /// Reads `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_QUEUE_SIZE`,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` and `OTEL_BSP_EXPORT_TIMEOUT` through `lookup`
    /// (pass `|k| std::env::var(k).ok()` in a binary, a map in tests).
    ///
    /// Durations are integer milliseconds; `OTEL_BSP_EXPORT_TIMEOUT=0` means no limit, as
    /// the OpenTelemetry configuration specification defines for timeouts. Empty values
    /// count as unset. A value that is not a non-negative integer (or is `0` for a size)
    /// is ignored with a warning, returned as the second element, and the default is used.
    /// The batch size is then clamped to the queue size.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use tracekit::export::BatchConfig;
    ///
    /// let (cfg, warnings) = BatchConfig::from_lookup(|key| match key {
    ///     "OTEL_BSP_SCHEDULE_DELAY" => Some("250".to_owned()),
    ///     "OTEL_BSP_MAX_QUEUE_SIZE" => Some("lots".to_owned()),
    ///     _ => None,
    /// });
    /// assert_eq!(cfg.scheduled_delay(), Duration::from_millis(250));
    /// assert_eq!(cfg.max_queue_size(), 2048);
    /// assert_eq!(warnings.len(), 1);
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> (BatchConfig, Vec<String>) {
        let mut warnings = Vec::new();
        let mut b = BatchConfig::builder();
        let mut read = |key: &str, allow_zero: bool| -> Option<u64> {
            let raw = lookup(key)?;
            let value = raw.trim();
            if value.is_empty() {
                return None;
            }
            match value.parse::<u64>() {
                Ok(0) if !allow_zero => {
                    warnings.push(format!("{key}={raw:?} must be positive; using the default"));
                    None
                }
                Ok(v) => Some(v),
                Err(_) => {
                    warnings.push(format!(
                        "{key}={raw:?} is not a non-negative integer; using the default"
                    ));
                    None
                }
            }
        };
        if let Some(ms) = read(OTEL_BSP_SCHEDULE_DELAY, true) {
            b = b.with_scheduled_delay(Duration::from_millis(ms));
        }
        if let Some(n) = read(OTEL_BSP_MAX_QUEUE_SIZE, false) {
            b = b.with_max_queue_size(usize::try_from(n).unwrap_or(usize::MAX));
        }
        if let Some(n) = read(OTEL_BSP_MAX_EXPORT_BATCH_SIZE, false) {
            b = b.with_max_export_batch_size(usize::try_from(n).unwrap_or(usize::MAX));
        }
        if let Some(ms) = read(OTEL_BSP_EXPORT_TIMEOUT, true) {
            b = b.with_export_timeout(Duration::from_millis(ms));
        }
        (b.build(), warnings)
    }

    /// Spans buffered between `on_end` and the exporter; when full, new spans are dropped.
    pub fn max_queue_size(&self) -> usize {
        self.max_queue_size
    }

    /// How long a partial batch waits, from its first span, before it is exported.
    pub fn scheduled_delay(&self) -> Duration {
        self.scheduled_delay
    }

    /// Most spans in one export request (never more than the queue size).
    pub fn max_export_batch_size(&self) -> usize {
        self.max_export_batch_size
    }

    /// How long one export attempt may run before it is cancelled and retried
    /// ([`Duration::MAX`] when unlimited).
    pub fn export_timeout(&self) -> Duration {
        self.export_timeout
    }

    /// How long one batch keeps being retried, from its first attempt, before it is dropped.
    pub fn max_retry_elapsed(&self) -> Duration {
        self.max_retry_elapsed
    }

    /// The backoff before the first retry, before jitter.
    pub fn initial_backoff(&self) -> Duration {
        self.initial_backoff
    }

    /// The largest backoff before jitter; each delay is then scaled by a factor in [0.5, 1.5).
    pub fn max_backoff(&self) -> Duration {
        self.max_backoff
    }
}

/// Builds a [`BatchConfig`]; [`build`](BatchConfigBuilder::build) enforces its invariants.
#[derive(Clone, Debug)]
pub struct BatchConfigBuilder {
    config: BatchConfig,
}

impl BatchConfigBuilder {
    /// Spans buffered before new ones are dropped (at least 1; default 2048).
    #[must_use]
    pub fn with_max_queue_size(mut self, n: usize) -> Self {
        self.config.max_queue_size = n;
        self
    }

    /// How long a partial batch waits, from its first span, before export (default 5 s).
    #[must_use]
    pub fn with_scheduled_delay(mut self, d: Duration) -> Self {
        self.config.scheduled_delay = d;
        self
    }

    /// Most spans per export request (at least 1, at most the queue size; default 512).
    #[must_use]
    pub fn with_max_export_batch_size(mut self, n: usize) -> Self {
        self.config.max_export_batch_size = n;
        self
    }

    /// How long one export attempt may run before it is cancelled and retried (default
    /// 30 s). [`Duration::ZERO`] means no limit, as `OTEL_BSP_EXPORT_TIMEOUT=0` does.
    #[must_use]
    pub fn with_export_timeout(mut self, d: Duration) -> Self {
        self.config.export_timeout = d;
        self
    }

    /// How long one batch keeps being retried before it is dropped (default 300 s).
    /// [`Duration::ZERO`] disables retries.
    #[must_use]
    pub fn with_max_retry_elapsed(mut self, d: Duration) -> Self {
        self.config.max_retry_elapsed = d;
        self
    }

    /// The backoff before the first retry, before jitter (default 1 s; at most the max
    /// backoff).
    #[must_use]
    pub fn with_initial_backoff(mut self, d: Duration) -> Self {
        self.config.initial_backoff = d;
        self
    }

    /// The largest backoff before jitter (default 5 s).
    #[must_use]
    pub fn with_max_backoff(mut self, d: Duration) -> Self {
        self.config.max_backoff = d;
        self
    }

    /// The configuration: the queue size is clamped to `1..=2^20`, the batch size to
    /// `1..=max_queue_size`, the initial backoff to at most the max backoff, and a zero
    /// export timeout becomes [`Duration::MAX`] (no limit).
    pub fn build(self) -> BatchConfig {
        let mut c = self.config;
        c.max_queue_size = c.max_queue_size.clamp(1, MAX_QUEUE_SIZE_LIMIT);
        c.max_export_batch_size = c.max_export_batch_size.clamp(1, c.max_queue_size);
        c.initial_backoff = c.initial_backoff.min(c.max_backoff);
        if c.export_timeout.is_zero() {
            c.export_timeout = Duration::MAX;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_follow_the_sdk_specification() {
        let c = BatchConfig::default();
        assert_eq!(c.max_queue_size(), 2048);
        assert_eq!(c.scheduled_delay(), Duration::from_millis(5000));
        assert_eq!(c.max_export_batch_size(), 512);
        assert_eq!(c.export_timeout(), Duration::from_millis(30_000));
        assert_eq!(BatchConfig::builder().build(), c);
        let (from_env, warnings) = BatchConfig::from_lookup(lookup(&[]));
        assert_eq!(from_env, c);
        assert!(warnings.is_empty());
    }

    #[test]
    fn env_values_are_read_in_milliseconds_and_counts() {
        let (c, warnings) = BatchConfig::from_lookup(lookup(&[
            (OTEL_BSP_SCHEDULE_DELAY, "250"),
            (OTEL_BSP_MAX_QUEUE_SIZE, " 4096 "),
            (OTEL_BSP_MAX_EXPORT_BATCH_SIZE, "1024"),
            (OTEL_BSP_EXPORT_TIMEOUT, "1500"),
        ]));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.scheduled_delay(), Duration::from_millis(250));
        assert_eq!(c.max_queue_size(), 4096);
        assert_eq!(c.max_export_batch_size(), 1024);
        assert_eq!(c.export_timeout(), Duration::from_millis(1500));
    }

    #[rustfmt::skip]
    #[test]
    fn bad_env_values_warn_and_keep_the_default() {
        let cases: &[(&str, &str, bool)] = &[
            // key, value, warns
            (OTEL_BSP_SCHEDULE_DELAY, "-5", true),
            (OTEL_BSP_SCHEDULE_DELAY, "5s", true),
            (OTEL_BSP_SCHEDULE_DELAY, "1.5", true),
            (OTEL_BSP_SCHEDULE_DELAY, "", false),
            (OTEL_BSP_SCHEDULE_DELAY, "   ", false),
            (OTEL_BSP_MAX_QUEUE_SIZE, "0", true),
            (OTEL_BSP_MAX_QUEUE_SIZE, "many", true),
            (OTEL_BSP_MAX_EXPORT_BATCH_SIZE, "0", true),
            (OTEL_BSP_MAX_EXPORT_BATCH_SIZE, "99999999999999999999999", true),
            (OTEL_BSP_EXPORT_TIMEOUT, "-1", true),
        ];
        for &(key, value, warns) in cases {
            let (c, warnings) = BatchConfig::from_lookup(lookup(&[(key, value)]));
            assert_eq!(c, BatchConfig::default(), "{key}={value:?}");
            assert_eq!(warnings.len(), usize::from(warns), "{key}={value:?}: {warnings:?}");
            if warns {
                assert!(warnings[0].contains(key), "{warnings:?}");
            }
        }
    }

    #[test]
    fn zero_export_timeout_means_no_limit_and_batch_is_clamped_to_queue() {
        let (c, warnings) = BatchConfig::from_lookup(lookup(&[
            (OTEL_BSP_EXPORT_TIMEOUT, "0"),
            (OTEL_BSP_MAX_QUEUE_SIZE, "100"),
            (OTEL_BSP_MAX_EXPORT_BATCH_SIZE, "512"),
            (OTEL_BSP_SCHEDULE_DELAY, "0"),
        ]));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.export_timeout(), Duration::MAX);
        assert_eq!(c.max_queue_size(), 100);
        assert_eq!(c.max_export_batch_size(), 100);
        assert_eq!(c.scheduled_delay(), Duration::ZERO);
    }

    #[test]
    fn builder_enforces_invariants_and_code_overrides_env() {
        let c = BatchConfig::builder()
            .with_max_queue_size(0)
            .with_max_export_batch_size(0)
            .with_initial_backoff(Duration::from_secs(10))
            .with_max_backoff(Duration::from_secs(2))
            .build();
        assert_eq!(c.max_queue_size(), 1);
        assert_eq!(c.max_export_batch_size(), 1);
        assert_eq!(c.initial_backoff(), Duration::from_secs(2));

        let (env, _) = BatchConfig::from_lookup(lookup(&[(OTEL_BSP_MAX_QUEUE_SIZE, "64")]));
        let c = env.into_builder().with_max_queue_size(128).build();
        assert_eq!(c.max_queue_size(), 128);
        // The batch size was clamped to the env queue size when the env config was built.
        assert_eq!(c.max_export_batch_size(), 64);
    }
}
