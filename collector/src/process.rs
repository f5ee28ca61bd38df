//! Running the collector as a process: what `main` does with a [`Config`] (the data
//! directory, the configured store, the four listeners, background tasks, stop signals), and
//! the exit code of each way it can fail ([`RunError`]).

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::{
    AppState, Config, IngestLimits, MemoryStore, SpanStore, SqliteOptions, SqliteStore, StoreError,
    auth, config, retention, sampling, serve_with_grpc, store, tls,
};

/// Why [`run`] stopped with a failure; [`RunError::exit_code`] maps it for `main`.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The store could not be opened (corrupt file, permissions, ...).
    #[error("cannot open storage: {0}")]
    Store(#[from] StoreError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A server failed while running.
    #[error("server error: {0}")]
    Serve(std::io::Error),
    /// A configuration file (sampling strategies, tail sampling policies) is unusable.
    #[error("{0}")]
    Config(String),
}

impl RunError {
    /// Process exit code: 74 (`EX_IOERR`) for storage and data-dir trouble, 71 (`EX_OSERR`)
    /// for listeners and servers, 64 (`EX_USAGE`) for an unusable configuration file.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::DataDir { .. } | Self::Store(_) => 74,
            Self::Bind { .. } | Self::Serve(_) => 71,
            Self::Config(_) => 64,
        }
    }
}

/// Runs the collector as configured until SIGTERM or Ctrl-C: creates the data directory,
/// opens the store, binds both listeners, then [`serve`]s.
///
/// # Errors
/// See [`RunError`].
pub async fn run(config: Config) -> Result<(), RunError> {
    let strategies = config
        .strategies()
        .map_err(|e| RunError::Config(e.to_string()))?;
    let tls = tls::TlsAcceptors::from_config(config.tls_cert.as_deref(), config.tls_key.as_deref())
        .map_err(|e| RunError::Config(e.to_string()))?;
    let tail_sampler = config
        .tail_sampling
        .as_deref()
        .map(sampling::tail::TailSampler::load)
        .transpose()
        .map_err(|e| RunError::Config(e.to_string()))?;
    let store: Arc<dyn SpanStore> = match config.storage {
        config::StorageKind::Memory => {
            Arc::new(MemoryStore::new().with_max_spans_per_trace(config.max_spans_per_trace))
        }
        config::StorageKind::Sqlite => {
            std::fs::create_dir_all(&config.data_dir).map_err(|source| RunError::DataDir {
                path: config.data_dir.display().to_string(),
                source,
            })?;
            let options = SqliteOptions {
                synchronous: config.sqlite_sync,
                index_attributes: config.attribute_index.clone(),
                max_spans_per_trace: config.max_spans_per_trace,
                ..SqliteOptions::default()
            };
            let path = config.db_path();
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(path, options))
                .await
                .map_err(|e| StoreError::Backend(e.to_string()))??;
            Arc::new(store)
        }
        config::StorageKind::Clickhouse => {
            Arc::new(store::ClickHouseStore::open(config.clickhouse_options()).await?)
        }
    };
    let limits = IngestLimits {
        max_body_bytes: config.max_body_bytes(),
        max_inflight_bytes: usize::try_from(config.max_inflight_bytes).unwrap_or(usize::MAX),
        ..IngestLimits::default()
    };
    let mut state = AppState::new(Arc::clone(&store), limits)
        .with_settle(config.trace_settle, config.log_trees)
        .with_strategies(strategies)
        .with_connection_limits(config.connection_limits())
        .with_tokens(auth::AccessTokens {
            ingest: config.ingest_token.clone(),
            query: config.query_token.clone(),
        });
    if let Some(tail) = tail_sampler {
        state = state.with_tail_sampling(tail);
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Some(tls) = tls {
        state = state.with_tls(tls);
    }
    if let Some(peers) = config
        .peer_config()
        .map_err(|e| RunError::Config(e.to_string()))?
    {
        eprintln!(
            "collector: routing traces between {} peers (this one is {})",
            peers.peers.len(),
            peers.peers[peers.self_index].ingest_url
        );
        state = state.with_peers(peers).map_err(RunError::Config)?;
    }
    let retention = tokio::spawn(retention::run(
        Arc::clone(&store),
        config.retention_config(),
        state.shutdown_receiver(),
    ));
    let bind = |what: &'static str, addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Bind { what, addr, source })
    };
    let listeners = async {
        let ingest = bind("ingest", config.ingest_addr).await?;
        let grpc = bind("grpc", config.grpc_addr).await?;
        let query = bind("query", config.query_addr).await?;
        let sampling = bind("sampling", config.sampling_addr).await?;
        Ok::<_, RunError>((ingest, grpc, query, sampling))
    }
    .await;
    let (ingest, grpc, query, sampling) = match listeners {
        Ok(l) => l,
        Err(e) => {
            store.shutdown().await;
            return Err(e);
        }
    };
    eprintln!(
        "collector: ingest on {scheme}://{} (OTLP/HTTP) and {} (OTLP/gRPC{}), query on \
         {scheme}://{}, sampling strategies on http://{}, storage {}",
        config.ingest_addr,
        config.grpc_addr,
        if scheme == "https" { ", TLS" } else { "" },
        config.query_addr,
        config.sampling_addr,
        match config.storage {
            config::StorageKind::Memory => "memory (not durable)".to_owned(),
            config::StorageKind::Sqlite => config.db_path().display().to_string(),
            config::StorageKind::Clickhouse => format!(
                "ClickHouse {} database {}{}",
                config.clickhouse.urls.join(","),
                config.clickhouse.database,
                config
                    .clickhouse
                    .cluster
                    .as_deref()
                    .map_or(String::new(), |c| format!(" cluster {c}"))
            ),
        }
    );
    let sampling_server = tokio::spawn(sampling::serve(state.clone(), sampling));
    let strategies_task = tokio::spawn(sampling::Strategies::maintain(state.clone()));
    let served = serve_with_grpc(state, ingest, Some(grpc), query, shutdown_signal()).await;
    retention.abort();
    strategies_task.abort();
    if let Ok(Err(e)) = sampling_server.await {
        eprintln!("collector: sampling server error: {e}");
    }
    served.map_err(RunError::Serve)?;
    eprintln!("collector: stopped; all acknowledged spans are committed");
    Ok(())
}

/// Resolves on SIGTERM (Unix) or Ctrl-C, after logging which one arrived.
pub async fn shutdown_signal() {
    let signal = demokit::lifecycle::shutdown_signal().await;
    eprintln!("collector: {} received, shutting down", signal.as_str());
}
