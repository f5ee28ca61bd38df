//! The common `main` of a demo service: flags and environment, telemetry, serve, flush.

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::Router;

use crate::telemetry::Telemetry;

/// Exit code for unusable configuration (sysexits `EX_USAGE`).
pub const EXIT_CONFIG: u8 = 64;

/// Flags every demo service accepts.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Address to listen on, e.g. 0.0.0.0:8081.
    #[arg(long, env = "LISTEN_ADDR")]
    pub listen_addr: Option<SocketAddr>,
    /// Probe the running service's GET /healthz on loopback and exit 0 when healthy
    /// (for container health checks; images carry no curl).
    #[arg(long)]
    pub healthcheck: bool,
}

/// Runs a service: probes health and exits if `--healthcheck`, else sets up telemetry from
/// `OTEL_*` (service name default `service_name`), builds the routes with `build`, and
/// serves on `common.listen_addr` (default `default_listen`) until SIGTERM or Ctrl-C.
///
/// Returns 0 after a clean stop, 64 for unusable configuration, 1 when serving failed.
pub async fn run(
    service_name: &'static str,
    default_listen: SocketAddr,
    common: &CommonArgs,
    build: impl FnOnce(Telemetry) -> Router,
) -> ExitCode {
    let listen_addr = common.listen_addr.unwrap_or(default_listen);
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
    let app = crate::serve::app(build(telemetry.clone()), &telemetry);
    match crate::serve::serve(app, listen_addr, &telemetry).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{service_name}: cannot serve on {listen_addr}: {e}");
            ExitCode::FAILURE
        }
    }
}
