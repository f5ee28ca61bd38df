//! Collector configuration: one typed struct, from flags or environment variables
//! (DESIGN.md §2). Flags win over variables; both have the same meaning.
//!
//! | variable | flag | default | meaning |
//! |---|---|---|---|
//! | `COLLECTOR_INGEST_ADDR` | `--ingest-addr` | `0.0.0.0:4318` | OTLP/HTTP ingest listener |
//! | `COLLECTOR_GRPC_ADDR` | `--grpc-addr` | `0.0.0.0:4317` | OTLP/gRPC ingest listener |
//! | `COLLECTOR_QUERY_ADDR` | `--query-addr` | `0.0.0.0:16686` | query API (and later UI) listener |
//! | `COLLECTOR_DATA_DIR` | `--data-dir` | `./data` | directory of `spanline.db` (created if missing) |
//! | `COLLECTOR_MAX_BODY_BYTES` | `--max-body-bytes` | `67108864` (64 MiB) | largest request body after decompression, bytes |
//! | `COLLECTOR_MAX_INFLIGHT_BYTES` | `--max-inflight-bytes` | `50331648` (48 MiB) | budget for the bodies of all ingest requests in flight (raw and inflated); past it 503 with `Retry-After` (a request alone always passes) |
//! | `COLLECTOR_MAX_SPANS_PER_TRACE` | `--max-spans-per-trace` | `10000` | most spans stored per trace; later new spans are refused through OTLP partial success and counted, and the trace is marked truncated |
//! | `COLLECTOR_MAX_CONNECTIONS` | `--max-connections` | `512` | open connections per HTTP port; more get 503 and are closed |
//! | `COLLECTOR_HEADER_READ_TIMEOUT` | `--header-read-timeout` | `10s` | time a client has to send a request head |
//! | `COLLECTOR_BODY_READ_TIMEOUT` | `--body-read-timeout` | `30s` | time a client has to send a request body (408 after) |
//! | `COLLECTOR_MAX_LONG_POLLS` | `--max-long-polls` | `64` | concurrent long-polls (`?wait=`, `GET /v1/tail`); more get 503 |
//! | `COLLECTOR_INGEST_TOKEN` | `--ingest-token` | none (open) | bearer token every ingest request must carry (HTTP and gRPC) |
//! | `COLLECTOR_QUERY_TOKEN` | `--query-token` | none (open) | bearer token (or UI cookie, set by `?token=`) every query-port request must carry, except `/health`, `/healthz` |
//! | `COLLECTOR_STORAGE` | `--storage` | `sqlite` | `sqlite` (durable), `memory` (lost on exit) or `clickhouse` |
//! | `COLLECTOR_CLICKHOUSE_URL` | `--clickhouse-url` | `http://localhost:8123` | ClickHouse HTTP URL; with a cluster, every node's, comma-separated (schema and deletes go to each; reads and writes to the first, but spans to each shard's node) |
//! | `COLLECTOR_CLICKHOUSE_DATABASE` | `--clickhouse-database` | `spanline` | database, created when missing |
//! | `COLLECTOR_CLICKHOUSE_USER` | `--clickhouse-user` | none (server default) | user (HTTP basic auth) |
//! | `COLLECTOR_CLICKHOUSE_PASSWORD` | `--clickhouse-password` | none | password of that user |
//! | `COLLECTOR_CLICKHOUSE_CLUSTER` | `--clickhouse-cluster` | none (one node) | cluster name from the servers' `remote_servers`: `Distributed` tables sharded by trace id; spans are inserted into each shard's local tables directly when every shard has a node in `COLLECTOR_CLICKHOUSE_URL` |
//! | `COLLECTOR_CLICKHOUSE_REPLICATED` | `--clickhouse-replicated` | `false` | `true`: the per-node tables are `ReplicatedMergeTree` (the servers need `<zookeeper>` and the `{shard}`/`{replica}` macros; needs a cluster), and a node that refuses connections is skipped for the next URL |
//! | `COLLECTOR_SQLITE_SYNC` | `--sqlite-sync` | `normal` | `normal`: durable across process crashes; `full`: also across power loss |
//! | `COLLECTOR_ATTRIBUTE_INDEX` | `--attribute-index` | `all` | span attributes indexed for attribute search: `all`, `none`, or a comma-separated key list (fewer keys, faster ingest) |
//! | `COLLECTOR_RETENTION` | `--retention` | `7d` | delete traces first received longer ago than this (`s`, `m`, `h`, `d`; `0` = keep) |
//! | `COLLECTOR_MAX_DISK_BYTES` | `--max-disk-bytes` | `0` (no limit) | delete the oldest traces while the live data is larger (SQLite) |
//! | `COLLECTOR_TRACE_SETTLE` | `--trace-settle` | `10s` | a trace that is not complete is finished this long after its last span (`GET /v1/tail`) |
//! | `COLLECTOR_LOG_TREES` | `--log-trees` | off | print each finished trace's text tree to stdout |
//! | `COLLECTOR_SAMPLING_ADDR` | `--sampling-addr` | `0.0.0.0:5778` | Jaeger remote sampling listener (`GET /?service=`) |
//! | `COLLECTOR_SAMPLING` | `--sampling` | `file` | where strategies come from: `file` or `adaptive` |
//! | `COLLECTOR_SAMPLING_STRATEGIES` | `--sampling-strategies` | none (probability 0.001 for all) | Jaeger strategies file, re-read when it changes |
//! | `COLLECTOR_ADAPTIVE_TARGET_TPS` | `--adaptive-target-tps` | `1` | adaptive: kept traces per second per operation |
//! | `COLLECTOR_ADAPTIVE_MIN_PROBABILITY` | `--adaptive-min-probability` | `0.00001` | adaptive: lowest probability served |
//! | `COLLECTOR_ADAPTIVE_INITIAL_PROBABILITY` | `--adaptive-initial-probability` | `0.001` | adaptive: probability of operations not seen yet |
//! | `COLLECTOR_ADAPTIVE_LOWER_BOUND_TPS` | `--adaptive-lower-bound-tps` | `0.0166667` (1/min) | adaptive: guaranteed traces per second per operation |
//! | `COLLECTOR_TAIL_SAMPLING` | `--tail-sampling` | off | tail sampling policy file (YAML or JSON, OpenTelemetry Collector `tail_sampling` vocabulary) |
//! | `COLLECTOR_TLS_CERT`, `COLLECTOR_TLS_KEY` | `--tls-cert`, `--tls-key` | unset (plain text) | PEM certificate chain and private key: the ingest, gRPC and query ports speak TLS only ([`crate::tls`]) |
//! | `COLLECTOR_ADAPTIVE_INTERVAL` | `--adaptive-interval` | `60s` | adaptive: time between recalculations |
//! | `COLLECTOR_PEERS` | `--peers` | none (alone) | the OTLP/HTTP ingest URLs of every collector sharing the work, this one included, comma-separated (e.g. `http://c1:4318,http://c2:4318`); spans go to the owner of their TraceId ([`crate::ingest::peers`]) |
//! | `COLLECTOR_PEER_SELF` | `--peer-self` | none | this collector's entry in `COLLECTOR_PEERS` (required with it) |
//! | `COLLECTOR_PEER_QUERY_URLS` | `--peer-query-urls` | none | the peers' query URLs in the same order; `?wait=` on a trace another collector owns is proxied there; NDJSON `/v1/tail` merges the peers' tails |
//! | `COLLECTOR_PEER_TIMEOUT` | `--peer-timeout` | `10s` | longest time a forward to a peer may take (503 to the client after) |
//! | | `--healthcheck` | | probe `GET /health` on the query port and exit 0 (healthy) or 1 |
//!
//! Retention is described in [`crate::retention`].

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::store::Synchronous;

/// File name of the SQLite database inside the data directory.
pub const DB_FILE_NAME: &str = "spanline.db";
/// Default request body limit after decompression: 64 MiB (interop.md §1.2).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// Which [`SpanStore`](crate::store::SpanStore) backs the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StorageKind {
    /// SQLite file in the data directory.
    Sqlite,
    /// Process memory (tests, throwaway demos).
    Memory,
    /// ClickHouse, one node or a cluster (docs/clickhouse.md).
    Clickhouse,
}

/// Where the ClickHouse backend finds its servers (`COLLECTOR_CLICKHOUSE_*`; used when
/// `COLLECTOR_STORAGE=clickhouse`).
#[derive(Debug, Clone, clap::Args)]
pub struct ClickHouseConfig {
    /// ClickHouse HTTP URL; with a cluster, every node's, comma-separated.
    #[arg(
        long = "clickhouse-url",
        env = "COLLECTOR_CLICKHOUSE_URL",
        default_value = "http://localhost:8123",
        value_delimiter = ','
    )]
    pub urls: Vec<String>,
    /// Database, created when missing.
    #[arg(long = "clickhouse-database", env = "COLLECTOR_CLICKHOUSE_DATABASE",
          default_value = "spanline",
          value_parser = |s: &str| crate::store::check_identifier("database", s).map(|()| s.to_owned()))]
    pub database: String,
    /// User (HTTP basic auth); unset: the server's default user.
    #[arg(long = "clickhouse-user", env = "COLLECTOR_CLICKHOUSE_USER")]
    pub user: Option<String>,
    /// Password of that user.
    #[arg(
        long = "clickhouse-password",
        env = "COLLECTOR_CLICKHOUSE_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// Cluster name (the servers' remote_servers): Distributed tables (spans are written
    /// to each shard directly when every shard has a node in the URL list).
    #[arg(long = "clickhouse-cluster", env = "COLLECTOR_CLICKHOUSE_CLUSTER",
          value_parser = |s: &str| crate::store::check_identifier("cluster", s).map(|()| s.to_owned()))]
    pub cluster: Option<String>,
    /// Replicated per-node tables (`ReplicatedMergeTree`, through ZooKeeper); needs a cluster.
    #[arg(long = "clickhouse-replicated", env = "COLLECTOR_CLICKHOUSE_REPLICATED",
          default_value_t = false, value_parser = clap::builder::BoolishValueParser::new(),
          num_args = 0..=1, default_missing_value = "true")]
    pub replicated: bool,
}

/// The collector's configuration (see the module docs for the table).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "collector",
    version,
    about = "Spanline collector: OTLP/HTTP and OTLP/gRPC ingest, durable storage, trace trees"
)]
pub struct Config {
    /// Ingest listener (OTLP/HTTP).
    #[arg(long, env = "COLLECTOR_INGEST_ADDR", default_value = "0.0.0.0:4318")]
    pub ingest_addr: SocketAddr,
    /// OTLP/gRPC ingest listener.
    #[arg(long, env = "COLLECTOR_GRPC_ADDR", default_value = "0.0.0.0:4317")]
    pub grpc_addr: SocketAddr,
    /// Query API listener.
    #[arg(long, env = "COLLECTOR_QUERY_ADDR", default_value = "0.0.0.0:16686")]
    pub query_addr: SocketAddr,
    /// Data directory (holds spanline.db); created if missing.
    #[arg(long, env = "COLLECTOR_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Largest request body after decompression, in bytes (at least 1024).
    #[arg(long, env = "COLLECTOR_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_body_bytes: u64,
    /// Budget for the bodies of all ingest requests in flight, raw and inflated, in bytes;
    /// past it requests get 503 with Retry-After (a request alone in flight always passes).
    #[arg(long, env = "COLLECTOR_MAX_INFLIGHT_BYTES",
          default_value_t = crate::ingest::budget::DEFAULT_MAX_INFLIGHT_BYTES,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_inflight_bytes: u64,
    /// Most spans stored per trace; later new spans are refused (partial success) and the
    /// trace is marked truncated.
    #[arg(long, env = "COLLECTOR_MAX_SPANS_PER_TRACE",
          default_value_t = crate::store::DEFAULT_MAX_SPANS_PER_TRACE,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_spans_per_trace: usize,
    /// Open connections per HTTP port; more get 503 and are closed.
    #[arg(long, env = "COLLECTOR_MAX_CONNECTIONS",
          default_value_t = crate::connections::DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_connections: usize,
    /// Time a client has to send a request head (e.g. 10s).
    #[arg(long, env = "COLLECTOR_HEADER_READ_TIMEOUT", default_value = "10s",
          value_parser = parse_timeout)]
    pub header_read_timeout: std::time::Duration,
    /// Time a client has to send a whole request body (e.g. 30s); 408 after.
    #[arg(long, env = "COLLECTOR_BODY_READ_TIMEOUT", default_value = "30s",
          value_parser = parse_timeout)]
    pub body_read_timeout: std::time::Duration,
    /// Concurrent long-polls (?wait=, GET /v1/tail); more get 503.
    #[arg(long, env = "COLLECTOR_MAX_LONG_POLLS",
          default_value_t = crate::connections::DEFAULT_MAX_LONG_POLLS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_long_polls: usize,
    /// Bearer token every ingest request must carry (HTTP and gRPC); unset: open.
    #[arg(long, env = "COLLECTOR_INGEST_TOKEN", hide_env_values = true)]
    pub ingest_token: Option<crate::auth::Token>,
    /// Bearer token (or the UI cookie set by ?token=) every query-port request must carry,
    /// except /health and /healthz; unset: open.
    #[arg(long, env = "COLLECTOR_QUERY_TOKEN", hide_env_values = true)]
    pub query_token: Option<crate::auth::Token>,
    /// Storage backend.
    #[arg(long, env = "COLLECTOR_STORAGE", value_enum, default_value = "sqlite")]
    pub storage: StorageKind,
    /// ClickHouse servers (with `--storage clickhouse`).
    #[command(flatten)]
    pub clickhouse: ClickHouseConfig,
    /// SQLite WAL sync mode: normal or full.
    #[arg(long, env = "COLLECTOR_SQLITE_SYNC", default_value = "normal")]
    pub sqlite_sync: Synchronous,
    /// Span attributes indexed for search: all, none, or a comma-separated list of keys.
    #[arg(long, env = "COLLECTOR_ATTRIBUTE_INDEX", default_value = "all")]
    pub attribute_index: crate::store::AttributeIndex,
    /// Delete traces first received longer ago than this (e.g. 72h, 7d; 0 keeps everything).
    #[arg(long, env = "COLLECTOR_RETENTION", default_value = "7d",
          value_parser = crate::time::parse_age_flag)]
    pub retention: std::time::Duration,
    /// Delete the oldest traces while the stored data is larger than this many bytes
    /// (0: no limit; SQLite only).
    #[arg(long, env = "COLLECTOR_MAX_DISK_BYTES", default_value_t = 0)]
    pub max_disk_bytes: u64,
    /// A trace that is not complete is finished this long after its last span arrived
    /// (GET /v1/tail; e.g. 10s, 1m).
    #[arg(long, env = "COLLECTOR_TRACE_SETTLE", default_value = "10s",
          value_parser = crate::time::parse_age_flag)]
    pub trace_settle: std::time::Duration,
    /// Print each finished trace's text tree to stdout.
    #[arg(long, env = "COLLECTOR_LOG_TREES", default_value_t = false,
          value_parser = clap::builder::BoolishValueParser::new(), num_args = 0..=1,
          default_missing_value = "true")]
    pub log_trees: bool,
    /// Jaeger remote sampling listener (strategies at every path, `?service=NAME`).
    #[arg(long, env = "COLLECTOR_SAMPLING_ADDR", default_value = "0.0.0.0:5778")]
    pub sampling_addr: SocketAddr,
    /// Where sampling strategies come from: file or adaptive.
    #[arg(long, env = "COLLECTOR_SAMPLING", value_enum, default_value = "file")]
    pub sampling: crate::sampling::SamplingMode,
    /// Jaeger-format strategies file (re-read when it changes).
    #[arg(long, env = "COLLECTOR_SAMPLING_STRATEGIES")]
    pub sampling_strategies: Option<PathBuf>,
    /// Adaptive sampling: kept traces per second wanted per operation.
    #[arg(long, env = "COLLECTOR_ADAPTIVE_TARGET_TPS", default_value_t = 1.0,
          value_parser = positive_f64)]
    pub adaptive_target_tps: f64,
    /// Adaptive sampling: the lowest probability served (0..=1).
    #[arg(long, env = "COLLECTOR_ADAPTIVE_MIN_PROBABILITY", default_value_t = 1e-5,
          value_parser = probability)]
    pub adaptive_min_probability: f64,
    /// Adaptive sampling: the probability of operations not seen yet (0..=1).
    #[arg(long, env = "COLLECTOR_ADAPTIVE_INITIAL_PROBABILITY", default_value_t = 0.001,
          value_parser = probability)]
    pub adaptive_initial_probability: f64,
    /// Adaptive sampling: guaranteed traces per second per operation.
    #[arg(long, env = "COLLECTOR_ADAPTIVE_LOWER_BOUND_TPS", default_value_t = 1.0 / 60.0,
          value_parser = non_negative_f64)]
    pub adaptive_lower_bound_tps: f64,
    /// Adaptive sampling: time between recalculations (e.g. 10s, 1m).
    #[arg(long, env = "COLLECTOR_ADAPTIVE_INTERVAL", default_value = "60s",
          value_parser = crate::time::parse_age_flag)]
    pub adaptive_interval: std::time::Duration,
    /// Tail sampling policy file (YAML or JSON; the OpenTelemetry Collector's tail_sampling
    /// policies). Traces not kept are deleted once decided.
    #[arg(long, env = "COLLECTOR_TAIL_SAMPLING")]
    pub tail_sampling: Option<PathBuf>,
    /// TLS certificate chain (PEM, leaf first): with `--tls-key`, every port speaks TLS only.
    #[arg(long, env = "COLLECTOR_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1), for `--tls-cert`.
    #[arg(long, env = "COLLECTOR_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The OTLP/HTTP ingest URLs of every collector sharing the work (this one included),
    /// comma-separated; spans are routed to the owner of their TraceId.
    #[arg(long, env = "COLLECTOR_PEERS", value_delimiter = ',')]
    pub peers: Vec<String>,
    /// This collector's entry in COLLECTOR_PEERS.
    #[arg(long, env = "COLLECTOR_PEER_SELF")]
    pub peer_self: Option<String>,
    /// The peers' query URLs, in the order of COLLECTOR_PEERS (proxied ?wait=, merged /v1/tail).
    #[arg(long, env = "COLLECTOR_PEER_QUERY_URLS", value_delimiter = ',')]
    pub peer_query_urls: Vec<String>,
    /// Longest time a forward to a peer may take (e.g. 10s).
    #[arg(long, env = "COLLECTOR_PEER_TIMEOUT", default_value = "10s",
          value_parser = parse_timeout)]
    pub peer_timeout: std::time::Duration,
    /// Probe GET /health on the query port (127.0.0.1 when it listens on all addresses) and
    /// exit 0 when healthy, 1 otherwise. For container health checks.
    #[arg(long)]
    pub healthcheck: bool,
}

fn parse_f64(s: &str, ok: impl Fn(f64) -> bool, what: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && ok(v) => Ok(v),
        _ => Err(format!("{s:?} is not {what}")),
    }
}

fn probability(s: &str) -> Result<f64, String> {
    parse_f64(s, |v| (0.0..=1.0).contains(&v), "a probability in 0..=1")
}

fn positive_f64(s: &str) -> Result<f64, String> {
    parse_f64(s, |v| v > 0.0, "a positive number")
}

fn non_negative_f64(s: &str) -> Result<f64, String> {
    parse_f64(s, |v| v >= 0.0, "a number >= 0")
}

impl Config {
    /// The strategies to serve.
    ///
    /// # Errors
    /// The strategies file cannot be read or is invalid.
    pub fn strategies(
        &self,
    ) -> Result<crate::sampling::Strategies, crate::sampling::strategies::StrategiesError> {
        use crate::sampling::{SamplingMode, Strategies, adaptive::AdaptiveConfig};
        match (self.sampling, &self.sampling_strategies) {
            (SamplingMode::Adaptive, _) => Ok(Strategies::adaptive(AdaptiveConfig {
                target_traces_per_s: self.adaptive_target_tps,
                min_probability: self.adaptive_min_probability,
                initial_probability: self.adaptive_initial_probability,
                lower_bound_traces_per_s: self.adaptive_lower_bound_tps,
                interval: self
                    .adaptive_interval
                    .max(std::time::Duration::from_secs(1)),
            })),
            (SamplingMode::File, Some(path)) => Strategies::from_file(path.clone()),
            (SamplingMode::File, None) => Ok(Strategies::default()),
        }
    }

    /// The ClickHouse backend's options.
    pub fn clickhouse_options(&self) -> crate::store::ClickHouseOptions {
        crate::store::ClickHouseOptions {
            urls: self
                .clickhouse
                .urls
                .iter()
                .map(|u| u.trim().to_owned())
                .filter(|u| !u.is_empty())
                .collect(),
            database: self.clickhouse.database.clone(),
            user: self.clickhouse.user.clone(),
            password: self.clickhouse.password.clone(),
            cluster: self.clickhouse.cluster.clone(),
            replicated: self.clickhouse.replicated,
            max_spans_per_trace: self.max_spans_per_trace,
            ..crate::store::ClickHouseOptions::default()
        }
    }

    /// `<data_dir>/spanline.db`.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join(DB_FILE_NAME)
    }

    /// The retention to enforce.
    pub fn retention_config(&self) -> crate::retention::RetentionConfig {
        crate::retention::RetentionConfig {
            max_age: (!self.retention.is_zero()).then_some(self.retention),
            max_bytes: (self.max_disk_bytes > 0).then_some(self.max_disk_bytes),
        }
    }

    /// The connection bounds and timeouts of both HTTP ports.
    pub fn connection_limits(&self) -> crate::connections::ConnectionLimits {
        crate::connections::ConnectionLimits {
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
            max_long_polls: self.max_long_polls,
        }
    }

    /// The routing between collectors, `None` without `COLLECTOR_PEERS`.
    ///
    /// # Errors
    /// The peer lists are inconsistent ([`crate::ingest::peers::PeerConfigError`]).
    pub fn peer_config(
        &self,
    ) -> Result<Option<crate::ingest::peers::PeerConfig>, crate::ingest::peers::PeerConfigError>
    {
        crate::ingest::peers::PeerConfig::new(
            &self.peers,
            self.peer_self.as_deref(),
            &self.peer_query_urls,
            self.peer_timeout,
        )
    }

    /// The body limit as `usize` (saturating on 32-bit targets).
    pub fn max_body_bytes(&self) -> usize {
        usize::try_from(self.max_body_bytes).unwrap_or(usize::MAX)
    }
}

/// A timeout: a whole number with `s`, `m`, `h` or `d`, not zero.
fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    crate::time::parse_age(text)?.ok_or_else(|| "a timeout cannot be 0".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn clickhouse_settings_parse() {
        let c = Config::try_parse_from([
            "collector",
            "--storage",
            "clickhouse",
            "--clickhouse-url",
            "http://a:8123, http://b:8123",
            "--clickhouse-cluster",
            "spanline_2s",
        ])
        .unwrap();
        assert!(!c.clickhouse_options().replicated);
        let r = Config::try_parse_from(["collector", "--clickhouse-replicated", "1"]).unwrap();
        assert!(r.clickhouse_options().replicated);
        assert_eq!(c.storage, StorageKind::Clickhouse);
        let o = c.clickhouse_options();
        assert_eq!(o.urls, vec!["http://a:8123", "http://b:8123"]);
        assert_eq!(o.database, "spanline");
        assert_eq!(o.cluster.as_deref(), Some("spanline_2s"));
        assert_eq!(o.user, None);
        let default = Config::try_parse_from(["collector"]).unwrap();
        assert_eq!(
            default.clickhouse_options().urls,
            vec!["http://localhost:8123"]
        );
        for bad in ["x;DROP", "1db", ""] {
            assert!(
                Config::try_parse_from(["collector", "--clickhouse-database", bad]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn flags_parse_and_validate() {
        let c = Config::try_parse_from([
            "collector",
            "--ingest-addr",
            "127.0.0.1:1",
            "--query-addr",
            "127.0.0.1:2",
            "--grpc-addr",
            "127.0.0.1:3",
            "--data-dir",
            "/tmp/x",
            "--max-body-bytes",
            "2048",
            "--storage",
            "memory",
            "--sqlite-sync",
            "full",
        ])
        .unwrap();
        assert_eq!(c.ingest_addr.port(), 1);
        assert_eq!(c.grpc_addr.port(), 3);
        assert_eq!(c.db_path(), PathBuf::from("/tmp/x/spanline.db"));
        assert_eq!(c.max_body_bytes(), 2048);
        assert_eq!(c.storage, StorageKind::Memory);
        assert_eq!(c.sqlite_sync, Synchronous::Full);
        assert!(Config::try_parse_from(["collector", "--ingest-addr", "nope"]).is_err());
        assert!(Config::try_parse_from(["collector", "--max-body-bytes", "10"]).is_err());
        assert!(Config::try_parse_from(["collector", "--sqlite-sync", "fast"]).is_err());
        let c = Config::try_parse_from(["collector"]).unwrap();
        assert_eq!(c.grpc_addr, "0.0.0.0:4317".parse::<SocketAddr>().unwrap());
        assert_eq!(
            c.retention_config().max_age,
            Some(std::time::Duration::from_secs(7 * 86_400))
        );
        assert_eq!(c.retention_config().max_bytes, None);
        let c = Config::try_parse_from([
            "collector",
            "--retention",
            "0",
            "--max-disk-bytes",
            "1000000",
        ])
        .unwrap();
        assert_eq!(c.retention_config().max_age, None);
        assert_eq!(c.retention_config().max_bytes, Some(1_000_000));
        assert!(Config::try_parse_from(["collector", "--retention", "soon"]).is_err());
        let c = Config::try_parse_from([
            "collector",
            "--sampling",
            "adaptive",
            "--adaptive-target-tps",
            "2.5",
            "--adaptive-interval",
            "10s",
        ])
        .unwrap();
        assert_eq!(c.sampling_addr.port(), 5778);
        assert_eq!(c.adaptive_target_tps, 2.5);
        assert!(c.strategies().is_ok());
        for bad in [
            ["--adaptive-target-tps", "0"],
            ["--adaptive-min-probability", "2"],
            ["--sampling", "sometimes"],
        ] {
            assert!(Config::try_parse_from(["collector", bad[0], bad[1]]).is_err());
        }
        let c =
            Config::try_parse_from(["collector", "--sampling-strategies", "/nonexistent"]).unwrap();
        assert!(c.strategies().is_err());
        let c = Config::try_parse_from(["collector"]).unwrap();
        assert_eq!(
            c.connection_limits(),
            crate::connections::ConnectionLimits::default()
        );
        assert!(Config::try_parse_from(["collector", "--header-read-timeout", "0"]).is_err());
        assert!(Config::try_parse_from(["collector", "--max-connections", "0"]).is_err());
        assert_eq!(c.max_spans_per_trace, 10_000);
        assert_eq!(c.max_inflight_bytes, 48 * 1024 * 1024);
        assert_eq!(
            (c.ingest_token.is_none(), c.query_token.is_none()),
            (true, true)
        );
        let c =
            Config::try_parse_from(["collector", "--ingest-token", "abc", "--query-token", "x.y"])
                .unwrap();
        assert!(c.ingest_token.unwrap().matches(b"abc"));
        assert!(
            !format!("{:?}", c.query_token).contains("x.y"),
            "tokens are not printed"
        );
        assert!(Config::try_parse_from(["collector", "--ingest-token", "a;b"]).is_err());
    }
}
