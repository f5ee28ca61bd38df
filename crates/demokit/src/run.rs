//! The common `main` of a demo service: flags and environment, telemetry, serve, flush.

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::Router;

use crate::queue::{NatsArgs, Queue};
use crate::serve::ServeOptions;
use crate::telemetry::Telemetry;

/// Exit code for unusable configuration (sysexits `EX_USAGE`).
pub const EXIT_CONFIG: u8 = 64;

/// The `after_help` of every demo service: the OpenTelemetry variables it honours.
pub const TELEMETRY_HELP: &str = "\
Telemetry (OpenTelemetry SDK variables):
  OTEL_SERVICE_NAME                   service.name (default: the service's name)
  OTEL_RESOURCE_ATTRIBUTES            extra resource attributes, k=v,k2=v2
  OTEL_EXPORTER_OTLP_ENDPOINT         collector base URL; spans go to <endpoint>/v1/traces
                                      (default http://localhost:4318)
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT  full traces URL, used as is
  OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG
                                      sampler (default parentbased_always_on)
  OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
  OTEL_BSP_EXPORT_TIMEOUT             batch span processor (ms, spans)
  OTEL_PROPAGATORS                    default tracecontext,baggage
  OTEL_TRACES_EXPORTER=none, OTEL_SDK_DISABLED=true
                                      record nothing";

/// Flags every demo service accepts. Each service sets the default of `--listen-addr`
/// with `#[command(mut_arg("listen_addr", |a| a.default_value(DEFAULT_LISTEN).required(false)))]`, so its
/// `--help` shows the real default.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Address to listen on (host:port).
    #[arg(long, env = "LISTEN_ADDR")]
    pub listen_addr: SocketAddr,
    /// Requests in progress at most; more are answered 503 with Retry-After.
    #[arg(
        long,
        env = "SIM_MAX_CONCURRENCY",
        default_value_t = crate::admission::DEFAULT_MAX_CONCURRENCY,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_concurrency: u32,
    /// Probe the running service's GET /healthz on loopback and exit 0 when healthy
    /// (for container health checks; images carry no curl).
    #[arg(long)]
    pub healthcheck: bool,
}

impl CommonArgs {
    /// The [`ServeOptions`] of a service behind the edge: this limit, trusting the caller's
    /// sampled flag.
    pub fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            max_concurrency: self.max_concurrency,
            ..ServeOptions::default()
        }
    }
}

/// [`run_with`] with [`CommonArgs::serve_options`].
pub async fn run(
    service_name: &'static str,
    common: &CommonArgs,
    build: impl FnOnce(Telemetry) -> Router,
) -> ExitCode {
    run_with(service_name, common, common.serve_options(), build).await
}

/// [`run`] for a service that publishes or consumes: the routes are built by
/// `build(telemetry, queue)`, with the [`Queue`] started from `nats` ([`Queue::from_args`]:
/// `NATS_URL`, empty for messaging off, and the redelivery settings) with that telemetry.
pub async fn run_with_queue(
    service_name: &'static str,
    common: &CommonArgs,
    nats: &NatsArgs,
    build: impl FnOnce(Telemetry, Queue) -> Router,
) -> ExitCode {
    run(service_name, common, |telemetry| {
        let queue = Queue::from_args(nats, &telemetry);
        build(telemetry, queue)
    })
    .await
}

/// Runs a service: probes health and exits if `--healthcheck`, else sets up telemetry from
/// `OTEL_*` (service name default `service_name`), builds the routes with `build`, and
/// serves them with `options` on `common.listen_addr` until SIGTERM or Ctrl-C.
///
/// Returns 0 after a clean stop, 64 for unusable configuration, 1 when serving failed.
pub async fn run_with(
    service_name: &'static str,
    common: &CommonArgs,
    options: ServeOptions,
    build: impl FnOnce(Telemetry) -> Router,
) -> ExitCode {
    let listen_addr = common.listen_addr;
    if common.healthcheck {
        return crate::serve::healthcheck(listen_addr, "/healthz").await;
    }
    let telemetry = match Telemetry::from_env(service_name) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{service_name}: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let app = crate::serve::app_with(build(telemetry.clone()), &telemetry, options);
    match crate::serve::serve(app, listen_addr, &telemetry).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{service_name}: cannot serve on {listen_addr}: {e}");
            ExitCode::FAILURE
        }
    }
}
