//! `user-service`: see the crate docs.

use std::process::ExitCode;

use clap::Parser;
use user_service::{Config, app};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let latency = config.db_latency_ms;
    demokit::run("user", &config.common, |t| app(t, latency)).await
}
